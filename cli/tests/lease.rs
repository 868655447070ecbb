//! One job, one runner (finding 10 of issue 24): a second run of a job
//! whose first run is alive is refused in one line naming the holder (host,
//! pid, since when), exit 2, and leaves nothing behind; a holder that died
//! does not block the next run; a run that lost its lease does not upload
//! its manifest over another's.
//!
//! "Started together" without timing races: run A is started with the
//! commit test hook (`SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS`), which says on
//! stderr that it is pausing, so A holds the lease from that line on; B is
//! started only then. A is then killed with SIGKILL (no handler runs, so
//! nothing is given back) and the job is run again. The S3 runs go to a
//! local moto server; the lease object is read and written with boto3.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::*;
use serde_json::Value;

const PAUSE: &str = "SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS";

/// The binary with the AWS environment of the tests (fake credentials,
/// `endpoint`, no instance metadata) and no hook or shard index inherited.
fn sealpipe_cmd(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(args);
    aws_env(&mut cmd, endpoint);
    cmd.env_remove(PAUSE).env_remove("JOB_COMPLETION_INDEX").env_remove("AWS_BATCH_JOB_ARRAY_INDEX");
    cmd
}

/// A run started by a test, killed if the test ends (or fails) before it does.
struct Run(Child);

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `cmd` paused after its first commit; returns once it says so (it holds the lease from then on).
fn start_paused(mut cmd: Command, ms: u64) -> (Run, Receiver<String>) {
    let mut run = Run(cmd.env(PAUSE, ms.to_string()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    let lines = lines_of(run.0.stderr.take().unwrap());
    let mut seen = Vec::new();
    loop {
        let line = lines.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|e| panic!("no test hook line ({e}): {seen:?}"));
        if line.starts_with("sealpipe: test hook: ") {
            return (run, lines);
        }
        seen.push(line);
    }
}

/// This host's name, as the kernel has it (what a lease must name).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string()
}

/// The refusal: exit 2, nothing on stdout, one line on stderr naming the holder.
fn assert_refused(out: &Output, manifest: &str, pid: u32) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "refused with exit 2: {err}");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", String::from_utf8_lossy(&out.stdout));
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    let line = lines[0];
    assert!(line.starts_with(&format!("sealpipe: error: {manifest}: another run of this job holds it (host {}, pid {pid}, since ", host_name())), "{line}");
    // since <RFC 3339 UTC>
    let since = line.split(", since ").nth(1).unwrap().split(')').next().unwrap();
    assert!(since.len() == 20 && since.ends_with('Z') && &since[10..11] == "T", "RFC 3339 UTC: {line}");
    assert!(line.ends_with("; wait for it to finish"), "{line}");
}

/// A few small files (the first by name is committed first with --threads 1).
fn small_tree(root: &Path) -> PathBuf {
    let media = root.join("media");
    std::fs::create_dir_all(media.join("sub")).unwrap();
    std::fs::write(media.join("a.ts"), pattern(40_000, 1)).unwrap();
    std::fs::write(media.join("b.mp4"), pattern(3_000, 2)).unwrap();
    std::fs::write(media.join("sub/c.aac"), pattern(17, 3)).unwrap();
    media
}

/// Every file under `dir` with its bytes (what a run left there).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// The sources of the records, each once.
fn sources_once(recs: &[Value]) -> Vec<String> {
    let mut sources: Vec<String> = recs.iter().map(|r| r["source"].as_str().unwrap().to_string()).collect();
    sources.sort();
    let before = sources.len();
    sources.dedup();
    assert_eq!(sources.len(), before, "a source recorded twice: {recs:?}");
    sources
}

fn canonical_sources(media: &Path) -> Vec<String> {
    let mut all: Vec<String> = ["a.ts", "b.mp4", "sub/c.aac"].iter().map(|f| canonical_path(&media.join(f))).collect();
    all.sort();
    all
}

