//! Which beacon round a commit is encrypted to: the computation of `bittensor-drand`'s
//! `get_encrypted_commit` (1.x, the stateless epoch model of subtensor spec 393), so that a
//! commit becomes decryptable right after its reveal epoch starts.
//!
//! Subtensor numbers epochs `(block + netuid + 1) / (tempo + 1)`; a commit made in epoch `e`
//! is revealed during epoch `e + reveal_period`. The round chosen is the one the beacon
//! publishes about [`SECURITY_BLOCK_OFFSET`] blocks after that epoch's first block, rounded
//! down so the pulse is already on chain when the chain looks for it. Spec 393 offers no
//! runtime API for the next epoch start, so the epoch boundaries come from this formula.

use super::beacon::Beacon;

/// Blocks after the first block of the reveal epoch at which the pulse should be on chain.
pub const SECURITY_BLOCK_OFFSET: u64 = 3;

/// The chain state a reveal round depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RevealSchedule {
    /// Subnet.
    pub netuid: u16,
    /// Subnet tempo (`Tempo`), in blocks.
    pub tempo: u64,
    /// Epochs between commit and reveal (`RevealPeriodEpochs`).
    pub reveal_period_epochs: u64,
    /// The block the commit is made at (best block).
    pub current_block: u64,
    /// Seconds per block (12 on finney).
    pub block_time: f64,
}

impl RevealSchedule {
    /// Subtensor's epoch index of `block`.
    pub fn epoch_of(&self, block: u64) -> u64 {
        let netuid_plus_one = u64::from(self.netuid) + 1;
        block.saturating_add(netuid_plus_one) / self.tempo.saturating_add(1)
    }

    /// First block of the epoch in which the commit will be revealed.
    pub fn first_reveal_block(&self) -> u64 {
        let netuid_plus_one = u64::from(self.netuid) + 1;
        let reveal_epoch = self.epoch_of(self.current_block) + self.reveal_period_epochs;
        reveal_epoch
            .saturating_mul(self.tempo.saturating_add(1))
            .saturating_sub(netuid_plus_one)
    }

    /// The beacon round to encrypt to, given the Unix time `now` (seconds) at
    /// `current_block`. Never below 1.
    pub fn reveal_round(&self, now: f64, beacon: &Beacon) -> u64 {
        let target_block = self
            .first_reveal_block()
            .saturating_add(SECURITY_BLOCK_OFFSET);
        let blocks_until = target_block.saturating_sub(self.current_block);
        let target_time = now + blocks_until as f64 * self.block_time;
        // `as` saturates negative values to 0, as in the reference implementation.
        let round = ((target_time - beacon.genesis_time) / beacon.period).floor() as u64;
        round.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_follow_subtensor_numbering() {
        // tempo 360, netuid 3: epoch boundaries at multiples of 361 minus 4.
        let s = RevealSchedule {
            netuid: 3,
            tempo: 360,
            reveal_period_epochs: 1,
            current_block: 357,
            block_time: 12.0,
        };
        assert_eq!(s.epoch_of(356), 0);
        assert_eq!(s.epoch_of(357), 1);
        assert_eq!(s.first_reveal_block(), 2 * 361 - 4);
    }

    #[test]
    fn round_lands_three_blocks_into_the_reveal_epoch() {
        let beacon = Beacon::quicknet();
        let s = RevealSchedule {
            netuid: 1,
            tempo: 99,
            reveal_period_epochs: 2,
            current_block: 1000,
            block_time: 12.0,
        };
        // epoch(1000) = 1002 / 100 = 10, reveal epoch 12, first block 1198, target 1201,
        // 201 blocks = 2412 s ahead.
        let now = beacon.genesis_time + 3000.0;
        assert_eq!(s.reveal_round(now, &beacon), (3000 + 2412) / 3);
        // Before genesis the round is clamped to 1.
        assert_eq!(s.reveal_round(0.0, &beacon), 1);
    }
}
