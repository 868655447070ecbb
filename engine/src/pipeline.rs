//! One file through read → encrypt (or decrypt) + SHA-256 → write.
//!
//! The input is taken a window at a time. For each window the plaintext
//! SHA-256 and the cipher run side by side on the rayon pool (the hash on
//! one core, cipher chunks on the others), and the finished output buffer
//! goes to a writer thread over a bounded channel, so reading/encrypting the
//! next window overlaps writing the last. Memory per file is bounded by
//! `window × (depth + 2)` whatever the file size.

use crossbeam_channel::bounded;
use sha2::{Digest, Sha256};

use crate::cipher::{OpenFailure, Opener, Sealer, DEFAULT_CHUNK};
use crate::error::{Error, Result};
use crate::io::{Sink, Source};
use crate::params::{Mode, BLOCK};

/// Sizes that trade memory for parallelism.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Unit of parallel cipher work (a multiple of 16).
    pub chunk: usize,
    /// Bytes read, encrypted and written at a time (a multiple of 16).
    pub window: usize,
    /// Output windows queued for the writer.
    pub depth: usize,
}

impl Tuning {
    /// Sizes for a pool of `threads` threads: at least two chunks per
    /// thread in every window, and never less than 8 MiB.
    pub fn for_threads(threads: usize, chunk: usize) -> Self {
        assert!(chunk >= BLOCK && chunk % BLOCK == 0, "chunk must be a positive multiple of 16");
        let window = (chunk * threads.max(1) * 2).max(8 << 20);
        Tuning { chunk, window: window - window % BLOCK, depth: 2 }
    }

    /// Peak bytes of buffers one file holds in flight.
    pub fn bytes_in_flight(&self) -> usize {
        self.window * (self.depth + 2)
    }
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning::for_threads(rayon::current_num_threads(), DEFAULT_CHUNK)
    }
}

/// What encrypting one file produced.
#[derive(Clone, Debug)]
pub struct Sealed {
    /// Plaintext bytes read.
    pub plain_len: u64,
    /// Ciphertext bytes written.
    pub cipher_len: u64,
    /// SHA-256 of the plaintext.
    pub sha256: [u8; 32],
}

/// What decrypting one file produced.
#[derive(Clone, Debug)]
pub struct Opened {
    /// Ciphertext bytes read.
    pub cipher_len: u64,
    /// Plaintext bytes written.
    pub plain_len: u64,
    /// SHA-256 of the plaintext.
    pub sha256: [u8; 32],
}

/// Encrypt `input` into `sink`. `progress` is told the plaintext bytes done.
pub fn seal(input: &dyn Source, sealer: Sealer, sink: &mut dyn Sink, tuning: &Tuning, progress: &(dyn Fn(u64) + Sync)) -> Result<Sealed> {
    let len = input.len();
    let mode = sealer.mode();
    mode.check_plaintext_len(len).map_err(|r| Error::invalid(input.path(), r))?;
    let whole = len - len % BLOCK as u64;
    let mut hasher = Sha256::new();
    let mut sealer = Some(sealer);
    let mut scratch = Vec::new();
    let mut at = 0u64;
    let mut cipher_len = 0u64;
    drive(sink, len as usize <= tuning.window, tuning.depth, None, |out| {
        if at < whole {
            let n = (whole - at).min(tuning.window as u64) as usize;
            out.resize(n, 0);
            let s = sealer.as_mut().expect("not finished");
            let data = input.window(at, n, &mut scratch)?;
            rayon::join(|| hasher.update(&*data), || s.update(&data, out));
            at += n as u64;
            progress(n as u64);
        } else {
            out.clear();
        }
        if at < whole {
            cipher_len += out.len() as u64;
            return Ok(true);
        }
        let rest = (len - whole) as usize;
        let mut tail = Vec::with_capacity(rest);
        tail.extend_from_slice(&input.window(whole, rest, &mut scratch)?);
        hasher.update(&tail);
        sealer.take().expect("finished once").finish(&tail, out);
        progress(rest as u64);
        cipher_len += out.len() as u64;
        Ok(false)
    })?;
    input.finish()?;
    debug_assert_eq!(cipher_len, mode.sealed_len(len));
    Ok(Sealed { plain_len: len, cipher_len, sha256: hasher.finalize().into() })
}

/// Decrypt `input` into `sink`, checking the GCM tag or CBC padding at the
/// end. On error the caller must discard what `sink` received (an
/// uncommitted [`crate::io::Output`] does so by itself).
pub fn open(input: &dyn Source, mode: Mode, opener: Opener, sink: &mut dyn Sink, tuning: &Tuning, progress: &(dyn Fn(u64) + Sync)) -> Result<Opened> {
    let len = input.len();
    let (whole, _) = Opener::split(mode, len).map_err(|r| Error::invalid(input.path(), r))?;
    let mut opener = Some(opener);
    let mut scratch = Vec::new();
    let mut at = 0u64;
    let mut hasher = Sha256::new();
    let mut plain_len = 0u64;
    let mut failure = None;
    drive(sink, len as usize <= tuning.window, tuning.depth, Some(&mut hasher), |out| {
        if at < whole {
            let n = (whole - at).min(tuning.window as u64) as usize;
            out.resize(n, 0);
            let o = opener.as_mut().expect("not finished");
            o.update(&input.window(at, n, &mut scratch)?, out);
            at += n as u64;
            progress(n as u64);
        } else {
            out.clear();
        }
        if at < whole {
            plain_len += out.len() as u64;
            return Ok(true);
        }
        let rest = (len - whole) as usize;
        let mut tail = Vec::with_capacity(rest);
        tail.extend_from_slice(&input.window(whole, rest, &mut scratch)?);
        if let Err(f) = opener.take().expect("finished once").finish(&tail, out) {
            failure = Some(f);
            out.clear();
        }
        progress(rest as u64);
        plain_len += out.len() as u64;
        Ok(false)
    })?;
    if let Some(f) = failure {
        return Err(match f {
            OpenFailure::Authentication => Error::Authentication { path: input.path().to_path_buf() },
            OpenFailure::Padding => Error::Padding { path: input.path().to_path_buf() },
            OpenFailure::Truncated => Error::invalid(input.path(), "ciphertext is truncated"),
        });
    }
    input.finish()?;
    Ok(Opened { cipher_len: len, plain_len, sha256: hasher.finalize().into() })
}

