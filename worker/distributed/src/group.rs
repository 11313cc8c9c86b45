//! A c10d process group (Gloo on CPU, NCCL on CUDA) and its collectives on `tch::Tensor`s.

use std::ffi::c_char;
use std::ptr::{NonNull, null_mut};
use std::sync::Mutex;
use std::time::Duration;

use tch::Tensor;

use crate::error::DistributedError;
use crate::ffi;
use crate::store::{Store, c_string, world_i32};

/// Reduction of [`ProcessGroup::all_reduce`] and [`ProcessGroup::reduce_scatter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Element-wise sum.
    Sum,
    /// Element-wise mean (Gloo: sum, then divided by the world size).
    Avg,
    /// Element-wise maximum (all-reduce only).
    Max,
    /// Element-wise minimum (all-reduce only).
    Min,
}

impl ReduceOp {
    fn code(self) -> i32 {
        match self {
            ReduceOp::Sum => ffi::OP_SUM,
            ReduceOp::Avg => ffi::OP_AVG,
            ReduceOp::Max => ffi::OP_MAX,
            ReduceOp::Min => ffi::OP_MIN,
        }
    }
}

/// Which c10d backend a group runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `ProcessGroupGloo` (CPU tensors).
    Gloo,
    /// `ProcessGroupNCCL` (CUDA tensors; needs the `nccl` feature).
    Nccl,
}

/// One rank's handle on a group of `world_size` processes. All ranks must issue the same
/// collectives in the same order. Every call blocks until done or until the group's
/// timeout; after any failure the group is poisoned (ranks may be out of step) and every
/// later call fails with [`DistributedError::Poisoned`] — the replica must restart.
#[derive(Debug)]
pub struct ProcessGroup {
    raw: NonNull<ffi::WdGroup>,
    backend: Backend,
    rank: usize,
    world_size: usize,
    timeout: Duration,
    poisoned: Mutex<Option<String>>,
}

// SAFETY: c10d backends queue work under their own locks and are not tied to a thread.
unsafe impl Send for ProcessGroup {}
// SAFETY: as above (ordering across ranks is the caller's contract, not memory safety).
unsafe impl Sync for ProcessGroup {}

pub(crate) fn millis(timeout: Duration) -> i64 {
    i64::try_from(timeout.as_millis())
        .unwrap_or(i64::MAX)
        .max(1)
}

impl ProcessGroup {
    /// Joins a Gloo group through `store`, binding to `hostname` (use `127.0.0.1` for ranks
    /// on one machine). Blocks until every rank has joined, at most `timeout`, which also
    /// bounds every later collective.
    pub fn gloo(
        store: &Store,
        rank: usize,
        world_size: usize,
        timeout: Duration,
        hostname: &str,
    ) -> Result<ProcessGroup, DistributedError> {
        let host = c_string("gloo group", hostname)?;
        let (rank_i, world) = Self::check_rank(rank, world_size)?;
        Self::create(Backend::Gloo, rank, world_size, timeout, |out, error| {
            // SAFETY: valid store, C string and out-pointers for the call.
            unsafe {
                ffi::wd_gloo_new(
                    store.raw(),
                    rank_i,
                    world,
                    millis(timeout),
                    host.as_ptr(),
                    out,
                    error,
                )
            }
        })
    }

    /// Joins an NCCL group (one CUDA device per rank; set the current device first).
    /// Fails with [`DistributedError::Invalid`] in builds without the `nccl` feature.
    pub fn nccl(
        store: &Store,
        rank: usize,
        world_size: usize,
        timeout: Duration,
    ) -> Result<ProcessGroup, DistributedError> {
        let (rank_i, world) = Self::check_rank(rank, world_size)?;
        Self::create(Backend::Nccl, rank, world_size, timeout, |out, error| {
            // SAFETY: valid store and out-pointers for the call.
            unsafe { ffi::wd_nccl_new(store.raw(), rank_i, world, millis(timeout), out, error) }
        })
    }

    fn check_rank(rank: usize, world_size: usize) -> Result<(i32, i32), DistributedError> {
        let world = world_i32("process group", world_size)?;
        if rank >= world_size {
            return Err(DistributedError::Invalid {
                op: "process group",
                message: format!("rank {rank} outside world size {world_size}"),
            });
        }
        Ok((rank as i32, world))
    }

    fn create(
        backend: Backend,
        rank: usize,
        world_size: usize,
        timeout: Duration,
        call: impl FnOnce(*mut *mut ffi::WdGroup, *mut *mut c_char) -> i32,
    ) -> Result<ProcessGroup, DistributedError> {
        let mut out = null_mut();
        let mut error = null_mut();
        let status = call(&mut out, &mut error);
        // SAFETY: set by the shim or null; taken once.
        let message = unsafe { ffi::take_message(error) };
        match NonNull::new(out) {
            Some(raw) if status == ffi::STATUS_OK => Ok(ProcessGroup {
                raw,
                backend,
                rank,
                world_size,
                timeout,
                poisoned: Mutex::new(None),
            }),
            _ if status == ffi::STATUS_INVALID => Err(DistributedError::Invalid {
                op: "process group",
                message,
            }),
            _ => Err(DistributedError::Rendezvous {
                what: "process group",
                message,
            }),
        }
    }

    /// This process's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Backend of the group.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Limit of every collective.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// In-place all-reduce of a dense contiguous tensor.
    pub fn all_reduce(&self, tensor: &mut Tensor, op: ReduceOp) -> Result<(), DistributedError> {
        check_dense("all_reduce", tensor)?;
        let timeout = millis(self.timeout);
        let raw = tensor.as_mut_ptr();
        self.run("all_reduce", |group, error| {
            // SAFETY: live group and tensor for the duration of the call.
            unsafe { ffi::wd_all_reduce(group, raw, op.code(), timeout, error) }
        })
    }

