//! `worker export`: turn a checkpoint (a node's own `miner.ckpt` / `validator.ckpt`, or the
//! lead's published `model.ckpt`) into a Hugging Face `LlamaForCausalLM` directory, so a run's
//! model can be loaded with `transformers` and published.

use std::fmt;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use serde::Serialize;
use tch::{Device, Kind};

use crate::error::{NodeError, Result};
use crate::replica::Replica;
use crate::settings::TrainingSettings;

/// Weight type of the exported tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportDtype {
    /// bfloat16 (what HF LLaMA checkpoints usually ship).
    Bf16,
    /// float16.
    F16,
    /// float32 (the master weights as trained, bit for bit).
    F32,
}

impl ExportDtype {
    fn kind(self) -> Kind {
        match self {
            Self::Bf16 => Kind::BFloat16,
            Self::F16 => Kind::Half,
            Self::F32 => Kind::Float,
        }
    }
}

/// Options of `worker export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// The checkpoint file.
    pub checkpoint: PathBuf,
    /// Output directory (`model.safetensors`, `config.json`, `subnet-export.json`).
    pub dir: PathBuf,
    /// The run manifest the checkpoint was trained under (it defines the model).
    #[arg(long, env = "RUN_MANIFEST")]
    pub manifest: PathBuf,
    /// Expected SHA-256 of the manifest.
    #[arg(long, env = "RUN_MANIFEST_SHA256")]
    pub manifest_sha256: Option<String>,
    /// Weight type of the exported tensors.
    #[arg(long, value_enum, default_value = "bf16")]
    pub dtype: ExportDtype,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What was exported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportReport {
    /// Run id of the manifest.
    pub run_id: String,
    /// SHA-256 of the manifest.
    pub manifest_sha256: String,
    /// The window whose outer step the model follows.
    pub window: u64,
    /// SHA-256 of the checkpoint file.
    pub checkpoint_sha256: String,
    /// Number of parameters.
    pub parameters: i64,
    /// Exported weight type.
    pub dtype: String,
    /// Output directory.
    pub dir: PathBuf,
}

impl fmt::Display for ExportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exported run {} after window {} ({} parameters, {}) to {}",
            self.run_id,
            self.window,
            self.parameters,
            self.dtype,
            self.dir.display()
        )
    }
}

/// File written beside the HF files: where the weights came from.
pub const PROVENANCE_FILE: &str = "subnet-export.json";

/// Runs `worker export` on the CPU.
pub fn export(args: &ExportArgs) -> Result<ExportReport> {
    let run = run_manifest::load_file(&args.manifest, args.manifest_sha256.as_deref())?;
    let settings = TrainingSettings::from_manifest(&run);
    let checkpoint_sha256 = worker_storage::file_sha256(&args.checkpoint).map_err(|err| {
        NodeError::Config(format!(
            "cannot read checkpoint {}: {err}",
            args.checkpoint.display()
        ))
    })?;
    let mut replica = Replica::for_run(&settings, Device::Cpu)?;
    let window = replica.load_model(&args.checkpoint).map_err(|err| {
        NodeError::Config(format!(
            "{} is not a checkpoint of run {} ({}): {err}",
            args.checkpoint.display(),
            run.manifest().run_id,
            run.hash()
        ))
    })?;
    worker_model::export_hf(&replica.model, &args.dir, args.dtype.kind())?;
    let report = ExportReport {
        run_id: run.manifest().run_id.clone(),
        manifest_sha256: run.hash().to_hex(),
        window,
        checkpoint_sha256: hex::encode(checkpoint_sha256),
        parameters: replica
            .model
            .parameters()
            .iter()
            .map(tch::Tensor::numel)
            .map(|n| i64::try_from(n).unwrap_or(i64::MAX))
            .sum(),
        dtype: format!("{:?}", args.dtype).to_lowercase(),
        dir: args.dir.clone(),
    };
    let provenance = args.dir.join(PROVENANCE_FILE);
    std::fs::write(&provenance, serde_json::to_vec_pretty(&report)?)?;
    Ok(report)
}
