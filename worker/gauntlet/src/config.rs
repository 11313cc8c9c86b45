//! Every tunable of the scoring rules, with defaults from the reference design.

use serde::{Deserialize, Serialize};

use crate::assignment_evidence::EvidenceRules;
use crate::error::GauntletError;

/// Parameters of the OpenSkill (Weng-Lin) Plackett-Luce rating model.
///
/// Defaults are the OpenSkill defaults: mu 25, sigma 25/3, beta 25/6,
/// tau 25/300, kappa 1e-4, ordinal `mu - 3 sigma`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenSkillConfig {
    /// Initial mean skill of a new peer.
    pub mu: f64,
    /// Initial skill uncertainty (standard deviation) of a new peer.
    pub sigma: f64,
    /// Performance noise: the spread of a single window's result around the skill.
    pub beta: f64,
    /// Additive dynamics: added (in quadrature) to sigma before every update so
    /// ratings stay responsive.
    pub tau: f64,
    /// Lower bound of the sigma shrink factor, keeps the variance positive.
    pub kappa: f64,
    /// `ordinal = mu - ordinal_z * sigma`.
    pub ordinal_z: f64,
}

impl Default for OpenSkillConfig {
    fn default() -> Self {
        Self {
            mu: 25.0,
            sigma: 25.0 / 3.0,
            beta: 25.0 / 6.0,
            tau: 25.0 / 300.0,
            kappa: 1e-4,
            ordinal_z: 3.0,
        }
    }
}

/// All constants of the Gauntlet scoring rules.
///
/// Deserialisation fills missing fields with the defaults, so a config file
/// only needs the values it overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GauntletConfig {
    /// Smoothing factor of the binary indicator moving average
    /// (`ma <- (1 - alpha) ma + alpha x`); the assignment evidence keeps the same memory
    /// (each observation's weight decays by `1 - alpha` per later one).
    pub binary_ma_alpha: f64,
    /// Prior standard deviation of one assignment advantage (in window-scale units): how
    /// much a few consistent windows must overcome (see `assignment_evidence`).
    pub assignment_prior_sd: f64,
    /// t statistic of the assignment evidence at which the final score's assignment
    /// factor starts to rise from 0.
    pub assignment_t_zero: f64,
    /// t statistic at which the assignment factor reaches 1.
    pub assignment_t_full: f64,
    /// Positive assignment advantages a window needs for its cohort scale.
    pub assignment_cohort_min: usize,
    /// Share of the cohort scale (the window's median positive advantage) below which a
    /// peer's mean advantage counts as a shortfall that cuts its assignment factor.
    pub assignment_cohort_share: f64,
    /// Evaluations during which the aggregation list ignores the assignment factor (a
    /// newcomer's update is aggregated before its evidence can speak).
    pub assignment_grace_evaluations: u64,
    /// Steps behind at (and beyond) which the sync score is 0.
    pub sync_max_steps_behind: f64,
    /// Exponent of the sync score curve.
    pub sync_exponent: f64,
    /// Rating model parameters.
    pub openskill: OpenSkillConfig,
    /// Added to the ordinal before clamping at 0, so the rating factor of the
    /// final score is `max(0, ordinal + ordinal_shift)`. The default (= initial
    /// mu) makes a fresh peer's factor 25 and only a peer rated clearly below a
    /// fresh one reaches 0.
    pub ordinal_shift: f64,
    /// Peers evaluated per window.
    pub sample_size: usize,
    /// Rating bins the sample is stratified over.
    pub rating_bins: usize,
    /// A peer whose last `negative_streak_limit` evaluations all had a
    /// non-positive gradient score gets a final score of 0.
    pub negative_streak_limit: u32,
    /// A peer not seen for more than this many windows is dropped (state reset).
    pub inactivity_windows: u64,
    /// Windows (the penalised one included) with a zeroed final score after a
    /// soft penalty (missing or late gradient).
    pub soft_penalty_windows: u64,
    /// Windows with a zeroed final score after a hard penalty (invalid, bad
    /// signature, digest mismatch, poison, copy).
    pub hard_penalty_windows: u64,
    /// Hard penalties after which a peer is banned.
    pub max_strikes: u32,
    /// Windows a banned peer's final score stays 0; it is not sampled meanwhile.
    pub ban_windows: u64,
    /// A relative loss increase on random data above this (gradient score below
    /// `-poison_loss_increase`) is treated as a poisoning attempt (hard penalty).
    pub poison_loss_increase: f64,
    /// Gradient scores kept per peer.
    pub score_history_len: usize,
    /// Peers in the next window's aggregation list.
    pub peer_list_size: usize,
    /// Reserve peers listed after the aggregation peers.
    pub peer_list_reserve: usize,
    /// Fill free peer-list slots with peers that were seen but never evaluated
    /// (bootstrapping: before any evaluation nobody has a positive score).
    pub fill_peer_list_with_unrated: bool,
    /// Top-k index overlap above which two gradients count as copies (0.6: honest pairs of
    /// the tiny model overlap at most 0.29 in the devnet; copies re-compressed through the
    /// copier's own error feedback overlap 1.0, or 0.6-0.95 when that feedback holds the
    /// residue of its own earlier training).
    pub copy_overlap_threshold: f64,
}

