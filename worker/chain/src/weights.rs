//! Weight vectors as the chain wants them, and the commit-reveal hash.
//!
//! `set_weights` takes `u16` values; subtensor max-normalises them itself, and the bittensor
//! SDK sends them already scaled so that the largest weight is `u16::MAX`. [`normalize_max_weights`]
//! does the same conversion in one pure function.

use std::collections::HashSet;

use subxt::ext::codec::Encode;

/// Weights ready for `set_weights`: parallel `uids` / `values`, sorted by uid, no zero values.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct NormalizedWeights {
    /// Destination uids, strictly increasing.
    pub uids: Vec<u16>,
    /// Weight of each uid, scaled so the largest is `u16::MAX`; never zero.
    pub values: Vec<u16>,
}

impl NormalizedWeights {
    /// Number of (uid, value) pairs.
    pub fn len(&self) -> usize {
        self.uids.len()
    }

    /// True when no uid carries weight.
    pub fn is_empty(&self) -> bool {
        self.uids.is_empty()
    }
}

/// Why a weight vector was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightsError {
    /// `uids` and `weights` have different lengths.
    #[error("{uids} uids but {weights} weights")]
    LengthMismatch {
        /// Length of the uid slice.
        uids: usize,
        /// Length of the weight slice.
        weights: usize,
    },
    /// A weight is NaN or infinite.
    #[error("weight for uid {uid} is not finite ({value})")]
    NotFinite {
        /// The uid whose weight is bad.
        uid: u16,
        /// The offending value.
        value: f32,
    },
    /// A weight is negative.
    #[error("weight for uid {uid} is negative ({value})")]
    Negative {
        /// The uid whose weight is bad.
        uid: u16,
        /// The offending value.
        value: f32,
    },
    /// The same uid appears twice (subtensor rejects this with `DuplicateUids`).
    #[error("uid {0} appears more than once")]
    DuplicateUid(u16),
    /// Every weight is zero (or rounds to zero), so there is nothing to set.
    #[error("all weights are zero")]
    AllZero,
}

/// Max-normalise float weights to `u16` the way the bittensor SDK does before `set_weights`:
/// `value = round(w / max(w) * 65535)`. The largest weight maps to exactly `u16::MAX`; entries
/// that are zero or round to zero are dropped; the result is sorted by uid.
///
/// Refuses NaN/infinite or negative weights, duplicate uids, mismatched lengths, and an
/// all-zero vector.
pub fn normalize_max_weights(
    uids: &[u16],
    weights: &[f32],
) -> Result<NormalizedWeights, WeightsError> {
    if uids.len() != weights.len() {
        return Err(WeightsError::LengthMismatch {
            uids: uids.len(),
            weights: weights.len(),
        });
    }
    let mut seen = HashSet::with_capacity(uids.len());
    let mut max = 0.0f64;
    for (&uid, &value) in uids.iter().zip(weights) {
        if !value.is_finite() {
            return Err(WeightsError::NotFinite { uid, value });
        }
        if value < 0.0 {
            return Err(WeightsError::Negative { uid, value });
        }
        if !seen.insert(uid) {
            return Err(WeightsError::DuplicateUid(uid));
        }
        max = max.max(f64::from(value));
    }
    if max <= 0.0 {
        return Err(WeightsError::AllZero);
    }
    let mut pairs: Vec<(u16, u16)> = uids
        .iter()
        .zip(weights)
        .filter_map(|(&uid, &value)| {
            let scaled = (f64::from(value) / max * f64::from(u16::MAX)).round();
            // `scaled` is in [0, 65535] because 0 <= value <= max.
            let scaled = scaled.clamp(0.0, f64::from(u16::MAX)) as u16;
            (scaled > 0).then_some((uid, scaled))
        })
        .collect();
    pairs.sort_unstable_by_key(|&(uid, _)| uid);
    Ok(NormalizedWeights {
        uids: pairs.iter().map(|&(uid, _)| uid).collect(),
        values: pairs.iter().map(|&(_, value)| value).collect(),
    })
}

/// The hash committed by `commit_weights` and checked by `reveal_weights`:
/// `BlakeTwo256(SCALE((who, netuid_index, uids, values, salt, version_key)))` with
/// `who: AccountId32` (32 raw bytes), `netuid_index: u16`, `uids/values/salt: Vec<u16>`,
/// `version_key: u64` — the tuple subtensor hashes in `do_reveal_weights`.
///
/// `netuid_index` is subtensor's per-mechanism storage index; for the main mechanism
/// (mechanism 0, the only one this crate uses) it equals the netuid.
pub fn commit_hash(
    who: &[u8; 32],
    netuid_index: u16,
    uids: &[u16],
    values: &[u16],
    salt: &[u16],
    version_key: u64,
) -> [u8; 32] {
    let encoded = (
        who,
        netuid_index,
        uids.to_vec(),
        values.to_vec(),
        salt.to_vec(),
        version_key,
    )
        .encode();
    sp_crypto_hashing::blake2_256(&encoded)
}

