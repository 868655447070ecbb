//! Evictions and spot reclaims (issue 22): SIGTERM stops a run gracefully
//! (no new files, the files in flight finish and are recorded, the
//! manifest is stored, an `s3://` one included, exit 130), a second signal
//! or the end of `--grace-seconds` aborts what is in flight instead; and
//! the shard protocol as Kubernetes Indexed Jobs and AWS Batch array jobs
//! drive it: 8 shards, 3 of them killed mid-run (SIGKILL, SIGTERM) and
//! restarted as their retry policies would, one on a fresh machine.
//!
//! Every wait is on an event: a line on the child's stderr (the commit
//! test hook's, the stopping line) or a state of moto (an upload open, a
//! manifest object holding records), never a sleep. Each run's time from
//! SIGTERM to exit is printed (`EVICT|...`), and the shard rounds' table
//! (`SHARDS|...`).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(120);

/// Send `signal` (e.g. "-TERM") to `child`.
fn signal(child: &Child, signal: &str) {
    assert!(Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap().success());
}

/// Wait for a stderr line containing `needle`; the lines seen until then.
fn wait_line(lines: &Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(WAIT) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(e) => panic!("no stderr line with {needle:?} ({e}); seen: {seen:#?}"),
        }
    }
}

/// The rest of a child's stderr lines (until it closes its stderr).
fn rest(lines: &Receiver<String>) -> Vec<String> {
    lines.iter().collect()
}

/// The JSON events of a `--json` run's stdout.
fn events(stdout: &str) -> Vec<Value> {
    stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn summary(stdout: &str) -> Value {
    let last = events(stdout).pop().unwrap_or_else(|| panic!("no JSON events: {stdout}"));
    assert_eq!(last["event"], "summary", "{last}");
    last
}

/// A child with stdout piped (drained on a thread) and stderr read as lines.
struct Watched {
    child: Child,
    stdout: Option<std::thread::JoinHandle<String>>,
    lines: Receiver<String>,
}

impl Watched {
    fn spawn(cmd: &mut Command) -> Watched {
        let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut out, &mut s);
            s
        });
        let lines = lines_of(child.stderr.take().unwrap());
        Watched { child, stdout: Some(stdout), lines }
    }

    /// Wait for the exit (killing it after [`WAIT`]): the exit code (None: by a signal), stdout, the remaining stderr lines.
    fn finish(&mut self) -> (Option<i32>, String, Vec<String>) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the run did not end within {WAIT:?}: {:?}", rest(&self.lines));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        (status.code(), self.stdout.take().map(|t| t.join().unwrap()).unwrap_or_default(), rest(&self.lines))
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The object `key` of `bucket` as a local file at `to` (a manifest read back from S3).
fn download(moto: &Server, bucket: &str, key: &str, to: &Path) {
    py(moto, "open(sys.argv[3], 'wb').write(s3.get_object(Bucket=sys.argv[1], Key=sys.argv[2])['Body'].read())", &[bucket, key, to.to_str().unwrap()]);
}

fn sources_of(manifest: &Path) -> Vec<String> {
    records(manifest).iter().map(|r| r["source"].as_str().unwrap().to_string()).collect()
}

/// Files of `dir` (recursively) whose name says they are temporary outputs.
fn temp_files(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    files_under(dir).into_iter().filter(|p| p.contains(".sealpipe-tmp-")).collect()
}

