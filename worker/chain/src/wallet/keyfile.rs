//! The JSON body of a bittensor keyfile and how it turns into a [`Keypair`].

use std::fmt;

use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use super::keypair::{KeyError, Keypair};
use crate::account::AccountId;

/// Fields of a bittensor keyfile (`hotkeys/NAME`, `coldkey`, `coldkeypub.txt`). Every field is
/// optional: public files only carry `publicKey`/`accountId`/`ss58Address`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct KeyfileData {
    /// BIP-39 mnemonic.
    pub secret_phrase: Option<String>,
    /// `0x`-hex 32-byte mini secret.
    pub secret_seed: Option<String>,
    /// `0x`-hex 64-byte expanded secret key.
    pub private_key: Option<String>,
    /// `0x`-hex public key.
    pub public_key: Option<String>,
    /// `0x`-hex account id (same bytes as the public key).
    pub account_id: Option<String>,
    /// SS58 address.
    pub ss58_address: Option<String>,
    /// 1 = sr25519, 0 = ed25519.
    pub crypto_type: Option<u8>,
}

impl Drop for KeyfileData {
    fn drop(&mut self) {
        self.secret_phrase.zeroize();
        self.secret_seed.zeroize();
        self.private_key.zeroize();
    }
}

impl fmt::Debug for KeyfileData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |field: &Option<String>| field.as_ref().map(|_| "<redacted>");
        f.debug_struct("KeyfileData")
            .field("secret_phrase", &redact(&self.secret_phrase))
            .field("secret_seed", &redact(&self.secret_seed))
            .field("private_key", &redact(&self.private_key))
            .field("public_key", &self.public_key)
            .field("ss58_address", &self.ss58_address)
            .field("crypto_type", &self.crypto_type)
            .finish()
    }
}

/// Why a keyfile body could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyfileError {
    /// Not JSON of the expected shape.
    #[error("keyfile is not valid JSON: {0}")]
    Json(String),
    /// An ed25519 key (`cryptoType: 0`); only sr25519 is supported.
    #[error("keyfile holds a crypto type {0} key; only sr25519 (1) is supported")]
    UnsupportedCryptoType(u8),
    /// A hex field is malformed.
    #[error("keyfile field {field} is not valid hex of {bytes} bytes")]
    BadHex {
        /// JSON field name.
        field: &'static str,
        /// Expected length.
        bytes: usize,
    },
    /// The file has no secret material (it is a public key file).
    #[error("keyfile has no secret (secretPhrase, secretSeed or privateKey)")]
    NoSecret,
    /// The file has no public information at all.
    #[error("keyfile has no public key or address")]
    NoPublic,
    /// The secret does not produce the public key stored next to it.
    #[error("keyfile secret derives {derived} but the file says {stored}")]
    PublicKeyMismatch {
        /// Address derived from the secret.
        derived: String,
        /// Address stored in the file.
        stored: String,
    },
    /// The SS58 address is malformed.
    #[error("keyfile address invalid: {0}")]
    Address(String),
    /// The secret material is invalid.
    #[error(transparent)]
    Key(#[from] KeyError),
}

fn parse_hex<const N: usize>(
    field: &'static str,
    text: &str,
) -> Result<Zeroizing<[u8; N]>, KeyfileError> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    let mut out = Zeroizing::new([0u8; N]);
    hex::decode_to_slice(digits, out.as_mut())
        .map_err(|_| KeyfileError::BadHex { field, bytes: N })?;
    Ok(out)
}

impl KeyfileData {
    /// Parse a (decrypted) keyfile body.
    pub fn parse(json: &[u8]) -> Result<Self, KeyfileError> {
        serde_json::from_slice(json).map_err(|e| KeyfileError::Json(e.to_string()))
    }

    fn check_crypto_type(&self) -> Result<(), KeyfileError> {
        match self.crypto_type {
            None | Some(1) => Ok(()),
            Some(other) => Err(KeyfileError::UnsupportedCryptoType(other)),
        }
    }

