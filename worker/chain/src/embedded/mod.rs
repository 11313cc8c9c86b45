//! [`EmbeddedChain`]: an in-process subtensor stand-in for the devnet and tests.
//!
//! Blocks advance on a tokio timer ([`EmbeddedChain::start`]) or by hand
//! ([`EmbeddedChain::advance`]). It keeps registrations (uids in order, capacity limited),
//! commitments, weights under subtensor's rules (rate limit, version key, permit,
//! MinAllowedWeights, MaxWeightsLimit), commit-reveal v4 with a local drand-style beacon
//! ([`beacon`], [`timelocked`]), and recomputes incentives on subtensor's epoch schedule with
//! a simplified Yuma (see [`yuma`]).

pub mod beacon;
mod state;
pub mod timelocked;
pub mod yuma;

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::watch;

use beacon::LocalBeacon;
use state::ChainState;
pub use state::{COMMIT_REVEAL_VERSION, SubnetConfig};
pub use timelocked::{RevealOutcome, RevealRecord};

use crate::account::AccountId;
use crate::chain::{Chain, WeightsReveal};
use crate::error::ChainError;
use crate::submission::{PendingCommit, TimelockedCommit};
use crate::timelock::Beacon;
use crate::types::Metagraph;
use crate::wallet::Keypair;
use crate::weights_rules::WeightsContext;

/// Chain-wide parameters of an [`EmbeddedChain`].
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddedChainConfig {
    /// Blocks per training window.
    pub blocks_per_window: u64,
    /// Time between blocks when the timer runs.
    pub block_time: Duration,
}

impl Default for EmbeddedChainConfig {
    fn default() -> Self {
        Self {
            blocks_per_window: 115,
            block_time: Duration::from_millis(200),
        }
    }
}

struct Inner {
    config: EmbeddedChainConfig,
    state: RwLock<ChainState>,
    blocks: watch::Sender<u64>,
    /// Requests are refused (as by an unreachable node) until this block.
    refuse_until: std::sync::atomic::AtomicU64,
    /// When each recent block was produced (the chain's `Timestamp::Now`).
    timestamps: Mutex<BTreeMap<u64, SystemTime>>,
}

/// Blocks whose production time the embedded chain remembers (a node prunes old state too).
pub const TIMESTAMPED_BLOCKS: u64 = 4096;

/// Handle to an in-process chain. Clones share the same chain; the block timer (if started)
/// stops when the last handle is dropped.
#[derive(Clone)]
pub struct EmbeddedChain {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedChain")
            .field("config", &self.inner.config)
            .field("block", &*self.inner.blocks.borrow())
            .finish()
    }
}

impl EmbeddedChain {
    /// A chain at block 0 whose blocks only advance through [`EmbeddedChain::advance`].
    /// Its beacon gets a fresh random key.
    pub fn new(config: EmbeddedChainConfig) -> Self {
        let (blocks, _) = watch::channel(0);
        // Key generation only fails if a G2 point did not fit its 96-byte encoding.
        let beacon =
            LocalBeacon::new(config.block_time).expect("a fresh BLS12-381 key always serializes");
        Self {
            inner: Arc::new(Inner {
                config,
                state: RwLock::new(ChainState::new(beacon)),
                blocks,
                refuse_until: std::sync::atomic::AtomicU64::new(0),
                timestamps: Mutex::new(BTreeMap::from([(0, SystemTime::now())])),
            }),
        }
    }

    /// A chain whose blocks also advance every `block_time` on a tokio task (requires a tokio
    /// runtime). The task ends when every handle is dropped.
    pub fn start(config: EmbeddedChainConfig) -> Self {
        let chain = Self::new(config);
        chain.start_timer();
        chain
    }

