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
//! A second, one-sided check guards the late stages of a run, when gains are small and a
//! few weak or negative peers drag the median gain down: there, on the devnet, a
//! wrong-data miner's advantage stayed small but positive for several windows (about a
//! fifth of the honest one) and the first test alone paid it again. Each clean evaluation
//! is also measured against the window's *cohort*, `y = d / median of the positive d`
//! (when at least `cohort_min` peers show one), and the factor is cut by the evidence that
//! the peer's mean `y` lies below `cohort_share`: a shrunk t statistic of the shortfall,
//! with one pseudo-observation at 1 (an honest peer's level), through the same ramp. An
//! honest peer is about 1 on this scale, so only a peer that consistently fits its own
//! data much less than the typical advantaged peer loses its pay to it.
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
    /// Positive advantages a window needs for a cohort scale.
    pub cohort_min: usize,
    /// Share of the cohort scale below which a peer's mean counts as a shortfall.
    pub cohort_share: f64,
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
        self.shrunk_t(0.0, rules)
            .map_or(0.0, |(mean, t_unit)| mean * t_unit)
    }

    /// Factor of the final score, in [0, 1].
    pub fn factor(&self, rules: &EvidenceRules) -> f64 {
        ramp(self.t_statistic(rules), rules)
    }

    /// How firmly cohort-scale observations place the mean below `rules.cohort_share`,
    /// in [0, 1] (shrunk towards 1, an honest peer's level; 0 without observations).
    pub fn shortfall(&self, rules: &EvidenceRules) -> f64 {
        self.shrunk_t(1.0, rules).map_or(0.0, |(mean, t_unit)| {
            ramp((rules.cohort_share - mean) * t_unit, rules)
        })
    }

    /// The mean with one pseudo-observation at `prior_mean`, and the factor turning a
    /// difference of means into a t statistic (`sqrt(weight) / sd`, the prior's
    /// deviation added to the variance); `None` without observations.
    fn shrunk_t(&self, prior_mean: f64, rules: &EvidenceRules) -> Option<(f64, f64)> {
        if self.weight <= 0.0 {
            return None;
        }
        let mean = (self.sum + prior_mean) / (self.weight + 1.0);
        // Weighted squared deviations from that mean, plus the prior's.
        let deviations = (self.sum_sq - 2.0 * mean * self.sum + mean * mean * self.weight).max(0.0);
        let variance = (deviations + rules.prior_sd * rules.prior_sd) / self.weight;
        let t_unit = self.weight.sqrt() / variance.sqrt();
        (mean.is_finite() && t_unit.is_finite()).then_some((mean, t_unit))
    }
}

/// The factor ramp: 0 at and below `t_zero`, 1 at and above `t_full`, linear between.
fn ramp(t: f64, rules: &EvidenceRules) -> f64 {
    ((t - rules.t_zero) / (rules.t_full - rules.t_zero)).clamp(0.0, 1.0)
}

/// The cohort scale of a window: the median of its positive assignment advantages (its
/// clean evaluations' assigned-minus-random gains), when at least `rules.cohort_min` are
/// positive.
pub fn cohort_scale(advantages: &[f64], rules: &EvidenceRules) -> Option<f64> {
    let positive: Vec<f64> = advantages.iter().copied().filter(|d| *d > 0.0).collect();
    if positive.len() < rules.cohort_min {
        return None;
    }
    window_scale(&positive)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: EvidenceRules = EvidenceRules {
        decay: 0.95,
        prior_sd: 0.5,
        t_zero: 1.0,
        t_full: 2.0,
        cohort_min: 3,
        cohort_share: 0.5,
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
    fn a_consistent_shortfall_against_the_cohort_cuts_the_factor_and_honest_levels_do_not() {
        let fifth = evidence(&[0.2, 0.25, 0.15, 0.3, 0.1, 0.2, 0.22, 0.18, 0.2, 0.25]);
        assert_eq!(fifth.shortfall(&RULES), 1.0);
        let honest = evidence(&[1.3, 0.6, 0.9, 1.1, 0.4, 1.6, 0.8, 1.0, 0.7, 1.2]);
        assert_eq!(honest.shortfall(&RULES), 0.0);
        // Two weak windows are not enough to cut an honest peer.
        assert_eq!(evidence(&[0.1, 0.2]).shortfall(&RULES), 0.0);
        assert_eq!(AssignmentEvidence::default().shortfall(&RULES), 0.0);
    }

    #[test]
    fn the_cohort_scale_needs_enough_positive_advantages() {
        assert_eq!(
            cohort_scale(&[0.04, 0.03, -0.02, 0.0, 0.05], &RULES),
            Some(0.04)
        );
        assert_eq!(cohort_scale(&[0.04, 0.03, -0.02, 0.0], &RULES), None);
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
