//! Every MediaConvert settings block and `CreateJob` request sealpipe makes,
//! checked against botocore's own MediaConvert service model by
//! `scripts/mediaconvert_model.py` (required members, types, lengths,
//! enums, patterns), for every mode, IV size, target and key provider; plus
//! the cases the check must catch, so it can fail; plus the local
//! MediaConvert endpoint (`cli/tests/common/mediaconvert_mock.py`) driven by
//! botocore's own client: it parses the real wire format, answers invalid
//! requests with 400, repeated tokens with the first job, and throttles on
//! its schedule.
//!
//! Needs `python3` with `botocore` (installed with `moto[server]` by `scripts/test.sh`).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use sealpipe::format::jobs::{self, JobOptions, JobTemplate};
use sealpipe::keys::{DataKey, KeyProvider, LocalKeyring};
use sealpipe::format::record::{KeySource, Record, RecordInput, WrappedFor};
use sealpipe::format::{EncryptionContext, Iv, KeyBits, Mode, Target};

const ROLE: &str = "arn:aws:iam::123456789012:role/MediaConvert_Default_Role";
const KEY_REGION: &str = "eu-west-1";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn validator() -> PathBuf {
    repo().join("scripts/mediaconvert_model.py")
}

/// Run the validator on `files`: (exit code, stdout).
fn validate(files: &[PathBuf]) -> (i32, String) {
    let out = Command::new("python3")
        .arg(validator())
        .args(files)
        .output()
        .expect("python3 must be on PATH");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("ModuleNotFoundError"),
        "botocore is missing: python3 -m pip install botocore ({stderr})"
    );
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A stand-in for the KMS provider: KMS-shaped blobs, no network.
struct FakeKms {
    region: String,
}

impl KeyProvider for FakeKms {
    fn name(&self) -> &'static str {
        "aws-kms"
    }
    fn key_id(&self) -> sealpipe::Result<String> {
        Ok(format!("arn:aws:kms:{}:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab", self.region))
    }
    fn kms_region(&self) -> sealpipe::Result<Option<String>> {
        Ok(Some(self.region.clone()))
    }
    fn wrap(&self, key: &DataKey, _context: &EncryptionContext) -> sealpipe::Result<Vec<u8>> {
        // A KMS CiphertextBlob for a 32-byte key is about 184 bytes.
        let mut blob = vec![1u8, 2, 3, 0];
        blob.resize(152 + key.expose_secret().len(), 0x5a);
        Ok(blob)
    }
    fn unwrap(&self, _wrapped: &[u8], _context: &EncryptionContext) -> sealpipe::Result<DataKey> {
        unimplemented!("not needed here")
    }
}

/// The record `Record::new` makes (the manifest line) for one encrypted file.
fn record(provider: &dyn KeyProvider, mode: Mode, iv_len: usize, target: Target, n: usize) -> Record {
    let key = DataKey::random(KeyBits::B256).unwrap();
    let wrapped: Vec<WrappedFor> = target
        .services()
        .iter()
        .map(|s| WrappedFor { service: *s, blob: provider.wrap(&key, &s.encryption_context()).unwrap() })
        .collect();
    let iv = Iv::random(iv_len).unwrap();
    let name = format!("clip-{n}.mp4");
    let location = format!("s3://media-in/archive/{name}");
    let source = format!("/archive/{name}");
    Record::new(RecordInput {
        source: &source,
        output: location.clone(),
        etag: None,
        checksum: None,
        server_side_encryption: None,
        file_input: location,
        mode,
        key_bits: key.bits(),
        key_md5: key.md5_base64(),
        key_source: KeySource::Generated,
        key_provider: provider.name(),
        key_id: provider.key_id().unwrap(),
        kms_region: provider.kms_region().unwrap(),
        target,
        wrapped: &wrapped,
        iv: &iv,
        plain_len: 1000,
        cipher_len: mode.sealed_len(1000),
        digest: &sealpipe::format::digest::Digest::new(sealpipe::format::digest::DigestAlg::Sha256, vec![7; 32]),
    })
}

