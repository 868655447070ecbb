//! Throughput measurement on the target hardware (`sealpipe bench`).
//!
//! Measures the engine as the CLI uses it: in memory (the cipher alone, one
//! message, parallel chunks; CBC as a batch of independent files) and file →
//! file (read, encrypt + SHA-256, write to a temporary output), per mode, key
//! size and thread count. Nothing here prints; the CLI renders the results.

use std::path::Path;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::cipher::{CbcBatch, Sealer, CBC_LANES};
use crate::error::{Error, Result};
use crate::store::local::{Input, Output};
use crate::keys::DataKey;
use crate::format::{Iv, KeyBits, Mode};
use crate::pipeline::{self, Tuning};

/// CPU features that decide which AES/GHASH/SHA backends run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CpuFeatures {
    /// CPU model name, where the OS tells it.
    pub model: String,
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// Feature name → detected.
    pub features: Vec<(&'static str, bool)>,
}

/// Detect the features relevant to sealpipe.
pub fn cpu_features() -> CpuFeatures {
    #[allow(unused_mut)]
    let mut features = Vec::new();
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        features.push(("aes-ni", std::arch::is_x86_feature_detected!("aes")));
        features.push(("vaes", std::arch::is_x86_feature_detected!("vaes")));
        features.push(("avx2", std::arch::is_x86_feature_detected!("avx2")));
        features.push(("avx512f", std::arch::is_x86_feature_detected!("avx512f")));
        features.push(("pclmulqdq", std::arch::is_x86_feature_detected!("pclmulqdq")));
        features.push(("vpclmulqdq", std::arch::is_x86_feature_detected!("vpclmulqdq")));
        features.push(("sha-ni", std::arch::is_x86_feature_detected!("sha")));
    }
    #[cfg(target_arch = "aarch64")]
    {
        features.push(("aes", std::arch::is_aarch64_feature_detected!("aes")));
        features.push(("pmull", std::arch::is_aarch64_feature_detected!("pmull")));
        features.push(("sha2", std::arch::is_aarch64_feature_detected!("sha2")));
    }
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    CpuFeatures { model, cpus: std::thread::available_parallelism().map_or(1, |n| n.get()), features }
}

/// What a measurement covered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// Cipher only, one buffer in memory (CBC: a batch of buffers under one
    /// key, 8 per thread, multi-buffer).
    Memory,
    /// Whole pipeline, file to file, page cache warm.
    File,
}

/// One measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measurement {
    /// Memory or file.
    pub scope: Scope,
    /// Mode.
    pub mode: Mode,
    /// Key size in bits.
    pub key_bits: u16,
    /// Threads in the pool.
    pub threads: usize,
    /// Files the bytes were spread over (1, or the CBC batch size).
    pub files: usize,
    /// Bytes processed per iteration.
    pub bytes: u64,
    /// Best (shortest) iteration in seconds.
    pub seconds: f64,
    /// Throughput of the best iteration, GB/s (10^9 B/s).
    pub gb_per_s: f64,
    /// `gb_per_s / (threads × gb_per_s at 1 thread)`.
    pub efficiency: f64,
}

/// What to measure.
pub struct BenchPlan<'a> {
    /// Modes.
    pub modes: Vec<Mode>,
    /// Key sizes.
    pub key_bits: Vec<KeyBits>,
    /// Thread counts (1 first).
    pub threads: Vec<usize>,
    /// Bytes per in-memory iteration.
    pub memory_bytes: usize,
    /// File size for file → file runs (0 to skip).
    pub file_bytes: u64,
    /// Folder for the temporary files.
    pub dir: &'a Path,
    /// Minimum measuring time per case.
    pub min_time: Duration,
    /// Parallel chunk size.
    pub chunk: usize,
}

/// The thread counts 1, 2, 4, … up to and including `max`.
pub fn thread_ladder(max: usize) -> Vec<usize> {
    let mut v = vec![1];
    while *v.last().expect("non-empty") * 2 < max {
        v.push(v.last().expect("non-empty") * 2);
    }
    if max > 1 {
        v.push(max);
    }
    v
}

/// Files in a CBC batch for `threads` threads: one multi-buffer group of
/// [`CBC_LANES`] files per thread, all under one data key.
pub fn cbc_batch(threads: usize) -> usize {
    CBC_LANES * threads
}

fn best_of(min_time: Duration, mut once: impl FnMut() -> Result<()>) -> Result<f64> {
    let started = Instant::now();
    let mut best = f64::INFINITY;
    let mut runs = 0;
    while runs < 3 || started.elapsed() < min_time {
        let t = Instant::now();
        once()?;
        best = best.min(t.elapsed().as_secs_f64());
        runs += 1;
    }
    Ok(best)
}

