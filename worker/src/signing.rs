//! Hotkey signing of gradient objects with the chain crate's sr25519 keys.

use worker_chain::Keypair;

use crate::gradient_object::Signer;

impl Signer for Keypair {
    fn public_key(&self) -> [u8; 32] {
        Keypair::public_key(self)
    }

    fn sign(&self, message: &[u8]) -> [u8; 64] {
        Keypair::sign(self, message)
    }
}

/// The sr25519 verifier gradient objects are checked with.
pub fn sr25519_verify(public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    worker_chain::verify(public, message, signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradient_object::{GradientObject, ObjectError, seal};
    use run_manifest::ManifestHash;

    const RUN: ManifestHash = ManifestHash([5u8; 32]);

    fn sealed(key: &Keypair) -> Vec<u8> {
        seal(RUN, 7, 3, [9u8; 32], b"payload bytes", key)
    }

    #[test]
    fn sealed_object_verifies_for_its_origin_and_hotkey() {
        let key = Keypair::from_dev_name("miner");
        let bytes = sealed(&key);
        let object = GradientObject::parse(&bytes, 1024).unwrap();
        assert_eq!(object.payload, b"payload bytes");
        assert_eq!(object.sample_digest, [9u8; 32]);
        object
            .verify(&RUN, 7, 3, &key.public_key(), sr25519_verify)
            .unwrap();
    }

    #[test]
    fn tampering_or_another_key_is_refused() {
        let key = Keypair::from_dev_name("miner");
        let other = Keypair::from_dev_name("other");
        let bytes = sealed(&key);
        let object = GradientObject::parse(&bytes, 1024).unwrap();
        assert_eq!(
            object.verify(&RUN, 7, 3, &other.public_key(), sr25519_verify),
            Err(ObjectError::WrongSigner)
        );
        assert!(matches!(
            object.verify(&RUN, 8, 3, &key.public_key(), sr25519_verify),
            Err(ObjectError::WrongOrigin { .. })
        ));
        // Flip one payload byte: the signature no longer covers it.
        let mut tampered = bytes.clone();
        tampered[90] ^= 1;
        let object = GradientObject::parse(&tampered, 1024).unwrap();
        assert_eq!(
            object.verify(&RUN, 7, 3, &key.public_key(), sr25519_verify),
            Err(ObjectError::BadSignature)
        );
        // A copycat re-signing someone else's bytes under its own key is caught by the
        // hotkey check, not the signature.
        let resigned = seal(RUN, 7, 3, [9u8; 32], b"payload bytes", &other);
        let object = GradientObject::parse(&resigned, 1024).unwrap();
        assert_eq!(
            object.verify(&RUN, 7, 3, &key.public_key(), sr25519_verify),
            Err(ObjectError::WrongSigner)
        );
    }

    #[test]
    fn an_object_of_another_run_manifest_is_refused_as_such() {
        let key = Keypair::from_dev_name("miner");
        let other_run = ManifestHash([6u8; 32]);
        let object = GradientObject::parse(&sealed(&key), 1024).unwrap();
        assert_eq!(
            object.verify(&other_run, 7, 3, &key.public_key(), sr25519_verify),
            Err(ObjectError::ForeignManifest {
                theirs: RUN,
                ours: other_run
            })
        );
        // Rewriting the manifest field breaks the signature.
        let mut relabelled = sealed(&key);
        relabelled[5..37].copy_from_slice(&other_run.0);
        let object = GradientObject::parse(&relabelled, 1024).unwrap();
        assert_eq!(
            object.verify(&other_run, 7, 3, &key.public_key(), sr25519_verify),
            Err(ObjectError::BadSignature)
        );
    }

    #[test]
    fn malformed_objects_give_typed_errors() {
        let key = Keypair::from_dev_name("miner");
        let bytes = sealed(&key);
        for cut in 0..bytes.len() {
            assert!(
                GradientObject::parse(&bytes[..cut], 1024).is_err(),
                "cut at {cut}"
            );
        }
        assert_eq!(
            GradientObject::parse(&bytes, 4),
            Err(ObjectError::TooLarge(13, 4))
        );
        let mut bad_magic = bytes.clone();
        bad_magic[0] = b'X';
        assert_eq!(
            GradientObject::parse(&bad_magic, 1024),
            Err(ObjectError::Magic)
        );
        let mut bad_version = bytes.clone();
        bad_version[4] = 9;
        assert_eq!(
            GradientObject::parse(&bad_version, 1024),
            Err(ObjectError::Version(9))
        );
        let mut extra = bytes;
        extra.push(0);
        assert!(matches!(
            GradientObject::parse(&extra, 1024),
            Err(ObjectError::Length { .. })
        ));
    }
}
