//! Who may run a job now: one run at a time per manifest.
//!
//! Two runs of one job at once (an overlapping nightly cron, two pods for
//! one index that Kubernetes starts during a node partition) would each take
//! the other's outputs for existing ones, and with an `s3://` manifest the
//! last one to upload its copy would drop the other's records. So a run
//! holds a lease on its manifest from before it reads it until after it
//! wrote it back, and a second run is refused, naming the holder.
//!
//! * A local manifest `M`: the file `M.lock`, locked with `flock`
//!   ([`File::try_lock`]). The kernel drops the lock when its holder dies,
//!   however it dies, so a dead holder never blocks; the file's content
//!   only names the holder for the refusal. The holder removes it while
//!   still holding the lock, and a run that locked a file that was removed
//!   meanwhile opens the path again.
//! * An `s3://` manifest `U`: the object `U.lease`, created with
//!   `If-None-Match: *` and renewed with `If-Match` on its ETag every third
//!   of its time to live. There is no lock a dead process lets go of, so a
//!   lease whose time ran out, or whose holder was a process of this host
//!   that is gone, is taken over, with `If-Match` on the ETag read: of two
//!   runs taking over at once, one wins. A renewal that finds the lease
//!   another's marks it lost, and [`Lease::confirm`] then refuses the upload
//!   of the manifest. Expiry compares the holder's clock with the reader's:
//!   hosts whose clocks differ by more than a small part of the time to live
//!   must not share a job.
//!
//! A host name is taken to name one process table: two containers that
//! share a host name but not their process ids would each think the
//! other's holder dead when its pid is not theirs.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{Condition, Conditional, ServerSide, Store};

/// How long an `s3://` lease lasts without renewal, unless the run says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// How often taking an `s3://` lease is tried before giving up, when it
/// changes hands (or conditional writes collide) between our reads and writes.
const TAKE_TRIES: usize = 5;

/// The lease file beside a local manifest (next to its journal, `M.inflight`).
pub fn lock_path(manifest: &Path) -> PathBuf {
    let mut name = manifest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".lock");
    manifest.with_file_name(name)
}

/// The lease object of an `s3://` manifest.
pub fn lease_url(manifest: &str) -> String {
    format!("{manifest}.lease")
}

/// Who holds a lease, as its file or object says (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    /// The holder's host name.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// When it took the lease (Unix seconds).
    pub since: u64,
    /// When the lease ends unless renewed (Unix seconds); only an `s3://` lease has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

impl Holder {
    /// This process, from now.
    fn me() -> Self {
        Holder { host: host_name(), pid: std::process::id(), since: now(), expires: None }
    }

    /// "host H, pid P, since T": the holder named in a refusal.
    pub fn describe(&self) -> String {
        format!("host {}, pid {}, since {}", self.host, self.pid, rfc3339(self.since))
    }

    /// Whether the holder can no longer be running the job: its lease ran
    /// out, or it was a process of this host that is gone (or is this
    /// process, which has not taken the lease: a restarted container).
    fn is_stale(&self, now: u64) -> bool {
        if self.expires.is_some_and(|at| at <= now) {
            return true;
        }
        self.host == host_name() && (self.pid == std::process::id() || !process_alive(self.pid))
    }

    fn json(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).expect("a holder serialises");
        line.push(b'\n');
        line
    }
}

/// A run's hold on its job, released when dropped (or by [`Lease::release`]).
pub struct Lease {
    held: Held,
    /// The dead or expired holder this run took the lease from, if it did.
    pub took_over: Option<Holder>,
}

enum Held {
    /// `M.lock`, locked; removed on release while still locked. The path is
    /// taken out once removed, so the interrupt hook never removes the file
    /// of a run that took the lease after this one gave it back.
    File {
        path: Arc<Mutex<Option<PathBuf>>>,
        file: File,
        /// Folders made for the lease file, deepest first: removed on release
        /// if still empty, so a run refused later (its `--out` inside the
        /// input tree) leaves no folder behind.
        created: Vec<PathBuf>,
    },
    /// `U.lease`, renewed by a thread of its own.
    Object(ObjectLease),
}

