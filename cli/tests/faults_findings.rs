//! Regression tests for the numbered findings of issue 10, each named after
//! its finding and asserting the CONTRACT behaviour (what a fixed sealpipe
//! must do), through the fault proxy (`common/faultproxy.py`) against moto.
//!
//! The ones today's product fails are `#[ignore = "issue 10 finding N: fails
//! today: ..."]` so the suite stays green; run them with
//! `cargo test -p sealpipe-cli --test faults_findings -- --ignored`. The fix
//! of a finding un-ignores its tests. Every child process is bounded (a hang
//! fails the test instead of blocking the suite).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(25);

/// Two multipart files (6 and 12 MiB: 2 and 3 parts of 5 MiB) and two small ones (PutObject).
const SIZES: &[usize] = &[(6 << 20) + 17, (12 << 20) + 123, 100_000, 33];

struct Job {
    dir: tempfile::TempDir,
    media: PathBuf,
    manifest: PathBuf,
    sources: Vec<String>,
    bucket: String,
}

impl Job {
    fn new(moto: &Server, bucket: &str, sizes: &[usize]) -> Job {
        setup(moto, bucket, &format!("alias/{bucket}"));
        let (dir, media) = media_files(sizes);
        let manifest = dir.path().join("run.jsonl");
        let sources = files_under(&media);
        Job { dir, media, manifest, sources, bucket: bucket.to_string() }
    }

    fn command(&self, endpoint: &str, extra: &[&str]) -> std::process::Command {
        let to = format!("s3://{}/enc/", self.bucket);
        let alias = format!("alias/{}", self.bucket);
        let mut args = vec!["encrypt", self.media.to_str().unwrap(), "--to", &to, "--kms-key", &alias];
        args.extend_from_slice(&["--part-size", "5M", "--manifest", self.manifest.to_str().unwrap(), "--json"]);
        args.extend_from_slice(extra);
        sealpipe_command(endpoint, &args)
    }

    fn run(&self, endpoint: &str, extra: &[&str]) -> Bounded {
        run_bounded(&mut self.command(endpoint, extra), WAIT)
    }

    fn converged(&self, moto: &Server) {
        assert_converged(moto, &self.manifest, &self.bucket, "enc/", &self.sources);
    }

    /// The convergence audit, printed as a row of issue 10's table (see it
    /// with `--nocapture`), then asserted.
    fn audited(&self, moto: &Server, fault: &str, faulty: &Bounded) {
        table_row(fault, faulty, &convergence(moto, &self.manifest, &self.bucket, "enc/", &self.sources));
    }
}

/// `TABLE|<fault>|attempted|done|failed|lost|dup|open|unrecorded` on stderr:
/// files the faulty run started, finished and failed (its `--json` events),
/// then what the audit after the fault-free re-run found; asserts convergence.
fn table_row(fault: &str, faulty: &Bounded, c: &Convergence) {
    let mut counts = (0, 0, 0);
    for event in faulty.stdout().lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()) {
        match event["event"].as_str() {
            Some("started") => counts.0 += 1,
            Some("done") => counts.1 += 1,
            Some("failed") => counts.2 += 1,
            _ => {}
        }
    }
    eprintln!(
        "TABLE|{fault}|{}|{}|{}|{}|{}|{}|{}",
        counts.0,
        counts.1,
        counts.2,
        c.lost.len(),
        c.duplicated.len(),
        c.open_uploads.len(),
        c.unrecorded_objects.len()
    );
    assert!(c.ok(), "not converged: {c:#?}");
}

/// Ended by itself, with no panic and no signal: exit 0, 1 or 2.
fn assert_no_crash(b: &Bounded, what: &str) {
    assert!(!b.timed_out, "{what}: still running after {WAIT:?} (a hang); stderr: {}", b.stderr());
    assert!(b.code().is_some(), "{what}: killed by a signal ({}); stderr: {}", b.out.status, b.stderr());
    assert!(!b.stderr().contains("panicked"), "{what}: panicked: {}", b.stderr());
    assert!(matches!(b.code(), Some(0..=2)), "{what}: exit {:?}: {}", b.code(), b.stderr());
}

fn assert_ok(b: &Bounded, what: &str) {
    assert_no_crash(b, what);
    assert_eq!(b.code(), Some(0), "{what}: stderr: {}", b.stderr());
}

fn lines_naming<'a>(err: &'a str, name: &str) -> Vec<&'a str> {
    err.lines().filter(|l| l.contains(name)).collect()
}

// ---------------------------------------------------------------------------
// Finding 1: a write applied by S3 whose reply is lost leaves the file stuck.

