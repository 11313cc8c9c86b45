//! A bounded local directory of verified shards (a PVC in Kubernetes), evicted least
//! recently used first.
//!
//! Files are named by their SHA-256, so two datasets sharing a shard share the file. A cached
//! file is hashed again whenever it is opened; one that no longer matches (a truncated
//! download, a flipped bit, a full disk) is deleted and fetched again. A fetched shard that
//! does not match the manifest is refused without touching the cache.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::manifest::ShardEntry;
use crate::source::ShardSource;

/// Suffix of cached shard files.
const SHARD_SUFFIX: &str = ".shard";
/// Prefix of partially written files (removed when the cache opens).
const PARTIAL_PREFIX: &str = ".partial-";

/// What the cache did to provide a shard (for tests and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The cached file was valid.
    Hit,
    /// Fetched from the source (it was not cached).
    Fetched,
    /// The cached file was corrupt: dropped and fetched again.
    Refetched,
}

#[derive(Debug, Default)]
struct Index {
    /// sha256 -> (bytes, last use).
    entries: HashMap<String, (u64, u64)>,
    clock: u64,
    total: u64,
}

/// The shard cache.
#[derive(Debug)]
pub struct ShardCache {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    /// One fetch at a time: a prefetch and a read of the same shard never download it twice.
    fetching: Mutex<()>,
}

impl ShardCache {
    /// Opens (creates) the cache in `dir`, holding at most `max_bytes` of shards. Files
    /// already there are kept (oldest modification first in eviction order).
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
            let entry = entry.map_err(|e| DataError::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(PARTIAL_PREFIX) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(sha) = name.strip_suffix(SHARD_SUFFIX) else {
                continue;
            };
            let meta = entry.metadata().map_err(|e| DataError::io(&path, e))?;
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((modified, sha.to_owned(), meta.len()));
        }
        found.sort();
        let mut index = Index::default();
        for (_, sha, bytes) in found {
            index.clock += 1;
            index.total += bytes;
            index.entries.insert(sha, (bytes, index.clock));
        }
        let cache = Self {
            dir,
            max_bytes,
            index: Mutex::new(index),
            fetching: Mutex::new(()),
        };
        cache.evict(None);
        Ok(cache)
    }

    /// Directory of the cache.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of shards held.
    pub fn total_bytes(&self) -> u64 {
        self.index.lock().map(|i| i.total).unwrap_or(0)
    }

    /// The cached file of `shard`'s content.
    pub fn path_of(&self, shard: &ShardEntry) -> PathBuf {
        self.dir.join(format!("{}{SHARD_SUFFIX}", shard.sha256))
    }

    /// A verified local file of `shard`, fetched from `source` unless a valid copy is cached.
    pub fn get(
        &self,
        source: &dyn ShardSource,
        shard: &ShardEntry,
    ) -> Result<(PathBuf, CacheOutcome)> {
        let _one_at_a_time = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.path_of(shard);
        let mut outcome = CacheOutcome::Fetched;
        if path.exists() {
            match file_matches(&path, shard) {
                Ok(()) => {
                    self.touch(&shard.sha256, shard.bytes());
                    return Ok((path, CacheOutcome::Hit));
                }
                Err(reason) => {
                    tracing::warn!(shard = %shard.key, path = %path.display(), %reason,
                        "cached shard is corrupt; fetching it again");
                    let _ = std::fs::remove_file(&path);
                    self.forget(&shard.sha256);
                    outcome = CacheOutcome::Refetched;
                }
            }
        }
        let body = source.read(&shard.key, shard.bytes())?;
        if let Err(reason) = bytes_match(&body, shard) {
            return Err(DataError::CorruptShard {
                key: shard.key.clone(),
                source_name: source.uri(),
                reason,
            });
        }
        let partial = self.dir.join(format!("{PARTIAL_PREFIX}{}", shard.sha256));
        std::fs::write(&partial, &body).map_err(|e| DataError::io(&partial, e))?;
        std::fs::rename(&partial, &path).map_err(|e| DataError::io(&path, e))?;
        self.touch(&shard.sha256, shard.bytes());
        self.evict(Some(&shard.sha256));
        tracing::debug!(shard = %shard.key, bytes = shard.bytes(), "shard cached");
        Ok((path, outcome))
    }

    fn touch(&self, sha: &str, bytes: u64) {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index.clock += 1;
        let clock = index.clock;
        match index.entries.insert(sha.to_owned(), (bytes, clock)) {
            Some((old, _)) => index.total = index.total - old + bytes,
            None => index.total += bytes,
        }
    }

    fn forget(&self, sha: &str) {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((bytes, _)) = index.entries.remove(sha) {
            index.total -= bytes;
        }
    }

    /// Deletes least recently used shards (never `keep`) until the cache fits its bound.
    /// Open memory maps of a deleted file stay valid (POSIX unlink semantics).
    fn evict(&self, keep: Option<&str>) {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        while index.total > self.max_bytes {
            let victim = index
                .entries
                .iter()
                .filter(|(sha, _)| Some(sha.as_str()) != keep)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(sha, _)| sha.clone());
            let Some(victim) = victim else { break };
            if let Some((bytes, _)) = index.entries.remove(&victim) {
                index.total -= bytes;
            }
            let _ = std::fs::remove_file(self.dir.join(format!("{victim}{SHARD_SUFFIX}")));
            tracing::debug!(sha256 = %victim, "shard evicted from the cache");
        }
    }
}

/// Checks a cached file's size and SHA-256 against the manifest.
pub(crate) fn file_matches(path: &Path, shard: &ShardEntry) -> std::result::Result<(), String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let size = file.metadata().map_err(|e| e.to_string())?.len();
    if size != shard.bytes() {
        return Err(format!("{size} bytes, the manifest says {}", shard.bytes()));
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let digest = hex::encode(hasher.finalize());
    if digest != shard.sha256 {
        return Err(format!(
            "sha256 {digest}, the manifest says {}",
            shard.sha256
        ));
    }
    Ok(())
}

/// Checks fetched bytes against the manifest.
fn bytes_match(body: &[u8], shard: &ShardEntry) -> std::result::Result<(), String> {
    if body.len() as u64 != shard.bytes() {
        return Err(format!(
            "{} bytes, the manifest says {}",
            body.len(),
            shard.bytes()
        ));
    }
    let digest = hex::encode(Sha256::digest(body));
    if digest != shard.sha256 {
        return Err(format!(
            "sha256 {digest}, the manifest says {}",
            shard.sha256
        ));
    }
    Ok(())
}
