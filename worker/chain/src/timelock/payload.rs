//! The plaintext of a timelocked weights commit.

use subxt::ext::codec::{Decode, Encode};

/// SCALE `WeightsTlockPayload` of subtensor's `reveal_commits.rs`: the committer's hotkey
/// (32-byte public key as a `Vec<u8>`; the chain checks it equals the signer) and the weights
/// exactly as `set_weights` would take them.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
#[codec(crate = subxt::ext::codec)]
pub struct WeightsTlockPayload {
    /// Public key of the committing hotkey.
    pub hotkey: Vec<u8>,
    /// Destination uids.
    pub uids: Vec<u16>,
    /// Max-normalised `u16` weights.
    pub values: Vec<u16>,
    /// Weights version key.
    pub version_key: u64,
}

impl WeightsTlockPayload {
    /// SCALE bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.encode()
    }

    /// Decode SCALE bytes; `None` when they are not exactly one payload.
    pub fn from_bytes(mut bytes: &[u8]) -> Option<Self> {
        let payload = Self::decode(&mut bytes).ok()?;
        bytes.is_empty().then_some(payload)
    }
}
