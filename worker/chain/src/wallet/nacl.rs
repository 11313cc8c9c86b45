//! `$NACL` keyfile encryption, byte-compatible with bittensor-wallet.
//!
//! Layout: `b"$NACL"` ++ 24-byte nonce ++ `crypto_secretbox` (XSalsa20-Poly1305, 16-byte tag
//! first) of the JSON keyfile. The key is libsodium `crypto_pwhash_argon2i` with
//! `OPSLIMIT_SENSITIVE` (8 passes) and `MEMLIMIT_SENSITIVE` (512 MiB), one lane, over the
//! password and bittensor's fixed 16-byte salt (`NACL_SALT` in bittensor-wallet).

use argon2::{Algorithm, Argon2, Params, Version};
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Key, Nonce, XSalsa20Poly1305};
use zeroize::Zeroizing;

/// File prefix marking a NaCl-encrypted keyfile.
pub const NACL_PREFIX: &[u8] = b"$NACL";
/// bittensor-wallet's constant Argon2 salt.
pub const NACL_SALT: [u8; 16] = *b"\x13q\x83\xdf\xf1Z\t\xbc\x9c\x90\xb5Q\x879\xe9\xb1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Argon2i cost parameters for the keyfile key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub passes: u32,
}

impl KdfParams {
    /// libsodium `crypto_pwhash_argon2i_{OPS,MEM}LIMIT_SENSITIVE`, what bittensor-wallet uses.
    pub const BITTENSOR: KdfParams = KdfParams {
        memory_kib: 512 * 1024,
        passes: 8,
    };
}

/// Why a keyfile could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NaclError {
    /// Data does not start with `$NACL`.
    #[error("not a $NACL-encrypted keyfile")]
    NotNacl,
    /// Data too short to hold a nonce and a tag.
    #[error("encrypted keyfile is truncated ({0} bytes)")]
    Truncated(usize),
    /// Authentication failed: wrong password or corrupted file.
    #[error("wrong password or corrupted keyfile")]
    WrongPassword,
    /// The key derivation failed (bad parameters, out of memory).
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

fn derive_key(password: &[u8], params: KdfParams) -> Result<Zeroizing<[u8; 32]>, NaclError> {
    let argon_params = Params::new(params.memory_kib, params.passes, 1, Some(32))
        .map_err(|e| NaclError::Kdf(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2i, Version::V0x13, argon_params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password, &NACL_SALT, key.as_mut())
        .map_err(|e| NaclError::Kdf(e.to_string()))?;
    Ok(key)
}

/// True when the data is a `$NACL` encrypted keyfile.
pub fn is_nacl_encrypted(data: &[u8]) -> bool {
    data.starts_with(NACL_PREFIX)
}

/// Decrypt a `$NACL` keyfile with bittensor's KDF parameters.
pub fn decrypt(data: &[u8], password: &[u8]) -> Result<Zeroizing<Vec<u8>>, NaclError> {
    decrypt_with_params(data, password, KdfParams::BITTENSOR)
}

/// Decrypt with explicit KDF parameters (tests use cheap ones).
pub fn decrypt_with_params(
    data: &[u8],
    password: &[u8],
    params: KdfParams,
) -> Result<Zeroizing<Vec<u8>>, NaclError> {
    let body = data.strip_prefix(NACL_PREFIX).ok_or(NaclError::NotNacl)?;
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(NaclError::Truncated(data.len()));
    }
    let (nonce, ciphertext) = body.split_at(NONCE_LEN);
    let key = derive_key(password, params)?;
    let cipher = XSalsa20Poly1305::new(Key::from_slice(key.as_ref()));
    cipher
        .decrypt(Nonce::from_slice(nonce), ciphertext)
        .map(Zeroizing::new)
        .map_err(|_| NaclError::WrongPassword)
}

/// Encrypt keyfile data the way bittensor-wallet does (random nonce, bittensor KDF).
pub fn encrypt(plaintext: &[u8], password: &[u8]) -> Result<Vec<u8>, NaclError> {
    encrypt_with_params(plaintext, password, KdfParams::BITTENSOR)
}

/// Encrypt with explicit KDF parameters.
pub fn encrypt_with_params(
    plaintext: &[u8],
    password: &[u8],
    params: KdfParams,
) -> Result<Vec<u8>, NaclError> {
    let key = derive_key(password, params)?;
    let cipher = XSalsa20Poly1305::new(Key::from_slice(key.as_ref()));
    let nonce: [u8; NONCE_LEN] = rand::random();
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .map_err(|e| NaclError::Kdf(e.to_string()))?;
    let mut out = Vec::with_capacity(NACL_PREFIX.len() + NONCE_LEN + sealed.len());
    out.extend_from_slice(NACL_PREFIX);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfParams = KdfParams {
        memory_kib: 64,
        passes: 3,
    };

    #[test]
    fn round_trip_and_wrong_password() {
        let sealed = encrypt_with_params(b"{\"secretPhrase\":\"x\"}", b"pw", CHEAP).unwrap();
        assert!(is_nacl_encrypted(&sealed));
        assert_eq!(sealed.len(), 5 + 24 + 16 + 20);
        let opened = decrypt_with_params(&sealed, b"pw", CHEAP).unwrap();
        assert_eq!(opened.as_slice(), b"{\"secretPhrase\":\"x\"}");
        assert_eq!(
            decrypt_with_params(&sealed, b"pX", CHEAP),
            Err(NaclError::WrongPassword)
        );
        let mut corrupted = sealed.clone();
        let last = corrupted.len() - 1;
        corrupted[last] ^= 1;
        assert_eq!(
            decrypt_with_params(&corrupted, b"pw", CHEAP),
            Err(NaclError::WrongPassword)
        );
    }

    #[test]
    fn rejects_non_nacl_and_truncated() {
        assert_eq!(
            decrypt_with_params(b"{}", b"pw", CHEAP),
            Err(NaclError::NotNacl)
        );
        assert_eq!(
            decrypt_with_params(b"$NACLshort", b"pw", CHEAP),
            Err(NaclError::Truncated(10))
        );
    }

    #[test]
    fn salt_matches_bittensor_wallet_constant() {
        // b'\x13q\x83\xdf\xf1Z\t\xbc\x9c\x90\xb5Q\x879\xe9\xb1' spelled out byte by byte.
        assert_eq!(
            NACL_SALT,
            [
                0x13, 0x71, 0x83, 0xdf, 0xf1, 0x5a, 0x09, 0xbc, 0x9c, 0x90, 0xb5, 0x51, 0x87, 0x39,
                0xe9, 0xb1
            ]
        );
    }
}
