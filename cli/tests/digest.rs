//! `--digest`: every algorithm through encrypt → manifest → verify, checked
//! against values nobody here computed (the published BLAKE3 and
//! CRC-64/NVME check values, Python's `hashlib` for SHA-256), a corrupted
//! ciphertext byte, records in the format before `--digest`, and
//! re-encryption from one algorithm to another.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sealpipe");

/// `sealpipe args…` with a keyring of `dir`'s own.
fn sealpipe(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("SEALPIPE_KEYRING", dir.join("keyring.json"))
        .env("HOME", dir)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("XDG_STATE_HOME")
        .output()
        .expect("run sealpipe")
}

#[track_caller]
fn ok(out: Output) -> Output {
    assert!(out.status.success(), "sealpipe failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

/// The `--json` summary (the last stdout line).
fn summary(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().expect("a summary line")).expect("JSON summary")
}

fn records(manifest: &Path) -> Vec<Value> {
    fs::read_to_string(manifest).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn record<'a>(records: &'a [Value], name: &str) -> &'a Value {
    records.iter().find(|r| r["source"].as_str().unwrap().ends_with(name)).unwrap_or_else(|| panic!("no record for {name}"))
}

/// SHA-256 by Python's hashlib: a reference this code base did not write.
fn python_sha256(path: &Path) -> String {
    let out = Command::new("python3")
        .args(["-c", "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())"])
        .arg(path)
        .output()
        .expect("python3 is needed for this test");
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Inputs: the check-value string, empty, "abc", and two files larger than
/// one pipeline window (8 MiB) with odd lengths.
fn inputs(dir: &Path) -> PathBuf {
    let src = dir.join("in");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("check.txt"), b"123456789").unwrap();
    fs::write(src.join("empty.bin"), b"").unwrap();
    fs::write(src.join("abc.txt"), b"abc").unwrap();
    let big: Vec<u8> = (0..(17 << 20) + 3).map(|i: usize| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    fs::write(src.join("big.bin"), &big).unwrap();
    fs::write(src.join("mid.bin"), &big[..(9 << 20) + 1]).unwrap();
    src
}

fn flip_byte(path: &Path, at: usize) {
    let mut bytes = fs::read(path).unwrap();
    bytes[at] ^= 0x40;
    fs::write(path, bytes).unwrap();
}

#[test]
fn every_digest_is_recorded_verified_and_catches_a_corrupted_byte() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let src = inputs(dir);
    for alg in ["sha256", "blake3", "crc64nvme", "none"] {
        let out = dir.join(format!("out-{alg}"));
        let manifest = out.join("manifest.jsonl");
        let mut args = vec!["encrypt", src.to_str().unwrap(), "--out", out.to_str().unwrap(), "-q"];
        // The default is SHA-256.
        if alg != "sha256" {
            args.extend(["--digest", alg]);
        }
        ok(sealpipe(dir, &args));
        let rs = records(&manifest);
        assert_eq!(rs.len(), 5);
        for r in &rs {
            match alg {
                // Exactly the record of every version before --digest: no new member.
                "sha256" => {
                    assert!(r.get("digest").is_none(), "{r}");
                    let source = PathBuf::from(r["source"].as_str().unwrap());
                    assert_eq!(r["plaintext_sha256"].as_str().unwrap(), python_sha256(&source), "{r}");
                }
                "none" => {
                    assert!(r.get("plaintext_sha256").is_none(), "{r}");
                    assert_eq!(r["digest"], serde_json::json!({"alg": "none"}));
                }
                _ => {
                    assert!(r.get("plaintext_sha256").is_none(), "{r}");
                    assert_eq!(r["digest"]["alg"], alg);
                }
            }
        }
        let value = |name: &str| record(&rs, name)["digest"]["value"].as_str().unwrap_or_default().to_string();
        match alg {
            // The CRC catalogue's check value; S3's ChecksumCRC64NVME of "123456789" is its base64 (rosUhgp5mIg=).
            "crc64nvme" => {
                assert_eq!(value("check.txt"), "ae8b14860a799888");
                assert_eq!(value("empty.bin"), "0000000000000000");
            }
            // b3sum of "" and of "abc".
            "blake3" => {
                assert_eq!(value("empty.bin"), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
                assert_eq!(value("abc.txt"), "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85");
            }
            _ => {}
        }

        let verified = ok(sealpipe(dir, &["verify", "--manifest", manifest.to_str().unwrap(), "--json"]));
        let s = summary(&verified);
        assert_eq!((s["files"].as_u64(), s["failed"].as_u64()), (Some(5), Some(0)), "{s}");
        assert_eq!(s["content_unchecked"].as_u64(), Some(if alg == "none" { 5 } else { 0 }), "{s}");

        // One flipped ciphertext byte in the second window of a CTR file.
        let big_out = out.join("big.bin");
        flip_byte(&big_out, (12 << 20) + 5);
        let verified = sealpipe(dir, &["verify", "--manifest", manifest.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&verified.stderr).into_owned();
        if alg == "none" {
            // CTR has no tag: without a digest nothing can see it, and verify says what it did not check.
            assert!(verified.status.success(), "{stderr}");
            assert!(stderr.contains("5 file(s) carry no digest (--digest none): checked only that they decrypt and have the recorded length, not their content"), "{stderr}");
        } else {
            assert_eq!(verified.status.code(), Some(1), "{stderr}");
            let label = match alg {
                "sha256" => "SHA-256",
                "blake3" => "BLAKE3",
                _ => "CRC-64/NVME",
            };
            let line = stderr.lines().find(|l| l.contains("mismatch")).unwrap_or_else(|| panic!("no mismatch line: {stderr}"));
            assert!(line.contains(big_out.to_str().unwrap()) && line.contains(&format!("plaintext {label} mismatch")), "{line}");
            assert!(!stderr.contains("mid.bin"), "only the corrupted file fails: {stderr}");
        }
    }
}

#[test]
fn gcm_without_a_digest_still_fails_a_corrupted_file_on_its_tag() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    fs::create_dir_all(dir.join("in")).unwrap();
    fs::write(dir.join("in/a.ts"), vec![5u8; 100_000]).unwrap();
    let out = dir.join("out");
    ok(sealpipe(dir, &["encrypt", "in", "--out", "out", "--mode", "gcm", "--digest", "none", "-q"]));
    flip_byte(&out.join("a.ts"), 777);
    let verified = sealpipe(dir, &["verify", "--manifest", "out/manifest.jsonl", "--json"]);
    assert_eq!(verified.status.code(), Some(1));
    let s = summary(&verified);
    assert_eq!((s["failed"].as_u64(), s["content_unchecked"].as_u64()), (Some(1), Some(0)), "{s}");
    assert!(s["failures"][0]["error"].as_str().unwrap().contains("GCM authentication tag"), "{s}");
}

#[test]
fn records_in_the_format_before_digest_and_broken_digest_members() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let src = inputs(dir);
    ok(sealpipe(dir, &["encrypt", src.to_str().unwrap(), "--out", "out", "--digest", "blake3", "-q"]));
    let manifest = dir.join("out/manifest.jsonl");
    let rs = records(&manifest);

    // The same files as an older sealpipe recorded them: plaintext_sha256 only.
    let old: Vec<String> = rs
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let obj = r.as_object_mut().unwrap();
            obj.remove("digest");
            let sha = python_sha256(Path::new(obj["source"].as_str().unwrap()));
            obj.insert("plaintext_sha256".into(), sha.into());
            r.to_string()
        })
        .collect();
    fs::write(dir.join("old.jsonl"), old.join("\n") + "\n").unwrap();
    let s = summary(&ok(sealpipe(dir, &["verify", "--manifest", "old.jsonl", "--json"])));
    assert_eq!((s["files"].as_u64(), s["failed"].as_u64()), (Some(5), Some(0)), "{s}");
    // decrypt reads the record's digest too.
    ok(sealpipe(dir, &["decrypt", "out/big.bin", "--manifest", "out/manifest.jsonl", "--out", "big.plain"]));
    assert!(fs::read(dir.join("big.plain")).unwrap() == fs::read(src.join("big.bin")).unwrap());

    // Digest members that say nothing usable: each line is a failure naming it.
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut r = rs[0].clone();
        f(r.as_object_mut().unwrap());
        r.to_string()
    };
    let broken = [
        edit(&|r| {
            r["digest"].as_object_mut().unwrap().remove("value");
        }),
        edit(&|r| {
            r.remove("digest");
        }),
        edit(&|r| {
            r.insert("plaintext_sha256".into(), "00".repeat(32).into());
        }),
    ];
    fs::write(dir.join("broken.jsonl"), broken.join("\n") + "\n").unwrap();
    let verified = sealpipe(dir, &["verify", "--manifest", "broken.jsonl", "--json"]);
    assert_eq!(verified.status.code(), Some(1));
    let s = summary(&verified);
    let errors: Vec<&str> = s["failures"].as_array().unwrap().iter().map(|f| f["error"].as_str().unwrap()).collect();
    assert_eq!(errors.len(), 3, "{s}");
    for (n, want) in [(1, "digest blake3 has no value"), (2, "no plaintext_sha256 and no digest"), (3, "plaintext_sha256 and a different blake3 digest")] {
        assert!(errors.iter().any(|e| e.contains(&format!("line {n} is not a record")) && e.contains(want)), "line {n}: {want}: {errors:?}");
    }
    // merge-manifests refuses such a line, naming it.
    let merged = sealpipe(dir, &["merge-manifests", "broken.jsonl", "--out", "m.jsonl"]);
    assert_eq!(merged.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&merged.stderr);
    assert!(stderr.contains("broken.jsonl") && stderr.contains("line 1") && stderr.contains("digest blake3 has no value"), "{stderr}");
}

