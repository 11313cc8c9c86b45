//! What the tests that run the production roles share: hotkey files, the roles' command
//! lines (parsed by the worker's own clap types), and reading a node's checkpoint back.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use clap::Parser;
use run_manifest::VerifiedManifest;
use worker::network::{NodeArgs, ValidatorArgs};
use worker_chain::Keypair;

/// Writes a bittensor keyfile holding the secret seed `[seed; 32]`.
pub fn write_hotkey(dir: &Path, name: &str, seed: u8) -> (PathBuf, Keypair) {
    let path = dir.join(name);
    let secret = [seed; 32];
    std::fs::write(
        &path,
        format!("{{\"secretSeed\": \"0x{}\"}}", hex::encode(secret)),
    )
    .unwrap();
    (path, Keypair::from_seed(&secret).unwrap())
}

/// A role's command line: netuid 1, the hotkey, the bucket (placeholder write keys and,
/// unless `extra` names real ones, placeholder read keys to publish on chain), the
/// checkpoint directory, CPU, until window `until`, then `extra`.
pub fn node_args(
    extra: &[&str],
    hotkey: &Path,
    bucket: &str,
    checkpoints: &Path,
    until: u64,
) -> Vec<String> {
    let until = until.to_string();
    let mut args: Vec<String> = [
        "worker",
        "--netuid",
        "1",
        "--hotkey-file",
        hotkey.to_str().unwrap(),
        "--storage-bucket",
        bucket,
        "--storage-access-key-id",
        "write",
        "--storage-secret-access-key",
        "write-secret",
        "--checkpoint-dir",
        checkpoints.to_str().unwrap(),
        "--bundled-dataset",
        concat!(env!("CARGO_MANIFEST_DIR"), "/data/bundled"),
        "--device",
        "cpu",
        "--until-window",
        &until,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if !extra.contains(&"--storage-read-access-key-id") {
        args.extend(
            [
                "--storage-read-access-key-id",
                "read",
                "--storage-read-secret-access-key",
                "read-secret",
            ]
            .map(String::from),
        );
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[derive(Parser)]
pub struct MinerCli {
    #[command(flatten)]
    pub node: NodeArgs,
}

#[derive(Parser)]
pub struct ValidatorCli {
    #[command(flatten)]
    pub validator: ValidatorArgs,
}

/// A checkpoint's window, parameter sample and parameters.
pub fn model_at(run: &VerifiedManifest, path: &Path) -> (u64, Vec<f32>, Vec<tch::Tensor>) {
    let settings = worker::settings::TrainingSettings::from_manifest(run);
    let mut replica = worker::replica::Replica::for_run(&settings, tch::Device::Cpu).unwrap();
    let window = replica.load_model(path).unwrap();
    (
        window,
        replica.sync_sample().unwrap(),
        replica.model.parameters(),
    )
}

/// Asserts that the checkpoints at `paths` hold bit-identical models of one window with
/// the one at `lead`; returns that window.
pub fn assert_bit_identical(run: &VerifiedManifest, lead: &Path, paths: &[PathBuf]) -> u64 {
    let (lead_window, lead_sample, lead_params) = model_at(run, lead);
    for path in paths {
        let (window, sample, params) = model_at(run, path);
        assert_eq!(
            window,
            lead_window,
            "{} ended on another window",
            path.display()
        );
        assert_eq!(sample, lead_sample, "{} diverged", path.display());
        for (a, b) in params.iter().zip(&lead_params) {
            assert!(a.equal(b), "{} is not bit-identical", path.display());
        }
    }
    lead_window
}
