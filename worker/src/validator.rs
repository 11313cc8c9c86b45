//! The Gauntlet validator's work for one window: authenticate, decode and measure each
//! sampled peer's gradient, detect copies, update the scores, choose the aggregation set.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use std::time::UNIX_EPOCH;

use tch::Device;
use worker_gauntlet::{
    CopyFlag, Gauntlet, GauntletConfig, Outcome, PeerList, PeerOutcome, WindowReport,
    apply_copy_flags, detect_copies_with,
};
use worker_model::{Batch, Samples};
use worker_sparseloco::{GradientPayload, decode, index_overlap};
use worker_storage::{StorageError, StoredObject};

use crate::error::Result;
use crate::evaluator::{evaluate_update, fit_gain};
use crate::gradient_object::{GradientObject, ObjectError};
use crate::miner::assignment;
use crate::replica::{ObjectRules, Replica};
use crate::settings::TrainingSettings;
use crate::sync_check::SyncHistory;

/// How the validator measures peers.
#[derive(Debug, Clone)]
pub struct EvalSettings {
    /// Micro-batches of a peer's assigned data used to measure it.
    pub assigned_batches: usize,
    /// Micro-batches of random data used to measure every peer of a window.
    pub random_batches: usize,
    /// Learning rate a single peer's update is applied with.
    pub lr: f64,
    /// Largest accepted gradient object.
    pub max_object_bytes: usize,
    /// Seed of the random-data batches. `None` (production) draws them from the operating
    /// system, so miners cannot know them in advance; the devnet and tests seed them so runs
    /// are reproducible.
    pub random_seed: Option<u64>,
}

impl EvalSettings {
    /// The run manifest's evaluation settings with this validator's object limit and seed.
    pub fn from_manifest(
        settings: &TrainingSettings,
        max_object_bytes: usize,
        random_seed: Option<u64>,
    ) -> Self {
        let g = &settings.manifest().manifest().gauntlet;
        Self {
            assigned_batches: g.eval_batches as usize,
            random_batches: g.eval_batches as usize,
            lr: g.eval_lr_factor,
            max_object_bytes,
            random_seed,
        }
    }
}

/// The uid slot whose assignment stream provides seeded random batches (no real uid).
const RANDOM_STREAM_UID: u16 = u16::MAX;

/// A peer's upload as the I/O layer found it.
pub struct Submission {
    pub uid: u16,
    /// The hotkey registered for the uid on chain.
    pub hotkey: [u8; 32],
    /// The fetched gradient object or why it could not be fetched.
    pub object: std::result::Result<StoredObject, StorageError>,
    /// The peer's published parameter sample for this window, if any.
    pub sync_sample: Option<Vec<f32>>,
}

/// Verifies an sr25519 signature.
pub type Verifier = dyn Fn(&[u8; 32], &[u8], &[u8; 64]) -> bool + Sync;

/// A peer object that passed every check.
#[derive(Debug, Clone)]
pub struct AcceptedGradient {
    pub payload: GradientPayload,
    pub sample_digest: [u8; 32],
    /// Upload time in milliseconds since the epoch.
    pub uploaded_at: u64,
}

/// Parses, authenticates and decodes one fetched object.
pub fn accept(
    object: &StoredObject,
    window: u64,
    uid: u16,
    hotkey: &[u8; 32],
    rules: &ObjectRules,
    max_bytes: usize,
    verify: &Verifier,
) -> std::result::Result<AcceptedGradient, Outcome> {
    let parsed = GradientObject::parse(&object.body, max_bytes).map_err(invalid)?;
    parsed
        .verify(&rules.run_manifest(), window, uid, hotkey, verify)
        .map_err(|err| match err {
            ObjectError::WrongSigner | ObjectError::BadSignature => Outcome::BadSignature,
            // Not a contribution to this run (a peer on another manifest): no gradient.
            ObjectError::ForeignManifest { theirs, ours } => {
                tracing::warn!(uid, %theirs, %ours, "gradient made under another run manifest");
                Outcome::Missing
            }
            other => invalid(other),
        })?;
    let payload = decode(&parsed.payload, rules.specs()).map_err(invalid)?;
    payload.check_origin(window, uid).map_err(invalid)?;
    let uploaded_at = object
        .last_modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Ok(AcceptedGradient {
        payload,
        sample_digest: parsed.sample_digest,
        uploaded_at,
    })
}

