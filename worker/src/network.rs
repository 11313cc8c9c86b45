//! The production roles: `worker miner` and `worker validator` against a subtensor node and
//! S3 buckets, one window after another, resuming from checkpoints after a restart.
//!
//! Both roles run on any [`Chain`] and any bucket resolver, so the same loops are exercised
//! against the embedded chain and local stores in tests.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use run_manifest::VerifiedManifest;
use run_manifest::deployment::{ENV_RUN_MANIFEST, ENV_RUN_MANIFEST_SHA256};
use tch::Device;
use worker_chain::wallet::load_keypair;
use worker_chain::{Chain, ErrorClass, Keypair, Metagraph, Password};
use worker_model::{CorpusSplit, TokenDataset, open_bundled};
use worker_storage::{
    BucketCredentials, FetchPolicy, ObjectStore, RunLayout, S3Config, S3Credentials, S3Store,
    UploadWindow,
};

use crate::behaviour::Behaviour;
use crate::error::{NodeError, Result};
use crate::exchange::{
    PeerEndpoint, fetch_submissions, gather, publish_peer_list, read_peer_list, resolve_peers,
    upload_sync_sample,
};
use crate::manifest_source::publish_manifest;
use crate::miner::Miner;
use crate::settings::TrainingSettings;
use crate::signing::sr25519_verify;
use crate::validator::{EvalSettings, Validator};

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
    /// Stop after this many completed windows (default: run until stopped).
    #[arg(long, env = "MAX_WINDOWS")]
    pub max_windows: Option<u64>,
    /// Largest accepted peer object in MiB.
    #[arg(long, env = "MAX_OBJECT_MIB", default_value_t = 1024)]
    pub max_object_mib: u64,
}

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
    fn device(&self) -> Result<Device> {
        parse_device(&self.args.device)
    }

    fn dataset(&self, seq_len: i64) -> Result<TokenDataset> {
        Ok(open_bundled(CorpusSplit::Train, seq_len as usize)?)
    }

    fn policy(&self, window: UploadWindow) -> FetchPolicy {
        FetchPolicy::new(
            Duration::from_secs(self.args.peer_timeout_secs),
            self.args.max_object_mib << 20,
        )
        .within(window)
    }

    /// Waits for a window this node has not done yet; returns it with its upload window.
    async fn next_window(&self, done: Option<u64>) -> Result<(u64, UploadWindow)> {
        let bpw = self.settings.blocks_per_window().max(1);
        loop {
            let block = self.chain.current_block().await?;
            let window = block / bpw;
            if done.is_none_or(|d| window > d) {
                // The boundary was (block - window start) blocks ago.
                let blocks = u32::try_from(block - window * bpw).unwrap_or(u32::MAX);
                let behind = self.chain.block_time().saturating_mul(blocks);
                let start = SystemTime::now()
                    .checked_sub(behind)
                    .unwrap_or_else(SystemTime::now);
                let length = Duration::from_secs(self.settings.upload_deadline_secs());
                return Ok((window, UploadWindow::new(start, length)));
            }
            self.chain.wait_for_block((window + 1) * bpw).await?;
        }
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

    async fn wait_deadline(window: &UploadWindow) {
        if let Ok(left) = window.not_after().duration_since(SystemTime::now()) {
            tokio::time::sleep(left).await;
        }
    }
}

/// `worker miner`: trains every window until the process is stopped.
pub async fn run_miner(ctx: NodeContext, resolve: &Resolver) -> Result<()> {
    let device = ctx.device()?;
    let mut miner = Miner::new(ctx.uid, Behaviour::Honest, &ctx.settings, device)?;
    let checkpoint = ctx
        .args
        .checkpoint_dir
        .as_ref()
        .map(|d| d.join("miner.ckpt"));
    let mut done = None;
    if let Some(path) = checkpoint.as_ref().filter(|p| p.exists()) {
        done = Some(miner.load_checkpoint(path)?);
        tracing::info!(window = ?done, "resumed from checkpoint");
    }
    let dataset = ctx.dataset(miner.replica.model.config().seq_len)?;
    let mut completed = 0;
    while ctx.args.max_windows.is_none_or(|max| completed < max) {
        let (window, upload_window) = ctx.next_window(done).await?;
        let span = tracing::info_span!("window", window, uid = ctx.uid);
        let _guard = span.enter();
        upload_sync_sample(
            &*ctx.store,
            &ctx.layout,
            window,
            ctx.uid,
            &ctx.settings.manifest_hash(),
            &miner.replica.sync_sample()?,
        )
        .await?;
        let upload = miner.produce(window, &dataset, &ctx.hotkey, None)?;
        let remaining = upload_window
            .not_after()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        match ctx
            .store
            .put_before(
                &ctx.layout.gradient(window, ctx.uid),
                upload.object.into(),
                Instant::now() + remaining,
            )
            .await
        {
            Ok(()) => tracing::info!(
                loss = upload.train_loss,
                bytes = upload.payload_bytes,
                "uploaded"
            ),
            Err(err) => tracing::warn!(%err, "upload missed the window"),
        }
        NodeContext::wait_deadline(&upload_window).await;

        let metagraph = ctx.chain.metagraph(ctx.args.netuid).await?;
        let peers = resolve_peers(&*ctx.chain, &metagraph, resolve).await?;
        let selected = select_peers(&ctx, &peers, &metagraph, window).await;
        let (payloads, rejected) = gather(
            &selected,
            &ctx.layout,
            window,
            &ctx.policy(upload_window),
            &miner.replica,
            &sr25519_verify,
        )
        .await;
        tracing::info!(
            aggregated = payloads.len(),
            rejected = rejected.len(),
            "outer step"
        );
        miner.replica.outer_step(&payloads, ctx.settings.outer_lr)?;
        if let Some(path) = &checkpoint {
            miner.save_checkpoint(path, window)?;
        }
        done = Some(window);
        completed += 1;
    }
    Ok(())
}

