//! A node's health as the cluster sees it:
//! - the health server over real TCP: liveness and readiness answer 200 or 503 with their
//!   reason as the node's state changes, the metrics parse as Prometheus text and carry the
//!   node's gauges, other paths are 404, and the server stops when dropped;
//! - the pod report against a real kube-apiserver (tests/kube-harness, built by
//!   scripts/setup-k8s.sh; this test fails, never skips, without it): authenticated as a
//!   ServiceAccount whose Role allows only get + patch on its own pod, the worker's reports
//!   (uid at start, then window and score) land as the annotations the operator reads, also
//!   through the background sender the role loop uses, and patching another pod is refused
//!   (403).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Client;
use kube::api::{Api, PostParams};
use kube_harness::poll;
use run_manifest::deployment::{
    HEALTHZ_PATH, METRICS_PATH, READYZ_PATH, REPORT_SCORE_ANNOTATION, REPORT_UID_ANNOTATION,
    REPORT_WINDOW_ANNOTATION,
};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use worker::health_server::HealthServer;
use worker::node_health::{NodeHealth, NodeRole, RoleStarted};
use worker::pod_reporter::{PodReport, PodReporter, PodTarget, ReportError};

/// Status line code and body of `GET path` (or another `method`).
async fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{method} {path} HTTP/1.1\r\nHost: worker\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|l| l.trim().parse().ok())
        .unwrap();
    if method != "HEAD" {
        assert_eq!(length, body.len(), "content-length of {path}");
    }
    (status, body.to_owned())
}

/// Parses Prometheus text: every sample line is `name{labels} value`, every metric has
/// HELP and TYPE lines; returns the samples by name.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut typed = Vec::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(kind, "gauge");
            typed.push(name.to_owned());
        } else if !line.starts_with("# HELP ") && !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
            if let Some(labels) = series.strip_prefix(name) {
                assert!(
                    labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                    "{line}"
                );
            }
            assert!(typed.iter().any(|t| t == name), "{name} has no TYPE line");
            samples.insert(name.to_owned(), value.parse::<f64>().unwrap());
        }
    }
    samples
}

#[tokio::test]
async fn the_health_server_answers_probes_and_metrics_over_tcp() {
    let health = Arc::new(NodeHealth::new(Instant::now()));
    let server = HealthServer::bind("127.0.0.1:0".parse().unwrap(), health.clone())
        .await
        .unwrap();
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);

    // Starting: live (start-up allowance), not ready.
    let (status, body) = request(addr, "GET", HEALTHZ_PATH).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = request(addr, "GET", READYZ_PATH).await;
    assert_eq!(status, 503);
    assert!(body.contains("not started"), "{body}");
    let metrics = parse_metrics(&request(addr, "GET", METRICS_PATH).await.1);
    assert_eq!(metrics["worker_up"], 1.0);
    assert_eq!(metrics["worker_ready"], 0.0);
    assert_eq!(metrics["worker_chain_reachable"], 0.0);
    assert!(!metrics.contains_key("worker_uid"));
    assert!(!metrics.contains_key("worker_last_window"));

    // Running and in sync, a window done: ready, and the gauges say so.
    health.role_started(RoleStarted {
        role: NodeRole::Validator,
        uid: 3,
        window: Duration::from_secs(1),
        grace: Duration::ZERO,
    });
    health.chain_reachable(true);
    let (status, body) = request(addr, "GET", READYZ_PATH).await;
    assert_eq!(status, 503);
    assert!(body.contains("catching up"), "{body}");
    health.synced(true, Instant::now());
    health.window_completed(5, Some(0.5), Instant::now());
    let (status, body) = request(addr, "GET", READYZ_PATH).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("last window 5"), "{body}");
    let (status, text) = request(addr, "GET", &format!("{METRICS_PATH}?x=1")).await;
    assert_eq!(status, 200);
    assert!(text.contains("role=\"validator\""), "{text}");
    let metrics = parse_metrics(&text);
    assert_eq!(metrics["worker_uid"], 3.0);
    assert_eq!(metrics["worker_last_window"], 5.0);
    assert_eq!(metrics["worker_last_score"], 0.5);
    assert_eq!(metrics["worker_chain_reachable"], 1.0);
    assert_eq!(metrics["worker_in_sync"], 1.0);
    assert_eq!(metrics["worker_up"], 1.0);
    assert_eq!(metrics["worker_ready"], 1.0);

    // The chain goes away: not ready, still live.
    health.chain_reachable(false);
    let (status, body) = request(addr, "GET", READYZ_PATH).await;
    assert_eq!(status, 503);
    assert!(body.contains("chain"), "{body}");
    assert_eq!(request(addr, "GET", HEALTHZ_PATH).await.0, 200);

    // No window for longer than six (one-second) windows: not live.
    let stale = Instant::now().checked_sub(Duration::from_secs(10)).unwrap();
    health.window_completed(6, None, stale);
    let (status, body) = request(addr, "GET", HEALTHZ_PATH).await;
    assert_eq!(status, 503);
    assert!(body.contains("no window completed"), "{body}");
    let metrics = parse_metrics(&request(addr, "GET", METRICS_PATH).await.1);
    assert_eq!(metrics["worker_up"], 0.0);
    assert!(!metrics.contains_key("worker_last_score"));

    // Other paths and methods.
    assert_eq!(request(addr, "GET", "/nope").await.0, 404);
    assert_eq!(request(addr, "POST", READYZ_PATH).await.0, 405);
    let (status, body) = request(addr, "HEAD", HEALTHZ_PATH).await;
    assert_eq!((status, body.as_str()), (503, ""));

    // Dropped with the node: the port stops answering.
    drop(server);
    let closed = poll(
        "the health server to stop",
        Duration::from_secs(5),
        || async move { TcpStream::connect(addr).await.is_err().then_some(()) },
    )
    .await;
    assert!(
        closed.is_ok(),
        "the server still accepts after being dropped"
    );
}

