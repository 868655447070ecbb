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
use std::path::{Path, PathBuf};
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
    let args = ["encrypt", media.to_str().unwrap(), "--to", "s3://evict/enc/", "--kms-key", "alias/evict", "--part-size", "5M", "--concurrency", "1", "--threads", "2", "--max-concurrent-requests", "2", "--manifest", url, "--json"];
    let mut run = Watched::spawn(&mut sealpipe_command(&proxy.url(), &args));
    // The event: a multipart upload is open (f00.ts or f01.ts, listed first, two files in flight).
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
        let args = ["encrypt", media.to_str().unwrap(), "--to", &to, "--part-size", "5M", "--kms-key", "alias/evict-abort", "--threads", "1", "--max-concurrent-requests", "1", "--manifest", manifest.to_str().unwrap(), "--grace-seconds", grace, "--json"];
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

// ---------------------------------------------------------------------------
// The shard protocol as Kubernetes Indexed Jobs and AWS Batch array jobs drive it.

const SHARDS: u32 = 8;

/// Whether the engines run an attempt that ended so again: the exit codes
/// `sealpipe deploy` tells Kubernetes' `podFailurePolicy` and Batch's
/// `retryStrategy` to retry (130 interrupted; 137 and 143, SIGKILL and
/// SIGTERM as a container runtime reports a process killed by them),
/// read from the generated definitions themselves.
fn retried(status: &std::process::ExitStatus, retry_codes: &[i32]) -> bool {
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s));
    code.is_some_and(|c| retry_codes.contains(&c))
}

/// A machine a shard runs on: its own home (state folder, temporary folder).
fn machine(name: &str) -> tempfile::TempDir {
    let home = tempfile::Builder::new().prefix(name).tempdir().unwrap();
    std::fs::create_dir_all(home.path().join("tmp")).unwrap();
    home
}

/// The command of shard `index` on `home`, as the engine starts it: the index in `var`.
fn shard_command(endpoint: &str, args: &[&str], var: &str, index: u32, home: &Path) -> Command {
    let mut cmd = sealpipe_command(endpoint, args);
    cmd.env(var, index.to_string()).env("HOME", home).env_remove("XDG_STATE_HOME").env("TMPDIR", home.join("tmp"));
    cmd
}

