//! [`LocalStore`]: an [`ObjectStore`] on a local directory, for the devnet and tests.
//!
//! Object `a/b/c` lives in the file `<root>/a/b/c.obj` (the suffix keeps object `a` and the
//! directory of object `a/b` apart). Each file starts with an 8-byte magic and the 32-byte
//! SHA-256 of the body, followed by the body. Writes go to `<root>/.partial/`, are fsynced and
//! then renamed into place, so a crash never leaves a partial object under its key.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::checksum::verify;
use crate::error::StorageError;
use crate::key::{validate_key, validate_prefix};
use crate::store::{GetOptions, ObjectMeta, ObjectStore, StoredObject};
use crate::window::floor_to_second;

/// First bytes of every object file.
const MAGIC: &[u8; 8] = b"WSOBJv1\n";
/// Magic plus raw SHA-256.
const HEADER_LEN: u64 = 8 + 32;
/// File-name suffix of object files.
const OBJECT_SUFFIX: &str = ".obj";
/// Directory (under the root) holding in-progress writes.
const PARTIAL_DIR: &str = ".partial";
/// In-progress files older than this are leftovers of a crashed writer.
const STALE_PARTIAL_AGE: Duration = Duration::from_secs(3600);

/// A directory-backed object store with the same semantics as [`crate::S3Store`]: atomic
/// publish, SHA-256 verification, size limits before reading, whole-second LastModified.
///
/// File I/O runs on the blocking pool: a `put` whose future is dropped still finishes (and
/// publishes) in the background; `put_before` refuses to publish once its deadline has passed.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: Arc<PathBuf>,
}

