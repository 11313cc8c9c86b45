//! The worker: miner, validator and devnet of a SparseLoCo training subnet.
//!
//! The crates below it do one job each (model, compression, storage, chain, scoring);
//! this crate wires them into the per-window work of each role:
//! * [`miner`]: inner steps, pseudo-gradient, compression, signed upload object;
//! * [`validator`] + [`evaluator`]: authenticate, decode and measure peers, Gauntlet scores;
//! * [`exchange`]: the storage side of a window (uploads, fetches, peer lists, gather);
//! * [`replica`]: the model state every participant keeps in lockstep;
//! * [`network`]: the production miner and validator loops;
//! * [`training_ranks`] + [`rank_follower`] + [`rank_control`]: one process per GPU, rank 0
//!   being the node and the others training their share of its windows;
//! * [`miner_strategy`] + [`role_events`]: the narrow seams the devnet plugs its cheaters and
//!   its report into;
//! * [`node_health`] + [`health_server`] + [`pod_reporter`]: a production node's probes,
//!   metrics and report on its pod, fed by [`node_observer`];
//! * [`devnet`]: a whole subnet in one process, running the production loops.

pub mod adversaries;
pub mod behaviour;
pub mod catch_up;
pub mod cli;
pub mod cli_common;
pub mod cli_data;
pub mod cli_export;
pub mod cli_manifest;
pub mod cli_register;
pub mod cli_status;
pub mod cli_weights;
pub mod devnet;
pub mod error;
pub mod evaluator;
pub mod exchange;
pub mod gradient_object;
pub mod health_server;
pub mod manifest_source;
pub mod miner;
pub mod miner_loop;
pub mod miner_strategy;
pub mod network;
pub mod node_health;
pub mod node_observer;
pub mod pod_reporter;
pub mod published_checkpoint;
pub mod rank_control;
pub mod rank_follower;
pub mod replica;
pub mod report;
pub mod role_events;
pub mod settings;
pub mod signing;
pub mod sync_check;
pub mod training_ranks;
pub mod validator;

pub use error::{NodeError, Result};
