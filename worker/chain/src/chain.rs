//! The [`Chain`] trait: everything the worker needs from subtensor.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::account::AccountId;
use crate::error::ChainError;
use crate::submission::{PendingCommit, TimelockedCommit, WeightsSubmission};
use crate::timelock::Beacon;
use crate::types::{Metagraph, window_of};
use crate::wallet::Keypair;
use crate::weights::{commit_hash, normalize_max_weights};
use crate::weights_rules::WeightsContext;

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

    /// When `block` was produced, by the chain's own clock (subtensor's `Timestamp::Now` at
    /// that block); `None` for a block not produced yet or no longer known.
    async fn block_timestamp(&self, block: u64) -> Result<Option<SystemTime>, ChainError>;

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

    /// The subnet's weight rules and `hotkey`'s standing (uid, last update, permit), read at
    /// one block. [`ChainError::NotRegistered`] when the hotkey has no uid.
    async fn weights_context(
        &self,
        netuid: u16,
        hotkey: &AccountId,
    ) -> Result<WeightsContext, ChainError>;

    /// The beacon timelocked commits are encrypted to: drand quicknet on a real node, the
    /// embedded chain's own beacon otherwise.
    fn timelock_beacon(&self) -> Beacon;

    /// Submit `commit_timelocked_weights(netuid, commit, reveal_round, commit_reveal_version)`
    /// signed by `hotkey`, without local checks (use [`Chain::submit_weights`]).
    async fn commit_timelocked_weights(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        commit: &TimelockedCommit,
    ) -> Result<(), ChainError>;

    /// Timelocked commits of `hotkey` on `netuid` the chain has not revealed yet.
    async fn pending_commits(
        &self,
        netuid: u16,
        hotkey: &AccountId,
    ) -> Result<Vec<PendingCommit>, ChainError>;

    /// Deliver float weights the way the bittensor SDK's `set_weights` does: max-normalise to
    /// `u16` ([`normalize_max_weights`]), check every subnet rule the chain would apply
    /// (MinAllowedWeights, MaxWeightsLimit, permit, uids, version key, rate limit: see
    /// [`WeightsContext::check`]) and then, if the subnet has commit-reveal on, encrypt them
    /// to the reveal round and submit `commit_timelocked_weights`; otherwise `set_weights`.
    ///
    /// Every failure is a [`ChainError`]; act on [`ChainError::class`].
    async fn submit_weights(
        &self,
        netuid: u16,
        hotkey: &Keypair,
        uids: &[u16],
        weights: &[f32],
        version_key: u64,
    ) -> Result<WeightsSubmission, ChainError> {
        let normalized = normalize_max_weights(uids, weights)?;
        let context = self.weights_context(netuid, &hotkey.account_id()).await?;
        // The same rules `plan_weights` reports.
        context.check(&normalized, version_key)?;
        if !context.policy.commit_reveal_enabled {
            let values: Vec<f32> = normalized.values.iter().map(|&v| f32::from(v)).collect();
            self.set_weights(netuid, hotkey, &normalized.uids, &values, version_key)
                .await?;
            return Ok(WeightsSubmission::Set {
                block: context.block,
                weights: normalized,
            });
        }
        let beacon = self.timelock_beacon();
        let (commit, schedule) = TimelockedCommit::seal(
            &context,
            hotkey.public_key(),
            &normalized,
            version_key,
            &beacon,
            self.block_time().as_secs_f64(),
            &mut rand::rng(),
        )?;
        self.commit_timelocked_weights(netuid, hotkey, &commit)
            .await?;
        Ok(WeightsSubmission::Committed {
            block: context.block,
            weights: normalized,
            reveal_round: commit.reveal_round,
            first_reveal_block: schedule.first_reveal_block(),
            commit_reveal_version: commit.commit_reveal_version,
            commit_bytes: commit.commit.len(),
        })
    }
}
