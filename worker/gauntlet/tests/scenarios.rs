//! Multi-window scenarios with synthetic peers: honest miners of different
//! quality against every kind of cheater the Gauntlet is meant to catch.

use worker_gauntlet::{
    Fingerprint, Gauntlet, GauntletConfig, GauntletError, Outcome, PeerOutcome, PenaltyKind,
    apply_copy_flags, detect_copies, fingerprint_entry,
};

/// xorshift64* noise source for reproducible synthetic losses.
struct Noise(u64);

impl Noise {
    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [-1, 1].
    fn symmetric(&mut self) -> f64 {
        2.0 * self.next_unit() - 1.0
    }
}

/// An `Evaluated` outcome from relative improvements on assigned and random data.
fn evaluated(assigned_improvement: f64, random_improvement: f64, steps_behind: f64) -> Outcome {
    let before = 3.0;
    Outcome::Evaluated {
        loss_before_assigned: before,
        loss_after_assigned: before * (1.0 - assigned_improvement),
        loss_before_random: before,
        loss_after_random: before * (1.0 - random_improvement),
        steps_behind,
        digest_ok: true,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Behaviour {
    /// Trains on its assigned data; `quality` scales its improvement.
    Honest { quality: f64 },
    /// Uploads a zero update.
    Lazy,
    /// Uploads random noise: slightly raises the loss.
    Noise,
    /// Trains on other data: assigned improvement ~ random improvement.
    WrongData,
    /// Uploads an update that blows the loss up.
    Poisoner,
    /// Always uploads after the deadline.
    Late,
    /// Re-uploads the gradient of `of` a little later.
    Copycat { of: u16 },
    /// Uploads garbage that fails validation.
    Invalid,
}

/// Per-window synthetic outcome of one peer (copies are found separately).
fn outcome_for(behaviour: Behaviour, noise: &mut Noise) -> Outcome {
    match behaviour {
        Behaviour::Honest { quality } => {
            let random = quality * (0.010 + 0.001 * noise.symmetric());
            evaluated(
                random + quality * (0.004 + 0.001 * noise.symmetric()),
                random,
                0.0,
            )
        }
        Behaviour::Lazy => evaluated(0.0, 0.0, 0.0),
        Behaviour::Noise => {
            let random = -0.002 + 0.0005 * noise.symmetric();
            evaluated(random + 0.001 * noise.symmetric(), random, 0.0)
        }
        Behaviour::WrongData => {
            let random = 0.008 + 0.001 * noise.symmetric();
            evaluated(random + 0.001 * noise.symmetric(), random, 0.0)
        }
        Behaviour::Poisoner => evaluated(-0.8, -0.5, 0.0),
        Behaviour::Late => Outcome::Late,
        // The copy is evaluated like the original; copy detection overrides it.
        Behaviour::Copycat { .. } => {
            let random = 0.010 + 0.001 * noise.symmetric();
            evaluated(random + 0.004, random, 0.0)
        }
        Behaviour::Invalid => Outcome::Invalid {
            reason: "index out of range".into(),
        },
    }
}

/// A top-k selection fingerprint: 8 chunks x 64 indices, from the peer's noise.
fn selection(noise: &mut Noise) -> Vec<u64> {
    (0..8u32)
        .flat_map(|chunk| {
            (0..64)
                .map(|_| fingerprint_entry(0, chunk, (noise.next_unit() * 4096.0) as u16))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Runs `windows` windows in which every active peer is sampled, with copy
/// detection over fingerprints as the I/O layer would do it.
fn run_population(
    gauntlet: &mut Gauntlet,
    peers: &[(u16, Behaviour)],
    windows: std::ops::Range<u64>,
    seed: u64,
) {
    let mut noise = Noise(seed | 1);
    let active: Vec<u16> = peers.iter().map(|&(uid, _)| uid).collect();
    for window in windows {
        let sampled = gauntlet.sample_peers(window, &active, seed ^ window);
        let mut outcomes = Vec::new();
        let mut fingerprints: Vec<Fingerprint> = Vec::new();
        for &(uid, behaviour) in peers {
            let selected = selection(&mut noise);
            if let Behaviour::Copycat { of } = behaviour {
                let original = fingerprints
                    .iter()
                    .find(|f| f.uid() == of)
                    .map(|f| f.entries().to_vec());
                if let Some(entries) = original {
                    fingerprints.push(Fingerprint::new(uid, 2_000 + u64::from(uid), entries));
                }
            } else {
                fingerprints.push(Fingerprint::new(uid, 1_000 + u64::from(uid), selected));
            }
            let outcome = outcome_for(behaviour, &mut noise);
            if sampled.contains(&uid) {
                outcomes.push(PeerOutcome::new(uid, outcome));
            }
        }
        let flags = detect_copies(&fingerprints, gauntlet.config().copy_overlap_threshold);
        let flags: Vec<_> = flags
            .into_iter()
            .filter(|f| sampled.contains(&f.copier))
            .collect();
        apply_copy_flags(&mut outcomes, &flags);
        gauntlet.record_window(window, outcomes).unwrap();
    }
}

const HONEST: [u16; 3] = [0, 1, 2];
const LAZY: u16 = 10;
const NOISE: u16 = 11;
const WRONG_DATA: u16 = 12;
const POISONER: u16 = 13;
const LATE: u16 = 14;
const COPYCAT: u16 = 15;
const INVALID: u16 = 16;

fn mixed_population() -> Vec<(u16, Behaviour)> {
    vec![
        (0, Behaviour::Honest { quality: 1.2 }),
        (1, Behaviour::Honest { quality: 1.0 }),
        (2, Behaviour::Honest { quality: 0.8 }),
        (LAZY, Behaviour::Lazy),
        (NOISE, Behaviour::Noise),
        (WRONG_DATA, Behaviour::WrongData),
        (POISONER, Behaviour::Poisoner),
        (LATE, Behaviour::Late),
        (COPYCAT, Behaviour::Copycat { of: 0 }),
        (INVALID, Behaviour::Invalid),
    ]
}

fn evaluate_everyone() -> GauntletConfig {
    GauntletConfig {
        sample_size: 64,
        ..Default::default()
    }
}

#[test]
fn honest_peers_outrank_every_cheater_over_twenty_windows() {
    let mut g = Gauntlet::new(evaluate_everyone()).unwrap();
    run_population(&mut g, &mixed_population(), 1..21, 7);

    let score = |uid| g.final_score(uid);
    let weight = |uid| {
        g.weights()
            .into_iter()
            .find(|&(u, _)| u == uid)
            .map(|(_, w)| w)
    };
    let weakest_honest = HONEST
        .iter()
        .map(|&u| score(u))
        .fold(f64::INFINITY, f64::min);
    assert!(weakest_honest > 0.0);
    for cheater in [LAZY, NOISE, POISONER, LATE, COPYCAT, INVALID] {
        assert_eq!(score(cheater), 0.0, "cheater {cheater} must score 0");
        assert_eq!(
            weight(cheater).unwrap_or(0.0),
            0.0,
            "cheater {cheater} must get no weight"
        );
    }
    // Wrong data: its assigned-data gain is its random-data gain plus noise, so its
    // assignment evidence stays near t = 0 while honest peers reach the full factor (the
    // binary moving average, reported only, is a coin flip's: near 0 against the honest
    // peers' 1 - 0.95^20 = 0.64).
    assert!(
        score(WRONG_DATA) < 0.1 * weakest_honest,
        "{} vs {weakest_honest}",
        score(WRONG_DATA)
    );
    for &h in &HONEST {
        assert_eq!(g.peer(h).unwrap().assignment_factor(g.config()), 1.0);
    }
    assert!(g.peer(WRONG_DATA).unwrap().binary_ma < 0.3);
    for &h in &HONEST {
        assert!((g.peer(h).unwrap().binary_ma - (1.0 - 0.95f64.powi(20))).abs() < 1e-9);
    }
    // Better honest work, better rating and score.
    assert!(score(0) > score(2));
    assert!(g.peer(0).unwrap().rating.mu > g.peer(2).unwrap().rating.mu);
    // Ratings: honest above lazy, noise and poisoner.
    let mu = |uid| g.peer(uid).unwrap().rating.mu;
    for &h in &HONEST {
        assert!(mu(h) > mu(LAZY) && mu(h) > mu(NOISE) && mu(h) > mu(POISONER));
    }

    let weights = g.weights();
    let sum: f32 = weights.iter().map(|&(_, w)| w).sum();
    assert!((sum - 1.0).abs() < 1e-5, "weights sum to {sum}");
    let honest_weight: f32 = HONEST.iter().filter_map(|&u| weight(u)).sum();
    assert!(
        honest_weight > 0.85,
        "honest peers hold {honest_weight} of the weight"
    );

    let list = g.peer_list(21);
    assert_eq!(&list.peers[..3], &[0, 1, 2]);
    for cheater in [LAZY, NOISE, POISONER, LATE, COPYCAT, INVALID] {
        assert!(
            !list.all().any(|u| u == cheater),
            "cheater {cheater} in peer list {list:?}"
        );
    }
}

#[test]
fn repeat_offenders_are_banned_and_no_longer_sampled() {
    let mut g = Gauntlet::new(evaluate_everyone()).unwrap();
    let population = mixed_population();
    run_population(&mut g, &population, 1..6, 3);
    for uid in [POISONER, COPYCAT, INVALID] {
        let p = g.peer(uid).unwrap();
        assert!(p.is_banned(6), "uid {uid} should be banned: {p:?}");
    }
    assert_eq!(
        g.peer(COPYCAT).unwrap().last_penalty.unwrap().kind,
        PenaltyKind::Copy
    );
    assert_eq!(
        g.peer(POISONER).unwrap().last_penalty.unwrap().kind,
        PenaltyKind::Poison
    );
    // The original of the copy is not punished.
    assert!(g.peer(0).unwrap().last_penalty.is_none());
    let active: Vec<u16> = population.iter().map(|&(u, _)| u).collect();
    let sampled = g.sample_peers(6, &active, 1);
    for uid in [POISONER, COPYCAT, INVALID] {
        assert!(!sampled.contains(&uid));
    }
    // Late uploads are soft: never banned, just never scored.
    assert!(!g.peer(LATE).unwrap().is_banned(6));
    assert_eq!(g.peer(LATE).unwrap().strikes, 0);
    assert!(g.peer(LATE).unwrap().binary_ma < 0.0);
}

#[test]
fn equal_time_copies_penalise_both() {
    let mut g = Gauntlet::new(GauntletConfig::default()).unwrap();
    // Uid 5 builds its assignment evidence first (its final score needs a few windows).
    for window in 1..=4 {
        g.record_window(
            window,
            vec![PeerOutcome::new(5, evaluated(0.014, 0.01, 0.0))],
        )
        .unwrap();
    }
    let shared = selection(&mut Noise(5));
    let fps = vec![
        Fingerprint::new(3, 100, shared.clone()),
        Fingerprint::new(4, 100, shared),
    ];
    let mut outcomes = vec![
        PeerOutcome::new(3, evaluated(0.012, 0.01, 0.0)),
        PeerOutcome::new(4, evaluated(0.012, 0.01, 0.0)),
        PeerOutcome::new(5, evaluated(0.012, 0.01, 0.0)),
    ];
    apply_copy_flags(&mut outcomes, &detect_copies(&fps, 0.9));
    let report = g.record_window(5, outcomes).unwrap();
    let penalties: Vec<_> = report.peers.iter().map(|r| r.penalty).collect();
    assert_eq!(
        penalties,
        vec![Some(PenaltyKind::Copy), Some(PenaltyKind::Copy), None]
    );
    assert!(g.final_score(5) > 0.0);
    assert_eq!(g.final_score(3), 0.0);
}

#[test]
fn sync_lag_scales_final_score() {
    let mut g = Gauntlet::new(GauntletConfig::default()).unwrap();
    for window in 1..=10 {
        g.record_window(
            window,
            vec![
                PeerOutcome::new(1, evaluated(0.012, 0.01, 0.0)),
                PeerOutcome::new(2, evaluated(0.012, 0.01, 1.0)),
                PeerOutcome::new(3, evaluated(0.012, 0.01, 3.0)),
            ],
        )
        .unwrap();
    }
    // Equal gradient scores tie, so ratings and moving averages are identical.
    let (s1, s2, s3) = (g.final_score(1), g.final_score(2), g.final_score(3));
    assert!(s1 > 0.0);
    assert!(
        (s2 / s1 - (2.0f64 / 3.0).powf(2.5)).abs() < 1e-9,
        "{s2} / {s1}"
    );
    assert_eq!(s3, 0.0);
}

#[test]
fn lazy_and_identical_data_peers_get_negative_indicator() {
    let mut g = Gauntlet::new(GauntletConfig::default()).unwrap();
    for window in 1..=5 {
        g.record_window(
            window,
            vec![
                PeerOutcome::new(1, evaluated(0.012, 0.01, 0.0)),
                PeerOutcome::new(2, evaluated(0.0, 0.0, 0.0)),
                PeerOutcome::new(3, evaluated(0.01, 0.01, 0.0)),
            ],
        )
        .unwrap();
    }
    let expected = -(1.0 - 0.95f64.powi(5));
    for uid in [2, 3] {
        assert!((g.peer(uid).unwrap().binary_ma - expected).abs() < 1e-12);
        assert_eq!(g.final_score(uid), 0.0);
    }
    assert!(g.final_score(1) > 0.0);
    let weights = g.weights();
    assert_eq!(weights.iter().find(|w| w.0 == 1).unwrap().1, 1.0);
}

#[test]
fn consistent_negative_scores_zero_the_peer_until_it_improves() {
    let config = GauntletConfig {
        negative_streak_limit: 3,
        ..Default::default()
    };
    let mut g = Gauntlet::new(config).unwrap();
    // A peer with a positive binary average that then degrades.
    for window in 1..=10 {
        g.record_window(
            window,
            vec![
                PeerOutcome::new(1, evaluated(0.012, 0.01, 0.0)),
                PeerOutcome::new(2, evaluated(0.011, 0.009, 0.0)),
            ],
        )
        .unwrap();
    }
    for window in 11..=13 {
        assert!(g.final_score(1) > 0.0);
        g.record_window(
            window,
            vec![
                PeerOutcome::new(1, evaluated(-0.0005, -0.001, 0.0)),
                PeerOutcome::new(2, evaluated(0.011, 0.009, 0.0)),
            ],
        )
        .unwrap();
    }
    // Indicator still +1 (assigned beats random) but three non-positive scores in a row.
    assert!(g.peer(1).unwrap().binary_ma > 0.0);
    assert_eq!(g.final_score(1), 0.0);
    g.record_window(14, vec![PeerOutcome::new(1, evaluated(0.012, 0.01, 0.0))])
        .unwrap();
    assert!(g.final_score(1) > 0.0);
}

#[test]
fn missing_peer_is_zeroed_briefly_and_recovers() {
    let mut g = Gauntlet::new(GauntletConfig::default()).unwrap();
    let good = |uid| PeerOutcome::new(uid, evaluated(0.012, 0.01, 0.0));
    for window in 1..=5 {
        g.record_window(window, vec![good(1), good(2)]).unwrap();
    }
    let report = g
        .record_window(6, vec![PeerOutcome::new(1, Outcome::Missing), good(2)])
        .unwrap();
    assert_eq!(report.peers[0].penalty, Some(PenaltyKind::Missing));
    assert_eq!(g.final_score(1), 0.0);
    assert!(g.peer(1).unwrap().rating.mu < g.peer(2).unwrap().rating.mu);
    g.record_window(7, vec![good(2)]).unwrap();
    assert_eq!(g.final_score(1), 0.0, "soft penalty lasts two windows");
    g.record_window(8, vec![good(2)]).unwrap();
    assert!(
        g.final_score(1) > 0.0,
        "peer recovers after the soft penalty"
    );
}

#[test]
fn digest_mismatch_and_non_finite_loss_are_hard_penalties() {
    let mut g = Gauntlet::new(GauntletConfig::default()).unwrap();
    let mut mismatched = evaluated(0.012, 0.01, 0.0);
    if let Outcome::Evaluated { digest_ok, .. } = &mut mismatched {
        *digest_ok = false;
    }
    let exploded = Outcome::Evaluated {
        loss_before_assigned: 3.0,
        loss_after_assigned: f64::NAN,
        loss_before_random: 3.0,
        loss_after_random: f64::INFINITY,
        steps_behind: 0.0,
        digest_ok: true,
    };
    let report = g
        .record_window(
            1,
            vec![
                PeerOutcome::new(1, mismatched),
                PeerOutcome::new(2, exploded),
                PeerOutcome::new(3, Outcome::BadSignature),
            ],
        )
        .unwrap();
    let kinds: Vec<_> = report.peers.iter().map(|r| r.penalty).collect();
    assert_eq!(
        kinds,
        vec![
            Some(PenaltyKind::DigestMismatch),
            Some(PenaltyKind::Poison),
            Some(PenaltyKind::BadSignature)
        ]
    );
    for uid in 1..=3 {
        assert_eq!(g.peer(uid).unwrap().strikes, 1);
    }
    // The state stays serialisable (no NaN stored).
    Gauntlet::from_json(GauntletConfig::default(), &g.to_json().unwrap()).unwrap();
}

#[test]
fn validator_side_loss_failure_does_not_penalise() {
    let mut g = Gauntlet::new(GauntletConfig::default()).unwrap();
    let broken = Outcome::Evaluated {
        loss_before_assigned: f64::NAN,
        loss_after_assigned: 2.0,
        loss_before_random: 3.0,
        loss_after_random: 2.9,
        steps_behind: 0.0,
        digest_ok: true,
    };
    let report = g
        .record_window(1, vec![PeerOutcome::new(1, broken)])
        .unwrap();
    assert!(report.peers[0].skipped.is_some());
    let p = g.peer(1).unwrap();
    assert_eq!((p.strikes, p.windows_rated, p.binary_ma), (0, 0, 0.0));
    assert!(p.last_penalty.is_none());
}

#[test]
fn windows_must_increase_and_duplicates_keep_first() {
    let mut g = Gauntlet::new(GauntletConfig::default()).unwrap();
    let report = g
        .record_window(
            5,
            vec![
                PeerOutcome::new(1, evaluated(0.012, 0.01, 0.0)),
                PeerOutcome::new(1, Outcome::Missing),
            ],
        )
        .unwrap();
    assert_eq!(report.peers.len(), 1);
    assert_eq!(report.peers[0].penalty, None);
    assert!(matches!(
        g.record_window(5, vec![]),
        Err(GauntletError::WindowAlreadyRecorded { window: 5, last: 5 })
    ));
    assert!(g.record_window(4, vec![]).is_err());
    g.record_window(6, vec![]).unwrap();
}

#[test]
fn sampling_covers_new_peers_first_then_everyone() {
    let config = GauntletConfig {
        sample_size: 8,
        ..Default::default()
    };
    let mut g = Gauntlet::new(config).unwrap();
    let active: Vec<u16> = (0..30).collect();
    let mut evaluated_once = std::collections::BTreeSet::new();
    let mut counts = [0u32; 30];
    for window in 1..=16 {
        let sampled = g.sample_peers(window, &active, 99);
        assert_eq!(
            sampled,
            g.sample_peers(window, &active, 99),
            "deterministic"
        );
        assert_eq!(sampled.len(), 8);
        if window <= 3 {
            // Never-evaluated peers take every slot while they last.
            assert!(
                sampled.iter().all(|u| !evaluated_once.contains(u)),
                "window {window}: {sampled:?}"
            );
        }
        if window == 4 {
            // The last 6 newcomers plus 2 rated peers.
            assert_eq!(
                sampled
                    .iter()
                    .filter(|u| !evaluated_once.contains(*u))
                    .count(),
                6
            );
        }
        let outcomes = sampled
            .iter()
            .map(|&uid| {
                PeerOutcome::new(
                    uid,
                    evaluated(0.012, 0.01 * (1.0 + f64::from(uid) / 30.0), 0.0),
                )
            })
            .collect();
        evaluated_once.extend(sampled.iter().copied());
        for &uid in &sampled {
            counts[usize::from(uid)] += 1;
        }
        g.mark_seen(window, &active);
        g.record_window(window, outcomes).unwrap();
    }
    assert_eq!(evaluated_once.len(), 30);
    // 16 x 8 = 128 slots over 30 peers: everyone gets re-evaluated.
    assert!(counts.iter().all(|&c| c >= 2), "{counts:?}");
}

#[test]
fn inactive_peers_are_dropped_but_seen_ones_kept() {
    let config = GauntletConfig {
        inactivity_windows: 3,
        ..Default::default()
    };
    let mut g = Gauntlet::new(config).unwrap();
    let good = |uid| PeerOutcome::new(uid, evaluated(0.012, 0.01, 0.0));
    g.record_window(1, vec![good(1), good(2), good(3)]).unwrap();
    for window in 2..=4 {
        g.mark_seen(window, &[2]);
        let report = g.record_window(window, vec![]).unwrap();
        assert!(report.dropped.is_empty());
    }
    g.mark_seen(5, &[2]);
    let report = g.record_window(5, vec![]).unwrap();
    assert_eq!(report.dropped, vec![1, 3]);
    assert!(g.peer(1).is_none() && g.peer(2).is_some());
    assert_eq!(g.weights().iter().map(|w| w.0).collect::<Vec<_>>(), vec![2]);
}

#[test]
fn peer_list_orders_by_score_with_reserves() {
    let mut g = Gauntlet::new(GauntletConfig {
        sample_size: 64,
        ..Default::default()
    })
    .unwrap();
    // 35 honest peers; higher uid = larger improvement.
    for window in 1..=12 {
        let outcomes = (0..35u16)
            .map(|uid| {
                let random = 0.001 * (1.0 + f64::from(uid));
                PeerOutcome::new(uid, evaluated(random * 1.5, random, 0.0))
            })
            .collect();
        g.record_window(window, outcomes).unwrap();
    }
    let list = g.peer_list(13);
    assert_eq!(list.window, 13);
    assert_eq!(list.peers, (15..35u16).rev().collect::<Vec<_>>());
    assert_eq!(list.reserves, (5..15u16).rev().collect::<Vec<_>>());
    let scores: Vec<f64> = list.all().map(|u| g.final_score(u)).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
    let round_trip = worker_gauntlet::PeerList::from_json(&list.to_json().unwrap()).unwrap();
    assert_eq!(round_trip, list);
}

#[test]
fn bootstrapping_peer_list_uses_unrated_peers() {
    let mut g = Gauntlet::new(GauntletConfig {
        peer_list_size: 2,
        peer_list_reserve: 1,
        ..Default::default()
    })
    .unwrap();
    g.mark_seen(1, &[7, 3]);
    g.mark_seen(2, &[9]);
    let list = g.peer_list(3);
    assert_eq!((list.peers, list.reserves), (vec![9, 3], vec![7]));

    let strict = Gauntlet::new(GauntletConfig {
        fill_peer_list_with_unrated: false,
        ..Default::default()
    })
    .unwrap();
    let empty = strict.peer_list(1);
    assert!(empty.peers.is_empty() && empty.reserves.is_empty());
}

#[test]
fn state_round_trips_and_resumes_identically() {
    let population = mixed_population();
    let mut original = Gauntlet::new(evaluate_everyone()).unwrap();
    run_population(&mut original, &population, 1..11, 21);
    let json = original.to_json().unwrap();
    let mut restored = Gauntlet::from_json(evaluate_everyone(), &json).unwrap();
    assert_eq!(restored.state(), original.state());

    run_population(&mut original, &population, 11..21, 22);
    run_population(&mut restored, &population, 11..21, 22);
    assert_eq!(restored.state(), original.state());
    assert_eq!(restored.weights(), original.weights());
    assert_eq!(restored.peer_list(21), original.peer_list(21));

    let wrong_version = json.replacen("\"schema_version\":1", "\"schema_version\":9", 1);
    assert!(matches!(
        Gauntlet::from_json(evaluate_everyone(), &wrong_version),
        Err(GauntletError::UnsupportedSchema { found: 9, .. })
    ));
}

#[test]
fn a_recycled_uid_does_not_inherit_its_predecessors_state() {
    let mut g = Gauntlet::new(GauntletConfig::default()).unwrap();
    let old = "aa".repeat(32);
    let new = "bb".repeat(32);
    assert!(g.bind_hotkeys(0, &[(7, old.clone())]).is_empty());
    // The old hotkey is struck (invalid gradients) until banned.
    for window in 0..GauntletConfig::default().max_strikes as u64 {
        g.record_window(
            window,
            vec![PeerOutcome::new(
                7,
                Outcome::Invalid {
                    reason: "bad".into(),
                },
            )],
        )
        .unwrap();
    }
    let struck = g.peer(7).unwrap().clone();
    assert!(struck.banned_until > 0, "{struck:?}");
    // Same hotkey again: nothing changes.
    assert!(g.bind_hotkeys(5, &[(7, old)]).is_empty());
    assert_eq!(g.peer(7).unwrap().strikes, struck.strikes);
    // The uid is re-registered by another hotkey: a fresh state, no ban, no strikes.
    assert_eq!(g.bind_hotkeys(6, &[(7, new.clone())]), [7]);
    let fresh = g.peer(7).unwrap();
    assert_eq!((fresh.strikes, fresh.banned_until), (0, 0));
    assert_eq!(fresh.hotkey.as_deref(), Some(new.as_str()));
    // And the binding survives a restart of the validator.
    let restored = Gauntlet::from_json(GauntletConfig::default(), &g.to_json().unwrap()).unwrap();
    assert_eq!(
        restored.peer(7).unwrap().hotkey.as_deref(),
        Some(new.as_str())
    );
}

/// Honest peers and one wrong-data peer with the noise measured on the devnet (tiny model,
/// 2026-12-04): per window an honest update's assigned-data gain exceeds its random-data
/// gain by 0.35 +- 0.22 of a typical gain, a wrong-data update's by 0 +- 0.15. Over 40
/// seeds the wrong-data peer's final score at window 10 is on average below 5 % of the
/// mean honest peer's, below 10 % in at least 36 of them, and no honest peer falls below
/// half the honest mean. Templar's moving average of the sign (what the final score used
/// before) leaves it 16 % on average over the same seeds, and this test fails.
#[test]
fn wrong_data_loses_its_weight_within_ten_windows_on_devnet_noise() {
    const WRONG: u16 = 4;
    let mut shares = Vec::new();
    let mut starved = Vec::new();
    for seed in 1..=40u64 {
        let mut g = Gauntlet::new(evaluate_everyone()).unwrap();
        let mut noise = Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        // Uniform noise on [-1, 1] has standard deviation 1 / sqrt(3).
        let sd = |target: f64| target * 3f64.sqrt();
        for window in 1..=10 {
            let outcomes = (0..=WRONG)
                .map(|uid| {
                    let random = 0.01 * (1.0 + 0.3 * noise.symmetric());
                    let advantage = if uid == WRONG {
                        sd(0.15) * noise.symmetric()
                    } else {
                        0.35 + sd(0.22) * noise.symmetric()
                    };
                    PeerOutcome::new(uid, evaluated(random + 0.01 * advantage, random, 0.0))
                })
                .collect();
            g.record_window(window, outcomes).unwrap();
        }
        let honest: Vec<f64> = (0..WRONG).map(|uid| g.final_score(uid)).collect();
        let mean = honest.iter().sum::<f64>() / honest.len() as f64;
        assert!(mean > 0.0, "seed {seed}: no honest score");
        for (uid, score) in honest.iter().enumerate() {
            if *score <= 0.5 * mean {
                starved.push((seed, uid, score / mean));
            }
        }
        shares.push(g.final_score(WRONG) / mean);
    }
    let mean_share = shares.iter().sum::<f64>() / shares.len() as f64;
    let above = shares.iter().filter(|&&s| s >= 0.10).count();
    assert!(mean_share < 0.05, "mean share {mean_share}: {shares:?}");
    assert!(above <= 4, "{above} seeds at or above 10 %: {shares:?}");
    assert!(
        starved.is_empty(),
        "honest (seed, uid, share of the honest mean) at or below half: {starved:?}"
    );
}

/// Late in a run gains are small and weak peers (a lazy, a stale and a sign-flipping one
/// here) drag the window's median gain down, so a wrong-data peer whose update fits its
/// nominal data a little (a fifth of the honest advantage, as measured on the devnet in
/// windows 10-20) looks well above zero against the median gain. Against the cohort of
/// advantaged peers it is far short, and it earns below 10 % of the mean honest peer by
/// window 20 (without the cohort check about as much as an honest peer: this test fails).
#[test]
fn a_small_late_advantage_far_below_the_cohorts_earns_nothing() {
    const WRONG: u16 = 4;
    let mut g = Gauntlet::new(evaluate_everyone()).unwrap();
    let mut noise = Noise(0x5EED);
    for window in 1..=20 {
        let mut outcomes: Vec<PeerOutcome> = (0..WRONG)
            .map(|uid| {
                let random = 0.015 * (1.0 + 0.2 * noise.symmetric());
                let advantage = 0.04 * (1.0 + 0.4 * noise.symmetric());
                PeerOutcome::new(uid, evaluated(random + advantage, random, 0.0))
            })
            .collect();
        let random = 0.01 * (1.0 + 0.2 * noise.symmetric());
        let advantage = 0.008 * (1.0 + 0.4 * noise.symmetric());
        outcomes.push(PeerOutcome::new(
            WRONG,
            evaluated(random + advantage, random, 0.0),
        ));
        outcomes.push(PeerOutcome::new(10, evaluated(0.0, 0.0, 0.0)));
        outcomes.push(PeerOutcome::new(11, evaluated(0.001, 0.001, 0.0)));
        outcomes.push(PeerOutcome::new(12, evaluated(-0.03, -0.02, 0.0)));
        g.record_window(window, outcomes).unwrap();
    }
    let honest: Vec<f64> = (0..WRONG).map(|uid| g.final_score(uid)).collect();
    let mean = honest.iter().sum::<f64>() / honest.len() as f64;
    for (uid, score) in honest.iter().enumerate() {
        assert!(*score > 0.5 * mean, "honest uid {uid}: {score} of {mean}");
    }
    let share = g.final_score(WRONG) / mean;
    assert!(share < 0.10, "wrong data at {share} of the honest mean");
    // Against the median gain alone its evidence is positive.
    let wrong = g.peer(WRONG).unwrap();
    assert!(wrong.assignment.factor(&g.config().evidence_rules()) > 0.5);
}
