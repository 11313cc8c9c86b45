//! Subtensor over subxt: static API generated from (stripped) finney metadata, the client,
//! and conversions.

pub mod api;
pub mod calls;
mod client;
mod commitment;
mod config;
mod convert;

pub use client::SubxtChain;
pub use config::{Network, SubtensorConfig, SubxtChainConfig};
pub use convert::decode_neurons_lite;
