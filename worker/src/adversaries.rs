//! The devnet's cheating miners, each a [`MinerStrategy`] plugged into the production miner
//! loop: they differ from an honest miner only in what they upload and when. Nothing in the
//! production roles constructs them; `worker miner` always runs [`Honest`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tch::Tensor;
use worker_sparseloco::{decode, decompress_payload};

use crate::behaviour::Behaviour;
use crate::error::{NodeError, Result};
use crate::exchange::{read_peer_list, resolve_peers};
use crate::gradient_object::GradientObject;
use crate::miner::{Miner, MinerUpload};
use crate::miner_strategy::{
    Honest, MinerStrategy, Planned, PlannedFuture, UploadTiming, WindowInput,
};
use crate::network::NodeContext;

/// Factor a poisoner multiplies its update with.
const POISON_SCALE: f64 = 1.0e4;
/// Uid offset a wrong-data miner takes its samples from.
const WRONG_DATA_UID_OFFSET: u16 = 1000;
/// How often a copier looks for an object to copy.
const COPY_POLL: Duration = Duration::from_millis(100);

/// Scale step between Sybil members' copies (member i uploads the shared update x (1 + i
/// x this)), so no two of the group's objects are byte-exact.
const SYBIL_PERTURBATION: f64 = 1.0e-3;
/// Factor a free-rider scales last window's aggregate with.
const FREE_RIDE_SCALE: f64 = 1.0;

/// What the members of one Sybil group share: per window, the update one member trained.
#[derive(Debug, Default, Clone)]
pub struct SybilGroup {
    inner: Arc<Mutex<SybilState>>,
}

#[derive(Debug, Default)]
struct SybilState {
    members: u16,
    /// Window -> the trained member's object, once it is sealed.
    windows: BTreeMap<u64, Vec<u8>>,
}

impl SybilGroup {
    fn state(&self) -> std::sync::MutexGuard<'_, SybilState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers one more member; returns its index in the group.
    fn join(&self) -> u16 {
        let mut state = self.state();
        state.members += 1;
        state.members - 1
    }
}

/// The strategy a devnet miner of `behaviour` runs; Sybil members share `sybils`.
pub fn strategy(behaviour: Behaviour, sybils: &SybilGroup) -> Box<dyn MinerStrategy + Send> {
    match behaviour {
        Behaviour::Sybil => Box::new(Sybil {
            group: sybils.clone(),
            member: sybils.join(),
        }),
        Behaviour::FreeRider => Box::new(FreeRider::default()),
        Behaviour::Swap => Box::new(Swap),
        Behaviour::Recompress => Box::new(Recompress),
        Behaviour::Honest => Box::new(Honest),
        Behaviour::Lazy => Box::new(Lazy),
        Behaviour::Copycat => Box::new(Copycat),
        Behaviour::Poisoner => Box::new(Poisoner {
            behaviour: Behaviour::Poisoner,
            every: 1,
        }),
        Behaviour::Sleeper => Box::new(Poisoner {
            behaviour: Behaviour::Sleeper,
            every: 2,
        }),
        Behaviour::WrongData => Box::new(WrongData),
        Behaviour::Late => Box::new(Late),
        Behaviour::SignFlip => Box::new(SignFlip),
        Behaviour::Stale => Box::new(Stale::default()),
    }
}

/// Uploads an all-zero update without training.
struct Lazy;

impl MinerStrategy for Lazy {
    fn name(&self) -> &'static str {
        Behaviour::Lazy.name()
    }

    fn produce<'a>(
        &'a mut self,
        miner: &'a mut Miner,
        input: WindowInput<'a>,
    ) -> PlannedFuture<'a> {
        Box::pin(async move { Ok(in_time(zero_upload(miner, &input)?)) })
    }
}

/// Trains honestly and scales its update by a huge factor in every `every`-th window (the
/// poisoner: every window; the sleeper: odd windows, honest in the others).
struct Poisoner {
    behaviour: Behaviour,
    every: u64,
}