fn invalid(err: impl std::fmt::Display) -> Outcome {
    Outcome::Invalid {
        reason: err.to_string(),
    }
}

/// Maps a failed fetch to the Gauntlet outcome it deserves.
pub fn fetch_outcome(err: &StorageError) -> Outcome {
    match err {
        StorageError::TooLate { .. } | StorageError::TooEarly { .. } => Outcome::Late,
        StorageError::TooLarge { .. } => invalid(err),
        // A checksum mismatch is what a transport fault looks like: no gradient, no strike.
        StorageError::Checksum { .. } => Outcome::Missing,
        _ => Outcome::Missing,
    }
}

/// What one window's evaluation produced.
#[derive(Debug)]
pub struct WindowEvaluation {
    pub report: WindowReport,
    pub outcomes: Vec<PeerOutcome>,
    pub copies: Vec<CopyFlag>,
    pub peer_list: PeerList,
    /// Peers evaluated in this window whose update lowered the loss on random data, with
    /// the SHA-256 of the exact object evaluated.
    pub evaluated: Vec<(u16, String)>,
    /// Peers of same-second copy pairs the tie-break left unscored.
    pub unscored_copies: Vec<u16>,
}

impl WindowEvaluation {
    /// What this window may aggregate: the Gauntlet's list (peers best first, then reserves)
    /// restricted to peers evaluated *in this window* with an improving update, pinned to
    /// the bytes evaluated, at most as many as the list has peers. A peer that behaves only
    /// when it expects to be evaluated gains nothing: what is not evaluated is not applied,
    /// and a swapped object no longer matches its pinned digest.
    pub fn aggregation_candidates(&self) -> Vec<(u16, String)> {
        self.peer_list
            .all()
            .filter_map(|uid| self.evaluated.iter().find(|(u, _)| *u == uid).cloned())
            .take(self.peer_list.peers.len())
            .collect()
    }
}

/// Whether an outcome is an evaluation whose update lowered the random-data loss.
fn improves_random_loss(outcome: &Outcome) -> bool {
    matches!(
        outcome,
        Outcome::Evaluated { loss_before_random, loss_after_random, .. }
            if loss_after_random < loss_before_random
    )
}

/// A validator: a model replica in lockstep with the miners plus the Gauntlet state.
pub struct Validator {
    pub replica: Replica,
    pub gauntlet: Gauntlet,
    pub sync: SyncHistory,
    settings: TrainingSettings,
    eval: EvalSettings,
    /// Outcomes decided before the next window's evaluation (objects rewritten after they
    /// were evaluated); they take precedence over that window's own outcome of the peer.
    pending: Vec<PeerOutcome>,
}

impl Validator {
    /// A validator starting from the run's initial weights.
    pub fn new(
        settings: &TrainingSettings,
        eval: EvalSettings,
        gauntlet: GauntletConfig,
        device: Device,
    ) -> Result<Self> {
        let replica = Replica::for_run(settings, device)?;
        let mut sync = SyncHistory::default();
        sync.push(replica.sync_sample()?);
        Ok(Self {
            replica,
            gauntlet: Gauntlet::new(gauntlet)?,
            sync,
            settings: settings.clone(),
            eval,
            pending: Vec::new(),
        })
    }

    /// Records that `uid` rewrote its object of `window` after this validator evaluated
    /// (and listed) it: an invalid outcome in the next evaluated window, whatever else that
    /// window shows of the peer.
    pub fn penalise_rewrite(&mut self, uid: u16, window: u64) {
        tracing::warn!(uid, window, "object rewritten after its evaluation");
        self.pending.push(PeerOutcome::new(
            uid,
            Outcome::Invalid {
                reason: format!("its window {window} object was rewritten after it was evaluated"),
            },
        ));
    }

    /// Which peers to evaluate in `window`.
    pub fn sample(&self, window: u64, active: &[u16]) -> Vec<u16> {
        self.gauntlet
            .sample_peers(window, active, self.settings.run_seed ^ window)
    }