impl Lease {
    /// Take the lease of the local manifest `manifest`, or refuse
    /// ([`Error::Held`]) naming the run that holds it.
    pub fn local(manifest: &Path) -> Result<Lease> {
        let path = lock_path(manifest);
        let mut created = Vec::new();
        // A holder removes the file before it unlocks it: a file locked
        // after that is no longer the one at `path`, so open it again.
        for _ in 0..TAKE_TRIES {
            let mut file = match OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path) {
                Ok(file) => file,
                // The manifest's folder does not exist (yet, or any more: a run that created it removed it, empty).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    created.extend(create_folders(&path)?);
                    continue;
                }
                Err(e) => return Err(Error::io(&path, "open lease file", e)),
            };
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let _ = file.read_to_string(&mut text);
                    let by = match serde_json::from_str::<Holder>(&text) {
                        Ok(holder) => holder.describe(),
                        // Between its lock and its write: it is starting.
                        Err(_) => format!("a run that is starting; {} names no holder yet", path.display()),
                    };
                    return Err(Error::Held { path: manifest.to_path_buf(), by });
                }
                Err(TryLockError::Error(e)) => return Err(Error::io(&path, "lock", e)),
            }
            if !same_file(&file, &path) {
                continue;
            }
            let me = Holder::me();
            file.set_len(0).and_then(|()| file.rewind()).and_then(|()| file.write_all(&me.json())).map_err(|e| Error::io(&path, "write", e))?;
            return Ok(Lease { held: Held::File { path: Arc::new(Mutex::new(Some(path))), file, created }, took_over: None });
        }
        Err(Error::invalid(&path, format!("cannot take the lease: the file was replaced on each of {TAKE_TRIES} tries")))
    }

    /// Take the lease of the manifest at `manifest` (a URL of `store`),
    /// lasting `ttl` unless renewed, or refuse ([`Error::Held`]) naming the
    /// run that holds it. The lease object is written with `sse` (the
    /// manifest's server-side encryption, which a bucket policy may require).
    pub fn remote(store: Arc<dyn Store>, manifest: &str, ttl: Duration, sse: Option<ServerSide>) -> Result<Lease> {
        let url = lease_url(manifest);
        let me = Holder::me();
        let shared = Arc::new(Shared { store, url, manifest: manifest.to_string(), me, ttl, sse, state: Mutex::new(State::default()) });
        let (etag, expires, took_over) = shared.take()?;
        *shared.state.lock().unwrap_or_else(|p| p.into_inner()) = State { etag, expires, lost: None };
        let (stop, stopped) = channel::<()>();
        let renewing = Arc::clone(&shared);
        // A third of the time to live: two renewals may fail before it runs out.
        let every = (ttl / 3).max(Duration::from_millis(100));
        let renewer = std::thread::Builder::new()
            .name("sealpipe-lease".into())
            .spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                    if !renewing.renew() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::io(&shared.url, "start the lease's renewal thread", e))?;
        Ok(Lease { held: Held::Object(ObjectLease { shared, stop: Some(stop), renewer: Some(renewer) }), took_over })
    }

    /// Whether the lease is still this run's, asked just before the run
    /// writes its manifest back: an `s3://` lease is renewed once more now,
    /// and one that was lost (taken over by another run after it could not
    /// be renewed in time) is an error saying so, so the upload is not made.
    pub fn confirm(&self) -> Result<()> {
        match &self.held {
            Held::File { .. } => Ok(()),
            Held::Object(lease) => {
                lease.shared.renew();
                match &lease.shared.state.lock().unwrap_or_else(|p| p.into_inner()).lost {
                    None => Ok(()),
                    Some(why) => Err(Error::invalid(
                        &lease.shared.manifest,
                        format!("this run lost its lease on the job ({why}); another run may be writing the manifest, so this run does not upload it"),
                    )),
                }
            }
        }
    }

    /// What gives the lease back when the process is interrupted and exits
    /// without unwinding (Ctrl-C, SIGTERM): the caller's signal handler runs
    /// it, so the next run on another host need not wait for the lease to run out.
    pub fn on_interrupt(&self) -> Box<dyn FnOnce() + Send + 'static> {
        match &self.held {
            // Removed while still locked; the process's exit unlocks it.
            Held::File { path, .. } => {
                let path = Arc::clone(path);
                Box::new(move || {
                    if let Some(path) = path.lock().unwrap_or_else(|p| p.into_inner()).take() {
                        let _ = std::fs::remove_file(path);
                    }
                })
            }
            Held::Object(lease) => {
                let shared = Arc::clone(&lease.shared);
                Box::new(move || {
                    let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                    if state.lost.is_none() && !state.etag.is_empty() {
                        let _ = shared.store.delete_if(&shared.url, &state.etag);
                    }
                    state.lost = Some("the run was interrupted".to_string());
                })
            }
        }
    }

    /// Give the lease back now; an error says what could not be removed
    /// (an `s3://` lease left behind ends when its time runs out).
    pub fn release(mut self) -> Result<()> {
        self.give_back()
    }

    fn give_back(&mut self) -> Result<()> {
        match &mut self.held {
            Held::File { path, file, created } => {
                // Removed while still locked: a run that opens the path now
                // creates a new file, and one that opened this file before
                // sees it is gone once it locks it.
                let Some(path) = path.lock().unwrap_or_else(|p| p.into_inner()).take() else { return Ok(()) };
                let removed = std::fs::remove_file(&path);
                let _ = file.unlock();
                // Only empty ones go: a folder the run wrote to stays.
                for dir in created.drain(..) {
                    let _ = std::fs::remove_dir(dir);
                }
                match removed {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(&path, "remove", e)),
                    _ => Ok(()),
                }
            }
            Held::Object(lease) => lease.release(),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = self.give_back();
    }
}