    /// The public key stored in the file (`publicKey`, `accountId` or `ss58Address`).
    pub fn stored_account(&self) -> Result<Option<AccountId>, KeyfileError> {
        if let Some(hex) = self.public_key.as_deref().or(self.account_id.as_deref()) {
            return Ok(Some(AccountId(*parse_hex::<32>("publicKey", hex)?)));
        }
        match self.ss58_address.as_deref() {
            Some(address) => AccountId::from_ss58(address)
                .map(Some)
                .map_err(|e| KeyfileError::Address(e.to_string())),
            None => Ok(None),
        }
    }

    /// Public key of the file: from the stored fields, or derived from the secret.
    pub fn account(&self) -> Result<AccountId, KeyfileError> {
        self.check_crypto_type()?;
        match self.stored_account()? {
            Some(account) => Ok(account),
            None => Ok(self.keypair()?.account_id()),
        }
    }

    /// Build the key pair, preferring (like bittensor-wallet) the phrase, then the seed, then
    /// the private key, and check it against any public key stored in the file.
    pub fn keypair(&self) -> Result<Keypair, KeyfileError> {
        self.check_crypto_type()?;
        let pair = if let Some(phrase) = &self.secret_phrase {
            Keypair::from_phrase(phrase, None)?
        } else if let Some(seed) = &self.secret_seed {
            Keypair::from_seed(&*parse_hex::<32>("secretSeed", seed)?)?
        } else if let Some(private) = &self.private_key {
            Keypair::from_private_key(&*parse_hex::<64>("privateKey", private)?)?
        } else {
            return Err(KeyfileError::NoSecret);
        };
        if let Some(stored) = self.stored_account()?
            && stored != pair.account_id()
        {
            return Err(KeyfileError::PublicKeyMismatch {
                derived: pair.ss58_address(),
                stored: stored.to_ss58(),
            });
        }
        Ok(pair)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHRASE: &str = "abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon abandon about";
    const ADDRESS: &str = "5EPCUjPxiHAcNooYipQFWr9NmmXJKpNG5RhcntXwbtUySrgH";

    #[test]
    fn phrase_with_matching_address_loads() {
        let json =
            format!(r#"{{"secretPhrase":"{PHRASE}","ss58Address":"{ADDRESS}","cryptoType":1}}"#);
        let data = KeyfileData::parse(json.as_bytes()).unwrap();
        assert_eq!(data.keypair().unwrap().ss58_address(), ADDRESS);
        assert_eq!(data.account().unwrap().to_ss58(), ADDRESS);
    }

    #[test]
    fn mismatched_public_key_is_an_error() {
        let other = crate::wallet::Keypair::from_dev_name("x").ss58_address();
        let json = format!(r#"{{"secretPhrase":"{PHRASE}","ss58Address":"{other}"}}"#);
        let data = KeyfileData::parse(json.as_bytes()).unwrap();
        assert!(matches!(
            data.keypair(),
            Err(KeyfileError::PublicKeyMismatch { .. })
        ));
    }

    #[test]
    fn public_only_file_has_account_but_no_keypair() {
        let json = format!(r#"{{"ss58Address":"{ADDRESS}"}}"#);
        let data = KeyfileData::parse(json.as_bytes()).unwrap();
        assert_eq!(data.account().unwrap().to_ss58(), ADDRESS);
        assert!(matches!(data.keypair(), Err(KeyfileError::NoSecret)));
    }

    #[test]
    fn ed25519_is_refused() {
        let json = format!(r#"{{"secretPhrase":"{PHRASE}","cryptoType":0}}"#);
        let data = KeyfileData::parse(json.as_bytes()).unwrap();
        assert_eq!(
            data.keypair().unwrap_err(),
            KeyfileError::UnsupportedCryptoType(0)
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let json = format!(r#"{{"secretPhrase":"{PHRASE}","secretSeed":"0x11"}}"#);
        let data = KeyfileData::parse(json.as_bytes()).unwrap();
        let shown = format!("{data:?}");
        assert!(!shown.contains("abandon"));
        assert!(!shown.contains("0x11"));
    }
}
