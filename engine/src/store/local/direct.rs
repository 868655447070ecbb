//! Local outputs written past the page cache (`O_DIRECT`): the aligned
//! staging buffer, its reuse from one output to the next, and when an
//! output is written this way at all. [`super::Output`] drives it.

use std::fs::{self, File};
use std::path::Path;

/// Alignment of direct writes (address, length, offset): 4 KiB covers the
/// 512-byte and 4 KiB logical blocks of the disks outputs land on.
pub(super) const DIRECT_ALIGN: usize = 4096;
/// Bytes gathered before each direct write.
pub(super) const DIRECT_BUFFER: usize = 4 << 20;
/// Outputs smaller than this are written through the page cache. For them
/// a direct write costs more than the copy it saves: a second descriptor,
/// a zeroed staging buffer, and a write that waits for the disk before the
/// next file starts (the page cache writes them back later, together).
/// Measured (release, 20,000 files of 4 KiB, CTR, local to local, 2 vCPUs):
/// the 4 MiB buffer's zeroing alone was 17% of the run's CPU time.
pub(super) const DIRECT_MIN: u64 = 1 << 20;

/// Set by [`buffered_writes_only`]: outputs go through the page cache.
static BUFFERED_ONLY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Write every local output through the page cache from now on, as `cp`
/// does, instead of bypassing it where the filesystem allows (the CLI's
/// `SEALPIPE_NO_DIRECT_IO`, for comparing with such tools).
pub fn buffered_writes_only() {
    BUFFERED_ONLY.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Output writes that bypass the page cache (`O_DIRECT`), from an aligned
/// staging buffer, falling back to ordinary writes where the filesystem
/// refuses them (tmpfs, some network filesystems) or once anything is off.
///
/// Why: a buffered write is copied into page cache the kernel must first
/// allocate and, on a busy machine, reclaim. Profiled on the 2-vCPU test VM
/// (ext4, 1 GiB CTR file → file with the parallel digest): 74% of the run's
/// CPU time was the kernel's copy into the page cache
/// (`copy_folio_from_iter_atomic`), on one core (buffered writes to one file
/// hold its inode lock), the cipher 3%, the digest 6%; `dd` of 1 GiB took
/// 0.66-2.8 s buffered and 0.68-0.79 s with `oflag=direct` in three
/// interleaved rounds. Direct writes add one copy in user space (into the
/// aligned buffer, in cache) and remove the kernel's.
pub(super) struct Direct {
    file: File,
    /// `DIRECT_BUFFER + DIRECT_ALIGN` bytes (kept in [`STAGING`] when the
    /// output is done); the aligned window starts at `start`.
    raw: Vec<u8>,
    start: usize,
    /// Bytes held.
    pub(super) len: usize,
    /// File offset of the first byte held.
    pub(super) offset: u64,
}

impl Direct {
    /// A second descriptor on `tmp` with `O_DIRECT`, if the filesystem takes it.
    #[cfg(target_os = "linux")]
    pub(super) fn open(tmp: &Path) -> Option<Direct> {
        use std::os::unix::fs::OpenOptionsExt;
        if BUFFERED_ONLY.load(std::sync::atomic::Ordering::Relaxed) {
            return None;
        }
        let file = fs::OpenOptions::new().write(true).custom_flags(libc::O_DIRECT).open(tmp).ok()?;
        // A buffer an earlier output left (its bytes are overwritten before they are read), else a new one.
        let kept = STAGING.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let raw = kept.unwrap_or_else(|| vec![0u8; DIRECT_BUFFER + DIRECT_ALIGN]);
        let start = raw.as_ptr().align_offset(DIRECT_ALIGN);
        Some(Direct { file, raw, start, len: 0, offset: 0 })
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn open(_tmp: &Path) -> Option<Direct> {
        None
    }

    pub(super) fn buf(&self) -> &[u8] {
        &self.raw[self.start..self.start + DIRECT_BUFFER]
    }

    pub(super) fn buf_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + DIRECT_BUFFER]
    }

    /// Write the first `n` held bytes (a multiple of `DIRECT_ALIGN`) directly
    /// and keep the rest; on an error nothing is consumed.
    pub(super) fn write_direct(&mut self, n: usize) -> std::io::Result<()> {
        write_all_at(&self.file, &self.buf()[..n], self.offset)?;
        self.offset += n as u64;
        let len = self.len;
        self.buf_mut().copy_within(n..len, 0);
        self.len -= n;
        Ok(())
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        let mut kept = STAGING.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < STAGING_KEPT {
            kept.push(std::mem::take(&mut self.raw));
        }
    }
}

/// Staging buffers of outputs done, for the next ones. A run writes
/// thousands of outputs; a new 4 MiB buffer for each costs either its
/// zeroing (when the allocator reuses heap memory) or a page fault per
/// 4 KiB touched (when it maps fresh memory). Measured (release, 200 files
/// of 2 MiB, CTR, local to local, 2 vCPUs): the zeroing was 14% of the
/// run's CPU time, the page faults 19%. Only buffers that were in use at
/// once come back here, so this never holds more than the peak the run's
/// files in flight already held; at most [`STAGING_KEPT`] are kept.
static STAGING: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());
/// Most staging buffers kept between outputs (16 × 4 MiB).
const STAGING_KEPT: usize = 16;

/// `pwrite` all of `data` at `offset`.
pub(super) fn write_all_at(file: &File, data: &[u8], offset: u64) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.write_all_at(data, offset)
}

