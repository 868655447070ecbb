//! Where bytes come from and go to. The pipeline reads a [`Source`] by
//! windows and writes a [`Sink`]; a run puts its outputs in a
//! [`Destination`], whose [`PendingOutput`]s become visible only when
//! committed; inputs named by URL are listed and opened through a [`Store`].
//!
//! * [`local`]: files and folders;
//! * [`s3`] (feature `aws`): Amazon S3 and S3-compatible stores.
//!
//! [`Stores`] chooses the store of a URL by its scheme, from the list the
//! caller assembles it from ([`Stores::from_list`]; the CLI's is in
//! `cli/src/aws.rs`): a new kind of store (GCS, Azure Blob, …) is one module
//! implementing [`Store`] and [`Destination`], plus one line in that list.
//! `engine/tests/mem_store.rs` is such a module, `mem://`, and runs a whole
//! job through it.

pub mod local;
#[cfg(feature = "aws")]
pub mod s3;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::envelope::Envelope;
pub use crate::format::record::ServerSide;

/// A window of a source: bytes borrowed from it, or read into the caller's
/// buffer. (Sources are never memory-mapped: a mapped page past the end of
/// a file truncated meanwhile kills the process with SIGBUS; see `local`.)
pub enum Window<'a> {
    /// Read into a caller's buffer.
    Read(&'a [u8]),
}

impl std::ops::Deref for Window<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Window::Read(b) => b,
        }
    }
}

/// Bytes to encrypt or decrypt, read a window at a time.
pub trait Source: Sync {
    /// The file or object, for messages and manifests.
    fn path(&self) -> &Path;
    /// Size in bytes.
    fn len(&self) -> u64;
    /// Bytes `[offset, offset + len)`; `scratch` may be used as the buffer.
    fn window<'a>(&'a self, offset: u64, len: usize, scratch: &'a mut Vec<u8>) -> Result<Window<'a>>;
    /// Bytes `[offset, offset + len)` into `buf` (resized to `len`), for a
    /// caller that hands them to another thread. Sources whose windows are
    /// `scratch[..len]` read straight into `buf`; others copy a window.
    fn read_into(&self, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        let mut scratch = Vec::new();
        let window = self.window(offset, len, &mut scratch)?;
        buf.clear();
        buf.extend_from_slice(&window);
        Ok(())
    }
    /// Confirm the source did not change while it was read.
    fn finish(&self) -> Result<()>;
    /// The version read, in a versioned store (S3's `VersionId`); `None` elsewhere.
    fn version(&self) -> Option<String> {
        None
    }
}

/// An object of a remote store (an S3 object), as its listing showed it.
#[derive(Clone, Debug)]
pub struct Listed {
    /// Its URL (`s3://bucket/key`).
    pub url: String,
    /// Its path below the listed prefix (the output keeps it).
    pub relative: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Entity tag at listing: the bytes read must be these.
    pub etag: String,
    /// Set when the object is archived and cannot be read now (GLACIER,
    /// DEEP_ARCHIVE, Intelligent-Tiering's archive tiers, not restored).
    pub archived: Option<Archived>,
    /// The version to read, when an entry names one (`?versionId=`, an
    /// inventory's `VersionId`): exactly that version is read.
    pub version_id: Option<String>,
}

/// An archived object that cannot be read until a restore completes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archived {
    /// Its storage class (or Intelligent-Tiering's tier: `ARCHIVE_ACCESS`, `DEEP_ARCHIVE_ACCESS`).
    pub class: String,
    /// A restore is in progress.
    pub restoring: bool,
}

/// How to restore archived objects (`RestoreObject`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreRequest {
    /// Days the restored copy stays readable.
    pub days: u32,
    /// `Bulk` (the default: cheapest, hours), `Standard` or `Expedited`.
    pub tier: String,
}

