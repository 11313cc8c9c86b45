//! The rules subtensor applies to a weight vector (`internal_set_weights`, also run when a
//! timelocked commit is revealed), in one place: [`crate::SubxtChain`] checks them before
//! submitting (a timelocked commit that breaks one is silently dropped at reveal), and
//! [`crate::EmbeddedChain`] enforces them.

use serde::{Deserialize, Serialize};

use crate::error::{ChainError, RateLimited};
use crate::weights::NormalizedWeights;

/// A subnet's weight-setting hyperparameters, read at one block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsPolicy {
    /// Subnet.
    pub netuid: u16,
    /// Registered neurons (`SubnetworkN`).
    pub subnet_n: u16,
    /// Epoch length in blocks (`Tempo`).
    pub tempo: u16,
    /// `CommitRevealWeightsEnabled`: weights must go through `commit_timelocked_weights`.
    pub commit_reveal_enabled: bool,
    /// `CommitRevealWeightsVersion` the chain accepts (4 on spec 393).
    pub commit_reveal_version: u16,
    /// `RevealPeriodEpochs`: epochs between a commit and its reveal.
    pub reveal_period_epochs: u64,
    /// `MinAllowedWeights` (capped by `subnet_n`).
    pub min_allowed_weights: u16,
    /// `MaxWeightsLimit`: largest share of one uid, as a fraction of `u16::MAX`.
    pub max_weight_limit: u16,
    /// `WeightsVersionKey`: the smallest version key accepted (0 = any).
    pub weights_version_key: u64,
    /// `WeightsSetRateLimit`: blocks between two updates (or commits) of one neuron.
    pub weights_rate_limit: u64,
}

/// A subnet rule a weight vector breaks.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightsRefusal {
    /// Fewer non-zero weights than `MinAllowedWeights` (capped by the subnet size).
    #[error(
        "only {given} non-zero weights; netuid {netuid} requires at least {required} \
         (MinAllowedWeights {min_allowed_weights}, {subnet_n} neurons)"
    )]
    TooFewWeights {
        /// Subnet.
        netuid: u16,
        /// Non-zero weights sent.
        given: usize,
        /// Weights required.
        required: usize,
        /// The subnet's `MinAllowedWeights`.
        min_allowed_weights: u16,
        /// Neurons on the subnet.
        subnet_n: u16,
    },
    /// One uid carries a larger share than `MaxWeightsLimit`.
    #[error(
        "uid {uid} would get {share_percent:.2}% of the weight; netuid {netuid} allows at most \
         {limit_percent:.2}% (MaxWeightsLimit {max_weight_limit})"
    )]
    MaxWeightExceeded {
        /// Subnet.
        netuid: u16,
        /// The uid with the largest weight.
        uid: u16,
        /// Its share of the total, in percent.
        share_percent: f64,
        /// The allowed share, in percent.
        limit_percent: f64,
        /// The subnet's `MaxWeightsLimit`.
        max_weight_limit: u16,
    },
    /// Setting weights on others needs a validator permit.
    #[error("uid {uid} has no validator permit on netuid {netuid} (only a self-weight is allowed)")]
    NoValidatorPermit {
        /// Subnet.
        netuid: u16,
        /// The setter.
        uid: u16,
    },
    /// A destination uid is not registered.
    #[error("uid {uid} does not exist on netuid {netuid} ({subnet_n} neurons)")]
    InvalidUid {
        /// Subnet.
        netuid: u16,
        /// The bad destination.
        uid: u16,
        /// Neurons on the subnet.
        subnet_n: u16,
    },
    /// More weights than neurons.
    #[error("{given} weights but netuid {netuid} has only {subnet_n} neurons")]
    TooManyUids {
        /// Subnet.
        netuid: u16,
        /// Weights sent.
        given: usize,
        /// Neurons on the subnet.
        subnet_n: u16,
    },
}

impl WeightsRefusal {
    /// The subtensor pallet error the chain raises for this rule.
    pub fn module_error(&self) -> &'static str {
        match self {
            Self::TooFewWeights { .. } => "WeightVecLengthIsLow",
            Self::MaxWeightExceeded { .. } => "MaxWeightExceeded",
            Self::NoValidatorPermit { .. } => "NeuronNoValidatorPermit",
            Self::InvalidUid { .. } => "UidVecContainInvalidOne",
            Self::TooManyUids { .. } => "UidsLengthExceedUidsInSubNet",
        }
    }
}

