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
    #[arg(long, env = "ERROR_FEEDBACK_DECAY", default_value_t = 0.95)]
    pub error_decay: f64,
    /// Inner AdamW weight decay.
    #[arg(long, env = "WEIGHT_DECAY", default_value_t = 0.1)]
    pub weight_decay: f64,
    /// Inner gradient-norm clip (0 disables).
    #[arg(long, env = "GRAD_CLIP", default_value_t = 1.0)]
    pub grad_clip: f64,
    /// Samples per inner step; when set, the micro-batches accumulated per step are
    /// `batch_size / micro_batch_size` (it must divide evenly).
    #[arg(long, env = "BATCH_SIZE")]
    pub batch_size: Option<usize>,
    /// Bits per quantized value on the wire (SparseLoCo uses 2).
    #[arg(long, env = "QUANTIZATION_BITS", default_value_t = 2,
          value_parser = clap::value_parser!(u8).range(2..=2))]
    pub quantization_bits: u8,
    #[command(flatten)]
    pub model_overrides: ModelOverrides,
}

/// Optional changes to the preset's shape (custom models).
#[derive(Debug, Clone, Default, Args)]
pub struct ModelOverrides {
    #[arg(long, env = "MODEL_HIDDEN_SIZE")]
    pub hidden_size: Option<i64>,
    #[arg(long, env = "MODEL_NUM_LAYERS")]
    pub num_layers: Option<i64>,
    #[arg(long, env = "MODEL_NUM_HEADS")]
    pub num_heads: Option<i64>,
    #[arg(long, env = "MODEL_NUM_KV_HEADS")]
    pub num_kv_heads: Option<i64>,
    #[arg(long, env = "MODEL_INTERMEDIATE_SIZE")]
    pub intermediate_size: Option<i64>,
    #[arg(long, env = "MODEL_VOCAB_SIZE")]
    pub vocab_size: Option<i64>,
    #[arg(long, env = "MODEL_MAX_SEQ_LEN")]
    pub max_seq_len: Option<i64>,
}

impl TrainingSettings {
    /// The model configuration of the chosen preset.
    pub fn model_config(&self) -> Result<LlamaConfig, String> {
        let mut config = LlamaConfig::preset(&self.model).ok_or_else(|| {
            format!(
                "unknown model preset {:?} (expected tiny, 150m, 1b, 8b or 70b)",
                self.model
            )
        })?;
        let o = &self.model_overrides;
        if let Some(v) = o.hidden_size {
            config.hidden_size = v;
        }
        if let Some(v) = o.num_layers {
            config.num_hidden_layers = v;
        }
        if let Some(v) = o.num_heads {
            config.num_attention_heads = v;
        }
        if let Some(v) = o.num_kv_heads {
            config.num_key_value_heads = v;
        }
        if o.hidden_size.is_some() || o.num_heads.is_some() {
            let heads = config.num_attention_heads;
            if heads <= 0 || config.hidden_size % heads != 0 {
                return Err(format!(
                    "hidden size {} is not a multiple of {heads} attention heads",
                    config.hidden_size
                ));
            }
            config.head_dim = config.hidden_size / heads;
        }
        if let Some(v) = o.intermediate_size {
            config.intermediate_size = v;
        }
        if let Some(v) = o.vocab_size {
            config.vocab_size = v;
        }
        if let Some(v) = o.max_seq_len {
            config.max_position_embeddings = v;
            config.seq_len = config.seq_len.min(v);
        }
        config
            .validate()
            .map_err(|err| format!("model configuration: {err}"))?;
        Ok(config)
    }

    /// Micro-batches accumulated per inner step, from `batch_size` when it is given.
    pub fn accumulation(&self) -> Result<usize, String> {
        match self.batch_size {
            None => Ok(self.micro_batches),
            Some(batch)
                if self.micro_batch_size > 0 && batch % self.micro_batch_size == 0 && batch > 0 =>
            {
                Ok(batch / self.micro_batch_size)
            }
            Some(batch) => Err(format!(
                "batch size {batch} is not a positive multiple of the micro-batch size {}",
                self.micro_batch_size
            )),
        }
    }

    /// Checks the settings and folds `batch_size` into `micro_batches`.
    pub fn resolved(mut self) -> Result<Self, String> {
        self.micro_batches = self.accumulation()?;
        self.batch_size = None;
        self.model_config()?;
        self.sparseloco()
            .validate()
            .map_err(|err| format!("sparseloco settings: {err}"))?;
        Ok(self)
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
            weight_decay: self.weight_decay,
            grad_clip: (self.grad_clip > 0.0).then_some(self.grad_clip),
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        settings: TrainingSettings,
    }

    fn parse(args: &[&str]) -> TrainingSettings {
        Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()))
            .unwrap()
            .settings
    }

    #[test]
    fn batch_size_sets_accumulation_and_must_divide() {
        let s = parse(&["--micro-batch-size", "4", "--batch-size", "16"])
            .resolved()
            .unwrap();
        assert_eq!(s.micro_batches, 4);
        assert_eq!(s.samples_per_window(), 30 * 16);
        let err = parse(&["--micro-batch-size", "4", "--batch-size", "10"])
            .resolved()
            .unwrap_err();
        assert!(err.contains("multiple"), "{err}");
    }

    #[test]
    fn model_overrides_apply_and_are_validated() {
        let s = parse(&["--model", "tiny", "--num-layers", "3"]);
        assert_eq!(s.model_config().unwrap().num_hidden_layers, 3);
        let bad = parse(&["--model", "tiny", "--num-heads", "7"]);
        assert!(bad.model_config().is_err());
        assert!(
            parse(&["--model", "13b"])
                .model_config()
                .unwrap_err()
                .contains("unknown")
        );
        assert!(Cli::try_parse_from(["t", "--quantization-bits", "4"]).is_err());
    }

    #[test]
    fn optimizer_settings_reach_adamw() {
        let s = parse(&["--weight-decay", "0.05", "--grad-clip", "0"]);
        let adamw = s.adamw();
        assert_eq!(adamw.weight_decay, 0.05);
        assert_eq!(adamw.grad_clip, None);
    }
}