impl Default for GauntletConfig {
    fn default() -> Self {
        Self {
            binary_ma_alpha: 0.05,
            assignment_prior_sd: 0.5,
            assignment_t_zero: 1.0,
            assignment_t_full: 2.0,
            assignment_grace_evaluations: 3,
            assignment_cohort_min: 3,
            assignment_cohort_share: 0.5,
            sync_max_steps_behind: 3.0,
            sync_exponent: 2.5,
            openskill: OpenSkillConfig::default(),
            ordinal_shift: 25.0,
            sample_size: 10,
            rating_bins: 4,
            negative_streak_limit: 5,
            inactivity_windows: 10,
            soft_penalty_windows: 2,
            hard_penalty_windows: 20,
            max_strikes: 3,
            ban_windows: 200,
            poison_loss_increase: 0.05,
            score_history_len: 32,
            peer_list_size: 20,
            peer_list_reserve: 10,
            fill_peer_list_with_unrated: true,
            copy_overlap_threshold: 0.6,
        }
    }
}

impl GauntletConfig {
    /// How the assignment evidence is weighed.
    pub fn evidence_rules(&self) -> EvidenceRules {
        EvidenceRules {
            decay: 1.0 - self.binary_ma_alpha,
            prior_sd: self.assignment_prior_sd,
            t_zero: self.assignment_t_zero,
            t_full: self.assignment_t_full,
            cohort_min: self.assignment_cohort_min,
            cohort_share: self.assignment_cohort_share,
        }
    }

    /// Checks that every value is in its valid range.
    pub fn validate(&self) -> Result<(), GauntletError> {
        let fail = |msg: &str| Err(GauntletError::InvalidConfig(msg.to_owned()));
        let os = &self.openskill;
        if !(self.binary_ma_alpha > 0.0 && self.binary_ma_alpha <= 1.0) {
            return fail("binary_ma_alpha must be in (0, 1]");
        }
        if !(self.assignment_prior_sd > 0.0 && self.assignment_prior_sd.is_finite()) {
            return fail("assignment_prior_sd must be positive and finite");
        }
        if !(self.assignment_t_zero.is_finite()
            && self.assignment_t_full.is_finite()
            && self.assignment_t_full > self.assignment_t_zero)
        {
            return fail("assignment_t_full must be finite and above assignment_t_zero");
        }
        if !(self.assignment_cohort_share > 0.0 && self.assignment_cohort_share < 1.0) {
            return fail("assignment_cohort_share must be in (0, 1)");
        }
        if !(self.sync_max_steps_behind > 0.0 && self.sync_max_steps_behind.is_finite()) {
            return fail("sync_max_steps_behind must be positive and finite");
        }
        if !(self.sync_exponent > 0.0 && self.sync_exponent.is_finite()) {
            return fail("sync_exponent must be positive and finite");
        }
        if !(os.mu.is_finite() && os.sigma > 0.0 && os.sigma.is_finite()) {
            return fail("openskill.mu must be finite and openskill.sigma positive");
        }
        if !(os.beta > 0.0 && os.beta.is_finite()) {
            return fail("openskill.beta must be positive and finite");
        }
        if !(os.tau >= 0.0 && os.tau.is_finite()) {
            return fail("openskill.tau must be non-negative and finite");
        }
        if !(os.kappa > 0.0 && os.kappa < 1.0) {
            return fail("openskill.kappa must be in (0, 1)");
        }
        if !(os.ordinal_z >= 0.0 && os.ordinal_z.is_finite()) {
            return fail("openskill.ordinal_z must be non-negative and finite");
        }
        if !self.ordinal_shift.is_finite() {
            return fail("ordinal_shift must be finite");
        }
        if self.sample_size == 0 {
            return fail("sample_size must be at least 1");
        }
        if self.rating_bins == 0 {
            return fail("rating_bins must be at least 1");
        }
        if self.negative_streak_limit == 0 {
            return fail("negative_streak_limit must be at least 1");
        }
        if self.max_strikes == 0 {
            return fail("max_strikes must be at least 1");
        }
        if !(self.poison_loss_increase > 0.0 && self.poison_loss_increase.is_finite()) {
            return fail("poison_loss_increase must be positive and finite");
        }
        if self.score_history_len == 0 {
            return fail("score_history_len must be at least 1");
        }
        if !(self.copy_overlap_threshold > 0.0 && self.copy_overlap_threshold <= 1.0) {
            return fail("copy_overlap_threshold must be in (0, 1]");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_reference_and_validate() {
        let c = GauntletConfig::default();
        assert_eq!(c.binary_ma_alpha, 0.05);
        assert_eq!(c.sync_max_steps_behind, 3.0);
        assert_eq!(c.sync_exponent, 2.5);
        assert_eq!((c.peer_list_size, c.peer_list_reserve), (20, 10));
        c.validate().unwrap();
    }

    #[test]
    fn partial_json_fills_defaults() {
        let c: GauntletConfig =
            serde_json::from_str(r#"{"sample_size": 3, "openskill": {"beta": 7.0}}"#).unwrap();
        assert_eq!(c.sample_size, 3);
        assert_eq!(c.openskill.beta, 7.0);
        assert_eq!(c.openskill.mu, 25.0);
        assert_eq!(c.peer_list_size, 20);
        assert!(serde_json::from_str::<GauntletConfig>(r#"{"sampel_size": 3}"#).is_err());
    }

    #[test]
    fn validate_rejects_out_of_range_values() {
        let bad = [
            GauntletConfig {
                binary_ma_alpha: 0.0,
                ..Default::default()
            },
            GauntletConfig {
                binary_ma_alpha: f64::NAN,
                ..Default::default()
            },
            GauntletConfig {
                sample_size: 0,
                ..Default::default()
            },
            GauntletConfig {
                copy_overlap_threshold: 1.5,
                ..Default::default()
            },
            GauntletConfig {
                openskill: OpenSkillConfig {
                    beta: 0.0,
                    ..Default::default()
                },
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?} should be rejected");
        }
    }
}
