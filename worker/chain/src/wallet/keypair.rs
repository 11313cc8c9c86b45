//! sr25519 key pairs: load from mnemonic / seed / private key, sign and verify.
//!
//! Substrate conventions: a BIP-39 phrase gives the 32-byte "mini secret" as the first half of
//! `PBKDF2-HMAC-SHA512(entropy, "mnemonic" ++ password, 2048)`; the mini secret is expanded in
//! ed25519 mode; signatures use the signing context `b"substrate"`.

use std::fmt;

use schnorrkel::{ExpansionMode, MiniSecretKey, SecretKey, signing_context};
use zeroize::Zeroize;

use crate::account::AccountId;

const SIGNING_CONTEXT: &[u8] = b"substrate";
const MNEMONIC_PBKDF2_ROUNDS: u32 = 2048;

/// Why a key could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The phrase is not a valid BIP-39 English mnemonic.
    #[error("invalid mnemonic: {0}")]
    Mnemonic(String),
    /// The secret bytes are not a valid sr25519 secret.
    #[error("invalid secret key: {0}")]
    Secret(String),
}

/// An sr25519 key pair (hotkey or coldkey). `Debug` shows only the public address.
#[derive(Clone)]
pub struct Keypair {
    inner: schnorrkel::Keypair,
}

impl Keypair {
    /// From a BIP-39 phrase (and optional BIP-39 password), as `btcli`/polkadot-js derive it.
    pub fn from_phrase(phrase: &str, password: Option<&str>) -> Result<Self, KeyError> {
        let mnemonic = subxt_signer::bip39::Mnemonic::parse_normalized(phrase)
            .map_err(|e| KeyError::Mnemonic(e.to_string()))?;
        let (entropy, len) = mnemonic.to_entropy_array();
        let mut salt = format!("mnemonic{}", password.unwrap_or(""));
        let mut seed = [0u8; 64];
        pbkdf2::pbkdf2_hmac::<sha2::Sha512>(
            &entropy[..len],
            salt.as_bytes(),
            MNEMONIC_PBKDF2_ROUNDS,
            &mut seed,
        );
        salt.zeroize();
        let mut mini = [0u8; 32];
        mini.copy_from_slice(&seed[..32]);
        seed.zeroize();
        let pair = Self::from_seed(&mini);
        mini.zeroize();
        pair
    }

    /// From a 32-byte mini secret (the `secretSeed` of a bittensor keyfile).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        let mini = MiniSecretKey::from_bytes(seed).map_err(|e| KeyError::Secret(e.to_string()))?;
        Ok(Self {
            inner: mini.expand_to_keypair(ExpansionMode::Ed25519),
        })
    }

    /// From a 64-byte expanded secret key (the `privateKey` of a bittensor keyfile: schnorrkel's
    /// canonical 32-byte scalar ++ 32-byte nonce, as `sp_core` stores it).
    pub fn from_private_key(bytes: &[u8; 64]) -> Result<Self, KeyError> {
        let secret = SecretKey::from_bytes(bytes).map_err(|e| KeyError::Secret(e.to_string()))?;
        Ok(Self {
            inner: secret.to_keypair(),
        })
    }

    /// A fresh random key pair (OS randomness).
    pub fn generate() -> Self {
        let mut seed: [u8; 32] = rand::random();
        let pair = Self::from_seed(&seed);
        seed.zeroize();
        // A 32-byte mini secret is always valid.
        match pair {
            Ok(pair) => pair,
            Err(_) => unreachable!("every 32-byte mini secret is valid"),
        }
    }

    /// Deterministic dev/test key derived from a name: mini secret = blake2-256(name).
    /// Never use for real funds.
    pub fn from_dev_name(name: &str) -> Self {
        let seed = sp_crypto_hashing::blake2_256(name.as_bytes());
        match Self::from_seed(&seed) {
            Ok(pair) => pair,
            Err(_) => unreachable!("every 32-byte mini secret is valid"),
        }
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.inner.public.to_bytes()
    }

    /// The account id (public key) of this pair.
    pub fn account_id(&self) -> AccountId {
        AccountId(self.public_key())
    }

    /// SS58 address (prefix 42).
    pub fn ss58_address(&self) -> String {
        self.account_id().to_ss58()
    }

    /// Sign a message (sr25519, Substrate signing context). Signatures are randomised, so two
    /// signatures of the same message differ but both verify.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.inner
            .sign(signing_context(SIGNING_CONTEXT).bytes(message))
            .to_bytes()
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keypair")
            .field("public", &self.ss58_address())
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Verify an sr25519 signature made by [`Keypair::sign`] (or any Substrate sr25519 signer).
pub fn verify(public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(public) = schnorrkel::PublicKey::from_bytes(public) else {
        return false;
    };
    let Ok(signature) = schnorrkel::Signature::from_bytes(signature) else {
        return false;
    };
    public
        .verify_simple(SIGNING_CONTEXT, message, &signature)
        .is_ok()
}

