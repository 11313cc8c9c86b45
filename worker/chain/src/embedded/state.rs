//! The embedded chain's state machine (synchronous; the handle in `mod.rs` wraps it in a lock).

use std::collections::{BTreeMap, HashMap};

use super::yuma::{ValidatorRow, incentives};
use crate::account::AccountId;
use crate::chain::{MAX_COMMITMENT_BYTES, WeightsReveal};
use crate::error::{ChainError, RateLimited};
use crate::types::{Metagraph, Neuron};
use crate::weights::normalize_max_weights;

const PALLET: &str = "SubtensorModule";

/// Per-subnet parameters of the embedded chain.
#[derive(Debug, Clone, PartialEq)]
pub struct SubnetConfig {
    /// Uid capacity; registration fails with [`ChainError::SubnetFull`] beyond it (the real
    /// chain prunes the lowest-scoring neuron instead).
    pub max_uids: u16,
    /// Minimum blocks between weight updates of one neuron (`WeightsSetRateLimit`).
    pub weights_rate_limit: u64,
    /// Minimum blocks between two commitments of one hotkey (0 = none).
    pub commitment_interval: u64,
    /// Epoch length: incentives are recomputed when `block % tempo == 0`.
    pub tempo: u64,
    /// Commit-reveal: plain `set_weights` is refused and reveals are accepted
    /// `reveal_delay` blocks after their commit.
    pub commit_reveal: bool,
    /// Blocks between a commit and its earliest reveal.
    pub reveal_delay: u64,
    /// Stake needed for a validator permit (and to set weights).
    pub min_validator_stake: u64,
    /// Blocks without a weight update after which a neuron is reported inactive.
    pub activity_cutoff: u64,
    /// Minimum `version_key` accepted by `set_weights`.
    pub weights_version_key: u64,
}

impl Default for SubnetConfig {
    fn default() -> Self {
        Self {
            max_uids: 256,
            weights_rate_limit: 100,
            commitment_interval: 0,
            tempo: 10,
            commit_reveal: false,
            reveal_delay: 10,
            min_validator_stake: 1,
            activity_cutoff: 5000,
            weights_version_key: 0,
        }
    }
}

#[derive(Debug, Clone)]
struct NeuronState {
    hotkey: AccountId,
    coldkey: AccountId,
    stake: u64,
    incentive: f64,
    last_update: u64,
    weights: Vec<(u16, u16)>,
}

#[derive(Debug, Clone)]
struct Commit {
    hash: [u8; 32],
    block: u64,
}

#[derive(Debug, Clone, Default)]
struct Subnet {
    config: SubnetConfig,
    neurons: Vec<NeuronState>,
    commitments: HashMap<AccountId, (Vec<u8>, u64)>,
    commits: HashMap<AccountId, Vec<Commit>>,
}

impl Subnet {
    fn uid_of(&self, hotkey: &AccountId) -> Option<u16> {
        self.neurons
            .iter()
            .position(|n| &n.hotkey == hotkey)
            .and_then(|i| u16::try_from(i).ok())
    }

    fn require_uid(&self, netuid: u16, hotkey: &AccountId) -> Result<u16, ChainError> {
        self.uid_of(hotkey).ok_or(ChainError::NotRegistered {
            netuid,
            hotkey: *hotkey,
        })
    }

    fn check_weights_rate(&self, netuid: u16, uid: u16, block: u64) -> Result<(), ChainError> {
        let last = self.neurons[usize::from(uid)].last_update;
        let limit = self.config.weights_rate_limit;
        if block.saturating_sub(last) < limit {
            return Err(ChainError::RateLimited {
                what: RateLimited::Weights,
                netuid,
                current_block: block,
                next_allowed_block: last.saturating_add(limit),
            });
        }
        Ok(())
    }

    fn check_can_set_weights(&self, uid: u16) -> Result<(), ChainError> {
        if self.neurons[usize::from(uid)].stake < self.config.min_validator_stake.max(1) {
            return Err(ChainError::module(PALLET, "NeuronNoValidatorPermit"));
        }
        Ok(())
    }

    fn apply_weights(
        &mut self,
        uid: u16,
        uids: &[u16],
        values: &[u16],
        block: u64,
    ) -> Result<(), ChainError> {
        let n = self.neurons.len();
        if uids.iter().any(|&u| usize::from(u) >= n) {
            return Err(ChainError::module(PALLET, "UidVecContainInvalidOne"));
        }
        let neuron = &mut self.neurons[usize::from(uid)];
        neuron.weights = uids.iter().copied().zip(values.iter().copied()).collect();
        neuron.last_update = block;
        Ok(())
    }

