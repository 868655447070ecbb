//! A run's manifest kept in a remote store ([`ManifestCopy`]): fetched into
//! a local working copy, stored back as the run goes and at its end, only
//! over the object it was read from (another run's lines are joined in).

use std::path::{Path, PathBuf};

use super::{Condition, Conditional, ServerSide, Store};
use crate::error::{Error, Result};
use crate::format::record::for_each_jsonl_line;

/// A manifest kept in a remote store, worked on as a local copy: read at
/// the start, written back at the end. The copy of an `encrypt` run has a
/// name fixed by the URL and endpoint, so a run killed before writing it
/// back leaves it (and its journal) for the re-run to resume from.
///
/// Writing it back never drops another run's records: the upload is
/// conditional on the object the copy was read from (its ETag, or its
/// absence, kept beside a resumable copy in `<copy>.base`). If another run
/// wrote the manifest meanwhile (one that ran while this copy waited to be
/// resumed, or one that took over a lease this run lost track of), its
/// lines that the copy lacks are appended to the copy, and the upload is
/// made again on the object just read.
pub struct ManifestCopy<'s> {
    store: &'s dyn Store,
    /// The manifest's URL.
    pub url: String,
    /// The local working copy.
    pub local: PathBuf,
    /// The local copy is one an interrupted run left, resumed from.
    pub resumed: bool,
    /// Lines of the manifest as another run wrote it, joined into the copy at upload.
    pub joined: usize,
    /// What the copy was read from or last stored as; `None`: unknown (a
    /// copy left by a version that did not say). Locked: the flusher's
    /// snapshots move it while the run goes.
    base: std::sync::Mutex<Option<Base>>,
    /// A snapshot found the manifest another run's (or the base unknown):
    /// no more snapshots; the end of the run joins the two.
    snapshots_off: std::sync::atomic::AtomicBool,
    keep: bool,
}

/// The remote manifest a copy was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Base {
    /// There was none.
    Absent,
    /// The object with this entity tag.
    Tag(String),
}

/// How often a manifest is joined with a newer remote one and sent again before giving up.
const UPLOAD_TRIES: usize = 5;

impl<'s> ManifestCopy<'s> {
    /// Fetch the manifest at `url` from `store` into the folder `work` (a
    /// state folder that outlives the run: never the temporary folder a
    /// reboot empties). A missing object is an empty manifest when
    /// `appending` (encrypt adds to it), else an error.
    pub fn fetch(store: &'s dyn Store, url: &str, appending: bool, work: &Path) -> Result<Self> {
        let path = Path::new(url);
        Self::check_url(store, url)?;
        let local = if appending {
            Self::working_copy(store, url, work)
        } else {
            let mut nonce = [0u8; 8];
            getrandom::fill(&mut nonce).map_err(|e| Error::random(crate::error::Stage::Plan, e))?;
            work.join(format!("sealpipe-manifest-{}-{}.jsonl", std::process::id(), hex::encode(nonce)))
        };
        std::fs::create_dir_all(work).map_err(|e| Error::io(work, "create the state folder", e))?;
        let resumed = appending && local.exists();
        let mut copy = ManifestCopy { store, url: url.to_string(), local, resumed, joined: 0, base: Default::default(), snapshots_off: Default::default(), keep: false };
        if resumed {
            *copy.base_mut() = std::fs::read_to_string(copy.base_path()).ok().map(|t| if t.is_empty() { Base::Absent } else { Base::Tag(t) });
            return Ok(copy);
        }
        let base = match store.download(url, &copy.local)? {
            Some(etag) => Base::Tag(etag),
            None if appending => Base::Absent, // absent until the run writes a record
            None => return Err(Error::invalid(path, "no such manifest object")),
        };
        if appending {
            copy.save_base(Some(&base))?;
        }
        *copy.base_mut() = Some(base);
        Ok(copy)
    }

    /// Where a run's working copy of the manifest at `url` is kept in the
    /// folder `work`: a name fixed by the URL and endpoint, so a re-run finds it.
    pub fn working_copy(store: &dyn Store, url: &str, work: &Path) -> PathBuf {
        use sha2::Digest as _;
        let tag = hex::encode(&sha2::Sha256::digest(format!("{}\n{url}", store.endpoint()).as_bytes())[..12]);
        work.join(format!("sealpipe-ledger-{tag}.jsonl"))
    }

