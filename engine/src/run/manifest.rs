//! Writing the manifest: records appended one whole line at a time as files
//! finish, synced in the background (group commit). The manifest is also the
//! run's ledger (see [`super::ledger`]).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use crate::error::{Error, Result};
use crate::events::{Event, Events};
use crate::format::record::Record;
use crate::store::local::resolve;

/// Appends records to a JSON Lines manifest, one whole line per write.
///
/// Nothing is created on disk until [`ManifestWriter::open`] (or the first
/// write), so a run refused before any work leaves no manifest behind.
///
/// The manifest is the run's ledger (see `ledger`). Each record is one
/// `write(2)` in append mode before [`ManifestWriter::write`] returns, so it
/// survives the process being killed. With `durable`, a background thread
/// also `fdatasync`s the file whenever records were appended since its last
/// sync (group commit: one sync covers every record written meanwhile), and
/// [`ManifestWriter::flush`] waits until all of them are on disk; workers
/// never wait for the disk. A record lost to a power cut between its write
/// and the next sync only costs a redo: its output is in the journal.
pub struct ManifestWriter {
    file: Mutex<Option<Arc<File>>>,
    /// [`ManifestWriter::open`] made the file (it was not there before).
    created: std::sync::atomic::AtomicBool,
    path: PathBuf,
    /// The folder holding it, resolved once (records name outputs below it relative to it).
    folder: std::sync::OnceLock<PathBuf>,
    durable: bool,
    sync: Arc<(Mutex<SyncState>, Condvar)>,
    syncer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct SyncState {
    /// Records appended.
    written: u64,
    /// Records known to be on disk.
    synced: u64,
    /// The writer is being dropped: sync what is left, then stop.
    closing: bool,
    /// The last sync failed with this.
    failed: Option<String>,
}

impl ManifestWriter {
    /// Prepare to append to `path` (created, with its folder, on [`ManifestWriter::open`]).
    pub fn append(path: &Path) -> Result<Self> {
        Ok(Self::new(path, false))
    }

    /// [`ManifestWriter::append`], with records synced to disk in the background.
    pub fn durable(path: &Path) -> Result<Self> {
        Ok(Self::new(path, true))
    }

    fn new(path: &Path, durable: bool) -> Self {
        ManifestWriter { file: Mutex::new(None), created: Default::default(), path: path.to_path_buf(), folder: Default::default(), durable, sync: Arc::default(), syncer: Mutex::new(None) }
    }

    /// Create or open the manifest for appending, if not done yet. Call it
    /// before starting work, so an unwritable manifest stops the run early.
    pub fn open(&self) -> Result<()> {
        self.handle().map(|_| ())
    }

    fn handle(&self) -> Result<Arc<File>> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
            }
            let (opened, created) = match OpenOptions::new().create_new(true).append(true).open(&self.path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => (OpenOptions::new().append(true).open(&self.path), false),
                other => (other, true),
            };
            let opened = opened.map_err(|e| Error::io(&self.path, "open manifest", e))?;
            self.created.store(created, std::sync::atomic::Ordering::Relaxed);
            drop_torn_tail(&opened, &self.path)?;
            let opened = Arc::new(opened);
            if self.durable {
                let (file, sync) = (opened.clone(), self.sync.clone());
                *self.syncer.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::thread::spawn(move || sync_loop(&file, &sync)));
            }
            *file = Some(opened);
        }
        Ok(file.as_ref().expect("opened above").clone())
    }

    /// Remove the manifest if this writer created it and wrote no record:
    /// a run stopped before any file finished leaves no manifest behind.
    pub fn discard_if_unused(&self) {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let written = self.sync.0.lock().unwrap_or_else(|p| p.into_inner()).written;
        if file.is_some() && written == 0 && self.created.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = fs::remove_file(&self.path);
        }
    }

    /// The manifest path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The folder holding the manifest, resolved (`..`, symlinks) the first time it is asked.
    pub fn folder(&self) -> &Path {
        self.folder.get_or_init(|| resolve(&self.path).parent().map(Path::to_path_buf).unwrap_or_default())
    }

    /// Append one record as one line.
    pub fn write(&self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_vec(record).expect("records serialize");
        line.push(b'\n');
        let file = self.handle()?;
        let (state, wake) = &*self.sync;
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        // One write(2) of the whole line, in append mode, under the lock.
        (&*file).write_all(&line).map_err(|e| Error::io(&self.path, "append to manifest", e))?;
        state.written += 1;
        wake.notify_all();
        Ok(())
    }

    /// Records appended so far, and the manifest's length once they all are:
    /// a prefix of whole lines (each record is one write under the same lock).
    pub fn whole_lines(&self) -> Result<(u64, u64)> {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let state = self.sync.0.lock().unwrap_or_else(|p| p.into_inner());
        let len = match file {
            Some(f) => f.metadata().map_err(|e| Error::io(&self.path, "stat manifest", e))?.len(),
            None => fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0),
        };
        Ok((state.written, len))
    }

    /// Wait until every record written is on disk (durable writers; a no-op otherwise).
    pub fn flush(&self) -> Result<()> {
        if !self.durable {
            return Ok(());
        }
        let (state, wake) = &*self.sync;
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        while state.synced < state.written && state.failed.is_none() && self.syncer.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            state = wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        match &state.failed {
            Some(cause) => Err(Error::io(&self.path, "fsync manifest", std::io::Error::other(cause.clone()))),
            None => Ok(()),
        }
    }
}

