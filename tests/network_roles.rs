//! The production roles (`worker miner` / `worker validator` loops) against the embedded
//! chain on a block timer and local buckets: registration lookup, commitments, uploads
//! within the deadline, Gauntlet scoring, peer lists, weights (timelocked commits revealed by
//! the chain, a rate-limited second commit survived), outer steps, checkpoints. The
//! validator runs from a manifest file; one miner is given the same file, another joins
//! with only its pinned SHA-256 and follows the manifest the validator publishes, and a
//! third joins two windows late with an empty checkpoint directory, replays the missed
//! windows from the lead's digest-pinned lists and ends bit-identical with everyone.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

#[path = "support/http.rs"]
mod http;
#[path = "support/roles.rs"]
mod roles;
use roles::{MinerCli, ValidatorCli, assert_bit_identical, node_args, write_hotkey};
use run_manifest::{PUBLISHED_MANIFEST_KEY, RunManifest};
use worker::health_server::HealthAddr;
use worker::manifest_source::resolve_manifest;
use worker::network::{connect, run_miner, run_validator};
use worker::node_observer::NodeMonitor;
use worker_chain::{Chain, EmbeddedChain, EmbeddedChainConfig, Keypair, SubnetConfig};
use worker_storage::{LocalStore, ObjectStore, RunLayout};

const NETUID: u16 = 1;
const RUN_ID: &str = "roles-test";

