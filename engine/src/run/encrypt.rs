//! Encryption runs: list the inputs as a stream, decide per file (skip what
//! the ledger says is done, take this shard's share), encrypt on the
//! caller's rayon pool, record each finished file, and report.
//!
//! Listing runs on its own thread and hands files over a bounded channel,
//! so memory does not grow with the number of inputs. A failure on one file
//! is reported and the run goes on (up to `max_errors`); only errors that
//! make the whole run meaningless (output inside the input tree, a reused
//! (key, IV) pair) stop it before any work starts. One file's way from its
//! source to its sink is in [`file`].

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

mod file;

use super::filter::Filter;
use super::keys::{KeyReuse, Keys};
use super::ledger::{key as ledger_key, Claim, Key, Ledger, Settings};
use super::manifest::ManifestWriter;
use super::plan::{check_destination_apart_from_sources, list, Entry, Inputs, Listing};
use super::reencrypt::Unseal;
use super::report::Summary;
use crate::events::{Event, Events};
use super::schedule;
use super::shard::Shard;
use crate::error::{Error, Failure, Result};
use crate::format::digest::DigestAlg;
use crate::format::record::Record;
use crate::format::{KeyBits, Mode, Target};
use crate::keys::{DataKey, KeyProvider};
use crate::pipeline::Tuning;
use crate::store::local::resolve;
use crate::format::envelope::job_id;
use crate::store::{CopyProps, Destination, Stores, LOCAL_ONLY};


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
    /// The stores input URLs are listed and read from (default: local files only).
    pub stores: &'a Stores,
    /// Cipher mode.
    pub mode: Mode,
    /// The plaintext digest each record carries (re-encryption: of the plaintext in the middle).
    pub digest: DigestAlg,
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
    /// Buffer and chunk sizes (from a [`schedule::MemoryPlan`]).
    pub tuning: Tuning,
    /// Files in flight at once, each on a worker thread (0: one per thread
    /// of the pool); with `memory`, as many as its budget holds.
    pub files_in_flight: usize,
    /// The memory plan each file in flight takes its charge of ([`schedule::MemoryPlan::charge`]);
    /// `None`: `files_in_flight` alone bounds them.
    pub memory: Option<schedule::MemoryPlan>,
    /// Decrypts each source first (`reencrypt`); `None` encrypts sources as they are.
    pub unseal: Option<&'a dyn Unseal>,
    /// Only this shard of the inputs.
    pub shard: Option<Shard>,
    /// Stop starting files once this many have failed.
    pub max_errors: Option<u64>,
    /// Decide and count, but encrypt nothing, write nothing and ask for no keys.
    pub dry_run: bool,
    /// Local files never to take as inputs, even inside an input folder (a
    /// legacy manifest being read). The run's own manifest, its journal and
    /// its lock are left out without being named here.
    pub exclude: Vec<PathBuf>,
    /// `--include`/`--exclude` rules (see [`super::filter`]); files they leave out are counted there.
    pub filter: Option<&'a Filter>,
    /// Follow symbolic links inside input folders (default; `false`: report them skipped).
    pub follow_symlinks: bool,
    /// Ask for archived objects to be restored (`--restore`); `None`: only report them.
    pub restore: Option<crate::store::RestoreRequest>,
    /// Which properties of an S3 source its output gets (`--copy-props`).
    pub copy_props: CopyProps,
    /// The manifest as the user named it (its URL for an `s3://` manifest);
    /// `None`: its resolved local path. Outputs carry its [`job_id`] in their
    /// envelopes, by which a re-run of this job knows its own unrecorded outputs.
    pub manifest_name: Option<String>,
    /// Set by the caller to stop the run gracefully (an eviction's SIGTERM):
    /// no file is started after it is set, the files in flight finish and
    /// are recorded, and the run returns as usual with
    /// [`Summary::interrupted`]. The engine never reads signals itself.
    pub stop: Option<Arc<AtomicBool>>,
    /// Called with an output's location once it is committed and before its
    /// record is written (where a test of the CLI pauses to kill the run).
    pub after_commit: Option<&'a (dyn Fn(&str) + Sync)>,
}