/// A remote object store whose objects are named by URLs of one scheme.
pub trait Store: Send + Sync {
    /// The URL scheme it serves (`"s3"` for `s3://bucket/key`).
    fn scheme(&self) -> &'static str;
    /// Where requests go (an endpoint URL, or empty for the provider's
    /// default); with the URL it names an object unambiguously.
    fn endpoint(&self) -> String;
    /// List the objects under `url`, page by page, handing each to `each`.
    fn list(&self, url: &str, each: &mut dyn FnMut(Listed)) -> Result<()>;
    /// Look up one object: its size and entity tag (of the version a
    /// `?versionId=ID` suffix names, if any: see `S3Url::split_version`).
    fn stat(&self, url: &str) -> Result<Listed>;
    /// Open a listed object for reading, pinned to the listed entity tag.
    fn open(&self, item: &Listed) -> Result<Box<dyn Source>>;
    /// Open the object `url`, refusing it if its entity tag is not `etag` (when given).
    fn open_url(&self, url: &str, etag: Option<&str>) -> Result<Box<dyn Source>>;
    /// Read a whole object (an inventory report) as a stream.
    fn fetch(&self, url: &str) -> Result<Box<dyn std::io::Read + Send>>;
    /// Outputs under the prefix `url`.
    fn destination(&self, url: &str, settings: UploadSettings) -> Result<Box<dyn Destination>>;
    /// Copy the object `url` into the new local file `local`: its entity
    /// tag, or `Ok(None)` if there is no such object.
    fn download(&self, url: &str, local: &Path) -> Result<Option<String>>;
    /// Store the local file `local` as the object `url`, only if `condition`
    /// holds when given (a manifest written back over the one it read).
    fn upload(&self, local: &Path, url: &str, condition: Option<Condition<'_>>, sse: Option<&ServerSide>) -> Result<Conditional>;
    /// The properties of the object `url` its output gets under `copy`
    /// (`HeadObject`, and `GetObjectTagging` for tags).
    fn properties(&self, url: &str, copy: CopyProps) -> Result<Properties>;
    /// Ask for the archived object `url` to be restored: `Ok(true)` if a
    /// restore was started, `Ok(false)` if one is in progress already.
    fn restore(&self, url: &str, request: &RestoreRequest) -> Result<bool>;
    /// The envelope the object `url` carries (one metadata request, no
    /// body); `Ok(None)` if it carries none. An error if there is no such object.
    fn envelope(&self, url: &str) -> Result<Option<Stamped>>;
    /// Write the small object `url` (a run's lease) only if `condition`
    /// holds. A condition that does not hold is an answer, not an error.
    fn put_if(&self, url: &str, body: &[u8], condition: Condition<'_>, sse: Option<&ServerSide>) -> Result<Conditional>;
    /// A small object's bytes and entity tag; `None` if there is no such object.
    fn get_tagged(&self, url: &str) -> Result<Option<Tagged>>;
    /// Delete the object `url` only if its entity tag is still `etag`;
    /// `Ok(false)` if it is not (another writer's now) or it is gone.
    fn delete_if(&self, url: &str, etag: &str) -> Result<bool>;
}

/// An object's envelope, as its store keeps it ([`Store::envelope`]).
#[derive(Clone, Debug)]
pub struct Stamped {
    /// The envelope.
    pub envelope: Envelope,
    /// The source's name, where it fitted beside the envelope.
    pub source: Option<String>,
    /// The object's size.
    pub size: u64,
    /// Its entity tag.
    pub etag: String,
}

/// When a [`Store::put_if`] may write.
#[derive(Clone, Copy, Debug)]
pub enum Condition<'a> {
    /// Only if there is no object (`If-None-Match: *`).
    Absent,
    /// Only if the object is still the one with this entity tag (`If-Match`).
    Matches(&'a str),
}

/// How a [`Store::put_if`] ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Conditional {
    /// Written; the new object's entity tag.
    Written(String),
    /// The condition did not hold (S3's 412, or 404 for `If-Match` on a missing object).
    Refused,
    /// Another conditional write of the same key was in flight (S3's 409
    /// `ConditionalRequestConflict`): neither won yet, ask again.
    Conflict,
}

/// A small object as read: its bytes and entity tag.
#[derive(Clone, Debug)]
pub struct Tagged {
    /// The whole object.
    pub body: Vec<u8>,
    /// Its entity tag.
    pub etag: String,
}

/// Every store a run can reach, chosen by URL scheme; plain paths are local.
#[derive(Default)]
pub struct Stores {
    /// Shared, so a thread that outlives a borrow (a lease's renewal) can hold one.
    remote: Vec<std::sync::Arc<dyn Store>>,
}

/// Local files only.
pub static LOCAL_ONLY: Stores = Stores { remote: Vec::new() };

impl Stores {
    /// Local files and the stores of `remote`, each serving its scheme
    /// ([`Store::scheme`]; the first of a scheme wins).
    pub fn from_list(remote: Vec<std::sync::Arc<dyn Store>>) -> Self {
        Stores { remote }
    }

    /// Whether `name` is a URL (`scheme://…`) rather than a local path.
    pub fn is_url(name: &str) -> bool {
        name.split_once("://").is_some_and(|(scheme, _)| !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric()))
    }

