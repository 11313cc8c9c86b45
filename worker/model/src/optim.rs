//! AdamW with global-norm gradient clipping, state kept across windows.
//!
//! Implemented on tensors (not libtorch's C++ optimizer) so the moments can be
//! checkpointed exactly. Semantics follow `torch.optim.AdamW` (decoupled weight decay,
//! bias-corrected moments); moments and updates are fp32 and applied to the canonical
//! (master) parameters.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::{ModelError, Result};
use crate::model::Llama;
use crate::parallel::{Collectives, FlatShard};
use crate::schedule::LrSchedule;

/// Inner-optimizer hyper-parameters (defaults: the reference SparseLoCo setup).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Learning-rate schedule (peak 1.17e-4, warmup, cosine to 0.1x).
    pub schedule: LrSchedule,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator epsilon.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Whether 1-D tensors (RMSNorm weights) are decayed too (default: no).
    pub decay_vectors: bool,
    /// Global gradient-norm clip (`None` disables clipping).
    pub grad_clip: Option<f64>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            schedule: LrSchedule {
                peak: 1.17e-4,
                warmup_steps: 500,
                total_steps: 100_000,
                min_ratio: 0.1,
            },
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            decay_vectors: false,
            grad_clip: Some(1.0),
        }
    }
}

/// Statistics of one optimizer step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// AdamW state: step counter and fp32 moments in parameter order. A ZeRO-1 optimizer
/// ([`AdamW::sharded`]) keeps, per parameter, 1-D moments of only the elements its rank owns.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    step: u64,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
    shard: Option<FlatShard>,
    gather_chunk: i64,
}

impl AdamW {
    /// Fresh optimizer with zero moments shaped like `model`'s parameters.
    pub fn new(config: AdamWConfig, model: &Llama) -> Result<AdamW> {
        let zeros = || -> Result<Vec<Tensor>> {
            model
                .canonical()
                .iter()
                .map(|p| Ok(p.f_zeros_like()?.f_to_kind(Kind::Float)?))
                .collect()
        };
        Ok(AdamW {
            config,
            step: 0,
            exp_avg: zeros()?,
            exp_avg_sq: zeros()?,
            shard: None,
            gather_chunk: DEFAULT_GATHER_CHUNK,
        })
    }

    /// An unsharded optimizer holding the given moments where they are (any device): the
    /// full state of a ZeRO-1 group, gathered for a checkpoint, or a host-side target to
    /// load one into.
    pub fn from_state(
        config: AdamWConfig,
        step: u64,
        exp_avg: Vec<Tensor>,
        exp_avg_sq: Vec<Tensor>,
    ) -> AdamW {
        AdamW {
            config,
            step,
            exp_avg,
            exp_avg_sq,
            shard: None,
            gather_chunk: DEFAULT_GATHER_CHUNK,
        }
    }

    /// ZeRO-1 optimizer for `rank` of `world_size`: moments only for the rank's
    /// [`FlatShard`]; each step updates those elements and all-gathers the parameters.
    pub fn sharded(
        config: AdamWConfig,
        model: &Llama,
        rank: usize,
        world_size: usize,
    ) -> Result<AdamW> {
        let numels: Vec<i64> = model.canonical().iter().map(|t| t.numel() as i64).collect();
        let shard = FlatShard::new(&numels, rank, world_size);
        let device = model.device();
        let zeros = || -> Result<Vec<Tensor>> {
            (0..numels.len())
                .map(|i| {
                    Ok(Tensor::f_zeros(
                        [shard.owned_len(i)],
                        (Kind::Float, device),
                    )?)
                })
                .collect()
        };
        Ok(AdamW {
            config,
            step: 0,
            exp_avg: zeros()?,
            exp_avg_sq: zeros()?,
            shard: Some(shard),
            gather_chunk: DEFAULT_GATHER_CHUNK,
        })
    }

    /// Elements per rank in each ZeRO-1 parameter all-gather (fewer, larger collectives vs
    /// smaller transient buffers; default [`DEFAULT_GATHER_CHUNK`]).
    pub fn set_gather_chunk(&mut self, elements: i64) {
        self.gather_chunk = elements.max(1);
    }

    /// The rank's share of the parameters when ZeRO-1 sharded.
    pub fn shard(&self) -> Option<&FlatShard> {
        self.shard.as_ref()
    }

    /// Bytes held by the moments (what ZeRO-1 divides by the world size).
    pub fn state_bytes(&self) -> u64 {
        self.exp_avg
            .iter()
            .chain(&self.exp_avg_sq)
            .map(|t| t.numel() as u64 * t.kind().elt_size_in_bytes() as u64)
            .sum()
    }

