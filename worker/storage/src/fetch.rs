//! Concurrent download of one object from each of many peers' stores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::error::StorageError;
use crate::store::{GetOptions, ObjectStore, StoredObject};
use crate::window::UploadWindow;

/// One object to fetch: who it belongs to, their store, and the key.
#[derive(Clone)]
pub struct PeerFetch<P> {
    /// Caller's peer identifier (uid, hotkey, ...), handed back with the result.
    pub peer: P,
    /// The peer's store (usually an [`crate::S3Store`] built from its chain commitment).
    pub store: Arc<dyn ObjectStore>,
    /// The object key, e.g. [`crate::RunLayout::gradient`].
    pub key: String,
}

/// Limits applied to every fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchPolicy {
    /// Longest time a single peer's download may take.
    pub per_peer_timeout: Duration,
    /// Objects larger than this are refused before download.
    pub max_bytes: u64,
    /// Objects whose LastModified is outside this window are refused before download.
    pub upload_window: Option<UploadWindow>,
    /// No download runs past this instant (e.g. the time the validator must move on).
    pub deadline: Option<Instant>,
    /// Downloads in flight at once.
    pub max_concurrency: usize,
}

impl FetchPolicy {
    /// A policy with a per-peer timeout and size limit, no window or deadline, and 32
    /// concurrent downloads.
    pub fn new(per_peer_timeout: Duration, max_bytes: u64) -> Self {
        Self {
            per_peer_timeout,
            max_bytes,
            upload_window: None,
            deadline: None,
            max_concurrency: 32,
        }
    }

    /// Accept only objects last modified within `window`.
    pub fn within(mut self, window: UploadWindow) -> Self {
        self.upload_window = Some(window);
        self
    }

    /// Stop every download at `deadline`.
    pub fn until(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }
}

/// The outcome for one peer.
#[derive(Debug)]
pub struct PeerFetchResult<P> {
    /// The caller's peer identifier.
    pub peer: P,
    /// The key that was fetched.
    pub key: String,
    /// The verified object, or why this peer's object was not accepted.
    pub result: Result<StoredObject, StorageError>,
}

/// Fetches every request concurrently and returns one result per request, in request order.
///
/// A peer's failure (missing, too large, outside the upload window, checksum mismatch, timeout,
/// bad credentials) only affects its own entry.
pub async fn fetch_peers<P: Send>(
    requests: Vec<PeerFetch<P>>,
    policy: &FetchPolicy,
) -> Vec<PeerFetchResult<P>> {
    let options = GetOptions {
        max_bytes: policy.max_bytes,
        upload_window: policy.upload_window,
    };
    futures::stream::iter(requests)
        .map(|request| async move {
            let result = fetch_one(&request, &options, policy).await;
            if let Err(err) = &result {
                tracing::debug!(key = %request.key, error = %err, "peer object rejected");
            }
            PeerFetchResult {
                peer: request.peer,
                key: request.key,
                result,
            }
        })
        .buffered(policy.max_concurrency.max(1))
        .collect()
        .await
}

async fn fetch_one<P>(
    request: &PeerFetch<P>,
    options: &GetOptions,
    policy: &FetchPolicy,
) -> Result<StoredObject, StorageError> {
    let mut deadline = Instant::now() + policy.per_peer_timeout;
    if let Some(overall) = policy.deadline {
        deadline = deadline.min(overall);
    }
    tokio::time::timeout_at(
        deadline.into(),
        request.store.get_with(&request.key, options),
    )
    .await
    .map_err(|_| StorageError::timeout("fetch", &request.key))?
}
