//! Errors of chain operations, shared by [`crate::SubxtChain`] and [`crate::EmbeddedChain`].

use crate::account::AccountId;
use crate::timelock::TimelockError;
use crate::weights::WeightsError;
use crate::weights_rules::WeightsRefusal;

/// What a caller should do about a [`ChainError`] (see [`ChainError::class`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorClass {
    /// Transient: the node was unreachable, the pool was busy, a rate limit has not passed
    /// yet. The same call can succeed later; keep running and retry at the next opportunity.
    Retryable,
    /// The chain (or the local pre-check of its rules) refused the request as it stands:
    /// wrong subnet parameters, not registered, no permit, too few weights, ... Retrying the
    /// same request does not help until the state or the input changes; keep running.
    RefusedByRule,
    /// This client cannot talk to this chain correctly (incompatible runtime, undecodable
    /// data, bad signature encoding): a bug or an upgrade is needed. Stop and report.
    Fatal,
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Retryable => "retryable",
            Self::RefusedByRule => "refused-by-rule",
            Self::Fatal => "fatal",
        })
    }
}

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
    #[error("netuid {netuid}: commit-reveal is {}", if *.enabled { "enabled; submit a timelocked commit (Chain::submit_weights)" } else { "disabled; use set_weights" })]
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
    /// A weight vector breaks a subnet rule (checked before submitting, or by the chain).
    #[error("weights refused: {0}")]
    WeightsRefused(WeightsRefusal),
    /// Timelock encryption failed (bad beacon key) or a commit could not be built.
    #[error("timelock: {0}")]
    Timelock(#[from] TimelockError),
    /// The node's runtime changed the encoding of a call or storage entry this client uses.
    #[error(
        "{item} changed in the node's runtime (spec {node_spec}); this client was built \
         against spec {bundled_spec} and cannot use it until it is updated"
    )]
    IncompatibleRuntime {
        /// `Pallet.item`, e.g. `SubtensorModule.set_weights`.
        item: String,
        /// Spec version of the bundled metadata.
        bundled_spec: u32,
        /// Spec version the node runs.
        node_spec: u32,
    },
    /// A submitted transaction was not finalized in time (it may still be included).
    #[error("transaction not finalized within {seconds} s")]
    Timeout {
        /// How long we waited.
        seconds: u64,
    },
    /// A timelocked commit larger than the chain accepts.
    #[error("timelocked commit is {len} bytes; the chain accepts at most {max}")]
    CommitTooLarge {
        /// Commit length.
        len: usize,
        /// Maximum.
        max: usize,
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

    /// What to do about this error: retry later, accept the refusal, or stop.
    ///
    /// | class | errors |
    /// | --- | --- |
    /// | retryable | `Rpc`, `Timeout`, rate limits ([`ChainError::is_rate_limit`], incl. pool `Custom error: 6`), pool refusals that pass with time (`Stale`, `Future`, `ExhaustsResources`, `AncientBirthBlock`, banned, priority too low, already imported, dropped), `Dispatch(Exhausted/Unavailable)`, `TooManyUnrevealedCommits` |
    /// | refused-by-rule | other pallet errors, `NotRegistered`, `AlreadyRegistered`, `UnknownSubnet`, `SubnetFull`, `InvalidWeights`, `WeightsRefused`, `CommitReveal`, `VersionKey`, `CommitmentTooLarge`, `CommitTooLarge`, other pool refusals (`Payment`, other custom codes), other dispatch errors |
    /// | fatal | `Decode`, `IncompatibleRuntime`, `Timelock`, pool `BadProof` ("bad signature") / `BadSigner` / `Call` / mandatory, `Dispatch(BadOrigin/CannotLookup/Corruption)` |
    pub fn class(&self) -> ErrorClass {
        if self.is_rate_limit() {
            return ErrorClass::Retryable;
        }
        match self {
            Self::Rpc(_) | Self::Timeout { .. } => ErrorClass::Retryable,
            Self::Decode(_) | Self::IncompatibleRuntime { .. } | Self::Timelock(_) => {
                ErrorClass::Fatal
            }
            Self::Module { error, .. } => match error.as_str() {
                "TooManyUnrevealedCommits" => ErrorClass::Retryable,
                _ => ErrorClass::RefusedByRule,
            },
            // subxt's `DispatchError` texts.
            Self::Dispatch(message) => {
                if message.starts_with("Resources exhausted")
                    || message.starts_with("Some resource (e.g. a preimage) is unavailable")
                {
                    ErrorClass::Retryable
                } else if ["Bad origin", "Failed to lookup", "The state is corrupt"]
                    .iter()
                    .any(|m| message.starts_with(m))
                {
                    ErrorClass::Fatal
                } else {
                    ErrorClass::RefusedByRule
                }
            }
            // The node's texts for `sp_runtime` validity errors and pool errors.
            Self::InvalidTransaction(message) => {
                let m = message.to_ascii_lowercase();
                let retryable = [
                    "outdated",
                    "will be valid in the future",
                    "exhaust",
                    "ancient birth block",
                    "temporarily banned",
                    "priority is too low",
                    "already imported",
                    "immediately dropped",
                ];
                let fatal = [
                    "bad signature",
                    "invalid signing address",
                    "mandatory",
                    "call is not expected",
                    "bad proof",
                ];
                if retryable.iter().any(|k| m.contains(k)) {
                    ErrorClass::Retryable
                } else if fatal.iter().any(|k| m.contains(k)) {
                    ErrorClass::Fatal
                } else {
                    ErrorClass::RefusedByRule
                }
            }
            Self::RateLimited { .. } => ErrorClass::Retryable,
            Self::NotRegistered { .. }
            | Self::AlreadyRegistered { .. }
            | Self::UnknownSubnet(_)
            | Self::SubnetFull { .. }
            | Self::InvalidWeights(_)
            | Self::WeightsRefused(_)
            | Self::CommitReveal { .. }
            | Self::VersionKey { .. }
            | Self::CommitmentTooLarge { .. }
            | Self::CommitTooLarge { .. } => ErrorClass::RefusedByRule,
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

    #[test]
    fn every_outcome_has_a_class() {
        use ErrorClass::*;
        let cases = [
            (ChainError::Rpc("connection reset".into()), Retryable),
            (ChainError::Timeout { seconds: 60 }, Retryable),
            (ChainError::module("SubtensorModule", "CommittingWeightsTooFast"), Retryable),
            (ChainError::module("SubtensorModule", "TooManyUnrevealedCommits"), Retryable),
            (ChainError::module("SubtensorModule", "WeightVecLengthIsLow"), RefusedByRule),
            (ChainError::module("SubtensorModule", "IncorrectCommitRevealVersion"), RefusedByRule),
            (ChainError::InvalidTransaction("RateLimitExceeded (Custom error: 6)".into()), Retryable),
            (ChainError::InvalidTransaction("Transaction is outdated".into()), Retryable),
            (ChainError::InvalidTransaction("Inability to pay some fees (Payment)".into()), RefusedByRule),
            (ChainError::InvalidTransaction("Invalid Transaction: Transaction has a bad signature (1010)".into()), Fatal),
            (ChainError::InvalidTransaction("Invalid Transaction: Transaction would exhaust the block limits (1010)".into()), Retryable),
            (ChainError::InvalidTransaction("Transaction is temporarily banned (1012)".into()), Retryable),
            (ChainError::Dispatch("Bad origin.".into()), Fatal),
            (
                ChainError::Dispatch(
                    "Resources exhausted, e.g. attempt to read/write data which is too large to manipulate."
                        .into(),
                ),
                Retryable,
            ),
            (ChainError::Dispatch("Token error: Funds are unavailable.".into()), RefusedByRule),
            (ChainError::Decode("bad bytes".into()), Fatal),
            (
                ChainError::IncompatibleRuntime {
                    item: "SubtensorModule.set_weights".into(),
                    bundled_spec: 393,
                    node_spec: 394,
                },
                Fatal,
            ),
            (ChainError::UnknownSubnet(9), RefusedByRule),
            (ChainError::VersionKey { given: 1, required: 2 }, RefusedByRule),
            (ChainError::Timelock(TimelockError::InvalidPublicKey), Fatal),
        ];
        for (error, class) in cases {
            assert_eq!(error.class(), class, "{error}");
        }
        assert_eq!(ErrorClass::RefusedByRule.to_string(), "refused-by-rule");
    }
}
