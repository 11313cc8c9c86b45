//! `worker miner`: the production miner loop, one window after another, resuming from its
//! checkpoint after a restart and catching up from the lead validator's lists.
//!
//! A window is: train on the model after the previous outer step, upload the sync sample
//! and the signed object before the deadline, wait for the lead's digest-pinned list, gather
//! what it lists, apply the outer step. By default these run in sequence, so the miner
//! trains only once the previous window's list is out (the grace period plus the lead's
//! evaluation into the window). With `--overlap` the gather of window w runs beside the
//! training of w+1, which starts at w+1's first block from the model before w's outer step;
//! w's outer step is applied when that training ends, before w+1's object and sync sample
//! are uploaded, so every update is one window late but the miner is in sync when it
//! uploads. Its checkpoint is written at that outer step, when the error feedback already
//! holds w+1's compression residue: a miner restarted from it before w+1's outer step
//! trains w+1 again and adds that window to its error feedback a second time (the model,
//! which every node shares, is unaffected; the error feedback decays every window).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use worker_storage::{FetchPolicy, StorageError, UploadWindow};

use crate::error::{NodeError, Result};
use crate::exchange::{Gathered, gather_listed, resolve_peers, upload_sync_sample};
use crate::miner::{Miner, MinerUpload};
use crate::miner_strategy::{Honest, MinerStrategy, Planned, UploadTiming, WindowInput};
use crate::network::{NodeContext, Resolver, Settled, wait_for_list, window_completed};
use crate::replica::{ObjectRules, Replica};
use crate::role_events::{MinerWindowReport, NodeRole};
use crate::signing::sr25519_verify;
use crate::training_ranks::TrainingRanks;

/// `worker miner`: trains every window until the process is stopped.
pub async fn run_miner(ctx: NodeContext, resolve: Arc<Resolver>) -> Result<()> {
    run_miner_with(ctx, resolve, &mut Honest).await
}

