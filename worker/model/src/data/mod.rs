//! Pre-tokenized data: token shards, the sample dataset, per-(uid, window) assignment,
//! and the bundled corpus.

pub mod assignment;
pub mod corpus;
pub mod dataset;
pub mod npy;
pub mod samples;
pub mod shard;
