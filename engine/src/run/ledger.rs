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
//! recognises what an interrupted run left behind (and a `done` line once
//! its record is written). For each journalled output not marked done, the
//! next run aborts the multipart uploads
//! started for it and deletes its temporary files, and may replace the
//! output if it was committed but never recorded (killed between the
//! two), saying so, since that file is then encrypted under a new key.
//! A run that ends with nothing in flight removes the journal.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::Destination;
use crate::format::record::Record;

/// A file's identity in the ledger: its source and its output.
pub(crate) type Key = u128;

/// Hash of (source, output).
pub(crate) fn key(source: &str, output: &str) -> Key {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0]);
    h.update(output.as_bytes());
    u128::from_be_bytes(h.finalize()[..16].try_into().expect("16 bytes"))
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    plain_size: u64,
    cipher_size: u64,
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
    /// Unix seconds when it was started.
    at: u64,
}

/// A line of the journal: an output about to be written, or one recorded.
#[derive(Deserialize)]
#[serde(untagged)]
enum JournalLine {
    Intent(Intent),
    Done { done: String },
}

/// The done files of earlier runs and the claims of this one.
pub(crate) struct Ledger {
    entries: Mutex<HashMap<Key, Entry>>,
    /// Outputs an interrupted run had started (location → started at).
    interrupted: HashMap<String, u64>,
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
        for_each_record_or_torn(manifest, &mut torn, &mut |r, _| {
            let e = entries.entry(key(&r.source, &r.output)).or_insert(Entry {
                plain_size: r.plaintext_size,
                cipher_size: r.ciphertext_size,
                records: 0,
                claimed: false,
            });
            e.plain_size = r.plaintext_size;
            e.cipher_size = r.ciphertext_size;
            e.records += 1;
            if e.records > 1 {
                duplicates += 1;
            }
            Ok(())
        })?;
        let journal_path = journal_path(manifest);
        let mut interrupted = HashMap::new();
        if let Some(output) = torn {
            interrupted.insert(output, 0);
        }
        if let Ok(file) = File::open(&journal_path) {
            for line in BufReader::new(file).lines() {
                let line = line.map_err(|e| Error::io(&journal_path, "read", e))?;
                // A torn last line (killed mid-write) names nothing that was created.
                match serde_json::from_str::<JournalLine>(&line) {
                    Ok(JournalLine::Intent(intent)) => {
                        interrupted.insert(intent.output, intent.at);
                    }
                    Ok(JournalLine::Done { done }) => {
                        interrupted.remove(&done);
                    }
                    Err(_) => {}
                }
            }
        }
        Ok(Ledger {
            entries: Mutex::new(entries),
            interrupted,
            journal_path,
            journal: Mutex::new(None),
            superseded: Mutex::new(duplicates),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Clean up after an interrupted run: abort the uploads and delete the
    /// temporary files of journalled outputs that have no record. Returns
    /// how many things were cleaned.
    pub(crate) fn clean_interrupted(&self, destination: &dyn Destination) -> Result<usize> {
        let mut cleaned = 0;
        for (output, &at) in &self.interrupted {
            if let Some(relative) = destination.relative(output) {
                cleaned += destination.clean_interrupted(&relative, at)?;
            }
        }
        Ok(cleaned)
    }

    /// Decide what to do with `source` → `output` (`relative` below
    /// `destination`), `plain_size` bytes long, and claim it for this run.
    pub(crate) fn claim(&self, source: &str, output: &str, relative: &Path, plain_size: u64, destination: &dyn Destination, overwrite: bool) -> Result<Claim> {
        let previous = {
            let mut entries = self.lock();
            let e = entries.entry(key(source, output)).or_insert(Entry { plain_size, cipher_size: 0, records: 0, claimed: false });
            if e.claimed {
                return Ok(Claim::Skip { reason: "listed twice in this run; done once", bytes: plain_size });
            }
            e.claimed = true;
            *e
        };
        if previous.records == 0 {
            let claim = match self.interrupted.get(output) {
                Some(_) if destination.stored_len(relative)?.is_some() => Claim::Redo {
                    reason: "an interrupted run wrote this output but never recorded it; encrypting it again under a new key".into(),
                },
                _ => Claim::Fresh,
            };
            return Ok(claim);
        }
        let redo = if overwrite {
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
            None => Ok(Claim::Skip { reason: "already done (recorded in the manifest)", bytes: plain_size }),
        }
    }

    /// Journal `output` before it is created.
    pub(crate) fn intend(&self, output: &str, relative: &Path) -> Result<()> {
        let line = serde_json::to_vec(&Intent { output: output.to_string(), relative: relative.to_path_buf(), at: now_unix() }).expect("serializes");
        self.journal_line(line)
    }

    /// Journal that `output` is recorded in the manifest, so a later run
    /// need not look for leftovers of it (no listing of uploads per finished file).
    pub(crate) fn recorded(&self, output: &str) -> Result<()> {
        self.journal_line(serde_json::to_vec(&serde_json::json!({ "done": output })).expect("serializes"))
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

    /// End of a run with nothing left in flight: drop the journal.
    pub(crate) fn finish(&self) {
        self.journal.lock().unwrap_or_else(|p| p.into_inner()).take();
        let _ = fs::remove_file(&self.journal_path);
    }
}

/// The journal beside a manifest.
pub fn journal_path(manifest: &Path) -> PathBuf {
    let mut name = manifest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".inflight");
    manifest.with_file_name(name)
}

/// [`for_each_record`], and in `torn` the output a torn last line names, if it names one.
fn for_each_record_or_torn(path: &Path, torn: &mut Option<String>, each: &mut dyn FnMut(Record, usize) -> Result<()>) -> Result<()> {
    use crate::format::record::{for_each_line, Line};
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, "open manifest", e)),
    };
    let mut pending = None;
    for_each_line(file, path, &mut |line, n| {
        if let Some(bad) = pending.take() {
            let bad: crate::format::record::BadLine = bad;
            return Err(Error::invalid(path, format!("line {}: {}", bad.number, bad.reason)));
        }
        match line {
            Line::Record(r) => each(r, n),
            Line::Bad(bad) => {
                pending = Some(bad);
                Ok(())
            }
        }
    })?;
    *torn = pending.and_then(|bad| bad.output);
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
