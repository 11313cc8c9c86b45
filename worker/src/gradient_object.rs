//! The signed object a miner uploads per window: a SparseLoCo payload, the digest of the
//! samples it trained on, and an sr25519 signature by the miner's hotkey.
//!
//! Layout (all integers little-endian):
//! `"TPLG" | version u8 (=2) | run manifest SHA-256 [32] | window u64 | uid u16 |
//! sample digest [32] | payload length u32 | payload | signer public key [32] | signature [64]`.
//! The signature covers `"templar/gradient/v2" | manifest | window | uid | digest |
//! SHA-256(payload)`, so neither the payload, the run nor the claimed origin can be swapped
//! without the hotkey. An object made under another run manifest is refused as such before
//! its payload is decoded (its shapes and compression may differ).

use run_manifest::ManifestHash;
use sha2::{Digest, Sha256};
use thiserror::Error;

const MAGIC: &[u8; 4] = b"TPLG";
const VERSION: u8 = 2;
const DOMAIN: &[u8] = b"templar/gradient/v2";
const HEADER_LEN: usize = 4 + 1 + 32 + 8 + 2 + 32 + 4;
const TRAILER_LEN: usize = 32 + 64;

/// Largest valid gradient object of a run whose parameters are `specs`: the envelope plus
/// the largest canonical SparseLoCo payload (`worker_sparseloco::max_encoded_len`). Fetches
/// refuse anything larger before reading its body.
pub fn max_object_len(
    specs: &[worker_sparseloco::ParamSpec],
    config: &worker_sparseloco::SparseLocoConfig,
) -> Result<u64, worker_sparseloco::SparseLocoError> {
    let payload = worker_sparseloco::max_encoded_len(specs, config)?;
    Ok((HEADER_LEN + payload + TRAILER_LEN) as u64)
}

/// Why an uploaded object was refused before its payload was even decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ObjectError {
    #[error("object is {0} bytes, too short for a gradient object")]
    Truncated(usize),
    #[error("bad magic (not a gradient object)")]
    Magic,
    #[error("unsupported gradient object version {0}")]
    Version(u8),
    #[error("payload length {declared} does not match the {actual} bytes present")]
    Length { declared: usize, actual: usize },
    #[error("payload of {0} bytes exceeds the {1}-byte limit")]
    TooLarge(usize, usize),
    #[error(
        "object claims window {window} uid {uid}, expected window {expected_window} uid {expected_uid}"
    )]
    WrongOrigin {
        window: u64,
        uid: u16,
        expected_window: u64,
        expected_uid: u16,
    },
    #[error("made under run manifest {theirs}, this run is {ours}")]
    ForeignManifest {
        theirs: ManifestHash,
        ours: ManifestHash,
    },
    #[error("signed by a key other than the uid's hotkey")]
    WrongSigner,
    #[error("signature does not verify")]
    BadSignature,
}

/// Something that signs with a hotkey.
pub trait Signer {
    /// The sr25519 public key (account id).
    fn public_key(&self) -> [u8; 32];
    /// Signs `message`.
    fn sign(&self, message: &[u8]) -> [u8; 64];
}

/// A parsed (not yet verified) gradient object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GradientObject {
    pub manifest: ManifestHash,
    pub window: u64,
    pub uid: u16,
    pub sample_digest: [u8; 32],
    pub payload: Vec<u8>,
    pub signer: [u8; 32],
    pub signature: [u8; 64],
}

fn signing_message(
    manifest: &ManifestHash,
    window: u64,
    uid: u16,
    digest: &[u8; 32],
    payload: &[u8],
) -> Vec<u8> {
    let mut message = Vec::with_capacity(DOMAIN.len() + 32 + 8 + 2 + 32 + 32);
    message.extend_from_slice(DOMAIN);
    message.extend_from_slice(&manifest.0);
    message.extend_from_slice(&window.to_le_bytes());
    message.extend_from_slice(&uid.to_le_bytes());
    message.extend_from_slice(digest);
    message.extend_from_slice(&Sha256::digest(payload));
    message
}

