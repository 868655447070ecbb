//! How far a job is (`sealpipe status`), from what its runs leave: the
//! manifest (every file done, per shard in a merged one), the journal beside
//! it (files started and not recorded: in flight now, or left by a run that
//! was stopped) and the last run's outcome ([`LastRun`]: failures with their
//! causes, archived and skipped objects), which a run stores in the state
//! folder when it ends. For an `s3://` manifest, the local working copy of a
//! run not yet finished on this host is read when there is one (it holds
//! that run's records before they are stored back).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ledger::{in_flight, journal_path};
use super::location::{self, named_after, Folders};
use crate::error::{Error, Result};
use crate::format::record;
use crate::run::report::Summary;
use crate::store::{ManifestCopy, Stores};

/// One file a run could not finish, and why.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailedFile {
    /// The source.
    pub path: String,
    /// The one-line cause.
    pub error: String,
    /// What the run was doing (plan, key, read, write, verify).
    pub stage: String,
    /// Whether a re-run may succeed without any change (yes, no).
    pub retry: String,
}

/// What the last run of a job ended with, beside what its manifest records.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct LastRun {
    /// When it ended (Unix seconds).
    pub finished_unix: u64,
    /// Files it encrypted.
    pub files: u64,
    /// Files it found done already.
    pub skipped: u64,
    /// Files the filters left out.
    pub filtered: u64,
    /// Archived objects it could not read (waiting for a restore).
    pub archived: u64,
    /// Their bytes.
    pub archived_bytes: u64,
    /// Files not attempted (stopped at --max-errors).
    pub not_attempted: u64,
    /// The files that failed, with their causes.
    pub failures: Vec<FailedFile>,
}

impl LastRun {
    /// The outcome of a run that ended with `summary` (`filtered`: files the filters left out).
    pub fn of(summary: &Summary, filtered: u64) -> Self {
        let word = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
        LastRun {
            finished_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            files: summary.files,
            skipped: summary.skipped,
            filtered,
            archived: summary.archived,
            archived_bytes: summary.archived_bytes,
            not_attempted: summary.not_attempted,
            failures: summary
                .failures
                .iter()
                .map(|f| FailedFile {
                    path: f.path.to_string_lossy().into_owned(),
                    error: f.message.clone(),
                    stage: word(serde_json::to_value(f.stage).unwrap_or_default()),
                    retry: word(serde_json::to_value(f.retry).unwrap_or_default()),
                })
                .collect(),
        }
    }
}

/// Where the last run of the job whose manifest is `manifest` (a path or
/// URL) keeps its [`LastRun`]: in the state folder, named after the manifest.
pub fn last_run_path(manifest: &Path, folders: &Folders) -> PathBuf {
    let id = match location::is_url(manifest) {
        true => manifest.to_string_lossy().into_owned(),
        false => crate::store::local::resolve(manifest).to_string_lossy().into_owned(),
    };
    named_after(&folders.state.join("last-run"), &id)
}

/// Store `run` as the last run of the job of `manifest` (written whole: a temporary file, renamed).
pub fn save_last_run(manifest: &Path, folders: &Folders, run: &LastRun) -> Result<()> {
    let path = last_run_path(manifest, folders);
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec(run).map_err(|e| Error::invalid(&path, e.to_string()))?;
    std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path)).map_err(|e| Error::io(&path, "write", e))
}

/// The files done under one shard of the job (`None`: records of an unsharded run).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ShardDone {
    /// The shard, as records name it (`2/16`).
    pub shard: Option<String>,
    /// Files done.
    pub files: u64,
    /// Their plaintext bytes.
    pub bytes: u64,
}

/// How far a job is.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// The manifest (a path or URL).
    pub manifest: String,
    /// The local copy of an unfinished run that was read instead of the stored manifest.
    pub unfinished_copy: Option<PathBuf>,
    /// Files done (one per source and output, however often redone).
    pub files: u64,
    /// Their plaintext bytes.
    pub bytes: u64,
    /// Per shard, when the records name shards (a merged manifest).
    pub shards: Vec<ShardDone>,
    /// Outputs started and not recorded.
    pub in_flight: Vec<String>,
    /// Multipart uploads the journal says are open.
    pub open_uploads: usize,
    /// The last run's outcome, when one was stored.
    pub last_run: Option<LastRun>,
}

/// The status of the job whose manifest is `manifest` (a path or a store URL).
pub fn status(stores: &Stores, manifest: &Path, folders: &Folders) -> Result<Status> {
    let name = manifest.to_string_lossy().into_owned();
    let (records, journal, unfinished_copy) = if location::is_url(manifest) {
        let store = stores.remote(&name)?.ok_or_else(|| Error::Usage(format!("{name}: not a URL")))?;
        let copy = ManifestCopy::working_copy(store, &name, &folders.state);
        if copy.exists() {
            (record::read(&copy)?, journal_path(&copy), Some(copy))
        } else {
            (location::read(stores, manifest, folders)?, journal_path(&copy), None)
        }
    } else {
        let journal = journal_path(manifest);
        // A first run that has recorded nothing yet: its journal says what it started.
        let records = if !manifest.exists() && journal.exists() { Vec::new() } else { record::read(manifest)? };
        (records, journal, None)
    };
    // The newest record of each (source, output): a file redone counts once.
    let mut latest: HashMap<(String, String), (Option<String>, u64)> = HashMap::new();
    for r in records {
        latest.insert((r.source, r.output), (r.shard, r.plaintext_size));
    }
    let mut shards: BTreeMap<Option<String>, (u64, u64)> = BTreeMap::new();
    for (shard, size) in latest.into_values() {
        let s = shards.entry(shard).or_default();
        s.0 += 1;
        s.1 += size;
    }
    let (files, bytes) = shards.values().fold((0, 0), |(f, b), (sf, sb)| (f + sf, b + sb));
    let shards = match shards.keys().any(Option::is_some) {
        true => shards.into_iter().map(|(shard, (files, bytes))| ShardDone { shard, files, bytes }).collect(),
        false => Vec::new(),
    };
    let (in_flight, open_uploads) = in_flight(&journal)?;
    let last = last_run_path(manifest, folders);
    let last_run = match std::fs::read(&last) {
        Ok(text) => Some(serde_json::from_slice(&text).map_err(|e| Error::invalid(&last, format!("not a last-run record: {e}")))?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(&last, "read", e)),
    };
    Ok(Status { manifest: name, unfinished_copy, files, bytes, shards, in_flight, open_uploads, last_run })
}
