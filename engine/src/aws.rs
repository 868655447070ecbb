//! Reaching AWS (feature `aws`): the configuration every AWS client of the
//! engine is made from, and one way to turn SDK errors into [`Error`]s. The
//! services themselves are elsewhere: KMS as a key provider
//! ([`crate::keys::kms`]), S3 as a store ([`crate::store::s3`]).
//!
//! The caller owns the tokio runtime and hands in a [`tokio::runtime::Handle`];
//! every method here is synchronous and must be called from a thread that
//! is *not* a tokio worker (rayon threads and the pipeline's writer thread are fine).
//!
//! Errors are one line each and never contain key material: AWS service
//! errors are rendered as `<error code>: <message>` by [`describe`].

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::{Error, Result, Retry};

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
    /// Connect timeout (`--connect-timeout`); `None`: 10 s.
    pub connect_timeout: Option<Duration>,
    /// Read timeout (`--read-timeout`); `None`: 120 s.
    pub read_timeout: Option<Duration>,
    /// `--request-payer requester`: every S3 request says the requester pays
    /// (`x-amz-request-payer`), for requester-pays buckets.
    pub request_payer: bool,
    /// The account each named bucket must belong to (`x-amz-expected-bucket-owner`
    /// on every request to it): the destination's and the manifest's bucket
    /// from `--expected-bucket-owner`, the named sources' from `--source-expected-bucket-owner`.
    pub bucket_owners: Vec<(String, String)>,
    /// The account every other bucket must belong to (sources a list or an
    /// inventory names: `--source-expected-bucket-owner`).
    pub other_buckets_owner: Option<String>,
    /// Buckets whose region the user said (`--source-region`): asked of no `HeadBucket`.
    pub bucket_regions: Vec<(String, String)>,
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
                    .connect_timeout(options.connect_timeout.unwrap_or(Duration::from_secs(10)))
                    .read_timeout(options.read_timeout.unwrap_or(Duration::from_secs(120)))
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
}

/// The AWS configuration of a command, loaded on first use (a run over
/// local files with the local keyring never touches it), on the caller's runtime.
pub struct Session {
    handle: tokio::runtime::Handle,
    options: AwsOptions,
    loaded: std::sync::OnceLock<Aws>,
}

impl Session {
    /// AWS as `options` say, driven by `handle`.
    pub fn new(handle: tokio::runtime::Handle, options: AwsOptions) -> Self {
        Session { handle, options, loaded: std::sync::OnceLock::new() }
    }

    /// The loaded configuration; fails clearly when no region is configured.
    pub fn aws(&self) -> Result<&Aws> {
        if let Some(aws) = self.loaded.get() {
            return Ok(aws);
        }
        let aws = Aws::load(self.handle.clone(), self.options.clone());
        aws.region()?;
        let _ = self.loaded.set(aws);
        Ok(self.loaded.get().expect("set above"))
    }

    /// The endpoint requests go to (`--endpoint-url` or `AWS_ENDPOINT_URL`; empty for AWS's own).
    pub fn endpoint(&self) -> String {
        self.options.endpoint_url.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()).unwrap_or_default()
    }

    /// The options.
    pub fn options(&self) -> &AwsOptions {
        &self.options
    }
}

/// One line saying why an AWS call failed: `<code>: <message>` for service
/// errors, the cause chain for connection, credential and timeout failures.
pub fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus + 'static,
{
    let text = match err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            match (e.code(), e.message(), service.raw().status_code()) {
                (Some(code), Some(msg), _) if !msg.is_empty() => format!("{code}: {msg}"),
                (Some(code), _, _) => code.to_string(),
                // An answer without an error body (HEAD requests): its status says what it was.
                (None, _, 403) => "AccessDenied (HTTP 403)".to_string(),
                (None, _, 404) => "NotFound (HTTP 404)".to_string(),
                (None, _, status) => format!("HTTP {status} without an error code"),
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

/// Whether the failed call may succeed if made again: throttling, a 5xx
/// answer, a timeout or a lost connection, as the SDK's own retry policy
/// judges them (a call that still failed after its attempts may succeed in a later run).
pub fn retry<E, R>(err: &SdkError<E, R>) -> Retry
where
    E: ProvideErrorMetadata,
    R: HasStatus,
{
    let throttled = |code: Option<&str>| {
        matches!(code, Some("SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequestsException" | "RequestTimeout" | "InternalError" | "KMSInternalException" | "ServiceUnavailable"))
    };
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Retry::Yes,
        SdkError::ServiceError(s) if throttled(s.err().code()) || s.raw().status_code() >= 500 || s.raw().status_code() == 429 => Retry::Yes,
        _ => Retry::No,
    }
}

/// The HTTP status of a raw response, whichever service's.
pub trait HasStatus {
    /// The status code.
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_sdk_s3::config::http::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

/// An SDK error as an engine error about `path`: `"<op> failed: <describe>"`, typed with its retry.
pub fn remote_error<E, R>(path: impl AsRef<std::path::Path>, op: impl Into<String>, err: &SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus + 'static,
{
    Error::Remote { path: path.as_ref().to_path_buf(), op: op.into(), reason: describe(err), retry: retry(err) }
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
