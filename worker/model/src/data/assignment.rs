//! Deterministic sample assignment, so a validator can recompute any miner's data.
//!
//! **Seed.** `seed = SHA-256("templar/sample-assignment/v1" || run_seed || uid || window)`
//! with `run_seed` and `window` as u64 little-endian and `uid` as u16 little-endian. The
//! 32-byte digest seeds a ChaCha20 generator (`rand_chacha::ChaCha20Rng::from_seed`).
//!
//! **Draws.** `uniform(n)`: take `x = next_u64()`, reject while
//! `x >= n * floor(2^64 / n)`, return `x % n`. Sample ids are a partial Fisher-Yates
//! shuffle of `0..num_samples`: for `j` in `0..count`, `r = j + uniform(num_samples - j)`,
//! swap positions `j` and `r` of the (virtual) identity permutation, emit position `j`.
//! Ids are therefore distinct, and the order is the training order.
//!
//! **Digest.** `SHA-256("templar/sample-digest/v1" || count || id_0 || id_1 ...)`, all u64
//! little-endian, in training order: a miner publishes it, a validator compares it with
//! the digest of the ids it recomputed.

use std::collections::HashMap;

use rand::RngCore;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;
use sha2::{Digest, Sha256};

use crate::error::{ModelError, Result};

/// Domain separator of the assignment seed.
pub const ASSIGNMENT_DOMAIN: &[u8] = b"templar/sample-assignment/v1";
/// Domain separator of the sample digest.
pub const DIGEST_DOMAIN: &[u8] = b"templar/sample-digest/v1";

/// The ChaCha20 seed of `uid`'s data in `window`.
pub fn assignment_seed(run_seed: u64, uid: u16, window: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(ASSIGNMENT_DOMAIN);
    hasher.update(run_seed.to_le_bytes());
    hasher.update(uid.to_le_bytes());
    hasher.update(window.to_le_bytes());
    hasher.finalize().into()
}

/// The `count` distinct sample ids `uid` trains on in `window`, in training order.
pub fn assigned_sample_ids(
    run_seed: u64,
    uid: u16,
    window: u64,
    count: usize,
    num_samples: u64,
) -> Result<Vec<u64>> {
    let mut rng = ChaCha20Rng::from_seed(assignment_seed(run_seed, uid, window));
    sample_ids(&mut rng, count, num_samples)
}

/// `count` distinct ids drawn from `rng` (e.g. a validator's own random batch: seed it
/// from the OS so miners cannot predict it).
pub fn sample_ids(rng: &mut impl RngCore, count: usize, num_samples: u64) -> Result<Vec<u64>> {
    if count as u64 > num_samples {
        return Err(ModelError::Data(format!(
            "cannot draw {count} distinct samples out of {num_samples}"
        )));
    }
    let mut swapped: HashMap<u64, u64> = HashMap::new();
    let mut ids = Vec::with_capacity(count);
    for j in 0..count as u64 {
        let r = j + uniform(rng, num_samples - j);
        let at_r = swapped.get(&r).copied().unwrap_or(r);
        let at_j = swapped.get(&j).copied().unwrap_or(j);
        swapped.insert(r, at_j);
        ids.push(at_r);
    }
    Ok(ids)
}

/// Ids for a validator's random (non-assigned) batch, from fresh OS entropy.
pub fn random_sample_ids(count: usize, num_samples: u64) -> Result<Vec<u64>> {
    sample_ids(&mut rand::rng(), count, num_samples)
}

/// Unbiased draw in `0..n` (`n > 0`).
fn uniform(rng: &mut impl RngCore, n: u64) -> u64 {
    let zone = (1u128 << 64) / n as u128 * n as u128;
    loop {
        let x = rng.next_u64();
        if (x as u128) < zone {
            return x % n;
        }
    }
}

/// SHA-256 digest of a list of sample ids (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SampleDigest(pub [u8; 32]);

impl SampleDigest {
    /// Digest of `ids` in the given order.
    pub fn of(ids: &[u64]) -> SampleDigest {
        let mut hasher = Sha256::new();
        hasher.update(DIGEST_DOMAIN);
        hasher.update((ids.len() as u64).to_le_bytes());
        for id in ids {
            hasher.update(id.to_le_bytes());
        }
        SampleDigest(hasher.finalize().into())
    }

    /// Lower-case hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    pub fn from_hex(text: &str) -> Result<SampleDigest> {
        let bytes =
            hex::decode(text).map_err(|e| ModelError::Data(format!("bad digest hex: {e}")))?;
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ModelError::Data("digest must be 32 bytes".into()))?;
        Ok(SampleDigest(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_is_reproducible_and_uid_specific() {
        let a = assigned_sample_ids(42, 3, 1000, 64, 3000).unwrap();
        let b = assigned_sample_ids(42, 3, 1000, 64, 3000).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, assigned_sample_ids(42, 4, 1000, 64, 3000).unwrap());
        assert_ne!(a, assigned_sample_ids(42, 3, 1001, 64, 3000).unwrap());
        assert_ne!(a, assigned_sample_ids(43, 3, 1000, 64, 3000).unwrap());
        let mut sorted = a.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 64, "ids are distinct");
        assert!(a.iter().all(|&id| id < 3000));
    }

    #[test]
    fn drawing_everything_is_a_permutation() {
        let mut ids = assigned_sample_ids(1, 1, 1, 100, 100).unwrap();
        ids.sort_unstable();
        assert_eq!(ids, (0..100).collect::<Vec<u64>>());
        assert!(assigned_sample_ids(1, 1, 1, 101, 100).is_err());
    }

    #[test]
    fn seed_layout_is_as_documented() {
        let mut hasher = Sha256::new();
        hasher.update(b"templar/sample-assignment/v1");
        hasher.update([7, 0, 0, 0, 0, 0, 0, 0]);
        hasher.update([9, 1]);
        hasher.update([5, 0, 0, 0, 0, 0, 0, 0]);
        let expected: [u8; 32] = hasher.finalize().into();
        assert_eq!(assignment_seed(7, 0x0109, 5), expected);
    }

    #[test]
    fn digest_depends_on_ids_and_order_and_round_trips() {
        let d = SampleDigest::of(&[1, 2, 3]);
        assert_ne!(d, SampleDigest::of(&[1, 3, 2]));
        assert_ne!(d, SampleDigest::of(&[1, 2]));
        assert_eq!(SampleDigest::from_hex(&d.to_hex()).unwrap(), d);
        assert!(SampleDigest::from_hex("abcd").is_err());
        assert!(SampleDigest::from_hex("zz").is_err());
    }

    #[test]
    fn random_batches_differ_between_calls() {
        let a = random_sample_ids(16, 1_000_000).unwrap();
        let b = random_sample_ids(16, 1_000_000).unwrap();
        assert_ne!(a, b);
    }
}