/// A pod nothing schedules (it only carries the report).
fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "worker", "image": "worker:test"}]},
    }))
    .unwrap()
}

fn annotations(pod: &Pod) -> BTreeMap<String, String> {
    pod.metadata.annotations.clone().unwrap_or_default()
}

/// The ServiceAccount `worker` with a Role allowing get + patch on pod `own` only.
async fn service_account_for(admin: &Client, ns: &str, own: &str) {
    let pp = PostParams::default();
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "worker"}})).unwrap();
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create(&pp, &sa)
        .await
        .unwrap();
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "worker-report"},
        "rules": [{
            "apiGroups": [""],
            "resources": ["pods"],
            "resourceNames": [own],
            "verbs": ["get", "patch"],
        }],
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), ns)
        .create(&pp, &role)
        .await
        .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "worker-report"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "worker-report"},
        "subjects": [{"kind": "ServiceAccount", "name": "worker", "namespace": ns}],
    }))
    .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&pp, &binding)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_pod_report_lands_on_the_own_pod_only() {
    kube_harness::install_crypto_provider();
    let cluster = kube_harness::cluster()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ns = cluster
        .namespace("worker-health")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let admin = ns.admin().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(admin.clone(), &ns.name);
    for name in ["miner-0", "miner-1"] {
        pods.create(&PostParams::default(), &pod(name))
            .await
            .unwrap();
    }
    service_account_for(&admin, &ns.name, "miner-0").await;
    let client = ns.service_account_client("worker").await.unwrap();
    let target = |name: &str| PodTarget {
        namespace: ns.name.clone(),
        name: name.to_owned(),
    };
    let own = PodReporter::new(client.clone(), target("miner-0"));

    // The role starts: the uid alone (the binding reaches the authorizer shortly after it
    // is created).
    let started = PodReport::started(7);
    let delivered = poll("the report to be allowed", Duration::from_secs(30), || {
        let own = own.clone();
        async move { own.report(&started).await.ok() }
    })
    .await;
    assert!(delivered.is_ok(), "{:?}", own.report(&started).await);
    let written = annotations(&pods.get("miner-0").await.unwrap());
    assert_eq!(written[REPORT_UID_ANNOTATION], "7");
    assert!(
        !written.contains_key(REPORT_WINDOW_ANNOTATION),
        "{written:?}"
    );

    // A window: uid, window and score.
    let first = PodReport::window(7, 42, Some(0.375));
    own.report(&first).await.unwrap();
    let stored = pods.get("miner-0").await.unwrap();
    let written = annotations(&stored);
    assert_eq!(written[REPORT_UID_ANNOTATION], "7");
    assert_eq!(written[REPORT_WINDOW_ANNOTATION], "42");
    assert_eq!(written[REPORT_SCORE_ANNOTATION], "0.375");
    // What the operator reads into the status.
    let observed = subnet_operator::observed::observe(&stored).report;
    assert_eq!(observed.uid, Some(7));
    assert_eq!(observed.last_window, Some(42));
    assert_eq!(observed.last_score, Some(0.375));

    // A report without a score removes the old one.
    own.report(&PodReport::window(7, 43, None)).await.unwrap();
    let written = annotations(&pods.get("miner-0").await.unwrap());
    assert_eq!(written[REPORT_WINDOW_ANNOTATION], "43");
    assert!(
        !written.contains_key(REPORT_SCORE_ANNOTATION),
        "{written:?}"
    );
    // A restarted container reports its uid again; the last window stays until replaced.
    own.report(&PodReport::started(7)).await.unwrap();
    let written = annotations(&pods.get("miner-0").await.unwrap());
    assert_eq!(written[REPORT_WINDOW_ANNOTATION], "43");

    // The Role names only its own pod: another pod is refused and left as it was.
    let other = PodReporter::new(client.clone(), target("miner-1"));
    match other.report(&first).await {
        Err(ReportError::Kube(kube::Error::Api(status))) => assert_eq!(status.code, 403),
        other => panic!("patching another pod: {other:?}"),
    }
    assert!(
        !annotations(&pods.get("miner-1").await.unwrap()).contains_key(REPORT_WINDOW_ANNOTATION)
    );

    // The role loop's path: reports posted to the background task land without waiting.
    let sender = own.spawn();
    sender.send(PodReport::window(7, 44, Some(0.5)));
    let landed = poll("the posted report to land", Duration::from_secs(30), || {
        let pods = pods.clone();
        async move {
            let written = annotations(&pods.get("miner-0").await.ok()?);
            (written.get(REPORT_WINDOW_ANNOTATION).map(String::as_str) == Some("44"))
                .then_some(written)
        }
    })
    .await
    .unwrap();
    assert_eq!(landed[REPORT_SCORE_ANNOTATION], "0.5");
}