/// Every (mode, IV length, target) the format allows: CTR 16 bytes for
/// every target (12 only on explicit request, MediaConvert only), CBC 16,
/// GCM 12 (MediaConvert) or 16.
fn combinations() -> Vec<(Mode, usize, Target)> {
    let mut all = Vec::new();
    for mode in Mode::ALL {
        for iv_len in [12, 16] {
            for target in [Target::Any, Target::MediaConvert, Target::ElasticTranscoder] {
                if target.check_iv_len(mode, iv_len).is_ok() {
                    all.push((mode, iv_len, target));
                }
            }
        }
    }
    all
}

fn console_template() -> JobTemplate {
    JobTemplate::from_request_json(
        json!({
            "Queue": "arn:aws:mediaconvert:us-east-1:123456789012:queues/Default",
            "UserMetadata": {"team": "video"},
            "Role": ROLE,
            "Settings": {
                "TimecodeConfig": {"Source": "ZEROBASED"},
                "OutputGroups": [{
                    "Name": "File Group",
                    "OutputGroupSettings": {"Type": "FILE_GROUP_SETTINGS",
                        "FileGroupSettings": {"Destination": "s3://media-out/"}},
                    "Outputs": [{"ContainerSettings": {"Container": "MP4", "Mp4Settings": {}},
                        "VideoDescription": {"CodecSettings": {"Codec": "H_264",
                            "H264Settings": {"RateControlMode": "QVBR", "MaxBitrate": 5000000}}},
                        "AudioDescriptions": [{"CodecSettings": {"Codec": "AAC",
                            "AacSettings": {"Bitrate": 96000, "CodingMode": "CODING_MODE_2_0", "SampleRate": 48000}}}]}]
                }],
                "Inputs": [{
                    "FileInput": "s3://old/file.mp4",
                    "TimecodeSource": "ZEROBASED",
                    "AudioSelectors": {"Audio Selector 1": {"DefaultSelection": "DEFAULT"}},
                    "VideoSelector": {}
                }]
            },
            "AccelerationSettings": {"Mode": "DISABLED"},
            "StatusUpdateInterval": "SECONDS_60",
            "Priority": 0
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

struct Made {
    dir: tempfile::TempDir,
    manifest: PathBuf,
    requests: Vec<PathBuf>,
}

/// Records for every combination and provider, and every job request.
fn make_all() -> Made {
    let dir = tempfile::tempdir().unwrap();
    let keyring = LocalKeyring::open_or_create(&dir.path().join("keyring.json")).unwrap();
    let kms = FakeKms { region: KEY_REGION.into() };
    let templates = [console_template(), JobTemplate::named("hls-ladder", ROLE).unwrap()];
    let manifest = dir.path().join("manifest.jsonl");
    let mut lines = String::new();
    let mut requests = Vec::new();
    let mut n = 0;
    for (mode, iv_len, target) in combinations() {
        for provider in [&keyring as &dyn KeyProvider, &kms] {
            n += 1;
            let r = record(provider, mode, iv_len, target, n);
            lines += &serde_json::to_string(&r).unwrap();
            lines.push('\n');
            let ctx = format!("{mode} iv {iv_len} target {target} {}", provider.name());
            let Some(mc) = &r.mediaconvert else {
                assert_eq!(target, Target::ElasticTranscoder, "{ctx}");
                continue;
            };
            match provider.name() {
                "local-keyring" => {
                    assert_eq!(mc.decryption_settings.kms_key_region, None, "{ctx}: no KmsKeyRegion for the keyring");
                    let e = jobs::build_request(&r, &templates[1], &JobOptions::default()).unwrap_err().to_string();
                    assert!(e.contains("local keyring"), "{ctx}: {e}");
                    continue;
                }
                _ => assert_eq!(mc.decryption_settings.kms_key_region.as_deref(), Some(KEY_REGION), "{ctx}"),
            }
            for (t, template) in templates.iter().enumerate() {
                for job_region in [KEY_REGION, "us-east-1"] {
                    let opts = JobOptions {
                        region: Some(job_region.into()),
                        queue: (t == 1).then(|| "bulk".to_string()),
                        priority: (t == 1).then_some(-5),
                        user_metadata: [("project".to_string(), "restore".to_string())].into(),
                    };
                    let req = jobs::build_request(&r, template, &opts).unwrap();
                    let ds = &req["Settings"]["Inputs"][0]["DecryptionSettings"];
                    assert_eq!(ds["DecryptionMode"], format!("AES_{}", mode.to_string().to_uppercase()), "{ctx}");
                    assert_eq!(ds.get("KmsKeyRegion").is_some(), job_region != KEY_REGION, "{ctx} job in {job_region}");
                    let path = dir.path().join(format!("request-{}.json", requests.len()));
                    fs::write(&path, serde_json::to_vec_pretty(&req).unwrap()).unwrap();
                    requests.push(path);
                }
            }
        }
    }
    fs::write(&manifest, lines).unwrap();
    Made { dir, manifest, requests }
}

#[test]
fn every_request_and_manifest_block_is_valid_for_the_model() {
    let made = make_all();
    // 3 modes: CTR 12/16, CBC 16, GCM 12/16 → ET only for 16-byte IVs.
    assert!(made.requests.len() >= 20, "{} requests", made.requests.len());
    let (code, out) = validate(&made.requests);
    assert_eq!(code, 0, "generated requests rejected by the model:\n{out}");
    let (code, out) = validate(&[made.manifest.clone()]);
    assert_eq!(code, 0, "manifest MediaConvert blocks rejected by the model:\n{out}");
}

/// A copy of a valid request with `edit` applied, validated alone: it must fail naming `expect`.
fn must_fail(made: &Made, name: &str, edit: impl FnOnce(&mut Value), expect: &str) {
    let mut req: Value = serde_json::from_slice(&fs::read(&made.requests[0]).unwrap()).unwrap();
    edit(&mut req);
    let path = made.dir.path().join(format!("bad-{name}.json"));
    fs::write(&path, serde_json::to_vec(&req).unwrap()).unwrap();
    let (code, out) = validate(&[path]);
    assert_eq!(code, 1, "{name}: the validator accepted {req:#}");
    assert!(out.contains(expect), "{name}: expected a line about {expect}:\n{out}");
    assert!(out.lines().all(|l| l.starts_with(made.dir.path().to_str().unwrap())), "{name}: one line per problem, naming the file:\n{out}");
}

#[test]
fn the_check_catches_invalid_requests() {
    let made = make_all();
    must_fail(&made, "region-local", |r| r["Settings"]["Inputs"][0]["DecryptionSettings"]["KmsKeyRegion"] = json!("local"), "KmsKeyRegion");
    must_fail(&made, "mode", |r| r["Settings"]["Inputs"][0]["DecryptionSettings"]["DecryptionMode"] = json!("AES_XTS"), "DecryptionMode");
    must_fail(&made, "no-role", |r| { r.as_object_mut().unwrap().remove("Role"); }, "\"Role\"");
    must_fail(&made, "iv-13-bytes", |r| r["Settings"]["Inputs"][0]["DecryptionSettings"]["InitializationVector"] = json!("AAAAAAAAAAAAAAAAAA=="), "InitializationVector");
    must_fail(&made, "priority", |r| r["Priority"] = json!(51), "Priority");
    must_fail(&made, "unknown-member", |r| r["Settings"]["Inputs"][0]["DecryptionSettings"]["Kms"] = json!("x"), "Kms");
    must_fail(&made, "token-type", |r| r["ClientRequestToken"] = json!(7), "ClientRequestToken");
    // The manifest block as sealpipe wrote it before: KmsKeyRegion "local".
    let mut rec: Value = serde_json::from_str(fs::read_to_string(&made.manifest).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(rec["key_provider"], "local-keyring");
    rec["mediaconvert"]["DecryptionSettings"]["KmsKeyRegion"] = json!("local");
    let old = made.dir.path().join("old-manifest.jsonl");
    fs::write(&old, format!("{rec}\n")).unwrap();
    let (code, out) = validate(&[old]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("KmsKeyRegion") && out.contains("valid min length: 9"), "{out}");
}

/// Start the mock; (child, URL).
fn start_mock(args: &[&str]) -> (std::process::Child, String) {
    let mut child = Command::new("python3")
        .arg(repo().join("cli/tests/common/mediaconvert_mock.py"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 must be on PATH");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("mock said {line:?}")).to_string();
    (child, url)
}

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_mock_endpoint_answers_as_the_api_does() {
    let made = make_all();
    let log = made.dir.path().join("mock.log");
    let (child, url) = start_mock(&["--throttle-at", "3", "--log", log.to_str().unwrap()]);
    let _guard = Kill(child);
    // botocore's own client: the real wire format (camelCase, rest-json), no retries.
    let script = r#"
import json, sys, botocore.session
from botocore.config import Config
url, files = sys.argv[1], sys.argv[2:]
c = botocore.session.get_session().create_client('mediaconvert', region_name='us-east-1', endpoint_url=url,
    aws_access_key_id='test', aws_secret_access_key='test', config=Config(retries={'total_max_attempts': 1}))
def call(req):
    try:
        return c.create_job(**req)['Job']['Id']
    except c.exceptions.TooManyRequestsException:
        return 'throttled'
    except c.exceptions.BadRequestException as e:
        return 'bad: ' + e.response['Error']['Message']
reqs = [json.load(open(f)) for f in files[:4]]
out = [call(r) for r in reqs]              # 3rd is throttled
out.append(call(reqs[2]))                   # retried: made now
out.append(call(reqs[0]))                   # repeated token: the first job
bad = json.loads(json.dumps(reqs[1])); bad['ClientRequestToken'] = 'other'
bad['Settings']['Inputs'][0]['DecryptionSettings']['InitializationVector'] = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAA'
out.append(call(bad))                       # 7th: invalid (IV over 24 chars), caught by the mock
got = c.get_job(Id=out[0])['Job']
out.append(got['Settings']['Inputs'][0]['FileInput'])
out.append(got['ClientRequestToken'])
print(json.dumps(out))
"#;
    let files: Vec<&str> = made.requests.iter().take(4).map(|p| p.to_str().unwrap()).collect();
    let out = Command::new("python3").arg("-c").arg(script).arg(&url).args(&files).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    let reqs: Vec<Value> = files.iter().map(|f| serde_json::from_slice(&fs::read(f).unwrap()).unwrap()).collect();
    assert_eq!(got[2], "throttled", "{got:?}");
    let ids = [&got[0], &got[1], &got[3], &got[4]];
    for (i, id) in ids.iter().enumerate() {
        assert!(!id.starts_with("bad") && *id != "throttled", "request {i}: {got:?}");
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 4, "four requests, four jobs: {got:?}");
    assert_eq!(got[5], got[0], "a repeated token returns the first job");
    assert!(got[6].starts_with("bad: ") && got[6].contains("InitializationVector"), "{got:?}");
    assert_eq!(got[7], reqs[0]["Settings"]["Inputs"][0]["FileInput"]);
    assert_eq!(got[8], reqs[0]["ClientRequestToken"]);
    let logged: Vec<Value> = fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let statuses: Vec<u64> = logged.iter().map(|e| e["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [201, 201, 429, 201, 201, 201, 400, 200], "{logged:#?}");
}
