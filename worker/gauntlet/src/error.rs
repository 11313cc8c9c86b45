//! Errors of the scoring core.

use thiserror::Error;

/// Everything that can go wrong in the Gauntlet scoring core.
#[derive(Debug, Error)]
pub enum GauntletError {
    /// A configuration value is out of its valid range.
    #[error("invalid gauntlet config: {0}")]
    InvalidConfig(String),
    /// `record_window` was called for a window that is not newer than the last recorded one.
    #[error("window {window} is not newer than the last recorded window {last}")]
    WindowAlreadyRecorded {
        /// The window passed in.
        window: u64,
        /// The last window already recorded.
        last: u64,
    },
    /// A serialised document carries a schema version this code does not understand.
    #[error("unsupported {document} schema version {found} (expected {expected})")]
    UnsupportedSchema {
        /// Which document ("state", "peer list").
        document: &'static str,
        /// Version found in the document.
        found: u32,
        /// Version this code writes and reads.
        expected: u32,
    },
    /// JSON (de)serialisation failed.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}
