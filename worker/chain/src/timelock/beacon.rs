//! Randomness beacons: drand quicknet's public parameters, and a local beacon (its own BLS
//! key) that signs rounds the way quicknet does, for the embedded chain.

use ark_bls12_381::{Fr, G1Affine, G2Affine, G2Projective};
use ark_ec::{CurveGroup, PrimeGroup};
use ark_ff::PrimeField;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};

use super::TimelockError;
use super::ibe::{hash_to_g1, round_message, verify_signature};

/// Compressed size of a round signature (G1).
pub const SIGNATURE_LEN: usize = 48;
/// Compressed size of a beacon public key (G2).
pub const PUBLIC_KEY_LEN: usize = 96;

/// drand quicknet's public key (compressed G2), from its chain info
/// (`https://api.drand.sh/52db9ba70e0cc0f6eaf7803dd07447a1f5477735fd3f661792ba94600c84e971/info`).
pub const QUICKNET_PUBLIC_KEY: [u8; PUBLIC_KEY_LEN] = hex_literal(
    "83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a",
);
/// Unix time of quicknet's round 0 (round `r` is published at `genesis + r * period`).
pub const QUICKNET_GENESIS: u64 = 1_692_803_367;
/// Seconds between quicknet rounds.
pub const QUICKNET_PERIOD: u64 = 3;

const fn hex_digit(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not a lowercase hex digit"),
    }
}

const fn hex_literal<const N: usize>(hex: &str) -> [u8; N] {
    let bytes = hex.as_bytes();
    assert!(bytes.len() == 2 * N, "hex literal has the wrong length");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = (hex_digit(bytes[2 * i]) << 4) | hex_digit(bytes[2 * i + 1]);
        i += 1;
    }
    out
}

/// What an encrypter needs to know about a beacon: its public key and its round clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Beacon {
    /// Compressed G2 public key.
    pub public_key: [u8; PUBLIC_KEY_LEN],
    /// Unix time (seconds) of round 0.
    pub genesis_time: f64,
    /// Seconds between rounds.
    pub period: f64,
}

impl Beacon {
    /// drand quicknet, the beacon subtensor's `Drand` pallet ingests.
    pub const fn quicknet() -> Self {
        Self {
            public_key: QUICKNET_PUBLIC_KEY,
            genesis_time: QUICKNET_GENESIS as f64,
            period: QUICKNET_PERIOD as f64,
        }
    }

    /// The latest round published at Unix time `now` (0 before the first round).
    pub fn round_at(&self, now: f64) -> u64 {
        if self.period <= 0.0 {
            return 0;
        }
        let round = ((now - self.genesis_time) / self.period).floor();
        if round.is_finite() && round > 0.0 {
            round as u64
        } else {
            0
        }
    }

    /// The decompressed public key (checked to be in the prime-order subgroup).
    pub fn public_point(&self) -> Result<G2Affine, TimelockError> {
        G2Affine::deserialize_compressed(&self.public_key[..])
            .map_err(|_| TimelockError::InvalidPublicKey)
    }

    /// True when `signature` (compressed G1) is this beacon's signature of `round`.
    pub fn verify(&self, round: u64, signature: &[u8]) -> Result<bool, TimelockError> {
        let signature = signature_point(signature)?;
        verify_signature(&self.public_point()?, &round_message(round), &signature)
    }
}

/// Parse a compressed G1 round signature.
pub fn signature_point(bytes: &[u8]) -> Result<G1Affine, TimelockError> {
    if bytes.len() != SIGNATURE_LEN {
        return Err(TimelockError::InvalidSignature);
    }
    G1Affine::deserialize_compressed(bytes).map_err(|_| TimelockError::InvalidSignature)
}

/// A beacon's secret key: signs rounds as `sk · hash_to_G1(sha256(round BE))`, quicknet's
/// scheme. Debug output never shows the key.
#[derive(Clone)]
pub struct BeaconKey {
    secret: Fr,
    public_key: [u8; PUBLIC_KEY_LEN],
}

impl std::fmt::Debug for BeaconKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeaconKey")
            .field("public_key", &hex::encode(self.public_key))
            .finish_non_exhaustive()
    }
}

impl BeaconKey {
    /// A key from 64 bytes of seed material (reduced modulo the group order).
    pub fn from_seed(seed: &[u8; 64]) -> Result<Self, TimelockError> {
        let mut secret = Fr::from_le_bytes_mod_order(seed);
        if secret == Fr::from(0u64) {
            secret = Fr::from(1u64);
        }
        let mut public_key = [0u8; PUBLIC_KEY_LEN];
        (G2Projective::generator() * secret)
            .into_affine()
            .serialize_compressed(&mut public_key[..])
            .map_err(|e| TimelockError::Serialize(e.to_string()))?;
        Ok(Self { secret, public_key })
    }

    /// A fresh random key.
    pub fn generate() -> Result<Self, TimelockError> {
        let mut seed = [0u8; 64];
        rand::fill(&mut seed[..]);
        Self::from_seed(&seed)
    }

    /// Compressed G2 public key.
    pub fn public_key(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.public_key
    }

    /// The compressed signature of `round`.
    pub fn sign(&self, round: u64) -> Result<[u8; SIGNATURE_LEN], TimelockError> {
        let point = (hash_to_g1(&round_message(round))? * self.secret).into_affine();
        let mut out = [0u8; SIGNATURE_LEN];
        point
            .serialize_compressed(&mut out[..])
            .map_err(|e| TimelockError::Serialize(e.to_string()))?;
        Ok(out)
    }
}
