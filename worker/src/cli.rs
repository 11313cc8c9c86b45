//! The `worker` command line, in the library so tests parse exactly what the binary parses
//! (the operator's pod contract test runs pod commands through it).

use clap::{Parser, Subcommand};

use crate::devnet::DevnetArgs;
use crate::network::{NodeArgs, ValidatorArgs};
use crate::{cli_data, cli_export, cli_manifest, cli_register, cli_status, cli_weights};

#[derive(Debug, Parser)]
#[command(
    name = "worker",
    version,
    about = "SparseLoCo miner, Gauntlet validator and local devnet"
)]
pub struct Cli {
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train with SparseLoCo and exchange gradients with the subnet's peers.
    Miner(NodeArgs),
    /// Score peers with the Gauntlet and set weights.
    Validator(ValidatorArgs),
    /// Run a whole subnet (embedded chain and storage, miners, a validator) on this machine.
    Devnet(DevnetArgs),
    /// Burn-register a hotkey on the subnet with its coldkey (once; already registered is ok).
    Register(cli_register::RegisterArgs),
    /// Show a neuron: uid, stake, permit, last weights, pending commits, bucket commitment.
    Status(cli_status::StatusArgs),
    /// Show the weights this validator would set now and whether the chain would take them.
    Weights(cli_weights::WeightsArgs),
    /// Write a starting run manifest, or check one and print its SHA-256.
    Manifest(cli_manifest::ManifestArgs),
    /// Prepare a tokenized dataset from text (and upload it), or inspect one.
    Data(cli_data::DataCommandArgs),
    /// Turn a checkpoint (own or the lead's published one) into a Hugging Face directory.
    Export(cli_export::ExportArgs),
    /// A rank 1.. of a multi-rank miner (started by rank 0, controlled through stdin).
    #[command(hide = true)]
    Rank,
}