/// subxt signs transactions with our key pairs.
impl<T> subxt::tx::Signer<T> for Keypair
where
    T: subxt::Config<
            AccountId = subxt::utils::AccountId32,
            Signature = subxt::utils::MultiSignature,
        >,
{
    fn account_id(&self) -> T::AccountId {
        subxt::utils::AccountId32(self.public_key())
    }

    fn sign(&self, signer_payload: &[u8]) -> T::Signature {
        subxt::utils::MultiSignature::Sr25519(Keypair::sign(self, signer_payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vectors from the bittensor-wallet 4.1.1 PyPI package (`Keypair.create_from_mnemonic`),
    // see tests/wallet_files.rs for the end-to-end check against files it writes.
    const PHRASE: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    const PUBLIC: &str = "66933bd1f37070ef87bd1198af3dacceb095237f803f3d32b173e6b425ed7972";
    const SEED: &str = "4ed8d4b17698ddeaa1f1559f152f87b5d472f725ca86d341bd0276f1b61197e2";
    const PRIVATE: &str = "2ec306fc1c5bc2f0e3a2c7a6ec6014ca4a0823a7d7d42ad5e9d7f376a1c36c0d14a2ddb1ef1df4adba49f3a4d8c0f6205117907265f09a53ccf07a4e8616dfd8";

    #[test]
    fn phrase_seed_and_private_key_give_the_same_public_key() {
        let from_phrase = Keypair::from_phrase(PHRASE, None).unwrap();
        assert_eq!(hex::encode(from_phrase.public_key()), PUBLIC);
        let seed: [u8; 32] = hex::decode(SEED).unwrap().try_into().unwrap();
        assert_eq!(
            hex::encode(Keypair::from_seed(&seed).unwrap().public_key()),
            PUBLIC
        );
        let private: [u8; 64] = hex::decode(PRIVATE).unwrap().try_into().unwrap();
        assert_eq!(
            hex::encode(Keypair::from_private_key(&private).unwrap().public_key()),
            PUBLIC
        );
    }

    #[test]
    fn signature_verifies_and_rejects_tampering() {
        let pair = Keypair::from_dev_name("validator");
        let message = b"gradient object digest";
        let sig = pair.sign(message);
        assert!(verify(&pair.public_key(), message, &sig));
        assert!(!verify(&pair.public_key(), b"another message", &sig));
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(!verify(&pair.public_key(), message, &bad));
        let other = Keypair::from_dev_name("miner");
        assert!(!verify(&other.public_key(), message, &sig));
    }

    #[test]
    fn verifies_signature_made_by_bittensor_wallet() {
        // `Wallet.hotkey.sign(b"hello")` from bittensor-wallet 4.1.1 with the key above.
        let sig: [u8; 64] = hex::decode("7414628ce01952bf6238e45c97599e8fbc62988a0974296c7a6233ea30956e1cac774cbc124318cb67b36e808b4dca62198e86ae1872c03331dba4f1f98dff81").unwrap().try_into().unwrap();
        let public: [u8; 32] = hex::decode(PUBLIC).unwrap().try_into().unwrap();
        assert!(verify(&public, b"hello", &sig));
        assert!(!verify(&public, b"hellp", &sig));
    }

    #[test]
    fn debug_does_not_leak_secret() {
        let pair = Keypair::from_phrase(PHRASE, None).unwrap();
        let shown = format!("{pair:?}");
        assert!(shown.contains(&pair.ss58_address()));
        assert!(!shown.contains(&PRIVATE[..16]));
        assert!(!shown.contains(&SEED[..16]));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn bad_mnemonic_is_rejected() {
        assert!(matches!(
            Keypair::from_phrase("abandon abandon", None),
            Err(KeyError::Mnemonic(_))
        ));
    }
}
