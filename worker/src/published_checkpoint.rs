//! The lead validator's published model checkpoint: written in fixed-size chunks, each with
//! its SHA-256, under `{run}/checkpoints/{window}/`, then `latest.json` pointing at them (so a
//! reader never sees a pointer to missing data). A node fetching it keeps every verified
//! chunk in a partial directory beside the target file: an interrupted download (a killed
//! pod, a dropped connection) resumes with the chunks it does not have yet, and no chunk or
//! file is ever held in memory whole beyond one chunk.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use worker_storage::{ObjectStore, RunLayout, StorageError, sha256_hex};

use crate::error::{NodeError, Result};
use crate::replica::Replica;

/// Largest `latest.json` accepted.
const MAX_POINTER_BYTES: u64 = 1 << 20;
/// Chunk size of published checkpoints (a 1B model's fp32 checkpoint is ~70 chunks).
pub const CHECKPOINT_CHUNK_BYTES: u64 = 64 << 20;
/// Most chunks a pointer may list (bounds what a hostile pointer makes a node do).
const MAX_CHUNKS: usize = 1 << 16;

/// One chunk of a published checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointChunk {
    /// Object key.
    pub key: String,
    /// Hex SHA-256 of the chunk.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
}

/// What `{run}/checkpoints/latest.json` says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointPointer {
    /// The window whose outer step the model follows.
    pub window: u64,
    /// Hex SHA-256 of the whole file.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// The file's chunks, in order.
    pub chunks: Vec<CheckpointChunk>,
}

impl CheckpointPointer {
    /// Refuses a pointer whose chunks do not add up to the file, or that is too large.
    fn check(&self, max_bytes: u64) -> Result<()> {
        if self.size > max_bytes {
            return Err(NodeError::Config(format!(
                "published checkpoint of {} bytes exceeds the {max_bytes}-byte limit",
                self.size
            )));
        }
        let total = self
            .chunks
            .iter()
            .try_fold(0u64, |sum, c| sum.checked_add(c.size));
        if self.chunks.len() > MAX_CHUNKS || total != Some(self.size) {
            return Err(NodeError::Config(format!(
                "published checkpoint pointer lists {} chunks that do not add up to {} bytes",
                self.chunks.len(),
                self.size
            )));
        }
        Ok(())
    }
}

/// Publishes `replica`'s model as the state after `window`. `scratch` is a local file path.
pub async fn publish_checkpoint(
    store: &dyn ObjectStore,
    layout: &RunLayout,
    replica: &Replica,
    window: u64,
    scratch: &Path,
) -> Result<CheckpointPointer> {
    replica.save_model(scratch, window)?;
    publish_file(store, layout, scratch, window, CHECKPOINT_CHUNK_BYTES).await
}

/// Publishes the checkpoint file at `path` in chunks of `chunk_bytes`, then its pointer.
pub async fn publish_file(
    store: &dyn ObjectStore,
    layout: &RunLayout,
    path: &Path,
    window: u64,
    chunk_bytes: u64,
) -> Result<CheckpointPointer> {
    let mut file = File::open(path)?;
    let mut whole = Sha256::new();
    let mut chunks = Vec::new();
    let mut size = 0u64;
    loop {
        let mut buffer = Vec::new();
        (&mut file)
            .take(chunk_bytes.max(1))
            .read_to_end(&mut buffer)?;
        if buffer.is_empty() {
            break;
        }
        whole.update(&buffer);
        let chunk = CheckpointChunk {
            key: layout.checkpoint(window, &format!("model.ckpt.{:05}", chunks.len()))?,
            sha256: sha256_hex(&buffer),
            size: buffer.len() as u64,
        };
        size += chunk.size;
        store.put(&chunk.key, Bytes::from(buffer)).await?;
        chunks.push(chunk);
    }
    let pointer = CheckpointPointer {
        window,
        sha256: hex::encode(whole.finalize()),
        size,
        chunks,
    };
    store
        .put(
            &layout.latest_checkpoint(),
            Bytes::from(serde_json::to_vec(&pointer)?),
        )
        .await?;
    Ok(pointer)
}