    fn base_mut(&mut self) -> &mut Option<Base> {
        self.base.get_mut().unwrap_or_else(|p| p.into_inner())
    }

    /// Say beside the copy which manifest it was read from or last stored as, for a run that resumes it.
    fn save_base(&self, base: Option<&Base>) -> Result<()> {
        let text = match base {
            None => return Ok(()),
            Some(Base::Absent) => "",
            Some(Base::Tag(etag)) => etag.as_str(),
        };
        std::fs::write(self.base_path(), text).map_err(|e| Error::io(self.base_path(), "write", e))
    }

    /// Beside a resumable copy: the ETag of the manifest it was read from (empty: there was none).
    fn base_path(&self) -> PathBuf {
        let mut name = self.local.as_os_str().to_owned();
        name.push(".base");
        PathBuf::from(name)
    }

    /// Refuse a manifest URL that names no object (a bucket, or a prefix ending in `/`).
    pub fn check_url(store: &dyn Store, url: &str) -> Result<()> {
        if url.ends_with('/') || url.split_once("://").is_none_or(|(_, rest)| !rest.contains('/')) {
            return Err(Error::Usage(format!("{url}: a manifest URL must name an object ({}://bucket/run.jsonl)", store.scheme())));
        }
        Ok(())
    }

    /// Keep the local copy when this is dropped (its records could not be
    /// written back); returns its path, for the message that says so.
    pub fn keep_local(&mut self) -> &Path {
        self.keep = true;
        &self.local
    }

    /// Store a whole-line snapshot of the local copy as the manifest (a
    /// copy as the run goes, see `run::manifest::Flusher`), over the object
    /// the copy was read from or last stored as only. One that another run
    /// wrote meanwhile is left as it is (an error says so): the end of the
    /// run joins the two ([`ManifestCopy::upload`]), once nothing appends to the copy.
    pub fn upload_snapshot(&self, snapshot: &Path, sse: Option<&ServerSide>) -> Result<()> {
        use std::sync::atomic::Ordering::Relaxed;
        if self.snapshots_off.load(Relaxed) {
            return Ok(()); // said once; the end of the run stores it
        }
        let mut base = self.base.lock().unwrap_or_else(|p| p.into_inner());
        let off = |why: &str| {
            self.snapshots_off.store(true, Relaxed);
            Err(Error::invalid(Path::new(&self.url), format!("{why}; this run's records are stored, joined with what is there, at its end")))
        };
        let condition = match &*base {
            Some(Base::Absent) => Condition::Absent,
            Some(Base::Tag(etag)) => Condition::Matches(etag),
            None => return off("the copy does not say which manifest it was read from"),
        };
        match self.store.upload(snapshot, &self.url, Some(condition), sse)? {
            Conditional::Written(etag) => {
                *base = Some(Base::Tag(etag));
                self.save_base(base.as_ref())
            }
            Conditional::Refused | Conditional::Conflict => off("another run wrote it meanwhile"),
        }
    }

    /// Write the local copy back (if the run wrote one), over the manifest
    /// it was read from only; one written meanwhile is joined in first (see
    /// [`ManifestCopy`]). On failure the copy is kept and named in the error.
    pub fn upload(&mut self, sse: Option<&ServerSide>) -> Result<bool> {
        if !self.local.exists() {
            return Ok(false);
        }
        self.write_back(sse).map_err(|e| {
            self.keep = true;
            Error::invalid(Path::new(&self.url), format!("cannot upload the manifest ({e}); its records are kept in {}", self.local.display()))
        })?;
        Ok(true)
    }

