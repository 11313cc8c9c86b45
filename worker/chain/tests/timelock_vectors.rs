//! Timelock encryption against a real drand quicknet pulse, without any other implementation
//! in the loop (the Python interop is `drand_interop.rs`).
//!
//! Test vector: quicknet round 1000, as published by drand at
//! `https://api.drand.sh/52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971/public/1000`
//! and used as the fixed vector of the `tle` crate's own quicknet test
//! (github.com/ideal-lab5/timelock, `tle/src/tlock.rs`, `tlock_encrypt_decrypt_drand_quicknet_works`).

use rand::SeedableRng;
use worker_chain::timelock::{
    self, Beacon, BeaconKey, Ciphertext, QUICKNET_PUBLIC_KEY, TimelockError, WeightsTlockPayload,
};

pub const ROUND: u64 = 1000;
pub const SIGNATURE: &str = "b44679b9a59af2ec876b1a6b1ad52ea9b1615fc3982b19576350f93447cb1125e342b73a8dd2bacbe47e4b6b63ed5e39";

fn signature() -> Vec<u8> {
    hex::decode(SIGNATURE).unwrap()
}

#[test]
fn the_published_pulse_is_a_valid_quicknet_signature() {
    // Proves hash-to-G1 (RFC 9380, quicknet DST), the G1/G2 decompression and the pairing
    // orientation: e(sig, g2) == e(H(sha256(round)), pk).
    let quicknet = Beacon::quicknet();
    assert!(quicknet.verify(ROUND, &signature()).unwrap());
    assert!(!quicknet.verify(ROUND + 1, &signature()).unwrap());
    assert_eq!(quicknet.public_key, QUICKNET_PUBLIC_KEY);
}

#[test]
fn ciphertext_for_a_round_opens_with_that_rounds_pulse_only() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let plaintext = b"weights for round 1000".to_vec();
    let ct = timelock::encrypt(&QUICKNET_PUBLIC_KEY, ROUND, &plaintext, &mut rng).unwrap();
    assert_eq!(timelock::decrypt(&ct, &signature()).unwrap(), plaintext);

    // Same pulse, ciphertext for another round: the IBE consistency check refuses it.
    let other = timelock::encrypt(&QUICKNET_PUBLIC_KEY, ROUND + 1, &plaintext, &mut rng).unwrap();
    assert_eq!(
        timelock::decrypt(&other, &signature()),
        Err(TimelockError::WrongSignature)
    );
}

#[test]
fn layout_is_the_tle_compressed_serialization() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let payload = WeightsTlockPayload {
        hotkey: vec![7; 32],
        uids: vec![1, 2],
        values: vec![65535, 100],
        version_key: 5,
    };
    let bytes = payload.to_bytes();
    // hotkey: compact(32) + 32, uids: compact(2) + 4, values: compact(2) + 4, version: 8.
    assert_eq!(bytes.len(), 33 + 5 + 5 + 8);
    let ct = timelock::encrypt(&QUICKNET_PUBLIC_KEY, ROUND, &bytes, &mut rng).unwrap();
    // u 96 | v 8+32 | w 8+32 | body 8 + (8 + 51 + 16 tag) + (8 + 12) | suite 8 + 8 = 295 bytes,
    // the size bittensor-drand produces for this payload.
    assert_eq!(ct.len(), 295);
    assert_eq!(&ct[96..104], &32u64.to_le_bytes());
    assert_eq!(&ct[ct.len() - 8..], b"AES_GCM_");
    assert_eq!(&ct[ct.len() - 16..ct.len() - 8], &8u64.to_le_bytes());
    let parsed = Ciphertext::from_bytes(&ct).unwrap();
    assert_eq!(parsed.to_bytes().unwrap(), ct);
    let opened = timelock::decrypt(&ct, &signature()).unwrap();
    assert_eq!(WeightsTlockPayload::from_bytes(&opened), Some(payload));
}

#[test]
fn malformed_ciphertexts_and_signatures_are_refused_without_panicking() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let ct = timelock::encrypt(&QUICKNET_PUBLIC_KEY, ROUND, b"x", &mut rng).unwrap();
    for cut in [0, 10, 95, 96, 100, 200, ct.len() - 1] {
        assert!(
            timelock::decrypt(&ct[..cut], &signature()).is_err(),
            "cut {cut}"
        );
    }
    let mut trailing = ct.clone();
    trailing.push(0);
    assert_eq!(
        timelock::decrypt(&trailing, &signature()),
        Err(TimelockError::Malformed("trailing bytes"))
    );
    // A huge length prefix must not allocate or read out of bounds.
    let mut huge = ct.clone();
    huge[96..104].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(timelock::decrypt(&huge, &signature()).is_err());
    // Flipping a ciphertext byte breaks the AES-GCM tag.
    let mut flipped = ct.clone();
    let body_byte = 96 + 40 + 40 + 8 + 8;
    flipped[body_byte] ^= 1;
    assert_eq!(
        timelock::decrypt(&flipped, &signature()),
        Err(TimelockError::Aead)
    );
    assert_eq!(
        timelock::decrypt(&ct, &signature()[..47]),
        Err(TimelockError::InvalidSignature)
    );
    assert!(timelock::encrypt(&[0u8; 96], ROUND, b"x", &mut rng).is_err());
}

#[test]
fn a_local_beacon_signs_rounds_like_quicknet() {
    let key = BeaconKey::from_seed(&[9; 64]).unwrap();
    let beacon = Beacon {
        public_key: key.public_key(),
        genesis_time: 0.0,
        period: 1.0,
    };
    let signature = key.sign(42).unwrap();
    assert!(beacon.verify(42, &signature).unwrap());
    assert!(!Beacon::quicknet().verify(42, &signature).unwrap());
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let ct = timelock::encrypt(&key.public_key(), 42, b"local", &mut rng).unwrap();
    assert_eq!(timelock::decrypt(&ct, &signature).unwrap(), b"local");
    // Debug shows the public key only.
    assert_eq!(
        format!("{key:?}"),
        format!(
            "BeaconKey {{ public_key: {:?}, .. }}",
            hex::encode(key.public_key())
        )
    );
}