/// The miner loop with the upload produced by `strategy` (production: [`Honest`]).
pub async fn run_miner_with(
    ctx: NodeContext,
    resolve: Arc<Resolver>,
    strategy: &mut dyn MinerStrategy,
) -> Result<()> {
    let ctx = Arc::new(ctx);
    let device = ctx.device()?;
    let mut miner = Miner::for_node(ctx.uid, &ctx.settings, device, &ctx.args.ranks)?;
    let checkpoint = ctx
        .args
        .checkpoint_dir
        .as_ref()
        .map(|d| d.join("miner.ckpt"));
    let mut state = LoopState::default();
    if let Some(path) = checkpoint.as_ref().filter(|p| p.exists()) {
        state.done = Some(miner.load_checkpoint(path)?);
        tracing::info!(window = ?state.done, "resumed from checkpoint");
    }
    state.attempted = state.done;
    let dataset = ctx.dataset()?;
    ctx.start_role(NodeRole::Miner);
    let finisher = Finisher {
        ctx: &ctx,
        checkpoint: checkpoint.as_deref(),
        strategy: strategy.name(),
    };
    let mut completed = 0;
    while ctx.args.max_windows.is_none_or(|max| completed < max) && !ctx.finished(state.done) {
        if state.pending.is_some()
            && ctx
                .args
                .until_window
                .is_some_and(|u| state.attempted >= Some(u))
        {
            // The last window is uploaded: only its outer step is left.
            finisher.finish_pending(&mut miner, &mut state).await?;
            continue;
        }
        if state.pending.is_none() {
            match ctx
                .settle(&mut miner.replica, &mut state.done, &*resolve)
                .await?
            {
                Settled::Ready => {}
                Settled::Wait => continue,
                Settled::Finished => break,
            }
        }
        let Some((window, upload_window)) = ctx
            .wait_next_window(state.attempted.max(state.done))
            .await?
        else {
            continue;
        };
        if state.pending.is_none()
            && state.attempted > state.done
            && state.resettled != Some(window)
        {
            // A window was worked on but its outer step is missing and nothing gathers it
            // (an overlapped gather failed, or a window was abandoned before its gather):
            // settle once more, now in this window, so the catch-up reaches the window before
            // it (settling waits for the lead's list); else it would train a step behind.
            state.resettled = Some(window);
            continue;
        }
        state.attempted = Some(window);
        completed += 1;
        let input = WindowInput {
            ctx: &ctx,
            resolve: &*resolve,
            window,
            dataset: &dataset,
            upload_window,
        };
        let trained = train(strategy, &mut miner, input).await;
        let Some((planned, timing)) = window_completed(&ctx, window, trained)? else {
            continue;
        };
        // Overlapped: the previous window's outer step, so this object is uploaded in sync.
        if !finisher.finish_pending(&mut miner, &mut state).await? {
            // It could not be taken from the gather: replay it now if the lead's list and
            // objects can be had, so this window is still uploaded in sync.
            ctx.settle(&mut miner.replica, &mut state.done, &*resolve)
                .await?;
        }
        let uploaded = publish(&ctx, &miner.replica, window, upload_window, planned).await;
        let Some((upload, in_time)) = window_completed(&ctx, window, uploaded)? else {
            continue;
        };
        let headroom = upload_window
            .not_after()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let trained = TrainedWindow {
            window,
            upload,
            timing,
            headroom: if in_time { headroom } else { Duration::ZERO },
            in_time,
        };
        let gather = GatherJob {
            ctx: ctx.clone(),
            resolve: resolve.clone(),
            rules: miner.replica.rules().clone(),
            window,
            policy: ctx.policy(upload_window, miner.replica.specs()),
            upload_window,
        };
        if ctx.args.overlap {
            // Only a model at the window before can take this window's outer step next.
            if state.done.map_or(0, |d| d + 1) == window {
                state.pending = Some(Pending {
                    trained,
                    gather: tokio::spawn(gather.run()),
                });
            }
            // Otherwise the next catch-up replays the missed window, then this one.
            continue;
        }
        let gathered = gather.run().await;
        if let Some(gathered) = window_completed(&ctx, window, gathered)? {
            finisher
                .complete(&mut miner, &mut state, trained, gathered)
                .await?;
        }
    }
    finisher.finish_pending(&mut miner, &mut state).await?;
    if let (Some(path), Some(done)) = (&checkpoint, state.done)
        && state.saved < Some(done)
    {
        // The last windows came from a catch-up: keep them too.
        miner.save_checkpoint(path, done)?;
    }
    Ok(())
}

/// Where the loop stands.
#[derive(Default)]
struct LoopState {
    /// The last window whose outer step the model holds.
    done: Option<u64>,
    /// The last window this loop trained for (an abandoned one is replayed by the next
    /// catch-up).
    attempted: Option<u64>,
    /// Overlapped mode: the uploaded window whose aggregate is being gathered.
    pending: Option<Pending>,
    /// The window of the last checkpoint written.
    saved: Option<u64>,
    /// The last window the loop settled again for before training it.
    resettled: Option<u64>,
}

/// A window whose object is uploaded: its figures for the report.
struct TrainedWindow {
    window: u64,
    upload: MinerUpload,
    timing: Timing,
    /// Time left until the deadline once the object was stored (zero when it missed it).
    headroom: Duration,
    /// Whether it was stored before the deadline.
    in_time: bool,
}

/// An uploaded window whose list and objects are being gathered beside the next training.
struct Pending {
    trained: TrainedWindow,
    gather: tokio::task::JoinHandle<Result<GatheredWindow>>,
}

/// What a window's gather brought.
struct GatheredWindow {
    /// The objects the lead listed, in list order.
    gathered: Vec<Gathered>,
    /// The miner's incentive in the metagraph read after the deadline.
    incentive: Option<f64>,
}

/// When a window's training ran.
#[derive(Debug, Clone, Copy)]
struct Timing {
    /// Seconds from the window's first block to the start of training.
    started_secs: f64,
    /// Time spent producing the upload (training and compression).
    compute: Duration,
}

