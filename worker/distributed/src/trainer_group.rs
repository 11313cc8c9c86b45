//! [`worker_model::Collectives`] over a [`ProcessGroup`]: what the inner trainer calls to
//! sum gradients (in flat buckets) and to reassemble ZeRO-1 parameter shards.

use std::sync::Arc;

use tch::{Kind, Tensor};
use worker_model::parallel::{CollectiveError, Collectives};

use crate::error::DistributedError;
use crate::group::{ProcessGroup, ReduceOp};

/// Default bucket: 25 MiB, as PyTorch DDP.
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// The trainer's view of a process group.
#[derive(Debug, Clone)]
pub struct TrainerGroup {
    group: Arc<ProcessGroup>,
    bucket_bytes: usize,
}

impl TrainerGroup {
    /// Wraps `group`; gradients are all-reduced in buckets of at most `bucket_bytes` (a
    /// tensor larger than that is reduced on its own).
    pub fn new(group: Arc<ProcessGroup>, bucket_bytes: usize) -> TrainerGroup {
        TrainerGroup {
            group,
            bucket_bytes: bucket_bytes.max(1),
        }
    }

    /// The underlying group.
    pub fn group(&self) -> &Arc<ProcessGroup> {
        &self.group
    }

    fn reduce_bucket(&self, tensors: &mut [Tensor]) -> Result<(), DistributedError> {
        if let [single] = tensors
            && single.is_contiguous()
        {
            return self.group.all_reduce(single, ReduceOp::Sum);
        }
        let flat: Vec<Tensor> = tensors
            .iter()
            .map(|t| t.f_reshape([-1]))
            .collect::<Result<_, _>>()?;
        let mut bucket = Tensor::f_cat(&flat, 0)?;
        self.group.all_reduce(&mut bucket, ReduceOp::Sum)?;
        let mut offset = 0;
        for t in tensors.iter_mut() {
            let n = t.numel() as i64;
            t.f_copy_(&bucket.f_narrow(0, offset, n)?.f_view(t.size().as_slice())?)?;
            offset += n;
        }
        Ok(())
    }
}

impl Collectives for TrainerGroup {
    fn rank(&self) -> usize {
        self.group.rank()
    }

    fn world_size(&self) -> usize {
        self.group.world_size()
    }

    fn all_reduce_sum(&self, tensors: &mut [Tensor]) -> Result<(), CollectiveError> {
        if self.group.world_size() == 1 {
            return Ok(());
        }
        // Consecutive tensors of one kind and device, up to bucket_bytes, go in one call.
        let mut start = 0;
        while start < tensors.len() {
            let kind = tensors[start].kind();
            let device = tensors[start].device();
            let mut end = start;
            let mut bytes = 0usize;
            while end < tensors.len()
                && tensors[end].kind() == kind
                && tensors[end].device() == device
            {
                let size = tensors[end].numel() * kind_bytes(kind);
                if end > start && bytes + size > self.bucket_bytes {
                    break;
                }
                bytes += size;
                end += 1;
            }
            self.reduce_bucket(&mut tensors[start..end])?;
            start = end;
        }
        Ok(())
    }

    fn all_gather(&self, shard: &Tensor, output: &mut Tensor) -> Result<(), CollectiveError> {
        Ok(self.group.all_gather(shard, output)?)
    }
}

fn kind_bytes(kind: Kind) -> usize {
    kind.elt_size_in_bytes()
}
