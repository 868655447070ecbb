//! Batch runs against a local moto server (S3 + KMS): runs killed with
//! SIGKILL at three points (mid-part, between CompleteMultipartUpload and
//! the manifest record, between files) and finished by re-running the same
//! command; key caching over 10,000 files with the KMS calls counted by a
//! proxy; and shards of one job run side by side.
//!
//! Every check that matters is made outside sealpipe: the bucket listing
//! and object versions through boto3, the KMS requests through the proxy's
//! log, the ciphertext with Python's `cryptography` and KMS `Decrypt`,
//! besides `sealpipe verify`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The binary with fake credentials, `endpoint` for S3 and KMS, path-style
/// addressing, no keyring and no shard index inherited from this process.
fn sealpipe_cmd(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args).arg("--force-path-style");
    aws_env(&mut cmd, endpoint);
    cmd.env("SEALPIPE_KEYRING", "/nonexistent/sealpipe-test-keyring")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .env_remove("SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS")
        .env_remove("SEALPIPE_TEST_PAUSE_SKIP_COMMITS")
        .env_remove("SEALPIPE_TEST_PAUSE_AFTER_LIST_MS");
    cmd
}

fn run(endpoint: &str, args: &[&str]) -> Output {
    sealpipe_cmd(endpoint, args).output().unwrap()
}

/// The JSON event lines of a `--json` run's stdout.
fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event line ({e}): {l}")))
        .collect()
}

/// The closing `summary` event (the last line).
fn summary_of(out: &Output) -> Value {
    let all = events(out);
    let last = all.last().unwrap_or_else(|| panic!("no events; stderr: {}", stderr(out))).clone();
    assert_eq!(last["event"], "summary", "the last line must be the summary: {last}");
    last
}

/// Start `cmd` with the test hook that pauses a minute after a commit,
/// before its record, and wait for it to say so: the child, and the
/// location it committed.
fn paused_after_commit(mut cmd: Command) -> (Child, String) {
    let mut child = cmd.env("SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS", "60000").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let lines = lines_of(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    loop {
        let line = lines.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|e| panic!("no test hook line ({e}): {seen:?}"));
        if let Some(rest) = line.strip_prefix("sealpipe: test hook: ") {
            let (location, _) = rest.split_once(": pausing 60000 ms").unwrap_or_else(|| panic!("{line}"));
            return (child, location.to_string());
        }
        seen.push(line);
    }
}

/// Keys of the objects under `prefix` in `bucket`, sorted.
fn object_keys(moto: &Server, bucket: &str, prefix: &str) -> Vec<String> {
    let listed = py(
        moto,
        "p = s3.get_paginator('list_objects_v2')\n\
         keys = [o['Key'] for page in p.paginate(Bucket=sys.argv[1], Prefix=sys.argv[2]) for o in page.get('Contents', [])]\n\
         print(json.dumps(sorted(keys)))",
        &[bucket, prefix],
    );
    serde_json::from_str(&listed).unwrap()
}

/// `s3://bucket/key` of each key.
fn urls(bucket: &str, keys: &[String]) -> BTreeSet<String> {
    keys.iter().map(|k| format!("s3://{bucket}/{k}")).collect()
}

/// The records' sources, asserting that none appears twice.
fn sources_once(recs: &[Value]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for r in recs {
        let source = r["source"].as_str().unwrap().to_string();
        assert!(seen.insert(source.clone()), "{source} has two records");
    }
    seen
}

/// The records' outputs, asserting that none appears twice.
fn outputs_once(recs: &[Value]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for r in recs {
        let output = r["output"].as_str().unwrap().to_string();
        assert!(seen.insert(output.clone()), "{output} has two records");
    }
    seen
}

fn records_or_none(manifest: &Path) -> Vec<Value> {
    if manifest.exists() {
        records(manifest)
    } else {
        Vec::new()
    }
}