/// Run `produce` until it returns `false`, writing each buffer it fills to
/// `sink` (after hashing it into `digest`, if given). With `inline`, all on
/// this thread; otherwise writing happens on a writer thread fed through a
/// bounded channel, with buffers recycled through a second one.
fn drive(
    sink: &mut dyn Sink,
    inline: bool,
    depth: usize,
    mut digest: Option<&mut Sha256>,
    mut produce: impl FnMut(&mut Vec<u8>) -> Result<bool>,
) -> Result<()> {
    if inline {
        let mut buf = Vec::new();
        loop {
            let more = produce(&mut buf)?;
            if let Some(d) = digest.as_mut() {
                d.update(&buf);
            }
            sink.write(&buf)?;
            if !more {
                return Ok(());
            }
        }
    }
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = bounded::<Vec<u8>>(depth);
        let (free_tx, free_rx) = bounded::<Vec<u8>>(depth + 2);
        let writer = scope.spawn(move || -> Result<()> {
            for buf in full_rx {
                if let Some(d) = digest.as_mut() {
                    d.update(&buf);
                }
                sink.write(&buf)?;
                let _ = free_tx.send(buf);
            }
            Ok(())
        });
        let mut allocated = 0;
        let produced = (|| -> Result<()> {
            loop {
                let mut buf = match free_rx.try_recv() {
                    Ok(buf) => buf,
                    Err(_) if allocated < depth + 2 => {
                        allocated += 1;
                        Vec::new()
                    }
                    // All buffers are queued or being written: wait for one.
                    Err(_) => match free_rx.recv() {
                        Ok(buf) => buf,
                        Err(_) => return Ok(()), // writer stopped; its error follows
                    },
                };
                let more = produce(&mut buf)?;
                if full_tx.send(buf).is_err() || !more {
                    return Ok(());
                }
            }
        })();
        drop(full_tx);
        let written = writer.join().expect("writer thread panicked");
        produced.and(written)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cipher::{open_to_vec, seal_to_vec};
    use crate::io::Input;
    use crate::keys::DataKey;
    use crate::params::Iv;

    struct Collect(Vec<u8>);
    impl Sink for Collect {
        fn write(&mut self, data: &[u8]) -> Result<()> {
            self.0.extend_from_slice(data);
            Ok(())
        }
    }

    #[test]
    fn file_pipeline_matches_in_memory_for_threaded_and_inline_paths() {
        let dir = tempfile::tempdir().unwrap();
        let key = DataKey::from_slice(&[3u8; 32]).unwrap();
        let iv = [0xab; 16];
        // Below and above the mmap threshold; with a 64 KiB window both take
        // the threaded path, and the 1000-byte one the inline path.
        for len in [1000usize, 300_017, crate::io::MMAP_THRESHOLD as usize + 4099] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join(format!("in-{len}"));
            std::fs::write(&path, &plain).unwrap();
            let tuning = Tuning { chunk: 4096, window: 64 * 1024, depth: 2 };
            for mode in Mode::ALL {
                let want = seal_to_vec(mode, &key, Iv::from_slice(&iv).unwrap(), 16, &plain);
                let input = Input::open(&path).unwrap();
                let mut sink = Collect(Vec::new());
                let sealer = Sealer::new(mode, &key, Iv::from_slice(&iv).unwrap(), tuning.chunk);
                let sealed = seal(&input, sealer, &mut sink, &tuning, &|_| {}).unwrap();
                assert!(sink.0 == want, "{mode} {len}");
                assert_eq!(sealed.cipher_len, want.len() as u64);
                assert_eq!(sealed.sha256, <[u8; 32]>::from(Sha256::digest(&plain)));

                let ct_path = dir.path().join(format!("ct-{len}-{mode}"));
                std::fs::write(&ct_path, &want).unwrap();
                let input = Input::open(&ct_path).unwrap();
                let mut sink = Collect(Vec::new());
                let opener = Opener::new(mode, &key, &Iv::from_slice(&iv).unwrap(), tuning.chunk);
                let opened = open(&input, mode, opener, &mut sink, &tuning, &|_| {}).unwrap();
                assert!(sink.0 == plain, "{mode} {len} open");
                assert_eq!(opened.sha256, sealed.sha256);
                assert_eq!(open_to_vec(mode, &key, &Iv::from_slice(&iv).unwrap(), 16, &want).unwrap(), plain);
            }
        }
    }
}
