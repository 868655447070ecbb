//! The one retry policy: which failures may succeed if made again
//! ([`classify`]), and how long to wait before each new try ([`Backoff`]).
//!
//! The same [`classify`] decides twice: `crate::aws` installs it as the
//! retry classifier of every S3, KMS and MediaConvert client (so it is what
//! the SDK retries), and turns it into [`Retry`] on the errors it reports
//! (so what a run reports retryable is what was retried). The loops the
//! engine writes by hand (a ranged read resumed where its body broke off,
//! a conditional write that collided with another, a MediaConvert job
//! throttled past the SDK's attempts) wait by one [`Backoff`], which also
//! sets the SDK's own.
//!
//! A new retry rule is one line here (a code in [`THROTTLING`] or
//! [`TRANSIENT`]) and a case in this module's tests.

use std::time::Duration;

use crate::error::Retry;

/// Error codes of throttling answers (S3, KMS, MediaConvert and the AWS
/// SDKs' common list): retried, with the SDK's throttling cost.
pub const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes of answers that say the service failed for now, whatever
/// their HTTP status (S3's `RequestTimeout` is a 400; an S3 error inside a
/// 200 answer is `InternalError`): retried.
pub const TRANSIENT: &[&str] = &[
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "KMSInternalException",
    "DependencyTimeoutException",
    "KeyUnavailableException",
    "InternalServerErrorException",
];

/// Error codes the SDK retries only once it has seen the client's clock is
/// off and corrected it (its own list): left to it ([`Verdict::SdkDecides`]),
/// reported permanent, as they are without a skewed clock.
pub const CLOCK_SKEW: &[&str] = &["InvalidSignatureException", "SignatureDoesNotMatch", "AuthFailure", "RequestTimeTooSkewed", "AccessDeniedException"];

/// A failed request, as far as retrying it is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failed<'a> {
    /// An answer came back: its HTTP status, and the error code its header
    /// or body named (none for a HEAD answer, which has no body).
    Answer {
        /// HTTP status.
        status: u16,
        /// The service's error code.
        code: Option<&'a str>,
    },
    /// No answer in time (connect, read, or the whole attempt).
    Timeout,
    /// The connection failed or was reset, or the answer broke off.
    Connection,
    /// The request could not be made (no credentials, a bad endpoint, a
    /// request the client refused to send).
    Unsent,
}

/// What to do with a failed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Throttled: try again later, more slowly.
    Throttled,
    /// The service failed for now (5xx, a transient code).
    ServerError,
    /// The network failed (timeout, reset, broken answer).
    Network,
    /// Repeating it changes nothing (4xx, a refused request, unsent).
    Permanent,
    /// A clock-skew answer: the SDK retries it once it corrected its clock.
    SdkDecides,
}

impl Verdict {
    /// As a failure's [`Retry`].
    pub fn retry(self) -> Retry {
        match self {
            Verdict::Throttled | Verdict::ServerError | Verdict::Network => Retry::Yes,
            Verdict::Permanent | Verdict::SdkDecides => Retry::No,
        }
    }
}

/// Whether `failed` may succeed if sent again.
pub fn classify(failed: Failed<'_>) -> Verdict {
    match failed {
        Failed::Timeout | Failed::Connection => Verdict::Network,
        Failed::Unsent => Verdict::Permanent,
        Failed::Answer { status, code } => match code {
            Some(c) if THROTTLING.contains(&c) => Verdict::Throttled,
            Some(c) if TRANSIENT.contains(&c) => Verdict::ServerError,
            Some(c) if CLOCK_SKEW.contains(&c) => Verdict::SdkDecides,
            _ if status == 429 => Verdict::Throttled,
            _ if matches!(status, 500 | 502 | 503 | 504) => Verdict::ServerError,
            _ => Verdict::Permanent,
        },
    }
}

/// The error code an AWS answer names: the `x-amzn-ErrorType` header
/// (JSON protocols: KMS, MediaConvert), else the body's `__type` or `code`
/// (JSON) or `<Code>` (S3's XML). The part after `#` or before `:` only.
pub fn error_code<'a>(header: Option<&'a str>, body: &'a [u8]) -> Option<&'a str> {
    let clean = |c: &'a str| -> Option<&'a str> {
        let c = c.split(':').next().unwrap_or(c);
        let c = c.rsplit('#').next().unwrap_or(c).trim();
        (!c.is_empty()).then_some(c)
    };
    if let Some(h) = header.and_then(clean) {
        return Some(h);
    }
    let text = std::str::from_utf8(body).ok()?;
    if let Some(at) = text.find("<Code>") {
        let rest = &text[at + 6..];
        return rest.find("</Code>").and_then(|end| clean(&rest[..end]));
    }
    for key in ["\"__type\"", "\"code\"", "\"Code\""] {
        if let Some(at) = text.find(key) {
            let rest = text[at + key.len()..].trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
            return rest.find('"').and_then(|end| clean(&rest[..end]));
        }
    }
    None
}

/// How long to wait before each new try, and how many: exponential, capped,
/// with jitter so that many clients throttled together do not come back together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Tries after the first (0: none).
    pub retries: u32,
    /// Wait before the first retry; doubled each time.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