    /// Scores the submissions of `window` and returns the next aggregation list.
    pub fn evaluate_window(
        &mut self,
        window: u64,
        submissions: Vec<Submission>,
        dataset: &dyn Samples,
        verify: &Verifier,
    ) -> Result<WindowEvaluation> {
        // Earlier decisions first: the Gauntlet keeps a uid's first outcome.
        let mut outcomes = std::mem::take(&mut self.pending);
        outcomes.reserve(submissions.len());
        let mut accepted: Vec<(u16, AcceptedGradient, Option<Vec<f32>>)> = Vec::new();
        // SHA-256 of the exact bytes evaluated, so only those bytes can be aggregated.
        let mut evaluated_digests = BTreeMap::new();
        for sub in submissions {
            if let Ok(obj) = &sub.object {
                evaluated_digests.insert(sub.uid, hex::encode(Sha256::digest(&obj.body)));
            }
            let checked = sub.object.as_ref().map_err(fetch_outcome).and_then(|obj| {
                accept(
                    obj,
                    window,
                    sub.uid,
                    &sub.hotkey,
                    self.replica.rules(),
                    self.eval.max_object_bytes,
                    verify,
                )
            });
            match checked {
                Ok(gradient) => accepted.push((sub.uid, gradient, sub.sync_sample)),
                Err(outcome) => outcomes.push(PeerOutcome::new(sub.uid, outcome)),
            }
        }

        let uploads: Vec<(u16, u64)> = accepted
            .iter()
            .map(|(u, g, _)| (*u, g.uploaded_at))
            .collect();
        let copies = detect_copies_with(
            &uploads,
            self.gauntlet.config().copy_overlap_threshold,
            |i, j| match (accepted.get(i), accepted.get(j)) {
                (Some(a), Some(b)) => index_overlap(&a.1.payload, &b.1.payload).unwrap_or(0.0),
                _ => 0.0,
            },
        );
        let random = self.random_batches(dataset, window)?;
        let before_random = self.replica.model.loss_on_batches(&random)?;
        let mut deltas = BTreeMap::new();
        let mut digests_ok = BTreeMap::new();
        let mut assigned_batches = BTreeMap::new();
        for (uid, gradient, _) in &accepted {
            let (ids, digest) = assignment(&self.settings, dataset, *uid, window)?;
            digests_ok.insert(*uid, digest.0 == gradient.sample_digest);
            let take = (self.eval.assigned_batches * self.settings.micro_batch_size).min(ids.len());
            let assigned = dataset.batches(&ids[..take], self.settings.micro_batch_size)?;
            let delta = evaluate_update(
                &mut self.replica,
                &gradient.payload,
                &assigned,
                &random,
                before_random,
                self.eval.lr,
            )
            .map_err(|err| err.to_string());
            deltas.insert(*uid, delta);
            assigned_batches.insert(*uid, assigned);
        }
        let payloads: BTreeMap<u16, &GradientPayload> =
            accepted.iter().map(|(u, g, _)| (*u, &g.payload)).collect();
        let fits = self.cross_fits(window, dataset, &payloads, &mutual_pairs(&copies))?;
        let CopyResolution {
            flags: copies,
            unscored,
        } = resolve_copy_ties(copies, &fits);
        let copiers: Vec<u16> = copies.iter().map(|c| c.copier).collect();

        for (uid, _, sync_sample) in &accepted {
            if copiers.contains(uid) {
                // Replaced by the copy outcome in apply_copy_flags below.
                outcomes.push(PeerOutcome::new(*uid, Outcome::Missing));
                continue;
            }
            if unscored.contains(uid) {
                // Copy or original of a same-second pair the evidence cannot tell apart: no
                // outcome this window (as if not sampled), so neither is credited or
                // aggregated, and neither is penalised.
                tracing::warn!(uid, "same-second copy pair not settled: not scored");
                continue;
            }
            let outcome = match deltas.remove(uid) {
                Some(Ok(delta)) => Outcome::Evaluated {
                    loss_before_assigned: delta.before_assigned,
                    loss_after_assigned: delta.after_assigned,
                    loss_before_random: delta.before_random,
                    loss_after_random: delta.after_random,
                    steps_behind: self.sync.steps_behind(sync_sample.as_deref()),
                    digest_ok: digests_ok.get(uid).copied().unwrap_or(false),
                },
                Some(Err(reason)) => Outcome::Invalid { reason },
                None => Outcome::Missing,
            };
            outcomes.push(PeerOutcome::new(*uid, outcome));
        }
        apply_copy_flags(&mut outcomes, &copies);
        let report = self.gauntlet.record_window(window, outcomes.clone())?;
        let peer_list = self.gauntlet.peer_list(window);
        let evaluated = outcomes
            .iter()
            .filter(|o| improves_random_loss(&o.outcome))
            .filter_map(|o| Some((o.uid, evaluated_digests.get(&o.uid)?.clone())))
            .collect();
        Ok(WindowEvaluation {
            report,
            outcomes,
            copies,
            peer_list,
            evaluated,
            unscored_copies: unscored,
        })
    }

