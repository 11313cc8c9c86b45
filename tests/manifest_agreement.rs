//! Miners and validators of one run manifest agree on every protocol number; of two
//! manifests they refuse each other's objects as foreign, never decoding them with the wrong
//! shapes. Both sides run the production `Miner` / `Validator` code.

use std::time::SystemTime;

use bytes::Bytes;
use run_manifest::RunManifest;
use worker::behaviour::Behaviour;
use worker::miner::{Miner, assignment};
use worker::settings::TrainingSettings;
use worker::signing::sr25519_verify;
use worker::validator::{EvalSettings, Submission, Validator};
use worker_chain::Keypair;
use worker_gauntlet::Outcome;
use worker_model::{CorpusSplit, open_bundled};
use worker_storage::StoredObject;

fn manifest() -> RunManifest {
    let mut m = RunManifest::reference("agreement", "tiny");
    m.training.inner_steps = 2;
    m.training.micro_batch_size = 2;
    m.training.batch_size = 4;
    m.gauntlet.eval_batches = 1;
    m
}

/// Settings as a pod gets them: from the manifest's canonical text, parsed again.
fn settings(m: RunManifest) -> TrainingSettings {
    let written = run_manifest::verify(m, "test", None).unwrap();
    let read = run_manifest::parse(written.canonical(), "pod", Some(&written.hash())).unwrap();
    TrainingSettings::from_manifest(&read)
}

fn validator(s: &TrainingSettings) -> Validator {
    Validator::new(
        s,
        EvalSettings::from_manifest(s, 1 << 26, Some(5)),
        s.gauntlet(),
        tch::Device::Cpu,
    )
    .unwrap()
}

/// The outcome the validator of `judge` gives uid 1's object made by a miner of `maker`.
fn judge(maker: &TrainingSettings, judge: &TrainingSettings) -> Outcome {
    let key = Keypair::from_dev_name("agreement-miner");
    let mut miner = Miner::new(1, Behaviour::Honest, maker, tch::Device::Cpu).unwrap();
    let dataset = open_bundled(
        CorpusSplit::Train,
        miner.replica.model.config().seq_len as usize,
    )
    .unwrap();
    let sample = miner.replica.sync_sample().unwrap();
    let upload = miner.produce(0, &dataset, &key, None).unwrap();
    let mut validator = validator(judge);
    let submission = Submission {
        uid: 1,
        hotkey: key.public_key(),
        object: Ok(StoredObject {
            size: upload.object.len() as u64,
            body: Bytes::from(upload.object),
            last_modified: SystemTime::now(),
        }),
        sync_sample: Some(sample),
    };
    let evaluation = validator
        .evaluate_window(0, vec![submission], &dataset, &sr25519_verify)
        .unwrap();
    evaluation.outcomes[0].outcome.clone()
}

#[test]
fn one_manifest_means_one_assignment_and_decodable_objects() {
    let (miner, validator) = (settings(manifest()), settings(manifest()));
    let dataset = open_bundled(CorpusSplit::Train, 64).unwrap();
    for window in 0..3 {
        assert_eq!(
            assignment(&miner, &dataset, 1, window).unwrap(),
            assignment(&validator, &dataset, 1, window).unwrap()
        );
    }
    match judge(&miner, &validator) {
        Outcome::Evaluated { digest_ok, .. } => assert!(digest_ok, "sample digest mismatch"),
        other => panic!("honest object of the same run not evaluated: {other:?}"),
    }
}

#[test]
fn objects_of_another_manifest_are_refused_as_foreign() {
    let ours = settings(manifest());
    // A different seed (a different run) and a different compression (undecodable shapes).
    let mut reseeded = manifest();
    reseeded.seeds.run += 1;
    let mut recompressed = manifest();
    recompressed.sparseloco.topk = 16;
    for theirs in [reseeded, recompressed] {
        let theirs = settings(theirs);
        assert_ne!(theirs.manifest_hash(), ours.manifest_hash());
        // Not decoded, not penalised as invalid: no contribution to this run.
        assert_eq!(judge(&theirs, &ours), Outcome::Missing);
    }
}