impl Poisoner {
    fn poisons(&self, window: u64) -> bool {
        window % self.every == self.every - 1
    }
}

impl MinerStrategy for Poisoner {
    fn name(&self) -> &'static str {
        self.behaviour.name()
    }

    fn produce<'a>(
        &'a mut self,
        miner: &'a mut Miner,
        input: WindowInput<'a>,
    ) -> PlannedFuture<'a> {
        Box::pin(async move {
            let (ids, digest) = miner.assignment(input.dataset, input.window)?;
            let (pseudo, loss) = miner.train(input.dataset, &ids)?;
            let scale = if self.poisons(input.window) {
                POISON_SCALE
            } else {
                1.0
            };
            let poisoned = pseudo
                .iter()
                .map(|t| t.f_mul_scalar(scale))
                .collect::<Result<Vec<Tensor>, _>>()?;
            let upload = miner.compress_and_seal(
                input.window,
                &poisoned,
                digest,
                &input.ctx.hotkey,
                loss,
            )?;
            Ok(in_time(upload))
        })
    }
}

/// Trains on another uid's samples while claiming its own assignment.
struct WrongData;

impl MinerStrategy for WrongData {
    fn name(&self) -> &'static str {
        Behaviour::WrongData.name()
    }

    fn produce<'a>(
        &'a mut self,
        miner: &'a mut Miner,
        input: WindowInput<'a>,
    ) -> PlannedFuture<'a> {
        Box::pin(async move {
            let (_, digest) = miner.assignment(input.dataset, input.window)?;
            let (other, _) = crate::miner::assignment(
                miner.settings(),
                input.dataset,
                miner.uid.wrapping_add(WRONG_DATA_UID_OFFSET),
                input.window,
            )?;
            let (pseudo, loss) = miner.train(input.dataset, &other)?;
            let upload =
                miner.compress_and_seal(input.window, &pseudo, digest, &input.ctx.hotkey, loss)?;
            Ok(in_time(upload))
        })
    }
}

/// Trains honestly and uploads after the deadline.
struct Late;

impl MinerStrategy for Late {
    fn name(&self) -> &'static str {
        Behaviour::Late.name()
    }

    fn produce<'a>(
        &'a mut self,
        miner: &'a mut Miner,
        input: WindowInput<'a>,
    ) -> PlannedFuture<'a> {
        Box::pin(async move {
            let upload = miner.produce(input.window, input.dataset, &input.ctx.hotkey)?;
            Ok(Planned {
                upload,
                timing: UploadTiming::AfterDeadline,
            })
        })
    }
}

/// Waits for the best-paid other miner's object of this window, re-seals it under its own
/// uid and uploads it; when nothing appears in time it uploads a zero update instead.
struct Copycat;

impl MinerStrategy for Copycat {
    fn name(&self) -> &'static str {
        Behaviour::Copycat.name()
    }

    fn produce<'a>(
        &'a mut self,
        miner: &'a mut Miner,
        input: WindowInput<'a>,
    ) -> PlannedFuture<'a> {
        Box::pin(async move {
            let (_, digest) = miner.assignment(input.dataset, input.window)?;
            let ctx = input.ctx;
            let upload = match peer_object(miner, &input).await? {
                Some(object) => miner.reseal(input.window, &object, digest, &ctx.hotkey)?,
                None => zero_upload(miner, &input)?,
            };
            Ok(in_time(upload))
        })
    }
}

/// Decodes another miner's object of this window and compresses its dense update through
/// its own error feedback (so the selection can drift from the original's), then uploads
/// it; a zero update when nothing appears in time.
struct Recompress;

impl MinerStrategy for Recompress {
    fn name(&self) -> &'static str {
        Behaviour::Recompress.name()
    }

    fn produce<'a>(
        &'a mut self,
        miner: &'a mut Miner,
        input: WindowInput<'a>,
    ) -> PlannedFuture<'a> {
        Box::pin(async move {
            let upload = match peer_object(miner, &input).await? {
                Some(object) => {
                    let dense = dense_update(miner, &object, 1.0)?;
                    seal_untrained(miner, &input, &dense)?
                }
                None => zero_upload(miner, &input)?,
            };
            Ok(in_time(upload))
        })
    }
}