/// SIGTERM with multipart uploads in flight (every part held 2 s by a
/// proxy) and the manifest in S3: the run starts nothing more, the files
/// in flight finish, their records reach the s3:// manifest, no upload is left open,
/// exit 130; the re-run does the rest, each source exactly once.
#[test]
fn sigterm_with_uploads_in_flight_finishes_them_stores_the_s3_manifest_and_exits_130() {
    let moto = start_moto();
    setup(&moto, "evict", "alias/evict");
    let mut sizes = vec![(5 << 20) + 1000, (5 << 20) + 2000, (5 << 20) + 3000];
    sizes.extend((0..12).map(|i| 3000 + i * 7));
    let (_dir, media) = media_files(&sizes);
    let sources = files_under(&media);
    let proxy = start_proxy(moto.port, "delay:2");
    let url = "s3://evict/runs/m.jsonl";
    let args = ["encrypt", media.to_str().unwrap(), "--to", "s3://evict/enc/", "--kms-key", "alias/evict", "--part-size", "5M", "--concurrency", "1", "--threads", "2", "--manifest", url, "--json"];
    let mut run = Watched::spawn(&mut sealpipe_command(&proxy.url(), &args));
    // The event: a multipart upload is open (f00.ts or f01.ts, listed first, one per worker).
    let deadline = Instant::now() + WAIT;
    while open_uploads(&moto, "evict") < 1 {
        assert!(Instant::now() < deadline, "the uploads never started");
        assert!(run.child.try_wait().unwrap().is_none(), "the run ended before it was signalled");
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = Instant::now();
    signal(&run.child, "-TERM");
    wait_line(&run.lines, "SIGTERM: stopping");
    let (code, stdout, err) = run.finish();
    let took = sent.elapsed();
    eprintln!("EVICT|SIGTERM, multipart uploads in flight (parts held 2 s), s3:// manifest|{} ms", took.as_millis());
    assert_eq!(code, Some(130), "{err:#?}");
    assert!(err.iter().any(|l| l.contains("interrupted: no file left half done")), "{err:#?}");
    assert!(!err.iter().any(|l| l.contains("aborting")), "nothing aborted within the grace period: {err:#?}");
    let s = summary(&stdout);
    assert_eq!(s["interrupted"], true, "{s}");
    assert_eq!(s["failed"], 0, "{s}");
    let done = s["files"].as_u64().unwrap() as usize;
    assert!(done >= 1 && done < sources.len(), "the files in flight finished, the rest was not started: {s}");
    assert!(took < Duration::from_secs(20), "within the default grace period: {took:?}");
    assert!(open_upload_list(&moto, "evict").is_empty(), "no upload left open");
    // The manifest in S3 holds every committed output: nothing under enc/ lacks a record.
    let dir = tempfile::tempdir().unwrap();
    let stored = dir.path().join("m.jsonl");
    download(&moto, "evict", "runs/m.jsonl", &stored);
    let recorded: BTreeSet<String> = records(&stored).iter().map(|r| r["output"].as_str().unwrap().to_string()).collect();
    assert_eq!(recorded.len(), done, "one record per finished file in the s3:// manifest");
    let objects: BTreeSet<String> = objects_under(&moto, "evict", "enc/").into_iter().map(|k| format!("s3://evict/{k}")).collect();
    assert_eq!(objects, recorded, "every committed output is recorded, no other object exists");
    assert!(objects.contains("s3://evict/enc/f00.ts") || objects.contains("s3://evict/enc/f01.ts"), "{objects:?}");

    // The retry (as the job definitions retry exit 130) does the rest, exactly once.
    let again = run_bounded(&mut sealpipe_command(&moto.url(), &args), WAIT);
    assert_eq!(again.code(), Some(0), "{}", again.stderr());
    let s2 = summary(&again.stdout());
    assert_eq!((s2["skipped"].as_u64(), s2["files"].as_u64()), (Some(done as u64), Some((sources.len() - done) as u64)), "{s2}");
    download(&moto, "evict", "runs/m.jsonl", &stored);
    assert_converged(&moto, &stored, "evict", "enc/", &sources);
}

/// SIGTERM while a local output is between its commit and its record
/// (the commit test hook pauses there 1.5 s): that file is recorded, no
/// other is started, no temporary file is left, exit 130; the re-run
/// does the rest once and verify passes.
#[test]
fn sigterm_between_commit_and_record_records_it_and_leaves_no_temporary_file() {
    let moto = start_moto();
    setup(&moto, "evict-local", "alias/evict-local");
    let (dir, media) = media_files(&[40_000, 50_000, 60_000, 70_000, 80_000]);
    let sources = files_under(&media);
    let out = dir.path().join("out");
    let manifest = dir.path().join("run.jsonl");
    let args = ["encrypt", media.to_str().unwrap(), "--out", out.to_str().unwrap(), "--kms-key", "alias/evict-local", "--threads", "1", "--manifest", manifest.to_str().unwrap(), "--json"];
    let mut cmd = sealpipe_command(&moto.url(), &args);
    cmd.env("SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS", "1500").env("SEALPIPE_TEST_PAUSE_SKIP_COMMITS", "1");
    let mut run = Watched::spawn(&mut cmd);
    // The event: the second file is committed and its worker paused before the record.
    let seen = wait_line(&run.lines, "sealpipe: test hook: ");
    let sent = Instant::now();
    signal(&run.child, "-TERM");
    let (code, stdout, err) = run.finish();
    let took = sent.elapsed();
    eprintln!("EVICT|SIGTERM, a local output between commit and record (1.5 s pause)|{} ms", took.as_millis());
    assert_eq!(code, Some(130), "{seen:#?} {err:#?}");
    let s = summary(&stdout);
    assert_eq!((s["interrupted"].as_bool(), s["files"].as_u64(), s["failed"].as_u64()), (Some(true), Some(2), Some(0)), "{s}");
    assert_eq!(records(&manifest).len(), 2, "both committed files recorded");
    assert!(temp_files(&out).is_empty(), "{:?}", temp_files(&out));
    assert_eq!(files_under(&out).len(), 2, "only the recorded outputs exist: {:?}", files_under(&out));
    assert!(!Path::new(&format!("{}.inflight", manifest.display())).exists(), "nothing left in flight: the journal is gone");

    let again = run_bounded(&mut sealpipe_command(&moto.url(), &args), WAIT);
    assert_eq!(again.code(), Some(0), "{}", again.stderr());
    let mut got = sources_of(&manifest);
    got.sort();
    assert_eq!(got, sources, "every source exactly once");
    let v = run_bounded(&mut sealpipe_command(&moto.url(), &["verify", "--manifest", manifest.to_str().unwrap()]), WAIT);
    assert_eq!(v.code(), Some(0), "{}", v.stderr());
}

/// A file that does not finish within `--grace-seconds` (held 60 s after
/// its commit) is aborted when the grace period is over, exit 130; and a
/// second SIGTERM aborts at once, whatever the grace period. Each re-run
/// converges: every source exactly once, verify passes.
#[test]
fn the_grace_period_over_or_a_second_signal_aborts_what_is_in_flight() {
    let moto = start_moto();
    setup(&moto, "evict-abort", "alias/evict-abort");
    for (case, grace, twice) in [("grace", "1", false), ("second", "60", true)] {
        let (dir, media) = media_files(&[30_000, 40_000, 50_000, (5 << 20) + 77]);
        let sources = files_under(&media);
        let manifest = dir.path().join("run.jsonl");
        let to = format!("s3://evict-abort/{case}/");
        let args = ["encrypt", media.to_str().unwrap(), "--to", &to, "--part-size", "5M", "--kms-key", "alias/evict-abort", "--threads", "1", "--manifest", manifest.to_str().unwrap(), "--grace-seconds", grace, "--json"];
        let mut cmd = sealpipe_command(&moto.url(), &args);
        cmd.env("SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS", "60000").env("SEALPIPE_TEST_PAUSE_SKIP_COMMITS", "1");
        let mut run = Watched::spawn(&mut cmd);
        wait_line(&run.lines, "sealpipe: test hook: ");
        let sent = Instant::now();
        signal(&run.child, "-TERM");
        wait_line(&run.lines, "SIGTERM: stopping");
        if twice {
            signal(&run.child, "-TERM");
        }
        let (code, _, err) = run.finish();
        let took = sent.elapsed();
        eprintln!("EVICT|{}|{} ms", if twice { "second SIGTERM (grace 60 s), a file held 60 s" } else { "grace 1 s over, a file held 60 s" }, took.as_millis());
        assert_eq!(code, Some(130), "{err:#?}");
        let said = if twice { "SIGTERM again: aborting" } else { "the grace period (1 s) is over: aborting" };
        assert!(err.iter().any(|l| l.contains(said)), "{err:#?}");
        assert!(took < Duration::from_secs(30), "{took:?}");
        assert_eq!(records(&manifest).len(), 1, "the first file only: the held one has no record");
        assert!(open_upload_list(&moto, "evict-abort").is_empty());

        let again = run_bounded(&mut sealpipe_command(&moto.url(), &args), WAIT);
        assert_eq!(again.code(), Some(0), "{}", again.stderr());
        assert_converged(&moto, &manifest, "evict-abort", &format!("{case}/"), &sources);
    }
}
