//! Catching up: the lead validator publishes its model every few windows and, per window, the
//! aggregation list pinning the SHA-256 of every object it aggregated. A node that joins late
//! or restarts loads the newest checkpoint it can get (its own or the lead's published one)
//! and replays the missed windows from the retained objects, ending bit-identical with the
//! lead (same bytes, same order, same aggregation).

use std::path::Path;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use worker_storage::{FetchPolicy, ObjectStore, RunLayout, StorageError};

use crate::error::{NodeError, Result};
use crate::exchange::{PeerEndpoint, gather, read_peer_list};
use crate::replica::Replica;
use crate::signing::sr25519_verify;

/// Largest `latest.json` accepted.
const MAX_POINTER_BYTES: u64 = 1 << 16;

/// What `{run}/checkpoints/latest.json` says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointPointer {
    /// The window whose outer step the model follows.
    pub window: u64,
    /// Object key of the checkpoint file.
    pub key: String,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Publishes `replica`'s model as the state after `window` (file, then pointer, so a reader
/// never sees a pointer to a missing or partial file). `scratch` is a local file path.
pub async fn publish_checkpoint(
    store: &dyn ObjectStore,
    layout: &RunLayout,
    replica: &Replica,
    window: u64,
    scratch: &Path,
) -> Result<CheckpointPointer> {
    replica.save_model(scratch, window)?;
    let bytes = std::fs::read(scratch)?;
    let pointer = CheckpointPointer {
        window,
        key: layout.checkpoint(window, "model.ckpt")?,
        sha256: hex::encode(Sha256::digest(&bytes)),
        size: bytes.len() as u64,
    };
    store.put(&pointer.key, Bytes::from(bytes)).await?;
    store
        .put(
            &layout.latest_checkpoint(),
            Bytes::from(serde_json::to_vec(&pointer)?),
        )
        .await?;
    Ok(pointer)
}

/// Downloads the lead's newest published checkpoint to `into` when it is newer than `after`
/// (verified against its pointer); returns its window. `max_bytes` bounds the download.
pub async fn fetch_published_checkpoint(
    lead: &dyn ObjectStore,
    layout: &RunLayout,
    after: Option<u64>,
    into: &Path,
    max_bytes: u64,
) -> Result<Option<u64>> {
    let pointer = match lead
        .get(&layout.latest_checkpoint(), MAX_POINTER_BYTES)
        .await
    {
        Ok(object) => serde_json::from_slice::<CheckpointPointer>(&object.body)?,
        Err(StorageError::NotFound { .. }) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    if after.is_some_and(|done| pointer.window <= done) {
        return Ok(None);
    }
    if pointer.size > max_bytes {
        return Err(NodeError::Config(format!(
            "published checkpoint of {} bytes exceeds the {max_bytes}-byte limit",
            pointer.size
        )));
    }
    let object = lead.get(&pointer.key, pointer.size).await?;
    let actual = hex::encode(Sha256::digest(&object.body));
    if actual != pointer.sha256 {
        return Err(StorageError::Checksum {
            key: pointer.key,
            expected: Some(pointer.sha256),
            actual,
        }
        .into());
    }
    let tmp = into.with_extension("download");
    std::fs::write(&tmp, &object.body)?;
    std::fs::rename(&tmp, into)?;
    Ok(Some(pointer.window))
}

/// Replays windows `from..to` (exclusive end) onto `replica` from the lead's aggregation
/// lists and the peers' retained objects; returns the last window replayed. A window the
/// lead published no list for is skipped when the lead has published a later one (it
/// abandoned that window, so nobody applied an update for it); otherwise, or when listed
/// objects are no longer all available, the replay stops there and the node stays behind.
#[allow(clippy::too_many_arguments)]
pub async fn replay(
    replica: &mut Replica,
    lead: &PeerEndpoint,
    peers: &[PeerEndpoint],
    layout: &RunLayout,
    from: u64,
    to: u64,
    policy: &FetchPolicy,
    outer_lr: f64,
) -> Result<Option<u64>> {
    let manifest = replica.run_manifest();
    let mut applied = None;
    for window in from..to {
        let Some(list) = read_peer_list(&*lead.store, layout, lead.uid, &manifest, window).await?
        else {
            if lead_moved_on(&*lead.store, layout, lead.uid, window, to).await? {
                // The lead abandoned this window: nobody applied an update for it.
                tracing::info!(window, "the lead skipped this window");
                continue;
            }
            tracing::warn!(
                window,
                "no aggregation list from the lead yet: replay stops"
            );
            break;
        };
        let listed: Vec<PeerEndpoint> = list
            .uids()
            .iter()
            .filter_map(|uid| peers.iter().find(|p| p.uid == *uid).cloned())
            .collect();
        let (gathered, rejected) = gather(
            &listed,
            layout,
            window,
            policy,
            replica,
            &sr25519_verify,
            Some(&list),
        )
        .await;
        if gathered.len() != list.objects.len() {
            tracing::warn!(
                window,
                missing = list.objects.len() - gathered.len(),
                ?rejected,
                "listed objects unavailable: replay stops"
            );
            break;
        }
        let payloads: Vec<_> = gathered.into_iter().map(|g| g.payload).collect();
        replica.outer_step(&payloads, outer_lr)?;
        applied = Some(window);
    }
    Ok(applied)
}

/// Whether the lead published a list for some window in `after+1..to`.
async fn lead_moved_on(
    lead: &dyn ObjectStore,
    layout: &RunLayout,
    lead_uid: u16,
    after: u64,
    to: u64,
) -> Result<bool> {
    for later in after + 1..to {
        match lead.head(&layout.peer_list(later, lead_uid)).await {
            Ok(_) => return Ok(true),
            Err(StorageError::NotFound { .. }) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(false)
}
