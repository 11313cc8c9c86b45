//! Commit-reveal v4 on the embedded chain, as subtensor spec 393 runs it
//! (`internal_commit_timelocked_weights`, `reveal_crv3_commits_for_subnet`):
//!
//! - a commit is checked (commit-reveal on, `commit_reveal_version`, registered, weights rate
//!   limit, fewer than 10 pending per epoch), filed under the current epoch (the next one when
//!   the epoch runs in this block) and moves `LastUpdate`;
//! - every block, commits filed `reveal_period_epochs` epochs ago are taken; those whose round
//!   the beacon has published are decrypted, their payload's hotkey must be the committer,
//!   and the weights go through the same rules as `set_weights` (a refusal drops the commit,
//!   as on chain); commits whose round is not out yet wait for the next block of that epoch;
//!   older epochs are discarded.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::beacon::LocalBeacon;
use super::state::{ChainState, PALLET, Subnet, epoch_index, should_run_epoch};
use crate::account::AccountId;
use crate::error::ChainError;
use crate::submission::{PendingCommit, TimelockedCommit};
use crate::timelock::{self, MAX_COMMIT_BYTES, WeightsTlockPayload};
use crate::weights::NormalizedWeights;

/// Most pending timelocked commits of one hotkey in one epoch.
const MAX_PENDING_PER_EPOCH: usize = 10;

#[derive(Debug, Clone)]
struct Entry {
    who: AccountId,
    commit_block: u64,
    ciphertext: Vec<u8>,
    reveal_round: u64,
}

/// What became of a timelocked commit when its reveal epoch came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "snake_case")]
pub enum RevealOutcome {
    /// Decrypted and applied as the neuron's weights.
    Applied,
    /// Decrypted, but the weights broke a rule (the pallet error subtensor would log).
    Refused(String),
    /// Could not be decrypted or decoded, or the payload names another hotkey.
    Invalid(String),
    /// Its round was never published during the reveal epoch.
    Expired,
}

/// One reveal attempt that settled a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealRecord {
    /// Block at which the chain settled the commit.
    pub block: u64,
    /// Committer.
    pub hotkey: AccountId,
    /// Block of the commit.
    pub commit_block: u64,
    /// Round the commit was encrypted to.
    pub reveal_round: u64,
    /// What happened.
    pub outcome: RevealOutcome,
}

/// Pending timelocked commits of a subnet, by epoch, and the settled ones.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimelockedCommits {
    by_epoch: BTreeMap<u64, Vec<Entry>>,
    settled: Vec<RevealRecord>,
}

impl Subnet {
    fn commit_epoch(&self, netuid: u16, block: u64) -> u64 {
        let tempo = self.config.tempo;
        let epoch = epoch_index(netuid, tempo, block);
        if should_run_epoch(netuid, tempo, block) {
            epoch + 1
        } else {
            epoch
        }
    }

    /// Reveal what matured at `block` (subtensor's `reveal_crv3_commits_for_subnet`).
    pub(super) fn reveal_timelocked(&mut self, netuid: u16, block: u64, beacon: &LocalBeacon) {
        let period = self.config.reveal_period_epochs;
        let current = epoch_index(netuid, self.config.tempo, block);
        let reveal_epoch = current.saturating_sub(period);
        let expired: Vec<u64> = self
            .timelocked
            .by_epoch
            .range(..reveal_epoch)
            .map(|(e, _)| *e)
            .collect();
        for epoch in expired {
            for entry in self.timelocked.by_epoch.remove(&epoch).unwrap_or_default() {
                self.settle(block, &entry, RevealOutcome::Expired);
            }
        }
        if current < period {
            return;
        }
        let Some(entries) = self.timelocked.by_epoch.remove(&reveal_epoch) else {
            return;
        };
        let mut waiting = Vec::new();
        for entry in entries {
            let Some(pulse) = beacon.pulse(entry.reveal_round, block) else {
                waiting.push(entry);
                continue;
            };
            let outcome = match pulse {
                Ok(signature) => self.apply_commit(netuid, block, &entry, &signature),
                Err(e) => RevealOutcome::Invalid(e.to_string()),
            };
            self.settle(block, &entry, outcome);
        }
        if !waiting.is_empty() {
            self.timelocked.by_epoch.insert(reveal_epoch, waiting);
        }
    }

