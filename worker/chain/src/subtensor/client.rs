//! [`SubxtChain`]: the [`Chain`] trait against a real subtensor node.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use subxt::OnlineClient;
use subxt::backend::LegacyBackend;
use subxt::client::{ClientAtBlock, OnlineClientAtBlockImpl};
use subxt::config::{DefaultExtrinsicParamsBuilder, Header as _, RpcConfigFor};
use subxt::error::OnlineClientAtBlockError;
use subxt::rpcs::RpcClient;
use subxt::rpcs::methods::LegacyRpcMethods;
use subxt::storage::Address;
use subxt::tx::Payload;
use subxt::utils::AccountId32;
use tracing::{debug, info, warn};

use super::api::runtime;
use super::calls;
use super::commitment::first_raw_field;
use super::compat::RuntimeCompatibility;
use super::config::{SubtensorConfig, SubxtChainConfig};
use super::convert::{finalized_error, metagraph_from_lite, submit_error};
use super::reconnect::{Connector, ReconnectingRpc};
use crate::account::AccountId;
use crate::chain::{Chain, WeightsReveal};
use crate::error::{ChainError, RateLimited};
use crate::submission::{PendingCommit, TimelockedCommit};
use crate::timelock::Beacon;
use crate::types::Metagraph;
use crate::wallet::Keypair;
use crate::weights::normalize_max_weights;
use crate::weights_rules::{WeightsContext, WeightsPolicy, check_rate_limit};

type AtBlock = ClientAtBlock<SubtensorConfig, OnlineClientAtBlockImpl<SubtensorConfig>>;

fn rpc_error(error: impl std::fmt::Display) -> ChainError {
    ChainError::Rpc(error.to_string())
}

fn decode_error(error: impl std::fmt::Display) -> ChainError {
    ChainError::Decode(error.to_string())
}

fn to_subxt(account: &AccountId) -> AccountId32 {
    AccountId32(account.0)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A connection to a subtensor node. Cheap to clone (shares the connection).
#[derive(Clone)]
pub struct SubxtChain {
    client: OnlineClient<SubtensorConfig>,
    rpc: LegacyRpcMethods<RpcConfigFor<SubtensorConfig>>,
    config: SubxtChainConfig,
    compatibility: Arc<RuntimeCompatibility>,
    reconnecting: Option<Arc<ReconnectingRpc>>,
}

impl std::fmt::Debug for SubxtChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubxtChain")
            .field("network", &self.config.network)
            .field("node_spec", &self.compatibility.node_spec)
            .finish_non_exhaustive()
    }
}

impl SubxtChain {
    /// Connect to the configured endpoint (`ws://` allowed for local nodes) through a
    /// [`ReconnectingRpc`]: a dropped connection is re-opened with backoff and idempotent
    /// calls are retried.
    pub async fn connect(config: SubxtChainConfig) -> Result<Self, ChainError> {
        let url = config.network.url().to_owned();
        info!(%url, "connecting to subtensor");
        Self::connect_with(ReconnectingRpc::url_connector(url), config).await
    }

    /// Like [`SubxtChain::connect`] with any way of opening connections (tests use an
    /// in-memory node).
    pub async fn connect_with(
        connector: Connector,
        config: SubxtChainConfig,
    ) -> Result<Self, ChainError> {
        let reconnecting = Arc::new(
            ReconnectingRpc::connect(connector, config.retry.clone())
                .await
                .map_err(rpc_error)?,
        );
        let mut chain = Self::from_rpc_client(RpcClient::new(reconnecting.clone()), config).await?;
        chain.reconnecting = Some(reconnecting);
        Ok(chain)
    }

    /// Use an existing RPC client as is (no reconnection layer). `config.network` is then
    /// only informational.
    ///
    /// The legacy JSON-RPC backend is used (plain requests, no long-lived follow
    /// subscription), so every call stands alone and survives reconnections. The node's
    /// metadata is compared with the bundled one ([`RuntimeCompatibility`]) and the result
    /// logged.
    pub async fn from_rpc_client(
        rpc_client: RpcClient,
        config: SubxtChainConfig,
    ) -> Result<Self, ChainError> {
        let backend = LegacyBackend::builder().build(rpc_client.clone());
        let client =
            OnlineClient::from_backend_with_config(SubtensorConfig::default(), Arc::new(backend))
                .await
                .map_err(rpc_error)?;
        let at = client.at_current_block().await.map_err(rpc_error)?;
        let compatibility = RuntimeCompatibility::compare(at.metadata_ref(), at.spec_version())?;
        if compatibility.is_compatible() {
            info!("{}", compatibility.summary());
        } else {
            warn!("{}", compatibility.summary());
        }
        Ok(Self {
            client,
            rpc: LegacyRpcMethods::new(rpc_client),
            config,
            compatibility: Arc::new(compatibility),
            reconnecting: None,
        })
    }

