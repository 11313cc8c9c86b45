//! What data-parallel inner training needs from a process group, and how the work and the
//! optimizer state are split over ranks. No communication is implemented here: the
//! `worker-distributed` crate implements [`Collectives`] over libtorch's c10d (Gloo, NCCL),
//! so this crate stays free of native collective code and of any device assumption.
//!
//! * **Work split**: every rank is given the whole window (the sample assignment is
//!   deterministic) and runs forward/backward on the micro-batches `i` with
//!   `i % world_size == rank` ([`owns_micro_batch`]). Each micro-batch's loss is divided by
//!   the step's *global* target-token count, so summing the ranks' gradients
//!   ([`Collectives::all_reduce_sum`]) gives the single-process gradient up to the order of
//!   the floating-point additions.
//! * **ZeRO-1** ([`FlatShard`]): the parameters, concatenated in canonical order, are cut
//!   into `world_size` equal ranges; a rank keeps AdamW moments only for its range, updates
//!   only those elements, and [`Collectives::all_gather`] reassembles the parameters.

use tch::Tensor;

/// Error a [`Collectives`] implementation reports (kept opaque so this crate does not depend
/// on the transport).
pub type CollectiveError = Box<dyn std::error::Error + Send + Sync>;

/// The collective operations of a group of `world_size` ranks, one per process (or device).
/// Every rank must call the same operations in the same order.
pub trait Collectives: Send {
    /// This process's rank, `0..world_size`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world_size(&self) -> usize;
    /// Sums each tensor element-wise over all ranks, in place. Every rank ends with
    /// bit-identical values. Tensors are dense and contiguous; kinds may differ.
    fn all_reduce_sum(&self, tensors: &mut [Tensor]) -> Result<(), CollectiveError>;
    /// Concatenates every rank's `shard` (same kind and length on every rank) in rank order
    /// into `output`, a flat tensor of `world_size * shard.numel()` elements.
    fn all_gather(&self, shard: &Tensor, output: &mut Tensor) -> Result<(), CollectiveError>;
}

/// Whether `rank` runs forward/backward on micro-batch `index` of a step.
pub fn owns_micro_batch(index: usize, rank: usize, world_size: usize) -> bool {
    index % world_size.max(1) == rank
}

/// How the inner optimizer's state is laid out over the ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptimizerSharding {
    /// Every rank holds the full AdamW moments (plain data parallelism).
    #[default]
    Replicated,
    /// ZeRO stage 1: each rank holds the moments of `1 / world_size` of the parameters.
    Zero1,
}

/// The part of one parameter tensor that a rank owns under [`FlatShard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardSlice {
    /// Parameter index (canonical order).
    pub param: usize,
    /// First owned element of the flattened parameter.
    pub start: i64,
    /// Number of owned elements.
    pub len: i64,
    /// Where these elements sit in the rank's flat shard buffer.
    pub local_offset: i64,
}

/// A rank's contiguous range of the concatenated (flattened, canonical-order) parameters:
/// rank `r` owns elements `[r * per_rank, min((r + 1) * per_rank, total))`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatShard {
    /// Owner of this range.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// Elements per rank (`ceil(total / world_size)`; the last range may be shorter and is
    /// padded in the gather buffer).
    pub per_rank: i64,
    /// Total number of parameter elements.
    pub total: i64,
    /// Element count of every parameter, canonical order.
    pub numels: Vec<i64>,
    /// The owned pieces, in parameter order.
    pub slices: Vec<ShardSlice>,
}

impl FlatShard {
    /// The range of `rank` out of `world_size` for parameters with these element counts.
    pub fn new(numels: &[i64], rank: usize, world_size: usize) -> FlatShard {
        let world = world_size.max(1) as i64;
        let total: i64 = numels.iter().sum();
        let per_rank = (total + world - 1) / world;
        let lo = rank as i64 * per_rank;
        let hi = (lo + per_rank).min(total);
        let mut slices = Vec::new();
        let mut offset = 0i64;
        for (param, &numel) in numels.iter().enumerate() {
            let a = offset.max(lo);
            let b = (offset + numel).min(hi);
            if a < b {
                slices.push(ShardSlice {
                    param,
                    start: a - offset,
                    len: b - a,
                    local_offset: a - lo,
                });
            }
            offset += numel;
        }
        FlatShard {
            rank,
            world_size: world_size.max(1),
            per_rank,
            total,
            numels: numels.to_vec(),
            slices,
        }
    }

    /// Owned element count of parameter `param` (0 when the rank owns none of it).
    pub fn owned_len(&self, param: usize) -> i64 {
        self.slices
            .iter()
            .find(|s| s.param == param)
            .map_or(0, |s| s.len)
    }

    /// Elements this rank owns.
    pub fn owned_total(&self) -> i64 {
        self.slices.iter().map(|s| s.len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_element_exactly_once() {
        let numels = [7, 1, 12, 5, 3];
        for world in 1..=5 {
            let mut seen = vec![0u8; 28];
            for rank in 0..world {
                let shard = FlatShard::new(&numels, rank, world);
                assert!(shard.owned_total() <= shard.per_rank);
                let mut offsets = vec![0i64];
                for n in &numels {
                    offsets.push(offsets.last().copied().unwrap_or(0) + n);
                }
                for s in &shard.slices {
                    for k in 0..s.len {
                        seen[(offsets[s.param] + s.start + k) as usize] += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "world {world}: {seen:?}");
        }
    }

    #[test]
    fn micro_batches_are_dealt_round_robin() {
        let owned: Vec<usize> = (0..7).filter(|&i| owns_micro_batch(i, 1, 3)).collect();
        assert_eq!(owned, vec![1, 4]);
        assert!((0..5).all(|i| owns_micro_batch(i, 0, 1)));
    }
}
