//! The byte layout of a `tle` ciphertext (`TLECiphertext<TinyBLS381>`, arkworks
//! `serialize_compressed`), which is what `commit_timelocked_weights` carries and what
//! subtensor deserializes before decrypting:
//!
//! ```text
//! header.u       G2 point, compressed (96 bytes, zcash flag bits)
//! header.v       u64 LE length (32) ‖ 32 bytes
//! header.w       u64 LE length (32) ‖ 32 bytes
//! body           u64 LE length ‖ AES-GCM output:
//!                    ciphertext: u64 LE length ‖ ciphertext ‖ 16-byte tag
//!                    nonce:      u64 LE length (12) ‖ 12 bytes
//! cipher_suite   u64 LE length (8) ‖ "AES_GCM_"
//! ```
//!
//! Parsing is strict (exact lengths, no trailing bytes) and never trusts a length prefix
//! beyond the bytes present.

use ark_bls12_381::G2Affine;
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};

use super::TimelockError;
use super::ibe::IbeHeader;

/// The only stream cipher suite subtensor's decryption accepts.
pub const CIPHER_SUITE: &[u8] = b"AES_GCM_";
/// AES-GCM nonce length.
pub const NONCE_LEN: usize = 12;
/// Compressed G2 point length.
const G2_COMPRESSED: usize = 96;

/// A parsed timelock ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ciphertext {
    /// IBE-encrypted stream-cipher key.
    pub header: IbeHeader,
    /// AES-256-GCM ciphertext with its tag appended.
    pub aes_ciphertext: Vec<u8>,
    /// AES-GCM nonce.
    pub nonce: [u8; NONCE_LEN],
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

impl Ciphertext {
    /// Compressed serialization, byte-compatible with `tle`.
    pub fn to_bytes(&self) -> Result<Vec<u8>, TimelockError> {
        let mut out = Vec::with_capacity(256 + self.aes_ciphertext.len());
        self.header
            .u
            .serialize_compressed(&mut out)
            .map_err(|e| TimelockError::Serialize(e.to_string()))?;
        put_bytes(&mut out, &self.header.v);
        put_bytes(&mut out, &self.header.w);
        let mut body = Vec::with_capacity(32 + self.aes_ciphertext.len());
        put_bytes(&mut body, &self.aes_ciphertext);
        put_bytes(&mut body, &self.nonce);
        put_bytes(&mut out, &body);
        put_bytes(&mut out, CIPHER_SUITE);
        Ok(out)
    }

    /// Parse (and validate: `U` must be a G2 point of the prime-order subgroup).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TimelockError> {
        let mut reader = Reader(bytes);
        let u_bytes = reader.take(G2_COMPRESSED, "header point")?;
        let u = G2Affine::deserialize_compressed(u_bytes)
            .map_err(|_| TimelockError::Malformed("header point is not a G2 point"))?;
        let v = reader.fixed::<32>("header v")?;
        let w = reader.fixed::<32>("header w")?;
        let body = reader.prefixed("body")?;
        let suite = reader.prefixed("cipher suite")?;
        reader.finish()?;
        if suite != CIPHER_SUITE {
            return Err(TimelockError::UnsupportedCipherSuite(
                String::from_utf8_lossy(suite).into_owned(),
            ));
        }
        let mut body = Reader(body);
        let aes_ciphertext = body.prefixed("AES ciphertext")?.to_vec();
        let nonce = body.fixed::<NONCE_LEN>("AES nonce")?;
        body.finish()?;
        Ok(Self {
            header: IbeHeader { u, v, w },
            aes_ciphertext,
            nonce,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], TimelockError> {
        if self.0.len() < n {
            return Err(TimelockError::Malformed(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn length(&mut self, what: &'static str) -> Result<usize, TimelockError> {
        let raw = self.take(8, what)?;
        let mut le = [0u8; 8];
        le.copy_from_slice(raw);
        usize::try_from(u64::from_le_bytes(le)).map_err(|_| TimelockError::Malformed(what))
    }

    fn prefixed(&mut self, what: &'static str) -> Result<&'a [u8], TimelockError> {
        let n = self.length(what)?;
        self.take(n, what)
    }

    fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], TimelockError> {
        let bytes = self.prefixed(what)?;
        bytes.try_into().map_err(|_| TimelockError::Malformed(what))
    }

    fn finish(&self) -> Result<(), TimelockError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(TimelockError::Malformed("trailing bytes"))
        }
    }
}
