//! The Gauntlet validator on the tiny model against cheating miners (the devnet's
//! production roles with adversarial upload strategies): honest miners must out-rank a
//! lazy miner, a copycat, a miner training on the wrong data, a poisoner, a sign-flipping
//! poisoner (an update of honest size), a late uploader and a sleeper (honest in even
//! windows, poisoning in odd ones); malformed objects never crash the validator.

use bytes::Bytes;
use std::time::SystemTime;

use worker::behaviour::Behaviour;
use worker::devnet::{self, DevnetArgs};
use worker::settings::TrainingSettings;
use worker::signing::sr25519_verify;
use worker::validator::{EvalSettings, Submission, Validator};
use worker_gauntlet::{GauntletConfig, Outcome};
use worker_model::{CorpusSplit, open_bundled};
use worker_storage::{StorageError, StoredObject};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honest_miners_outrank_every_kind_of_cheater() {
    let dir = tempfile::tempdir().unwrap();
    let cheaters = vec![
        Behaviour::Lazy,
        Behaviour::Copycat,
        Behaviour::WrongData,
        Behaviour::Poisoner,
        Behaviour::SignFlip,
        Behaviour::Late,
        Behaviour::Sleeper,
    ];
    let args = DevnetArgs {
        miners: 2,
        cheaters: cheaters.clone(),
        windows: 6,
        inner_steps: 6,
        micro_batch_size: 8,
        inner_lr: 3e-3,
        outer_lr: 1.0,
        weights_every: 2,
        seed: 11,
        dir: dir.path().join("devnet"),
        quiet: true,
        ..DevnetArgs::default()
    };
    let report = devnet::run(&args).await.expect("devnet run");
    let rows = &report.windows.last().unwrap().miners;
    let weight = |uid: u16| {
        report
            .final_weights
            .iter()
            .find(|(u, _)| *u == uid)
            .map_or(0.0, |(_, w)| *w)
    };
    let honest: Vec<u16> = rows
        .iter()
        .filter(|m| m.behaviour == "honest")
        .map(|m| m.uid)
        .collect();
    assert_eq!(honest.len(), 2);
    for cheater in rows.iter().filter(|m| m.behaviour != "honest") {
        for &h in &honest {
            assert!(
                weight(h) > weight(cheater.uid),
                "honest uid {h} ({}) must out-weigh {} uid {} ({})",
                weight(h),
                cheater.behaviour,
                cheater.uid,
                weight(cheater.uid)
            );
        }
        // No cheater's update is ever aggregated after the first scored window, and the
        // sleeper's poisoned (odd-window) updates never.
        for window in &report.windows {
            let aggregated = window.aggregated_peers.contains(&cheater.uid);
            let allowed = match cheater.behaviour.as_str() {
                "wrongdata" => true,
                "sleeper" => window.window % 2 == 0,
                _ => window.window == 0,
            };
            assert!(
                !aggregated || allowed,
                "{} aggregated in window {}",
                cheater.behaviour,
                window.window
            );
        }
    }
    // The late uploader is reported late, the copycat as a copy.
    let verdicts: Vec<(&str, &str)> = report.windows[0]
        .miners
        .iter()
        .map(|m| (m.behaviour.as_str(), m.verdict.as_str()))
        .collect();
    // The late uploader's object arrives after the validator fetched at the deadline (so
    // it is missing then) or, when the validator is slower, with a LastModified past it.
    assert!(
        verdicts
            .iter()
            .any(|(b, v)| *b == "late" && (*v == "late" || *v == "missing")),
        "{verdicts:?}"
    );
    assert!(
        verdicts
            .iter()
            .any(|(b, v)| *b == "copycat" && v.starts_with("copy of")),
        "{verdicts:?}"
    );
    assert!(report.final_eval_loss() < report.initial_eval_loss);
}

fn settings() -> TrainingSettings {
    let mut m = run_manifest::RunManifest::reference("cheaters", "tiny");
    m.training.inner_steps = 2;
    m.training.micro_batch_size = 2;
    m.training.batch_size = 2;
    TrainingSettings::from_manifest(&run_manifest::verify(m, "test", None).unwrap())
}

