//! The one data path: one file through read → cipher + digest → write,
//! whether it is sealed ([`seal`]), opened ([`open`]) or re-encrypted in one
//! pass ([`reseal`]); [`lanes`] drives many files through the same steps
//! with one multi-buffer CBC cipher.
//!
//! The input is taken a window at a time. For each window the plaintext
//! digest ([`hasher`], `--digest`) and the cipher run side by side on the
//! rayon pool, and the finished output buffer goes to a writer thread over
//! a bounded channel, so reading/encrypting the next window overlaps
//! writing the last. BLAKE3 and CRC-64/NVME hash each window in parallel
//! pieces beside the cipher's chunks. SHA-256 is one sequential chain, so
//! when sealing a file of several windows it runs on a thread of its own,
//! a window behind: reading and encrypting window k+1 overlap hashing
//! window k (when opening, the writer thread hashes the plaintext it
//! writes). Memory per file is bounded by `window × (depth + 2)` whatever
//! the file size, plus, for SHA-256 on its thread, the windows it holds
//! (one queued, one hashed, one being encrypted: `window × 3`).

pub mod hasher;
pub mod lanes;

use std::sync::Arc;

use crossbeam_channel::bounded;

use self::hasher::{Digests, Hasher};
use crate::format::digest::{Digest, DigestAlg};

use crate::cipher::{OpenFailure, Opener, Sealer, DEFAULT_CHUNK};
use crate::error::{Error, Result};
use crate::events::{Event, Events};
use crate::store::{Sink, Source};
use crate::format::{Mode, BLOCK};

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
    /// Digests of the plaintext: the one asked for first.
    pub digests: Digests,
}

impl Sealed {
    /// The plaintext digest asked for.
    pub fn digest(&self) -> &Digest {
        self.digests.first()
    }
}

/// What decrypting one file produced.
#[derive(Clone, Debug)]
pub struct Opened {
    /// Ciphertext bytes read.
    pub cipher_len: u64,
    /// Plaintext bytes written.
    pub plain_len: u64,
    /// The plaintext digest asked for.
    pub digests: Digests,
}

impl Opened {
    /// The plaintext digest asked for.
    pub fn digest(&self) -> &Digest {
        self.digests.first()
    }
}

/// Encrypt `input` into `sink`, with the plaintext's `digest`. `events`
/// hears the plaintext bytes done ([`Event::Progress`]).
pub fn seal(input: &dyn Source, sealer: Sealer, sink: &mut dyn Sink, tuning: &Tuning, digest: DigestAlg, events: &dyn Events) -> Result<Sealed> {
    let len = input.len();
    let mode = sealer.mode();
    mode.check_plaintext_len(len).map_err(|r| Error::invalid(input.path(), r))?;
    let whole = len - len % BLOCK as u64;
    let (cipher_len, digests) = stream(input, whole, sink, tuning, Hash::Input(Hasher::new(digest)), events, sealer)?;
    debug_assert_eq!(cipher_len, mode.sealed_len(len));
    Ok(Sealed { plain_len: len, cipher_len, digests })
}

/// Decrypt `input` into `sink`, checking the GCM tag or CBC padding at the
/// end. On error the caller must discard what `sink` received (an
/// uncommitted [`crate::store::local::Output`] does so by itself).
/// The plaintext's `digest` is computed as it is written.
pub fn open(input: &dyn Source, mode: Mode, opener: Opener, sink: &mut dyn Sink, tuning: &Tuning, digest: DigestAlg, events: &dyn Events) -> Result<Opened> {
    let len = input.len();
    let (whole, _) = Opener::split(mode, len).map_err(|r| Error::invalid(input.path(), r))?;
    let opening = Opening { opener, path: input.path() };
    let (plain_len, digests) = stream(input, whole, sink, tuning, Hash::Output(Hasher::new(digest)), events, opening)?;
    Ok(Opened { cipher_len: len, plain_len, digests })
}