impl<'a> EncryptJob<'a> {
    /// A job with the defaults: CTR, 256-bit keys, both services, a fresh key per file.
    pub fn new(inputs: Vec<PathBuf>, destination: &'a dyn Destination, provider: &'a dyn KeyProvider) -> Self {
        EncryptJob {
            inputs,
            lists: Vec::new(),
            inventories: Vec::new(),
            destination,
            stores: &LOCAL_ONLY,
            mode: Mode::Ctr,
            digest: DigestAlg::Sha256,
            key_bits: KeyBits::B256,
            target: Target::Any,
            provider,
            supplied_key: None,
            reuse_key: None,
            iv: None,
            overwrite: false,
            file_input_prefix: None,
            tuning: Tuning::default(),
            files_in_flight: 0,
            memory: None,
            unseal: None,
            shard: None,
            max_errors: None,
            dry_run: false,
            exclude: Vec::new(),
            filter: None,
            follow_symlinks: true,
            manifest_name: None,
            restore: None,
            copy_props: CopyProps::Default,
            stop: None,
            after_commit: None,
        }
    }

    /// Whether the caller asked the run to stop.
    fn stopping(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed))
    }
}

/// Encrypt every file of `job`, appending a record per file to `manifest`.
///
/// Returns `Err` only for a job that must not start; per-file failures are
/// in the summary.
///
/// The manifest is the ledger: files it records as done (same source, same
/// output, same size, output present) are skipped, so re-running a job
/// resumes it. Inputs named by URL are listed and read through `job.stores`.
pub fn encrypt(job: &EncryptJob<'_>, manifest: &ManifestWriter, events: &dyn Events) -> Result<Summary> {
    let started = Instant::now();
    let own = manifest.path();
    let exclude: Vec<PathBuf> = [own.to_path_buf(), super::ledger::journal_path(own), super::lease::lock_path(own)].into_iter().chain(job.exclude.iter().cloned()).collect();
    let inputs = Inputs {
        paths: &job.inputs,
        lists: &job.lists,
        inventories: &job.inventories,
        exclude: &exclude,
        shard: job.shard,
        filter: job.filter,
        stores: job.stores,
        follow_symlinks: job.follow_symlinks,
    };
    let out_real = job.destination.local_root().map(resolve);
    check_destination_apart_from_sources(&inputs, out_real.as_deref(), &job.destination.location(Path::new("")))?;
    if let Some(iv) = &job.iv {
        job.target.check_iv_len(job.mode, iv.len())?;
        if job.reuse_key.is_some() {
            return Err(Error::Usage("--iv-hex with --reuse-key would encrypt several files under the same (key, IV); omit --iv-hex".into()));
        }
    }
    let ledger = Arc::new(Ledger::load(manifest.path())?);
    let mut summary = Summary { dry_run: job.dry_run, ..Summary::default() };
    if !job.dry_run {
        summary.cleaned = ledger.clean_interrupted(job.destination)?;
        // What the destination creates is journalled before it is created.
        job.destination.recovery().inspect(|r| r.set_journal(Some(ledger.clone() as Arc<dyn crate::store::Journal>)));
    }

    let (tx, rx) = crossbeam_channel::bounded::<Listing>(1024);
    let stop = AtomicBool::new(false);
    // The caller's stop cut the run short: files were left unstarted.
    let cut = AtomicBool::new(false);
    let outcome = std::thread::scope(|scope| -> Result<()> {
        let (stop, cut) = (&stop, &cut);
        let inputs = &inputs;
        scope.spawn(move || {
            list(inputs, &mut |item| {
                if job.stopping() {
                    cut.store(true, Ordering::Relaxed);
                    return ControlFlow::Break(());
                }
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
            // Every file listed was left out by the filters: the run would do nothing, silently.
            // (A shard may rightly get no file: only a whole job is refused.)
            return match job.filter.filter(|f| f.rejected() > 0 && job.shard.is_none()) {
                Some(filter) => Err(Error::Usage(format!(
                    "no file matches the --include/--exclude filters ({} left out: {})",
                    filter.rejected(),
                    filter.reasons().iter().map(|(rule, n)| format!("{n} by {rule}")).collect::<Vec<_>>().join(", ")
                ))),
                None => Ok(()),
            };
        }
        let keys = match job.dry_run {
            true => None,
            false => Some(Keys::new(job.provider, job.target, job.mode, job.key_bits, job.reuse_key, job.supplied_key.as_ref())?),
        };
        let job_id = job_id(job.manifest_name.as_deref().unwrap_or(&resolve(manifest.path()).display().to_string()));
        let run = Run { job, out_real: out_real.as_deref(), ledger: &ledger, job_id, keys: keys.as_ref(), manifest, events, stop, summary: Mutex::new(std::mem::take(&mut summary)), fatal: Mutex::new(None), outputs: Mutex::default() };
        // Once the caller says stop, no further file is started (the one
        // taken when it is seen is left unplanned, as if never listed).
        let items = first.drain(..).chain(rx.iter()).take_while(|_| {
            let go_on = !job.stopping();
            if !go_on {
                cut.store(true, Ordering::Relaxed);
            }
            go_on
        });
        let admitted = items.filter_map(|item| run.admit(item));
        let multi_buffer = job.mode == Mode::Cbc && job.unseal.is_none() && inputs.all_local();
        match keys.as_ref().filter(|k| multi_buffer && (k.supplied().is_some() || job.reuse_key.is_some())) {
            // Local CBC files sharing keys (supplied, or cached): the multi-buffer path.
            Some(keys) => schedule::cbc_groups(admitted, keys, &run),
            // `files_in_flight` workers take files one at a time, each file
            // holding its charge of the memory plan's budget while it is in
            // flight. The workers are threads of their own, not the pool's:
            // a run of small objects has many in flight, most of them
            // waiting on the network, while the pool's threads do the
            // cipher's chunks. (Threads parked on replies, not async tasks:
            // the store and pipeline traits are blocking; a parked thread
            // costs its stack's touched pages, about 16 KiB.)
            None => {
                let admitted = Mutex::new(admitted);
                let workers = match job.files_in_flight {
                    0 => rayon::current_num_threads(),
                    n => n,
                };
                let budget = job.memory.map(|plan| (plan, schedule::Budget::new(plan.bound())));
                let (run, admitted, budget) = (&run, &admitted, &budget);
                std::thread::scope(|scope| {
                    for i in 0..workers {
                        let worker = move || loop {
                            let next = admitted.lock().unwrap_or_else(|p| p.into_inner()).next();
                            let Some(f) = next else { break };
                            let _charge = budget.as_ref().map(|(plan, budget)| budget.take(plan.charge(f.size)));
                            let result = run.encrypt_one(&f);
                            run.settle(&f, result);
                        };
                        if let Err(e) = std::thread::Builder::new().name(format!("sealpipe-file-{i}")).spawn_scoped(scope, worker) {
                            // Fewer workers than asked for: the ones started do the work (none: the run stops, said).
                            if i == 0 {
                                run.fatal.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(Error::Usage(format!("cannot start a worker thread: {e}")));
                            }
                            break;
                        }
                    }
                });
            }
        }
        if let Some(e) = run.fatal.into_inner().unwrap_or_else(|p| p.into_inner()) {
            return Err(e);
        }
        summary = run.summary.into_inner().unwrap_or_else(|p| p.into_inner());
        if let Some(k) = &keys {
            summary.key_requests = k.requests();
        }
        summary.interrupted = cut.load(Ordering::Relaxed);
        Ok(())
    });
    if !job.dry_run {
        job.destination.recovery().inspect(|r| r.set_journal(None));
    }
    if let Err(e) = outcome {
        if !job.dry_run {
            // Stopped (an unusable key-encryption key): what was discarded is
            // settled, what is not stays journalled for the next run.
            let _ = ledger.finish();
            manifest.discard_if_unused();
        }
        return Err(e);
    }
    if !job.dry_run {
        // Every record on disk before the journal that covers them goes.
        manifest.flush()?;
        // Nothing is in flight any more; what is still unsettled (outputs
        // whose commit was not confirmed, uploads whose abort failed) stays
        // in the journal for the next run.
        ledger.finish()?;
        if ledger.superseded() > 0 {
            super::ledger::compact(manifest.path())?;
        }
    }
    summary.failures.sort();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The state of one run shared by the workers.
pub(crate) struct Run<'r, 'a> {
    pub(crate) job: &'r EncryptJob<'a>,
    pub(crate) out_real: Option<&'r Path>,
    ledger: &'r Ledger,
    /// [`job_id`] of the manifest, which the outputs' envelopes carry.
    job_id: String,
    keys: Option<&'r Keys<'r>>,
    manifest: &'r ManifestWriter,
    pub(crate) events: &'r dyn Events,
    stop: &'r AtomicBool,
    summary: Mutex<Summary>,
    /// An error that ends the whole run (the manifest or journal cannot be written).
    fatal: Mutex<Option<Error>>,
    /// Every output this run has planned, by the hash of its location, with
    /// the source it belongs to: two sources mapping to one output are told
    /// apart here, when planned (never a race for the name, never an
    /// overwrite). About 100 bytes a file.
    outputs: Mutex<HashMap<Key, Box<str>>>,
}

impl Run<'_, '_> {
    pub(crate) fn tally(&self) -> Tally<'_> {
        Tally { summary: &self.summary, events: self.events, manifest: self.manifest, ledger: self.ledger, destination: self.job.destination, max_errors: self.job.max_errors, stop: self.stop, shard: self.job.shard }
    }

    fn fail(&self, path: PathBuf, err: Error) {
        self.tally().fail(path, err);
    }

    /// Record a file's outcome; a key-encryption key that cannot be used at
    /// all would fail every file the same way, so it ends the run instead.
    fn settle(&self, f: &Entry, result: Result<Record>) {
        match result {
            Err(e @ Error::KeyProvider(_)) => {
                self.stop.store(true, Ordering::Relaxed);
                self.fatal.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(e);
            }
            other => self.tally().record(f, other),
        }
    }

    /// Decide what to do with a listed file; `Some` when it is to be encrypted now.
    fn admit(&self, item: Listing) -> Option<Entry> {
        if self.stop.load(Ordering::Relaxed) {
            self.summary.lock().unwrap().not_attempted += 1;
            return None;
        }
        let mut f = match item {
            Listing::Failed(path, err) => {
                self.fail(path, err);
                return None;
            }
            Listing::Skipped(path, reason) => {
                self.events.emit(Event::LeftOut { path: &path, reason });
                self.summary.lock().unwrap().left_out += 1;
                return None;
            }
            Listing::Archived(item) => {
                self.archived(&item);
                return None;
            }
            Listing::File(f) => f,
        };
        if let Err(reason) = self.job.mode.check_plaintext_len(f.size) {
            self.fail(f.source.clone(), Error::invalid(&f.source, reason));
            return None;
        }
        // Before any request about it (the ledger may ask whether the output is stored).
        if let Some(reason) = self.job.destination.refuses_name(&f.relative) {
            let source = PathBuf::from(super::plan::shortened(&f.source.to_string_lossy()));
            self.fail(source.clone(), Error::invalid(&source, reason));
            return None;
        }
        let output = self.job.destination.location(&f.relative);
        // A list or inventory entry whose output would be its own source
        // (a source is never written, `--force` or not).
        if output == f.name {
            self.fail(f.source.clone(), Error::invalid(&f.source, format!("the output {output} is this source itself; refused (a source is never written)")));
            return None;
        }
        {
            let mut outputs = self.outputs.lock().unwrap_or_else(|p| p.into_inner());
            let other = outputs.entry(ledger_key("", &output)).or_insert_with(|| f.name.as_str().into());
            if **other != *f.name {
                let reason = format!("its output {output} is also the output of {other}: two sources, one output; refused");
                drop(outputs);
                self.fail(f.source.clone(), Error::invalid(&f.source, reason));
                return None;
            }
        }
        let claim = self.ledger.claim(&f.name, &output, &f.relative, f.size, &|| self.settings(), self.job.destination, self.job.overwrite);
        match claim {
            Err(e) => {
                self.fail(f.source.clone(), e.for_file(&f.source));
                return None;
            }
            Ok(Claim::Skip { reason, bytes }) => {
                self.events.emit(Event::Skipped { path: &f.source, reason });
                let mut s = self.summary.lock().unwrap();
                s.skipped += 1;
                s.skipped_bytes += bytes;
                return None;
            }
            Ok(Claim::Redo { reason }) => {
                self.events.emit(Event::Note { path: &f.source, message: &reason });
                f.replace = true;
            }
            Ok(Claim::Journalled) => f.replace = true,
            Ok(Claim::Fresh) => {}
        }
        if self.job.dry_run {
            self.events.emit(Event::Planned { files: 1, bytes: f.size });
            self.events.emit(Event::Skipped { path: &f.source, reason: "dry run: would encrypt" });
            let mut s = self.summary.lock().unwrap();
            s.files += 1;
            s.bytes += f.size;
            return None;
        }
        // The manifest exists once there is work (an unwritable one fails
        // the first file and stops the run); then the marker a later run
        // recognises our leftovers by, before anything else exists.
        if let Err(e) = self.manifest.open().and_then(|()| self.ledger.intend(&output, &f.relative, f.replace)) {
            // Without a ledger nothing done could be recorded: stop the run.
            self.stop.store(true, Ordering::Relaxed);
            self.fatal.lock().unwrap().get_or_insert(e);
            return None;
        }
        self.events.emit(Event::Planned { files: 1, bytes: f.size });
        self.events.emit(Event::Started { path: &f.source });
        Some(f)
    }

    /// An archived object that cannot be read now: said with its class and
    /// the fix, counted apart, no key made for it; with `restore`, its
    /// restore is asked for (once: one in progress is said as such).
    fn archived(&self, item: &crate::store::Listed) {
        let path = Path::new(&item.url);
        let archived = item.archived.as_ref().expect("an archived listing");
        let class = &archived.class;
        let mut restoring = archived.restoring;
        let mut requested = false;
        if let (Some(request), false, false) = (&self.job.restore, restoring, self.job.dry_run) {
            let asked = self.job.stores.remote(&item.url).and_then(|s| s.ok_or_else(|| Error::invalid(path, "no store for this URL"))).and_then(|s| s.restore(&item.url, request));
            match asked {
                Ok(started) => {
                    requested = started;
                    restoring = true;
                }
                Err(e) => return self.fail(path.to_path_buf(), e.for_file(path)),
            }
        }
        let reason = match (requested, restoring, &self.job.restore) {
            (true, _, Some(r)) => format!("archived ({class}): restore requested ({} tier, {} days); a re-run once it is restored encrypts it", r.tier, r.days),
            (_, true, _) => format!("archived ({class}): restore in progress; a re-run once it is restored encrypts it"),
            _ => format!("archived ({class}): cannot be read until restored; --restore asks S3 to restore it, then re-run"),
        };
        self.events.emit(Event::LeftOut { path, reason: &reason });
        let mut s = self.summary.lock().unwrap_or_else(|p| p.into_inner());
        s.archived += 1;
        s.archived_bytes += item.size;
        s.restores_requested += u64::from(requested);
        s.restores_in_progress += u64::from(restoring && !requested);
    }

    /// What a record must have been made with to count as done now. The key
    /// id only where the provider knows it without a request (a run with
    /// nothing to do asks KMS nothing): a KMS key named by an alias is
    /// compared once a file that needed work has resolved it.
    fn settings(&self) -> Result<Settings> {
        let job = self.job;
        Ok(Settings {
            mode: job.mode,
            target: job.target.to_string(),
            key_bits: job.supplied_key.as_ref().map_or(job.key_bits, |k| k.bits()),
            digest: job.digest,
            key_provider: job.provider.name().to_string(),
            key_id: if job.dry_run { None } else { job.provider.known_key_id() },
        })
    }

    fn keys(&self) -> Result<&Keys<'_>> {
        self.keys.ok_or_else(|| Error::Usage("no keys in a dry run".into()))
    }
}


/// Counts finished files, appends their records and reports failures.
pub(crate) struct Tally<'a> {
    summary: &'a Mutex<Summary>,
    pub(crate) events: &'a dyn Events,
    manifest: &'a ManifestWriter,
    ledger: &'a Ledger,
    destination: &'a dyn Destination,
    max_errors: Option<u64>,
    stop: &'a AtomicBool,
    shard: Option<Shard>,
}

impl Tally<'_> {
    /// Record the outcome of one planned file.
    pub(crate) fn record(&self, f: &Entry, result: Result<Record>) {
        let result = result.and_then(|mut record| {
            record.shard = self.shard.map(|s| s.to_string());
            if !crate::store::Stores::is_url(&record.output) {
                record.output_relative = super::manifest::relative_to_folder(self.manifest.folder(), &record.output);
            }
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
                self.events.emit(Event::Finished { path: &f.source, bytes });
            }
            Err(err) => {
                // Refused because the output existed before: nothing of ours
                // is there. Any other failure keeps the journal's line: the
                // commit may have been applied with its reply lost, and the
                // next run settles the output (replaces it, saying so).
                if matches!(err, Error::Exists { .. }) {
                    self.ledger.dropped(&self.destination.location(&f.relative));
                }
                self.fail(f.source.clone(), err.for_file(&f.source))
            }
        }
    }

    pub(crate) fn fail(&self, path: PathBuf, err: Error) {
        self.events.emit(Event::Failed { path: &path, error: &err });
        let mut s = self.summary.lock().unwrap();
        s.failures.push(Failure::new(&path, &err));
        if self.max_errors.is_some_and(|max| s.failures.len() as u64 >= max) {
            s.stopped = true;
            self.stop.store(true, Ordering::Relaxed);
        }
    }
}
