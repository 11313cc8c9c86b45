//! Rules on the per-deployment settings a worker is started with (not part of a manifest,
//! but the operator must refuse exactly what the worker would, so they live here too).

/// Names of the well-known subtensor networks and their aliases.
pub const NETWORK_NAMES: [&str; 7] = [
    "finney",
    "main",
    "mainnet",
    "test",
    "testnet",
    "local",
    "localhost",
];

/// Checks a chain endpoint: a network name of [`NETWORK_NAMES`] or a `ws://` / `wss://` URL.
pub fn check_chain_endpoint(endpoint: &str) -> Result<(), String> {
    if NETWORK_NAMES.contains(&endpoint) {
        return Ok(());
    }
    for scheme in ["ws://", "wss://"] {
        if let Some(rest) = endpoint.strip_prefix(scheme) {
            if rest.is_empty() || rest.starts_with('/') {
                return Err(format!("{endpoint:?} has no host"));
            }
            return Ok(());
        }
    }
    Err(format!(
        "unknown network {endpoint:?}: expected finney, test, local or a ws(s):// URL"
    ))
}

/// Environment variable holding the path of the run manifest file.
pub const ENV_RUN_MANIFEST: &str = "RUN_MANIFEST";
/// Environment variable holding the expected SHA-256 of the run manifest.
pub const ENV_RUN_MANIFEST_SHA256: &str = "RUN_MANIFEST_SHA256";

/// Environment variable holding the number of processes (one per GPU) a miner trains its
/// replica with; the operator sets it to the pod's GPU count.
pub const ENV_WORLD_SIZE: &str = "WORKER_WORLD_SIZE";

/// Environment variable of `worker miner --overlap` (train the next window while the last one
/// is gathered); the operator sets it from a TrainingRun's `spec.overlap`.
pub const ENV_OVERLAP: &str = "WORKER_OVERLAP";

/// Environment variable naming the address the worker serves its health and metrics
/// endpoints on (default `0.0.0.0:` [`WORKER_HEALTH_PORT`]).
pub const ENV_HEALTH_ADDR: &str = "HEALTH_ADDR";
/// Port of the worker's health and metrics endpoints (the pod's probes target it).
pub const WORKER_HEALTH_PORT: u16 = 9090;
/// Liveness: the role loop is making progress.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness: the chain answers and the node is in sync with the run.
pub const READYZ_PATH: &str = "/readyz";
/// Prometheus text exposition of the worker's gauges.
pub const METRICS_PATH: &str = "/metrics";

/// Environment variable holding the worker's own pod name (downward API `metadata.name`);
/// with [`ENV_POD_NAMESPACE`] it tells the worker which pod to report on.
pub const ENV_POD_NAME: &str = "POD_NAME";
/// Environment variable holding the worker's own namespace (downward API `metadata.namespace`).
pub const ENV_POD_NAMESPACE: &str = "POD_NAMESPACE";

/// Exit code of `worker register` when retrying cannot help (the chain refused the
/// registration, the wallet cannot be read, the arguments are wrong): the operator's
/// registration Job fails at once on it instead of burning its retries. Any other failure
/// (exit code 1: chain unreachable, timeout, rate limit) is retried by the Job.
pub const REGISTER_PERMANENT_FAILURE_EXIT_CODE: i32 = 3;

/// Pod annotation where the worker reports its metagraph UID on its own pod.
pub const REPORT_UID_ANNOTATION: &str = "subnet.templar.dev/chain-uid";
/// Pod annotation where the worker reports the last window it completed.
pub const REPORT_WINDOW_ANNOTATION: &str = "subnet.templar.dev/last-window";
/// Pod annotation where the worker reports its last score.
pub const REPORT_SCORE_ANNOTATION: &str = "subnet.templar.dev/last-score";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        for ok in [
            "finney",
            "test",
            "local",
            "ws://127.0.0.1:9944",
            "wss://entrypoint-finney.opentensor.ai:443",
        ] {
            assert!(check_chain_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in ["https://x", "http://x:9933", "ws://", "subtensor:9944", ""] {
            assert!(check_chain_endpoint(bad).is_err(), "{bad}");
        }
    }
}
