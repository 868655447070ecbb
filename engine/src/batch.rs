//! Whole runs: list the inputs as a stream, decide per file (skip what the
//! ledger says is done, take this shard's share), encrypt / verify on the
//! caller's rayon pool, and report through a [`Reporter`].
//!
//! Listing runs on its own thread and hands files over a bounded channel,
//! so memory does not grow with the number of inputs. A failure on one file
//! is reported and the run goes on (up to `max_errors`); only errors that
//! make the whole run meaningless (output inside the input tree, a reused
//! (key, IV) pair) stop it before any work starts.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rayon::prelude::*;

use crate::cipher::{Opener, Sealer};
use crate::error::{Error, Result};
use crate::io::{Destination, Discard, Input, Listed, Output, RemoteInputs, Source};
use crate::keycache::{KeyReuse, Keys, Material};
use crate::keys::{DataKey, KeyProvider};
use crate::ledger::{Claim, Ledger};
use crate::manifest::{KeySource, ManifestWriter, Record, RecordInput, WrappedFor};
use crate::params::{Iv, KeyBits, Mode, Target};
use crate::pipeline::{self, Tuning};
use crate::shard::Shard;

/// Receives what happens during a run. Every method has a no-op default.
pub trait Reporter: Sync {
    /// More work is known: this many files and plaintext bytes (called as listing goes).
    fn planned(&self, _files: u64, _bytes: u64) {}
    /// A file is starting.
    fn started(&self, _path: &Path) {}
    /// Bytes of a file were processed.
    fn progress(&self, _bytes: u64) {}
    /// A file is done.
    fn finished(&self, _path: &Path, _bytes: u64) {}
    /// A file failed; the run goes on.
    fn failed(&self, _path: &Path, _error: &Error) {}
    /// A file is left alone (already done, …), for `reason`.
    fn skipped(&self, _path: &Path, _reason: &str) {}
    /// Something the user must know about a file (e.g. encrypted again under a new key).
    fn note(&self, _path: &Path, _message: &str) {}
}

/// A reporter that ignores everything.
pub struct Silent;
impl Reporter for Silent {}

/// Totals of a run.
#[derive(Debug, Default)]
pub struct Summary {
    /// Files that completed (with `dry_run`: that would be encrypted).
    pub files: u64,
    /// Input bytes of the completed files (with `dry_run`: that would be encrypted).
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Files that failed, with the one-line cause.
    pub failures: Vec<(PathBuf, String)>,
    /// Files left alone because the ledger records them done (or listed twice).
    pub skipped: u64,
    /// Their bytes.
    pub skipped_bytes: u64,
    /// Requests to the key provider (GenerateDataKey, Encrypt).
    pub key_requests: u64,
    /// Files listed but not attempted because `max_errors` stopped the run.
    pub not_attempted: u64,
    /// `max_errors` stopped the run early.
    pub stopped: bool,
    /// Leftovers of an interrupted run cleaned up first (uploads aborted, temporary files).
    pub cleaned: usize,
    /// Nothing was changed: the counts are what a run would do.
    pub dry_run: bool,
}

impl Summary {
    /// Throughput in GB/s (10^9 bytes per second).
    pub fn gb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds / 1e9
        } else {
            0.0
        }
    }

    /// Whether `max_errors` stopped the run early.
    pub fn stopped_early(&self) -> bool {
        self.stopped
    }
}

/// Turns a planned source into the plaintext to encrypt. `reencrypt` uses it
/// to decrypt legacy ciphertext on the fly; plain encryption has none.
pub trait Unseal: Sync {
    /// The plaintext view of `source` (whose `path()` names the object). Its
    /// `len()` is the plaintext length, and its `finish()` must fail when the
    /// old GCM tag, CBC padding or recorded digest does not verify, so the
    /// new output is discarded instead of committed.
    fn plaintext(&self, source: Box<dyn Source>) -> Result<Box<dyn Source>>;
}

