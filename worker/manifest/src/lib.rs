//! The run manifest: one versioned JSON document holding every protocol setting that must be
//! identical for all participants of a run (miners, validators, the operator, the devnet),
//! the single home of their validation rules, and its SHA-256 identity.
//!
//! ```
//! use run_manifest::{RunManifest, parse};
//! let json = RunManifest::reference("my-run", "tiny").to_json_pretty();
//! let run = parse(&json, "example", None).unwrap();
//! assert_eq!(run.manifest().run_id, "my-run");
//! assert_eq!(run.hash().to_hex().len(), 64);
//! ```
//!
//! The crate is free of tensors and I/O beyond reading one file, so the operator links it
//! and rejects exactly what a worker would.

pub mod compression;
pub mod data_source;
pub mod deployment;
pub mod identity;
pub mod load;
pub mod model_shape;
pub mod rules;
pub mod sections;

use serde::{Deserialize, Serialize};

pub use compression::{MAX_CHUNK_EDGE, QUANTIZATION_BITS, SparseLocoConfig};
pub use data_source::{BadUri, DatasetAccess, DatasetRef, DatasetUri, Sampling};
pub use identity::{BadHash, ManifestHash, canonical_json};
pub use load::{ManifestError, load_file, parse, verify};
pub use model_shape::{LlamaConfig, PRESET_NAMES};
pub use rules::{FieldError, check_run_id, validate};
pub use sections::{
    DataSection, GauntletSection, ModelSection, Seeds, SparseLocoSection, TrainingSection,
    WeightsSection, WindowSection,
};

/// The manifest format version this crate reads and writes.
pub const MANIFEST_VERSION: u32 = 1;

/// Object key, at the root of the lead validator's bucket, of the manifest it runs
/// (canonical JSON); miners started without a manifest follow it.
pub const PUBLISHED_MANIFEST_KEY: &str = "run-manifest.json";

/// Everything the participants of one run must agree on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RunManifest {
    /// Format version ([`MANIFEST_VERSION`]).
    pub manifest_version: u32,
    /// Run identifier: the first segment of every object key of the run.
    pub run_id: String,
    /// Seeds.
    pub seeds: Seeds,
    /// Model architecture.
    pub model: ModelSection,
    /// Training data.
    pub data: DataSection,
    /// Window timing.
    pub window: WindowSection,
    /// Inner and outer optimisation.
    pub training: TrainingSection,
    /// Pseudo-gradient compression.
    pub sparseloco: SparseLocoSection,
    /// Peer evaluation.
    pub gauntlet: GauntletSection,
    /// Weight setting.
    pub weights: WeightsSection,
}

impl RunManifest {
    /// The project's reference hyperparameters (Templar-like) for a model preset: a starting
    /// point for a subnet owner's manifest (`worker manifest template`).
    pub fn reference(run_id: &str, preset: &str) -> Self {
        RunManifest {
            manifest_version: MANIFEST_VERSION,
            run_id: run_id.to_owned(),
            seeds: Seeds { run: 42, model: 0 },
            model: ModelSection::preset(preset),
            data: DataSection::Bundled {},
            window: WindowSection {
                blocks_per_window: 115,
                upload_deadline_secs: 70,
            },
            training: TrainingSection {
                inner_steps: 30,
                micro_batch_size: 1,
                batch_size: 8,
                inner_lr: 1.17e-4,
                warmup_steps: 500,
                total_steps: 100_000,
                min_lr_ratio: 0.1,
                weight_decay: 0.1,
                grad_clip: 1.0,
                outer_lr: 0.4,
            },
            sparseloco: SparseLocoSection {
                topk: 64,
                chunk: 64,
                error_feedback_decay: 0.95,
                quantization_bits: QUANTIZATION_BITS,
            },
            gauntlet: GauntletSection {
                peers_per_window: 10,
                eval_batches: 4,
                eval_lr_factor: 0.08,
                binary_score_alpha: 0.05,
                sync_max_steps_behind: 3.0,
                top_peers: 20,
                reserve_peers: 10,
            },
            weights: WeightsSection {
                interval_windows: 3,
                version_key: 0,
            },
        }
    }

    /// Pretty JSON, as a user would write it.
    pub fn to_json_pretty(&self) -> String {
        // Serializing plain data structs with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// A manifest that passed every rule, resolved, with its identity.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedManifest {
    manifest: RunManifest,
    model: LlamaConfig,
    canonical: String,
    hash: ManifestHash,
}

impl VerifiedManifest {
    /// `manifest` with its model spelled out as `model`.
    fn new(manifest: RunManifest, model: LlamaConfig) -> Self {
        let resolved = RunManifest {
            model: ModelSection {
                preset: None,
                config: Some(model.clone()),
            },
            ..manifest
        };
        let value = serde_json::to_value(&resolved).unwrap_or_default();
        let canonical = canonical_json(&value);
        let hash = ManifestHash::of(canonical.as_bytes());
        Self {
            manifest: resolved,
            model,
            canonical,
            hash,
        }
    }

    /// The resolved manifest.
    pub fn manifest(&self) -> &RunManifest {
        &self.manifest
    }

    /// The model shape.
    pub fn model(&self) -> &LlamaConfig {
        &self.model
    }

    /// The canonical JSON encoding (what the hash is taken over, and what is published).
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// SHA-256 of the canonical encoding.
    pub fn hash(&self) -> ManifestHash {
        self.hash
    }
}

#[cfg(test)]
mod tests;
