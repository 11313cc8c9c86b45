//! The sections of a [`crate::RunManifest`]: what every participant of a run must agree on.
//!
//! Every field is required (`deny_unknown_fields`, no serde defaults): a manifest says
//! everything, so two participants can only agree by holding the same document.

use serde::{Deserialize, Serialize};
use worker_gauntlet::GauntletConfig;

use crate::compression::SparseLocoConfig;
pub use crate::data_source::{DatasetRef, Sampling};
use crate::model_shape::LlamaConfig;

/// Seeds shared by everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Seeds {
    /// Mixed into every per-(uid, window) data assignment and the validators' sampling.
    pub run: u64,
    /// Seed of the initial weights (identical for every peer).
    pub model: u64,
}

/// The model architecture: a named preset or every dimension spelled out (never both, never
/// a preset silently filled in under explicit dimensions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelSection {
    /// One of [`crate::model_shape::PRESET_NAMES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// The full shape (every field of [`LlamaConfig`], snake_case as in Hugging Face).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<LlamaConfig>,
}

impl ModelSection {
    /// A preset by name.
    pub fn preset(name: &str) -> Self {
        Self {
            preset: Some(name.to_owned()),
            config: None,
        }
    }

    /// The shape this section describes, when it describes exactly one.
    pub fn resolve(&self) -> Option<LlamaConfig> {
        match (&self.preset, &self.config) {
            (Some(name), None) => LlamaConfig::preset(name),
            (None, Some(config)) => Some(config.clone()),
            _ => None,
        }
    }
}

/// Where the training data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum DataSection {
    /// The public-domain corpus bundled with the worker (vocabulary of 2048 tokens).
    Bundled {},
    /// A pre-tokenized dataset on S3 or a directory, pinned by its manifest's SHA-256.
    Dataset(DatasetRef),
}

/// Window timing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowSection {
    /// Blocks per window (one outer step).
    pub blocks_per_window: u64,
    /// Grace period: seconds after the window's last block (the boundary that closes it)
    /// until which its gradient uploads are accepted (Templar: 70). Uploads are accepted
    /// from the window's first block on.
    pub upload_deadline_secs: u64,
}

/// Inner AdamW training and the outer step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrainingSection {
    /// Inner AdamW steps per window (H).
    pub inner_steps: u32,
    /// Samples per forward/backward pass.
    pub micro_batch_size: u32,
    /// Samples per inner step (a multiple of `microBatchSize`; the rest is accumulated).
    pub batch_size: u32,
    /// Peak inner learning rate.
    pub inner_lr: f64,
    /// Linear warmup steps (counted over all windows).
    pub warmup_steps: u64,
    /// Inner steps after which the cosine schedule reaches its floor.
    pub total_steps: u64,
    /// Floor of the cosine schedule as a fraction of the peak.
    pub min_lr_ratio: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Gradient-norm clip; 0 disables it.
    pub grad_clip: f64,
    /// Outer SGD learning rate applied to the aggregated pseudo-gradient.
    pub outer_lr: f64,
}

impl TrainingSection {
    /// Micro-batches accumulated per inner step (valid manifests divide evenly).
    pub fn accumulation(&self) -> u32 {
        self.batch_size / self.micro_batch_size.max(1)
    }

    /// Samples one peer trains on per window.
    pub fn samples_per_window(&self) -> u64 {
        u64::from(self.inner_steps) * u64::from(self.batch_size)
    }
}

/// SparseLoCo compression of the pseudo-gradients.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SparseLocoSection {
    /// Entries kept per chunk.
    pub topk: i64,
    /// Chunk edge (largest divisor at most this, per dimension; at most 64).
    pub chunk: i64,
    /// Error-feedback decay.
    pub error_feedback_decay: f64,
    /// Bits per quantized value (2).
    pub quantization_bits: u8,
}

impl SparseLocoSection {
    /// The compression configuration.
    pub fn config(&self) -> SparseLocoConfig {
        SparseLocoConfig {
            chunk: self.chunk,
            topk: self.topk,
            error_decay: self.error_feedback_decay,
        }
    }
}

/// How validators evaluate peers (all validators of a run score alike).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GauntletSection {
    /// Peers evaluated per window.
    pub peers_per_window: u32,
    /// Micro-batches of data used per evaluated peer (assigned and random each).
    pub eval_batches: u32,
    /// Learning rate a single peer's update is applied with when it is measured.
    pub eval_lr_factor: f64,
    /// Moving-average factor of the assigned-vs-random indicator; also the memory of the
    /// assignment evidence the final score uses (each observation's weight decays by
    /// `1 - alpha` per later one).
    pub binary_score_alpha: f64,
    /// Steps behind at which the sync score reaches 0.
    pub sync_max_steps_behind: f64,
    /// Peers in the aggregation list.
    pub top_peers: u32,
    /// Reserve peers after them.
    pub reserve_peers: u32,
}

impl GauntletSection {
    /// The Gauntlet configuration: these fields over the Gauntlet's own defaults.
    pub fn config(&self) -> GauntletConfig {
        GauntletConfig {
            sample_size: self.peers_per_window as usize,
            binary_ma_alpha: self.binary_score_alpha,
            sync_max_steps_behind: self.sync_max_steps_behind,
            peer_list_size: self.top_peers as usize,
            peer_list_reserve: self.reserve_peers as usize,
            ..GauntletConfig::default()
        }
    }
}

/// Weight setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightsSection {
    /// Set (or commit) weights every this many windows.
    pub interval_windows: u64,
    /// Version key sent with the weights (the subnet's `WeightsVersionKey`).
    pub version_key: u64,
}
