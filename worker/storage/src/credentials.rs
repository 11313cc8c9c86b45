//! Bucket read credentials committed on chain as one `Raw128` field.
//!
//! Layout (128 ASCII bytes): `account_id[0..32] | access_key_id[32..64] | secret[64..128]`.
//! Each field is left-aligned; shorter values are padded on the right with NUL bytes
//! (`to_raw128` writes NULs; `parse` also accepts trailing spaces). Fields may not contain
//! padding bytes inside the value. Cloudflare R2 values fill the fields exactly (32 hex, 32 hex,
//! 64 hex). Following Templar, the bucket is named after the account id.

use std::fmt;

use crate::s3::{S3Config, S3Credentials};

/// Length of a `Raw128` commitment.
pub const RAW128_LEN: usize = 128;
const ACCOUNT_ID: std::ops::Range<usize> = 0..32;
const ACCESS_KEY_ID: std::ops::Range<usize> = 32..64;
const SECRET: std::ops::Range<usize> = 64..128;

/// Why a commitment is not usable; callers skip the peer with a warning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// The commitment is not exactly 128 bytes.
    #[error("commitment is {0} bytes, expected 128")]
    WrongLength(usize),
    /// A field is empty after removing padding.
    #[error("{0} is empty")]
    Empty(&'static str),
    /// A field contains a byte outside printable ASCII (or padding inside the value).
    #[error("{0} contains a byte outside printable ASCII")]
    NotPrintable(&'static str),
    /// The account id is not a valid bucket / host name label.
    #[error("account id must be 3-32 characters of [a-z0-9-]")]
    BadAccountId,
    /// A field is too long for its slot.
    #[error("{field} is {len} bytes, its slot holds {max}")]
    TooLong {
        /// The field name.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The slot size.
        max: usize,
    },
}

/// Read credentials for a peer's bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct BucketCredentials {
    /// Cloudflare account id (also the bucket name).
    pub account_id: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

impl fmt::Debug for BucketCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketCredentials")
            .field("account_id", &self.account_id)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

impl BucketCredentials {
    /// Parses a `Raw128` commitment.
    pub fn parse(raw: &[u8]) -> Result<Self, CredentialsError> {
        if raw.len() != RAW128_LEN {
            return Err(CredentialsError::WrongLength(raw.len()));
        }
        let field = |range: std::ops::Range<usize>, name| {
            raw.get(range)
                .ok_or(CredentialsError::WrongLength(raw.len()))
                .and_then(|bytes| parse_field(bytes, name))
        };
        let credentials = Self {
            account_id: field(ACCOUNT_ID, "account id")?,
            access_key_id: field(ACCESS_KEY_ID, "access key id")?,
            secret_access_key: field(SECRET, "secret access key")?,
        };
        validate_account_id(&credentials.account_id)?;
        Ok(credentials)
    }

    /// Encodes the credentials as a `Raw128` commitment (NUL padded).
    pub fn to_raw128(&self) -> Result<[u8; RAW128_LEN], CredentialsError> {
        validate_account_id(&self.account_id)?;
        let mut raw = [0u8; RAW128_LEN];
        for (value, range, name) in [
            (&self.account_id, ACCOUNT_ID, "account id"),
            (&self.access_key_id, ACCESS_KEY_ID, "access key id"),
            (&self.secret_access_key, SECRET, "secret access key"),
        ] {
            check_value(value, name)?;
            let slot = &mut raw[range];
            if value.len() > slot.len() {
                return Err(CredentialsError::TooLong {
                    field: name,
                    len: value.len(),
                    max: slot.len(),
                });
            }
            slot[..value.len()].copy_from_slice(value.as_bytes());
        }
        Ok(raw)
    }

    /// The bucket name: the account id (Templar convention).
    pub fn bucket(&self) -> &str {
        &self.account_id
    }

    /// The Cloudflare R2 endpoint of the account.
    pub fn r2_endpoint(&self) -> String {
        format!("https://{}.r2.cloudflarestorage.com", self.account_id)
    }

    /// An [`S3Config`] for the peer's bucket: the R2 endpoint (region `auto`), or
    /// `endpoint_override` for local or other S3-compatible services.
    pub fn s3_config(&self, endpoint_override: Option<&str>) -> S3Config {
        let endpoint = endpoint_override
            .map(str::to_owned)
            .unwrap_or_else(|| self.r2_endpoint());
        S3Config::new(
            self.bucket(),
            S3Credentials::new(&self.access_key_id, &self.secret_access_key),
        )
        .with_endpoint(endpoint)
    }
}

/// Strips trailing NUL/space padding and checks the value is printable ASCII.
fn parse_field(bytes: &[u8], name: &'static str) -> Result<String, CredentialsError> {
    let end = bytes
        .iter()
        .rposition(|&b| b != 0 && b != b' ')
        .map_or(0, |last| last + 1);
    let value = bytes.get(..end).unwrap_or_default();
    let value = std::str::from_utf8(value).map_err(|_| CredentialsError::NotPrintable(name))?;
    check_value(value, name)?;
    Ok(value.to_owned())
}

fn check_value(value: &str, name: &'static str) -> Result<(), CredentialsError> {
    if value.is_empty() {
        return Err(CredentialsError::Empty(name));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CredentialsError::NotPrintable(name));
    }
    Ok(())
}

