//! Copies rank 0's training inputs to every rank of a group, in place: the model's
//! parameters, the inner optimizer's state and a window's micro-batches. Rank 0 keeps the
//! only authoritative copy (it owns the chain and S3 I/O, the outer step and catch-up);
//! the other ranks receive these before every window and then train their share.
//!
//! For a ZeRO-1 optimizer, where every rank holds the moments of its own range only,
//! [`optimizer_state`] hands each rank its range of rank 0's full state (after rank 0
//! loaded a checkpoint) and [`gather_optimizer`] assembles the full state on rank 0 (to
//! write one), one parameter piece at a time.
//!
//! Every function is called by all ranks in the same order; on rank 0 the arguments are
//! read, on the others overwritten. Tensors travel on the group's device
//! ([`ProcessGroup::backend`]: CPU for Gloo, the rank's GPU for NCCL).

use tch::{Device, Kind, Tensor};
use worker_model::parallel::FlatShard;
use worker_model::{AdamW, Batch, Llama};

use crate::error::DistributedError;
use crate::group::ProcessGroup;

const ROOT: usize = 0;

/// Shape `[batch, seq_len]` of one micro-batch.
pub type BatchShape = [i64; 2];

/// The micro-batch shapes of a window, step by step (what the other ranks must allocate).
pub fn step_shapes(steps: &[Vec<Batch>]) -> Vec<Vec<BatchShape>> {
    steps
        .iter()
        .map(|step| {
            step.iter()
                .map(|b| {
                    let size = b.input_ids.size();
                    [
                        size.first().copied().unwrap_or(0),
                        size.get(1).copied().unwrap_or(0),
                    ]
                })
                .collect()
        })
        .collect()
}

/// Rank 0's `tensors` on every rank: each is broadcast in turn; the other ranks receive
/// them into fresh fp32 tensors of the same shapes on the same devices.
fn broadcast_all(
    group: &ProcessGroup,
    tensors: &[Tensor],
) -> Result<Vec<Tensor>, DistributedError> {
    tensors
        .iter()
        .map(|t| {
            let mut value = if group.rank() == ROOT {
                t.f_detach()?.f_contiguous()?
            } else {
                Tensor::f_empty(t.size().as_slice(), (Kind::Float, t.device()))?
            };
            group.broadcast(&mut value, ROOT)?;
            Ok(value)
        })
        .collect()
}

/// Rank 0's canonical fp32 parameters into every rank's `model`.
pub fn parameters(group: &ProcessGroup, model: &mut Llama) -> Result<(), DistributedError> {
    let values = broadcast_all(group, &model.parameters())?;
    if group.rank() != ROOT {
        model.set_parameters(&values).map_err(model_error)?;
    }
    Ok(())
}