/// Decrypt legacy ciphertext `input` (encrypted in `old_mode`, opened by
/// `opener`) and encrypt its plaintext with `sealer` into `sink`, in one
/// pass: the plaintext exists only a window at a time, in memory. The old
/// GCM tag or CBC padding is checked at the end, before the caller commits
/// the output; `plain_len` is the plaintext length the caller learned first
/// (for CBC, from the last block), and the result must agree with it. The
/// plaintext's `digest` goes first in the result's digests; `check`, the
/// algorithm of a digest recorded for the old file, is computed too.
#[allow(clippy::too_many_arguments)]
pub fn reseal(
    input: &dyn Source,
    old_mode: Mode,
    opener: Opener,
    plain_len: u64,
    sealer: Sealer,
    sink: &mut dyn Sink,
    tuning: &Tuning,
    digest: DigestAlg,
    check: Option<DigestAlg>,
    events: &dyn Events,
) -> Result<Sealed> {
    let new_mode = sealer.mode();
    new_mode.check_plaintext_len(plain_len).map_err(|r| Error::invalid(input.path(), r))?;
    let (whole, _) = Opener::split(old_mode, input.len()).map_err(|r| Error::invalid(input.path(), r))?;
    let hasher = Hasher::new(digest).with(check);
    let resealing = Resealing { opening: Opening { opener, path: input.path() }, sealer, plain: Vec::new() };
    let (cipher_len, digests) = stream(input, whole, sink, tuning, Hash::Inside(hasher), events, resealing)?;
    if cipher_len != new_mode.sealed_len(plain_len) {
        return Err(Error::invalid(input.path(), "the legacy ciphertext changed while it was read; output discarded"));
    }
    Ok(Sealed { plain_len, cipher_len, digests })
}

/// One pass of a cipher over a file's bytes, as the window loop drives it:
/// sealing ([`Sealer`]), opening ([`Opening`]) and re-encrypting
/// ([`Resealing`]: open then seal) all plug in here; the multi-buffer CBC
/// path ([`lanes`]) drives many sealers at once over the same sources and sinks.
trait Transform: Send {
    /// Whole blocks, in order; `inner` hashes plaintext that only the transform sees.
    fn update(&mut self, input: &[u8], output: &mut [u8], inner: Option<&mut Hasher>);
    /// The rest of the input; appends the last output bytes.
    fn last(self, tail: &[u8], out: &mut Vec<u8>, inner: Option<&mut Hasher>) -> Result<()>;
}

impl Transform for Sealer {
    fn update(&mut self, input: &[u8], output: &mut [u8], _: Option<&mut Hasher>) {
        Sealer::update(self, input, output)
    }
    fn last(self, tail: &[u8], out: &mut Vec<u8>, _: Option<&mut Hasher>) -> Result<()> {
        self.finish(tail, out);
        Ok(())
    }
}

/// Open, then seal again; the plaintext in between is hashed.
struct Resealing<'p> {
    opening: Opening<'p>,
    sealer: Sealer,
    /// One window of plaintext.
    plain: Vec<u8>,
}

impl Transform for Resealing<'_> {
    fn update(&mut self, input: &[u8], output: &mut [u8], inner: Option<&mut Hasher>) {
        self.plain.resize(input.len(), 0);
        self.opening.opener.update(input, &mut self.plain);
        let (plain, sealer) = (&self.plain, &mut self.sealer);
        match inner.filter(|h| !h.is_none()) {
            Some(h) => beside(plain.len(), || h.update(plain), || sealer.update(plain, output)),
            None => sealer.update(plain, output),
        }
    }
    fn last(self, tail: &[u8], out: &mut Vec<u8>, inner: Option<&mut Hasher>) -> Result<()> {
        let mut plain = Vec::with_capacity(tail.len());
        // Fails on a bad old tag or padding: the new output is then never committed.
        Transform::last(self.opening, tail, &mut plain, None)?;
        if let Some(h) = inner {
            h.update(&plain);
        }
        self.sealer.finish(&plain, out);
        Ok(())
    }
}

struct Opening<'p> {
    opener: Opener,
    path: &'p std::path::Path,
}

