//! Where shards come from: a directory (a mounted volume) or an S3 prefix. Sources read one
//! named object at a time; nothing lists a dataset.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use run_manifest::DatasetUri;
use tokio::runtime::Runtime;
use worker_storage::{ObjectStore, S3Config, S3Credentials, S3Store};

use crate::error::{DataError, Result};

/// Reads the objects of one dataset by key (relative to its prefix or directory).
///
/// Calls block; an S3 source runs its requests on a runtime of its own, so callers may be
/// plain threads or tasks of another runtime.
pub trait ShardSource: Send + Sync {
    /// The dataset's URI, for messages.
    fn uri(&self) -> String;

    /// The whole object `key`, refusing more than `max_bytes`.
    fn read(&self, key: &str, max_bytes: u64) -> Result<Vec<u8>>;

    /// A file holding object `key` that can be memory-mapped in place (a directory
    /// source), or `None` when shards must be copied into the cache first.
    fn local_path(&self, key: &str) -> Option<PathBuf> {
        let _ = key;
        None
    }
}

/// A dataset in a local directory.
#[derive(Debug, Clone)]
pub struct DirSource {
    root: PathBuf,
}

impl DirSource {
    /// The dataset under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl ShardSource for DirSource {
    fn uri(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn read(&self, key: &str, max_bytes: u64) -> Result<Vec<u8>> {
        crate::manifest::check_key(key).map_err(|reason| DataError::Source {
            key: key.to_owned(),
            source_name: self.uri(),
            message: reason.into(),
        })?;
        let path = self.root.join(key);
        let size = match std::fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(DataError::MissingShard {
                    key: key.to_owned(),
                    source_name: self.uri(),
                });
            }
            Err(err) => return Err(DataError::io(&path, err)),
        };
        if size > max_bytes {
            return Err(DataError::CorruptShard {
                key: key.to_owned(),
                source_name: self.uri(),
                reason: format!("{size} bytes, at most {max_bytes} expected"),
            });
        }
        std::fs::read(&path).map_err(|err| DataError::io(&path, err))
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        crate::manifest::check_key(key).ok()?;
        Some(self.root.join(key))
    }
}

/// A dataset under an S3 prefix (any S3-compatible service).
///
/// Shards are read with plain GETs (objects uploaded by any tool, with or without
/// `worker-storage`'s checksum metadata): the dataset manifest's SHA-256 is what verifies
/// them.
pub struct S3Source {
    store: S3Store,
    uri: String,
    prefix: String,
    runtime: Option<Runtime>,
}

impl std::fmt::Debug for S3Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Source").field("uri", &self.uri).finish()
    }
}

/// How to reach an S3 dataset (credentials are never printed).
#[derive(Clone)]
pub struct S3Access {
    /// Endpoint URL (R2, MinIO, SeaweedFS); `None` for AWS.
    pub endpoint: Option<String>,
    /// Signing region (`auto` when absent).
    pub region: Option<String>,
    /// Read credentials.
    pub credentials: S3Credentials,
}

/// Longest a single shard GET may take.
const READ_TIMEOUT: Duration = Duration::from_secs(600);

impl S3Source {
    /// The dataset at `s3://bucket/prefix`.
    pub fn new(bucket: &str, prefix: &str, access: S3Access) -> Result<Self> {
        let mut config = S3Config::new(bucket, access.credentials)
            .with_region(access.region.unwrap_or_else(|| "auto".into()));
        if let Some(endpoint) = access.endpoint {
            config = config.with_endpoint(endpoint);
        }
        Self::with_config(config, prefix)
    }