fn validate_account_id(account_id: &str) -> Result<(), CredentialsError> {
    let valid = (3..=32).contains(&account_id.len())
        && account_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(())
    } else {
        Err(CredentialsError::BadAccountId)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r2_like() -> BucketCredentials {
        BucketCredentials {
            account_id: "0123456789abcdef0123456789abcdef".into(),
            access_key_id: "fedcba9876543210fedcba9876543210".into(),
            secret_access_key: "ab".repeat(32),
        }
    }

    #[test]
    fn full_width_fields_round_trip() {
        let creds = r2_like();
        let raw = creds.to_raw128().unwrap();
        assert_eq!(&raw[..32], creds.account_id.as_bytes());
        assert_eq!(&raw[64..], creds.secret_access_key.as_bytes());
        assert_eq!(BucketCredentials::parse(&raw).unwrap(), creds);
    }

    #[test]
    fn short_fields_are_nul_padded_and_space_padding_is_accepted() {
        let creds = BucketCredentials {
            account_id: "devnet".into(),
            access_key_id: "reader".into(),
            secret_access_key: "s3cr3t!".into(),
        };
        let raw = creds.to_raw128().unwrap();
        assert_eq!(&raw[..8], b"devnet\0\0");
        assert_eq!(BucketCredentials::parse(&raw).unwrap(), creds);

        let spaced: Vec<u8> = raw.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
        assert_eq!(BucketCredentials::parse(&spaced).unwrap(), creds);
    }

    #[test]
    fn bad_commitments_are_errors() {
        let raw = r2_like().to_raw128().unwrap();
        assert_eq!(
            BucketCredentials::parse(&raw[..127]),
            Err(CredentialsError::WrongLength(127))
        );
        assert_eq!(
            BucketCredentials::parse(&[0u8; 128]),
            Err(CredentialsError::Empty("account id"))
        );
        let mut inner_nul = raw;
        inner_nul[40] = 0;
        assert_eq!(
            BucketCredentials::parse(&inner_nul),
            Err(CredentialsError::NotPrintable("access key id"))
        );
        let mut non_ascii = raw;
        non_ascii[100] = 0xff;
        assert_eq!(
            BucketCredentials::parse(&non_ascii),
            Err(CredentialsError::NotPrintable("secret access key"))
        );
        let mut upper = raw;
        upper[0] = b'A';
        assert_eq!(
            BucketCredentials::parse(&upper),
            Err(CredentialsError::BadAccountId)
        );
    }

    #[test]
    fn oversized_fields_cannot_be_encoded() {
        let mut creds = r2_like();
        creds.access_key_id.push('x');
        assert!(matches!(
            creds.to_raw128(),
            Err(CredentialsError::TooLong {
                field: "access key id",
                len: 33,
                max: 32
            })
        ));
    }

    #[test]
    fn endpoint_and_bucket() {
        let creds = r2_like();
        assert_eq!(
            creds.r2_endpoint(),
            "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com"
        );
        let config = creds.s3_config(None);
        assert_eq!(config.bucket, creds.account_id);
        assert_eq!(
            config.endpoint.as_deref(),
            Some(creds.r2_endpoint().as_str())
        );
        assert_eq!(config.region, "auto");
        let local = creds.s3_config(Some("http://127.0.0.1:8333"));
        assert_eq!(local.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert!(!format!("{creds:?}").contains(&creds.secret_access_key));
    }
}