#[test]
fn malformed_objects_are_invalid_not_fatal() {
    let settings = settings();
    let mut validator = Validator::new(
        &settings,
        EvalSettings {
            assigned_batches: 1,
            random_batches: 1,
            lr: 0.1,
            max_object_bytes: 1 << 20,
            random_seed: Some(3),
        },
        GauntletConfig::default(),
        tch::Device::Cpu,
    )
    .unwrap();
    let dataset = open_bundled(CorpusSplit::Train, 64).unwrap();
    let object = |body: Vec<u8>| {
        Ok(StoredObject {
            size: body.len() as u64,
            body: Bytes::from(body),
            last_modified: SystemTime::now(),
        })
    };
    let mut valid_header = b"TPLG\x01".to_vec();
    valid_header.extend_from_slice(&[0u8; 200]);
    let submissions = vec![
        Submission {
            uid: 1,
            hotkey: [1; 32],
            object: object(vec![]),
            sync_sample: None,
        },
        Submission {
            uid: 2,
            hotkey: [2; 32],
            object: object(vec![0xff; 4096]),
            sync_sample: None,
        },
        Submission {
            uid: 3,
            hotkey: [3; 32],
            object: object(valid_header),
            sync_sample: None,
        },
        Submission {
            uid: 4,
            hotkey: [4; 32],
            object: Err(StorageError::Checksum {
                key: "k".into(),
                expected: None,
                actual: "00".into(),
            }),
            sync_sample: None,
        },
        Submission {
            uid: 5,
            hotkey: [5; 32],
            object: Err(StorageError::NotFound { key: "k".into() }),
            sync_sample: None,
        },
    ];
    let evaluation = validator
        .evaluate_window(0, submissions, &dataset, &sr25519_verify)
        .unwrap();
    let outcome = |uid| {
        evaluation
            .outcomes
            .iter()
            .find(|o| o.uid == uid)
            .map(|o| o.outcome.clone())
            .unwrap()
    };
    for uid in 1..=3 {
        assert!(
            matches!(outcome(uid), Outcome::Invalid { .. }),
            "uid {uid}: {:?}",
            outcome(uid)
        );
    }
    // A checksum mismatch is a transport fault: soft (no gradient), never a strike.
    assert_eq!(outcome(4), Outcome::Missing);
    assert_eq!(outcome(5), Outcome::Missing);
    assert!(
        evaluation.evaluated.is_empty(),
        "nothing malformed is aggregated"
    );
    assert!(validator.gauntlet.weights().iter().all(|(_, w)| *w == 0.0));
}

/// A Sybil group (three uids uploading one trained update, each copy re-compressed with a
/// tiny scale perturbation), a free-rider (last window's aggregate re-uploaded), a miner
/// that overwrites its evaluated object with a poisoned body, and a copier that
/// re-compresses a peer's update through its own error feedback, against two honest
/// miners: no honest miner is ever taken for a copy, at most one Sybil per window escapes
/// the copy flag, at most one member of the group earns anything, the swapped
/// bodies never reach anyone's model (every honest miner stays bit-identical with the
/// validator in every window), and the run still learns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sybils_free_riders_swappers_and_recompressors_gain_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let args = DevnetArgs {
        miners: 2,
        cheaters: vec![
            Behaviour::Sybil,
            Behaviour::Sybil,
            Behaviour::Sybil,
            Behaviour::FreeRider,
            Behaviour::Swap,
            Behaviour::Recompress,
        ],
        windows: 5,
        inner_steps: 6,
        micro_batch_size: 8,
        inner_lr: 3e-3,
        outer_lr: 1.0,
        weights_every: 5,
        seed: 11,
        dir: dir.path().join("devnet"),
        quiet: true,
        ..DevnetArgs::default()
    };
    let report = devnet::run(&args).await.expect("devnet run");
    let weight = |uid: u16| {
        report
            .final_weights
            .iter()
            .find(|(u, _)| *u == uid)
            .map_or(0.0, |(_, w)| *w)
    };
    let rows = &report.windows.last().unwrap().miners;
    let uids_of = |behaviour: &str| -> Vec<u16> {
        rows.iter()
            .filter(|m| m.behaviour == behaviour)
            .map(|m| m.uid)
            .collect()
    };
    let honest = uids_of("honest");
    let least_honest = honest.iter().map(|u| weight(*u)).fold(f32::MAX, f32::min);
    assert!(least_honest > 0.0, "{:?}", report.final_weights);
    assert_eq!(report.windows.len(), 5);
    for window in &report.windows {
        for m in &window.miners {
            if m.behaviour == "honest" {
                assert!(
                    !m.verdict.starts_with("copy of"),
                    "window {}: {m:?}",
                    window.window
                );
                // A swapped object reaches nobody's model: everyone applied the bytes the
                // validator evaluated, or the replicas would differ.
                assert!(
                    m.in_sync,
                    "window {}: uid {} out of sync",
                    window.window, m.uid
                );
            }
        }
        let escaped: Vec<&str> = window
            .miners
            .iter()
            .filter(|m| m.behaviour == "sybil" && m.verdict.starts_with("evaluated"))
            .map(|m| m.verdict.as_str())
            .collect();
        assert!(escaped.len() <= 1, "window {}: {escaped:?}", window.window);
    }
    // The group's extra uids earn nothing: at most one member (the trainer) has weight.
    let earning: Vec<u16> = uids_of("sybil")
        .into_iter()
        .filter(|u| weight(*u) > 0.0)
        .collect();
    assert!(earning.len() <= 1, "Sybils earning: {earning:?}");
    // The swapper's rewrite is seen by the validator the next window (the object's write
    // time changed after its evaluation) and penalised as invalid.
    for uid in uids_of("swap") {
        let penalised = report.windows.iter().skip(1).any(|w| {
            w.miners
                .iter()
                .any(|m| m.uid == uid && m.verdict.contains("rewritten after it was evaluated"))
        });
        assert!(penalised, "swapper uid {uid} never penalised");
    }
    for cheater in ["freerider", "recompress", "swap"] {
        for uid in uids_of(cheater) {
            assert!(
                weight(uid) < least_honest,
                "{cheater} uid {uid} ({}) out-earns an honest miner ({least_honest})",
                weight(uid)
            );
        }
    }
    assert!(report.final_eval_loss() < report.initial_eval_loss);
}

