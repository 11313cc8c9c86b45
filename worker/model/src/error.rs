//! Error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong in the model, trainer, data and checkpoint code.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// An error reported by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// File system error, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration that cannot describe a model or a run.
    #[error("invalid config: {0}")]
    Config(String),
    /// A model shape the model cannot be built with.
    #[error("invalid model shape: {}: {}", .0.field, .0.message)]
    ModelShape(#[from] run_manifest::model_shape::ShapeError),
    /// A token file (flat or .npy) that is malformed.
    #[error("bad token file {path}: {reason}")]
    TokenFile {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A request for data that the dataset cannot satisfy.
    #[error("data: {0}")]
    Data(String),
    /// A dataset that fetches its shards could not provide one (missing, corrupt, unreachable).
    #[error("data source: {0}")]
    Source(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Tensors whose number, names, shapes or dtypes do not match the model.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A checkpoint file that is corrupt, truncated or from another model.
    #[error("bad checkpoint {path}: {reason}")]
    Checkpoint {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// safetensors (de)serialisation error.
    #[error("safetensors: {0}")]
    SafeTensors(#[from] safetensors::SafeTensorError),
    /// A collective operation of a data-parallel group failed (a peer died or hung).
    #[error("collective: {0}")]
    Collective(#[source] crate::parallel::CollectiveError),
    /// JSON (de)serialisation error.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl ModelError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result alias of the crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
