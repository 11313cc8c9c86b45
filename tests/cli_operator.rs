//! The operator commands (`worker register`, `worker status`, `worker weights`) on the
//! embedded chain: the same report functions the binary runs against a node, their text and
//! JSON output, and their options.

#[path = "support/http.rs"]
mod http;
use std::time::Duration;

use clap::Parser;
use worker::NodeError;
use worker::cli_register::{RegisterArgs, register};
use worker::cli_status::{StatusArgs, status};
use worker::cli_weights::{WeightsArgs, gauntlet_weights, weights_report};
use worker_chain::{
    Chain, ChainError, EmbeddedChain, EmbeddedChainConfig, ErrorClass, Keypair, SubnetConfig,
};
use worker_gauntlet::{Gauntlet, GauntletConfig, Outcome, PeerOutcome};
use worker_storage::BucketCredentials;

const NETUID: u16 = 4;

fn chain(config: SubnetConfig) -> EmbeddedChain {
    let chain = EmbeddedChain::new(EmbeddedChainConfig {
        blocks_per_window: 10,
        block_time: Duration::from_millis(100),
    });
    chain.add_subnet(NETUID, config);
    chain.advance(1);
    chain
}

fn commit_reveal() -> SubnetConfig {
    SubnetConfig {
        commit_reveal: true,
        tempo: 10,
        weights_rate_limit: 5,
        ..SubnetConfig::default()
    }
}

#[tokio::test]
async fn register_is_one_shot_and_idempotent() {
    let chain = chain(SubnetConfig::default());
    let coldkey = Keypair::from_dev_name("operator-cold");
    let hotkey = Keypair::from_dev_name("pod-hot").account_id();
    let first = register(&chain, NETUID, &coldkey, &hotkey).await.unwrap();
    assert!(first.newly_registered);
    assert_eq!(first.uid, 0);
    assert_eq!(first.coldkey, coldkey.ss58_address());
    assert!(
        first.to_string().starts_with("registered hotkey"),
        "{first}"
    );

    let again = register(&chain, NETUID, &coldkey, &hotkey).await.unwrap();
    assert!(!again.newly_registered);
    assert_eq!(again.uid, 0);
    assert!(again.to_string().contains("already registered"), "{again}");
    let json = serde_json::to_value(&again).unwrap();
    assert_eq!(json["uid"], 0);
    assert_eq!(json["newly_registered"], false);
    assert_eq!(json["hotkey"], hotkey.to_string());
    assert_eq!(chain.metagraph(NETUID).await.unwrap().len(), 1);

    match register(&chain, 99, &coldkey, &hotkey).await {
        Err(NodeError::Chain(err)) => {
            assert_eq!(err, ChainError::UnknownSubnet(99));
            assert_eq!(err.class(), ErrorClass::RefusedByRule);
        }
        other => panic!("expected an unknown subnet, got {other:?}"),
    }
}

