//! `worker data`: prepare a dataset from text (and upload it), or inspect one.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use run_manifest::DatasetUri;
use worker_data::{
    DataArgs, PrepareOptions, PrepareOutcome, S3Access, S3Source, ShardSource, UploadOutcome,
    inspect, prepare, source_for, upload,
};
use worker_storage::S3Credentials;

use crate::error::{NodeError, Result};

/// Options of `worker data`.
#[derive(Debug, Clone, Args)]
pub struct DataCommandArgs {
    #[command(subcommand)]
    pub command: DataCommand,
}

/// S3 access for `worker data` (the credentials come from the environment).
#[derive(Clone, Args)]
pub struct S3Options {
    /// S3 endpoint URL (R2, MinIO, SeaweedFS).
    #[arg(long, env = "DATA_ENDPOINT")]
    pub endpoint: Option<String>,
    /// S3 signing region.
    #[arg(long, env = "DATA_REGION")]
    pub region: Option<String>,
    /// Access key id (write access for `prepare --upload`, read for `inspect`).
    #[arg(long, env = "DATA_ACCESS_KEY_ID", hide_env_values = true)]
    pub access_key_id: Option<String>,
    /// Secret access key.
    #[arg(long, env = "DATA_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// What `worker data` does.
#[derive(Debug, Clone, Subcommand)]
pub enum DataCommand {
    /// Tokenize text files (`.jsonl`: one object per line; `.parquet`: one row per document;
    /// others: one document per file) into fixed-size shards and a dataset manifest;
    /// resumable; optionally upload to S3.
    Prepare {
        /// Training inputs, in order.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Held-out inputs (evaluation only).
        #[arg(long)]
        held_out: Vec<PathBuf>,
        /// Hugging Face tokenizer.json.
        #[arg(long)]
        tokenizer: PathBuf,
        /// Token appended after every document.
        #[arg(long, default_value = "<|endoftext|>")]
        eos_token: String,
        /// JSONL field / Parquet column holding the text.
        #[arg(long, default_value = "text")]
        text_field: String,
        /// Tokens per shard.
        #[arg(long, default_value_t = 50_000_000)]
        shard_tokens: u64,
        /// Dataset name.
        #[arg(long)]
        name: String,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Upload the finished dataset to s3://bucket/prefix.
        #[arg(long)]
        upload: Option<String>,
        #[command(flatten)]
        s3: S3Options,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Show a dataset's shards, tokens, hashes, tokenizer and a decoded sample.
    Inspect {
        /// s3://bucket/prefix, file:///dir or /dir.
        uri: String,
        /// Tokens of the first shard to decode.
        #[arg(long, default_value_t = 64)]
        sample_tokens: usize,
        #[command(flatten)]
        s3: S3Options,
    },
}

impl S3Options {
    fn access(&self) -> Result<S3Access> {
        let (Some(id), Some(secret)) = (&self.access_key_id, &self.secret_access_key) else {
            return Err(NodeError::Config(
                "S3 needs DATA_ACCESS_KEY_ID and DATA_SECRET_ACCESS_KEY".into(),
            ));
        };
        Ok(S3Access {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            credentials: S3Credentials::new(id.clone(), secret.clone()),
        })
    }

    fn data_args(&self) -> DataArgs {
        DataArgs {
            data_access_key_id: self.access_key_id.clone(),
            data_secret_access_key: self.secret_access_key.clone(),
            ..DataArgs::with_cache(std::env::temp_dir().join("templar-dataset-cache"))
        }
    }
}

/// Runs `worker data` (blocking); returns what to print on stdout.
pub fn run(args: &DataCommandArgs) -> Result<String> {
    match &args.command {
        DataCommand::Prepare {
            inputs,
            held_out,
            tokenizer,
            eos_token,
            text_field,
            shard_tokens,
            name,
            out,
            upload: target,
            s3,
            quiet,
        } => {
            let options = PrepareOptions {
                name: name.clone(),
                tokenizer: tokenizer.clone(),
                eos_token: eos_token.clone(),
                train: inputs.clone(),
                held_out: held_out.clone(),
                text_field: text_field.clone(),
                shard_tokens: *shard_tokens,
                out: out.clone(),
            };
            let bar = if *quiet {
                ProgressBar::hidden()
            } else {
                ProgressBar::new_spinner()
            };
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            let outcome = prepare(&options, |p| {
                bar.set_message(format!(
                    "{} shards, {} tokens, {:.0} tokens/s",
                    p.shards, p.tokens, p.tokens_per_sec
                ));
                bar.tick();
                ControlFlow::Continue(())
            })?;
            bar.finish_and_clear();
            let PrepareOutcome::Done {
                manifest,
                resumed_shards,
            } = outcome
            else {
                return Err(NodeError::Config("prepare stopped".into()));
            };
            let mut report = format!(
                "{}  {} ({} shards, {} tokens{}) in {}",
                manifest.hash(),
                manifest.name,
                manifest.shards.len(),
                manifest.total_tokens(),
                if resumed_shards > 0 {
                    format!(", {resumed_shards} shards from an earlier run")
                } else {
                    String::new()
                },
                out.display()
            );
            if let Some(target) = target {
                let DatasetUri::S3 { bucket, prefix } =
                    DatasetUri::parse(target).map_err(|e| NodeError::Config(e.to_string()))?
                else {
                    return Err(NodeError::Config("--upload takes an s3:// URI".into()));
                };
                let s3_target = S3Source::new(&bucket, &prefix, s3.access()?)?;
                match upload(out, &s3_target)? {
                    UploadOutcome::Uploaded { objects, bytes } => {
                        report.push_str(&format!(
                            "\nuploaded {objects} objects ({bytes} bytes) to {}",
                            s3_target.uri()
                        ));
                    }
                    UploadOutcome::AlreadyThere => {
                        report.push_str(&format!("\n{} already holds it", s3_target.uri()));
                    }
                }
            }
            Ok(report)
        }
        DataCommand::Inspect {
            uri,
            sample_tokens,
            s3,
        } => {
            let source: Arc<dyn ShardSource> = source_for(
                uri,
                s3.endpoint.as_deref(),
                s3.region.as_deref(),
                &s3.data_args(),
            )?;
            Ok(inspect(source.as_ref(), *sample_tokens)?)
        }
    }
}