struct ObjectLease {
    shared: Arc<Shared>,
    stop: Option<Sender<()>>,
    renewer: Option<std::thread::JoinHandle<()>>,
}

impl ObjectLease {
    fn release(&mut self) -> Result<()> {
        // Dropping the sender wakes the renewer at once.
        drop(self.stop.take());
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        let etag = std::mem::take(&mut state.etag);
        if state.lost.is_some() || etag.is_empty() {
            return Ok(()); // another run's now (or given back already): never deleted
        }
        state.lost = Some("the run gave it back".to_string());
        // Only if it is still the object this run wrote last.
        self.shared.store.delete_if(&self.shared.url, &etag).map(|_| ())
    }
}

/// What the renewal thread and the run share of an `s3://` lease.
struct Shared {
    store: Arc<dyn Store>,
    url: String,
    manifest: String,
    me: Holder,
    ttl: Duration,
    sse: Option<ServerSide>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The ETag of the lease object as this run last wrote it.
    etag: String,
    /// When that write ends (Unix seconds).
    expires: u64,
    /// Why the lease is no longer this run's, once it is not.
    lost: Option<String>,
}

impl Shared {
    /// The body of a write from now: this run, until now + ttl.
    fn body(&self) -> (Vec<u8>, u64) {
        let expires = now() + self.ttl.as_secs().max(1);
        (Holder { expires: Some(expires), ..self.me.clone() }.json(), expires)
    }

    /// Create the lease object, or take over a stale one: its ETag, expiry, and the holder taken over.
    fn take(&self) -> Result<(String, u64, Option<Holder>)> {
        let backoff = crate::retry::Backoff::default();
        for n in 0..TAKE_TRIES as u32 {
            let (body, expires) = self.body();
            match self.store.put_if(&self.url, &body, Condition::Absent, self.sse.as_ref())? {
                Conditional::Written(etag) => return Ok((etag, expires, None)),
                // Another write of the key in flight (S3's 409): ask again after the one backoff.
                Conditional::Conflict => {
                    backoff.wait(n);
                    continue;
                }
                Conditional::Refused => {}
            }
            let Some(found) = self.store.get_tagged(&self.url)? else { continue }; // released meanwhile
            let holder = serde_json::from_slice::<Holder>(&found.body).map_err(|_| {
                Error::invalid(&self.url, "not a lease sealpipe wrote (unreadable JSON); delete it if no run of this job is alive")
            })?;
            if !holder.is_stale(now()) {
                return Err(Error::Held { path: PathBuf::from(&self.manifest), by: holder.describe() });
            }
            let (body, expires) = self.body();
            match self.store.put_if(&self.url, &body, Condition::Matches(&found.etag), self.sse.as_ref())? {
                Conditional::Written(etag) => return Ok((etag, expires, Some(holder))),
                // Another run took it over (or released it) first: look again.
                Conditional::Refused => continue,
                Conditional::Conflict => backoff.wait(n),
            }
        }
        Err(Error::invalid(&self.url, format!("cannot take the lease: it changed hands on each of {TAKE_TRIES} tries")))
    }

