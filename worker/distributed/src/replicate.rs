//! Copies rank 0's training inputs to every rank of a group, in place: the model's
//! parameters, the inner optimizer's state and a window's micro-batches. Rank 0 keeps the
//! only authoritative copy (it owns the chain and S3 I/O, the outer step and catch-up);
//! the other ranks receive these before every window and then train their share.
//!
//! Every function is called by all ranks in the same order; on rank 0 the arguments are
//! read, on the others overwritten. Tensors travel on the group's device
//! ([`ProcessGroup::backend`]: CPU for Gloo, the rank's GPU for NCCL).

use tch::{Device, Kind, Tensor};
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

/// Rank 0's canonical fp32 parameters into every rank's `model`.
pub fn parameters(group: &ProcessGroup, model: &mut Llama) -> Result<(), DistributedError> {
    let device = model.device();
    let mut values = Vec::new();
    for param in model.parameters() {
        let mut value = if group.rank() == ROOT {
            param.f_detach()?.f_contiguous()?
        } else {
            Tensor::f_empty(param.size().as_slice(), (Kind::Float, device))?
        };
        group.broadcast(&mut value, ROOT)?;
        values.push(value);
    }
    if group.rank() != ROOT {
        model.set_parameters(&values).map_err(model_error)?;
    }
    Ok(())
}

/// Rank 0's AdamW moments and step count into every rank's `optimizer` (replicated state:
/// every rank holds the whole of it).
pub fn optimizer(group: &ProcessGroup, optimizer: &mut AdamW) -> Result<(), DistributedError> {
    if optimizer.shard().is_some() {
        return Err(DistributedError::Invalid {
            op: "replicate optimizer",
            message: "a sharded optimizer holds a different part on every rank".into(),
        });
    }
    let mut step = Tensor::from_slice(&[optimizer.step_count() as i64]);
    let device = optimizer
        .exp_avg()
        .first()
        .map_or(Device::Cpu, Tensor::device);
    step = step.f_to_device(device)?;
    group.broadcast(&mut step, ROOT)?;
    let step = u64::try_from(step.f_int64_value(&[0])?).map_err(|_| DistributedError::Invalid {
        op: "replicate optimizer",
        message: "negative step count".into(),
    })?;
    let moments = |tensors: &[Tensor]| -> Result<Vec<Tensor>, DistributedError> {
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
    };
    let exp_avg = moments(optimizer.exp_avg())?;
    let exp_avg_sq = moments(optimizer.exp_avg_sq())?;
    if group.rank() != ROOT {
        optimizer
            .load_state(step, exp_avg, exp_avg_sq)
            .map_err(model_error)?;
    }
    Ok(())
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
