//! Errors of the worker's node logic.

use thiserror::Error;

/// Everything a miner, validator or devnet step can fail with.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("model: {0}")]
    Model(#[from] worker_model::ModelError),
    #[error("data: {0}")]
    Data(#[from] worker_data::DataError),
    #[error("sparseloco: {0}")]
    SparseLoco(#[from] worker_sparseloco::SparseLocoError),
    #[error("gradient wire format: {0}")]
    Wire(#[from] worker_sparseloco::WireError),
    #[error("storage: {0}")]
    Storage(#[from] worker_storage::StorageError),
    #[error("chain: {0}")]
    Chain(#[from] worker_chain::ChainError),
    #[error("wallet: {0}")]
    Wallet(#[from] worker_chain::WalletError),
    #[error("gauntlet: {0}")]
    Gauntlet(#[from] worker_gauntlet::GauntletError),
    #[error("gradient object: {0}")]
    Object(#[from] crate::gradient_object::ObjectError),
    #[error("{0}")]
    Manifest(#[from] run_manifest::ManifestError),
    #[error("{what} made under run manifest {theirs}, this node runs {ours}")]
    ForeignManifest {
        what: &'static str,
        theirs: String,
        ours: String,
    },
    #[error("ranks: {0}")]
    Ranks(#[from] worker_distributed::DistributedError),
    #[error("ranks: {0}")]
    Launch(#[from] worker_distributed::launch::LaunchError),
    /// A rank of a multi-rank replica exited while the replica trained.
    #[error("ranks: {exit}; training failed: {during}")]
    RankFailed {
        exit: worker_distributed::launch::LaunchError,
        during: Box<NodeError>,
    },
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias of the node logic.
pub type Result<T, E = NodeError> = std::result::Result<T, E>;