/// Rank 0's inner optimizer state into every rank's `optimizer`, in the layout that
/// optimizer has. Replicated: rank 0's own moments and step, whole. ZeRO-1: each rank's
/// range of `loaded`, the full (unsharded) state rank 0 holds, e.g. from a checkpoint (read
/// on rank 0 only); every parameter's moments are broadcast whole, one at a time, and each
/// rank keeps the elements it owns.
pub fn optimizer_state(
    group: &ProcessGroup,
    optimizer: &mut AdamW,
    loaded: Option<&AdamW>,
) -> Result<(), DistributedError> {
    let Some(shard) = optimizer.shard().cloned() else {
        let step = broadcast_step(group, optimizer.step_count(), moment_device(optimizer))?;
        let exp_avg = broadcast_all(group, optimizer.exp_avg())?;
        let exp_avg_sq = broadcast_all(group, optimizer.exp_avg_sq())?;
        if group.rank() != ROOT {
            optimizer
                .load_state(step, exp_avg, exp_avg_sq)
                .map_err(model_error)?;
        }
        return Ok(());
    };
    const OP: &str = "scatter optimizer";
    let invalid = |message: String| DistributedError::Invalid { op: OP, message };
    let full = match (group.rank(), loaded) {
        (ROOT, None) => return Err(invalid("rank 0 has no optimizer state to send".into())),
        (ROOT, Some(full)) if full.shard().is_some() => {
            return Err(invalid("rank 0's state to send is itself sharded".into()));
        }
        (ROOT, full) => full,
        _ => None,
    };
    let device = moment_device(optimizer);
    let step = broadcast_step(group, full.map_or(0, AdamW::step_count), device)?;
    let sources = full.map(|f| [f.exp_avg(), f.exp_avg_sq()]);
    let mut owned = [Vec::new(), Vec::new()];
    for (which, out) in owned.iter_mut().enumerate() {
        for (param, &numel) in shard.numels.iter().enumerate() {
            let mut whole = match sources {
                Some(sources) => {
                    let source = sources[which]
                        .get(param)
                        .ok_or_else(|| invalid(format!("no moments for parameter {param}")))?;
                    if source.numel() as i64 != numel {
                        return Err(invalid(format!(
                            "parameter {param} has {} moments, expected {numel}",
                            source.numel()
                        )));
                    }
                    source
                        .f_reshape([-1])?
                        .f_to_kind(Kind::Float)?
                        .f_to_device(device)?
                        .f_contiguous()?
                }
                None => Tensor::f_empty([numel], (Kind::Float, device))?,
            };
            group.broadcast(&mut whole, ROOT)?;
            out.push(match shard.slices.iter().find(|s| s.param == param) {
                Some(slice) => whole.f_narrow(0, slice.start, slice.len)?.f_contiguous()?,
                None => Tensor::f_empty([0], (Kind::Float, device))?,
            });
        }
    }
    let [exp_avg, exp_avg_sq] = owned;
    optimizer
        .load_state(step, exp_avg, exp_avg_sq)
        .map_err(model_error)
}

fn moment_device(optimizer: &AdamW) -> Device {
    optimizer
        .exp_avg()
        .first()
        .map_or(Device::Cpu, Tensor::device)
}

fn broadcast_step(
    group: &ProcessGroup,
    step: u64,
    device: Device,
) -> Result<u64, DistributedError> {
    let mut value = Tensor::from_slice(&[step as i64]).f_to_device(device)?;
    group.broadcast(&mut value, ROOT)?;
    u64::try_from(value.f_int64_value(&[0])?).map_err(|_| DistributedError::Invalid {
        op: "replicate optimizer",
        message: "negative step count".into(),
    })
}

/// The full state of a ZeRO-1 group's optimizer on rank 0, as an unsharded optimizer with
/// moments shaped like `model`'s parameters on `out` (`None` on the other ranks): every
/// owner broadcasts its piece of each parameter in turn, so no rank holds more than one
/// piece at a time beyond its own state.
pub fn gather_optimizer(
    group: &ProcessGroup,
    optimizer: &AdamW,
    model: &Llama,
    out: Device,
) -> Result<Option<AdamW>, DistributedError> {
    const OP: &str = "gather optimizer";
    let invalid = |message: String| DistributedError::Invalid { op: OP, message };
    let shard = optimizer
        .shard()
        .ok_or_else(|| invalid("the optimizer is not ZeRO-1 sharded".into()))?;
    let device = moment_device(optimizer);
    let world = group.world_size();
    let owners: Vec<FlatShard> = (0..world)
        .map(|rank| FlatShard::new(&shard.numels, rank, world))
        .collect();
    let params = model.parameters();
    let mut full = [Vec::new(), Vec::new()];
    for (which, gathered) in full.iter_mut().enumerate() {
        let local = [optimizer.exp_avg(), optimizer.exp_avg_sq()][which];
        for param in 0..shard.numels.len() {
            let mut pieces = Vec::new();
            for (rank, owner) in owners.iter().enumerate() {
                let len = owner.owned_len(param);
                if len == 0 {
                    continue;
                }
                let mut piece = if rank == group.rank() {
                    local
                        .get(param)
                        .ok_or_else(|| invalid(format!("no moments for parameter {param}")))?
                        .f_detach()?
                        .f_contiguous()?
                } else {
                    Tensor::f_empty([len], (Kind::Float, device))?
                };
                group.broadcast(&mut piece, rank)?;
                if group.rank() == ROOT {
                    pieces.push(piece.f_to_device(out)?);
                }
            }
            if group.rank() == ROOT {
                let shape = params
                    .get(param)
                    .ok_or_else(|| invalid(format!("the model has no parameter {param}")))?
                    .size();
                gathered.push(if pieces.is_empty() {
                    Tensor::f_empty(shape.as_slice(), (Kind::Float, out))?
                } else {
                    Tensor::f_cat(&pieces, 0)?.f_view(shape.as_slice())?
                });
            }
        }
    }
    if group.rank() != ROOT {
        return Ok(None);
    }
    let [exp_avg, exp_avg_sq] = full;
    Ok(Some(AdamW::from_state(
        optimizer.config().clone(),
        optimizer.step_count(),
        exp_avg,
        exp_avg_sq,
    )))
}

