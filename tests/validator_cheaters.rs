//! The Gauntlet validator on the tiny model against cheating miners (the devnet's
//! production roles with adversarial upload strategies): honest miners must out-rank a
//! lazy miner, a copycat, a miner training on the wrong data, a poisoner, a sign-flipping
//! poisoner (an update of honest size) and a late uploader; malformed objects never crash
//! the validator.

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
    ];
    let args = DevnetArgs {
        miners: 2,
        cheaters: cheaters.clone(),
        windows: 4,
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
        // No cheater's update is ever aggregated after the first scored window.
        for window in &report.windows[1..] {
            assert!(
                !window.aggregated_peers.contains(&cheater.uid) || cheater.behaviour == "wrongdata",
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
