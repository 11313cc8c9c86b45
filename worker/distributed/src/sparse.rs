//! SparseLoCo compression sharded over the ranks of a replica: each rank keeps the error
//! feedback of a contiguous run of whole parameter tensors (SparseLoCo chunks and quantises
//! per tensor, so a tensor's compressed form does not depend on the others), compresses
//! them, and rank 0 assembles the one payload a single process would have produced.

use std::ops::Range;

use tch::{Device, Kind, Tensor};
use worker_sparseloco::{ErrorFeedback, GradientPayload, ParamSpec, SparseLocoConfig};

use crate::error::DistributedError;
use crate::group::ProcessGroup;

/// Contiguous runs of whole tensors, one per rank, balanced by element count: rank `r`
/// takes the tensors whose first element falls in `[r * total / world, (r+1) * total / world)`.
pub fn tensor_ranges(numels: &[i64], world_size: usize) -> Vec<Range<usize>> {
    let world = world_size.max(1) as i128;
    let total: i128 = numels.iter().map(|&n| n as i128).sum();
    let mut ranges = Vec::with_capacity(world_size.max(1));
    let mut start_offset = 0i128;
    let mut next = 0usize;
    for rank in 0..world {
        let hi = (rank + 1) * total / world;
        let first = next;
        while next < numels.len() && (start_offset < hi || rank == world - 1) {
            start_offset += numels[next] as i128;
            next += 1;
        }
        ranges.push(first..next);
    }
    ranges
}

/// One rank's share of the replica's SparseLoCo state.
#[derive(Debug)]
pub struct ShardedCompressor {
    specs: Vec<ParamSpec>,
    ranges: Vec<Range<usize>>,
    rank: usize,
    feedback: ErrorFeedback,
}

impl ShardedCompressor {
    /// Error feedback for `rank`'s tensors of `specs` (all parameters, canonical order).
    pub fn new(
        specs: &[ParamSpec],
        config: SparseLocoConfig,
        device: Device,
        rank: usize,
        world_size: usize,
    ) -> Result<ShardedCompressor, DistributedError> {
        let numels: Vec<i64> = specs.iter().map(|s| s.shape.iter().product()).collect();
        let ranges = tensor_ranges(&numels, world_size);
        let owned = ranges
            .get(rank)
            .cloned()
            .ok_or_else(|| DistributedError::Invalid {
                op: "sharded compressor",
                message: format!("rank {rank} outside world size {world_size}"),
            })?;
        let feedback = ErrorFeedback::with_config(&specs[owned], config, device)?;
        Ok(ShardedCompressor {
            specs: specs.to_vec(),
            ranges,
            rank,
            feedback,
        })
    }

    /// Parameter indices whose error feedback this rank holds.
    pub fn owned(&self) -> Range<usize> {
        self.ranges[self.rank].clone()
    }

    /// This rank's error feedback (checkpoint it per rank).
    pub fn feedback(&self) -> &ErrorFeedback {
        &self.feedback
    }

    /// Compresses this rank's tensors of `pseudo_gradients` (every parameter, canonical
    /// order; only the owned ones are read) and gathers the pieces. Rank 0 gets the
    /// assembled payload, the other ranks `None`. Every rank must call it.
    pub fn compress(
        &mut self,
        group: &ProcessGroup,
        pseudo_gradients: &[Tensor],
        window: u64,
        uid: u16,
    ) -> Result<Option<GradientPayload>, DistributedError> {
        if pseudo_gradients.len() != self.specs.len() {
            return Err(DistributedError::Invalid {
                op: "sharded compress",
                message: format!(
                    "{} pseudo-gradients for {} parameters",
                    pseudo_gradients.len(),
                    self.specs.len()
                ),
            });
        }
        let mine = self.feedback.compress(&pseudo_gradients[self.owned()])?;
        let bytes = worker_sparseloco::encode(&GradientPayload {
            window,
            uid,
            tensors: mine,
        });
        let pieces = gather_bytes(group, &bytes)?;
        if group.rank() != 0 {
            return Ok(None);
        }
        let mut tensors = Vec::with_capacity(self.specs.len());
        for (range, piece) in self.ranges.iter().zip(&pieces) {
            let part = worker_sparseloco::decode_with_config(
                piece,
                &self.specs[range.clone()],
                self.feedback.config(),
            )?;
            part.check_origin(window, uid)?;
            tensors.extend(part.tensors);
        }
        Ok(Some(GradientPayload {
            window,
            uid,
            tensors,
        }))
    }
}

/// Every rank's byte string, in rank order (lengths first, then one padded all-gather).
fn gather_bytes(group: &ProcessGroup, bytes: &[u8]) -> Result<Vec<Vec<u8>>, DistributedError> {
    let world = group.world_size();
    let mut lengths = Tensor::zeros([world as i64], (Kind::Int64, Device::Cpu));
    group.all_gather(&Tensor::from_slice(&[bytes.len() as i64]), &mut lengths)?;
    let lengths = Vec::<i64>::try_from(&lengths)?;
    let longest = lengths.iter().copied().max().unwrap_or(0).max(1);
    let padded = Tensor::zeros([longest], (Kind::Uint8, Device::Cpu));
    if !bytes.is_empty() {
        padded
            .f_narrow(0, 0, bytes.len() as i64)?
            .f_copy_(&Tensor::from_slice(bytes))?;
    }
    let mut all = Tensor::zeros([longest * world as i64], (Kind::Uint8, Device::Cpu));
    group.all_gather(&padded, &mut all)?;
    let all = Vec::<u8>::try_from(&all)?;
    Ok(lengths
        .iter()
        .enumerate()
        .map(|(rank, &len)| {
            let start = rank * longest as usize;
            all[start..start + len.max(0) as usize].to_vec()
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_tensors_in_order_and_balance_elements() {
        let numels = [100, 1, 1, 300, 50, 50, 200, 8];
        for world in 1..=10 {
            let ranges = tensor_ranges(&numels, world);
            assert_eq!(ranges.len(), world);
            let flat: Vec<usize> = ranges.iter().flat_map(|r| r.clone()).collect();
            assert_eq!(flat, (0..numels.len()).collect::<Vec<_>>(), "world {world}");
        }
        let ranges = tensor_ranges(&numels, 2);
        let first: i64 = numels[ranges[0].clone()].iter().sum();
        assert!((300..=500).contains(&first), "{ranges:?}");
    }
}
