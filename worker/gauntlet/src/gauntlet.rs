//! The validator's scoring state machine: one `record_window` per evaluated
//! window, then weights and the next peer list are read off the state.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::assignment_evidence::{assignment_advantage, cohort_scale, window_scale};
use crate::config::GauntletConfig;
use crate::error::GauntletError;
use crate::metrics::{binary_indicator, relative_improvement, sync_score};
use crate::openskill::rate_plackett_luce;
use crate::outcome::{Outcome, PeerOutcome, PenaltyKind};
use crate::peer_list::{PEER_LIST_SCHEMA_VERSION, PeerList};
use crate::peer_state::PeerState;
use crate::sampling;
use crate::weights::normalise_weights;

/// Schema version of the persisted [`GauntletState`].
pub const STATE_SCHEMA_VERSION: u32 = 1;

/// Everything the validator must persist across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GauntletState {
    /// Schema of this document.
    pub schema_version: u32,
    /// The last window passed to `record_window`.
    pub last_window: Option<u64>,
    /// Per-peer state by uid.
    pub peers: BTreeMap<u16, PeerState>,
}

impl Default for GauntletState {
    fn default() -> Self {
        Self {
            schema_version: STATE_SCHEMA_VERSION,
            last_window: None,
            peers: BTreeMap::new(),
        }
    }
}

/// What `record_window` did for one peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerReport {
    /// The peer.
    pub uid: u16,
    /// Relative loss improvement on random data, when it could be computed.
    pub gradient_score: Option<f64>,
    /// The binary indicator sample (+1 / -1) of a clean evaluation.
    pub binary_indicator: Option<f64>,
    /// The assignment advantage of a clean evaluation (none when the window's median
    /// random-data improvement was not positive).
    #[serde(default)]
    pub assignment_advantage: Option<f64>,
    /// The sync score of a clean evaluation.
    pub sync_score: Option<f64>,
    /// The penalty issued, if any.
    pub penalty: Option<PenaltyKind>,
    /// Why the outcome was ignored, if it was (validator-side problem).
    pub skipped: Option<String>,
    /// Rating ordinal after the update.
    pub ordinal: f64,
    /// Binary moving average after the update.
    pub binary_ma: f64,
    /// Assignment factor of the final score after the update.
    #[serde(default)]
    pub assignment_factor: f64,
    /// Final score after the update.
    pub final_score: f64,
}

/// Summary of one `record_window` call, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// The recorded window.
    pub window: u64,
    /// One entry per distinct uid in the outcomes, in input order.
    pub peers: Vec<PeerReport>,
    /// Peers dropped for inactivity at the end of the window.
    pub dropped: Vec<u16>,
}

/// How one outcome is scored.
enum Assessment {
    /// Counts: ranked by gradient score.
    Clean {
        gradient_score: f64,
        /// Relative loss improvement on the peer's assigned data.
        assigned: f64,
        indicator: f64,
        sync: f64,
    },
    /// Penalised: ranked last; a gradient score is kept when one was measured.
    Penalised {
        kind: PenaltyKind,
        gradient_score: Option<f64>,
    },
    /// Ignored: the validator could not judge the peer.
    Skipped(String),
}

fn assess(outcome: &Outcome, config: &GauntletConfig) -> Assessment {
    let penalised = |kind| Assessment::Penalised {
        kind,
        gradient_score: None,
    };
    match outcome {
        Outcome::Missing => penalised(PenaltyKind::Missing),
        Outcome::Late => penalised(PenaltyKind::Late),
        Outcome::Invalid { .. } => penalised(PenaltyKind::Invalid),
        Outcome::BadSignature => penalised(PenaltyKind::BadSignature),
        Outcome::Copy { .. } => penalised(PenaltyKind::Copy),
        Outcome::Evaluated {
            loss_before_assigned,
            loss_after_assigned,
            loss_before_random,
            loss_after_random,
            steps_behind,
            digest_ok,
        } => {
            if !digest_ok {
                return penalised(PenaltyKind::DigestMismatch);
            }
            let usable = |loss: f64| loss.is_finite() && loss > 0.0;
            if !usable(*loss_before_assigned) || !usable(*loss_before_random) {
                return Assessment::Skipped(
                    "loss before the update is not a positive finite number".into(),
                );
            }
            let (Some(random), Some(assigned)) = (
                relative_improvement(*loss_before_random, *loss_after_random),
                relative_improvement(*loss_before_assigned, *loss_after_assigned),
            ) else {
                return penalised(PenaltyKind::Poison);
            };
            if random.min(assigned) < -config.poison_loss_increase {
                return Assessment::Penalised {
                    kind: PenaltyKind::Poison,
                    gradient_score: Some(random),
                };
            }
            Assessment::Clean {
                gradient_score: random,
                assigned,
                indicator: binary_indicator(assigned, random),
                sync: sync_score(
                    *steps_behind,
                    config.sync_max_steps_behind,
                    config.sync_exponent,
                ),
            }
        }
    }
}