/// Every reply to the CompleteMultipartUpload of one file is lost (500 after
/// S3 applied it): the faulty run fails that file; one fault-free re-run
/// settles the unrecorded object (re-encrypted under a new key, said) and
/// converges. Today the re-run refuses it: "output already exists".
#[test]
fn finding_01_lost_complete_reply_is_settled_by_rerun() {
    let moto = start_moto();
    let job = Job::new(&moto, "f01-complete", SIZES);
    let proxy = FaultProxy::start(
        moto.port,
        r#"{"rules": [{"op": "CompleteMultipartUpload", "key": "enc/f01.ts", "all": true, "action": "lose_reply_500"}]}"#,
    );
    let faulty = job.run(&proxy.url(), &[]);
    assert_no_crash(&faulty, "faulty run");
    assert!(proxy.count_action("CompleteMultipartUpload", "lose_reply_500") >= 1);
    assert!(objects_under(&moto, &job.bucket, "enc/").contains(&"enc/f01.ts".to_string()), "S3 applied the Complete");

    proxy.set_schedule("{}");
    let rerun = job.run(&proxy.url(), &[]);
    assert_ok(&rerun, "fault-free re-run");
    assert!(rerun.stderr().contains("f01.ts") && rerun.stderr().contains("new key"), "the settled object is said: {}", rerun.stderr());
    job.audited(&moto, "lost replies to every CompleteMultipartUpload of a file (500 after applied)", &faulty);
}

/// The same for a PutObject (a small file) whose every reply is lost to a reset.
#[test]
fn finding_01_lost_put_object_reply_is_settled_by_rerun() {
    let moto = start_moto();
    let job = Job::new(&moto, "f01-put", SIZES);
    let proxy = FaultProxy::start(
        moto.port,
        r#"{"rules": [{"op": "PutObject", "key": "enc/f02.ts", "all": true, "action": "lose_reply_reset"}]}"#,
    );
    let faulty = job.run(&proxy.url(), &[]);
    assert_no_crash(&faulty, "faulty run");
    assert!(proxy.count_action("PutObject", "lose_reply_reset") >= 1);
    assert!(objects_under(&moto, &job.bucket, "enc/").contains(&"enc/f02.ts".to_string()), "S3 applied the PutObject");

    proxy.set_schedule("{}");
    let rerun = job.run(&proxy.url(), &[]);
    assert_ok(&rerun, "fault-free re-run");
    assert!(rerun.stderr().contains("f02.ts") && rerun.stderr().contains("new key"), "the settled object is said: {}", rerun.stderr());
    job.audited(&moto, "lost replies to every PutObject of a file (reset after applied)", &faulty);
}

/// With `AWS_MAX_ATTEMPTS=1`: one lost reply on the first Complete and the
/// first PutObject is enough to fail a file; the re-run settles both.
#[test]
fn finding_01_single_lost_replies_without_retries_are_settled_by_rerun() {
    let moto = start_moto();
    let job = Job::new(&moto, "f01-once", SIZES);
    let proxy = FaultProxy::start(
        moto.port,
        r#"{"rules": [
            {"op": "CompleteMultipartUpload", "nth": 1, "action": "lose_reply_500"},
            {"op": "PutObject", "nth": 1, "action": "lose_reply_reset"}
        ]}"#,
    );
    let faulty = run_bounded(job.command(&proxy.url(), &[]).env("AWS_MAX_ATTEMPTS", "1"), WAIT);
    assert_no_crash(&faulty, "faulty run");
    assert_eq!(proxy.faults().len(), 2, "{:?}", proxy.faults());
    proxy.set_schedule("{}");
    let rerun = job.run(&proxy.url(), &[]);
    assert_ok(&rerun, "fault-free re-run");
    job.audited(&moto, "one lost reply to Complete and to PutObject, AWS_MAX_ATTEMPTS=1", &faulty);
}

// ---------------------------------------------------------------------------
// Finding 2: lost CreateMultipartUpload replies leave duplicate uploads open.

