//! `worker`: the miner / validator / devnet binary.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

use worker::devnet::{self, DevnetArgs};
use worker::network::{
    NodeArgs, ValidatorArgs, connect, own_s3_store, peer_s3_store, run_miner, run_validator,
};
use worker::{cli_register, cli_status, cli_weights};
use worker_chain::{Chain, SubxtChain, SubxtChainConfig};

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
}

fn init_tracing(format: &str, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn connect_node(args: NodeArgs) -> anyhow::Result<worker::network::NodeContext> {
    let mut config = SubxtChainConfig::new(args.chain_endpoint.clone());
    config.blocks_per_window = args.blocks_per_window;
    let chain: Arc<dyn Chain> = Arc::new(
        SubxtChain::connect(config)
            .await
            .with_context(|| format!("connecting to {}", args.chain_endpoint.url()))?,
    );
    let store = own_s3_store(&args.storage)?;
    Ok(connect(chain, store, args).await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Miner(args) => {
            init_tracing(&cli.log_format, "info");
            let peer_endpoint = args.storage.peer_storage_endpoint.clone();
            let ctx = connect_node(args).await?;
            run_miner(ctx, &move |c| peer_s3_store(c, peer_endpoint.as_deref())).await?;
        }
        Command::Validator(args) => {
            init_tracing(&cli.log_format, "info");
            let peer_endpoint = args.node.storage.peer_storage_endpoint.clone();
            let ctx = connect_node(args.node.clone()).await?;
            run_validator(ctx, &args, &move |c| {
                peer_s3_store(c, peer_endpoint.as_deref())
            })
            .await?;
        }
        Command::Devnet(args) => {
            // The devnet's tables already say who was penalised and why.
            init_tracing(&cli.log_format, "error");
            devnet::run(&args).await.context("devnet failed")?;
        }
        Command::Register(args) => {
            init_tracing(&cli.log_format, "warn");
            cli_register::run(&args).await.context("worker register")?;
        }
        Command::Status(args) => {
            init_tracing(&cli.log_format, "warn");
            cli_status::run(&args).await.context("worker status")?;
        }
        Command::Weights(args) => {
            init_tracing(&cli.log_format, "warn");
            cli_weights::run(&args).await.context("worker weights")?;
        }
    }
    Ok(())
}
