//! Where bytes come from and go to.
//!
//! Pipelines read a [`Source`] by windows and write a [`Sink`]; a run puts
//! its outputs in a [`Destination`], whose [`PendingOutput`]s become visible
//! only when committed. This module has the local implementations:
//!
//! * [`Input`] opens a file read-only and hands out windows of it: memory
//!   maps of one window at a time above [`MMAP_THRESHOLD`] (so resident
//!   memory stays bounded whatever the file size), plain positioned reads below;
//! * [`Output`] writes under a temporary name next to the final one, and only
//!   [`Output::commit`] gives the file its final name; dropping an
//!   uncommitted output deletes the temporary file;
//! * [`LocalDir`] is a folder as a [`Destination`].

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};

/// Inputs at least this large are memory-mapped (window by window).
pub const MMAP_THRESHOLD: u64 = 1 << 20;

/// A window of a source: a memory map or a borrowed buffer.
pub enum Window<'a> {
    /// Mapped straight from the file.
    Mapped(memmap2::Mmap),
    /// Read into a caller's buffer.
    Read(&'a [u8]),
}

impl std::ops::Deref for Window<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Window::Mapped(m) => m,
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
    /// Confirm the source did not change while it was read.
    fn finish(&self) -> Result<()>;
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
}

/// Inputs that are not local paths (`s3://bucket/prefix/`): listed, then read.
pub trait RemoteInputs: Sync {
    /// Whether `input` is one of these (rather than a local path).
    fn handles(&self, input: &Path) -> bool;
    /// List the objects of `input`, page by page, handing each to `each`.
    fn list(&self, input: &Path, each: &mut dyn FnMut(Listed)) -> Result<()>;
    /// Open a listed object for reading, pinned to the listed entity tag.
    fn open(&self, item: &Listed) -> Result<Box<dyn Source>>;
    /// Look up one object by URL (a list file's entry): its size and entity tag.
    fn stat(&self, url: &str) -> Result<Listed>;
    /// Read a whole object (an inventory report file) as a stream.
    fn fetch(&self, url: &str) -> Result<Box<dyn std::io::Read + Send>>;
}

/// A source file, opened read-only.
pub struct Input {
    file: File,
    path: PathBuf,
    len: u64,
    modified: Option<SystemTime>,
}

impl Input {
    /// Open `path` read-only; it must be a regular file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, "open", e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, "stat", e))?;
        if !meta.is_file() {
            return Err(Error::invalid(path, "not a regular file"));
        }
        Ok(Input { file, path: path.to_path_buf(), len: meta.len(), modified: meta.modified().ok() })
    }

    fn changed(&self) -> Error {
        Error::invalid(&self.path, "the file changed while it was being read; output discarded")
    }
}

impl Source for Input {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn window<'a>(&'a self, offset: u64, len: usize, scratch: &'a mut Vec<u8>) -> Result<Window<'a>> {
        if len == 0 {
            return Ok(Window::Read(&[]));
        }
        if offset + len as u64 > self.len {
            return Err(self.changed());
        }
        if self.len >= MMAP_THRESHOLD {
            // SAFETY: the map is read-only and lives only as long as this
            // window. If another process truncates the file meanwhile, reads
            // past the new end fault (SIGBUS): the accepted risk of mmap (as
            // in ripgrep and b3sum). Concurrent writes could show torn data,
            // which `finish` detects through the size and modification time.
            let map = unsafe { memmap2::MmapOptions::new().offset(offset).len(len).populate().map(&self.file) }
                .map_err(|e| Error::io(&self.path, "map", e))?;
            return Ok(Window::Mapped(map));
        }
        read_exact_at(&self.file, offset, len, scratch).map_err(|e| Error::io(&self.path, "read", e))?;
        Ok(Window::Read(&scratch[..len]))
    }