/// The directory holding the verified chunks of an unfinished download of `into`.
pub fn partial_dir(into: &Path) -> PathBuf {
    into.with_extension("partial")
}

/// Downloads the lead's newest checkpoint into `into` when it is newer than `after`;
/// returns its window (`None`: nothing newer published). Chunks already in
/// [`partial_dir`] with the right size and digest are not fetched again.
pub async fn fetch_published_checkpoint(
    lead: &dyn ObjectStore,
    layout: &RunLayout,
    after: Option<u64>,
    into: &Path,
    max_bytes: u64,
) -> Result<Option<u64>> {
    let pointer = match lead
        .get(&layout.latest_checkpoint(), MAX_POINTER_BYTES)
        .await
    {
        Ok(object) => serde_json::from_slice::<CheckpointPointer>(&object.body)?,
        Err(StorageError::NotFound { .. }) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    if after.is_some_and(|done| pointer.window <= done) {
        return Ok(None);
    }
    pointer.check(max_bytes)?;
    let partial = partial_dir(into);
    let stamp = partial.join("pointer.sha256");
    let identity = sha256_hex(&serde_json::to_vec(&pointer)?);
    // Chunks of another checkpoint are worthless: start over.
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(identity.as_str()) {
        let _ = std::fs::remove_dir_all(&partial);
    }
    std::fs::create_dir_all(&partial)?;
    std::fs::write(&stamp, &identity)?;

    for (i, chunk) in pointer.chunks.iter().enumerate() {
        let local = partial.join(format!("{i:05}"));
        if file_digest(&local).ok().as_ref() == Some(&(chunk.size, chunk.sha256.clone())) {
            continue;
        }
        let object = lead.get(&chunk.key, chunk.size).await?;
        let actual = sha256_hex(&object.body);
        if actual != chunk.sha256 || object.body.len() as u64 != chunk.size {
            return Err(StorageError::Checksum {
                key: chunk.key.clone(),
                expected: Some(chunk.sha256.clone()),
                actual,
            }
            .into());
        }
        let tmp = local.with_extension("tmp");
        std::fs::write(&tmp, &object.body)?;
        std::fs::rename(&tmp, &local)?;
    }

    // Assemble, verify the whole file, then move it into place.
    let assembled = into.with_extension("download");
    let mut out = File::create(&assembled)?;
    let mut whole = Sha256::new();
    for i in 0..pointer.chunks.len() {
        let bytes = std::fs::read(partial.join(format!("{i:05}")))?;
        whole.update(&bytes);
        out.write_all(&bytes)?;
    }
    out.sync_all()?;
    let actual = hex::encode(whole.finalize());
    if actual != pointer.sha256 {
        let _ = std::fs::remove_file(&assembled);
        let _ = std::fs::remove_dir_all(&partial);
        return Err(StorageError::Checksum {
            key: layout.latest_checkpoint(),
            expected: Some(pointer.sha256),
            actual,
        }
        .into());
    }
    std::fs::rename(&assembled, into)?;
    let _ = std::fs::remove_dir_all(&partial);
    Ok(Some(pointer.window))
}

/// Size and hex SHA-256 of a local file.
fn file_digest(path: &Path) -> std::io::Result<(u64, String)> {
    let bytes = std::fs::read(path)?;
    Ok((bytes.len() as u64, sha256_hex(&bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use worker_storage::LocalStore;
    use worker_storage::testing::FailingReads;

    /// A store that counts chunk reads and can fail the n-th one (a dropped connection).
    struct Flaky {
        store: FailingReads,
        chunk_gets: Arc<AtomicUsize>,
        fail_at: Arc<Mutex<Option<usize>>>,
    }

    impl Flaky {
        fn new(inner: LocalStore, fail_at: Option<usize>) -> Self {
            let (chunk_gets, fail_at) =
                (Arc::new(AtomicUsize::new(0)), Arc::new(Mutex::new(fail_at)));
            let (gets, at) = (chunk_gets.clone(), fail_at.clone());
            let store = FailingReads::new(Arc::new(inner), move |key| {
                key.contains("model.ckpt.") && {
                    let n = gets.fetch_add(1, Ordering::SeqCst);
                    *at.lock().unwrap_or_else(std::sync::PoisonError::into_inner) == Some(n)
                }
            });
            Self {
                store,
                chunk_gets,
                fail_at,
            }
        }
    }

    #[tokio::test]
    async fn an_interrupted_download_resumes_with_the_missing_chunks_only() {
        let dir = tempfile::tempdir().unwrap();
        let Flaky {
            store,
            chunk_gets,
            fail_at,
        } = Flaky::new(
            LocalStore::open(dir.path().join("bucket")).unwrap(),
            Some(3),
        );
        let layout = RunLayout::new("resume").unwrap();
        let source = dir.path().join("model.ckpt");
        let contents: Vec<u8> = (0..10_000u32).flat_map(|i| i.to_le_bytes()).collect();
        std::fs::write(&source, &contents).unwrap();
        let pointer = publish_file(&store, &layout, &source, 9, 4096)
            .await
            .unwrap();
        assert_eq!(pointer.chunks.len(), 10);
        assert_eq!(pointer.size, 40_000);

        let into = dir.path().join("node/lead-model.ckpt");
        std::fs::create_dir_all(into.parent().unwrap()).unwrap();
        // The 4th chunk read fails: three chunks are kept, nothing is in place.
        let err = fetch_published_checkpoint(&store, &layout, None, &into, 1 << 20)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("connection reset"), "{err}");
        assert!(!into.exists());
        assert_eq!(chunk_gets.load(Ordering::SeqCst), 4);
        // A kept chunk corrupted on disk is fetched again, not trusted.
        std::fs::write(partial_dir(&into).join("00001"), b"garbage").unwrap();

        *fail_at.lock().unwrap() = None;
        chunk_gets.store(0, Ordering::SeqCst);
        let window = fetch_published_checkpoint(&store, &layout, None, &into, 1 << 20)
            .await
            .unwrap();
        assert_eq!(window, Some(9));
        assert_eq!(
            chunk_gets.load(Ordering::SeqCst),
            8,
            "chunks 0 and 2 were not fetched again"
        );
        assert_eq!(std::fs::read(&into).unwrap(), contents);
        assert!(!partial_dir(&into).exists());
        // Nothing newer: nothing fetched.
        assert_eq!(
            fetch_published_checkpoint(&store, &layout, Some(9), &into, 1 << 20)
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn a_pointer_whose_chunks_do_not_add_up_or_that_is_too_large_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().join("bucket")).unwrap();
        let layout = RunLayout::new("refuse").unwrap();
        let source = dir.path().join("model.ckpt");
        std::fs::write(&source, vec![7u8; 10_000]).unwrap();
        let mut pointer = publish_file(&store, &layout, &source, 2, 4096)
            .await
            .unwrap();
        let into = dir.path().join("lead.ckpt");
        let too_large = fetch_published_checkpoint(&store, &layout, None, &into, 9_999)
            .await
            .unwrap_err();
        assert!(too_large.to_string().contains("exceeds"), "{too_large}");
        pointer.size += 1;
        store
            .put(
                &layout.latest_checkpoint(),
                Bytes::from(serde_json::to_vec(&pointer).unwrap()),
            )
            .await
            .unwrap();
        let inconsistent = fetch_published_checkpoint(&store, &layout, None, &into, 1 << 20)
            .await
            .unwrap_err();
        assert!(
            inconsistent.to_string().contains("do not add up"),
            "{inconsistent}"
        );
        assert!(!into.exists());
    }
}