impl LocalStore {
    /// Opens (creating if needed) a store rooted at `root`, removing stale partial writes.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        let partial = root.join(PARTIAL_DIR);
        fs::create_dir_all(&partial).map_err(|err| StorageError::io(&partial, err))?;
        remove_stale_partials(&partial);
        Ok(Self {
            root: Arc::new(root),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file holding `key` (whether or not it exists).
    pub fn object_path(&self, key: &str) -> Result<PathBuf, StorageError> {
        object_path(&self.root, key)
    }

    async fn blocking<T, F>(&self, job: F) -> Result<T, StorageError>
    where
        T: Send + 'static,
        F: FnOnce(&Path) -> Result<T, StorageError> + Send + 'static,
    {
        let root = Arc::clone(&self.root);
        tokio::task::spawn_blocking(move || job(&root))
            .await
            .map_err(|err| StorageError::backend("local store", format!("worker thread: {err}")))?
    }
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StorageError> {
        let key = key.to_owned();
        self.blocking(move |root| write_object(root, &key, &body, None))
            .await
    }

    async fn put_before(
        &self,
        key: &str,
        body: Bytes,
        deadline: Instant,
    ) -> Result<(), StorageError> {
        let key = key.to_owned();
        self.blocking(move |root| write_object(root, &key, &body, Some(deadline)))
            .await
    }

    async fn get_with(
        &self,
        key: &str,
        options: &GetOptions,
    ) -> Result<StoredObject, StorageError> {
        let key = key.to_owned();
        let options = *options;
        self.blocking(move |root| read_object(root, &key, &options))
            .await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
        let key = key.to_owned();
        self.blocking(move |root| {
            let path = object_path(root, &key)?;
            let metadata = fs::metadata(&path).map_err(|err| not_found_or_io(&key, &path, err))?;
            object_meta(key, &path, &metadata)
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        validate_prefix(prefix)?;
        let prefix = prefix.to_owned();
        self.blocking(move |root| list_objects(root, &prefix)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let key = key.to_owned();
        self.blocking(move |root| delete_object(root, &key)).await
    }
}

fn object_path(root: &Path, key: &str) -> Result<PathBuf, StorageError> {
    validate_key(key)?;
    Ok(root.join(format!("{key}{OBJECT_SUFFIX}")))
}

fn not_found_or_io(key: &str, path: &Path, err: std::io::Error) -> StorageError {
    if err.kind() == ErrorKind::NotFound {
        StorageError::NotFound {
            key: key.to_owned(),
        }
    } else {
        StorageError::io(path, err)
    }
}

fn corrupt(key: &str, what: &str) -> StorageError {
    StorageError::backend("get", format!("object file of {key:?} is corrupt: {what}"))
}

fn object_meta(
    key: String,
    path: &Path,
    metadata: &fs::Metadata,
) -> Result<ObjectMeta, StorageError> {
    let size = metadata
        .len()
        .checked_sub(HEADER_LEN)
        .ok_or_else(|| corrupt(&key, "shorter than its header"))?;
    let modified = metadata
        .modified()
        .map_err(|err| StorageError::io(path, err))?;
    Ok(ObjectMeta {
        key,
        size,
        last_modified: floor_to_second(modified),
    })
}

fn write_object(
    root: &Path,
    key: &str,
    body: &[u8],
    deadline: Option<Instant>,
) -> Result<(), StorageError> {
    let path = object_path(root, key)?;
    let partial = root.join(PARTIAL_DIR).join(unique_partial_name());
    let result = write_partial(&partial, body).and_then(|()| {
        if deadline.is_some_and(|deadline| Instant::now() > deadline) {
            return Err(StorageError::timeout("put", key));
        }
        publish(&partial, &path)
    });
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result
}

fn write_partial(partial: &Path, body: &[u8]) -> Result<(), StorageError> {
    let io = |err| StorageError::io(partial, err);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(partial)
        .map_err(io)?;
    file.write_all(MAGIC).map_err(io)?;
    file.write_all(&Sha256::digest(body)).map_err(io)?;
    file.write_all(body).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Renames the finished file into place and fsyncs the directory entry.
fn publish(partial: &Path, path: &Path) -> Result<(), StorageError> {
    let parent = path
        .parent()
        .ok_or_else(|| StorageError::backend("put", "object path has no parent"))?;
    // A concurrent delete may prune the (empty) parent between creating it and renaming:
    // recreate it once.
    for attempt in 0..2 {
        fs::create_dir_all(parent).map_err(|err| StorageError::io(parent, err))?;
        match fs::rename(partial, path) {
            Ok(()) => break,
            Err(err) if err.kind() == ErrorKind::NotFound && attempt == 0 => continue,
            Err(err) => return Err(StorageError::io(path, err)),
        }
    }
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|err| StorageError::io(parent, err))
}

fn read_object(root: &Path, key: &str, options: &GetOptions) -> Result<StoredObject, StorageError> {
    let path = object_path(root, key)?;
    let mut file = File::open(&path).map_err(|err| not_found_or_io(key, &path, err))?;
    let metadata = file
        .metadata()
        .map_err(|err| StorageError::io(&path, err))?;
    let meta = object_meta(key.to_owned(), &path, &metadata)?;
    options.check(key, meta.size, meta.last_modified)?;

    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact(&mut header)
        .map_err(|err| StorageError::io(&path, err))?;
    let (magic, digest) = header.split_at(MAGIC.len());
    if magic != MAGIC {
        return Err(corrupt(key, "bad magic"));
    }
    let size = usize::try_from(meta.size).map_err(|_| corrupt(key, "size overflows usize"))?;
    let mut body = vec![0u8; size];
    file.read_exact(&mut body)
        .map_err(|err| StorageError::io(&path, err))?;
    verify(key, Some(&hex::encode(digest)), &body)?;
    Ok(StoredObject {
        body: Bytes::from(body),
        last_modified: meta.last_modified,
        size: meta.size,
    })
}

fn list_objects(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
    // Only the directory named by the prefix up to its last '/' can hold matches.
    let start = match prefix.rsplit_once('/') {
        Some((dir, _)) => root.join(dir),
        None => root.to_path_buf(),
    };
    let mut objects = Vec::new();
    let mut pending = vec![start];
    while let Some(dir) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(err) if err.kind() == ErrorKind::NotFound => continue,
            Err(err) => return Err(StorageError::io(&dir, err)),
        };
        for entry in entries {
            let entry = entry.map_err(|err| StorageError::io(&dir, err))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let file_type = entry
                .file_type()
                .map_err(|err| StorageError::io(&path, err))?;
            if file_type.is_dir() {
                pending.push(path);
                continue;
            }
            let Some(key) = key_of(root, &path) else {
                continue;
            };
            if !key.starts_with(prefix) {
                continue;
            }
            match fs::metadata(&path) {
                Ok(metadata) => objects.push(object_meta(key, &path, &metadata)?),
                // Deleted while listing.
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(StorageError::io(&path, err)),
            }
        }
    }
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(objects)
}

/// The key stored at `path`, if it is an object file under `root`.
fn key_of(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let segments: Option<Vec<&str>> = relative.iter().map(|part| part.to_str()).collect();
    let joined = segments?.join("/");
    let key = joined.strip_suffix(OBJECT_SUFFIX)?;
    validate_key(key).ok()?;
    Some(key.to_owned())
}

fn delete_object(root: &Path, key: &str) -> Result<(), StorageError> {
    let path = object_path(root, key)?;
    match fs::remove_file(&path) {
        Ok(()) => {}
        Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
        Err(err) => return Err(StorageError::io(&path, err)),
    }
    // Prune directories left empty (fails harmlessly on the first non-empty one).
    let mut dir = path.parent();
    while let Some(current) = dir {
        if current == root || fs::remove_dir(current).is_err() {
            break;
        }
        dir = current.parent();
    }
    Ok(())
}

fn unique_partial_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_nanos())
        .unwrap_or_default();
    format!(
        "{}-{}-{nanos}.partial",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn remove_stale_partials(partial_dir: &Path) {
    let Ok(entries) = fs::read_dir(partial_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|metadata| metadata.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE_PARTIAL_AGE);
        if stale {
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed stale partial write"),
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "cannot remove stale partial write")
                }
            }
        }
    }
}