    /// The underlying subxt client, for queries this crate does not wrap.
    pub fn client(&self) -> &OnlineClient<SubtensorConfig> {
        &self.client
    }

    /// How the node's runtime compared with the bundled metadata at connect.
    pub fn runtime_compatibility(&self) -> &RuntimeCompatibility {
        &self.compatibility
    }

    /// Connections re-opened since [`SubxtChain::connect`] (0 without the reconnection layer).
    pub fn reconnects(&self) -> u64 {
        self.reconnecting.as_ref().map_or(0, |r| r.reconnects())
    }

    async fn at_latest(&self) -> Result<AtBlock, ChainError> {
        self.client.at_current_block().await.map_err(rpc_error)
    }

    /// Fetch a (value-query) storage entry, refusing entries whose encoding changed.
    async fn fetch<A: Address>(
        &self,
        at: &AtBlock,
        address: A,
        keys: A::KeyParts,
    ) -> Result<A::Value, ChainError> {
        self.compatibility
            .ensure(address.pallet_name(), address.entry_name())?;
        at.storage()
            .fetch(address, keys)
            .await
            .map_err(rpc_error)?
            .decode()
            .map_err(decode_error)
    }

    /// Fetch an optional storage entry.
    async fn try_fetch<A: Address>(
        &self,
        at: &AtBlock,
        address: A,
        keys: A::KeyParts,
    ) -> Result<Option<A::Value>, ChainError> {
        self.compatibility
            .ensure(address.pallet_name(), address.entry_name())?;
        at.storage()
            .try_fetch(address, keys)
            .await
            .map_err(rpc_error)?
            .map(|v| v.decode().map_err(decode_error))
            .transpose()
    }

    async fn uid_of(
        &self,
        at: &AtBlock,
        netuid: u16,
        hotkey: &AccountId,
    ) -> Result<Option<u16>, ChainError> {
        self.try_fetch(
            at,
            runtime::storage().subtensor_module().uids(),
            (netuid, to_subxt(hotkey)),
        )
        .await
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
        self.fetch(
            at,
            runtime::storage()
                .subtensor_module()
                .commit_reveal_weights_enabled(),
            (netuid,),
        )
        .await
    }

    async fn last_update(&self, at: &AtBlock, netuid: u16, uid: u16) -> Result<u64, ChainError> {
        let last_updates: Vec<u64> = self
            .fetch(
                at,
                runtime::storage().subtensor_module().last_update(),
                (netuid,),
            )
            .await?;
        Ok(last_updates.get(usize::from(uid)).copied().unwrap_or(0))
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
        let last = self.last_update(at, netuid, uid).await?;
        let now = self.current_block().await?;
        check_rate_limit(RateLimited::Weights, netuid, now, last, limit)
    }

    async fn weights_rate_limit_at(&self, at: &AtBlock, netuid: u16) -> Result<u64, ChainError> {
        self.fetch(
            at,
            runtime::storage()
                .subtensor_module()
                .weights_set_rate_limit(),
            (netuid,),
        )
        .await
    }

    async fn weights_policy(&self, at: &AtBlock, netuid: u16) -> Result<WeightsPolicy, ChainError> {
        let sm = || runtime::storage().subtensor_module();
        let (subnet_n, tempo, commit_reveal_enabled, commit_reveal_version, reveal_period_epochs) =
            tokio::try_join!(
                self.fetch(at, sm().subnetwork_n(), (netuid,)),
                self.fetch(at, sm().tempo(), (netuid,)),
                self.commit_reveal_enabled(at, netuid),
                self.fetch(at, sm().commit_reveal_weights_version(), ()),
                self.fetch(at, sm().reveal_period_epochs(), (netuid,)),
            )?;
        let (min_allowed_weights, max_weight_limit, weights_version_key, weights_rate_limit) = tokio::try_join!(
            self.fetch(at, sm().min_allowed_weights(), (netuid,)),
            self.fetch(at, sm().max_weights_limit(), (netuid,)),
            self.fetch(at, sm().weights_version_key(), (netuid,)),
            self.weights_rate_limit_at(at, netuid),
        )?;
        Ok(WeightsPolicy {
            netuid,
            subnet_n,
            tempo,
            commit_reveal_enabled,
            commit_reveal_version,
            reveal_period_epochs,
            min_allowed_weights,
            max_weight_limit,
            weights_version_key,
            weights_rate_limit,
        })
    }

