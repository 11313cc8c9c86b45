//! Builds the `aws-sdk-s3` client from an [`S3Config`].

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};

use super::config::S3Config;

/// A client with static credentials, the configured endpoint/addressing, retries and timeouts.
///
/// The SDK's own CRC checksums are only used where S3 requires them: integrity is covered
/// end to end by the SHA-256 in the object metadata, and leaving them on breaks some
/// S3-compatible servers (aws-chunked trailers).
pub(crate) fn build_client(config: &S3Config) -> Client {
    let credentials = Credentials::new(
        config.credentials.access_key_id.clone(),
        config.credentials.secret_access_key.clone(),
        None,
        None,
        "worker-storage-static",
    );
    let retry = RetryConfig::standard()
        .with_max_attempts(config.max_attempts)
        .with_initial_backoff(config.initial_backoff)
        .with_max_backoff(config.max_backoff);
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(config.connect_timeout)
        .operation_attempt_timeout(config.attempt_timeout)
        .build();
    let mut builder = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .credentials_provider(credentials)
        .force_path_style(config.force_path_style)
        .retry_config(retry)
        .timeout_config(timeouts)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(endpoint) = &config.endpoint {
        builder = builder.endpoint_url(endpoint.clone());
    }
    Client::from_conf(builder.build())
}
