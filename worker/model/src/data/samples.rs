//! What the miner and validator need from training data, whatever stores it: a numbered set
//! of fixed-length samples, the per-(uid, window) assignment over them, and batching.
//!
//! [`super::dataset::TokenDataset`] implements it over shards held in memory; the
//! `worker-data` crate implements it over a sharded dataset fetched on demand.

use crate::batch::Batch;
use crate::error::{ModelError, Result};

use super::assignment::{SampleDigest, assigned_sample_ids, random_sample_ids};
use super::dataset::{AssignedWindow, WindowShape};

/// Fixed-length samples with ids `0..num_samples()`.
pub trait Samples: Send + Sync {
    /// Number of samples.
    fn num_samples(&self) -> u64;

    /// The `seq_len + 1` tokens of sample `id`.
    fn sample(&self, id: u64) -> Result<Vec<i64>>;

    /// EOS token used for label masking.
    fn eos_token_id(&self) -> Option<i64>;

    /// The `count` sample ids `uid` trains on in `window` (see [`super::assignment`]); a
    /// dataset that restricts windows to some of its shards overrides this.
    fn assigned_ids(&self, run_seed: u64, uid: u16, window: u64, count: usize) -> Result<Vec<u64>> {
        assigned_sample_ids(run_seed, uid, window, count, self.num_samples())
    }

    /// `count` ids from fresh OS entropy (not predictable by miners), eligible in `window`.
    fn random_ids(&self, window: u64, count: usize) -> Result<Vec<u64>> {
        let _ = window;
        random_sample_ids(count, self.num_samples())
    }

    /// A hint that `ids` will be read soon (a fetching dataset starts loading them).
    fn prefetch(&self, ids: &[u64]) {
        let _ = ids;
    }

    /// One batch of the given samples.
    fn batch(&self, ids: &[u64]) -> Result<Batch> {
        let samples = ids
            .iter()
            .map(|&id| self.sample(id))
            .collect::<Result<Vec<_>>>()?;
        Batch::from_samples(&samples, self.eos_token_id())
    }

    /// Consecutive batches of `micro_batch_size` samples (the last one may be smaller).
    fn batches(&self, ids: &[u64], micro_batch_size: usize) -> Result<Vec<Batch>> {
        if micro_batch_size == 0 {
            return Err(ModelError::Data("micro_batch_size must be > 0".into()));
        }
        ids.chunks(micro_batch_size)
            .map(|chunk| self.batch(chunk))
            .collect()
    }

    /// Inner steps of a window: `ids` split into `inner_steps` groups of
    /// `micro_batches_per_step` micro-batches of `micro_batch_size` samples, in order.
    fn window_steps(
        &self,
        ids: &[u64],
        inner_steps: usize,
        micro_batches_per_step: usize,
        micro_batch_size: usize,
    ) -> Result<Vec<Vec<Batch>>> {
        let per_step = micro_batches_per_step * micro_batch_size;
        if per_step == 0 || ids.len() != inner_steps * per_step {
            return Err(ModelError::Data(format!(
                "{} sample ids do not fill {inner_steps} steps x {micro_batches_per_step} x {micro_batch_size}",
                ids.len()
            )));
        }
        ids.chunks(per_step)
            .map(|step| self.batches(step, micro_batch_size))
            .collect()
    }

    /// The data `uid` must train on in `window`.
    fn assigned_window(
        &self,
        run_seed: u64,
        uid: u16,
        window: u64,
        shape: WindowShape,
    ) -> Result<AssignedWindow> {
        let sample_ids = self.assigned_ids(run_seed, uid, window, shape.samples())?;
        let steps = self.window_steps(
            &sample_ids,
            shape.inner_steps,
            shape.micro_batches_per_step,
            shape.micro_batch_size,
        )?;
        Ok(AssignedWindow {
            digest: SampleDigest::of(&sample_ids),
            sample_ids,
            steps,
        })
    }
}