/// The first two replies to CreateMultipartUpload are lost after moto
/// opened the upload: the SDK's retries open three uploads for one file.
/// An exit-0 run leaves none of them open.
#[test]
fn finding_02_duplicate_create_multipart_uploads_are_aborted() {
    let moto = start_moto();
    let job = Job::new(&moto, "f02-dup", SIZES);
    let proxy = FaultProxy::start(
        moto.port,
        r#"{"rules": [{"op": "CreateMultipartUpload", "key": "enc/f01.ts", "first": 2, "action": "lose_reply_500"}]}"#,
    );
    let faulty = job.run(&proxy.url(), &[]);
    assert_no_crash(&faulty, "faulty run");
    assert_eq!(proxy.count_action("CreateMultipartUpload", "lose_reply_500"), 2);
    if faulty.code() == Some(0) {
        let open = open_upload_list(&moto, &job.bucket);
        assert!(open.is_empty(), "an exit-0 run left uploads open (billed): {open:?}");
    }
    proxy.set_schedule("{}");
    let rerun = job.run(&proxy.url(), &[]);
    assert_ok(&rerun, "fault-free re-run");
    job.audited(&moto, "lost replies to the first 2 CreateMultipartUpload (SDK retries open duplicates)", &faulty);
}

// ---------------------------------------------------------------------------
// Finding 3: a failed AbortMultipartUpload is silent and forgotten.

/// A part is rejected (400, not retryable), so the file fails and its upload
/// is aborted, but every AbortMultipartUpload fails (500): the run says so on
/// stderr and keeps the upload in the journal; the fault-free re-run aborts it.
#[test]
fn finding_03_failed_abort_is_said_and_retried_by_the_next_run() {
    let moto = start_moto();
    let job = Job::new(&moto, "f03-cleanup", SIZES);
    let proxy = FaultProxy::start(
        moto.port,
        r#"{"rules": [
            {"op": "UploadPart", "key": "enc/f01.ts", "part": 2, "all": true, "action": "status", "status": 400, "code": "InvalidArgument"},
            {"op": "AbortMultipartUpload", "all": true, "action": "status", "status": 500}
        ]}"#,
    );
    let faulty = job.run(&proxy.url(), &[]);
    assert_no_crash(&faulty, "faulty run");
    assert_eq!(faulty.code(), Some(1), "{}", faulty.stderr());
    assert!(proxy.count_action("AbortMultipartUpload", "status") >= 1, "{}", summarize_log(&proxy.log()));
    let (key, upload) = open_upload_list(&moto, &job.bucket).pop().expect("the abort failed: the upload is open");
    let err = faulty.stderr();
    assert!(
        err.lines().any(|l| {
            let l = l.to_lowercase();
            l.contains("abort") && (l.contains("fail") || l.contains("could not")) && (l.contains(&key) || l.contains(&upload.to_lowercase()))
        }),
        "the failed abort is said on stderr: {err}"
    );
    let journal = std::fs::read_to_string(format!("{}.inflight", job.manifest.display())).unwrap_or_default();
    assert!(journal.contains(&upload), "the upload stays in the journal for the next run: {journal:?}");

    proxy.set_schedule("{}");
    let rerun = job.run(&proxy.url(), &[]);
    assert_ok(&rerun, "fault-free re-run");
    let aborted: Vec<Value> = proxy.log().into_iter().filter(|e| e["op"] == "AbortMultipartUpload").collect();
    assert!(aborted.iter().any(|e| e["upload_id"] == upload.as_str()), "aborted by id: {aborted:?}");
    job.audited(&moto, "every AbortMultipartUpload fails (500) after a rejected part", &faulty);
}

// ---------------------------------------------------------------------------
// Finding 4: crash cleanup compares clocks.

