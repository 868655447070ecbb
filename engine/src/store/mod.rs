//! Where bytes come from and go to. The pipeline reads a [`Source`] by
//! windows and writes a [`Sink`]; a run puts its outputs in a
//! [`Destination`], whose [`PendingOutput`]s become visible only when
//! committed; inputs named by URL are listed and opened through a [`Store`].
//!
//! * [`local`]: files and folders;
//! * [`s3`] (feature `aws`): Amazon S3 and S3-compatible stores (its own
//!   settings, [`s3::UploadSettings`], reach it inside [`OutputSettings`]);
//! * `recovery`: [`Recovery`], what a destination that opens things that
//!   outlive a crash can do about them (S3's multipart uploads), and the
//!   run's [`Journal`] it writes ahead to;
//! * `manifest`: [`ManifestCopy`], a run's manifest kept in a remote store.
//!
//! [`Stores`] chooses the store of a URL by its scheme, from the list the
//! caller assembles it from ([`Stores::from_list`]; the CLI's is in
//! `cli/src/aws.rs`): a new kind of store (GCS, Azure Blob, …) is one module
//! implementing [`Store`] and [`Destination`], plus one line in that list.
//! `engine/tests/mem_store.rs` is such a module, `mem://`, and runs a whole
//! job through it.

pub mod local;
mod manifest;
mod recovery;
#[cfg(feature = "aws")]
pub mod s3;
/// Without the `aws` feature, S3's settings alone (plain data: code that
/// only names them builds either way).
#[cfg(not(feature = "aws"))]
pub mod s3 {
    #[path = "settings.rs"]
    mod settings;
    pub use settings::*;
}

pub use manifest::ManifestCopy;
pub use recovery::{Cleaned, Journal, Recovery};

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
    /// The properties its output gets (as `copy` says), where the source
    /// learns them as it is read (a small S3 object's one GET brings them);
    /// `None`: ask its [`Store::properties`].
    fn properties(&self, _copy: CopyProps) -> Option<Result<Properties>> {
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
    /// Outputs under the prefix `url`, written as `settings` say (the
    /// store takes its own kind's settings from them: [`OutputSettings::get`]).
    fn destination(&self, url: &str, settings: &OutputSettings) -> Result<Box<dyn Destination>>;
    /// Why the object `url` cannot be named so in this store, if it cannot
    /// (S3: a key longer than its limit): asked before any request about it.
    fn refuses_name(&self, _url: &str) -> Option<String> {
        None
    }
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
    /// `settings`: [`OutputSettings`], or one store's own (S3's
    /// `s3::UploadSettings`), which becomes them.
    pub fn destination(&self, target: &str, settings: impl Into<OutputSettings>) -> Result<Box<dyn Destination>> {
        let settings = settings.into();
        match self.remote(target)? {
            Some(store) => store.destination(target, &settings),
            None => Ok(Box::new(local::LocalDir::new(Path::new(target), settings.overwrite))),
        }
    }
}

/// How a destination writes its outputs: what every store understands
/// (`overwrite`), and the settings of particular kinds of store (S3's part
/// size, checksum and object headers: `s3::UploadSettings`), which this
/// module does not know and each store takes for itself ([`OutputSettings::get`]).
#[derive(Clone, Default)]
pub struct OutputSettings {
    /// Replace existing outputs.
    pub overwrite: bool,
    own: Vec<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
}

impl OutputSettings {
    /// Settings that replace existing outputs or not, and nothing else.
    pub fn new(overwrite: bool) -> Self {
        OutputSettings { overwrite, own: Vec::new() }
    }

    /// With one kind of store's own settings (one of each type).
    pub fn with<T: std::any::Any + Send + Sync>(mut self, settings: T) -> Self {
        self.own.retain(|s| !s.is::<T>());
        self.own.push(std::sync::Arc::new(settings));
        self
    }

    /// The settings of type `T`, if given.
    pub fn get<T: std::any::Any + Send + Sync>(&self) -> Option<&T> {
        self.own.iter().find_map(|s| s.downcast_ref::<T>())
    }
}

impl std::fmt::Debug for OutputSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputSettings").field("overwrite", &self.overwrite).field("own", &self.own.len()).finish()
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
    /// (an S3 key over its limit): asked before any request about it.
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
    /// What this destination can do to recover from an interrupted run
    /// (write ahead what it opens, abort it on a signal or in the next run),
    /// where it opens anything that outlives a crash (S3's multipart uploads).
    /// `None` where dropping is enough (local files).
    fn recovery(&self) -> Option<&dyn Recovery> {
        None
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn output_settings_carry_one_of_each_stores_own() {
        #[derive(Debug, PartialEq)]
        struct Parts(u64);
        let s = super::OutputSettings::new(true).with(Parts(5)).with(Parts(8));
        assert!(s.overwrite);
        assert_eq!(s.get::<Parts>(), Some(&Parts(8)), "the last given wins");
        assert_eq!(s.get::<String>(), None);
        assert_eq!(super::OutputSettings::default().get::<Parts>(), None);
    }
}
