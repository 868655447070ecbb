//! Where bytes come from and go to, for local files.
//!
//! [`Input`] opens a source read-only and hands out windows of it: memory
//! maps of one window at a time above [`MMAP_THRESHOLD`] (so resident memory
//! stays bounded whatever the file size), plain positioned reads below.
//! [`Output`] writes under a temporary name in the destination directory and
//! only [`Output::commit`] gives the file its final name; dropping an
//! uncommitted output deletes the temporary file.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};

/// Inputs at least this large are memory-mapped (window by window).
pub const MMAP_THRESHOLD: u64 = 1 << 20;

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

    /// Size in bytes when opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Call `f` with bytes `[offset, offset + len)` of the file. `scratch`
    /// is reused for plain reads.
    pub fn with_window<R>(&self, offset: u64, len: usize, scratch: &mut Vec<u8>, f: impl FnOnce(&[u8]) -> R) -> Result<R> {
        if len == 0 {
            return Ok(f(&[]));
        }
        if offset + len as u64 > self.len {
            return Err(self.changed());
        }
        if self.len >= MMAP_THRESHOLD {
            // SAFETY: the map is read-only and private to this call. If another
            // process truncates the file meanwhile, reads past the new end
            // fault (SIGBUS); that is the accepted risk of mmap (as in ripgrep
            // and b3sum). Concurrent writes could show torn data, which
            // `finish` detects through the size and modification time.
            let map = unsafe {
                memmap2::MmapOptions::new().offset(offset).len(len).populate().map(&self.file)
            }
            .map_err(|e| Error::io(&self.path, "map", e))?;
            return Ok(f(&map));
        }
        read_exact_at(&self.file, offset, len, scratch).map_err(|e| Error::io(&self.path, "read", e))?;
        Ok(f(&scratch[..len]))
    }

    /// Confirm the file was not changed while it was read.
    pub fn finish(&self) -> Result<()> {
        let meta = fs::metadata(&self.path).map_err(|e| Error::io(&self.path, "stat", e))?;
        if meta.len() != self.len || meta.modified().ok() != self.modified {
            return Err(self.changed());
        }
        Ok(())
    }

    fn changed(&self) -> Error {
        Error::invalid(&self.path, "the file changed while it was being read; output discarded")
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
        Ok(Output { file: Some(file), tmp, path: path.to_path_buf(), overwrite })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Give the output its final name. Without `overwrite` this never
    /// replaces a file that appeared meanwhile (hard link, then unlink).
    pub fn commit(mut self) -> Result<()> {
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
        self.tmp = PathBuf::new();
        Ok(())
    }
}

impl Sink for Output {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        use std::io::Write;
        let file = self.file.as_mut().expect("not committed");
        file.write_all(data).map_err(|e| Error::io(&self.path, "write", e))
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}
