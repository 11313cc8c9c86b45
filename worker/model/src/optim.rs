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

/// AdamW state: step counter and fp32 moments in parameter order.
#[derive(Debug)]
pub struct AdamW {
    config: AdamWConfig,
    step: u64,
    exp_avg: Vec<Tensor>,
    exp_avg_sq: Vec<Tensor>,
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
        })
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

    /// First moments in parameter order.
    pub fn exp_avg(&self) -> &[Tensor] {
        &self.exp_avg
    }

    /// Second moments in parameter order.
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
        let lr = self.next_lr();
        let grads = model
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
            .collect::<Result<Vec<Tensor>>>()?;
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
        tch::no_grad(|| -> Result<()> {
            for (i, param) in model.canonical().iter().enumerate() {
                let mut param = param.shallow_clone();
                let g = &grads[i];
                let m = &mut self.exp_avg[i];
                let v = &mut self.exp_avg_sq[i];
                if c.weight_decay != 0.0 && (c.decay_vectors || param.dim() >= 2) {
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
