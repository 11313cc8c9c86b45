//! [`SubxtChain`]: the [`Chain`] trait against a real subtensor node.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use subxt::OnlineClient;
use subxt::client::{ClientAtBlock, OnlineClientAtBlockImpl};
use subxt::config::{DefaultExtrinsicParamsBuilder, Header as _, RpcConfigFor};
use subxt::rpcs::RpcClient;
use subxt::rpcs::methods::LegacyRpcMethods;
use subxt::tx::Payload;
use subxt::utils::AccountId32;
use tracing::{debug, info};

use super::api::runtime;
use super::calls;
use super::commitment::first_raw_field;
use super::config::{SubtensorConfig, SubxtChainConfig};
use super::convert::{finalized_error, metagraph_from_lite, submit_error};
use crate::account::AccountId;
use crate::chain::{Chain, WeightsReveal};
use crate::error::{ChainError, RateLimited};
use crate::types::Metagraph;
use crate::wallet::Keypair;
use crate::weights::normalize_max_weights;

type AtBlock = ClientAtBlock<SubtensorConfig, OnlineClientAtBlockImpl<SubtensorConfig>>;

fn rpc_error(error: impl std::fmt::Display) -> ChainError {
    ChainError::Rpc(error.to_string())
}

fn to_subxt(account: &AccountId) -> AccountId32 {
    AccountId32(account.0)
}

/// A connection to a subtensor node. Cheap to clone (shares the connection).
#[derive(Clone)]
pub struct SubxtChain {
    client: OnlineClient<SubtensorConfig>,
    rpc: LegacyRpcMethods<RpcConfigFor<SubtensorConfig>>,
    config: SubxtChainConfig,
}

impl std::fmt::Debug for SubxtChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubxtChain")
            .field("network", &self.config.network)
            .finish_non_exhaustive()
    }
}

impl SubxtChain {
    /// Connect to the configured endpoint (`ws://` allowed for local nodes).
    pub async fn connect(config: SubxtChainConfig) -> Result<Self, ChainError> {
        let url = config.network.url().to_owned();
        info!(%url, "connecting to subtensor");
        let rpc_client = RpcClient::from_insecure_url(&url)
            .await
            .map_err(rpc_error)?;
        Self::from_rpc_client(rpc_client, config).await
    }

    /// Use an existing RPC client (e.g. subxt's reconnecting client, or a mock in tests).
    /// `config.network` is then only informational.
    pub async fn from_rpc_client(
        rpc_client: RpcClient,
        config: SubxtChainConfig,
    ) -> Result<Self, ChainError> {
        let client = OnlineClient::from_rpc_client_with_config(
            SubtensorConfig::default(),
            rpc_client.clone(),
        )
        .await
        .map_err(rpc_error)?;
        Ok(Self {
            client,
            rpc: LegacyRpcMethods::new(rpc_client),
            config,
        })
    }

    /// The underlying subxt client, for queries this crate does not wrap.
    pub fn client(&self) -> &OnlineClient<SubtensorConfig> {
        &self.client
    }

    async fn at_latest(&self) -> Result<AtBlock, ChainError> {
        self.client.at_current_block().await.map_err(rpc_error)
    }

    async fn uid_of(
        &self,
        at: &AtBlock,
        netuid: u16,
        hotkey: &AccountId,
    ) -> Result<Option<u16>, ChainError> {
        let value = at
            .storage()
            .try_fetch(
                runtime::storage().subtensor_module().uids(),
                (netuid, to_subxt(hotkey)),
            )
            .await
            .map_err(rpc_error)?;
        value
            .map(|v| v.decode().map_err(|e| ChainError::Decode(e.to_string())))
            .transpose()
    }

    async fn require_uid(
        &self,
        at: &AtBlock,
        netuid: u16,
        hotkey: &AccountId,
    ) -> Result<u16, ChainError> {
        self.uid_of(at, netuid, hotkey)
            .await?
            .ok_or(ChainError::NotRegistered {
                netuid,
                hotkey: *hotkey,
            })
    }

    async fn commit_reveal_enabled(&self, at: &AtBlock, netuid: u16) -> Result<bool, ChainError> {
        at.storage()
            .fetch(
                runtime::storage()
                    .subtensor_module()
                    .commit_reveal_weights_enabled(),
                (netuid,),
            )
            .await
            .map_err(rpc_error)?
            .decode()
            .map_err(|e| ChainError::Decode(e.to_string()))
    }

