//! Catching up: the lead validator publishes its model every few windows (see
//! `published_checkpoint`) and, per window, the aggregation list pinning the SHA-256 of every object it aggregated. A node that joins late
//! or restarts loads the newest checkpoint it can get (its own or the lead's published one)
//! and replays the missed windows from the retained objects, ending bit-identical with the
//! lead (same bytes, same order, same aggregation).

use worker_storage::{FetchPolicy, ObjectStore, RunLayout, StorageError};

use crate::error::Result;
use crate::exchange::{PeerEndpoint, gather_listed, read_peer_list};
use crate::replica::Replica;
use crate::signing::sr25519_verify;

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
        let (gathered, rejected) = gather_listed(
            &list,
            peers,
            lead,
            layout,
            window,
            policy,
            replica.rules(),
            &sr25519_verify,
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