#[tokio::test]
async fn status_shows_the_neuron_its_commits_and_its_bucket_without_the_secret() {
    let chain = chain(commit_reveal());
    let owner = Keypair::from_dev_name("owner");
    let validator = Keypair::from_dev_name("validator");
    chain
        .burned_register(NETUID, &owner, &validator.account_id())
        .await
        .unwrap();
    chain
        .add_stake(NETUID, &validator.account_id(), 2_500_000_000)
        .unwrap();
    for i in 0..2 {
        let miner = Keypair::from_dev_name(&format!("miner-{i}"));
        chain
            .burned_register(NETUID, &owner, &miner.account_id())
            .await
            .unwrap();
    }
    let secret = "s".repeat(64);
    let credentials = BucketCredentials {
        account_id: "0123456789abcdef0123456789abcdef".into(),
        access_key_id: "readkey".into(),
        secret_access_key: secret.clone(),
    };
    chain
        .set_commitment(NETUID, &validator, &credentials.to_raw128().unwrap())
        .await
        .unwrap();
    chain.advance(5);
    let submission = chain
        .submit_weights(NETUID, &validator, &[1, 2], &[1.0, 0.5], 0)
        .await
        .unwrap();

    let report = status(&chain, NETUID, &validator.account_id())
        .await
        .unwrap();
    assert_eq!(report.uid, Some(0));
    assert_eq!(report.stake, Some(2_500_000_000));
    assert_eq!(report.validator_permit, Some(true));
    assert_eq!(report.last_update, Some(6));
    let weights = report.weights.as_ref().unwrap();
    assert!(weights.commit_reveal);
    assert_eq!(weights.next_allowed_block, 11);
    assert_eq!(weights.pending_commits.len(), 1);
    let worker_chain::WeightsSubmission::Committed { reveal_round, .. } = submission else {
        panic!("expected a commit")
    };
    assert_eq!(weights.pending_commits[0].reveal_round, reveal_round);
    let bucket = report.commitment.as_ref().unwrap();
    assert_eq!(
        bucket.bucket.as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
    assert_eq!(bucket.access_key_id.as_deref(), Some("readkey"));

    let text = report.to_string();
    let json = serde_json::to_string(&report).unwrap();
    for out in [&text, &json] {
        assert!(!out.contains(&secret), "the read secret leaked: {out}");
    }
    assert!(text.contains("validator permit  yes"), "{text}");
    assert!(
        text.contains(&format!("-> beacon round {reveal_round}")),
        "{text}"
    );
    assert!(text.contains("secret hidden"), "{text}");

    let stranger = Keypair::from_dev_name("stranger").account_id();
    let report = status(&chain, NETUID, &stranger).await.unwrap();
    assert_eq!(report.uid, None);
    assert!(report.to_string().ends_with("not registered"));
}

fn evaluated(improvement: f64) -> Outcome {
    Outcome::Evaluated {
        loss_before_assigned: 3.0,
        loss_after_assigned: 3.0 * (1.0 - improvement * 1.5),
        loss_before_random: 3.0,
        loss_after_random: 3.0 * (1.0 - improvement),
        steps_behind: 0.0,
        digest_ok: true,
    }
}

#[tokio::test]
async fn weights_shows_what_the_validator_would_set_and_whether_the_chain_takes_it() {
    // A Gauntlet state as the validator persists it (six windows: the assignment evidence
    // pays from a few consistent ones).
    let mut gauntlet = Gauntlet::new(GauntletConfig::default()).unwrap();
    for window in 1..=6 {
        gauntlet
            .record_window(
                window,
                vec![
                    PeerOutcome::new(1, evaluated(0.02)),
                    PeerOutcome::new(2, evaluated(0.01)),
                ],
            )
            .unwrap();
    }
    let weights =
        gauntlet_weights(GauntletConfig::default(), &gauntlet.to_json().unwrap()).unwrap();
    assert_eq!(weights, gauntlet.weights());

    let chain = chain(commit_reveal());
    let owner = Keypair::from_dev_name("owner");
    let validator = Keypair::from_dev_name("validator");
    for name in ["validator", "miner-1", "miner-2"] {
        chain
            .burned_register(NETUID, &owner, &Keypair::from_dev_name(name).account_id())
            .await
            .unwrap();
    }
    chain
        .add_stake(NETUID, &validator.account_id(), 1_000)
        .unwrap();
    chain.advance(5);
    let report = weights_report(&chain, NETUID, &validator.account_id(), &weights, 0)
        .await
        .unwrap();
    let plan = report.plan.as_ref().unwrap();
    assert_eq!(plan.refusal, None);
    assert!(plan.reveal.is_some());
    assert_eq!(report.rows.len(), 2);
    assert_eq!(report.rows[0].value, Some(u16::MAX));
    assert!(report.rows[1].value.unwrap() < u16::MAX);
    let text = report.to_string();
    assert!(
        text.contains("commit-reveal on: timelocked to beacon round"),
        "{text}"
    );
    assert!(text.contains("would accept"), "{text}");
    // Nothing was submitted.
    assert!(
        chain
            .pending_commits(NETUID, &validator.account_id())
            .await
            .unwrap()
            .is_empty()
    );

    // The same weights on a subnet that wants at least 3 of them.
    let strict = self::chain(SubnetConfig {
        min_allowed_weights: 3,
        ..commit_reveal()
    });
    for name in ["validator", "miner-1", "miner-2", "miner-3"] {
        strict
            .burned_register(NETUID, &owner, &Keypair::from_dev_name(name).account_id())
            .await
            .unwrap();
    }
    strict
        .add_stake(NETUID, &validator.account_id(), 1_000)
        .unwrap();
    strict.advance(5);
    let report = weights_report(&strict, NETUID, &validator.account_id(), &weights, 0)
        .await
        .unwrap();
    let plan = report.plan.as_ref().unwrap();
    assert_eq!(plan.refusal_class, Some(ErrorClass::RefusedByRule));
    let text = report.to_string();
    assert!(
        text.contains("would refuse them now (refused-by-rule)")
            && text.contains("MinAllowedWeights 3"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["plan"]["refusal_class"], "refused-by-rule");

    // All-zero weights: nothing to set.
    let zero = weights_report(&chain, NETUID, &validator.account_id(), &[(1, 0.0)], 0)
        .await
        .unwrap();
    assert!(zero.plan.is_none());
    assert!(zero.to_string().contains("nothing would be set"));
}

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    Register(RegisterArgs),
    Status(StatusArgs),
    Weights(WeightsArgs),
}

#[test]
fn options_parse_like_the_pod_environment() {
    let address = Keypair::from_dev_name("pod-hot").ss58_address();
    let cli = Cli::try_parse_from([
        "worker",
        "status",
        "--netuid",
        "3",
        "--chain-endpoint",
        "local",
        "--hotkey",
        &address,
        "--json",
    ])
    .unwrap();
    let Command::Status(args) = cli.command else {
        panic!("status")
    };
    assert_eq!(args.chain.netuid, 3);
    assert!(args.chain.json);
    assert_eq!(
        args.hotkey.account(None).unwrap(),
        Keypair::from_dev_name("pod-hot").account_id()
    );
    // A hotkey is required, and only one form of it.
    assert!(Cli::try_parse_from(["worker", "status", "--netuid", "3"]).is_err());
    assert!(
        Cli::try_parse_from([
            "worker",
            "status",
            "--netuid",
            "3",
            "--hotkey",
            &address,
            "--hotkey-file",
            "/x"
        ])
        .is_err()
    );
    let cli = Cli::try_parse_from([
        "worker",
        "register",
        "--netuid",
        "3",
        "--hotkey",
        &address,
        "--coldkey-file",
        "/c",
    ])
    .unwrap();
    assert!(matches!(cli.command, Command::Register(_)));
    assert!(
        Cli::try_parse_from(["worker", "register", "--netuid", "3", "--hotkey", &address]).is_err(),
        "register needs the coldkey"
    );
    let cli = Cli::try_parse_from([
        "worker",
        "weights",
        "--netuid",
        "3",
        "--hotkey",
        &address,
        "--checkpoint-dir",
        "/ckpt",
        "--version-key",
        "7",
    ])
    .unwrap();
    let Command::Weights(args) = cli.command else {
        panic!("weights")
    };
    assert_eq!(args.version_key, 7);
}

/// SIGTERM to a real `worker miner` process (here still waiting for its chain node) ends it
/// with exit 0 within seconds, as a pod's deletion expects.
#[test]
fn sigterm_stops_a_real_miner_process_cleanly() {
    use std::process::{Command, Stdio};
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("run.json");
    std::fs::write(
        &manifest,
        run_manifest::RunManifest::reference("sigterm", "tiny").to_json_pretty(),
    )
    .unwrap();
    let hotkey = dir.path().join("hotkey");
    std::fs::write(
        &hotkey,
        format!("{{\"secretSeed\": \"0x{}\"}}", "07".repeat(32)),
    )
    .unwrap();
    // A port nothing listens on: the reconnecting client keeps retrying.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let health_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_worker"))
        .args(["miner", "--netuid", "1", "--device", "cpu"])
        .arg("--chain-endpoint")
        .arg(format!("ws://127.0.0.1:{port}"))
        .arg("--manifest")
        .arg(&manifest)
        .arg("--hotkey-file")
        .arg(&hotkey)
        .args([
            "--storage-bucket",
            "b",
            "--storage-access-key-id",
            "k",
            "--storage-secret-access-key",
            "s",
        ])
        .arg("--health-addr")
        .arg(format!("127.0.0.1:{health_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the miner exited before the signal"
    );
    // While it waits for the chain its probes answer: live (starting), not ready.
    let health = std::net::SocketAddr::from(([127, 0, 0, 1], health_port));
    let (status, body) = http::get(health, run_manifest::deployment::HEALTHZ_PATH);
    assert_eq!(status, 200, "{body}");
    let (status, body) = http::get(health, run_manifest::deployment::READYZ_PATH);
    assert_eq!(status, 503, "{body}");
    let sent = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(10),
            "no exit within 10 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

/// `worker export` (the real binary) turns a node's checkpoint into a Hugging Face directory:
/// the exported tensors are the checkpoint's parameters bit for bit (f32), `config.json`
/// describes the run's model, and the provenance file names the run, window and checkpoint.
/// A truncated checkpoint is refused with a message naming it, and nothing is written.
#[test]
fn export_turns_a_checkpoint_into_a_hugging_face_directory() {
    use std::process::Command;
    use worker::replica::Replica;
    use worker::settings::TrainingSettings;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("run.json");
    std::fs::write(
        &manifest,
        run_manifest::RunManifest::reference("export", "tiny").to_json_pretty(),
    )
    .unwrap();
    let run = run_manifest::load_file(&manifest, None).unwrap();
    let settings = TrainingSettings::from_manifest(&run);
    let replica = Replica::for_run(&settings, tch::Device::Cpu).unwrap();
    // Trained weights, not the seed's initialisation.
    tch::no_grad(|| {
        for p in replica.model.parameters() {
            let _ = p.shallow_clone().g_add_scalar_(0.125);
        }
    });
    let checkpoint = dir.path().join("miner.ckpt");
    replica.save_model(&checkpoint, 5).unwrap();

    let out = dir.path().join("hf");
    let output = Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("export")
        .arg(&checkpoint)
        .arg(&out)
        .arg("--manifest")
        .arg(&manifest)
        .args(["--dtype", "f32", "--json"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["run_id"], "export");
    assert_eq!(report["window"], 5);
    assert_eq!(report["manifest_sha256"], run.hash().to_hex());
    let exported: std::collections::HashMap<String, tch::Tensor> =
        tch::Tensor::read_safetensors(out.join("model.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let names = replica.model.param_names();
    assert_eq!(exported.len(), names.len());
    for (name, param) in names.iter().zip(replica.model.parameters()) {
        let tensor = exported
            .get(name)
            .unwrap_or_else(|| panic!("{name} not exported"));
        assert!(tensor.equal(&param), "{name} differs from the checkpoint");
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
    let model = settings.model_config();
    assert_eq!(config["hidden_size"], model.hidden_size);
    assert_eq!(config["num_hidden_layers"], model.num_hidden_layers);
    assert_eq!(config["torch_dtype"], "float32");
    let provenance: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join(worker::cli_export::PROVENANCE_FILE)).unwrap(),
    )
    .unwrap();
    assert_eq!(provenance, report);

    // A truncated checkpoint: refused by name, no directory written.
    let bytes = std::fs::read(&checkpoint).unwrap();
    let broken = dir.path().join("broken.ckpt");
    std::fs::write(&broken, &bytes[..bytes.len() / 2]).unwrap();
    let refused_dir = dir.path().join("refused");
    let output = Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("export")
        .arg(&broken)
        .arg(&refused_dir)
        .arg("--manifest")
        .arg(&manifest)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken.ckpt"), "{stderr}");
    assert!(
        !refused_dir.exists(),
        "nothing is written for a refused checkpoint"
    );
}
