//! `subnet-operator`: runs the TrainingRun / ValidatorSet controllers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use prometheus_client::registry::Registry;
use subnet_operator::controller::{ControllerOptions, check_crds, run_controllers};
use subnet_operator::http_server::{self, HttpState};
use subnet_operator::leader::{self, LeaderConfig};
use subnet_operator::metrics::Metrics;
use subnet_operator::{Context, ReconcilerConfig};
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Kubernetes operator for TrainingRun and ValidatorSet resources.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of the /metrics, /healthz and /readyz server.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Only run the controllers while holding a Lease.
    #[arg(long, env = "LEADER_ELECTION")]
    leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "subnet-operator-leader")]
    lease_name: String,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME", default_value = "subnet-operator")]
    identity: String,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration_secs: u64,
    /// Seconds before expiry at which the leader renews.
    #[arg(long, default_value_t = 5)]
    lease_grace_secs: u64,
    /// Reconciles running at once per kind (0 = unbounded).
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
    /// Seconds between periodic re-checks of a healthy workload.
    #[arg(long, default_value_t = 300)]
    resync_secs: u64,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // With both ring and aws-lc-rs compiled in (a workspace build), rustls will not pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args = Args::parse();
    init_tracing(args.log_format);

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let ready = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("binding {}", args.metrics_addr))?;
    info!(addr = %args.metrics_addr, "serving /metrics, /healthz, /readyz");
    let http = tokio::spawn(http_server::serve(
        listener,
        HttpState {
            registry: Arc::new(registry),
            ready: ready.clone(),
        },
    ));

    let client = kube::Client::try_default()
        .await
        .context("creating the Kubernetes client")?;
    if let Err(err) = check_crds(&client, args.namespace.as_deref()).await {
        error!(error = %err, "CRDs are not queryable; install them with `kubectl apply -f crds/`");
        anyhow::bail!("CRDs missing: {err}");
    }

    // Ready as soon as the API and CRDs answer: a standby replica waiting for the lease is
    // healthy, and gating readiness on leadership would stall Deployment rollouts.
    ready.store(true, Ordering::Release);
    let leadership = if args.leader_election {
        let config = LeaderConfig {
            lease_name: args.lease_name.clone(),
            namespace: args.lease_namespace.clone(),
            identity: args.identity.clone(),
            duration_secs: args.lease_duration_secs,
            grace_secs: args.lease_grace_secs,
        };
        Some(leader::acquire(client.clone(), &config).await?)
    } else {
        None
    };

    let config = ReconcilerConfig {
        resync: Duration::from_secs(args.resync_secs.max(1)),
        ..ReconcilerConfig::default()
    };
    let ctx = Arc::new(Context::new(client.clone(), metrics).with_config(config));
    let options = ControllerOptions {
        namespace: args.namespace.clone(),
        concurrency: args.concurrency,
    };
    info!(namespace = ?args.namespace, "controllers starting");
    let controllers = run_controllers(client, ctx, options);
    let outcome = match leadership {
        Some(leadership) => tokio::select! {
            () = controllers => Ok(()),
            () = leadership.lost() => Err(anyhow::anyhow!("lost leadership; exiting so a new leader can take over")),
        },
        None => {
            controllers.await;
            Ok(())
        }
    };
    ready.store(false, Ordering::Release);
    http.abort();
    info!("controllers stopped");
    outcome
}
