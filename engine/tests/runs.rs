//! Archive-scale behaviour of whole runs through the engine API: resuming
//! from the manifest (the ledger), cached data keys, shards, dry runs and
//! `max_errors`. Local keyring and local folders; the S3/KMS versions of
//! these runs are in the CLI tests.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sealpipe::run::encrypt::{encrypt, EncryptJob};
use sealpipe::events::{Event, Events, Silent};
use sealpipe::run::report::Summary;
use sealpipe::run::verify;
use sealpipe::store::local::LocalDir;
use sealpipe::run::keys::KeyReuse;
use sealpipe::keys::LocalKeyring;
use sealpipe::format::record::{self as manifest, Record};
use sealpipe::run::manifest::ManifestWriter;
use sealpipe::format::{Mode, Target};
use sealpipe::run::shard::Shard;

struct Tree {
    dir: tempfile::TempDir,
    keyring: LocalKeyring,
}

impl Tree {
    /// `n` small files under `media/` (a few in subfolders).
    fn new(n: usize) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..n {
            let path = dir.path().join("media").join(format!("s{}/seg{i:05}.ts", i % 7));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, vec![(i % 251) as u8; 100 + i % 300]).unwrap();
        }
        let keyring = LocalKeyring::open_or_create(&dir.path().join("keyring.json")).unwrap();
        Tree { dir, keyring }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run(&self, out: &str, manifest: &str, edit: impl FnOnce(&mut EncryptJob<'_>)) -> Summary {
        self.run_reporting(out, manifest, edit, &Silent)
    }

    fn run_reporting(&self, out: &str, manifest: &str, edit: impl FnOnce(&mut EncryptJob<'_>), events: &dyn Events) -> Summary {
        let destination = LocalDir::new(&self.p(out), false);
        let mut job = EncryptJob::new(vec![self.p("media")], &destination, &self.keyring);
        edit(&mut job);
        let writer = ManifestWriter::durable(&self.p(manifest)).unwrap();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        pool.install(|| encrypt(&job, &writer, events)).unwrap()
    }

    fn records(&self, manifest: &str) -> Vec<Record> {
        let path = self.p(manifest);
        if path.exists() {
            manifest::read(&path).unwrap()
        } else {
            Vec::new()
        }
    }
}

fn sources(records: &[Record]) -> Vec<String> {
    let mut s: Vec<String> = records.iter().map(|r| r.source.clone()).collect();
    s.sort();
    s
}

fn verify(tree: &Tree, records: &[Record]) {
    let v = verify::verify(records, &tree.keyring, &sealpipe::pipeline::Tuning::default(), &Silent);
    assert!(v.failures.is_empty(), "{:?}", v.failures);
    assert_eq!(v.files, records.len() as u64);
}

/// Collects skip reasons and notes.
#[derive(Default)]
struct Log(Mutex<Vec<(PathBuf, String)>>);

impl Events for Log {
    fn emit(&self, event: Event<'_>) {
        let line = match event {
            Event::Skipped { path, reason } => (path, format!("skipped: {reason}")),
            Event::Note { path, message } => (path, format!("note: {message}")),
            _ => return,
        };
        self.0.lock().unwrap().push((line.0.to_path_buf(), line.1));
    }
}

#[test]
fn re_running_skips_what_is_done_and_redoes_what_is_not() {
    let tree = Tree::new(40);
    let first = tree.run("out", "m.jsonl", |_| {});
    assert_eq!((first.files, first.skipped), (40, 0));
    let records = tree.records("m.jsonl");
    assert_eq!(records.len(), 40);
    assert!(!tree.p("m.jsonl.inflight").exists(), "a finished run leaves no journal");

    // The same run again: everything is skipped, nothing is written, no key is made.
    let again = tree.run("out", "m.jsonl", |_| {});
    assert_eq!((again.files, again.skipped, again.key_requests), (0, 40, 0));
    assert_eq!(tree.records("m.jsonl").len(), 40);

    // A deleted output and a grown source are redone (new key, said so); the
    // manifest keeps one record per file.
    let gone = PathBuf::from(&records[3].output);
    std::fs::remove_file(&gone).unwrap();
    let grown = PathBuf::from(&records[5].source);
    std::fs::write(&grown, vec![9u8; 5000]).unwrap();
    let log = Log::default();
    let redo = tree.run_reporting("out", "m.jsonl", |_| {}, &log);
    assert_eq!((redo.files, redo.skipped), (2, 38), "{:?}", redo.failures);
    let notes: Vec<_> = log.0.lock().unwrap().iter().filter(|(_, m)| m.starts_with("note:")).cloned().collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes.iter().all(|(_, m)| m.contains("new key")), "{notes:?}");
    let after = tree.records("m.jsonl");
    assert_eq!(after.len(), 40, "superseded records are compacted away");
    assert_eq!(sources(&after), sources(&records));
    let grown_record = after.iter().find(|r| Path::new(&r.source) == sealpipe::store::local::resolve(&grown)).unwrap();
    assert_eq!(grown_record.plaintext_size, 5000);
    verify(&tree, &after);
}

