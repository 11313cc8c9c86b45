//! What `worker miner` and `worker validator` watch their role loop with: the node's
//! [`NodeHealth`] (served by the [`HealthServer`]) and, in a pod, its [`PodReporter`].

use std::sync::Arc;
use std::time::Instant;

use crate::health_server::{HealthAddr, HealthServer};
use crate::node_health::{NodeHealth, RoleStarted};
use crate::pod_reporter::{self, PodReport, ReportSender};
use crate::role_events::{MinerWindowReport, RoleEvents, ValidatorWindowReport};

/// Feeds a node's health and pod report from its role events.
#[derive(Debug)]
pub struct NodeObserver {
    health: Arc<NodeHealth>,
    reporter: Option<ReportSender>,
}

impl NodeObserver {
    pub fn new(health: Arc<NodeHealth>, reporter: Option<ReportSender>) -> Self {
        Self { health, reporter }
    }

    pub fn health(&self) -> &Arc<NodeHealth> {
        &self.health
    }

    fn window_completed(&self, uid: u16, window: u64, score: Option<f64>) {
        self.health.window_completed(window, score, Instant::now());
        if let Some(reporter) = &self.reporter {
            reporter.send(PodReport::window(uid, window, score));
        }
    }
}

impl RoleEvents for NodeObserver {
    fn role_started(&self, started: &RoleStarted) {
        self.health.role_started(*started);
        if let Some(reporter) = &self.reporter {
            reporter.send(PodReport::started(started.uid));
        }
    }

    fn chain_reachable(&self, reachable: bool) {
        self.health.chain_reachable(reachable);
    }

    fn synced(&self, in_sync: bool) {
        self.health.synced(in_sync, Instant::now());
    }

    fn miner_window(&self, report: &MinerWindowReport) {
        self.window_completed(report.uid, report.window, report.incentive);
    }

    fn validator_window(&self, report: &ValidatorWindowReport<'_>) {
        self.window_completed(report.uid, report.window, report.mean_score());
    }
}

/// A production node's monitoring: the observer to put in its context and the health
/// server, which stops when this is dropped.
#[derive(Debug)]
pub struct NodeMonitor {
    pub observer: Arc<NodeObserver>,
    pub server: Option<HealthServer>,
}

impl NodeMonitor {
    /// Starts the health server on `addr` (unless off) and the pod reporter (in a pod), on
    /// the current runtime. Fails only when the address cannot be bound.
    pub async fn start(addr: HealthAddr) -> std::io::Result<Self> {
        let health = Arc::new(NodeHealth::new(Instant::now()));
        let server = match addr {
            HealthAddr::Off => None,
            HealthAddr::Listen(addr) => Some(HealthServer::bind(addr, health.clone()).await?),
        };
        let reporter = pod_reporter::from_environment().map(|r| {
            tracing::info!(pod = %r.target().name, "reporting window progress on the pod");
            r.spawn()
        });
        Ok(Self {
            observer: Arc::new(NodeObserver::new(health, reporter)),
            server,
        })
    }
}