    /// Renew the lease; `false` once it is lost (nothing more to renew).
    fn renew(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.lost.is_some() {
            return false;
        }
        let (body, expires) = self.body();
        match self.store.put_if(&self.url, &body, Condition::Matches(&state.etag), self.sse.as_ref()) {
            Ok(Conditional::Written(etag)) => {
                state.etag = etag;
                state.expires = expires;
            }
            Ok(Conditional::Refused) => {
                let now_held = match self.store.get_tagged(&self.url) {
                    Ok(Some(found)) => match serde_json::from_slice::<Holder>(&found.body) {
                        Ok(holder) => format!("it is held by {} now", holder.describe()),
                        Err(_) => "it was replaced by an object that is not a lease".to_string(),
                    },
                    Ok(None) => "it was deleted".to_string(),
                    Err(e) => format!("it was replaced ({e})"),
                };
                state.lost = Some(now_held);
            }
            // Another write in flight, or the store out of reach: try again
            // at the next renewal, unless the lease has run out meanwhile.
            Ok(Conditional::Conflict) | Err(_) if now() < state.expires => {}
            Ok(Conditional::Conflict) => state.lost = Some(format!("it ran out while a renewal collided with another write of {}", self.url)),
            Err(e) => state.lost = Some(format!("it ran out before it could be renewed: {e}")),
        }
        state.lost.is_none()
    }
}

/// Create the missing folders above `path`; returns those it made, deepest first.
fn create_folders(path: &Path) -> Result<Vec<PathBuf>> {
    let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) else { return Ok(Vec::new()) };
    let missing: Vec<PathBuf> = dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && !d.exists()).map(Path::to_path_buf).collect();
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
    Ok(missing)
}

/// Whether `file` (opened from `path`) is still the file at `path`.
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// This host's name (`gethostname`; "unknown" if it fails).
// The standard library has no hostname call: libc's, on a buffer of ours.
#[allow(unsafe_code)]
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`, which outlives the call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let name = String::from_utf8_lossy(&buf[..end]).into_owned();
        if !name.is_empty() {
            return name;
        }
    }
    "unknown".to_string()
}

/// Whether a process `pid` exists on this host (signal 0: a check, nothing sent).
// The standard library cannot ask about a process it did not spawn: libc's kill(pid, 0).
#[allow(unsafe_code)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 delivers nothing; it only checks the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    // EPERM: it exists, as another user's.
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Unix seconds as RFC 3339 in UTC (`2026-12-02T15:34:20Z`).
pub fn rfc3339(unix: u64) -> String {
    let (days, secs) = ((unix / 86_400) as i64, unix % 86_400);
    // Days to a civil date (H. Hinnant's algorithm), from 0000-03-01 eras of 400 years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_225_660), "2026-12-02T15:34:20Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
    }

    #[test]
    fn a_second_local_lease_is_refused_naming_the_holder_and_free_once_released() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("run.jsonl");
        let first = Lease::local(&manifest).unwrap();
        let holder: Holder = serde_json::from_str(&std::fs::read_to_string(lock_path(&manifest)).unwrap()).unwrap();
        assert_eq!(holder.pid, std::process::id());
        let refused = Lease::local(&manifest).err().expect("refused");
        let line = refused.to_string();
        assert!(matches!(refused, Error::Held { .. }), "{line}");
        assert!(line.contains(&format!("pid {}", std::process::id())) && line.contains(&format!("host {}", host_name())), "{line}");
        first.release().unwrap();
        assert!(!lock_path(&manifest).exists(), "released: removed");
        Lease::local(&manifest).unwrap();
        // Folders made for it go with it, if the run left them empty.
        let deep = dir.path().join("new/out/run.jsonl");
        Lease::local(&deep).unwrap().release().unwrap();
        assert!(!dir.path().join("new").exists(), "the folders it made are removed, empty");
    }

    #[test]
    fn stale_holders() {
        let now = now();
        let other_host = Holder { host: format!("{}-elsewhere", host_name()), pid: 1, since: now, expires: Some(now + 60) };
        assert!(!other_host.is_stale(now), "another host's live lease");
        assert!(Holder { expires: Some(now), ..other_host.clone() }.is_stale(now), "expired");
        let me = Holder::me();
        assert!(me.is_stale(now), "this process has not taken it: a restarted holder's pid");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(Holder { pid, expires: Some(now + 60), ..me }.is_stale(now), "a reaped process of this host");
    }
}