    fn apply_commit(
        &mut self,
        netuid: u16,
        block: u64,
        entry: &Entry,
        signature: &[u8],
    ) -> RevealOutcome {
        let plaintext = match timelock::decrypt(&entry.ciphertext, signature) {
            Ok(p) => p,
            Err(e) => return RevealOutcome::Invalid(e.to_string()),
        };
        let Some(payload) = WeightsTlockPayload::from_bytes(&plaintext) else {
            return RevealOutcome::Invalid("payload is not a WeightsTlockPayload".into());
        };
        if payload.hotkey.as_slice() != entry.who.as_bytes() {
            return RevealOutcome::Invalid("payload hotkey is not the committer".into());
        }
        if payload.uids.len() != payload.values.len() {
            return RevealOutcome::Refused(format!("{PALLET}::WeightVecNotEqualSize"));
        }
        let Ok(uid) = self.uid(netuid, &entry.who) else {
            return RevealOutcome::Refused(format!("{PALLET}::HotKeyNotRegisteredInSubNet"));
        };
        let mut sorted: Vec<u16> = payload.uids.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return RevealOutcome::Refused(format!("{PALLET}::DuplicateUids"));
        }
        let weights = NormalizedWeights {
            uids: payload.uids,
            values: payload.values,
        };
        match self.set_weights_checked(netuid, uid, &weights, payload.version_key, block) {
            Ok(()) => RevealOutcome::Applied,
            Err(e) => RevealOutcome::Refused(e.to_string()),
        }
    }

    fn settle(&mut self, block: u64, entry: &Entry, outcome: RevealOutcome) {
        self.timelocked.settled.push(RevealRecord {
            block,
            hotkey: entry.who,
            commit_block: entry.commit_block,
            reveal_round: entry.reveal_round,
            outcome,
        });
    }
}

impl ChainState {
    /// `commit_timelocked_weights` signed by `who`.
    pub(crate) fn commit_timelocked(
        &mut self,
        netuid: u16,
        who: &AccountId,
        commit: &TimelockedCommit,
    ) -> Result<(), ChainError> {
        if commit.commit.len() > MAX_COMMIT_BYTES {
            return Err(ChainError::CommitTooLarge {
                len: commit.commit.len(),
                max: MAX_COMMIT_BYTES,
            });
        }
        let block = self.block;
        let version = self.commit_reveal_version;
        let subnet = self.subnet_mut(netuid)?;
        if !subnet.config.commit_reveal {
            return Err(ChainError::module(PALLET, "CommitRevealDisabled"));
        }
        if commit.commit_reveal_version != version {
            return Err(ChainError::module(PALLET, "IncorrectCommitRevealVersion"));
        }
        let uid = subnet.uid(netuid, who)?;
        if !subnet.weights_rate_ok(uid, block) {
            return Err(ChainError::module(PALLET, "CommittingWeightsTooFast"));
        }
        let epoch = subnet.commit_epoch(netuid, block);
        let entries = subnet.timelocked.by_epoch.entry(epoch).or_default();
        if entries.iter().filter(|e| &e.who == who).count() >= MAX_PENDING_PER_EPOCH {
            return Err(ChainError::module(PALLET, "TooManyUnrevealedCommits"));
        }
        entries.push(Entry {
            who: *who,
            commit_block: block,
            ciphertext: commit.commit.clone(),
            reveal_round: commit.reveal_round,
        });
        subnet.set_last_update(uid, block);
        Ok(())
    }

    pub(crate) fn pending_commits(
        &self,
        netuid: u16,
        who: &AccountId,
    ) -> Result<Vec<PendingCommit>, ChainError> {
        let subnet = self.subnet(netuid)?;
        Ok(subnet
            .timelocked
            .by_epoch
            .iter()
            .flat_map(|(epoch, entries)| {
                entries
                    .iter()
                    .filter(|e| &e.who == who)
                    .map(|e| PendingCommit {
                        epoch: *epoch,
                        commit_block: e.commit_block,
                        reveal_round: e.reveal_round,
                        bytes: e.ciphertext.len(),
                    })
            })
            .collect())
    }

    pub(crate) fn reveals(&self, netuid: u16) -> Result<Vec<RevealRecord>, ChainError> {
        Ok(self.subnet(netuid)?.timelocked.settled.clone())
    }
}
