//! The [`Chain`] trait: everything the worker needs from subtensor.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;

use crate::account::AccountId;
use crate::error::ChainError;
use crate::types::{Metagraph, window_of};
use crate::wallet::Keypair;
use crate::weights::commit_hash;

/// The most bytes one commitment holds (one `Raw128` field).
pub const MAX_COMMITMENT_BYTES: usize = 128;

/// The data revealed by `reveal_weights`; its [`WeightsReveal::commit_hash`] is what
/// `commit_weights` commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightsReveal {
    /// Destination uids.
    pub uids: Vec<u16>,
    /// `u16` weights (see [`crate::normalize_max_weights`]).
    pub values: Vec<u16>,
    /// Random salt.
    pub salt: Vec<u16>,
    /// Weights version key.
    pub version_key: u64,
}

impl WeightsReveal {
    /// The hash to commit for hotkey `who` on `netuid` (main mechanism).
    pub fn commit_hash(&self, who: &AccountId, netuid: u16) -> [u8; 32] {
        commit_hash(
            who.as_bytes(),
            netuid,
            &self.uids,
            &self.values,
            &self.salt,
            self.version_key,
        )
    }
}

/// Subtensor as the worker sees it. Implemented by [`crate::SubxtChain`] (a real node) and
/// [`crate::EmbeddedChain`] (in-process, for the devnet and tests). Object safe: use it as
/// `Arc<dyn Chain>`.
#[async_trait]
pub trait Chain: Send + Sync {
    /// Latest (best) block number.
    async fn current_block(&self) -> Result<u64, ChainError>;

    /// Blocks per training window.
    fn blocks_per_window(&self) -> u64;

    /// Expected time between blocks.
    fn block_time(&self) -> Duration;

    /// The current window: `current_block / blocks_per_window`.
    async fn current_window(&self) -> Result<u64, ChainError> {
        Ok(window_of(
            self.current_block().await?,
            self.blocks_per_window(),
        ))
    }

    /// Sleep until the chain reaches `block`; returns the block seen (>= `block`).
    async fn wait_for_block(&self, block: u64) -> Result<u64, ChainError> {
        let poll = (self.block_time() / 4).max(Duration::from_millis(10));
        loop {
            let now = self.current_block().await?;
            if now >= block {
                return Ok(now);
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// All neurons of a subnet.
    async fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError>;

    /// Register `hotkey` on `netuid` by burning, paid and signed by `coldkey`. Returns the uid.
    async fn burned_register(
        &self,
        netuid: u16,
        coldkey: &Keypair,
        hotkey: &AccountId,
    ) -> Result<u16, ChainError>;

    /// Publish up to [`MAX_COMMITMENT_BYTES`] bytes for `hotkey` on `netuid` (Commitments
    /// pallet, one `Raw` field), signed by the hotkey.
    async fn set_commitment(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        data: &[u8],
    ) -> Result<(), ChainError>;

    /// Every hotkey's raw commitment on `netuid`.
    async fn commitments(&self, netuid: u16) -> Result<HashMap<AccountId, Vec<u8>>, ChainError>;

    /// Set weights from float scores: max-normalised to `u16` (zeros dropped, NaN refused),
    /// refused early when the weights rate limit has not passed.
    async fn set_weights(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        uids: &[u16],
        weights: &[f32],
        version_key: u64,
    ) -> Result<(), ChainError>;

    /// Commit a weights hash (commit-reveal subnets); see [`WeightsReveal::commit_hash`].
    async fn commit_weights(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        commit_hash: [u8; 32],
    ) -> Result<(), ChainError>;

    /// Reveal weights previously committed with [`Chain::commit_weights`].
    async fn reveal_weights(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        reveal: &WeightsReveal,
    ) -> Result<(), ChainError>;

    /// Minimum blocks between two weight updates of one neuron.
    async fn weights_rate_limit(&self, netuid: u16) -> Result<u64, ChainError>;
}
