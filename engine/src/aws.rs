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
use aws_sdk_s3::config::interceptors::InterceptorContext;
use aws_sdk_s3::config::retry::{ClassifyRetry, RetryAction};
use aws_sdk_s3::config::Region;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::{Error, Result, Retry, Stage};
use crate::retry::{classify, error_code, Backoff, Failed, Verdict};

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
    /// Attempts per request (what [`crate::retry::classify`] calls transient is retried,
    /// by [`Backoff`]); 0: [`DEFAULT_MAX_ATTEMPTS`] (the CLI passes `--max-attempts`, else `AWS_MAX_ATTEMPTS`).
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
pub const DEFAULT_MAX_ATTEMPTS: u32 = crate::retry::DEFAULT_ATTEMPTS;

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
            0 => DEFAULT_MAX_ATTEMPTS,
            n => n,
        };
        let backoff = Backoff::attempts(attempts);
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(backoff.retries + 1)
                    .with_initial_backoff(backoff.initial)
                    .with_max_backoff(backoff.max),
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

    /// The endpoint requests go to (the options' `endpoint_url`: the CLI's
    /// `--endpoint-url`, else `AWS_ENDPOINT_URL`; empty for AWS's own).
    pub fn endpoint(&self) -> String {
        self.options.endpoint_url.clone().unwrap_or_default()
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

/// Whether the failed call may succeed if made again, as [`crate::retry::classify`]
/// judges it: the same judgement [`Classifier`] gave the SDK, so a call
/// reported retryable is one the SDK retried (and a later run may get through).
pub fn retry<E, R>(err: &SdkError<E, R>) -> Retry
where
    E: ProvideErrorMetadata,
    R: HasStatus,
{
    verdict(err).retry()
}

/// [`crate::retry::classify`]'s verdict on a failed call (throttled, a
/// server error, a network failure, permanent).
pub fn verdict<E, R>(err: &SdkError<E, R>) -> Verdict
where
    E: ProvideErrorMetadata,
    R: HasStatus,
{
    classify(failed(err))
}

/// What [`crate::retry::classify`] needs of an SDK error.
fn failed<E, R>(err: &SdkError<E, R>) -> Failed<'_>
where
    E: ProvideErrorMetadata,
    R: HasStatus,
{
    match err {
        SdkError::ServiceError(s) => Failed::Answer { status: s.raw().status_code(), code: s.err().code() },
        SdkError::TimeoutError(_) => Failed::Timeout,
        SdkError::ResponseError(_) => Failed::Connection,
        SdkError::DispatchFailure(d) if d.is_timeout() => Failed::Timeout,
        SdkError::DispatchFailure(d) if d.is_io() || d.as_other().is_some() => Failed::Connection,
        _ => Failed::Unsent,
    }
}

/// [`crate::retry::classify`] as the SDK's retry classifier, installed on
/// every S3, KMS and MediaConvert client the engine makes
/// ([`Classifier::install`]'s callers): its verdict is final both ways (a
/// permanent answer is never retried by the SDK's own classifiers either),
/// but for clock-skew answers, which the SDK retries once it corrected its clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct Classifier;

impl Classifier {
    /// What the SDK sees of a failed attempt, for [`crate::retry::classify`].
    fn verdict(ctx: &InterceptorContext) -> Option<Verdict> {
        let error = match ctx.output_or_error() {
            Some(Err(e)) => e,
            _ => return None,
        };
        let failed = if error.is_timeout_error() {
            Failed::Timeout
        } else if error.is_response_error() {
            Failed::Connection
        } else if let Some(c) = error.as_connector_error() {
            match () {
                _ if c.is_timeout() => Failed::Timeout,
                _ if c.is_io() || c.as_other().is_some() => Failed::Connection,
                _ => Failed::Unsent,
            }
        } else if let Some(response) = ctx.response().filter(|_| error.is_operation_error()) {
            let header = response.headers().get("x-amzn-errortype");
            let body = response.body().bytes().unwrap_or_default();
            return Some(classify(Failed::Answer { status: response.status().as_u16(), code: error_code(header, body) }));
        } else {
            Failed::Unsent
        };
        Some(classify(failed))
    }
}

impl ClassifyRetry for Classifier {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        use aws_smithy_types::retry::ErrorKind;
        match Self::verdict(ctx) {
            None | Some(Verdict::SdkDecides) => RetryAction::NoActionIndicated,
            Some(Verdict::Throttled) => RetryAction::retryable_error(ErrorKind::ThrottlingError),
            Some(Verdict::ServerError) => RetryAction::retryable_error(ErrorKind::ServerError),
            Some(Verdict::Network) => RetryAction::retryable_error(ErrorKind::TransientError),
            Some(Verdict::Permanent) => RetryAction::RetryForbidden,
        }
    }

    fn name(&self) -> &'static str {
        "sealpipe::retry::classify"
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

/// An SDK error as an engine error about `path` at `stage`: `"<op> failed: <describe>"`, typed with its retry.
pub fn remote_error<E, R>(path: impl AsRef<std::path::Path>, stage: Stage, op: impl std::fmt::Display, err: &SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + HasStatus + 'static,
{
    Error::remote(path, stage, retry(err), format!("{op} failed: {}", describe(err)))
}

/// An SDK error as an engine error about `path` at `stage`, said as
/// `message` (which names the cause), typed with the error's retry.
pub fn remote_said<E, R>(path: impl AsRef<std::path::Path>, stage: Stage, message: impl Into<String>, err: &SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata,
    R: HasStatus,
{
    Error::remote(path, stage, retry(err), message)
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

/// A tokio task (`what`: "S3 read task") that ended without an answer, at `stage`:
/// retryable when it was cancelled (the runtime is stopping), not when it panicked.
pub fn task_failed(stage: Stage, what: &str, err: &tokio::task::JoinError) -> Error {
    let retry = if err.is_cancelled() { Retry::Yes } else { Retry::No };
    Error::Internal { reason: format!("{what} failed: {err}"), stage, retry }
}
