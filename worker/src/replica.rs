//! The model replica every participant keeps in lockstep: same initial weights, same
//! aggregated outer updates.

use std::path::Path;

use tch::{Device, Tensor};
use worker_model::{Llama, LlamaConfig, load_checkpoint, save_checkpoint};
use worker_sparseloco::{GradientPayload, ParamSpec, SparseLocoConfig, aggregate_with_config};

use run_manifest::ManifestHash;

use crate::error::Result;

/// Values sampled per parameter tensor for the sync check.
pub const SYNC_VALUES_PER_TENSOR: usize = 4;
/// Seed of the sampled positions.
const SYNC_SAMPLE_SEED: u64 = 0;

/// What every peer object of the run is checked against: the run manifest it must be made
/// under and the parameter shapes its payload must decode to. Cheap to clone, so a gather
/// can run beside training without borrowing the model.
#[derive(Debug, Clone)]
pub struct ObjectRules {
    specs: Vec<ParamSpec>,
    run_manifest: ManifestHash,
}

impl ObjectRules {
    /// The parameter names and shapes every payload is validated against.
    pub fn specs(&self) -> &[ParamSpec] {
        &self.specs
    }

    /// The run manifest every object must be signed under.
    pub fn run_manifest(&self) -> ManifestHash {
        self.run_manifest
    }
}

/// A participant's copy of the global model.
pub struct Replica {
    pub model: Llama,
    rules: ObjectRules,
    sparseloco: SparseLocoConfig,
}

impl Replica {
    /// A fresh replica with the run's initial weights.
    pub fn new(
        config: LlamaConfig,
        device: Device,
        model_seed: u64,
        sparseloco: SparseLocoConfig,
        run_manifest: ManifestHash,
    ) -> Result<Self> {
        let model = Llama::new(config, device, model_seed)?;
        let specs = model
            .param_specs()
            .into_iter()
            .map(|(name, shape)| ParamSpec::new(name, shape))
            .collect();
        Ok(Self {
            model,
            rules: ObjectRules {
                specs,
                run_manifest,
            },
            sparseloco,
        })
    }

    /// A fresh replica of the run `settings` describe (its model, seed, compression and
    /// manifest).
    pub fn for_run(settings: &crate::settings::TrainingSettings, device: Device) -> Result<Self> {
        Self::new(
            settings.model_config(),
            device,
            settings.model_seed,
            settings.sparseloco(),
            settings.manifest_hash(),
        )
    }

    /// The parameter names and shapes every payload is validated against.
    pub fn specs(&self) -> &[ParamSpec] {
        self.rules.specs()
    }

    /// What peers' objects are checked against.
    pub fn rules(&self) -> &ObjectRules {
        &self.rules
    }

    /// The compression settings of the run.
    pub fn sparseloco(&self) -> &SparseLocoConfig {
        &self.sparseloco
    }

    /// The run manifest this replica follows; every object it signs or accepts carries it.
    pub fn run_manifest(&self) -> ManifestHash {
        self.rules.run_manifest()
    }

    /// Dense aggregated update of the given (already validated) peer payloads.
    pub fn aggregate(&self, payloads: &[GradientPayload]) -> Result<Vec<Tensor>> {
        Ok(aggregate_with_config(
            payloads,
            self.specs(),
            &self.sparseloco,
            self.model.device(),
        )?)
    }

    /// The outer step: aggregates `payloads` and applies `theta -= lr * update`.
    /// Does nothing when no peer contributed.
    pub fn outer_step(&mut self, payloads: &[GradientPayload], lr: f64) -> Result<()> {
        if payloads.is_empty() {
            return Ok(());
        }
        let update = self.aggregate(payloads)?;
        self.model.apply_update(&update, lr)?;
        Ok(())
    }

    /// A small deterministic sample of the parameters ([`SYNC_VALUES_PER_TENSOR`] seeded
    /// positions per tensor, the same for every participant), published at the start of
    /// each window so a validator can tell how far behind a peer is.
    pub fn sync_sample(&self) -> Result<Vec<f32>> {
        Ok(self
            .model
            .parameter_sample(SYNC_SAMPLE_SEED, SYNC_VALUES_PER_TENSOR)?)
    }

    /// Writes the model (atomic, checksummed) as the state after `window`'s outer step.
    pub fn save_model(&self, path: &Path, window: u64) -> Result<()> {
        save_checkpoint(path, window, &self.model, None, &[])?;
        Ok(())
    }

    /// Loads a model checkpoint (a node's own or the lead's published one); returns the
    /// window whose outer step it follows. The model is untouched when the file is refused.
    pub fn load_model(&mut self, path: &Path) -> Result<u64> {
        Ok(load_checkpoint(path, &mut self.model, None)?.window)
    }

    /// Length of [`Replica::sync_sample`].
    pub fn sync_len(&self) -> usize {
        self.specs().len() * SYNC_VALUES_PER_TENSOR
    }
}
