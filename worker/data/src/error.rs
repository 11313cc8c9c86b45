//! Error type of the crate.

use std::path::PathBuf;

use run_manifest::FieldError;

/// Everything that can go wrong reading, checking or preparing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// File system error, with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// File or directory involved.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The dataset manifest is not JSON of the expected shape.
    #[error("dataset manifest {origin}: at `{path}`: {message}")]
    Parse {
        /// Where the manifest came from.
        origin: String,
        /// Dotted path of the offending field.
        path: String,
        /// What serde reported.
        message: String,
    },
    /// The dataset manifest breaks rules, each named by its field path.
    #[error("dataset manifest {origin} is invalid: {}", join(.errors))]
    Invalid {
        /// Where the manifest came from.
        origin: String,
        /// Every rule broken.
        errors: Vec<FieldError>,
    },
    /// The dataset manifest found is not the one the run manifest pins.
    #[error("dataset manifest {origin} has SHA-256 {actual}, but the run manifest pins {expected}")]
    HashMismatch {
        /// Where the manifest came from.
        origin: String,
        /// Pinned hash.
        expected: String,
        /// Hash of the manifest found.
        actual: String,
    },
    /// The dataset does not fit the run's model.
    #[error("dataset {field} does not match the model: {message}")]
    ModelMismatch {
        /// The dataset manifest field in disagreement (`vocabSize`, `eosId`, `tokenizer`).
        field: &'static str,
        /// Both values.
        message: String,
    },
    /// A shard the source does not hold.
    #[error("shard {key} is missing from {source_name}")]
    MissingShard {
        /// Shard key.
        key: String,
        /// The source (URI).
        source_name: String,
    },
    /// A shard whose bytes, as fetched from the source, do not match the manifest.
    #[error("shard {key} in {source_name} is corrupt: {reason}")]
    CorruptShard {
        /// Shard key.
        key: String,
        /// The source (URI).
        source_name: String,
        /// Size or digest found vs expected.
        reason: String,
    },
    /// The source could not be read (network, permissions, ...).
    #[error("reading {key} from {source_name}: {message}")]
    Source {
        /// Object key.
        key: String,
        /// The source (URI).
        source_name: String,
        /// What failed.
        message: String,
    },
    /// A configuration that cannot name a dataset (URI, credentials, cache size).
    #[error("data configuration: {0}")]
    Config(String),
    /// A request the dataset cannot satisfy (too few samples, id out of range).
    #[error("data: {0}")]
    Data(String),
    /// The model crate's data code refused (assignment, shard format).
    #[error(transparent)]
    Model(#[from] worker_model::ModelError),
    /// Preparing a dataset failed.
    #[error("prepare: {0}")]
    Prepare(String),
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<DataError> for worker_model::ModelError {
    fn from(err: DataError) -> Self {
        worker_model::ModelError::Source(Box::new(err))
    }
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Result alias of the crate.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
