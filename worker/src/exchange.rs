//! Moving a window's objects through storage: uploads, the fetch of every peer's gradient
//! and sync sample, peer lists, and the gather of the aggregation set.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use bytes::Bytes;
use worker_gauntlet::{Outcome, PeerList};
use worker_sparseloco::GradientPayload;
use worker_storage::{FetchPolicy, ObjectStore, PeerFetch, RunLayout, fetch_peers};

use worker_chain::{Chain, Metagraph};
use worker_storage::BucketCredentials;

use crate::error::{NodeError, Result};
use crate::replica::ObjectRules;
use crate::sync_check::{decode_sample, encode_sample};
use crate::validator::{Submission, Verifier, accept};
use run_manifest::ManifestHash;

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
    manifest: &ManifestHash,
    sample: &[f32],
) -> Result<()> {
    store
        .put(
            &layout.sync_sample(window, uid),
            Bytes::from(encode_sample(manifest, sample)),
        )
        .await?;
    Ok(())
}

/// A validator's aggregation list as published for a window: the Gauntlet's list, the run
/// manifest it was made under, and the SHA-256 of every gradient object the validator
/// aggregated, so everyone aggregates exactly the bytes it evaluated.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AggregationList {
    /// Hex SHA-256 of the run manifest.
    pub run_manifest: String,
    /// The Gauntlet's list (peers best first, then reserves).
    pub list: PeerList,
    /// Uid -> hex SHA-256 of the object aggregated for it, in aggregation order.
    pub objects: Vec<(u16, String)>,
}

impl AggregationList {
    /// The uids aggregated, in order.
    pub fn uids(&self) -> Vec<u16> {
        self.objects.iter().map(|(uid, _)| *uid).collect()
    }

    /// The pinned digest of `uid`'s object, if it is aggregated.
    pub fn digest(&self, uid: u16) -> Option<&str> {
        self.objects
            .iter()
            .find(|(u, _)| *u == uid)
            .map(|(_, d)| d.as_str())
    }
}

/// Publishes validator `validator`'s aggregation list, labelled with its run manifest.
pub async fn publish_peer_list(
    store: &dyn ObjectStore,
    layout: &RunLayout,
    validator: u16,
    list: &AggregationList,
) -> Result<()> {
    store
        .put(
            &layout.peer_list(list.list.window, validator),
            Bytes::from(serde_json::to_vec(list)?),
        )
        .await?;
    Ok(())
}

/// Reads validator `validator`'s aggregation list for `window`, if it was published under
/// `manifest` (a list of another run is refused with [`NodeError::ForeignManifest`]).
pub async fn read_peer_list(
    store: &dyn ObjectStore,
    layout: &RunLayout,
    validator: u16,
    manifest: &ManifestHash,
    window: u64,
) -> Result<Option<AggregationList>> {
    match store
        .get(&layout.peer_list(window, validator), MAX_PEER_LIST_BYTES)
        .await
    {
        Ok(object) => {
            let published: AggregationList = serde_json::from_slice(&object.body)?;
            if published.run_manifest != manifest.to_hex() {
                return Err(NodeError::ForeignManifest {
                    what: "peer list",
                    theirs: published.run_manifest,
                    ours: manifest.to_hex(),
                });
            }
            // Re-check the Gauntlet list's own schema.
            PeerList::from_json(&published.list.to_json()?)?;
            Ok((published.list.window == window).then_some(published))
        }
        Err(worker_storage::StorageError::NotFound { .. }) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Why a gathered object was left out of the aggregate.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// It failed a check the validator also applies (fetch, signature, decoding, ...).
    Outcome(Outcome),
    /// Its bytes are not the ones the aggregation list pinned.
    DigestMismatch {
        /// The digest in the list.
        expected: String,
        /// The digest of what was fetched.
        actual: String,
    },
}

/// One gathered, accepted gradient.
pub struct Gathered {
    /// The peer.
    pub uid: u16,
    /// Hex SHA-256 of its object.
    pub digest: String,
    /// The object's bytes as fetched (what the lead mirrors for everyone else).
    pub object: Bytes,
    /// The decoded payload.
    pub payload: GradientPayload,
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
    manifest: &ManifestHash,
    sync_len: usize,
) -> Vec<Submission> {
    let gradients = fetch_peers(requests(peers, |uid| layout.gradient(window, uid)), policy).await;
    // A sample has an exact size: nothing larger is downloaded.
    let sync_policy = FetchPolicy {
        upload_window: None,
        max_bytes: crate::sync_check::encoded_sample_len(sync_len),
        ..*policy
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
                    .and_then(|s| decode_sample(&s.body, manifest, sync_len)),
            })
        })
        .collect()
}

