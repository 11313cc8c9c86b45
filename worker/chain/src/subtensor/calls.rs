//! Builders for the extrinsics this crate submits, usable offline (e.g. with an
//! `OfflineClient` to encode or sign without a node).

use subxt::transactions::StaticPayload;
use subxt::utils::{AccountId32, H256};

use super::api::runtime;
use super::api::runtime::commitments::calls::SetCommitment;
use super::api::runtime::runtime_types::bounded_collections::bounded_vec::BoundedVec;
use super::api::runtime::subtensor_module::calls::{
    BurnedRegister, CommitTimelockedWeights, CommitWeights, RevealWeights, SetWeights,
};
use super::commitment::commitment_info;
use crate::account::AccountId;
use crate::chain::{MAX_COMMITMENT_BYTES, WeightsReveal};
use crate::error::ChainError;
use crate::submission::TimelockedCommit;
use crate::timelock::MAX_COMMIT_BYTES;
use crate::weights::NormalizedWeights;

/// `SubtensorModule::set_weights(netuid, dests, weights, version_key)`.
pub fn set_weights(
    netuid: u16,
    weights: &NormalizedWeights,
    version_key: u64,
) -> StaticPayload<SetWeights> {
    runtime::transactions().subtensor_module().set_weights(
        netuid,
        weights.uids.clone(),
        weights.values.clone(),
        version_key,
    )
}

/// `SubtensorModule::burned_register(netuid, hotkey)` (signed by the coldkey).
pub fn burned_register(netuid: u16, hotkey: &AccountId) -> StaticPayload<BurnedRegister> {
    runtime::transactions()
        .subtensor_module()
        .burned_register(netuid, AccountId32(hotkey.0))
}

/// `SubtensorModule::commit_weights(netuid, commit_hash)`.
pub fn commit_weights(netuid: u16, commit_hash: [u8; 32]) -> StaticPayload<CommitWeights> {
    runtime::transactions()
        .subtensor_module()
        .commit_weights(netuid, H256(commit_hash))
}

/// `SubtensorModule::reveal_weights(netuid, uids, values, salt, version_key)`.
pub fn reveal_weights(netuid: u16, reveal: &WeightsReveal) -> StaticPayload<RevealWeights> {
    runtime::transactions().subtensor_module().reveal_weights(
        netuid,
        reveal.uids.clone(),
        reveal.values.clone(),
        reveal.salt.clone(),
        reveal.version_key,
    )
}

/// `SubtensorModule::commit_timelocked_weights(netuid, commit, reveal_round,
/// commit_reveal_version)`; refused when the commit exceeds the chain's 5000-byte bound.
pub fn commit_timelocked_weights(
    netuid: u16,
    commit: &TimelockedCommit,
) -> Result<StaticPayload<CommitTimelockedWeights>, ChainError> {
    if commit.commit.len() > MAX_COMMIT_BYTES {
        return Err(ChainError::CommitTooLarge {
            len: commit.commit.len(),
            max: MAX_COMMIT_BYTES,
        });
    }
    Ok(runtime::transactions()
        .subtensor_module()
        .commit_timelocked_weights(
            netuid,
            BoundedVec(commit.commit.clone()),
            commit.reveal_round,
            commit.commit_reveal_version,
        ))
}

/// `Commitments::set_commitment(netuid, CommitmentInfo { fields: [Raw{len}(data)] })`.
pub fn set_commitment(
    netuid: u16,
    data: &[u8],
) -> Result<StaticPayload<SetCommitment>, ChainError> {
    let info = commitment_info(data).ok_or(ChainError::CommitmentTooLarge {
        len: data.len(),
        max: MAX_COMMITMENT_BYTES,
    })?;
    Ok(runtime::transactions()
        .commitments()
        .set_commitment(netuid, info))
}
