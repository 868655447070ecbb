//! `sealpipe merge-manifests`, run as a user would: hand-written manifests
//! of sharded runs, checking exit codes, the text and JSON reports, and the
//! merged manifest.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_sealpipe");

/// A record with the field set `encrypt` writes (see `sealpipe::manifest::Record`).
fn record(source: &str, output: &str, finished: u64, shard: Option<&str>) -> Value {
    let mut r = json!({
        "source": source,
        "output": output,
        "etag": "\"5d41402abc4b2a76b9719d911017c592\"",
        "plaintext_size": 5_000_000,
        "ciphertext_size": 5_000_000,
        "mode": "ctr",
        "key_bits": 256,
        "key_provider": "aws-kms",
        "key_id": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "key_source": "generated",
        "target": "mediaconvert",
        "encryption_context": {"service": "mediaconvert.amazonaws.com"},
        "encrypted_data_key": "AQIDAHhBb3Jp/8N1ZXJ0ZWRrZXk=",
        "iv": "AAECAwQFBgcICQoL",
        "key_md5": "XrY7u+Ae7tCTyyK7j1rNww==",
        "plaintext_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "mediaconvert": {
            "FileInput": output,
            "DecryptionSettings": {
                "DecryptionMode": "AES_CTR",
                "EncryptedDecryptionKey": "AQIDAHhBb3Jp/8N1ZXJ0ZWRrZXk=",
                "InitializationVector": "AAECAwQFBgcICQoL",
                "KmsKeyRegion": "us-east-1"
            }
        },
        "finished_unix": finished,
    });
    if let Some(s) = shard {
        r["shard"] = s.into();
    }
    r
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "\n  exit code {}\n  --- stdout ---\n{}\n  --- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }
}

impl Run {
    fn lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }

    #[track_caller]
    fn json(&self) -> Value {
        let lines: Vec<&str> = self.stdout.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "expected one JSON line on stdout:{self:?}");
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("stdout is not JSON ({e}):{self:?}"))
    }
}