/// A single weight on the setter itself: allowed without a permit, below the minimum count
/// and above the max-weight limit (subtensor's `is_self_weight`).
pub fn is_self_weight(uid: u16, weights: &NormalizedWeights) -> bool {
    weights.values.len() == 1 && weights.uids.first() == Some(&uid)
}

impl WeightsPolicy {
    /// The content rules of `internal_set_weights` (uid count, permit, uid validity, minimum
    /// count, max-weight limit), in subtensor's order. Version key and rate limit are separate
    /// ([`WeightsPolicy::check_version_key`], [`check_rate_limit`]) because the chain applies
    /// them at different moments for commits.
    pub fn check_content(
        &self,
        uid: u16,
        validator_permit: bool,
        weights: &NormalizedWeights,
    ) -> Result<(), WeightsRefusal> {
        let netuid = self.netuid;
        let n = self.subnet_n;
        if weights.len() > usize::from(n) {
            return Err(WeightsRefusal::TooManyUids {
                netuid,
                given: weights.len(),
                subnet_n: n,
            });
        }
        let self_weight = is_self_weight(uid, weights);
        if !self_weight && !validator_permit {
            return Err(WeightsRefusal::NoValidatorPermit { netuid, uid });
        }
        if let Some(&bad) = weights.uids.iter().find(|&&u| u >= n) {
            return Err(WeightsRefusal::InvalidUid {
                netuid,
                uid: bad,
                subnet_n: n,
            });
        }
        let required = usize::from(self.min_allowed_weights.min(n));
        if !self_weight && weights.len() < required {
            return Err(WeightsRefusal::TooFewWeights {
                netuid,
                given: weights.len(),
                required,
                min_allowed_weights: self.min_allowed_weights,
                subnet_n: n,
            });
        }
        if !self_weight && self.max_weight_limit != u16::MAX {
            // max / sum <= limit / 65535, compared exactly in integers (subtensor compares in
            // I32F32 fixed point, which can differ only in the last of 32 fractional bits).
            let sum: u64 = weights.values.iter().map(|&v| u64::from(v)).sum();
            // The first uid holding the largest weight.
            let largest = weights
                .values
                .iter()
                .enumerate()
                .max_by(|(i, a), (j, b)| a.cmp(b).then(j.cmp(i)));
            if let Some((i, &max)) = largest {
                let limit = u64::from(self.max_weight_limit);
                if u64::from(max) * u64::from(u16::MAX) > limit * sum {
                    return Err(WeightsRefusal::MaxWeightExceeded {
                        netuid,
                        uid: weights.uids[i],
                        share_percent: 100.0 * f64::from(max) / sum as f64,
                        limit_percent: 100.0 * limit as f64 / f64::from(u16::MAX),
                        max_weight_limit: self.max_weight_limit,
                    });
                }
            }
        }
        Ok(())
    }

    /// `version_key` must be at least `WeightsVersionKey` (any key when that is 0).
    pub fn check_version_key(&self, version_key: u64) -> Result<(), ChainError> {
        let required = self.weights_version_key;
        if required != 0 && version_key < required {
            return Err(ChainError::VersionKey {
                given: version_key,
                required,
            });
        }
        Ok(())
    }
}

/// `Ok` when `now - last >= limit` (or the neuron never updated: `last == 0`), else the typed
/// refusal with the first allowed block — subtensor's `check_rate_limit`.
pub fn check_rate_limit(
    what: RateLimited,
    netuid: u16,
    now: u64,
    last: u64,
    limit: u64,
) -> Result<(), ChainError> {
    if last == 0 || now.saturating_sub(last) >= limit {
        Ok(())
    } else {
        Err(ChainError::RateLimited {
            what,
            netuid,
            current_block: now,
            next_allowed_block: last.saturating_add(limit),
        })
    }
}

/// A neuron's standing for setting weights, with its subnet's rules, read at one block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsContext {
    /// The subnet's rules.
    pub policy: WeightsPolicy,
    /// The block the values were read at (best block).
    pub block: u64,
    /// Unix time at `block` in seconds (wall clock for a node; the embedded chain's clock).
    pub now_unix: f64,
    /// The neuron's uid.
    pub uid: u16,
    /// Its `LastUpdate` (last weights set or committed).
    pub last_update: u64,
    /// Whether it holds a validator permit.
    pub validator_permit: bool,
}

impl WeightsContext {
    /// Every rule checked before submitting: content, version key, rate limit.
    pub fn check(&self, weights: &NormalizedWeights, version_key: u64) -> Result<(), ChainError> {
        self.policy
            .check_content(self.uid, self.validator_permit, weights)
            .map_err(ChainError::WeightsRefused)?;
        self.policy.check_version_key(version_key)?;
        check_rate_limit(
            RateLimited::Weights,
            self.policy.netuid,
            self.block,
            self.last_update,
            self.policy.weights_rate_limit,
        )
    }