/// The run: the tiny model, 20-block windows (8 s), a 4 s upload deadline, 2 inner steps.
fn manifest() -> RunManifest {
    let mut m = RunManifest::reference(RUN_ID, "tiny");
    m.window.blocks_per_window = 20;
    m.window.upload_deadline_secs = 4;
    m.training.inner_steps = 2;
    m.training.micro_batch_size = 4;
    m.training.batch_size = 4;
    m.training.inner_lr = 0.003;
    m.training.warmup_steps = 2;
    m.weights.interval_windows = 1;
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn miners_and_validator_run_windows_on_a_timed_chain() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let buckets = dir.path().join("buckets");
    let chain = EmbeddedChain::start(EmbeddedChainConfig {
        blocks_per_window: 20,
        block_time: Duration::from_millis(400),
    });
    chain.add_subnet(
        NETUID,
        // Commit-reveal on, as subtensor's default: the validator must commit timelocked
        // weights. The rate limit (30 blocks) refuses its second commit (windows are 20
        // blocks), a retryable refusal the loop logs and survives.
        SubnetConfig {
            weights_rate_limit: 30,
            tempo: 5,
            commit_reveal: true,
            reveal_period_epochs: 1,
            ..SubnetConfig::default()
        },
    );
    let owner = Keypair::from_dev_name("owner");
    let (validator_key_path, validator_key) = write_hotkey(dir.path(), "validator", 1);
    let mut miners = Vec::new();
    // Miners 0 and 1 start with the validator; miner 2 joins at window 2 with nothing.
    for i in 0..3u8 {
        miners.push(write_hotkey(dir.path(), &format!("miner-{i}"), 10 + i));
    }
    let validator_uid = chain
        .burned_register(NETUID, &owner, &validator_key.account_id())
        .await
        .unwrap();
    chain
        .add_stake(NETUID, &validator_key.account_id(), 1_000_000)
        .unwrap();
    for (_, key) in &miners {
        chain
            .burned_register(NETUID, &owner, &key.account_id())
            .await
            .unwrap();
    }

    let manifest_path = dir.path().join("run-manifest.json");
    std::fs::write(&manifest_path, manifest().to_json_pretty()).unwrap();
    let run = run_manifest::load_file(&manifest_path, None).unwrap();
    let manifest_arg = manifest_path.to_str().unwrap().to_owned();
    let pin = run.hash().to_hex();

    let resolver_root = buckets.clone();
    let resolve = Arc::new(move |c: &worker_storage::BucketCredentials| {
        Ok(Arc::new(LocalStore::open(resolver_root.join(&c.account_id))?) as Arc<dyn ObjectStore>)
    });
    let shared: Arc<dyn Chain> = Arc::new(chain.clone());
    let chain_handle = chain.clone();

    // The roles hold tensors across awaits (not Send), so they run concurrently on this
    // task, as `worker` runs one of them on its main task; the block timer runs elsewhere.
    let mut roles: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = worker::Result<()>>>>> =
        Vec::new();
    // The validator and miner 0 are watched as `worker` watches them (health endpoints on a
    // free port, the monitor outliving the role).
    let local = HealthAddr::Listen("127.0.0.1:0".parse().unwrap());
    let monitors = [
        NodeMonitor::start(local).await.unwrap(),
        NodeMonitor::start(local).await.unwrap(),
    ];
    let health_addrs: Vec<_> = monitors
        .iter()
        .map(|m| m.server.as_ref().unwrap().local_addr())
        .collect();
    {
        let observer = monitors[0].observer.clone();
        let args = ValidatorCli::parse_from(node_args(
            &["--manifest", &manifest_arg],
            &validator_key_path,
            "validator-bucket",
            &dir.path().join("validator-ckpt"),
            4,
        ))
        .validator;
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalStore::open(buckets.join("validator-bucket")).unwrap());
        let chain = shared.clone();
        let resolve = resolve.clone();
        roles.push(Box::pin(async move {
            let run = resolve_manifest(&args.node, &*chain, &*resolve, false).await?;
            let mut ctx = connect(chain, store, args.node.clone(), &run).await?;
            ctx.events = observer;
            run_validator(ctx, &*resolve).await
        }));
    }
    for (i, (path, _)) in miners.iter().enumerate() {
        let i = i as u8;
        let bucket = format!("miner-bucket-{i}");
        // Miner 0 reads the file; miner 1 only knows the hash and follows the validator.
        let source: Vec<&str> = if i != 1 {
            vec!["--manifest", &manifest_arg]
        } else {
            vec!["--manifest-sha256", &pin]
        };
        let args = MinerCli::parse_from(node_args(
            &source,
            path,
            &bucket,
            &dir.path().join(format!("miner-ckpt-{i}")),
            4,
        ))
        .node;
        let store: Arc<dyn ObjectStore> =
            Arc::new(LocalStore::open(buckets.join(&bucket)).unwrap());
        let chain = shared.clone();
        let resolve = resolve.clone();
        let timed = chain_handle.clone();
        let observer = (i == 0).then(|| monitors[1].observer.clone());
        roles.push(Box::pin(async move {
            if i == 2 {
                while timed.block() < 2 * 20 + 5 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            let run = resolve_manifest(&args, &*chain, &*resolve, true).await?;
            let mut ctx = connect(chain, store, args, &run).await?;
            if let Some(observer) = observer {
                ctx.events = observer;
            }
            run_miner(ctx, resolve).await
        }));
    }
    // The first role to fail is reported at once (not hidden behind the timeout).
    tokio::time::timeout(
        Duration::from_secs(180),
        futures::future::try_join_all(roles),
    )
    .await
    .expect("roles finish their windows")
    .expect("role ran without error");

    // Right after their last window both watched nodes are ready and report it.
    for (addr, uid) in health_addrs.iter().zip([Some(validator_uid), None]) {
        let (status, body) = http::get_async(*addr, run_manifest::deployment::READYZ_PATH).await;
        assert_eq!(status, 200, "{body}");
        let (status, metrics) =
            http::get_async(*addr, run_manifest::deployment::METRICS_PATH).await;
        assert_eq!(status, 200);
        let gauge = |name: &str| {
            metrics
                .lines()
                .find(|l| l.starts_with(&format!("{name}{{")))
                .and_then(|l| l.rsplit_once(' '))
                .and_then(|(_, v)| v.parse::<f64>().ok())
        };
        assert!(
            gauge("worker_last_window").is_some_and(|w| w >= 3.0),
            "{metrics}"
        );
        assert!(gauge("worker_last_score").is_some(), "{metrics}");
        assert_eq!(gauge("worker_in_sync"), Some(1.0), "{metrics}");
        if let Some(uid) = uid {
            assert_eq!(gauge("worker_uid"), Some(f64::from(uid)), "{metrics}");
        }
    }

    // Every node committed its bucket; the validator published peer lists and set weights.
    let commitments = chain.commitments(NETUID).await.unwrap();
    assert_eq!(commitments.len(), 4);
    let layout = RunLayout::new(RUN_ID).unwrap();
    let validator_store = LocalStore::open(buckets.join("validator-bucket")).unwrap();
    // The validator published the manifest it runs, byte for byte the canonical form.
    let published = validator_store
        .get(PUBLISHED_MANIFEST_KEY, 1 << 20)
        .await
        .unwrap();
    assert_eq!(published.body.as_ref(), run.canonical().as_bytes());
    let lists = validator_store
        .list(&format!("{}/peers/", layout.run()))
        .await
        .unwrap();
    assert!(!lists.is_empty(), "no peer list published");
    // The chain reveals the validator's commit an epoch (6 blocks) after it was made.
    let revealed = tokio::time::timeout(Duration::from_secs(20), async {
        while chain.weights(NETUID).unwrap()[usize::from(validator_uid)].is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let reveals = chain.reveals(NETUID).unwrap();
    assert!(revealed.is_ok(), "no weights revealed: {reveals:?}");
    assert!(
        reveals
            .iter()
            .any(|r| r.outcome == worker_chain::embedded::RevealOutcome::Applied)
    );
    // Everyone, the late joiner included, ends on the same model, bit for bit: the same
    // aggregated objects (pinned by digest in the lead's lists), in the same order.
    let miners: Vec<std::path::PathBuf> = (0..3)
        .map(|i| dir.path().join(format!("miner-ckpt-{i}/miner.ckpt")))
        .collect();
    let lead_window = assert_bit_identical(
        &run,
        &dir.path().join("validator-ckpt/validator.ckpt"),
        &miners,
    );
    assert_eq!(lead_window, 4, "the validator completed its last window");
    // Miners uploaded gradients and checkpointed after their outer steps.
    for i in 0..3 {
        let store = LocalStore::open(buckets.join(format!("miner-bucket-{i}"))).unwrap();
        assert!(
            !store
                .list(&format!("{RUN_ID}/gradients/"))
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            dir.path()
                .join(format!("miner-ckpt-{i}/miner.ckpt"))
                .exists()
        );
    }
    assert!(dir.path().join("validator-ckpt/gauntlet.json").exists());
}