impl Transform for Opening<'_> {
    fn update(&mut self, input: &[u8], output: &mut [u8], _: Option<&mut Hasher>) {
        self.opener.update(input, output)
    }
    fn last(self, tail: &[u8], out: &mut Vec<u8>, _: Option<&mut Hasher>) -> Result<()> {
        let path = self.path;
        self.opener.finish(tail, out).map_err(|f| {
            // Never pass on unauthenticated or unpadded plaintext.
            out.clear();
            match f {
                OpenFailure::Authentication => Error::Authentication { path: path.to_path_buf() },
                OpenFailure::Padding => Error::Padding { path: path.to_path_buf() },
                OpenFailure::Truncated => Error::invalid(path, "ciphertext is truncated"),
            }
        })
    }
}

/// Below this many bytes, the digest and the cipher of a window run one
/// after the other on the calling thread instead of side by side on the
/// pool. A file's worker is not a pool thread, so a `rayon::join` from it
/// is a round trip: the job is injected, a sleeping pool thread is woken
/// (futex), the worker sleeps until it is done, and the pool thread spins
/// (`sched_yield`) before it sleeps again. For a small file that costs far
/// more than its microseconds of SHA-256 and AES. Measured (release, 20,000
/// files of 4 KiB, CTR, SHA-256, local to local, 2 vCPUs): about 34
/// `sched_yield` and 15 `futex` calls a file with the join, and system time
/// 2.8x the user time. The same threshold as BLAKE3's own split
/// ([`hasher`]'s `BLAKE3_PARALLEL_MIN`).
const BESIDE_MIN: usize = 128 << 10;

/// `hash` and `cipher` over one window of `len` bytes: side by side on the
/// pool, or in turn here when the window is small ([`BESIDE_MIN`]).
fn beside(len: usize, hash: impl FnOnce() + Send, cipher: impl FnOnce() + Send) {
    if len < BESIDE_MIN {
        hash();
        cipher();
    } else {
        rayon::join(hash, cipher);
    }
}

/// Which side of the cipher the digest covers.
enum Hash {
    /// The input (plaintext when sealing): hashed beside the cipher, or
    /// (SHA-256) on a thread of its own.
    Input(Hasher),
    /// The output (plaintext when opening): SHA-256 by the writer, others beside the cipher.
    Output(Hasher),
    /// Bytes inside the transform (plaintext when re-encrypting): hashed by it.
    Inside(Hasher),
}

/// Where a stream's hasher runs: decided once, from what it hashes
/// ([`Hash`]) and whether its algorithm works only in order (SHA-256).
///
/// SHA-256 of what is read goes a window behind on its own thread: it then
/// no longer waits for the read of each window, nor the cipher for it.
/// Measured (release, 1 GiB CTR file → file on tmpfs, 2 cores with SHA
/// extensions shared with two other builds, 5 interleaved rounds): wall
/// median 1.60 s with sha256, 1.04 s blake3, 0.97 s crc64nvme, 0.81 s
/// none; SHA-256 still sets the pace on 2 cores. Aside versus beside the
/// cipher (rayon::join per window) was not A/B-measured on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    /// No digest asked for: nothing is hashed.
    Idle,
    /// The input, a window behind, on a thread of its own (SHA-256 of more than one window).
    InputAside,
    /// The input, beside the cipher on the pool (`rayon::join` per window).
    InputBeside,
    /// The output, by the writer as it writes it (SHA-256).
    OutputAtWriter,
    /// The output, in parallel pieces once the cipher made it.
    OutputBeside,
    /// Inside the transform (the plaintext of a re-encryption).
    Inside,
}

impl Placement {
    fn of(hash: Hash, inline: bool) -> (Placement, Hasher) {
        let (placement, hasher) = match hash {
            Hash::Input(h) if h.sequential() && !inline => (Placement::InputAside, h),
            Hash::Input(h) => (Placement::InputBeside, h),
            Hash::Output(h) if h.sequential() => (Placement::OutputAtWriter, h),
            Hash::Output(h) => (Placement::OutputBeside, h),
            Hash::Inside(h) => (Placement::Inside, h),
        };
        (if hasher.is_none() { Placement::Idle } else { placement }, hasher)
    }
}