#[test]
fn an_output_left_by_an_interrupted_run_is_replaced_and_its_temp_files_removed() {
    let tree = Tree::new(5);
    tree.run("out", "m.jsonl", |_| {});
    let records = tree.records("m.jsonl");
    // Pretend the run was killed after committing seg00003 but before its
    // record: drop the record, journal the output, leave a temporary file.
    let victim = records.iter().find(|r| r.output.ends_with("seg00003.ts")).unwrap().clone();
    let kept: Vec<String> = records.iter().filter(|r| r.output != victim.output).map(|r| serde_json::to_string(r).unwrap()).collect();
    std::fs::write(tree.p("m.jsonl"), kept.join("\n") + "\n{\"source\": \"torn").unwrap();
    let intent = serde_json::json!({"output": victim.output, "relative": "s3/seg00003.ts", "at": 0});
    std::fs::write(tree.p("m.jsonl.inflight"), format!("{intent}\n")).unwrap();
    let tmp = Path::new(&victim.output).with_file_name(".seg00003.ts.sealpipe-tmp-1-abcdef");
    std::fs::write(&tmp, b"half").unwrap();

    let log = Log::default();
    let resumed = tree.run_reporting("out", "m.jsonl", |_| {}, &log);
    assert_eq!((resumed.files, resumed.skipped, resumed.cleaned), (1, 4, 1), "{:?}", resumed.failures);
    assert!(!tmp.exists(), "the interrupted run's temporary file is removed");
    assert!(log.0.lock().unwrap().iter().any(|(_, m)| m.contains("never recorded")), "the re-encryption is announced");
    let after = tree.records("m.jsonl");
    assert_eq!(after.len(), 5, "the torn line is dropped, no duplicates");
    assert_ne!(after.iter().find(|r| r.output == victim.output).unwrap().encrypted_data_key, victim.encrypted_data_key);
    verify(&tree, &after);

    // Without the journal, an unrecorded output is someone else's: refused.
    std::fs::write(tree.p("m2.jsonl"), "").unwrap();
    let foreign = tree.run("out", "m2.jsonl", |_| {});
    assert_eq!(foreign.files, 0);
    assert_eq!(foreign.failures.len(), 5);
    assert!(foreign.failures[0].message.contains("already exists"), "{:?}", foreign.failures);
}

#[test]
fn cached_keys_serve_many_files_with_distinct_ivs_within_their_limits() {
    let tree = Tree::new(250);
    let summary = tree.run("out", "m.jsonl", |job| {
        job.mode = Mode::Gcm;
        job.target = Target::MediaConvert;
        job.reuse_key = Some("max-files=100".parse::<KeyReuse>().unwrap());
    });
    assert_eq!(summary.files, 250);
    assert_eq!(summary.key_requests, 3, "250 files at 100 per key: 3 GenerateDataKey, one service");
    let records = tree.records("m.jsonl");
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    let mut pairs = HashSet::new();
    for r in &records {
        *per_key.entry(&r.encrypted_data_key).or_default() += 1;
        assert!(pairs.insert((r.key_md5.clone(), r.iv.clone())), "(key, IV) reused");
        assert_eq!(r.iv.len(), 16, "12-byte IVs for MediaConvert GCM");
    }
    let mut counts: Vec<usize> = per_key.values().copied().collect();
    counts.sort();
    assert_eq!(counts, vec![50, 100, 100]);
    verify(&tree, &records);

    // Byte limit: 300 files of 100..400 bytes under 4 KiB per key.
    let bytes = tree.run("out2", "m2.jsonl", |job| job.reuse_key = Some("max-bytes=4K".parse().unwrap()));
    let per_key = tree.records("m2.jsonl").iter().fold(HashMap::<String, u64>::new(), |mut m, r| {
        *m.entry(r.encrypted_data_key.clone()).or_default() += r.plaintext_size;
        m
    });
    assert!(per_key.values().all(|&b| b <= 4096), "{per_key:?}");
    assert_eq!(bytes.key_requests, 2 * per_key.len() as u64, "target any wraps each key for both services");

    // Default: one key per file.
    let fresh = tree.run("out3", "m3.jsonl", |job| job.target = Target::MediaConvert);
    assert_eq!(fresh.key_requests, 250);
}

