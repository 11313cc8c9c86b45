//! Moving a window's objects through storage: uploads, the fetch of every peer's gradient
//! and sync sample, peer lists, and the gather of the aggregation set.

use std::sync::Arc;

use bytes::Bytes;
use worker_gauntlet::{Outcome, PeerList};
use worker_sparseloco::GradientPayload;
use worker_storage::{FetchPolicy, ObjectStore, PeerFetch, RunLayout, fetch_peers};

use crate::error::Result;
use crate::replica::Replica;
use crate::sync_check::{decode_sample, encode_sample};
use crate::validator::{Submission, Verifier, accept};

/// Largest accepted peer list object.
const MAX_PEER_LIST_BYTES: u64 = 1 << 20;

/// Where one peer's objects live and who signs them.
#[derive(Clone)]
pub struct PeerEndpoint {
    pub uid: u16,
    pub hotkey: [u8; 32],
    pub store: Arc<dyn ObjectStore>,
}

/// Uploads this peer's gradient object for `window`.
pub async fn upload_gradient(
    store: &dyn ObjectStore,
    layout: &RunLayout,
    window: u64,
    uid: u16,
    object: Vec<u8>,
) -> Result<()> {
    store
        .put(&layout.gradient(window, uid), Bytes::from(object))
        .await?;
    Ok(())
}

/// Publishes the parameter sample of the state this peer starts `window` from.
pub async fn upload_sync_sample(
    store: &dyn ObjectStore,
    layout: &RunLayout,
    window: u64,
    uid: u16,
    sample: &[f32],
) -> Result<()> {
    store
        .put(
            &layout.sync_sample(window, uid),
            Bytes::from(encode_sample(sample)),
        )
        .await?;
    Ok(())
}

/// Publishes the validator's aggregation list for `window`.
pub async fn publish_peer_list(
    store: &dyn ObjectStore,
    layout: &RunLayout,
    list: &PeerList,
) -> Result<()> {
    store
        .put(&layout.peer_list(list.window), Bytes::from(list.to_json()?))
        .await?;
    Ok(())
}

/// Reads the validator's aggregation list for `window`, if it was published.
pub async fn read_peer_list(
    store: &dyn ObjectStore,
    layout: &RunLayout,
    window: u64,
) -> Result<Option<PeerList>> {
    match store
        .get(&layout.peer_list(window), MAX_PEER_LIST_BYTES)
        .await
    {
        Ok(object) => {
            let text = String::from_utf8_lossy(&object.body);
            let list = PeerList::from_json(&text)?;
            Ok((list.window == window).then_some(list))
        }
        Err(worker_storage::StorageError::NotFound { .. }) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

fn requests(peers: &[PeerEndpoint], key: impl Fn(u16) -> String) -> Vec<PeerFetch<usize>> {
    peers
        .iter()
        .enumerate()
        .map(|(i, p)| PeerFetch {
            peer: i,
            store: p.store.clone(),
            key: key(p.uid),
        })
        .collect()
}

/// Fetches the gradient and sync sample of every peer for the validator.
pub async fn fetch_submissions(
    peers: &[PeerEndpoint],
    layout: &RunLayout,
    window: u64,
    policy: &FetchPolicy,
    sync_len: usize,
) -> Vec<Submission> {
    let gradients = fetch_peers(requests(peers, |uid| layout.gradient(window, uid)), policy).await;
    let sync_policy = FetchPolicy {
        upload_window: None,
        ..policy.clone()
    };
    let samples = fetch_peers(
        requests(peers, |uid| layout.sync_sample(window, uid)),
        &sync_policy,
    )
    .await;
    gradients
        .into_iter()
        .zip(samples)
        .filter_map(|(gradient, sample)| {
            let peer = peers.get(gradient.peer)?;
            Some(Submission {
                uid: peer.uid,
                hotkey: peer.hotkey,
                object: gradient.result,
                sync_sample: sample
                    .result
                    .ok()
                    .and_then(|s| decode_sample(&s.body, sync_len)),
            })
        })
        .collect()
}

/// Fetches, authenticates and decodes the gradients of the aggregation set; peers whose
/// object fails any check are left out (and reported).
pub async fn gather(
    peers: &[PeerEndpoint],
    layout: &RunLayout,
    window: u64,
    policy: &FetchPolicy,
    replica: &Replica,
    verify: &Verifier,
) -> (Vec<GradientPayload>, Vec<(u16, Outcome)>) {
    let fetched = fetch_peers(requests(peers, |uid| layout.gradient(window, uid)), policy).await;
    let mut payloads = Vec::new();
    let mut rejected = Vec::new();
    for result in fetched {
        let Some(peer) = peers.get(result.peer) else {
            continue;
        };
        let checked = result
            .result
            .map_err(|err| crate::validator::fetch_outcome(&err))
            .and_then(|object| {
                accept(
                    &object,
                    window,
                    peer.uid,
                    &peer.hotkey,
                    replica,
                    policy.max_bytes as usize,
                    verify,
                )
            });
        match checked {
            Ok(gradient) => payloads.push(gradient.payload),
            Err(outcome) => {
                tracing::warn!(uid = peer.uid, ?outcome, "peer left out of the aggregate");
                rejected.push((peer.uid, outcome));
            }
        }
    }
    (payloads, rejected)
}
