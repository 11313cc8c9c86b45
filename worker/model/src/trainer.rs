//! The inner loop of one window: H AdamW steps with gradient accumulation, then the
//! pseudo-gradient `theta_before - theta_after` with the weights restored to `theta_before`.

use tch::{Kind, Tensor};

use crate::batch::Batch;
use crate::error::{ModelError, Result};
use crate::model::Llama;
use crate::optim::{AdamW, AdamWConfig, StepStats};
use crate::parallel::{Collectives, OptimizerSharding, owns_micro_batch};

/// Result of [`InnerTrainer::train_window`].
#[derive(Debug)]
pub struct WindowOutcome {
    /// `theta_before - theta_after` per parameter (fp32, parameter order, model device).
    pub pseudo_gradients: Vec<Tensor>,
    /// Token-weighted mean training loss over every micro-batch of the window.
    pub mean_loss: f64,
    /// Inner steps taken.
    pub inner_steps: usize,
    /// Unmasked target tokens trained on.
    pub target_tokens: i64,
    /// Learning rate and gradient norm of every inner step.
    pub steps: Vec<StepStats>,
}

/// Owns the inner optimizer; the model is passed in so the same model can be evaluated
/// or updated by other code between windows. Optimizer state persists across windows.
#[derive(Debug)]
pub struct InnerTrainer {
    optimizer: AdamW,
    group: Option<Group>,
}

/// The data-parallel group of a trainer (see [`crate::parallel`]).
struct Group(Box<dyn Collectives>);

impl std::fmt::Debug for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Group")
            .field("rank", &self.0.rank())
            .field("world_size", &self.0.world_size())
            .finish()
    }
}

impl InnerTrainer {
    /// A trainer with a fresh AdamW for `model`.
    pub fn new(config: AdamWConfig, model: &Llama) -> Result<InnerTrainer> {
        Ok(InnerTrainer {
            optimizer: AdamW::new(config, model)?,
            group: None,
        })
    }

    /// A data-parallel trainer: this rank computes its share of every step's micro-batches
    /// ([`owns_micro_batch`]), gradients are summed over `group` before each optimizer step,
    /// and with [`OptimizerSharding::Zero1`] the AdamW moments are sharded over the ranks.
    /// Every rank gets the same `steps` and ends each step with the same parameters.
    pub fn data_parallel(
        config: AdamWConfig,
        model: &Llama,
        group: Box<dyn Collectives>,
        sharding: OptimizerSharding,
    ) -> Result<InnerTrainer> {
        let optimizer = match sharding {
            OptimizerSharding::Replicated => AdamW::new(config, model)?,
            OptimizerSharding::Zero1 => {
                AdamW::sharded(config, model, group.rank(), group.world_size())?
            }
        };
        Ok(InnerTrainer {
            optimizer,
            group: Some(Group(group)),
        })
    }

    /// `(rank, world_size)`; `(0, 1)` for a single-process trainer.
    pub fn rank_and_world(&self) -> (usize, usize) {
        self.group
            .as_ref()
            .map_or((0, 1), |g| (g.0.rank(), g.0.world_size()))
    }

    /// The inner optimizer (for checkpoints).
    pub fn optimizer(&self) -> &AdamW {
        &self.optimizer
    }

    /// Mutable inner optimizer (for loading checkpoints).
    pub fn optimizer_mut(&mut self) -> &mut AdamW {
        &mut self.optimizer
    }

    /// One inner step: forward/backward over every micro-batch (losses weighted by their
    /// share of the step's target tokens), clip, AdamW. Returns the step's mean loss.
    pub fn train_step(
        &mut self,
        model: &mut Llama,
        micro_batches: &[Batch],
    ) -> Result<(f64, i64, StepStats)> {
        let (rank, world) = self.rank_and_world();
        let mut total = 0i64;
        for (index, batch) in micro_batches.iter().enumerate() {
            if owns_micro_batch(index, rank, world) {
                model.check_tokens(batch)?;
            }
            total += batch.target_count()?;
        }
        if total == 0 {
            return Err(ModelError::Data(
                "inner step without any unmasked label".into(),
            ));
        }
        let mut loss_sum = 0.0;
        for (index, batch) in micro_batches.iter().enumerate() {
            if !owns_micro_batch(index, rank, world) {
                continue;
            }
            let (sum, _) = model.loss_sum(batch)?;
            loss_sum += sum.f_double_value(&[])?;
            sum.f_div_scalar(total as f64)?.f_backward()?;
        }
        let mut grads = AdamW::gradients(model)?;
        let group = self.group.as_ref().map(|g| g.0.as_ref());
        if let Some(group) = group {
            let mut loss = [Tensor::from_slice(&[loss_sum])];
            group
                .all_reduce_sum(&mut loss)
                .and_then(|()| group.all_reduce_sum(&mut grads))
                .map_err(ModelError::Collective)?;
            loss_sum = loss[0].f_double_value(&[0])?;
        }
        let stats = self.optimizer.step_with(model, grads, group)?;
        Ok((loss_sum / total as f64, total, stats))
    }

    /// Runs `steps.len()` inner steps (each over its micro-batches) and returns the
    /// pseudo-gradients. The model's parameters are restored to their value before the
    /// window, also when an error interrupts it; the optimizer keeps its new state.
    pub fn train_window(
        &mut self,
        model: &mut Llama,
        steps: &[Vec<Batch>],
    ) -> Result<WindowOutcome> {
        if steps.is_empty() {
            return Err(ModelError::Data(
                "a window needs at least one inner step".into(),
            ));
        }
        let before = model.snapshot()?;
        let result = self.run_steps(model, steps);
        let outcome = match result {
            Ok((loss_sum, tokens, stats)) => {
                let pseudo_gradients = tch::no_grad(|| -> Result<Vec<Tensor>> {
                    before
                        .tensors()
                        .iter()
                        .zip(model.canonical())
                        .map(|(b, a)| Ok(b.f_sub(a)?.f_to_kind(Kind::Float)?))
                        .collect()
                });
                pseudo_gradients.map(|pseudo_gradients| WindowOutcome {
                    pseudo_gradients,
                    mean_loss: loss_sum / tokens.max(1) as f64,
                    inner_steps: steps.len(),
                    target_tokens: tokens,
                    steps: stats,
                })
            }
            Err(error) => Err(error),
        };
        model.restore(&before)?;
        let outcome = outcome?;
        tracing::debug!(
            inner_steps = outcome.inner_steps,
            mean_loss = outcome.mean_loss,
            tokens = outcome.target_tokens,
            "inner window done"
        );
        Ok(outcome)
    }

    fn run_steps(
        &mut self,
        model: &mut Llama,
        steps: &[Vec<Batch>],
    ) -> Result<(f64, i64, Vec<StepStats>)> {
        let mut loss_sum = 0.0;
        let mut tokens = 0;
        let mut stats = Vec::with_capacity(steps.len());
        for micro_batches in steps {
            let (loss, count, step) = self.train_step(model, micro_batches)?;
            loss_sum += loss * count as f64;
            tokens += count;
            stats.push(step);
        }
        Ok((loss_sum, tokens, stats))
    }
}
