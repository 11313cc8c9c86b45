//! The backend-neutral object store trait and its value types.

use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::StorageError;
use crate::window::UploadWindow;

/// A downloaded, checksum-verified object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The object's bytes.
    pub body: Bytes,
    /// When the object was last written, at whole-second resolution (as S3 reports it).
    pub last_modified: SystemTime,
    /// The body length in bytes.
    pub size: u64,
}

/// What a listing or HEAD reports about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The full object key.
    pub key: String,
    /// The body length in bytes.
    pub size: u64,
    /// When the object was last written, at whole-second resolution.
    pub last_modified: SystemTime,
}

/// Limits applied by [`ObjectStore::get_with`] before any body byte is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetOptions {
    /// Objects larger than this are refused with [`StorageError::TooLarge`].
    pub max_bytes: u64,
    /// When set, objects whose LastModified falls outside the window are refused with
    /// [`StorageError::TooEarly`] / [`StorageError::TooLate`].
    pub upload_window: Option<UploadWindow>,
}

impl GetOptions {
    /// Only a size limit.
    pub fn max_bytes(max_bytes: u64) -> Self {
        Self {
            max_bytes,
            upload_window: None,
        }
    }

    /// Adds an upload-window check.
    pub fn within(mut self, window: UploadWindow) -> Self {
        self.upload_window = Some(window);
        self
    }

    /// Applies the size and window checks to an object's metadata.
    pub(crate) fn check(
        &self,
        key: &str,
        size: u64,
        last_modified: SystemTime,
    ) -> Result<(), StorageError> {
        if size > self.max_bytes {
            return Err(StorageError::TooLarge {
                key: key.to_owned(),
                limit: self.max_bytes,
                size,
            });
        }
        match &self.upload_window {
            Some(window) => window.check(key, last_modified),
            None => Ok(()),
        }
    }
}

/// An object store holding immutable, checksummed objects under `/`-separated keys.
///
/// Publishing is atomic: after an interrupted or failed `put`, readers see either the previous
/// object or nothing, never a partial body. Keys must pass [`crate::validate_key`].
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Stores `body` under `key`, replacing any previous object, within the store's configured
    /// upload timeout (if any).
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StorageError>;

    /// Like [`ObjectStore::put`] but gives up with [`StorageError::Timeout`] at `deadline`
    /// (or at the store's own upload timeout, whichever comes first). A multipart upload that
    /// misses the deadline is aborted; a single-request S3 upload cut off by the deadline has an
    /// unknown outcome (the server may or may not have received the whole body).
    async fn put_before(
        &self,
        key: &str,
        body: Bytes,
        deadline: Instant,
    ) -> Result<(), StorageError>;

    /// Downloads and verifies `key`, refusing objects over `max_bytes` before reading the body.
    async fn get(&self, key: &str, max_bytes: u64) -> Result<StoredObject, StorageError> {
        self.get_with(key, &GetOptions::max_bytes(max_bytes)).await
    }

    /// Downloads and verifies `key`; size and upload-window checks run on the metadata, before
    /// the body is read.
    async fn get_with(&self, key: &str, options: &GetOptions)
    -> Result<StoredObject, StorageError>;

    /// Returns an object's size and LastModified without downloading it.
    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError>;

    /// Lists every object whose key starts with `prefix`, sorted by key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError>;

    /// Deletes `key`; deleting a missing object succeeds.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
}
