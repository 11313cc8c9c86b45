//! Gauntlet's measurement of one peer: loss before and after applying that peer's single
//! update, on the peer's assigned data and on random data, with the model restored exactly.

use worker_model::Batch;
use worker_sparseloco::{GradientPayload, decompress_payload};

use crate::error::Result;
use crate::replica::Replica;

/// Losses of one peer's update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossDelta {
    pub before_assigned: f64,
    pub after_assigned: f64,
    pub before_random: f64,
    pub after_random: f64,
}

/// Applies `payload` alone with learning rate `lr`, measures, restores the parameters
/// bit-exactly. `before_random` is shared by every peer of a window, so it is passed in.
pub fn evaluate_update(
    replica: &mut Replica,
    payload: &GradientPayload,
    assigned: &[Batch],
    random: &[Batch],
    before_random: f64,
    lr: f64,
) -> Result<LossDelta> {
    let before_assigned = replica.model.loss_on_batches(assigned)?;
    let update = decompress_payload(payload, replica.model.device())?;
    let snapshot = replica.model.snapshot()?;
    let measured = replica.model.apply_update(&update, lr).and_then(|()| {
        Ok((
            replica.model.loss_on_batches(assigned)?,
            replica.model.loss_on_batches(random)?,
        ))
    });
    replica.model.restore(&snapshot)?;
    let (after_assigned, after_random) = measured?;
    Ok(LossDelta {
        before_assigned,
        after_assigned,
        before_random,
        after_random,
    })
}

/// How much `payload` alone, applied with `lr`, lowers the loss on `batches` (the model is
/// restored bit-exactly): what the copy tie-break measures of one update on another peer's
/// assigned data.
pub fn fit_gain(
    replica: &mut Replica,
    payload: &GradientPayload,
    batches: &[Batch],
    lr: f64,
) -> Result<f64> {
    let before = replica.model.loss_on_batches(batches)?;
    let update = decompress_payload(payload, replica.model.device())?;
    let snapshot = replica.model.snapshot()?;
    let measured = replica
        .model
        .apply_update(&update, lr)
        .and_then(|()| replica.model.loss_on_batches(batches));
    replica.model.restore(&snapshot)?;
    Ok(before - measured?)
}
