//! A store whose downloads fail on demand, as a dropped connection would make them fail.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{GetOptions, ObjectMeta, ObjectStore, StorageError, StoredObject};

/// Wraps a store; every download of a key the rule picks fails with a connection reset.
/// Writes, HEADs, listings and deletes go through.
pub struct FailingReads {
    inner: Arc<dyn ObjectStore>,
    fails: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

impl FailingReads {
    /// `inner` with the downloads of every key for which `fails(key)` is true refused. The
    /// rule is asked once per download, so it may count (and fail only the n-th, or the
    /// first few).
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        fails: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner,
            fails: Box::new(fails),
        }
    }
}

#[async_trait]
impl ObjectStore for FailingReads {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StorageError> {
        self.inner.put(key, body).await
    }

    async fn put_before(
        &self,
        key: &str,
        body: Bytes,
        deadline: Instant,
    ) -> Result<(), StorageError> {
        self.inner.put_before(key, body, deadline).await
    }

    async fn get_with(
        &self,
        key: &str,
        options: &GetOptions,
    ) -> Result<StoredObject, StorageError> {
        if (self.fails)(key) {
            return Err(StorageError::Backend {
                operation: "get",
                message: format!("{key}: connection reset by peer (injected)"),
            });
        }
        self.inner.get_with(key, options).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
        self.inner.head(key).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        self.inner.list(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }
}