    /// A source on the bucket of `config` (tests pass a SeaweedFS config).
    pub fn with_config(config: S3Config, prefix: &str) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dataset-s3")
            .enable_all()
            .build()
            .map_err(|err| DataError::Config(format!("starting the S3 reader: {err}")))?;
        let prefix = prefix.trim_matches('/').to_owned();
        let uri = DatasetUri::S3 {
            bucket: config.bucket.clone(),
            prefix: prefix.clone(),
        }
        .to_string();
        let store = {
            let _guard = runtime.enter();
            S3Store::new(config).map_err(|err| DataError::Config(err.to_string()))?
        };
        Ok(Self {
            store,
            uri,
            prefix,
            runtime: Some(runtime),
        })
    }

    fn object_key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// Uploads `body` as `key` (`worker data prepare --upload`, tests).
    pub fn put(&self, key: &str, body: Vec<u8>) -> Result<()> {
        let object_key = self.object_key(key);
        let store = self.store.clone();
        self.run(async move {
            store
                .put(&object_key, Bytes::from(body))
                .await
                .map_err(|err| err.to_string())
        })
        .map_err(|message| self.source_error(key, message))
    }

    /// Creates the bucket if it does not exist (tests, `prepare --upload`).
    pub fn ensure_bucket(&self) -> Result<()> {
        let store = self.store.clone();
        self.run(async move { store.ensure_bucket().await.map_err(|err| err.to_string()) })
            .map_err(|message| self.source_error("", message))
    }

    /// Runs `future` on the source's runtime and waits for it from any thread.
    fn run<T: Send + 'static, E: Send + 'static + From<String>>(
        &self,
        future: impl Future<Output = std::result::Result<T, E>> + Send + 'static,
    ) -> std::result::Result<T, E> {
        let Some(runtime) = &self.runtime else {
            return Err(E::from("S3 reader stopped".to_owned()));
        };
        let (tx, rx) = mpsc::channel();
        runtime.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv()
            .unwrap_or_else(|_| Err(E::from("S3 reader stopped".to_owned())))
    }

    fn source_error(&self, key: &str, message: String) -> DataError {
        DataError::Source {
            key: key.to_owned(),
            source_name: self.uri.clone(),
            message,
        }
    }
}

/// Outcome of one GET, before it is turned into a [`DataError`].
enum GetError {
    NotFound,
    TooLarge(u64),
    Other(String),
}

impl From<String> for GetError {
    fn from(message: String) -> Self {
        GetError::Other(message)
    }
}

async fn get_object(
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    max_bytes: u64,
) -> std::result::Result<Vec<u8>, GetError> {
    let response = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(response) => response,
        Err(err) => {
            let status = err.raw_response().map(|raw| raw.status().as_u16());
            let no_such_key = err.as_service_error().is_some_and(|e| e.is_no_such_key());
            if no_such_key || status == Some(404) {
                return Err(GetError::NotFound);
            }
            return Err(GetError::Other(
                aws_sdk_s3::error::DisplayErrorContext(&err).to_string(),
            ));
        }
    };
    let size = response.content_length().unwrap_or(0).max(0) as u64;
    if size > max_bytes {
        return Err(GetError::TooLarge(size));
    }
    let body = response
        .body
        .collect()
        .await
        .map_err(|err| GetError::Other(format!("reading the body: {err}")))?;
    Ok(body.to_vec())
}

impl ShardSource for S3Source {
    fn uri(&self) -> String {
        self.uri.clone()
    }

    fn read(&self, key: &str, max_bytes: u64) -> Result<Vec<u8>> {
        let client = self.store.client().clone();
        let bucket = self.store.bucket().to_owned();
        let object_key = self.object_key(key);
        let outcome = self.run(async move {
            tokio::time::timeout(
                READ_TIMEOUT,
                get_object(client, bucket, object_key, max_bytes),
            )
            .await
            .unwrap_or_else(|_| Err(GetError::Other("timed out".into())))
        });
        match outcome {
            Ok(body) => Ok(body),
            Err(GetError::NotFound) => Err(DataError::MissingShard {
                key: key.to_owned(),
                source_name: self.uri.clone(),
            }),
            Err(GetError::TooLarge(size)) => Err(DataError::CorruptShard {
                key: key.to_owned(),
                source_name: self.uri.clone(),
                reason: format!("{size} bytes, at most {max_bytes} expected"),
            }),
            Err(GetError::Other(message)) => Err(self.source_error(key, message)),
        }
    }
}

impl Drop for S3Source {
    fn drop(&mut self) {
        // Dropping a runtime inside another runtime's task would panic; let it wind down.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