    /// The store of the URL `name`; `Ok(None)` for a local path, an error for a URL no store serves.
    pub fn remote(&self, name: &str) -> Result<Option<&dyn Store>> {
        Ok(self.remote_shared(name)?.map(|store| store.as_ref()))
    }

    /// [`Stores::remote`] as a shared handle, for a thread of its own.
    pub fn remote_shared(&self, name: &str) -> Result<Option<&std::sync::Arc<dyn Store>>> {
        if !Self::is_url(name) {
            return Ok(None);
        }
        let scheme = name.split_once("://").map(|(s, _)| s).unwrap_or_default();
        match self.remote.iter().find(|s| s.scheme() == scheme) {
            Some(store) => Ok(Some(store)),
            None => Err(Error::invalid(Path::new(name), format!("{scheme}:// is not a store this build can reach"))),
        }
    }

    /// [`Stores::remote`] for a path argument.
    pub fn remote_path(&self, path: &Path) -> Result<Option<&dyn Store>> {
        self.remote(&path.to_string_lossy())
    }

    /// Open a stored output (a record's `output`: a URL or a local path), pinned to `etag` when known.
    pub fn open(&self, location: &str, etag: Option<&str>) -> Result<Box<dyn Source>> {
        match self.remote(location)? {
            Some(store) => store.open_url(location, etag),
            None => Ok(Box::new(local::Input::open(Path::new(location))?)),
        }
    }

    /// The destination `target`: a URL's store, or a local folder.
    pub fn destination(&self, target: &str, settings: UploadSettings) -> Result<Box<dyn Destination>> {
        match self.remote(target)? {
            Some(store) => store.destination(target, settings),
            None => Ok(Box::new(local::LocalDir::new(Path::new(target), settings.overwrite))),
        }
    }
}

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
            getrandom::fill(&mut nonce).map_err(|e| Error::Key(format!("cannot read the OS random generator: {e}")))?;
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
        for _ in 0..UPLOAD_TRIES {
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
                Conditional::Refused | Conditional::Conflict => self.join_remote()?,
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
    use std::io::{BufRead, Write};
    use std::os::unix::fs::FileExt as _;
    let hash = |line: &[u8]| -> [u8; 16] { sha2::Sha256::digest(line)[..16].try_into().expect("16 bytes") };
    let lines = |path: &Path| -> Result<std::io::Split<std::io::BufReader<std::fs::File>>> {
        Ok(std::io::BufReader::new(std::fs::File::open(path).map_err(|e| Error::io(path, "open", e))?).split(b'\n'))
    };
    let mut have = std::collections::HashSet::new();
    for line in lines(into)? {
        have.insert(hash(&line.map_err(|e| Error::io(into, "read", e))?));
    }
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
    for line in lines(from)? {
        let line = line.map_err(|e| Error::io(from, "read", e))?;
        if line.is_empty() || !have.insert(hash(&line)) {
            continue;
        }
        out.write_all(&line).and_then(|()| out.write_all(b"\n")).map_err(|e| Error::io(into, "write", e))?;
        added += 1;
    }
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

/// Where a pipeline writes its output, in order.
pub trait Sink: Send {
    /// Append `data`.
    fn write(&mut self, data: &[u8]) -> Result<()>;
}

/// A sink that keeps nothing (verification only needs the digest).
pub struct Discard;

impl Sink for Discard {
    fn write(&mut self, _: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// What a committed output became.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    /// Final path or URL.
    pub location: String,
    /// The store's entity tag, where it has one (S3).
    pub etag: Option<String>,
    /// The whole-object checksum the store reported, where it does.
    pub checksum: Option<String>,
    /// The server-side encryption the store reported applying, where it does (S3).
    pub server_side_encryption: Option<ServerSide>,
    /// The version the store gave it, in a versioned bucket (S3's `VersionId`).
    pub version_id: Option<String>,
}

/// An output being written; invisible under its final name until committed,
/// and discarded if dropped uncommitted.
pub trait PendingOutput: Sink {
    /// Make the output visible under its final name.
    fn commit(self: Box<Self>) -> Result<Committed>;
}

/// S3's limit on the length of an object key, in bytes (UTF-8).
pub const MAX_KEY_BYTES: usize = 1024;

/// Why `key` cannot be an S3 object key, if it is too long: refused before
/// any request (the SDK cannot even build the URI of a 64 KiB key).
pub fn key_too_long(key: &str) -> Option<String> {
    (key.len() > MAX_KEY_BYTES).then(|| format!("key longer than S3's {MAX_KEY_BYTES}-byte limit ({} bytes); refused", key.len()))
}

/// The properties an object carries besides its bytes, as `aws s3 cp`
/// copies them from an S3 source (a local source has its Content-Type
/// guessed from its extension).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Properties {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Expires`, as an HTTP date.
    pub expires: Option<String>,
    /// User metadata (`x-amz-meta-*`), sealpipe's own keys (an earlier envelope) left out.
    pub metadata: Vec<(String, String)>,
    /// Object tags.
    pub tags: Vec<(String, String)>,
}

/// Which properties of an S3 source its output gets (`--copy-props`, the AWS CLI's values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CopyProps {
    /// None: the output has only what the flags say.
    None,
    /// Content headers and user metadata, not tags.
    MetadataDirective,
    /// Content headers, user metadata and tags (the AWS CLI's default).
    #[default]
    Default,
}