/// Everything an encryption run needs. [`EncryptJob::new`] fills in the defaults.
pub struct EncryptJob<'a> {
    /// Files and folders to encrypt (folders recursively), or remote prefixes.
    pub inputs: Vec<PathBuf>,
    /// List files: one local path or `s3://` URL per line.
    pub lists: Vec<PathBuf>,
    /// S3 Inventory reports: a `manifest.json` or a `.csv.gz` data file (local or `s3://`).
    pub inventories: Vec<PathBuf>,
    /// Where outputs go; each file keeps its path relative to its input folder.
    pub destination: &'a dyn Destination,
    /// Cipher mode.
    pub mode: Mode,
    /// Key size of generated keys (ignored with a supplied key).
    pub key_bits: KeyBits,
    /// Services to prepare settings for.
    pub target: Target,
    /// Wraps data keys.
    pub provider: &'a dyn KeyProvider,
    /// A user-supplied data key used for every file, instead of one fresh key per file.
    pub supplied_key: Option<DataKey>,
    /// Let one generated key serve several files, within these limits.
    pub reuse_key: Option<KeyReuse>,
    /// A user-supplied IV (only when one key encrypts one file).
    pub iv: Option<Vec<u8>>,
    /// Overwrite existing outputs, and encrypt again files the ledger records as done.
    pub overwrite: bool,
    /// Prefix for `FileInput` (e.g. `s3://bucket/prefix/`); the local output path otherwise.
    pub file_input_prefix: Option<String>,
    /// Buffer and chunk sizes.
    pub tuning: Tuning,
    /// Decrypts each source first (`reencrypt`); `None` encrypts sources as they are.
    pub unseal: Option<&'a dyn Unseal>,
    /// Only this shard of the inputs.
    pub shard: Option<Shard>,
    /// Stop starting files once this many have failed.
    pub max_errors: Option<u64>,
    /// Decide and count, but encrypt nothing, write nothing and ask for no keys.
    pub dry_run: bool,
    /// Local files never to take as inputs, even inside an input folder: the
    /// run's own manifest and journal, a legacy manifest being read.
    pub exclude: Vec<PathBuf>,
}

impl<'a> EncryptJob<'a> {
    /// A job with the defaults: CTR, 256-bit keys, both services, a fresh key per file.
    pub fn new(inputs: Vec<PathBuf>, destination: &'a dyn Destination, provider: &'a dyn KeyProvider) -> Self {
        EncryptJob {
            inputs,
            lists: Vec::new(),
            inventories: Vec::new(),
            destination,
            mode: Mode::Ctr,
            key_bits: KeyBits::B256,
            target: Target::Any,
            provider,
            supplied_key: None,
            reuse_key: None,
            iv: None,
            overwrite: false,
            file_input_prefix: None,
            tuning: Tuning::default(),
            unseal: None,
            shard: None,
            max_errors: None,
            dry_run: false,
            exclude: Vec::new(),
        }
    }
}

/// One listed file.
#[derive(Debug)]
pub(crate) struct Planned {
    pub(crate) source: PathBuf,
    /// The source as records name it: the URL, or the resolved local path.
    pub(crate) name: String,
    pub(crate) relative: PathBuf,
    pub(crate) size: u64,
    /// A listed remote object (`source` is then its URL), or `None` for a local file.
    pub(crate) remote: Option<Listed>,
    /// Its output may replace an existing one (ours, from an interrupted run; or a redo).
    pub(crate) replace: bool,
}

impl Planned {
    /// A local file; `resolved` is its path with symlinks resolved (see [`resolve`]).
    pub(crate) fn local(source: PathBuf, resolved: &Path, relative: PathBuf, size: u64) -> Self {
        Planned { source, name: resolved.display().to_string(), relative, size, remote: None, replace: false }
    }

    pub(crate) fn remote(item: Listed) -> Self {
        Planned { source: PathBuf::from(&item.url), name: item.url.clone(), relative: item.relative.clone(), size: item.size, remote: Some(item), replace: false }
    }
}

/// Make `path` absolute and resolve symlinks in its longest existing prefix.
pub fn resolve(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir().unwrap_or_default().join(path) };
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return abs,
        }
    }
}

