//! Where a node's run manifest comes from: a file (`--manifest`, the operator's mounted
//! ConfigMap) or, for a miner joining without one, the manifest the lead validator publishes
//! in its bucket. Either way it is validated and, when a SHA-256 is pinned, checked against it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use run_manifest::{ManifestHash, PUBLISHED_MANIFEST_KEY, VerifiedManifest};
use worker_chain::Chain;
use worker_storage::ObjectStore;

use crate::error::{NodeError, Result};
use crate::exchange::resolve_peers;
use crate::network::{NodeArgs, NodeContext, Resolver};

/// Largest published manifest accepted.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// The manifest named by `--manifest` (checked against `--manifest-sha256`), if any.
pub fn manifest_from_args(args: &NodeArgs) -> Result<Option<VerifiedManifest>> {
    match &args.manifest {
        Some(path) => Ok(Some(run_manifest::load_file(
            path,
            args.manifest_sha256.as_deref(),
        )?)),
        None => Ok(None),
    }
}

/// Writes the manifest this node runs at the root of its bucket (canonical JSON).
pub async fn publish_manifest(store: &dyn ObjectStore, run: &VerifiedManifest) -> Result<()> {
    store
        .put(
            PUBLISHED_MANIFEST_KEY,
            Bytes::from(run.canonical().to_owned()),
        )
        .await?;
    Ok(())
}

/// How long a joining miner waits for the lead validator's manifest to appear.
const FOLLOW_PATIENCE: Duration = Duration::from_secs(300);
/// Pause between attempts.
const FOLLOW_POLL: Duration = Duration::from_secs(1);

/// Reads the manifest the lead validator of `netuid` publishes, checked against `pin`,
/// waiting (up to five minutes) while there is no lead, no bucket or no manifest yet. A
/// manifest that is invalid or does not match the pin is refused at once.
pub async fn follow_lead_manifest(
    chain: &dyn Chain,
    netuid: u16,
    resolve: &Resolver,
    pin: Option<&str>,
) -> Result<VerifiedManifest> {
    let deadline = Instant::now() + FOLLOW_PATIENCE;
    loop {
        match read_lead_manifest(chain, netuid, resolve, pin).await {
            Ok(run) => return Ok(run),
            Err(err @ NodeError::Manifest(_)) => return Err(err),
            Err(err) if Instant::now() < deadline => {
                tracing::info!(%err, "waiting for the lead validator's run manifest");
                tokio::time::sleep(FOLLOW_POLL).await;
            }
            Err(err) => return Err(err),
        }
    }
}

async fn read_lead_manifest(
    chain: &dyn Chain,
    netuid: u16,
    resolve: &Resolver,
    pin: Option<&str>,
) -> Result<VerifiedManifest> {
    let pin = pin
        .map(str::parse::<ManifestHash>)
        .transpose()
        .map_err(run_manifest::ManifestError::from)?;
    let metagraph = chain.metagraph(netuid).await?;
    let lead = NodeContext::lead_validator(&metagraph).ok_or_else(|| {
        NodeError::Config(format!(
            "no manifest given and netuid {netuid} has no validator with a permit to follow; \
             pass --manifest (RUN_MANIFEST)"
        ))
    })?;
    let peers = resolve_peers(chain, &metagraph, resolve).await?;
    let endpoint = peers.iter().find(|p| p.uid == lead).ok_or_else(|| {
        NodeError::Config(format!(
            "the lead validator (uid {lead}) has no readable bucket commitment; pass --manifest"
        ))
    })?;
    let object = endpoint
        .store
        .get(PUBLISHED_MANIFEST_KEY, MAX_MANIFEST_BYTES)
        .await?;
    let text = std::str::from_utf8(&object.body).map_err(|_| {
        NodeError::Config(format!(
            "the lead validator's {PUBLISHED_MANIFEST_KEY} is not UTF-8 text"
        ))
    })?;
    let origin = format!("published by the lead validator (uid {lead})");
    let run = run_manifest::parse(text, &origin, pin.as_ref())?;
    if pin.is_none() {
        tracing::warn!(
            lead,
            manifest = %run.hash(),
            "following the lead validator's run manifest unpinned; pin it with --manifest-sha256"
        );
    }
    Ok(run)
}

/// The node's manifest: from its arguments, else (miners only) the lead validator's.
pub async fn resolve_manifest(
    args: &NodeArgs,
    chain: &dyn Chain,
    resolve: &Resolver,
    may_follow: bool,
) -> Result<VerifiedManifest> {
    if let Some(run) = manifest_from_args(args)? {
        return Ok(run);
    }
    if !may_follow {
        return Err(NodeError::Config(
            "a validator defines its run: pass --manifest (RUN_MANIFEST)".into(),
        ));
    }
    follow_lead_manifest(chain, args.netuid, resolve, args.manifest_sha256.as_deref()).await
}
