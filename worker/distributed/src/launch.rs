//! One process per rank: rank 0 (the process the pod started) re-executes its own binary
//! for ranks `1..world_size` with the rank in the environment, and watches them. A rank
//! that exits fails the replica: [`Ranks::check`] reports it, and dropping [`Ranks`]
//! closes the control channels, gives the children a moment to exit and kills the rest.
//! Ranks whose rank 0 died notice it through their next collective (connection closed or
//! timeout) and exit too.
//!
//! Each spawned rank's stdin is a pipe from rank 0: the replica's control channel
//! ([`Ranks::send`]). A rank reading it sees end-of-file as soon as rank 0 is gone, however
//! rank 0 ended, so no rank outlives its replica waiting for work.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};

/// Rank of a spawned process.
pub const ENV_RANK: &str = "WORKER_RANK";
/// World size of a spawned process: the same variable the operator sets for rank 0.
pub use run_manifest::deployment::ENV_WORLD_SIZE;
/// File-store path of the group (one per replica start, e.g. under `/dev/shm`).
pub const ENV_RENDEZVOUS: &str = "WORKER_RENDEZVOUS_FILE";

/// Where this process sits in the replica's group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RankSpec {
    /// `0..world_size`.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// File store shared by the ranks.
    pub rendezvous: PathBuf,
}

/// Errors of spawning and watching ranks.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A rank environment variable is malformed.
    #[error("{name}={value:?} is not valid: {reason}")]
    BadEnv {
        /// Variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
    /// The binary could not be re-executed.
    #[error("cannot start rank {rank}: {source}")]
    Spawn {
        /// Rank being started.
        rank: usize,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A rank's control channel is closed (the rank is gone).
    #[error("cannot reach rank {rank}: {source}")]
    Control {
        /// Rank written to.
        rank: usize,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A rank exited (whatever its status) while the replica runs.
    #[error("rank {rank} exited with {status}")]
    RankExited {
        /// Rank that left.
        rank: usize,
        /// Its exit status.
        status: ExitStatus,
    },
}

impl RankSpec {
    /// The spec a spawned rank finds in its environment (`None` when not spawned: the
    /// process is rank 0 or a single-rank worker).
    pub fn from_env() -> Result<Option<RankSpec>, LaunchError> {
        let Ok(rank) = std::env::var(ENV_RANK) else {
            return Ok(None);
        };
        let parse = |name: &'static str, value: String| {
            value.parse::<usize>().map_err(|e| LaunchError::BadEnv {
                name,
                value,
                reason: e.to_string(),
            })
        };
        let rank = parse(ENV_RANK, rank)?;
        let world = std::env::var(ENV_WORLD_SIZE).unwrap_or_default();
        let world_size = parse(ENV_WORLD_SIZE, world)?;
        if rank == 0 || rank >= world_size {
            return Err(LaunchError::BadEnv {
                name: ENV_RANK,
                value: rank.to_string(),
                reason: format!("a spawned rank is in 1..{world_size}"),
            });
        }
        let rendezvous = std::env::var_os(ENV_RENDEZVOUS).ok_or(LaunchError::BadEnv {
            name: ENV_RENDEZVOUS,
            value: String::new(),
            reason: "unset".into(),
        })?;
        Ok(Some(RankSpec {
            rank,
            world_size,
            rendezvous: PathBuf::from(rendezvous),
        }))
    }
}

/// Parts of environment variable names that mark credentials (matched case-insensitively).
const CREDENTIAL_MARKS: [&str; 8] = [
    "SECRET",
    "TOKEN",
    "PASSWORD",
    "PASSPHRASE",
    "ACCESS_KEY",
    "PRIVATE_KEY",
    "MNEMONIC",
    "CREDENTIAL",
];

/// Whether a spawned rank inherits rank 0's variable `name`: everything (the device,
/// NCCL, logging and library settings) except what looks like a credential. Ranks compute
/// only; rank 0 alone talks to S3 and the chain.
pub fn inherited_by_ranks(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    !CREDENTIAL_MARKS.iter().any(|mark| upper.contains(mark))
}

/// The spawned ranks `1..world_size`, watched by rank 0.
#[derive(Debug)]
pub struct Ranks {
    children: Vec<(usize, Child)>,
    control: Vec<(usize, ChildStdin)>,
}

impl Ranks {
    /// Starts `program args…` once per rank `1..world_size` with the rank environment and
    /// rank 0's environment less its credentials ([`inherited_by_ranks`]).
    pub fn spawn(
        program: &Path,
        args: &[OsString],
        world_size: usize,
        rendezvous: &Path,
    ) -> Result<Ranks, LaunchError> {
        let mut ranks = Ranks {
            children: Vec::new(),
            control: Vec::new(),
        };
        let withheld: Vec<OsString> = std::env::vars_os()
            .map(|(name, _)| name)
            .filter(|name| !inherited_by_ranks(&name.to_string_lossy()))
            .collect();
        for rank in 1..world_size {
            let mut command = Command::new(program);
            for name in &withheld {
                command.env_remove(name);
            }
            let mut child = command
                .args(args)
                .env(ENV_RANK, rank.to_string())
                .env(ENV_WORLD_SIZE, world_size.to_string())
                .env(ENV_RENDEZVOUS, rendezvous)
                .stdin(Stdio::piped())
                .spawn()
                .map_err(|source| LaunchError::Spawn { rank, source })?;
            tracing::info!(rank, world_size, pid = child.id(), "started rank");
            if let Some(stdin) = child.stdin.take() {
                ranks.control.push((rank, stdin));
            }
            ranks.children.push((rank, child));
        }
        Ok(ranks)
    }

    /// Writes `message` to every rank's control channel (its stdin), in rank order.
    pub fn send(&mut self, message: &[u8]) -> Result<(), LaunchError> {
        for (rank, stdin) in &mut self.control {
            stdin
                .write_all(message)
                .and_then(|()| stdin.flush())
                .map_err(|source| LaunchError::Control {
                    rank: *rank,
                    source,
                })?;
        }
        Ok(())
    }

    /// Process ids of the spawned ranks, in rank order.
    pub fn pids(&self) -> Vec<(usize, u32)> {
        self.children
            .iter()
            .map(|(rank, child)| (*rank, child.id()))
            .collect()
    }

    /// Fails if any rank has exited (a rank never exits before rank 0 in a healthy run).
    pub fn check(&mut self) -> Result<(), LaunchError> {
        for (rank, child) in &mut self.children {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(LaunchError::RankExited {
                    rank: *rank,
                    status,
                });
            }
        }
        Ok(())
    }

    /// Waits for every rank to exit (after rank 0's own work is done); the first failure
    /// is returned.
    pub fn wait(mut self) -> Result<(), LaunchError> {
        // Closing the control channels tells ranks that read them that the work is over.
        self.control.clear();
        let mut first = None;
        for (rank, child) in &mut self.children {
            if let Ok(status) = child.wait()
                && !status.success()
                && first.is_none()
            {
                first = Some(LaunchError::RankExited {
                    rank: *rank,
                    status,
                });
            }
        }
        self.children.clear();
        first.map_or(Ok(()), Err)
    }
}

/// How long a dropped [`Ranks`] lets its ranks exit on their own (their control channel is
/// closed) before it kills them.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl Drop for Ranks {
    fn drop(&mut self) {
        self.control.clear();
        let deadline = std::time::Instant::now() + EXIT_GRACE;
        for (rank, child) in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if let Ok(None) = child.try_wait() {
                tracing::warn!(
                    rank = *rank,
                    "rank still running after its channel closed: killing it"
                );
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