/// What listing hands over, one at a time.
pub(crate) enum Listing {
    File(Planned),
    Failed(PathBuf, Error),
}

/// Refuse a run whose local output folder is inside one of its input folders.
fn check_output_outside_inputs(job: &EncryptJob<'_>, remote: Option<&dyn RemoteInputs>, out_real: Option<&Path>) -> Result<()> {
    let Some(out) = out_real else { return Ok(()) };
    for input in &job.inputs {
        if remote.is_some_and(|r| r.handles(input)) || !input.is_dir() {
            continue;
        }
        if out.starts_with(resolve(input)) {
            return Err(Error::Usage(format!(
                "{}: output folder {} is inside the input tree; choose an --out outside it",
                input.display(),
                out.display()
            )));
        }
    }
    Ok(())
}

/// List every file of the job, handing each (or each listing failure) to
/// `each` as it is found; `each` breaks to stop listing early.
fn list(job: &EncryptJob<'_>, remote: Option<&dyn RemoteInputs>, each: &mut dyn FnMut(Listing) -> ControlFlow<()>) {
    let mut shard_each = |item: Listing| match (&item, job.shard) {
        (Listing::File(f), Some(shard)) if !shard.takes(&f.relative) => ControlFlow::Continue(()),
        _ => each(item),
    };
    let exclude: Vec<PathBuf> = job.exclude.iter().map(|p| resolve(p)).collect();
    for input in &job.inputs {
        let flow = match remote.filter(|r| r.handles(input)) {
            Some(remote) => list_remote(input, remote, &mut shard_each),
            None => list_local(input, &exclude, &mut shard_each),
        };
        if flow.is_break() {
            return;
        }
    }
    for list_file in &job.lists {
        if crate::plan::list_file(list_file, remote, &mut shard_each).is_break() {
            return;
        }
    }
    for report in &job.inventories {
        if crate::plan::inventory(report, remote, &mut shard_each).is_break() {
            return;
        }
    }
}

fn list_remote(input: &Path, remote: &dyn RemoteInputs, each: &mut dyn FnMut(Listing) -> ControlFlow<()>) -> ControlFlow<()> {
    let mut found = 0u64;
    let mut flow = ControlFlow::Continue(());
    let listed = remote.list(input, &mut |item: Listed| {
        if flow.is_break() {
            return;
        }
        found += 1;
        let source = PathBuf::from(&item.url);
        flow = match crate::plan::safe_relative(&item.relative) {
            true => each(Listing::File(Planned::remote(item))),
            false => each(Listing::Failed(source.clone(), Error::invalid(&source, "the key does not make a safe relative output path"))),
        };
    });
    match listed {
        Ok(()) if found == 0 => each(Listing::Failed(input.to_path_buf(), Error::invalid(input, "no objects under this prefix"))),
        Ok(()) => flow,
        Err(e) => each(Listing::Failed(input.to_path_buf(), e.for_file(input))),
    }
}

fn list_local(input: &Path, exclude: &[PathBuf], each: &mut dyn FnMut(Listing) -> ControlFlow<()>) -> ControlFlow<()> {
    let excluded = |path: &Path| exclude.iter().any(|x| x.file_name() == path.file_name()) && exclude.contains(&resolve(path));
    let meta = match std::fs::metadata(input) {
        Ok(m) => m,
        Err(e) => return each(Listing::Failed(input.to_path_buf(), Error::io(input, "open", e))),
    };
    if !meta.is_dir() {
        let name = input.file_name().map(PathBuf::from).unwrap_or_else(|| input.to_path_buf());
        return each(Listing::File(Planned::local(input.to_path_buf(), &resolve(input), name, meta.len())));
    }
    // Resolved once: entries below are the resolved root joined with their relative path.
    let root = resolve(input);
    for entry in walkdir::WalkDir::new(input).sort_by_file_name() {
        let item = match entry {
            Ok(e) if e.file_type().is_file() && excluded(e.path()) => continue,
            Ok(e) if e.file_type().is_file() => {
                let relative = e.path().strip_prefix(input).expect("under its root").to_path_buf();
                match e.metadata() {
                    Ok(m) => Listing::File(Planned::local(e.path().to_path_buf(), &root.join(&relative), relative, m.len())),
                    Err(err) => Listing::Failed(e.path().to_path_buf(), Error::invalid(e.path(), err.to_string())),
                }
            }
            Ok(_) => continue,
            Err(err) => {
                let path = err.path().unwrap_or(input).to_path_buf();
                let cause = err.io_error().map(|e| e.to_string()).unwrap_or_else(|| err.to_string());
                Listing::Failed(path.clone(), Error::invalid(&path, format!("cannot list: {cause}")))
            }
        };
        each(item)?;
    }
    ControlFlow::Continue(())
}

