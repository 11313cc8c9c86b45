//! The object key alphabet shared by all backends.

use crate::error::StorageError;

/// Longest accepted key in bytes (the S3 limit).
const MAX_KEY_LEN: usize = 1024;

/// Checks that `key` is a relative `/`-separated path of segments made of `[A-Za-z0-9._-]`,
/// none empty and none starting with `.` (which also rules out `.` and `..`).
///
/// Both backends enforce the same rule, so a key that works on the devnet's [`crate::LocalStore`]
/// works on S3 and cannot escape the local store's directory.
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let reject = |reason| {
        Err(StorageError::InvalidKey {
            key: key.to_owned(),
            reason,
        })
    };
    if key.is_empty() {
        return reject("empty key");
    }
    if key.len() > MAX_KEY_LEN {
        return reject("longer than 1024 bytes");
    }
    if key.starts_with('/') {
        return reject("absolute path");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return reject("empty path segment");
        }
        if segment.starts_with('.') {
            return reject("segment starts with '.' (no '.', '..' or hidden names)");
        }
        if !segment.bytes().all(is_key_byte) {
            return reject("characters outside [A-Za-z0-9._-]");
        }
    }
    Ok(())
}

/// Checks a listing prefix: like a key, but it may be empty or end with `/`.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), StorageError> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() {
        return if prefix.is_empty() {
            Ok(())
        } else {
            Err(StorageError::InvalidKey {
                key: prefix.to_owned(),
                reason: "absolute path",
            })
        };
    }
    validate_key(trimmed)
}

fn is_key_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_layout_keys() {
        for key in [
            "run-1/gradients/0000000042/00007.slc",
            "a",
            "run_2/checkpoints/0000000001/model.safetensors",
        ] {
            assert!(validate_key(key).is_ok(), "{key}");
        }
    }

    #[test]
    fn rejects_escapes_and_odd_characters() {
        for key in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a/./b",
            "a//b",
            "a/",
            ".hidden",
            "a/b c",
            "a\\b",
            "a/\u{e9}",
            "a\0b",
        ] {
            assert!(
                matches!(validate_key(key), Err(StorageError::InvalidKey { .. })),
                "{key:?}"
            );
        }
        assert!(validate_key(&"a".repeat(1025)).is_err());
    }

    #[test]
    fn prefixes_may_be_empty_or_end_with_slash() {
        assert!(validate_prefix("").is_ok());
        assert!(validate_prefix("run/gradients/").is_ok());
        assert!(validate_prefix("run/gradients/00000").is_ok());
        assert!(validate_prefix("/").is_err());
        assert!(validate_prefix("../").is_err());
    }
}
