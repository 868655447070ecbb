//! The AWS layer (feature `aws`): KMS as a [`crate::keys::KeyProvider`] and
//! S3 as a [`crate::io::Destination`] and [`crate::io::Source`].
//!
//! * [`kms::KmsProvider`]: data keys from KMS `GenerateDataKey` / `Encrypt`
//!   under the service's encryption context, unwrapped with `Decrypt`;
//! * [`s3::S3Destination`]: one `PutObject` for small outputs, a concurrent,
//!   memory-bounded multipart upload for large ones, aborted on any failure;
//! * [`s3::S3Object`]: an object read by ranged GETs pinned to its ETag.
//!
//! The caller owns the tokio runtime and hands in a [`tokio::runtime::Handle`];
//! every method here is synchronous and must be called from a thread that
//! is *not* a tokio worker (rayon threads and the pipeline's writer thread are fine).
//!
//! Errors are one line each and never contain key material: AWS service
//! errors are rendered as `<error code>: <message>` by [`describe`].

pub mod kms;
pub mod mediaconvert;
pub mod s3;

/// The S3 SDK, for callers that need its types (manifests kept in S3).
pub use aws_sdk_s3;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::{Error, Result};

/// How to reach AWS, as with the AWS CLI; anything `None` falls back to the
/// standard chain (environment, shared config/credentials files, IMDS).
#[derive(Clone, Debug, Default)]
pub struct AwsOptions {
    /// Region (`--region`); else `AWS_REGION` / the profile's region.
    pub region: Option<String>,
    /// Named profile (`--profile`); else `AWS_PROFILE` / `default`.
    pub profile: Option<String>,
    /// Endpoint for every service (`--endpoint-url`); else `AWS_ENDPOINT_URL` and friends.
    pub endpoint_url: Option<String>,
    /// Path-style S3 addressing (`--force-path-style`), for S3-compatible stores.
    pub force_path_style: bool,
    /// Attempts per request (throttling, 5xx, timeouts, connection resets are retried with
    /// backoff); 0: `AWS_MAX_ATTEMPTS`, else [`DEFAULT_MAX_ATTEMPTS`].
    pub max_attempts: u32,
}

/// Default attempts per AWS request.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 6;

/// A loaded AWS configuration and the runtime to drive it.
#[derive(Clone)]
pub struct Aws {
    /// Runtime the SDK calls run on (owned by the caller).
    pub handle: tokio::runtime::Handle,
    /// Resolved configuration.
    pub config: SdkConfig,
    /// The options it was loaded from.
    pub options: AwsOptions,
}

impl Aws {
    /// Load the configuration (no network access happens here).
    pub fn load(handle: tokio::runtime::Handle, options: AwsOptions) -> Aws {
        let attempts = match options.max_attempts {
            0 => std::env::var("AWS_MAX_ATTEMPTS")
                .ok()
                .and_then(|v| v.trim().parse::<u32>().ok())
                .filter(|&n| n > 0)
                .unwrap_or(DEFAULT_MAX_ATTEMPTS),
            n => n,
        };
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(attempts)
                    .with_initial_backoff(Duration::from_millis(200))
                    .with_max_backoff(Duration::from_secs(20)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(10))
                    .read_timeout(Duration::from_secs(120))
                    .build(),
            );
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &options.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &options.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config = handle.block_on(loader.load());
        Aws { handle, config, options }
    }

    /// The configured region, or a clear error.
    pub fn region(&self) -> Result<String> {
        self.config.region().map(|r| r.to_string()).ok_or_else(|| {
            Error::Usage("no AWS region configured: pass --region, or set AWS_REGION or a region in the profile".into())
        })
    }

    /// An S3 client honouring `force_path_style` and the checksum choice.
    pub fn s3_client(&self, checksum: s3::ChecksumChoice) -> aws_sdk_s3::Client {
        use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
        let mut builder = aws_sdk_s3::config::Builder::from(&self.config).force_path_style(self.options.force_path_style);
        if checksum == s3::ChecksumChoice::None {
            // Stores that reject the SDK's default CRC32 headers.
            builder = builder
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        aws_sdk_s3::Client::from_conf(builder.build())
    }

    /// A KMS client.
    pub fn kms_client(&self) -> aws_sdk_kms::Client {
        aws_sdk_kms::Client::new(&self.config)
    }
}

/// `s3://bucket/key`, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    /// Bucket name.
    pub bucket: String,
    /// Key (or prefix); may be empty.
    pub key: String,
}

impl S3Url {
    /// Parse `s3://bucket[/key]`.
    pub fn parse(url: &str) -> Result<S3Url> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::Usage(format!("{url}: not an s3:// URL (expected s3://bucket/prefix/)")))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Usage(format!("{url}: no bucket name in the S3 URL")));
        }
        Ok(S3Url { bucket: bucket.to_string(), key: key.to_string() })
    }

    /// Whether `text` is an `s3://` URL.
    pub fn is_s3(text: &str) -> bool {
        text.starts_with("s3://")
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// One line saying why an AWS call failed: `<code>: <message>` for service
/// errors, the cause chain for connection, credential and timeout failures.
pub fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let text = match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            match (e.code(), e.message()) {
                (Some(code), Some(msg)) if !msg.is_empty() => format!("{code}: {msg}"),
                (Some(code), _) => code.to_string(),
                _ => chain(e),
            }
        }
        SdkError::TimeoutError(_) => "the request timed out".to_string(),
        SdkError::DispatchFailure(d) => {
            if d.is_io() || d.is_timeout() {
                format!("cannot reach the endpoint: {}", chain(err))
            } else {
                chain(err)
            }
        }
        _ => chain(err),
    };
    let text = text.replace(['\n', '\r'], " ");
    if text.contains("no credentials") || text.contains("NoCredentials") || text.contains("credentials provider") {
        return "no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --profile)".to_string();
    }
    text
}

/// The service error code, if the call reached the service.
pub fn code<E, R>(err: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

/// The HTTP status, if a response came back.
pub fn status<E>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

/// Join an error and its sources with `: `, skipping repeats.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_parse() {
        assert_eq!(S3Url::parse("s3://b/p/x.mp4").unwrap(), S3Url { bucket: "b".into(), key: "p/x.mp4".into() });
        assert_eq!(S3Url::parse("s3://b").unwrap(), S3Url { bucket: "b".into(), key: "".into() });
        assert!(S3Url::parse("s3:///x").is_err());
        assert!(S3Url::parse("/tmp/x").is_err());
    }
}
