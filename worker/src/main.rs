//! `worker`: the miner / validator / devnet binary.

use anyhow::Context as _;
use clap::Parser;
use std::sync::Arc;
use tracing_subscriber::EnvFilter;

use worker::cli::{Cli, Command};
use worker::cli_common::print_report;
use worker::devnet;
use worker::manifest_source::resolve_manifest;
use worker::network::{NodeArgs, connect, own_s3_store, peer_s3_store, run_miner, run_validator};
use worker::node_observer::NodeMonitor;
use worker::{cli_data, cli_export, cli_manifest, cli_register, cli_status, cli_weights};
use worker_chain::{Chain, SubxtChain, SubxtChainConfig};

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

/// Starts the node's health endpoints and pod report, then connects a miner (`may_follow`:
/// it may take the lead validator's manifest) or validator watched by them.
async fn connect_node(
    args: NodeArgs,
    may_follow: bool,
) -> anyhow::Result<(worker::network::NodeContext, NodeMonitor)> {
    // Up before connecting, so the probes answer while the node waits for the chain.
    let monitor = NodeMonitor::start(args.health_addr)
        .await
        .with_context(|| format!("serving the health endpoints on {}", args.health_addr))?;
    // A bad manifest is refused before anything is contacted.
    let given = worker::manifest_source::manifest_from_args(&args)?;
    let mut config = SubxtChainConfig::new(args.chain_endpoint.clone());
    if let Some(run) = &given {
        config.blocks_per_window = run.manifest().window.blocks_per_window;
    }
    let chain: Arc<dyn Chain> = Arc::new(
        SubxtChain::connect(config)
            .await
            .with_context(|| format!("connecting to {}", args.chain_endpoint.url()))?,
    );
    let peer_endpoint = args.storage.peer_storage_endpoint.clone();
    let run = match given {
        Some(run) => run,
        None => {
            resolve_manifest(
                &args,
                &*chain,
                &move |c| peer_s3_store(c, peer_endpoint.as_deref()),
                may_follow,
            )
            .await?
        }
    };
    let store = own_s3_store(&args.storage)?;
    let mut ctx = connect(chain, store, args, &run).await?;
    ctx.events = monitor.observer.clone();
    Ok((ctx, monitor))
}

/// Runs a role until it ends or the process gets SIGTERM / SIGINT. A role checkpoints
/// atomically after every window, so stopping between awaits loses at most the window in
/// flight (replayed after the restart); the process then exits 0 at once, well inside a
/// pod's termination grace period (PID 1 in a container ignores signals it does not handle).
async fn until_stopped(
    role: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    tokio::select! {
        result = role => result,
        _ = terminate.recv() => {
            tracing::info!("SIGTERM: stopping; the last checkpoint stands");
            Ok(())
        }
        _ = tokio::signal::ctrl_c() => {
            tracing::info!("interrupted: stopping; the last checkpoint stands");
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Both ring and aws-lc-rs are compiled in (subxt's and the S3 SDK's TLS); rustls will not
    // pick a process-wide provider by itself then.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    match cli.command {
        Command::Miner(args) => {
            init_tracing(&cli.log_format, "info");
            let peer_endpoint = args.storage.peer_storage_endpoint.clone();
            // Connecting (which may wait for the chain or the lead's manifest) is stoppable too.
            until_stopped(async move {
                let (ctx, _monitor) = connect_node(args, true).await?;
                run_miner(
                    ctx,
                    std::sync::Arc::new(move |c: &_| peer_s3_store(c, peer_endpoint.as_deref())),
                )
                .await?;
                Ok(())
            })
            .await?;
        }
        Command::Validator(args) => {
            init_tracing(&cli.log_format, "info");
            let peer_endpoint = args.node.storage.peer_storage_endpoint.clone();
            until_stopped(async move {
                let (ctx, _monitor) = connect_node(args.node.clone(), false).await?;
                run_validator(ctx, &move |c| peer_s3_store(c, peer_endpoint.as_deref())).await?;
                Ok(())
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
            if let Err(err) = cli_register::run(&args).await {
                // The exit code tells a Job whether retrying can help.
                eprintln!("Error: worker register: {err}");
                std::process::exit(cli_register::failure_exit_code(&err));
            }
        }
        Command::Status(args) => {
            init_tracing(&cli.log_format, "warn");
            cli_status::run(&args).await.context("worker status")?;
        }
        Command::Manifest(args) => {
            init_tracing(&cli.log_format, "warn");
            println!("{}", cli_manifest::run(&args).context("worker manifest")?);
        }
        Command::Data(args) => {
            init_tracing(&cli.log_format, "warn");
            let report = tokio::task::spawn_blocking(move || cli_data::run(&args))
                .await
                .context("worker data")?
                .context("worker data")?;
            println!("{report}");
        }
        Command::Export(args) => {
            init_tracing(&cli.log_format, "warn");
            let report = cli_export::export(&args).context("worker export")?;
            print_report(&report, args.json)?;
        }
        Command::Rank => {
            init_tracing(&cli.log_format, "warn");
            let spec = worker_distributed::launch::RankSpec::from_env()
                .context("worker rank")?
                .context("worker rank is started by rank 0, with the rank environment")?;
            let rank = spec.rank;
            worker::rank_follower::run(&spec, &mut std::io::stdin().lock())
                .with_context(|| format!("rank {rank}"))?;
        }
        Command::Weights(args) => {
            init_tracing(&cli.log_format, "warn");
            cli_weights::run(&args).await.context("worker weights")?;
        }
    }
    Ok(())
}
