//! MediaConvert `CreateJob` requests for encrypted files (issue 13, `sealpipe jobs`).
//!
//! One request per manifest record, as `serde_json::Value` with the API's
//! member names, exactly what `aws mediaconvert create-job --cli-input-json`
//! takes (and what `scripts/mediaconvert_model.py` validates against
//! botocore's model). Pure functions, no AWS SDK types:
//!
//! * [`JobTemplate`]: either a `CreateJob` request exported from the console
//!   ([`JobTemplate::from_request_json`]: its `Role` and `Settings`, with one
//!   input whose selectors and options are kept) or a job template name with
//!   a role ARN ([`JobTemplate::named`]);
//! * [`JobOptions`]: the job region (for the `KmsKeyRegion` rule), `Queue`,
//!   `Priority`, `UserMetadata`;
//! * [`build_request`]: the request for one record: the file's `FileInput`
//!   and `DecryptionSettings`, `KmsKeyRegion` only when the key's region
//!   differs from the job's (the MediaConvert guide's rule; always when the
//!   job region is unknown), `UserMetadata` with the source path and
//!   [`record_id`], and a `ClientRequestToken` hashed from the rest of that
//!   request ([`client_request_token`]);
//! * records wrapped by the local keyring, or without MediaConvert settings,
//!   or whose `FileInput` is not an `s3://`/`https://` URL, are refused with
//!   one line saying why ([`Error::Usage`]).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use super::record::Record;

/// `UserMetadata` key carrying the plaintext source of the file.
pub const META_SOURCE: &str = "sealpipe-source";
/// `UserMetadata` key carrying [`record_id`].
pub const META_RECORD: &str = "sealpipe-record";

/// The key provider whose keys MediaConvert can unwrap.
pub const KMS_PROVIDER: &str = "aws-kms";

/// Members of a `CreateJob` request (botocore's `CreateJobRequest` shape).
const REQUEST_MEMBERS: &[&str] = &[
    "AccelerationSettings",
    "BillingTagsSource",
    "ClientRequestToken",
    "HopDestinations",
    "JobEngineVersion",
    "JobTemplate",
    "Priority",
    "Queue",
    "Role",
    "Settings",
    "SimulateReservedQueue",
    "StatusUpdateInterval",
    "Tags",
    "UserMetadata",
];

/// Read-only members of a `Job` (as `aws mediaconvert get-job` prints it),
/// dropped from a template so a finished job can serve as one.
const JOB_READ_ONLY: &[&str] = &[
    "AccelerationStatus",
    "Arn",
    "CreatedAt",
    "CurrentPhase",
    "ElementalInferenceConfiguration",
    "ErrorCode",
    "ErrorMessage",
    "Id",
    "JobEngineVersionRequested",
    "JobEngineVersionUsed",
    "JobPercentComplete",
    "LastShareDetails",
    "Messages",
    "OutputGroupDetails",
    "QueueTransitions",
    "RetryCount",
    "ShareStatus",
    "Status",
    "Timing",
    "Warnings",
];

/// What every job is made from.
#[derive(Clone, Debug)]
pub struct JobTemplate {
    /// The request skeleton: `Role`, `Settings` (one input), and either the
    /// console's other members or `JobTemplate`.
    base: Map<String, Value>,
}