/// Gauntlet scoring core.
#[derive(Debug, Clone)]
pub struct Gauntlet {
    config: GauntletConfig,
    state: GauntletState,
}

impl Gauntlet {
    /// A validator with no history.
    pub fn new(config: GauntletConfig) -> Result<Self, GauntletError> {
        Self::from_state(config, GauntletState::default())
    }

    /// Resumes from persisted state.
    pub fn from_state(config: GauntletConfig, state: GauntletState) -> Result<Self, GauntletError> {
        config.validate()?;
        if state.schema_version != STATE_SCHEMA_VERSION {
            return Err(GauntletError::UnsupportedSchema {
                document: "state",
                found: state.schema_version,
                expected: STATE_SCHEMA_VERSION,
            });
        }
        Ok(Self { config, state })
    }

    /// Resumes from state serialised by [`Gauntlet::to_json`].
    pub fn from_json(config: GauntletConfig, json: &str) -> Result<Self, GauntletError> {
        Self::from_state(config, serde_json::from_str(json)?)
    }

    /// Serialises the state (not the config) to JSON.
    pub fn to_json(&self) -> Result<String, GauntletError> {
        Ok(serde_json::to_string(&self.state)?)
    }

    /// The rules in force.
    pub fn config(&self) -> &GauntletConfig {
        &self.config
    }

    /// The persisted state.
    pub fn state(&self) -> &GauntletState {
        &self.state
    }

    /// One peer's state.
    pub fn peer(&self, uid: u16) -> Option<&PeerState> {
        self.state.peers.get(&uid)
    }

    /// The window scores are evaluated at: the last recorded one (0 before any).
    fn now(&self) -> u64 {
        self.state.last_window.unwrap_or(0)
    }

    /// Chooses the peers to evaluate in `window` among `active_uids`
    /// (deterministic given the seed; see the `sampling` rules in the README).
    pub fn sample_peers(&self, window: u64, active_uids: &[u16], seed: u64) -> Vec<u16> {
        sampling::sample_peers(&self.state.peers, window, active_uids, seed, &self.config)
    }

    /// Binds each uid's state to the hotkey registered for it now (hex account id). A uid
    /// whose hotkey changed (deregistered and taken by someone else) loses its old state:
    /// the newcomer starts fresh instead of inheriting its predecessor's rating, strikes or
    /// ban. Returns the uids that were reset.
    pub fn bind_hotkeys(&mut self, window: u64, hotkeys: &[(u16, String)]) -> Vec<u16> {
        let mut reset = Vec::new();
        for (uid, hotkey) in hotkeys {
            let state = self
                .state
                .peers
                .entry(*uid)
                .or_insert_with(|| PeerState::new(window, &self.config));
            match &state.hotkey {
                Some(known) if known != hotkey => {
                    *state = PeerState::new(window, &self.config);
                    state.hotkey = Some(hotkey.clone());
                    reset.push(*uid);
                }
                Some(_) => {}
                None => state.hotkey = Some(hotkey.clone()),
            }
        }
        reset
    }

    /// Notes that `uids` showed activity in `window` (e.g. a gradient exists
    /// for them) even if they were not evaluated, so they are not dropped as
    /// inactive. Unknown uids get a fresh state.
    pub fn mark_seen(&mut self, window: u64, uids: &[u16]) {
        for &uid in uids {
            self.state
                .peers
                .entry(uid)
                .or_insert_with(|| PeerState::new(window, &self.config))
                .mark_seen(window);
        }
    }

