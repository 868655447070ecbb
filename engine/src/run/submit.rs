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

use crate::aws::{describe, remote_said, task_failed, verdict, Aws, Classifier};
use crate::error::{Error, Result, Stage};
use crate::events::{Event, Events, JobOutcome};
use crate::retry::Verdict;

/// Members whose values are maps keyed by the user's names (selector names,
/// tag and metadata keys): their keys are not member names.
pub const MAP_MEMBERS: &[&str] =
    &["AudioSelectorGroups", "AudioSelectors", "CaptionSelectors", "DynamicAudioSelectors", "Tags", "UserMetadata"];

/// A MediaConvert client for `aws` (its region, credentials, endpoint, retries).
pub fn client(aws: &Aws) -> aws_sdk_mediaconvert::Client {
    aws_sdk_mediaconvert::Client::from_conf(aws_sdk_mediaconvert::config::Builder::from(&aws.config).retry_classifier(Classifier).build())
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

/// Retries of throttling after the SDK's own: the one backoff (`crate::retry`).
pub use crate::retry::Backoff;

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
            Err(e) if verdict(&e) == Verdict::Throttled && retry < backoff.retries => {
                tokio::time::sleep(backoff.delay(retry)).await;
                retry += 1;
            }
            Err(e) => return Err(remote_said(&file, Stage::Write, format!("MediaConvert CreateJob failed: {}", describe(&e)), &e)),
        }
    }
}

/// One job to submit: the record it is for and its `CreateJob` request.
#[derive(Clone, Debug)]
pub struct JobRequest {
    /// [`crate::format::jobs::record_id`] of the record.
    pub record: String,
    /// The record's source (for messages and events).
    pub source: String,
    /// The request, as [`crate::format::jobs::build_request`] made it.
    pub request: Value,
}

impl JobRequest {
    /// The request's `ClientRequestToken` (which `build_request` derives from the rest of it).
    pub fn token(&self) -> &str {
        self.request["ClientRequestToken"].as_str().unwrap_or_default()
    }
}

/// What the jobs ledger says of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ledgered {
    /// Its `CreateJob` was about to be sent (Unix seconds, this machine's clock) and
    /// its answer never recorded: the job may exist.
    Sending(u64),
    /// Submitted: the job id.
    Submitted(String),
}

/// The jobs ledger (`<manifest>.jobs.jsonl`): journal before network, one
/// JSON line per step, synced. `{"token", "record", "state": "sending",
/// "unix"}` is written before a `CreateJob` is sent, `{"token", "record",
/// "job_id"}` once its answer is in. A run killed between the two leaves a
/// `sending` line; the next run looks for that token's job before sending
/// anything again ([`find_jobs`]), because MediaConvert returns the first job
/// for a repeated `ClientRequestToken` only within a minute of it.
pub struct JobsLedger {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl JobsLedger {
    /// Open (creating) the ledger at `path`, and what it says per token. A
    /// torn last line (a crash mid-write) is skipped: its token reads as never sent.
    pub fn open(path: &std::path::Path) -> Result<(Self, std::collections::HashMap<String, Ledgered>)> {
        let mut seen = std::collections::HashMap::new();
        match std::fs::File::open(path) {
            Ok(file) => crate::format::record::for_each_jsonl_line(file, path, &mut |_, line| {
                let Ok(v) = serde_json::from_slice::<Value>(line) else { return Ok(()) };
                let Some(token) = v["token"].as_str() else { return Ok(()) };
                if let Some(job) = v["job_id"].as_str() {
                    seen.insert(token.to_string(), Ledgered::Submitted(job.to_string()));
                } else if v["state"] == "sending" {
                    // A later `sending` line for a submitted token does not undo it.
                    seen.entry(token.to_string()).or_insert(Ledgered::Sending(v["unix"].as_u64().unwrap_or(0)));
                }
                Ok(())
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, "read the jobs ledger", e)),
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, "open the jobs ledger", e))?;
        Ok((JobsLedger { path: path.to_path_buf(), file }, seen))
    }

    fn append(&mut self, line: Value) -> Result<()> {
        use std::io::Write as _;
        let text = format!("{line}\n");
        self.file.write_all(text.as_bytes()).map_err(|e| Error::io(&self.path, "append to the jobs ledger", e))?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, "sync the jobs ledger", e))
    }

    /// Record that `job`'s request is about to be sent.
    pub fn sending(&mut self, job: &JobRequest) -> Result<()> {
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        self.append(serde_json::json!({"token": job.token(), "record": job.record, "state": "sending", "unix": unix}))
    }

    /// Record `job`'s job id.
    pub fn submitted(&mut self, job: &JobRequest, job_id: &str) -> Result<()> {
        self.append(serde_json::json!({"token": job.token(), "record": job.record, "job_id": job_id}))
    }
}

/// How far back [`find_jobs`] looks before the earliest `sending` line:
/// a bound on the listing only (jobs are matched by token, not by time),
/// wide enough for a client clock a day off the service's.
pub const FIND_SLACK_SECONDS: u64 = 24 * 3600;

