//! Multipart uploads that are aborted when they fail, time out or are dropped.

use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::config::S3Config;
use super::errors::map_sdk_error;
use crate::checksum::SHA256_METADATA_KEY;
use crate::error::StorageError;

/// How long a best-effort abort may take.
const ABORT_TIMEOUT: Duration = Duration::from_secs(15);

/// Uploads `body` in parts and completes it; the object only becomes visible on a successful
/// CompleteMultipartUpload, and every other outcome (error, deadline, drop) aborts the upload.
pub(crate) async fn upload(
    client: &Client,
    config: &S3Config,
    key: &str,
    body: Bytes,
    checksum: String,
    deadline: Instant,
) -> Result<(), StorageError> {
    let bucket = config.bucket.as_str();
    let created = tokio::time::timeout_at(
        deadline.into(),
        client
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .metadata(SHA256_METADATA_KEY, checksum)
            .content_type("application/octet-stream")
            .send(),
    )
    .await
    .map_err(|_| StorageError::timeout("create multipart upload", key))?
    .map_err(|err| map_sdk_error(err, "create multipart upload", bucket, key))?;
    let upload_id = created
        .upload_id()
        .ok_or_else(|| StorageError::backend("create multipart upload", "no upload id returned"))?
        .to_owned();
    let mut guard = AbortGuard::new(client.clone(), bucket, key, &upload_id);

    let finished = tokio::time::timeout_at(
        deadline.into(),
        upload_parts_and_complete(client, config, key, &upload_id, body),
    )
    .await;
    match finished {
        Ok(Ok(())) => {
            guard.disarm();
            Ok(())
        }
        Ok(Err(err)) => {
            guard.abort_now().await;
            Err(err)
        }
        Err(_) => {
            guard.abort_now().await;
            Err(StorageError::timeout("multipart upload", key))
        }
    }
}

/// Uploads all parts (up to `upload_concurrency` at a time) and completes the upload.
async fn upload_parts_and_complete(
    client: &Client,
    config: &S3Config,
    key: &str,
    upload_id: &str,
    body: Bytes,
) -> Result<(), StorageError> {
    let bucket = config.bucket.as_str();
    let part_size = config.part_size_for(body.len() as u64);
    let ranges = part_ranges(body.len(), part_size);
    tracing::debug!(key, parts = ranges.len(), part_size, "multipart upload");
    let mut parts: Vec<CompletedPart> = futures::stream::iter(ranges)
        .map(|(part_number, range)| {
            let part = body.slice(range);
            async move {
                let uploaded = client
                    .upload_part()
                    .bucket(bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(part_number)
                    .content_length(part.len() as i64)
                    .body(ByteStream::from(part))
                    .send()
                    .await
                    .map_err(|err| map_sdk_error(err, "upload part", bucket, key))?;
                let e_tag = uploaded.e_tag().ok_or_else(|| {
                    StorageError::backend("upload part", format!("part {part_number} has no ETag"))
                })?;
                Ok::<_, StorageError>(
                    CompletedPart::builder()
                        .part_number(part_number)
                        .e_tag(e_tag)
                        .build(),
                )
            }
        })
        .buffer_unordered(config.upload_concurrency)
        .try_collect()
        .await?;
    parts.sort_by_key(|part| part.part_number());
    client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(|err| map_sdk_error(err, "complete multipart upload", bucket, key))?;
    Ok(())
}

/// Splits `len` bytes into 1-based numbered parts of `part_size` bytes (the last may be shorter).
fn part_ranges(len: usize, part_size: u64) -> Vec<(i32, std::ops::Range<usize>)> {
    let part_size = usize::try_from(part_size).unwrap_or(usize::MAX).max(1);
    (0..len)
        .step_by(part_size)
        .zip(1..)
        .map(|(start, number)| (number, start..len.min(start.saturating_add(part_size))))
        .collect()
}

/// Aborts a multipart upload unless disarmed: awaited on errors, spawned onto the runtime when
/// the upload future is dropped (e.g. the caller's task was cancelled).
struct AbortGuard {
    armed: Option<AbortRequest>,
}

struct AbortRequest {
    client: Client,
    bucket: String,
    key: String,
    upload_id: String,
}

impl AbortRequest {
    async fn send(self) {
        let result = tokio::time::timeout(
            ABORT_TIMEOUT,
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&self.upload_id)
                .send(),
        )
        .await;
        match result {
            Ok(Ok(_)) => tracing::debug!(key = %self.key, "aborted multipart upload"),
            Ok(Err(err)) => tracing::warn!(
                key = %self.key,
                error = %map_sdk_error(err, "abort multipart upload", &self.bucket, &self.key),
                "could not abort multipart upload; a bucket lifecycle rule must clean it up"
            ),
            Err(_) => tracing::warn!(key = %self.key, "timed out aborting multipart upload"),
        }
    }
}

impl AbortGuard {
    fn new(client: Client, bucket: &str, key: &str, upload_id: &str) -> Self {
        Self {
            armed: Some(AbortRequest {
                client,
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                upload_id: upload_id.to_owned(),
            }),
        }
    }

    fn disarm(&mut self) {
        self.armed = None;
    }

    async fn abort_now(&mut self) {
        if let Some(request) = self.armed.take() {
            request.send().await;
        }
    }
}

impl Drop for AbortGuard {
    fn drop(&mut self) {
        if let Some(request) = self.armed.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(request.send());
                }
                Err(_) => tracing::warn!(
                    key = %request.key,
                    "multipart upload dropped outside a runtime; left for the lifecycle rule"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_the_body_exactly_once() {
        let ranges = part_ranges(12, 5);
        assert_eq!(ranges, vec![(1, 0..5), (2, 5..10), (3, 10..12)]);
        assert_eq!(part_ranges(10, 5), vec![(1, 0..5), (2, 5..10)]);
        assert!(part_ranges(0, 5).is_empty());
    }
}
