//! Rank 0's side of a replica that trains on several devices: one process per GPU (or CPU
//! rank), started and watched by the process the pod runs.
//!
//! Rank 0 is the node: it owns the chain and S3 I/O, the outer step, catch-up and
//! checkpoints, and it alone holds authoritative state. Before every window it writes a
//! [`ControlMessage::Window`] to each rank's stdin and broadcasts its parameters (and, after
//! a start or a checkpoint load, its AdamW state) and the window's micro-batches; then all
//! ranks run the same data-parallel inner loop (`InnerTrainer::data_parallel`), each on its
//! share of the micro-batches, with gradients summed over the group. Every rank ends the
//! window with the same optimizer state, so rank 0's pseudo-gradient (which it compresses and
//! uploads) is the replica's.
//!
//! Failure: a rank that exits is reported by the next window's check; one that dies or hangs
//! inside a window fails rank 0's next collective within `--rank-timeout-secs`. Either error
//! is fatal for the node (the pod restarts and catches up from its checkpoint). The other
//! ranks see end-of-file on stdin when rank 0 ends, however it ends, and exit.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use run_manifest::deployment::ENV_WORLD_SIZE;
use tch::{Device, Tensor};
use worker_distributed::launch::Ranks;
use worker_distributed::{DEFAULT_BUCKET_BYTES, ProcessGroup, Store, TrainerGroup, replicate};
use worker_model::{AdamW, Batch, Llama};

use crate::error::{NodeError, Result};
use crate::rank_control::{ControlMessage, RankDevice, RankSharding};
use crate::settings::TrainingSettings;

/// How long [`TrainingRanks::explain`] waits for a rank's exit to be observable after a
/// failed collective (the peer's reset usually arrives before its exit is reaped).
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Subcommand a spawned rank runs (hidden from the CLI's help).
pub const RANK_SUBCOMMAND: &str = "rank";

/// How a node spreads its training over processes.
#[derive(Debug, Clone, Default, Args)]
pub struct RankArgs {
    /// Processes that train this replica together, one per GPU (rank r uses the node's CUDA
    /// device + r; NCCL), or CPU ranks sharing the cores (Gloo). Default: every visible GPU
    /// when the device is `cuda`/`auto` on a GPU machine, otherwise 1. Miners only.
    #[arg(long, env = ENV_WORLD_SIZE)]
    pub world_size: Option<usize>,
    /// Bound, in seconds, of the ranks' rendezvous and of every collective: a rank that
    /// dies or hangs fails the replica within it.
    #[arg(long, env = "RANK_TIMEOUT_SECS", default_value_t = 300)]
    pub rank_timeout_secs: u64,
    /// Executable started for ranks 1.. (default: this one).
    #[arg(long, env = "WORKER_RANK_PROGRAM", hide = true)]
    pub rank_program: Option<PathBuf>,
    /// Layout of the inner AdamW state over the ranks: `zero1` keeps 1 / N of the moments
    /// on each rank, `replicated` all of them on every rank.
    #[arg(long, env = "WORKER_OPTIMIZER_SHARDING", value_enum, default_value_t)]
    pub optimizer_sharding: RankSharding,
    /// Rank 0 keeps its libtorch thread count instead of taking its share of the cores
    /// (for a process that hosts other nodes too: the devnet).
    #[arg(long, hide = true)]
    pub keep_own_threads: bool,
}

impl RankArgs {
    /// The number of ranks for a node computing on `device`.
    pub fn world_size_for(&self, device: Device) -> Result<usize> {
        let visible = || usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
        match (self.world_size, device) {
            (Some(0), _) => Err(NodeError::Config("--world-size must be at least 1".into())),
            (Some(n), Device::Cuda(first)) if first + n > visible() => {
                Err(NodeError::Config(format!(
                    "--world-size {n} from cuda:{first} needs {} GPUs, {} are visible",
                    first + n,
                    visible()
                )))
            }
            (Some(n), _) => Ok(n),
            (None, Device::Cuda(0)) => Ok(visible().max(1)),
            (None, _) => Ok(1),
        }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.rank_timeout_secs.max(1))
    }
}

