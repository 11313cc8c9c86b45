//! The production roles through real failures: their S3 server (SeaweedFS) goes away for
//! 20 s behind a proxy that drops every connection, and later the chain refuses every
//! request for 3 blocks. No role exits (one miner runs overlapped); the windows the outages
//! cost are abandoned and replayed, and at the end the validator and both miners hold
//! bit-identical models and
//! the validator sets weights again after the outages. On local buckets: nodes killed
//! mid-window and restarted from their checkpoints, and a miner joining in window 4, all end
//! bit-identical with the lead.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;

#[path = "support/roles.rs"]
mod roles;
use roles::{MinerCli, ValidatorCli, assert_bit_identical, node_args, write_hotkey};
use run_manifest::RunManifest;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use worker::network::{NodeContext, Resolver, connect, run_miner, run_validator};
use worker_chain::{Chain, EmbeddedChain, EmbeddedChainConfig, Keypair, SubnetConfig};
use worker_storage::testing::{FailingReads, ProxyMode, SeaweedFs, TestProxy, unique_name};

use worker_storage::{BucketCredentials, ObjectStore, RunLayout, S3Store};

const NETUID: u16 = 1;
const BLOCKS_PER_WINDOW: u64 = 20;
const BLOCK: Duration = Duration::from_millis(400);
/// The roles stop once their models hold this window's outer step.
const LAST_WINDOW: u64 = 7;

fn manifest() -> RunManifest {
    let mut m = RunManifest::reference(&unique_name("faults"), "tiny");
    m.window.blocks_per_window = BLOCKS_PER_WINDOW;
    m.window.upload_deadline_secs = 4;
    m.training.inner_steps = 2;
    m.training.micro_batch_size = 4;
    m.training.batch_size = 4;
    m.training.inner_lr = 0.003;
    m.training.warmup_steps = 2;
    m.weights.interval_windows = 1;
    m
}

/// Logs warnings and errors of the roles into the test output.
fn warnings_only() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_test_writer()
        .try_init();
}

