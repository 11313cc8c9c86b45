//! The error type shared by every backend.

use std::path::PathBuf;
use std::time::SystemTime;

/// Why a storage operation failed.
///
/// The variants are backend-neutral so callers can react the same way to an S3 bucket and a
/// local directory (skip a peer on `NotFound`, penalise it on `Checksum`, and so on).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The object does not exist (or a HEAD on a missing bucket, which S3 cannot tell apart).
    #[error("object {key:?} not found")]
    NotFound {
        /// The requested key.
        key: String,
    },
    /// The object is larger than the caller's limit; its body was not downloaded.
    #[error("object {key:?} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// The requested key.
        key: String,
        /// The caller's limit in bytes.
        limit: u64,
        /// The object's size in bytes (at least this many when the size was not announced).
        size: u64,
    },
    /// The credentials are unknown, wrong, or lack the permission for this operation.
    #[error("access denied during {operation}: {message}")]
    AccessDenied {
        /// The operation that was refused (`put`, `get`, ...).
        operation: &'static str,
        /// The server's explanation.
        message: String,
    },
    /// The bucket does not exist.
    #[error("bucket {bucket:?} does not exist")]
    NoSuchBucket {
        /// The bucket name.
        bucket: String,
    },
    /// The body does not match the SHA-256 stored with the object, or none was stored.
    #[error("checksum mismatch for {key:?}: stored {expected:?}, body hashes to {actual}")]
    Checksum {
        /// The requested key.
        key: String,
        /// The stored SHA-256 (hex), `None` when the object carries none.
        expected: Option<String>,
        /// The SHA-256 (hex) of the body that was read.
        actual: String,
    },
    /// The operation did not finish within its timeout or deadline.
    #[error("{operation} of {key:?} timed out")]
    Timeout {
        /// The operation that timed out.
        operation: &'static str,
        /// The key it was working on (empty for bucket-level operations).
        key: String,
    },
    /// The object was last modified before the accepted upload window opened.
    #[error(
        "object {key:?} was modified at {last_modified:?}, before the window opened at {not_before:?}"
    )]
    TooEarly {
        /// The requested key.
        key: String,
        /// The object's LastModified.
        last_modified: SystemTime,
        /// The earliest accepted LastModified.
        not_before: SystemTime,
    },
    /// The object was last modified after the upload deadline.
    #[error("object {key:?} was modified at {last_modified:?}, after the deadline {not_after:?}")]
    TooLate {
        /// The requested key.
        key: String,
        /// The object's LastModified.
        last_modified: SystemTime,
        /// The latest accepted LastModified.
        not_after: SystemTime,
    },
    /// The key is empty, absolute, contains `..`, or uses characters outside the key alphabet.
    #[error("invalid object key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The store configuration is unusable.
    #[error("invalid storage configuration: {0}")]
    Config(String),
    /// A local filesystem operation failed.
    #[error("I/O error on {path:?}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Any other failure reported by the backend (network error, 5xx after retries, malformed
    /// response, ...).
    #[error("storage backend error during {operation}: {message}")]
    Backend {
        /// The operation that failed.
        operation: &'static str,
        /// A description of the failure including its source chain.
        message: String,
    },
}

impl StorageError {
    /// Builds a [`StorageError::Io`] for `path`.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// Builds a [`StorageError::Backend`].
    pub(crate) fn backend(operation: &'static str, message: impl Into<String>) -> Self {
        Self::Backend {
            operation,
            message: message.into(),
        }
    }

    /// Builds a [`StorageError::Timeout`].
    pub(crate) fn timeout(operation: &'static str, key: &str) -> Self {
        Self::Timeout {
            operation,
            key: key.to_owned(),
        }
    }
}
