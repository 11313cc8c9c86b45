//! The production roles: `worker miner` and `worker validator` against a subtensor node and
//! S3 buckets, one window after another, resuming from checkpoints after a restart.
//!
//! Both roles run on any [`Chain`] and any bucket resolver, so the same loops are exercised
//! against the embedded chain and local stores in tests.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::Args;
use run_manifest::VerifiedManifest;
use run_manifest::deployment::{
    ENV_HEALTH_ADDR, ENV_OVERLAP, ENV_RUN_MANIFEST, ENV_RUN_MANIFEST_SHA256,
};
use tch::Device;
use worker_chain::wallet::load_keypair;
use worker_chain::{Chain, ErrorClass, Keypair, Metagraph, Password};
use worker_data::{DataArgs, ShardedDataset};
use worker_model::Samples;
use worker_sparseloco::ParamSpec;
use worker_storage::{
    BucketCredentials, FetchPolicy, ObjectKind, ObjectStore, RunLayout, S3Config, S3Credentials,
    S3Store, StorageError, UploadWindow, delete_old_windows,
};

use crate::catch_up::replay;
use crate::error::{NodeError, Result};
use crate::exchange::{
    AggregationList, Gathered, ListedObjects, PeerEndpoint, fetch_submissions, gather,
    gather_listed, mirror_aggregated, publish_peer_list, read_peer_list, resolve_peers,
    rewritten_objects,
};
use crate::gradient_object::max_object_len;
use crate::health_server::HealthAddr;
use crate::manifest_source::publish_manifest;
use crate::published_checkpoint::{fetch_published_checkpoint, publish_checkpoint};
use crate::replica::Replica;
use crate::role_events::{NodeRole, RoleEvents, RoleStarted, Unobserved, ValidatorWindowReport};
use crate::settings::TrainingSettings;
use crate::signing::sr25519_verify;
use crate::training_ranks::RankArgs;
use crate::validator::{EvalSettings, Validator, WindowEvaluation};

/// This node's bucket (write credentials) and the read credentials it publishes on chain.
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// S3 endpoint URL (R2: https://ACCOUNT.r2.cloudflarestorage.com; default: from account id).
    #[arg(long, env = "STORAGE_ENDPOINT")]
    pub storage_endpoint: Option<String>,
    /// Bucket this node writes to (the account id for R2, which names the bucket after it).
    #[arg(long, env = "STORAGE_BUCKET")]
    pub storage_bucket: String,
    /// Signing region.
    #[arg(long, env = "STORAGE_REGION", default_value = "auto")]
    pub storage_region: String,
    /// Write access key id.
    #[arg(long, env = "STORAGE_ACCESS_KEY_ID", hide_env_values = true)]
    pub storage_access_key_id: String,
    /// Write secret access key.
    #[arg(long, env = "STORAGE_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub storage_secret_access_key: String,
    /// Read-only access key id published on chain for peers.
    #[arg(long, env = "STORAGE_READ_ACCESS_KEY_ID", hide_env_values = true)]
    pub storage_read_access_key_id: Option<String>,
    /// Read-only secret published on chain for peers.
    #[arg(long, env = "STORAGE_READ_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub storage_read_secret_access_key: Option<String>,
    /// Endpoint used for every peer's bucket instead of the R2 URL derived from its account
    /// id (MinIO, SeaweedFS, a private S3).
    #[arg(long, env = "PEER_STORAGE_ENDPOINT")]
    pub peer_storage_endpoint: Option<String>,
}

