//! The embedded chain's randomness beacon and clock: a BLS key of its own that "publishes" a
//! quicknet-style signature for every round, with rounds tied to the block timer
//! ([`ROUNDS_PER_BLOCK`] per block, as quicknet's 3 s rounds are to finney's 12 s blocks).
//!
//! The chain's clock is virtual: block `b` happens at `genesis + b * block_time`, whether
//! blocks come from the timer or from `advance`, so reveal rounds are reproducible.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::timelock::{Beacon, BeaconKey, SIGNATURE_LEN, TimelockError};

/// Beacon rounds per block.
pub const ROUNDS_PER_BLOCK: u64 = 4;

/// The beacon key plus the clock that maps blocks to rounds.
#[derive(Debug, Clone)]
pub(crate) struct LocalBeacon {
    key: BeaconKey,
    genesis: f64,
    block_time: f64,
}

impl LocalBeacon {
    /// A fresh key; the clock starts now.
    pub(crate) fn new(block_time: Duration) -> Result<Self, TimelockError> {
        let genesis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs() as f64);
        Ok(Self {
            key: BeaconKey::generate()?,
            genesis,
            block_time: block_time.as_secs_f64().max(1e-3),
        })
    }

    /// Unix time of `block` on the chain's clock.
    pub(crate) fn time_at(&self, block: u64) -> f64 {
        self.genesis + block as f64 * self.block_time
    }

    /// Public parameters, for encrypters.
    pub(crate) fn beacon(&self) -> Beacon {
        Beacon {
            public_key: self.key.public_key(),
            genesis_time: self.genesis,
            period: self.block_time / ROUNDS_PER_BLOCK as f64,
        }
    }

    /// The latest round published by the time `block` is produced.
    pub(crate) fn latest_round(&self, block: u64) -> u64 {
        block.saturating_mul(ROUNDS_PER_BLOCK)
    }

    /// The pulse (signature) of `round`, if published by `block`.
    pub(crate) fn pulse(
        &self,
        round: u64,
        block: u64,
    ) -> Option<Result<[u8; SIGNATURE_LEN], TimelockError>> {
        (round <= self.latest_round(block)).then(|| self.key.sign(round))
    }
}