    fn finish(&self) -> Result<()> {
        let meta = fs::metadata(&self.path).map_err(|e| Error::io(&self.path, "stat", e))?;
        if meta.len() != self.len || meta.modified().ok() != self.modified {
            return Err(self.changed());
        }
        Ok(())
    }
}

#[cfg(unix)]
fn read_exact_at(file: &File, offset: u64, len: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    buf.resize(len, 0);
    file.read_exact_at(&mut buf[..len], offset)
}

#[cfg(not(unix))]
fn read_exact_at(file: &File, offset: u64, len: usize, buf: &mut Vec<u8>) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    buf.resize(len, 0);
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(&mut buf[..len])
}

/// Where a pipeline writes its output, in order.
pub trait Sink: Send {
    /// Append `data`.
    fn write(&mut self, data: &[u8]) -> Result<()>;
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
}

/// An output being written; invisible under its final name until committed,
/// and discarded if dropped uncommitted.
pub trait PendingOutput: Sink {
    /// Make the output visible under its final name.
    fn commit(self: Box<Self>) -> Result<Committed>;
}

/// Where a run's outputs go.
pub trait Destination: Sync {
    /// The final location of `relative` (a path or URL).
    fn location(&self, relative: &Path) -> String;
    /// Start writing `relative`, which will be `len` bytes long. An
    /// existing output is refused unless the destination overwrites or `replace`.
    fn create(&self, relative: &Path, len: u64, replace: bool) -> Result<Box<dyn PendingOutput>>;
    /// The local folder, if the destination is one (to refuse outputs inside the input tree).
    fn local_root(&self) -> Option<&Path> {
        None
    }
    /// The size of the stored output `relative`, or `None` if there is none.
    fn stored_len(&self, relative: &Path) -> Result<Option<u64>>;
    /// The path below this destination of `location` (the inverse of [`Destination::location`]).
    fn relative(&self, location: &str) -> Option<PathBuf>;
    /// Remove what an interrupted run left while writing `relative` (started
    /// at `since_unix`): temporary files, open multipart uploads. Returns how many.
    fn clean_interrupted(&self, relative: &Path, since_unix: u64) -> Result<usize>;
}

/// A local folder as a destination.
pub struct LocalDir {
    root: PathBuf,
    /// `root` with symlinks resolved, once (locations are below it).
    resolved: PathBuf,
    overwrite: bool,
}

impl LocalDir {
    /// Outputs under `root`; existing files are replaced only with `overwrite`.
    pub fn new(root: &Path, overwrite: bool) -> Self {
        LocalDir { root: root.to_path_buf(), resolved: crate::batch::resolve(root), overwrite }
    }
}

impl Destination for LocalDir {
    fn location(&self, relative: &Path) -> String {
        self.resolved.join(relative).display().to_string()
    }

    fn create(&self, relative: &Path, _len: u64, replace: bool) -> Result<Box<dyn PendingOutput>> {
        let mut output = Output::create(&self.root.join(relative), self.overwrite || replace)?;
        output.location = Some(self.location(relative));
        Ok(Box::new(output))
    }

    fn local_root(&self) -> Option<&Path> {
        Some(&self.root)
    }

    fn stored_len(&self, relative: &Path) -> Result<Option<u64>> {
        let path = self.root.join(relative);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(&path, "stat", e)),
        }
    }

    fn relative(&self, location: &str) -> Option<PathBuf> {
        Path::new(location).strip_prefix(&self.resolved).ok().map(Path::to_path_buf)
    }

    /// Deletes the temporary files (`.NAME.sealpipe-tmp-*`) beside the output.
    fn clean_interrupted(&self, relative: &Path, _since_unix: u64) -> Result<usize> {
        let path = self.root.join(relative);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return Ok(0) };
        let prefix = format!(".{}.sealpipe-tmp-", name.to_string_lossy());
        let Ok(entries) = fs::read_dir(dir) else { return Ok(0) };
        let mut removed = 0;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// A sink that keeps nothing (verification only needs the digest).