    /// Hyper-parameters.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// Inner steps taken so far (drives the schedule).
    pub fn step_count(&self) -> u64 {
        self.step
    }

    /// Learning rate the next step will use.
    pub fn next_lr(&self) -> f64 {
        self.config.schedule.lr_at(self.step)
    }

    /// First moments in parameter order (sharded: 1-D, only the owned elements).
    pub fn exp_avg(&self) -> &[Tensor] {
        &self.exp_avg
    }

    /// Second moments in parameter order (sharded: 1-D, only the owned elements).
    pub fn exp_avg_sq(&self) -> &[Tensor] {
        &self.exp_avg_sq
    }

    /// Replaces the whole state (used when loading a checkpoint).
    pub fn load_state(
        &mut self,
        step: u64,
        exp_avg: Vec<Tensor>,
        exp_avg_sq: Vec<Tensor>,
    ) -> Result<()> {
        let same = |a: &[Tensor], b: &[Tensor]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.size() == y.size())
        };
        if !same(&self.exp_avg, &exp_avg) || !same(&self.exp_avg_sq, &exp_avg_sq) {
            return Err(ModelError::Shape(
                "optimizer moments do not match the model".into(),
            ));
        }
        let device = self
            .exp_avg
            .first()
            .map(Tensor::device)
            .unwrap_or(tch::Device::Cpu);
        let to = |v: Vec<Tensor>| -> Result<Vec<Tensor>> {
            v.into_iter()
                .map(|t| Ok(t.f_to_device(device)?.f_to_kind(Kind::Float)?))
                .collect()
        };
        self.exp_avg = to(exp_avg)?;
        self.exp_avg_sq = to(exp_avg_sq)?;
        self.step = step;
        Ok(())
    }

    /// One AdamW step from the gradients accumulated on `model`'s compute weights, then
    /// clears them. Missing gradients count as zero.
    pub fn step(&mut self, model: &mut Llama) -> Result<StepStats> {
        let grads = Self::gradients(model)?;
        self.step_with(model, grads, None)
    }

    /// The accumulated gradients as fp32 (aliasing the `.grad` tensors when those are
    /// fp32), zeros where a weight has none.
    pub(crate) fn gradients(model: &Llama) -> Result<Vec<Tensor>> {
        model
            .compute_weights()
            .iter()
            .map(|w| {
                let g = w.grad();
                if g.defined() {
                    Ok(g.f_to_kind(Kind::Float)?)
                } else {
                    Ok(w.f_zeros_like()?.f_to_kind(Kind::Float)?)
                }
            })
            .collect()
    }

    /// One step from `grads` (fp32, parameter order, already summed over ranks when data
    /// parallel); a sharded optimizer needs `collectives` to reassemble the parameters.
    pub(crate) fn step_with(
        &mut self,
        model: &mut Llama,
        grads: Vec<Tensor>,
        collectives: Option<&dyn Collectives>,
    ) -> Result<StepStats> {
        let lr = self.next_lr();
        let grad_norm = tch::no_grad(|| -> Result<f64> {
            let norms = grads
                .iter()
                .map(|g| g.f_norm())
                .collect::<Result<Vec<_>, _>>()?;
            let total = Tensor::f_stack(&norms, 0)?.f_norm()?;
            let norm = total.f_double_value(&[])?;
            if let Some(clip) = self.config.grad_clip {
                let coef = (clip / (norm + 1e-6)).min(1.0);
                if coef < 1.0 {
                    for g in &grads {
                        let _ = g.shallow_clone().f_mul_scalar_(coef)?;
                    }
                }
            }
            Ok(norm)
        })?;
        if !grad_norm.is_finite() {
            for w in model.compute_weights() {
                w.shallow_clone().zero_grad();
            }
            return Err(ModelError::Data(format!(
                "non-finite gradient norm {grad_norm}"
            )));
        }
        self.step += 1;
        let c = &self.config;
        let bias1 = 1.0 - c.beta1.powf(self.step as f64);
        let bias2_sqrt = (1.0 - c.beta2.powf(self.step as f64)).sqrt();
        let update = |param: &mut Tensor, g: &Tensor, m: &mut Tensor, v: &mut Tensor, decay| {
            if decay {
                let _ = param.f_mul_scalar_(1.0 - lr * c.weight_decay)?;
            }
            let _ = m.f_lerp_(g, 1.0 - c.beta1)?;
            let _ = v
                .f_mul_scalar_(c.beta2)?
                .f_addcmul_(&g.f_mul_scalar(1.0 - c.beta2)?, g)?;
            let denom = v
                .f_sqrt()?
                .f_div_scalar_(bias2_sqrt)?
                .f_add_scalar_(c.eps)?;
            let _ = param.f_sub_(&m.f_div(&denom)?.f_mul_scalar_(lr / bias1)?)?;
            Ok::<(), ModelError>(())
        };
        let decays =
            |param: &Tensor| c.weight_decay != 0.0 && (c.decay_vectors || param.dim() >= 2);
        tch::no_grad(|| -> Result<()> {
            match &self.shard {
                None => {
                    for (i, param) in model.canonical().iter().enumerate() {
                        let decay = decays(param);
                        let mut param = param.shallow_clone();
                        update(
                            &mut param,
                            &grads[i],
                            &mut self.exp_avg[i],
                            &mut self.exp_avg_sq[i],
                            decay,
                        )?;
                    }
                }
                Some(shard) => {
                    let params = model.canonical();
                    for s in &shard.slices {
                        let param = &params[s.param];
                        let decay = decays(param);
                        let mut piece = param.f_view([-1])?.f_narrow(0, s.start, s.len)?;
                        let g = grads[s.param]
                            .f_reshape([-1])?
                            .f_narrow(0, s.start, s.len)?;
                        update(
                            &mut piece,
                            &g,
                            &mut self.exp_avg[s.param],
                            &mut self.exp_avg_sq[s.param],
                            decay,
                        )?;
                    }
                    let collectives = collectives.ok_or_else(|| {
                        ModelError::Config("a sharded optimizer needs a process group".into())
                    })?;
                    gather_parameters(params, shard, self.gather_chunk, collectives)?;
                }
            }
            Ok(())
        })?;
        for w in model.compute_weights() {
            w.shallow_clone().zero_grad();
        }
        model.sync_compute_weights()?;
        Ok(StepStats { lr, grad_norm })
    }
}

