//! `worker manifest`: write a starting manifest, or check one and print its identity.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use run_manifest::{PRESET_NAMES, RunManifest};

use crate::error::{NodeError, Result};

/// Options of `worker manifest`.
#[derive(Debug, Clone, Args)]
pub struct ManifestArgs {
    #[command(subcommand)]
    pub command: ManifestCommand,
}

/// What `worker manifest` does.
#[derive(Debug, Clone, Subcommand)]
pub enum ManifestCommand {
    /// Print the project's reference manifest for a model preset (a subnet owner's start).
    Template {
        /// Run id.
        #[arg(long)]
        run_id: String,
        /// Model preset: tiny, 150m, 1b, 8b or 70b.
        #[arg(long, default_value = "tiny")]
        preset: String,
    },
    /// Validate a manifest exactly as a miner or validator would and print its SHA-256.
    Check {
        /// Manifest file.
        file: PathBuf,
        /// Expected SHA-256.
        #[arg(long)]
        sha256: Option<String>,
    },
}

/// Runs `worker manifest`; returns what to print on stdout.
pub fn run(args: &ManifestArgs) -> Result<String> {
    match &args.command {
        ManifestCommand::Template { run_id, preset } => {
            let manifest = RunManifest::reference(run_id, preset);
            if !PRESET_NAMES.contains(&preset.as_str()) {
                return Err(NodeError::Config(format!(
                    "unknown preset {preset:?} (expected one of {})",
                    PRESET_NAMES.join(", ")
                )));
            }
            // The template itself must pass every rule.
            run_manifest::verify(manifest.clone(), "template", None)?;
            Ok(manifest.to_json_pretty())
        }
        ManifestCommand::Check { file, sha256 } => {
            let run = run_manifest::load_file(file, sha256.as_deref())?;
            let m = run.manifest();
            Ok(format!(
                "{}  run {} ({} parameters, {} samples per peer per window)",
                run.hash(),
                m.run_id,
                run.model().param_count(),
                m.training.samples_per_window()
            ))
        }
    }
}