/// Ranks `1..world_size` of this replica, as seen from rank 0.
pub struct TrainingRanks {
    ranks: Ranks,
    group: Arc<ProcessGroup>,
    device: Device,
    sharding: RankSharding,
    /// What the other ranks lack of the optimizer state before the next window.
    hand_off: OptimizerHandOff,
    windows: u64,
    rendezvous: PathBuf,
}

/// What rank 0 must send of the replica's optimizer state before the next window.
enum OptimizerHandOff {
    /// Nothing: every rank holds its part.
    Nothing,
    /// Rank 0's own state, whole (replicated layout).
    Own,
    /// Each rank's range of the full state rank 0 loaded (ZeRO-1).
    Loaded(Box<AdamW>),
}

impl std::fmt::Debug for TrainingRanks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainingRanks")
            .field("world_size", &self.group.world_size())
            .field("device", &self.device)
            .field("windows", &self.windows)
            .finish()
    }
}

impl TrainingRanks {
    /// Starts ranks `1..world_size` for the run `settings` describe and joins their group as
    /// rank 0 (blocks until all have joined, at most the rank timeout).
    pub fn start(
        args: &RankArgs,
        world_size: usize,
        settings: &TrainingSettings,
        device: Device,
    ) -> Result<TrainingRanks> {
        let rank_device = match device {
            Device::Cpu => RankDevice::Cpu,
            Device::Cuda(first) => RankDevice::Cuda { first },
            other => {
                return Err(NodeError::Config(format!(
                    "ranks run on the CPU or CUDA, not {other:?}"
                )));
            }
        };
        let program = match &args.rank_program {
            Some(program) => program.clone(),
            None => std::env::current_exe()?,
        };
        let rendezvous = rendezvous_path();
        let timeout = args.timeout();
        let mut ranks = Ranks::spawn(
            &program,
            &[OsString::from(RANK_SUBCOMMAND)],
            world_size,
            &rendezvous,
        )?;
        let threads = (rank_device == RankDevice::Cpu).then(|| cpu_threads_per_rank(world_size));
        if let Some(threads) = threads.filter(|_| !args.keep_own_threads) {
            // Rank 0 takes its share of the cores too.
            tch::set_num_threads(threads);
        }
        let start = ControlMessage::Start {
            manifest: settings.manifest().canonical().to_owned(),
            manifest_sha256: settings.manifest_hash().to_string(),
            device: rank_device,
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            threads,
            sharding: args.optimizer_sharding,
        };
        ranks.send(&start.to_line()?)?;
        let store = Store::file(&rendezvous, world_size, timeout)?;
        let group = rank_device.join(&store, 0, world_size, timeout)?;
        tracing::info!(world_size, ?device, "ranks joined");
        Ok(TrainingRanks {
            ranks,
            group: Arc::new(group),
            device,
            sharding: args.optimizer_sharding,
            hand_off: match args.optimizer_sharding {
                RankSharding::Replicated => OptimizerHandOff::Own,
                // ZeRO-1 ranks start alike (zero moments, step 0): nothing to hand out.
                RankSharding::Zero1 => OptimizerHandOff::Nothing,
            },
            windows: 0,
            rendezvous,
        })
    }

    /// The collectives rank 0's inner trainer uses.
    pub fn trainer_group(&self) -> TrainerGroup {
        TrainerGroup::new(self.group.clone(), DEFAULT_BUCKET_BYTES)
    }

    /// Number of ranks, rank 0 included.
    pub fn world_size(&self) -> usize {
        self.group.world_size()
    }

    /// Process ids of ranks `1..` (rank, pid).
    pub fn pids(&self) -> Vec<(usize, u32)> {
        self.ranks.pids()
    }

