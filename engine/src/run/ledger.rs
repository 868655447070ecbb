//! What a run has already done, so that re-running it resumes.
//!
//! The ledger is the manifest itself: a record is appended (and fsynced,
//! see [`super::manifest::ManifestWriter`]) only after its output is
//! committed, so a record proves a finished file. No second store to keep
//! in step, and the file users already keep is the one that resumes. On
//! start, the manifest's records are read into a map from (source, output)
//! to sizes: 16-byte hashes, about 60 bytes a file, whatever the paths'
//! lengths.
//!
//! Beside it, the journal (`<manifest>.inflight`) gets one line per file
//! *before* its output is created: the marker by which a later run
//! recognises what an earlier run left behind (and a `done` line once its
//! record is written). The destination writes ahead to it too
//! ([`crate::store::Journal`]): before a `CreateMultipartUpload`, the
//! key's uploads already open (`creating`); right after it, the upload id
//! (`upload`), before any part; then `closed` once completed or aborted,
//! and `settled` once no duplicate upload can be left.
//!
//! The next run aborts every journalled upload not closed, by id, and any
//! upload of a `creating` key that was not open before it (no clock
//! decides what is ours); deletes temporary files; and replaces an output
//! that was written but never recorded (killed between commit and record,
//! or a commit whose reply was lost), saying so, since that file is then
//! encrypted under a new key. A run ends by rewriting the journal with
//! only what is still unsettled (failed files whose commit may have been
//! applied, uploads whose abort failed), or removing it when nothing is.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::digest::DigestAlg;
use crate::format::envelope::record_id;
use crate::format::record::Record;
use crate::format::{KeyBits, Mode};
use crate::store::Destination;

/// A file's identity in the ledger: its source and its output.
pub(crate) type Key = u128;

/// Hash of (source, output): the record's identity ([`record_id`], which envelopes name too).
pub(crate) fn key(source: &str, output: &str) -> Key {
    u128::from_be_bytes(record_id(source, output))
}

/// The settings a record was made with. A re-run asking for other ones
/// has not done that file yet (finding 5): it is refused, or redone with `--force`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) mode: Mode,
    pub(crate) target: String,
    pub(crate) key_bits: KeyBits,
    pub(crate) digest: DigestAlg,
    pub(crate) key_provider: String,
    /// `None`: not compared (a dry run knows no key id).
    pub(crate) key_id: Option<String>,
}

impl Settings {
    fn of(r: &Record) -> Settings {
        Settings {
            mode: r.mode,
            target: r.target.clone(),
            key_bits: r.key_bits,
            digest: r.digest().map_or(DigestAlg::Sha256, |d| d.alg()),
            key_provider: r.key_provider.clone(),
            key_id: Some(r.key_id.clone()),
        }
    }

    /// What differs from `recorded`, one `name old -> new` a setting ("" when nothing).
    fn changed_from(&self, recorded: &Settings) -> String {
        let mut changes = Vec::new();
        let mut differs = |name: &str, old: String, new: String| {
            if old != new {
                changes.push(format!("{name} {old} -> {new}"));
            }
        };
        differs("mode", recorded.mode.to_string(), self.mode.to_string());
        differs("target", recorded.target.clone(), self.target.clone());
        differs("key size", u16::from(recorded.key_bits).to_string(), u16::from(self.key_bits).to_string());
        differs("digest", recorded.digest.to_string(), self.digest.to_string());
        differs("key provider", recorded.key_provider.clone(), self.key_provider.clone());
        if let (Some(old), Some(new)) = (&recorded.key_id, &self.key_id) {
            differs("key id", old.clone(), new.clone());
        }
        changes.join(", ")
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    plain_size: u64,
    cipher_size: u64,
    /// Index of its last record's settings in [`Ledger::settings`].
    settings: u32,
    /// Records of it in the manifest.
    records: u32,
    /// Taken by this run (done, running or failed).
    claimed: bool,
}

/// What to do with a listed file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Encrypt it.
    Fresh,
    /// Encrypt it, replacing what may appear at its output meanwhile: an
    /// earlier run journalled the output and was interrupted before it was
    /// seen stored, so a write of that run may still land there, late.
    Journalled,
    /// Encrypt it again, replacing its output; `reason` tells the user why.
    Redo { reason: String },
    /// Leave it; `reason` says why.
    Skip { reason: &'static str, bytes: u64 },
}

/// One journal line: an output about to be written.
#[derive(Serialize, Deserialize)]
struct Intent {
    /// Output location (path or URL).
    output: String,
    /// Its path below the destination.
    relative: PathBuf,
    /// Unix seconds when it was started (for people reading it; no decision uses it).
    at: u64,
    /// It replaces an output the manifest records (a later record, or none, says which is stored).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    replacing: bool,
}

/// A line of the journal. Each kind has its own key, so lines of any
/// version parse; a torn last line (killed mid-write) parses as none.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum JournalLine {
    Intent(Intent),
    /// The upload `upload` of `output` is open.
    Upload { upload: String, output: String },
    /// A multipart upload of `creating` is about to be created; `existing` were open before.
    Creating { creating: String, existing: Vec<String> },
    /// The output is recorded in the manifest.
    Done { done: String },
    /// The upload is completed or aborted.
    Closed { closed: String },
    /// No upload of the output other than the journalled ones can be open.
    Settled { settled: String },
    /// The output was never ours (refused: it existed before): forget the intent.
    Dropped { dropped: String },
}

