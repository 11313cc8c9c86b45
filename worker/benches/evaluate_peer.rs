//! Seconds per evaluated peer: authenticate + decode the object, then loss before/after the
//! peer's single update on its assigned data and on random data, model restored.
//! `WORKER_BENCH_PRESETS=tiny,150m` (default) picks the models; CPU, 2 threads.

use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tch::{Device, Tensor};
use worker::gradient_object::seal;
use worker::settings::TrainingSettings;
use worker::signing::sr25519_verify;
use worker::validator::{EvalSettings, Submission, Validator};
use worker_chain::Keypair;
use worker_gauntlet::{GauntletConfig, Outcome};
use worker_model::{CorpusSplit, open_bundled};
use worker_sparseloco::{ErrorFeedback, GradientPayload, encode};
use worker_storage::StoredObject;

fn main() {
    tch::set_num_threads(2);
    let presets = std::env::var("WORKER_BENCH_PRESETS").unwrap_or_else(|_| "tiny,150m".into());
    for preset in presets.split(',') {
        // 150M on CPU: one 256-token sample per batch keeps a run to seconds.
        let (seq, mbs) = if preset == "tiny" { (64, 8) } else { (256, 1) };
        let mut manifest = run_manifest::RunManifest::reference("bench", preset);
        let mut shape = run_manifest::LlamaConfig::preset(preset).expect("known preset");
        shape.max_position_embeddings = seq;
        shape.seq_len = seq;
        manifest.model = run_manifest::ModelSection {
            preset: None,
            config: Some(shape),
        };
        manifest.training.micro_batch_size = mbs;
        manifest.training.batch_size = mbs;
        manifest.training.inner_steps = 2;
        let settings = TrainingSettings::from_manifest(
            &run_manifest::verify(manifest, "bench", None).expect("valid bench manifest"),
        );
        let eval = EvalSettings {
            assigned_batches: 2,
            random_batches: 2,
            lr: 0.08,
            max_object_bytes: 1 << 30,
            random_seed: Some(1),
        };
        let mut validator =
            Validator::new(&settings, eval, GauntletConfig::default(), Device::Cpu).unwrap();
        let params = validator.replica.model.config().param_count();
        let seq_len = validator.replica.model.config().seq_len as usize;
        let dataset = open_bundled(CorpusSplit::Train, seq_len).unwrap();
        let key = Keypair::from_dev_name("bench-miner");
        let specs = validator.replica.specs().to_vec();
        let mut feedback =
            ErrorFeedback::with_config(&specs, settings.sparseloco(), Device::Cpu).unwrap();
        let pseudo: Vec<Tensor> = validator
            .replica
            .model
            .parameters()
            .iter()
            .map(|p| p.randn_like() * 1e-3)
            .collect();
        let payload = GradientPayload {
            window: 0,
            uid: 1,
            tensors: feedback.compress(&pseudo).unwrap(),
        };
        let peers = 3;
        let mut object_bytes = 0;
        let started = Instant::now();
        for window in 0..peers {
            // The same update, sealed for each window so the origin check passes.
            let digest = worker::miner::assignment(&settings, &dataset, 1, window)
                .unwrap()
                .1;
            let object = seal(
                settings.manifest_hash(),
                window,
                1,
                digest.0,
                &re_window(&payload, window),
                &key,
            );
            object_bytes = object.len();
            let submission = Submission {
                uid: 1,
                hotkey: key.public_key(),
                object: Ok(StoredObject {
                    size: object.len() as u64,
                    body: Bytes::from(object),
                    last_modified: SystemTime::now(),
                }),
                sync_sample: None,
            };
            let evaluation = validator
                .evaluate_window(window, vec![submission], &dataset, &sr25519_verify)
                .unwrap();
            assert!(matches!(
                evaluation.outcomes[0].outcome,
                Outcome::Evaluated { .. }
            ));
        }
        let per_peer = started.elapsed().as_secs_f64() / peers as f64;
        println!(
            "evaluate_peer {preset:>5}: {params} parameters, seq {seq_len}, {} samples assigned + {} random: {per_peer:.3} s per evaluated peer (object {} bytes)",
            2 * settings.micro_batch_size,
            2 * settings.micro_batch_size,
            object_bytes
        );
    }
}

fn re_window(payload: &GradientPayload, window: u64) -> Vec<u8> {
    let mut payload = payload.clone();
    payload.window = window;
    encode(&payload)
}
