//! Pre-tokenized shard datasets for training runs.
//!
//! * [`DatasetManifest`]: `dataset.json`, listing every shard with its size and SHA-256, the
//!   tokenizer, vocabulary and EOS; its canonical SHA-256 is what a run manifest pins.
//! * [`ShardSource`]: a directory ([`DirSource`]) or an S3 prefix ([`S3Source`]); sources
//!   read named objects only, nothing lists a dataset.
//! * [`ShardCache`]: a bounded local directory of verified shards, LRU-evicted.
//! * [`ShardedDataset`]: `worker_model::Samples` over fetched, memory-mapped shards, with the
//!   run's assignment ([`Assigner`]: every sample, or a rotating shard window).
//! * [`open_for_run`]: from a run manifest's `data` section to its dataset.
//! * [`prepare`] / [`upload`] / [`inspect`]: `worker data prepare` and `worker data inspect`.

pub mod cache;
pub mod dataset;
mod documents;
pub mod error;
pub mod layout;
pub mod manifest;
pub mod open;
pub mod prepare;
pub mod publish;
pub mod sampling;
pub mod source;
pub mod testing;

pub use cache::{CacheOutcome, ShardCache};
pub use dataset::{ShardedDataset, Split};
pub use error::{DataError, Result};
pub use layout::SampleLayout;
pub use manifest::{
    DATASET_FORMAT_VERSION, DATASET_MANIFEST_FILE, DatasetManifest, DocumentBoundary, ShardEntry,
    ShardWidth, TokenizerEntry,
};
pub use open::{BUNDLED_DATASET_SHA256, DataArgs, open_for_run, read_manifest, source_for};
pub use prepare::{PrepareOptions, PrepareOutcome, Progress, prepare};
pub use publish::{UploadOutcome, inspect, upload};
pub use sampling::Assigner;
pub use source::{DirSource, S3Access, S3Source, ShardSource};