/// A miner overwrites its object after the validator evaluated and pinned it: gathering
/// the pinned list refuses the new bytes as a digest mismatch, and the copy the lead
/// mirrored serves the evaluated bytes instead; without a mirror nothing is gathered (the
/// poisoned body is never aggregated).
#[tokio::test]
async fn an_object_swapped_after_evaluation_is_refused_and_the_lead_mirror_serves_the_original() {
    use sha2::{Digest, Sha256};
    use std::sync::Arc;
    use worker::exchange::{
        AggregationList, PeerEndpoint, Rejection, gather, gather_listed, mirror_aggregated,
        upload_gradient,
    };
    use worker::miner::Miner;
    use worker::replica::Replica;
    use worker_storage::{FetchPolicy, LocalStore, ObjectStore, RunLayout};

    let settings = settings();
    let seq_len = settings.model_config().seq_len as usize;
    let dataset = open_bundled(CorpusSplit::Train, seq_len).unwrap();
    let key = worker_chain::Keypair::from_dev_name("swapper");
    let mut miner = Miner::new(3, &settings, tch::Device::Cpu).unwrap();
    let honest = miner.produce(0, &dataset, &key).unwrap();
    let (ids, digest) = miner.assignment(&dataset, 0).unwrap();
    let (pseudo, loss) = miner.train(&dataset, &ids).unwrap();
    let scaled: Vec<tch::Tensor> = pseudo.iter().map(|t| t * 1.0e4).collect();
    let poisoned = miner
        .compress_and_seal_detached(0, &scaled, digest, &key, loss)
        .unwrap();
    let sha = |bytes: &[u8]| hex::encode(Sha256::digest(bytes));

    let dir = tempfile::tempdir().unwrap();
    let layout = RunLayout::new("swap").unwrap();
    let peer_store: Arc<dyn ObjectStore> =
        Arc::new(LocalStore::open(dir.path().join("peer")).unwrap());
    let open_lead = |name: &str| PeerEndpoint {
        uid: 0,
        hotkey: [0; 32],
        store: Arc::new(LocalStore::open(dir.path().join(name)).unwrap()),
    };
    let (lead, bare_lead) = (open_lead("lead"), open_lead("bare-lead"));
    let peer = PeerEndpoint {
        uid: 3,
        hotkey: key.public_key(),
        store: peer_store.clone(),
    };
    let replica = Replica::for_run(&settings, tch::Device::Cpu).unwrap();
    let policy = FetchPolicy::new(std::time::Duration::from_secs(10), 64 << 20);
    let list = AggregationList {
        run_manifest: settings.manifest_hash().to_hex(),
        list: worker_gauntlet::Gauntlet::new(GauntletConfig::default())
            .unwrap()
            .peer_list(0),
        objects: vec![(3, sha(&honest.object))],
    };

    // Evaluated and pinned: the lead gathers the honest bytes and mirrors them.
    upload_gradient(&*peer_store, &layout, 0, 3, honest.object.clone())
        .await
        .unwrap();
    let peers = [peer];
    let (evaluated, _) = gather(
        &peers,
        &layout,
        0,
        &policy,
        replica.rules(),
        &sr25519_verify,
        Some(&list),
    )
    .await;
    assert_eq!(evaluated.len(), 1);
    mirror_aggregated(&*lead.store, &layout, 0, &evaluated).await;

    // The swap: a validly signed, poisoned object under the same key.
    upload_gradient(&*peer_store, &layout, 0, 3, poisoned.object.clone())
        .await
        .unwrap();
    let (none, refused) = gather(
        &peers,
        &layout,
        0,
        &policy,
        replica.rules(),
        &sr25519_verify,
        Some(&list),
    )
    .await;
    assert!(none.is_empty());
    assert_eq!(
        refused,
        vec![(
            3,
            Rejection::DigestMismatch {
                expected: sha(&honest.object),
                actual: sha(&poisoned.object),
            }
        )]
    );

    let (gathered, refused) = gather_listed(
        &list,
        &peers,
        &lead,
        &layout,
        0,
        &policy,
        replica.rules(),
        &sr25519_verify,
    )
    .await;
    assert_eq!(gathered.len(), 1);
    assert_eq!(gathered[0].digest, sha(&honest.object));
    assert_eq!(gathered[0].payload, evaluated[0].payload);
    assert!(
        refused
            .iter()
            .all(|(_, r)| matches!(r, Rejection::DigestMismatch { .. })),
        "{refused:?}"
    );

    // No mirror: the listed object is available nowhere intact, and nothing is gathered.
    let (gathered, refused) = gather_listed(
        &list,
        &peers,
        &bare_lead,
        &layout,
        0,
        &policy,
        replica.rules(),
        &sr25519_verify,
    )
    .await;
    assert!(gathered.is_empty());
    assert!(
        refused
            .iter()
            .any(|(_, r)| matches!(r, Rejection::DigestMismatch { .. }))
    );
}
