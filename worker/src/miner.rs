//! The miner's compute path for one window: inner AdamW steps on the assigned data,
//! pseudo-gradient, SparseLoCo compression with error feedback, signed upload object.

use std::path::Path;

use tch::{Device, Tensor};
use worker_model::{InnerTrainer, SampleDigest, Samples, load_checkpoint, save_checkpoint};
use worker_sparseloco::{ErrorFeedback, GradientPayload, compression_ratio, decode, encode};

use crate::behaviour::Behaviour;
use crate::error::{NodeError, Result};
use crate::gradient_object::{GradientObject, Signer, seal};
use crate::replica::Replica;
use crate::settings::TrainingSettings;

/// Factor a poisoner multiplies its update with.
const POISON_SCALE: f64 = 1.0e4;
/// Uid offset a wrong-data miner takes its samples from.
const WRONG_DATA_UID_OFFSET: u16 = 1000;

/// What a miner produced for one window.
#[derive(Debug)]
pub struct MinerUpload {
    /// The signed object to upload.
    pub object: Vec<u8>,
    /// Mean inner-loop loss (NaN when the miner did not train).
    pub train_loss: f64,
    /// Wire bytes of the SparseLoCo payload.
    pub payload_bytes: usize,
    /// Dense fp32 bytes / wire bytes.
    pub compression_ratio: f64,
}

/// A miner: a replica of the global model plus its private optimizer and error feedback.
pub struct Miner {
    pub uid: u16,
    pub behaviour: Behaviour,
    pub replica: Replica,
    trainer: InnerTrainer,
    feedback: ErrorFeedback,
    settings: TrainingSettings,
}

/// The sample ids `uid` must train on in `window`, and their digest.
pub fn assignment(
    settings: &TrainingSettings,
    dataset: &dyn Samples,
    uid: u16,
    window: u64,
) -> Result<(Vec<u64>, SampleDigest)> {
    let ids = dataset.assigned_ids(
        settings.run_seed,
        uid,
        window,
        settings.samples_per_window(),
    )?;
    let digest = SampleDigest::of(&ids);
    Ok((ids, digest))
}

impl Miner {
    /// A miner starting from the run's initial weights.
    pub fn new(
        uid: u16,
        behaviour: Behaviour,
        settings: &TrainingSettings,
        device: Device,
    ) -> Result<Self> {
        let replica = Replica::for_run(settings, device)?;
        let trainer = InnerTrainer::new(settings.adamw(), &replica.model)?;
        let feedback = ErrorFeedback::with_config(replica.specs(), settings.sparseloco(), device)?;
        Ok(Self {
            uid,
            behaviour,
            replica,
            trainer,
            feedback,
            settings: settings.clone(),
        })
    }

    /// Trains (or cheats) for `window` and returns the signed upload.
    /// `victim` is the object a copycat re-uploads.
    pub fn produce(
        &mut self,
        window: u64,
        dataset: &dyn Samples,
        signer: &dyn Signer,
        victim: Option<&[u8]>,
    ) -> Result<MinerUpload> {
        let (assigned, digest) = assignment(&self.settings, dataset, self.uid, window)?;
        // The next window's shards download while this one trains.
        if let Ok((next, _)) = assignment(&self.settings, dataset, self.uid, window + 1) {
            dataset.prefetch(&next);
        }
        if self.behaviour == Behaviour::Copycat
            && let Some(victim) = victim
        {
            return self.copy(window, victim, digest, signer);
        }
        let (pseudo, train_loss) = match self.behaviour {
            Behaviour::Lazy | Behaviour::Copycat => (self.zero_update()?, f64::NAN),
            _ => {
                let ids = if self.behaviour == Behaviour::WrongData {
                    assignment(
                        &self.settings,
                        dataset,
                        self.uid.wrapping_add(WRONG_DATA_UID_OFFSET),
                        window,
                    )?
                    .0
                } else {
                    assigned
                };
                let steps = dataset.window_steps(
                    &ids,
                    self.settings.inner_steps,
                    self.settings.micro_batches,
                    self.settings.micro_batch_size,
                )?;
                let outcome = self.trainer.train_window(&mut self.replica.model, &steps)?;
                (outcome.pseudo_gradients, outcome.mean_loss)
            }
        };
        let pseudo = if self.behaviour == Behaviour::Poisoner {
            pseudo
                .iter()
                .map(|t| t.f_mul_scalar(POISON_SCALE))
                .collect::<Result<Vec<_>, _>>()?
        } else {
            pseudo
        };
        let tensors = self.feedback.compress(&pseudo)?;
        let payload = GradientPayload {
            window,
            uid: self.uid,
            tensors,
        };
        Ok(self.seal(window, &payload, digest.0, signer, train_loss))
    }

    /// Saves model, optimizer and error-feedback state with the last completed `window`,
    /// atomically.
    pub fn save_checkpoint(&self, path: &Path, window: u64) -> Result<()> {
        let state = self.feedback.state()?;
        let names: Vec<String> = (0..state.len())
            .map(|i| format!("error_feedback/{i}"))
            .collect();
        let extra: Vec<(&str, &Tensor)> = names.iter().map(String::as_str).zip(&state).collect();
        save_checkpoint(
            path,
            window,
            &self.replica.model,
            Some(self.trainer.optimizer()),
            &extra,
        )?;
        Ok(())
    }

    /// Restores a checkpoint written by [`Miner::save_checkpoint`]; returns its window.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<u64> {
        let loaded = load_checkpoint(
            path,
            &mut self.replica.model,
            Some(self.trainer.optimizer_mut()),
        )?;
        let mut state = Vec::with_capacity(loaded.extra.len());
        for (i, (name, tensor)) in loaded.extra.into_iter().enumerate() {
            if name != format!("error_feedback/{i}") {
                return Err(NodeError::Config(format!(
                    "checkpoint {} holds unexpected tensor {name:?}",
                    path.display()
                )));
            }
            state.push(tensor);
        }
        self.feedback.load_state(state)?;
        Ok(loaded.window)
    }

    fn zero_update(&self) -> Result<Vec<Tensor>> {
        Ok(self
            .replica
            .model
            .parameters()
            .iter()
            .map(Tensor::zeros_like)
            .collect())
    }

    fn copy(
        &self,
        window: u64,
        victim: &[u8],
        digest: SampleDigest,
        signer: &dyn Signer,
    ) -> Result<MinerUpload> {
        let object = GradientObject::parse(victim, usize::MAX)?;
        let mut payload = decode(&object.payload, self.replica.specs())?;
        payload.uid = self.uid;
        Ok(self.seal(window, &payload, digest.0, signer, f64::NAN))
    }

    fn seal(
        &self,
        window: u64,
        payload: &GradientPayload,
        digest: [u8; 32],
        signer: &dyn Signer,
        train_loss: f64,
    ) -> MinerUpload {
        let bytes = encode(payload);
        MinerUpload {
            object: seal(
                self.replica.run_manifest(),
                window,
                self.uid,
                digest,
                &bytes,
                signer,
            ),
            train_loss,
            payload_bytes: bytes.len(),
            compression_ratio: compression_ratio(payload, self.replica.specs()),
        }
    }
}
