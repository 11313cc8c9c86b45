//! The training view of a run manifest: what miners, validators and the devnet compute with.
//!
//! Every value comes from one [`VerifiedManifest`]; nothing here has a default of its own.

use run_manifest::{ManifestHash, VerifiedManifest};
use worker_gauntlet::GauntletConfig;
use worker_model::{AdamWConfig, LlamaConfig, LrSchedule};
use worker_sparseloco::SparseLocoConfig;

/// What every participant of a run computes with, taken from its manifest.
#[derive(Debug, Clone)]
pub struct TrainingSettings {
    run: VerifiedManifest,
    /// Run identifier: the prefix of every object in storage.
    pub run_id: String,
    /// Seed mixed into every per-(uid, window) data assignment.
    pub run_seed: u64,
    /// Seed of the initial weights.
    pub model_seed: u64,
    /// Inner AdamW steps per window (H).
    pub inner_steps: usize,
    /// Samples per micro-batch.
    pub micro_batch_size: usize,
    /// Micro-batches accumulated per inner step.
    pub micro_batches: usize,
    /// Outer SGD learning rate.
    pub outer_lr: f64,
}

impl TrainingSettings {
    /// The settings of a verified manifest.
    pub fn from_manifest(run: &VerifiedManifest) -> Self {
        let m = run.manifest();
        Self {
            run: run.clone(),
            run_id: m.run_id.clone(),
            run_seed: m.seeds.run,
            model_seed: m.seeds.model,
            inner_steps: m.training.inner_steps as usize,
            micro_batch_size: m.training.micro_batch_size as usize,
            micro_batches: m.training.accumulation() as usize,
            outer_lr: m.training.outer_lr,
        }
    }

    /// The manifest these settings come from.
    pub fn manifest(&self) -> &VerifiedManifest {
        &self.run
    }

    /// The manifest's identity, carried by every object of the run.
    pub fn manifest_hash(&self) -> ManifestHash {
        self.run.hash()
    }

    /// The model shape.
    pub fn model_config(&self) -> LlamaConfig {
        self.run.model().clone()
    }

    /// The inner optimizer configuration.
    pub fn adamw(&self) -> AdamWConfig {
        let t = &self.run.manifest().training;
        AdamWConfig {
            schedule: LrSchedule {
                peak: t.inner_lr,
                warmup_steps: t.warmup_steps,
                total_steps: t.total_steps,
                min_ratio: t.min_lr_ratio,
            },
            weight_decay: t.weight_decay,
            grad_clip: (t.grad_clip > 0.0).then_some(t.grad_clip),
            ..AdamWConfig::default()
        }
    }

    /// The compression configuration.
    pub fn sparseloco(&self) -> SparseLocoConfig {
        self.run.manifest().sparseloco.config()
    }

    /// The Gauntlet configuration validators score with.
    pub fn gauntlet(&self) -> GauntletConfig {
        self.run.manifest().gauntlet.config()
    }

    /// Blocks per window.
    pub fn blocks_per_window(&self) -> u64 {
        self.run.manifest().window.blocks_per_window
    }

    /// Seconds after a window boundary during which uploads are accepted.
    pub fn upload_deadline_secs(&self) -> u64 {
        self.run.manifest().window.upload_deadline_secs
    }

    /// Samples one peer trains on per window.
    pub fn samples_per_window(&self) -> usize {
        self.inner_steps * self.micro_batches * self.micro_batch_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use run_manifest::{RunManifest, verify};

    #[test]
    fn every_value_comes_from_the_manifest() {
        let mut m = RunManifest::reference("r", "tiny");
        m.training.micro_batch_size = 4;
        m.training.batch_size = 16;
        m.training.weight_decay = 0.05;
        m.training.grad_clip = 0.0;
        m.training.min_lr_ratio = 0.2;
        m.sparseloco.topk = 32;
        m.gauntlet.peers_per_window = 3;
        let s = TrainingSettings::from_manifest(&verify(m, "t", None).unwrap());
        assert_eq!(s.micro_batches, 4);
        assert_eq!(s.samples_per_window(), 30 * 16);
        let adamw = s.adamw();
        assert_eq!(adamw.weight_decay, 0.05);
        assert_eq!(adamw.grad_clip, None);
        assert_eq!(adamw.schedule.min_ratio, 0.2);
        assert_eq!(s.sparseloco().topk, 32);
        assert_eq!(s.gauntlet().sample_size, 3);
        assert_eq!(s.model_config(), LlamaConfig::tiny());
    }
}