/// The background syncer: sync whenever records are waiting, until closed.
fn sync_loop(file: &File, sync: &(Mutex<SyncState>, Condvar)) {
    let (state, wake) = sync;
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        while s.synced == s.written && !s.closing {
            s = wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if s.synced == s.written && s.closing {
            return;
        }
        let target = s.written;
        drop(s);
        let result = file.sync_data();
        s = state.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => s.synced = s.synced.max(target),
            Err(e) => {
                s.failed = Some(e.to_string());
                s.synced = s.written; // nothing more to wait for; flush reports the failure
            }
        }
        wake.notify_all();
    }
}

impl Drop for ManifestWriter {
    fn drop(&mut self) {
        let (state, wake) = &*self.sync;
        state.lock().unwrap_or_else(|p| p.into_inner()).closing = true;
        wake.notify_all();
        if let Some(t) = self.syncer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// Cut a last line that a killed process left half-written, so the records
/// appended next start on a line of their own.
fn drop_torn_tail(file: &File, path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata().map_err(|e| Error::io(path, "stat manifest", e))?.len();
    if len == 0 {
        return Ok(());
    }
    let mut reader = File::open(path).map_err(|e| Error::io(path, "open manifest", e))?;
    let mut last = [0u8; 1];
    reader.seek(SeekFrom::Start(len - 1)).and_then(|_| reader.read_exact(&mut last)).map_err(|e| Error::io(path, "read manifest", e))?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Find the end of the last whole line.
    let mut end = len;
    let mut buf = vec![0u8; 64 << 10];
    let keep = loop {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        reader.seek(SeekFrom::Start(start)).and_then(|_| reader.read_exact(&mut buf[..n])).map_err(|e| Error::io(path, "read manifest", e))?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            break start + i as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    file.set_len(keep).map_err(|e| Error::io(path, "repair manifest", e))
}


/// `output` relative to `folder` (a manifest's, resolved: `..` and
/// symlinks), `/`-separated, when it lies below it: what
/// [`Record::output_relative`] holds.
pub fn relative_to_folder(folder: &Path, output: &str) -> Option<String> {
    let below = Path::new(output).strip_prefix(folder).ok()?;
    let parts: Vec<&str> = below.components().map(|c| c.as_os_str().to_str()).collect::<Option<_>>()?;
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Copies a local manifest's records to its remote copy as the run goes,
/// so a machine lost at any moment loses at most `every` (or `records`
/// records) of them: the durable `s3://` manifest of issue 24. Each copy is
/// of whole lines only, stored as one object (the whole manifest each time;
/// a later copy replaces an earlier one, never with less).
pub struct Flusher {
    /// Upload when this long has passed since the last copy, with records waiting.
    pub every: std::time::Duration,
    /// Upload when this many records are waiting.
    pub records: u64,
    stop: (Mutex<bool>, Condvar),
}

impl Flusher {
    /// A flusher on that schedule (not running until [`Flusher::run`]).
    pub fn new(every: std::time::Duration, records: u64) -> Self {
        Flusher { every, records: records.max(1), stop: (Mutex::new(false), Condvar::new()) }
    }

    /// Copy `writer`'s records with `upload(snapshot)` on the schedule until
    /// [`Flusher::stop`]. `snapshot` is a file holding a whole-line prefix of
    /// the manifest. A failed copy is said to `events`
    /// ([`Event::ManifestNotStored`]) and tried again at the
    /// next turn; the end of the run copies what is left.
    pub fn run(&self, writer: &ManifestWriter, snapshot: &Path, upload: &dyn Fn(&Path) -> Result<()>, events: &dyn Events) {
        let tick = self.every.min(std::time::Duration::from_secs(1));
        let mut copied = 0u64;
        let mut last = std::time::Instant::now();
        let mut stopped = self.stop.0.lock().unwrap_or_else(|p| p.into_inner());
        while !*stopped {
            stopped = self.stop.1.wait_timeout(stopped, tick).unwrap_or_else(|p| p.into_inner()).0;
            if *stopped {
                break;
            }
            let Ok((written, len)) = writer.whole_lines() else { continue };
            let due = written >= copied + self.records || (written > copied && last.elapsed() >= self.every);
            if !due {
                continue;
            }
            drop(stopped);
            let result = copy_prefix(writer.path(), snapshot, len).and_then(|()| upload(snapshot));
            let _ = fs::remove_file(snapshot);
            match result {
                Ok(()) => {
                    copied = written;
                    last = std::time::Instant::now();
                }
                Err(error) => events.emit(Event::ManifestNotStored { error: &error }),
            }
            stopped = self.stop.0.lock().unwrap_or_else(|p| p.into_inner());
        }
    }

    /// End [`Flusher::run`] (after its copy in progress, if any).
    pub fn stop(&self) {
        *self.stop.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.stop.1.notify_all();
    }
}

/// The first `len` bytes of `from` into a new file `to`, synced.
fn copy_prefix(from: &Path, to: &Path, len: u64) -> Result<()> {
    use std::io::Read;
    let source = File::open(from).map_err(|e| Error::io(from, "open manifest", e))?;
    let mut out = File::create(to).map_err(|e| Error::io(to, "create", e))?;
    std::io::copy(&mut source.take(len), &mut out).map_err(|e| Error::io(to, "copy manifest", e))?;
    out.sync_all().map_err(|e| Error::io(to, "fsync", e))
}
