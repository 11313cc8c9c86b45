//! drand timelock encryption as subtensor's commit-reveal v4 uses it.
//!
//! A validator encrypts its weights to a future drand quicknet round; the chain stores the
//! ciphertext (`commit_timelocked_weights`) and, once the `Drand` pallet has that round's
//! signature, decrypts it itself and applies the weights. The scheme is the `tle` crate's
//! (`TinyBLS381` + `AESGCMStreamCipherProvider`):
//!
//! - identity = `sha256(round.to_be_bytes())`, hashed to G1 (quicknet's signing message);
//! - a random 32-byte AES-256-GCM key is IBE-encrypted to that identity ([`ibe`]);
//! - the payload is AES-GCM encrypted under the key with a random 12-byte nonce;
//! - everything is written in arkworks' compressed serialization ([`wire`]).
//!
//! Only the glue lives here; curve arithmetic, pairing and hash-to-curve are arkworks'
//! (`ark-bls12-381`, `ark-ec`), AES-GCM is RustCrypto's `aes-gcm`.

mod beacon;
pub mod ibe;
mod payload;
mod reveal_round;
pub mod wire;

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::{CryptoRng, RngCore};

pub use beacon::{
    Beacon, BeaconKey, PUBLIC_KEY_LEN, QUICKNET_GENESIS, QUICKNET_PERIOD, QUICKNET_PUBLIC_KEY,
    SIGNATURE_LEN, signature_point,
};
pub use ibe::round_message;
pub use payload::WeightsTlockPayload;
pub use reveal_round::{RevealSchedule, SECURITY_BLOCK_OFFSET};
pub use wire::Ciphertext;

/// The largest commit `commit_timelocked_weights` accepts (`MAX_CRV3_COMMIT_SIZE_BYTES`).
pub const MAX_COMMIT_BYTES: usize = 5000;

/// Why timelock encryption or decryption failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimelockError {
    /// The beacon public key is not a valid compressed G2 point.
    #[error("beacon public key is not a valid G2 point")]
    InvalidPublicKey,
    /// The round signature is not a valid compressed G1 point.
    #[error("round signature is not a valid G1 point")]
    InvalidSignature,
    /// The signature does not open this ciphertext (another round or another beacon).
    #[error("the signature does not decrypt this ciphertext (wrong round or beacon)")]
    WrongSignature,
    /// The ciphertext bytes do not follow the `tle` layout.
    #[error("malformed timelock ciphertext: {0}")]
    Malformed(&'static str),
    /// A cipher suite other than `AES_GCM_`.
    #[error("unsupported timelock cipher suite {0:?}")]
    UnsupportedCipherSuite(String),
    /// AES-GCM authentication failed.
    #[error("AES-GCM authentication failed")]
    Aead,
    /// Hash to curve failed (never for the quicknet parameters).
    #[error("hash to curve: {0}")]
    HashToCurve(String),
    /// Point serialization failed (never for in-memory buffers).
    #[error("serialization: {0}")]
    Serialize(String),
}

/// Encrypt `plaintext` so that it opens with `public_key`'s signature of `round`; returns the
/// compressed ciphertext bytes.
pub fn encrypt<R: RngCore + CryptoRng>(
    public_key: &[u8; PUBLIC_KEY_LEN],
    round: u64,
    plaintext: &[u8],
    rng: &mut R,
) -> Result<Vec<u8>, TimelockError> {
    let beacon = Beacon {
        public_key: *public_key,
        genesis_time: 0.0,
        period: 1.0,
    };
    let public_point = beacon.public_point()?;
    let mut key = [0u8; 32];
    let mut sigma = [0u8; 32];
    let mut nonce = [0u8; wire::NONCE_LEN];
    rng.fill_bytes(&mut key);
    rng.fill_bytes(&mut sigma);
    rng.fill_bytes(&mut nonce);
    let header = ibe::encrypt(&public_point, &round_message(round), &key, &sigma)?;
    let aes_ciphertext = Aes256Gcm::new(&key.into())
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .map_err(|_| TimelockError::Aead)?;
    Ciphertext {
        header,
        aes_ciphertext,
        nonce,
    }
    .to_bytes()
}

/// Decrypt compressed ciphertext `bytes` with a round signature (compressed G1, e.g. a drand
/// pulse's `signature`).
pub fn decrypt(bytes: &[u8], signature: &[u8]) -> Result<Vec<u8>, TimelockError> {
    let ciphertext = Ciphertext::from_bytes(bytes)?;
    let signature = signature_point(signature)?;
    let key = ibe::decrypt(&ciphertext.header, &signature)?;
    Aes256Gcm::new(&key.into())
        .decrypt(
            Nonce::from_slice(&ciphertext.nonce),
            ciphertext.aes_ciphertext.as_slice(),
        )
        .map_err(|_| TimelockError::Aead)
}
