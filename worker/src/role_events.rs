//! What the role loops tell whoever watches them: that they started, whether the chain
//! answers and the model is in sync, and a report after each completed window. Production
//! nodes feed their health endpoints and pod report from these
//! ([`crate::node_observer`]); the devnet builds its tables, plot and JSON from them, so its
//! figures are those of the code pods run.

use crate::validator::{Validator, WindowEvaluation};

pub use crate::node_health::{NodeRole, RoleStarted};

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
    /// Seconds from the window's first block to the start of its training (negative when
    /// training started before it).
    pub started_secs: f64,
    /// Seconds left until the upload deadline when the object was stored (0 when it missed
    /// it): with `compute_secs`, the longest this window's training could have taken.
    pub headroom_secs: f64,
    /// The replica's parameter sample after this window's outer step.
    pub sync_sample: Vec<f32>,
    /// The miner's incentive in the metagraph read during this window.
    pub incentive: Option<f64>,
    /// Processes the replica trained with (1 on one device).
    pub ranks: usize,
}

impl MinerWindowReport {
    /// Share of the window spent computing.
    pub fn utilisation(&self) -> f64 {
        self.share_of_window(self.compute_secs)
    }

    /// The utilisation this window's timing allowed: training time plus the headroom left
    /// before the deadline, as a share of the window (at most 1: a window's training cannot
    /// take longer than a window in steady state).
    pub fn attainable_utilisation(&self) -> f64 {
        self.share_of_window(self.compute_secs + self.headroom_secs)
            .min(1.0)
    }

    fn share_of_window(&self, secs: f64) -> f64 {
        if self.window_secs > 0.0 {
            secs / self.window_secs
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

impl ValidatorWindowReport<'_> {
    /// Mean final score of the peers this window evaluated (`None` when it evaluated none).
    pub fn mean_score(&self) -> Option<f64> {
        let peers = &self.evaluation.report.peers;
        let scores: Vec<f64> = peers
            .iter()
            .map(|p| p.final_score)
            .filter(|s| s.is_finite())
            .collect();
        (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64)
    }
}

/// A watcher of role loops; every method defaults to doing nothing.
pub trait RoleEvents: Send + Sync {
    /// The role loop starts (after connecting and loading its state).
    fn role_started(&self, _started: &RoleStarted) {}
    /// A chain request answered (`true`) or failed and will be retried (`false`).
    fn chain_reachable(&self, _reachable: bool) {}
    /// A catch-up attempt ended: in sync with the run (`true`) or still behind (`false`).
    fn synced(&self, _in_sync: bool) {}
    fn miner_window(&self, _report: &MinerWindowReport) {}
    fn validator_window(&self, _report: &ValidatorWindowReport<'_>) {}
}

/// Nobody watching (production).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unobserved;

impl RoleEvents for Unobserved {}
