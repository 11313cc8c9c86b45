//! subxt configuration for subtensor and the well-known endpoints.

use std::str::FromStr;
use std::time::Duration;

use subxt::config::substrate::SubstrateConfig;
use subxt::config::{Config, DefaultTransactionExtensions, HashFor};
use subxt::metadata::ArcMetadata;
use subxt::utils::{AccountId32, MultiAddress, MultiSignature};

use super::reconnect::RetryPolicy;

/// subxt `Config` for subtensor: Substrate defaults with `MultiAddress<AccountId32, ()>`
/// addresses (like Polkadot). Transaction extensions are driven by the node's metadata;
/// subtensor's own extensions carry no data and are skipped.
#[derive(Debug, Clone, Default)]
pub struct SubtensorConfig(SubstrateConfig);

impl SubtensorConfig {
    /// Wrap a Substrate config (e.g. one built with a genesis hash, spec versions and metadata
    /// for offline use).
    pub fn from_substrate(inner: SubstrateConfig) -> Self {
        Self(inner)
    }
}

impl Config for SubtensorConfig {
    type AccountId = AccountId32;
    type Address = MultiAddress<AccountId32, ()>;
    type Signature = MultiSignature;
    type Hasher = <SubstrateConfig as Config>::Hasher;
    type Header = <SubstrateConfig as Config>::Header;
    type TransactionExtensions = DefaultTransactionExtensions<Self>;
    type AssetId = u32;

    fn genesis_hash(&self) -> Option<HashFor<Self>> {
        self.0.genesis_hash()
    }

    fn spec_and_transaction_version_for_block_number(
        &self,
        block_number: u64,
    ) -> Option<(u32, u32)> {
        self.0
            .spec_and_transaction_version_for_block_number(block_number)
    }

    fn metadata_for_spec_version(&self, spec_version: u32) -> Option<ArcMetadata> {
        self.0.metadata_for_spec_version(spec_version)
    }

    fn set_metadata_for_spec_version(&self, spec_version: u32, metadata: ArcMetadata) {
        self.0.set_metadata_for_spec_version(spec_version, metadata)
    }
}

/// Well-known subtensor endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// Main network.
    Finney,
    /// Public test network.
    Test,
    /// A node on this machine (`ws://127.0.0.1:9944`).
    Local,
    /// Any other websocket URL.
    Custom(String),
}

impl Network {
    /// Websocket URL of the endpoint.
    pub fn url(&self) -> &str {
        match self {
            Network::Finney => "wss://entrypoint-finney.opentensor.ai:443",
            Network::Test => "wss://test.finney.opentensor.ai:443",
            Network::Local => "ws://127.0.0.1:9944",
            Network::Custom(url) => url,
        }
    }
}

impl FromStr for Network {
    type Err = String;

    /// `finney`, `test`, `local`, or a `ws://` / `wss://` URL.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The rule is shared with the operator (run-manifest's deployment rules).
        run_manifest::deployment::check_chain_endpoint(s)?;
        Ok(match s {
            "finney" | "main" | "mainnet" => Network::Finney,
            "test" | "testnet" => Network::Test,
            "local" | "localhost" => Network::Local,
            url => Network::Custom(url.to_owned()),
        })
    }
}

/// Settings of a [`crate::SubxtChain`].
#[derive(Debug, Clone)]
pub struct SubxtChainConfig {
    /// Endpoint to connect to.
    pub network: Network,
    /// Blocks per training window (REFERENCE: 115).
    pub blocks_per_window: u64,
    /// Expected block time (subtensor: 12 s).
    pub block_time: Duration,
    /// Refuse `set_commitment` locally if the hotkey committed less than this many blocks ago
    /// (the Commitments pallet limits space per tempo; `None` = no local check).
    pub commitment_interval_blocks: Option<u64>,
    /// Transaction mortality in blocks.
    pub mortality_blocks: u64,
    /// Reconnection and retry of idempotent calls after the node drops.
    pub retry: RetryPolicy,
    /// Longest wait for a submitted transaction to be finalized ([`crate::ChainError::Timeout`]).
    pub finalization_timeout: Duration,
}

impl SubxtChainConfig {
    /// Defaults for a network: 115-block windows, 12 s blocks, 64-block mortality, the
    /// default [`RetryPolicy`], 5 minutes to finalize.
    pub fn new(network: Network) -> Self {
        Self {
            network,
            blocks_per_window: 115,
            block_time: Duration::from_secs(12),
            commitment_interval_blocks: None,
            mortality_blocks: 64,
            retry: RetryPolicy::default(),
            finalization_timeout: Duration::from_secs(300),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_names_and_urls() {
        assert_eq!(
            "finney".parse::<Network>().unwrap().url(),
            "wss://entrypoint-finney.opentensor.ai:443"
        );
        assert_eq!(
            "test".parse::<Network>().unwrap().url(),
            "wss://test.finney.opentensor.ai:443"
        );
        assert_eq!(
            "local".parse::<Network>().unwrap().url(),
            "ws://127.0.0.1:9944"
        );
        assert_eq!(
            "ws://node:9944".parse::<Network>().unwrap(),
            Network::Custom("ws://node:9944".into())
        );
        assert!("http://x".parse::<Network>().is_err());
    }
}
