//! The S3 backend on `aws-sdk-s3`.

mod client;
mod config;
mod errors;
mod multipart;
mod store;

pub use config::{S3Config, S3Credentials};
pub use store::S3Store;