    /// Refuse early when the neuron set weights (or committed) less than
    /// `WeightsSetRateLimit` blocks ago — the chain would fail with `SettingWeightsTooFast`.
    async fn check_weights_rate_limit(
        &self,
        at: &AtBlock,
        netuid: u16,
        uid: u16,
    ) -> Result<(), ChainError> {
        let limit = self.weights_rate_limit_at(at, netuid).await?;
        let last_updates: Vec<u64> = at
            .storage()
            .fetch(
                runtime::storage().subtensor_module().last_update(),
                (netuid,),
            )
            .await
            .map_err(rpc_error)?
            .decode()
            .map_err(|e| ChainError::Decode(e.to_string()))?;
        let last = last_updates.get(usize::from(uid)).copied().unwrap_or(0);
        let now = self.current_block().await?;
        check_rate_limit(RateLimited::Weights, netuid, now, last, limit)
    }

    async fn weights_rate_limit_at(&self, at: &AtBlock, netuid: u16) -> Result<u64, ChainError> {
        at.storage()
            .fetch(
                runtime::storage()
                    .subtensor_module()
                    .weights_set_rate_limit(),
                (netuid,),
            )
            .await
            .map_err(rpc_error)?
            .decode()
            .map_err(|e| ChainError::Decode(e.to_string()))
    }

    /// Sign with `signer`, submit, and wait until finalized; dispatch failures become
    /// [`ChainError::Module`] etc.
    async fn submit<Call: Payload>(&self, call: &Call, signer: &Keypair) -> Result<(), ChainError> {
        let at = self.at_latest().await?;
        let nonce = self
            .rpc
            .system_account_next_index(&AccountId32(signer.public_key()))
            .await
            .map_err(rpc_error)?;
        let params = DefaultExtrinsicParamsBuilder::<SubtensorConfig>::new()
            .nonce(nonce)
            .mortal(self.config.mortality_blocks)
            .build();
        let progress = at
            .tx()
            .sign_and_submit_then_watch(call, signer, params)
            .await
            .map_err(submit_error)?;
        debug!(hash = ?progress.extrinsic_hash(), "submitted");
        progress
            .wait_for_finalized_success()
            .await
            .map_err(finalized_error)?;
        Ok(())
    }
}

/// `Ok` when `now - last >= limit` (or the neuron never updated), else the typed refusal.
pub(crate) fn check_rate_limit(
    what: RateLimited,
    netuid: u16,
    now: u64,
    last: u64,
    limit: u64,
) -> Result<(), ChainError> {
    if last == 0 || now.saturating_sub(last) >= limit {
        Ok(())
    } else {
        Err(ChainError::RateLimited {
            what,
            netuid,
            current_block: now,
            next_allowed_block: last.saturating_add(limit),
        })
    }
}

#[async_trait]
impl Chain for SubxtChain {
    async fn current_block(&self) -> Result<u64, ChainError> {
        let header = self
            .rpc
            .chain_get_header(None)
            .await
            .map_err(rpc_error)?
            .ok_or_else(|| ChainError::Rpc("node returned no best header".into()))?;
        Ok(header.number())
    }

    fn blocks_per_window(&self) -> u64 {
        self.config.blocks_per_window
    }

    fn block_time(&self) -> Duration {
        self.config.block_time
    }

    async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError> {
        let at = self.at_latest().await?;
        let lite = at
            .runtime_apis()
            .call(
                runtime::runtime_apis()
                    .neuron_info_runtime_api()
                    .get_neurons_lite(netuid),
            )
            .await
            .map_err(rpc_error)?;
        Ok(metagraph_from_lite(netuid, at.block_number(), &lite))
    }

    async fn burned_register(
        &self,
        netuid: u16,
        coldkey: &Keypair,
        hotkey: &AccountId,
    ) -> Result<u16, ChainError> {
        let at = self.at_latest().await?;
        let exists: bool = at
            .storage()
            .fetch(
                runtime::storage().subtensor_module().networks_added(),
                (netuid,),
            )
            .await
            .map_err(rpc_error)?
            .decode()
            .map_err(|e| ChainError::Decode(e.to_string()))?;
        if !exists {
            return Err(ChainError::UnknownSubnet(netuid));
        }
        if let Some(uid) = self.uid_of(&at, netuid, hotkey).await? {
            return Err(ChainError::AlreadyRegistered {
                netuid,
                hotkey: *hotkey,
                uid,
            });
        }
        let call = calls::burned_register(netuid, hotkey);
        self.submit(&call, coldkey).await?;
        let after = self.at_latest().await?;
        self.require_uid(&after, netuid, hotkey).await
    }

