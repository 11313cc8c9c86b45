//! Object storage for the gradient exchange.
//!
//! * [`ObjectStore`]: the backend-neutral async trait (put / get / head / list / delete).
//! * [`S3Store`]: any S3-compatible service through `aws-sdk-s3` (Cloudflare R2, AWS, MinIO,
//!   SeaweedFS) with multipart uploads, retries, timeouts and an upload deadline.
//! * [`LocalStore`]: an embedded backend on a local directory for the devnet.
//! * [`RunLayout`]: where each object of a training run lives.
//! * [`fetch_peers`] / [`delete_old_windows`]: the exchange helpers built on the trait.
//! * [`BucketCredentials`]: the read credentials miners commit on chain (Raw128).
//!
//! Every object carries the SHA-256 of its body (S3 user metadata `x-amz-meta-sha256`, or the
//! header of a local object file) and readers verify it, so a truncated, corrupted or foreign
//! object is never returned as valid data. The on-bucket layout is documented in README.md.

mod checksum;
mod credentials;
mod error;
mod fetch;
mod key;
mod layout;
mod local;
mod retention;
mod s3;
mod store;
#[cfg(feature = "test-util")]
pub mod testing;
mod window;

pub use checksum::{SHA256_METADATA_KEY, file_sha256, sha256_hex};
pub use credentials::{BucketCredentials, CredentialsError, RAW128_LEN};
pub use error::StorageError;
pub use fetch::{FetchPolicy, PeerFetch, PeerFetchResult, fetch_peers};
pub use key::validate_key;
pub use layout::{ObjectKind, ParsedKey, RunLayout};
pub use local::LocalStore;
pub use retention::{RetentionReport, delete_old_windows};
pub use s3::{S3Config, S3Credentials, S3Store};
pub use store::{GetOptions, ObjectMeta, ObjectStore, StoredObject};
pub use window::UploadWindow;
