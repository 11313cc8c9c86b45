//! The miner's compute path for one window: inner AdamW steps on the assigned data,
//! pseudo-gradient, SparseLoCo compression with error feedback, signed upload object.

use std::path::Path;

use tch::{Device, Kind, Tensor};
use worker_model::{AdamW, InnerTrainer, SampleDigest, Samples, load_checkpoint, save_checkpoint};
use worker_sparseloco::{ErrorFeedback, GradientPayload, compression_ratio_of_len, decode, encode};

use crate::error::{NodeError, Result};
use crate::gradient_object::{GradientObject, Signer, seal};
use crate::replica::Replica;
use crate::settings::TrainingSettings;
use crate::training_ranks::{RankArgs, TrainingRanks};

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
    pub replica: Replica,
    trainer: InnerTrainer,
    feedback: ErrorFeedback,
    settings: TrainingSettings,
    /// The other processes of this replica, when it trains on several devices.
    ranks: Option<TrainingRanks>,
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
    pub fn new(uid: u16, settings: &TrainingSettings, device: Device) -> Result<Self> {
        let replica = Replica::for_run(settings, device)?;
        let trainer = InnerTrainer::new(settings.adamw(), &replica.model)?;
        let feedback = ErrorFeedback::with_config(replica.specs(), settings.sparseloco(), device)?;
        Ok(Self {
            uid,
            replica,
            trainer,
            feedback,
            settings: settings.clone(),
            ranks: None,
        })
    }

    /// A miner training on `ranks` (rank 0 computes on `device`, the others on theirs): the
    /// inner loop is data-parallel over them; compression, signing and everything else stay
    /// here.
    pub fn with_ranks(
        uid: u16,
        settings: &TrainingSettings,
        device: Device,
        ranks: TrainingRanks,
    ) -> Result<Self> {
        let mut miner = Self::new(uid, settings, device)?;
        miner.trainer = InnerTrainer::data_parallel(
            settings.adamw(),
            &miner.replica.model,
            Box::new(ranks.trainer_group()),
            ranks.sharding().optimizer(),
        )?;
        miner.ranks = Some(ranks);
        Ok(miner)
    }

    /// The miner a node runs: on one device, or on as many ranks as `ranks` asks for.
    pub fn for_node(
        uid: u16,
        settings: &TrainingSettings,
        device: Device,
        ranks: &RankArgs,
    ) -> Result<Self> {
        match ranks.world_size_for(device)? {
            1 => Self::new(uid, settings, device),
            world_size => {
                let started = TrainingRanks::start(ranks, world_size, settings, device)?;
                Self::with_ranks(uid, settings, device, started)
            }
        }
    }

    /// Rank 0's inner optimizer (under ZeRO-1 it holds rank 0's range only).
    pub fn inner_optimizer(&self) -> &AdamW {
        self.trainer.optimizer()
    }

    /// The other ranks of this replica (none on one device).
    pub fn ranks(&self) -> Option<&TrainingRanks> {
        self.ranks.as_ref()
    }

    /// Trains on this window's assignment and returns the signed upload.
    pub fn produce(
        &mut self,
        window: u64,
        dataset: &dyn Samples,
        signer: &dyn Signer,
    ) -> Result<MinerUpload> {
        let (assigned, digest) = self.assignment(dataset, window)?;
        // The next window's shards download while this one trains.
        if let Ok((next, _)) = self.assignment(dataset, window + 1) {
            dataset.prefetch(&next);
        }
        let (pseudo, train_loss) = self.train(dataset, &assigned)?;
        self.compress_and_seal(window, &pseudo, digest, signer, train_loss)
    }

    /// The sample ids this miner must train on in `window`, and their digest.
    pub fn assignment(
        &self,
        dataset: &dyn Samples,
        window: u64,
    ) -> Result<(Vec<u64>, SampleDigest)> {
        assignment(&self.settings, dataset, self.uid, window)
    }

    /// The run's settings this miner trains with.
    pub fn settings(&self) -> &TrainingSettings {
        &self.settings
    }

    /// Runs the window's inner steps on samples `ids`; returns the pseudo-gradients and the
    /// mean inner loss.
    pub fn train(&mut self, dataset: &dyn Samples, ids: &[u64]) -> Result<(Vec<Tensor>, f64)> {
        let steps = dataset.window_steps(
            ids,
            self.settings.inner_steps,
            self.settings.micro_batches,
            self.settings.micro_batch_size,
        )?;
        let trained = self.train_steps(&steps);
        match (trained, &mut self.ranks) {
            (Err(failure), Some(ranks)) => Err(ranks.explain(failure)),
            (trained, _) => trained,
        }
    }

    /// Shares `steps` with the other ranks (if any) and trains on them.
    fn train_steps(&mut self, steps: &[Vec<worker_model::Batch>]) -> Result<(Vec<Tensor>, f64)> {
        if let Some(ranks) = &mut self.ranks {
            ranks.share_window(&mut self.replica.model, self.trainer.optimizer_mut(), steps)?;
        }
        let outcome = self.trainer.train_window(&mut self.replica.model, steps)?;
        Ok((outcome.pseudo_gradients, outcome.mean_loss))
    }

    /// Compresses `pseudo` through the error feedback and seals it as this miner's object
    /// for `window`, claiming the samples of `digest`.
    pub fn compress_and_seal(
        &mut self,
        window: u64,
        pseudo: &[Tensor],
        digest: SampleDigest,
        signer: &dyn Signer,
        train_loss: f64,
    ) -> Result<MinerUpload> {
        let tensors = self.feedback.compress(pseudo)?;
        let payload = GradientPayload {
            window,
            uid: self.uid,
            tensors,
        };
        Ok(self.seal(window, &payload, digest.0, signer, train_loss))
    }

    /// Like [`Miner::compress_and_seal`], but leaves the error feedback as it was (for an
    /// object that is made but must not shape the next windows' compression).
    pub fn compress_and_seal_detached(
        &mut self,
        window: u64,
        pseudo: &[Tensor],
        digest: SampleDigest,
        signer: &dyn Signer,
        train_loss: f64,
    ) -> Result<MinerUpload> {
        let saved = self.feedback.state()?;
        let sealed = self.compress_and_seal(window, pseudo, digest, signer, train_loss);
        self.feedback.load_state(saved)?;
        sealed
    }

    /// Saves model, optimizer and error-feedback state with the last completed `window`,
    /// atomically. A ZeRO-1 replica's optimizer state is gathered from its ranks first, so
    /// the file is the same whatever the world size (and resumes at any).
    pub fn save_checkpoint(&mut self, path: &Path, window: u64) -> Result<()> {
        let state = self.feedback.state()?;
        let names: Vec<String> = (0..state.len())
            .map(|i| format!("error_feedback/{i}"))
            .collect();
        let extra: Vec<(&str, &Tensor)> = names.iter().map(String::as_str).zip(&state).collect();
        let gathered = match &mut self.ranks {
            Some(ranks) if self.trainer.optimizer().shard().is_some() => {
                Some(ranks.gather_optimizer(self.trainer.optimizer(), &self.replica.model)?)
            }
            _ => None,
        };
        let optimizer = gathered.as_ref().unwrap_or(self.trainer.optimizer());
        save_checkpoint(path, window, &self.replica.model, Some(optimizer), &extra)?;
        Ok(())
    }

    /// Restores a checkpoint written by [`Miner::save_checkpoint`]; returns its window.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<u64> {
        // A ZeRO-1 replica reads the full state into a host-side optimizer and hands each
        // rank its range before the next window.
        let mut full = if self.trainer.optimizer().shard().is_some() {
            let zeros = self
                .replica
                .model
                .parameters()
                .iter()
                .map(|p| {
                    Ok(Tensor::f_zeros(
                        p.size().as_slice(),
                        (Kind::Float, Device::Cpu),
                    )?)
                })
                .collect::<Result<Vec<_>>>()?;
            Some(AdamW::from_state(
                self.settings.adamw(),
                0,
                zeros.iter().map(Tensor::shallow_clone).collect(),
                zeros.iter().map(Tensor::zeros_like).collect(),
            ))
        } else {
            None
        };
        let optimizer = match &mut full {
            Some(full) => full,
            None => self.trainer.optimizer_mut(),
        };
        let loaded = load_checkpoint(path, &mut self.replica.model, Some(optimizer))?;
        // Stored tensors come back sorted by name ("error_feedback/10" before "/2"): order
        // them by index and require exactly 0..n.
        let mut indexed = Vec::with_capacity(loaded.extra.len());
        for (name, tensor) in loaded.extra {
            let index = name
                .strip_prefix("error_feedback/")
                .and_then(|i| i.parse::<usize>().ok())
                .ok_or_else(|| {
                    NodeError::Config(format!(
                        "checkpoint {} holds unexpected tensor {name:?}",
                        path.display()
                    ))
                })?;
            indexed.push((index, tensor));
        }
        indexed.sort_by_key(|(index, _)| *index);
        if indexed
            .iter()
            .enumerate()
            .any(|(i, (index, _))| i != *index)
        {
            return Err(NodeError::Config(format!(
                "checkpoint {} has gaps or duplicates in its error feedback",
                path.display()
            )));
        }
        let state: Vec<Tensor> = indexed.into_iter().map(|(_, t)| t).collect();
        self.feedback.load_state(state)?;
        if let Some(ranks) = &mut self.ranks {
            ranks.optimizer_replaced(full);
        }
        Ok(loaded.window)
    }

    /// An all-zero update of the model's shapes.
    pub fn zero_update(&self) -> Result<Vec<Tensor>> {
        Ok(self
            .replica
            .model
            .parameters()
            .iter()
            .map(Tensor::zeros_like)
            .collect())
    }

    /// Re-seals another miner's object `theirs` as this miner's own (what a copier does;
    /// the validator's copy detection must catch it).
    pub fn reseal(
        &self,
        window: u64,
        theirs: &[u8],
        digest: SampleDigest,
        signer: &dyn Signer,
    ) -> Result<MinerUpload> {
        let object = GradientObject::parse(theirs, usize::MAX)?;
        let mut payload = decode(&object.payload, self.replica.specs())?;
        // Re-stamped wholly as this miner's object of `window` (a stale copy of an older
        // window's object passes every header check).
        payload.uid = self.uid;
        payload.window = window;
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
            // The ratio of the bytes just encoded (sizing them again would rerun the coders).
            compression_ratio: compression_ratio_of_len(bytes.len(), self.replica.specs()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use worker_chain::Keypair;
    use worker_model::{CorpusSplit, open_bundled};

    fn settings() -> TrainingSettings {
        let mut m = run_manifest::RunManifest::reference("miner-ckpt", "tiny");
        m.training.inner_steps = 1;
        m.training.micro_batch_size = 2;
        m.training.batch_size = 2;
        let run = run_manifest::verify(m, "test", None).unwrap();
        TrainingSettings::from_manifest(&run)
    }

    /// The tiny model has more than ten tensors, so the stored names sort out of index
    /// order ("error_feedback/10" before "/2"); a restart must restore them in order.
    #[test]
    fn a_checkpoint_restores_model_optimizer_and_error_feedback() {
        let s = settings();
        let dataset = open_bundled(CorpusSplit::Train, s.model_config().seq_len as usize).unwrap();
        let key = Keypair::from_dev_name("ckpt-miner");
        let mut miner = Miner::new(1, &s, Device::Cpu).unwrap();
        assert!(miner.replica.specs().len() > 10);
        miner.produce(0, &dataset, &key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("miner.ckpt");
        miner.save_checkpoint(&path, 0).unwrap();

        let mut restored = Miner::new(1, &s, Device::Cpu).unwrap();
        assert_eq!(restored.load_checkpoint(&path).unwrap(), 0);
        for (a, b) in miner
            .feedback
            .state()
            .unwrap()
            .iter()
            .zip(&restored.feedback.state().unwrap())
        {
            assert!(a.equal(b));
        }
        // Both continue identically: same next object, byte for byte.
        let next = miner.produce(1, &dataset, &key).unwrap();
        let again = restored.produce(1, &dataset, &key).unwrap();
        assert_eq!(next.payload_bytes, again.payload_bytes);
        let (a, b) = (
            GradientObject::parse(&next.object, usize::MAX).unwrap(),
            GradientObject::parse(&again.object, usize::MAX).unwrap(),
        );
        assert_eq!(a.payload, b.payload);
    }
}