/// What both roles need. Every protocol setting comes from the run manifest; these are the
/// per-deployment ones.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Run manifest (JSON) holding every protocol setting of the run. A miner started
    /// without one follows the manifest the lead validator publishes in its bucket.
    #[arg(long, env = ENV_RUN_MANIFEST)]
    pub manifest: Option<PathBuf>,
    /// Expected SHA-256 of the run manifest: any other manifest is refused.
    #[arg(long, env = ENV_RUN_MANIFEST_SHA256)]
    pub manifest_sha256: Option<String>,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Where the run's dataset is cached and how it is read.
    #[command(flatten)]
    pub data: DataArgs,
    /// Subnet id.
    #[arg(long, env = "NETUID")]
    pub netuid: u16,
    /// finney, test, local or a ws(s):// URL.
    #[arg(long, env = "CHAIN_ENDPOINT", default_value = "finney")]
    pub chain_endpoint: worker_chain::Network,
    /// Hotkey file (bittensor wallet layout; a mounted Secret in Kubernetes).
    #[arg(long, env = "HOTKEY_FILE")]
    pub hotkey_file: PathBuf,
    /// Coldkey file, only needed to register the hotkey (`--register`).
    #[arg(long, env = "COLDKEY_FILE")]
    pub coldkey_file: Option<PathBuf>,
    /// Environment variable holding the password of encrypted ($NACL) key files.
    #[arg(long, env = "WALLET_PASSWORD_ENV", default_value = "WALLET_PASSWORD")]
    pub wallet_password_env: String,
    /// Burn-register the hotkey with the coldkey if it is not registered yet.
    #[arg(long, env = "REGISTER")]
    pub register: bool,
    /// Checkpoint directory; the node resumes from it after a restart.
    #[arg(long, env = "CHECKPOINT_DIR")]
    pub checkpoint_dir: Option<PathBuf>,
    /// cpu, cuda, cuda:N or auto.
    #[arg(long, env = "DEVICE", default_value = "auto")]
    pub device: String,
    /// Per-peer download timeout in seconds.
    #[arg(long, env = "PEER_TIMEOUT_SECS", default_value_t = 30)]
    pub peer_timeout_secs: u64,
    /// Stop after this many windows (default: run until stopped).
    #[arg(long, env = "MAX_WINDOWS")]
    pub max_windows: Option<u64>,
    /// Stop once the model holds this window's outer step (default: run until stopped).
    #[arg(long, env = "UNTIL_WINDOW")]
    pub until_window: Option<u64>,
    /// Largest accepted peer object in MiB.
    #[arg(long, env = "MAX_OBJECT_MIB", default_value_t = 1024)]
    pub max_object_mib: u64,
    /// Address of the health endpoints (liveness, readiness, Prometheus metrics), or `off`.
    #[arg(long, env = ENV_HEALTH_ADDR, default_value_t = HealthAddr::default())]
    pub health_addr: HealthAddr,
    /// Processes (GPUs) the node trains with.
    #[command(flatten)]
    pub ranks: RankArgs,
    /// Miners only: train window w+1 while window w's aggregate is gathered, starting at
    /// w+1's first block, and apply w's outer step when that training ends (each update
    /// one window late) instead of waiting for the lead's list between windows.
    #[arg(long, env = ENV_OVERLAP)]
    pub overlap: bool,
}

pub use crate::miner_loop::{run_miner, run_miner_with};

/// Options of `worker validator` (its evaluation settings are the manifest's `gauntlet`).
#[derive(Debug, Clone, Args)]
pub struct ValidatorArgs {
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Parses the device option.
pub fn parse_device(text: &str) -> Result<Device> {
    match text {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => Ok(Device::Cuda(0)),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| NodeError::Config(format!("unknown device {other:?}"))),
    }
}

/// A connected node: chain, identity, own bucket.
pub struct NodeContext {
    pub chain: Arc<dyn Chain>,
    /// The run's protocol settings (from its manifest).
    pub settings: TrainingSettings,
    pub hotkey: Keypair,
    pub uid: u16,
    pub store: Arc<dyn ObjectStore>,
    pub layout: RunLayout,
    pub args: NodeArgs,
    /// Who is told about completed windows (nobody in production; the devnet's report).
    pub events: Arc<dyn RoleEvents>,
}

/// Loads the hotkey, finds (or registers) its uid and publishes the bucket's read
/// credentials on chain when they changed. `run` is the verified manifest of the run.
pub async fn connect(
    chain: Arc<dyn Chain>,
    store: Arc<dyn ObjectStore>,
    args: NodeArgs,
    run: &VerifiedManifest,
) -> Result<NodeContext> {
    let settings = TrainingSettings::from_manifest(run);
    tracing::info!(run = %settings.run_id, manifest = %settings.manifest_hash(), "run manifest");
    let password = Password::from_env(&args.wallet_password_env).ok();
    let hotkey = load_keypair(&args.hotkey_file, password.as_ref())?;
    let uid = match find_uid(&chain.metagraph(args.netuid).await?, &hotkey) {
        Some(uid) => uid,
        None if args.register => {
            let coldkey_file = args.coldkey_file.as_ref().ok_or_else(|| {
                NodeError::Config("--register needs --coldkey-file (COLDKEY_FILE)".into())
            })?;
            let coldkey = load_keypair(coldkey_file, password.as_ref())?;
            chain
                .burned_register(args.netuid, &coldkey, &hotkey.account_id())
                .await?
        }
        None => {
            return Err(NodeError::Config(format!(
                "hotkey {} is not registered on netuid {} (pass --register with a coldkey)",
                hotkey.ss58_address(),
                args.netuid
            )));
        }
    };
    if let (Some(access), Some(secret)) = (
        &args.storage.storage_read_access_key_id,
        &args.storage.storage_read_secret_access_key,
    ) {
        let raw = BucketCredentials {
            account_id: args.storage.storage_bucket.clone(),
            access_key_id: access.clone(),
            secret_access_key: secret.clone(),
        }
        .to_raw128()
        .map_err(|err| NodeError::Config(format!("read credentials: {err}")))?;
        let current = chain.commitments(args.netuid).await?;
        if current.get(&hotkey.account_id()).map(Vec::as_slice) != Some(&raw[..]) {
            chain.set_commitment(args.netuid, &hotkey, &raw).await?;
            tracing::info!(uid, "published bucket read credentials");
        }
    } else {
        tracing::warn!("no read credentials configured: peers cannot fetch this node's objects");
    }
    let layout = RunLayout::new(settings.run_id.clone())?;
    if let Some(dir) = &args.checkpoint_dir {
        std::fs::create_dir_all(dir)?;
    }
    Ok(NodeContext {
        chain,
        settings,
        hotkey,
        uid,
        store,
        layout,
        args,
        events: Arc::new(Unobserved),
    })
}