    /// Scores one window's outcomes: updates moving averages, sync scores,
    /// histories, penalties and the ratings of all participants, then drops
    /// inactive peers. Windows must be recorded in increasing order. A uid
    /// listed twice keeps its first outcome.
    pub fn record_window(
        &mut self,
        window: u64,
        outcomes: Vec<PeerOutcome>,
    ) -> Result<WindowReport, GauntletError> {
        if let Some(last) = self.state.last_window
            && window <= last
        {
            return Err(GauntletError::WindowAlreadyRecorded { window, last });
        }
        let config = &self.config;
        let mut seen_uids = BTreeSet::new();
        let mut reports = Vec::with_capacity(outcomes.len());
        // (uid, gradient score if clean): penalised participants rank last.
        let mut participants: Vec<(u16, Option<f64>)> = Vec::new();

        let mut assessed = Vec::with_capacity(outcomes.len());
        for PeerOutcome { uid, outcome } in outcomes {
            if !seen_uids.insert(uid) {
                tracing::warn!(uid, window, "duplicate outcome ignored");
                continue;
            }
            let assessment = assess(&outcome, config);
            assessed.push((uid, outcome, assessment));
        }
        // The scales of this window's assignment advantages: its median clean gain, and
        // the median of its positive advantages (the cohort).
        let (clean_gains, advantages): (Vec<f64>, Vec<f64>) = assessed
            .iter()
            .filter_map(|(_, _, a)| match a {
                Assessment::Clean {
                    gradient_score,
                    assigned,
                    ..
                } => Some((*gradient_score, assigned - gradient_score)),
                _ => None,
            })
            .unzip();
        let scale = window_scale(&clean_gains);
        let cohort = cohort_scale(&advantages, &config.evidence_rules());

        for (uid, outcome, assessment) in assessed {
            let peer = self
                .state
                .peers
                .entry(uid)
                .or_insert_with(|| PeerState::new(window, config));
            if outcome != Outcome::Missing {
                peer.mark_seen(window);
            }
            let mut report = PeerReport {
                uid,
                gradient_score: None,
                binary_indicator: None,
                assignment_advantage: None,
                sync_score: None,
                penalty: None,
                skipped: None,
                ordinal: 0.0,
                binary_ma: 0.0,
                assignment_factor: 0.0,
                final_score: 0.0,
            };
            match assessment {
                Assessment::Skipped(reason) => {
                    tracing::warn!(uid, window, %reason, "outcome skipped");
                    report.skipped = Some(reason);
                    reports.push(report);
                    continue;
                }
                Assessment::Clean {
                    gradient_score,
                    assigned,
                    indicator,
                    sync,
                } => {
                    peer.record_gradient_score(window, gradient_score, config);
                    peer.record_indicator(indicator, config);
                    let advantage =
                        scale.and_then(|s| assignment_advantage(assigned, gradient_score, s));
                    if let Some(x) = advantage {
                        peer.record_assignment_advantage(x, config);
                    }
                    if let Some(y) =
                        cohort.and_then(|c| assignment_advantage(assigned, gradient_score, c))
                    {
                        peer.record_cohort_advantage(y, config);
                    }
                    report.assignment_advantage = advantage;
                    peer.sync_score = sync;
                    report.gradient_score = Some(gradient_score);
                    report.binary_indicator = Some(indicator);
                    report.sync_score = Some(sync);
                    participants.push((uid, Some(gradient_score)));
                }
                Assessment::Penalised {
                    kind,
                    gradient_score,
                } => {
                    if let Some(score) = gradient_score {
                        peer.record_gradient_score(window, score, config);
                    }
                    tracing::warn!(uid, window, ?kind, ?outcome, "peer penalised");
                    peer.apply_penalty(window, kind, config);
                    report.gradient_score = gradient_score;
                    report.penalty = Some(kind);
                    participants.push((uid, None));
                }
            }
            peer.windows_rated += 1;
            peer.last_rated_window = Some(window);
            reports.push(report);
        }

        self.update_ratings(&participants);
        self.state.last_window = Some(window);
        let dropped = self.drop_inactive(window);

        for report in &mut reports {
            if let Some(peer) = self.state.peers.get(&report.uid) {
                report.ordinal = peer.rating.ordinal(self.config.openskill.ordinal_z);
                report.binary_ma = peer.binary_ma;
                report.assignment_factor = peer.assignment_factor(&self.config);
                report.final_score = peer.final_score(window, &self.config);
            }
        }
        tracing::info!(
            window,
            evaluated = participants.len(),
            penalised = reports.iter().filter(|r| r.penalty.is_some()).count(),
            dropped = dropped.len(),
            "window recorded"
        );
        Ok(WindowReport {
            window,
            peers: reports,
            dropped,
        })
    }

