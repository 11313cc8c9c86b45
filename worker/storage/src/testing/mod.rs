//! Test utilities (feature `test-util`): a throwaway SeaweedFS S3 server and a TCP proxy that
//! stalls or counts traffic. Not for production use.

mod proxy;
mod seaweedfs;

pub use proxy::{ProxyMode, TestProxy};
pub use seaweedfs::{SeaweedFs, SeaweedFsError, unique_name};