/// The embedded chain on its block timer with the test subnet (weights set directly, one
/// submission per window).
fn timed_subnet() -> EmbeddedChain {
    let chain = EmbeddedChain::start(EmbeddedChainConfig {
        blocks_per_window: BLOCKS_PER_WINDOW,
        block_time: BLOCK,
    });
    chain.add_subnet(
        NETUID,
        SubnetConfig {
            weights_rate_limit: BLOCKS_PER_WINDOW,
            tempo: 5,
            commit_reveal: false,
            ..SubnetConfig::default()
        },
    );
    chain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn roles_survive_an_s3_outage_and_an_unreachable_chain() {
    warnings_only();
    let dir = tempfile::tempdir().unwrap();
    let server = SeaweedFs::shared();
    // Every node reaches S3 only through this proxy.
    let proxy = Arc::new(
        TestProxy::start(server.s3_addr(), ProxyMode::PassThrough)
            .await
            .unwrap(),
    );
    let endpoint = proxy.endpoint();

    let chain = timed_subnet();
    let owner = Keypair::from_dev_name("owner");
    let (validator_key_path, validator_key) = write_hotkey(dir.path(), "validator", 1);
    let miners: Vec<_> = (0..2u8)
        .map(|i| write_hotkey(dir.path(), &format!("miner-{i}"), 20 + i))
        .collect();
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

    let reader = server.reader_credentials();
    let resolver_endpoint = endpoint.clone();
    let resolve = Arc::new(move |c: &BucketCredentials| {
        Ok(Arc::new(S3Store::new(c.s3_config(Some(&resolver_endpoint)))?) as Arc<dyn ObjectStore>)
    });
    let own_store = |bucket: &str| {
        let config = server.s3_config(bucket).with_endpoint(endpoint.clone());
        async move {
            let store = S3Store::new(config).unwrap();
            store.ensure_bucket().await.unwrap();
            Arc::new(store) as Arc<dyn ObjectStore>
        }
    };
    let read_keys = [
        "--storage-read-access-key-id",
        reader.access_key_id.as_str(),
        "--storage-read-secret-access-key",
        reader.secret_access_key.as_str(),
        "--manifest",
        manifest_arg.as_str(),
    ];
    let shared: Arc<dyn Chain> = Arc::new(chain.clone());

    let mut roles: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = worker::Result<()>>>>> =
        Vec::new();
    let validator_bucket = unique_name("faults-validator");
    {
        let args = ValidatorCli::parse_from(node_args(
            &read_keys,
            &validator_key_path,
            &validator_bucket,
            &dir.path().join("validator-ckpt"),
            LAST_WINDOW,
        ))
        .validator;
        let store = own_store(&validator_bucket).await;
        let (chain, resolve, run) = (shared.clone(), resolve.clone(), run.clone());
        roles.push(Box::pin(async move {
            let ctx = connect(chain, store, args.node, &run).await?;
            run_validator(ctx, &*resolve).await
        }));
    }
    for (i, (path, _)) in miners.iter().enumerate() {
        let bucket = unique_name(&format!("faults-miner-{i}"));
        // Miner 1 runs overlapped: its gathers fail in a task beside its training.
        let options: Vec<&str> = read_keys
            .iter()
            .copied()
            .chain((i == 1).then_some("--overlap"))
            .collect();
        let args = MinerCli::parse_from(node_args(
            &options,
            path,
            &bucket,
            &dir.path().join(format!("miner-ckpt-{i}")),
            LAST_WINDOW,
        ))
        .node;
        let store = own_store(&bucket).await;
        let (chain, resolve, run) = (shared.clone(), resolve.clone(), run.clone());
        roles.push(Box::pin(async move {
            let ctx = connect(chain, store, args, &run).await?;
            run_miner(ctx, resolve).await
        }));
    }

    // The faults, on the block timer's clock: S3 is down for 20 s from early in window 1;
    // the chain refuses every request for 3 blocks in window 4.
    let faults = {
        let (chain, proxy) = (chain.clone(), proxy.clone());
        tokio::spawn(async move {
            chain.wait_for_block(BLOCKS_PER_WINDOW + 3).await.unwrap();
            proxy.set_down(true);
            tokio::time::sleep(Duration::from_secs(20)).await;
            proxy.set_down(false);
            let at = 4 * BLOCKS_PER_WINDOW + 6;
            chain.wait_for_block(at).await.ok();
            chain.refuse_requests_until(at + 3);
            at
        })
    };
    run_all(roles).await;
    let chain_outage_at = faults.await.unwrap();

    // Everyone ends on the last window with the same model, bit for bit.
    let miner_ckpts: Vec<_> = (0..2)
        .map(|i| dir.path().join(format!("miner-ckpt-{i}/miner.ckpt")))
        .collect();
    let window = assert_bit_identical(
        &run,
        &dir.path().join("validator-ckpt/validator.ckpt"),
        &miner_ckpts,
    );
    assert_eq!(window, LAST_WINDOW);
    // The validator set weights after both outages (weights are set directly here, so the
    // chain's last-update block says when).
    let metagraph = chain.metagraph(NETUID).await.unwrap();
    let validator = metagraph
        .neurons
        .iter()
        .find(|n| n.uid == validator_uid)
        .unwrap();
    assert!(
        validator.last_update > chain_outage_at + 3,
        "last weights at block {}, the chain outage ended at {}",
        validator.last_update,
        chain_outage_at + 3
    );
}

/// Nodes on local buckets (one directory each under `buckets/`) and one timed embedded
/// chain, each node started from its own command line by the production role code.
struct LocalNodes {
    dir: tempfile::TempDir,
    chain: EmbeddedChain,
    run: run_manifest::VerifiedManifest,
    keys: Vec<(std::path::PathBuf, Keypair)>,
    resolve: Arc<Resolver>,
}

impl LocalNodes {
    /// `count` hotkeys (seeds from `seed`) and the test manifest; nothing registered yet.
    fn new(count: u8, seed: u8) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = (0..count)
            .map(|i| write_hotkey(dir.path(), &format!("node-{i}"), seed + i))
            .collect();
        let manifest_path = dir.path().join("run-manifest.json");
        std::fs::write(&manifest_path, manifest().to_json_pretty()).unwrap();
        let run = run_manifest::load_file(&manifest_path, None).unwrap();
        let resolver_root = dir.path().join("buckets");
        let resolve = Arc::new(move |c: &BucketCredentials| {
            Ok(Arc::new(worker_storage::LocalStore::open(
                resolver_root.join(&c.account_id),
            )?) as Arc<dyn ObjectStore>)
        });
        Self {
            dir,
            chain: timed_subnet(),
            run,
            keys,
            resolve,
        }
    }

    /// Registers node `i`'s hotkey (burn paid by the dev owner); returns its uid.
    async fn register(&self, i: usize) -> u16 {
        self.chain
            .burned_register(
                NETUID,
                &Keypair::from_dev_name("owner"),
                &self.keys[i].1.account_id(),
            )
            .await
            .unwrap()
    }

    fn checkpoints(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("ckpt-{i}"))
    }

    /// Node `i`'s loop from its command line: connect, then its role until LAST_WINDOW.
    fn node(
        &self,
        i: usize,
        validator: bool,
    ) -> impl std::future::Future<Output = worker::Result<()>> + use<> {
        self.node_with(i, validator, &[])
    }

    /// [`LocalNodes::node`] with `extra` options on its command line.
    fn node_with(
        &self,
        i: usize,
        validator: bool,
        extra: &[&str],
    ) -> impl std::future::Future<Output = worker::Result<()>> + use<> {
        self.node_resolving(i, validator, extra, self.resolve.clone())
    }

    /// [`LocalNodes::node_with`] opening peers' buckets with `resolve`.
    fn node_resolving(
        &self,
        i: usize,
        validator: bool,
        extra: &[&str],
        resolve: Arc<Resolver>,
    ) -> impl std::future::Future<Output = worker::Result<()>> + use<> {
        let (line, store) = self.command(i, extra);
        let chain: Arc<dyn Chain> = Arc::new(self.chain.clone());
        let run = self.run.clone();
        async move {
            if validator {
                let args = ValidatorCli::parse_from(line).validator;
                let ctx = connect(chain, store, args.node, &run).await?;
                run_validator(ctx, &*resolve).await
            } else {
                let args = MinerCli::parse_from(line).node;
                let ctx = connect(chain, store, args, &run).await?;
                run_miner(ctx, resolve).await
            }
        }
    }

    /// Node `i` connected as a miner, without running its loop.
    async fn miner_context(&self, i: usize) -> NodeContext {
        let (line, store) = self.command(i, &[]);
        let args = MinerCli::parse_from(line).node;
        connect(Arc::new(self.chain.clone()), store, args, &self.run)
            .await
            .unwrap()
    }

    /// Node `i`'s command line (with `extra`) and its own bucket.
    fn command(&self, i: usize, extra: &[&str]) -> (Vec<String>, Arc<dyn ObjectStore>) {
        let manifest_arg = self.dir.path().join("run-manifest.json");
        let options: Vec<&str> = ["--manifest", manifest_arg.to_str().unwrap()]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        let line = node_args(
            &options,
            &self.keys[i].0,
            &format!("bucket-{i}"),
            &self.checkpoints(i),
            LAST_WINDOW,
        );
        let store: Arc<dyn ObjectStore> = Arc::new(
            worker_storage::LocalStore::open(self.dir.path().join(format!("buckets/bucket-{i}")))
                .unwrap(),
        );
        (line, store)
    }
}

