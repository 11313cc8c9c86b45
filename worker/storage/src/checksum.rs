//! SHA-256 of object bodies, stored with each object and verified on every read.

use sha2::{Digest, Sha256};

use crate::error::StorageError;

/// The S3 user-metadata key holding the body's SHA-256 (sent as `x-amz-meta-sha256`).
pub const SHA256_METADATA_KEY: &str = "sha256";

/// Lower-case hex SHA-256 of `body`.
pub fn sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// SHA-256 of a file, read in 1 MiB pieces (never the whole file in memory).
pub fn file_sha256(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buffer[..n]);
    }
}

/// Checks `body` against the stored hex digest; a missing digest is a mismatch too, so objects
/// written by something other than this crate are never trusted.
pub(crate) fn verify(key: &str, expected: Option<&str>, body: &[u8]) -> Result<(), StorageError> {
    let actual = sha256_hex(body);
    match expected {
        Some(stored) if stored.trim().eq_ignore_ascii_case(&actual) => Ok(()),
        _ => Err(StorageError::Checksum {
            key: key.to_owned(),
            expected: expected.map(str::to_owned),
            actual,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn verify_accepts_matching_and_rejects_missing_or_wrong() {
        let digest = sha256_hex(b"payload");
        assert!(verify("k", Some(&digest), b"payload").is_ok());
        assert!(verify("k", Some(&digest.to_uppercase()), b"payload").is_ok());
        assert!(matches!(
            verify("k", Some(&digest), b"payloaD"),
            Err(StorageError::Checksum {
                expected: Some(_),
                ..
            })
        ));
        assert!(matches!(
            verify("k", None, b"payload"),
            Err(StorageError::Checksum { expected: None, .. })
        ));
    }
}