/// What a new output carries besides its bytes: its envelope (made from
/// `source`) and the source's properties. Explicit flags win over the
/// properties; the envelope wins over copied user metadata (2 KB together).
pub struct About<'a> {
    /// The source, as records name it.
    pub source: &'a str,
    /// The envelope.
    pub envelope: &'a Envelope,
    /// The source's properties.
    pub properties: &'a Properties,
}

/// What [`Destination::vacant`] found where an output goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Vacancy {
    /// Nothing is there, or the destination overwrites, or the run replaces it.
    Free,
    /// An output whose envelope names this very record (same source, same
    /// output, same job), though the job's manifest does not record it: an
    /// earlier run of the job committed it and lost its record with its machine. It is replaced,
    /// never refused as "already exists" and never left unrecorded.
    Unrecorded,
}

/// Where a run's outputs go.
pub trait Destination: Sync {
    /// The final location of `relative` (a path or URL).
    fn location(&self, relative: &Path) -> String;
    /// Why `relative` cannot be stored here under its name, if it cannot
    /// (an S3 key over [`MAX_KEY_BYTES`]): asked before any request about it.
    fn refuses_name(&self, _relative: &Path) -> Option<String> {
        None
    }
    /// Whether a new output `relative` may be written: asked before its key
    /// is (an output that exists costs no key request). An existing output
    /// is refused ([`Error::Exists`]) unless the destination overwrites,
    /// `replace`, or its envelope is one `ours` accepts ([`Vacancy::Unrecorded`]).
    fn vacant(&self, relative: &Path, ours: &dyn Fn(&Envelope) -> bool, replace: bool) -> Result<Vacancy>;
    /// Start writing `relative`, which will be `len` bytes long, carrying
    /// what `about` says where the store keeps it with the object (S3: the
    /// envelope in user metadata, the source's properties as headers and
    /// tags). An existing output is refused unless the destination
    /// overwrites or `replace`.
    fn create(&self, relative: &Path, len: u64, replace: bool, about: Option<&About<'_>>) -> Result<Box<dyn PendingOutput>>;
    /// The local folder, if the destination is one (to refuse outputs inside the input tree).
    fn local_root(&self) -> Option<&Path> {
        None
    }
    /// The size of the stored output `relative`, or `None` if there is none.
    fn stored_len(&self, relative: &Path) -> Result<Option<u64>>;
    /// The path below this destination of `location` (the inverse of [`Destination::location`]).
    fn relative(&self, location: &str) -> Option<PathBuf>;
    /// Remove what an interrupted run left while writing `relative`:
    /// temporary files. Returns how many.
    fn clean_interrupted(&self, relative: &Path) -> Result<usize>;
    /// Delete the committed output `relative` (`bench` removes its scratch
    /// object; runs never delete). Nothing there is not an error.
    fn remove(&self, relative: &Path) -> Result<()>;
    /// Abort what a run's journal names for `relative`: the upload ids it
    /// opened (`uploads`), and, where it sent a create whose duplicates were
    /// never checked (`existing`: the uploads of that key open before it),
    /// every other upload of exactly that key. By id only: no clock decides.
    fn abort_journalled(&self, _relative: &Path, _uploads: &[String], _existing: Option<&[String]>) -> Cleaned {
        Cleaned { settled: true, ..Cleaned::default() }
    }
    /// Write ahead to `journal` what this destination is about to create
    /// (upload ids) from now on; `None` stops it.
    fn set_journal(&self, _journal: Option<std::sync::Arc<dyn Journal>>) {}
    /// What to call when the process is interrupted (Ctrl-C, SIGTERM) so
    /// nothing stays open and billed: it aborts the destination's uploads in
    /// progress and returns how many. `None` where dropping is enough (local files).
    fn on_interrupt(&self) -> Option<Box<dyn Fn() -> usize + Send + Sync>> {
        None
    }
}

/// What [`Destination::abort_journalled`] did.
#[derive(Debug, Default)]
pub struct Cleaned {
    /// Uploads aborted now.
    pub aborted: usize,
    /// Upload ids that are closed (aborted now, or already gone).
    pub closed: Vec<String>,
    /// The key's uploads were listed and every one not open before the
    /// create was aborted (nothing left to look for).
    pub settled: bool,
    /// What could not be done, one line each (said to the user; kept in the journal).
    pub failed: Vec<String>,
}

/// The run's journal as a destination writes to it: what it is about to
/// create, before the request that creates it, and what it closed.
pub trait Journal: Send + Sync {
    /// A create of a multipart upload of `location` is about to be sent;
    /// `existing` are the ids of that key's uploads open before it.
    fn creating(&self, location: &str, existing: &[String]) -> Result<()>;
    /// The upload `upload_id` of `location` is open (before any part is sent).
    fn opened(&self, location: &str, upload_id: &str) -> Result<()>;
    /// The upload `upload_id` is completed or aborted.
    fn closed(&self, location: &str, upload_id: &str);
    /// Every upload of `location` other than the journalled ones is known
    /// to be aborted (or never existed): no listing needed any more.
    fn settled(&self, location: &str);
    /// Something the user must hear about `location` (an abort that failed).
    fn warn(&self, location: &str, message: String);
}

/// The checksum sent with every part (`--checksum`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChecksumChoice {
    /// CRC32C per part; the object checksum is S3's composite of the parts.
    #[default]
    Crc32c,
    /// CRC64NVME per part and of the whole object (full-object checksum).
    Crc64Nvme,
    /// No checksum headers (for S3-compatible stores that reject them).
    None,
}