    /// The first block at which the rate limit allows another update.
    pub fn next_allowed_block(&self) -> u64 {
        if self.last_update == 0 {
            self.block
        } else {
            self.last_update
                .saturating_add(self.policy.weights_rate_limit)
                .max(self.block)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> WeightsPolicy {
        WeightsPolicy {
            netuid: 3,
            subnet_n: 10,
            tempo: 99,
            commit_reveal_enabled: true,
            commit_reveal_version: 4,
            reveal_period_epochs: 1,
            min_allowed_weights: 3,
            max_weight_limit: u16::MAX,
            weights_version_key: 0,
            weights_rate_limit: 100,
        }
    }

    fn w(uids: &[u16], values: &[u16]) -> NormalizedWeights {
        NormalizedWeights {
            uids: uids.to_vec(),
            values: values.to_vec(),
        }
    }

    #[test]
    fn minimum_count_is_capped_by_subnet_size_and_waived_for_self_weight() {
        let p = policy();
        assert!(matches!(
            p.check_content(0, true, &w(&[1, 2], &[65535, 1])),
            Err(WeightsRefusal::TooFewWeights {
                given: 2,
                required: 3,
                ..
            })
        ));
        assert!(
            p.check_content(0, true, &w(&[1, 2, 3], &[65535, 1, 1]))
                .is_ok()
        );
        assert!(p.check_content(0, false, &w(&[0], &[65535])).is_ok());
        let small = WeightsPolicy {
            subnet_n: 2,
            ..policy()
        };
        assert!(
            small
                .check_content(0, true, &w(&[0, 1], &[65535, 1]))
                .is_ok()
        );
    }

    #[test]
    fn max_weight_limit_is_a_share_of_the_total() {
        // 20% limit = 13107 / 65535.
        let p = WeightsPolicy {
            max_weight_limit: 13107,
            min_allowed_weights: 1,
            ..policy()
        };
        // Five equal weights: 20% each, exactly at the limit.
        let equal = w(&[1, 2, 3, 4, 5], &[65535; 5]);
        assert!(p.check_content(0, true, &equal).is_ok());
        let skewed = w(&[1, 2, 3, 4, 5], &[65535, 65535, 65535, 65535, 60000]);
        let err = p.check_content(0, true, &skewed).unwrap_err();
        assert!(
            matches!(err, WeightsRefusal::MaxWeightExceeded { uid: 1, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("at most 20.00%"), "{err}");
        assert_eq!(err.module_error(), "MaxWeightExceeded");
    }

    #[test]
    fn permit_and_uid_validity() {
        let p = policy();
        assert_eq!(
            p.check_content(4, false, &w(&[1, 2, 3], &[1, 1, 1])),
            Err(WeightsRefusal::NoValidatorPermit { netuid: 3, uid: 4 })
        );
        assert_eq!(
            p.check_content(4, true, &w(&[1, 2, 10], &[1, 1, 1])),
            Err(WeightsRefusal::InvalidUid {
                netuid: 3,
                uid: 10,
                subnet_n: 10
            })
        );
        let tiny = WeightsPolicy {
            subnet_n: 2,
            ..policy()
        };
        assert!(matches!(
            tiny.check_content(0, true, &w(&[0, 1, 2], &[1, 1, 1])),
            Err(WeightsRefusal::TooManyUids { given: 3, .. })
        ));
    }

    #[test]
    fn context_checks_version_and_rate_limit() {
        let ctx = WeightsContext {
            policy: WeightsPolicy {
                weights_version_key: 7,
                ..policy()
            },
            block: 1000,
            now_unix: 0.0,
            uid: 0,
            last_update: 950,
            validator_permit: true,
        };
        let ok = w(&[1, 2, 3], &[65535, 2, 3]);
        assert_eq!(
            ctx.check(&ok, 6),
            Err(ChainError::VersionKey {
                given: 6,
                required: 7
            })
        );
        assert!(matches!(
            ctx.check(&ok, 7),
            Err(ChainError::RateLimited {
                next_allowed_block: 1050,
                ..
            })
        ));
        assert_eq!(ctx.next_allowed_block(), 1050);
        let later = WeightsContext {
            block: 1050,
            ..ctx.clone()
        };
        assert!(later.check(&ok, 7).is_ok());
        assert!(check_rate_limit(RateLimited::Weights, 3, 1000, 0, 100).is_ok());
    }
}