    /// The error to report for `failure`, a failed window: when a rank has exited (a dead
    /// peer is what usually breaks a collective), the rank and its exit status, seen within
    /// [`EXIT_GRACE`]; otherwise `failure` itself.
    pub fn explain(&mut self, failure: NodeError) -> NodeError {
        if matches!(
            failure,
            NodeError::Launch(worker_distributed::launch::LaunchError::RankExited { .. })
        ) {
            return failure;
        }
        let deadline = std::time::Instant::now() + EXIT_GRACE;
        loop {
            if let Err(exit) = self.ranks.check() {
                return NodeError::RankFailed {
                    exit,
                    during: Box::new(failure),
                };
            }
            if std::time::Instant::now() >= deadline {
                return failure;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// How the optimizer state is laid out over the ranks.
    pub fn sharding(&self) -> RankSharding {
        self.sharding
    }

    /// Rank 0's optimizer state was replaced (a checkpoint was loaded): it is sent again
    /// before the next window. Under ZeRO-1 `loaded` is the full state read from the
    /// checkpoint, of which every rank, rank 0 included, takes its range.
    pub fn optimizer_replaced(&mut self, loaded: Option<AdamW>) {
        self.hand_off = match loaded {
            Some(full) => OptimizerHandOff::Loaded(Box::new(full)),
            None => OptimizerHandOff::Own,
        };
    }

    /// ZeRO-1: the replica's full optimizer state on rank 0 (on the CPU, shaped like
    /// `model`'s parameters), from every rank's range, or the state loaded and not yet
    /// handed out.
    pub fn gather_optimizer(&mut self, optimizer: &AdamW, model: &Llama) -> Result<AdamW> {
        if let OptimizerHandOff::Loaded(full) = &self.hand_off {
            let copy = |v: &[Tensor]| v.iter().map(Tensor::shallow_clone).collect();
            return Ok(AdamW::from_state(
                full.config().clone(),
                full.step_count(),
                copy(full.exp_avg()),
                copy(full.exp_avg_sq()),
            ));
        }
        self.ranks.check()?;
        self.ranks
            .send(&ControlMessage::GatherOptimizer.to_line()?)?;
        replicate::gather_optimizer(&self.group, optimizer, model, Device::Cpu)?.ok_or_else(|| {
            NodeError::Config("rank 0 received no optimizer state from its ranks".into())
        })
    }

    /// Gives the other ranks this window: rank 0's `model` and (when they lack it)
    /// `optimizer` state, and the micro-batches `steps`. Call right before rank 0's own
    /// `train_window` on the same steps.
    pub fn share_window(
        &mut self,
        model: &mut Llama,
        optimizer: &mut AdamW,
        steps: &[Vec<Batch>],
    ) -> Result<()> {
        self.ranks.check()?;
        let shapes = replicate::step_shapes(steps);
        let message = ControlMessage::Window {
            window: self.windows,
            shapes: shapes.clone(),
            optimizer: !matches!(self.hand_off, OptimizerHandOff::Nothing),
        };
        self.ranks.send(&message.to_line()?)?;
        replicate::parameters(&self.group, model)?;
        match std::mem::replace(&mut self.hand_off, OptimizerHandOff::Nothing) {
            OptimizerHandOff::Nothing => {}
            OptimizerHandOff::Own => replicate::optimizer_state(&self.group, optimizer, None)?,
            OptimizerHandOff::Loaded(full) => {
                replicate::optimizer_state(&self.group, optimizer, Some(&full))?;
            }
        }
        replicate::window_steps(&self.group, Some(steps), &shapes, self.device)?;
        self.windows += 1;
        Ok(())
    }
}

impl Drop for TrainingRanks {
    fn drop(&mut self) {
        if let Ok(line) = ControlMessage::Stop.to_line() {
            let _ = self.ranks.send(&line);
        }
        let _ = std::fs::remove_file(&self.rendezvous);
    }
}

/// A fresh file-store path for one replica start: in the pod's `/dev/shm` when there is
/// one (a memory file system every rank of the pod shares), else the temporary directory.
fn rendezvous_path() -> PathBuf {
    static STARTS: AtomicU64 = AtomicU64::new(0);
    let shm = PathBuf::from("/dev/shm");
    let dir = if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    };
    dir.join(format!(
        "worker-ranks-{}-{}",
        std::process::id(),
        STARTS.fetch_add(1, Ordering::Relaxed)
    ))
}

/// libtorch threads per CPU rank: the machine's cores shared out, at least one (more
/// threads than cores make every rank spin-wait; see worker/distributed/README.md).
fn cpu_threads_per_rank(world_size: usize) -> i32 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    i32::try_from((cores / world_size.max(1)).max(1)).unwrap_or(1)
}
