//! Miners and validators of one run manifest agree on every protocol number; of two
//! manifests they refuse each other's objects as foreign, never decoding them with the wrong
//! shapes. Both sides run the production `Miner` / `Validator` code.

use std::time::SystemTime;

use bytes::Bytes;
use run_manifest::RunManifest;
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
    m.training.inner_lr = 3e-3;
    m.training.warmup_steps = 2;
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
    let mut miner = Miner::new(1, maker, tch::Device::Cpu).unwrap();
    let dataset = open_bundled(
        CorpusSplit::Train,
        miner.replica.model.config().seq_len as usize,
    )
    .unwrap();
    let sample = miner.replica.sync_sample().unwrap();
    let upload = miner.produce(0, &dataset, &key).unwrap();
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

/// Only what a validator evaluated in a window is aggregated, and only those exact bytes: an
/// object swapped after evaluation is refused by digest, an unevaluated peer is not listed.
#[tokio::test]
async fn only_evaluated_bytes_are_aggregated() {
    use std::sync::Arc;
    use worker::exchange::{PeerEndpoint, Rejection};
    use worker::network::pin_evaluated;
    use worker_storage::{FetchPolicy, LocalStore, ObjectStore, RunLayout};

    let s = settings(manifest());
    let layout = RunLayout::new(s.run_id.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dataset = open_bundled(CorpusSplit::Train, 64).unwrap();
    let mut validator = validator(&s);
    let mut peers = Vec::new();
    let mut submissions = Vec::new();
    for uid in [1u16, 2] {
        let key = Keypair::from_dev_name(&format!("agg-{uid}"));
        let mut miner = Miner::new(uid, &s, tch::Device::Cpu).unwrap();
        let sample = miner.replica.sync_sample().unwrap();
        let upload = miner.produce(0, &dataset, &key).unwrap();
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalStore::open(dir.path().join(format!("b{uid}"))).unwrap());
        store
            .put(&layout.gradient(0, uid), Bytes::from(upload.object.clone()))
            .await
            .unwrap();
        peers.push(PeerEndpoint {
            uid,
            hotkey: key.public_key(),
            store,
        });
        // Only uid 1 is evaluated this window.
        if uid == 1 {
            submissions.push(Submission {
                uid,
                hotkey: key.public_key(),
                object: Ok(StoredObject {
                    size: upload.object.len() as u64,
                    body: Bytes::from(upload.object),
                    last_modified: SystemTime::now(),
                }),
                sync_sample: Some(sample),
            });
        }
    }
    let evaluation = validator
        .evaluate_window(0, submissions, &dataset, &sr25519_verify)
        .unwrap();
    let policy = FetchPolicy::new(std::time::Duration::from_secs(10), 1 << 26);
    let (list, gathered) = pin_evaluated(
        &layout,
        &s.manifest_hash(),
        &validator,
        &evaluation,
        &peers,
        0,
        &policy,
    )
    .await;
    // The unevaluated uid 2 is never aggregated, whatever the Gauntlet's list says; the
    // evaluated, improving uid 1 is.
    assert_eq!(
        list.uids(),
        [1],
        "evaluated {:?}, list {:?}",
        evaluation.evaluated,
        evaluation.peer_list
    );
    assert!(gathered.iter().all(|g| g.uid == 1));

    // uid 1 swaps its object after evaluation (a validly signed zero update for the same
    // window): the pinned digest refuses it.
    let key = Keypair::from_dev_name("agg-1");
    let mut other = Miner::new(1, &s, tch::Device::Cpu).unwrap();
    let (_, digest) = other.assignment(&dataset, 0).unwrap();
    let zero = other.zero_update().unwrap();
    let swapped = other
        .compress_and_seal(0, &zero, digest, &key, f64::NAN)
        .unwrap();
    peers[0]
        .store
        .put(&layout.gradient(0, 1), Bytes::from(swapped.object))
        .await
        .unwrap();
    let pinned = worker::exchange::AggregationList {
        run_manifest: s.manifest_hash().to_hex(),
        list: evaluation.peer_list.clone(),
        objects: evaluation.aggregation_candidates(),
    };
    let (gathered, rejected) = worker::exchange::gather(
        &peers[..1],
        &layout,
        0,
        &policy,
        validator.replica.rules(),
        &sr25519_verify,
        Some(&pinned),
    )
    .await;
    assert!(gathered.is_empty());
    assert!(matches!(rejected[0].1, Rejection::DigestMismatch { .. }));
}
