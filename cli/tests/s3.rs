//! The AWS path against a real local endpoint: a moto server (S3 + KMS with
//! the AWS wire protocol) started per test on a free loopback port and
//! stopped by a guard, driven through the real aws-sdk clients of the built
//! binary. Setup and the independent checks use Python's boto3 (installed
//! with `moto[server]`, see scripts/test.sh) and `openssl enc`.


mod common;

use std::path::Path;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
#[test]
fn encrypt_to_s3_with_kms_matches_openssl_and_verifies() {
    let moto = start_moto();
    let arn = setup(&moto, "media-in", "alias/media");
    let tree = media_tree();
    let manifest = tree.root.join("run.jsonl");
    let out = sealpipe(
        &moto.url(),
        &[
            "encrypt",
            tree.media.to_str().unwrap(),
            "--to",
            "s3://media-in/2019/",
            "--kms-key",
            "alias/media",
            "--part-size",
            "5M",
            "--concurrency",
            "2",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "encrypt failed: {}", stderr(&out));

    let recs = records(&manifest);
    assert_eq!(recs.len(), 4);
    for r in &recs {
        let rel = Path::new(r["source"].as_str().unwrap()).strip_prefix(&tree.media).unwrap().to_str().unwrap().to_string();
        let url = format!("s3://media-in/2019/{rel}");
        assert_eq!(r["output"], url.as_str());
        assert_eq!(r["key_provider"], "aws-kms");
        assert_eq!(r["key_id"], arn.as_str());
        let mc = &r["mediaconvert"];
        assert_eq!(mc["FileInput"], url.as_str());
        assert_eq!(mc["DecryptionSettings"]["KmsKeyRegion"], "us-east-1");
        assert!(r["etag"].as_str().is_some_and(|e| !e.is_empty()), "no ETag in {r}");
        assert!(!r.to_string().contains("plaintext_key"));

        // Independently: the object bytes, the data key from KMS Decrypt with
        // the MediaConvert context, and KMS refusing it without the context.
        let blob = mc["DecryptionSettings"]["EncryptedDecryptionKey"].as_str().unwrap();
        let object = tree.root.join("object.bin");
        let answer = py(
            &moto,
            "s3.download_file('media-in', sys.argv[1], sys.argv[2])\n\
             blob = base64.b64decode(sys.argv[3])\n\
             key = kms.decrypt(CiphertextBlob=blob, EncryptionContext=json.loads(sys.argv[4]))['Plaintext']\n\
             try:\n    kms.decrypt(CiphertextBlob=blob); refused = 'accepted'\n\
             except kms.exceptions.InvalidCiphertextException:\n    refused = 'refused'\n\
             print(key.hex(), refused)",
            &[&format!("2019/{rel}"), object.to_str().unwrap(), blob, MC_CONTEXT],
        );
        let (key_hex, refused) = answer.split_once(' ').unwrap();
        assert_eq!(refused, "refused", "KMS must refuse the key without its encryption context");
        assert_eq!(key_hex.len(), 64);
        let iv = b64d(mc["DecryptionSettings"]["InitializationVector"].as_str().unwrap());
        assert_eq!(iv.len(), 16);
        let source = Path::new(r["source"].as_str().unwrap());
        let want = openssl_ctr(source, key_hex, &iv);
        assert!(std::fs::read(&object).unwrap() == want, "{rel}: object differs from openssl enc");
        if rel == "big.ts" {
            // Uploaded in 3 parts, checksummed.
            assert!(r["etag"].as_str().unwrap().trim_matches('"').ends_with("-3"), "{}", r["etag"]);
        }
    }
    assert_eq!(open_uploads(&moto, "media-in"), 0);

    let out = sealpipe(&moto.url(), &["verify", "--manifest", manifest.to_str().unwrap()]);
    assert!(out.status.success(), "verify failed: {}", stderr(&out));

    let back = tree.root.join("big.back");
    let out = sealpipe(
        &moto.url(),
        &["decrypt", "s3://media-in/2019/big.ts", "--manifest", manifest.to_str().unwrap(), "--out", back.to_str().unwrap()],
    );
    assert!(out.status.success(), "decrypt failed: {}", stderr(&out));
    assert!(std::fs::read(&back).unwrap() == std::fs::read(tree.media.join("big.ts")).unwrap());

    // An object replaced after encryption is caught by its ETag.
    py(&moto, "s3.put_object(Bucket='media-in', Key='2019/small.mp4', Body=b'x' * 100000)", &[]);
    let out = sealpipe(&moto.url(), &["verify", "--manifest", manifest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("s3://media-in/2019/small.mp4") && stderr(&out).contains("changed"), "{}", stderr(&out));
}

#[test]
fn gcm_with_crc64nvme_round_trips_through_s3() {
    let moto = start_moto();
    setup(&moto, "media-gcm", "alias/gcm");
    let tree = media_tree();
    let manifest = tree.root.join("gcm.jsonl");
    let out = sealpipe(
        &moto.url(),
        &[
            "encrypt",
            tree.media.join("big.ts").to_str().unwrap(),
            "--to",
            "s3://media-gcm/x",
            "--kms-key",
            "alias/gcm",
            "--mode",
            "gcm",
            "--key-bits",
            "128",
            "--part-size",
            "5M",
            "--checksum",
            "crc64nvme",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "encrypt failed: {}", stderr(&out));
    let r = &records(&manifest)[0];
    assert_eq!(r["output"], "s3://media-gcm/x/big.ts");
    assert_eq!(r["ciphertext_size"], (12 << 20) + 123 + 16);
    // Python `cryptography` decrypts the object with the key from KMS.
    let ok = py(
        &moto,
        "from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n\
         body = s3.get_object(Bucket='media-gcm', Key='x/big.ts')['Body'].read()\n\
         key = kms.decrypt(CiphertextBlob=base64.b64decode(sys.argv[1]), EncryptionContext=json.loads(sys.argv[2]))['Plaintext']\n\
         plain = AESGCM(key).decrypt(base64.b64decode(sys.argv[3]), body, None)\n\
         print(plain == open(sys.argv[4], 'rb').read())",
        &[
            r["encrypted_data_key"].as_str().unwrap(),
            MC_CONTEXT,
            r["iv"].as_str().unwrap(),
            tree.media.join("big.ts").to_str().unwrap(),
        ],
    );
    assert_eq!(ok, "True");
    let out = sealpipe(&moto.url(), &["verify", "--manifest", manifest.to_str().unwrap()]);
    assert!(out.status.success(), "verify failed: {}", stderr(&out));
    assert_eq!(open_uploads(&moto, "media-gcm"), 0);
}

#[test]
fn rejected_part_aborts_the_multipart_upload() {
    let moto = start_moto();
    setup(&moto, "media-fail", "alias/fail");
    let proxy = start_proxy(moto.port, "fail:2");
    let tree = media_tree();
    let manifest = tree.root.join("fail.jsonl");
    let out = sealpipe(
        &proxy.url(),
        &[
            "encrypt",
            tree.media.join("big.ts").to_str().unwrap(),
            "--to",
            "s3://media-fail/p/",
            "--kms-key",
            "alias/fail",
            "--part-size",
            "5M",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // The failure line (and its repeat in the closing summary) names the object and the cause.
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("s3://media-fail/p/big.ts")).collect();
    assert!(!lines.is_empty(), "{err}");
    for line in lines {
        assert!(line.contains("UploadPart 2") && line.contains("part rejected by the test proxy"), "{err}");
    }
    assert_eq!(open_uploads(&moto, "media-fail"), 0, "the failed upload must be aborted");
    let listed = py(&moto, "print(s3.list_objects_v2(Bucket='media-fail').get('KeyCount', 0))", &[]);
    assert_eq!(listed, "0", "no partial object");
}

#[test]
fn bad_inputs_fail_with_one_clear_line() {
    let moto = start_moto();
    setup(&moto, "media-ok", "alias/ok");
    let tree = media_tree();
    let input = tree.media.join("small.mp4");
    let manifest = tree.root.join("bad.jsonl");
    let run = |env_url: &str, extra: &[&str]| -> (Option<i32>, String) {
        let mut args = vec!["encrypt", input.to_str().unwrap(), "--manifest", manifest.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = sealpipe(env_url, &args);
        (out.status.code(), stderr(&out))
    };
    let one_line = |err: &str| {
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected one line, got: {err}");
    };

    let (code, err) = run(&moto.url(), &["--to", "s3://no-such-bucket/x/", "--kms-key", "alias/ok"]);
    assert_eq!(code, Some(2), "{err}");
    one_line(&err);
    assert!(err.contains("s3://no-such-bucket/") && err.contains("bucket does not exist"), "{err}");

    let (code, err) = run(&moto.url(), &["--to", "s3://media-ok/x/", "--kms-key", "alias/missing"]);
    assert_eq!(code, Some(2), "{err}");
    one_line(&err);
    assert!(err.contains("alias/missing") && err.contains("does not exist"), "{err}");

    // No credentials anywhere (instance metadata disabled, no files).
    let mut cmd = Command::new(BIN);
    cmd.args(["encrypt", input.to_str().unwrap(), "--to", "s3://media-ok/x/", "--kms-key", "alias/ok", "--force-path-style"]);
    aws_env(&mut cmd, &moto.url());
    cmd.env_remove("AWS_ACCESS_KEY_ID").env_remove("AWS_SECRET_ACCESS_KEY");
    let out = cmd.output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    one_line(&err);
    assert!(err.to_lowercase().contains("credentials"), "{err}");

    // Unreachable endpoint: a port nothing listens on.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut cmd = Command::new(BIN);
    cmd.args(["encrypt", input.to_str().unwrap(), "--to", "s3://media-ok/x/", "--force-path-style", "--manifest"])
        .arg(&manifest);
    aws_env(&mut cmd, &dead);
    cmd.env("SEALPIPE_KEYRING", tree.root.join("keyring.json")).env("AWS_MAX_ATTEMPTS", "1");
    let out = cmd.output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    one_line(&err);
    assert!(err.contains("s3://media-ok/"), "{err}");

    assert!(!manifest.exists(), "no manifest for refused runs");
    assert_eq!(open_uploads(&moto, "media-ok"), 0);
    let _ = std::io::stderr().flush();
}

#[test]
fn sigterm_mid_upload_aborts_open_uploads() {
    let moto = start_moto();
    setup(&moto, "media-int", "alias/int");
    // Every part takes 1 s to go through, so the run is surely mid-upload when signalled.
    let proxy = start_proxy(moto.port, "delay:1");
    let tree = media_tree();
    let manifest = tree.root.join("int.jsonl");
    let mut cmd = Command::new(BIN);
    cmd.args(["encrypt", tree.media.join("big.ts").to_str().unwrap(), "--to", "s3://media-int/p/", "--kms-key", "alias/int"])
        .args(["--part-size", "5M", "--concurrency", "1", "--force-path-style", "--manifest"])
        .arg(&manifest)
        // A signal aborts at once (the graceful stop is tests/evict.rs's).
        .args(["--grace-seconds", "0"])
        .stderr(Stdio::piped());
    aws_env(&mut cmd, &proxy.url());
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while open_uploads(&moto, "media-int") == 0 {
        assert!(Instant::now() < deadline, "the upload never started");
        assert!(child.try_wait().unwrap().is_none(), "sealpipe exited before it was signalled");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(stderr(&out).contains("aborted 1 open multipart upload"), "{}", stderr(&out));
    assert_eq!(open_uploads(&moto, "media-int"), 0, "the interrupted upload must be aborted");
}

#[test]
fn supplied_key_is_wrapped_with_kms_encrypt_under_the_context() {
    let moto = start_moto();
    setup(&moto, "media-key", "alias/key");
    let tree = media_tree();
    let key_file = tree.root.join("key.bin");
    let key = pattern(24, 9); // AES-192
    std::fs::write(&key_file, &key).unwrap();
    let manifest = tree.root.join("key.jsonl");
    let out = sealpipe(
        &moto.url(),
        &[
            "encrypt",
            tree.media.join("small.mp4").to_str().unwrap(),
            "--to",
            "s3://media-key/",
            "--kms-key",
            "alias/key",
            "--data-key-file",
            key_file.to_str().unwrap(),
            "--target",
            "elastictranscoder",
            "--checksum",
            "none",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "encrypt failed: {}", stderr(&out));
    let r = &records(&manifest)[0];
    assert_eq!(r["output"], "s3://media-key/small.mp4");
    assert_eq!(r["key_source"], "supplied");
    let blob = r["elastictranscoder"]["Encryption"]["Key"].as_str().unwrap();
    let unwrapped = py(
        &moto,
        "print(kms.decrypt(CiphertextBlob=base64.b64decode(sys.argv[1]), EncryptionContext=json.loads(sys.argv[2]))['Plaintext'].hex())",
        &[blob, r#"{"service": "elastictranscoder.amazonaws.com"}"#],
    );
    assert_eq!(unwrapped, hex::encode(&key));
    let out = sealpipe(&moto.url(), &["verify", "--manifest", manifest.to_str().unwrap()]);
    assert!(out.status.success(), "verify failed: {}", stderr(&out));
}

/// Upload the files of `tree.media` to `bucket` under `prefix`, plus a
/// sibling `<prefix minus slash>x/other` that listing `prefix` must skip.
fn upload_tree(moto: &Server, tree: &Tree, bucket: &str, prefix: &str) {
    py(
        moto,
        "root, bucket, prefix = sys.argv[1], sys.argv[2], sys.argv[3]\n\
         for d, _, names in os.walk(root):\n\
         \x20   for n in names:\n\
         \x20       p = os.path.join(d, n)\n\
         \x20       s3.upload_file(p, bucket, prefix + os.path.relpath(p, root))\n\
         s3.put_object(Bucket=bucket, Key=prefix.rstrip('/') + 'x/other', Body=b'not listed')",
        &[tree.media.to_str().unwrap(), bucket, prefix],
    );
}

#[test]
fn s3_prefix_migrates_to_s3_matching_openssl_with_an_s3_manifest() {
    let moto = start_moto();
    setup(&moto, "media-in", "alias/mig");
    py(&moto, "s3.create_bucket(Bucket='old-archive')", &[]);
    let tree = media_tree();
    upload_tree(&moto, &tree, "old-archive", "raw/");
    let out = sealpipe(
        &moto.url(),
        &[
            "encrypt",
            "s3://old-archive/raw/",
            "--to",
            "s3://media-in/mig/",
            "--kms-key",
            "alias/mig",
            "--part-size",
            "5M",
            "--concurrency",
            "3",
            "--manifest",
            "s3://media-in/runs/mig.jsonl",
        ],
    );
    assert!(out.status.success(), "encrypt failed: {}", stderr(&out));
    assert!(stderr(&out).contains("manifest: s3://media-in/runs/mig.jsonl"), "{}", stderr(&out));

    // The manifest is an object now.
    let manifest = tree.root.join("mig.jsonl");
    py(&moto, "s3.download_file('media-in', 'runs/mig.jsonl', sys.argv[1])", &[manifest.to_str().unwrap()]);
    let recs = records(&manifest);
    let mut rels: Vec<String> = Vec::new();
    for r in &recs {
        let source = r["source"].as_str().unwrap();
        let rel = source.strip_prefix("s3://old-archive/raw/").unwrap_or_else(|| panic!("source {source}")).to_string();
        let url = format!("s3://media-in/mig/{rel}");
        assert_eq!(r["output"], url.as_str());
        assert_eq!(r["mediaconvert"]["FileInput"], url.as_str());
        let blob = r["mediaconvert"]["DecryptionSettings"]["EncryptedDecryptionKey"].as_str().unwrap();
        let object = tree.root.join("object.bin");
        let key_hex = py(
            &moto,
            "s3.download_file('media-in', sys.argv[1], sys.argv[2])\n\
             print(kms.decrypt(CiphertextBlob=base64.b64decode(sys.argv[3]), EncryptionContext=json.loads(sys.argv[4]))['Plaintext'].hex())",
            &[&format!("mig/{rel}"), object.to_str().unwrap(), blob, MC_CONTEXT],
        );
        let iv = b64d(r["mediaconvert"]["DecryptionSettings"]["InitializationVector"].as_str().unwrap());
        // openssl of the source object's bytes (uploaded from this local file).
        let want = openssl_ctr(&tree.media.join(&rel), &key_hex, &iv);
        assert!(std::fs::read(&object).unwrap() == want, "{rel}: object differs from openssl enc of the source object");
        if rel == "big.ts" {
            assert!(r["etag"].as_str().unwrap().trim_matches('"').ends_with("-3"), "{}", r["etag"]);
        }
        rels.push(rel);
    }
    rels.sort();
    assert_eq!(rels, ["big.ts", "small.mp4", "sub/empty.bin", "sub/tiny.aac"]);
    assert_eq!(open_uploads(&moto, "media-in"), 0);

    let out = sealpipe(&moto.url(), &["verify", "--manifest", "s3://media-in/runs/mig.jsonl"]);
    assert!(out.status.success(), "verify failed: {}", stderr(&out));
    assert!(stderr(&out).contains("verified 4 files"), "{}", stderr(&out));

    // S3 to a local folder, and decrypt of one object with the S3 manifest.
    let local = tree.root.join("local");
    let out = sealpipe(&moto.url(), &["encrypt", "s3://old-archive/raw/sub", "--out", local.to_str().unwrap(), "--kms-key", "alias/mig"]);
    assert!(out.status.success(), "encrypt to --out failed: {}", stderr(&out));
    assert!(local.join("tiny.aac").is_file() && local.join("empty.bin").is_file());
    let out = sealpipe(&moto.url(), &["verify", "--manifest", local.join("manifest.jsonl").to_str().unwrap()]);
    assert!(out.status.success(), "verify of local outputs failed: {}", stderr(&out));
    let back = tree.root.join("big.back");
    let out = sealpipe(
        &moto.url(),
        &["decrypt", "s3://media-in/mig/big.ts", "--manifest", "s3://media-in/runs/mig.jsonl", "--out", back.to_str().unwrap()],
    );
    assert!(out.status.success(), "decrypt failed: {}", stderr(&out));
    assert!(std::fs::read(&back).unwrap() == std::fs::read(tree.media.join("big.ts")).unwrap());
}

// `object_replaced_between_listing_and_reading_fails_cleanly` lived here: it slept 1.5 s and
// raced the run. `faults_findings::finding_12_object_replaced_while_held_fails_cleanly_without_races`
// checks the same, holding the first GET at the proxy until the objects are replaced.

#[test]
fn s3_inventory_csv_gz_and_list_file_inputs() {
    let moto = start_moto();
    setup(&moto, "media-in", "alias/inv");
    py(&moto, "s3.create_bucket(Bucket='archive'); s3.create_bucket(Bucket='inv')", &[]);
    let dir = tempfile::tempdir().unwrap();
    let keys = ["shows/a b.ts", "shows/c+d.ts", "shows/été/e.mp4", "shows/big.ts"];
    for (i, key) in keys.iter().enumerate() {
        let path = dir.path().join(format!("obj{i}"));
        let len = if key.ends_with("big.ts") { (6 << 20) + 11 } else { 1000 + i * 333 };
        std::fs::write(&path, pattern(len, 40 + i as u64)).unwrap();
        py(&moto, "s3.upload_file(sys.argv[1], 'archive', sys.argv[2])", &[path.to_str().unwrap(), key]);
    }
    let made = py(
        &moto,
        r#"
import csv, gzip, io, hashlib, urllib.parse
rows = []
for o in s3.list_objects_v2(Bucket='archive')['Contents']:
    rows.append(['archive', urllib.parse.quote_plus(o['Key'], safe='/'), str(o['Size']), o['ETag'].strip('"'), 'true', 'false'])
rows.append(['archive', 'shows/gone.ts', '5', 'abc', 'true', 'true'])     # delete marker
rows.append(['archive', 'shows/old.ts', '5', 'abc', 'false', 'false'])    # an older version
files = []
for n, part in enumerate([rows[:3], rows[3:]]):
    buf = io.StringIO(); csv.writer(buf, quoting=csv.QUOTE_ALL).writerows(part)
    data = gzip.compress(buf.getvalue().encode())
    key = 'archive/daily/data/part-%d.csv.gz' % n
    s3.put_object(Bucket='inv', Key=key, Body=data)
    files.append({'key': key, 'size': len(data), 'MD5checksum': hashlib.md5(data).hexdigest()})
manifest = {'sourceBucket': 'archive', 'destinationBucket': 'arn:aws:s3:::inv', 'version': '2016-11-30',
            'creationTimestamp': '1700000000000', 'fileFormat': 'CSV',
            'fileSchema': 'Bucket, Key, Size, ETag, IsLatest, IsDeleteMarker', 'files': files}
s3.put_object(Bucket='inv', Key='archive/daily/2026-11-21T01-00Z/manifest.json', Body=json.dumps(manifest).encode())
print(len(rows))
"#,
        &[],
    );
    assert_eq!(made, "6");
    let manifest = dir.path().join("inv.jsonl");
    let out = sealpipe(
        &moto.url(),
        &[
            "encrypt",
            "--inventory",
            "s3://inv/archive/daily/2026-11-21T01-00Z/manifest.json",
            "--to",
            "s3://media-in/enc/",
            "--kms-key",
            "alias/inv",
            "--part-size",
            "5M",
            "--manifest",
            manifest.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(out.status.success(), "encrypt failed: {}", stderr(&out));
    let recs = records(&manifest);
    let mut sources: Vec<&str> = recs.iter().map(|r| r["source"].as_str().unwrap()).collect();
    sources.sort();
    let mut want: Vec<String> = keys.iter().map(|k| format!("s3://archive/{k}")).collect();
    want.sort();
    assert_eq!(sources, want, "exactly the current objects, keys decoded");
    for r in &recs {
        let key = r["source"].as_str().unwrap().strip_prefix("s3://archive/").unwrap();
        assert_eq!(r["output"], format!("s3://media-in/enc/{key}").as_str(), "outputs keep the object key");
    }
    let verify = sealpipe(&moto.url(), &["verify", "--manifest", manifest.to_str().unwrap()]);
    assert!(verify.status.success(), "verify failed: {}", stderr(&verify));

    // The same objects named by a list file (sizes and ETags by HEAD), to another prefix.
    let list = dir.path().join("list.txt");
    std::fs::write(&list, format!("# nightly\n{}\n\n", want.join("\n"))).unwrap();
    let manifest2 = dir.path().join("list.jsonl");
    let out = sealpipe(
        &moto.url(),
        &["encrypt", "--from-list", list.to_str().unwrap(), "--to", "s3://media-in/fromlist/", "--kms-key", "alias/inv", "--manifest", manifest2.to_str().unwrap()],
    );
    assert!(out.status.success(), "encrypt failed: {}", stderr(&out));
    assert_eq!(records(&manifest2).len(), keys.len());
    let verify = sealpipe(&moto.url(), &["verify", "--manifest", manifest2.to_str().unwrap()]);
    assert!(verify.status.success(), "verify failed: {}", stderr(&verify));
    assert_eq!(open_uploads(&moto, "media-in"), 0);
}

/// Issue 12: object options as `aws s3 cp` spells them, on PutObject and on
/// multipart uploads; without --manifest, the manifest goes to the state folder.
#[test]
fn object_options_and_the_default_manifest() {
    let moto = start_moto();
    setup(&moto, "media-in", "alias/media");
    let tree = media_tree();
    let state = tree.root.join("state");
    let out = sealpipe_command(
        &moto.url(),
        &[
            "encrypt", tree.media.to_str().unwrap(), "--to", "s3://media-in/opts/", "--kms-key", "alias/media", "--part-size", "5MiB",
            "--storage-class", "STANDARD_IA", "--content-type", "video/mp2t", "--metadata", "project=archive,year=2019",
            "--max-attempts", "2", "--connect-timeout", "5", "--read-timeout", "30",
        ],
    )
    .env("XDG_STATE_HOME", &state)
    .current_dir(&tree.root)
    .output()
    .unwrap();
    assert!(out.status.success(), "encrypt failed: {}", stderr(&out));
    let manifest = state.join("sealpipe/media-in_opts.jsonl");
    assert!(stderr(&out).contains(&format!("manifest: {}", manifest.display())), "{}", stderr(&out));
    assert_eq!(records(&manifest).len(), 4);
    assert!(!tree.root.join("sealpipe-manifest.jsonl").exists());
    for key in ["opts/big.ts", "opts/small.mp4"] {
        let head = py(
            &moto,
            "h = s3.head_object(Bucket='media-in', Key=sys.argv[1])\n\
             m = h.get('Metadata'); e = m.pop('sealpipe-envelope'); m.pop('sealpipe-source')\n\
             print(json.dumps([h.get('StorageClass'), h.get('ContentType'), m, json.loads(e)['v']]))",
            &[key],
        );
        let head: serde_json::Value = serde_json::from_str(&head).unwrap();
        // --metadata beside the envelope and the source's name that every output carries.
        assert_eq!(head, serde_json::json!(["STANDARD_IA", "video/mp2t", {"project": "archive", "year": "2019"}, 1]), "{key}");
    }
}

/// Issue 24, finding 1: a destination equal to, inside or around a source
/// prefix is refused before any work (exit 2, naming both), `--force` or
/// not; sources and the bucket stay as they were, no key is asked for.
#[test]
fn finding_1_destination_overlapping_an_s3_source_is_refused() {
    let moto = start_moto();
    setup(&moto, "hls", "alias/overlap");
    let tree = media_tree();
    upload_tree(&moto, &tree, "hls", "raw/");
    let before = objects_under(&moto, "hls", "");
    let cases = [
        ("s3://hls/raw/", "s3://hls/raw/", "is the same prefix as"),
        ("s3://hls/raw", "s3://hls/raw/", "is the same prefix as"),
        ("s3://hls/raw/", "s3://hls/raw/zz/", "lies inside"),
        ("s3://hls/", "s3://hls/enc/", "lies inside"),
        ("s3://hls/raw/", "s3://hls/", "contains"),
    ];
    for (source, to, how) in cases {
        for force in [false, true] {
            let mut args = vec!["encrypt", source, "--to", to, "--kms-key", "alias/overlap"];
            if force {
                args.push("--force");
            }
            let out = sealpipe(&moto.url(), &args);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{source} -> {to}: {err}");
            assert!(err.contains(source.trim_end_matches('/')) && err.contains(to) && err.contains(how), "{source} -> {to}: {err}");
            assert_eq!(objects_under(&moto, "hls", ""), before, "{source} -> {to}: the bucket changed");
        }
    }
    // A list entry whose output would be itself (the key kept below an empty prefix): refused alone, `--force` too.
    let key = before.iter().find(|k| k.starts_with("raw/")).unwrap().clone();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, format!("s3://hls/{key}\n")).unwrap();
    let manifest = dir.path().join("m.jsonl");
    let out = sealpipe(&moto.url(), &["encrypt", "--from-list", list.to_str().unwrap(), "--to", "s3://hls/", "--kms-key", "alias/overlap", "--force", "--manifest", manifest.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&key) && err.contains("is this source itself"), "{err}");
    assert_eq!(objects_under(&moto, "hls", ""), before, "the list entry's source was written");
    // Apart: a sibling prefix whose name starts like the source's is not inside it.
    let out = sealpipe(&moto.url(), &["encrypt", "s3://hls/raw", "--to", "s3://hls/rawenc/", "--kms-key", "alias/overlap"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Issue 24, finding 2: S3 keys are names. S3 -> S3 keeps every key byte
/// for byte below the destination prefix (`//`, a leading `/`, unicode,
/// trailing spaces); folder markers are left out and said, from a prefix
/// and from a list alike; into a local folder, a key with an empty segment
/// is refused alone naming it; two sources for one output are refused when
/// planned, both named.
#[test]
fn finding_2_keys_are_names_byte_for_byte() {
    let moto = start_moto();
    setup(&moto, "zoo-out", "alias/zoo");
    let keys = ["k/dbl//slash.ts", "k/dbl/slash.ts", "k//lead.ts", "k/uni/é café.ts", "k/space .ts "];
    py(
        &moto,
        "import json\n\
         s3.create_bucket(Bucket='zoo'); s3.create_bucket(Bucket='zoo2')\n\
         for i, k in enumerate(json.loads(sys.argv[1])): s3.put_object(Bucket='zoo', Key=k, Body=bytes([i]) * (1000 + i))\n\
         s3.put_object(Bucket='zoo', Key='k/folder/', Body=b'')\n\
         s3.put_object(Bucket='zoo2', Key='k/dbl/slash.ts', Body=b'other bucket')",
        &[&serde_json::to_string(&keys).unwrap()],
    );
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.jsonl");
    let out = sealpipe(&moto.url(), &["encrypt", "s3://zoo/k/", "--to", "s3://zoo-out/e/", "--kms-key", "alias/zoo", "--manifest", manifest.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("s3://zoo/k/folder/: folder marker"), "{err}");
    let mut expected: Vec<String> = keys.iter().map(|k| format!("e/{}", &k[2..])).collect();
    expected.sort();
    assert_eq!(objects_under(&moto, "zoo-out", "e/"), expected, "{err}");
    let recs = records(&manifest);
    assert_eq!(recs.len(), keys.len());
    for r in &recs {
        let source = r["source"].as_str().unwrap();
        let key = source.strip_prefix("s3://zoo/k/").unwrap();
        assert_eq!(r["output"].as_str().unwrap(), format!("s3://zoo-out/e/{key}"), "one record per key, each its own object");
    }
    let v = sealpipe(&moto.url(), &["verify", "--manifest", manifest.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(0), "every record decrypts its own object: {}", stderr(&v));

    // The same folder marker named by a list file: left out the same way.
    let list = dir.path().join("list.txt");
    std::fs::write(&list, "s3://zoo/k/folder/\n").unwrap();
    let out = sealpipe(&moto.url(), &["encrypt", "--from-list", list.to_str().unwrap(), "--to", "s3://zoo-out/l/", "--kms-key", "alias/zoo", "--manifest", dir.path().join("l.jsonl").to_str().unwrap()]);
    assert!(stderr(&out).contains("s3://zoo/k/folder/: folder marker"), "{}", stderr(&out));
    assert!(objects_under(&moto, "zoo-out", "l/").is_empty(), "no 0-byte object made of a folder marker");

    // Into a local folder: keys with an empty segment have no file name of their own.
    let local = dir.path().join("out");
    let out = sealpipe(&moto.url(), &["encrypt", "s3://zoo/k/", "--out", local.to_str().unwrap(), "--kms-key", "alias/zoo"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("s3://zoo/k/dbl//slash.ts") && err.contains("s3://zoo/k//lead.ts") && err.contains("cannot be a local file name"), "{err}");
    assert!(local.join("dbl/slash.ts").is_file() && local.join("uni/é café.ts").is_file() && local.join("space .ts ").is_file(), "{err}");
    assert!(!local.join("lead.ts").exists(), "k//lead.ts collapsed onto lead.ts");

    // Two sources, one output: the second is refused when planned, both named.
    std::fs::write(&list, "s3://zoo/k/dbl/slash.ts\ns3://zoo2/k/dbl/slash.ts\n").unwrap();
    let out = sealpipe(&moto.url(), &["encrypt", "--from-list", list.to_str().unwrap(), "--to", "s3://zoo-out/c/", "--kms-key", "alias/zoo", "--threads", "1", "--max-concurrent-requests", "1", "--force", "--manifest", dir.path().join("c.jsonl").to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("s3://zoo2/k/dbl/slash.ts") && err.contains("also the output of s3://zoo/k/dbl/slash.ts"), "{err}");
    assert_eq!(records(&dir.path().join("c.jsonl")).len(), 1);
}

/// Issue 24, "every committed ciphertext carries its own key": each output
/// object holds its envelope in its own user metadata (one part and
/// multipart alike), inside S3's 2 KB; with the manifest lost, one command
/// rebuilds it from the objects and `verify` of the rebuilt manifest
/// passes; `decrypt --envelope` needs no manifest at all.
#[test]
fn every_output_carries_its_envelope_and_a_lost_manifest_is_rebuilt_from_them() {
    let moto = start_moto();
    setup(&moto, "env-out", "alias/env");
    let (_guard, media) = media_files(&[1_000, 0, 6 << 20]);
    std::fs::write(media.join("é café.ts"), pattern(3_000, 9)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.jsonl");
    let out = sealpipe(
        &moto.url(),
        &["encrypt", media.to_str().unwrap(), "--to", "s3://env-out/enc/", "--kms-key", "alias/env", "--part-size", "5M", "--manifest", manifest.to_str().unwrap(), "--metadata", "team=media"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let original = records(&manifest);
    assert_eq!(original.len(), 4);
    // Every object's user metadata: the envelope (and the source) beside --metadata, all within 2 KB.
    let sizes = py(
        &moto,
        "import json\n\
         for o in s3.list_objects_v2(Bucket='env-out', Prefix='enc/')['Contents']:\n\
         \x20   m = s3.head_object(Bucket='env-out', Key=o['Key'])['Metadata']\n\
         \x20   e = json.loads(m['sealpipe-envelope'])\n\
         \x20   assert e['v'] == 1 and len(e['keys']) == 2 and m['team'] == 'media', m\n\
         \x20   print(o['Key'], len('sealpipe-envelope') + len(m['sealpipe-envelope']), sum(len(k) + len(v) for k, v in m.items()), m.get('sealpipe-source', ''), sep='\\t')",
        &[],
    );
    let lines: Vec<&str> = sizes.lines().collect();
    assert_eq!(lines.len(), 4, "{sizes}");
    for line in &lines {
        let f: Vec<&str> = line.split('\t').collect();
        let (envelope, all): (usize, usize) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        eprintln!("envelope of {}: {envelope} bytes; all user metadata {all} bytes", f[0]);
        assert!(all <= 2048, "{line}");
        assert!(f[3].starts_with("/") && f[3].ends_with(".ts"), "the source, percent-encoded: {line}");
    }
    assert!(sizes.contains("%C3%A9 caf%C3%A9.ts"), "non-ASCII bytes percent-encoded: {sizes}");

    // Every manifest copy lost: rebuilt from the objects, verified, decrypted.
    std::fs::remove_file(&manifest).unwrap();
    let rebuilt = dir.path().join("rebuilt.jsonl");
    let r = sealpipe(&moto.url(), &["rebuild-manifest", "s3://env-out/enc/", "--manifest", rebuilt.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let back = records(&rebuilt);
    assert_eq!(back.len(), 4, "{}", stderr(&r));
    for o in &original {
        let b = back.iter().find(|b| b["output"] == o["output"]).expect("a record for every object");
        for field in ["source", "mode", "key_bits", "key_id", "iv", "encrypted_data_key", "key_md5", "plaintext_size", "ciphertext_size", "mediaconvert", "elastictranscoder"] {
            assert_eq!(b[field], o[field], "{field} of {}", o["output"]);
        }
        assert_eq!(b["digest"]["alg"], "none", "no digest is claimed");
    }
    let v = sealpipe(&moto.url(), &["verify", "--manifest", rebuilt.to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
    assert!(stderr(&v).contains("4 file(s) carry no digest"), "{}", stderr(&v));
    // A second rebuild refuses to replace it without --force.
    let again = sealpipe(&moto.url(), &["rebuild-manifest", "s3://env-out/enc/", "--manifest", rebuilt.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    let plain = dir.path().join("f02.plain");
    let d = sealpipe(&moto.url(), &["decrypt", "s3://env-out/enc/f02.ts", "--envelope", "--out", plain.to_str().unwrap()]);
    assert_eq!(d.status.code(), Some(0), "{}", stderr(&d));
    assert!(std::fs::read(&plain).unwrap() == pattern(6 << 20, 102), "decrypted from its envelope alone");
}

/// Issue 20, storage classes: GLACIER and DEEP_ARCHIVE objects are never
/// read blindly. Each is reported with its class and the fix, counted apart,
/// no key is made for it, and the exit code (4) says work remains;
/// `--dry-run` counts them; `--restore` asks for each restore once; a later
/// run encrypts what was restored. GLACIER_IR and STANDARD_IA read as usual.
#[test]
fn archived_objects_are_reported_restored_on_request_and_encrypted_once_restored() {
    let moto = start_moto();
    setup(&moto, "cold-out", "alias/cold");
    py(
        &moto,
        "s3.create_bucket(Bucket='cold')\n\
         for k, c in [('a.ts', 'STANDARD'), ('b.ts', 'GLACIER'), ('c.ts', 'DEEP_ARCHIVE'), ('d.ts', 'GLACIER_IR'), ('e.ts', 'STANDARD_IA')]:\n\
         \x20   s3.put_object(Bucket='cold', Key='raw/' + k, Body=k.encode() * 500, StorageClass=c)",
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.jsonl");
    let m = manifest.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["encrypt", "s3://cold/raw/", "--to", "s3://cold-out/enc/", "--kms-key", "alias/cold", "--manifest", m, "--json"];
        args.extend_from_slice(extra);
        sealpipe(&moto.url(), &args)
    };
    let summary = |out: &std::process::Output| -> serde_json::Value {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str(text.lines().last().unwrap_or("{}")).unwrap()
    };
    let dry = run(&["--dry-run"]);
    assert_eq!(dry.status.code(), Some(4), "{}", stderr(&dry));
    let s = summary(&dry);
    assert_eq!((s["files"].as_u64(), s["archived"].as_u64(), s["archived_bytes"].as_u64()), (Some(3), Some(2), Some(2 * 2_000)), "{s}");

    let first = run(&[]);
    let err = stderr(&first);
    assert_eq!(first.status.code(), Some(4), "work remains: {err}");
    assert!(err.contains("s3://cold/raw/b.ts: archived (GLACIER): cannot be read until restored; --restore"), "{err}");
    assert!(err.contains("s3://cold/raw/c.ts: archived (DEEP_ARCHIVE)"), "{err}");
    let s = summary(&first);
    assert_eq!((s["files"].as_u64(), s["archived"].as_u64(), s["failed"].as_u64(), s["key_requests"].as_u64()), (Some(3), Some(2), Some(0), Some(6)), "keys for the 3 readable files only (2 requests each, --target any): {s}");
    assert_eq!(objects_under(&moto, "cold-out", "enc/"), ["enc/a.ts", "enc/d.ts", "enc/e.ts"]);

    let restoring = run(&["--restore", "days=2,tier=Standard"]);
    let err = stderr(&restoring);
    assert_eq!(restoring.status.code(), Some(4), "{err}");
    assert!(err.contains("b.ts: archived (GLACIER): restore requested (Standard tier, 2 days)"), "{err}");
    let s = summary(&restoring);
    assert_eq!((s["files"].as_u64(), s["skipped"].as_u64(), s["restores_requested"].as_u64()), (Some(0), Some(3), Some(2)), "{s}");
    let asked = py(&moto, "print(s3.head_object(Bucket='cold', Key='raw/b.ts').get('Restore'))", &[]);
    assert!(asked.contains("ongoing-request"), "RestoreObject was sent: {asked}");

    // moto restores at once: the next run reads them, once.
    let last = run(&[]);
    assert_eq!(last.status.code(), Some(0), "{}", stderr(&last));
    let s = summary(&last);
    assert_eq!((s["files"].as_u64(), s["skipped"].as_u64(), s["archived"].as_u64()), (Some(2), Some(3), Some(0)), "{s}");
    assert_eq!(records(&manifest).len(), 5);
    let v = sealpipe(&moto.url(), &["verify", "--manifest", m]);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
}

/// Issue 20, properties follow the object as `aws s3 cp` copies them: an S3
/// source's Content-Type, Cache-Control, Content-Disposition,
/// Content-Language, user metadata and tags reach its output (with the
/// AWS CLI's `--copy-props` to keep fewer, and flags that override); a
/// local file's Content-Type is guessed from its extension, right for
/// media; the envelope always goes, and copied metadata that would push
/// the whole past 2 KB is dropped, said.
#[test]
fn properties_and_tags_follow_the_object() {
    let moto = start_moto();
    setup(&moto, "props-out", "alias/props");
    py(
        &moto,
        "import datetime\ns3.create_bucket(Bucket='props')\n\
         s3.put_object(Bucket='props', Key='raw/list.m3u8', Body=b'#EXTM3U\\n' * 50, ContentType='application/vnd.apple.mpegurl', CacheControl='max-age=60', ContentDisposition='inline', ContentLanguage='en', Expires=datetime.datetime(2030, 1, 2, 3, 4, 5), Metadata={'camera': 'a7'}, Tagging='show=news&year=2019')\n\
         s3.put_object(Bucket='props', Key='big/huge-meta.ts', Body=b'x' * 100, ContentType='video/mp2t', Metadata={'notes': 'n' * 1500})",
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let head = |key: &str| -> serde_json::Value {
        let text = py(
            &moto,
            "h = s3.head_object(Bucket='props-out', Key=sys.argv[1]); m = h['Metadata']\n\
             t = {x['Key']: x['Value'] for x in s3.get_object_tagging(Bucket='props-out', Key=sys.argv[1])['TagSet']}\n\
             print(json.dumps({'type': h.get('ContentType'), 'expires': h.get('ExpiresString'), 'cache': h.get('CacheControl'), 'disposition': h.get('ContentDisposition'), 'language': h.get('ContentLanguage'), 'envelope': 'sealpipe-envelope' in m, 'meta': {k: v for k, v in m.items() if not k.startswith('sealpipe-')}, 'tags': t}))",
            &[key],
        );
        serde_json::from_str(&text).unwrap()
    };
    let encrypt = |from: &str, to: &str, extra: &[&str]| {
        let manifest = dir.path().join(format!("{}.jsonl", to.replace('/', "_")));
        let mut args = vec!["encrypt", from, "--to", to, "--kms-key", "alias/props", "--manifest", manifest.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = sealpipe(&moto.url(), &args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        out
    };
    encrypt("s3://props/raw/", "s3://props-out/all/", &[]);
    assert_eq!(
        head("all/list.m3u8"),
        serde_json::json!({"type": "application/vnd.apple.mpegurl", "expires": "Wed, 02 Jan 2030 03:04:05 GMT", "cache": "max-age=60", "disposition": "inline", "language": "en", "envelope": true, "meta": {"camera": "a7"}, "tags": {"show": "news", "year": "2019"}})
    );
    encrypt("s3://props/raw/", "s3://props-out/md/", &["--copy-props", "metadata-directive", "--cache-control", "no-store"]);
    let h = head("md/list.m3u8");
    assert_eq!((&h["meta"], &h["tags"], &h["cache"], &h["type"]), (&serde_json::json!({"camera": "a7"}), &serde_json::json!({}), &serde_json::json!("no-store"), &serde_json::json!("application/vnd.apple.mpegurl")), "{h}");
    encrypt("s3://props/raw/", "s3://props-out/none/", &["--copy-props", "none"]);
    let h = head("none/list.m3u8");
    assert_eq!((&h["type"], &h["meta"], &h["tags"], &h["envelope"]), (&serde_json::json!("application/octet-stream"), &serde_json::json!({}), &serde_json::json!({}), &serde_json::json!(true)), "{h}");
    // The envelope goes first: 1.5 KB of copied metadata does not fit beside it, and is said dropped.
    let out = encrypt("s3://props/big/", "s3://props-out/big/", &[]);
    assert!(stderr(&out).contains("user metadata (notes) is not copied"), "{}", stderr(&out));
    let h = head("big/huge-meta.ts");
    assert_eq!((&h["meta"], &h["envelope"], &h["type"]), (&serde_json::json!({}), &serde_json::json!(true), &serde_json::json!("video/mp2t")), "{h}");

    // Local files: the Content-Type from the extension, unless --content-type says one.
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    for name in ["a.m3u8", "b.ts", "c.mp4", "d.m4s", "e.vtt", "f.bin"] {
        std::fs::write(media.join(name), b"data").unwrap();
    }
    encrypt(media.to_str().unwrap(), "s3://props-out/local/", &[]);
    for (name, t) in [("a.m3u8", "application/vnd.apple.mpegurl"), ("b.ts", "video/mp2t"), ("c.mp4", "video/mp4"), ("d.m4s", "video/iso.segment"), ("e.vtt", "text/vtt"), ("f.bin", "application/octet-stream")] {
        assert_eq!(head(&format!("local/{name}"))["type"], t, "{name}");
    }
    encrypt(media.to_str().unwrap(), "s3://props-out/typed/", &["--content-type", "video/mp4"]);
    assert_eq!(head("typed/a.m3u8")["type"], "video/mp4");
}

/// Issue 20, versions: a record names the source version it read and, in a
/// versioned destination, the output's version; a key whose newest version
/// is a delete marker is said deleted, not "no such object".
#[test]
fn versions_are_recorded_and_a_delete_marker_is_said() {
    let moto = start_moto();
    setup(&moto, "ver-out", "alias/ver");
    let ids = py(
        &moto,
        "for b in ['ver', 'ver-out']:\n\
         \x20   s3.create_bucket(Bucket=b) if b == 'ver' else None\n\
         \x20   s3.put_bucket_versioning(Bucket=b, VersioningConfiguration={'Status': 'Enabled'})\n\
         s3.put_object(Bucket='ver', Key='raw/a.ts', Body=b'old' * 100)\n\
         v2 = s3.put_object(Bucket='ver', Key='raw/a.ts', Body=b'new' * 100)['VersionId']\n\
         s3.put_object(Bucket='ver', Key='gone/b.ts', Body=b'b' * 10)\n\
         s3.delete_object(Bucket='ver', Key='gone/b.ts')\n\
         print(v2)",
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.jsonl");
    let out = sealpipe(&moto.url(), &["encrypt", "s3://ver/raw/", "--to", "s3://ver-out/enc/", "--kms-key", "alias/ver", "--manifest", manifest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = &records(&manifest)[0];
    assert_eq!(r["source_version_id"], ids.trim(), "the newest version was read: {r}");
    let stored = py(&moto, "print(s3.head_object(Bucket='ver-out', Key='enc/a.ts')['VersionId'])", &[]);
    assert_eq!(r["output_version_id"], stored.trim(), "{r}");

    let list = dir.path().join("list.txt");
    std::fs::write(&list, "s3://ver/gone/b.ts\n").unwrap();
    let out = sealpipe(&moto.url(), &["encrypt", "--from-list", list.to_str().unwrap(), "--to", "s3://ver-out/l/", "--kms-key", "alias/ver", "--manifest", dir.path().join("l.jsonl").to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("s3://ver/gone/b.ts") && err.contains("deleted: its newest version is a delete marker"), "{err}");
}

/// Issue 20, a KMS key in another region: a key ARN's region is where its
/// KMS calls go (moto keeps keys per region, as KMS does), with `--region`
/// (us-east-1) only the default; MediaConvert's KmsKeyRegion follows the key,
/// and verify unwraps the records' keys there too.
#[test]
fn a_kms_key_in_another_region_is_called_there() {
    let moto = start_moto();
    setup(&moto, "kms-far", "alias/unused");
    let arn = py(&moto, "k = boto3.client('kms', region_name='eu-west-1', endpoint_url=os.environ['AWS_ENDPOINT_URL']).create_key()['KeyMetadata']\nprint(k['Arn'])", &[]);
    let arn = arn.trim();
    assert!(arn.contains(":eu-west-1:"), "{arn}");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clip.mp4");
    std::fs::write(&src, pattern(5_000, 3)).unwrap();
    let manifest = dir.path().join("m.jsonl");
    let out = sealpipe(&moto.url(), &["encrypt", src.to_str().unwrap(), "--to", "s3://kms-far/enc/", "--kms-key", arn, "--region", "us-east-1", "--manifest", manifest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = &records(&manifest)[0];
    assert_eq!(r["key_id"], arn);
    assert_eq!(r["mediaconvert"]["DecryptionSettings"]["KmsKeyRegion"], "eu-west-1", "{r}");
    let v = sealpipe(&moto.url(), &["verify", "--manifest", manifest.to_str().unwrap(), "--region", "us-east-1"]);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
}

/// Issue 20, a list entry that names a version (`?versionId=`, as S3's
/// console links do): exactly that version is read and recorded, though a
/// newer one exists; its output keeps the key's name.
#[test]
fn a_list_entry_naming_a_version_reads_exactly_that_version() {
    let moto = start_moto();
    setup(&moto, "pin-out", "alias/pin");
    let v1 = py(
        &moto,
        "s3.create_bucket(Bucket='pin')\n\
         s3.put_bucket_versioning(Bucket='pin', VersioningConfiguration={'Status': 'Enabled'})\n\
         v1 = s3.put_object(Bucket='pin', Key='raw/a.ts', Body=b'first' * 100)['VersionId']\n\
         s3.put_object(Bucket='pin', Key='raw/a.ts', Body=b'second' * 100)\n\
         print(v1)",
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.txt");
    std::fs::write(&list, format!("s3://pin/raw/a.ts?versionId={v1}\n")).unwrap();
    let manifest = dir.path().join("m.jsonl");
    let out = sealpipe(&moto.url(), &["encrypt", "--from-list", list.to_str().unwrap(), "--to", "s3://pin-out/enc/", "--kms-key", "alias/pin", "--manifest", manifest.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let r = &records(&manifest)[0];
    assert_eq!((r["source"].as_str(), r["source_version_id"].as_str(), r["plaintext_size"].as_u64()), (Some("s3://pin/raw/a.ts"), Some(v1.as_str()), Some(500)), "{r}");
    assert_eq!(objects_under(&moto, "pin-out", "enc/"), ["enc/raw/a.ts"]);
    let plain = dir.path().join("a.plain");
    let d = sealpipe(&moto.url(), &["decrypt", "s3://pin-out/enc/raw/a.ts", "--manifest", manifest.to_str().unwrap(), "--out", plain.to_str().unwrap()]);
    assert_eq!(d.status.code(), Some(0), "{}", stderr(&d));
    assert_eq!(std::fs::read(&plain).unwrap(), b"first".repeat(100), "the version named, not the newest");
}
