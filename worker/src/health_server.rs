//! The node's health endpoints for the pod's probes and Prometheus: liveness at
//! [`HEALTHZ_PATH`], readiness at [`READYZ_PATH`] (200 or 503 with the reason as text) and
//! the node's gauges at [`METRICS_PATH`] (Prometheus text format).
//!
//! A minimal HTTP/1.1 responder on tokio: one `GET` (or `HEAD`) per connection, answered
//! and closed. Probes and scrapers need nothing more, and the worker's dependencies stay
//! as they are. The server stops when its [`HealthServer`] is dropped.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use run_manifest::deployment::{HEALTHZ_PATH, METRICS_PATH, READYZ_PATH, WORKER_HEALTH_PORT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::node_health::{HealthState, NodeHealth};

/// Largest request head read (probes send a few hundred bytes).
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A client that has not sent its request by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the health server listens: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthAddr {
    Off,
    Listen(SocketAddr),
}

impl Default for HealthAddr {
    /// Every interface on [`WORKER_HEALTH_PORT`] (what the pod's probes target).
    fn default() -> Self {
        HealthAddr::Listen(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            WORKER_HEALTH_PORT,
        ))
    }
}

impl std::fmt::Display for HealthAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HealthAddr::Off => f.write_str("off"),
            HealthAddr::Listen(addr) => write!(f, "{addr}"),
        }
    }
}

impl FromStr for HealthAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(HealthAddr::Off);
        }
        text.parse()
            .map(HealthAddr::Listen)
            .map_err(|_| format!("{text:?} is neither host:port nor \"off\""))
    }
}

/// A running health server; dropping it stops the server and its connections.
#[derive(Debug)]
pub struct HealthServer {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HealthServer {
    /// Binds `addr` and serves `health` on the current runtime.
    pub async fn bind(addr: SocketAddr, health: Arc<NodeHealth>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let task = tokio::spawn(serve(listener, health));
        tracing::info!(%local_addr, "health endpoints listening");
        Ok(Self { local_addr, task })
    }

    /// The bound address (the port chosen when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, health: Arc<NodeHealth>) {
    // Aborting this task drops the set, which aborts the connections still open.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(answer(stream, health.clone()));
                }
                Err(err) => {
                    tracing::warn!(%err, "health endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Reads one request head and writes its response.
async fn answer(mut stream: TcpStream, health: Arc<NodeHealth>) {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) | Err(_) => {
            let _ = write_response(&mut stream, &Response::text(400, "bad request"), true).await;
            return;
        }
        Ok(Err(_)) => return,
    };
    let (method, path) = request_line(&head);
    let response = match method {
        "GET" | "HEAD" => route(path, &health.snapshot(), Instant::now()),
        _ => Response::text(405, "only GET and HEAD"),
    };
    if let Err(err) = write_response(&mut stream, &response, method != "HEAD").await {
        tracing::debug!(%err, "health endpoint: client went away");
    }
}

/// The request head (up to the blank line), `None` when it is too long or cut short.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return Ok(None);
        }
    }
}

/// Method and path (without a query string) of the request line.
fn request_line(head: &str) -> (&str, &str) {
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let path = target.split(['?', '#']).next().unwrap_or_default();
    (method, path)
}

/// A response: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        let mut body = body.into();
        body.push('\n');
        Self {
            status,
            content_type: "text/plain; charset=utf-8",
            body,
        }
    }
}

/// The response to `GET path` for a node in `state` at `now`.
pub fn route(path: &str, state: &HealthState, now: Instant) -> Response {
    let verdict =
        |v: crate::node_health::Verdict| Response::text(if v.ok { 200 } else { 503 }, v.reason);
    match path {
        p if p == HEALTHZ_PATH => verdict(state.liveness(now)),
        p if p == READYZ_PATH => verdict(state.readiness(now)),
        p if p == METRICS_PATH => Response {
            status: 200,
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: metrics(state, now),
        },
        _ => Response::text(404, "not found"),
    }
}

/// The node's gauges in the Prometheus text format; unknown values are left out.
pub fn metrics(state: &HealthState, now: Instant) -> String {
    let role = state.role.map_or("unknown", |r| r.role.name());
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let gauges: [(&str, &str, Option<f64>); 7] = [
        (
            "worker_up",
            "1 while the role loop makes progress (the liveness probe passes)",
            Some(flag(state.liveness(now).ok)),
        ),
        (
            "worker_ready",
            "1 while the node is ready (the readiness probe passes)",
            Some(flag(state.readiness(now).ok)),
        ),
        (
            "worker_uid",
            "The node's uid in the subnet's metagraph",
            state.role.map(|r| f64::from(r.uid)),
        ),
        (
            "worker_last_window",
            "The last window the node completed",
            state.last_window.map(|w| w as f64),
        ),
        (
            "worker_last_score",
            "The node's score after its last window (miner: incentive; validator: mean peer score)",
            state.last_score,
        ),
        (
            "worker_chain_reachable",
            "1 while the chain answers",
            Some(flag(state.chain_reachable)),
        ),
        (
            "worker_in_sync",
            "1 while the model holds every window up to the previous one",
            Some(flag(state.in_sync)),
        ),
    ];
    let mut out = String::new();
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        if let Some(value) = value {
            let _ = writeln!(out, "{name}{{role=\"{role}\"}} {value}");
        }
    }
    out
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "",
    }
}

async fn write_response(
    stream: &mut TcpStream,
    response: &Response,
    with_body: bool,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        response.status,
        reason_phrase(response.status),
        response.content_type,
        response.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if with_body {
        stream.write_all(response.body.as_bytes()).await?;
    }
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_host_port_or_off_and_defaults_to_the_health_port() {
        assert_eq!("off".parse::<HealthAddr>(), Ok(HealthAddr::Off));
        assert_eq!(" OFF ".parse::<HealthAddr>(), Ok(HealthAddr::Off));
        assert_eq!(
            "127.0.0.1:0".parse::<HealthAddr>(),
            Ok(HealthAddr::Listen("127.0.0.1:0".parse().unwrap()))
        );
        assert!("localhost".parse::<HealthAddr>().is_err());
        let default = HealthAddr::default();
        assert_eq!(default.to_string(), format!("0.0.0.0:{WORKER_HEALTH_PORT}"));
        assert_eq!(default.to_string().parse::<HealthAddr>(), Ok(default));
    }

    #[test]
    fn the_request_line_gives_method_and_path_without_query() {
        assert_eq!(
            request_line("GET /readyz?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("GET", "/readyz")
        );
        assert_eq!(request_line(""), ("", ""));
    }
}
