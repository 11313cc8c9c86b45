//! [`S3Store`]: the [`ObjectStore`] implementation on `aws-sdk-s3`.

use std::time::Instant;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::primitives::ByteStream;
use bytes::{Bytes, BytesMut};

use super::client::build_client;
use super::config::S3Config;
use super::errors::{map_sdk_error, to_size, to_system_time};
use super::multipart;
use crate::checksum::{SHA256_METADATA_KEY, sha256_hex, verify};
use crate::error::StorageError;
use crate::key::{validate_key, validate_prefix};
use crate::store::{GetOptions, ObjectMeta, ObjectStore, StoredObject};

/// The operation name of body-stream failures, the only download errors retried here.
const READ_BODY: &str = "read body";

/// One bucket on an S3-compatible service.
///
/// Cheap to clone (the SDK client is reference counted).
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    config: S3Config,
}

impl S3Store {
    /// Validates `config` and builds the client; no request is sent.
    pub fn new(config: S3Config) -> Result<Self, StorageError> {
        config.validate()?;
        Ok(Self {
            client: build_client(&config),
            config,
        })
    }

    /// The underlying SDK client (for operations outside the [`ObjectStore`] trait).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.config.bucket
    }

    /// The configuration this store was built from.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    /// Creates the bucket unless it already exists (devnet and tests; production buckets are
    /// provisioned by their owners).
    pub async fn ensure_bucket(&self) -> Result<(), StorageError> {
        let bucket = self.bucket();
        let created = tokio::time::timeout(
            self.config.metadata_timeout,
            self.client.create_bucket().bucket(bucket).send(),
        )
        .await
        .map_err(|_| StorageError::timeout("create bucket", ""))?;
        match created {
            Ok(_) => Ok(()),
            Err(err) => {
                let exists = err.as_service_error().is_some_and(|e| {
                    e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
                });
                if exists {
                    Ok(())
                } else {
                    Err(map_sdk_error(err, "create bucket", bucket, ""))
                }
            }
        }
    }

    async fn put_single(
        &self,
        key: &str,
        body: Bytes,
        checksum: String,
        deadline: Instant,
    ) -> Result<(), StorageError> {
        let request = self
            .client
            .put_object()
            .bucket(self.bucket())
            .key(key)
            .content_length(body.len() as i64)
            .content_type("application/octet-stream")
            .metadata(SHA256_METADATA_KEY, checksum)
            .body(ByteStream::from(body))
            .send();
        tokio::time::timeout_at(deadline.into(), request)
            .await
            .map_err(|_| StorageError::timeout("put", key))?
            .map_err(|err| map_sdk_error(err, "put", self.bucket(), key))?;
        Ok(())
    }

    /// One GET: metadata checks on the response headers, then the capped body.
    async fn get_once(
        &self,
        key: &str,
        options: &GetOptions,
    ) -> Result<StoredObject, StorageError> {
        let response = self
            .client
            .get_object()
            .bucket(self.bucket())
            .key(key)
            .send()
            .await
            .map_err(|err| map_sdk_error(err, "get", self.bucket(), key))?;
        let size = to_size(response.content_length(), "get", key)?;
        let last_modified = to_system_time(response.last_modified(), "get", key)?;
        // Size and window are checked on the headers: a refused object's body is never read
        // (dropping the response closes the connection).
        options.check(key, size, last_modified)?;
        let expected = stored_checksum(&response);
        let body = read_capped(response.body, key, size, options.max_bytes).await?;
        verify(key, expected.as_deref(), &body)?;
        Ok(StoredObject {
            body,
            last_modified,
            size,
        })
    }
}

/// The SHA-256 from the object's user metadata, if any.
fn stored_checksum(response: &GetObjectOutput) -> Option<String> {
    response
        .metadata()
        .and_then(|metadata| metadata.get(SHA256_METADATA_KEY))
        .cloned()
}