/// Encrypt every file of `job`, appending a record per file to `manifest`.
///
/// Returns `Err` only for a job that must not start; per-file failures are
/// in the summary.
pub fn encrypt(job: &EncryptJob<'_>, manifest: &ManifestWriter, reporter: &dyn Reporter) -> Result<Summary> {
    encrypt_with(job, None, manifest, reporter)
}

/// Files handed to the workers in one go when a run uses the multi-buffer CBC runner.
const LANE_BATCH: usize = 256;

/// [`encrypt`], where inputs that `remote` handles (e.g. `s3://` prefixes)
/// are listed and read through it instead of the local file system.
///
/// The manifest is the ledger: files it records as done (same source, same
/// output, same size, output present) are skipped, so re-running a job
/// resumes it.
pub fn encrypt_with(job: &EncryptJob<'_>, remote: Option<&dyn RemoteInputs>, manifest: &ManifestWriter, reporter: &dyn Reporter) -> Result<Summary> {
    let started = Instant::now();
    let out_real = job.destination.local_root().map(resolve);
    check_output_outside_inputs(job, remote, out_real.as_deref())?;
    if let Some(iv) = &job.iv {
        job.target.check_iv_len(job.mode, iv.len())?;
        if job.reuse_key.is_some() {
            return Err(Error::Usage("--iv-hex with --reuse-key would encrypt several files under the same (key, IV); omit --iv-hex".into()));
        }
    }
    let ledger = Ledger::load(manifest.path())?;
    let mut summary = Summary { dry_run: job.dry_run, ..Summary::default() };
    if !job.dry_run {
        summary.cleaned = ledger.clean_interrupted(job.destination)?;
    }

    let (tx, rx) = crossbeam_channel::bounded::<Listing>(1024);
    let stop = AtomicBool::new(false);
    let outcome = std::thread::scope(|scope| -> Result<()> {
        let stop = &stop;
        scope.spawn(move || {
            list(job, remote, &mut |item| {
                if stop.load(Ordering::Relaxed) || tx.send(item).is_err() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
        });
        // The first two files decide whether a fixed IV would be reused.
        let mut first: Vec<Listing> = rx.iter().take(2).collect();
        if job.iv.is_some() && job.supplied_key.is_some() && first.len() > 1 {
            stop.store(true, Ordering::Relaxed);
            drop(rx);
            return Err(Error::Usage(
                "--iv-hex with one data key would encrypt 2 files (or more) under the same (key, IV); \
                 omit --iv-hex (random IVs) or encrypt one file per run"
                    .into(),
            ));
        }
        if first.is_empty() {
            return Ok(());
        }
        let keys = match job.dry_run {
            true => None,
            false => Some(Keys::new(job.provider, job.target, job.mode, job.key_bits, job.reuse_key, job.supplied_key.as_ref())?),
        };
        let run = Run { job, remote, out_real: out_real.as_deref(), ledger: &ledger, keys: keys.as_ref(), manifest, reporter, stop, summary: Mutex::new(std::mem::take(&mut summary)), fatal: Mutex::new(None) };
        let items = first.drain(..).chain(rx.iter());
        let admitted = items.filter_map(|item| run.admit(item));
        let multi_buffer = job.mode == Mode::Cbc && job.unseal.is_none() && all_local(job, remote);
        match keys.as_ref().filter(|k| multi_buffer && (k.supplied().is_some() || job.reuse_key.is_some())) {
            // Local CBC files sharing keys (supplied, or cached): the
            // multi-buffer runner, a group of files under one key at a time.
            Some(keys) => {
                let mut group: Vec<Planned> = Vec::with_capacity(LANE_BATCH);
                let mut current: Option<Arc<Material>> = None;
                for f in admitted {
                    let material = match keys.for_file(f.size) {
                        Ok(m) => m,
                        Err(e) => {
                            run.tally().record(&f, Err(e));
                            continue;
                        }
                    };
                    if let Some(c) = current.as_ref().filter(|c| !Arc::ptr_eq(c, &material) || group.len() == LANE_BATCH) {
                        crate::lanes::encrypt_cbc(job, &group, c, run.out_real, &run.tally());
                        group.clear();
                    }
                    current = Some(material);
                    group.push(f);
                }
                if let Some(c) = current.as_ref().filter(|_| !group.is_empty()) {
                    crate::lanes::encrypt_cbc(job, &group, c, run.out_real, &run.tally());
                }
            }
            None => admitted.par_bridge().for_each(|f| {
                let result = run.encrypt_one(&f);
                run.tally().record(&f, result);
            }),
        }
        if let Some(e) = run.fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        summary = run.summary.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = &keys {
            summary.key_requests = k.requests();
        }
        Ok(())
    });
    outcome?;
    if !job.dry_run {
        // Every record on disk before the journal that covers them goes.
        manifest.flush()?;
        // Nothing is in flight any more: failed outputs were discarded, open uploads aborted.
        ledger.finish();
        if ledger.superseded() > 0 {
            crate::ledger::compact(manifest.path())?;
        }
    }
    summary.failures.sort();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Whether every input of the job is a local file or folder.
fn all_local(job: &EncryptJob<'_>, remote: Option<&dyn RemoteInputs>) -> bool {
    job.lists.is_empty() && job.inventories.is_empty() && !job.inputs.iter().any(|i| remote.is_some_and(|r| r.handles(i)))
}

/// The state of one run shared by the workers.
struct Run<'r, 'a> {
    job: &'r EncryptJob<'a>,
    remote: Option<&'r dyn RemoteInputs>,
    out_real: Option<&'r Path>,
    ledger: &'r Ledger,
    keys: Option<&'r Keys<'r>>,
    manifest: &'r ManifestWriter,
    reporter: &'r dyn Reporter,
    stop: &'r AtomicBool,
    summary: Mutex<Summary>,
    /// An error that ends the whole run (the manifest or journal cannot be written).
    fatal: Mutex<Option<Error>>,
}

impl Run<'_, '_> {
    fn tally(&self) -> Tally<'_> {
        Tally { summary: &self.summary, reporter: self.reporter, manifest: self.manifest, ledger: self.ledger, max_errors: self.job.max_errors, stop: self.stop, shard: self.job.shard }
    }

    fn fail(&self, path: PathBuf, err: Error) {
        self.tally().fail(path, err);
    }

    /// Decide what to do with a listed file; `Some` when it is to be encrypted now.
    fn admit(&self, item: Listing) -> Option<Planned> {
        if self.stop.load(Ordering::Relaxed) {
            self.summary.lock().unwrap().not_attempted += 1;
            return None;
        }
        let mut f = match item {
            Listing::Failed(path, err) => {
                self.fail(path, err);
                return None;
            }
            Listing::File(f) => f,
        };
        if let Err(reason) = self.job.mode.check_plaintext_len(f.size) {
            self.fail(f.source.clone(), Error::invalid(&f.source, reason));
            return None;
        }
        let output = self.job.destination.location(&f.relative);
        let claim = self.ledger.claim(&f.name, &output, &f.relative, f.size, self.job.destination, self.job.overwrite);
        match claim {
            Err(e) => {
                self.fail(f.source.clone(), e.for_file(&f.source));
                return None;
            }
            Ok(Claim::Skip { reason, bytes }) => {
                self.reporter.skipped(&f.source, reason);
                let mut s = self.summary.lock().unwrap();
                s.skipped += 1;
                s.skipped_bytes += bytes;
                return None;
            }
            Ok(Claim::Redo { reason }) => {
                self.reporter.note(&f.source, &reason);
                f.replace = true;
            }
            Ok(Claim::Fresh) => {}
        }
        if self.job.dry_run {
            self.reporter.planned(1, f.size);
            self.reporter.skipped(&f.source, "dry run: would encrypt");
            let mut s = self.summary.lock().unwrap();
            s.files += 1;
            s.bytes += f.size;
            return None;
        }
        // The manifest exists once there is work (an unwritable one fails
        // the first file and stops the run); then the marker a later run
        // recognises our leftovers by, before anything else exists.
        if let Err(e) = self.manifest.open().and_then(|()| self.ledger.intend(&output, &f.relative)) {
            // Without a ledger nothing done could be recorded: stop the run.
            self.stop.store(true, Ordering::Relaxed);
            self.fatal.lock().unwrap().get_or_insert(e);
            return None;
        }
        self.reporter.planned(1, f.size);
        self.reporter.started(&f.source);
        Some(f)
    }

    fn encrypt_one(&self, f: &Planned) -> Result<Record> {
        let job = self.job;
        let input: Box<dyn Source> = match (&f.remote, self.remote) {
            (Some(item), Some(remote)) => remote.open(item)?,
            (Some(_), None) => return Err(Error::invalid(&f.source, "no reader for remote inputs")),
            (None, _) => Box::new(open_planned(f, self.out_real)?),
        };
        let input = match job.unseal {
            Some(unseal) => unseal.plaintext(input)?,
            None => input,
        };
        job.mode.check_plaintext_len(input.len()).map_err(|r| Error::invalid(&f.source, r))?;
        let material: Arc<Material> = self.keys.expect("keys outside dry runs").for_file(input.len())?;
        let iv = match &job.iv {
            Some(bytes) => Iv::from_slice(bytes)?,
            None => material.fresh_iv(job.target.default_iv_len(job.mode))?,
        };
        let mut output = job.destination.create(&f.relative, job.mode.sealed_len(input.len()), f.replace)?;
        let sealer = Sealer::new(job.mode, &material.key, iv, job.tuning.chunk);
        let iv = Iv::from_slice(sealer.iv().as_bytes())?;
        let sealed = pipeline::seal(input.as_ref(), sealer, output.as_mut(), &job.tuning, &|n| self.reporter.progress(n))?;
        let committed = output.commit()?;
        test_pause("SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS", &committed.location);
        Ok(file_record(job, f, &material.key, material.source, &material.wrapped, &iv, &sealed, &committed))
    }
}

/// Test hook: pause after `what` when the variable `name` holds milliseconds,
/// so a test can kill the process at that exact point.
pub(crate) fn test_pause(name: &str, what: &str) {
    if let Some(ms) = std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok()) {
        eprintln!("sealpipe: test hook: {what}: pausing {ms} ms ({name})");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Open a planned local file, refusing one whose output would replace it.
pub(crate) fn open_planned(f: &Planned, out_real: Option<&Path>) -> Result<Input> {
    if out_real.is_some_and(|out| Path::new(&f.name) == out.join(&f.relative)) {
        return Err(Error::invalid(&f.source, "output would overwrite the source; choose another --out"));
    }
    Input::open(&f.source)
}

/// Counts finished files, appends their records and reports failures.
pub(crate) struct Tally<'a> {
    summary: &'a Mutex<Summary>,
    pub(crate) reporter: &'a dyn Reporter,
    manifest: &'a ManifestWriter,
    ledger: &'a Ledger,
    max_errors: Option<u64>,
    stop: &'a AtomicBool,
    shard: Option<Shard>,
}

impl Tally<'_> {
    /// Record the outcome of one planned file.
    pub(crate) fn record(&self, f: &Planned, result: Result<Record>) {
        let result = result.and_then(|mut record| {
            record.shard = self.shard.map(|s| s.to_string());
            self.manifest.write(&record)?;
            // Best effort: without this line a later run only looks for leftovers it need not.
            let _ = self.ledger.recorded(&record.output);
            Ok(record.plaintext_size)
        });
        match result {
            // Plaintext bytes (a re-encrypted file's listing size is its old ciphertext's).
            Ok(bytes) => {
                let mut s = self.summary.lock().unwrap();
                s.files += 1;
                s.bytes += bytes;
                self.reporter.finished(&f.source, bytes);
            }
            Err(err) => self.fail(f.source.clone(), err.for_file(&f.source)),
        }
    }

    fn fail(&self, path: PathBuf, err: Error) {
        self.reporter.failed(&path, &err);
        let mut s = self.summary.lock().unwrap();
        s.failures.push((path, err.to_string()));
        if self.max_errors.is_some_and(|max| s.failures.len() as u64 >= max) {
            s.stopped = true;
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}

/// The manifest record of a file sealed and committed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn file_record(
    job: &EncryptJob<'_>,
    f: &Planned,
    key: &DataKey,
    key_source: KeySource,
    wrapped: &[WrappedFor],
    iv: &Iv,
    sealed: &pipeline::Sealed,
    committed: &crate::io::Committed,
) -> Record {
    let file_input = match &job.file_input_prefix {
        Some(prefix) => format!("{prefix}{}", f.relative.to_string_lossy().replace('\\', "/")),
        None => committed.location.clone(),
    };
    Record::new(RecordInput {
        source: Path::new(&f.name),
        committed,
        file_input,
        mode: job.mode,
        key,
        key_source,
        provider: job.provider,
        target: job.target,
        wrapped,
        iv,
        sealed,
    })
}

/// Decrypt one local file to `out`, refusing to leave anything under the
/// final name unless the tag/padding verify and, if given, the plaintext
/// matches `expected_sha256` (hex).
#[allow(clippy::too_many_arguments)]
pub fn decrypt_file(
    input: &Path,
    out: &Path,
    mode: Mode,
    key: &DataKey,
    iv: &Iv,
    expected_sha256: Option<&str>,
    overwrite: bool,
    tuning: &Tuning,
    reporter: &dyn Reporter,
) -> Result<pipeline::Opened> {
    if resolve(input) == resolve(out) {
        return Err(Error::invalid(input, "output would overwrite the input; choose another --out"));
    }
    let source = Input::open(input)?;
    decrypt_source(&source, out, mode, key, iv, expected_sha256, overwrite, tuning, reporter)
}

/// [`decrypt_file`] from any [`Source`] (a local file, an S3 object) to the local file `out`.
#[allow(clippy::too_many_arguments)]
pub fn decrypt_source(
    source: &dyn Source,
    out: &Path,
    mode: Mode,
    key: &DataKey,
    iv: &Iv,
    expected_sha256: Option<&str>,
    overwrite: bool,
    tuning: &Tuning,
    reporter: &dyn Reporter,
) -> Result<pipeline::Opened> {
    let input = source.path();
    reporter.planned(1, source.len());
    let mut output = Output::create(out, overwrite)?;
    let opener = Opener::new(mode, key, iv, tuning.chunk);
    let opened = pipeline::open(source, mode, opener, &mut output, tuning, &|n| reporter.progress(n))?;
    check_digest(input, expected_sha256, &opened.sha256)?;
    output.commit()?;
    reporter.finished(input, opened.cipher_len);
    Ok(opened)
}

fn check_digest(path: &Path, expected: Option<&str>, actual: &[u8; 32]) -> Result<()> {
    match expected {
        Some(want) if !want.eq_ignore_ascii_case(&hex::encode(actual)) => Err(Error::Digest {
            path: path.to_path_buf(),
            expected: want.to_string(),
            actual: hex::encode(actual),
        }),
        _ => Ok(()),
    }
}

/// Read back every record's output, decrypt it, check tag/padding, size and
/// plaintext SHA-256.
pub fn verify(records: &[Record], provider: &dyn KeyProvider, tuning: &Tuning, reporter: &dyn Reporter) -> Summary {
    verify_with(records, provider, &open_local, tuning, reporter)
}

/// Opens a record's stored output as a [`Source`] (`record.output` as a path or URL).
pub type OpenOutput<'a> = dyn Fn(&Record) -> Result<Box<dyn Source>> + Sync + 'a;

fn open_local(record: &Record) -> Result<Box<dyn Source>> {
    Ok(Box::new(Input::open(Path::new(&record.output))?))
}

/// [`verify`], reading each output through `open` (e.g. S3 objects).
pub fn verify_with(records: &[Record], provider: &dyn KeyProvider, open: &OpenOutput<'_>, tuning: &Tuning, reporter: &dyn Reporter) -> Summary {
    let started = Instant::now();
    reporter.planned(records.len() as u64, records.iter().map(|r| r.ciphertext_size).sum());
    let done = Mutex::new((0u64, 0u64));
    let failures = Mutex::new(Vec::new());
    let keys = UnwrappedKeys::default();
    records.par_iter().with_max_len(1).for_each(|record| {
        let path = PathBuf::from(&record.output);
        match verify_one(record, &path, provider, &keys, open, tuning, reporter) {
            Ok(()) => {
                let mut d = done.lock().unwrap();
                d.0 += 1;
                d.1 += record.ciphertext_size;
                reporter.finished(&path, record.ciphertext_size);
            }
            Err(err) => {
                let err = err.for_file(&path);
                reporter.failed(&path, &err);
                failures.lock().unwrap().push((path, err.to_string()));
            }
        }
    });
    let (files, bytes) = *done.lock().unwrap();
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    Summary { files, bytes, seconds: started.elapsed().as_secs_f64(), failures, ..Summary::default() }
}

/// What [`Record::data_key`] reads: the provider and its key, the wrapped blob, its context and the key size.
type WrappedId = (String, String, String, Vec<u8>, u16);

/// Data keys unwrapped during one verification. The records of a
/// `--reuse-key` run share a few data keys: each is asked of the provider
/// (KMS `Decrypt`) once, not once per file. Zeroized when the verification ends.
#[derive(Default)]
struct UnwrappedKeys(Mutex<HashMap<WrappedId, KeySlot>>);

/// One data key, filled by the first record that needs it (the others wait on its lock).
type KeySlot = Arc<Mutex<Option<Arc<DataKey>>>>;

impl UnwrappedKeys {
    fn get(&self, record: &Record, provider: &dyn KeyProvider) -> Result<Arc<DataKey>> {
        let id = (
            record.key_provider.clone(),
            record.key_id.clone(),
            record.encrypted_data_key.clone(),
            record.encryption_context.canonical(),
            u16::from(record.key_bits),
        );
        let slot = self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_default().clone();
        // Held while unwrapping: other records of the same key wait for it instead of asking too.
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = slot.as_ref() {
            return Ok(key.clone());
        }
        let key = Arc::new(record.data_key(provider)?);
        *slot = Some(key.clone());
        Ok(key)
    }
}

fn verify_one(record: &Record, path: &Path, provider: &dyn KeyProvider, keys: &UnwrappedKeys, open: &OpenOutput<'_>, tuning: &Tuning, reporter: &dyn Reporter) -> Result<()> {
    let input = open(record)?;
    if input.len() != record.ciphertext_size {
        return Err(Error::invalid(
            path,
            format!("ciphertext is {} bytes, the manifest recorded {} (truncated or replaced)", input.len(), record.ciphertext_size),
        ));
    }
    let key = keys.get(record, provider)?;
    let iv = record.iv()?;
    let opener = Opener::new(record.mode, &key, &iv, tuning.chunk);
    let opened = pipeline::open(input.as_ref(), record.mode, opener, &mut Discard, tuning, &|n| reporter.progress(n))?;
    check_digest(path, Some(&record.plaintext_sha256), &opened.sha256)
}