fn find_uid(metagraph: &Metagraph, hotkey: &Keypair) -> Option<u16> {
    let account = hotkey.account_id();
    metagraph
        .neurons
        .iter()
        .find(|n| n.hotkey == account)
        .map(|n| n.uid)
}

/// This node's own bucket on S3.
pub fn own_s3_store(storage: &StorageArgs) -> Result<Arc<dyn ObjectStore>> {
    let mut config = S3Config::new(
        storage.storage_bucket.clone(),
        S3Credentials::new(
            storage.storage_access_key_id.clone(),
            storage.storage_secret_access_key.clone(),
        ),
    )
    .with_region(storage.storage_region.clone());
    if let Some(endpoint) = &storage.storage_endpoint {
        config = config.with_endpoint(endpoint.clone());
    }
    Ok(Arc::new(S3Store::new(config)?))
}

/// Opens a peer's bucket on S3 from its committed read credentials.
pub fn peer_s3_store(
    credentials: &BucketCredentials,
    endpoint: Option<&str>,
) -> Result<Arc<dyn ObjectStore>> {
    Ok(Arc::new(S3Store::new(credentials.s3_config(endpoint))?))
}

/// Resolves peers' buckets.
pub type Resolver = dyn Fn(&BucketCredentials) -> Result<Arc<dyn ObjectStore>> + Send + Sync;

impl NodeContext {
    pub(crate) fn device(&self) -> Result<Device> {
        parse_device(&self.args.device)
    }

    /// The dataset the run manifest names (fetched shard by shard, verified, cached).
    pub(crate) fn dataset(&self) -> Result<ShardedDataset> {
        Ok(worker_data::open_for_run(
            self.settings.manifest(),
            &self.args.data,
        )?)
    }

    /// How peers' objects of `window` are fetched: within the upload window, and no larger
    /// than the largest valid gradient object of the run (or `--max-object-mib`, if smaller).
    pub(crate) fn policy(&self, window: UploadWindow, specs: &[ParamSpec]) -> FetchPolicy {
        FetchPolicy::new(
            Duration::from_secs(self.args.peer_timeout_secs),
            self.object_limit(specs),
        )
        .within(window)
    }

    fn object_limit(&self, specs: &[ParamSpec]) -> u64 {
        let flag = self.args.max_object_mib << 20;
        match max_object_len(specs, &self.settings.sparseloco()) {
            Ok(exact) => exact.min(flag),
            Err(err) => {
                tracing::warn!(%err, "no exact object limit for these parameters");
                flag
            }
        }
    }

    /// Waits for a window this node has not done yet; returns it with its upload window
    /// ([`NodeContext::upload_window_of`]; Templar's timing: miners train through the window
    /// on the model after the previous outer step, and upload up to the grace after the
    /// window closes).
    async fn next_window(&self, done: Option<u64>) -> Result<(u64, UploadWindow)> {
        let bpw = self.settings.blocks_per_window().max(1);
        loop {
            let block = self.chain.current_block().await?;
            let window = block / bpw;
            if done.is_none_or(|d| window > d) {
                return Ok((window, self.upload_window_of(window).await?));
            }
            self.chain.wait_for_block((window + 1) * bpw).await?;
        }
    }

    /// `window`'s upload window by the chain's clock: from the timestamp of its first block
    /// until the manifest's grace period after the timestamp of the block that ends it (the
    /// next window's first), so every node draws the same line whenever it asks. A block
    /// not produced yet (or no longer known) is placed whole block times from the newest one.
    pub async fn upload_window_of(&self, window: u64) -> Result<UploadWindow> {
        let bpw = self.settings.blocks_per_window().max(1);
        let start = self.block_time_of(window * bpw).await?;
        let end = self.block_time_of((window + 1) * bpw).await?;
        let grace = Duration::from_secs(self.settings.upload_deadline_secs());
        let length = end
            .duration_since(start)
            .unwrap_or_default()
            .saturating_add(grace);
        Ok(UploadWindow::new(start, length))
    }