/// The jobs whose `ClientRequestToken` is in `tokens`, by token: MediaConvert's
/// jobs listed newest first (`ListJobs`), until one was created more than
/// [`FIND_SLACK_SECONDS`] before `since` (Unix seconds) or the list ends.
pub async fn find_jobs(
    client: &aws_sdk_mediaconvert::Client,
    tokens: &std::collections::HashSet<String>,
    since: u64,
) -> Result<std::collections::HashMap<String, String>> {
    let mut found = std::collections::HashMap::new();
    let horizon = since.saturating_sub(FIND_SLACK_SECONDS) as i64;
    let mut next: Option<String> = None;
    loop {
        let page = client
            .list_jobs()
            .order(aws_sdk_mediaconvert::types::Order::Descending)
            .max_results(20)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| {
                let message = format!("MediaConvert ListJobs failed (looking for jobs an interrupted run may have made): {}", describe(&e));
                Error::Remote { path: None, message, stage: Stage::Plan, retry: crate::aws::retry(&e) }
            })?;
        let mut older = false;
        for job in page.jobs() {
            if let (Some(token), Some(id)) = (job.client_request_token(), job.id()) {
                if tokens.contains(token) {
                    found.entry(token.to_string()).or_insert_with(|| id.to_string());
                }
            }
            older |= job.created_at().is_some_and(|t| t.secs() < horizon);
        }
        next = page.next_token().map(str::to_string);
        if older || next.is_none() || found.len() == tokens.len() {
            return Ok(found);
        }
    }
}

/// How [`submit_all`] sends.
#[derive(Clone, Debug)]
pub struct SubmitOptions {
    /// Most `CreateJob` requests started per second.
    pub max_rps: f64,
    /// Most requests in flight at once.
    pub in_flight: usize,
    /// Throttling retries after the SDK's own.
    pub backoff: Backoff,
}

/// Submit every request the ledger at `ledger` does not already have a job for,
/// at most `options.max_rps` a second, emitting one [`Event::Job`] per request (in the
/// order they finish) with its outcome. Requests an interrupted run left as
/// `sending` are first looked for by token ([`find_jobs`]) and sent again only
/// if no job has it. Errors: the ledger cannot be read or written, or the
/// listing fails (then nothing is sent).
pub fn submit_all(
    aws: &Aws,
    requests: &[JobRequest],
    ledger: &std::path::Path,
    options: &SubmitOptions,
    events: &dyn Events,
) -> Result<()> {
    let each = |r: &JobRequest, outcome: JobOutcome<'_>| events.emit(Event::Job { source: &r.source, record: &r.record, token: r.token(), outcome });
    let (mut book, seen) = JobsLedger::open(ledger)?;
    let client = client(aws);
    let pending: std::collections::HashSet<String> = requests
        .iter()
        .filter(|r| matches!(seen.get(r.token()), Some(Ledgered::Sending(_))))
        .map(|r| r.token().to_string())
        .collect();
    let found = if pending.is_empty() {
        Default::default()
    } else {
        let since = seen.values().filter_map(|l| if let Ledgered::Sending(t) = l { Some(*t) } else { None }).min().unwrap_or(0);
        aws.handle.block_on(find_jobs(&client, &pending, since))?
    };
    let mut to_send = Vec::new();
    for r in requests {
        match (seen.get(r.token()), found.get(r.token())) {
            (Some(Ledgered::Submitted(id)), _) => each(r, JobOutcome::AlreadySubmitted(id)),
            (_, Some(id)) => {
                book.submitted(r, id)?;
                each(r, JobOutcome::Found(id));
            }
            _ => to_send.push(r),
        }
    }
    if to_send.is_empty() {
        return Ok(());
    }
    let interval = Duration::from_secs_f64(1.0 / options.max_rps.max(1e-3));
    aws.handle.block_on(async {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut running = tokio::task::JoinSet::new();
        let mut queue = to_send.iter().enumerate();
        let finish = |book: &mut JobsLedger, (i, out): (usize, Result<String>)| -> Result<()> {
            let r: &JobRequest = to_send[i];
            match out {
                Ok(id) => {
                    book.submitted(r, &id)?;
                    each(r, JobOutcome::Submitted(&id));
                }
                Err(e) => each(r, JobOutcome::Failed(&e.to_string())),
            }
            Ok(())
        };
        loop {
            if running.len() < options.in_flight.max(1) {
                if let Some((i, r)) = queue.next() {
                    ticks.tick().await;
                    book.sending(r)?;
                    let (client, request, backoff) = (client.clone(), r.request.clone(), options.backoff.clone());
                    running.spawn(async move { (i, submit(&client, &request, &backoff).await) });
                    continue;
                }
            }
            match running.join_next().await {
                Some(done) => finish(&mut book, done.map_err(|e| task_failed(Stage::Write, "a CreateJob task", &e))?)?,
                None => return Ok(()),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Write as _;

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
    fn ledger_reads_sending_and_submitted_and_skips_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.jsonl.jobs.jsonl");
        let job = |t: &str| JobRequest { record: format!("r-{t}"), source: format!("/m/{t}.mp4"), request: json!({"ClientRequestToken": t}) };
        {
            let (mut book, seen) = JobsLedger::open(&path).unwrap();
            assert!(seen.is_empty());
            book.sending(&job("a")).unwrap();
            book.submitted(&job("a"), "job-a").unwrap();
            book.sending(&job("b")).unwrap();
            book.submitted(&job("c"), "job-c").unwrap();
            book.sending(&job("c")).unwrap(); // a later `sending` does not undo a job id
        }
        // A crash mid-append leaves a torn last line.
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(br#"{"token": "d", "job_"#).unwrap();
        let (_, seen) = JobsLedger::open(&path).unwrap();
        assert_eq!(seen.get("a"), Some(&Ledgered::Submitted("job-a".into())));
        assert!(matches!(seen.get("b"), Some(Ledgered::Sending(t)) if *t > 1_700_000_000));
        assert_eq!(seen.get("c"), Some(&Ledgered::Submitted("job-c".into())));
        assert_eq!(seen.get("d"), None);
    }
}
