//! Training hyperparameters shared by miners, validators and the devnet.

use clap::Args;
use worker_model::{AdamWConfig, LlamaConfig, LrSchedule};
use worker_sparseloco::SparseLocoConfig;

/// What every participant of a run must agree on (model, data assignment, SparseLoCo).
#[derive(Debug, Clone, Args)]
pub struct TrainingSettings {
    /// Run identifier: the prefix of every object in storage.
    #[arg(long, env = "RUN_ID", default_value = "devnet")]
    pub run_id: String,
    /// Seed mixed into every per-(uid, window) data assignment.
    #[arg(long, env = "RUN_SEED", default_value_t = 42)]
    pub run_seed: u64,
    /// Model preset: tiny, 150m, 1b, 8b or 70b.
    #[arg(long, env = "MODEL_PRESET", default_value = "tiny")]
    pub model: String,
    /// Seed of the initial weights (identical for every peer).
    #[arg(long, env = "MODEL_SEED", default_value_t = 0)]
    pub model_seed: u64,
    /// Inner AdamW steps per window (H).
    #[arg(long, env = "INNER_STEPS", default_value_t = 30)]
    pub inner_steps: usize,
    /// Samples per micro-batch.
    #[arg(long, env = "MICRO_BATCH_SIZE", default_value_t = 4)]
    pub micro_batch_size: usize,
    /// Micro-batches accumulated per inner step.
    #[arg(long, env = "MICRO_BATCHES", default_value_t = 1)]
    pub micro_batches: usize,
    /// Peak inner learning rate.
    #[arg(long, env = "INNER_LR", default_value_t = 1.17e-4)]
    pub inner_lr: f64,
    /// Inner warmup steps (counted over all windows).
    #[arg(long, env = "WARMUP_STEPS", default_value_t = 500)]
    pub warmup_steps: u64,
    /// Inner steps after which the cosine schedule reaches its floor.
    #[arg(long, env = "TOTAL_STEPS", default_value_t = 100_000)]
    pub total_steps: u64,
    /// Outer SGD learning rate applied to the aggregated pseudo-gradient.
    #[arg(long, env = "OUTER_LR", default_value_t = 0.4)]
    pub outer_lr: f64,
    /// Top-k entries kept per chunk.
    #[arg(long, env = "TOPK", default_value_t = 64)]
    pub topk: i64,
    /// Chunk edge (largest divisor at most this, per dimension).
    #[arg(long, env = "CHUNK", default_value_t = 64)]
    pub chunk: i64,
    /// Error-feedback decay.
    #[arg(long, env = "ERROR_DECAY", default_value_t = 0.95)]
    pub error_decay: f64,
}

impl TrainingSettings {
    /// The model configuration of the chosen preset.
    pub fn model_config(&self) -> Result<LlamaConfig, String> {
        LlamaConfig::preset(&self.model).ok_or_else(|| {
            format!(
                "unknown model preset {:?} (expected tiny, 150m, 1b, 8b or 70b)",
                self.model
            )
        })
    }

    /// The inner optimizer configuration.
    pub fn adamw(&self) -> AdamWConfig {
        AdamWConfig {
            schedule: LrSchedule {
                peak: self.inner_lr,
                warmup_steps: self.warmup_steps,
                total_steps: self.total_steps,
                min_ratio: 0.1,
            },
            ..AdamWConfig::default()
        }
    }

    /// The compression configuration.
    pub fn sparseloco(&self) -> SparseLocoConfig {
        SparseLocoConfig {
            chunk: self.chunk,
            topk: self.topk,
            error_decay: self.error_decay,
        }
    }

    /// Samples one peer trains on per window.
    pub fn samples_per_window(&self) -> usize {
        self.inner_steps * self.micro_batches * self.micro_batch_size
    }
}
