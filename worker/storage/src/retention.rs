//! Deletes objects of old windows (Templar keeps about 100 windows of gradients).

use futures::StreamExt;

use crate::error::StorageError;
use crate::layout::{ObjectKind, RunLayout};
use crate::store::ObjectStore;

/// Deletions in flight at once.
const DELETE_CONCURRENCY: usize = 8;

/// What a clean-up pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Objects deleted.
    pub deleted: usize,
    /// Objects kept (recent windows or keys outside the layout).
    pub kept: usize,
    /// Deletions that failed (logged; retried on the next pass).
    pub failed: usize,
}

/// Deletes every `kind` object of `layout`'s run whose window is older than the last
/// `keep_windows` windows, i.e. `window + keep_windows <= current_window`.
///
/// Keys that do not parse as this run's layout are kept. Only listing errors are returned;
/// individual delete failures are counted in the report.
pub async fn delete_old_windows(
    store: &dyn ObjectStore,
    layout: &RunLayout,
    kind: ObjectKind,
    current_window: u64,
    keep_windows: u64,
) -> Result<RetentionReport, StorageError> {
    let objects = store.list(&layout.kind_prefix(kind)).await?;
    let mut report = RetentionReport::default();
    let mut expired = Vec::new();
    for object in objects {
        match layout.parse(&object.key) {
            Some(parsed)
                if parsed.kind == kind
                    && parsed.window.saturating_add(keep_windows) <= current_window =>
            {
                expired.push(object.key)
            }
            _ => report.kept += 1,
        }
    }
    let outcomes: Vec<(String, Result<(), StorageError>)> = futures::stream::iter(expired)
        .map(|key| async move {
            let result = store.delete(&key).await;
            (key, result)
        })
        .buffer_unordered(DELETE_CONCURRENCY)
        .collect()
        .await;
    for (key, outcome) in outcomes {
        match outcome {
            Ok(()) => report.deleted += 1,
            Err(err) => {
                tracing::warn!(%key, error = %err, "retention: delete failed");
                report.failed += 1;
            }
        }
    }
    tracing::info!(
        kind = kind.segment(),
        current_window,
        keep_windows,
        deleted = report.deleted,
        kept = report.kept,
        failed = report.failed,
        "retention pass"
    );
    Ok(report)
}