    /// Sign with `signer`, submit, and wait until finalized (at most
    /// `config.finalization_timeout`); dispatch failures become [`ChainError::Module`] etc.
    async fn submit<Call: Payload>(&self, call: &Call, signer: &Keypair) -> Result<(), ChainError> {
        self.compatibility
            .ensure(call.pallet_name(), call.call_name())?;
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
        let timeout = self.config.finalization_timeout;
        tokio::time::timeout(timeout, progress.wait_for_finalized_success())
            .await
            .map_err(|_| ChainError::Timeout {
                seconds: timeout.as_secs(),
            })?
            .map_err(finalized_error)?;
        Ok(())
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

    async fn block_timestamp(&self, block: u64) -> Result<Option<SystemTime>, ChainError> {
        let at = match self.client.at_block(block).await {
            Ok(at) => at,
            Err(OnlineClientAtBlockError::BlockNotFound { .. }) => return Ok(None),
            Err(err) => return Err(rpc_error(err)),
        };
        let millis = self
            .fetch(&at, runtime::storage().timestamp().now(), ())
            .await?;
        Ok(UNIX_EPOCH.checked_add(Duration::from_millis(millis)))
    }

    fn blocks_per_window(&self) -> u64 {
        self.config.blocks_per_window
    }

    fn block_time(&self) -> Duration {
        self.config.block_time
    }

    async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError> {
        self.compatibility
            .ensure("NeuronInfoRuntimeApi", "get_neurons_lite")?;
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
        let exists: bool = self
            .fetch(
                &at,
                runtime::storage().subtensor_module().networks_added(),
                (netuid,),
            )
            .await?;
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
            let last = self
                .try_fetch(
                    &at,
                    runtime::storage().commitments().last_commitment(),
                    (netuid, AccountId32(hotkey.public_key())),
                )
                .await?;
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
        self.compatibility.ensure("Commitments", "CommitmentOf")?;
        let at = self.at_latest().await?;
        let mut entries = at
            .storage()
            .iter(runtime::storage().commitments().commitment_of(), (netuid,))
            .await
            .map_err(rpc_error)?;
        let mut out = HashMap::new();
        while let Some(entry) = entries.next().await {
            let entry = entry.map_err(rpc_error)?;
            let (_, who) = entry.key().and_then(|k| k.decode()).map_err(decode_error)?;
            let registration = entry.value().decode().map_err(decode_error)?;
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
        let required: u64 = self
            .fetch(
                &at,
                runtime::storage().subtensor_module().weights_version_key(),
                (netuid,),
            )
            .await?;
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

    async fn weights_context(
        &self,
        netuid: u16,
        hotkey: &AccountId,
    ) -> Result<WeightsContext, ChainError> {
        let at = self.at_latest().await?;
        let uid = self.require_uid(&at, netuid, hotkey).await?;
        let (policy, last_update, permits, block) = tokio::try_join!(
            self.weights_policy(&at, netuid),
            self.last_update(&at, netuid, uid),
            self.fetch(
                &at,
                runtime::storage().subtensor_module().validator_permit(),
                (netuid,),
            ),
            self.current_block(),
        )?;
        Ok(WeightsContext {
            policy,
            block,
            now_unix: unix_now(),
            uid,
            last_update,
            validator_permit: permits.get(usize::from(uid)).copied().unwrap_or(false),
        })
    }

    fn timelock_beacon(&self) -> Beacon {
        Beacon::quicknet()
    }

    async fn commit_timelocked_weights(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        commit: &TimelockedCommit,
    ) -> Result<(), ChainError> {
        let call = calls::commit_timelocked_weights(netuid, commit)?;
        self.submit(&call, hotkey).await
    }

    async fn pending_commits(
        &self,
        netuid: u16,
        hotkey: &AccountId,
    ) -> Result<Vec<PendingCommit>, ChainError> {
        self.compatibility
            .ensure("SubtensorModule", "TimelockedWeightCommits")?;
        let at = self.at_latest().await?;
        let mut entries = at
            .storage()
            .iter(
                runtime::storage()
                    .subtensor_module()
                    .timelocked_weight_commits(),
                (netuid,),
            )
            .await
            .map_err(rpc_error)?;
        let mut out = Vec::new();
        while let Some(entry) = entries.next().await {
            let entry = entry.map_err(rpc_error)?;
            let (_, epoch) = entry.key().and_then(|k| k.decode()).map_err(decode_error)?;
            let commits = entry.value().decode().map_err(decode_error)?;
            for (who, commit_block, ciphertext, reveal_round) in commits {
                if who.0 == hotkey.0 {
                    out.push(PendingCommit {
                        epoch,
                        commit_block,
                        reveal_round,
                        bytes: ciphertext.0.len(),
                    });
                }
            }
        }
        out.sort_by_key(|c| (c.epoch, c.commit_block));
        Ok(out)
    }
}
