//! Boneh–Franklin identity-based encryption ("FullIdent") on BLS12-381 in the orientation
//! drand quicknet uses: beacon public key and ciphertext point `U` in G2, identities and
//! round signatures in G1.
//!
//! Only the 32-byte key of the stream cipher goes through IBE (what the `tle` crate calls the
//! header); the hash functions are the ones `tle` uses so that subtensor can decrypt:
//!
//! - `Q_id = hash_to_G1(identity)` (RFC 9380, `BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_`)
//! - `r = Fr::from_be_bytes_mod_order(sha256(sigma ‖ key))`, `U = r·G2`
//! - `V = sigma ⊕ sha256(serialize(e(Q_id, r·P_pub)))` (`Fq12`, arkworks serialization)
//! - `W = key ⊕ sha256(sigma)`
//!
//! Decryption with the round's signature `d = sk·Q_id` recovers `sigma` through
//! `e(d, U) = e(Q_id, P_pub)^r` and re-derives `r` to check `U`.

use ark_bls12_381::{Bls12_381, Fq12, Fr, G1Affine, G1Projective, G2Affine, G2Projective, g1};
use ark_ec::hashing::HashToCurve;
use ark_ec::hashing::curve_maps::wb::WBMap;
use ark_ec::hashing::map_to_curve_hasher::MapToCurveBasedHasher;
use ark_ec::pairing::Pairing;
use ark_ec::{AffineRepr, CurveGroup, PrimeGroup};
use ark_ff::PrimeField;
use ark_ff::field_hashers::DefaultFieldHasher;
use ark_serialize::CanonicalSerialize;
use sha2::{Digest, Sha256};

use super::TimelockError;

/// Domain separation tag of drand quicknet's signatures (`bls-unchained-g1-rfc9380`).
pub const QUICKNET_DST: &[u8] = b"BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_";

/// The IBE part of a ciphertext: `U` (G2), `V` and `W` (32 bytes each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IbeHeader {
    /// `r·G2`.
    pub u: G2Affine,
    /// `sigma ⊕ H2(g_id^r)`.
    pub v: [u8; 32],
    /// `key ⊕ H4(sigma)`.
    pub w: [u8; 32],
}

pub(crate) fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn xor32(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    core::array::from_fn(|i| a[i] ^ b[i])
}

/// The message a drand (unchained) beacon signs for `round`: `sha256(round big-endian)`.
pub fn round_message(round: u64) -> [u8; 32] {
    sha256(&[&round.to_be_bytes()])
}

/// `hash_to_G1(message)` with the quicknet domain separation tag.
pub fn hash_to_g1(message: &[u8]) -> Result<G1Affine, TimelockError> {
    type Hasher =
        MapToCurveBasedHasher<G1Projective, DefaultFieldHasher<Sha256, 128>, WBMap<g1::Config>>;
    let hasher =
        Hasher::new(QUICKNET_DST).map_err(|e| TimelockError::HashToCurve(e.to_string()))?;
    hasher
        .hash(message)
        .map_err(|e| TimelockError::HashToCurve(e.to_string()))
}

/// `sha256` of the arkworks serialization of a target-group element (the `tle` crate's H2).
fn h2(value: &Fq12) -> Result<[u8; 32], TimelockError> {
    let mut bytes = Vec::with_capacity(576);
    value
        .serialize_compressed(&mut bytes)
        .map_err(|e| TimelockError::Serialize(e.to_string()))?;
    Ok(sha256(&[&bytes]))
}

/// `Fr` from `sha256(sigma ‖ key)` read big-endian and reduced (the `tle` crate's H3).
fn h3(sigma: &[u8; 32], key: &[u8; 32]) -> Fr {
    Fr::from_be_bytes_mod_order(&sha256(&[sigma, key]))
}

/// Encrypt the 32-byte `key` for `identity` under the beacon's G2 public key; `sigma` must be
/// fresh randomness.
pub fn encrypt(
    public_key: &G2Affine,
    identity: &[u8],
    key: &[u8; 32],
    sigma: &[u8; 32],
) -> Result<IbeHeader, TimelockError> {
    let q_id = hash_to_g1(identity)?;
    let r = h3(sigma, key);
    let u = (G2Projective::generator() * r).into_affine();
    let shared = Bls12_381::pairing(q_id, (*public_key * r).into_affine()).0;
    Ok(IbeHeader {
        u,
        v: xor32(sigma, &h2(&shared)?),
        w: xor32(key, &sha256(&[sigma])),
    })
}

/// Recover the 32-byte key with the identity's secret (for drand: the round's signature).
/// Fails with [`TimelockError::WrongSignature`] when the signature is not the one of the
/// identity the header was made for.
pub fn decrypt(header: &IbeHeader, signature: &G1Affine) -> Result<[u8; 32], TimelockError> {
    let shared = Bls12_381::pairing(*signature, header.u).0;
    let sigma = xor32(&header.v, &h2(&shared)?);
    let key = xor32(&header.w, &sha256(&[&sigma]));
    let r = h3(&sigma, &key);
    if (G2Projective::generator() * r).into_affine() != header.u {
        return Err(TimelockError::WrongSignature);
    }
    Ok(key)
}

/// `e(signature, G2) == e(hash_to_G1(message), public_key)`: a valid BLS signature in
/// quicknet's orientation.
pub fn verify_signature(
    public_key: &G2Affine,
    message: &[u8],
    signature: &G1Affine,
) -> Result<bool, TimelockError> {
    let h = hash_to_g1(message)?;
    Ok(Bls12_381::pairing(*signature, G2Affine::generator()) == Bls12_381::pairing(h, *public_key))
}
