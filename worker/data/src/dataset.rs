//! A sharded dataset as the miner and validator see it ([`worker_model::Samples`]): sample
//! ids from the manifest alone, shards fetched (verified, cached, memory-mapped) only when a
//! sample in them is read or prefetched.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use run_manifest::Sampling;
use worker_model::{ModelError, Samples, TokenShard};

use crate::cache::{ShardCache, file_matches};
use crate::error::{DataError, Result};
use crate::layout::SampleLayout;
use crate::manifest::{DatasetManifest, ShardEntry};
use crate::sampling::Assigner;
use crate::source::ShardSource;

/// Shards kept memory-mapped at once (older maps are dropped; their files stay cached).
const OPEN_SHARDS: usize = 256;

/// Which shard list of the manifest a dataset reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `shards`: what the run assigns.
    Train,
    /// `heldOut`: evaluation only.
    HeldOut,
}

/// A dataset of fixed-length samples over fetched shards.
#[derive(Clone)]
pub struct ShardedDataset {
    inner: Arc<Inner>,
}

struct Inner {
    manifest: DatasetManifest,
    shards: Vec<ShardEntry>,
    source: Arc<dyn ShardSource>,
    cache: Arc<ShardCache>,
    assigner: Assigner,
    open: Mutex<OpenShards>,
}

#[derive(Default)]
struct OpenShards {
    maps: HashMap<usize, (Arc<TokenShard>, u64)>,
    clock: u64,
}

impl std::fmt::Debug for ShardedDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedDataset")
            .field("name", &self.inner.manifest.name)
            .field("source", &self.inner.source.uri())
            .field("shards", &self.inner.shards.len())
            .field("samples", &self.inner.assigner.layout().num_samples())
            .finish()
    }
}

impl ShardedDataset {
    /// The `split` of `manifest` (already verified) read from `source` through `cache`, as
    /// samples of `seq_len` inputs assigned under `sampling` with the run's seed.
    pub fn new(
        manifest: DatasetManifest,
        split: Split,
        source: Arc<dyn ShardSource>,
        cache: Arc<ShardCache>,
        seq_len: usize,
        sampling: Sampling,
        run_seed: u64,
    ) -> Result<Self> {
        let shards = match split {
            Split::Train => manifest.shards.clone(),
            Split::HeldOut => manifest.held_out.clone(),
        };
        let layout = SampleLayout::new(&shards, seq_len)?;
        Ok(Self {
            inner: Arc::new(Inner {
                manifest,
                shards,
                source,
                cache,
                assigner: Assigner::new(layout, sampling, run_seed),
                open: Mutex::new(OpenShards::default()),
            }),
        })
    }

    /// The same dataset's other split (shares source and cache), every sample eligible.
    pub fn split(&self, split: Split, run_seed: u64) -> Result<Self> {
        Self::new(
            self.inner.manifest.clone(),
            split,
            self.inner.source.clone(),
            self.inner.cache.clone(),
            self.inner.assigner.layout().seq_len(),
            Sampling::WholeDataset {},
            run_seed,
        )
    }

    /// The dataset manifest.
    pub fn manifest(&self) -> &DatasetManifest {
        &self.inner.manifest
    }

    /// The assignment rules.
    pub fn assigner(&self) -> &Assigner {
        &self.inner.assigner
    }

    /// The shards sample ids `ids` live in (indices into this split's shard list).
    pub fn shards_of(&self, ids: &[u64]) -> Result<BTreeSet<usize>> {
        ids.iter()
            .map(|&id| Ok(self.inner.assigner.layout().locate(id)?.0))
            .collect()
    }

    /// Fetches (into the cache) the shards holding `ids`, on a background thread.
    pub fn prefetch_in_background(&self, ids: &[u64]) {
        let Ok(shards) = self.shards_of(ids) else {
            return;
        };
        let inner = self.inner.clone();
        let spawned = std::thread::Builder::new()
            .name("dataset-prefetch".into())
            .spawn(move || {
                for shard in shards {
                    if let Err(err) = inner.ensure_local(shard) {
                        tracing::warn!(%err, "prefetching a shard failed; it is fetched again when read");
                    }
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(%err, "cannot start the prefetch thread");
        }
    }

    /// The memory-mapped shard `index`.
    fn shard(&self, index: usize) -> Result<Arc<TokenShard>> {
        {
            let mut open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
            open.clock += 1;
            let clock = open.clock;
            if let Some((shard, used)) = open.maps.get_mut(&index) {
                *used = clock;
                return Ok(shard.clone());
            }
        }
        let shard = Arc::new(self.inner.map(index)?);
        let mut open = self.inner.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.maps.len() >= OPEN_SHARDS
            && let Some(oldest) = open
                .maps
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(i, _)| *i)
        {
            open.maps.remove(&oldest);
        }
        let clock = open.clock;
        open.maps.insert(index, (shard.clone(), clock));
        Ok(shard)
    }
}

impl Inner {
    fn entry(&self, index: usize) -> Result<&ShardEntry> {
        self.shards
            .get(index)
            .ok_or_else(|| DataError::Data(format!("no shard {index}")))
    }

    /// A verified local file of shard `index`: in place for a directory, else cached.
    fn ensure_local(&self, index: usize) -> Result<std::path::PathBuf> {
        let entry = self.entry(index)?;
        if let Some(path) = self.source.local_path(&entry.key) {
            if !path.exists() {
                return Err(DataError::MissingShard {
                    key: entry.key.clone(),
                    source_name: self.source.uri(),
                });
            }
            file_matches(&path, entry).map_err(|reason| DataError::CorruptShard {
                key: entry.key.clone(),
                source_name: self.source.uri(),
                reason,
            })?;
            return Ok(path);
        }
        Ok(self.cache.get(self.source.as_ref(), entry)?.0)
    }

    fn map(&self, index: usize) -> Result<TokenShard> {
        let entry = self.entry(index)?;
        let path = self.ensure_local(index)?;
        let shard = TokenShard::open_flat(&path, entry.width.token_width())?;
        let max = shard.max_token();
        if max >= self.manifest.vocab_size {
            return Err(DataError::CorruptShard {
                key: entry.key.clone(),
                source_name: self.source.uri(),
                reason: format!(
                    "token id {max} outside the vocabulary of {}",
                    self.manifest.vocab_size
                ),
            });
        }
        Ok(shard)
    }
}

impl Samples for ShardedDataset {
    fn num_samples(&self) -> u64 {
        self.inner.assigner.layout().num_samples()
    }

    fn sample(&self, id: u64) -> worker_model::Result<Vec<i64>> {
        let layout = self.inner.assigner.layout();
        let (index, start) = layout.locate(id)?;
        let shard = self.shard(index)?;
        shard.read(start, layout.seq_len() + 1).ok_or_else(|| {
            ModelError::Data(format!(
                "sample {id} runs past shard {}",
                self.inner.shards[index].key
            ))
        })
    }

    fn eos_token_id(&self) -> Option<i64> {
        Some(i64::from(self.inner.manifest.eos_id))
    }

    fn assigned_ids(
        &self,
        run_seed: u64,
        uid: u16,
        window: u64,
        count: usize,
    ) -> worker_model::Result<Vec<u64>> {
        Ok(self
            .inner
            .assigner
            .assigned_ids(run_seed, uid, window, count)?)
    }

    fn random_ids(&self, window: u64, count: usize) -> worker_model::Result<Vec<u64>> {
        Ok(self
            .inner
            .assigner
            .random_ids(&mut rand::rng(), window, count)?)
    }

    fn prefetch(&self, ids: &[u64]) {
        self.prefetch_in_background(ids);
    }
}