#[test]
fn finding_10_two_runs_of_one_job_with_a_local_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let media = small_tree(dir.path());
    let out_dir = dir.path().join("enc");
    let manifest = out_dir.join("manifest.jsonl");
    let keyring = dir.path().join("keyring.json");
    let args = [
        "encrypt",
        media.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--keyring",
        keyring.to_str().unwrap(),
        "--create-keyring",
        "--threads",
        "1",
    ];
    let (mut a, _lines) = start_paused(sealpipe_cmd("http://127.0.0.1:9", &args), 120_000);
    let lock = out_dir.join("manifest.jsonl.lock");
    let holder: Value = serde_json::from_str(&std::fs::read_to_string(&lock).unwrap()).unwrap();
    assert_eq!(holder["pid"], a.0.id(), "{holder}");
    assert_eq!(holder["host"], host_name().as_str(), "{holder}");

    let before = snapshot(&out_dir);
    let b = sealpipe_cmd("http://127.0.0.1:9", &args).output().unwrap();
    assert_refused(&b, manifest.to_str().unwrap(), a.0.id());
    assert_eq!(snapshot(&out_dir), before, "the refused run left nothing (no output, record, journal or lease of its own)");

    // The holder dies: the kernel drops its lock, and the next run takes it at once.
    sigkill(&mut a.0);
    assert!(lock.exists(), "SIGKILL gave nothing back: the file stays, unlocked");
    let c = sealpipe_cmd("http://127.0.0.1:9", &args).output().unwrap();
    assert!(c.status.success(), "the run after a dead holder: {}", stderr(&c));
    assert_eq!(sources_once(&records(&manifest)), canonical_sources(&media), "converged: every file recorded once");
    assert!(!lock.exists(), "a finished run gives its lease back");
    assert!(!out_dir.join("manifest.jsonl.inflight").exists());
    let verify = sealpipe_cmd("http://127.0.0.1:9", &["verify", "--manifest", manifest.to_str().unwrap(), "--keyring", keyring.to_str().unwrap()]).output().unwrap();
    assert!(verify.status.success(), "verify: {}", stderr(&verify));
}

#[test]
fn finding_10_shards_of_one_job_hold_leases_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let media = small_tree(dir.path());
    let out_dir = dir.path().join("enc");
    let manifest = dir.path().join("run.jsonl");
    let keyring = dir.path().join("keyring.json");
    let shard_args = |shard: &'static str| {
        let mut args: Vec<String> = ["encrypt", media.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--manifest", manifest.to_str().unwrap()]
            .map(String::from)
            .to_vec();
        args.extend(["--keyring", keyring.to_str().unwrap(), "--create-keyring", "--threads", "1", "--max-concurrent-requests", "1", "--shard", shard].map(String::from));
        args
    };
    // The shard held must have a file to pause on: ask a dry run how many each takes.
    let files = |shard: &'static str| {
        let args = [shard_args(shard), vec!["--dry-run".to_string(), "--json".to_string()]].concat();
        let dry = sealpipe_cmd("http://127.0.0.1:9", &args.iter().map(String::as_str).collect::<Vec<_>>()).output().unwrap();
        assert!(dry.status.success(), "{}", stderr(&dry));
        let summary: Value = serde_json::from_str(String::from_utf8_lossy(&dry.stdout).lines().last().unwrap()).unwrap();
        summary["files"].as_u64().unwrap()
    };
    let (held, other) = if files("0/2") > 0 { ("0/2", "1/2") } else { ("1/2", "0/2") };
    let held_args = shard_args(held);
    let (mut a, _lines) = start_paused(sealpipe_cmd("http://127.0.0.1:9", &held_args.iter().map(String::as_str).collect::<Vec<_>>()), 120_000);
    let other_args = shard_args(other);
    let b = sealpipe_cmd("http://127.0.0.1:9", &other_args.iter().map(String::as_str).collect::<Vec<_>>()).output().unwrap();
    assert!(b.status.success(), "the other shard runs beside it: {}", stderr(&b));
    let again = sealpipe_cmd("http://127.0.0.1:9", &held_args.iter().map(String::as_str).collect::<Vec<_>>()).output().unwrap();
    let tag = held.replace('/', "-of-");
    assert_refused(&again, dir.path().join(format!("run.shard-{tag}.jsonl")).to_str().unwrap(), a.0.id());
    sigkill(&mut a.0);
}

/// The lease object of `url` as boto3 reads it: (its JSON, its ETag), or None.
fn lease_object(moto: &Server, bucket: &str, key: &str) -> Option<(Value, String)> {
    let got = py(
        moto,
        "try:\n    o = s3.get_object(Bucket=sys.argv[1], Key=sys.argv[2])\n    print(json.dumps([json.loads(o['Body'].read()), o['ETag']]))\n\
         except s3.exceptions.NoSuchKey:\n    print('null')",
        &[bucket, key],
    );
    let v: Value = serde_json::from_str(&got).unwrap();
    (!v.is_null()).then(|| (v[0].clone(), v[1].as_str().unwrap().to_string()))
}