/// One round: 8 shards side by side, the index in `var`; shard `a` is
/// SIGKILLed mid-upload (its multipart source's parts held by a delay proxy) and
/// restarted on its machine; shard `b` gets SIGTERM between a commit and its
/// record (an eviction) and is restarted on its machine; shard `c` is
/// SIGKILLed between a commit and its record (a node lost) and restarted on
/// a fresh machine, empty home and state folder. Then every shard's
/// manifest is merged: every source exactly once, no gap, nothing open,
/// verify passes. Prints the round's row of the table.
#[allow(clippy::too_many_arguments)]
fn shard_round(moto: &Server, round: &str, var: &str, manifest: &str, media: &Path, sources: &[String], victims: (u32, u32, u32), retry_codes: &[i32], local_manifests: impl Fn(u32) -> PathBuf) {
    let (a, b, c) = victims;
    let to = format!("s3://shards/{round}/");
    let args = ["encrypt", media.to_str().unwrap(), "--to", &to, "--kms-key", "alias/shards", "--part-size", "5M", "--concurrency", "1", "--threads", "1", "--max-concurrent-requests", "1", "--shard", "auto/8", "--manifest", manifest, "--manifest-flush-records", "1", "--json"];
    let machines: Vec<tempfile::TempDir> = (0..SHARDS).map(|i| machine(&format!("{round}-pod-{i}-"))).collect();
    // Every shard through one proxy that holds each UploadPart 3 s: only
    // big/b0.ts (shard a's first file) has parts. A retry runs the same
    // command, endpoint included (an s3:// manifest's working copy is found by endpoint and URL).
    let slow = start_proxy(moto.port, "delay:3");
    let started = Instant::now();
    let mut runs: Vec<Watched> = (0..SHARDS)
        .map(|i| {
            let mut cmd = shard_command(&slow.url(), &args, var, i, machines[i as usize].path());
            if i == b {
                cmd.env("SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS", "2000").env("SEALPIPE_TEST_PAUSE_SKIP_COMMITS", "1");
            } else if i == c {
                cmd.env("SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS", "60000").env("SEALPIPE_TEST_PAUSE_SKIP_COMMITS", "2");
            }
            Watched::spawn(&mut cmd)
        })
        .collect();
    // Shard a: killed while its multipart upload (big/b0.ts, listed first) is open.
    let key = format!("{round}/big/b0.ts");
    let deadline = Instant::now() + WAIT;
    while !open_upload_list(moto, "shards").iter().any(|(k, _)| *k == key) {
        assert!(Instant::now() < deadline, "shard {a}'s upload never opened");
        assert!(runs[a as usize].child.try_wait().unwrap().is_none(), "shard {a} ended before it was killed");
        std::thread::sleep(Duration::from_millis(20));
    }
    runs[a as usize].child.kill().unwrap();
    // Shards b and c: signalled once paused between a commit and its record.
    wait_line(&runs[b as usize].lines, "sealpipe: test hook: ");
    signal(&runs[b as usize].child, "-TERM");
    wait_line(&runs[c as usize].lines, "sealpipe: test hook: ");
    runs[c as usize].child.kill().unwrap();
    let mut attempts = SHARDS;
    let (mut killed, mut restarted) = (0, 0);
    for (i, run) in runs.iter_mut().enumerate() {
        let i = i as u32;
        let (code, stdout, err) = run.finish();
        let status = run.child.wait().unwrap();
        if [a, b, c].contains(&i) {
            killed += 1;
            let expect = if i == b { Some(130) } else { None };
            assert_eq!(code, expect, "shard {i}: {err:#?}");
            assert!(retried(&status, retry_codes), "shard {i} ({status}) must be retried by the job definitions");
            // Restarted as backoffLimitPerIndex / retryStrategy would; shard c on a fresh machine.
            let fresh = (i == c).then(|| machine(&format!("{round}-pod-{i}-again-")));
            let home = fresh.as_ref().map_or(machines[i as usize].path(), |f| f.path());
            let again = run_bounded(&mut shard_command(&slow.url(), &args, var, i, home), WAIT);
            attempts += 1;
            restarted += 1;
            assert_eq!(again.code(), Some(0), "shard {i} restarted: {}", again.stderr());
            let s = summary(&again.stdout());
            assert_eq!(s["shard"], format!("{i}/8").as_str(), "{s}");
            if i == b {
                let first = summary(&stdout);
                assert_eq!(first["interrupted"], true, "{first}");
                assert_eq!(s["skipped"], first["files"], "the evicted shard recorded every commit before it exited: {first} {s}");
            }
        } else {
            assert_eq!(code, Some(0), "shard {i}: {err:#?}");
            assert_eq!(summary(&stdout)["shard"], format!("{i}/8").as_str());
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(slow);

    // merge-manifests proves every source exactly once, against the list of every source.
    let dir = tempfile::tempdir().unwrap();
    let expect = dir.path().join("sources.txt");
    std::fs::write(&expect, sources.join("\n") + "\n").unwrap();
    let merged = dir.path().join("merged.jsonl");
    let mut merge = Command::new(bin());
    merge.args(["merge-manifests", "--out", merged.to_str().unwrap(), "--expect-list", expect.to_str().unwrap(), "--json"]);
    for i in 0..SHARDS {
        merge.arg(local_manifests(i));
    }
    let m = run_bounded(&mut merge, WAIT);
    assert_eq!(m.code(), Some(0), "{} {}", m.stdout(), m.stderr());
    let report: Value = serde_json::from_str(m.stdout().trim()).unwrap();
    let c_ = convergence(moto, &merged, "shards", &format!("{round}/"), sources);
    let once = sources.len() - c_.lost.len() - c_.duplicated.len();
    eprintln!(
        "SHARDS|{round} ({var}, manifest {manifest})|sources {}|shard attempts {attempts}|done {}|killed {killed}|restarted {restarted}|exactly once {once}/{}|open uploads {}|verify {:?}|{seconds:.1} s",
        sources.len(),
        report["records_written"],
        sources.len(),
        c_.open_uploads.len(),
        c_.verify.0
    );
    assert!(c_.ok(), "{round}: not converged: {c_:#?}");
    assert_eq!(report["records_written"], sources.len() as u64, "{report}");
}

/// Issue 22: 8 shards of one job, as a Kubernetes Indexed Job
/// (`JOB_COMPLETION_INDEX`, the ledger on a shared folder) and as an AWS
/// Batch array job (`AWS_BATCH_JOB_ARRAY_INDEX`, an `s3://` manifest per
/// shard), 3 of them killed mid-run and restarted: see [`shard_round`].
#[test]
fn eight_shards_killed_and_restarted_as_the_engines_would_cover_every_source_exactly_once() {
    let moto = start_moto();
    setup(&moto, "shards", "alias/shards");
    let dir = tempfile::tempdir().unwrap();
    let media = dir.path().join("media");
    for i in 0..96u64 {
        let path = media.join(format!("show{}/seg{i:03}.ts", i % 4));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, pattern(1000 + 23 * i as usize, 500 + i)).unwrap();
    }
    std::fs::create_dir_all(media.join("big")).unwrap();
    std::fs::write(media.join("big/b0.ts"), pattern((5 << 20) + 999, 7)).unwrap();
    let sources = files_under(&media);
    // Each source's shard, computed independently (first 8 bytes of SHA-256, big-endian, mod 8).
    let relative: Vec<String> = sources.iter().map(|s| s.strip_prefix(&format!("{}/", canonical_path(&media))).unwrap().to_string()).collect();
    let shard_of: Vec<u32> = serde_json::from_str(&py(
        &moto,
        "import hashlib\nprint(json.dumps([int.from_bytes(hashlib.sha256(k.encode()).digest()[:8], 'big') % 8 for k in json.loads(sys.argv[1])]))",
        &[&serde_json::to_string(&relative).unwrap()],
    ))
    .unwrap();
    let count = |s: u32| shard_of.iter().filter(|&&x| x == s).count();
    let a = shard_of[relative.iter().position(|r| r == "big/b0.ts").unwrap()];
    // b and c: the two other shards with the most files (each needs 3 at least).
    let mut others: Vec<u32> = (0..SHARDS).filter(|&s| s != a).collect();
    others.sort_by_key(|&s| std::cmp::Reverse(count(s)));
    let (b, c) = (others[0], others[1]);
    assert!(count(b) >= 3 && count(c) >= 3, "{:?}", (0..SHARDS).map(count).collect::<Vec<_>>());
    assert!((0..SHARDS).all(|s| count(s) > 0), "every shard has work");
    let retry_codes = retry_codes();

    let shared = dir.path().join("shared");
    let ledger = shared.join("run.jsonl");
    shard_round(&moto, "k8s", "JOB_COMPLETION_INDEX", ledger.to_str().unwrap(), &media, &sources, (a, b, c), &retry_codes, |i| shared.join(format!("run.shard-{i}-of-8.jsonl")));
    assert!(std::fs::read_dir(&shared).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".inflight")), "no journal left in the shared folder");

    let copies = dir.path().join("copies");
    std::fs::create_dir_all(&copies).unwrap();
    let moto_ref = &moto;
    shard_round(&moto, "batch", "AWS_BATCH_JOB_ARRAY_INDEX", "s3://shards/runs/m.jsonl", &media, &sources, (a, b, c), &retry_codes, |i| {
        let local = copies.join(format!("m.shard-{i}-of-8.jsonl"));
        download(moto_ref, "shards", &format!("runs/m.shard-{i}-of-8.jsonl"), &local);
        local
    });
}