/// Runs the roles until all have finished (the first to fail is reported at once, not
/// hidden behind the timeout).
async fn run_all(
    roles: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = worker::Result<()>> + '_>>>,
) {
    tokio::time::timeout(
        Duration::from_secs(240),
        futures::future::try_join_all(roles),
    )
    .await
    .expect("the nodes finish their windows")
    .expect("a node exited with an error");
}

/// A lead validator, a non-lead validator and two miners on local buckets, miner 0
/// overlapped (`--overlap`), miner 1 not. Miner 0 is killed mid-window 2 and the lead mid-window 4 (their loops dropped at an await, as by
/// SIGKILL: nothing is flushed), each restarted from its checkpoint directory a window
/// later. All four end bit-identical; both validators set weights after the restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_nodes_restart_from_checkpoints_and_two_validators_agree() {
    warnings_only();
    // Node 0 leads (most stake), node 1 validates without leading, nodes 2 and 3 mine.
    let nodes = LocalNodes::new(4, 40);
    let mut uids = Vec::new();
    for i in 0..4 {
        uids.push(nodes.register(i).await);
    }
    let chain = &nodes.chain;
    chain
        .add_stake(NETUID, &nodes.keys[0].1.account_id(), 2_000_000)
        .unwrap();
    chain
        .add_stake(NETUID, &nodes.keys[1].1.account_id(), 1_000_000)
        .unwrap();
    // Kills node `i` at block `kill` and starts it again at block `restart`.
    let killed = |i: usize, validator: bool, kill: u64, restart: u64, extra: &[&str]| {
        let first = nodes.node_with(i, validator, extra);
        let again = nodes.node_with(i, validator, extra);
        let chain = chain.clone();
        async move {
            tokio::select! {
                result = first => return result,
                _ = chain.wait_for_block(kill) => {}
            }
            chain.wait_for_block(restart).await.ok();
            again.await
        }
    };
    let w = BLOCKS_PER_WINDOW;
    let lead_restart = 5 * w + 2;
    run_all(vec![
        Box::pin(killed(0, true, 4 * w + 10, lead_restart, &[])),
        Box::pin(nodes.node(1, true)),
        // Miner 0 runs overlapped: killed while it trains one window and gathers the last.
        Box::pin(killed(2, false, 2 * w + 10, 3 * w + 2, &["--overlap"])),
        Box::pin(nodes.node(3, false)),
    ])
    .await;

    let others: Vec<_> = [(1, "validator.ckpt"), (2, "miner.ckpt"), (3, "miner.ckpt")]
        .iter()
        .map(|(i, f)| nodes.checkpoints(*i).join(f))
        .collect();
    let window = assert_bit_identical(
        &nodes.run,
        &nodes.checkpoints(0).join("validator.ckpt"),
        &others,
    );
    assert_eq!(window, LAST_WINDOW);
    let metagraph = chain.metagraph(NETUID).await.unwrap();
    for uid in &uids[..2] {
        let neuron = metagraph.neurons.iter().find(|n| n.uid == *uid).unwrap();
        assert!(
            neuron.last_update > lead_restart,
            "validator uid {uid} last set weights at block {} (lead restarted at {lead_restart})",
            neuron.last_update
        );
    }
}