    /// The copy tie-break's measures for same-second `pairs`: both updates of a pair on both
    /// peers' whole assignments, each (update, data) measured once; at most
    /// [`TIE_PAIRS_PER_WINDOW`] pairs are measured (the rest leave both unscored), so a crowd of
    /// same-second copies cannot make the validator's work grow quadratically.
    fn cross_fits(
        &mut self,
        window: u64,
        dataset: &dyn Samples,
        payloads: &BTreeMap<u16, &GradientPayload>,
        pairs: &[(u16, u16)],
    ) -> Result<FitTable> {
        let mut fits = FitTable::new();
        let mut batches: BTreeMap<u16, Vec<Batch>> = BTreeMap::new();
        for &(a, b) in pairs.iter().take(TIE_PAIRS_PER_WINDOW) {
            for data in [a, b] {
                let on = match batches.entry(data) {
                    std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                    std::collections::btree_map::Entry::Vacant(entry) => {
                        let (ids, _) = assignment(&self.settings, dataset, data, window)?;
                        entry.insert(dataset.batches(&ids, self.settings.micro_batch_size)?)
                    }
                };
                for update in [a, b] {
                    let Some(payload) = payloads.get(&update) else {
                        continue;
                    };
                    if fits.contains_key(&(update, data)) {
                        continue;
                    }
                    if let Ok(gain) = fit_gain(&mut self.replica, payload, on, self.eval.lr)
                        && gain.is_finite()
                    {
                        fits.insert((update, data), gain);
                    }
                }
            }
            let fit = |update: u16, data: u16| fits.get(&(update, data)).copied();
            tracing::info!(
                a,
                b,
                a_on_a = ?fit(a, a),
                b_on_a = ?fit(b, a),
                a_on_b = ?fit(a, b),
                b_on_b = ?fit(b, b),
                "same-second copy pair: cross-fit"
            );
        }
        Ok(fits)
    }

    fn random_batches(&self, dataset: &dyn Samples, window: u64) -> Result<Vec<Batch>> {
        let count = self.eval.random_batches * self.settings.micro_batch_size;
        let ids = match self.eval.random_seed {
            Some(seed) => dataset.assigned_ids(seed, RANDOM_STREAM_UID, window, count)?,
            None => dataset.random_ids(window, count)?,
        };
        Ok(dataset.batches(&ids, self.settings.micro_batch_size)?)
    }

    /// Applies the window's aggregate and remembers the new state for sync checks.
    pub fn outer_step(&mut self, payloads: &[GradientPayload]) -> Result<()> {
        self.replica.outer_step(payloads, self.settings.outer_lr)?;
        self.sync.push(self.replica.sync_sample()?);
        Ok(())
    }
}

/// Loss drops measured by the copy tie-break: (uid whose update, uid whose assigned data)
/// -> how much that update alone lowers the loss on that data.
pub type FitTable = BTreeMap<(u16, u16), f64>;

/// The unordered pairs flagged as copies of each other (equal upload times), each once.
pub fn mutual_pairs(copies: &[CopyFlag]) -> Vec<(u16, u16)> {
    copies
        .iter()
        .filter(|f| f.copier < f.original)
        .filter(|f| {
            copies
                .iter()
                .any(|o| o.copier == f.original && o.original == f.copier)
        })
        .map(|f| (f.copier, f.original))
        .collect()
}