    /// Starts the block timer of a chain made with [`EmbeddedChain::new`] (after setting it
    /// up at block 0, say): a block every `block_time` on a tokio task, which ends when every
    /// handle is dropped. Start it once.
    pub fn start_timer(&self) {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let period = self.inner.config.block_time.max(Duration::from_millis(1));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                EmbeddedChain { inner }.advance(1);
            }
        });
    }

    /// Fault injection: every request through [`Chain`] fails with a retryable RPC error
    /// (as when the node is unreachable) until the chain reaches block `block`; blocks keep
    /// being produced meanwhile.
    pub fn refuse_requests_until(&self, block: u64) {
        self.inner
            .refuse_until
            .store(block, std::sync::atomic::Ordering::SeqCst);
    }

    /// The injected outage's error while it lasts.
    fn reachable(&self) -> Result<(), ChainError> {
        let until = self
            .inner
            .refuse_until
            .load(std::sync::atomic::Ordering::SeqCst);
        if self.block() < until {
            return Err(ChainError::Rpc(format!(
                "embedded chain unreachable until block {until} (injected outage)"
            )));
        }
        Ok(())
    }

    fn read<T>(&self, f: impl FnOnce(&ChainState) -> T) -> T {
        let state = self
            .inner
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        f(&state)
    }

    fn write<T>(&self, f: impl FnOnce(&mut ChainState) -> T) -> T {
        let mut state = self
            .inner
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    /// Produce `n` blocks now (running epochs on the way); returns the new block number.
    pub fn advance(&self, n: u64) -> u64 {
        let block = self.write(|s| {
            for _ in 0..n {
                s.step();
            }
            s.block
        });
        {
            let now = SystemTime::now();
            let mut stamps = self
                .inner
                .timestamps
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for b in block.saturating_sub(n.min(TIMESTAMPED_BLOCKS)) + 1..=block {
                stamps.insert(b, now);
            }
            let oldest = block.saturating_sub(TIMESTAMPED_BLOCKS);
            *stamps = stamps.split_off(&oldest);
        }
        self.inner.blocks.send_replace(block);
        block
    }

    /// When `block` was produced (`None` before it is, or once it is older than
    /// [`TIMESTAMPED_BLOCKS`]).
    pub fn timestamp(&self, block: u64) -> Option<SystemTime> {
        self.inner
            .timestamps
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&block)
            .copied()
    }

    /// The current block (synchronous).
    pub fn block(&self) -> u64 {
        self.read(|s| s.block)
    }

    /// Create (or reset) a subnet.
    pub fn add_subnet(&self, netuid: u16, config: SubnetConfig) {
        self.write(|s| s.add_subnet(netuid, config));
    }

    /// Add stake to a registered hotkey (gives validator permits); returns its new stake.
    pub fn add_stake(
        &self,
        netuid: u16,
        hotkey: &AccountId,
        amount: u64,
    ) -> Result<u64, ChainError> {
        self.write(|s| s.add_stake(netuid, hotkey, amount))
    }

    /// Recompute incentives of a subnet now instead of waiting for its next epoch.
    pub fn run_epoch(&self, netuid: u16) -> Result<(), ChainError> {
        self.write(|s| s.run_epoch(netuid))
    }

    /// Every neuron's current weight row, indexed by uid.
    pub fn weights(&self, netuid: u16) -> Result<Vec<Vec<(u16, u16)>>, ChainError> {
        self.read(|s| s.weights(netuid))
    }

    /// Timelocked commits the chain has settled (revealed, refused or expired), in order.
    pub fn reveals(&self, netuid: u16) -> Result<Vec<RevealRecord>, ChainError> {
        self.read(|s| s.reveals(netuid))
    }

    /// Change the chain-wide `CommitRevealWeightsVersion` (default
    /// [`COMMIT_REVEAL_VERSION`]), e.g. to see clients with an old version refused.
    pub fn set_commit_reveal_version(&self, version: u16) {
        self.write(|s| s.commit_reveal_version = version);
    }

    /// The latest beacon round published at the current block.
    pub fn latest_round(&self) -> u64 {
        self.read(|s| s.beacon.latest_round(s.block))
    }
}

#[async_trait]
impl Chain for EmbeddedChain {
    async fn current_block(&self) -> Result<u64, ChainError> {
        self.reachable()?;
        Ok(self.block())
    }

    async fn block_timestamp(&self, block: u64) -> Result<Option<SystemTime>, ChainError> {
        self.reachable()?;
        Ok(self.timestamp(block))
    }

    fn blocks_per_window(&self) -> u64 {
        self.inner.config.blocks_per_window
    }

    fn block_time(&self) -> Duration {
        self.inner.config.block_time
    }

    async fn wait_for_block(&self, block: u64) -> Result<u64, ChainError> {
        self.reachable()?;
        let mut blocks = self.inner.blocks.subscribe();
        let seen = blocks
            .wait_for(|&b| b >= block)
            .await
            .map_err(|_| ChainError::Rpc("embedded chain stopped".into()))?;
        Ok(*seen)
    }

    async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError> {
        self.reachable()?;
        self.read(|s| s.metagraph(netuid))
    }

    async fn burned_register(
        &self,
        netuid: u16,
        coldkey: &Keypair,
        hotkey: &AccountId,
    ) -> Result<u16, ChainError> {
        self.reachable()?;
        self.write(|s| s.register(netuid, coldkey.account_id(), *hotkey))
    }

    async fn set_commitment(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        data: &[u8],
    ) -> Result<(), ChainError> {
        self.reachable()?;
        self.write(|s| s.set_commitment(netuid, hotkey.account_id(), data))
    }

    async fn commitments(&self, netuid: u16) -> Result<HashMap<AccountId, Vec<u8>>, ChainError> {
        self.reachable()?;
        self.read(|s| s.commitments(netuid))
    }

    async fn set_weights(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        uids: &[u16],
        weights: &[f32],
        version_key: u64,
    ) -> Result<(), ChainError> {
        self.reachable()?;
        self.write(|s| s.set_weights(netuid, &hotkey.account_id(), uids, weights, version_key))
    }

    async fn commit_weights(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        commit_hash: [u8; 32],
    ) -> Result<(), ChainError> {
        self.reachable()?;
        self.write(|s| s.commit_weights(netuid, &hotkey.account_id(), commit_hash))
    }

    async fn reveal_weights(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        reveal: &WeightsReveal,
    ) -> Result<(), ChainError> {
        self.reachable()?;
        self.write(|s| s.reveal_weights(netuid, &hotkey.account_id(), reveal))
    }

    async fn weights_rate_limit(&self, netuid: u16) -> Result<u64, ChainError> {
        self.reachable()?;
        self.read(|s| s.weights_rate_limit(netuid))
    }

    async fn weights_context(
        &self,
        netuid: u16,
        hotkey: &AccountId,
    ) -> Result<WeightsContext, ChainError> {
        self.reachable()?;
        self.read(|s| s.weights_context(netuid, hotkey))
    }

    fn timelock_beacon(&self) -> Beacon {
        self.read(|s| s.beacon.beacon())
    }

    async fn commit_timelocked_weights(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        commit: &TimelockedCommit,
    ) -> Result<(), ChainError> {
        self.reachable()?;
        self.write(|s| s.commit_timelocked(netuid, &hotkey.account_id(), commit))
    }

    async fn pending_commits(
        &self,
        netuid: u16,
        hotkey: &AccountId,
    ) -> Result<Vec<PendingCommit>, ChainError> {
        self.reachable()?;
        self.read(|s| s.pending_commits(netuid, hotkey))
    }
}
