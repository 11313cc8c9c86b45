//! Everything the validator remembers about one peer across windows.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::assignment_evidence::AssignmentEvidence;
use crate::config::GauntletConfig;
use crate::metrics::update_moving_average;
use crate::openskill::Rating;
use crate::outcome::{PenaltyKind, Severity};

/// One evaluated window's gradient score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScoreRecord {
    /// The evaluated window.
    pub window: u64,
    /// Relative loss improvement on random data.
    pub gradient_score: f64,
}

/// The most recent penalty of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PenaltyRecord {
    /// Window of the penalty.
    pub window: u64,
    /// What it was for.
    pub kind: PenaltyKind,
}

/// Persistent per-peer scoring state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerState {
    /// OpenSkill Plackett-Luce rating.
    pub rating: Rating,
    /// Moving average of the binary indicator, in [-1, 1] (reported; the final score uses
    /// the assignment evidence).
    pub binary_ma: f64,
    /// Evidence that the peer's updates fit its assigned data (see `assignment_evidence`).
    #[serde(default)]
    pub assignment: AssignmentEvidence,
    /// The same advantages on the cohort scale, for the shortfall check.
    #[serde(default)]
    pub assignment_cohort: AssignmentEvidence,
    /// Sync score of the last evaluation, in [0, 1]; 0 until measured.
    pub sync_score: f64,
    /// The last `score_history_len` gradient scores, oldest first.
    pub gradient_scores: VecDeque<ScoreRecord>,
    /// Evaluations that produced a gradient score.
    pub evaluations: u64,
    /// Windows in which any outcome was recorded for this peer (sampled windows).
    pub windows_rated: u64,
    /// First window this peer was seen in.
    pub first_seen_window: u64,
    /// Last window this peer showed activity (an upload, or `mark_seen`).
    pub last_seen_window: u64,
    /// Last window an outcome was recorded for this peer.
    pub last_rated_window: Option<u64>,
    /// Consecutive evaluations with a non-positive gradient score.
    pub consecutive_negative: u32,
    /// Hard penalties since the last ban.
    pub strikes: u32,
    /// The final score is 0 while the current window is below this.
    pub zeroed_until: u64,
    /// The peer is banned (not sampled, score 0) while the current window is below this.
    pub banned_until: u64,
    /// The most recent penalty.
    pub last_penalty: Option<PenaltyRecord>,
    /// The hotkey (hex account id) this state belongs to, once known: a uid recycled to
    /// another hotkey starts afresh instead of inheriting this rating, strikes or ban.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotkey: Option<String>,
}

impl PeerState {
    /// State of a peer first seen in `window`.
    pub fn new(window: u64, config: &GauntletConfig) -> Self {
        Self {
            rating: Rating::initial(&config.openskill),
            binary_ma: 0.0,
            assignment: AssignmentEvidence::default(),
            assignment_cohort: AssignmentEvidence::default(),
            sync_score: 0.0,
            gradient_scores: VecDeque::new(),
            evaluations: 0,
            windows_rated: 0,
            first_seen_window: window,
            last_seen_window: window,
            last_rated_window: None,
            consecutive_negative: 0,
            strikes: 0,
            zeroed_until: 0,
            banned_until: 0,
            last_penalty: None,
            hotkey: None,
        }
    }

    /// Whether the peer is banned at `window`.
    pub fn is_banned(&self, window: u64) -> bool {
        window < self.banned_until
    }

    /// Whether the peer's score is forced to 0 at `window` by a penalty.
    pub fn is_zeroed(&self, window: u64) -> bool {
        window < self.zeroed_until
    }

    /// Whether the last `negative_streak_limit` gradient scores were all non-positive.
    pub fn has_negative_streak(&self, config: &GauntletConfig) -> bool {
        self.consecutive_negative >= config.negative_streak_limit
    }

    /// Rating factor of the final score: `max(0, ordinal + ordinal_shift)`.
    pub fn rating_factor(&self, config: &GauntletConfig) -> f64 {
        (self.rating.ordinal(config.openskill.ordinal_z) + config.ordinal_shift).max(0.0)
    }

    /// Assignment factor of the final score, in [0, 1].
    pub fn assignment_factor(&self, config: &GauntletConfig) -> f64 {
        let rules = config.evidence_rules();
        self.assignment.factor(&rules) * (1.0 - self.assignment_cohort.shortfall(&rules))
    }

    /// Final score at `window`:
    /// `max(0, ordinal + shift) x assignment factor x sync score`, or 0 while
    /// penalised, on a negative streak, or before any scored evaluation.
    pub fn final_score(&self, window: u64, config: &GauntletConfig) -> f64 {
        self.gated_rating(window, config) * self.assignment_factor(config)
    }