fn put_lease(moto: &Server, bucket: &str, key: &str, holder: &Value) {
    py(moto, "s3.put_object(Bucket=sys.argv[1], Key=sys.argv[2], Body=sys.argv[3].encode())", &[bucket, key, &holder.to_string()]);
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn finding_10_two_runs_of_one_job_with_an_s3_manifest() {
    let moto = start_moto();
    setup(&moto, "media-lease", "alias/lease");
    let dir = tempfile::tempdir().unwrap();
    let media = small_tree(dir.path());
    let url = "s3://media-lease/runs/job.jsonl";
    let args = ["encrypt", media.to_str().unwrap(), "--to", "s3://media-lease/enc/", "--kms-key", "alias/lease", "--manifest", url, "--threads", "1", "--max-concurrent-requests", "1", "--force-path-style"];

    let (mut a, _lines) = start_paused(sealpipe_cmd(&moto.url(), &args), 120_000);
    let (holder, etag) = lease_object(&moto, "media-lease", "runs/job.jsonl.lease").expect("A holds the lease object");
    assert_eq!(holder["pid"], a.0.id(), "{holder}");
    assert_eq!(holder["host"], host_name().as_str(), "{holder}");
    assert!(holder["expires"].as_u64().unwrap() > holder["since"].as_u64().unwrap(), "{holder}");

    let b = sealpipe_cmd(&moto.url(), &args).output().unwrap();
    assert_refused(&b, url, a.0.id());
    let (_, etag_after) = lease_object(&moto, "media-lease", "runs/job.jsonl.lease").unwrap();
    assert_eq!(etag_after, etag, "the refused run did not touch the lease");
    assert!(py(&moto, "print(len(s3.list_objects_v2(Bucket='media-lease', Prefix='runs/job.jsonl').get('Contents', [])))", &[]) == "1", "no manifest uploaded by the refused run");

    // The holder dies without giving the lease back: same host, its pid gone, so taken over at once.
    sigkill(&mut a.0);
    assert!(lease_object(&moto, "media-lease", "runs/job.jsonl.lease").is_some(), "SIGKILL gave nothing back");
    let c = sealpipe_cmd(&moto.url(), &args).output().unwrap();
    assert!(c.status.success(), "the run after a dead holder: {}", stderr(&c));
    assert!(stderr(&c).contains(&format!("took over the lease of host {}, pid {}", host_name(), a.0.id())), "{}", stderr(&c));
    assert!(lease_object(&moto, "media-lease", "runs/job.jsonl.lease").is_none(), "a finished run gives its lease back");
    let local = dir.path().join("job.jsonl");
    py(&moto, "s3.download_file('media-lease', 'runs/job.jsonl', sys.argv[1])", &[local.to_str().unwrap()]);
    assert_eq!(sources_once(&records(&local)), canonical_sources(&media), "converged: every file recorded once");
    let verify = sealpipe_cmd(&moto.url(), &["verify", "--manifest", url, "--force-path-style"]).output().unwrap();
    assert!(verify.status.success(), "verify: {}", stderr(&verify));
}

#[test]
fn finding_10_a_dead_holder_does_not_block() {
    let moto = start_moto();
    setup(&moto, "media-stale", "alias/stale");
    let dir = tempfile::tempdir().unwrap();
    let media = small_tree(dir.path());
    let url = "s3://media-stale/runs/job.jsonl";
    let args = ["encrypt", media.to_str().unwrap(), "--to", "s3://media-stale/enc/", "--kms-key", "alias/stale", "--manifest", url, "--force-path-style"];
    let key = "runs/job.jsonl.lease";

    // A pod on another host that is alive (its lease not run out): refused, naming it.
    let since = now_unix() - 30;
    put_lease(&moto, "media-stale", key, &serde_json::json!({"host": "pod-7f9c", "pid": 1, "since": since, "expires": now_unix() + 3600}));
    let refused = sealpipe_cmd(&moto.url(), &args).output().unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let line = stderr(&refused);
    assert!(line.trim_end().ends_with(&format!("{url}: another run of this job holds it (host pod-7f9c, pid 1, since {}); wait for it to finish", rfc3339(since))), "{line}");

    // The same pod, dead: its lease ran out. Taken over.
    put_lease(&moto, "media-stale", key, &serde_json::json!({"host": "pod-7f9c", "pid": 1, "since": since, "expires": now_unix() - 1}));
    let out = sealpipe_cmd(&moto.url(), &args).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("took over the lease of host pod-7f9c, pid 1"), "{}", stderr(&out));
    assert!(lease_object(&moto, "media-stale", key).is_none(), "given back at the end");

    // A local lease file left by a dead run (not locked by anyone): no obstacle.
    let out_dir = dir.path().join("enc");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join("manifest.jsonl.lock"), r#"{"host":"gone","pid":1,"since":1}"#).unwrap();
    let keyring = dir.path().join("keyring.json");
    let local = sealpipe_cmd(&moto.url(), &["encrypt", media.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--keyring", keyring.to_str().unwrap(), "--create-keyring"]).output().unwrap();
    assert!(local.status.success(), "{}", stderr(&local));
    assert!(!out_dir.join("manifest.jsonl.lock").exists());
    assert_eq!(sources_once(&records(&out_dir.join("manifest.jsonl"))), canonical_sources(&media));
}

#[test]
fn finding_10_a_run_that_lost_its_lease_does_not_upload_its_manifest() {
    let moto = start_moto();
    setup(&moto, "media-lost", "alias/lost");
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("only.ts"), pattern(5_000, 9)).unwrap();
    let url = "s3://media-lost/runs/job.jsonl";
    let args = ["encrypt", media.to_str().unwrap(), "--to", "s3://media-lost/enc/", "--kms-key", "alias/lost", "--manifest", url, "--force-path-style", "--lease-seconds", "3"];
    // Another run's manifest, already there: it must survive.
    py(&moto, "s3.put_object(Bucket='media-lost', Key='runs/job.jsonl', Body=b'{\"theirs\": true}\\n')", &[]);
    let (mut a, lines) = start_paused(sealpipe_cmd(&moto.url(), &args), 10_000);
    // Another run takes the lease over (as one would after A's lease ran out unrenewed).
    put_lease(&moto, "media-lost", "runs/job.jsonl.lease", &serde_json::json!({"host": "pod-other", "pid": 4242, "since": now_unix(), "expires": now_unix() + 3600}));
    let status = a.0.wait().unwrap();
    let rest: Vec<String> = lines.iter().collect();
    assert_eq!(status.code(), Some(2), "{rest:?}");
    let error = rest.iter().find(|l| l.starts_with("sealpipe: error: ")).unwrap_or_else(|| panic!("{rest:?}"));
    assert!(error.contains(&format!("{url}: this run lost its lease on the job (it is held by host pod-other, pid 4242, since ")), "{error}");
    assert!(error.contains("does not upload it; its records are kept in "), "{error}");
    let kept = PathBuf::from(error.rsplit("its records are kept in ").next().unwrap());
    let kept_records = records(&kept);
    assert_eq!(kept_records.len(), 2, "the copy it read and its own record, kept: {kept_records:?}");
    assert!(kept_records[1]["source"].as_str().unwrap().ends_with("only.ts"), "{kept_records:?}");
    let body = py(&moto, "print(s3.get_object(Bucket='media-lost', Key='runs/job.jsonl')['Body'].read().decode().strip())", &[]);
    assert_eq!(body, r#"{"theirs": true}"#, "the other run's manifest is not overwritten");
    let (holder, _) = lease_object(&moto, "media-lost", "runs/job.jsonl.lease").unwrap();
    assert_eq!(holder["host"], "pod-other", "the lost lease is not deleted: it is the other run's");
    std::fs::remove_file(&kept).unwrap();
    for beside in ["inflight", "base"] {
        let _ = std::fs::remove_file(format!("{}.{beside}", kept.display()));
    }
}

#[test]
fn finding_10_a_resumed_copy_keeps_the_records_another_run_uploaded() {
    let moto = start_moto();
    setup(&moto, "media-join", "alias/join");
    let dir = tempfile::tempdir().unwrap();
    let media = small_tree(dir.path());
    let url = "s3://media-join/runs/job.jsonl";
    let args = ["encrypt", media.to_str().unwrap(), "--to", "s3://media-join/enc/", "--kms-key", "alias/join", "--manifest", url, "--threads", "1", "--max-concurrent-requests", "1", "--force-path-style"];
    // A reads the manifest (there is none yet), and dies: its local copy waits on this host to be resumed.
    let (mut a, _lines) = start_paused(sealpipe_cmd(&moto.url(), &args), 120_000);
    sigkill(&mut a.0);
    // Meanwhile another run of the job, elsewhere, uploads the manifest with a record of its own.
    let theirs = dir.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("x.ts"), pattern(2_000, 7)).unwrap();
    let other = sealpipe_cmd(&moto.url(), &["encrypt", theirs.to_str().unwrap(), "--to", "s3://media-join/other/", "--kms-key", "alias/join", "--manifest", "s3://media-join/runs/other.jsonl", "--force-path-style"]).output().unwrap();
    assert!(other.status.success(), "{}", stderr(&other));
    py(&moto, "s3.copy_object(Bucket='media-join', Key='runs/job.jsonl', CopySource={'Bucket': 'media-join', 'Key': 'runs/other.jsonl'})", &[]);

    // The job's run on this host resumes from A's copy: its upload is refused (the manifest is not the one
    // A read), so the other run's lines are joined in and the upload made again.
    let c = sealpipe_cmd(&moto.url(), &args).output().unwrap();
    assert!(c.status.success(), "{}", stderr(&c));
    assert!(stderr(&c).contains("resuming from"), "{}", stderr(&c));
    assert!(stderr(&c).contains(&format!("{url} was written by another run meanwhile; its 1 line(s)")), "{}", stderr(&c));
    let local = dir.path().join("job.jsonl");
    py(&moto, "s3.download_file('media-join', 'runs/job.jsonl', sys.argv[1])", &[local.to_str().unwrap()]);
    let mut want = canonical_sources(&media);
    want.push(canonical_path(&theirs.join("x.ts")));
    want.sort();
    assert_eq!(sources_once(&records(&local)), want, "no run's records dropped");
    let verify = sealpipe_cmd(&moto.url(), &["verify", "--manifest", url, "--force-path-style"]).output().unwrap();
    assert!(verify.status.success(), "verify: {}", stderr(&verify));
}

#[test]
fn finding_10_a_manifest_stored_as_the_run_goes_never_overwrites_another_runs() {
    let moto = start_moto();
    setup(&moto, "media-flush", "alias/flush");
    let dir = tempfile::tempdir().unwrap();
    let media = small_tree(dir.path());
    let url = "s3://media-flush/runs/job.jsonl";
    // Stored after every record: the run's first snapshot comes after the other run's upload below.
    let args = ["encrypt", media.to_str().unwrap(), "--to", "s3://media-flush/enc/", "--kms-key", "alias/flush", "--manifest", url, "--threads", "1", "--max-concurrent-requests", "1", "--force-path-style", "--manifest-flush-records", "1"];
    let theirs = dir.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("x.ts"), pattern(2_000, 7)).unwrap();
    let other = sealpipe_cmd(&moto.url(), &["encrypt", theirs.to_str().unwrap(), "--to", "s3://media-flush/other/", "--kms-key", "alias/flush", "--manifest", "s3://media-flush/runs/other.jsonl", "--force-path-style"]).output().unwrap();
    assert!(other.status.success(), "{}", stderr(&other));

    // A has read the manifest (none yet) and committed its first file; then another run's manifest lands there.
    let (mut a, lines) = start_paused(sealpipe_cmd(&moto.url(), &args), 1_500);
    py(&moto, "s3.copy_object(Bucket='media-flush', Key='runs/job.jsonl', CopySource={'Bucket': 'media-flush', 'Key': 'runs/other.jsonl'})", &[]);
    let status = a.0.wait().unwrap();
    let rest: Vec<String> = lines.iter().collect();
    assert!(status.success(), "{rest:?}");
    let warnings = rest.iter().filter(|l| l.contains("another run wrote it meanwhile")).count();
    assert!(warnings <= 1, "a refused snapshot is said once, not at every turn: {rest:?}");
    assert!(rest.iter().any(|l| l.contains(&format!("{url} was written by another run meanwhile; its 1 line(s)"))), "{rest:?}");
    let local = dir.path().join("job.jsonl");
    py(&moto, "s3.download_file('media-flush', 'runs/job.jsonl', sys.argv[1])", &[local.to_str().unwrap()]);
    let mut want = canonical_sources(&media);
    want.push(canonical_path(&theirs.join("x.ts")));
    want.sort();
    assert_eq!(sources_once(&records(&local)), want, "neither a snapshot nor the end of the run dropped the other run's record");
}

/// Unix seconds as RFC 3339 UTC, through Python (an independent rendering).
fn rfc3339(unix: u64) -> String {
    let out = Command::new("python3")
        .args(["-c", "import datetime, sys; print(datetime.datetime.fromtimestamp(int(sys.argv[1]), datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'))", &unix.to_string()])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
