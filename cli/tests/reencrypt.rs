//! `sealpipe reencrypt` against a local moto server (S3 + KMS): legacy
//! objects made by other tools (boto3 + `openssl enc`) or by an older
//! sealpipe run are re-encrypted to GCM for MediaConvert in one pass, then
//! checked independently with Python's `cryptography` and the key from KMS
//! `Decrypt`; tampered legacy objects fail alone and leave nothing in S3.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use common::*;

const ET_CONTEXT: &str = r#"{"service": "elastictranscoder.amazonaws.com"}"#;

/// Run the binary under test. `SEALPIPE_TEST_BIN` may name a copy of it: the
/// target folder can be shared with concurrent builds of other checkouts,
/// which replace `target/debug/sealpipe` under a running test.
fn run(moto: &Server, args: &[&str]) -> Output {
    let bin = std::env::var("SEALPIPE_TEST_BIN").unwrap_or_else(|_| BIN.to_string());
    let mut cmd = Command::new(bin);
    cmd.args(args).args(["--force-path-style", "--threads", "2"]);
    aws_env(&mut cmd, &moto.url());
    cmd.env("SEALPIPE_KEYRING", "/nonexistent/sealpipe-test-keyring");
    cmd.output().unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Whether the GCM object `bucket/key` decrypts, with the MediaConvert data
/// key and IV of `record`, to the file `plain`; and the plaintext's SHA-256.
fn gcm_object_matches(moto: &Server, bucket: &str, key: &str, record: &serde_json::Value, plain: &Path) -> String {
    let settings = &record["mediaconvert"]["DecryptionSettings"];
    py(
        moto,
        "import hashlib\n\
         from cryptography.hazmat.primitives.ciphers.aead import AESGCM\n\
         body = s3.get_object(Bucket=sys.argv[1], Key=sys.argv[2])['Body'].read()\n\
         key = kms.decrypt(CiphertextBlob=base64.b64decode(sys.argv[3]), EncryptionContext=json.loads(sys.argv[4]))['Plaintext']\n\
         iv = base64.b64decode(sys.argv[5])\n\
         plain = AESGCM(key).decrypt(iv, body, None)\n\
         print(plain == open(sys.argv[6], 'rb').read(), len(iv), hashlib.sha256(plain).hexdigest())",
        &[
            bucket,
            key,
            settings["EncryptedDecryptionKey"].as_str().unwrap(),
            MC_CONTEXT,
            settings["InitializationVector"].as_str().unwrap(),
            plain.to_str().unwrap(),
        ],
    )
}

fn keys_under(moto: &Server, bucket: &str, prefix: &str) -> Vec<String> {
    let listed = py(
        moto,
        "print(' '.join(sorted(o['Key'] for o in s3.list_objects_v2(Bucket=sys.argv[1], Prefix=sys.argv[2]).get('Contents', []))))",
        &[bucket, prefix],
    );
    listed.split_whitespace().map(str::to_string).collect()
}

#[test]
fn et_object_made_with_kms_and_openssl_migrates_to_gcm_for_mediaconvert() {
    let moto = start_moto();
    let arn = setup(&moto, "archive", "alias/media");
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("clip.ts");
    std::fs::write(&plain, pattern((3 << 20) + 77, 5)).unwrap();

    // The legacy side, with tools we did not write: a KMS data key under the
    // Elastic Transcoder context, and openssl's AES-256-CBC with PKCS#7.
    let answer = py(
        &moto,
        "import hashlib\n\
         k = kms.generate_data_key(KeyId=sys.argv[1], KeySpec='AES_256', EncryptionContext=json.loads(sys.argv[2]))\n\
         print(k['Plaintext'].hex(), base64.b64encode(k['CiphertextBlob']).decode(), base64.b64encode(hashlib.md5(k['Plaintext']).digest()).decode())",
        &[&arn, ET_CONTEXT],
    );
    let [key_hex, blob, key_md5]: [&str; 3] = answer.split(' ').collect::<Vec<_>>().try_into().unwrap();
    let iv = pattern(16, 6);
    let legacy = dir.path().join("clip.legacy");
    let out = Command::new("openssl")
        .args(["enc", "-aes-256-cbc", "-nosalt", "-K", key_hex, "-iv", &hex::encode(&iv), "-in"])
        .arg(&plain)
        .arg("-out")
        .arg(&legacy)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(&legacy).unwrap().len(), (3 << 20) + 80, "PKCS#7 pads 77 odd bytes to 80");
    py(&moto, "s3.upload_file(sys.argv[1], 'archive', 'legacy/clip.ts')", &[legacy.to_str().unwrap()]);
    let et = dir.path().join("et.json");
    let settings = serde_json::json!({"Encryption": {
        "Mode": "aes-cbc-pkcs7", "Key": blob, "KeyMd5": key_md5, "InitializationVector": b64(&iv),
    }});
    std::fs::write(&et, settings.to_string()).unwrap();

    let manifest = dir.path().join("m.jsonl");
    let out = run(
        &moto,
        &[
            "reencrypt",
            "s3://archive/legacy/",
            "--et-encryption",
            et.to_str().unwrap(),
            "--to",
            "s3://archive/mc/",
            "--mode",
            "gcm",
            "--target",
            "mediaconvert",
            "--kms-key",
            "alias/media",
            "--manifest",
            manifest.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "reencrypt failed: {}", stderr(&out));
    assert!(stderr(&out).contains("re-encrypted 1 file"), "{}", stderr(&out));

    let recs = records(&manifest);
    assert_eq!(recs.len(), 1);
    let r = &recs[0];
    assert_eq!(r["source"], "s3://archive/legacy/clip.ts");
    assert_eq!(r["output"], "s3://archive/mc/clip.ts");
    assert_eq!(r["mode"], "gcm");
    assert_eq!(r["key_id"], arn.as_str());
    assert_eq!(r["plaintext_size"], (3 << 20) + 77);
    assert_eq!(r["ciphertext_size"], (3 << 20) + 77 + 16);
    let answer = gcm_object_matches(&moto, "archive", "mc/clip.ts", r, &plain);
    assert_eq!(answer, format!("True 12 {}", r["plaintext_sha256"].as_str().unwrap()));
    let out = run(&moto, &["verify", "--manifest", manifest.to_str().unwrap()]);
    assert!(out.status.success(), "verify failed: {}", stderr(&out));
    assert_eq!(open_uploads(&moto, "archive"), 0);
}

#[test]
fn old_sealpipe_cbc_run_migrates_to_gcm_from_its_s3_manifest() {
    let moto = start_moto();
    setup(&moto, "archive", "alias/media");
    let tree = tempfile::tempdir().unwrap();
    let media = tree.path().join("media");
    std::fs::create_dir_all(media.join("sub")).unwrap();
    let files = [("a.mp4", 200_003usize), ("sub/b.ts", 17), ("c.bin", 0)];
    for (i, (rel, len)) in files.iter().enumerate() {
        std::fs::write(media.join(rel), pattern(*len, 10 + i as u64)).unwrap();
    }
    let old = tree.path().join("old.jsonl");
    let out = run(
        &moto,
        &[
            "encrypt",
            media.to_str().unwrap(),
            "--to",
            "s3://archive/old/",
            "--mode",
            "cbc",
            "--target",
            "elastictranscoder",
            "--kms-key",
            "alias/media",
            "--manifest",
            old.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "legacy encrypt failed: {}", stderr(&out));
    let old_recs = records(&old);
    assert_eq!(old_recs.len(), files.len());

    // The legacy object is plain AES-256-CBC for openssl, under the key KMS
    // gives back for the Elastic Transcoder context.
    let a = old_recs.iter().find(|r| r["output"] == "s3://archive/old/a.mp4").unwrap();
    let et = &a["elastictranscoder"]["Encryption"];
    let object = tree.path().join("a.legacy");
    let key_hex = py(
        &moto,
        "s3.download_file('archive', 'old/a.mp4', sys.argv[3])\n\
         print(kms.decrypt(CiphertextBlob=base64.b64decode(sys.argv[1]), EncryptionContext=json.loads(sys.argv[2]))['Plaintext'].hex())",
        &[et["Key"].as_str().unwrap(), ET_CONTEXT, object.to_str().unwrap()],
    );
    let out = Command::new("openssl")
        .args(["enc", "-d", "-aes-256-cbc", "-K", &key_hex, "-iv", &hex::encode(b64d(et["InitializationVector"].as_str().unwrap())), "-in"])
        .arg(&object)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stdout == std::fs::read(media.join("a.mp4")).unwrap(), "openssl does not decrypt the legacy object");

    // The old manifest is read from S3.
    py(&moto, "s3.upload_file(sys.argv[1], 'archive', 'runs/old.jsonl')", &[old.to_str().unwrap()]);
    let new = tree.path().join("new.jsonl");
    let out = run(
        &moto,
        &[
            "reencrypt",
            "s3://archive/old/",
            "--from-manifest",
            "s3://archive/runs/old.jsonl",
            "--to",
            "s3://archive/new/",
            "--mode",
            "gcm",
            "--target",
            "mediaconvert",
            "--kms-key",
            "alias/media",
            "--manifest",
            new.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "reencrypt failed: {}", stderr(&out));
    let new_recs = records(&new);
    assert_eq!(new_recs.len(), files.len());
    for (rel, len) in files {
        let r = new_recs.iter().find(|r| r["output"] == format!("s3://archive/new/{rel}").as_str()).unwrap();
        let o = old_recs.iter().find(|o| o["output"] == r["source"]).unwrap();
        assert_eq!(r["source"], format!("s3://archive/old/{rel}").as_str());
        assert_eq!(r["plaintext_size"], len);
        assert_eq!(r["plaintext_sha256"], o["plaintext_sha256"]);
        let answer = gcm_object_matches(&moto, "archive", &format!("new/{rel}"), r, &media.join(rel));
        assert_eq!(answer, format!("True 12 {}", o["plaintext_sha256"].as_str().unwrap()), "{rel}");
    }
    let out = run(&moto, &["verify", "--manifest", new.to_str().unwrap()]);
    assert!(out.status.success(), "verify failed: {}", stderr(&out));
    assert_eq!(open_uploads(&moto, "archive"), 0);
}

#[test]
fn tampered_legacy_objects_fail_alone_with_no_object_and_no_open_upload() {
    let moto = start_moto();
    setup(&moto, "archive", "alias/media");
    let tree = tempfile::tempdir().unwrap();
    let (gcm, cbc) = (tree.path().join("gcm"), tree.path().join("cbc"));
    std::fs::create_dir_all(&gcm).unwrap();
    std::fs::create_dir_all(&cbc).unwrap();
    let big = (6 << 20) + 5; // over one 5 MiB part: a multipart upload
    std::fs::write(gcm.join("big.ts"), pattern(big, 20)).unwrap();
    std::fs::write(gcm.join("ok.mp4"), pattern(1000, 21)).unwrap();
    std::fs::write(cbc.join("pad.ts"), pattern(100, 22)).unwrap();
    let old = tree.path().join("old.jsonl");
    for (dir, mode) in [(&gcm, "gcm"), (&cbc, "cbc")] {
        let out = run(
            &moto,
            &["encrypt", dir.to_str().unwrap(), "--to", "s3://archive/t/", "--mode", mode, "--kms-key", "alias/media", "--manifest", old.to_str().unwrap()],
        );
        assert!(out.status.success(), "legacy encrypt failed: {}", stderr(&out));
    }
    // A byte in the middle of the GCM object (its tag then fails at the end,
    // after a part was uploaded); the CBC padding byte turned into 0.
    py(
        &moto,
        "def flip(key, at, mask):\n\
         \x20   body = bytearray(s3.get_object(Bucket='archive', Key=key)['Body'].read())\n\
         \x20   body[at] ^= mask\n\
         \x20   s3.put_object(Bucket='archive', Key=key, Body=bytes(body))\n\
         flip('t/big.ts', int(sys.argv[1]) // 2, 1)\n\
         flip('t/pad.ts', 112 - 17, 16 - 100 % 16)",
        &[&big.to_string()],
    );

    let new = tree.path().join("new.jsonl");
    let out = run(
        &moto,
        &[
            "reencrypt",
            "s3://archive/t/",
            "--from-manifest",
            old.to_str().unwrap(),
            "--to",
            "s3://archive/t2/",
            "--mode",
            "ctr",
            "--kms-key",
            "alias/media",
            "--part-size",
            "5M",
            "--manifest",
            new.to_str().unwrap(),
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for (object, cause) in [
        ("s3://archive/t/big.ts", "GCM authentication tag does not verify"),
        ("s3://archive/t/pad.ts", "bad CBC padding after decryption"),
    ] {
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(object)).collect();
        // The failure line, and its repeat in the closing summary.
        assert_eq!(lines.len(), 2, "{err}");
        assert!(lines.iter().all(|l| l.contains(&format!("{object}: {cause}"))), "{err}");
        assert_eq!(lines.iter().filter(|l| l.starts_with("sealpipe: error: ")).count(), 1, "{err}");
    }
    assert_eq!(keys_under(&moto, "archive", "t2/"), ["t2/ok.mp4"], "no new object for a tampered one");
    assert_eq!(open_uploads(&moto, "archive"), 0, "the upload of the tampered object must be aborted");
    let recs = records(&new);
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0]["source"], "s3://archive/t/ok.mp4");
}
