//! The devnet's cheating miners, each a [`MinerStrategy`] plugged into the production miner
//! loop: they differ from an honest miner only in what they upload and when. Nothing in the
//! production roles constructs them; `worker miner` always runs [`Honest`].

use std::time::{Duration, SystemTime};

use tch::Tensor;

use crate::behaviour::Behaviour;
use crate::error::Result;
use crate::exchange::resolve_peers;
use crate::miner::Miner;
use crate::miner_strategy::{
    Honest, MinerStrategy, Planned, PlannedFuture, UploadTiming, WindowInput,
};

/// Factor a poisoner multiplies its update with.
const POISON_SCALE: f64 = 1.0e4;
/// Uid offset a wrong-data miner takes its samples from.
const WRONG_DATA_UID_OFFSET: u16 = 1000;
/// How often a copier looks for an object to copy.
const COPY_POLL: Duration = Duration::from_millis(100);

/// The strategy a devnet miner of `behaviour` runs.
pub fn strategy(behaviour: Behaviour) -> Box<dyn MinerStrategy + Send> {
    match behaviour {
        Behaviour::Honest => Box::new(Honest),
        Behaviour::Lazy => Box::new(Lazy),
        Behaviour::Copycat => Box::new(Copycat),
        Behaviour::Poisoner => Box::new(Poisoner),
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
        Box::pin(async move {
            let (_, digest) = miner.assignment(input.dataset, input.window)?;
            let zero = miner.zero_update()?;
            let upload = miner.compress_and_seal(
                input.window,
                &zero,
                digest,
                &input.ctx.hotkey,
                f64::NAN,
            )?;
            Ok(in_time(upload))
        })
    }
}

/// Trains honestly and scales its update by a huge factor.
struct Poisoner;

impl MinerStrategy for Poisoner {
    fn name(&self) -> &'static str {
        Behaviour::Poisoner.name()
    }

    fn produce<'a>(
        &'a mut self,
        miner: &'a mut Miner,
        input: WindowInput<'a>,
    ) -> PlannedFuture<'a> {
        Box::pin(async move {
            let (ids, digest) = miner.assignment(input.dataset, input.window)?;
            let (pseudo, loss) = miner.train(input.dataset, &ids)?;
            let poisoned = pseudo
                .iter()
                .map(|t| t.f_mul_scalar(POISON_SCALE))
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

/// Waits for another miner's object of this window, re-seals it under its own uid and
/// uploads it; when nothing appears in the first half of the upload window it uploads a
/// zero update instead.
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
            let give_up = input.upload_window.start + input.upload_window.length / 2;
            let ctx = input.ctx;
            let metagraph = ctx.chain.metagraph(ctx.args.netuid).await?;
            let peers = resolve_peers(&*ctx.chain, &metagraph, input.resolve).await?;
            let max_bytes = ctx.args.max_object_mib << 20;
            let key_of = |uid| ctx.layout.gradient(input.window, uid);
            while SystemTime::now() < give_up {
                for peer in peers.iter().filter(|p| p.uid != miner.uid) {
                    if let Ok(object) = peer.store.get(&key_of(peer.uid), max_bytes).await {
                        let upload =
                            miner.reseal(input.window, &object.body, digest, &ctx.hotkey)?;
                        return Ok(in_time(upload));
                    }
                }
                tokio::time::sleep(COPY_POLL).await;
            }
            let zero = miner.zero_update()?;
            let upload =
                miner.compress_and_seal(input.window, &zero, digest, &ctx.hotkey, f64::NAN)?;
            Ok(in_time(upload))
        })
    }
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
