//! Errors of chain operations, shared by [`crate::SubxtChain`] and [`crate::EmbeddedChain`].

use crate::account::AccountId;
use crate::weights::WeightsError;

/// What a rate limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimited {
    /// `set_weights` / `commit_weights` (subtensor `WeightsSetRateLimit`).
    Weights,
    /// `set_commitment`.
    Commitment,
}

/// Failure of a chain query or extrinsic.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ChainError {
    /// Connection, RPC or subxt-level failure (network, metadata mismatch, ...).
    #[error("chain RPC error: {0}")]
    Rpc(String),
    /// A value read from the chain could not be decoded.
    #[error("cannot decode chain data: {0}")]
    Decode(String),
    /// The extrinsic was included but failed with a pallet error, named from the metadata
    /// (e.g. `SubtensorModule::SettingWeightsTooFast`).
    #[error("{pallet}::{error}")]
    Module {
        /// Pallet name, e.g. `SubtensorModule`.
        pallet: String,
        /// Error variant name, e.g. `SettingWeightsTooFast`.
        error: String,
    },
    /// The extrinsic failed with a non-pallet dispatch error (`BadOrigin`, `Token(..)`, ...).
    #[error("dispatch error: {0}")]
    Dispatch(String),
    /// The node refused the transaction before inclusion (pool validation), e.g. subtensor's
    /// custom validity errors (`RateLimitExceeded`) or a bad nonce.
    #[error("transaction rejected by the node: {0}")]
    InvalidTransaction(String),
    /// Refused locally because the chain would reject it as too frequent; retry at
    /// `next_allowed_block`.
    #[error(
        "{what:?} rate limited on netuid {netuid}: next allowed at block {next_allowed_block} (now {current_block})"
    )]
    RateLimited {
        /// Which operation.
        what: RateLimited,
        /// Subnet.
        netuid: u16,
        /// Block the check used.
        current_block: u64,
        /// First block at which the call is allowed again.
        next_allowed_block: u64,
    },
    /// The hotkey has no uid on the subnet.
    #[error("hotkey {hotkey} is not registered on netuid {netuid}")]
    NotRegistered {
        /// Subnet.
        netuid: u16,
        /// The hotkey.
        hotkey: AccountId,
    },
    /// The hotkey already has a uid on the subnet.
    #[error("hotkey {hotkey} is already registered on netuid {netuid} as uid {uid}")]
    AlreadyRegistered {
        /// Subnet.
        netuid: u16,
        /// The hotkey.
        hotkey: AccountId,
        /// Its existing uid.
        uid: u16,
    },
    /// The subnet does not exist.
    #[error("subnet {0} does not exist")]
    UnknownSubnet(u16),
    /// The subnet has no free uid (embedded chain; the real chain prunes instead).
    #[error("subnet {netuid} is full ({capacity} uids)")]
    SubnetFull {
        /// Subnet.
        netuid: u16,
        /// Its uid capacity.
        capacity: u16,
    },
    /// The weight vector is invalid.
    #[error("invalid weights: {0}")]
    InvalidWeights(#[from] WeightsError),
    /// The subnet uses commit-reveal, so plain `set_weights` is refused (or the opposite).
    #[error("netuid {netuid}: commit-reveal is {}", if *.enabled { "enabled; use commit_weights/reveal_weights" } else { "disabled; use set_weights" })]
    CommitReveal {
        /// Subnet.
        netuid: u16,
        /// Whether commit-reveal is enabled on it.
        enabled: bool,
    },
    /// `version_key` is below the subnet's `WeightsVersionKey`.
    #[error("weights version key {given} is below the subnet's {required}")]
    VersionKey {
        /// What the caller sent.
        given: u64,
        /// What the subnet requires at least.
        required: u64,
    },
    /// Commitment data longer than one `Raw128` field.
    #[error("commitment is {len} bytes; at most {max} fit in one Raw field")]
    CommitmentTooLarge {
        /// Data length.
        len: usize,
        /// Maximum.
        max: usize,
    },
}

impl ChainError {
    /// A pallet error with the given names.
    pub fn module(pallet: &str, error: &str) -> Self {
        Self::Module {
            pallet: pallet.to_owned(),
            error: error.to_owned(),
        }
    }

    /// True for this exact pallet error.
    pub fn is_module(&self, pallet: &str, error: &str) -> bool {
        matches!(self, Self::Module { pallet: p, error: e } if p == pallet && e == error)
    }

    /// True when waiting and retrying later can succeed: local rate-limit refusals and the
    /// chain's own "too fast" errors.
    pub fn is_rate_limit(&self) -> bool {
        match self {
            Self::RateLimited { .. } => true,
            Self::Module { error, .. } => matches!(
                error.as_str(),
                "SettingWeightsTooFast"
                    | "CommittingWeightsTooFast"
                    | "ServingRateLimitExceeded"
                    | "TxRateLimitExceeded"
                    | "CommitmentSetRateLimitExceeded"
                    | "SpaceLimitExceeded"
                    | "TooManyRegistrationsThisBlock"
                    | "TooManyRegistrationsThisInterval"
            ),
            Self::InvalidTransaction(message) => message.contains("RateLimitExceeded"),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_errors_render_as_pallet_and_name() {
        let e = ChainError::module("SubtensorModule", "SettingWeightsTooFast");
        assert_eq!(e.to_string(), "SubtensorModule::SettingWeightsTooFast");
        assert!(e.is_module("SubtensorModule", "SettingWeightsTooFast"));
        assert!(!e.is_module("Commitments", "SettingWeightsTooFast"));
        assert!(e.is_rate_limit());
        assert!(!ChainError::module("SubtensorModule", "DuplicateUids").is_rate_limit());
    }
}