/// How uploads are cut and sent.
#[derive(Clone, Debug)]
pub struct UploadSettings {
    /// Requested part size (raised where needed so a file fits in 10,000 parts).
    pub part_size: u64,
    /// Parts in flight per upload.
    pub concurrency: usize,
    /// Per-part checksum.
    pub checksum: ChecksumChoice,
    /// Replace existing objects.
    pub overwrite: bool,
    /// Headers of every uploaded object (storage class, content type, metadata, ACL, owner check).
    pub object: ObjectOptions,
}

/// What every uploaded object is created with, as `aws s3 cp` spells it.
#[derive(Clone, Debug, Default)]
pub struct ObjectOptions {
    /// `--storage-class` (`STANDARD`, `STANDARD_IA`, `INTELLIGENT_TIERING`, `GLACIER_IR`, ...); `None`: the bucket's default.
    pub storage_class: Option<String>,
    /// `--content-type`; `None`: `application/octet-stream` (ciphertext).
    pub content_type: Option<String>,
    /// `--metadata k=v`: user metadata (`x-amz-meta-k`).
    pub metadata: Vec<(String, String)>,
    /// `--cache-control`, `--content-disposition`, `--content-language`,
    /// `--content-encoding`; `None`: the source's (see [`Properties`]).
    pub cache_control: Option<String>,
    /// See [`ObjectOptions::cache_control`].
    pub content_disposition: Option<String>,
    /// See [`ObjectOptions::cache_control`].
    pub content_language: Option<String>,
    /// See [`ObjectOptions::cache_control`].
    pub content_encoding: Option<String>,
    /// Tags, as S3's `x-amz-tagging` query string (`k=v&k2=v2`, URL-encoded).
    pub tagging: Option<String>,
    /// `Expires` (an HTTP date), copied from an S3 source.
    pub expires: Option<String>,
    /// `--acl` (a canned ACL: `private`, `bucket-owner-full-control`, ...).
    pub acl: Option<String>,
    /// `--expected-bucket-owner`: the account id the bucket must belong to.
    pub expected_bucket_owner: Option<String>,
    /// `--sse`, `--sse-kms-key-id`, `--bucket-key-enabled`: server-side
    /// encryption asked for (on objects and on manifests written to the store).
    pub sse: Option<ServerSide>,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            part_size: 16 << 20,
            concurrency: 8,
            checksum: ChecksumChoice::default(),
            overwrite: false,
            object: ObjectOptions::default(),
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