    fn write_back(&mut self, sse: Option<&ServerSide>) -> Result<()> {
        let backoff = crate::retry::Backoff::default();
        for n in 0..UPLOAD_TRIES as u32 {
            let base = self.base_mut().clone();
            let condition = match &base {
                Some(Base::Absent) => Condition::Absent,
                Some(Base::Tag(etag)) => Condition::Matches(etag),
                None => {
                    self.join_remote()?;
                    continue;
                }
            };
            match self.store.upload(&self.local, &self.url, Some(condition), sse)? {
                Conditional::Written(_) => return Ok(()),
                Conditional::Refused => self.join_remote()?,
                // Another write of the key in flight (S3's 409): wait by the one backoff, then join what won.
                Conditional::Conflict => {
                    backoff.wait(n);
                    self.join_remote()?
                }
            }
        }
        Err(Error::invalid(Path::new(&self.url), format!("another run wrote the manifest on each of {UPLOAD_TRIES} tries")))
    }

    /// Read the manifest as it is now and append to the copy each of its
    /// lines the copy lacks; the copy's base is then that object.
    fn join_remote(&mut self) -> Result<()> {
        let mut name = self.local.as_os_str().to_owned();
        name.push(".remote");
        let remote = PathBuf::from(name);
        let _ = std::fs::remove_file(&remote);
        let got = self.store.download(&self.url, &remote);
        let joined = match &got {
            Ok(Some(_)) => join_lines(&self.local, &remote),
            _ => Ok(0),
        };
        let _ = std::fs::remove_file(&remote);
        self.joined += joined?;
        let base = got?.map_or(Base::Absent, Base::Tag);
        self.save_base(Some(&base))?;
        *self.base_mut() = Some(base);
        Ok(())
    }
}

/// Append to `into` every line of `from` that `into` does not have (by a
/// 16-byte hash of each line: memory flat in the lines' length); returns how many.
fn join_lines(into: &Path, from: &Path) -> Result<usize> {
    use sha2::Digest as _;
    use std::io::Write;
    use std::os::unix::fs::FileExt as _;
    let hash = |line: &[u8]| -> [u8; 16] { sha2::Sha256::digest(line)[..16].try_into().expect("16 bytes") };
    let open = |path: &Path| std::fs::File::open(path).map_err(|e| Error::io(path, "open", e));
    let mut have = std::collections::HashSet::new();
    for_each_jsonl_line(open(into)?, into, &mut |_, line| {
        have.insert(hash(line));
        Ok(())
    })?;
    let mut out = std::fs::OpenOptions::new().read(true).append(true).open(into).map_err(|e| Error::io(into, "open", e))?;
    // A copy whose last line has no newline gets one, so the first joined line starts a line of its own.
    let len = out.metadata().map_err(|e| Error::io(into, "stat", e))?.len();
    let mut last = [b'\n'];
    if len > 0 {
        out.read_exact_at(&mut last, len - 1).map_err(|e| Error::io(into, "read", e))?;
    }
    if last[0] != b'\n' {
        out.write_all(b"\n").map_err(|e| Error::io(into, "write", e))?;
    }
    let mut added = 0;
    for_each_jsonl_line(open(from)?, from, &mut |_, line| {
        if have.insert(hash(line)) {
            out.write_all(line).and_then(|()| out.write_all(b"\n")).map_err(|e| Error::io(into, "write", e))?;
            added += 1;
        }
        Ok(())
    })?;
    out.sync_all().map_err(|e| Error::io(into, "sync", e))?;
    Ok(added)
}

impl Drop for ManifestCopy<'_> {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.local);
            let _ = std::fs::remove_file(self.base_path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::join_lines;

    #[test]
    fn join_lines_appends_only_what_the_copy_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let (into, from) = (dir.path().join("copy.jsonl"), dir.path().join("remote.jsonl"));
        // A copy whose last line has no newline yet, and a remote one sharing a line with it.
        std::fs::write(&into, "{\"a\":1}\n{\"b\":2}").unwrap();
        std::fs::write(&from, "{\"b\":2}\n{\"c\":3}\n\n{\"a\":1}\n{\"c\":3}\n").unwrap();
        assert_eq!(join_lines(&into, &from).unwrap(), 1);
        assert_eq!(std::fs::read_to_string(&into).unwrap(), "{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n");
        assert_eq!(join_lines(&into, &from).unwrap(), 0, "joined once");
    }
}