impl JobTemplate {
    /// A `CreateJob` request JSON exported from the console (or a `get-job`
    /// answer, `{"Job": {...}}`, whose read-only members are dropped). It must
    /// name a `Role` and have at most one input in `Settings.Inputs`: that
    /// input's selectors and options are kept for every file; its
    /// `FileInput` and `DecryptionSettings` are replaced.
    pub fn from_request_json(bytes: &[u8]) -> Result<Self> {
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::Usage(format!("job template: not JSON: {e}")))?;
        let Value::Object(mut base) = value else {
            return Err(Error::Usage("job template: not a JSON object (a CreateJob request was expected)".into()));
        };
        if base.len() == 1 {
            if let Some(Value::Object(job)) = base.get("Job") {
                base = job.clone();
            }
        }
        for key in JOB_READ_ONLY {
            base.remove(*key);
        }
        if let Some(unknown) = base.keys().find(|k| !REQUEST_MEMBERS.contains(&k.as_str())) {
            return Err(Error::Usage(format!(
                "job template: \"{unknown}\" is not a member of a CreateJob request (members: {})",
                REQUEST_MEMBERS.join(", ")
            )));
        }
        match base.get("Role") {
            Some(Value::String(r)) if !r.is_empty() => {}
            _ => return Err(Error::Usage("job template: no \"Role\" (the IAM role ARN MediaConvert assumes)".into())),
        }
        let settings = base.entry("Settings").or_insert_with(|| json!({}));
        let Value::Object(settings) = settings else {
            return Err(Error::Usage("job template: \"Settings\" is not an object".into()));
        };
        let inputs = settings.entry("Inputs").or_insert_with(|| json!([{}]));
        match inputs {
            Value::Array(list) if list.is_empty() => list.push(json!({})),
            Value::Array(list) if list.len() == 1 && list[0].is_object() => {}
            Value::Array(list) if list.len() > 1 => {
                return Err(Error::Usage(format!(
                    "job template: Settings.Inputs has {} inputs; each job is made for one encrypted file, so give a template with one input",
                    list.len()
                )))
            }
            _ => return Err(Error::Usage("job template: Settings.Inputs is not a list of input objects".into())),
        }
        base.remove("ClientRequestToken");
        Ok(JobTemplate { base })
    }

    /// Run every job as `role` instead of the template's role (`--role`).
    pub fn set_role(&mut self, role: &str) -> Result<()> {
        if !role.starts_with("arn:") {
            return Err(Error::Usage(format!("--role {role}: not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")));
        }
        self.base.insert("Role".into(), Value::String(role.into()));
        Ok(())
    }

    /// A job template stored in MediaConvert, by name, with the role each job runs as.
    pub fn named(name: &str, role: &str) -> Result<Self> {
        if name.trim().is_empty() {
            return Err(Error::Usage("--job-template: the name is empty".into()));
        }
        if role.trim().is_empty() {
            return Err(Error::Usage("--role: a job template needs the IAM role ARN MediaConvert assumes".into()));
        }
        let base = json!({"JobTemplate": name, "Role": role, "Settings": {"Inputs": [{}]}});
        let Value::Object(base) = base else { unreachable!("a JSON object literal") };
        Ok(JobTemplate { base })
    }
}

/// Per-run job options, as MediaConvert names them.
#[derive(Clone, Debug, Default)]
pub struct JobOptions {
    /// The region jobs are submitted in (`--region`). `KmsKeyRegion` is left
    /// out where the key is in this region; `None`: always written.
    pub region: Option<String>,
    /// `Queue` (name or ARN); overrides the template's.
    pub queue: Option<String>,
    /// `Priority` (-50 to 50); overrides the template's.
    pub priority: Option<i32>,
    /// `UserMetadata` added to the template's (sealpipe's own two keys win).
    pub user_metadata: BTreeMap<String, String>,
}

/// A short stable id of a record: 16 hex digits of SHA-256 over its identity
/// (source, output, wrapped key, IV, plaintext digest). A re-encrypted file
/// (new key or IV) has a new id.
pub fn record_id(record: &Record) -> String {
    hex::encode(&identity_digest(record)[..8])
}

/// The `ClientRequestToken` of the job for `record` made from `template`
/// with `options`: the token [`build_request`] puts in that request (the
/// same errors when no request can be made).
pub fn client_request_token(record: &Record, template: &JobTemplate, options: &JobOptions) -> Result<String> {
    let request = build_request(record, template, options)?;
    Ok(request["ClientRequestToken"].as_str().expect("build_request sets the token").to_string())
}

/// The token of a `CreateJob` request: 64 hex digits of SHA-256 over the
/// job's region and the canonical bytes of the final request without its
/// token. Whatever a request carries (the record's file, key, IV and id,
/// the template, queue, priority, metadata, any member added later) is in
/// its token, so submitting the same request twice returns the first job
/// and any change is a different job.
fn token_of(request: &Map<String, Value>, region: Option<&str>) -> String {
    let mut h = Sha256::new();
    field(&mut h, b"sealpipe-jobs-token-v2");
    field(&mut h, region.unwrap_or("").as_bytes());
    field(&mut h, &canonical_json(&Value::Object(request.clone())));
    hex::encode(h.finalize())
}