fn assert_verifies(moto: &Server, manifest: &Path, files: usize) {
    let out = run(&moto.url(), &["verify", "--manifest", manifest.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "verify failed: {}", stderr(&out));
    let s = summary_of(&out);
    assert_eq!(s["files"], files as u64, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
}

/// The canonical local path the records name a source by.
fn canonical(path: &Path) -> String {
    path.canonicalize().unwrap().display().to_string()
}

/// Every local file under `root`, canonical, sorted.
fn local_files(root: &Path) -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut BTreeSet<String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.insert(canonical(&p));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(root, &mut out);
    out
}

#[test]
fn sigkill_mid_part_then_rerun_finishes_with_every_object_verified() {
    let moto = start_moto();
    setup(&moto, "media-kill", "alias/kill");
    let tree = media_tree();
    // A second multipart file, so two uploads are open when killed.
    std::fs::write(tree.media.join("sub/big2.ts"), pattern((12 << 20) + 4567, 4)).unwrap();
    let manifest = tree.root.join("kill.jsonl");
    let journal = tree.root.join("kill.jsonl.inflight");
    let args = [
        "encrypt",
        tree.media.to_str().unwrap(),
        "--to",
        "s3://media-kill/enc/",
        "--kms-key",
        "alias/kill",
        "--part-size",
        "5M",
        "--concurrency",
        "1",
        "--manifest",
        manifest.to_str().unwrap(),
        "--json",
    ];
    let all_sources = local_files(&tree.media);
    assert_eq!(all_sources.len(), 5);
    // Someone else's upload to the same key, started before the run (moto
    // dates it 2010): a re-run must leave it alone.
    let foreign = py(&moto, "print(s3.create_multipart_upload(Bucket='media-kill', Key='enc/big.ts')['UploadId'])", &[]);

    // sealpipe → [delay] → real `Initiated` dates → moto. Every part is held
    // 5 s by the delay proxy: the run is surely mid-part when killed.
    let s3 = start_proxy(moto.port, "initiated:real");
    let proxy = start_proxy(s3.port, "delay:5");
    let mut child = sealpipe_cmd(&proxy.url(), &args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    // Both multipart files under way (two threads: big.ts on one, small.mp4
    // then sub/big2.ts on the other), besides the foreign upload.
    let deadline = Instant::now() + Duration::from_secs(60);
    while open_uploads(&moto, "media-kill") < 3 {
        assert!(Instant::now() < deadline, "the multipart uploads did not start");
        assert!(child.try_wait().unwrap().is_none(), "sealpipe exited before it was killed");
        std::thread::sleep(Duration::from_millis(50));
    }
    sigkill(&mut child);
    drop(proxy); // no held part reaches moto later
    let open_after_kill = open_uploads(&moto, "media-kill") - 1;
    assert_eq!(open_after_kill, 2, "SIGKILL runs no handler: both uploads stay open");
    assert!(journal.exists(), "the journal names the outputs in flight");
    let done_before = records_or_none(&manifest);
    assert!(done_before.len() < all_sources.len(), "the run was killed before it finished: {done_before:?}");
    let done_before_sources = sources_once(&done_before);

    // Re-run the same command without the delay (still through the proxy
    // that dates uploads: with moto's fixed 2010 date, a re-run would take
    // its own leftovers for someone else's older uploads and leave them).
    let out = run(&s3.url(), &args);
    assert!(out.status.success(), "re-run failed: {}", stderr(&out));
    let s = summary_of(&out);
    eprintln!("sigkill_mid_part: {} recorded before the kill; re-run: {s}", done_before.len());
    assert_eq!(s["cleaned"], 2, "both leftover uploads aborted: {s}");
    assert_eq!(s["skipped"].as_u64().unwrap(), done_before.len() as u64, "{s}");
    assert_eq!(s["files"].as_u64().unwrap() + s["skipped"].as_u64().unwrap(), all_sources.len() as u64, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    for e in events(&out).iter().filter(|e| e["event"] == "skipped") {
        let file = canonical(Path::new(e["file"].as_str().unwrap()));
        assert!(done_before_sources.contains(&file), "skipped {file}, which the killed run had not recorded");
    }
    let left = py(&moto, "print(json.dumps([u['UploadId'] for u in s3.list_multipart_uploads(Bucket='media-kill').get('Uploads', [])]))", &[]);
    assert_eq!(left, serde_json::json!([foreign]).to_string(), "ours aborted, the older foreign one left alone");
    py(&moto, "s3.abort_multipart_upload(Bucket='media-kill', Key='enc/big.ts', UploadId=sys.argv[1])", &[&foreign]);
    assert_eq!(open_uploads(&moto, "media-kill"), 0, "no upload left open");
    assert!(!journal.exists(), "a finished run removes the journal");

    let recs = records(&manifest);
    assert_eq!(sources_once(&recs), all_sources);
    let keys = object_keys(&moto, "media-kill", "enc/");
    assert_eq!(outputs_once(&recs), urls("media-kill", &keys), "the bucket holds exactly the recorded objects");
    assert_eq!(keys.len(), all_sources.len());
    assert_verifies(&moto, &manifest, all_sources.len());

    // A third run has nothing left to do.
    let out = run(&s3.url(), &args);
    assert!(out.status.success(), "third run failed: {}", stderr(&out));
    let s = summary_of(&out);
    assert_eq!(s["skipped"], all_sources.len() as u64, "{s}");
    assert_eq!(s["files"], 0, "{s}");
    assert_eq!(s["cleaned"], 0, "{s}");
    assert_eq!(s["key_requests"], 0, "{s}");
    assert_eq!(records(&manifest).len(), all_sources.len(), "no new records");
}

#[test]
fn sigkill_between_complete_and_ledger_write_is_redone_once_and_said() {
    let moto = start_moto();
    setup(&moto, "media-gap", "alias/gap");
    let tree = media_tree();
    let manifest = tree.root.join("gap.jsonl");
    let journal = tree.root.join("gap.jsonl.inflight");
    let args = [
        "encrypt",
        tree.media.to_str().unwrap(),
        "--to",
        "s3://media-gap/enc/",
        "--kms-key",
        "alias/gap",
        "--part-size",
        "5M",
        "--threads",
        "1",
        "--manifest",
        manifest.to_str().unwrap(),
        "--json",
    ];
    let all_sources = local_files(&tree.media);

    let (mut child, location) = paused_after_commit(sealpipe_cmd(&moto.url(), &args));
    sigkill(&mut child);
    // One thread, files in name order: the first committed is the multipart one.
    assert_eq!(location, "s3://media-gap/enc/big.ts");
    let first_etag = py(&moto, "print(s3.head_object(Bucket='media-gap', Key='enc/big.ts')['ETag'])", &[]);
    assert!(first_etag.trim_matches('"').ends_with("-3"), "completed in 3 parts: {first_etag}");
    assert!(records_or_none(&manifest).iter().all(|r| r["output"] != location.as_str()), "killed before its record");
    assert!(std::fs::read_to_string(&journal).unwrap().contains(&location), "journalled before it was created");
    assert_eq!(open_uploads(&moto, "media-gap"), 0, "the upload was completed");

    let out = run(&moto.url(), &args);
    assert!(out.status.success(), "re-run failed: {}", stderr(&out));
    let all = events(&out);
    let notes: Vec<&Value> = all.iter().filter(|e| e["event"] == "note").collect();
    assert_eq!(notes.len(), 1, "one note, for the unrecorded output: {notes:?}");
    assert!(notes[0]["file"].as_str().unwrap().ends_with("big.ts"), "{}", notes[0]);
    let message = notes[0]["message"].as_str().unwrap();
    assert!(message.contains("never recorded") && message.contains("new key"), "{message}");
    assert!(stderr(&out).contains("new key"), "said on stderr too: {}", stderr(&out));
    let s = summary_of(&out);
    assert_eq!(s["files"], all_sources.len() as u64, "{s}");
    assert_eq!(s["skipped"], 0, "{s}");
    assert_eq!(s["failed"], 0, "{s}");

    let recs = records(&manifest);
    assert_eq!(sources_once(&recs), all_sources);
    let keys = object_keys(&moto, "media-gap", "enc/");
    assert_eq!(outputs_once(&recs), urls("media-gap", &keys));
    let big = recs.iter().find(|r| r["output"] == location.as_str()).unwrap();
    let etag = py(&moto, "print(s3.head_object(Bucket='media-gap', Key='enc/big.ts')['ETag'])", &[]);
    assert_eq!(big["etag"].as_str().unwrap(), etag, "the record is of the object now stored");
    assert_ne!(etag, first_etag, "encrypted again under a new key, so other bytes");
    assert_verifies(&moto, &manifest, all_sources.len());
    assert_eq!(open_uploads(&moto, "media-gap"), 0);
    assert!(!journal.exists(), "a finished run removes the journal");
}

#[test]
fn sigkill_between_files_resumes_without_duplicates() {
    const FILES: usize = 300;
    const KILL_AFTER: usize = 100;
    let moto = start_moto();
    setup(&moto, "media-many", "alias/many");
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    for i in 0..FILES {
        let sub = media.join(format!("d{}", i % 7));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(sub.join(format!("seg{i:04}.ts")), pattern(100 + i * 13, i as u64)).unwrap();
    }
    let all_sources = local_files(&media);
    let manifest = dir.path().join("many.jsonl");
    let journal = dir.path().join("many.jsonl.inflight");
    let args = [
        "encrypt",
        media.to_str().unwrap(),
        "--to",
        "s3://media-many/enc/",
        "--kms-key",
        "alias/many",
        "--manifest",
        manifest.to_str().unwrap(),
        "--json",
    ];

    let mut child = sealpipe_cmd(&moto.url(), &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let err_lines = lines_of(child.stderr.take().unwrap());
    let mut out_lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut started, mut done) = (BTreeSet::new(), BTreeSet::new());
    while done.len() < KILL_AFTER {
        let line = out_lines.next().unwrap_or_else(|| panic!("the run ended after {} files: {:?}", done.len(), err_lines.try_iter().collect::<Vec<_>>())).unwrap();
        let e: Value = serde_json::from_str(&line).unwrap();
        let file = || canonical(Path::new(e["file"].as_str().unwrap()));
        match e["event"].as_str().unwrap() {
            "started" => assert!(started.insert(file())),
            "done" => assert!(done.insert(file())),
            other => panic!("unexpected event {other}: {line}"),
        }
    }
    sigkill(&mut child);
    // Events that were written before the kill but not read yet.
    for line in out_lines {
        let e: Value = serde_json::from_str(&line.unwrap()).unwrap();
        let file = canonical(Path::new(e["file"].as_str().unwrap()));
        match e["event"].as_str().unwrap() {
            "started" => started.insert(file),
            "done" => done.insert(file),
            _ => false,
        };
    }
    let before = records(&manifest);
    let recorded = sources_once(&before);
    assert!(done.is_subset(&recorded), "every file reported done has its record");
    assert!(before.len() < FILES, "killed before the end: {} records", before.len());
    let in_flight: BTreeSet<String> = started.difference(&done).cloned().collect();
    eprintln!("sigkill_between_files: killed after {} done events: {} records, {} file(s) in flight", done.len(), before.len(), in_flight.len());

    let out = run(&moto.url(), &args);
    assert!(out.status.success(), "re-run failed: {}", stderr(&out));
    let s = summary_of(&out);
    assert_eq!(s["skipped"], before.len() as u64, "{s}");
    assert_eq!(s["files"], (FILES - before.len()) as u64, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    for e in events(&out) {
        let Some(file) = e["file"].as_str().map(|f| canonical(Path::new(f))) else { continue };
        match e["event"].as_str().unwrap() {
            "skipped" => assert!(recorded.contains(&file), "{e}"),
            "started" => assert!(!recorded.contains(&file), "recorded yet encrypted again: {e}"),
            // Killed after its upload but before its record: said, and only for such a file.
            "note" => {
                assert!(in_flight.contains(&file) && !recorded.contains(&file), "{e}");
                assert!(e["message"].as_str().unwrap().contains("new key"), "{e}");
            }
            _ => {}
        }
    }
    let notes = events(&out).iter().filter(|e| e["event"] == "note").count();
    eprintln!("sigkill_between_files: re-run {s} ({notes} note(s))");
    let recs = records(&manifest);
    assert_eq!(recs.len(), FILES, "one record per file");
    assert_eq!(sources_once(&recs), all_sources);
    let keys = object_keys(&moto, "media-many", "enc/");
    assert_eq!(outputs_once(&recs), urls("media-many", &keys), "the bucket holds exactly the recorded objects");
    assert_eq!(open_uploads(&moto, "media-many"), 0);
    assert!(!journal.exists());
    assert_verifies(&moto, &manifest, FILES);
}

#[test]
fn ten_thousand_files_with_key_caching_make_few_kms_calls() {
    const FILES: usize = 10_000;
    let moto = start_moto();
    let arn = setup(&moto, "unused", "alias/cache");
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    let t = Instant::now();
    for d in 0..100 {
        let sub = media.join(format!("show{d:02}/s01"));
        std::fs::create_dir_all(&sub).unwrap();
        for f in 0..100 {
            let i = d * 100 + f;
            std::fs::write(sub.join(format!("seg{f:03}.ts")), pattern(64 + (i * 37) % 449, i as u64)).unwrap();
        }
    }
    eprintln!("ten_thousand_files: wrote {FILES} inputs in {:.2} s", t.elapsed().as_secs_f64());
    let out_dir = dir.path().join("enc");
    let manifest = dir.path().join("cache.jsonl");
    let log = dir.path().join("requests.log");
    let proxy = start_proxy(moto.port, &format!("count:{}", log.display()));
    let args = [
        "encrypt",
        media.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--kms-key",
        "alias/cache",
        "--reuse-key",
        "max-files=1000",
        "--target",
        "mediaconvert",
        "--manifest",
        manifest.to_str().unwrap(),
        "--json",
    ];

    let t = Instant::now();
    let out = run(&proxy.url(), &args);
    let first = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "encrypt failed: {}", stderr(&out));
    let s = summary_of(&out);
    eprintln!("ten_thousand_files: first run {first:.2} s wall (summary: {:.2} s, {:.0} files/s)", s["seconds"].as_f64().unwrap(), s["files_per_s"].as_f64().unwrap());
    assert_eq!(s["files"], FILES as u64, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    let calls = request_log(&log);
    eprintln!("ten_thousand_files: requests seen by the proxy: {calls:?}");
    let want: BTreeMap<String, usize> =
        [("TrentService.DescribeKey".to_string(), 1), ("TrentService.GenerateDataKey".to_string(), FILES / 1000)].into();
    assert_eq!(calls, want, "exactly one DescribeKey and one GenerateDataKey per 1000 files, nothing else");
    assert_eq!(s["key_requests"], (FILES / 1000) as u64, "the summary counts what the proxy saw: {s}");

    let recs = records(&manifest);
    assert_eq!(recs.len(), FILES);
    assert_eq!(sources_once(&recs), local_files(&media));
    outputs_once(&recs);
    // Records group by wrapped data key: 10 keys of 1000 files, every (key, IV) once.
    let mut by_key: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    let mut pairs = BTreeSet::new();
    for r in &recs {
        assert_eq!(r["key_id"], arn.as_str());
        assert_eq!(r["key_source"], "generated");
        assert!(r.get("elastictranscoder").is_none(), "--target mediaconvert only");
        let blob = r["mediaconvert"]["DecryptionSettings"]["EncryptedDecryptionKey"].as_str().unwrap();
        assert_eq!(blob, r["encrypted_data_key"].as_str().unwrap());
        let iv = r["iv"].as_str().unwrap();
        assert_eq!(b64d(iv).len(), 16, "CTR IVs are 16 bytes for every target (FORMAT.md)");
        assert!(pairs.insert((blob, iv)), "(key, IV) used twice: {r}");
        by_key.entry(blob).or_default().push(r);
    }
    assert_eq!(by_key.len(), FILES / 1000, "one wrapped key per GenerateDataKey");
    assert!(by_key.values().all(|g| g.len() <= 1000), "at most 1000 files per key: {:?}", by_key.values().map(Vec::len).collect::<Vec<_>>());
    let md5s: BTreeSet<&str> = by_key.values().map(|g| g[0]["key_md5"].as_str().unwrap()).collect();
    assert_eq!(md5s.len(), FILES / 1000, "ten different plaintext keys");
    for g in by_key.values() {
        assert!(g.iter().all(|r| r["key_md5"] == g[0]["key_md5"]), "one plaintext key per wrapped key");
    }

    // Independently: 5 files of every key decrypted with Python's `cryptography`
    // under the key KMS unwraps with the MediaConvert context (the 16-byte IV is the first counter block).
    let sample: Vec<Value> = by_key
        .values()
        .flat_map(|g| g.iter().step_by(199).take(5))
        .map(|r| serde_json::json!({"blob": r["encrypted_data_key"], "iv": r["iv"], "source": r["source"], "output": r["output"]}))
        .collect();
    assert_eq!(sample.len(), 50);
    let sample_file = dir.path().join("sample.json");
    std::fs::write(&sample_file, serde_json::to_vec(&sample).unwrap()).unwrap();
    let t = Instant::now();
    let answer = py(
        &moto,
        "from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes\n\
         items = json.load(open(sys.argv[1])); ctx = json.loads(sys.argv[2]); keys = {}; bad = []\n\
         for it in items:\n\
         \x20   if it['blob'] not in keys:\n\
         \x20       keys[it['blob']] = kms.decrypt(CiphertextBlob=base64.b64decode(it['blob']), EncryptionContext=ctx)['Plaintext']\n\
         \x20   d = Cipher(algorithms.AES(keys[it['blob']]), modes.CTR(base64.b64decode(it['iv']))).decryptor()\n\
         \x20   if d.update(open(it['output'], 'rb').read()) + d.finalize() != open(it['source'], 'rb').read(): bad.append(it['output'])\n\
         print(json.dumps({'checked': len(items), 'keys': len(keys), 'bad': bad}))",
        &[sample_file.to_str().unwrap(), MC_CONTEXT],
    );
    eprintln!("ten_thousand_files: 50-file sample decrypted independently in {:.2} s", t.elapsed().as_secs_f64());
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer, serde_json::json!({"checked": 50, "keys": 10, "bad": []}));

    // All of them through `sealpipe verify`, which unwraps each of the 10 keys once.
    let t = Instant::now();
    let out = run(&proxy.url(), &["verify", "--manifest", manifest.to_str().unwrap(), "--json"]);
    eprintln!("ten_thousand_files: sealpipe verify of {FILES} records in {:.2} s", t.elapsed().as_secs_f64());
    assert!(out.status.success(), "verify failed: {}", stderr(&out));
    let s = summary_of(&out);
    assert_eq!((&s["files"], &s["failed"]), (&serde_json::json!(FILES), &serde_json::json!(0)), "{s}");
    let calls = request_log(&log);
    assert_eq!(calls["TrentService.Decrypt"], FILES / 1000, "one Decrypt per data key, not per file: {calls:?}");
    assert_eq!(calls["TrentService.DescribeKey"], 2, "{calls:?}");

    // Resumed: everything skipped, no key asked for.
    let t = Instant::now();
    let out = run(&proxy.url(), &args);
    let second = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "second run failed: {}", stderr(&out));
    let s = summary_of(&out);
    eprintln!("ten_thousand_files: second (all skipped) run {second:.2} s wall (summary: {:.2} s)", s["seconds"].as_f64().unwrap());
    assert_eq!(s["skipped"], FILES as u64, "{s}");
    assert_eq!(s["files"], 0, "{s}");
    assert_eq!(s["key_requests"], 0, "{s}");
    let calls = request_log(&log);
    assert_eq!(calls["TrentService.GenerateDataKey"], FILES / 1000, "no key generated for skipped files: {calls:?}");
    assert_eq!(calls["TrentService.DescribeKey"], 2, "a run with nothing to do asks KMS nothing, DescribeKey included: {calls:?}");
    assert_eq!(calls["TrentService.Decrypt"], FILES / 1000, "{calls:?}");
    assert_eq!(calls.len(), 3, "nothing else: {calls:?}");
    assert_eq!(records(&manifest).len(), FILES);
}

#[test]
fn shards_on_one_machine_cover_every_object_exactly_once() {
    const OBJECTS: usize = 40;
    let moto = start_moto();
    setup(&moto, "media-out", "alias/shard");
    // Versioning shows any object written twice as a second version.
    py(
        &moto,
        "s3.create_bucket(Bucket='src')\n\
         s3.put_bucket_versioning(Bucket='media-out', VersioningConfiguration={'Status': 'Enabled'})\n\
         for i in range(int(sys.argv[1])):\n\
         \x20   s3.put_object(Bucket='src', Key='raw/show%d/seg%03d.ts' % (i % 3, i), Body=os.urandom(50 + 37 * i))",
        &[&OBJECTS.to_string()],
    );
    let listed = object_keys(&moto, "src", "raw/");
    assert_eq!(listed.len(), OBJECTS);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("m.jsonl");
    let args = [
        "encrypt",
        "s3://src/raw/",
        "--to",
        "s3://media-out/enc/",
        "--kms-key",
        "alias/shard",
        "--shard",
        "auto/4",
        "--manifest",
        manifest.to_str().unwrap(),
        "--json",
        "--threads",
        "1",
    ];

    // Neither variable set: refused, one line, nothing written.
    let out = run(&moto.url(), &args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().filter(|l| !l.trim().is_empty()).count(), 1, "one error line: {err}");
    assert!(err.contains("JOB_COMPLETION_INDEX") && err.contains("AWS_BATCH_JOB_ARRAY_INDEX"), "{err}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "no manifest for a refused run");

    // Four shards side by side: two as a Kubernetes Indexed Job, two as an AWS Batch array.
    let t = Instant::now();
    let children: Vec<Child> = (0..4)
        .map(|i| {
            let var = if i < 2 { "JOB_COMPLETION_INDEX" } else { "AWS_BATCH_JOB_ARRAY_INDEX" };
            sealpipe_cmd(&moto.url(), &args).env(var, i.to_string()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let outs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    eprintln!("shards: 4 runs side by side in {:.2} s", t.elapsed().as_secs_f64());

    // Which shard each object belongs to, computed independently (first 8 bytes of SHA-256, big-endian, mod 4).
    let shard_of: BTreeMap<String, u64> = serde_json::from_str(&py(
        &moto,
        "import hashlib\n\
         keys = json.loads(sys.argv[1])\n\
         print(json.dumps({'s3://src/' + k: int.from_bytes(hashlib.sha256(k[len('raw/'):].encode()).digest()[:8], 'big') % 4 for k in keys}))",
        &[&serde_json::to_string(&listed).unwrap()],
    ))
    .unwrap();

    let mut all: Vec<Value> = Vec::new();
    let mut merged = String::new();
    let mut files_total = 0;
    for (i, out) in outs.iter().enumerate() {
        assert!(out.status.success(), "shard {i} failed: {}", stderr(out));
        let s = summary_of(out);
        assert_eq!(s["shard"], format!("{i}/4").as_str(), "{s}");
        assert_eq!(s["failed"], 0, "{s}");
        assert_eq!(s["skipped"], 0, "other shards' files are not this run's business: {s}");
        let path = dir.path().join(format!("m.shard-{i}-of-4.jsonl"));
        assert_eq!(PathBuf::from(s["manifest"].as_str().unwrap()), path, "{s}");
        assert!(!dir.path().join(format!("m.shard-{i}-of-4.jsonl.inflight")).exists());
        let recs = records_or_none(&path);
        let want = shard_of.values().filter(|&&n| n == i as u64).count();
        assert_eq!(recs.len(), want, "shard {i}");
        assert_eq!(s["files"], want as u64, "{s}");
        files_total += want;
        for r in &recs {
            assert_eq!(r["shard"], format!("{i}/4").as_str(), "{r}");
            assert_eq!(shard_of[r["source"].as_str().unwrap()], i as u64, "{r} is not in shard {i}");
        }
        if path.exists() {
            merged.push_str(&std::fs::read_to_string(&path).unwrap());
        }
        all.extend(recs);
    }
    assert_eq!(files_total, OBJECTS);
    assert!(!manifest.exists(), "each shard writes its own manifest");
    assert_eq!(sources_once(&all), urls("src", &listed), "the shards together take every listed object once");
    let written = object_keys(&moto, "media-out", "enc/");
    assert_eq!(written.len(), OBJECTS);
    assert_eq!(outputs_once(&all), urls("media-out", &written));
    for r in &all {
        let rel = r["source"].as_str().unwrap().strip_prefix("s3://src/raw/").unwrap();
        assert_eq!(r["output"], format!("s3://media-out/enc/{rel}").as_str());
    }
    let versions: BTreeMap<String, usize> = serde_json::from_str(&py(
        &moto,
        "p = s3.get_paginator('list_object_versions'); n = {}\n\
         for page in p.paginate(Bucket='media-out', Prefix='enc/'):\n\
         \x20   for v in page.get('Versions', []) + page.get('DeleteMarkers', []): n[v['Key']] = n.get(v['Key'], 0) + 1\n\
         print(json.dumps(n))",
        &[],
    ))
    .unwrap();
    assert_eq!(versions.len(), OBJECTS);
    assert!(versions.values().all(|&n| n == 1), "every object written exactly once: {versions:?}");

    let merged_path = dir.path().join("all.jsonl");
    std::fs::write(&merged_path, merged).unwrap();
    assert_verifies(&moto, &merged_path, OBJECTS);
}

/// Issue 24, finding 3: a machine lost mid-run with an `s3://` manifest,
/// its home and temporary folder gone with it (a fresh pod). The manifest
/// reached S3 as the run went (here after every record), so only what was
/// committed after the last copy is unrecorded; the re-run on a fresh
/// machine finds that output by its envelope and encrypts it again, once:
/// every source exactly once, nothing unrecorded, nothing refused as
/// "already exists", nothing open, everything verified.
#[test]
fn finding_3_a_lost_machine_with_an_s3_manifest_converges_on_a_fresh_one() {
    let moto = start_moto();
    setup(&moto, "lost", "alias/lost");
    let tree = media_tree();
    let sources: Vec<String> = local_files(&tree.media).into_iter().collect();
    assert!(sources.len() >= 4, "{sources:?}");
    let url = "s3://lost/runs/m.jsonl";
    let args = ["encrypt", tree.media.to_str().unwrap(), "--to", "s3://lost/enc/", "--kms-key", "alias/lost", "--part-size", "5M", "--threads", "1", "--max-concurrent-requests", "1", "--manifest", url, "--manifest-flush-records", "1", "--json"];
    let machine = |name: &str| {
        let home = tempfile::Builder::new().prefix(name).tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("tmp")).unwrap();
        home
    };
    let first = machine("pod-a-");
    let mut cmd = sealpipe_cmd(&moto.url(), &args);
    cmd.env("HOME", first.path()).env_remove("XDG_STATE_HOME").env("TMPDIR", first.path().join("tmp")).env("SEALPIPE_TEST_PAUSE_SKIP_COMMITS", "2");
    let (mut child, paused) = paused_after_commit(cmd);
    // The two records before the pause reach S3 while the run is alive (the event: the object holds both).
    let stored = || py(&moto, "import sys\ntry: print(s3.get_object(Bucket='lost', Key='runs/m.jsonl')['Body'].read().decode().count('\\n'))\nexcept s3.exceptions.NoSuchKey: print(0)", &[]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while stored().trim() != "2" {
        assert!(std::time::Instant::now() < deadline, "the manifest never reached S3 with 2 records: {}", stored());
    }
    sigkill(&mut child);
    // The pod is gone, with its home, state folder and temporary folder.
    drop(first);

    let second = machine("pod-b-");
    let out = sealpipe_cmd(&moto.url(), &args).env("HOME", second.path()).env_remove("XDG_STATE_HOME").env("TMPDIR", second.path().join("tmp")).output().unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "re-run on a fresh machine: {err}");
    assert!(!err.contains("already exists"), "{err}");
    let notes: Vec<Value> = events(&out).into_iter().filter(|e| e["event"] == "note").collect();
    assert_eq!(notes.len(), 1, "one note, for the output whose record was lost: {notes:?}");
    assert!(notes[0]["message"].as_str().unwrap().contains("record was lost"), "{}", notes[0]);
    let name = notes[0]["file"].as_str().unwrap().rsplit('/').next().unwrap().to_string();
    assert!(paused.ends_with(&name), "the note is for the output committed when the machine was lost: {paused} {notes:?}");
    let s = summary_of(&out);
    assert_eq!((s["files"].as_u64(), s["skipped"].as_u64(), s["failed"].as_u64()), (Some(sources.len() as u64 - 2), Some(2), Some(0)), "{s}");

    // The audit, on the manifest as S3 holds it.
    let local = second.path().join("m.jsonl");
    py(&moto, "open(sys.argv[1], 'wb').write(s3.get_object(Bucket='lost', Key='runs/m.jsonl')['Body'].read())", &[local.to_str().unwrap()]);
    assert_converged(&moto, &local, "lost", "enc/", &sources);
}