/// What the journal says is unsettled.
#[derive(Default, Clone)]
struct Inflight {
    /// Outputs started and not recorded: location → (relative, replacing).
    outputs: HashMap<String, (PathBuf, bool)>,
    /// Open uploads: id → output location.
    uploads: HashMap<String, String>,
    /// Creates whose duplicates are unchecked: location → uploads open before.
    creating: HashMap<String, Vec<String>>,
}

impl Inflight {
    fn apply(&mut self, line: JournalLine) {
        match line {
            JournalLine::Intent(i) => {
                let replacing = i.replacing || self.outputs.get(&i.output).is_some_and(|o| o.1);
                self.outputs.insert(i.output, (i.relative, replacing));
            }
            JournalLine::Upload { upload, output } => {
                self.uploads.insert(upload, output);
            }
            JournalLine::Creating { creating, existing } => {
                // Several creates of one key before it is settled: only the oldest list counts.
                self.creating.entry(creating).or_insert(existing);
            }
            JournalLine::Done { done } | JournalLine::Dropped { dropped: done } => {
                self.outputs.remove(&done);
            }
            JournalLine::Closed { closed } => {
                self.uploads.remove(&closed);
            }
            JournalLine::Settled { settled } => {
                self.creating.remove(&settled);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.outputs.is_empty() && self.uploads.is_empty() && self.creating.is_empty()
    }

    /// The lines that say this state.
    fn lines(&self) -> Vec<JournalLine> {
        let mut lines = Vec::new();
        for (output, (relative, replacing)) in &self.outputs {
            lines.push(JournalLine::Intent(Intent { output: output.clone(), relative: relative.clone(), at: now_unix(), replacing: *replacing }));
        }
        for (creating, existing) in &self.creating {
            lines.push(JournalLine::Creating { creating: creating.clone(), existing: existing.clone() });
        }
        for (upload, output) in &self.uploads {
            lines.push(JournalLine::Upload { upload: upload.clone(), output: output.clone() });
        }
        lines
    }
}

/// The done files of earlier runs and the claims of this one.
pub(crate) struct Ledger {
    entries: Mutex<HashMap<Key, Entry>>,
    /// The distinct settings of the manifest's records (a few per manifest), entries index it.
    settings: Vec<Settings>,
    /// What earlier runs left unsettled, as their journal says.
    interrupted: Inflight,
    /// The same, kept up to date with this run's lines (what the journal will say at the end).
    live: Mutex<Inflight>,
    journal_path: PathBuf,
    journal: Mutex<Option<File>>,
    /// Records in the manifest that a later record of this run replaces.
    superseded: Mutex<u64>,
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Ledger {
    /// Read the manifest at `manifest` (if any) and its journal.
    pub(crate) fn load(manifest: &Path) -> Result<Ledger> {
        let mut entries: HashMap<Key, Entry> = HashMap::new();
        let mut duplicates = 0;
        // The output a torn last record names was committed but is not
        // recorded: like an interrupted run's, it may be replaced (settled).
        let mut torn = None;
        let mut settings: Vec<Settings> = Vec::new();
        for_each_record_or_torn(manifest, &mut torn, &mut |r, _| {
            let made_with = Settings::of(&r);
            let index = match settings.iter().position(|s| *s == made_with) {
                Some(i) => i,
                None => {
                    settings.push(made_with);
                    settings.len() - 1
                }
            } as u32;
            let e = entries.entry(key(&r.source, &r.output)).or_insert(Entry {
                plain_size: r.plaintext_size,
                cipher_size: r.ciphertext_size,
                settings: index,
                records: 0,
                claimed: false,
            });
            e.plain_size = r.plaintext_size;
            e.cipher_size = r.ciphertext_size;
            e.settings = index;
            e.records += 1;
            if e.records > 1 {
                duplicates += 1;
            }
            Ok(())
        })?;
        let journal_path = journal_path(manifest);
        let mut interrupted = Inflight::default();
        // A torn last record names an output that may be stored but is not recorded: settle it as interrupted.
        if let Some(output) = torn {
            interrupted.outputs.insert(output, (PathBuf::new(), false));
        }
        read_journal(&journal_path, &mut interrupted)?;
        Ok(Ledger {
            entries: Mutex::new(entries),
            settings,
            live: Mutex::new(interrupted.clone()),
            interrupted,
            journal_path,
            journal: Mutex::new(None),
            superseded: Mutex::new(duplicates),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Clean up after earlier runs: abort the journalled uploads not closed
    /// (by id), the uploads of keys whose create was never settled that were
    /// not open before it, and delete the temporary files of journalled
    /// outputs that have no record. Returns how many things were cleaned;
    /// what could not be done the destination said (its events) and stays journalled.
    pub(crate) fn clean_interrupted(&self, destination: &dyn Destination) -> Result<usize> {
        let mut cleaned = 0;
        for output in self.interrupted.outputs.keys() {
            if let Some(relative) = destination.relative(output) {
                cleaned += destination.clean_interrupted(&relative)?;
            }
        }
        let mut by_output: HashMap<&str, Vec<String>> = HashMap::new();
        for (id, output) in &self.interrupted.uploads {
            by_output.entry(output.as_str()).or_default().push(id.clone());
        }
        for output in self.interrupted.creating.keys() {
            by_output.entry(output.as_str()).or_default();
        }
        let mut outputs: Vec<_> = by_output.into_iter().collect();
        outputs.sort();
        for (output, mut ids) in outputs {
            ids.sort();
            let Some(relative) = destination.relative(output) else { continue };
            let existing = self.interrupted.creating.get(output).map(Vec::as_slice);
            // A destination without recovery opens nothing that outlives a run: nothing to abort.
            let Some(recovery) = destination.recovery() else { continue };
            let done = recovery.abort_journalled(&relative, &ids, existing);
            cleaned += done.aborted;
            for id in &done.closed {
                crate::store::Journal::closed(self, output, id);
            }
            if done.settled && existing.is_some() {
                crate::store::Journal::settled(self, output);
            }
        }
        Ok(cleaned)
    }

    /// Decide what to do with `source` → `output` (`relative` below
    /// `destination`), `plain_size` bytes long, to be encrypted with
    /// `settings` (asked only when it is recorded), and claim it for this run. A file recorded with other
    /// settings is refused naming what changed, or redone with `overwrite`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn claim(&self, source: &str, output: &str, relative: &Path, plain_size: u64, settings: &dyn Fn() -> Result<Settings>, destination: &dyn Destination, overwrite: bool) -> Result<Claim> {
        let previous = {
            let mut entries = self.lock();
            let e = entries.entry(key(source, output)).or_insert(Entry { plain_size, cipher_size: 0, settings: u32::MAX, records: 0, claimed: false });
            if e.claimed {
                return Ok(Claim::Skip { reason: "listed twice in this run; done once", bytes: plain_size });
            }
            e.claimed = true;
            *e
        };
        let earlier = self.interrupted.outputs.get(output);
        if previous.records == 0 {
            let claim = match earlier {
                Some(_) if destination.stored_len(relative)?.is_some() => Claim::Redo {
                    reason: "an earlier run wrote this output but never recorded it (interrupted, or its upload was not confirmed); encrypting it again under a new key".into(),
                },
                Some(_) => Claim::Journalled,
                None => Claim::Fresh,
            };
            return Ok(claim);
        }
        // Asked only of a recorded file (a KMS key id may cost a DescribeKey).
        let changed = match self.settings.get(previous.settings as usize) {
            Some(recorded) => settings()?.changed_from(recorded),
            None => String::new(),
        };
        if !changed.is_empty() && !overwrite && !earlier.is_some_and(|e| e.1) {
            return Err(Error::invalid(
                Path::new(source),
                format!("recorded as done with other settings ({changed}); not done with these: --force re-encrypts it with them"),
            ));
        }
        let redo = if earlier.is_some_and(|e| e.1) {
            // An earlier run was replacing it and did not record the result: the stored object may be either.
            Some("an earlier run was replacing this output and never recorded the result; encrypting it again under a new key".to_string())
        } else if overwrite && !changed.is_empty() {
            Some(format!("--force: encrypting it again under a new key with other settings ({changed})"))
        } else if overwrite {
            Some("--force: encrypting it again under a new key".to_string())
        } else if previous.plain_size != plain_size {
            Some(format!("the source is {plain_size} bytes, the manifest recorded {}; encrypting it again under a new key", previous.plain_size))
        } else if destination.local_root().is_some() && destination.stored_len(relative)? != Some(previous.cipher_size) {
            // Local outputs are checked (a stat); S3 outputs are trusted to
            // the record, written only after the upload completed.
            Some("recorded as done but its output is missing or has another size; encrypting it again under a new key".to_string())
        } else {
            None
        };
        match redo {
            Some(reason) => {
                *self.superseded.lock().unwrap_or_else(|p| p.into_inner()) += u64::from(previous.records);
                Ok(Claim::Redo { reason })
            }
            None => {
                // Recorded: an intent an earlier run left for it (killed between record and `done`) is settled.
                if earlier.is_some() {
                    self.live.lock().unwrap_or_else(|p| p.into_inner()).outputs.remove(output);
                }
                Ok(Claim::Skip { reason: "already done (recorded in the manifest)", bytes: plain_size })
            }
        }
    }

    /// Journal `output` before it is created (`replacing` an output the manifest records).
    pub(crate) fn intend(&self, output: &str, relative: &Path, replacing: bool) -> Result<()> {
        self.journal(JournalLine::Intent(Intent { output: output.to_string(), relative: relative.to_path_buf(), at: now_unix(), replacing }))
    }

    /// Journal that `output` is recorded in the manifest, so a later run
    /// need not look for leftovers of it (no listing of uploads per finished file).
    pub(crate) fn recorded(&self, output: &str) -> Result<()> {
        self.journal(JournalLine::Done { done: output.to_string() })
    }

    /// Journal that `output` was refused before anything was written (it
    /// existed, and is not ours): a later run must not take it for ours.
    pub(crate) fn dropped(&self, output: &str) {
        let _ = self.journal(JournalLine::Dropped { dropped: output.to_string() });
    }

    fn journal(&self, line: JournalLine) -> Result<()> {
        let bytes = serde_json::to_vec(&line).expect("serializes");
        // In memory even if the write fails: the end-of-run rewrite then says it.
        self.live.lock().unwrap_or_else(|p| p.into_inner()).apply(line);
        self.journal_line(bytes)
    }

    fn journal_line(&self, mut line: Vec<u8>) -> Result<()> {
        line.push(b'\n');
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        if journal.is_none() {
            *journal = Some(
                OpenOptions::new().create(true).append(true).open(&self.journal_path).map_err(|e| Error::io(&self.journal_path, "open journal", e))?,
            );
        }
        journal.as_mut().expect("opened").write_all(&line).map_err(|e| Error::io(&self.journal_path, "append to journal", e))
    }

    /// Records that later records of this run replaced.
    pub(crate) fn superseded(&self) -> u64 {
        *self.superseded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// End of a run: remove the journal if nothing is unsettled, else
    /// rewrite it with only what is (atomically: temporary file, fsync, rename).
    pub(crate) fn finish(&self) -> Result<()> {
        let mut journal = self.journal.lock().unwrap_or_else(|p| p.into_inner());
        journal.take();
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.is_empty() {
            let _ = fs::remove_file(&self.journal_path);
            return Ok(());
        }
        let mut text = Vec::new();
        for line in live.lines() {
            text.extend(serde_json::to_vec(&line).expect("serializes"));
            text.push(b'\n');
        }
        let tmp = self.journal_path.with_file_name(format!(
            ".{}.sealpipe-tmp-{}",
            self.journal_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            std::process::id()
        ));
        let written = File::create(&tmp)
            .and_then(|mut f| f.write_all(&text).and_then(|()| f.sync_all()))
            .and_then(|()| fs::rename(&tmp, &self.journal_path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            // The appended journal is still there and says at least as much.
            return Err(Error::io(&self.journal_path, "rewrite journal", e));
        }
        Ok(())
    }
}

/// The destination writes ahead to the run's journal.
impl crate::store::Journal for Ledger {
    fn creating(&self, location: &str, existing: &[String]) -> Result<()> {
        self.journal(JournalLine::Creating { creating: location.to_string(), existing: existing.to_vec() })
    }

    fn opened(&self, location: &str, upload_id: &str) -> Result<()> {
        self.journal(JournalLine::Upload { upload: upload_id.to_string(), output: location.to_string() })
    }

    fn closed(&self, _location: &str, upload_id: &str) {
        // Best effort: without this line a later run aborts an upload that is gone (NoSuchUpload).
        let _ = self.journal(JournalLine::Closed { closed: upload_id.to_string() });
    }

    fn settled(&self, location: &str) {
        let _ = self.journal(JournalLine::Settled { settled: location.to_string() });
    }
}

/// Apply the lines of the journal at `path` (none if it does not exist) to `state`.
fn read_journal(path: &Path, state: &mut Inflight) -> Result<()> {
    let Ok(file) = File::open(path) else { return Ok(()) };
    crate::format::record::for_each_jsonl_line(file, path, &mut |_, line| {
        // A torn last line (killed mid-write, perhaps inside a character of a key's name) names nothing that was created.
        if let Ok(line) = serde_json::from_slice::<JournalLine>(line) {
            state.apply(line);
        }
        Ok(())
    })
}

/// The outputs the journal at `path` says were started and not recorded
/// (in flight now, or left by a run that was stopped), sorted; and the open
/// uploads it names.
pub fn in_flight(path: &Path) -> Result<(Vec<String>, usize)> {
    let mut state = Inflight::default();
    read_journal(path, &mut state)?;
    let mut outputs: Vec<String> = state.outputs.into_keys().collect();
    outputs.sort();
    Ok((outputs, state.uploads.len()))
}

/// The journal beside a manifest.
pub fn journal_path(manifest: &Path) -> PathBuf {
    let mut name = manifest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".inflight");
    manifest.with_file_name(name)
}

/// [`for_each_record`], and in `torn` the output a torn last line names, if it names one.
fn for_each_record_or_torn(path: &Path, torn: &mut Option<String>, each: &mut dyn FnMut(Record, usize) -> Result<()>) -> Result<()> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, "open manifest", e)),
    };
    *torn = crate::format::record::for_each_record_torn(file, path, each)?.and_then(|bad| bad.output);
    Ok(())
}

/// Call `each` with every record of the manifest at `path` (none if it does not exist) and its line index.
fn for_each_record(path: &Path, each: &mut dyn FnMut(Record, usize) -> Result<()>) -> Result<()> {
    match File::open(path) {
        Ok(file) => crate::format::record::for_each_record(file, path, each),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, "open manifest", e)),
    }
}