/// A fresh random salt for commit-reveal (8 × u16, like the bittensor SDK).
pub fn random_salt() -> Vec<u16> {
    (0..8).map(|_| rand::random::<u16>()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn largest_weight_becomes_u16_max() {
        let w = normalize_max_weights(&[3, 1, 2], &[0.5, 1.0, 0.25]).unwrap();
        assert_eq!(w.uids, vec![1, 2, 3]);
        assert_eq!(w.values, vec![65535, 16384, 32768]);
    }

    #[test]
    fn zero_and_tiny_weights_are_dropped() {
        // 1e-6 of the max rounds to 0 in u16 space and must not be sent.
        let w = normalize_max_weights(&[0, 1, 2], &[0.0, 1.0, 1e-6]).unwrap();
        assert_eq!(w.uids, vec![1]);
        assert_eq!(w.values, vec![65535]);
    }

    #[test]
    fn rejects_nan_infinite_negative_duplicates_and_all_zero() {
        assert!(matches!(
            normalize_max_weights(&[0, 1], &[1.0, f32::NAN]),
            Err(WeightsError::NotFinite { uid: 1, .. })
        ));
        assert!(matches!(
            normalize_max_weights(&[0], &[f32::INFINITY]),
            Err(WeightsError::NotFinite { uid: 0, .. })
        ));
        assert!(matches!(
            normalize_max_weights(&[0, 1], &[1.0, -0.1]),
            Err(WeightsError::Negative { uid: 1, .. })
        ));
        assert_eq!(
            normalize_max_weights(&[4, 4], &[1.0, 2.0]),
            Err(WeightsError::DuplicateUid(4))
        );
        assert_eq!(
            normalize_max_weights(&[0, 1], &[0.0, 0.0]),
            Err(WeightsError::AllZero)
        );
        assert_eq!(
            normalize_max_weights(&[0, 1], &[1.0]),
            Err(WeightsError::LengthMismatch {
                uids: 2,
                weights: 1
            })
        );
    }

    proptest! {
        #[test]
        fn normalisation_properties(raw in proptest::collection::btree_map(any::<u16>(), 0.0f32..1000.0, 1..64)) {
            let uids: Vec<u16> = raw.keys().copied().collect();
            let weights: Vec<f32> = raw.values().copied().collect();
            match normalize_max_weights(&uids, &weights) {
                Err(WeightsError::AllZero) => prop_assert!(weights.iter().all(|&w| w == 0.0)),
                Err(other) => prop_assert!(false, "unexpected error {other}"),
                Ok(w) => {
                    prop_assert_eq!(w.uids.len(), w.values.len());
                    prop_assert_eq!(w.values.iter().copied().max(), Some(u16::MAX));
                    prop_assert!(w.values.iter().all(|&v| v > 0));
                    prop_assert!(w.uids.windows(2).all(|p| p[0] < p[1]));
                    let max = weights.iter().copied().fold(0.0f32, f32::max);
                    for (uid, value) in w.uids.iter().zip(&w.values) {
                        // Each value is the rounded ratio to the max, within half a step.
                        let original = raw[uid];
                        let exact = f64::from(original) / f64::from(max) * 65535.0;
                        prop_assert!((f64::from(*value) - exact).abs() <= 0.5 + 1e-9);
                        // Ordering between uids is preserved (monotone map).
                        for (uid2, value2) in w.uids.iter().zip(&w.values) {
                            if raw[uid] > raw[uid2] {
                                prop_assert!(value >= value2);
                            }
                        }
                    }
                    // Dropped uids are exactly those whose weight rounds to zero.
                    for (uid, weight) in &raw {
                        let kept = w.uids.contains(uid);
                        let rounds_to_zero = (f64::from(*weight) / f64::from(max) * 65535.0).round() == 0.0;
                        prop_assert_eq!(kept, !rounds_to_zero);
                    }
                }
            }
        }
    }

    #[test]
    fn commit_hash_matches_independent_vector() {
        // Vector computed outside Rust (Python 3.11, hashlib.blake2b(digest_size=32)) over bytes
        // built by hand with struct.pack: who = 0x00..0x1f, netuid_index = 3 (u16 LE),
        // uids = compact(2) ++ [1, 7], values = compact(2) ++ [65535, 1234],
        // salt = compact(3) ++ [9, 8, 7], version_key = 4242 (u64 LE).
        let who: [u8; 32] = core::array::from_fn(|i| i as u8);
        let hash = commit_hash(&who, 3, &[1, 7], &[65535, 1234], &[9, 8, 7], 4242);
        assert_eq!(hex::encode(hash), COMMIT_VECTOR);
    }

    const COMMIT_VECTOR: &str = "895ed1fdfedc7adb7157f58c67e4eddf36e500bf5f7db1fac30b596c579e83f7";
}