pub struct Discard;

impl Sink for Discard {
    fn write(&mut self, _: &[u8]) -> Result<()> {
        Ok(())
    }
}

/// An output file being written under a temporary name.
pub struct Output {
    file: Option<File>,
    tmp: PathBuf,
    path: PathBuf,
    overwrite: bool,
    /// The location to report when committed (default: `path` resolved).
    location: Option<String>,
}

impl Output {
    /// Start writing `path`. Refuses an existing `path` unless `overwrite`.
    /// Missing parent directories are created.
    pub fn create(path: &Path, overwrite: bool) -> Result<Self> {
        if !overwrite && fs::symlink_metadata(path).is_ok() {
            return Err(Error::Exists { path: path.to_path_buf() });
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, "create directory", e))?;
        let name = path.file_name().ok_or_else(|| Error::invalid(path, "output has no file name"))?;
        let mut nonce = [0u8; 6];
        getrandom::fill(&mut nonce).map_err(|e| Error::Key(format!("cannot read the OS random generator: {e}")))?;
        let tmp = dir.join(format!(
            ".{}.sealpipe-tmp-{}-{}",
            name.to_string_lossy(),
            std::process::id(),
            hex::encode(nonce)
        ));
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, "create", e))?;
        pending().push(tmp.clone());
        Ok(Output { file: Some(file), tmp, path: path.to_path_buf(), overwrite, location: None })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flush what was written to stable storage, before [`Output::commit`],
    /// for outputs a crash must not leave empty under their final name.
    pub fn sync(&mut self) -> Result<()> {
        let file = self.file.as_ref().expect("not committed");
        file.sync_all().map_err(|e| Error::io(&self.path, "sync", e))
    }

    /// Give the output its final name. Without `overwrite` this never
    /// replaces a file that appeared meanwhile (hard link, then unlink).
    pub fn commit(mut self) -> Result<()> {
        self.commit_in_place()
    }

    fn commit_in_place(&mut self) -> Result<()> {
        let file = self.file.take().expect("committed once");
        drop(file);
        if self.overwrite {
            fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, "rename into place", e))?;
        } else {
            match fs::hard_link(&self.tmp, &self.path) {
                Ok(()) => {
                    let _ = fs::remove_file(&self.tmp);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(Error::Exists { path: self.path.clone() })
                }
                // Filesystems without hard links: check, then rename.
                Err(_) if fs::symlink_metadata(&self.path).is_err() => {
                    fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, "rename into place", e))?
                }
                Err(e) => return Err(Error::io(&self.path, "link into place", e)),
            }
        }
        forget_pending(&self.tmp);
        self.tmp = PathBuf::new();
        Ok(())
    }
}

/// Temporary files of local outputs not yet committed or dropped.
static PENDING: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn pending() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

fn forget_pending(tmp: &Path) {
    pending().retain(|p| p != tmp);
}

/// Delete the temporary files of every local output still being written.
/// For an interrupted process (Ctrl-C, SIGTERM) that exits without
/// unwinding, so nothing it half-wrote is left behind. Returns how many.
pub fn discard_pending_outputs() -> usize {
    let paths = std::mem::take(&mut *pending());
    paths.iter().filter(|p| fs::remove_file(p).is_ok()).count()
}

impl Sink for Output {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        use std::io::Write;
        let file = self.file.as_mut().expect("not committed");
        file.write_all(data).map_err(|e| Error::io(&self.path, "write", e))
    }
}

impl PendingOutput for Output {
    fn commit(mut self: Box<Self>) -> Result<Committed> {
        self.commit_in_place()?;
        let location = self.location.take().unwrap_or_else(|| crate::batch::resolve(&self.path).display().to_string());
        Ok(Committed { location, ..Default::default() })
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            forget_pending(&self.tmp);
            let _ = fs::remove_file(&self.tmp);
        }
    }
}