    fn run_epoch(&mut self) {
        let min_stake = self.config.min_validator_stake.max(1);
        let rows: Vec<ValidatorRow<'_>> = self
            .neurons
            .iter()
            .filter(|n| n.stake >= min_stake)
            .map(|n| ValidatorRow {
                stake: n.stake,
                weights: &n.weights,
            })
            .collect();
        let incentive = incentives(self.neurons.len(), &rows);
        for (neuron, value) in self.neurons.iter_mut().zip(incentive) {
            neuron.incentive = value;
        }
    }
}

/// Whole embedded chain state.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChainState {
    pub(crate) block: u64,
    subnets: BTreeMap<u16, Subnet>,
}

impl ChainState {
    fn subnet(&self, netuid: u16) -> Result<&Subnet, ChainError> {
        self.subnets
            .get(&netuid)
            .ok_or(ChainError::UnknownSubnet(netuid))
    }

    fn subnet_mut(&mut self, netuid: u16) -> Result<&mut Subnet, ChainError> {
        self.subnets
            .get_mut(&netuid)
            .ok_or(ChainError::UnknownSubnet(netuid))
    }

    pub(crate) fn add_subnet(&mut self, netuid: u16, config: SubnetConfig) {
        self.subnets.insert(
            netuid,
            Subnet {
                config,
                ..Subnet::default()
            },
        );
    }

    /// Advance one block, running epochs of subnets whose tempo divides the new block.
    pub(crate) fn step(&mut self) {
        self.block += 1;
        let block = self.block;
        for subnet in self.subnets.values_mut() {
            let tempo = subnet.config.tempo.max(1);
            if block.is_multiple_of(tempo) {
                subnet.run_epoch();
            }
        }
    }

    pub(crate) fn run_epoch(&mut self, netuid: u16) -> Result<(), ChainError> {
        self.subnet_mut(netuid)?.run_epoch();
        Ok(())
    }

    pub(crate) fn register(
        &mut self,
        netuid: u16,
        coldkey: AccountId,
        hotkey: AccountId,
    ) -> Result<u16, ChainError> {
        let block = self.block;
        let subnet = self.subnet_mut(netuid)?;
        if let Some(uid) = subnet.uid_of(&hotkey) {
            return Err(ChainError::AlreadyRegistered {
                netuid,
                hotkey,
                uid,
            });
        }
        let capacity = subnet.config.max_uids;
        let uid = u16::try_from(subnet.neurons.len())
            .ok()
            .filter(|&uid| uid < capacity)
            .ok_or(ChainError::SubnetFull { netuid, capacity })?;
        subnet.neurons.push(NeuronState {
            hotkey,
            coldkey,
            stake: 0,
            incentive: 0.0,
            last_update: block,
            weights: Vec::new(),
        });
        Ok(uid)
    }

    pub(crate) fn add_stake(
        &mut self,
        netuid: u16,
        hotkey: &AccountId,
        amount: u64,
    ) -> Result<u64, ChainError> {
        let subnet = self.subnet_mut(netuid)?;
        let uid = subnet.require_uid(netuid, hotkey)?;
        let neuron = &mut subnet.neurons[usize::from(uid)];
        neuron.stake = neuron.stake.saturating_add(amount);
        Ok(neuron.stake)
    }

    pub(crate) fn set_commitment(
        &mut self,
        netuid: u16,
        hotkey: AccountId,
        data: &[u8],
    ) -> Result<(), ChainError> {
        if data.len() > MAX_COMMITMENT_BYTES {
            return Err(ChainError::CommitmentTooLarge {
                len: data.len(),
                max: MAX_COMMITMENT_BYTES,
            });
        }
        let block = self.block;
        let subnet = self.subnet_mut(netuid)?;
        if subnet.uid_of(&hotkey).is_none() {
            return Err(ChainError::module("Commitments", "AccountNotAllowedCommit"));
        }
        let interval = subnet.config.commitment_interval;
        if let Some((_, last)) = subnet.commitments.get(&hotkey)
            && block.saturating_sub(*last) < interval
        {
            return Err(ChainError::RateLimited {
                what: RateLimited::Commitment,
                netuid,
                current_block: block,
                next_allowed_block: last.saturating_add(interval),
            });
        }
        subnet.commitments.insert(hotkey, (data.to_vec(), block));
        Ok(())
    }