/// Trains `window` with `strategy`; returns its upload and when the training ran.
async fn train(
    strategy: &mut dyn MinerStrategy,
    miner: &mut Miner,
    input: WindowInput<'_>,
) -> Result<(Planned, Timing)> {
    let span = tracing::info_span!("window", window = input.window, uid = input.ctx.uid);
    let _guard = span.enter();
    let started_secs = seconds_since(input.upload_window.start);
    let started = Instant::now();
    let planned = strategy.produce(miner, input).await?;
    let timing = Timing {
        started_secs,
        compute: started.elapsed(),
    };
    Ok((planned, timing))
}

/// Seconds from `start` to now (negative when `start` is still ahead).
fn seconds_since(start: SystemTime) -> f64 {
    match SystemTime::now().duration_since(start) {
        Ok(after) => after.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// Uploads the sync sample of the model the miner now holds, then `planned`'s object
/// (before the deadline, bounded by it, or once it passed for a late strategy). Returns the
/// upload's figures and whether the object was stored in time.
async fn publish(
    ctx: &NodeContext,
    replica: &Replica,
    window: u64,
    upload_window: UploadWindow,
    mut planned: Planned,
) -> Result<(MinerUpload, bool)> {
    upload_sync_sample(
        &*ctx.store,
        &ctx.layout,
        window,
        ctx.uid,
        &ctx.settings.manifest_hash(),
        &replica.sync_sample()?,
    )
    .await?;
    // The object moves into the request body; only its figures stay for the report.
    let object = std::mem::take(&mut planned.upload.object);
    let in_time = upload(
        ctx,
        window,
        &upload_window,
        object,
        &planned.upload,
        planned.timing,
    )
    .await;
    Ok((planned.upload, in_time))
}

/// Everything a window's gather needs, owned, so it can run as a task of its own.
struct GatherJob {
    ctx: Arc<NodeContext>,
    resolve: Arc<Resolver>,
    rules: ObjectRules,
    window: u64,
    policy: FetchPolicy,
    upload_window: UploadWindow,
}

impl GatherJob {
    /// Waits for the deadline and the lead's list of the window, then gathers every object
    /// it lists; an error when the list or any listed object is available nowhere intact
    /// (nobody can know what the run aggregated: the next catch-up replays the window).
    async fn run(self) -> Result<GatheredWindow> {
        let Self {
            ctx,
            resolve,
            rules,
            window,
            policy,
            upload_window,
        } = self;
        let upload_window = ctx.wait_for_deadline(window, upload_window).await;
        let policy = FetchPolicy {
            upload_window: Some(upload_window),
            ..policy
        };
        let metagraph = ctx.chain.metagraph(ctx.args.netuid).await?;
        let incentive = metagraph
            .neurons
            .iter()
            .find(|n| n.uid == ctx.uid)
            .map(|n| n.incentive);
        let peers = resolve_peers(&*ctx.chain, &metagraph, &*resolve).await?;
        let lead = ctx.lead_endpoint(&metagraph, &peers);
        let list = match &lead {
            Some(lead) => wait_for_list(&ctx, lead, window).await,
            None => None,
        };
        let (Some(list), Some(lead)) = (list, lead.as_ref()) else {
            return Err(NodeError::Storage(StorageError::NotFound {
                key: ctx.layout.peer_list(window, lead.map_or(0, |l| l.uid)),
            }));
        };
        let (gathered, rejected) = gather_listed(
            &list,
            &peers,
            lead,
            &ctx.layout,
            window,
            &policy,
            &rules,
            &sr25519_verify,
        )
        .await;
        if gathered.len() != list.objects.len() {
            tracing::warn!(window, ?rejected, "listed objects missing");
            return Err(NodeError::Storage(StorageError::NotFound {
                key: format!(
                    "{} listed objects of window {window}",
                    list.objects.len() - gathered.len()
                ),
            }));
        }
        Ok(GatheredWindow {
            gathered,
            incentive,
        })
    }
}

/// Applies a gathered window and records it: outer step, checkpoint, report, retention.
struct Finisher<'a> {
    ctx: &'a NodeContext,
    checkpoint: Option<&'a Path>,
    strategy: &'static str,
}

impl Finisher<'_> {
    /// Waits for the pending window's gather (overlapped mode) and completes it. Returns
    /// whether the model now holds the outer step of every window before the next one
    /// (true without a pending window); false when the gather failed or the model was not
    /// at the window before it, so the outer step could not be applied.
    async fn finish_pending(&self, miner: &mut Miner, state: &mut LoopState) -> Result<bool> {
        let Some(Pending { trained, gather }) = state.pending.take() else {
            return Ok(true);
        };
        let window = trained.window;
        let gathered = match gather.await {
            Ok(result) => result,
            Err(joined) => Err(NodeError::Config(format!(
                "gather of window {window}: {joined}"
            ))),
        };
        let Some(gathered) = window_completed(self.ctx, window, gathered)? else {
            return Ok(false);
        };
        if state.done.map_or(0, |d| d + 1) != window {
            tracing::warn!(window, done = ?state.done, "not at the window before: catching up");
            return Ok(false);
        }
        self.complete(miner, state, trained, gathered).await?;
        Ok(true)
    }

    async fn complete(
        &self,
        miner: &mut Miner,
        state: &mut LoopState,
        trained: TrainedWindow,
        gathered: GatheredWindow,
    ) -> Result<()> {
        let ctx = self.ctx;
        let window = trained.window;
        tracing::info!(window, aggregated = gathered.gathered.len(), "outer step");
        let payloads: Vec<_> = gathered.gathered.into_iter().map(|g| g.payload).collect();
        miner.replica.outer_step(&payloads, ctx.settings.outer_lr)?;
        if let Some(path) = self.checkpoint {
            miner.save_checkpoint(path, window)?;
            state.saved = Some(window);
        }
        let report = MinerWindowReport {
            uid: ctx.uid,
            window,
            strategy: self.strategy,
            train_loss: trained.upload.train_loss,
            payload_bytes: trained.upload.payload_bytes,
            compression_ratio: trained.upload.compression_ratio,
            uploaded_in_time: trained.in_time,
            compute_secs: trained.timing.compute.as_secs_f64(),
            window_secs: ctx.window_duration().as_secs_f64(),
            started_secs: trained.timing.started_secs,
            headroom_secs: trained.headroom.as_secs_f64(),
            sync_sample: miner.replica.sync_sample()?,
            incentive: gathered.incentive,
            ranks: miner.ranks().map_or(1, TrainingRanks::world_size),
        };
        tracing::info!(
            window,
            utilisation = format!("{:.1}%", 100.0 * report.utilisation()),
            attainable = format!("{:.1}%", 100.0 * report.attainable_utilisation()),
            compute_secs = report.compute_secs,
            started_secs = report.started_secs,
            "window done"
        );
        ctx.events.miner_window(&report);
        ctx.retain(window).await;
        state.done = Some(window);
        Ok(())
    }
}

/// Stores this window's `object` (whose figures `upload` holds, for the log): before the
/// deadline (bounded by it), or once it passed for a strategy that uploads late. Returns
/// whether it was stored in time.
async fn upload(
    ctx: &NodeContext,
    window: u64,
    upload_window: &UploadWindow,
    object: Vec<u8>,
    upload: &MinerUpload,
    timing: UploadTiming,
) -> bool {
    let key = ctx.layout.gradient(window, ctx.uid);
    let body = bytes::Bytes::from(object);
    if timing == UploadTiming::AfterDeadline {
        // Stored times have whole-second resolution (as on S3): wait into the next second.
        NodeContext::wait_deadline(upload_window).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
        if let Err(err) = ctx.store.put(&key, body).await {
            tracing::warn!(%err, "late upload failed");
        }
        return false;
    }
    let remaining = upload_window
        .not_after()
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    match ctx
        .store
        .put_before(&key, body, Instant::now() + remaining)
        .await
    {
        Ok(()) => {
            tracing::info!(
                loss = upload.train_loss,
                bytes = upload.payload_bytes,
                "uploaded"
            );
            true
        }
        Err(err) => {
            tracing::warn!(%err, "upload missed the window");
            false
        }
    }
}