/// Feed `input[..whole]` (whole blocks) to `transform` a window at a time
/// and the rest to its `last`, writing what it produces to `sink`; then
/// check the input did not change. Returns the bytes written and the digests.
fn stream(
    input: &dyn Source,
    whole: u64,
    sink: &mut dyn Sink,
    tuning: &Tuning,
    hash: Hash,
    events: &dyn Events,
    transform: impl Transform,
) -> Result<(u64, Digests)> {
    let len = input.len();
    let inline = len <= tuning.window as u64;
    let (placement, hasher) = Placement::of(hash, inline);
    // What the writer thread hashes as it writes (SHA-256 of what is opened).
    let (mut here, mut at_writer) = match placement {
        Placement::OutputAtWriter => (None, Some(hasher)),
        _ => (Some(hasher), None),
    };
    let input_side = matches!(placement, Placement::InputAside | Placement::InputBeside);
    std::thread::scope(move |scope| {
        let mut feed = None;
        let mut hashing = None;
        if placement == Placement::InputAside {
            let mut h = here.take().expect("the hasher is here");
            let (to_hash, windows) = bounded::<Arc<Vec<u8>>>(1);
            let (free_tx, free_rx) = bounded::<Vec<u8>>(4);
            let back = free_tx.clone();
            hashing = Some(scope.spawn(move || {
                for buf in windows {
                    h.update(&buf);
                    if let Some(buf) = Arc::into_inner(buf) {
                        let _ = back.try_send(buf);
                    }
                }
                h
            }));
            feed = Some((to_hash, free_tx, free_rx));
        }
        let mut transform = Some(transform);
        let mut scratch = Vec::new();
        let mut at = 0u64;
        let mut written = 0u64;
        let rest = (len - whole) as usize;
        // The bytes past the last whole block, read with the last window of
        // whole blocks (one read, so one GET of a small S3 object, not two).
        let mut tail: Option<Vec<u8>> = None;
        let result = drive(sink, inline, tuning.depth, at_writer.as_mut(), |out| {
            if at < whole {
                let n = (whole - at).min(tuning.window as u64) as usize;
                // The last whole window takes the tail along; it is hashed with it.
                let extra = if at + n as u64 == whole { rest } else { 0 };
                out.resize(n, 0);
                let t = transform.as_mut().expect("not finished");
                match (&feed, here.as_mut().filter(|_| placement != Placement::Idle)) {
                    (Some((to_hash, free_tx, free_rx)), _) => {
                        let mut buf = free_rx.try_recv().unwrap_or_default();
                        input.read_into(at, n + extra, &mut buf)?;
                        let buf = Arc::new(buf);
                        // Waits only while the hash is a whole window behind: SHA-256 then sets the pace.
                        let _ = to_hash.send(buf.clone());
                        t.update(&buf[..n], out, None);
                        if extra > 0 {
                            tail = Some(buf[n..].to_vec());
                        }
                        if let Some(buf) = Arc::into_inner(buf) {
                            let _ = free_tx.try_send(buf);
                        }
                    }
                    // The hash and the cipher's chunks share the pool.
                    (None, Some(h)) if input_side => {
                        let data = input.window(at, n + extra, &mut scratch)?;
                        beside(data.len(), || h.update(&data), || t.update(&data[..n], out, None));
                        if extra > 0 {
                            tail = Some(data[n..].to_vec());
                        }
                    }
                    (None, h) => {
                        let data = input.window(at, n + extra, &mut scratch)?;
                        t.update(&data[..n], out, h.filter(|_| placement == Placement::Inside));
                        if extra > 0 {
                            tail = Some(data[n..].to_vec());
                        }
                    }
                }
                at += n as u64;
                events.emit(Event::Progress { bytes: n as u64 });
            } else {
                out.clear();
            }
            if at == whole {
                // Read with the last window, or alone when there is no whole block.
                let (tail, hashed) = match tail.take() {
                    Some(tail) => (tail, true),
                    None if rest == 0 && whole > 0 => (Vec::new(), true),
                    None => (input.window(whole, rest, &mut scratch)?.to_vec(), false),
                };
                if input_side && !hashed {
                    match (&feed, here.as_mut()) {
                        (Some((to_hash, _, _)), _) => {
                            let _ = to_hash.send(Arc::new(tail.clone()));
                        }
                        (None, Some(h)) => h.update(&tail),
                        (None, None) => unreachable!("the hasher is here or on its thread"),
                    }
                }
                let inside = here.as_mut().filter(|_| placement == Placement::Inside);
                transform.take().expect("last window once").last(&tail, out, inside)?;
                events.emit(Event::Progress { bytes: rest as u64 });
            }
            // What was opened, hashed in parallel pieces once the cipher made it.
            if let Some(h) = here.as_mut().filter(|_| placement == Placement::OutputBeside) {
                h.update(out);
            }
            written += out.len() as u64;
            Ok(at < whole)
        })
        .and_then(|()| input.finish());
        // Ends the hashing thread's loop.
        drop(feed);
        if let Some(thread) = hashing {
            here = Some(thread.join().expect("hashing thread panicked"));
        }
        result?;
        let hasher = here.or(at_writer).expect("one of them holds the hasher");
        Ok((written, hasher.finalize()))
    })
}

