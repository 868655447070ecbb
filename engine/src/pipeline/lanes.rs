//! The multi-buffer CBC path: files sharing one data key, encrypted
//! [`CBC_LANES`] at a time per thread so their CBC chains overlap in the CPU
//! (see [`crate::cipher::CbcBatch`]). The same source → cipher + digest →
//! sink path as [`super::seal`], with one cipher call over many files.
//!
//! Each worker keeps up to `CBC_LANES` files open. Every step it reads the
//! next window of each (the same length for all: the least any of them has
//! left, at most [`STEP`]), hashes each plaintext (any `--digest`), encrypts all windows in
//! lockstep, and writes each to its own pending output. A file whose whole
//! blocks are done is padded, committed and recorded, and its lane takes the
//! next file of the batch. A failure ends only that file.

use super::hasher::Hasher;
use super::Sealed;
use crate::cipher::{CbcBatch, CBC_LANES};
use crate::error::Result;
use crate::format::digest::DigestAlg;
use crate::format::{Iv, Mode, BLOCK};
use crate::keys::DataKey;
use crate::events::{Event, Events};
use crate::store::{Committed, PendingOutput, Source};

/// The files of one multi-buffer run, as the caller sees them.
pub trait LaneFiles: Sync {
    /// One file, as the caller names it.
    type File: Sync;
    /// The next file to start, if any (called from every worker).
    fn next(&self) -> Option<&Self::File>;
    /// Open a file: its plaintext, its pending output, its IV.
    fn open(&self, file: &Self::File) -> Result<(Box<dyn Source>, Box<dyn PendingOutput>, Iv)>;
    /// The data key of every file, once one has opened (a caller may make
    /// the key only then, so that refused outputs ask its provider for nothing).
    fn key(&self) -> &DataKey;
    /// A file finished: sealed and committed, or failed (its output discarded).
    fn done(&self, file: &Self::File, result: Result<(Sealed, Committed, Iv)>);
    /// Where the bytes processed are told ([`Event::Progress`]).
    fn events(&self) -> &dyn Events;
}

/// Bytes per lane per step: a worker holds two buffers of this per lane
/// (plaintext read, ciphertext out), so `2 × CBC_LANES × step` in all, which
/// is kept within one pipeline window (see [`step_for`]).
fn step_for(window: usize) -> usize {
    let step = (window / (2 * CBC_LANES)).clamp(64 << 10, 1 << 20);
    step - step % BLOCK
}

struct Lane<'f, F> {
    file: &'f F,
    input: Box<dyn Source>,
    output: Box<dyn PendingOutput>,
    hasher: Hasher,
    iv: Iv,
    at: u64,
    whole: u64,
    scratch: Vec<u8>,
    out: Vec<u8>,
}

/// Encrypt every file `files` hands out (CBC, all under its one key), with
/// `CBC_LANES` files per thread of the current rayon pool, holding at most
/// `window` bytes of buffers per thread, each plaintext's `digest` made as it is read.
pub fn seal_cbc<L: LaneFiles>(files: &L, window: usize, digest: DigestAlg) {
    let step = step_for(window);
    rayon::scope(|scope| {
        for _ in 0..rayon::current_num_threads() {
            scope.spawn(|_| worker(files, step, digest));
        }
    });
}

fn worker<L: LaneFiles>(files: &L, step_max: usize, digest: DigestAlg) {
    // Made once a file has opened (the key may not exist before).
    let mut batch: Option<CbcBatch> = None;
    let mut lanes: Vec<Option<Lane<'_, L::File>>> = (0..CBC_LANES).map(|_| None).collect();
    loop {
        // Fill empty lanes.
        for (i, slot) in lanes.iter_mut().enumerate() {
            while slot.is_none() {
                let Some(file) = files.next() else { break };
                match files.open(file) {
                    Ok((input, output, iv)) => {
                        let len = input.len();
                        let batch = batch.get_or_insert_with(|| CbcBatch::new(files.key()));
                        batch.start(i, Iv::from_slice(iv.as_bytes()).expect("an IV's own bytes make a valid IV"));
                        *slot = Some(Lane { file, input, output, hasher: Hasher::new(digest), iv, at: 0, whole: len - len % BLOCK as u64, scratch: Vec::new(), out: Vec::new() });
                    }
                    Err(e) => files.done(file, Err(e)),
                }
            }
        }
        let active: Vec<usize> = (0..CBC_LANES).filter(|&i| lanes[i].is_some()).collect();
        // No open lane: no file left (and a lane open means the batch was made).
        let Some(batch) = batch.as_mut().filter(|_| !active.is_empty()) else { return };
        let step = active
            .iter()
            .map(|&i| lanes[i].as_ref().map_or(0, |l| l.whole - l.at))
            .min()
            .unwrap_or(0)
            .min(step_max as u64) as usize;
        if step > 0 {
            step_lanes(batch, &mut lanes, &active, step, files);
        }
        // Finish lanes whose whole blocks are done.
        for i in 0..CBC_LANES {
            if lanes[i].as_ref().is_some_and(|l| l.at == l.whole) {
                let lane = lanes[i].take().expect("checked");
                let file = lane.file;
                files.done(file, finish_lane(batch, i, lane));
            }
        }
    }
}

/// Read, hash, encrypt and write `step` bytes of every active lane.
fn step_lanes<L: LaneFiles>(batch: &mut CbcBatch, lanes: &mut [Option<Lane<'_, L::File>>], active: &[usize], step: usize, files: &L) {
    let mut failed = Vec::new();
    {
        let mut ids = Vec::with_capacity(active.len());
        let mut windows = Vec::with_capacity(active.len());
        let mut outs = Vec::with_capacity(active.len());
        for (i, slot) in lanes.iter_mut().enumerate() {
            let Some(lane) = slot.as_mut().filter(|_| active.contains(&i)) else { continue };
            let Lane { input, scratch, out, hasher, at, .. } = lane;
            match input.window(*at, step, scratch) {
                Ok(w) => {
                    hasher.update(&w);
                    out.resize(step, 0);
                    ids.push(i);
                    windows.push(w);
                    outs.push(&mut out[..]);
                }
                Err(e) => failed.push((i, e)),
            }
        }
        let inputs: Vec<&[u8]> = windows.iter().map(|w| &**w).collect();
        batch.update(&ids, &inputs, &mut outs);
    }
    for &i in active {
        if failed.iter().any(|(f, _)| *f == i) {
            continue;
        }
        let lane = lanes[i].as_mut().expect("active");
        match lane.output.write(&lane.out) {
            Ok(()) => {
                lane.at += step as u64;
                files.events().emit(Event::Progress { bytes: step as u64 });
            }
            Err(e) => failed.push((i, e)),
        }
    }
    for (i, e) in failed {
        let lane = lanes[i].take().expect("active");
        files.done(lane.file, Err(e)); // dropping the lane discards its output
    }
}

fn finish_lane<F>(batch: &mut CbcBatch, i: usize, mut lane: Lane<'_, F>) -> Result<(Sealed, Committed, Iv)> {
    let len = lane.input.len();
    let rest = (len - lane.whole) as usize;
    let tail = lane.input.window(lane.whole, rest, &mut lane.scratch)?.to_vec();
    lane.hasher.update(&tail);
    let last = batch.finish(i, &tail);
    lane.output.write(&last)?;
    lane.input.finish()?;
    let committed = lane.output.commit()?;
    let sealed = Sealed { plain_len: len, cipher_len: Mode::Cbc.sealed_len(len), digests: lane.hasher.finalize() };
    Ok((sealed, committed, lane.iv))
}