    /// When `block` was produced by the chain's clock, else when it is (or was) expected.
    async fn block_time_of(&self, block: u64) -> Result<SystemTime> {
        if let Some(at) = self.chain.block_timestamp(block).await? {
            return Ok(at);
        }
        let current = self.chain.current_block().await?;
        let current_at = self
            .chain
            .block_timestamp(current)
            .await?
            .unwrap_or_else(SystemTime::now);
        let blocks = |n: u64| {
            self.chain
                .block_time()
                .saturating_mul(u32::try_from(n).unwrap_or(u32::MAX))
        };
        let expected = if block >= current {
            current_at.checked_add(blocks(block - current))
        } else {
            current_at.checked_sub(blocks(current - block))
        };
        Ok(expected.unwrap_or(current_at))
    }

    /// Waits until `window`'s uploads are closed by the chain's clock (the block that ends it
    /// is produced and the grace after its timestamp is over) and returns its exact upload
    /// window. If the chain cannot be asked, waits for `estimate` instead and returns it.
    pub(crate) async fn wait_for_deadline(
        &self,
        window: u64,
        estimate: UploadWindow,
    ) -> UploadWindow {
        let bpw = self.settings.blocks_per_window().max(1);
        let exact = async {
            self.chain.wait_for_block((window + 1) * bpw).await?;
            self.upload_window_of(window).await
        };
        let upload_window = match exact.await {
            Ok(exact) => exact,
            Err(err) => {
                tracing::warn!(window, %err, "no chain time for the deadline; using the estimate");
                estimate
            }
        };
        Self::wait_deadline(&upload_window).await;
        upload_window
    }

    /// The validator whose peer list miners follow: the highest-stake permit holder.
    pub fn lead_validator(metagraph: &Metagraph) -> Option<u16> {
        metagraph
            .neurons
            .iter()
            .filter(|n| n.validator_permit)
            .max_by_key(|n| n.stake)
            .map(|n| n.uid)
    }

    /// Nominal length of a window.
    pub fn window_duration(&self) -> Duration {
        let blocks = u32::try_from(self.settings.blocks_per_window()).unwrap_or(u32::MAX);
        self.chain.block_time().saturating_mul(blocks)
    }

    pub(crate) async fn wait_deadline(window: &UploadWindow) {
        if let Ok(left) = window.not_after().duration_since(SystemTime::now()) {
            tokio::time::sleep(left).await;
        }
    }
}

/// Windows kept in a node's own bucket (older gradients, samples and lists are deleted):
/// the horizon within which a joining node can replay.
pub const RETAINED_WINDOWS: u64 = 64;
/// The lead validator publishes its model every this many windows.
pub const CHECKPOINT_INTERVAL_WINDOWS: u64 = 10;

impl NodeContext {
    /// The lead validator's endpoint among `peers` (or this node's own bucket when it leads).
    pub(crate) fn lead_endpoint(
        &self,
        metagraph: &Metagraph,
        peers: &[PeerEndpoint],
    ) -> Option<PeerEndpoint> {
        let lead = Self::lead_validator(metagraph)?;
        if lead == self.uid {
            return Some(PeerEndpoint {
                uid: self.uid,
                hotkey: self.hotkey.public_key(),
                store: self.store.clone(),
            });
        }
        peers.iter().find(|p| p.uid == lead).cloned()
    }

