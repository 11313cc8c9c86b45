//! Sample ids over a dataset's shards, computed from the manifest alone (no shard is read).
//!
//! Shard `s` holding `t` tokens yields `(t - 1) / seq_len` samples of `seq_len + 1` tokens:
//! sample `k` covers tokens `[k * seq_len, k * seq_len + seq_len + 1)`. Ids number the samples
//! of shard 0 first, then shard 1, and so on; samples never cross a shard. This is the same
//! numbering as `worker_model::TokenDataset`, so a dataset held in memory and the same
//! dataset fetched shard by shard assign identical data.

use crate::error::{DataError, Result};
use crate::manifest::ShardEntry;

/// Where every sample id lives.
#[derive(Debug, Clone)]
pub struct SampleLayout {
    seq_len: usize,
    /// First sample id of each shard, plus the total at the end.
    starts: Vec<u64>,
}

impl SampleLayout {
    /// The layout of `shards` for samples of `seq_len` inputs.
    pub fn new(shards: &[ShardEntry], seq_len: usize) -> Result<Self> {
        if seq_len == 0 {
            return Err(DataError::Data("seq_len must be > 0".into()));
        }
        let mut starts = Vec::with_capacity(shards.len() + 1);
        let mut total = 0u64;
        for shard in shards {
            starts.push(total);
            total += shard.tokens.saturating_sub(1) / seq_len as u64;
        }
        starts.push(total);
        if total == 0 {
            return Err(DataError::Data(format!(
                "no shard holds {} tokens (one sample)",
                seq_len + 1
            )));
        }
        Ok(Self { seq_len, starts })
    }

    /// Tokens per sample input.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Number of samples.
    pub fn num_samples(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Number of shards.
    pub fn num_shards(&self) -> usize {
        self.starts.len().saturating_sub(1)
    }

    /// Samples of shard `shard`.
    pub fn shard_samples(&self, shard: usize) -> u64 {
        match (self.starts.get(shard), self.starts.get(shard + 1)) {
            (Some(a), Some(b)) => b - a,
            _ => 0,
        }
    }

    /// First sample id of shard `shard`.
    pub fn shard_start(&self, shard: usize) -> u64 {
        self.starts.get(shard).copied().unwrap_or(0)
    }

    /// The shard of sample `id` and the index of its first token in that shard.
    pub fn locate(&self, id: u64) -> Result<(usize, usize)> {
        if id >= self.num_samples() {
            return Err(DataError::Data(format!(
                "sample {id} >= {} samples",
                self.num_samples()
            )));
        }
        // The last start <= id (shards with no sample share their start with the next).
        let shard = self.starts.partition_point(|&start| start <= id) - 1;
        let local = (id - self.starts[shard]) as usize;
        Ok((shard, local * self.seq_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::ShardWidth;

    fn shards(tokens: &[u64]) -> Vec<ShardEntry> {
        tokens
            .iter()
            .enumerate()
            .map(|(i, &t)| ShardEntry {
                key: format!("{i}.bin"),
                tokens: t,
                width: ShardWidth::U16,
                sha256: "0".repeat(64),
            })
            .collect()
    }

    #[test]
    fn ids_number_shards_in_order_and_skip_short_ones() {
        let layout = SampleLayout::new(&shards(&[7, 3, 10]), 3).unwrap();
        // 6/3 = 2, 2/3 = 0, 9/3 = 3.
        assert_eq!(layout.num_samples(), 5);
        assert_eq!(layout.locate(0).unwrap(), (0, 0));
        assert_eq!(layout.locate(1).unwrap(), (0, 3));
        assert_eq!(layout.locate(2).unwrap(), (2, 0));
        assert_eq!(layout.locate(4).unwrap(), (2, 6));
        assert!(layout.locate(5).is_err());
        assert_eq!(layout.shard_samples(1), 0);
        assert!(SampleLayout::new(&shards(&[3]), 3).is_err());
    }
}
