//! Fixed-length training samples over a list of token shards.

use crate::batch::Batch;
use crate::error::{ModelError, Result};

use super::assignment::{SampleDigest, random_sample_ids};
use super::samples::Samples;
use super::shard::TokenShard;

/// How a window's samples are split: `inner_steps` x `micro_batches_per_step` x
/// `micro_batch_size` samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowShape {
    /// Inner optimizer steps (H).
    pub inner_steps: usize,
    /// Gradient-accumulation micro-batches per step.
    pub micro_batches_per_step: usize,
    /// Samples per micro-batch.
    pub micro_batch_size: usize,
}

impl WindowShape {
    /// Samples in a window.
    pub fn samples(&self) -> usize {
        self.inner_steps * self.micro_batches_per_step * self.micro_batch_size
    }
}

/// The data of one uid in one window, as the miner trains on it and the validator
/// recomputes it.
#[derive(Debug)]
pub struct AssignedWindow {
    /// Sample ids in training order.
    pub sample_ids: Vec<u64>,
    /// Digest of `sample_ids` (what the miner publishes).
    pub digest: SampleDigest,
    /// Micro-batches grouped by inner step.
    pub steps: Vec<Vec<Batch>>,
}

/// Samples of `seq_len + 1` tokens cut from the shards back to back: sample `k` of a shard
/// covers tokens `[k * seq_len, k * seq_len + seq_len + 1)` of that shard (consecutive
/// samples share one token, the last label of one is the first input of the next). Sample
/// ids number the samples of shard 0 first, then shard 1, and so on; samples never cross
/// a shard boundary.
#[derive(Debug)]
pub struct TokenDataset {
    shards: Vec<TokenShard>,
    seq_len: usize,
    /// First sample id of each shard, plus the total at the end.
    starts: Vec<u64>,
    eos_token_id: Option<i64>,
}

impl TokenDataset {
    /// Builds the dataset. With `vocab_size`, every shard is scanned once and rejected if it
    /// holds a token id `>= vocab_size`. `eos_token_id` drives label masking (see
    /// [`Batch::from_samples`]).
    pub fn new(
        shards: Vec<TokenShard>,
        seq_len: usize,
        vocab_size: Option<u32>,
        eos_token_id: Option<i64>,
    ) -> Result<TokenDataset> {
        if seq_len == 0 {
            return Err(ModelError::Data("seq_len must be > 0".into()));
        }
        let mut starts = Vec::with_capacity(shards.len() + 1);
        let mut total = 0u64;
        for shard in &shards {
            if let Some(vocab) = vocab_size {
                let max = shard.max_token();
                if max >= vocab {
                    return Err(ModelError::TokenFile {
                        path: shard.path().to_path_buf(),
                        reason: format!("token id {max} outside vocabulary of {vocab}"),
                    });
                }
            }
            starts.push(total);
            total += (shard.len().saturating_sub(1) / seq_len) as u64;
        }
        starts.push(total);
        if total == 0 {
            return Err(ModelError::Data(format!(
                "no shard holds {} tokens",
                seq_len + 1
            )));
        }
        Ok(TokenDataset {
            shards,
            seq_len,
            starts,
            eos_token_id,
        })
    }

    /// Number of samples.
    pub fn num_samples(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Tokens per sample input.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// The shards.
    pub fn shards(&self) -> &[TokenShard] {
        &self.shards
    }

    /// EOS token used for label masking.
    pub fn eos_token_id(&self) -> Option<i64> {
        self.eos_token_id
    }

    /// The `seq_len + 1` tokens of sample `id`.
    pub fn sample(&self, id: u64) -> Result<Vec<i64>> {
        if id >= self.num_samples() {
            return Err(ModelError::Data(format!(
                "sample {id} >= {} samples",
                self.num_samples()
            )));
        }
        // The last start <= id (shards with no sample share their start with the next).
        let shard_index = self.starts.partition_point(|&start| start <= id) - 1;
        let shard = self
            .shards
            .get(shard_index)
            .ok_or_else(|| ModelError::Data(format!("sample {id} maps to no shard")))?;
        let local = (id - self.starts[shard_index]) as usize;
        shard
            .read(local * self.seq_len, self.seq_len + 1)
            .ok_or_else(|| {
                ModelError::Data(format!("sample {id} runs past {}", shard.path().display()))
            })
    }

    /// One batch of the given samples.
    pub fn batch(&self, ids: &[u64]) -> Result<Batch> {
        Samples::batch(self, ids)
    }

    /// Consecutive batches of `micro_batch_size` samples (the last one may be smaller).
    pub fn batches(&self, ids: &[u64], micro_batch_size: usize) -> Result<Vec<Batch>> {
        Samples::batches(self, ids, micro_batch_size)
    }

    /// The data `uid` must train on in `window` (see [`super::assignment`]).
    pub fn assigned_window(
        &self,
        run_seed: u64,
        uid: u16,
        window: u64,
        shape: WindowShape,
    ) -> Result<AssignedWindow> {
        Samples::assigned_window(self, run_seed, uid, window, shape)
    }

    /// `count` random samples (fresh OS entropy, not predictable by miners) in batches of
    /// `micro_batch_size`, for the validator's "random data" loss.
    pub fn random_batches(&self, count: usize, micro_batch_size: usize) -> Result<Vec<Batch>> {
        let ids = random_sample_ids(count, self.num_samples())?;
        self.batches(&ids, micro_batch_size)
    }

    /// Inner steps of a window (see [`Samples::window_steps`]).
    pub fn window_steps(
        &self,
        ids: &[u64],
        inner_steps: usize,
        micro_batches_per_step: usize,
        micro_batch_size: usize,
    ) -> Result<Vec<Vec<Batch>>> {
        Samples::window_steps(
            self,
            ids,
            inner_steps,
            micro_batches_per_step,
            micro_batch_size,
        )
    }
}

impl Samples for TokenDataset {
    fn num_samples(&self) -> u64 {
        TokenDataset::num_samples(self)
    }

    fn sample(&self, id: u64) -> Result<Vec<i64>> {
        TokenDataset::sample(self, id)
    }

    fn eos_token_id(&self) -> Option<i64> {
        self.eos_token_id
    }
}
