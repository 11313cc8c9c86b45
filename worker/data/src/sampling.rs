//! Which samples a uid trains on in a window, over a sharded dataset: the model crate's
//! assignment (`worker_model::data::assignment`), drawn either from every sample or from a
//! rotating window of shards that every participant derives alike.
//!
//! **Shard window.** For window `w` with `rotateEveryWindows = r` and `shards = k`, the epoch
//! is `e = w / r`; `seed = SHA-256("templar/shard-window/v1" || run_seed || e)` (u64
//! little-endian) seeds ChaCha20, and the window's shards are the first `min(k, n)` draws of
//! the same partial Fisher-Yates shuffle the assignment uses, over the `n` shard indices.
//! Within the window, sample ids are numbered shard by shard in draw order; the assignment
//! picks among those and reports global ids.

use rand::RngCore;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use run_manifest::Sampling;
use sha2::{Digest, Sha256};
use worker_model::{assigned_sample_ids, sample_ids};

use crate::error::{DataError, Result};
use crate::layout::SampleLayout;

/// Domain separator of the shard-window seed.
pub const SHARD_WINDOW_DOMAIN: &[u8] = b"templar/shard-window/v1";

/// The assignment rules of one run over one dataset.
#[derive(Debug, Clone)]
pub struct Assigner {
    layout: SampleLayout,
    sampling: Sampling,
    run_seed: u64,
}

/// The samples eligible in one window: a list of shards, numbered in order.
struct Eligible {
    shards: Vec<usize>,
    /// First eligible-local id of each shard in `shards`, plus the total.
    starts: Vec<u64>,
}

impl Assigner {
    /// Rules for `layout` under `sampling`, with the run's seed (which picks shard windows).
    pub fn new(layout: SampleLayout, sampling: Sampling, run_seed: u64) -> Self {
        Self {
            layout,
            sampling,
            run_seed,
        }
    }

    /// The layout.
    pub fn layout(&self) -> &SampleLayout {
        &self.layout
    }

    /// The shards of `window`'s shard window (`None` when every shard is eligible).
    pub fn window_shards(&self, window: u64) -> Option<Vec<usize>> {
        let Sampling::ShardWindow {
            shards,
            rotate_every_windows,
        } = self.sampling
        else {
            return None;
        };
        let epoch = window / rotate_every_windows.max(1);
        let mut hasher = Sha256::new();
        hasher.update(SHARD_WINDOW_DOMAIN);
        hasher.update(self.run_seed.to_le_bytes());
        hasher.update(epoch.to_le_bytes());
        let mut rng = ChaCha20Rng::from_seed(hasher.finalize().into());
        let n = self.layout.num_shards() as u64;
        let take = (shards as usize).min(n as usize);
        // take <= n, so the draw cannot fail.
        let drawn = sample_ids(&mut rng, take, n).unwrap_or_default();
        Some(drawn.into_iter().map(|s| s as usize).collect())
    }

    /// The `count` global sample ids `uid` trains on in `window` (assignment seeded with
    /// `seed`: the run seed, or a validator's own seed for its random stream).
    pub fn assigned_ids(&self, seed: u64, uid: u16, window: u64, count: usize) -> Result<Vec<u64>> {
        match self.eligible(window)? {
            None => Ok(assigned_sample_ids(
                seed,
                uid,
                window,
                count,
                self.layout.num_samples(),
            )?),
            Some(eligible) => {
                let total = eligible.total();
                let local = assigned_sample_ids(seed, uid, window, count, total)?;
                Ok(local
                    .into_iter()
                    .map(|id| eligible.global(id, &self.layout))
                    .collect())
            }
        }
    }

    /// `count` distinct ids eligible in `window`, drawn from `rng`.
    pub fn random_ids(
        &self,
        rng: &mut impl RngCore,
        window: u64,
        count: usize,
    ) -> Result<Vec<u64>> {
        match self.eligible(window)? {
            None => Ok(sample_ids(rng, count, self.layout.num_samples())?),
            Some(eligible) => {
                let local = sample_ids(rng, count, eligible.total())?;
                Ok(local
                    .into_iter()
                    .map(|id| eligible.global(id, &self.layout))
                    .collect())
            }
        }
    }

    fn eligible(&self, window: u64) -> Result<Option<Eligible>> {
        let Some(shards) = self.window_shards(window) else {
            return Ok(None);
        };
        let mut starts = Vec::with_capacity(shards.len() + 1);
        let mut total = 0;
        for &shard in &shards {
            starts.push(total);
            total += self.layout.shard_samples(shard);
        }
        starts.push(total);
        if total == 0 {
            return Err(DataError::Data(format!(
                "the shard window of window {window} holds no sample"
            )));
        }
        Ok(Some(Eligible { shards, starts }))
    }
}

impl Eligible {
    fn total(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Global id of eligible-local id `local` (< total).
    fn global(&self, local: u64, layout: &SampleLayout) -> u64 {
        let at = self.starts.partition_point(|&s| s <= local) - 1;
        layout.shard_start(self.shards[at]) + (local - self.starts[at])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{ShardEntry, ShardWidth};

    fn layout(n: usize, tokens: u64, seq_len: usize) -> SampleLayout {
        let shards: Vec<ShardEntry> = (0..n)
            .map(|i| ShardEntry {
                key: format!("{i}.bin"),
                tokens,
                width: ShardWidth::U16,
                sha256: "0".repeat(64),
            })
            .collect();
        SampleLayout::new(&shards, seq_len).unwrap()
    }

    #[test]
    fn whole_dataset_assignment_is_the_model_crates() {
        let a = Assigner::new(layout(10, 101, 10), Sampling::WholeDataset {}, 7);
        assert_eq!(
            a.assigned_ids(7, 3, 5, 20).unwrap(),
            assigned_sample_ids(7, 3, 5, 20, 100).unwrap()
        );
        assert!(a.window_shards(5).is_none());
    }

    #[test]
    fn shard_windows_rotate_and_confine_every_draw() {
        let sampling = Sampling::ShardWindow {
            shards: 3,
            rotate_every_windows: 4,
        };
        let a = Assigner::new(layout(50, 101, 10), sampling, 7);
        let w0 = a.window_shards(0).unwrap();
        assert_eq!(w0.len(), 3);
        assert_eq!(a.window_shards(3).unwrap(), w0, "same epoch");
        assert_ne!(a.window_shards(4).unwrap(), w0, "next epoch");
        let other_run = Assigner::new(layout(50, 101, 10), sampling, 8);
        assert_ne!(other_run.window_shards(0).unwrap(), w0);
        for uid in 0..5 {
            let ids = a.assigned_ids(7, uid, 1, 30).unwrap();
            assert!(
                ids.iter().all(|id| w0.contains(&(*id as usize / 10))),
                "{ids:?}"
            );
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 30);
        }
        let random = a.random_ids(&mut rand::rng(), 2, 30).unwrap();
        assert!(random.iter().all(|id| w0.contains(&(*id as usize / 10))));
        assert!(
            a.assigned_ids(7, 0, 1, 31).is_err(),
            "3 shards hold 30 samples"
        );
    }
}