/// The peers to aggregate: the lead validator's list for `window` if it is published
/// before the next window starts, else every resolved peer (the gather still drops
/// anything that fails authentication or decoding).
async fn select_peers(
    ctx: &NodeContext,
    peers: &[PeerEndpoint],
    metagraph: &Metagraph,
    window: u64,
) -> Vec<PeerEndpoint> {
    let lead = NodeContext::lead_validator(metagraph)
        .and_then(|uid| peers.iter().find(|p| p.uid == uid).cloned());
    if let Some(lead) = lead {
        let next = (window + 1) * ctx.settings.blocks_per_window();
        let manifest = ctx.settings.manifest_hash();
        loop {
            match read_peer_list(&*lead.store, &ctx.layout, &manifest, window).await {
                Ok(Some(list)) => {
                    return peers
                        .iter()
                        .filter(|p| list.peers.contains(&p.uid))
                        .cloned()
                        .collect();
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(%err, "unreadable peer list"),
            }
            if ctx.chain.current_block().await.map_or(true, |b| b >= next) {
                break;
            }
            let poll = ctx.chain.block_time() / 4;
            tokio::time::sleep(poll.clamp(Duration::from_millis(50), Duration::from_secs(3))).await;
        }
    }
    tracing::warn!(
        window,
        "no peer list from the validator: aggregating every peer"
    );
    peers.to_vec()
}

/// `worker validator`: scores every window and sets weights until the process is stopped.
pub async fn run_validator(ctx: NodeContext, resolve: &Resolver) -> Result<()> {
    let device = ctx.device()?;
    let settings = &ctx.settings;
    let gauntlet = settings.gauntlet();
    gauntlet.validate()?;
    let protocol = settings.manifest().manifest();
    let (weight_interval, version_key) = (
        protocol.weights.interval_windows,
        protocol.weights.version_key,
    );
    // Miners started without a manifest follow the one the lead validator publishes.
    publish_manifest(&*ctx.store, settings.manifest()).await?;
    let mut validator = Validator::new(
        settings,
        EvalSettings::from_manifest(settings, (ctx.args.max_object_mib << 20) as usize, None),
        gauntlet.clone(),
        device,
    )?;
    let state_path = ctx
        .args
        .checkpoint_dir
        .as_ref()
        .map(|d| d.join("gauntlet.json"));
    if let Some(path) = state_path.as_ref().filter(|p| p.exists()) {
        let json = std::fs::read_to_string(path)?;
        validator.gauntlet = worker_gauntlet::Gauntlet::from_json(gauntlet, &json)?;
        tracing::info!("resumed Gauntlet state");
    }
    let dataset = ctx.dataset(validator.replica.model.config().seq_len)?;
    let sync_len = validator.replica.sync_len();
    let mut done = validator.gauntlet.state().last_window;
    let manifest = settings.manifest_hash();
    let mut completed = 0;
    while ctx.args.max_windows.is_none_or(|max| completed < max) {
        let (window, upload_window) = ctx.next_window(done).await?;
        NodeContext::wait_deadline(&upload_window).await;
        let metagraph = ctx.chain.metagraph(ctx.args.netuid).await?;
        let peers: Vec<PeerEndpoint> = resolve_peers(&*ctx.chain, &metagraph, resolve)
            .await?
            .into_iter()
            .filter(|p| p.uid != ctx.uid)
            .collect();
        let active: Vec<u16> = peers.iter().map(|p| p.uid).collect();
        let sampled = validator.sample(window, &active);
        let to_fetch: Vec<PeerEndpoint> = peers
            .iter()
            .filter(|p| sampled.contains(&p.uid))
            .cloned()
            .collect();
        let policy = ctx.policy(upload_window);
        let submissions =
            fetch_submissions(&to_fetch, &ctx.layout, window, &policy, &manifest, sync_len).await;
        let evaluation =
            validator.evaluate_window(window, submissions, &dataset, &sr25519_verify)?;
        publish_peer_list(&*ctx.store, &ctx.layout, &manifest, &evaluation.peer_list).await?;
        if let Some(path) = &state_path {
            let tmp = path.with_extension("json.tmp");
            std::fs::write(&tmp, validator.gauntlet.to_json()?)?;
            std::fs::rename(&tmp, path)?;
        }
        if (window + 1) % weight_interval.max(1) == 0 {
            let (uids, weights): (Vec<u16>, Vec<f32>) =
                validator.gauntlet.weights().into_iter().unzip();
            if weights.iter().any(|w| *w > 0.0) {
                // set_weights or a timelocked commit, as the subnet requires; a refusal is
                // logged by class and the loop goes on (only a fatal error stops it).
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
            }
        }
        let selected: Vec<PeerEndpoint> = peers
            .iter()
            .filter(|p| evaluation.peer_list.peers.contains(&p.uid))
            .cloned()
            .collect();
        let (payloads, _) = gather(
            &selected,
            &ctx.layout,
            window,
            &policy,
            &validator.replica,
            &sr25519_verify,
        )
        .await;
        validator.outer_step(&payloads)?;
        done = Some(window);
        completed += 1;
    }
    Ok(())
}