/// Fetches, authenticates and decodes the gradients of `peers` (in order); an object whose
/// SHA-256 differs from the one `pinned` lists for its uid is refused. Peers whose object
/// fails any check are left out (and reported).
pub async fn gather(
    peers: &[PeerEndpoint],
    layout: &RunLayout,
    window: u64,
    policy: &FetchPolicy,
    rules: &ObjectRules,
    verify: &Verifier,
    pinned: Option<&AggregationList>,
) -> (Vec<Gathered>, Vec<(u16, Rejection)>) {
    let mut fetched =
        fetch_peers(requests(peers, |uid| layout.gradient(window, uid)), policy).await;
    // Aggregation order is the order of `peers`, whatever order the downloads finished in.
    fetched.sort_by_key(|f| f.peer);
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    for result in fetched {
        let Some(peer) = peers.get(result.peer) else {
            continue;
        };
        let checked = result
            .result
            .map_err(|err| Rejection::Outcome(crate::validator::fetch_outcome(&err)))
            .and_then(|object| {
                let digest = hex::encode(Sha256::digest(&object.body));
                if let Some(expected) = pinned.and_then(|list| list.digest(peer.uid))
                    && expected != digest
                {
                    return Err(Rejection::DigestMismatch {
                        expected: expected.to_owned(),
                        actual: digest,
                    });
                }
                accept(
                    &object,
                    window,
                    peer.uid,
                    &peer.hotkey,
                    rules,
                    policy.max_bytes as usize,
                    verify,
                )
                .map(|gradient| (digest, object.body, gradient))
                .map_err(Rejection::Outcome)
            });
        match checked {
            Ok((digest, object, gradient)) => accepted.push(Gathered {
                uid: peer.uid,
                digest,
                object,
                payload: gradient.payload,
            }),
            Err(rejection @ Rejection::DigestMismatch { .. }) => {
                tracing::warn!(
                    uid = peer.uid,
                    ?rejection,
                    "object differs from the pinned digest (changed after evaluation): refused"
                );
                rejected.push((peer.uid, rejection));
            }
            Err(rejection) => {
                tracing::warn!(uid = peer.uid, ?rejection, "peer left out of the aggregate");
                rejected.push((peer.uid, rejection));
            }
        }
    }
    (accepted, rejected)
}

/// Gathers every object `list` pins, in list order: from each listed peer's bucket under
/// `policy`; whatever that refuses (missing, late, or bytes that differ from the pinned
/// digest, as when a peer overwrote its object after evaluation) from the copy the lead
/// mirrored into its own bucket at the same key, then from the peer's bucket without the
/// upload window (the lead attests the object was in time; the digest pins its bytes).
/// Returns what was gathered and, per source, what each refused.
#[allow(clippy::too_many_arguments)]
pub async fn gather_listed(
    list: &AggregationList,
    peers: &[PeerEndpoint],
    lead: &PeerEndpoint,
    layout: &RunLayout,
    window: u64,
    policy: &FetchPolicy,
    rules: &ObjectRules,
    verify: &Verifier,
) -> (Vec<Gathered>, Vec<(u16, Rejection)>) {
    let selected: Vec<PeerEndpoint> = list
        .uids()
        .iter()
        .filter_map(|uid| peers.iter().find(|p| p.uid == *uid).cloned())
        .collect();
    let (mut gathered, mut rejected) =
        gather(&selected, layout, window, policy, rules, verify, Some(list)).await;
    let untimed = FetchPolicy {
        upload_window: None,
        ..*policy
    };
    let mirrored = |p: &PeerEndpoint| PeerEndpoint {
        store: lead.store.clone(),
        ..p.clone()
    };
    for source in [Some(lead), None] {
        let missing: Vec<PeerEndpoint> = selected
            .iter()
            .filter(|p| !gathered.iter().any(|g| g.uid == p.uid))
            .map(|p| match source {
                Some(_) => mirrored(p),
                None => p.clone(),
            })
            .collect();
        if missing.is_empty() {
            break;
        }
        tracing::info!(
            missing = missing.len(),
            from = if source.is_some() {
                "lead mirror"
            } else {
                "peer, untimed"
            },
            "retrying listed objects"
        );
        let (more, refused) = gather(
            &missing,
            layout,
            window,
            &untimed,
            rules,
            verify,
            Some(list),
        )
        .await;
        gathered.extend(more);
        rejected.extend(refused);
    }
    let order = list.uids();
    gathered.sort_by_key(|g| order.iter().position(|u| *u == g.uid));
    (gathered, rejected)
}

/// Copies the objects a lead validator aggregates into its own bucket, at the gradient key
/// of each peer (a validator uploads no gradient of its own), so nobody depends on a peer
/// keeping the evaluated bytes in place; failures are logged (peers' buckets still serve
/// unchanged objects).
pub async fn mirror_aggregated(
    store: &dyn ObjectStore,
    layout: &RunLayout,
    window: u64,
    gathered: &[Gathered],
) {
    use futures::StreamExt;
    // Concurrently (it delays the list): the time of the largest upload, not of all of them.
    futures::stream::iter(gathered)
        .for_each_concurrent(LISTED_OBJECT_REQUESTS_IN_FLIGHT, |g| async move {
            if let Err(err) = store
                .put(&layout.gradient(window, g.uid), g.object.clone())
                .await
            {
                tracing::warn!(uid = g.uid, %err, "mirroring an aggregated object failed");
            }
        })
        .await;
}

