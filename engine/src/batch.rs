//! Whole runs: plan the files, encrypt / verify them all on the caller's
//! rayon pool, and report through a [`Reporter`].
//!
//! A failure on one file is reported and the run goes on; only errors that
//! make the whole run meaningless (output inside the input tree, a reused
//! (key, IV) pair) stop it before any work starts.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;

use crate::cipher::{Opener, Sealer};
use crate::error::{Error, Result};
use crate::io::{Destination, Discard, Input, Listed, Output, RemoteInputs, Source};
use crate::keys::{DataKey, KeyProvider};
use crate::manifest::{KeySource, ManifestWriter, Record, RecordInput, WrappedFor};
use crate::params::{Iv, KeyBits, Mode, Target};
use crate::pipeline::{self, Tuning};

/// Receives what happens during a run. Every method has a no-op default.
pub trait Reporter: Sync {
    /// The plan is made: this many files and plaintext bytes.
    fn planned(&self, _files: u64, _bytes: u64) {}
    /// Bytes of a file were processed.
    fn progress(&self, _bytes: u64) {}
    /// A file is done.
    fn finished(&self, _path: &Path, _bytes: u64) {}
    /// A file failed; the run goes on.
    fn failed(&self, _path: &Path, _error: &Error) {}
}

/// A reporter that ignores everything.
pub struct Silent;
impl Reporter for Silent {}

/// Totals of a run.
#[derive(Debug, Default)]
pub struct Summary {
    /// Files that completed.
    pub files: u64,
    /// Input bytes of the completed files.
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Files that failed, with the one-line cause.
    pub failures: Vec<(PathBuf, String)>,
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

/// Everything an encryption run needs.
pub struct EncryptJob<'a> {
    /// Files and folders to encrypt (folders recursively).
    pub inputs: Vec<PathBuf>,
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
    /// A user-supplied IV (only when one key encrypts one file).
    pub iv: Option<Vec<u8>>,
    /// Overwrite existing outputs.
    pub overwrite: bool,
    /// Prefix for `FileInput` (e.g. `s3://bucket/prefix/`); the local output path otherwise.
    pub file_input_prefix: Option<String>,
    /// Buffer and chunk sizes.
    pub tuning: Tuning,
    /// Decrypts each source first (`reencrypt`); `None` encrypts sources as they are.
    pub unseal: Option<&'a dyn Unseal>,
}

