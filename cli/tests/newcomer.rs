//! What a newcomer trips on (issue 23): the install step, keyrings, help,
//! messages, habits from other tools, `sealpipe status`, and `policy` for an
//! `s3://` manifest. Each test runs the binary as a user would, in a folder
//! of its own (its own HOME, config and state folders); the S3 ones against
//! a local moto server.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A user's machine: HOME, XDG config and state folders under one temporary folder.
struct User {
    dir: tempfile::TempDir,
}

impl User {
    fn new() -> User {
        User { dir: tempfile::tempdir().unwrap() }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, len: usize, seed: u64) -> PathBuf {
        let path = self.p(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, pattern(len, seed)).unwrap();
        path
    }

    /// `sealpipe ARGS` as this user, with the keyring under `config` (the XDG_CONFIG_HOME).
    fn command(&self, config: &str, args: &[&OsStr]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("HOME", self.p("home"))
            .env("XDG_CONFIG_HOME", self.p(config))
            .env("XDG_STATE_HOME", self.p("state"))
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("SEALPIPE_KEYRING")
            .env_remove("SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS")
            .env_remove("JOB_COMPLETION_INDEX")
            .env_remove("AWS_BATCH_JOB_ARRAY_INDEX");
        cmd
    }

    fn run(&self, args: &[&OsStr]) -> Output {
        self.run_in("config", args)
    }

    fn run_in(&self, config: &str, args: &[&OsStr]) -> Output {
        self.command(config, args).output().unwrap()
    }
}