/// Killed mid-part; S3's `Initiated` dates are 120 s behind the client's
/// clock (the proxy's `initiated_offset_s`): the re-run still aborts the
/// upload its journal names.
#[test]
fn finding_04_crash_cleanup_does_not_depend_on_clocks() {
    let moto = start_moto();
    let job = Job::new(&moto, "f04-clock", SIZES);
    let proxy = FaultProxy::start(
        moto.port,
        r#"{"rules": [{"op": "UploadPart", "key": "enc/f01.ts", "part": 2, "nth": 1, "action": "pause_until_released"}]}"#,
    );
    let mut child = job.command(&proxy.url(), &[]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    proxy.wait_held(1, WAIT);
    child.kill().unwrap();
    let killed = wait_bounded(child, WAIT);
    proxy.set_schedule(r#"{"initiated_offset_s": -120}"#);
    proxy.release();
    proxy.wait_until("the held part answered", WAIT, |log| log.iter().all(|e| e["state"] == "done"));
    assert!(!open_upload_list(&moto, &job.bucket).is_empty(), "killed with an upload open");

    let rerun = job.run(&proxy.url(), &[]);
    assert_ok(&rerun, "re-run");
    job.audited(&moto, "SIGKILL mid-part, S3 clock 120 s behind the client", &killed);
}

// ---------------------------------------------------------------------------
// Finding 5: truncated GET bodies are not resumed.

fn source_objects(moto: &Server, bucket: &str) -> Vec<String> {
    py(
        moto,
        "s3.create_bucket(Bucket=sys.argv[1])\n\
         for k, n in [('raw/big.ts', (12 << 20) + 5), ('raw/mid.ts', (6 << 20) + 3), ('raw/small.ts', 70000)]:\n\
         \x20   s3.put_object(Bucket=sys.argv[1], Key=k, Body=os.urandom(n))",
        &[bucket],
    );
    ["big.ts", "mid.ts", "small.ts"].iter().map(|k| format!("s3://{bucket}/raw/{k}")).collect()
}

/// S3 → S3: the first three GetObject bodies of the source end after
/// 1000 bytes (headers promise the whole range). Reads resume from the byte
/// where they stopped; the run exits 0 and converges.
#[test]
fn finding_05_truncated_get_bodies_are_resumed() {
    let moto = start_moto();
    setup(&moto, "f05-out", "alias/f05-out");
    let sources = source_objects(&moto, "f05-src");
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("run.jsonl");
    let proxy = FaultProxy::start(
        moto.port,
        r#"{"rules": [{"op": "GetObject", "bucket": "f05-src", "first": 3, "action": "truncate", "bytes": 1000}]}"#,
    );
    let args = ["encrypt", "s3://f05-src/raw/", "--to", "s3://f05-out/enc/", "--kms-key", "alias/f05-out", "--part-size", "5M", "--json"];
    let out = run_bounded(sealpipe_command(&proxy.url(), &args).arg("--manifest").arg(&manifest), WAIT);
    assert_eq!(proxy.count_action("GetObject", "truncate"), 3, "{}", summarize_log(&proxy.log()));
    assert_ok(&out, "S3 to S3 run with truncated GETs");
    table_row("truncated GET bodies of S3 sources (first 3)", &out, &convergence(&moto, &manifest, "f05-out", "enc/", &sources));
}

/// `verify` (and so `decrypt`) through truncated GET bodies: resumed, no false failure.
#[test]
fn finding_05_truncated_get_bodies_do_not_fail_verify() {
    let moto = start_moto();
    let job = Job::new(&moto, "f05-verify", SIZES);
    assert_ok(&job.run(&moto.url(), &[]), "clean run");
    job.converged(&moto);
    let proxy = FaultProxy::start(
        moto.port,
        r#"{"rules": [{"op": "GetObject", "first": 2, "action": "truncate", "bytes": 4096}]}"#,
    );
    let v = run_bounded(&mut sealpipe_command(&proxy.url(), &["verify", "--manifest", job.manifest.to_str().unwrap()]), WAIT);
    assert_eq!(proxy.count_action("GetObject", "truncate"), 2);
    assert_ok(&v, "verify through truncated GETs");

    let back = job.dir.path().join("back.ts");
    proxy.set_schedule(r#"{"rules": [{"op": "GetObject", "first": 1, "action": "truncate", "bytes": 100}]}"#);
    let d = run_bounded(
        &mut sealpipe_command(
            &proxy.url(),
            &["decrypt", "s3://f05-verify/enc/f01.ts", "--manifest", job.manifest.to_str().unwrap(), "--out", back.to_str().unwrap()],
        ),
        WAIT,
    );
    assert_ok(&d, "decrypt through a truncated GET");
    assert!(std::fs::read(&back).unwrap() == std::fs::read(job.media.join("f01.ts")).unwrap());
}

// ---------------------------------------------------------------------------
// Finding 6: one bad entry crashes the whole run.

/// A list file naming a 70,000-byte key (the SDK panics on the URI) and a
/// 2,000-byte key (over S3's 1,024-byte limit) beside a good object: both
/// refused before any request, one line each; the good one is encrypted; exit 1.
#[test]
fn finding_06_overlong_keys_in_a_list_fail_alone() {
    let moto = start_moto();
    setup(&moto, "f06-out", "alias/f06-out");
    py(&moto, "s3.create_bucket(Bucket='f06-src'); s3.put_object(Bucket='f06-src', Key='raw/good.ts', Body=os.urandom(5000))", &[]);
    let dir = tempfile::tempdir().unwrap();
    let huge = format!("raw/{}", "h".repeat(70_000));
    let long = format!("raw/{}", "l".repeat(2_000));
    let list = dir.path().join("list.txt");
    std::fs::write(&list, format!("s3://f06-src/{huge}\ns3://f06-src/{long}\ns3://f06-src/raw/good.ts\n")).unwrap();
    let manifest = dir.path().join("run.jsonl");
    let proxy = FaultProxy::start(moto.port, "{}");
    let args = ["encrypt", "--from-list", list.to_str().unwrap(), "--to", "s3://f06-out/enc/", "--kms-key", "alias/f06-out"];
    let out = run_bounded(sealpipe_command(&proxy.url(), &args).arg("--manifest").arg(&manifest), WAIT);
    assert_no_crash(&out, "run with overlong keys");
    assert_eq!(out.code(), Some(1), "the bad entries fail alone: {}", out.stderr());
    let err = out.stderr();
    assert!(!lines_naming(&err, &"l".repeat(100)).is_empty(), "a line names the 2,000-byte key: {err}");
    assert!(!lines_naming(&err, &"h".repeat(100)).is_empty(), "a line names the 70,000-byte key: {err:.3000}");
    let too_long: Vec<Value> = proxy.log().into_iter().filter(|e| e["key"].as_str().is_some_and(|k| k.len() > 1024)).collect();
    assert!(too_long.is_empty(), "keys over 1,024 bytes are refused before any request: {}", summarize_log(&too_long));
    assert_converged(&moto, &manifest, "f06-out", "enc/", &["s3://f06-src/raw/good.ts".to_string()]);
}

/// A local file whose output key (`enc/` and its 1,260-byte path below the
/// input folder) is over S3's 1,024-byte limit, beside good files: refused
/// alone, one line naming it, before any request about it; the others go.
#[test]
fn finding_06_overlong_output_key_from_a_local_path_fails_alone() {
    let moto = start_moto();
    let job = Job::new(&moto, "f06-deep", &[1000, 2000]);
    let segment = "d".repeat(250);
    let deep_dir = (0..5).fold(job.media.clone(), |dir, _| dir.join(&segment));
    std::fs::create_dir_all(&deep_dir).unwrap();
    std::fs::write(deep_dir.join("deep.ts"), pattern(3000, 9)).unwrap();
    let proxy = FaultProxy::start(moto.port, "{}");
    let out = job.run(&proxy.url(), &[]);
    assert_no_crash(&out, "run with an overlong output key");
    let err = out.stderr();
    assert_eq!(out.code(), Some(1), "the deep file fails alone: {err}");
    let refused = lines_naming(&err, "deep.ts");
    assert!(!refused.is_empty(), "a line names the deep file: {err}");
    assert!(refused.iter().all(|l| l.contains("key longer than S3's 1024-byte limit")), "{err}");
    let about_it: Vec<Value> = proxy.log().into_iter().filter(|e| e["key"].as_str().is_some_and(|k| k.contains(&segment))).collect();
    assert!(about_it.is_empty(), "no request about the deep file: {}", summarize_log(&about_it));
    job.converged(&moto);
}

/// A file whose name is not UTF-8 beside good files: no panic; the good
/// files are encrypted; the odd one is encrypted and recorded losslessly
/// (exit 0) or refused alone with one line (exit 1).
#[test]
fn finding_06_non_utf8_name_fails_alone_or_is_encrypted() {
    use std::os::unix::ffi::OsStrExt;
    let moto = start_moto();
    let job = Job::new(&moto, "f06-utf8", &[1000, 2000]);
    let odd = job.media.join(std::ffi::OsStr::from_bytes(b"odd-\xff\xfe.ts"));
    std::fs::write(&odd, pattern(3000, 7)).unwrap();
    let out = job.run(&moto.url(), &[]);
    assert_no_crash(&out, "run with a non-UTF-8 name");
    let c = convergence(&moto, &job.manifest, &job.bucket, "enc/", &job.sources);
    match out.code() {
        Some(0) => {
            let recs = records(&job.manifest);
            assert_eq!(recs.len(), 3, "the odd name is recorded too: {recs:?}");
            assert!(c.lost.is_empty() && c.open_uploads.is_empty() && c.unrecorded_objects.is_empty(), "{c:#?}");
            assert_eq!(c.verify.0, Some(0), "{c:#?}");
        }
        _ => {
            assert_eq!(out.code(), Some(1), "{}", out.stderr());
            assert!(out.stderr().lines().any(|l| l.contains("odd-")), "one line names it: {}", out.stderr());
            assert!(c.ok(), "the good files converge: {c:#?}");
        }
    }
}

// ---------------------------------------------------------------------------
// Finding 7: SIGBUS when a mapped source shrinks under the reader.

/// A 12 MiB source is truncated to 2 MiB while its first part is held at the
/// proxy (one part buffer: nothing past part 1 has been read yet): the file
/// fails as "changed while being read", exit 1, no signal, no open upload.
#[test]
fn finding_07_source_shrinking_while_read_is_a_clean_failure() {
    let moto = start_moto();
    let job = Job::new(&moto, "f07-bus", &[(12 << 20) + 1]);
    let proxy = FaultProxy::start(moto.port, r#"{"rules": [{"op": "UploadPart", "nth": 1, "action": "pause_until_released"}]}"#);
    let child = job
        .command(&proxy.url(), &["--concurrency", "1", "--threads", "1", "--max-concurrent-requests", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy.wait_held(1, WAIT);
    let f = std::fs::OpenOptions::new().write(true).open(job.media.join("f00.ts")).unwrap();
    f.set_len(2 << 20).unwrap();
    drop(f);
    proxy.release();
    let out = wait_bounded(child, WAIT);
    assert_no_crash(&out, "run over a shrinking source");
    assert_eq!(out.code(), Some(1), "{}", out.stderr());
    assert!(out.stderr().contains("changed while"), "{}", out.stderr());
    assert!(open_upload_list(&moto, &job.bucket).is_empty(), "no upload left open");
}

// ---------------------------------------------------------------------------
// Finding 8: FIFOs hang; FIFOs and symlinks in folders are skipped silently.

fn mkfifo(path: &Path) {
    assert!(std::process::Command::new("mkfifo").arg(path).status().unwrap().success());
}

/// A FIFO named as the input is refused before it is opened (no writer ever comes).
#[test]
fn finding_08_fifo_given_as_input_is_refused_not_hung() {
    let moto = start_moto();
    setup(&moto, "f08-fifo", "alias/f08-fifo");
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.ts");
    mkfifo(&fifo);
    let manifest = dir.path().join("run.jsonl");
    let args = ["encrypt", fifo.to_str().unwrap(), "--to", "s3://f08-fifo/enc/", "--kms-key", "alias/f08-fifo"];
    let out = run_bounded(sealpipe_command(&moto.url(), &args).arg("--manifest").arg(&manifest), Duration::from_secs(15));
    assert_no_crash(&out, "FIFO input");
    assert_ne!(out.code(), Some(0), "{}", out.stderr());
    assert!(out.stderr().lines().any(|l| l.contains("pipe.ts")), "a line names the FIFO: {}", out.stderr());
    assert!(open_upload_list(&moto, "f08-fifo").is_empty());
    assert!(objects_under(&moto, "f08-fifo", "enc/").is_empty());
}

/// Inside a folder: a symlinked file is followed (encrypted, as `aws s3 cp`
/// does), a FIFO is reported skipped with its reason; nothing hangs.
#[test]
fn finding_08_fifo_and_symlink_in_a_folder_are_not_skipped_silently() {
    let moto = start_moto();
    let job = Job::new(&moto, "f08-dir", &[1000]);
    let outside = job.dir.path().join("outside.ts");
    std::fs::write(&outside, pattern(2222, 8)).unwrap();
    std::os::unix::fs::symlink(&outside, job.media.join("link.ts")).unwrap();
    mkfifo(&job.media.join("pipe.ts"));
    let out = job.run(&moto.url(), &[]);
    assert_no_crash(&out, "folder with a FIFO and a symlink");
    let said = format!("{}\n{}", out.stdout(), out.stderr());
    assert!(said.lines().any(|l| l.contains("pipe.ts")), "the FIFO is reported: {said}");
    let objects = objects_under(&moto, &job.bucket, "enc/");
    assert!(objects.contains(&"enc/link.ts".to_string()), "the symlinked file is encrypted: {objects:?}; {said}");
    assert!(!objects.contains(&"enc/pipe.ts".to_string()));
    assert!(open_upload_list(&moto, &job.bucket).is_empty());
}

// ---------------------------------------------------------------------------
// Finding 9: verify passes a torn manifest.

/// The manifest's last record is cut in half (a crash mid-append): `verify`
/// reports the torn line and exits non-zero; the re-run treats that file's
/// output as unrecorded, settles it and converges.
#[test]
fn finding_09_torn_manifest_is_never_verified() {
    let moto = start_moto();
    let job = Job::new(&moto, "f09-torn", &[1000, 2000]);
    assert_ok(&job.run(&moto.url(), &[]), "clean run");
    job.converged(&moto);
    let text = std::fs::read_to_string(&job.manifest).unwrap();
    let last_start = text.trim_end().rfind('\n').unwrap() + 1;
    let torn = &text[..last_start + (text.len() - last_start) / 2];
    std::fs::write(&job.manifest, torn).unwrap();

    let v = run_bounded(&mut sealpipe_command(&moto.url(), &["verify", "--manifest", job.manifest.to_str().unwrap()]), WAIT);
    assert_no_crash(&v, "verify of a torn manifest");
    assert_ne!(v.code(), Some(0), "a torn manifest is not verified: {}", v.stderr());

    let rerun = job.run(&moto.url(), &[]);
    assert_ok(&rerun, "re-run over a torn manifest");
    job.converged(&moto);
}

// ---------------------------------------------------------------------------
// Finding 10: verify does not check the settings blocks.

/// A record whose MediaConvert IV, Elastic Transcoder IV or `key_md5` was
/// altered fails `verify`.
#[test]
fn finding_10_verify_checks_the_whole_record() {
    let moto = start_moto();
    let job = Job::new(&moto, "f10-blocks", &[1000]);
    assert_ok(&job.run(&moto.url(), &[]), "clean run");
    job.converged(&moto);
    let good = std::fs::read_to_string(&job.manifest).unwrap();
    let record: Value = serde_json::from_str(good.trim()).unwrap();
    let other_iv = "AAAAAAAAAAAAAAAAAAAAAA==";
    let tampered: [(&str, Box<dyn Fn(&mut Value)>); 3] = [
        ("mediaconvert IV", Box::new(|r: &mut Value| r["mediaconvert"]["DecryptionSettings"]["InitializationVector"] = other_iv.into())),
        ("elastictranscoder IV", Box::new(|r: &mut Value| r["elastictranscoder"]["Encryption"]["InitializationVector"] = other_iv.into())),
        ("key_md5", Box::new(|r: &mut Value| r["key_md5"] = "AAAAAAAAAAAAAAAAAAAAAA==".into())),
    ];
    for (what, change) in tampered {
        let mut r = record.clone();
        change(&mut r);
        std::fs::write(&job.manifest, format!("{r}\n")).unwrap();
        let v = run_bounded(&mut sealpipe_command(&moto.url(), &["verify", "--manifest", job.manifest.to_str().unwrap()]), WAIT);
        assert_no_crash(&v, what);
        assert_eq!(v.code(), Some(1), "a record with a wrong {what} must fail verify: {}", v.stderr());
    }
}

// ---------------------------------------------------------------------------
// Finding 11: things written and asked for before they are needed.

/// A run refused because the outputs exist (a fresh manifest over an
/// already encrypted destination) asks KMS for nothing at all: no
/// `DescribeKey` either, with generated keys, with `--data-key-file` (whose
/// `Encrypt` used to come first), and on the multi-buffer CBC path.
#[test]
fn finding_11_refused_run_makes_no_kms_request() {
    let moto = start_moto();
    let job = Job::new(&moto, "f11-keys", &[1000, 2000]);
    let proxy = FaultProxy::start(moto.port, "{}");
    // The control: a run that does work resolves the key once and asks for keys.
    assert_ok(&job.run(&proxy.url(), &[]), "clean run");
    assert_eq!(proxy.count("DescribeKey"), 1, "{}", summarize_log(&proxy.log()));
    assert_eq!(proxy.count("GenerateDataKey"), 2, "{}", summarize_log(&proxy.log()));
    let key = job.dir.path().join("key.bin");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let key = key.to_str().unwrap();
    // Generated keys, a supplied key (one file at a time, and local CBC's multi-buffer path), and
    // keys shared by several files (--reuse-key: one file at a time, and the multi-buffer path).
    let refusals: [&[&str]; 5] = [
        &[],
        &["--data-key-file", key],
        &["--data-key-file", key, "--mode", "cbc"],
        &["--reuse-key"],
        &["--reuse-key", "--mode", "cbc"],
    ];
    for (i, extra) in refusals.into_iter().enumerate() {
        proxy.reset();
        let other = job.dir.path().join(format!("other-{i}.jsonl"));
        let to = format!("s3://{}/enc/", job.bucket);
        let alias = format!("alias/{}", job.bucket);
        let mut args = vec!["encrypt", job.media.to_str().unwrap(), "--to", &to, "--kms-key", &alias, "--manifest", other.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = run_bounded(&mut sealpipe_command(&proxy.url(), &args), WAIT);
        assert_no_crash(&out, "refused run");
        assert_eq!(out.code(), Some(1), "{extra:?}: {}", out.stderr());
        for name in ["f00.ts", "f01.ts"] {
            assert!(out.stderr().contains(&format!("enc/{name}: output already exists")), "{extra:?}: {}", out.stderr());
        }
        assert_eq!(proxy.count_service("kms"), 0, "{extra:?}: {}", summarize_log(&proxy.log()));
    }
    // A run that does work with a supplied key wraps it: once per service (`--target any`).
    proxy.reset();
    let out = job.run(&proxy.url(), &["--force", "--data-key-file", key]);
    assert_ok(&out, "run with a supplied key");
    assert_eq!((proxy.count("DescribeKey"), proxy.count("Encrypt"), proxy.count("GenerateDataKey")), (1, 2, 0), "{}", summarize_log(&proxy.log()));
    // And with one cached key for both files on the multi-buffer path: generated once, wrapped for the second service.
    proxy.reset();
    let out = job.run(&proxy.url(), &["--force", "--reuse-key", "--mode", "cbc"]);
    assert_ok(&out, "multi-buffer run with a cached key");
    assert_eq!((proxy.count("DescribeKey"), proxy.count("Encrypt"), proxy.count("GenerateDataKey")), (1, 1, 1), "{}", summarize_log(&proxy.log()));
}

/// `--dry-run` writes no keyring; an explicit `--keyring` path that does not
/// exist is an error (no new keyring made silently).
#[test]
fn finding_11_dry_run_and_mistyped_keyring_create_nothing() {
    let (dir, media) = media_files(&[1000]);
    let keyring = dir.path().join("keyring-typo.json");
    let out_dir = dir.path().join("enc");
    let dry = run_bounded(
        std::process::Command::new(bin())
            .args(["encrypt", media.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--dry-run", "--keyring"])
            .arg(&keyring)
            .env("AWS_EC2_METADATA_DISABLED", "true"),
        WAIT,
    );
    assert_no_crash(&dry, "dry run");
    assert!(!keyring.exists(), "a dry run creates no keyring");
    let real = run_bounded(
        std::process::Command::new(bin())
            .args(["encrypt", media.to_str().unwrap(), "--out", out_dir.to_str().unwrap(), "--keyring"])
            .arg(&keyring)
            .env("AWS_EC2_METADATA_DISABLED", "true"),
        WAIT,
    );
    assert_no_crash(&real, "run with a mistyped keyring");
    assert_eq!(real.code(), Some(2), "a missing explicit keyring is an error: {}", real.stderr());
    assert!(!keyring.exists(), "no keyring made silently");
}

// ---------------------------------------------------------------------------
// Finding 12: the replaced-object test raced a 1.5 s pause.

/// The objects are replaced while the first source GET is held at the proxy
/// (an event, not a sleep): the changed objects fail alone, cleanly.
#[test]
fn finding_12_object_replaced_while_held_fails_cleanly_without_races() {
    let moto = start_moto();
    setup(&moto, "f12-out", "alias/f12-out");
    py(
        &moto,
        "s3.create_bucket(Bucket='f12-src')\n\
         s3.put_object(Bucket='f12-src', Key='raw/big.ts', Body=os.urandom((6 << 20) + 1))\n\
         s3.put_object(Bucket='f12-src', Key='raw/small.ts', Body=os.urandom(5000))",
        &[],
    );
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("run.jsonl");
    let proxy = FaultProxy::start(
        moto.port,
        r#"{"rules": [{"op": "GetObject", "bucket": "f12-src", "all": true, "action": "pause_until_released"}]}"#,
    );
    let args = ["encrypt", "s3://f12-src/raw/", "--to", "s3://f12-out/enc/", "--kms-key", "alias/f12-out", "--part-size", "5M"];
    let child = sealpipe_command(&proxy.url(), &args)
        .arg("--manifest")
        .arg(&manifest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy.wait_held(1, WAIT);
    py(
        &moto,
        "s3.put_object(Bucket='f12-src', Key='raw/big.ts', Body=os.urandom((6 << 20) + 1))\n\
         s3.put_object(Bucket='f12-src', Key='raw/small.ts', Body=b'y' * 1000)",
        &[],
    );
    proxy.set_schedule("{}");
    proxy.release();
    let out = wait_bounded(child, WAIT);
    assert_no_crash(&out, "run over replaced objects");
    let err = out.stderr();
    assert_eq!(out.code(), Some(1), "{err}");
    for key in ["big.ts", "small.ts"] {
        let lines = lines_naming(&err, &format!("s3://f12-src/raw/{key}"));
        assert!(!lines.is_empty() && lines.iter().all(|l| l.contains("changed since it was listed")), "{err}");
    }
    assert!(open_upload_list(&moto, "f12-out").is_empty(), "no open upload");
    assert!(objects_under(&moto, "f12-out", "enc/").is_empty(), "no partial object");
}