/// Builds and signs the object bytes.
pub fn seal(
    manifest: ManifestHash,
    window: u64,
    uid: u16,
    sample_digest: [u8; 32],
    payload: &[u8],
    signer: &dyn Signer,
) -> Vec<u8> {
    let signature = signer.sign(&signing_message(
        &manifest,
        window,
        uid,
        &sample_digest,
        payload,
    ));
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TRAILER_LEN);
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&manifest.0);
    out.extend_from_slice(&window.to_le_bytes());
    out.extend_from_slice(&uid.to_le_bytes());
    out.extend_from_slice(&sample_digest);
    // Payloads are bounded by the caller's size limit, far below 4 GiB.
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&signer.public_key());
    out.extend_from_slice(&signature);
    out
}

fn array<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], ObjectError> {
    bytes
        .get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(ObjectError::Truncated(bytes.len()))
}

impl GradientObject {
    /// Parses untrusted bytes; the payload is bounded by `max_payload`.
    pub fn parse(bytes: &[u8], max_payload: usize) -> Result<Self, ObjectError> {
        if bytes.len() < HEADER_LEN + TRAILER_LEN {
            return Err(ObjectError::Truncated(bytes.len()));
        }
        if &array::<4>(bytes, 0)? != MAGIC {
            return Err(ObjectError::Magic);
        }
        let version = bytes[4];
        if version != VERSION {
            return Err(ObjectError::Version(version));
        }
        let manifest = ManifestHash(array::<32>(bytes, 5)?);
        let window = u64::from_le_bytes(array(bytes, 37)?);
        let uid = u16::from_le_bytes(array(bytes, 45)?);
        let sample_digest = array::<32>(bytes, 47)?;
        let declared = u32::from_le_bytes(array(bytes, 79)?) as usize;
        if declared > max_payload {
            return Err(ObjectError::TooLarge(declared, max_payload));
        }
        let actual = bytes.len() - HEADER_LEN - TRAILER_LEN;
        if declared != actual {
            return Err(ObjectError::Length { declared, actual });
        }
        let payload = bytes[HEADER_LEN..HEADER_LEN + declared].to_vec();
        let signer = array::<32>(bytes, HEADER_LEN + declared)?;
        let signature = array::<64>(bytes, HEADER_LEN + declared + 32)?;
        Ok(Self {
            manifest,
            window,
            uid,
            sample_digest,
            payload,
            signer,
            signature,
        })
    }

    /// Checks run manifest, origin, signer and signature. `verify` is the sr25519 verifier.
    pub fn verify(
        &self,
        expected_manifest: &ManifestHash,
        expected_window: u64,
        expected_uid: u16,
        expected_hotkey: &[u8; 32],
        verify: impl Fn(&[u8; 32], &[u8], &[u8; 64]) -> bool,
    ) -> Result<(), ObjectError> {
        if &self.manifest != expected_manifest {
            return Err(ObjectError::ForeignManifest {
                theirs: self.manifest,
                ours: *expected_manifest,
            });
        }
        if self.window != expected_window || self.uid != expected_uid {
            return Err(ObjectError::WrongOrigin {
                window: self.window,
                uid: self.uid,
                expected_window,
                expected_uid,
            });
        }
        if &self.signer != expected_hotkey {
            return Err(ObjectError::WrongSigner);
        }
        let message = signing_message(
            &self.manifest,
            self.window,
            self.uid,
            &self.sample_digest,
            &self.payload,
        );
        if verify(&self.signer, &message, &self.signature) {
            Ok(())
        } else {
            Err(ObjectError::BadSignature)
        }
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use crate::miner::Miner;
    use crate::settings::TrainingSettings;

    /// A real sealed object of the tiny model fits the exact limit, which is a small
    /// fraction of the old flat 1 GiB cap.
    #[test]
    fn a_real_object_fits_the_exact_limit() {
        let run = run_manifest::verify(
            run_manifest::RunManifest::reference("limit", "tiny"),
            "test",
            None,
        )
        .unwrap();
        let settings = TrainingSettings::from_manifest(&run);
        let mut miner = Miner::new(3, &settings, tch::Device::Cpu).unwrap();
        let limit = max_object_len(miner.replica.specs(), &settings.sparseloco()).unwrap();
        let signer = worker_chain::Keypair::from_dev_name("miner");
        let zero = miner.zero_update().unwrap();
        let digest = worker_model::SampleDigest([0; 32]);
        let upload = miner
            .compress_and_seal(0, &zero, digest, &signer, f64::NAN)
            .unwrap();
        assert!(
            upload.object.len() as u64 <= limit,
            "{} > {limit}",
            upload.object.len()
        );
        assert!(limit < (1 << 30) / 100, "limit {limit}");
    }
}
