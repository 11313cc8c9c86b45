//! Shared helpers of the operator tests and benchmark.
#![allow(dead_code)]

pub mod cluster;
pub mod fake_api;
pub mod fixtures;