    /// Brings `replica` (which follows `done`) up to the window before the current one: the
    /// lead's published checkpoint when it is newer, then a replay of the remaining windows
    /// from the lead's lists. Returns the window the replica now follows and whether it is
    /// still behind a window the lead has not settled yet (then it must not train: its
    /// gradient would start from the wrong model).
    async fn catch_up(
        &self,
        replica: &mut Replica,
        done: Option<u64>,
        resolve: &Resolver,
    ) -> Result<(Option<u64>, bool)> {
        let current = self.chain.current_block().await? / self.settings.blocks_per_window().max(1);
        let behind = |done: Option<u64>| match done {
            Some(d) => current.saturating_sub(d + 1),
            None => current,
        };
        if behind(done) == 0 {
            return Ok((done, false));
        }
        let metagraph = self.chain.metagraph(self.args.netuid).await?;
        let peers = resolve_peers(&*self.chain, &metagraph, resolve).await?;
        let Some(lead) = self.lead_endpoint(&metagraph, &peers) else {
            tracing::warn!(behind = behind(done), "no lead validator to catch up from");
            return Ok((done, false));
        };
        let mut done = done;
        if lead.uid != self.uid
            && let Some(dir) = &self.args.checkpoint_dir
        {
            let path = dir.join("lead-model.ckpt");
            match fetch_published_checkpoint(
                &*lead.store,
                &self.layout,
                done,
                &path,
                self.args.max_object_mib << 20,
            )
            .await
            {
                Ok(Some(window)) => {
                    done = Some(replica.load_model(&path)?.max(window));
                    tracing::info!(window, "loaded the lead's published checkpoint");
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(%err, "lead checkpoint unusable; replaying instead"),
            }
        }
        let from = done.map_or(0, |d| d + 1);
        let policy = FetchPolicy::new(
            Duration::from_secs(self.args.peer_timeout_secs),
            self.args.max_object_mib << 20,
        );
        let replayed = replay(
            replica,
            &lead,
            &peers,
            &self.layout,
            from,
            current,
            &policy,
            self.settings.outer_lr,
        )
        .await?;
        if let Some(last) = replayed {
            tracing::info!(from, to = last, "replayed missed windows");
            done = Some(last);
        }
        // The lead itself never waits: the windows it has no list for are the ones it skipped.
        Ok((done, lead.uid != self.uid && behind(done) > 0))
    }

    /// Catches `replica` up (see [`NodeContext::catch_up`]) and says whether the loop may
    /// work on the next window, must wait (behind, or a transient failure), or is done.
    pub(crate) async fn settle(
        &self,
        replica: &mut Replica,
        done: &mut Option<u64>,
        resolve: &Resolver,
    ) -> Result<Settled> {
        match self.catch_up(replica, *done, resolve).await {
            Ok((caught_up, still_behind)) => {
                self.events.chain_reachable(true);
                self.events.synced(!still_behind);
                *done = caught_up;
                if self.finished(*done) {
                    return Ok(Settled::Finished);
                }
                if still_behind {
                    tracing::info!(done = ?*done, "behind the lead; waiting for its list");
                    self.pause().await;
                    return Ok(Settled::Wait);
                }
                Ok(Settled::Ready)
            }
            Err(err) if transient(&err) => {
                self.note_transient(&err);
                tracing::warn!(%err, "catch-up failed; retrying");
                self.pause().await;
                Ok(Settled::Wait)
            }
            Err(err) => Err(err),
        }
    }

    /// [`NodeContext::next_window`], or `None` (logged, after a pause) when the chain could
    /// not be asked; the loop then tries again.
    pub(crate) async fn wait_next_window(
        &self,
        done: Option<u64>,
    ) -> Result<Option<(u64, UploadWindow)>> {
        match self.next_window(done).await {
            Ok(next) => {
                self.events.chain_reachable(true);
                Ok(Some(next))
            }
            Err(err) if transient(&err) => {
                self.note_transient(&err);
                tracing::warn!(%err, "chain unavailable; retrying");
                self.pause().await;
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// Tells the watcher that the chain did not answer when a retried error came from it.
    fn note_transient(&self, err: &NodeError) {
        if matches!(err, NodeError::Chain(_)) {
            self.events.chain_reachable(false);
        }
    }

    /// Tells the watcher that this role loop starts.
    pub(crate) fn start_role(&self, role: NodeRole) {
        self.events.role_started(&RoleStarted {
            role,
            uid: self.uid,
            window: self.window_duration(),
            grace: Duration::from_secs(self.settings.upload_deadline_secs()),
        });
    }

    /// Waits a fraction of a block before the next catch-up attempt.
    async fn pause(&self) {
        let poll = self.chain.block_time() / 2;
        tokio::time::sleep(poll.clamp(Duration::from_millis(50), Duration::from_secs(6))).await;
    }

    /// Whether the model holds `--until-window`'s outer step.
    pub(crate) fn finished(&self, done: Option<u64>) -> bool {
        matches!((self.args.until_window, done), (Some(until), Some(w)) if w >= until)
    }

    /// Deletes this node's objects older than the retention horizon (failures are logged).
    pub(crate) async fn retain(&self, window: u64) {
        for kind in [
            ObjectKind::Gradient,
            ObjectKind::SyncSample,
            ObjectKind::PeerList,
        ] {
            if let Err(err) =
                delete_old_windows(&*self.store, &self.layout, kind, window, RETAINED_WINDOWS).await
            {
                tracing::warn!(%err, ?kind, "retention failed");
            }
        }
    }
}

/// What a role loop does after a catch-up attempt.
pub(crate) enum Settled {
    /// Work on the next window.
    Ready,
    /// Try again shortly.
    Wait,
    /// `--until-window` is reached.
    Finished,
}

/// Whether an error of one window should be logged and the loop go on (the node catches up
/// at the next window) rather than stop the process.
fn transient(err: &NodeError) -> bool {
    match err {
        NodeError::Storage(e) => !matches!(e, StorageError::InvalidKey { .. }),
        NodeError::Chain(e) => e.class() == ErrorClass::Retryable,
        NodeError::ForeignManifest { .. } | NodeError::Json(_) => true,
        _ => false,
    }
}

/// A window's result when its work completed, `None` when it was abandoned on a transient
/// error (logged; the next catch-up replays it), the error itself when it is fatal.
pub(crate) fn window_completed<T>(
    ctx: &NodeContext,
    window: u64,
    result: Result<T>,
) -> Result<Option<T>> {
    match result {
        Ok(done) => Ok(Some(done)),
        Err(err) if transient(&err) => {
            ctx.note_transient(&err);
            tracing::warn!(window, %err, "window abandoned; the next catch-up replays it");
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// The lead's aggregation list for `window`, polled until the window after it ends (the
/// lead scores `window` in the next one, after its grace period).
pub(crate) async fn wait_for_list(
    ctx: &NodeContext,
    lead: &PeerEndpoint,
    window: u64,
) -> Option<AggregationList> {
    let next = (window + 2) * ctx.settings.blocks_per_window();
    let manifest = ctx.settings.manifest_hash();
    loop {
        match read_peer_list(&*lead.store, &ctx.layout, lead.uid, &manifest, window).await {
            Ok(Some(list)) => return Some(list),
            Ok(None) => {}
            Err(err) => tracing::warn!(%err, "unreadable aggregation list"),
        }
        if ctx.chain.current_block().await.map_or(true, |b| b >= next) {
            tracing::warn!(window, lead = lead.uid, "no aggregation list from the lead");
            return None;
        }
        let poll = ctx.chain.block_time() / 4;
        tokio::time::sleep(poll.clamp(Duration::from_millis(50), Duration::from_secs(3))).await;
    }
}

/// `worker validator`: scores every window and sets weights until the process is stopped.
pub async fn run_validator(ctx: NodeContext, resolve: &Resolver) -> Result<()> {
    let device = ctx.device()?;
    if let Some(world_size) = ctx.args.ranks.world_size.filter(|&n| n > 1) {
        return Err(NodeError::Config(format!(
            "--world-size {world_size}: the validator evaluates on one device (multi-rank \
             evaluation is not built yet); run it with --world-size 1"
        )));
    }
    if ctx.args.overlap {
        return Err(NodeError::Config(
            "--overlap is a miner option: a validator scores each window once its deadline \
             passed and has nothing to overlap"
                .into(),
        ));
    }
    let settings = &ctx.settings;
    let gauntlet = settings.gauntlet();
    gauntlet.validate()?;
    let protocol = settings.manifest().manifest();
    let (weight_interval, version_key) = (
        protocol.weights.interval_windows,
        protocol.weights.version_key,
    );
    let mut validator = Validator::new(
        settings,
        EvalSettings::from_manifest(settings, (ctx.args.max_object_mib << 20) as usize, None),
        gauntlet.clone(),
        device,
    )?;
    // The model and the Gauntlet state are checkpointed together after every window.
    let model_path = ctx
        .args
        .checkpoint_dir
        .as_ref()
        .map(|d| d.join("validator.ckpt"));
    let state_path = ctx
        .args
        .checkpoint_dir
        .as_ref()
        .map(|d| d.join("gauntlet.json"));
    let mut done = None;
    if let Some(path) = model_path.as_ref().filter(|p| p.exists()) {
        done = Some(validator.replica.load_model(path)?);
        tracing::info!(window = ?done, "resumed the model from its checkpoint");
    }
    if let Some(path) = state_path.as_ref().filter(|p| p.exists()) {
        let json = std::fs::read_to_string(path)?;
        validator.gauntlet = worker_gauntlet::Gauntlet::from_json(gauntlet, &json)?;
        tracing::info!("resumed Gauntlet state");
    }
    let dataset = ctx.dataset()?;
    ctx.start_role(NodeRole::Validator);
    let sync_len = validator.replica.sync_len();
    let manifest = settings.manifest_hash();
    let mut attempted = done;
    let mut completed = 0;
    let mut manifest_published = false;
    // The objects listed in the last window, checked for rewrites in the next.
    let mut listed = None;
    while ctx.args.max_windows.is_none_or(|max| completed < max) && !ctx.finished(done) {
        // Miners started without a manifest follow the one the lead validator publishes;
        // a storage outage at start-up delays that, it does not stop the validator.
        if !manifest_published {
            match publish_manifest(&*ctx.store, settings.manifest()).await {
                Ok(()) => manifest_published = true,
                Err(err) if transient(&err) => {
                    tracing::warn!(%err, "run manifest not published yet; retrying")
                }
                Err(err) => return Err(err),
            }
        }
        let before = done;
        let settled = ctx
            .settle(&mut validator.replica, &mut done, resolve)
            .await?;
        if done != before {
            // Replayed windows: the sync check compares peers with the state now held.
            validator.sync.push(validator.replica.sync_sample()?);
        }
        match settled {
            Settled::Ready => {}
            Settled::Wait => continue,
            Settled::Finished => break,
        }
        let Some((window, upload_window)) = ctx.wait_next_window(attempted.max(done)).await? else {
            continue;
        };
        attempted = Some(window);
        completed += 1;
        let result = validator_window(
            &ctx,
            &mut validator,
            &dataset,
            window,
            upload_window,
            sync_len,
            &manifest,
            resolve,
            &mut listed,
        )
        .await;
        let Some((evaluation, aggregated)) = window_completed(&ctx, window, result)? else {
            continue;
        };
        if let Some(path) = &model_path {
            validator.replica.save_model(path, window)?;
        }
        if let Some(path) = &state_path {
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, validator.gauntlet.to_json()?)?;
            std::fs::rename(&tmp, path)?;
        }
        let weights_due = (window + 1).is_multiple_of(weight_interval.max(1));
        if weights_due {
            submit_weights(&ctx, &validator, window, version_key).await?;
        }
        ctx.events.validator_window(&ValidatorWindowReport {
            window,
            uid: ctx.uid,
            validator: &validator,
            evaluation: &evaluation,
            aggregated,
            weights_due,
        });
        ctx.retain(window).await;
        done = Some(window);
    }
    Ok(())
}

/// One validator window: score the sampled peers, gather the list it makes, publish it with
/// the digests of what it aggregated, and take the outer step the lead's list prescribes.
#[allow(clippy::too_many_arguments)]
async fn validator_window(
    ctx: &NodeContext,
    validator: &mut Validator,
    dataset: &dyn Samples,
    window: u64,
    upload_window: UploadWindow,
    sync_len: usize,
    manifest: &run_manifest::ManifestHash,
    resolve: &Resolver,
    listed: &mut Option<ListedObjects>,
) -> Result<(WindowEvaluation, Vec<u16>)> {
    let upload_window = ctx.wait_for_deadline(window, upload_window).await;
    let metagraph = ctx.chain.metagraph(ctx.args.netuid).await?;
    let all_peers = resolve_peers(&*ctx.chain, &metagraph, resolve).await?;
    let peers: Vec<PeerEndpoint> = all_peers
        .iter()
        .filter(|p| p.uid != ctx.uid)
        .cloned()
        .collect();
    // What this validator listed last window must still be the bytes it evaluated.
    if let Some(listed) = listed.take() {
        for uid in rewritten_objects(&listed, &peers, &ctx.layout).await {
            validator.penalise_rewrite(uid, listed.window);
        }
    }
    let to_fetch = observe_and_sample(validator, window, &peers);
    let policy = ctx.policy(upload_window, validator.replica.specs());
    let submissions =
        fetch_submissions(&to_fetch, &ctx.layout, window, &policy, manifest, sync_len).await;
    let written: BTreeMap<u16, SystemTime> = submissions
        .iter()
        .filter_map(|s| Some((s.uid, s.object.as_ref().ok()?.last_modified)))
        .collect();
    let evaluation = validator.evaluate_window(window, submissions, dataset, &sr25519_verify)?;

    // Aggregate only what this window evaluated, pinned to the evaluated bytes.
    let own = pin_evaluated(
        &ctx.layout,
        manifest,
        validator,
        &evaluation,
        &peers,
        window,
        &policy,
    )
    .await;
    // Every validator's model follows the lead's list, so all stay in lockstep with miners.
    let lead = ctx.lead_endpoint(&metagraph, &peers);
    let leads = lead.as_ref().is_some_and(|l| l.uid == ctx.uid);
    if leads {
        // Before the list: whoever gathers it can fall back on these exact bytes.
        mirror_aggregated(&*ctx.store, &ctx.layout, window, &own.1).await;
    }
    publish_peer_list(&*ctx.store, &ctx.layout, ctx.uid, &own.0).await?;
    *listed = Some(ListedObjects {
        window,
        written: own
            .0
            .uids()
            .into_iter()
            .filter_map(|uid| Some((uid, *written.get(&uid)?)))
            .collect(),
    });
    let gathered = match lead.filter(|l| l.uid != ctx.uid) {
        None => own.1,
        Some(lead) => {
            let Some(lead_list) = wait_for_list(ctx, &lead, window).await else {
                return Err(NodeError::Storage(StorageError::NotFound {
                    key: ctx.layout.peer_list(window, lead.uid),
                }));
            };
            let (lead_gathered, rejected) = gather_listed(
                &lead_list,
                &all_peers,
                &lead,
                &ctx.layout,
                window,
                &policy,
                validator.replica.rules(),
                &sr25519_verify,
            )
            .await;
            if lead_gathered.len() != lead_list.objects.len() {
                tracing::warn!(?rejected, "objects of the lead's list missing");
                return Err(NodeError::Storage(StorageError::NotFound {
                    key: format!("objects of the lead's list for window {window}"),
                }));
            }
            lead_gathered
        }
    };
    let aggregated: Vec<u16> = gathered.iter().map(|g| g.uid).collect();
    let payloads: Vec<_> = gathered.into_iter().map(|g| g.payload).collect();
    validator.outer_step(&payloads)?;
    if leads
        && (window + 1).is_multiple_of(CHECKPOINT_INTERVAL_WINDOWS)
        && let Some(dir) = &ctx.args.checkpoint_dir
    {
        let pointer = publish_checkpoint(
            &*ctx.store,
            &ctx.layout,
            &validator.replica,
            window,
            &dir.join("published-model.ckpt"),
        )
        .await?;
        tracing::info!(window, bytes = pointer.size, "published checkpoint");
    }
    Ok((evaluation, aggregated))
}

/// The peers a validator evaluates in `window`: every resolved peer's state is bound to its
/// hotkey (a recycled uid starts fresh) and marked seen, then the Gauntlet samples.
pub fn observe_and_sample(
    validator: &mut Validator,
    window: u64,
    peers: &[PeerEndpoint],
) -> Vec<PeerEndpoint> {
    let active: Vec<u16> = peers.iter().map(|p| p.uid).collect();
    let hotkeys: Vec<(u16, String)> = peers
        .iter()
        .map(|p| (p.uid, hex::encode(p.hotkey)))
        .collect();
    let reset = validator.gauntlet.bind_hotkeys(window, &hotkeys);
    if !reset.is_empty() {
        tracing::warn!(?reset, "uids taken by new hotkeys start with a fresh state");
    }
    validator.gauntlet.mark_seen(window, &active);
    let sampled = validator.sample(window, &active);
    peers
        .iter()
        .filter(|p| sampled.contains(&p.uid))
        .cloned()
        .collect()
}

/// Gathers a window's aggregation candidates (evaluated, improving, pinned to the evaluated
/// bytes) and returns the list to publish with what was gathered.
pub async fn pin_evaluated(
    layout: &RunLayout,
    manifest: &run_manifest::ManifestHash,
    validator: &Validator,
    evaluation: &WindowEvaluation,
    peers: &[PeerEndpoint],
    window: u64,
    policy: &FetchPolicy,
) -> (AggregationList, Vec<Gathered>) {
    let pinned = AggregationList {
        run_manifest: manifest.to_hex(),
        list: evaluation.peer_list.clone(),
        objects: evaluation.aggregation_candidates(),
    };
    let candidates: Vec<PeerEndpoint> = pinned
        .uids()
        .iter()
        .filter_map(|uid| peers.iter().find(|p| p.uid == *uid).cloned())
        .collect();
    let (gathered, rejected) = gather(
        &candidates,
        layout,
        window,
        policy,
        validator.replica.rules(),
        &sr25519_verify,
        Some(&pinned),
    )
    .await;
    if !rejected.is_empty() {
        tracing::warn!(
            ?rejected,
            "evaluated objects changed or vanished after evaluation"
        );
    }
    let published = AggregationList {
        objects: gathered.iter().map(|g| (g.uid, g.digest.clone())).collect(),
        ..pinned
    };
    (published, gathered)
}

/// Submits the Gauntlet's weights (set or timelocked commit, as the subnet requires); a
/// refusal is logged by class and the loop goes on (only a fatal error stops it).
async fn submit_weights(
    ctx: &NodeContext,
    validator: &Validator,
    window: u64,
    version_key: u64,
) -> Result<()> {
    let (uids, weights): (Vec<u16>, Vec<f32>) = validator.gauntlet.weights().into_iter().unzip();
    if !weights.iter().any(|w| *w > 0.0) {
        return Ok(());
    }
    match ctx
        .chain
        .submit_weights(ctx.args.netuid, &ctx.hotkey, &uids, &weights, version_key)
        .await
    {
        Ok(submission) => tracing::info!(window, %submission, "weights submitted"),
        Err(err) => match err.class() {
            ErrorClass::Retryable => {
                tracing::warn!(%err, class = %err.class(), "weights not submitted; next interval retries")
            }
            ErrorClass::RefusedByRule => {
                tracing::error!(%err, class = %err.class(), "weights refused by the subnet")
            }
            ErrorClass::Fatal => return Err(err.into()),
        },
    }
    Ok(())
}
