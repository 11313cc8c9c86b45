//! Collective communication for the worker, on libtorch's own c10d: a C++ shim
//! (`shim/c10d_shim.cpp`) compiled against the torch wheel's headers binds the rendezvous
//! stores ([`Store`]: `TCPStore`, `FileStore`) and process groups ([`ProcessGroup`]:
//! `ProcessGroupGloo`, and `ProcessGroupNCCL` with the `nccl` feature), with all-reduce,
//! reduce-scatter, all-gather, broadcast and barrier on `tch::Tensor`s. Every collective
//! is bounded by the group's timeout; C++ exceptions never cross the boundary, they become
//! [`DistributedError`]s.
//!
//! [`TrainerGroup`] implements `worker_model::Collectives`, the hook through which
//! `InnerTrainer::data_parallel` splits a window over ranks, sums gradients and shards
//! AdamW (ZeRO-1). [`replicate`] copies rank 0's model, optimizer and window to the other
//! ranks. [`launch`] starts and watches one process per rank; [`sparse`] shards
//! SparseLoCo error feedback and compression over the ranks.

mod error;
mod ffi;
mod group;
pub mod launch;
pub mod replicate;
pub mod sparse;
mod store;
mod trainer_group;

pub use error::DistributedError;
pub use group::{Backend, ProcessGroup, ReduceOp};
pub use store::Store;
pub use trainer_group::{DEFAULT_BUCKET_BYTES, TrainerGroup};
