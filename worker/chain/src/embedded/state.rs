//! The embedded chain's state machine (synchronous; the handle in `mod.rs` wraps it in a lock).

use std::collections::{BTreeMap, HashMap};

use super::beacon::LocalBeacon;
use super::timelocked::TimelockedCommits;
use super::yuma::{ValidatorRow, incentives};
use crate::account::AccountId;
use crate::chain::{MAX_COMMITMENT_BYTES, WeightsReveal};
use crate::error::{ChainError, RateLimited};
use crate::types::{Metagraph, Neuron};
use crate::weights::{NormalizedWeights, normalize_max_weights};
use crate::weights_rules::{WeightsContext, WeightsPolicy, check_rate_limit};

pub(super) const PALLET: &str = "SubtensorModule";

/// `CommitRevealWeightsVersion` of spec 393, accepted by default.
pub const COMMIT_REVEAL_VERSION: u16 = 4;

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
    /// Epoch length (`Tempo`): as in subtensor, the epoch (incentives) runs at blocks where
    /// `(block + netuid + 1) % (tempo + 1) == tempo`; 0 = never.
    pub tempo: u64,
    /// `CommitRevealWeightsEnabled`: plain `set_weights` is refused; weights arrive as
    /// timelocked commits (`commit_timelocked_weights`, revealed by the chain with its beacon
    /// `reveal_period_epochs` epochs later) or hash commits (`commit_weights` +
    /// `reveal_weights` after `reveal_delay` blocks).
    pub commit_reveal: bool,
    /// `RevealPeriodEpochs`: epochs between a timelocked commit and its reveal.
    pub reveal_period_epochs: u64,
    /// Blocks between a hash commit and its earliest reveal.
    pub reveal_delay: u64,
    /// `MinAllowedWeights` (capped by the number of neurons; subtensor's default is 1024).
    pub min_allowed_weights: u16,
    /// `MaxWeightsLimit`: largest share of one uid as a fraction of `u16::MAX`.
    pub max_weight_limit: u16,
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
            reveal_period_epochs: 1,
            reveal_delay: 10,
            min_allowed_weights: 1,
            max_weight_limit: u16::MAX,
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
pub(super) struct Subnet {
    pub(super) config: SubnetConfig,
    neurons: Vec<NeuronState>,
    commitments: HashMap<AccountId, (Vec<u8>, u64)>,
    commits: HashMap<AccountId, Vec<Commit>>,
    pub(super) timelocked: TimelockedCommits,
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

    pub(super) fn uid(&self, netuid: u16, hotkey: &AccountId) -> Result<u16, ChainError> {
        self.require_uid(netuid, hotkey)
    }

    fn last_update(&self, uid: u16) -> u64 {
        self.neurons
            .get(usize::from(uid))
            .map_or(0, |n| n.last_update)
    }

    pub(super) fn set_last_update(&mut self, uid: u16, block: u64) {
        if let Some(neuron) = self.neurons.get_mut(usize::from(uid)) {
            neuron.last_update = block;
        }
    }

    fn check_weights_rate(&self, netuid: u16, uid: u16, block: u64) -> Result<(), ChainError> {
        check_rate_limit(
            RateLimited::Weights,
            netuid,
            block,
            self.last_update(uid),
            self.config.weights_rate_limit,
        )
    }

    pub(super) fn weights_rate_ok(&self, uid: u16, block: u64) -> bool {
        self.check_weights_rate(0, uid, block).is_ok()
    }

    fn validator_permit(&self, uid: u16) -> bool {
        self.neurons
            .get(usize::from(uid))
            .is_some_and(|n| n.stake >= self.config.min_validator_stake.max(1))
    }

    fn check_can_set_weights(&self, uid: u16) -> Result<(), ChainError> {
        if !self.validator_permit(uid) {
            return Err(ChainError::module(PALLET, "NeuronNoValidatorPermit"));
        }
        Ok(())
    }

    /// The subnet's weight rules as subtensor would report them.
    pub(super) fn policy(&self, netuid: u16, commit_reveal_version: u16) -> WeightsPolicy {
        let c = &self.config;
        WeightsPolicy {
            netuid,
            subnet_n: u16::try_from(self.neurons.len()).unwrap_or(u16::MAX),
            tempo: u16::try_from(c.tempo).unwrap_or(u16::MAX),
            commit_reveal_enabled: c.commit_reveal,
            commit_reveal_version,
            reveal_period_epochs: c.reveal_period_epochs,
            min_allowed_weights: c.min_allowed_weights,
            max_weight_limit: c.max_weight_limit,
            weights_version_key: c.weights_version_key,
            weights_rate_limit: c.weights_rate_limit,
        }
    }

