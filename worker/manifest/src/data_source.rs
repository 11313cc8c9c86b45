//! The `data` section's dataset reference: where a pre-tokenized dataset lives and which one
//! it must be. The URI syntax and its rules live here (the operator refuses what a worker
//! would); reading the dataset is the `worker-data` crate's job.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A dataset named by location and the SHA-256 of its dataset manifest.
///
/// Read credentials never appear here: workers take them from their environment (a
/// Kubernetes secret), so the manifest stays publishable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatasetRef {
    /// `s3://bucket/prefix`, `file:///abs/dir` or an absolute directory (a mounted volume).
    pub uri: String,
    /// SHA-256 (64 hex digits) of the dataset manifest's canonical JSON.
    pub sha256: String,
    /// S3 endpoint URL (R2, MinIO, SeaweedFS); absent for AWS or local directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// S3 signing region; absent means `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Which part of the dataset each window's samples are drawn from.
    pub sampling: Sampling,
}

/// Which shards a window's samples come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Sampling {
    /// Every sample of the dataset is eligible in every window.
    WholeDataset {},
    /// A deterministic set of `shards` shards, redrawn every `rotateEveryWindows` windows;
    /// every participant's samples of a window come from it (fewer shards to fetch).
    #[serde(rename_all = "camelCase")]
    ShardWindow {
        /// Shards in the window.
        shards: u32,
        /// Windows between two redraws.
        rotate_every_windows: u64,
    },
}

/// A parsed dataset URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetUri {
    /// An S3 bucket and key prefix (no leading or trailing `/`; may be empty).
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix the dataset's objects live under.
        prefix: String,
    },
    /// A local directory (absolute).
    Dir(std::path::PathBuf),
}

/// Why a dataset URI is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dataset uri {uri:?}: {reason}")]
pub struct BadUri {
    /// The URI as given.
    pub uri: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl DatasetUri {
    /// Parses `s3://bucket/prefix`, `file:///abs/dir` or `/abs/dir`.
    pub fn parse(uri: &str) -> Result<Self, BadUri> {
        let bad = |reason| BadUri {
            uri: uri.to_owned(),
            reason,
        };
        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.len() < 3
                || bucket.len() > 63
                || !bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            {
                return Err(bad("bucket must be 3-63 characters of [a-z0-9.-]"));
            }
            let prefix = prefix.trim_end_matches('/');
            if prefix.starts_with('/') || prefix.split('/').any(|s| s == "." || s == "..") {
                return Err(bad(
                    "prefix must not start with '/' or hold '.' or '..' segments",
                ));
            }
            if prefix.contains("//") {
                return Err(bad("prefix must not hold empty segments"));
            }
            return Ok(DatasetUri::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.to_owned(),
            });
        }
        let path = uri.strip_prefix("file://").unwrap_or(uri);
        if uri.contains("://") && !uri.starts_with("file://") {
            return Err(bad("scheme must be s3:// or file://"));
        }
        if !path.starts_with('/') {
            return Err(bad("a directory must be absolute"));
        }
        Ok(DatasetUri::Dir(path.into()))
    }
}

impl fmt::Display for DatasetUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatasetUri::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            DatasetUri::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            DatasetUri::Dir(path) => write!(f, "file://{}", path.display()),
        }
    }
}

/// What a worker needs from its deployment to read the run's data: the one place that
/// decides it, for the worker's data loader and the operator's pod spec alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetAccess {
    /// Nothing: the bundled corpus ships with the worker.
    Bundled,
    /// Read credentials for the bucket (S3 has no anonymous access here).
    S3Credentials {
        /// The dataset, for messages.
        uri: String,
    },
    /// The directory, mounted into the worker.
    Directory(std::path::PathBuf),
}

impl crate::sections::DataSection {
    /// What reading this data needs; an unparsable URI is the manifest's error.
    pub fn access(&self) -> Result<DatasetAccess, BadUri> {
        match self {
            crate::sections::DataSection::Bundled {} => Ok(DatasetAccess::Bundled),
            crate::sections::DataSection::Dataset(d) => match DatasetUri::parse(&d.uri)? {
                DatasetUri::S3 { .. } => Ok(DatasetAccess::S3Credentials { uri: d.uri.clone() }),
                DatasetUri::Dir(path) => Ok(DatasetAccess::Directory(path)),
            },
        }
    }
}

/// True for 64 lower-case hex digits.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_or_say_why_not() {
        assert_eq!(
            DatasetUri::parse("s3://my-data/fineweb/v1/").unwrap(),
            DatasetUri::S3 {
                bucket: "my-data".into(),
                prefix: "fineweb/v1".into()
            }
        );
        assert_eq!(
            DatasetUri::parse("s3://my-data").unwrap().to_string(),
            "s3://my-data"
        );
        assert_eq!(
            DatasetUri::parse("file:///mnt/data").unwrap(),
            DatasetUri::Dir("/mnt/data".into())
        );
        assert_eq!(
            DatasetUri::parse("/mnt/data").unwrap(),
            DatasetUri::Dir("/mnt/data".into())
        );
        for bad in [
            "s3://UPPER/x",
            "s3://ab",
            "s3://bucket//x",
            "s3://bucket/../x",
            "http://x/y",
            "relative/dir",
            "file://relative",
        ] {
            assert!(DatasetUri::parse(bad).is_err(), "{bad}");
        }
    }
}