/// The latest a copier waits for something to copy: nine tenths into the upload window
/// (miners start a window once the lead's list of the last one is out, which can be well
/// into it).
fn copy_deadline(input: &WindowInput<'_>) -> SystemTime {
    input.upload_window.start + input.upload_window.length.mul_f64(0.9)
}

/// The object of this window of the best-paid other miner (highest incentive, then lowest
/// uid), polled for until [`copy_deadline`]; then the best-paid one found, if any.
async fn peer_object(miner: &Miner, input: &WindowInput<'_>) -> Result<Option<Bytes>> {
    let give_up = copy_deadline(input);
    let ctx = input.ctx;
    let metagraph = ctx.chain.metagraph(ctx.args.netuid).await?;
    let peers = resolve_peers(&*ctx.chain, &metagraph, input.resolve).await?;
    let lead = NodeContext::lead_validator(&metagraph);
    let incentive = |uid: u16| {
        metagraph
            .neurons
            .iter()
            .find(|n| n.uid == uid)
            .map_or(0.0, |n| n.incentive)
    };
    let mut miners: Vec<_> = peers
        .iter()
        .filter(|p| p.uid != miner.uid && Some(p.uid) != lead)
        .collect();
    // Best-paid first.
    miners.sort_by(|a, b| {
        incentive(b.uid)
            .total_cmp(&incentive(a.uid))
            .then(a.uid.cmp(&b.uid))
    });
    let max_bytes = ctx.args.max_object_mib << 20;
    let key_of = |uid| ctx.layout.gradient(input.window, uid);
    let mut best: Option<(usize, Bytes)> = None;
    loop {
        let better = best.as_ref().map_or(miners.len(), |(rank, _)| *rank);
        for (rank, peer) in miners.iter().enumerate().take(better) {
            if let Ok(object) = peer.store.get(&key_of(peer.uid), max_bytes).await {
                best = Some((rank, object.body));
                break;
            }
        }
        if matches!(best, Some((0, _))) || SystemTime::now() >= give_up {
            return Ok(best.map(|(_, body)| body));
        }
        tokio::time::sleep(COPY_POLL).await;
    }
}

/// The dense update of a sealed object `object`, times `scale`.
fn dense_update(miner: &Miner, object: &[u8], scale: f64) -> Result<Vec<Tensor>> {
    let parsed = GradientObject::parse(object, usize::MAX)?;
    let payload = decode(&parsed.payload, miner.replica.specs())?;
    let dense = decompress_payload(&payload, miner.replica.model.device())?;
    Ok(dense
        .iter()
        .map(|t| t.f_mul_scalar(scale))
        .collect::<Result<Vec<Tensor>, _>>()?)
}

/// `update` (not trained here: no training loss) compressed and sealed for this window,
/// claiming the miner's assignment.
fn seal_untrained(
    miner: &mut Miner,
    input: &WindowInput<'_>,
    update: &[Tensor],
) -> Result<MinerUpload> {
    let (_, digest) = miner.assignment(input.dataset, input.window)?;
    miner.compress_and_seal(input.window, update, digest, &input.ctx.hotkey, f64::NAN)
}

/// An all-zero update sealed for this window.
fn zero_upload(miner: &mut Miner, input: &WindowInput<'_>) -> Result<MinerUpload> {
    let zero = miner.zero_update()?;
    seal_untrained(miner, input, &zero)
}

/// One member of a Sybil group (one trainer, several hotkeys). Member 0 trains on its own
/// assignment; every other member waits for that object and uploads the same update
/// scaled by `1 + member x SYBIL_PERTURBATION`, compressed through its own error feedback
/// and sealed under its own uid, hotkey and assignment digest.
struct Sybil {
    group: SybilGroup,
    member: u16,
}