    /// Subtensor's `internal_set_weights` after the signature: version key, rate limit
    /// (only with commit-reveal off; commits are rate limited when made), then the content
    /// rules; on success the row is replaced (and `LastUpdate` moved when commit-reveal is
    /// off). Refusals are the pallet errors the chain raises.
    pub(super) fn set_weights_checked(
        &mut self,
        netuid: u16,
        uid: u16,
        weights: &NormalizedWeights,
        version_key: u64,
        block: u64,
    ) -> Result<(), ChainError> {
        let policy = self.policy(netuid, COMMIT_REVEAL_VERSION);
        if policy.check_version_key(version_key).is_err() {
            return Err(ChainError::module(PALLET, "IncorrectWeightVersionKey"));
        }
        if !self.config.commit_reveal {
            self.check_weights_rate(netuid, uid, block)?;
        }
        policy
            .check_content(uid, self.validator_permit(uid), weights)
            .map_err(|refusal| ChainError::module(PALLET, refusal.module_error()))?;
        let commit_reveal = self.config.commit_reveal;
        if let Some(neuron) = self.neurons.get_mut(usize::from(uid)) {
            neuron.weights = weights
                .uids
                .iter()
                .copied()
                .zip(weights.values.iter().copied())
                .collect();
            if !commit_reveal {
                neuron.last_update = block;
            }
        }
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
#[derive(Debug, Clone)]
pub(crate) struct ChainState {
    pub(crate) block: u64,
    subnets: BTreeMap<u16, Subnet>,
    pub(super) beacon: LocalBeacon,
    pub(super) commit_reveal_version: u16,
}

/// Subtensor's epoch schedule: the epoch of `netuid` runs at `block` when
/// `(block + netuid + 1) % (tempo + 1) == tempo` (never for tempo 0).
pub(super) fn should_run_epoch(netuid: u16, tempo: u64, block: u64) -> bool {
    if tempo == 0 {
        return false;
    }
    let offset = block.saturating_add(u64::from(netuid) + 1);
    offset % tempo.saturating_add(1) == tempo
}

/// Subtensor's epoch index of `block`.
pub(super) fn epoch_index(netuid: u16, tempo: u64, block: u64) -> u64 {
    block.saturating_add(u64::from(netuid) + 1) / tempo.saturating_add(1)
}

impl ChainState {
    pub(crate) fn new(beacon: LocalBeacon) -> Self {
        Self {
            block: 0,
            subnets: BTreeMap::new(),
            beacon,
            commit_reveal_version: COMMIT_REVEAL_VERSION,
        }
    }

    pub(super) fn subnets_mut(&mut self) -> impl Iterator<Item = (u16, &mut Subnet)> {
        self.subnets.iter_mut().map(|(n, s)| (*n, s))
    }

    pub(super) fn subnet(&self, netuid: u16) -> Result<&Subnet, ChainError> {
        self.subnets
            .get(&netuid)
            .ok_or(ChainError::UnknownSubnet(netuid))
    }

    pub(super) fn subnet_mut(&mut self, netuid: u16) -> Result<&mut Subnet, ChainError> {
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

    /// Advance one block as subtensor's `block_step` does: the beacon publishes the rounds
    /// of the new block, matured timelocked commits are revealed, then the epochs due at
    /// this block run.
    pub(crate) fn step(&mut self) {
        self.block += 1;
        let block = self.block;
        let beacon = self.beacon.clone();
        for (netuid, subnet) in self.subnets_mut() {
            subnet.reveal_timelocked(netuid, block, &beacon);
            if should_run_epoch(netuid, subnet.config.tempo, block) {
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
        subnet.set_weights_checked(netuid, uid, &normalized, version_key, block)
    }

    /// The standing of `hotkey` for setting weights, with the subnet's rules.
    pub(crate) fn weights_context(
        &self,
        netuid: u16,
        hotkey: &AccountId,
    ) -> Result<WeightsContext, ChainError> {
        let subnet = self.subnet(netuid)?;
        let uid = subnet.require_uid(netuid, hotkey)?;
        Ok(WeightsContext {
            policy: subnet.policy(netuid, self.commit_reveal_version),
            block: self.block,
            now_unix: self.beacon.time_at(self.block),
            uid,
            last_update: subnet.last_update(uid),
            validator_permit: subnet.validator_permit(uid),
        })
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
        subnet.set_last_update(uid, block);
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
        let weights = NormalizedWeights {
            uids: reveal.uids.clone(),
            values: reveal.values.clone(),
        };
        subnet.set_weights_checked(netuid, uid, &weights, reveal.version_key, block)?;
        subnet.set_last_update(uid, block);
        Ok(())
    }

    pub(crate) fn weights_rate_limit(&self, netuid: u16) -> Result<u64, ChainError> {
        Ok(self.subnet(netuid)?.config.weights_rate_limit)
    }

    pub(crate) fn metagraph(&self, netuid: u16) -> Result<Metagraph, ChainError> {
        let subnet = self.subnet(netuid)?;
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
                validator_permit: n.stake >= subnet.config.min_validator_stake.max(1),
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