/// One planned file.
#[derive(Debug)]
pub(crate) struct Planned {
    pub(crate) source: PathBuf,
    pub(crate) relative: PathBuf,
    pub(crate) size: u64,
    /// A listed remote object (`source` is then its URL), or `None` for a local file.
    pub(crate) remote: Option<Listed>,
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

/// The files of a job, and the inputs (or entries) that could not be listed.
type Plan = (Vec<Planned>, Vec<(PathBuf, Error)>);

/// List the files of the job. Inputs that cannot be listed become failures.
fn plan(job: &EncryptJob<'_>, remote: Option<&dyn RemoteInputs>, out_real: Option<&Path>) -> Result<Plan> {
    let mut files = Vec::new();
    let mut failures = Vec::new();
    for input in &job.inputs {
        if let Some(remote) = remote.filter(|r| r.handles(input)) {
            // Listed page by page into the plan; an unsafe relative path fails alone.
            let before = files.len();
            let listed = remote.list(input, &mut |item: Listed| {
                let source = PathBuf::from(&item.url);
                let safe = item.relative.components().all(|c| matches!(c, std::path::Component::Normal(_)));
                if safe && item.relative.components().next().is_some() {
                    files.push(Planned { source, relative: item.relative.clone(), size: item.size, remote: Some(item) });
                } else {
                    failures.push((source.clone(), Error::invalid(&source, "the key does not make a safe relative output path")));
                }
            });
            match listed {
                Ok(()) if files.len() == before && !failures.iter().any(|(p, _)| p.starts_with(input)) => {
                    failures.push((input.clone(), Error::invalid(input, "no objects under this prefix")))
                }
                Ok(()) => {}
                Err(e) => failures.push((input.clone(), e.for_file(input))),
            }
            continue;
        }
        let meta = match std::fs::metadata(input) {
            Ok(m) => m,
            Err(e) => {
                failures.push((input.clone(), Error::io(input, "open", e)));
                continue;
            }
        };
        let real = resolve(input);
        if meta.is_dir() {
            if let Some(out) = out_real.filter(|out| out.starts_with(&real)) {
                return Err(Error::Usage(format!(
                    "{}: output folder {} is inside the input tree; choose an --out outside it",
                    input.display(),
                    out.display()
                )));
            }
            for entry in walkdir::WalkDir::new(input).sort_by_file_name() {
                match entry {
                    Ok(e) if e.file_type().is_file() => {
                        let relative = e.path().strip_prefix(input).expect("under its root").to_path_buf();
                        match e.metadata() {
                            Ok(m) => files.push(Planned { source: e.path().to_path_buf(), relative, size: m.len(), remote: None }),
                            Err(err) => failures.push((e.path().to_path_buf(), Error::invalid(e.path(), err.to_string()))),
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        let path = err.path().unwrap_or(input).to_path_buf();
                        let cause = err.io_error().map(|e| e.to_string()).unwrap_or_else(|| err.to_string());
                        failures.push((path.clone(), Error::invalid(&path, format!("cannot list: {cause}"))));
                    }
                }
            }
        } else {
            let name = input.file_name().map(PathBuf::from).unwrap_or_else(|| input.clone());
            files.push(Planned { source: input.clone(), relative: name, size: meta.len(), remote: None });
        }
    }
    Ok((files, failures))
}

/// Encrypt every file of `job`, appending a record per file to `manifest`.
///
/// Returns `Err` only for a job that must not start; per-file failures are
/// in the summary.
pub fn encrypt(job: &EncryptJob<'_>, manifest: &ManifestWriter, reporter: &dyn Reporter) -> Result<Summary> {
    encrypt_with(job, None, manifest, reporter)
}

/// [`encrypt`], where inputs that `remote` handles (e.g. `s3://` prefixes)
/// are listed and read through it instead of the local file system.
pub fn encrypt_with(
    job: &EncryptJob<'_>,
    remote: Option<&dyn RemoteInputs>,
    manifest: &ManifestWriter,
    reporter: &dyn Reporter,
) -> Result<Summary> {
    let started = Instant::now();
    let out_real = job.destination.local_root().map(resolve);
    let (files, listing_failures) = plan(job, remote, out_real.as_deref())?;

    if let Some(iv) = &job.iv {
        job.target.check_iv_len(job.mode, iv.len())?;
        if job.supplied_key.is_some() && files.len() + listing_failures.len() > 1 {
            return Err(Error::Usage(format!(
                "--iv-hex with one data key for {} files would encrypt several files under the same (key, IV); \
                 omit --iv-hex (random IVs) or encrypt one file per run",
                files.len() + listing_failures.len()
            )));
        }
    }
    if job.supplied_key.is_some() && job.mode == Mode::Gcm && files.len() as u64 > 1 << 32 {
        return Err(Error::Usage("one GCM data key may encrypt at most 2^32 files with random IVs".into()));
    }
    // Wrap a supplied key once per service; generated keys are wrapped per file.
    let supplied_wrapped = match &job.supplied_key {
        Some(key) => Some(wrap_for_target(job.provider, key, job.target)?),
        None => None,
    };

    let total: u64 = files.iter().map(|f| f.size).sum();
    reporter.planned(files.len() as u64, total);
    let failures = Mutex::new(Vec::new());
    for (path, err) in listing_failures {
        reporter.failed(&path, &err);
        failures.lock().unwrap().push((path, err.to_string()));
    }
    let done = Mutex::new((0u64, 0u64));

    // Refuse over-long GCM inputs before any work starts.
    let mut runnable = Vec::with_capacity(files.len());
    for f in files {
        match job.mode.check_plaintext_len(f.size) {
            Ok(()) => runnable.push(f),
            Err(reason) => {
                let err = Error::invalid(&f.source, reason);
                reporter.failed(&f.source, &err);
                failures.lock().unwrap().push((f.source, err.to_string()));
            }
        }
    }
    // Only now, with the run accepted and work to do, create the manifest.
    if !runnable.is_empty() {
        manifest.open()?;
    }
    // Largest first, so the long poles start early.
    runnable.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.source.cmp(&b.source)));

    let tally = Tally { done: &done, failures: &failures, reporter, manifest };
    match (&job.supplied_key, job.mode) {
        // One key for every file: CBC files go through the multi-buffer runner.
        (Some(key), Mode::Cbc) if job.unseal.is_none() && runnable.len() > 1 && runnable.iter().all(|f| f.remote.is_none()) => crate::lanes::encrypt_cbc(
            job,
            &runnable,
            key,
            supplied_wrapped.as_deref().expect("wrapped with the key"),
            out_real.as_deref(),
            &tally,
        ),
        _ => runnable.par_iter().with_max_len(1).for_each(|f| {
            tally.record(f, encrypt_one(job, remote, f, out_real.as_deref(), supplied_wrapped.as_deref(), reporter));
        }),
    }

    let (files, bytes) = *done.lock().unwrap();
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    Ok(Summary { files, bytes, seconds: started.elapsed().as_secs_f64(), failures })
}

/// Open a planned local file, refusing one whose output would replace it.
pub(crate) fn open_planned(f: &Planned, out_real: Option<&Path>) -> Result<Input> {
    if out_real.is_some_and(|out| resolve(&f.source) == out.join(&f.relative)) {
        return Err(Error::invalid(&f.source, "output would overwrite the source; choose another --out"));
    }
    Input::open(&f.source)
}

