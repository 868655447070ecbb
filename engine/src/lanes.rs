//! The multi-buffer CBC runner: a batch of files sharing one data key,
//! encrypted [`CBC_LANES`] at a time per thread so their CBC chains overlap
//! in the CPU (see [`crate::cipher::CbcBatch`]).
//!
//! Each worker keeps up to `CBC_LANES` files open. Every step it reads the
//! next window of each (the same length for all: the least any of them has
//! left, at most [`STEP`]), hashes each plaintext, encrypts all windows in
//! lockstep, and writes each to its own pending output. A file whose whole
//! blocks are done is padded, committed and recorded, and its lane takes the
//! next file of the batch. A failure ends only that file.

use std::path::Path;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::batch::{file_record, open_planned, EncryptJob, Planned, Tally};
use crate::cipher::{CbcBatch, CBC_LANES};
use crate::error::Result;
use crate::io::{Input, PendingOutput, Source};
use crate::keycache::Material;
use crate::params::{Iv, BLOCK};
use crate::pipeline::Sealed;

/// Bytes per lane per step.
const STEP: usize = 1 << 20;

struct Lane<'f> {
    file: &'f Planned,
    input: Input,
    output: Box<dyn PendingOutput>,
    hasher: Sha256,
    iv: Vec<u8>,
    at: u64,
    whole: u64,
    scratch: Vec<u8>,
    out: Vec<u8>,
}

/// Encrypt `files` (CBC, all under `material`'s key: a supplied key, or one
/// cached key of `--reuse-key`) with `CBC_LANES` files per thread.
pub(crate) fn encrypt_cbc(job: &EncryptJob<'_>, files: &[Planned], material: &Material, out_real: Option<&Path>, tally: &Tally<'_>) {
    let queue = Mutex::new(files.iter());
    let next = || queue.lock().unwrap_or_else(|p| p.into_inner()).next();
    rayon::scope(|scope| {
        for _ in 0..rayon::current_num_threads() {
            scope.spawn(|_| worker(job, material, out_real, tally, &next));
        }
    });
}

fn worker<'f>(job: &EncryptJob<'_>, material: &Material, out_real: Option<&Path>, tally: &Tally<'_>, next: &(dyn Fn() -> Option<&'f Planned> + Sync)) {
    let mut batch = CbcBatch::new(&material.key);
    let mut lanes: Vec<Option<Lane<'f>>> = (0..CBC_LANES).map(|_| None).collect();
    loop {
        // Fill empty lanes.
        for (i, slot) in lanes.iter_mut().enumerate() {
            while slot.is_none() {
                let Some(file) = next() else { break };
                match open_lane(job, material, file, out_real) {
                    Ok((lane, iv)) => {
                        batch.start(i, iv);
                        *slot = Some(lane);
                    }
                    Err(e) => tally.record(file, Err(e)),
                }
            }
        }
        let active: Vec<usize> = (0..CBC_LANES).filter(|&i| lanes[i].is_some()).collect();
        if active.is_empty() {
            return;
        }
        let step = active
            .iter()
            .map(|&i| lanes[i].as_ref().map_or(0, |l| l.whole - l.at))
            .min()
            .unwrap_or(0)
            .min(STEP as u64) as usize;
        if step > 0 {
            step_lanes(&mut batch, &mut lanes, &active, step, tally);
        }
        // Finish lanes whose whole blocks are done.
        for i in 0..CBC_LANES {
            if lanes[i].as_ref().is_some_and(|l| l.at == l.whole) {
                let lane = lanes[i].take().expect("checked");
                let file = lane.file;
                let result = finish_lane(job, material, &mut batch, i, lane);
                tally.record(file, result);
            }
        }
    }
}

fn open_lane<'f>(job: &EncryptJob<'_>, material: &Material, file: &'f Planned, out_real: Option<&Path>) -> Result<(Lane<'f>, Iv)> {
    let input = open_planned(file, out_real)?;
    let iv = match &job.iv {
        Some(bytes) => Iv::from_slice(bytes)?,
        None => material.fresh_iv(BLOCK)?,
    };
    let len = input.len();
    let output = job.destination.create(&file.relative, job.mode.sealed_len(len), file.replace)?;
    let lane = Lane {
        file,
        input,
        output,
        hasher: Sha256::new(),
        iv: iv.as_bytes().to_vec(),
        at: 0,
        whole: len - len % BLOCK as u64,
        scratch: Vec::new(),
        out: Vec::new(),
    };
    Ok((lane, iv))
}

/// Read, hash, encrypt and write `step` bytes of every active lane.
fn step_lanes(batch: &mut CbcBatch, lanes: &mut [Option<Lane<'_>>], active: &[usize], step: usize, tally: &Tally<'_>) {
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
                    hasher.update(&*w);
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
                tally.reporter.progress(step as u64);
            }
            Err(e) => failed.push((i, e)),
        }
    }
    for (i, e) in failed {
        let lane = lanes[i].take().expect("active");
        tally.record(lane.file, Err(e)); // dropping the lane discards its output
    }
}

fn finish_lane(job: &EncryptJob<'_>, material: &Material, batch: &mut CbcBatch, i: usize, mut lane: Lane<'_>) -> Result<crate::manifest::Record> {
    let len = lane.input.len();
    let rest = (len - lane.whole) as usize;
    let tail = lane.input.window(lane.whole, rest, &mut lane.scratch)?.to_vec();
    lane.hasher.update(&tail);
    let last = batch.finish(i, &tail);
    lane.output.write(&last)?;
    lane.input.finish()?;
    let committed = lane.output.commit()?;
    let sealed = Sealed { plain_len: len, cipher_len: job.mode.sealed_len(len), sha256: lane.hasher.finalize().into() };
    let iv = Iv::from_slice(&lane.iv)?;
    Ok(file_record(job, lane.file, &material.key, material.source, &material.wrapped, &iv, &sealed, &committed))
}