/// Attempts of one AWS request by default (the first and [`Backoff::retries`] more).
pub const DEFAULT_ATTEMPTS: u32 = 6;

impl Default for Backoff {
    /// The policy of every AWS request: 6 attempts, 200 ms doubling to 20 s at most.
    fn default() -> Self {
        Backoff { retries: DEFAULT_ATTEMPTS - 1, initial: Duration::from_millis(200), max: Duration::from_secs(20) }
    }
}

impl Backoff {
    /// The default policy with `attempts` in all (at least 1).
    pub fn attempts(attempts: u32) -> Self {
        Backoff { retries: attempts.max(1) - 1, ..Backoff::default() }
    }

    /// The wait before retry `n` (0-based): `initial · 2^n`, capped, times a jitter in [0.5, 1).
    pub fn delay(&self, n: u32) -> Duration {
        let base = self.initial.saturating_mul(1u32 << n.min(20)).min(self.max);
        let mut r = [0u8; 2];
        let jitter = match getrandom::fill(&mut r) {
            Ok(()) => 0.5 + f64::from(u16::from_le_bytes(r)) / f64::from(u16::MAX) / 2.0,
            Err(_) => 0.75,
        };
        base.mul_f64(jitter.min(0.9999))
    }

    /// Sleep this thread before retry `n` (for loops off any async runtime).
    pub fn wait(&self, n: u32) {
        std::thread::sleep(self.delay(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: &str) -> Verdict {
        classify(Failed::Answer { status, code: (!code.is_empty()).then_some(code) })
    }

    #[test]
    fn throttling_5xx_and_network_failures_are_retried_4xx_are_not() {
        // Throttling, whatever the service spells it.
        assert_eq!(answer(503, "SlowDown"), Verdict::Throttled);
        assert_eq!(answer(400, "ThrottlingException"), Verdict::Throttled, "KMS throttling is a 400");
        assert_eq!(answer(429, "TooManyRequestsException"), Verdict::Throttled, "MediaConvert");
        assert_eq!(answer(429, ""), Verdict::Throttled);
        // 5xx and transient codes.
        assert_eq!(answer(500, "InternalError"), Verdict::ServerError);
        assert_eq!(answer(200, "InternalError"), Verdict::ServerError, "an S3 error inside a 200 answer");
        assert_eq!(answer(500, "KMSInternalException"), Verdict::ServerError);
        assert_eq!(answer(503, ""), Verdict::ServerError, "a HEAD answer has no code");
        assert_eq!(answer(400, "RequestTimeout"), Verdict::ServerError, "S3's idle-connection timeout is a 400");
        assert_eq!(classify(Failed::Timeout), Verdict::Network);
        assert_eq!(classify(Failed::Connection), Verdict::Network);
        // Permanent.
        assert_eq!(answer(400, "AccessDeniedException"), Verdict::SdkDecides, "retried by the SDK only to correct a skewed clock");
        assert_eq!(answer(400, "AccessDeniedException").retry(), Retry::No);
        for (status, code) in [
            (400, "NotFoundException"),
            (403, "AccessDenied"),
            (400, "DisabledException"),
            (400, "InvalidCiphertextException"),
            (404, "NoSuchKey"),
            (404, ""),
            (412, "PreconditionFailed"),
            (409, "ConditionalRequestConflict"),
            (400, "BadRequestException"),
            (301, "PermanentRedirect"),
            (501, "NotImplemented"),
        ] {
            assert_eq!(answer(status, code), Verdict::Permanent, "{status} {code}");
            assert_eq!(answer(status, code).retry(), Retry::No);
        }
        assert_eq!(classify(Failed::Unsent), Verdict::Permanent);
        assert_eq!(answer(403, "RequestTimeTooSkewed"), Verdict::SdkDecides);
        assert_eq!(answer(500, "KMSInternalException").retry(), Retry::Yes);
    }

    #[test]
    fn error_codes_are_read_from_the_header_or_the_body() {
        assert_eq!(error_code(Some("ThrottlingException:http://internal.amazon.com/"), b""), Some("ThrottlingException"));
        assert_eq!(error_code(None, br#"{"__type":"com.amazonaws.kms#KMSInternalException","message":"x"}"#), Some("KMSInternalException"));
        assert_eq!(error_code(None, br#"{"__type": "NotFoundException"}"#), Some("NotFoundException"));
        assert_eq!(error_code(None, b"<?xml version=\"1.0\"?><Error><Code>SlowDown</Code><Message>m</Message></Error>"), Some("SlowDown"));
        assert_eq!(error_code(None, b""), None);
        assert_eq!(error_code(None, b"\xff\xfe"), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff { retries: 5, initial: Duration::from_millis(100), max: Duration::from_secs(1) };
        for n in 0..30 {
            let d = b.delay(n);
            let base = Duration::from_millis(100).saturating_mul(1 << n.min(20)).min(Duration::from_secs(1));
            assert!(d >= base / 2 && d < base, "retry {n}: {d:?}");
        }
        assert_eq!(Backoff::attempts(1).retries, 0);
        assert_eq!(Backoff::attempts(0).retries, 0);
        assert_eq!(Backoff::attempts(6), Backoff::default());
    }
}