/// Same-second copy pairs measured per window (beyond them, both peers stay unscored).
pub const TIE_PAIRS_PER_WINDOW: usize = 16;

/// Least relative difference of the cross-fit that flags the trailing peer of a
/// same-second pair as a copy (a hard penalty); under it the trailing peer is only left
/// unscored for the window.
pub const COPY_TIE_MARGIN: f64 = 0.25;

/// What the tie-break made of the copy flags.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyResolution {
    /// The flags that stand (one-sided ones, and the copier's side of settled pairs).
    pub flags: Vec<CopyFlag>,
    /// Peers left unscored this window: the trailing peer of a pair whose cross-fit is under
    /// the margin, both peers of a pair that could not be measured or tied exactly.
    pub unscored: Vec<u16>,
}

/// Settles pairs flagged as copies of each other. The first rule is the upload time (a copy
/// needs its original to exist, so the later uploader copied); stored times have
/// whole-second resolution, so an original and its copy can carry the same one and both be
/// flagged. Of such a pair the original is the peer whose assigned data the pair's update
/// was trained on: both updates (near-identical, they overlap beyond the threshold) are
/// measured on both peers' whole assignments, and the peer whose assignment they lower the
/// loss on more leads. Nothing a copier controls decides it: its assignment follows from the
/// run seed, its uid and the window, the original's training data from the original's, and
/// moving the update toward its own data means training on it; uid and arrival order play
/// no part. Only when the lead is at least [`COPY_TIE_MARGIN`] of the larger measure is the
/// trailing peer flagged as a copy (a hard penalty); under it the trailing peer is left
/// unscored for the window (neither credited, aggregated nor penalised, as if not sampled)
/// and the leading one is scored as usual, so weak evidence never penalises anyone and a
/// copy earns only when the evidence is wrong, for that window. A pair that cannot be
/// measured on both sides, or ties exactly (updates that change nothing), leaves both
/// unscored. One-sided flags (different upload times) stand as they are.
pub fn resolve_copy_ties(copies: Vec<CopyFlag>, fits: &FitTable) -> CopyResolution {
    let mutual = mutual_pairs(&copies);
    // Sum of the pair's measured updates' gains on `data`'s assignment, and how many were
    // measured.
    let fit_on = |pair: (u16, u16), data: u16| {
        let gains: Vec<f64> = [pair.0, pair.1]
            .iter()
            .filter_map(|update| fits.get(&(*update, data)).copied())
            .collect();
        (gains.iter().sum::<f64>(), gains.len())
    };
    let mut unscored = Vec::new();
    // The (copier, original) of each pair settled beyond the margin.
    let mut settled = Vec::new();
    for &pair in &mutual {
        let (first, n_first) = fit_on(pair, pair.0);
        let (second, n_second) = fit_on(pair, pair.1);
        // Compare like with like: the same updates measured on both assignments.
        if n_first == 0 || n_first != n_second || first == second {
            unscored.extend([pair.0, pair.1]);
            continue;
        }
        let (leading, trailing) = if first > second {
            (pair.0, pair.1)
        } else {
            (pair.1, pair.0)
        };
        let scale = first.abs().max(second.abs());
        if (first - second).abs() >= COPY_TIE_MARGIN * scale {
            settled.push((trailing, leading));
        } else {
            unscored.push(trailing);
        }
    }
    let flags = copies
        .into_iter()
        .filter(|flag| {
            let pair = (
                flag.copier.min(flag.original),
                flag.copier.max(flag.original),
            );
            !mutual.contains(&pair) || settled.contains(&(flag.copier, flag.original))
        })
        .collect();
    unscored.sort_unstable();
    unscored.dedup();
    CopyResolution { flags, unscored }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(copier: u16, original: u16) -> CopyFlag {
        CopyFlag {
            copier,
            original,
            overlap: 1.0,
        }
    }

    /// Gains of two near-identical updates trained on `trained_on`'s data.
    fn pair_fits(a: u16, b: u16, trained_on: u16) -> FitTable {
        let gain = |data: u16| if data == trained_on { 0.30 } else { 0.05 };
        let mut fits = FitTable::new();
        for update in [a, b] {
            for data in [a, b] {
                fits.insert((update, data), gain(data) + 0.001 * f64::from(update));
            }
        }
        fits
    }

    fn copiers(resolution: &CopyResolution) -> Vec<(u16, u16)> {
        resolution
            .flags
            .iter()
            .map(|f| (f.copier, f.original))
            .collect()
    }

    #[test]
    fn a_same_second_pair_flags_the_peer_whose_data_the_update_was_not_trained_on() {
        // uid 6 copied uid 1's update; both were stored in the same second.
        let r = resolve_copy_ties(vec![flag(1, 6), flag(6, 1)], &pair_fits(1, 6, 1));
        assert_eq!((copiers(&r), r.unscored.len()), (vec![(6, 1)], 0));
        // The same with the roles the other way round: uid order decides nothing.
        let r = resolve_copy_ties(vec![flag(1, 6), flag(6, 1)], &pair_fits(1, 6, 6));
        assert_eq!((copiers(&r), r.unscored.len()), (vec![(1, 6)], 0));
    }

    #[test]
    fn a_sybil_group_keeps_at_most_one_unflagged_member() {
        // uids 3, 4 and 5 upload one update trained on uid 4's data, in one second.
        let uids = [3u16, 4, 5];
        let mut copies = Vec::new();
        let mut fits = FitTable::new();
        for &a in &uids {
            for &b in &uids {
                if a != b {
                    copies.push(flag(a, b));
                }
                fits.insert(
                    (a, b),
                    if b == 4 {
                        0.3
                    } else {
                        0.05 + 0.001 * f64::from(b)
                    },
                );
            }
        }
        let r = resolve_copy_ties(copies, &fits);
        let mut flagged: Vec<u16> = r.flags.iter().map(|f| f.copier).collect();
        flagged.dedup();
        assert_eq!(flagged, vec![3, 5], "{r:?}");
        // 3 and 5 (neither trained) are too close to settle between themselves: the
        // trailing one (5 fits 5's data slightly better, so 3 trails) is left unscored.
        assert_eq!(r.unscored, vec![3]);
    }

    #[test]
    fn weak_evidence_leaves_only_the_trailing_peer_unscored_and_one_sided_flags_stand() {
        let r = resolve_copy_ties(vec![flag(6, 1)], &FitTable::new());
        assert_eq!((copiers(&r), r.unscored.len()), (vec![(6, 1)], 0));
        // Nothing measured: neither flagged, both unscored.
        let r = resolve_copy_ties(vec![flag(1, 2), flag(2, 1)], &FitTable::new());
        assert_eq!((r.flags.len(), r.unscored), (0, vec![1, 2]));
        // Updates that change nothing tie exactly.
        let mut fits = FitTable::new();
        for key in [(1, 1), (1, 2), (2, 1), (2, 2)] {
            fits.insert(key, 0.0);
        }
        let r = resolve_copy_ties(vec![flag(1, 2), flag(2, 1)], &fits);
        assert_eq!((r.flags.len(), r.unscored), (0, vec![1, 2]));
        // Within the margin (0.30 against 0.25): 2 trails and is only left unscored.
        let mut fits = FitTable::new();
        for (key, gain) in [
            ((1, 1), 0.15),
            ((2, 1), 0.15),
            ((1, 2), 0.125),
            ((2, 2), 0.125),
        ] {
            fits.insert(key, gain);
        }
        let r = resolve_copy_ties(vec![flag(1, 2), flag(2, 1)], &fits);
        assert_eq!((r.flags.len(), r.unscored), (0, vec![2]));
        // Only one update measurable on both assignments: it alone decides.
        let mut fits = FitTable::new();
        fits.insert((1, 1), 0.2);
        fits.insert((1, 2), 0.01);
        let r = resolve_copy_ties(vec![flag(1, 2), flag(2, 1)], &fits);
        assert_eq!((copiers(&r), r.unscored.len()), (vec![(2, 1)], 0));
    }
}
