//! From encrypted archive to MediaConvert jobs (issue 13), through the built
//! binary: `sealpipe jobs` requests validated with botocore's own model
//! (`scripts/mediaconvert_model.py`); `--submit` against the local
//! MediaConvert endpoint (`common/mediaconvert_mock.py`, which parses each
//! request with the same model), interrupted between a job and its record and
//! re-run long after MediaConvert's one-minute token window, with no
//! duplicate job; `sealpipe policy` by structure and, for the KMS part,
//! enforced by moto's IAM; `--sse` seen by `HeadObject` on moto. The real
//! MediaConvert service is not reachable from the test machines.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::mediaconvert::start_mock;
use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// botocore's validator accepts every request in `path` (a JSON file or JSON Lines).
fn validate(path: &Path) {
    let out = Command::new("python3").arg(repo().join("scripts/mediaconvert_model.py")).arg(path).output().unwrap();
    assert!(out.status.success(), "{} invalid: {}{}", path.display(), String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

const TEMPLATE: &str = r#"{"Role": "arn:aws:iam::123456789012:role/MediaConvertRole",
 "Settings": {"Inputs": [{"AudioSelectors": {"Audio Selector 1": {"DefaultSelection": "DEFAULT"}}, "TimecodeSource": "ZEROBASED"}],
  "OutputGroups": []}}"#;

/// testdata/media encrypted with a moto KMS key for MediaConvert to `s3://media-in/archive/`,
/// with SSE-KMS and an s3:// manifest (`s3://media-in/runs/run.jsonl`); also copied locally.
/// Returns (moto, local manifest copy, key ARN, temp dir).
fn encrypted() -> (Server, PathBuf, String, tempfile::TempDir) {
    let moto = start_moto();
    let arn = setup(&moto, "media-in", "alias/media");
    let dir = tempfile::tempdir().unwrap();
    let media = repo().join("testdata/media");
    let out = sealpipe(
        &moto.url(),
        &[
            "encrypt", media.to_str().unwrap(), "--to", "s3://media-in/archive/", "--manifest", "s3://media-in/runs/run.jsonl",
            "--kms-key", "alias/media", "--target", "mediaconvert", "--mode", "ctr", "--sse", "aws:kms", "--sse-kms-key-id", &arn,
        ],
    );
    assert!(out.status.success(), "encrypt: {}", stderr(&out));
    let manifest = dir.path().join("run.jsonl");
    py(&moto, "s3.download_file('media-in', 'runs/run.jsonl', sys.argv[1])", &[manifest.to_str().unwrap()]);
    (moto, manifest, arn, dir)
}

fn jobs_lines(out: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn jobs_requests_are_valid_and_local_keyring_records_refused() {
    let (moto, manifest, arn, dir) = encrypted();
    let n = records(&manifest).len();
    assert!(n >= 2, "testdata/media has several files");
    let template = dir.path().join("template.json");
    std::fs::write(&template, TEMPLATE).unwrap();

    // JSON Lines on stdout, from the s3:// manifest itself.
    let out = sealpipe(
        &moto.url(),
        &["jobs", "--manifest", "s3://media-in/runs/run.jsonl", "--template", template.to_str().unwrap(), "--region", "us-east-1",
          "--queue", "Default", "--priority", "-5", "--user-metadata", "team=video"],
    );
    assert!(out.status.success(), "jobs: {}", stderr(&out));
    let lines = jobs_lines(&out);
    assert_eq!(lines.len(), n);
    let jsonl = dir.path().join("jobs.jsonl");
    std::fs::write(&jsonl, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    validate(&jsonl);
    let sources: Vec<String> = records(&manifest).iter().map(|r| r["source"].as_str().unwrap().to_string()).collect();
    for l in &lines {
        assert_eq!(l["Role"], "arn:aws:iam::123456789012:role/MediaConvertRole");
        assert_eq!(l["Queue"], "Default");
        assert_eq!(l["Priority"], -5);
        assert_eq!(l["UserMetadata"]["team"], "video");
        assert!(sources.iter().any(|s| s == l["UserMetadata"]["sealpipe-source"].as_str().unwrap()), "{l}");
        let input = &l["Settings"]["Inputs"][0];
        assert!(input["FileInput"].as_str().unwrap().starts_with("s3://media-in/archive/"), "{l}");
        assert_eq!(input["DecryptionSettings"]["DecryptionMode"], "AES_CTR");
        assert_eq!(input["DecryptionSettings"]["InitializationVector"].as_str().map(|iv| b64d(iv).len()), Some(16), "16-byte CTR IVs");
        assert!(input["DecryptionSettings"].get("KmsKeyRegion").is_none(), "key and job both in us-east-1: {l}");
        assert_eq!(input["TimecodeSource"], "ZEROBASED", "the template's input options are kept");
        assert_eq!(l["ClientRequestToken"].as_str().unwrap().len(), 64);
    }
    assert!(arn.contains(":us-east-1:"));
    // The same manifest gives the same requests (tokens included): deterministic.
    let again = sealpipe(&moto.url(), &["jobs", "--manifest", manifest.to_str().unwrap(), "--template", template.to_str().unwrap(),
        "--region", "us-east-1", "--queue", "Default", "--priority", "-5", "--user-metadata", "team=video"]);
    assert_eq!(jobs_lines(&again), lines);

    // --out-dir: one file per job, as `aws mediaconvert create-job --cli-input-json` takes it;
    // the jobs run in another region than the key, so KmsKeyRegion is there.
    let jobs_dir = dir.path().join("jobs");
    let out = sealpipe(
        &moto.url(),
        &["jobs", "--manifest", manifest.to_str().unwrap(), "--job-template", "System-Ott_Hls_Ts_Avc_Aac",
          "--role", "arn:aws:iam::123456789012:role/MC", "--region", "eu-west-1", "--out-dir", jobs_dir.to_str().unwrap()],
    );
    assert!(out.status.success(), "jobs --out-dir: {}", stderr(&out));
    let files: Vec<PathBuf> = std::fs::read_dir(&jobs_dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), n);
    for f in &files {
        validate(f);
        let v: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        assert_eq!(v["JobTemplate"], "System-Ott_Hls_Ts_Avc_Aac");
        assert_eq!(v["Settings"]["Inputs"][0]["DecryptionSettings"]["KmsKeyRegion"], "us-east-1");
        assert_eq!(f.file_stem().unwrap().to_str().unwrap(), v["UserMetadata"]["sealpipe-record"].as_str().unwrap());
    }

    // A local-keyring run: every record refused with one line naming it, exit 1, nothing printed.
    let keyring = dir.path().join("keyring.json");
    let local_out = dir.path().join("local");
    let media = repo().join("testdata/media");
    let out = Command::new(bin())
        .args(["encrypt", media.to_str().unwrap(), "--out", local_out.to_str().unwrap(), "--keyring", keyring.to_str().unwrap(),
               "--create-keyring", "--file-input-prefix", "s3://media-in/archive/"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(out.status.success(), "local encrypt: {}", stderr(&out));
    let out = Command::new(bin())
        .args(["jobs", "--manifest", local_out.join("manifest.jsonl").to_str().unwrap(), "--template", template.to_str().unwrap(),
               "--region", "us-east-1"])
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    let refusals: Vec<&str> = err.lines().filter(|l| l.contains("local keyring") && l.contains("--kms-key")).collect();
    assert_eq!(refusals.len(), records(&local_out.join("manifest.jsonl")).len(), "{err}");

    // Bad flags: one line, exit 2.
    for (args, says) in [
        (vec!["--template", "/nonexistent/t.json"], "--template /nonexistent/t.json"),
        (vec!["--template", template.to_str().unwrap(), "--user-metadata", "novalue"], "--user-metadata novalue"),
        (vec!["--template", template.to_str().unwrap(), "--max-rps", "0", "--submit"], "--max-rps"),
    ] {
        let mut all = vec!["jobs", "--manifest", manifest.to_str().unwrap(), "--region", "us-east-1"];
        all.extend(args);
        let out = sealpipe(&moto.url(), &all);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says) && stderr(&out).lines().count() == 1, "{all:?}: {}", stderr(&out));
    }
}

fn log_entries(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Wait (bounded) until the mock's log has an entry `pred` accepts.
fn wait_log(log: &Path, pred: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !log_entries(log).iter().any(&pred) {
        assert!(Instant::now() < deadline, "the mock never logged the awaited request: {:#?}", log_entries(log));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn submit_killed_between_a_job_and_its_record_resumes_without_duplicates() {
    let (moto, manifest, _arn, dir) = encrypted();
    drop(moto);
    let n = records(&manifest).len();
    let template = dir.path().join("template.json");
    std::fs::write(&template, TEMPLATE).unwrap();
    let log = dir.path().join("mock.log");
    // The 2nd CreateJob makes its job and is never answered (the run is killed waiting for it);
    // the 3rd and 4th are throttled (retried); a repeated token makes a new job (token window 0:
    // the re-run comes after MediaConvert's one-minute window).
    let mock = start_mock(&["--hold-at", "2", "--throttle-at", "3,4", "--token-window", "0", "--log", log.to_str().unwrap()]);
    let args = ["jobs", "--manifest", manifest.to_str().unwrap(), "--template", template.to_str().unwrap(), "--region", "us-east-1",
                "--submit", "--max-rps", "50", "--json"];
    let ledger = PathBuf::from(format!("{}.jobs.jsonl", manifest.display()));

    let mut first = sealpipe_command(&mock.url, &args[..args.len() - 3]);
    let mut child = first.args(["--max-rps", "1"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_log(&log, |e| e["held"] == true);
    child.kill().unwrap();
    child.wait().unwrap();
    let book = std::fs::read_to_string(&ledger).unwrap();
    assert!(book.lines().any(|l| l.contains("\"sending\"")), "journal before network: {book}");
    let recorded_before = book.lines().filter(|l| l.contains("job_id")).count();
    assert_eq!(recorded_before, 1, "{book}");

    // Re-run: the held job is found by its token, the rest are submitted, throttling retried.
    let out = wait_bounded(sealpipe_command(&mock.url, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap(), Duration::from_secs(180));
    assert_eq!(out.code(), Some(0), "{}", out.stderr());
    let events: Vec<Value> = out.stdout().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let summary = events.last().unwrap();
    assert_eq!(summary["event"], "summary", "{events:#?}");
    assert_eq!((summary["already_submitted"].as_u64(), summary["found"].as_u64(), summary["failed"].as_u64()), (Some(1), Some(1), Some(0)), "{summary}");
    assert_eq!(summary["submitted"].as_u64().unwrap() as usize, n - 2);
    assert_eq!(events.iter().filter(|e| e["event"] == "job").count(), n);

    // A third run submits nothing.
    let out = wait_bounded(sealpipe_command(&mock.url, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap(), Duration::from_secs(60));
    assert_eq!(out.code(), Some(0), "{}", out.stderr());
    let summary: Value = serde_json::from_str(out.stdout().lines().last().unwrap()).unwrap();
    assert_eq!((summary["submitted"].as_u64(), summary["already_submitted"].as_u64().map(|v| v as usize)), (Some(0), Some(n)));

    // The endpoint made exactly one job per record; the throttled requests were retried.
    let logged = log_entries(&log);
    assert_eq!(logged.iter().filter(|e| e["status"] == 429).count(), 2, "{logged:#?}");
    let created: Vec<&Value> = logged.iter().filter(|e| e["new"] == true).collect();
    assert_eq!(created.len(), n, "no duplicate job: {logged:#?}");
    let mut tokens: Vec<&str> = created.iter().map(|e| e["token"].as_str().unwrap()).collect();
    tokens.sort_unstable();
    tokens.dedup();
    assert_eq!(tokens.len(), n);
}

#[test]
fn policy_prints_the_role_and_principal_policies() {
    let arn = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let out = Command::new(bin()).args(["policy", "--kms-key", arn, "--to", "s3://media-in/2019/"]).env("AWS_EC2_METADATA_DISABLED", "true").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kms_key"], arn);
    for (svc, principal) in [("mediaconvert", "mediaconvert.amazonaws.com"), ("elastictranscoder", "elastictranscoder.amazonaws.com")] {
        let st = &v["service_roles"][svc]["Statement"][0];
        assert_eq!(st["Effect"], "Allow");
        assert_eq!(st["Action"], serde_json::json!(["kms:Decrypt"]));
        assert_eq!(st["Resource"], arn);
        assert_eq!(st["Condition"]["StringEquals"]["kms:EncryptionContext:service"], principal);
    }
    let statements = v["encrypting_principal"]["Statement"].as_array().unwrap();
    let actions: Vec<&str> = statements.iter().flat_map(|s| s["Action"].as_array().unwrap().iter().map(|a| a.as_str().unwrap())).collect();
    for a in ["kms:GenerateDataKey", "kms:Encrypt", "kms:DescribeKey", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListBucket", "s3:GetObject"] {
        assert!(actions.contains(&a), "{a} missing: {v:#}");
    }
    assert!(!actions.contains(&"kms:Decrypt"), "encrypting needs no Decrypt: {v:#}");
    let resources = serde_json::to_string(statements).unwrap();
    assert!(resources.contains("arn:aws:s3:::media-in/2019/*"), "{resources}");

    // --target mediaconvert: that role only; --decrypts adds kms:Decrypt; an alias is refused.
    let out = Command::new(bin()).args(["policy", "--kms-key", arn, "--target", "mediaconvert", "--decrypts"]).env("AWS_EC2_METADATA_DISABLED", "true").output().unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["service_roles"].get("elastictranscoder").is_none());
    assert!(serde_json::to_string(&v["encrypting_principal"]).unwrap().contains("kms:Decrypt"), "{v:#}");
    let out = Command::new(bin()).args(["policy", "--kms-key", "alias/media"]).env("AWS_EC2_METADATA_DISABLED", "true").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("ARN") && stderr(&out).lines().count() == 1, "{}", stderr(&out));
}

/// The printed policy, attached to a user of moto's IAM (enforced with
/// INITIAL_NO_AUTH_ACTION_COUNT), lets that user run `sealpipe encrypt` to S3
/// with KMS; kms:Decrypt, which it does not grant, is refused. What moto
/// enforces: S3 actions against bucket and object ARNs; KMS actions only
/// against Resource "*" (it does not resolve a request's key ARN) and with no
/// `kms:EncryptionContext:*` condition keys (a statement with one never
/// matches); and it authorizes HeadBucket as a made-up "s3:HeadBucket". So the KMS statements are widened to "*" without their
/// condition here, and "s3:HeadBucket" added; their key ARN and condition are checked by structure in
/// `policy_prints_the_role_and_principal_policies` and in format::policy.
#[test]
fn printed_policy_lets_a_principal_run_encrypt_under_moto_iam() {
    let moto = start_moto_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "6")]);
    // Six unauthenticated setup calls (key, alias, bucket, user, access key, policy); then IAM is enforced.
    let arn = setup(&moto, "media-in", "alias/media");
    let out = sealpipe(&moto.url(), &["policy", "--kms-key", &arn, "--target", "mediaconvert", "--to", "s3://media-in/enc/"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let creds = principal_under_moto_iam(&moto, &out, &arn);
    let dir = tempfile::tempdir().unwrap();
    let media = repo().join("testdata/media");
    let manifest = dir.path().join("run.jsonl");
    let mut cmd = sealpipe_command(
        &moto.url(),
        &["encrypt", media.to_str().unwrap(), "--to", "s3://media-in/enc/", "--kms-key", "alias/media", "--target", "mediaconvert",
          "--manifest", manifest.to_str().unwrap()],
    );
    let out = cmd.env("AWS_ACCESS_KEY_ID", &creds[0]).env("AWS_SECRET_ACCESS_KEY", &creds[1]).output().unwrap();
    assert!(out.status.success(), "encrypt under the printed policy: {}", stderr(&out));
    assert!(!records(&manifest).is_empty());

    // Outside the policy: another prefix (S3), and kms:Decrypt (verify needs --decrypts).
    let mut cmd = sealpipe_command(
        &moto.url(),
        &["encrypt", media.to_str().unwrap(), "--to", "s3://media-in/elsewhere/", "--kms-key", "alias/media", "--target", "mediaconvert",
          "--manifest", dir.path().join("other.jsonl").to_str().unwrap()],
    );
    let out = cmd.env("AWS_ACCESS_KEY_ID", &creds[0]).env("AWS_SECRET_ACCESS_KEY", &creds[1]).output().unwrap();
    assert_ne!(out.status.code(), Some(0), "a prefix outside the policy must be refused");
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
    let mut cmd = sealpipe_command(&moto.url(), &["verify", "--manifest", manifest.to_str().unwrap()]);
    let out = cmd.env("AWS_ACCESS_KEY_ID", &creds[0]).env("AWS_SECRET_ACCESS_KEY", &creds[1]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "kms:Decrypt is not in the policy: {}", stderr(&out));
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
}

/// The encrypting principal's policy `policy` printed, made enforceable by
/// moto's IAM (see above), attached to a new user: its access key and secret.
fn principal_under_moto_iam(moto: &Server, printed: &std::process::Output, arn: &str) -> Vec<String> {
    let v: Value = serde_json::from_slice(&printed.stdout).unwrap();
    let mut policy = v["encrypting_principal"].clone();
    for st in policy["Statement"].as_array_mut().unwrap() {
        if st["Action"].as_array().unwrap().iter().any(|a| a.as_str().unwrap().starts_with("kms:")) {
            assert_eq!(st["Resource"], arn);
            st["Resource"] = "*".into();
            st.as_object_mut().unwrap().remove("Condition");
        }
        // moto authorizes HeadBucket as "s3:HeadBucket", which is not an IAM action: AWS checks
        // s3:ListBucket for it (in the policy already).
        if st["Action"].as_array().unwrap().iter().any(|a| a == "s3:ListBucket") {
            st["Action"].as_array_mut().unwrap().push("s3:HeadBucket".into());
        }
    }
    let creds = py(
        moto,
        "iam = boto3.client('iam', endpoint_url=os.environ['AWS_ENDPOINT_URL'])\n\
         iam.create_user(UserName='encrypter')\n\
         a = iam.create_access_key(UserName='encrypter')['AccessKey']\n\
         iam.put_user_policy(UserName='encrypter', PolicyName='sealpipe', PolicyDocument=sys.argv[1])\n\
         print(json.dumps([a['AccessKeyId'], a['SecretAccessKey']]))",
        &[&policy.to_string()],
    );
    serde_json::from_str(&creds).unwrap()
}

/// Issue 20, `sealpipe policy` for a whole S3 run: the policy printed with
/// `--from` (sources), `--run-manifest` (an s3:// manifest and its lease)
/// and `--copy-tags` lets a principal under moto's IAM run S3 -> S3 with
/// an s3:// manifest, tags copied; a source outside `--from` is refused.
#[test]
fn printed_policy_covers_sources_the_manifest_its_lease_and_tags() {
    // Setup without authorization: key, alias, two buckets, two objects, user, access key, policy.
    let moto = start_moto_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "9")]);
    let arn = setup(&moto, "media-in", "alias/media");
    py(&moto, "s3.create_bucket(Bucket='raw-src')\ns3.put_object(Bucket='raw-src', Key='raw/a.ts', Body=b'a' * 100, Tagging='show=news')\ns3.put_object(Bucket='raw-src', Key='other/b.ts', Body=b'b')", &[]);
    let out = sealpipe(
        &moto.url(),
        &["policy", "--kms-key", &arn, "--target", "mediaconvert", "--to", "s3://media-in/enc/", "--from", "s3://raw-src/raw/", "--run-manifest", "s3://media-in/runs/m.jsonl", "--copy-tags"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let creds = principal_under_moto_iam(&moto, &out, &arn);
    let run = |from: &str, to: &str| {
        let mut cmd = sealpipe_command(&moto.url(), &["encrypt", from, "--to", to, "--kms-key", "alias/media", "--target", "mediaconvert", "--manifest", "s3://media-in/runs/m.jsonl"]);
        cmd.env("AWS_ACCESS_KEY_ID", &creds[0]).env("AWS_SECRET_ACCESS_KEY", &creds[1]).output().unwrap()
    };
    let out = run("s3://raw-src/raw/", "s3://media-in/enc/");
    assert!(out.status.success(), "encrypt S3 -> S3 under the printed policy: {}", stderr(&out));
    // (That the tags arrived is checked in s3::properties_and_tags_follow_the_object: here boto3's
    // own credentials are no longer authorized.)
    let out = run("s3://raw-src/other/", "s3://media-in/enc/");
    assert_ne!(out.status.code(), Some(0), "a source outside --from is refused: {}", stderr(&out));
    assert!(stderr(&out).contains("AccessDenied") || stderr(&out).contains("access denied"), "{}", stderr(&out));
}

fn head(moto: &Server, key: &str) -> Value {
    let text = py(moto, "h = s3.head_object(Bucket='media-in', Key=sys.argv[1]); print(json.dumps({k: h.get(k) for k in ('ServerSideEncryption', 'SSEKMSKeyId', 'BucketKeyEnabled')}))", &[key]);
    serde_json::from_str(&text).unwrap()
}

#[test]
fn sse_kms_is_applied_to_single_part_and_multipart_uploads_and_recorded() {
    let moto = start_moto();
    let arn = setup(&moto, "media-in", "alias/media");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("small.ts"), pattern(100_000, 1)).unwrap();
    std::fs::write(src.join("big.ts"), pattern(12 << 20, 2)).unwrap();
    let out = sealpipe(
        &moto.url(),
        &["encrypt", src.to_str().unwrap(), "--to", "s3://media-in/enc/", "--manifest", "s3://media-in/runs/sse.jsonl",
          "--kms-key", "alias/media", "--part-size", "5MiB", "--sse", "aws:kms", "--sse-kms-key-id", &arn, "--bucket-key-enabled"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    for key in ["enc/small.ts", "enc/big.ts", "runs/sse.jsonl"] {
        let h = head(&moto, key);
        assert_eq!(h["ServerSideEncryption"], "aws:kms", "{key}: {h}");
        assert!(h["SSEKMSKeyId"].as_str().is_some_and(|k| k.ends_with(arn.rsplit('/').next().unwrap())), "{key}: {h}");
    }
    let manifest = dir.path().join("sse.jsonl");
    py(&moto, "s3.download_file('media-in', 'runs/sse.jsonl', sys.argv[1])", &[manifest.to_str().unwrap()]);
    let recs = records(&manifest);
    assert_eq!(recs.len(), 2);
    for r in &recs {
        assert_eq!(r["server_side_encryption"]["algorithm"], "aws:kms", "{r}");
        assert!(r["server_side_encryption"]["kms_key_id"].as_str().is_some(), "{r}");
    }

    // --sse alone is AES256 (as the AWS CLI reads it).
    let out = sealpipe(&moto.url(), &["encrypt", src.join("small.ts").to_str().unwrap(), "--to", "s3://media-in/aes/", "--kms-key", "alias/media", "--sse",
        "--manifest", dir.path().join("aes.jsonl").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(head(&moto, "aes/small.ts")["ServerSideEncryption"], "AES256");
    assert_eq!(records(&dir.path().join("aes.jsonl"))[0]["server_side_encryption"]["algorithm"], "AES256");

    // KMS options without a KMS algorithm: one line, exit 2, nothing uploaded.
    for bad in [vec!["--sse-kms-key-id", arn.as_str()], vec!["--sse", "AES256", "--bucket-key-enabled"]] {
        let mut args = vec!["encrypt", src.to_str().unwrap(), "--to", "s3://media-in/bad/", "--kms-key", "alias/media"];
        args.extend(bad.iter().copied());
        let out = sealpipe(&moto.url(), &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("--sse") && stderr(&out).lines().count() == 1, "{}", stderr(&out));
    }
    assert_eq!(py(&moto, "print(s3.list_objects_v2(Bucket='media-in', Prefix='bad/').get('KeyCount', 0))", &[]), "0");
}

/// A bucket whose policy refuses unencrypted uploads answers AccessDenied (played by the
/// fault proxy: moto does not evaluate bucket policies); the line names --sse.
#[test]
fn access_denied_upload_without_sse_names_the_flag() {
    let moto = start_moto();
    setup(&moto, "media-in", "alias/media");
    let proxy = FaultProxy::start(moto.port, r#"{"rules": [{"op": ["PutObject", "CreateMultipartUpload"], "bucket": "media-in", "key_regex": "^enc/", "action": "status", "status": 403, "code": "AccessDenied"}]}"#);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clip.ts");
    std::fs::write(&src, pattern(1000, 3)).unwrap();
    let out = sealpipe(&proxy.url(), &["encrypt", src.to_str().unwrap(), "--to", "s3://media-in/enc/", "--kms-key", "alias/media",
        "--manifest", dir.path().join("m.jsonl").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    let line = err.lines().find(|l| l.contains("AccessDenied")).unwrap_or_else(|| panic!("{err}"));
    assert!(line.contains("clip.ts") && line.contains("--sse"), "{line}");
}