    /// What orders the aggregation list at `window`: the final score, except that during a
    /// peer's first `assignment_grace_evaluations` evaluations the assignment factor counts
    /// as 1. The evidence needs a few windows to speak; until then a newcomer's update is
    /// aggregated on its rating alone (its pay still waits for the evidence), afterwards a
    /// peer that does not train on its assignment drops out of the list as well.
    pub fn list_score(&self, window: u64, config: &GauntletConfig) -> f64 {
        let assignment = if self.evaluations <= config.assignment_grace_evaluations {
            1.0
        } else {
            self.assignment_factor(config)
        };
        self.gated_rating(window, config) * assignment
    }

    /// `max(0, ordinal + shift) x sync score`, or 0 while penalised, on a negative streak,
    /// or before any scored evaluation.
    fn gated_rating(&self, window: u64, config: &GauntletConfig) -> f64 {
        if self.is_zeroed(window) || self.evaluations == 0 || self.has_negative_streak(config) {
            return 0.0;
        }
        self.rating_factor(config) * self.sync_score
    }

    /// Folds one assignment advantage into the evidence.
    pub fn record_assignment_advantage(&mut self, x: f64, config: &GauntletConfig) {
        self.assignment.record(x, &config.evidence_rules());
    }

    /// Folds one cohort-scale assignment advantage into the shortfall evidence.
    pub fn record_cohort_advantage(&mut self, y: f64, config: &GauntletConfig) {
        self.assignment_cohort.record(y, &config.evidence_rules());
    }

    /// Notes activity in `window`.
    pub fn mark_seen(&mut self, window: u64) {
        self.last_seen_window = self.last_seen_window.max(window);
    }

    /// Records a gradient score: history, evaluation count and negative streak.
    pub fn record_gradient_score(
        &mut self,
        window: u64,
        gradient_score: f64,
        config: &GauntletConfig,
    ) {
        self.gradient_scores.push_back(ScoreRecord {
            window,
            gradient_score,
        });
        while self.gradient_scores.len() > config.score_history_len {
            self.gradient_scores.pop_front();
        }
        self.evaluations += 1;
        if gradient_score > 0.0 {
            self.consecutive_negative = 0;
        } else {
            self.consecutive_negative = self.consecutive_negative.saturating_add(1);
        }
    }

    /// Folds a binary indicator sample (+1 / -1) into the moving average.
    pub fn record_indicator(&mut self, indicator: f64, config: &GauntletConfig) {
        self.binary_ma = update_moving_average(self.binary_ma, indicator, config.binary_ma_alpha);
    }

