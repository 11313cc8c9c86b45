//! LLaMA trainer on libtorch for the SparseLoCo miner and the Gauntlet validator.
//!
//! * [`Llama`]: Hugging Face-compatible LLaMA decoder (RMSNorm, RoPE, GQA via
//!   `scaled_dot_product_attention`, SwiGLU), fp32 on CPU, bf16 compute + fp32 master
//!   weights on CUDA. Parameters have a stable order ([`LlamaConfig::param_specs`]).
//! * [`InnerTrainer`]: H AdamW steps with gradient accumulation, returning the
//!   pseudo-gradients `theta_before - theta_after` (model restored to `theta_before`);
//!   [`Llama::apply_update`] is the outer step.
//! * [`data`]: memory-mapped token shards, deterministic per-(uid, window) sample
//!   assignment and digests, and the bundled public-domain corpus.
//! * [`checkpoint`] and [`export`]: atomic checksummed checkpoints, HF export.
//!
//! No transport lives here: callers move `Vec<Tensor>`s in parameter order.

pub mod batch;
pub mod checkpoint;
pub use run_manifest::model_shape as config;
pub mod data;
pub mod error;
pub mod export;
pub mod init;
pub mod model;
pub mod optim;
pub mod parallel;
pub mod rope;
pub mod schedule;
pub mod tensor_io;
pub mod trainer;

pub use batch::{Batch, IGNORE_INDEX};
pub use checkpoint::{LoadedCheckpoint, load_checkpoint, save_checkpoint};
pub use config::LlamaConfig;
pub use data::assignment::{
    SampleDigest, assigned_sample_ids, assignment_seed, random_sample_ids, sample_ids,
};
pub use data::corpus::{CorpusMetadata, CorpusSplit, bundled_corpus, open_bundled};
pub use data::dataset::{AssignedWindow, TokenDataset, WindowShape};
pub use data::samples::Samples;
pub use data::shard::{TokenShard, TokenWidth};
pub use error::{ModelError, Result};
pub use export::export_hf;
pub use model::{Llama, ParamSnapshot, Precision};
pub use optim::{AdamW, AdamWConfig, StepStats};
pub use parallel::{Collectives, OptimizerSharding};
pub use schedule::LrSchedule;
pub use trainer::{InnerTrainer, WindowOutcome};