/// A miner that first starts in window 4 (empty checkpoint directory, registered late, as a
/// new pod would be) loads the lead's published checkpoint, replays the windows it missed
/// from the retained objects, passes the validator's sync check and earns weight; everyone
/// ends bit-identical with the lead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_miner_joining_at_window_4_catches_up_and_earns_weight() {
    warnings_only();
    // Node 0 validates, nodes 1 and 2 mine from the start, node 3 joins in window 4.
    let nodes = LocalNodes::new(4, 60);
    let validator_uid = nodes.register(0).await;
    nodes.register(1).await;
    nodes.register(2).await;
    let chain = &nodes.chain;
    chain
        .add_stake(NETUID, &nodes.keys[0].1.account_id(), 1_000_000)
        .unwrap();
    let joined_at = 4 * BLOCKS_PER_WINDOW + 2;
    let late = {
        let joiner = nodes.node(3, false);
        let nodes = &nodes;
        async move {
            nodes.chain.wait_for_block(joined_at).await.ok();
            nodes.register(3).await;
            joiner.await
        }
    };
    run_all(vec![
        Box::pin(nodes.node(0, true)),
        Box::pin(nodes.node(1, false)),
        Box::pin(nodes.node(2, false)),
        Box::pin(late),
    ])
    .await;

    let others: Vec<_> = (1..4)
        .map(|i| nodes.checkpoints(i).join("miner.ckpt"))
        .collect();
    let window = assert_bit_identical(
        &nodes.run,
        &nodes.checkpoints(0).join("validator.ckpt"),
        &others,
    );
    assert_eq!(window, LAST_WINDOW);
    let joiner_uid = chain
        .metagraph(NETUID)
        .await
        .unwrap()
        .neurons
        .iter()
        .find(|n| n.hotkey == nodes.keys[3].1.account_id())
        .map(|n| n.uid)
        .expect("the late miner is registered");
    // The validator's last weights give the late miner a share.
    let weights = chain.weights(NETUID).unwrap();
    let row = &weights[usize::from(validator_uid)];
    let share = row
        .iter()
        .find(|(uid, _)| *uid == joiner_uid)
        .map(|(_, w)| *w)
        .unwrap_or(0);
    assert!(
        share > 0,
        "the late miner (uid {joiner_uid}) earned no weight: {row:?}"
    );
}

/// Options only a miner has are refused by the validator, with an error naming them, before
/// it evaluates anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_validator_refuses_miner_only_options() {
    let nodes = LocalNodes::new(1, 90);
    nodes.register(0).await;
    for extra in [&["--overlap"][..], &["--world-size", "2"]] {
        let err = nodes
            .node_with(0, true, extra)
            .await
            .expect_err("a validator with a miner-only option");
        assert!(err.to_string().contains(extra[0]), "{extra:?}: {err}");
    }
}