/// Reads a body announced as `size` bytes, failing as soon as it exceeds `limit` or the
/// announced size, and when it ends short.
async fn read_capped(
    mut body: ByteStream,
    key: &str,
    size: u64,
    limit: u64,
) -> Result<Bytes, StorageError> {
    let capacity = usize::try_from(size.min(limit)).unwrap_or(0);
    let mut buffer = BytesMut::with_capacity(capacity);
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|err| StorageError::backend(READ_BODY, format!("reading {key:?}: {err}")))?
    {
        let received = (buffer.len() + chunk.len()) as u64;
        if received > limit {
            return Err(StorageError::TooLarge {
                key: key.to_owned(),
                limit,
                size: received,
            });
        }
        if received > size {
            return Err(StorageError::backend(
                "get",
                format!("body of {key:?} is longer than its announced {size} bytes"),
            ));
        }
        buffer.extend_from_slice(&chunk);
    }
    if buffer.len() as u64 != size {
        return Err(StorageError::backend(
            READ_BODY,
            format!(
                "body of {key:?} ended after {} of {size} bytes",
                buffer.len()
            ),
        ));
    }
    Ok(buffer.freeze())
}

/// Whether a failed download is worth another attempt (the SDK already retried the request
/// itself; this covers a body stream that broke off midway).
fn is_retryable_download_error(err: &StorageError) -> bool {
    matches!(err, StorageError::Backend { operation, .. } if *operation == READ_BODY)
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn put(&self, key: &str, body: Bytes) -> Result<(), StorageError> {
        self.put_before(key, body, Instant::now() + self.config.upload_timeout)
            .await
    }

    async fn put_before(
        &self,
        key: &str,
        body: Bytes,
        deadline: Instant,
    ) -> Result<(), StorageError> {
        validate_key(key)?;
        let deadline = deadline.min(Instant::now() + self.config.upload_timeout);
        let checksum = sha256_hex(&body);
        if body.len() as u64 > self.config.multipart_threshold {
            multipart::upload(&self.client, &self.config, key, body, checksum, deadline).await
        } else {
            self.put_single(key, body, checksum, deadline).await
        }
    }

    async fn get_with(
        &self,
        key: &str,
        options: &GetOptions,
    ) -> Result<StoredObject, StorageError> {
        validate_key(key)?;
        let deadline = tokio::time::Instant::now() + self.config.download_timeout;
        let mut attempt = 1;
        let mut backoff = self.config.initial_backoff;
        loop {
            let result = tokio::time::timeout_at(deadline, self.get_once(key, options))
                .await
                .map_err(|_| StorageError::timeout("get", key))?;
            match result {
                Err(err)
                    if attempt < self.config.max_attempts && is_retryable_download_error(&err) =>
                {
                    tracing::debug!(key, attempt, error = %err, "retrying download");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.config.max_backoff);
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
        validate_key(key)?;
        let response = tokio::time::timeout(
            self.config.metadata_timeout,
            self.client
                .head_object()
                .bucket(self.bucket())
                .key(key)
                .send(),
        )
        .await
        .map_err(|_| StorageError::timeout("head", key))?
        .map_err(|err| map_sdk_error(err, "head", self.bucket(), key))?;
        Ok(ObjectMeta {
            key: key.to_owned(),
            size: to_size(response.content_length(), "head", key)?,
            last_modified: to_system_time(response.last_modified(), "head", key)?,
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        validate_prefix(prefix)?;
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(self.bucket())
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        loop {
            let page = tokio::time::timeout(self.config.metadata_timeout, pages.next())
                .await
                .map_err(|_| StorageError::timeout("list", prefix))?;
            let Some(page) = page else { break };
            let page = page.map_err(|err| map_sdk_error(err, "list", self.bucket(), prefix))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                objects.push(ObjectMeta {
                    key: key.to_owned(),
                    size: to_size(object.size(), "list", key)?,
                    last_modified: to_system_time(object.last_modified(), "list", key)?,
                });
            }
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        validate_key(key)?;
        tokio::time::timeout(
            self.config.metadata_timeout,
            self.client
                .delete_object()
                .bucket(self.bucket())
                .key(key)
                .send(),
        )
        .await
        .map_err(|_| StorageError::timeout("delete", key))?
        .map_err(|err| map_sdk_error(err, "delete", self.bucket(), key))?;
        Ok(())
    }
}
