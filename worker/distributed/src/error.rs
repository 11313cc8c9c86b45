//! Typed errors of the collectives.

use std::time::Duration;

/// Everything a store, a process group or a collective can report.
#[derive(Debug, thiserror::Error)]
pub enum DistributedError {
    /// Arguments the shim or this crate refuses (shapes, ranks, dtypes, devices).
    #[error("invalid {op} call: {message}")]
    Invalid {
        /// Operation refused.
        op: &'static str,
        /// Why.
        message: String,
    },
    /// The rendezvous (store or process-group connection) did not complete.
    #[error("rendezvous failed ({what}): {message}")]
    Rendezvous {
        /// Store or group being set up.
        what: &'static str,
        /// libtorch's message.
        message: String,
    },
    /// A collective that did not complete within its timeout (a peer is hung or gone).
    #[error("{op} timed out after {timeout:?} (rank {rank} of {world_size}): {message}")]
    Timeout {
        /// The collective.
        op: &'static str,
        /// Its limit.
        timeout: Duration,
        /// This process's rank.
        rank: usize,
        /// Group size.
        world_size: usize,
        /// libtorch's message.
        message: String,
    },
    /// A collective that failed (typically: a peer closed its connection, i.e. died).
    #[error("{op} failed (rank {rank} of {world_size}): {message}")]
    Failed {
        /// The collective.
        op: &'static str,
        /// This process's rank.
        rank: usize,
        /// Group size.
        world_size: usize,
        /// libtorch's message.
        message: String,
    },
    /// An earlier collective failed; the group cannot be used any more (ranks may be out of
    /// step), the replica has to restart.
    #[error("process group unusable after an earlier failure: {0}")]
    Poisoned(String),
    /// SparseLoCo compression of a shard failed.
    #[error("sparseloco: {0}")]
    SparseLoco(#[from] worker_sparseloco::SparseLocoError),
    /// A shard's payload did not decode (a bug or a corrupted transfer).
    #[error("sparseloco wire: {0}")]
    Wire(#[from] worker_sparseloco::WireError),
    /// A tensor operation around a collective failed.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}