/// A window's upload window is the chain's: from the timestamp of its first block to the
/// grace period after the timestamp of the block that ends it, the same line whenever a
/// node asks (before, a node estimated it from the block number and its own clock at the
/// moment it asked, so two nodes drew it up to a block time apart).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_deadline_is_drawn_from_the_chains_timestamps() {
    let nodes = LocalNodes::new(1, 95);
    nodes.register(0).await;
    let ctx = nodes.miner_context(0).await;
    let chain = &nodes.chain;
    let window = chain.block() / BLOCKS_PER_WINDOW;
    let (first, end) = (window * BLOCKS_PER_WINDOW, (window + 1) * BLOCKS_PER_WINDOW);
    chain.wait_for_block(first + 1).await.unwrap();
    let early = ctx.upload_window_of(window).await.unwrap();
    assert_eq!(Some(early.start), chain.timestamp(first));
    chain.wait_for_block(end + 2).await.unwrap();
    let exact = ctx.upload_window_of(window).await.unwrap();
    let grace = Duration::from_secs(manifest().window.upload_deadline_secs);
    assert_eq!(exact.start, early.start);
    assert_eq!(
        Some(exact.not_after()),
        chain.timestamp(end).map(|t| t + grace)
    );
    // While the end was still to come it was placed whole block times ahead: close to it.
    let off = match early.not_after().duration_since(exact.not_after()) {
        Ok(later) => later,
        Err(earlier) => earlier.duration(),
    };
    assert!(
        off < 3 * BLOCK,
        "estimate {off:?} away from the chain's time"
    );
    tokio::time::sleep(BLOCK).await;
    assert_eq!(ctx.upload_window_of(window).await.unwrap(), exact);
}

/// Two miners, one overlapped, each failing every download of the other's window-2 object
/// (from the peer, the lead's mirror and the peer again: all three attempts of its gather),
/// so neither can take window 2's outer step when it is due. Each abandons the window,
/// catches up by replay from the retained objects, goes on uploading every later window and
/// ends bit-identical with the lead.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn miners_whose_fetch_of_a_listed_object_fails_catch_up() {
    warnings_only();
    let nodes = LocalNodes::new(3, 60);
    let mut uids = Vec::new();
    for i in 0..3 {
        uids.push(nodes.register(i).await);
    }
    nodes
        .chain
        .add_stake(NETUID, &nodes.keys[0].1.account_id(), 1_000_000)
        .unwrap();
    let layout = RunLayout::new(nodes.run.manifest().run_id.clone()).unwrap();
    let failed_window = 2;
    let refused: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let miner = |i: usize, other: u16, extra: &'static [&'static str]| {
        let (base, refused) = (nodes.resolve.clone(), refused[i - 1].clone());
        let key = layout.gradient(failed_window, other);
        let refusals = Arc::new(AtomicUsize::new(3));
        let resolve: Arc<Resolver> = Arc::new(move |c: &BucketCredentials| {
            let (key, refusals, refused) = (key.clone(), refusals.clone(), refused.clone());
            let take = |n: usize| n.checked_sub(1);
            // The first three downloads of `key`, from whichever bucket, fail (and count).
            let fails = move |k: &str| {
                let failing = k == key && refusals.fetch_update(SeqCst, SeqCst, take).is_ok();
                if failing {
                    refused.fetch_add(1, SeqCst);
                }
                failing
            };
            Ok(Arc::new(FailingReads::new(base(c)?, fails)) as Arc<dyn ObjectStore>)
        });
        nodes.node_resolving(i, false, extra, resolve)
    };
    run_all(vec![
        Box::pin(nodes.node(0, true)),
        Box::pin(miner(1, uids[2], &["--overlap"])),
        Box::pin(miner(2, uids[1], &[])),
    ])
    .await;

    for (i, refused) in refused.iter().enumerate() {
        assert_eq!(
            refused.load(SeqCst),
            3,
            "miner {i}: every attempt of its gather failed"
        );
    }
    let miners: Vec<_> = (1..3)
        .map(|i| nodes.checkpoints(i).join("miner.ckpt"))
        .collect();
    let window = assert_bit_identical(
        &nodes.run,
        &nodes.checkpoints(0).join("validator.ckpt"),
        &miners,
    );
    assert_eq!(window, LAST_WINDOW);
    // Neither stalled: both uploaded every window after the failed one, and from the window
    // after the next on both were in sync when they uploaded (the same published sample,
    // the model after the previous window's outer step).
    let bucket = |i: usize| {
        worker_storage::LocalStore::open(nodes.dir.path().join(format!("buckets/bucket-{i}")))
            .unwrap()
    };
    for (i, uid) in [(1, uids[1]), (2, uids[2])] {
        for w in failed_window + 1..=LAST_WINDOW {
            assert!(
                bucket(i).head(&layout.gradient(w, uid)).await.is_ok(),
                "miner {i} uploaded nothing for window {w}"
            );
        }
    }
    for w in failed_window + 2..=LAST_WINDOW {
        let mut samples = Vec::new();
        for (i, uid) in [(1, uids[1]), (2, uids[2])] {
            let key = layout.sync_sample(w, uid);
            samples.push(bucket(i).get(&key, 1 << 20).await.unwrap().body);
        }
        assert!(
            samples[0] == samples[1],
            "window {w}: the overlapped miner uploaded from another model"
        );
    }
}
