//! Connection and tuning settings of an [`crate::S3Store`].

use std::fmt;
use std::time::Duration;

use crate::error::StorageError;

/// S3's smallest allowed part (all parts but the last).
pub(crate) const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest allowed part count.
pub(crate) const MAX_PARTS: u64 = 10_000;

/// A static access key pair.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl S3Credentials {
    /// A key pair.
    pub fn new(access_key_id: impl Into<String>, secret_access_key: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
        }
    }
}

impl fmt::Debug for S3Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// Everything needed to talk to one bucket.
///
/// Start from [`S3Config::new`] and adjust the public fields; [`crate::S3Store::new`] validates.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// The bucket all keys live in.
    pub bucket: String,
    /// Endpoint URL (`https://<account>.r2.cloudflarestorage.com`, `http://127.0.0.1:8333`);
    /// `None` uses the AWS endpoint of `region`.
    pub endpoint: Option<String>,
    /// Signing region (`auto` for R2, `us-east-1` for most self-hosted servers).
    pub region: String,
    /// Address buckets as `endpoint/bucket/key` instead of `bucket.endpoint/key`; needed by
    /// MinIO and SeaweedFS, accepted by R2 and AWS.
    pub force_path_style: bool,
    /// The static access key pair.
    pub credentials: S3Credentials,
    /// Bodies larger than this use a multipart upload.
    pub multipart_threshold: u64,
    /// Size of each multipart part (at least 5 MiB; grown when 10 000 parts would not do).
    pub part_size: u64,
    /// Parts uploaded in parallel.
    pub upload_concurrency: usize,
    /// Attempts per request, including the first (SDK standard retry mode, exponential backoff
    /// with jitter on throttling, 5xx, timeouts and connection errors).
    pub max_attempts: u32,
    /// First retry backoff.
    pub initial_backoff: Duration,
    /// Longest retry backoff.
    pub max_backoff: Duration,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Limit for a single HTTP attempt (one request including its upload body).
    pub attempt_timeout: Duration,
    /// Limit for HEAD, DELETE and each LIST page, retries included.
    pub metadata_timeout: Duration,
    /// Limit for a whole download, retries and body included.
    pub download_timeout: Duration,
    /// Deadline for a whole `put` (all parts and retries); [`crate::ObjectStore::put_before`]
    /// can shorten it per call.
    pub upload_timeout: Duration,
}

impl S3Config {
    /// Defaults suited to ~100 MB gradient objects on a 100 Mb/s link.
    pub fn new(bucket: impl Into<String>, credentials: S3Credentials) -> Self {
        Self {
            bucket: bucket.into(),
            endpoint: None,
            region: "auto".to_owned(),
            force_path_style: true,
            credentials,
            multipart_threshold: 32 * 1024 * 1024,
            part_size: 16 * 1024 * 1024,
            upload_concurrency: 4,
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(60),
            metadata_timeout: Duration::from_secs(20),
            download_timeout: Duration::from_secs(120),
            upload_timeout: Duration::from_secs(300),
        }
    }

    /// Sets the endpoint URL.
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets the signing region.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = region.into();
        self
    }

    /// Sets the multipart threshold and part size.
    pub fn with_multipart(mut self, threshold: u64, part_size: u64) -> Self {
        self.multipart_threshold = threshold;
        self.part_size = part_size;
        self
    }

    /// Checks the settings S3 would reject later or that would make the store unusable.
    pub(crate) fn validate(&self) -> Result<(), StorageError> {
        let fail = |message: String| Err(StorageError::Config(message));
        if self.bucket.is_empty() {
            return fail("bucket name is empty".to_owned());
        }
        if self.region.is_empty() {
            return fail("region is empty".to_owned());
        }
        if self.part_size < MIN_PART_SIZE {
            return fail(format!(
                "part size {} is below the S3 minimum of {MIN_PART_SIZE} bytes",
                self.part_size
            ));
        }
        if self.upload_concurrency == 0 {
            return fail("upload concurrency must be at least 1".to_owned());
        }
        if self.max_attempts == 0 {
            return fail("max attempts must be at least 1".to_owned());
        }
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return fail(format!("endpoint {endpoint:?} is not an http(s) URL"));
        }
        Ok(())
    }

    /// The part size used for a body of `len` bytes: the configured size, grown so that the
    /// upload fits in S3's 10 000 parts.
    pub(crate) fn part_size_for(&self, len: u64) -> u64 {
        self.part_size.max(len.div_ceil(MAX_PARTS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> S3Config {
        S3Config::new("bucket", S3Credentials::new("ak", "sk"))
    }

    #[test]
    fn defaults_validate() {
        assert!(config().validate().is_ok());
    }

    #[test]
    fn rejects_small_parts_and_bad_endpoints() {
        assert!(config().with_multipart(1, 1024).validate().is_err());
        assert!(config().with_endpoint("127.0.0.1:9000").validate().is_err());
        let mut zero = config();
        zero.upload_concurrency = 0;
        assert!(zero.validate().is_err());
    }

    #[test]
    fn part_size_grows_to_fit_ten_thousand_parts() {
        let cfg = config();
        assert_eq!(cfg.part_size_for(100), cfg.part_size);
        let huge = 10_000 * cfg.part_size + 1;
        let grown = cfg.part_size_for(huge);
        assert!(grown > cfg.part_size);
        assert!(huge.div_ceil(grown) <= MAX_PARTS);
    }

    #[test]
    fn debug_hides_the_secret() {
        let printed = format!("{:?}", S3Credentials::new("AKID", "topsecret"));
        assert!(printed.contains("AKID"));
        assert!(!printed.contains("topsecret"));
    }
}
