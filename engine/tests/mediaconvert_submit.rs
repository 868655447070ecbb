//! `engine::aws::mediaconvert::submit` through the AWS SDK for MediaConvert
//! against the local endpoint (`cli/tests/common/mediaconvert_mock.py`),
//! which parses every request with botocore's model: the wire body is
//! accepted, throttling is retried, a repeated token returns the first job,
//! an invalid request is one line naming `BadRequestException`.
//! The real service is not reachable from the test machines.
#![cfg(feature = "aws")]

use std::time::Duration;

use serde_json::{json, Value};

#[path = "../../cli/tests/common/mediaconvert.rs"]
mod mediaconvert_endpoint;
use mediaconvert_endpoint::start_mock;

use sealpipe::run::submit::{self as mediaconvert, aws_sdk_mediaconvert as mc, Backoff};
use sealpipe::format::jobs::{self, JobOptions, JobTemplate};
use sealpipe::format::record::Record;

/// A KMS-wrapped record as a manifest holds it.
fn record(n: usize, mode: &str, iv: &str) -> Record {
    let blob = format!("AQIDAH{}", "A".repeat(200));
    serde_json::from_value(json!({
        "source": format!("/archive/clip-{n}.mp4"),
        "output": format!("s3://media-in/archive/clip-{n}.mp4"),
        "plaintext_size": 1000, "ciphertext_size": 1000,
        "mode": mode, "key_bits": 256,
        "key_provider": "aws-kms",
        "key_id": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "key_source": "generated", "target": "mediaconvert",
        "encryption_context": {"service": "mediaconvert.amazonaws.com"},
        "encrypted_data_key": blob, "iv": iv, "key_md5": "AAAAAAAAAAAAAAAAAAAAAA==",
        "plaintext_sha256": "00".repeat(32),
        "mediaconvert": {"FileInput": format!("s3://media-in/archive/clip-{n}.mp4"),
            "DecryptionSettings": {"DecryptionMode": format!("AES_{}", mode.to_uppercase()),
                "EncryptedDecryptionKey": blob, "InitializationVector": iv, "KmsKeyRegion": "eu-west-1"}},
        "finished_unix": 0
    }))
    .unwrap()
}

fn template() -> JobTemplate {
    JobTemplate::from_request_json(
        json!({
            "Role": "arn:aws:iam::123456789012:role/MediaConvert_Default_Role",
            "UserMetadata": {"Team": "Video"},
            "Settings": {
                "OutputGroups": [{"Name": "File Group", "OutputGroupSettings": {"Type": "FILE_GROUP_SETTINGS",
                    "FileGroupSettings": {"Destination": "s3://media-out/"}}}],
                "Inputs": [{"TimecodeSource": "ZEROBASED",
                    "AudioSelectors": {"Audio Selector 1": {"DefaultSelection": "DEFAULT"}},
                    "CaptionSelectors": {"Captions Selector 1": {"SourceSettings": {"SourceType": "EMBEDDED"}}},
                    "VideoSelector": {}}]
            },
            "AccelerationSettings": {"Mode": "DISABLED"},
            "StatusUpdateInterval": "SECONDS_60"
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

fn client(url: &str, attempts: u32) -> mc::Client {
    let config = mc::Config::builder()
        .behavior_version(mc::config::BehaviorVersion::latest())
        .region(mc::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(mc::config::Credentials::new("test", "test", None, None, "test"))
        .retry_config(mc::config::retry::RetryConfig::standard().with_max_attempts(attempts).with_initial_backoff(Duration::from_millis(5)))
        .build();
    mc::Client::from_conf(config)
}

#[test]
fn submit_through_the_sdk_to_the_mock() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mock.log");
    // CreateJob calls 2, 3 and 4 are throttled.
    let mock = start_mock(&["--throttle-at", "2,3,4", "--log", log.to_str().unwrap()]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let t = template();
    let opts = JobOptions { region: Some("us-east-1".into()), priority: Some(5), ..Default::default() };
    let requests: Vec<Value> = [("ctr", "AAECAwQFBgcICQoLDA0ODw=="), ("gcm", "AAECAwQFBgcICQoL"), ("cbc", "AAECAwQFBgcICQoLDA0ODw==")]
        .iter()
        .enumerate()
        .map(|(n, (mode, iv))| jobs::build_request(&record(n, mode, iv), &t, &opts).unwrap())
        .collect();
    // No SDK retries: our backoff handles the throttling.
    let sdk = client(&mock.url, 1);
    let fast = Backoff { retries: 4, initial: Duration::from_millis(10), max: Duration::from_millis(50) };
    let ids: Vec<String> = requests.iter().map(|r| rt.block_on(mediaconvert::submit(&sdk, r, &fast)).unwrap()).collect();
    assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), 3, "{ids:?}");
    // Submitting again (a resumed run) makes no new job.
    let again = rt.block_on(mediaconvert::submit(&sdk, &requests[0], &fast)).unwrap();
    assert_eq!(again, ids[0]);
    // Throttled beyond the retries: one line naming the error.
    let mock2 = start_mock(&["--throttle-every", "1"]);
    let sdk2 = client(&mock2.url, 1);
    let none = Backoff { retries: 1, initial: Duration::from_millis(1), max: Duration::from_millis(1) };
    let e = rt.block_on(mediaconvert::submit(&sdk2, &requests[0], &none)).unwrap_err().to_string();
    assert!(e.contains("TooManyRequestsException") && !e.contains('\n'), "{e}");
    // The SDK's own retries also cover throttling.
    let mock3 = start_mock(&["--throttle-at", "1,2"]);
    let sdk3 = client(&mock3.url, 3);
    let none = Backoff { retries: 0, ..none };
    assert!(rt.block_on(mediaconvert::submit(&sdk3, &requests[1], &none)).is_ok());
    // An invalid request: the mock's model check answers 400.
    let mut bad = requests[2].clone();
    bad["Settings"]["Inputs"][0]["DecryptionSettings"]["KmsKeyRegion"] = json!("local");
    bad["ClientRequestToken"] = json!("bad-1");
    let e = rt.block_on(mediaconvert::submit(&sdk, &bad, &fast)).unwrap_err().to_string();
    assert!(e.contains("BadRequestException") && e.contains("KmsKeyRegion") && e.contains("clip-2.mp4"), "{e}");
    drop(mock);
    let logged: Vec<Value> = std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let statuses: Vec<u64> = logged.iter().map(|e| e["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [201, 429, 429, 429, 201, 201, 201, 400], "{logged:#?}");
    let new_jobs = logged.iter().filter(|e| e["new"] == true).count();
    assert_eq!(new_jobs, 3, "three files, three jobs");
}