fn fill(buf: &mut [u8]) {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// Run the plan; `each` sees every measurement as it completes.
pub fn run(plan: &BenchPlan<'_>, mut each: impl FnMut(&Measurement)) -> Result<Vec<Measurement>> {
    let mut results: Vec<Measurement> = Vec::new();
    let mut input = vec![0u8; plan.memory_bytes];
    fill(&mut input);
    let mut output = vec![0u8; plan.memory_bytes];
    let file_path = plan.dir.join(".sealpipe-bench-input");
    if plan.file_bytes > 0 {
        write_file(&file_path, plan.file_bytes)?;
    }
    for &mode in &plan.modes {
        for &bits in &plan.key_bits {
            let key = DataKey::random(bits)?;
            for scope in [Scope::Memory, Scope::File] {
                if scope == Scope::File && plan.file_bytes == 0 {
                    continue;
                }
                let mut single = None;
                for &threads in &plan.threads {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .map_err(|e| Error::Usage(format!("cannot start {threads} threads: {e}")))?;
                    let tuning = Tuning::for_threads(threads, plan.chunk);
                    let (files, bytes, seconds) = pool.install(|| match scope {
                        Scope::Memory => memory_case(mode, &key, plan, &input, &mut output, threads),
                        Scope::File => file_case(mode, &key, plan, &file_path, &tuning),
                    })?;
                    let gb_per_s = bytes as f64 / seconds / 1e9;
                    let base = *single.get_or_insert(gb_per_s);
                    let m = Measurement {
                        scope,
                        mode,
                        key_bits: u16::from(bits),
                        threads,
                        files,
                        bytes,
                        seconds,
                        gb_per_s,
                        efficiency: gb_per_s / (base * threads as f64),
                    };
                    each(&m);
                    results.push(m);
                }
            }
        }
    }
    let _ = std::fs::remove_file(&file_path);
    Ok(results)
}

fn memory_case(mode: Mode, key: &DataKey, plan: &BenchPlan<'_>, input: &[u8], output: &mut [u8], threads: usize) -> Result<(usize, u64, f64)> {
    let len = input.len() - input.len() % 16;
    if mode == Mode::Cbc {
        // CBC encryption is sequential per file: measure a batch of files.
        let files = cbc_batch(threads);
        let per = (len / files) & !15;
        let group = per * CBC_LANES;
        let secs = best_of(plan.min_time, || {
            input[..per * files]
                .par_chunks(group)
                .zip(output[..per * files].par_chunks_mut(group))
                .try_for_each(|(i, o)| {
                    let mut batch = CbcBatch::new(key);
                    for lane in 0..CBC_LANES {
                        batch.start(lane, Iv::random(16)?);
                    }
                    let lanes: Vec<usize> = (0..CBC_LANES).collect();
                    let inputs: Vec<&[u8]> = i.chunks(per).collect();
                    let mut outputs: Vec<&mut [u8]> = o.chunks_mut(per).collect();
                    batch.update(&lanes, &inputs, &mut outputs);
                    Ok(())
                })
        })?;
        return Ok((files, (per * files) as u64, secs));
    }
    let secs = best_of(plan.min_time, || {
        let mut s = Sealer::new(mode, key, Iv::random(16)?, plan.chunk);
        s.update(&input[..len], &mut output[..len]);
        Ok(())
    })?;
    Ok((1, len as u64, secs))
}

fn file_case(mode: Mode, key: &DataKey, plan: &BenchPlan<'_>, path: &Path, tuning: &Tuning) -> Result<(usize, u64, f64)> {
    let out_path = plan.dir.join(".sealpipe-bench-output");
    let secs = best_of(plan.min_time, || {
        let input = Input::open(path)?;
        let mut out = Output::create(&out_path, true)?;
        let sealer = Sealer::new(mode, key, Iv::random(16)?, tuning.chunk);
        pipeline::seal(&input, sealer, &mut out, tuning, &|_| {})?;
        out.commit()
    })?;
    let _ = std::fs::remove_file(&out_path);
    Ok((1, plan.file_bytes, secs))
}

fn write_file(path: &Path, len: u64) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, "create", e))?;
    let mut block = vec![0u8; 8 << 20];
    fill(&mut block);
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).map_err(|e| Error::io(path, "write", e))?;
        left -= n as u64;
    }
    Ok(())
}