/// Rewrite the manifest at `path` keeping only the last record of each
/// (source, output), atomically (temporary file, fsync, rename). Returns the
/// records dropped.
pub(crate) fn compact(path: &Path) -> Result<u64> {
    let mut last: HashMap<Key, usize> = HashMap::new();
    for_each_record(path, &mut |r, n| {
        last.insert(key(&r.source, &r.output), n);
        Ok(())
    })?;
    let tmp = path.with_file_name(format!(".{}.sealpipe-compact-{}", path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(), std::process::id()));
    let mut out = std::io::BufWriter::new(File::create(&tmp).map_err(|e| Error::io(&tmp, "create", e))?);
    let mut dropped = 0;
    let written = for_each_record(path, &mut |r, n| {
        if last.get(&key(&r.source, &r.output)) == Some(&n) {
            let mut line = serde_json::to_vec(&r).expect("records serialize");
            line.push(b'\n');
            out.write_all(&line).map_err(|e| Error::io(&tmp, "write", e))
        } else {
            dropped += 1;
            Ok(())
        }
    })
    .and_then(|()| out.into_inner().map_err(|e| Error::io(&tmp, "write", e.into_error())))
    .and_then(|f| f.sync_all().map_err(|e| Error::io(&tmp, "fsync", e)))
    .and_then(|()| fs::rename(&tmp, path).map_err(|e| Error::io(path, "replace manifest", e)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map(|()| dropped)
}