/// The objects a validator listed for aggregation in one window, with the write time of the
/// exact object it evaluated: an honest miner never writes its object again, so a later
/// write time means the object was swapped after its evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedObjects {
    /// The window.
    pub window: u64,
    /// (uid, LastModified of the evaluated object).
    pub written: Vec<(u16, std::time::SystemTime)>,
}

/// The peers of `listed` whose object of that window now has another write time than the
/// object that was evaluated (HEADs run concurrently; a peer or HEAD that fails is not
/// judged).
pub async fn rewritten_objects(
    listed: &ListedObjects,
    peers: &[PeerEndpoint],
    layout: &RunLayout,
) -> Vec<u16> {
    use futures::StreamExt;
    let mut rewritten: Vec<u16> = futures::stream::iter(&listed.written)
        .map(|&(uid, written)| async move {
            let peer = peers.iter().find(|p| p.uid == uid)?;
            match peer.store.head(&layout.gradient(listed.window, uid)).await {
                Ok(meta) => (meta.last_modified != written).then_some(uid),
                Err(err) => {
                    tracing::debug!(uid, %err, "listed object not checked");
                    None
                }
            }
        })
        .buffer_unordered(LISTED_OBJECT_REQUESTS_IN_FLIGHT)
        .filter_map(std::future::ready)
        .collect()
        .await;
    rewritten.sort_unstable();
    rewritten
}

/// Requests on the listed objects (mirror uploads, rewrite HEADs) run at once.
const LISTED_OBJECT_REQUESTS_IN_FLIGHT: usize = 8;

/// Every neuron of `metagraph` whose on-chain commitment names a bucket, with the store that
/// `open` builds for it. Commitments that do not parse, or whose store cannot be opened,
/// are skipped with a warning: one bad peer never stops the others.
pub async fn resolve_peers(
    chain: &dyn Chain,
    metagraph: &Metagraph,
    open: impl Fn(&BucketCredentials) -> Result<Arc<dyn ObjectStore>>,
) -> Result<Vec<PeerEndpoint>> {
    let commitments = chain.commitments(metagraph.netuid).await?;
    let mut peers = Vec::new();
    for neuron in &metagraph.neurons {
        let Some(raw) = commitments.get(&neuron.hotkey) else {
            continue;
        };
        let store = BucketCredentials::parse(raw)
            .map_err(|err| err.to_string())
            .and_then(|credentials| open(&credentials).map_err(|err| err.to_string()));
        match store {
            Ok(store) => peers.push(PeerEndpoint {
                uid: neuron.uid,
                hotkey: *neuron.hotkey.as_bytes(),
                store,
            }),
            Err(err) => {
                tracing::warn!(uid = neuron.uid, %err, "skipping peer with a bad bucket commitment")
            }
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker_chain::{EmbeddedChain, EmbeddedChainConfig, Keypair, SubnetConfig};
    use worker_storage::LocalStore;

    #[tokio::test]
    async fn resolves_committed_buckets_and_skips_bad_commitments() {
        let dir = tempfile::tempdir().unwrap();
        let chain = EmbeddedChain::new(EmbeddedChainConfig::default());
        chain.add_subnet(3, SubnetConfig::default());
        let owner = Keypair::from_dev_name("owner");
        let good = Keypair::from_dev_name("good");
        let bad = Keypair::from_dev_name("bad");
        let silent = Keypair::from_dev_name("silent");
        let mut uids = Vec::new();
        for key in [&good, &bad, &silent] {
            uids.push(
                chain
                    .burned_register(3, &owner, &key.account_id())
                    .await
                    .unwrap(),
            );
        }
        let credentials = BucketCredentials {
            account_id: "bucket-good".into(),
            access_key_id: "ak".into(),
            secret_access_key: "sk".into(),
        };
        chain
            .set_commitment(3, &good, &credentials.to_raw128().unwrap())
            .await
            .unwrap();
        chain
            .set_commitment(3, &bad, b"not a raw128 commitment")
            .await
            .unwrap();

        let root = dir.path().to_owned();
        let metagraph = chain.metagraph(3).await.unwrap();
        let peers = resolve_peers(&chain, &metagraph, |c| {
            Ok(Arc::new(LocalStore::open(root.join(&c.account_id))?) as Arc<dyn ObjectStore>)
        })
        .await
        .unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].uid, uids[0]);
        assert_eq!(&peers[0].hotkey, good.account_id().as_bytes());
        assert!(dir.path().join("bucket-good").exists());
    }
}
