//! Submitting `CreateJob` requests (made by [`crate::format::jobs`]) with the AWS SDK
//! for MediaConvert (issue 13, `sealpipe jobs --submit`).
//!
//! The SDK takes typed input only; a console template's `Settings` can use
//! any of the model's ~800 shapes, so converting the JSON into SDK types
//! member by member is not feasible. Instead the SDK does everything but the
//! body: the request is built with the typed `Role`, an empty `Settings` and
//! the `ClientRequestToken`, and an interceptor replaces the serialized body
//! (before signing, on every attempt) with the request in the wire format,
//! [`to_wire`]. Endpoint resolution, SigV4, retries, error and response
//! parsing are the SDK's.
//!
//! The wire format of MediaConvert's REST-JSON protocol names each member
//! with its `locationName`, which for every member of the `CreateJob` input
//! is the member name with its first letter in lower case (checked against
//! botocore's model in the suite); the keys of the six map members
//! ([`MAP_MEMBERS`]) are the user's own names and stay as they are.
//!
//! `TooManyRequestsException` is retried by the SDK's own retry loop
//! (it is a throttling error) and, once those attempts are spent, here again
//! with exponential backoff and jitter ([`Backoff`]). A repeated request
//! carries the same `ClientRequestToken`, so MediaConvert returns the job it
//! already made rather than a second one.

use std::time::Duration;

pub use aws_sdk_mediaconvert;

use aws_sdk_mediaconvert::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_mediaconvert::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_mediaconvert::error::BoxError;
use aws_sdk_mediaconvert::types::JobSettings;
use aws_smithy_types::body::SdkBody;
use serde_json::{Map, Value};

use crate::aws::{describe, Aws};
use crate::error::{Error, Result};

/// Members whose values are maps keyed by the user's names (selector names,
/// tag and metadata keys): their keys are not member names.
pub const MAP_MEMBERS: &[&str] =
    &["AudioSelectorGroups", "AudioSelectors", "CaptionSelectors", "DynamicAudioSelectors", "Tags", "UserMetadata"];

/// A MediaConvert client for `aws` (its region, credentials, endpoint, retries).
pub fn client(aws: &Aws) -> aws_sdk_mediaconvert::Client {
    aws_sdk_mediaconvert::Client::new(&aws.config)
}

/// A `CreateJob` request with the API's member names (`Role`, `Settings`,
/// ...) in MediaConvert's wire format (`role`, `settings`, ...).
pub fn to_wire(request: &Value) -> Value {
    fn lower_first(name: &str) -> String {
        let mut chars = name.chars();
        match chars.next() {
            Some(c) => c.to_lowercase().chain(chars).collect(),
            None => String::new(),
        }
    }
    fn convert(v: &Value, keys_are_members: bool) -> Value {
        match v {
            Value::Object(m) => {
                let mut out = Map::new();
                for (k, v) in m {
                    if keys_are_members {
                        // A map member's value: its keys are names, its values structures (or strings).
                        out.insert(lower_first(k), convert(v, !MAP_MEMBERS.contains(&k.as_str())));
                    } else {
                        out.insert(k.clone(), convert(v, true));
                    }
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(|v| convert(v, true)).collect()),
            other => other.clone(),
        }
    }
    convert(request, true)
}

/// Retries of `TooManyRequestsException` after the SDK's own.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// Further attempts (0: none).
    pub retries: u32,
    /// Wait before the first retry; doubled each time, with jitter.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { retries: 8, initial: Duration::from_millis(500), max: Duration::from_secs(30) }
    }
}

impl Backoff {
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
}

/// Replaces the body the SDK serialized with the request's own wire JSON.
#[derive(Debug)]
struct ReplaceBody {
    body: Vec<u8>,
}

impl Intercept for ReplaceBody {
    fn name(&self) -> &'static str {
        "sealpipe::ReplaceBody"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        let request = context.request_mut();
        *request.body_mut() = SdkBody::from(self.body.clone());
        request.headers_mut().insert("content-length", self.body.len().to_string());
        Ok(())
    }
}

/// Submit one `CreateJob` request (as [`crate::format::jobs::build_request`] makes it);
/// the job id. Throttling is retried per `backoff`; anything else is one line.
pub async fn submit(client: &aws_sdk_mediaconvert::Client, request: &Value, backoff: &Backoff) -> Result<String> {
    let role = request.get("Role").and_then(Value::as_str).ok_or_else(|| Error::Usage("CreateJob request without a Role".into()))?;
    let token = request.get("ClientRequestToken").and_then(Value::as_str);
    let file = request
        .pointer("/Settings/Inputs/0/FileInput")
        .and_then(Value::as_str)
        .unwrap_or("(no FileInput)")
        .to_string();
    let body = serde_json::to_vec(&to_wire(request)).expect("JSON serializes");
    let mut retry = 0;
    loop {
        let out = client
            .create_job()
            .role(role)
            .settings(JobSettings::builder().build())
            .set_client_request_token(token.map(str::to_string))
            .customize()
            .interceptor(ReplaceBody { body: body.clone() })
            .send()
            .await;
        match out {
            Ok(out) => {
                return out
                    .job()
                    .and_then(|j| j.id())
                    .map(str::to_string)
                    .ok_or_else(|| Error::Usage(format!("{file}: MediaConvert CreateJob answered without a job id")))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_too_many_requests_exception()) && retry < backoff.retries => {
                tokio::time::sleep(backoff.delay(retry)).await;
                retry += 1;
            }
            Err(e) => return Err(Error::Usage(format!("{file}: MediaConvert CreateJob failed: {}", describe(&e)))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_names_lower_the_first_letter_but_not_map_keys() {
        let req = json!({
            "Role": "r", "ClientRequestToken": "t", "Priority": 1,
            "UserMetadata": {"Source": "x", "sealpipe-record": "y"},
            "Tags": {"Team": "Video"},
            "Settings": {"Inputs": [{
                "FileInput": "s3://b/k",
                "AudioSelectors": {"Audio Selector 1": {"DefaultSelection": "DEFAULT", "Tracks": [1]}},
                "CaptionSelectors": {"Captions Selector 1": {"SourceSettings": {"SourceType": "EMBEDDED"}}},
                "DecryptionSettings": {"DecryptionMode": "AES_CTR", "KmsKeyRegion": "eu-west-1"}
            }]}
        });
        let w = to_wire(&req);
        assert_eq!(w["role"], "r");
        assert_eq!(w["clientRequestToken"], "t");
        assert_eq!(w["priority"], 1);
        assert_eq!(w["userMetadata"], json!({"Source": "x", "sealpipe-record": "y"}));
        assert_eq!(w["tags"], json!({"Team": "Video"}));
        let input = &w["settings"]["inputs"][0];
        assert_eq!(input["fileInput"], "s3://b/k");
        assert_eq!(input["audioSelectors"]["Audio Selector 1"], json!({"defaultSelection": "DEFAULT", "tracks": [1]}));
        assert_eq!(input["captionSelectors"]["Captions Selector 1"]["sourceSettings"]["sourceType"], "EMBEDDED");
        assert_eq!(input["decryptionSettings"], json!({"decryptionMode": "AES_CTR", "kmsKeyRegion": "eu-west-1"}));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let b = Backoff { retries: 5, initial: Duration::from_millis(100), max: Duration::from_secs(1) };
        for n in 0..30 {
            let d = b.delay(n);
            let base = Duration::from_millis(100).saturating_mul(1 << n.min(20)).min(Duration::from_secs(1));
            assert!(d >= base / 2 && d < base, "retry {n}: {d:?}");
        }
    }
}