impl MinerStrategy for Sybil {
    fn name(&self) -> &'static str {
        Behaviour::Sybil.name()
    }

    fn produce<'a>(
        &'a mut self,
        miner: &'a mut Miner,
        input: WindowInput<'a>,
    ) -> PlannedFuture<'a> {
        Box::pin(async move {
            if self.member == 0 {
                let upload = miner.produce(input.window, input.dataset, &input.ctx.hotkey)?;
                let mut state = self.group.state();
                // Only the current window's update is ever asked for.
                state.windows.retain(|w, _| *w + 1 >= input.window);
                state.windows.insert(input.window, upload.object.clone());
                return Ok(in_time(upload));
            }
            let give_up = copy_deadline(&input);
            let shared = loop {
                if let Some(object) = self.group.state().windows.get(&input.window) {
                    break Some(object.clone());
                }
                if SystemTime::now() >= give_up {
                    break None;
                }
                tokio::time::sleep(COPY_POLL).await;
            };
            let upload = match shared {
                Some(object) => {
                    let scale = 1.0 + f64::from(self.member) * SYBIL_PERTURBATION;
                    let dense = dense_update(miner, &object, scale)?;
                    seal_untrained(miner, &input, &dense)?
                }
                None => zero_upload(miner, &input)?,
            };
            Ok(in_time(upload))
        })
    }
}

/// Never trains: uploads `FREE_RIDE_SCALE` x the change the last outer step made to the
/// global model (last window's aggregate as a pseudo-gradient), claiming its assignment.
/// In its first window there is no aggregate yet and it uploads a zero update.
#[derive(Default)]
struct FreeRider {
    /// The global model's parameters when this miner last produced.
    previous: Option<Vec<Tensor>>,
}

impl MinerStrategy for FreeRider {
    fn name(&self) -> &'static str {
        Behaviour::FreeRider.name()
    }

    fn produce<'a>(
        &'a mut self,
        miner: &'a mut Miner,
        input: WindowInput<'a>,
    ) -> PlannedFuture<'a> {
        Box::pin(async move {
            let now: Vec<Tensor> = miner
                .replica
                .model
                .parameters()
                .iter()
                .map(Tensor::copy)
                .collect();
            let outer_lr = miner.settings().outer_lr;
            let update = match self.previous.replace(now) {
                // The outer step was params -= outer_lr x aggregate.
                Some(previous) => previous
                    .iter()
                    .zip(miner.replica.model.parameters())
                    .map(|(before, after)| {
                        before
                            .f_sub(&after)?
                            .f_mul_scalar(FREE_RIDE_SCALE / outer_lr)
                    })
                    .collect::<Result<Vec<Tensor>, _>>()?,
                None => miner.zero_update()?,
            };
            Ok(in_time(seal_untrained(miner, &input, &update)?))
        })
    }
}

/// Trains honestly and uploads in time; once the lead validator has published the window's
/// aggregation list (it evaluated and pinned the honest object) it overwrites the object
/// with the same update x `POISON_SCALE`, validly signed. Everyone who gathers it must
/// refuse the new bytes as a digest mismatch.
struct Swap;

impl MinerStrategy for Swap {
    fn name(&self) -> &'static str {
        Behaviour::Swap.name()
    }

    fn produce<'a>(
        &'a mut self,
        miner: &'a mut Miner,
        input: WindowInput<'a>,
    ) -> PlannedFuture<'a> {
        Box::pin(async move {
            let (ids, digest) = miner.assignment(input.dataset, input.window)?;
            let (pseudo, loss) = miner.train(input.dataset, &ids)?;
            let honest =
                miner.compress_and_seal(input.window, &pseudo, digest, &input.ctx.hotkey, loss)?;
            let dense = dense_update(miner, &honest.object, POISON_SCALE)?;
            let poisoned = miner.compress_and_seal_detached(
                input.window,
                &dense,
                digest,
                &input.ctx.hotkey,
                loss,
            )?;
            spawn_swap(&input, poisoned.object).await?;
            Ok(in_time(honest))
        })
    }
}

