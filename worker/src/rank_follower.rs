//! `worker rank`: a rank `1..world_size` of a multi-rank replica (see
//! [`crate::training_ranks`]). It builds the run's model from the manifest rank 0 sends, joins
//! the group, and then, window after window, receives rank 0's parameters (and optimizer
//! state when asked: all of it, or its ZeRO-1 range) and micro-batches and trains its share
//! with the same data-parallel inner loop; for a ZeRO-1 checkpoint it sends rank 0 its
//! optimizer range. It owns no chain, S3 or checkpoint I/O: everything it holds is a copy of
//! rank 0's. It exits 0 when rank 0 says stop or its stdin ends (rank 0 is gone), and with
//! an error when a collective fails (a peer rank died or hung).

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use run_manifest::ManifestHash;
use worker_distributed::launch::RankSpec;
use worker_distributed::{DEFAULT_BUCKET_BYTES, Store, TrainerGroup, replicate};
use worker_model::{InnerTrainer, Llama};

use crate::error::{NodeError, Result};
use crate::rank_control::ControlMessage;
use crate::settings::TrainingSettings;

/// Runs this rank until rank 0 stops it; `input` is the control channel (stdin).
pub fn run(spec: &RankSpec, input: &mut dyn BufRead) -> Result<()> {
    let rank = spec.rank;
    let Some(ControlMessage::Start {
        manifest,
        manifest_sha256,
        device,
        timeout_ms,
        threads,
        sharding,
    }) = ControlMessage::read(input)?
    else {
        return Err(NodeError::Config(format!(
            "rank {rank}: the first control message must be `start`"
        )));
    };
    let pin: ManifestHash = manifest_sha256
        .parse()
        .map_err(|err| NodeError::Config(format!("rank {rank}: manifest hash: {err}")))?;
    let run = run_manifest::parse(&manifest, "rank 0's start message", Some(&pin))?;
    let settings = TrainingSettings::from_manifest(&run);
    if let Some(threads) = threads {
        tch::set_num_threads(threads.max(1));
    }
    let timeout = Duration::from_millis(timeout_ms.max(1));
    let store = Store::file(&spec.rendezvous, spec.world_size, timeout)?;
    let group = Arc::new(device.join(&store, rank, spec.world_size, timeout)?);
    let device = device.for_rank(rank);
    // Initial weights do not matter: rank 0's arrive before every window.
    let mut model = Llama::new(settings.model_config(), device, settings.model_seed)?;
    let mut trainer = InnerTrainer::data_parallel(
        settings.adamw(),
        &model,
        Box::new(TrainerGroup::new(group.clone(), DEFAULT_BUCKET_BYTES)),
        sharding.optimizer(),
    )?;
    tracing::info!(rank, world_size = spec.world_size, ?device, "rank joined");
    loop {
        match ControlMessage::read(input)? {
            None => {
                tracing::info!(rank, "rank 0 is gone: stopping");
                return Ok(());
            }
            Some(ControlMessage::Stop) => return Ok(()),
            Some(ControlMessage::GatherOptimizer) => {
                replicate::gather_optimizer(&group, trainer.optimizer(), &model, tch::Device::Cpu)?;
            }
            Some(ControlMessage::Start { .. }) => {
                return Err(NodeError::Config(format!(
                    "rank {rank}: a second `start` message"
                )));
            }
            Some(ControlMessage::Window {
                window,
                shapes,
                optimizer,
            }) => {
                replicate::parameters(&group, &mut model)?;
                if optimizer {
                    replicate::optimizer_state(&group, trainer.optimizer_mut(), None)?;
                }
                let steps = replicate::window_steps(&group, None, &shapes, device)?;
                let outcome = trainer.train_window(&mut model, &steps)?;
                tracing::debug!(rank, window, loss = outcome.mean_loss, "window trained");
            }
        }
    }
}
