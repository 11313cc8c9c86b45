//! `worker`: the miner / validator / devnet binary.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use worker::devnet::{self, DevnetArgs};

#[derive(Debug, Parser)]
#[command(
    name = "worker",
    version,
    about = "SparseLoCo miner, Gauntlet validator and local devnet"
)]
struct Cli {
    /// Log format: text or json.
    #[arg(long, env = "LOG_FORMAT", default_value = "text", global = true)]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a whole subnet (embedded chain and storage, miners, a validator) on this machine.
    Devnet(DevnetArgs),
}

fn init_tracing(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log_format);
    match cli.command {
        Command::Devnet(args) => {
            devnet::run(&args).await.context("devnet failed")?;
        }
    }
    Ok(())
}