#[test]
fn reencrypt_checks_the_old_digest_and_records_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let src = inputs(dir);
    ok(sealpipe(dir, &["encrypt", src.to_str().unwrap(), "--out", "old", "--digest", "blake3", "-q"]));
    ok(sealpipe(dir, &["reencrypt", "old", "--from-manifest", "old/manifest.jsonl", "--out", "new", "--mode", "gcm", "--digest", "crc64nvme", "-q"]));
    let rs = records(&dir.join("new/manifest.jsonl"));
    assert_eq!(rs.len(), 5);
    assert_eq!(record(&rs, "check.txt")["digest"]["value"], "ae8b14860a799888");
    let s = summary(&ok(sealpipe(dir, &["verify", "--manifest", "new/manifest.jsonl", "--json"])));
    assert_eq!((s["files"].as_u64(), s["failed"].as_u64()), (Some(5), Some(0)), "{s}");
    // A merge of the old and new manifests reads both kinds of record.
    ok(sealpipe(dir, &["merge-manifests", "old/manifest.jsonl", "new/manifest.jsonl", "--out", "all.jsonl"]));

    // A corrupted old byte: the recorded BLAKE3 no longer matches, and the new output is not committed.
    flip_byte(&dir.join("old/mid.bin"), 3);
    let again = sealpipe(dir, &["reencrypt", "old", "--from-manifest", "old/manifest.jsonl", "--out", "new2", "-q"]);
    assert_eq!(again.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("mid.bin") && stderr.contains("plaintext BLAKE3 mismatch"), "{stderr}");
    assert!(!dir.join("new2/mid.bin").exists());
}