macro_rules! a {
    ($($x:expr),* $(,)?) => { &[$(OsStr::new($x)),*] };
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A refusal: exit 2, one line on stderr containing every one of `words`.
fn refused(o: &Output, words: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit 2: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    for w in words {
        assert!(err.contains(w), "{w:?} in: {err}");
    }
    err
}

/// The `--help` text of `command`, cut at each heading: (heading, its lines).
fn help_sections(user: &User, command: &str) -> Vec<(String, String)> {
    let o = user.run(a![command, "--help"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in out(&o).lines() {
        if !line.starts_with(' ') && line.ends_with(':') {
            sections.push((line.trim_end_matches(':').to_string(), String::new()));
        } else if let Some((_, text)) = sections.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    sections
}

/// The long flags a help section lists.
fn flags(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split([' ', ',', '=']).find(|w| w.starts_with("--")).map(String::from))
        .collect()
}

#[test]
fn readme_gives_the_install_step_first_and_keeps_its_first_two_commands() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    // CI's contract: the first two commands, exactly.
    assert!(
        readme.starts_with("# sealpipe\n\n```sh\ncargo run --release -p sealpipe-cli -- encrypt testdata/media --out \"$(mktemp -d)/enc\"\nscripts/test.sh\n```\n"),
        "README's first two commands changed"
    );
    let first = readme.split("\n## ").nth(1).unwrap();
    assert!(first.starts_with("Install"), "the first section is the install step: {first:.80}");
    for needed in ["cargo install --path cli", "target/release/sealpipe", "min", "GB"] {
        assert!(first.contains(needed), "install section lacks {needed:?}:\n{first}");
    }
}

#[test]
fn a_new_keyring_is_said_once_with_how_to_back_it_up_and_a_wrong_one_names_its_file() {
    let user = User::new();
    user.write("media/a.ts", 3000, 1);
    let keyring = user.p("config/sealpipe/keyring.json");
    let first = user.run(a!["encrypt", "media", "--out", "enc"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let said: Vec<String> = stderr(&first).lines().filter(|l| l.contains("keyring")).map(String::from).collect();
    assert_eq!(said.len(), 1, "said once: {said:?}");
    assert!(said[0].contains(&keyring.display().to_string()) && said[0].contains("back it up"), "{said:?}");
    assert!(keyring.exists());
    // Not again once it exists; not with -q when it is made.
    let again = user.run(a!["encrypt", "media", "--out", "enc2"]);
    assert!(again.status.success() && !stderr(&again).contains("keyring"), "{}", stderr(&again));
    let quiet = user.run_in("config-q", a!["encrypt", "media", "--out", "enc3", "-q"]);
    assert!(quiet.status.success() && stderr(&quiet).is_empty(), "{}", stderr(&quiet));
    assert!(user.p("config-q/sealpipe/keyring.json").exists());
    // Another keyring: the error names the file tried and --keyring.
    let wrong = user.run_in("config-q", a!["decrypt", "enc/a.ts", "--manifest", "enc/manifest.jsonl", "--out", "a.ts"]);
    let err = refused(&wrong, &["--keyring", "config-q/sealpipe/keyring.json", "was wrapped by"]);
    assert!(!user.p("a.ts").exists(), "{err}");
    let help = help_sections(&user, "encrypt");
    let keys = &help.iter().find(|(h, _)| h == "Keys").unwrap().1;
    assert!(keys.contains("$XDG_CONFIG_HOME/sealpipe/keyring.json"), "{keys}");
}

#[test]
fn help_puts_destinations_first_and_every_flag_under_a_heading() {
    let user = User::new();
    let encrypt = help_sections(&user, "encrypt");
    let headings: Vec<&str> = encrypt.iter().map(|(h, _)| h.as_str()).collect();
    let options = headings.iter().position(|h| *h == "Options").unwrap();
    assert_eq!(headings[options + 1], "Destination", "{headings:?}");
    let destination = flags(&encrypt[options + 1].1);
    assert_eq!(destination[..2], ["--out", "--to"], "{destination:?}");
    let output = flags(&encrypt.iter().find(|(h, _)| h == "Output").unwrap().1);
    assert!(output.contains(&"--json".to_string()) && output.contains(&"--log-file".to_string()), "{output:?}");
    assert!(!output.iter().any(|f| ["--out", "--to", "--manifest"].contains(&f.as_str())), "logging apart from destinations: {output:?}");
    let input = &encrypt.iter().find(|(h, _)| h == "Input").unwrap().1;
    assert!(input.contains("counted in the summary as filtered"), "{input}");
    let aws = &encrypt.iter().find(|(h, _)| h == "AWS").unwrap().1;
    assert!(aws.contains("S3, KMS and MediaConvert"), "{aws}");
    // bench, jobs, policy: nothing under a plain "Options:" but --help.
    for command in ["bench", "jobs", "policy", "status"] {
        let sections = help_sections(&user, command);
        let plain = flags(&sections.iter().find(|(h, _)| h == "Options").unwrap().1);
        assert_eq!(plain, ["--help"], "{command}: flags outside a heading: {plain:?}");
    }
    let bench = help_sections(&user, "bench");
    let json = &bench.iter().find(|(h, _)| h == "Output").unwrap().1;
    assert!(json.contains("one JSON document") && !json.contains("per line"), "{json}");
    // policy lists only what a policy printer uses.
    let policy: Vec<String> = help_sections(&user, "policy").iter().flat_map(|(_, t)| flags(t)).collect();
    for unused in ["--progress", "--no-progress", "--json", "--max-attempts", "--source-region", "--request-payer", "--read-timeout"] {
        assert!(!policy.contains(&unused.to_string()), "policy --help lists {unused}: {policy:?}");
    }
    for used in ["--manifest", "--kms-key", "--to", "--run-manifest", "--region", "--endpoint-url", "--quiet"] {
        assert!(policy.contains(&used.to_string()), "policy --help lacks {used}: {policy:?}");
    }
}

#[test]
fn messages_a_newcomer_meets() {
    let user = User::new();
    user.write("media/a.ts", 3000, 1);
    user.write("media/b/c.ts", 2000, 2);
    // encrypt DIR without a destination names both.
    refused(&user.run(a!["encrypt", "media"]), &["--out", "--to"]);
    // S3-only flags with --out: one line naming the flag.
    refused(&user.run(a!["encrypt", "media", "--out", "enc", "--sse"]), &["--sse", "--to s3://"]);
    refused(&user.run(a!["encrypt", "media", "--out", "enc", "--storage-class", "GLACIER_IR"]), &["--storage-class", "--to s3://"]);
    // The progress bar's last frame counts the whole folder; no "key provider requests" for the local keyring.
    let run = user.run(a!["encrypt", "media", "--out", "enc", "--progress"]);
    let err = stderr(&run);
    assert!(run.status.success(), "{err}");
    let counts: Vec<&str> = err
        .split(" files")
        .filter_map(|s| s.rsplit(' ').next())
        .filter(|t| t.contains('/') && t.chars().all(|c| c.is_ascii_digit() || c == '/'))
        .collect();
    assert_eq!(counts.last(), Some(&"2/2"), "the last frame counts both files: {err}");
    assert!(err.contains("encrypted 2 files") && !err.contains("requests"), "{err}");
    // decrypt without --manifest names it; a missing manifest says its cause once.
    refused(&user.run(a!["decrypt", "enc/a.ts", "--out", "a.ts"]), &["--manifest", "--envelope", "--iv-hex"]);
    let missing = refused(&user.run(a!["decrypt", "enc/a.ts", "--manifest", "nope.jsonl", "--out", "a.ts"]), &["nope.jsonl"]);
    assert_eq!(missing.to_lowercase().matches("no such file or directory").count(), 1, "{missing}");
    // decrypt says what it did, as encrypt and verify do.
    let done = user.run(a!["decrypt", "enc/a.ts", "--manifest", "enc/manifest.jsonl", "--out", "a.ts"]);
    let said = stderr(&done);
    assert!(done.status.success() && said.contains("decrypted 1 file (") && said.contains("plaintext: a.ts"), "{said}");
    assert_eq!(std::fs::read(user.p("a.ts")).unwrap(), pattern(3000, 1));
    // README's completions line works on a fresh machine (the folder does not exist yet).
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")).unwrap();
    let line = readme.lines().find(|l| l.contains("sealpipe completions bash >")).unwrap();
    let bin_dir = bin().parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let sh = Command::new("sh").arg("-c").arg(line).env("HOME", user.p("fresh-home")).env("PATH", path).output().unwrap();
    assert!(sh.status.success(), "{line}: {}", stderr(&sh));
    let script = std::fs::read_to_string(user.p("fresh-home/.local/share/bash-completion/completions/sealpipe")).unwrap();
    assert!(script.contains("sealpipe"), "{script:.200}");
}

#[test]
fn recursive_is_refused_saying_folders_always_are_and_include_alone_is_explained() {
    let user = User::new();
    user.write("media/a.ts", 100, 1);
    for flag in ["--recursive", "-r"] {
        refused(&user.run(a!["encrypt", "media", "--out", "enc", flag]), &["--recursive", "always", "recursively"]);
    }
    assert!(!user.p("enc").exists());
    let input = &help_sections(&user, "encrypt").into_iter().find(|(h, _)| h == "Input").unwrap().1;
    let include = input.split("--include <PATTERN>").nth(1).unwrap().split("--exclude <").next().unwrap();
    let include = include.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(include.contains("Alone it leaves nothing out: --include '*.ts' takes every file"), "{include}");
}

/// A run paused after its first commit (the file is written, its record not yet), killed when dropped.
struct Paused(Child);

impl Drop for Paused {
    fn drop(&mut self) {
        sigkill(&mut self.0);
    }
}

fn start_paused(mut cmd: Command) -> Paused {
    let mut child = cmd.env("SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS", "600000").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let lines = lines_of(child.stderr.take().unwrap());
    let run = Paused(child);
    loop {
        let line = lines.recv_timeout(Duration::from_secs(60)).expect("the test hook's line");
        if line.starts_with("sealpipe: test hook: ") {
            return run;
        }
    }
}

#[test]
fn status_says_done_failed_with_causes_in_flight_and_per_shard() {
    let user = User::new();
    user.write("media/a.ts", 3000, 1);
    user.write("media/b/c.ts", 2000, 2);
    let fifo = user.p("media/pipe.ts");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let run = user.run(a!["encrypt", "media", "--out", "enc"]);
    assert_eq!(run.status.code(), Some(1), "the FIFO fails: {}", stderr(&run));
    let status = user.run(a!["status", "enc/manifest.jsonl", "--json"]);
    assert_eq!(status.status.code(), Some(1), "a failure: exit 1: {}", stderr(&status));
    let v: Value = serde_json::from_str(&out(&status)).unwrap();
    assert_eq!((v["files"].as_u64(), v["bytes"].as_u64(), v["failed"].as_u64(), v["in_flight"].as_u64()), (Some(2), Some(5000), Some(1), Some(0)), "{v}");
    let last = &v["manifests"][0]["last_run"];
    assert_eq!(last["files"], 2, "{v}");
    let failure = &last["failures"][0];
    assert!(failure["path"].as_str().unwrap().ends_with("pipe.ts") && failure["error"].as_str().unwrap().contains("FIFO"), "{v}");
    assert_eq!((failure["stage"].as_str(), failure["retry"].as_str()), (Some("plan"), Some("no")), "{v}");
    let text = out(&user.run(a!["status", "enc/manifest.jsonl"]));
    assert!(text.contains("enc/manifest.jsonl: 2 files done (4.9 KiB)") && text.contains("pipe.ts") && text.contains("FIFO"), "{text}");
    std::fs::remove_file(&fifo).unwrap();
    // A re-run with nothing left: exit 0, no failure.
    assert!(user.run(a!["encrypt", "media", "--out", "enc"]).status.success());
    let clean = user.run(a!["status", "enc/manifest.jsonl", "--json"]);
    assert!(clean.status.success(), "{}", out(&clean));
    // In flight: a run paused after its first commit, before that file's record.
    user.write("media2/x.ts", 4000, 3);
    let paused = start_paused(user.command("config", a!["encrypt", "media2", "--out", "enc2"]));
    let mid = user.run(a!["status", "enc2/manifest.jsonl", "--json"]);
    let v: Value = serde_json::from_str(&out(&mid)).unwrap_or_else(|e| panic!("{e}: {}{}", out(&mid), stderr(&mid)));
    let in_flight = v["manifests"][0]["in_flight"].as_array().unwrap();
    assert_eq!(in_flight.len(), 1, "{v}");
    assert!(in_flight[0].as_str().unwrap().ends_with("enc2/x.ts"), "{v}");
    drop(paused);
    // Per shard, in a merged manifest.
    std::fs::create_dir_all(user.p("runs")).unwrap();
    for i in 0..8 {
        user.write(&format!("many/f{i}.ts"), 1000 + i, 10 + i as u64);
    }
    for shard in ["0/2", "1/2"] {
        let o = user.run(a!["encrypt", "many", "--out", "sharded", "--shard", shard, "--manifest", "runs/job.jsonl"]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let shards: Vec<PathBuf> = (0..2).map(|i| user.p(&format!("runs/job.shard-{i}-of-2.jsonl"))).collect();
    let mut merge = vec![OsStr::new("merge-manifests")];
    merge.extend(shards.iter().map(|p| p.as_os_str()));
    merge.extend([OsStr::new("--out"), OsStr::new("runs/job.jsonl")]);
    let merged = user.run(&merge);
    assert!(merged.status.success(), "{}", stderr(&merged));
    let merged: Value = serde_json::from_str(&out(&user.run(a!["status", "runs/job.jsonl", "--json"]))).unwrap();
    let per_shard = merged["manifests"][0]["shards"].as_array().unwrap();
    assert_eq!(merged["files"], 8, "{merged}");
    assert_eq!(per_shard.len(), 2, "{merged}");
    assert_eq!(per_shard.iter().map(|s| s["files"].as_u64().unwrap()).sum::<u64>(), 8, "{merged}");
    assert!(per_shard.iter().all(|s| s["shard"].as_str().is_some_and(|n| n.ends_with("/2"))), "{merged}");
}

#[test]
fn status_and_policy_of_an_s3_manifest_on_moto() {
    let moto = start_moto();
    let arn = setup(&moto, "media-in", "alias/media");
    let (_dir, media) = media_files(&[3000, 70_000]);
    let state = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| -> Output {
        let mut cmd = sealpipe_command(&moto.url(), args);
        cmd.env("XDG_STATE_HOME", state.path());
        cmd.output().unwrap()
    };
    let url = "s3://media-in/runs/job.jsonl";
    let enc = run(&["encrypt", media.to_str().unwrap(), "--to", "s3://media-in/enc/", "--kms-key", "alias/media", "--manifest", url]);
    let said = stderr(&enc);
    assert!(enc.status.success(), "{said}");
    // A KMS key made requests: said.
    assert!(said.contains("(KMS requests: GenerateDataKey/Encrypt)"), "{said}");
    let status = run(&["status", url, "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let v: Value = serde_json::from_str(&out(&status)).unwrap();
    assert_eq!((v["files"].as_u64(), v["bytes"].as_u64()), (Some(2), Some(73_000)), "{v}");
    assert_eq!(v["manifests"][0]["last_run"]["files"], 2, "{v}");
    // policy for that manifest grants the principal the manifest and its lease.
    let policy = run(&["policy", "--manifest", url, "--to", "s3://media-in/enc/"]);
    assert!(policy.status.success(), "{}", stderr(&policy));
    let p: Value = serde_json::from_str(&out(&policy)).unwrap();
    assert_eq!(p["kms_key"].as_str(), Some(arn.as_str()), "{p}");
    let statements = p["encrypting_principal"]["Statement"].as_array().unwrap();
    let keep = statements.iter().find(|s| s["Sid"] == "KeepTheManifestAndItsLease").unwrap_or_else(|| panic!("no manifest statement: {p}"));
    assert_eq!(keep["Resource"], serde_json::json!(["arn:aws:s3:::media-in/runs/job.jsonl", "arn:aws:s3:::media-in/runs/job.jsonl.lease"]), "{p}");
}

#[test]
fn the_bench_reports_picture_fits_and_reads_right() {
    let user = User::new();
    let report = user.p("bench.html");
    let o = user.run(a![
        "bench", "--modes", "ctr", "--key-bits", "256", "--max-threads", "2", "--seconds", "0", "--repeat", "1", "--memory-size", "64KiB",
        "--cache-size", "0", "--file-size", "0", "--no-peers", "--report", report.as_os_str()
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(!html.contains("(("), "doubled parentheses");
    assert!(html.contains("none that fits them was measured"), "what --cache-size 0 leaves out is said");
    for svg in html.split("<svg ").skip(1) {
        let open = &svg[..svg.find('>').unwrap()];
        let width: f64 = open.split("width=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        for entry in svg.split("<text class=\"legend\" x=\"").skip(1) {
            let x: f64 = entry.split('"').next().unwrap().parse().unwrap();
            let text = entry[entry.find('>').unwrap() + 1..].split("</text>").next().unwrap();
            assert!(x + 6.6 * text.chars().count() as f64 <= width, "{text:?} at {x} does not fit {width} px");
        }
    }
}
