//! Subtensor chain access for the worker: the [`Chain`] trait, a subxt client
//! ([`SubxtChain`]), an in-process chain for the devnet and tests ([`EmbeddedChain`]),
//! bittensor wallet files ([`wallet`]), and weight helpers ([`weights`]).
#![warn(missing_docs)]

pub mod account;
pub mod chain;
pub mod embedded;
pub mod error;
pub mod submission;
pub mod subtensor;
pub mod timelock;
pub mod types;
pub mod wallet;
pub mod weights;
pub mod weights_rules;

pub use account::{AccountId, BITTENSOR_SS58_PREFIX, ss58_decode, ss58_encode};
pub use chain::{Chain, MAX_COMMITMENT_BYTES, WeightsReveal};
pub use embedded::{EmbeddedChain, EmbeddedChainConfig, SubnetConfig};
pub use error::{ChainError, ErrorClass, RateLimited};
pub use submission::{
    PendingCommit, RevealTarget, TimelockedCommit, WeightsPlan, WeightsSubmission, plan_weights,
};
pub use subtensor::{Network, SubxtChain, SubxtChainConfig};
pub use timelock::{Beacon, WeightsTlockPayload};
pub use types::{Metagraph, Neuron, window_of, window_start};
pub use wallet::{Keypair, Password, Wallet, WalletError, verify};
pub use weights::{NormalizedWeights, WeightsError, commit_hash, normalize_max_weights};
pub use weights_rules::{WeightsContext, WeightsPolicy, WeightsRefusal};
