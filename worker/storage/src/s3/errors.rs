//! Maps `aws-sdk-s3` errors onto [`StorageError`].

use std::time::SystemTime;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::DateTime;

use crate::error::StorageError;

/// Error codes S3-compatible servers use for bad or insufficient credentials.
const ACCESS_DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AllAccessDisabled",
    "InvalidToken",
    "ExpiredToken",
    "AccountProblem",
    "Unauthorized",
];

/// Translates an SDK error for `operation` on `bucket`/`key`.
pub(crate) fn map_sdk_error<E>(
    err: SdkError<E, HttpResponse>,
    operation: &'static str,
    bucket: &str,
    key: &str,
) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    if let SdkError::TimeoutError(_) = &err {
        return StorageError::timeout(operation, key);
    }
    if let SdkError::DispatchFailure(failure) = &err
        && failure.is_timeout()
    {
        return StorageError::timeout(operation, key);
    }
    let status = err.raw_response().map(|raw| raw.status().as_u16());
    let code = err
        .as_service_error()
        .and_then(|e| e.code())
        .map(str::to_owned);
    let message = DisplayErrorContext(&err).to_string();
    match (code.as_deref(), status) {
        (Some("NoSuchBucket"), _) => StorageError::NoSuchBucket {
            bucket: bucket.to_owned(),
        },
        (Some("NoSuchKey" | "NotFound"), _) | (None, Some(404)) => StorageError::NotFound {
            key: key.to_owned(),
        },
        (Some(code), _) if ACCESS_DENIED_CODES.contains(&code) => {
            StorageError::AccessDenied { operation, message }
        }
        (_, Some(401 | 403)) => StorageError::AccessDenied { operation, message },
        (_, Some(404)) => StorageError::NotFound {
            key: key.to_owned(),
        },
        _ => StorageError::Backend { operation, message },
    }
}

/// Converts an S3 timestamp, rejecting a missing or unrepresentable one.
pub(crate) fn to_system_time(
    time: Option<&DateTime>,
    operation: &'static str,
    key: &str,
) -> Result<SystemTime, StorageError> {
    let time = time
        .ok_or_else(|| StorageError::backend(operation, format!("no LastModified for {key:?}")))?;
    SystemTime::try_from(*time).map_err(|err| {
        StorageError::backend(operation, format!("bad LastModified for {key:?}: {err}"))
    })
}

/// Converts an S3 length, rejecting a missing or negative one.
pub(crate) fn to_size(
    length: Option<i64>,
    operation: &'static str,
    key: &str,
) -> Result<u64, StorageError> {
    length
        .and_then(|len| u64::try_from(len).ok())
        .ok_or_else(|| StorageError::backend(operation, format!("no valid size for {key:?}")))
}