/// Counts finished files, appends their records and reports failures.
pub(crate) struct Tally<'a> {
    done: &'a Mutex<(u64, u64)>,
    failures: &'a Mutex<Vec<(PathBuf, String)>>,
    pub(crate) reporter: &'a dyn Reporter,
    manifest: &'a ManifestWriter,
}

impl Tally<'_> {
    /// Record the outcome of one planned file.
    pub(crate) fn record(&self, f: &Planned, result: Result<Record>) {
        match result.and_then(|record| self.manifest.write(&record)) {
            Ok(()) => {
                let mut d = self.done.lock().unwrap();
                d.0 += 1;
                d.1 += f.size;
                self.reporter.finished(&f.source, f.size);
            }
            Err(err) => {
                let err = err.for_file(&f.source);
                self.reporter.failed(&f.source, &err);
                self.failures.lock().unwrap().push((f.source.clone(), err.to_string()));
            }
        }
    }
}

fn wrap_for_target(provider: &dyn KeyProvider, key: &DataKey, target: Target) -> Result<Vec<WrappedFor>> {
    target
        .services()
        .iter()
        .map(|&service| Ok(WrappedFor { service, blob: provider.wrap(key, &service.encryption_context())? }))
        .collect()
}

fn encrypt_one(
    job: &EncryptJob<'_>,
    remote: Option<&dyn RemoteInputs>,
    f: &Planned,
    out_real: Option<&Path>,
    supplied_wrapped: Option<&[WrappedFor]>,
    reporter: &dyn Reporter,
) -> Result<Record> {
    let input: Box<dyn Source> = match (&f.remote, remote) {
        (Some(item), Some(remote)) => remote.open(item)?,
        (Some(_), None) => return Err(Error::invalid(&f.source, "no reader for remote inputs")),
        (None, _) => Box::new(open_planned(f, out_real)?),
    };
    let input = match job.unseal {
        Some(unseal) => unseal.plaintext(input)?,
        None => input,
    };
    job.mode.check_plaintext_len(input.len()).map_err(|r| Error::invalid(&f.source, r))?;

    let generated;
    let (key, wrapped, key_source): (&DataKey, Vec<WrappedFor>, KeySource) = match (&job.supplied_key, supplied_wrapped) {
        (Some(key), Some(w)) => (key, w.iter().map(|x| WrappedFor { service: x.service, blob: x.blob.clone() }).collect(), KeySource::Supplied),
        _ => {
            let services = job.target.services();
            let (key, primary) = job.provider.generate(job.key_bits, &services[0].encryption_context())?;
            let mut wrapped = vec![WrappedFor { service: services[0], blob: primary }];
            for &service in &services[1..] {
                wrapped.push(WrappedFor { service, blob: job.provider.wrap(&key, &service.encryption_context())? });
            }
            generated = key;
            (&generated, wrapped, KeySource::Generated)
        }
    };
    let iv = match &job.iv {
        Some(bytes) => Iv::from_slice(bytes)?,
        None => Iv::random(job.target.default_iv_len(job.mode))?,
    };

    let mut output = job.destination.create(&f.relative, job.mode.sealed_len(input.len()))?;
    let sealer = Sealer::new(job.mode, key, iv, job.tuning.chunk);
    let sealer_iv_bytes = sealer.iv().as_bytes().to_vec();
    let sealed = pipeline::seal(input.as_ref(), sealer, output.as_mut(), &job.tuning, &|n| reporter.progress(n))?;
    let committed = output.commit()?;
    let iv = Iv::from_slice(&sealer_iv_bytes)?;
    Ok(file_record(job, f, key, key_source, &wrapped, &iv, &sealed, &committed))
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
        source: &if f.remote.is_some() { f.source.clone() } else { resolve(&f.source) },
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
    records.par_iter().with_max_len(1).for_each(|record| {
        let path = PathBuf::from(&record.output);
        match verify_one(record, &path, provider, open, tuning, reporter) {
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
    Summary { files, bytes, seconds: started.elapsed().as_secs_f64(), failures }
}

fn verify_one(record: &Record, path: &Path, provider: &dyn KeyProvider, open: &OpenOutput<'_>, tuning: &Tuning, reporter: &dyn Reporter) -> Result<()> {
    let input = open(record)?;
    if input.len() != record.ciphertext_size {
        return Err(Error::invalid(
            path,
            format!("ciphertext is {} bytes, the manifest recorded {} (truncated or replaced)", input.len(), record.ciphertext_size),
        ));
    }
    let key = record.data_key(provider)?;
    let iv = record.iv()?;
    let opener = Opener::new(record.mode, &key, &iv, tuning.chunk);
    let opened = pipeline::open(input.as_ref(), record.mode, opener, &mut Discard, tuning, &|n| reporter.progress(n))?;
    check_digest(path, Some(&record.plaintext_sha256), &opened.sha256)
}