    /// One Plackett-Luce update over the window's participants: clean peers
    /// ranked by gradient score (ties share a rank), penalised ones tied last.
    fn update_ratings(&mut self, participants: &[(u16, Option<f64>)]) {
        let clean_scores: Vec<f64> = participants.iter().filter_map(|&(_, s)| s).collect();
        let last_place = clean_scores.len() as u32;
        let ranks: Vec<u32> = participants
            .iter()
            .map(|&(_, score)| match score {
                Some(s) => clean_scores.iter().filter(|&&other| other > s).count() as u32,
                None => last_place,
            })
            .collect();
        let ratings: Vec<_> = participants
            .iter()
            .filter_map(|(uid, _)| self.state.peers.get(uid).map(|p| p.rating))
            .collect();
        if ratings.len() != participants.len() {
            return;
        }
        let updated = rate_plackett_luce(&ratings, &ranks, &self.config.openskill);
        for ((uid, _), rating) in participants.iter().zip(updated) {
            if let Some(peer) = self.state.peers.get_mut(uid) {
                peer.rating = rating;
            }
        }
    }

    /// Removes peers not seen for more than `inactivity_windows` (banned peers
    /// are kept until the ban ends, so going quiet does not wash a ban).
    fn drop_inactive(&mut self, window: u64) -> Vec<u16> {
        let limit = self.config.inactivity_windows;
        let dropped: Vec<u16> = self
            .state
            .peers
            .iter()
            .filter(|(_, p)| {
                window.saturating_sub(p.last_seen_window) > limit && !p.is_banned(window)
            })
            .map(|(&uid, _)| uid)
            .collect();
        for uid in &dropped {
            tracing::info!(uid, window, "peer dropped for inactivity");
            self.state.peers.remove(uid);
        }
        dropped
    }

    /// A peer's final score at the last recorded window (0 if unknown).
    pub fn final_score(&self, uid: u16) -> f64 {
        self.state
            .peers
            .get(&uid)
            .map_or(0.0, |p| p.final_score(self.now(), &self.config))
    }

    /// Final scores of all known peers, by uid.
    pub fn final_scores(&self) -> Vec<(u16, f64)> {
        let now = self.now();
        self.state
            .peers
            .iter()
            .map(|(&uid, p)| (uid, p.final_score(now, &self.config)))
            .collect()
    }

    /// Chain weights: every known peer by uid, proportional to its final score
    /// and summing to 1; 0 for penalised peers. All 0 when nobody scores.
    pub fn weights(&self) -> Vec<(u16, f32)> {
        normalise_weights(&self.final_scores())
    }

    /// The aggregation list for `window`: the `peer_list_size` best peers by
    /// list score ([`PeerState::list_score`]: the final score, with the assignment factor
    /// taken as 1 during a newcomer's first evaluations; ties by uid), then
    /// `peer_list_reserve` reserves. Only
    /// positive scores qualify; when `fill_peer_list_with_unrated` is set,
    /// free slots go to peers that were seen but never scored and never
    /// penalised (newcomers), most recently seen first.
    pub fn peer_list(&self, window: u64) -> PeerList {
        let now = self.now();
        let mut scored: Vec<(u16, f64)> = self
            .state
            .peers
            .iter()
            .map(|(&uid, p)| (uid, p.list_score(now, &self.config)))
            .filter(|&(_, s)| s > 0.0)
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut ordered: Vec<u16> = scored.into_iter().map(|(uid, _)| uid).collect();

        let capacity = self.config.peer_list_size + self.config.peer_list_reserve;
        if self.config.fill_peer_list_with_unrated && ordered.len() < capacity {
            let mut unrated: Vec<(u16, u64)> = self
                .state
                .peers
                .iter()
                .filter(|(_, p)| {
                    p.evaluations == 0 && p.last_penalty.is_none() && !p.is_banned(now)
                })
                .map(|(&uid, p)| (uid, p.last_seen_window))
                .collect();
            unrated.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            ordered.extend(unrated.into_iter().map(|(uid, _)| uid));
        }
        ordered.truncate(capacity);
        let reserves = ordered.split_off(ordered.len().min(self.config.peer_list_size));
        PeerList {
            schema_version: PEER_LIST_SCHEMA_VERSION,
            window,
            peers: ordered,
            reserves,
        }
    }
}