#[test]
fn shards_cover_every_file_exactly_once() {
    let tree = Tree::new(120);
    let mut all = Vec::new();
    for index in 0..4 {
        let s = tree.run("out", &format!("m{index}.jsonl"), |job| job.shard = Some(Shard { index, count: 4 }));
        assert!(s.failures.is_empty(), "{:?}", s.failures);
        let records = tree.records(&format!("m{index}.jsonl"));
        assert!(!records.is_empty() && records.len() < 60, "shard {index}: {}", records.len());
        assert!(records.iter().all(|r| r.shard.as_deref() == Some(&format!("{index}/4"))));
        all.extend(records);
    }
    let got = sources(&all);
    let unique: HashSet<&String> = got.iter().collect();
    assert_eq!(got.len(), 120, "every file once");
    assert_eq!(unique.len(), 120, "no file twice");
    verify(&tree, &all);
}

#[test]
fn dry_run_counts_and_changes_nothing() {
    let tree = Tree::new(30);
    tree.run("out", "m.jsonl", |job| job.shard = Some(Shard { index: 0, count: 2 }));
    let done = tree.records("m.jsonl").len() as u64;
    let before = std::fs::read(tree.p("m.jsonl")).unwrap();
    let dry = tree.run("out", "m.jsonl", |job| job.dry_run = true);
    assert!(dry.dry_run);
    assert_eq!((dry.files, dry.skipped, dry.key_requests), (30 - done, done, 0));
    assert_eq!(std::fs::read(tree.p("m.jsonl")).unwrap(), before, "the manifest is untouched");
    let dry_new = tree.run("fresh", "fresh.jsonl", |job| job.dry_run = true);
    assert_eq!(dry_new.files, 30);
    assert!(!tree.p("fresh").exists() && !tree.p("fresh.jsonl").exists(), "a dry run creates nothing");
}

#[test]
fn max_errors_stops_starting_files() {
    let tree = Tree::new(50);
    // Outputs that already exist (not ours) fail their files.
    for i in 0..50 {
        let path = tree.p(&format!("out/s{}/seg{i:05}.ts", i % 7));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"someone else's").unwrap();
    }
    let s = tree.run("out", "m.jsonl", |job| job.max_errors = Some(3));
    assert!(s.stopped_early());
    assert!(s.failures.len() >= 3 && s.failures.len() < 50, "{}", s.failures.len());
    assert_eq!(s.files, 0);
}

#[test]
fn only_journalled_outputs_without_a_done_line_are_cleaned() {
    let tree = Tree::new(3);
    tree.run("out", "m.jsonl", |_| {});
    let records = tree.records("m.jsonl");
    // A journal as a killed run leaves it: two files started, one recorded.
    let (a, b) = (&records[0].output, &records[1].output);
    let rel = |o: &str| Path::new(o).strip_prefix(sealpipe::store::local::resolve(&tree.p("out"))).unwrap().to_path_buf();
    let journal = [
        serde_json::json!({"output": a, "relative": rel(a), "at": 0}),
        serde_json::json!({"output": b, "relative": rel(b), "at": 0}),
        serde_json::json!({"done": a}),
    ];
    std::fs::write(tree.p("m.jsonl.inflight"), journal.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let tmp = |o: &str| Path::new(o).with_file_name(format!(".{}.sealpipe-tmp-9-000000", Path::new(o).file_name().unwrap().to_string_lossy()));
    std::fs::write(tmp(a), b"x").unwrap();
    std::fs::write(tmp(b), b"x").unwrap();
    let s = tree.run("out", "m.jsonl", |_| {});
    assert_eq!((s.skipped, s.cleaned), (3, 1), "{:?}", s.failures);
    assert!(tmp(a).exists(), "a recorded file's neighbourhood is not searched");
    assert!(!tmp(b).exists(), "the unrecorded one's temporary file is removed");
    assert!(!tree.p("m.jsonl.inflight").exists());
}

#[test]
fn cbc_under_cached_keys_goes_multi_buffer_and_verifies() {
    let tree = Tree::new(230);
    let summary = tree.run("out", "m.jsonl", |job| {
        job.mode = Mode::Cbc;
        job.target = Target::ElasticTranscoder;
        job.reuse_key = Some("max-files=100".parse().unwrap());
    });
    assert!(summary.failures.is_empty(), "{:?}", summary.failures);
    assert_eq!((summary.files, summary.key_requests), (230, 3));
    let records = tree.records("m.jsonl");
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    let mut ivs = HashSet::new();
    for r in &records {
        *per_key.entry(&r.encrypted_data_key).or_default() += 1;
        assert!(ivs.insert(r.iv.clone()), "IV reused");
        assert_eq!(r.key_source, manifest::KeySource::Generated);
    }
    let mut counts: Vec<usize> = per_key.values().copied().collect();
    counts.sort();
    assert_eq!(counts, vec![30, 100, 100]);
    verify(&tree, &records);
}