/// Starts the task that overwrites this node's object of `window` with `poisoned` as soon
/// as the lead validator's list for `window` is readable (it gives up three windows later).
async fn spawn_swap(input: &WindowInput<'_>, poisoned: Vec<u8>) -> Result<()> {
    let (ctx, window) = (input.ctx, input.window);
    let metagraph = ctx.chain.metagraph(ctx.args.netuid).await?;
    let lead = NodeContext::lead_validator(&metagraph)
        .ok_or_else(|| NodeError::Config("a swapper needs a lead validator".into()))?;
    let peers = resolve_peers(&*ctx.chain, &metagraph, input.resolve).await?;
    let lead_store = peers
        .into_iter()
        .find(|p| p.uid == lead)
        .map(|p| p.store)
        .ok_or_else(|| NodeError::Config("the lead validator committed no bucket".into()))?;
    let (store, layout, manifest) = (
        ctx.store.clone(),
        ctx.layout.clone(),
        ctx.settings.manifest_hash(),
    );
    let give_up = SystemTime::now() + ctx.window_duration() * 3;
    let key = layout.gradient(window, ctx.uid);
    tokio::spawn(async move {
        while SystemTime::now() < give_up {
            if let Ok(Some(_)) =
                read_peer_list(&*lead_store, &layout, lead, &manifest, window).await
            {
                match store.put(&key, Bytes::from(poisoned)).await {
                    Ok(()) => tracing::warn!(window, "swapped the evaluated object"),
                    Err(err) => tracing::warn!(%err, "swap failed"),
                }
                return;
            }
            tokio::time::sleep(COPY_POLL).await;
        }
    });
    Ok(())
}

/// Trains honestly and uploads the negated update: the same magnitude as an honest one, so
/// only its effect on the loss tells it apart.
struct SignFlip;

impl MinerStrategy for SignFlip {
    fn name(&self) -> &'static str {
        Behaviour::SignFlip.name()
    }

    fn produce<'a>(
        &'a mut self,
        miner: &'a mut Miner,
        input: WindowInput<'a>,
    ) -> PlannedFuture<'a> {
        Box::pin(async move {
            let (ids, digest) = miner.assignment(input.dataset, input.window)?;
            let (pseudo, loss) = miner.train(input.dataset, &ids)?;
            let flipped = pseudo
                .iter()
                .map(Tensor::f_neg)
                .collect::<Result<Vec<Tensor>, _>>()?;
            let upload =
                miner.compress_and_seal(input.window, &flipped, digest, &input.ctx.hotkey, loss)?;
            Ok(in_time(upload))
        })
    }
}

/// Trains in its first window only; afterwards it re-seals that first object for each new
/// window (claiming the new assignment) instead of training.
#[derive(Default)]
struct Stale {
    first: Option<Vec<u8>>,
}

impl MinerStrategy for Stale {
    fn name(&self) -> &'static str {
        Behaviour::Stale.name()
    }

    fn produce<'a>(
        &'a mut self,
        miner: &'a mut Miner,
        input: WindowInput<'a>,
    ) -> PlannedFuture<'a> {
        Box::pin(async move {
            let upload = match &self.first {
                None => {
                    let upload = miner.produce(input.window, input.dataset, &input.ctx.hotkey)?;
                    self.first = Some(upload.object.clone());
                    upload
                }
                Some(first) => {
                    let (_, digest) = miner.assignment(input.dataset, input.window)?;
                    miner.reseal(input.window, first, digest, &input.ctx.hotkey)?
                }
            };
            Ok(in_time(upload))
        })
    }
}

fn in_time(upload: crate::miner::MinerUpload) -> Planned {
    Planned {
        upload,
        timing: UploadTiming::BeforeDeadline,
    }
}