/// Rank 0's micro-batches of a window into every rank (as CPU int64 batches, the form the
/// trainer takes). `steps` is rank 0's window (ignored elsewhere), `shapes` its
/// [`step_shapes`], which the other ranks received beforehand; `device` is where the group
/// moves tensors.
pub fn window_steps(
    group: &ProcessGroup,
    steps: Option<&[Vec<Batch>]>,
    shapes: &[Vec<BatchShape>],
    device: Device,
) -> Result<Vec<Vec<Batch>>, DistributedError> {
    let total: i64 = shapes.iter().flatten().map(|[b, s]| b * s).sum();
    let mut flat = match (group.rank(), steps) {
        (ROOT, Some(steps)) => {
            if step_shapes(steps) != shapes {
                return Err(DistributedError::Invalid {
                    op: "replicate window",
                    message: "the shapes sent do not match the window".into(),
                });
            }
            let mut parts = Vec::new();
            for batch in steps.iter().flatten() {
                parts.push(batch.input_ids.f_reshape([-1])?);
                parts.push(batch.labels.f_reshape([-1])?);
            }
            if parts.is_empty() {
                Tensor::f_empty([0], (Kind::Int64, device))?
            } else {
                Tensor::f_cat(&parts, 0)?
                    .f_to_kind(Kind::Int64)?
                    .f_to_device(device)?
            }
        }
        (ROOT, None) => {
            return Err(DistributedError::Invalid {
                op: "replicate window",
                message: "rank 0 has no window to send".into(),
            });
        }
        _ => Tensor::f_empty([2 * total], (Kind::Int64, device))?,
    };
    if flat.numel() as i64 != 2 * total {
        return Err(DistributedError::Invalid {
            op: "replicate window",
            message: format!("{} tokens for shapes of {}", flat.numel(), 2 * total),
        });
    }
    group.broadcast(&mut flat, ROOT)?;
    let flat = flat.f_to_device(Device::Cpu)?;
    let mut offset = 0;
    let mut take = |shape: &BatchShape| -> Result<Tensor, DistributedError> {
        let n = shape[0] * shape[1];
        let part = flat
            .f_narrow(0, offset, n)?
            .f_view(*shape)?
            .f_contiguous()?;
        offset += n;
        Ok(part)
    };
    shapes
        .iter()
        .map(|step| {
            step.iter()
                .map(|shape| {
                    Ok(Batch {
                        input_ids: take(shape)?,
                        labels: take(shape)?,
                    })
                })
                .collect()
        })
        .collect()
}

fn model_error(err: worker_model::ModelError) -> DistributedError {
    DistributedError::Invalid {
        op: "replicate",
        message: err.to_string(),
    }
}