/// The exit codes the job definitions `sealpipe deploy` generates retry:
/// the Kubernetes `podFailurePolicy` rule that counts a retry, which must be
/// the codes Batch's `retryStrategy` retries too.
fn retry_codes() -> Vec<i32> {
    let deploy = |args: &[&str]| -> Value {
        let out = Command::new(bin()).arg("deploy").args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let run = ["--", "encrypt", "s3://raw/", "--to", "s3://in/", "--kms-key", "alias/media", "--manifest", "s3://in/m.jsonl"];
    let job = deploy(&[&["kubernetes", "--name", "shards", "--image", "sealpipe", "--shards", "8"], &run[..]].concat());
    let rules = job["spec"]["podFailurePolicy"]["rules"].as_array().unwrap();
    let count = rules.iter().find(|r| r["action"] == "Count").expect("a Count rule");
    let k8s: Vec<i32> = count["onExitCodes"]["values"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() as i32).collect();
    let def = deploy(&[&["batch", "--name", "shards", "--image", "sealpipe", "--shards", "8"], &run[..]].concat());
    let batch: Vec<i32> = def["retryStrategy"]["evaluateOnExit"].as_array().unwrap().iter().filter(|r| r["action"] == "RETRY").map(|r| r["onExitCode"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(k8s, batch, "Kubernetes and Batch retry the same exits");
    assert!(!k8s.contains(&2), "a usage error is never retried");
    k8s
}
