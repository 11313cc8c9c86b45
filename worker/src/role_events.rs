//! What the role loops tell whoever watches them, after each completed window. Production
//! nodes only log (the loops do that themselves); the devnet builds its tables, plot and
//! JSON from these reports, so its figures are those of the code pods run.

use crate::validator::{Validator, WindowEvaluation};

/// A miner's completed window.
#[derive(Debug, Clone)]
pub struct MinerWindowReport {
    pub uid: u16,
    pub window: u64,
    /// The strategy that produced the upload ("honest" in production).
    pub strategy: &'static str,
    /// Mean inner loss (NaN when the strategy did not train).
    pub train_loss: f64,
    pub payload_bytes: usize,
    pub compression_ratio: f64,
    /// Whether the upload was stored before the deadline.
    pub uploaded_in_time: bool,
    /// Seconds spent producing the upload (training and compression).
    pub compute_secs: f64,
    /// Nominal window length in seconds (blocks per window x block time).
    pub window_secs: f64,
    /// The replica's parameter sample after this window's outer step.
    pub sync_sample: Vec<f32>,
}

impl MinerWindowReport {
    /// Share of the window spent computing.
    pub fn utilisation(&self) -> f64 {
        if self.window_secs > 0.0 {
            self.compute_secs / self.window_secs
        } else {
            0.0
        }
    }
}

/// A validator's completed window.
pub struct ValidatorWindowReport<'a> {
    pub window: u64,
    pub uid: u16,
    /// The validator after this window's outer step and Gauntlet update.
    pub validator: &'a Validator,
    pub evaluation: &'a WindowEvaluation,
    /// Uids whose objects the outer step aggregated (the lead's list).
    pub aggregated: Vec<u16>,
    /// Whether this window ended a weight interval (weights submitted when any is non-zero).
    pub weights_due: bool,
}

/// A watcher of role loops; every method defaults to doing nothing.
pub trait RoleEvents: Send + Sync {
    fn miner_window(&self, _report: &MinerWindowReport) {}
    fn validator_window(&self, _report: &ValidatorWindowReport<'_>) {}
}

/// Nobody watching (production).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unobserved;

impl RoleEvents for Unobserved {}