    pub(crate) fn commitments(
        &self,
        netuid: u16,
    ) -> Result<HashMap<AccountId, Vec<u8>>, ChainError> {
        Ok(self
            .subnet(netuid)?
            .commitments
            .iter()
            .map(|(k, (v, _))| (*k, v.clone()))
            .collect())
    }

    pub(crate) fn set_weights(
        &mut self,
        netuid: u16,
        hotkey: &AccountId,
        uids: &[u16],
        weights: &[f32],
        version_key: u64,
    ) -> Result<(), ChainError> {
        let normalized = normalize_max_weights(uids, weights)?;
        let block = self.block;
        let subnet = self.subnet_mut(netuid)?;
        let uid = subnet.require_uid(netuid, hotkey)?;
        if subnet.config.commit_reveal {
            return Err(ChainError::CommitReveal {
                netuid,
                enabled: true,
            });
        }
        let required = subnet.config.weights_version_key;
        if required != 0 && version_key < required {
            return Err(ChainError::VersionKey {
                given: version_key,
                required,
            });
        }
        subnet.check_can_set_weights(uid)?;
        subnet.check_weights_rate(netuid, uid, block)?;
        subnet.apply_weights(uid, &normalized.uids, &normalized.values, block)
    }

    pub(crate) fn commit_weights(
        &mut self,
        netuid: u16,
        hotkey: &AccountId,
        hash: [u8; 32],
    ) -> Result<(), ChainError> {
        let block = self.block;
        let subnet = self.subnet_mut(netuid)?;
        let uid = subnet.require_uid(netuid, hotkey)?;
        if !subnet.config.commit_reveal {
            return Err(ChainError::CommitReveal {
                netuid,
                enabled: false,
            });
        }
        subnet.check_can_set_weights(uid)?;
        subnet.check_weights_rate(netuid, uid, block)?;
        let commits = subnet.commits.entry(*hotkey).or_default();
        if commits.len() >= 10 {
            return Err(ChainError::module(PALLET, "TooManyUnrevealedCommits"));
        }
        commits.push(Commit { hash, block });
        subnet.neurons[usize::from(uid)].last_update = block;
        Ok(())
    }

    pub(crate) fn reveal_weights(
        &mut self,
        netuid: u16,
        hotkey: &AccountId,
        reveal: &WeightsReveal,
    ) -> Result<(), ChainError> {
        let block = self.block;
        let subnet = self.subnet_mut(netuid)?;
        let uid = subnet.require_uid(netuid, hotkey)?;
        if !subnet.config.commit_reveal {
            return Err(ChainError::CommitReveal {
                netuid,
                enabled: false,
            });
        }
        if reveal.uids.len() != reveal.values.len() {
            return Err(ChainError::module(PALLET, "WeightVecNotEqualSize"));
        }
        let hash = reveal.commit_hash(hotkey, netuid);
        let delay = subnet.config.reveal_delay;
        let commits = subnet
            .commits
            .get_mut(hotkey)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| ChainError::module(PALLET, "NoWeightsCommitFound"))?;
        let position = commits
            .iter()
            .position(|c| c.hash == hash)
            .ok_or_else(|| ChainError::module(PALLET, "InvalidRevealCommitHashNotMatch"))?;
        if block < commits[position].block.saturating_add(delay) {
            return Err(ChainError::module(PALLET, "RevealTooEarly"));
        }
        commits.drain(..=position);
        subnet.apply_weights(uid, &reveal.uids, &reveal.values, block)
    }

    pub(crate) fn weights_rate_limit(&self, netuid: u16) -> Result<u64, ChainError> {
        Ok(self.subnet(netuid)?.config.weights_rate_limit)
    }

    pub(crate) fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError> {
        let subnet = self.subnet(netuid)?;
        let min_stake = subnet.config.min_validator_stake.max(1);
        let neurons = subnet
            .neurons
            .iter()
            .enumerate()
            .map(|(uid, n)| Neuron {
                uid: u16::try_from(uid).unwrap_or(u16::MAX),
                hotkey: n.hotkey,
                coldkey: n.coldkey,
                stake: n.stake,
                incentive: n.incentive,
                validator_permit: n.stake >= min_stake,
                last_update: n.last_update,
                active: self.block.saturating_sub(n.last_update) <= subnet.config.activity_cutoff,
            })
            .collect();
        Ok(Metagraph {
            netuid,
            block: self.block,
            neurons,
        })
    }

    pub(crate) fn weights(&self, netuid: u16) -> Result<Vec<Vec<(u16, u16)>>, ChainError> {
        Ok(self
            .subnet(netuid)?
            .neurons
            .iter()
            .map(|n| n.weights.clone())
            .collect())
    }
}
