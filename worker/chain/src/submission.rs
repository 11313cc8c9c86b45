//! What [`crate::Chain::submit_weights`] sends and reports: a plain `set_weights`, or a
//! drand-timelocked commit the chain reveals itself.

use rand::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::account::AccountId;
use crate::chain::Chain;
use crate::error::ChainError;
use crate::timelock::{self, Beacon, MAX_COMMIT_BYTES, RevealSchedule, WeightsTlockPayload};
use crate::weights::{NormalizedWeights, normalize_max_weights};
use crate::weights_rules::WeightsContext;

/// The reveal schedule of a commit made in `context` on a chain with `block_time` seconds
/// per block.
pub fn reveal_schedule(context: &WeightsContext, block_time: f64) -> RevealSchedule {
    RevealSchedule {
        netuid: context.policy.netuid,
        tempo: u64::from(context.policy.tempo),
        reveal_period_epochs: context.policy.reveal_period_epochs,
        current_block: context.block,
        block_time,
    }
}

/// Where a timelocked commit made now would be revealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealTarget {
    /// Beacon round the commit is encrypted to.
    pub reveal_round: u64,
    /// First block of the reveal epoch.
    pub first_reveal_block: u64,
}

/// What [`crate::Chain::submit_weights`] would do with some weights now, without doing it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsPlan {
    /// The weights after max-normalisation.
    pub weights: NormalizedWeights,
    /// The subnet's rules and the neuron's standing.
    pub context: WeightsContext,
    /// Why the chain would refuse them now (`None`: it would accept them).
    pub refusal: Option<String>,
    /// Class of that refusal.
    pub refusal_class: Option<crate::ErrorClass>,
    /// With commit-reveal on: where the commit would be revealed.
    pub reveal: Option<RevealTarget>,
}

/// Normalise `weights`, read the context and check every rule (see
/// [`WeightsContext::check`]); with commit-reveal on, also compute the reveal round.
/// Errors only for what prevents planning (bad floats, unregistered hotkey, RPC).
pub async fn plan_weights<C: Chain + ?Sized>(
    chain: &C,
    netuid: u16,
    hotkey: &AccountId,
    uids: &[u16],
    weights: &[f32],
    version_key: u64,
) -> Result<WeightsPlan, ChainError> {
    let normalized = normalize_max_weights(uids, weights)?;
    let context = chain.weights_context(netuid, hotkey).await?;
    let refusal = context.check(&normalized, version_key).err();
    let reveal = context.policy.commit_reveal_enabled.then(|| {
        let schedule = reveal_schedule(&context, chain.block_time().as_secs_f64());
        RevealTarget {
            reveal_round: schedule.reveal_round(context.now_unix, &chain.timelock_beacon()),
            first_reveal_block: schedule.first_reveal_block(),
        }
    });
    Ok(WeightsPlan {
        weights: normalized,
        refusal_class: refusal.as_ref().map(ChainError::class),
        refusal: refusal.map(|e| e.to_string()),
        context,
        reveal,
    })
}

/// The arguments of `commit_timelocked_weights` (besides the netuid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelockedCommit {
    /// Compressed `tle` ciphertext of the SCALE [`WeightsTlockPayload`].
    pub commit: Vec<u8>,
    /// Beacon round whose signature decrypts it.
    pub reveal_round: u64,
    /// `CommitRevealWeightsVersion` the chain expects.
    pub commit_reveal_version: u16,
}

impl TimelockedCommit {
    /// Encrypt `weights` of `hotkey` (its 32-byte public key) for the round at which the
    /// reveal epoch of a commit made at `context.block` starts, as `bittensor-drand` does.
    /// Returns the commit and the first block of its reveal epoch.
    pub fn seal<R: RngCore + CryptoRng>(
        context: &WeightsContext,
        hotkey: [u8; 32],
        weights: &NormalizedWeights,
        version_key: u64,
        beacon: &Beacon,
        block_time: f64,
        rng: &mut R,
    ) -> Result<(Self, RevealSchedule), ChainError> {
        let schedule = reveal_schedule(context, block_time);
        let reveal_round = schedule.reveal_round(context.now_unix, beacon);
        let payload = WeightsTlockPayload {
            hotkey: hotkey.to_vec(),
            uids: weights.uids.clone(),
            values: weights.values.clone(),
            version_key,
        };
        let commit = timelock::encrypt(&beacon.public_key, reveal_round, &payload.to_bytes(), rng)?;
        if commit.len() > MAX_COMMIT_BYTES {
            return Err(ChainError::CommitTooLarge {
                len: commit.len(),
                max: MAX_COMMIT_BYTES,
            });
        }
        Ok((
            Self {
                commit,
                reveal_round,
                commit_reveal_version: context.policy.commit_reveal_version,
            },
            schedule,
        ))
    }
}

/// A timelocked commit the chain holds and has not revealed yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCommit {
    /// Epoch the commit is filed under (revealed during `epoch + RevealPeriodEpochs`).
    pub epoch: u64,
    /// Block it was committed at.
    pub commit_block: u64,
    /// Beacon round that decrypts it.
    pub reveal_round: u64,
    /// Ciphertext size.
    pub bytes: usize,
}

/// How [`crate::Chain::submit_weights`] delivered the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum WeightsSubmission {
    /// Commit-reveal is off: `set_weights` was included.
    Set {
        /// Block the context was read at.
        block: u64,
        /// What was set.
        weights: NormalizedWeights,
    },
    /// Commit-reveal is on: `commit_timelocked_weights` was included; the chain applies the
    /// weights itself once the beacon publishes `reveal_round`.
    Committed {
        /// Block the commit was made at.
        block: u64,
        /// What was committed.
        weights: NormalizedWeights,
        /// Beacon round that decrypts the commit.
        reveal_round: u64,
        /// First block of the reveal epoch.
        first_reveal_block: u64,
        /// `commit_reveal_version` sent.
        commit_reveal_version: u16,
        /// Ciphertext size.
        commit_bytes: usize,
    },
}

impl WeightsSubmission {
    /// The weights delivered.
    pub fn weights(&self) -> &NormalizedWeights {
        match self {
            Self::Set { weights, .. } | Self::Committed { weights, .. } => weights,
        }
    }
}

impl std::fmt::Display for WeightsSubmission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Set { block, weights } => {
                write!(f, "set {} weights at block {block}", weights.len())
            }
            Self::Committed {
                block,
                weights,
                reveal_round,
                first_reveal_block,
                commit_bytes,
                ..
            } => write!(
                f,
                "committed {} weights at block {block} ({commit_bytes} bytes, timelocked to round \
                 {reveal_round}, reveal epoch starts at block {first_reveal_block})",
                weights.len()
            ),
        }
    }
}
