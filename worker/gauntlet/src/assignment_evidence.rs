//! Evidence that a peer trains on the data it was assigned.
//!
//! An honest peer's update lowers the loss on its assigned data more than on random data;
//! a peer that trains on other data (or re-uploads a stale update) shows no such
//! advantage: the two improvements are exchangeable and their difference is noise around
//! zero. Each clean evaluation contributes one observation, the *assignment advantage*
//!
//! ```text
//! x = (assigned improvement - random improvement) / window scale
//! ```
//!
//! where the window scale is the median random-data improvement of the window's clean
//! evaluations, so `x` is dimensionless ("by what share of a typical update's gain the
//! update fits its own data better") and comparable across windows whose updates differ in
//! size by orders of magnitude.
//!
//! The observations are summarised as exponentially weighted sums (memory `decay` per
//! evaluation, the same as the binary moving average's) and turned into a one-sided
//! t statistic for "the mean advantage is positive", shrunk towards zero: one
//! pseudo-observation at 0 in the mean and a prior standard deviation in the variance,
//! so one or two lucky windows are not evidence. The factor of the final score rises
//! linearly from 0 at `t_zero` to 1 at `t_full`.
//!
//! Why not Templar's moving average of the sign of `x`: a sign carries at most one bit per
//! window and the average starts at 0 with weight 0.05, so after 10 windows an honest
//! peer's average is 0.40 while a peer training on other data (signs at random) keeps
//! about a third of that on average. The magnitudes separate the two within a few
//! evaluations (measured on the devnet: honest `x` 0.23-0.43 per window with standard
//! deviation ~0.22, wrong data 0.01 +- 0.15), and the t statistic adapts to the noise of
//! the run instead of a fixed threshold.

use serde::{Deserialize, Serialize};

/// Exponentially weighted sums of a peer's assignment advantages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct AssignmentEvidence {
    /// Sum of the observation weights (the effective number of observations).
    pub weight: f64,
    /// Weighted sum of the observations.
    pub sum: f64,
    /// Weighted sum of their squares.
    pub sum_sq: f64,
}

/// How evidence is weighed (from [`crate::GauntletConfig`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvidenceRules {
    /// Weight kept by the earlier observations at each new one, in (0, 1].
    pub decay: f64,
    /// Prior standard deviation of one observation (in window-scale units).
    pub prior_sd: f64,
    /// t statistic at (and below) which the factor is 0.
    pub t_zero: f64,
    /// t statistic at (and above) which the factor is 1.
    pub t_full: f64,
}

/// The assignment advantage of one evaluation, or `None` when it is no evidence (a window
/// whose median random-data improvement is not positive, or numbers that are not finite).
pub fn assignment_advantage(assigned: f64, random: f64, window_scale: f64) -> Option<f64> {
    let x = (assigned - random) / window_scale;
    (window_scale > 0.0 && x.is_finite()).then_some(x)
}

/// The window scale: median of the window's random-data improvements (`None` when empty).
pub fn window_scale(random_improvements: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = random_improvements
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

impl AssignmentEvidence {
    /// Folds in one observation.
    pub fn record(&mut self, x: f64, rules: &EvidenceRules) {
        self.weight = rules.decay * self.weight + 1.0;
        self.sum = rules.decay * self.sum + x;
        self.sum_sq = rules.decay * self.sum_sq + x * x;
    }

    /// One-sided t statistic of a positive mean, shrunk towards 0 (0 without observations).
    pub fn t_statistic(&self, rules: &EvidenceRules) -> f64 {
        if self.weight <= 0.0 {
            return 0.0;
        }
        // One pseudo-observation at 0 in the mean.
        let mean = self.sum / (self.weight + 1.0);
        // Weighted squared deviations from that mean, plus the prior's.
        let deviations = (self.sum_sq - 2.0 * mean * self.sum + mean * mean * self.weight).max(0.0);
        let variance = (deviations + rules.prior_sd * rules.prior_sd) / self.weight;
        let t = mean * self.weight.sqrt() / variance.sqrt();
        if t.is_finite() { t } else { 0.0 }
    }

    /// Factor of the final score, in [0, 1].
    pub fn factor(&self, rules: &EvidenceRules) -> f64 {
        ((self.t_statistic(rules) - rules.t_zero) / (rules.t_full - rules.t_zero)).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: EvidenceRules = EvidenceRules {
        decay: 0.95,
        prior_sd: 0.5,
        t_zero: 1.0,
        t_full: 2.0,
    };

    fn evidence(xs: &[f64]) -> AssignmentEvidence {
        let mut e = AssignmentEvidence::default();
        for &x in xs {
            e.record(x, &RULES);
        }
        e
    }

    #[test]
    fn no_evidence_scores_zero() {
        let e = AssignmentEvidence::default();
        assert_eq!((e.t_statistic(&RULES), e.factor(&RULES)), (0.0, 0.0));
        // One observation, however large, is shrunk below the threshold.
        assert_eq!(evidence(&[0.4]).factor(&RULES), 0.0);
    }

    #[test]
    fn consistent_advantage_earns_the_full_factor_within_a_few_evaluations() {
        let honest = [0.31, 0.42, 0.18, 0.37, 0.29, 0.45, 0.33, 0.38];
        let factors: Vec<f64> = (1..=honest.len())
            .map(|n| evidence(&honest[..n]).factor(&RULES))
            .collect();
        assert!(factors.windows(2).all(|w| w[1] >= w[0]), "{factors:?}");
        assert!(factors[2] > 0.0, "{factors:?}");
        assert_eq!(factors[7], 1.0, "{factors:?}");
    }

    #[test]
    fn noise_around_zero_earns_nothing_and_negative_evidence_never_counts() {
        let wrong = [
            0.12, -0.15, 0.02, -0.08, 0.19, -0.11, 0.05, -0.02, 0.09, -0.13,
        ];
        let e = evidence(&wrong);
        assert!(
            e.t_statistic(&RULES).abs() < 1.0,
            "{}",
            e.t_statistic(&RULES)
        );
        assert_eq!(e.factor(&RULES), 0.0);
        assert_eq!(evidence(&[-0.4, -0.3, -0.5]).factor(&RULES), 0.0);
    }

    #[test]
    fn old_evidence_fades_so_a_peer_that_stops_following_its_assignment_loses_it() {
        let mut e = evidence(&[0.35; 20]);
        assert_eq!(e.factor(&RULES), 1.0);
        let mut windows = 0;
        while e.factor(&RULES) > 0.0 {
            e.record(if windows % 2 == 0 { 0.1 } else { -0.1 }, &RULES);
            windows += 1;
            assert!(windows < 60, "evidence never faded");
        }
        assert!(
            windows > 3,
            "one noisy window must not wipe honest evidence ({windows})"
        );
    }

    #[test]
    fn scale_and_advantage_reject_what_is_no_evidence() {
        assert_eq!(window_scale(&[]), None);
        assert_eq!(window_scale(&[0.3, f64::NAN, 0.1, 0.2]), Some(0.2));
        assert_eq!(window_scale(&[0.4, 0.1, 0.2, 0.3]), Some(0.25));
        let x = assignment_advantage(0.3, 0.2, 0.2).unwrap();
        assert!((x - 0.5).abs() < 1e-12, "{x}");
        assert_eq!(assignment_advantage(0.3, 0.2, 0.0), None);
        assert_eq!(assignment_advantage(0.3, 0.2, -0.1), None);
        assert_eq!(assignment_advantage(f64::INFINITY, 0.2, 0.1), None);
    }
}
