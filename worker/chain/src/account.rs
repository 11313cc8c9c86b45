//! 32-byte account ids (sr25519 public keys) and their SS58 text form.
//!
//! SS58 = base58(prefix ++ public key ++ checksum) where the checksum is the first two bytes
//! of `blake2b-512("SS58PRE" ++ prefix ++ public key)`. Bittensor uses prefix 42 (the generic
//! Substrate prefix), which gives addresses starting with `5`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sp_crypto_hashing::blake2_512;

/// The SS58 address prefix used by bittensor (generic Substrate).
pub const BITTENSOR_SS58_PREFIX: u16 = 42;

const CHECKSUM_PREAMBLE: &[u8] = b"SS58PRE";
const CHECKSUM_LEN: usize = 2;

/// A 32-byte account id: the public key of an sr25519 hotkey or coldkey.
///
/// `Display`/`FromStr`/serde use the SS58 form with prefix 42.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AccountId(pub [u8; 32]);

/// Why an SS58 address could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ss58Error {
    /// Not valid base58.
    #[error("invalid base58: {0}")]
    Base58(String),
    /// Decoded to a length that is not an (1 or 2 byte prefix) + 32 byte key + 2 byte checksum.
    #[error("invalid SS58 length {0} (expected 35 or 36 bytes)")]
    Length(usize),
    /// The prefix byte(s) are not a valid SS58 prefix encoding.
    #[error("invalid SS58 prefix encoding")]
    Prefix,
    /// The checksum does not match.
    #[error("SS58 checksum mismatch")]
    Checksum,
    /// The address is valid but for a different network prefix.
    #[error("SS58 prefix {found} where {expected} was expected")]
    WrongPrefix {
        /// Prefix the address carries.
        found: u16,
        /// Prefix the caller asked for.
        expected: u16,
    },
}

impl AccountId {
    /// The raw public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// SS58 address with the bittensor prefix (42).
    pub fn to_ss58(&self) -> String {
        ss58_encode(&self.0, BITTENSOR_SS58_PREFIX)
    }

    /// Parse an SS58 address that must carry the bittensor prefix (42).
    pub fn from_ss58(address: &str) -> Result<Self, Ss58Error> {
        let (prefix, key) = ss58_decode(address)?;
        if prefix != BITTENSOR_SS58_PREFIX {
            return Err(Ss58Error::WrongPrefix {
                found: prefix,
                expected: BITTENSOR_SS58_PREFIX,
            });
        }
        Ok(Self(key))
    }
}

impl From<[u8; 32]> for AccountId {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_ss58())
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({})", self.to_ss58())
    }
}

impl FromStr for AccountId {
    type Err = Ss58Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_ss58(s)
    }
}

impl Serialize for AccountId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_ss58())
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_ss58(&text).map_err(serde::de::Error::custom)
    }
}

/// Encode the SS58 prefix: one byte below 64, otherwise the two-byte form.
fn prefix_bytes(prefix: u16) -> Vec<u8> {
    if prefix < 64 {
        vec![prefix as u8]
    } else {
        let first = ((prefix & 0b0000_0000_1111_1100) >> 2) as u8 | 0b0100_0000;
        let second = ((prefix >> 8) as u8) | (((prefix & 0b11) as u8) << 6);
        vec![first, second]
    }
}

fn checksum(payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut preimage = Vec::with_capacity(CHECKSUM_PREAMBLE.len() + payload.len());
    preimage.extend_from_slice(CHECKSUM_PREAMBLE);
    preimage.extend_from_slice(payload);
    let hash = blake2_512(&preimage);
    [hash[0], hash[1]]
}

/// SS58-encode a 32-byte public key with the given network prefix (0..16384).
pub fn ss58_encode(public_key: &[u8; 32], prefix: u16) -> String {
    let mut payload = prefix_bytes(prefix & 0x3fff);
    payload.extend_from_slice(public_key);
    let sum = checksum(&payload);
    payload.extend_from_slice(&sum);
    bs58::encode(payload).into_string()
}

/// Decode an SS58 address into its network prefix and 32-byte public key.
pub fn ss58_decode(address: &str) -> Result<(u16, [u8; 32]), Ss58Error> {
    let data = bs58::decode(address)
        .into_vec()
        .map_err(|e| Ss58Error::Base58(e.to_string()))?;
    let (prefix, prefix_len) = match data.first() {
        Some(&b) if b < 64 => (u16::from(b), 1),
        Some(&b) if b < 128 => {
            let second = *data.get(1).ok_or(Ss58Error::Length(data.len()))?;
            let lower = (u16::from(b) << 2) | (u16::from(second) >> 6);
            let upper = u16::from(second & 0b0011_1111);
            ((lower & 0xff) | (upper << 8), 2)
        }
        Some(_) => return Err(Ss58Error::Prefix),
        None => return Err(Ss58Error::Length(0)),
    };
    if data.len() != prefix_len + 32 + CHECKSUM_LEN {
        return Err(Ss58Error::Length(data.len()));
    }
    let body_end = prefix_len + 32;
    let expected = checksum(&data[..body_end]);
    if data[body_end..] != expected {
        return Err(Ss58Error::Checksum);
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(&data[prefix_len..body_end]);
    Ok((prefix, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Alice's well-known dev key and address (prefix 42), as published in Substrate docs.
    const ALICE_HEX: &str = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d";
    const ALICE_SS58: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

    fn alice() -> [u8; 32] {
        hex::decode(ALICE_HEX).unwrap().try_into().unwrap()
    }

    #[test]
    fn encodes_known_address() {
        assert_eq!(ss58_encode(&alice(), 42), ALICE_SS58);
        assert_eq!(AccountId(alice()).to_string(), ALICE_SS58);
    }

    #[test]
    fn decodes_known_address() {
        assert_eq!(ss58_decode(ALICE_SS58).unwrap(), (42, alice()));
        assert_eq!(ALICE_SS58.parse::<AccountId>().unwrap(), AccountId(alice()));
    }

    #[test]
    fn rejects_corrupted_checksum() {
        let mut chars: Vec<char> = ALICE_SS58.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'Y' { 'Z' } else { 'Y' };
        let corrupted: String = chars.into_iter().collect();
        assert!(ss58_decode(&corrupted).is_err());
    }

    #[test]
    fn rejects_other_prefix_for_bittensor() {
        // Polkadot (prefix 0) address of the same key.
        let polkadot = ss58_encode(&alice(), 0);
        assert_eq!(polkadot, "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5");
        assert_eq!(
            AccountId::from_ss58(&polkadot),
            Err(Ss58Error::WrongPrefix {
                found: 0,
                expected: 42
            })
        );
    }

    #[test]
    fn two_byte_prefix_round_trips() {
        for prefix in [64u16, 255, 1284, 16383] {
            let address = ss58_encode(&alice(), prefix);
            assert_eq!(ss58_decode(&address).unwrap(), (prefix, alice()));
        }
    }

    #[test]
    fn serde_uses_ss58_text() {
        let json = serde_json::to_string(&AccountId(alice())).unwrap();
        assert_eq!(json, format!("\"{ALICE_SS58}\""));
        let back: AccountId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, AccountId(alice()));
    }
}
