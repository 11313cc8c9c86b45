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
