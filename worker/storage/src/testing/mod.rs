//! Test utilities (feature `test-util`): a throwaway SeaweedFS S3 server, a TCP proxy that
//! stalls or counts traffic, and a store whose downloads fail on demand. Not for production
//! use.

mod failing_reads;
mod proxy;
mod seaweedfs;

pub use failing_reads::FailingReads;
pub use proxy::{ProxyMode, TestProxy};
pub use seaweedfs::{SeaweedFs, SeaweedFsError, unique_name};
