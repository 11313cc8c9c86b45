//! Plain data returned by [`crate::Chain`] queries.

use serde::{Deserialize, Serialize};

use crate::account::AccountId;

/// One registered neuron of a subnet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neuron {
    /// Position in the subnet (0-based).
    pub uid: u16,
    /// The neuron's hotkey (signs weights and commitments).
    pub hotkey: AccountId,
    /// The coldkey that owns the hotkey.
    pub coldkey: AccountId,
    /// Total stake behind the hotkey on this subnet, in rao (1e-9 of a token).
    pub stake: u64,
    /// Share of the subnet's miner emission, in [0, 1].
    pub incentive: f64,
    /// Whether the neuron may set weights (validator).
    pub validator_permit: bool,
    /// Block of the neuron's last weight update (or registration).
    pub last_update: u64,
    /// Whether the chain considers the neuron active.
    pub active: bool,
}

/// All neurons of a subnet at some block.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Metagraph {
    /// Subnet id.
    pub netuid: u16,
    /// Block the snapshot was taken at.
    pub block: u64,
    /// Neurons sorted by uid.
    pub neurons: Vec<Neuron>,
}

impl Metagraph {
    /// The neuron with this hotkey, if registered.
    pub fn by_hotkey(&self, hotkey: &AccountId) -> Option<&Neuron> {
        self.neurons.iter().find(|n| &n.hotkey == hotkey)
    }

    /// The neuron with this uid.
    pub fn by_uid(&self, uid: u16) -> Option<&Neuron> {
        self.neurons.iter().find(|n| n.uid == uid)
    }

    /// Uid of a hotkey, if registered.
    pub fn uid_of(&self, hotkey: &AccountId) -> Option<u16> {
        self.by_hotkey(hotkey).map(|n| n.uid)
    }

    /// Number of registered neurons.
    pub fn len(&self) -> usize {
        self.neurons.len()
    }

    /// True when the subnet has no neurons.
    pub fn is_empty(&self) -> bool {
        self.neurons.is_empty()
    }
}

/// The window a block belongs to: `block / blocks_per_window` (0 when `blocks_per_window` is 0).
pub fn window_of(block: u64, blocks_per_window: u64) -> u64 {
    block.checked_div(blocks_per_window).unwrap_or(0)
}

/// First block of a window.
pub fn window_start(window: u64, blocks_per_window: u64) -> u64 {
    window.saturating_mul(blocks_per_window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_arithmetic() {
        assert_eq!(window_of(0, 115), 0);
        assert_eq!(window_of(114, 115), 0);
        assert_eq!(window_of(115, 115), 1);
        assert_eq!(window_of(1_000_000, 115), 8695);
        assert_eq!(window_start(8695, 115), 999_925);
        assert_eq!(window_of(10, 0), 0);
    }

    #[test]
    fn lookups() {
        let n = |uid: u16, key: u8| Neuron {
            uid,
            hotkey: AccountId([key; 32]),
            coldkey: AccountId([0; 32]),
            stake: 0,
            incentive: 0.0,
            validator_permit: false,
            last_update: 0,
            active: true,
        };
        let mg = Metagraph {
            netuid: 3,
            block: 10,
            neurons: vec![n(0, 7), n(1, 9)],
        };
        assert_eq!(mg.uid_of(&AccountId([9; 32])), Some(1));
        assert_eq!(mg.uid_of(&AccountId([1; 32])), None);
        assert_eq!(mg.by_uid(0).map(|n| n.hotkey), Some(AccountId([7; 32])));
        assert_eq!(mg.len(), 2);
    }
}