    async fn set_commitment(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        data: &[u8],
    ) -> Result<(), ChainError> {
        let call = calls::set_commitment(netuid, data)?;
        if let Some(interval) = self.config.commitment_interval_blocks {
            let at = self.at_latest().await?;
            let last = at
                .storage()
                .try_fetch(
                    runtime::storage().commitments().last_commitment(),
                    (netuid, AccountId32(hotkey.public_key())),
                )
                .await
                .map_err(rpc_error)?
                .map(|v| v.decode().map_err(|e| ChainError::Decode(e.to_string())))
                .transpose()?;
            if let Some(last) = last {
                let now = self.current_block().await?;
                check_rate_limit(
                    RateLimited::Commitment,
                    netuid,
                    now,
                    u64::from(last),
                    interval,
                )?;
            }
        }
        self.submit(&call, hotkey).await
    }

    async fn commitments(&self, netuid: u16) -> Result<HashMap<AccountId, Vec<u8>>, ChainError> {
        let at = self.at_latest().await?;
        let mut entries = at
            .storage()
            .iter(runtime::storage().commitments().commitment_of(), (netuid,))
            .await
            .map_err(rpc_error)?;
        let mut out = HashMap::new();
        while let Some(entry) = entries.next().await {
            let entry = entry.map_err(rpc_error)?;
            let (_, who) = entry
                .key()
                .and_then(|k| k.decode())
                .map_err(|e| ChainError::Decode(e.to_string()))?;
            let registration = entry
                .value()
                .decode()
                .map_err(|e| ChainError::Decode(e.to_string()))?;
            if let Some(bytes) = first_raw_field(&registration.info) {
                out.insert(AccountId(who.0), bytes);
            }
        }
        Ok(out)
    }

    async fn set_weights(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        uids: &[u16],
        weights: &[f32],
        version_key: u64,
    ) -> Result<(), ChainError> {
        let normalized = normalize_max_weights(uids, weights)?;
        let at = self.at_latest().await?;
        let uid = self.require_uid(&at, netuid, &hotkey.account_id()).await?;
        if self.commit_reveal_enabled(&at, netuid).await? {
            return Err(ChainError::CommitReveal {
                netuid,
                enabled: true,
            });
        }
        let required: u64 = at
            .storage()
            .fetch(
                runtime::storage().subtensor_module().weights_version_key(),
                (netuid,),
            )
            .await
            .map_err(rpc_error)?
            .decode()
            .map_err(|e| ChainError::Decode(e.to_string()))?;
        if required != 0 && version_key < required {
            return Err(ChainError::VersionKey {
                given: version_key,
                required,
            });
        }
        self.check_weights_rate_limit(&at, netuid, uid).await?;
        let call = calls::set_weights(netuid, &normalized, version_key);
        self.submit(&call, hotkey).await
    }

    async fn commit_weights(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        commit_hash: [u8; 32],
    ) -> Result<(), ChainError> {
        let at = self.at_latest().await?;
        let uid = self.require_uid(&at, netuid, &hotkey.account_id()).await?;
        if !self.commit_reveal_enabled(&at, netuid).await? {
            return Err(ChainError::CommitReveal {
                netuid,
                enabled: false,
            });
        }
        self.check_weights_rate_limit(&at, netuid, uid).await?;
        let call = calls::commit_weights(netuid, commit_hash);
        self.submit(&call, hotkey).await
    }

    async fn reveal_weights(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        reveal: &WeightsReveal,
    ) -> Result<(), ChainError> {
        let at = self.at_latest().await?;
        self.require_uid(&at, netuid, &hotkey.account_id()).await?;
        if !self.commit_reveal_enabled(&at, netuid).await? {
            return Err(ChainError::CommitReveal {
                netuid,
                enabled: false,
            });
        }
        let call = calls::reveal_weights(netuid, reveal);
        self.submit(&call, hotkey).await
    }

    async fn weights_rate_limit(&self, netuid: u16) -> Result<u64, ChainError> {
        let at = self.at_latest().await?;
        self.weights_rate_limit_at(&at, netuid).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_arithmetic() {
        assert!(check_rate_limit(RateLimited::Weights, 3, 1000, 0, 100).is_ok());
        assert!(check_rate_limit(RateLimited::Weights, 3, 1000, 900, 100).is_ok());
        assert_eq!(
            check_rate_limit(RateLimited::Weights, 3, 1000, 950, 100),
            Err(ChainError::RateLimited {
                what: RateLimited::Weights,
                netuid: 3,
                current_block: 1000,
                next_allowed_block: 1050
            })
        );
    }
}