/// Run `produce` until it returns `false`, writing each buffer it fills to
/// `sink` (after hashing it into `digest`, if given). With `inline`, all on
/// this thread; otherwise writing happens on a writer thread fed through a
/// bounded channel, with buffers recycled through a second one.
fn drive(
    sink: &mut dyn Sink,
    inline: bool,
    depth: usize,
    mut digest: Option<&mut Hasher>,
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
    use crate::store::local::Input;
    use crate::keys::DataKey;
    use crate::format::Iv;

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
        // Windows of 64 KiB (the threaded path, each window below
        // BESIDE_MIN: hashed then encrypted in turn) and of 256 KiB (hashed
        // beside the cipher on the pool), and a file within one window (inline).
        for (len, window) in [1000usize, 300_017, (1 << 20) + 4099].into_iter().flat_map(|len| [(len, 64 << 10), (len, 256 << 10)]) {
            let plain: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join(format!("in-{len}"));
            std::fs::write(&path, &plain).unwrap();
            let tuning = Tuning { chunk: 4096, window, depth: 2 };
            for (mode, alg) in Mode::ALL.into_iter().flat_map(|m| DigestAlg::ALL.map(|a| (m, a))) {
                let want = seal_to_vec(mode, &key, Iv::from_slice(&iv).unwrap(), 16, &plain);
                let input = Input::open(&path).unwrap();
                let mut sink = Collect(Vec::new());
                let sealer = Sealer::new(mode, &key, Iv::from_slice(&iv).unwrap(), tuning.chunk);
                let sealed = seal(&input, sealer, &mut sink, &tuning, alg, &crate::events::Silent).unwrap();
                assert!(sink.0 == want, "{mode} {len}");
                assert_eq!(sealed.cipher_len, want.len() as u64);
                assert_eq!(sealed.digest().bytes(), &hasher::reference::reference(alg, &plain)[..], "{mode} {alg} {len}");

                let ct_path = dir.path().join(format!("ct-{len}-{mode}"));
                std::fs::write(&ct_path, &want).unwrap();
                let input = Input::open(&ct_path).unwrap();
                let mut sink = Collect(Vec::new());
                let opener = Opener::new(mode, &key, &Iv::from_slice(&iv).unwrap(), tuning.chunk);
                let opened = open(&input, mode, opener, &mut sink, &tuning, alg, &crate::events::Silent).unwrap();
                assert!(sink.0 == plain, "{mode} {len} open");
                assert_eq!(opened.digest(), sealed.digest(), "{mode} {alg} {len} open");
                assert_eq!(open_to_vec(mode, &key, &Iv::from_slice(&iv).unwrap(), 16, &want).unwrap(), plain);
            }
        }
    }
}