    /// Applies a penalty issued in `window`.
    ///
    /// Soft: the moving average takes a -1 sample and the score is zeroed for
    /// `soft_penalty_windows`. Hard: the moving average is first clamped to at
    /// most 0, then takes the -1 sample, and the assignment evidence is cleared (a
    /// peer caught once earns it again from scratch); the score is zeroed for
    /// `hard_penalty_windows`; a strike is added, and at `max_strikes` the
    /// peer is banned for `ban_windows` (strikes then start over).
    pub fn apply_penalty(&mut self, window: u64, kind: PenaltyKind, config: &GauntletConfig) {
        let zero_for = match kind.severity() {
            Severity::Soft => config.soft_penalty_windows,
            Severity::Hard => {
                self.binary_ma = self.binary_ma.min(0.0);
                self.assignment = AssignmentEvidence::default();
                self.assignment_cohort = AssignmentEvidence::default();
                self.strikes = self.strikes.saturating_add(1);
                if self.strikes >= config.max_strikes {
                    self.strikes = 0;
                    self.banned_until = self
                        .banned_until
                        .max(window.saturating_add(config.ban_windows));
                    config.ban_windows.max(config.hard_penalty_windows)
                } else {
                    config.hard_penalty_windows
                }
            }
        };
        self.record_indicator(-1.0, config);
        self.zeroed_until = self.zeroed_until.max(window.saturating_add(zero_for));
        self.last_penalty = Some(PenaltyRecord { window, kind });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer with one evaluation and assignment evidence of four consistent windows.
    fn scored_peer(config: &GauntletConfig) -> PeerState {
        let mut p = PeerState::new(0, config);
        p.record_gradient_score(0, 0.01, config);
        p.record_indicator(1.0, config);
        for x in [0.3, 0.4, 0.35, 0.3] {
            p.record_assignment_advantage(x, config);
        }
        p.sync_score = 1.0;
        p
    }

    #[test]
    fn final_score_is_product_of_factors() {
        let config = GauntletConfig::default();
        let p = scored_peer(&config);
        let factor = p.assignment.factor(&config.evidence_rules());
        assert!(factor > 0.0 && factor < 1.0, "{factor}");
        let expected = (p.rating.ordinal(3.0) + 25.0) * factor * 1.0;
        assert!((p.final_score(0, &config) - expected).abs() < 1e-12);
        assert!(expected > 0.0);
        let mut half_sync = p.clone();
        half_sync.sync_score = 0.5;
        assert!((half_sync.final_score(0, &config) - expected / 2.0).abs() < 1e-12);
    }

    #[test]
    fn no_assignment_evidence_or_no_evaluation_gives_zero() {
        let config = GauntletConfig::default();
        let fresh = PeerState::new(0, &config);
        assert_eq!(fresh.final_score(0, &config), 0.0);
        let mut p = scored_peer(&config);
        p.assignment = AssignmentEvidence::default();
        // The binary moving average is reported, not scored.
        p.binary_ma = 0.9;
        assert_eq!(p.final_score(0, &config), 0.0);
    }

    #[test]
    fn the_list_ignores_missing_evidence_only_during_the_grace() {
        let config = GauntletConfig::default();
        let mut p = PeerState::new(0, &config);
        p.sync_score = 1.0;
        p.record_gradient_score(0, 0.01, &config);
        // A newcomer: listed on its rating, paid nothing yet.
        assert_eq!(p.final_score(1, &config), 0.0);
        assert!((p.list_score(1, &config) - p.rating_factor(&config)).abs() < 1e-12);
        // Past the grace without evidence: neither listed nor paid.
        for w in 1..=config.assignment_grace_evaluations {
            p.record_gradient_score(w, 0.01, &config);
            p.record_assignment_advantage(if w % 2 == 0 { 0.1 } else { -0.1 }, &config);
        }
        assert!(p.evaluations > config.assignment_grace_evaluations);
        assert_eq!(p.list_score(5, &config), 0.0);
        assert_eq!(p.final_score(5, &config), 0.0);
        // With evidence, the list and the pay agree.
        for _ in 0..6 {
            p.record_assignment_advantage(0.35, &config);
        }
        assert!(p.final_score(5, &config) > 0.0);
        assert_eq!(p.final_score(5, &config), p.list_score(5, &config));
    }

    #[test]
    fn soft_penalty_zeroes_for_configured_windows() {
        let config = GauntletConfig::default();
        let mut p = scored_peer(&config);
        let ma_before = p.binary_ma;
        let evidence = p.assignment;
        p.apply_penalty(10, PenaltyKind::Late, &config);
        assert!((p.binary_ma - (0.95 * ma_before - 0.05)).abs() < 1e-12);
        // A missing or late object says nothing about the data it was trained on.
        assert_eq!(p.assignment, evidence);
        assert_eq!(p.strikes, 0);
        assert_eq!(p.final_score(10, &config), 0.0);
        assert_eq!(p.final_score(11, &config), 0.0);
        assert!(!p.is_zeroed(12));
    }

    #[test]
    fn hard_penalties_strike_then_ban() {
        let config = GauntletConfig::default();
        let mut p = scored_peer(&config);
        p.binary_ma = 0.8;
        p.apply_penalty(5, PenaltyKind::Invalid, &config);
        assert_eq!(p.binary_ma, -0.05);
        assert_eq!(p.assignment, AssignmentEvidence::default());
        assert_eq!(p.strikes, 1);
        assert!(p.is_zeroed(5 + config.hard_penalty_windows - 1));
        assert!(!p.is_zeroed(5 + config.hard_penalty_windows));
        assert!(!p.is_banned(6));
        p.apply_penalty(6, PenaltyKind::Copy, &config);
        p.apply_penalty(7, PenaltyKind::Poison, &config);
        assert!(p.is_banned(7 + config.ban_windows - 1));
        assert!(!p.is_banned(7 + config.ban_windows));
        assert!(p.is_zeroed(7 + config.ban_windows - 1));
        assert_eq!(p.strikes, 0);
        assert_eq!(p.last_penalty.map(|r| r.kind), Some(PenaltyKind::Poison));
    }

    #[test]
    fn negative_streak_zeroes_and_positive_score_resets_it() {
        let config = GauntletConfig {
            negative_streak_limit: 3,
            ..Default::default()
        };
        let mut p = scored_peer(&config);
        for w in 1..=3 {
            assert!(p.final_score(w, &config) > 0.0);
            p.record_gradient_score(w, -0.001, &config);
        }
        assert!(p.has_negative_streak(&config));
        assert_eq!(p.final_score(4, &config), 0.0);
        p.record_gradient_score(4, 0.002, &config);
        assert_eq!(p.consecutive_negative, 0);
        assert!(p.final_score(5, &config) > 0.0);
    }

    #[test]
    fn history_is_bounded() {
        let config = GauntletConfig {
            score_history_len: 4,
            ..Default::default()
        };
        let mut p = PeerState::new(0, &config);
        for w in 0..10 {
            p.record_gradient_score(w, w as f64, &config);
        }
        let windows: Vec<u64> = p.gradient_scores.iter().map(|r| r.window).collect();
        assert_eq!(windows, vec![6, 7, 8, 9]);
        assert_eq!(p.evaluations, 10);
    }
}