/// The region of the record's KMS key: from the key ARN, else the region
/// recorded in its MediaConvert settings.
pub fn key_region(record: &Record) -> Option<String> {
    let from_arn = record
        .key_id
        .strip_prefix("arn:")
        .and_then(|rest| rest.split(':').nth(2))
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    from_arn.or_else(|| record.mediaconvert.as_ref().and_then(|m| m.decryption_settings.kms_key_region.clone()))
}

/// The `CreateJob` request for one record.
pub fn build_request(record: &Record, template: &JobTemplate, options: &JobOptions) -> Result<Value> {
    let what = &record.output;
    if record.key_provider != KMS_PROVIDER {
        return Err(Error::Usage(format!(
            "{what}: its data key is wrapped by the {} ({}), which MediaConvert cannot unwrap; encrypt it again with --kms-key",
            if record.key_provider == "local-keyring" { "local keyring" } else { record.key_provider.as_str() },
            record.key_id
        )));
    }
    let Some(mc) = &record.mediaconvert else {
        return Err(Error::Usage(format!(
            "{what}: no MediaConvert settings in its record (encrypted for target {}); encrypt it with --target mediaconvert or any",
            record.target
        )));
    };
    let file_input = &mc.file_input;
    if !(file_input.starts_with("s3://") || file_input.starts_with("https://") || file_input.starts_with("http://")) {
        return Err(Error::Usage(format!(
            "{what}: FileInput {file_input} is not an s3:// or https:// URL MediaConvert can read; upload with --to s3://… or set --file-input-prefix"
        )));
    }
    if let Some(p) = options.priority {
        if !(-50..=50).contains(&p) {
            return Err(Error::Usage(format!("--priority {p}: MediaConvert priorities are -50 to 50")));
        }
    }
    // The record's typed block (format/mediaconvert.rs), with KmsKeyRegion only where the job's region is not the key's.
    let mut decryption = mc.decryption_settings.clone();
    decryption.kms_key_region = match (key_region(record), &options.region) {
        (Some(key), Some(job)) if &key == job => None,
        (Some(key), _) => Some(key),
        (None, _) => {
            return Err(Error::Usage(format!("{what}: the region of KMS key {} is unknown (not an ARN, none recorded)", record.key_id)))
        }
    };

    let mut request = template.base.clone();
    {
        let input = request
            .get_mut("Settings")
            .and_then(|s| s.get_mut("Inputs"))
            .and_then(|i| i.get_mut(0))
            .and_then(Value::as_object_mut)
            .expect("a template has Settings.Inputs[0], checked when made");
        input.insert("FileInput".into(), json!(file_input));
        input.insert("DecryptionSettings".into(), serde_json::to_value(&decryption).expect("DecryptionSettings serialize"));
    }
    if let Some(q) = &options.queue {
        request.insert("Queue".into(), json!(q));
    }
    if let Some(p) = options.priority {
        request.insert("Priority".into(), json!(p));
    }
    let mut metadata = match request.remove("UserMetadata") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for (k, v) in &options.user_metadata {
        metadata.insert(k.clone(), json!(v));
    }
    metadata.insert(META_SOURCE.into(), json!(record.source));
    metadata.insert(META_RECORD.into(), json!(record_id(record)));
    request.insert("UserMetadata".into(), Value::Object(metadata));
    let token = token_of(&request, options.region.as_deref());
    request.insert("ClientRequestToken".into(), json!(token));
    Ok(Value::Object(request))
}

/// SHA-256 over a record's identity fields, each length-prefixed.
fn identity_digest(record: &Record) -> [u8; 32] {
    let mut h = Sha256::new();
    field(&mut h, b"sealpipe-record-v1");
    field(&mut h, record.source.as_bytes());
    field(&mut h, record.output.as_bytes());
    field(&mut h, record.key_id.as_bytes());
    field(&mut h, record.encrypted_data_key.as_bytes());
    field(&mut h, record.iv.as_bytes());
    // SHA-256 records (every record before `--digest`) hash as they always have.
    field(&mut h, record.plaintext_sha256.as_deref().unwrap_or_default().as_bytes());
    if let Some(d) = &record.digest {
        field(&mut h, format!("{}:{}", d.alg, d.value.as_deref().unwrap_or_default()).as_bytes());
    }
    if let Some(mc) = &record.mediaconvert {
        field(&mut h, mc.file_input.as_bytes());
        field(&mut h, mc.decryption_settings.encrypted_decryption_key.as_bytes());
    }
    h.finalize().into()
}

fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_be_bytes());
    h.update(bytes);
}

/// JSON with object keys sorted at every level, whatever `serde_json`'s map order.
fn canonical_json(v: &Value) -> Vec<u8> {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    serde_json::to_vec(&sorted(v)).expect("a JSON value serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::mediaconvert::{MediaConvertDecryption, MediaConvertInput};
    use crate::format::record::KeySource;
    use crate::format::{KeyBits, Mode, Service};

    const ARN: &str = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const ROLE: &str = "arn:aws:iam::123456789012:role/MediaConvert_Default_Role";

    fn record(provider: &str, key_id: &str, region: Option<&str>) -> Record {
        Record {
            source: "/archive/clip.mp4".into(),
            output: "s3://media-in/archive/clip.mp4".into(),
            output_relative: None,
            etag: None,
            source_version_id: None,
            output_version_id: None,
            checksum: None,
            server_side_encryption: None,
            plaintext_size: 10,
            ciphertext_size: 10,
            mode: Mode::Ctr,
            key_bits: KeyBits::B256,
            key_provider: provider.into(),
            key_id: key_id.into(),
            key_source: KeySource::Generated,
            target: "any".into(),
            encryption_context: Service::MediaConvert.encryption_context(),
            encrypted_data_key: "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB".into(),
            iv: "AAECAwQFBgcICQoLDA0ODw==".into(),
            key_md5: "AAAAAAAAAAAAAAAAAAAAAA==".into(),
            plaintext_sha256: Some("00".repeat(32)),
            digest: None,
            mediaconvert: Some(MediaConvertInput {
                file_input: "s3://media-in/archive/clip.mp4".into(),
                decryption_settings: MediaConvertDecryption {
                    decryption_mode: "AES_CTR".into(),
                    encrypted_decryption_key: "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB".into(),
                    initialization_vector: "AAECAwQFBgcICQoLDA0ODw==".into(),
                    kms_key_region: region.map(str::to_string),
                },
            }),
            elastictranscoder: None,
            finished_unix: 0,
            shard: None,
        }
    }

    fn kms_record() -> Record {
        record("aws-kms", ARN, Some("eu-west-1"))
    }

    fn console_template() -> JobTemplate {
        JobTemplate::from_request_json(
            br#"{"Queue": "arn:aws:mediaconvert:eu-west-1:123456789012:queues/Default",
                 "UserMetadata": {"team": "video"},
                 "Role": "arn:aws:iam::123456789012:role/MediaConvert_Default_Role",
                 "ClientRequestToken": "from-the-console",
                 "Settings": {"TimecodeConfig": {"Source": "ZEROBASED"},
                   "OutputGroups": [{"Name": "File Group"}],
                   "Inputs": [{"FileInput": "s3://old/file.mp4", "TimecodeSource": "ZEROBASED",
                     "AudioSelectors": {"Audio Selector 1": {"DefaultSelection": "DEFAULT"}},
                     "VideoSelector": {}}]},
                 "AccelerationSettings": {"Mode": "DISABLED"},
                 "StatusUpdateInterval": "SECONDS_60", "Priority": 0}"#,
        )
        .unwrap()
    }

    #[test]
    fn console_template_keeps_selectors_and_sets_the_file() {
        let opts = JobOptions { region: Some("us-east-1".into()), ..Default::default() };
        let r = build_request(&kms_record(), &console_template(), &opts).unwrap();
        assert_eq!(r["Role"], ROLE);
        assert_eq!(r["Queue"], "arn:aws:mediaconvert:eu-west-1:123456789012:queues/Default");
        assert_eq!(r["Settings"]["OutputGroups"][0]["Name"], "File Group");
        let inputs = r["Settings"]["Inputs"].as_array().unwrap();
        assert_eq!(inputs.len(), 1);
        let input = &inputs[0];
        assert_eq!(input["FileInput"], "s3://media-in/archive/clip.mp4");
        assert_eq!(input["TimecodeSource"], "ZEROBASED");
        assert_eq!(input["AudioSelectors"]["Audio Selector 1"]["DefaultSelection"], "DEFAULT");
        let ds = &input["DecryptionSettings"];
        assert_eq!(ds["DecryptionMode"], "AES_CTR");
        assert_eq!(ds["EncryptedDecryptionKey"], "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB");
        assert_eq!(ds["InitializationVector"], "AAECAwQFBgcICQoLDA0ODw==");
        assert_eq!(ds["KmsKeyRegion"], "eu-west-1", "key in eu-west-1, job in us-east-1");
        assert_eq!(r["UserMetadata"]["team"], "video");
        assert_eq!(r["UserMetadata"][META_SOURCE], "/archive/clip.mp4");
        assert_eq!(r["UserMetadata"][META_RECORD], record_id(&kms_record()));
        let token = r["ClientRequestToken"].as_str().unwrap();
        assert_ne!(token, "from-the-console");
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn named_template_with_options() {
        let t = JobTemplate::named("hls-ladder", ROLE).unwrap();
        let opts = JobOptions {
            region: Some("eu-west-1".into()),
            queue: Some("bulk".into()),
            priority: Some(-10),
            user_metadata: BTreeMap::from([("project".into(), "restore".into())]),
        };
        let r = build_request(&kms_record(), &t, &opts).unwrap();
        assert_eq!(r["JobTemplate"], "hls-ladder");
        assert_eq!(r["Role"], ROLE);
        assert_eq!(r["Queue"], "bulk");
        assert_eq!(r["Priority"], -10);
        assert_eq!(r["UserMetadata"]["project"], "restore");
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        for k in keys {
            assert!(REQUEST_MEMBERS.contains(&k.as_str()), "{k} is a CreateJob member");
        }
        assert_eq!(r["Settings"]["Inputs"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn kms_key_region_only_when_regions_differ() {
        let t = JobTemplate::named("t", ROLE).unwrap();
        let ds = |region: Option<&str>| {
            let opts = JobOptions { region: region.map(str::to_string), ..Default::default() };
            build_request(&kms_record(), &t, &opts).unwrap()["Settings"]["Inputs"][0]["DecryptionSettings"].clone()
        };
        assert!(ds(Some("eu-west-1")).get("KmsKeyRegion").is_none(), "same region: left out");
        assert_eq!(ds(Some("us-west-2"))["KmsKeyRegion"], "eu-west-1");
        assert_eq!(ds(None)["KmsKeyRegion"], "eu-west-1", "job region unknown: written");
        // No ARN: the region recorded in the block is used.
        let r = record("aws-kms", "1234abcd-12ab-34cd-56ef-1234567890ab", Some("ap-south-1"));
        let opts = JobOptions { region: Some("eu-west-1".into()), ..Default::default() };
        let got = build_request(&r, &t, &opts).unwrap();
        assert_eq!(got["Settings"]["Inputs"][0]["DecryptionSettings"]["KmsKeyRegion"], "ap-south-1");
        let r = record("aws-kms", "1234abcd", None);
        assert!(build_request(&r, &t, &opts).unwrap_err().to_string().contains("region"));
    }

    #[test]
    fn token_is_deterministic_and_distinguishes() {
        let t = console_template();
        let opts = JobOptions { region: Some("eu-west-1".into()), ..Default::default() };
        let a = build_request(&kms_record(), &t, &opts).unwrap();
        let b = build_request(&kms_record(), &console_template(), &opts).unwrap();
        assert_eq!(a, b, "same record, same template: the same request");
        // Key order or whitespace of the template does not matter.
        let t2 = JobTemplate::from_request_json(
            br#"{"Priority":0,"StatusUpdateInterval":"SECONDS_60","AccelerationSettings":{"Mode":"DISABLED"},
                "Settings":{"Inputs":[{"VideoSelector":{},"AudioSelectors":{"Audio Selector 1":{"DefaultSelection":"DEFAULT"}},"TimecodeSource":"ZEROBASED","FileInput":"s3://old/file.mp4"}],
                "OutputGroups":[{"Name":"File Group"}],"TimecodeConfig":{"Source":"ZEROBASED"}},
                "Role":"arn:aws:iam::123456789012:role/MediaConvert_Default_Role",
                "UserMetadata":{"team":"video"},"Queue":"arn:aws:mediaconvert:eu-west-1:123456789012:queues/Default"}"#,
        )
        .unwrap();
        assert_eq!(client_request_token(&kms_record(), &t2, &opts).unwrap(), a["ClientRequestToken"]);
        // Another file, another template, other options: other tokens.
        let mut other = kms_record();
        other.iv = "AQECAwQFBgcICQoLDA0ODw==".into();
        let tokens = [
            client_request_token(&kms_record(), &t, &opts).unwrap(),
            client_request_token(&other, &t, &opts).unwrap(),
            client_request_token(&kms_record(), &JobTemplate::named("x", ROLE).unwrap(), &opts).unwrap(),
            client_request_token(&kms_record(), &t, &JobOptions { priority: Some(1), ..opts.clone() }).unwrap(),
        ];
        for i in 0..tokens.len() {
            for j in i + 1..tokens.len() {
                assert_ne!(tokens[i], tokens[j], "tokens {i} and {j}");
            }
        }
        assert_ne!(record_id(&kms_record()), record_id(&other));
        assert_eq!(record_id(&kms_record()).len(), 16);
    }

    #[test]
    fn refuses_what_mediaconvert_cannot_read() {
        let t = JobTemplate::named("t", ROLE).unwrap();
        let opts = JobOptions::default();
        let local = record("local-keyring", "local:0123456789abcdef", None);
        let e = build_request(&local, &t, &opts).unwrap_err().to_string();
        assert!(e.contains("local keyring") && e.contains("--kms-key"), "{e}");
        assert!(!e.contains('\n'));
        let mut et_only = kms_record();
        et_only.mediaconvert = None;
        et_only.target = "elastictranscoder".into();
        assert!(build_request(&et_only, &t, &opts).unwrap_err().to_string().contains("no MediaConvert settings"));
        let mut local_path = kms_record();
        local_path.mediaconvert.as_mut().unwrap().file_input = "/enc/clip.mp4".into();
        assert!(build_request(&local_path, &t, &opts).unwrap_err().to_string().contains("--file-input-prefix"));
        let bad = JobOptions { priority: Some(51), ..Default::default() };
        assert!(build_request(&kms_record(), &t, &bad).is_err());
    }

    #[test]
    fn template_checks() {
        let e = |json: &str| JobTemplate::from_request_json(json.as_bytes()).unwrap_err().to_string();
        assert!(e(r#"{"Settings": {"Inputs": [{}]}}"#).contains("Role"));
        assert!(e(r#"{"Role": "r", "Settings": {"Inputs": [{}, {}]}}"#).contains("2 inputs"));
        assert!(e(r#"{"Role": "r", "Setings": {}}"#).contains("Setings"));
        assert!(e("[1]").contains("not a JSON object"));
        assert!(JobTemplate::named("", ROLE).is_err());
        assert!(JobTemplate::named("t", "").is_err());
        // A get-job answer serves as a template: read-only members dropped.
        let t = JobTemplate::from_request_json(
            br#"{"Job": {"Id": "1", "Arn": "a", "Status": "COMPLETE", "CreatedAt": 1, "Role": "r", "Settings": {"Inputs": [{"FileInput": "s3://b/k"}]}}}"#,
        )
        .unwrap();
        let r = build_request(&kms_record(), &t, &JobOptions::default()).unwrap();
        assert!(r.get("Id").is_none() && r.get("Status").is_none());
        assert_eq!(r["Role"], "r");
        // No inputs in the template: one is made.
        let t = JobTemplate::from_request_json(br#"{"Role": "r", "Settings": {}}"#).unwrap();
        let r = build_request(&kms_record(), &t, &JobOptions::default()).unwrap();
        assert_eq!(r["Settings"]["Inputs"][0]["FileInput"], "s3://media-in/archive/clip.mp4");
    }
}