fn sealpipe(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(["merge-manifests"])
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env("SEALPIPE_KEYRING", dir.join("keyring.json"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("run sealpipe");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn write_manifest(dir: &Path, name: &str, records: &[Value]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, records.iter().map(|r| format!("{r}\n")).collect::<String>()).unwrap();
    path
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("sealpipe-merge-test-").tempdir().unwrap()
}

#[test]
fn clean_merge_of_four_shards_writes_every_record_and_exits_0() {
    let t = tempdir();
    for i in 0..4 {
        let records: Vec<Value> = (0..25)
            .map(|j| {
                let n = i * 25 + j;
                record(
                    &format!("s3://archive/raw/clip-{n}.mxf"),
                    &format!("s3://media-in/raw/clip-{n}.mxf"),
                    1_700_000_000 + n,
                    Some(&format!("{i}/4")),
                )
            })
            .collect();
        write_manifest(t.path(), &format!("run-{i}.jsonl"), &records);
    }
    let run = sealpipe(t.path(), &["run-0.jsonl", "run-1.jsonl", "run-2.jsonl", "run-3.jsonl", "--out", "all/run.jsonl"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.lines(),
        ["sealpipe: merged 4 manifests: 100 records, 0 duplicates, 0 gaps", "sealpipe: merged manifest: all/run.jsonl"],
        "{run:?}"
    );
    let merged = fs::read_to_string(t.path().join("all/run.jsonl")).unwrap();
    let sources: Vec<String> =
        merged.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["source"].as_str().unwrap().to_string()).collect();
    assert_eq!(sources, (0..100).map(|n| format!("s3://archive/raw/clip-{n}.mxf")).collect::<Vec<_>>());
}

#[test]
fn duplicates_and_missing_shards_exit_1_with_a_report() {
    let t = tempdir();
    write_manifest(
        t.path(),
        "s0.jsonl",
        &[record("s3://a/x.mp4", "s3://b/x.mp4", 100, Some("0/3")), record("s3://a/y.mp4", "s3://b/y.mp4", 100, Some("0/3"))],
    );
    // A retried file, finished later, and another source written to y's output.
    write_manifest(
        t.path(),
        "s1.jsonl",
        &[record("s3://a/x.mp4", "s3://b/x.mp4", 200, Some("1/3")), record("s3://a/Y.mp4", "s3://b/y.mp4", 150, Some("1/3"))],
    );
    let run = sealpipe(t.path(), &["s0.jsonl", "s1.jsonl", "--out", "m.jsonl"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.lines(),
        [
            "sealpipe: merged 2 manifests: 3 records (4 read), 2 duplicates, 1 gap",
            "  duplicate source s3://a/x.mp4: s0.jsonl:1, s1.jsonl:1 (kept s1.jsonl:1)",
            "  output s3://b/y.mp4 claimed by several sources: s0.jsonl:2, s1.jsonl:2",
            "  gap: shard 2/3: no records",
            "sealpipe: merged manifest: m.jsonl",
        ],
        "{run:?}"
    );
    let kept: Vec<Value> =
        fs::read_to_string(t.path().join("m.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(kept.len(), 3);
    assert_eq!(kept[0]["finished_unix"], 100, "y from s0");
    assert_eq!((kept[1]["source"].as_str(), kept[1]["finished_unix"].as_u64()), (Some("s3://a/x.mp4"), Some(200)), "the newest x");

    let run = sealpipe(t.path(), &["s0.jsonl", "s1.jsonl", "--json"]);
    assert_eq!(run.code, 1, "{run:?}");
    let v = run.json();
    assert_eq!(v["command"], "merge-manifests");
    assert_eq!((v["manifests"].as_u64(), v["records_read"].as_u64(), v["records_written"].as_u64()), (Some(2), Some(4), Some(3)));
    assert_eq!(v["shards"], 3);
    assert_eq!(v["out"], Value::Null);
    assert_eq!(v["gaps"], json!(["shard 2/3: no records"]));
    assert_eq!(
        v["duplicates"][0],
        json!({"kind": "source", "name": "s3://a/x.mp4", "places": ["s0.jsonl:1", "s1.jsonl:1"], "kept": "s1.jsonl:1"})
    );
    assert_eq!(v["duplicates"][1]["kind"], "output");
    assert!(run.stderr.is_empty(), "{run:?}");
}

#[test]
fn expect_list_resolves_local_paths_and_reports_sources_without_records() {
    let t = tempdir();
    let media = t.path().join("media");
    fs::create_dir_all(&media).unwrap();
    for name in ["a.mp4", "b c.mov", "missing.ts"] {
        fs::write(media.join(name), b"x").unwrap();
    }
    // Records hold resolved absolute paths, as `encrypt` writes them.
    let real = media.canonicalize().unwrap();
    let at = |name: &str| real.join(name).display().to_string();
    write_manifest(
        t.path(),
        "m.jsonl",
        &[
            record(&at("a.mp4"), "/enc/a.mp4", 1, None),
            record(&at("b c.mov"), "/enc/b c.mov", 1, None),
            record("s3://in/k.mxf", "s3://out/k.mxf", 1, None),
        ],
    );
    fs::write(
        t.path().join("sources.txt"),
        "# what the run had to cover\r\nmedia/a.mp4\r\n./media/b c.mov\r\n\r\nmedia/missing.ts\ns3://in/k.mxf\ns3://in/never.mxf\n",
    )
    .unwrap();
    let run = sealpipe(t.path(), &["m.jsonl", "--expect-list", "sources.txt"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(
        run.lines(),
        [
            "sealpipe: merged 1 manifest: 3 records, 0 duplicates, 2 gaps".to_string(),
            format!("  gap: {}: no record", at("missing.ts")),
            "  gap: s3://in/never.mxf: no record".to_string(),
        ],
        "{run:?}"
    );
    fs::write(t.path().join("sources.txt"), "media/a.mp4\nmedia/b c.mov\ns3://in/k.mxf\n").unwrap();
    let run = sealpipe(t.path(), &["m.jsonl", "--expect-list", "sources.txt"]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn long_reports_are_cut_after_20_lines() {
    let t = tempdir();
    write_manifest(t.path(), "m.jsonl", &[record("/a", "/o/a", 1, Some("0/30"))]);
    let run = sealpipe(t.path(), &["m.jsonl"]);
    assert_eq!(run.code, 1, "{run:?}");
    let lines = run.lines();
    assert_eq!(lines[0], "sealpipe: merged 1 manifest: 1 record, 0 duplicates, 29 gaps");
    assert_eq!(lines[1], "  gap: shard 1/30: no records");
    assert_eq!(lines[20], "  gap: shard 20/30: no records");
    assert_eq!(lines[21], "  ... and 9 more");
    assert_eq!(lines.len(), 22, "{run:?}");
}

#[test]
fn errors_exit_2_with_one_line_naming_file_and_cause() {
    let t = tempdir();
    write_manifest(t.path(), "good.jsonl", &[record("/a", "/o/a", 1, None)]);
    fs::write(t.path().join("bad.jsonl"), format!("{}\nnot json\n", record("/b", "/o/b", 1, None))).unwrap();
    let cases: [(&[&str], &str); 6] = [
        (&["good.jsonl", "bad.jsonl", "--out", "m.jsonl"], "sealpipe: error: bad.jsonl: line 2: not a sealpipe manifest record: "),
        (&["good.jsonl", "nope.jsonl"], "sealpipe: error: nope.jsonl: cannot open manifest: no such file or directory"),
        (&["s3://bucket/run-0.jsonl"], "sealpipe: error: s3://bucket/run-0.jsonl: merge-manifests works on local files"),
        (&["good.jsonl", "--expect-list", "absent.txt"], "sealpipe: error: absent.txt: cannot open the --expect-list file: "),
        (
            &["good.jsonl", "--expect-list", "bad.txt", "--out", "m.jsonl"],
            "sealpipe: error: bad.txt: line 3: \"s3:///x.mp4\" names no bucket",
        ),
        (&["good.jsonl", "--out", "good.jsonl"], "sealpipe: error: good.jsonl: output already exists (use --force to overwrite)"),
    ];
    fs::write(t.path().join("bad.txt"), "# sources\n/a\ns3:///x.mp4\n").unwrap();
    for (args, want) in cases {
        let run = sealpipe(t.path(), args);
        assert_eq!(run.code, 2, "{args:?}{run:?}");
        let lines = run.lines();
        assert_eq!(lines.len(), 1, "{args:?}{run:?}");
        assert!(lines[0].starts_with(want), "{args:?}{run:?}");
    }
    assert!(!t.path().join("m.jsonl").exists(), "nothing is written after an error");
}

#[test]
fn force_replaces_an_existing_merged_manifest() {
    let t = tempdir();
    write_manifest(t.path(), "m.jsonl", &[record("/a", "/o/a", 1, None)]);
    fs::write(t.path().join("out.jsonl"), "old\n").unwrap();
    let run = sealpipe(t.path(), &["m.jsonl", "--out", "out.jsonl", "--force"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(fs::read_to_string(t.path().join("out.jsonl")).unwrap(), fs::read_to_string(t.path().join("m.jsonl")).unwrap());
    let run = sealpipe(t.path(), &["m.jsonl", "--force"]);
    assert_eq!(run.code, 2, "--force needs --out:{run:?}");
}
