//! Subtensor over subxt: static API generated from (stripped) finney metadata, the client,
//! and conversions.

pub mod api;
pub mod calls;
mod client;
mod commitment;
pub mod compat;
mod config;
mod convert;
pub mod reconnect;

pub use client::SubxtChain;
pub use compat::{BUNDLED_SPEC_VERSION, RuntimeCompatibility};
pub use config::{Network, SubtensorConfig, SubxtChainConfig};
pub use convert::decode_neurons_lite;
pub use reconnect::{Connector, ReconnectingRpc, RetryPolicy};