    /// Reduces `input` (`world_size * n` elements, same on every rank) and leaves rank
    /// `r`'s block `[r*n, (r+1)*n)` of the result in `output` (`n` elements).
    pub fn reduce_scatter(
        &self,
        input: &Tensor,
        output: &mut Tensor,
        op: ReduceOp,
    ) -> Result<(), DistributedError> {
        check_dense("reduce_scatter", input)?;
        check_dense("reduce_scatter", output)?;
        check_blocks("reduce_scatter", output, input, self.world_size)?;
        if !matches!(op, ReduceOp::Sum | ReduceOp::Avg) {
            return Err(DistributedError::Invalid {
                op: "reduce_scatter",
                message: "only sum and avg".into(),
            });
        }
        let timeout = millis(self.timeout);
        let input = input.as_ptr().cast_mut();
        let out = output.as_mut_ptr();
        self.run("reduce_scatter", |group, error| {
            // SAFETY: live group and tensors; the shim does not free or move the handles.
            unsafe { ffi::wd_reduce_scatter(group, input, out, op.code(), timeout, error) }
        })
    }

    /// Concatenates every rank's `input` (`n` elements) in rank order into `output`
    /// (`world_size * n` elements, same kind).
    pub fn all_gather(&self, input: &Tensor, output: &mut Tensor) -> Result<(), DistributedError> {
        check_dense("all_gather", input)?;
        check_dense("all_gather", output)?;
        check_blocks("all_gather", input, output, self.world_size)?;
        let timeout = millis(self.timeout);
        let input = input.as_ptr().cast_mut();
        let out = output.as_mut_ptr();
        self.run("all_gather", |group, error| {
            // SAFETY: live group and tensors; the shim does not free or move the handles.
            unsafe { ffi::wd_all_gather(group, input, out, timeout, error) }
        })
    }

    /// Copies `root`'s `tensor` into every rank's `tensor` (same shape and kind everywhere).
    pub fn broadcast(&self, tensor: &mut Tensor, root: usize) -> Result<(), DistributedError> {
        check_dense("broadcast", tensor)?;
        if root >= self.world_size {
            return Err(DistributedError::Invalid {
                op: "broadcast",
                message: format!("root {root} outside world size {}", self.world_size),
            });
        }
        let timeout = millis(self.timeout);
        let raw = tensor.as_mut_ptr();
        self.run("broadcast", |group, error| {
            // SAFETY: live group and tensor for the duration of the call.
            unsafe { ffi::wd_broadcast(group, raw, root as i32, timeout, error) }
        })
    }

    /// Returns once every rank has reached the barrier (or fails after the timeout).
    pub fn barrier(&self) -> Result<(), DistributedError> {
        let timeout = millis(self.timeout);
        self.run("barrier", |group, error| {
            // SAFETY: live group for the duration of the call.
            unsafe { ffi::wd_barrier(group, timeout, error) }
        })
    }

    fn run(
        &self,
        op: &'static str,
        call: impl FnOnce(*mut ffi::WdGroup, *mut *mut c_char) -> i32,
    ) -> Result<(), DistributedError> {
        let mut poisoned = self
            .poisoned
            .lock()
            .map_err(|_| DistributedError::Poisoned("lock poisoned".into()))?;
        if let Some(earlier) = poisoned.as_ref() {
            return Err(DistributedError::Poisoned(earlier.clone()));
        }
        let mut error = null_mut();
        let status = call(self.raw.as_ptr(), &mut error);
        // SAFETY: set by the shim or null; taken once.
        let message = unsafe { ffi::take_message(error) };
        let failure = match status {
            ffi::STATUS_OK => return Ok(()),
            ffi::STATUS_INVALID => return Err(DistributedError::Invalid { op, message }),
            ffi::STATUS_TIMEOUT => DistributedError::Timeout {
                op,
                timeout: self.timeout,
                rank: self.rank,
                world_size: self.world_size,
                message,
            },
            _ => DistributedError::Failed {
                op,
                rank: self.rank,
                world_size: self.world_size,
                message,
            },
        };
        tracing::error!(rank = self.rank, world_size = self.world_size, error = %failure, "collective failed");
        *poisoned = Some(failure.to_string());
        Err(failure)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let poisoned = self.poisoned.get_mut().map(|p| p.is_some()).unwrap_or(true);
        if poisoned {
            // A failed group may still have an operation stuck on a dead peer; its destructor
            // would wait for it. Leak it: the process is about to exit anyway.
            return;
        }
        // SAFETY: created by the shim, freed once.
        unsafe { ffi::wd_group_free(self.raw.as_ptr()) }
    }
}

fn check_dense(op: &'static str, tensor: &Tensor) -> Result<(), DistributedError> {
    if !tensor.defined() || !tensor.is_contiguous() {
        return Err(DistributedError::Invalid {
            op,
            message: "tensors must be defined and contiguous".into(),
        });
    }
    Ok(())
}

fn check_blocks(
    op: &'static str,
    block: &Tensor,
    whole: &Tensor,
    world_size: usize,
) -> Result<(), DistributedError> {
    if block.kind() != whole.kind() || whole.numel() != block.numel() * world_size {
        return Err(DistributedError::Invalid {
            op,
            message: format!(
                "expected {} x {} elements of {:?}, got {} of {:?}",
                world_size,
                block.numel(),
                block.kind(),
                whole.numel(),
                whole.kind()
            ),
        });
    }
    Ok(())
}