/// Default elements per rank in one ZeRO-1 all-gather (16 MiB of fp32): bounds the gather
/// buffers to `(world_size + 1) x 16 MiB` instead of a full copy of the parameters.
pub const DEFAULT_GATHER_CHUNK: i64 = 1 << 22;

/// Reassembles every rank's updated range into the full parameters (ZeRO-1), one chunk of
/// each rank's range per all-gather.
fn gather_parameters(
    params: &[Tensor],
    shard: &FlatShard,
    gather_chunk: i64,
    collectives: &dyn Collectives,
) -> Result<()> {
    let Some(first) = params.first() else {
        return Ok(());
    };
    let device = first.device();
    let flats = params
        .iter()
        .map(|p| p.f_view([-1]))
        .collect::<Result<Vec<_>, _>>()?;
    let world = shard.world_size as i64;
    let mut done = 0i64;
    while done < shard.per_rank {
        let chunk = gather_chunk.min(shard.per_rank - done);
        let local = Tensor::f_zeros([chunk], (Kind::Float, device))?;
        let own_start = shard.rank as i64 * shard.per_rank + done;
        for_each_piece(&shard.numels, own_start, chunk, |param, start, at, len| {
            local
                .f_narrow(0, at, len)?
                .f_copy_(&flats[param].f_narrow(0, start, len)?)?;
            Ok(())
        })?;
        let mut gathered = Tensor::f_zeros([chunk * world], (Kind::Float, device))?;
        collectives
            .all_gather(&local, &mut gathered)
            .map_err(ModelError::Collective)?;
        for rank in 0..world {
            let start_of_rank = rank * shard.per_rank + done;
            for_each_piece(
                &shard.numels,
                start_of_rank,
                chunk,
                |param, start, at, len| {
                    flats[param]
                        .f_narrow(0, start, len)?
                        .f_copy_(&gathered.f_narrow(0, rank * chunk + at, len)?)?;
                    Ok(())
                },
            )?;
        }
        done += chunk;
    }
    Ok(())
}

/// Calls `f(param, start in param, offset in the range, len)` for every piece of the flat
/// range `[lo, lo + len)` of the concatenated parameters (padding past the end is skipped).
fn for_each_piece(
    numels: &[i64],
    lo: i64,
    len: i64,
    mut f: impl FnMut(usize, i64, i64, i64) -> Result<()>,
) -> Result<()> {
    let hi = lo + len;
    let mut offset = 0i64;
    for (param, &numel) in numels.iter().enumerate() {
        let a = offset.max(lo);
        let b = (offset + numel).min(hi);
        if a < b {
            f(param, a - offset, a - lo, b - a)?;
        }
        offset += numel;
        if offset >= hi {
            break;
        }
    }
    Ok(())
}
