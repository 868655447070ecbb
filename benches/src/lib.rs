//! Throughput measurement on the target hardware (`sealpipe bench`).
//!
//! Measures the engine as the CLI uses it, per mode, key size, direction and
//! thread count:
//!
//! * in memory (the cipher alone) at two buffer sizes, one that fits the
//!   caches and one that does not; CBC encryption as one file (sequential,
//!   one thread) and as N files interleaved (the multi-buffer path);
//! * file → file through the one data path (read, cipher + SHA-256, write),
//!   page cache warm, and with the output synced to disk;
//! * SHA-256 alone (the digest every file pays, on one core);
//! * with [`S3Plan`] (`--to s3://…`), file → S3: the bench file encrypted
//!   and uploaded through the same store as `encrypt --to`, per part size
//!   and part concurrency, at the most threads (the scratch object is
//!   deleted at the end);
//! * peers in the same run: `openssl speed -evp` per mode and `cp` for
//!   file → file ([`peers`]).
//!
//! Every case is measured `repeat` times, the repeats interleaved across
//! cases (round 1 of every case, then round 2, …) so that drift on a shared
//! machine hits all cases alike; a row reports the median and min–max.
//! Nothing here prints; the CLI renders the [`Report`] (text, JSON,
//! [`html`]), compares reports ([`compare`]) and plans capacity
//! ([`capacity`]).

pub mod capacity;
pub mod html;
mod machine;
pub mod peers;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::Digest;

pub use machine::{describe_machine, Machine};

use sealpipe::format::digest::DigestAlg;
use sealpipe::cipher::{kernel_name, CbcBatch, Opener, Sealer, CBC_LANES};
use sealpipe::error::{Error, Result};
use sealpipe::events::{Event, Events, Silent};
use sealpipe::format::{Iv, KeyBits, Mode};
use sealpipe::keys::DataKey;
use sealpipe::pipeline::{self, Tuning};
use sealpipe::store::local::{Input, Output};
use sealpipe::store::{s3::UploadSettings, Source as _, Stores};

/// An I/O error on `path` (`op`: what was attempted), as the engine reports them.
pub(crate) fn io_error(path: impl AsRef<Path>, op: &'static str, source: std::io::Error) -> Error {
    Error::Io { path: path.as_ref().to_path_buf(), op, source }
}

/// `path` cannot be used as asked.
pub(crate) fn invalid(path: impl AsRef<Path>, reason: impl Into<String>) -> Error {
    Error::Invalid { path: path.as_ref().to_path_buf(), reason: reason.into() }
}

/// The `schema` of a report this version writes.
pub const SCHEMA: &str = "sealpipe-bench/1";

/// Spread ((max − min) / median) above which a row is flagged.
pub const WIDE_SPREAD: f64 = 0.25;

/// Median and range of a row's samples, GB/s (10^9 bytes per second).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct Stat {
    /// Median of the samples.
    pub median: f64,
    /// Slowest sample.
    pub min: f64,
    /// Fastest sample.
    pub max: f64,
}

impl Stat {
    /// The statistics of `samples` (not empty).
    pub fn of(samples: &[f64]) -> Stat {
        let mut s = samples.to_vec();
        s.sort_by(|a, b| a.total_cmp(b));
        let n = s.len();
        let median = if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 };
        Stat { median, min: s[0], max: s[n - 1] }
    }

    /// (max − min) / median.
    pub fn spread(&self) -> f64 {
        if self.median > 0.0 { (self.max - self.min) / self.median } else { 0.0 }
    }
}

/// One measured case: a sealpipe row or a peer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    /// Stable key of the case, the same on every machine for the same
    /// settings: `scope/buffer/mode-bits/direction/layout/Nt` (peers:
    /// `openssl/…`, `cp/…`). `--compare` matches rows by it.
    pub id: String,
    /// `memory`, `file`, `file-synced`, `digest`, or for peers `openssl`, `cp`.
    pub scope: String,
    /// `cache` or `large` (memory), `warm` or `synced` (file).
    pub buffer: String,
    /// `ctr`, `cbc`, `gcm`, or `sha256`.
    pub mode: String,
    /// AES key size (0 for the digest and `cp`).
    pub key_bits: u16,
    /// `encrypt`, `decrypt`, `hash` or `copy`.
    pub direction: String,
    /// Threads in the pool.
    pub threads: usize,
    /// Files processed at once.
    pub files: usize,
    /// "one file" or "N files interleaved".
    pub layout: String,
    /// The kernel that ran (`cipher::kernel_name`), or the peer program.
    pub kernel: String,
    /// Bytes per operation (plaintext).
    pub bytes: u64,
    /// GB/s of each repeat, in the order they ran.
    pub samples: Vec<f64>,
    /// Median and min–max of `samples`.
    pub gb_per_s: Stat,
    /// (max − min) / median.
    pub spread: f64,
    /// `spread` above [`WIDE_SPREAD`].
    pub wide_spread: bool,
    /// median / (threads × median of the same case at 1 thread); absent
    /// where there is no 1-thread row.
    pub efficiency: Option<f64>,
    /// Id of the peer row this row is compared with.
    pub peer: Option<String>,
    /// median / the peer's median.
    pub ratio_to_peer: Option<f64>,
    /// Objects per operation, for the small-object rows (`scope` `s3-small`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<u64>,
    /// Objects per second at the median, for the small-object rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects_per_s: Option<f64>,
}

/// What a run was asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Repeats per case.
    pub repeat: usize,
    /// Minimum measuring time per sample, seconds.
    pub seconds: f64,
    /// The in-memory buffer that fits the caches (0: not measured).
    pub cache_bytes: u64,
    /// The in-memory buffer that does not.
    pub memory_bytes: u64,
    /// File size for file → file (0: not measured).
    pub file_bytes: u64,
    /// Parallel work unit.
    pub chunk: usize,
    /// Thread ladder.
    pub threads: Vec<usize>,
}

/// A whole run: what `--json` prints and `--report` embeds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: String,
    /// sealpipe version.
    pub version: String,
    /// The exact command line.
    pub command: String,
    /// When the run started, seconds since 1970 (UTC).
    pub started_unix: u64,
    /// Wall time of the run, seconds.
    pub wall_seconds: f64,
    /// The machine.
    pub machine: Machine,
    /// The settings.
    pub settings: Settings,
    /// sealpipe rows.
    pub rows: Vec<Row>,
    /// Peer rows (`openssl speed`, `cp`).
    pub peers: Vec<Row>,
    /// What the reader should know (wide spreads, missing peers, forced kernels).
    pub warnings: Vec<String>,
}

impl Report {
    /// Every row, sealpipe's then the peers'.
    pub fn all_rows(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().chain(self.peers.iter())
    }
}

/// What to measure.
pub struct BenchPlan<'a> {
    /// Modes.
    pub modes: Vec<Mode>,
    /// Key sizes.
    pub key_bits: Vec<KeyBits>,
    /// Thread counts (1 first).
    pub threads: Vec<usize>,
    /// In-memory buffer that fits the caches (0, or not below `memory_bytes`: skipped).
    pub cache_bytes: usize,
    /// In-memory buffer that does not fit them.
    pub memory_bytes: usize,
    /// File size for file → file runs (0 to skip).
    pub file_bytes: u64,
    /// Folder for the temporary files.
    pub dir: &'a Path,
    /// Minimum measuring time per sample.
    pub min_time: Duration,
    /// Repeats per case, interleaved.
    pub repeat: usize,
    /// Parallel chunk size.
    pub chunk: usize,
    /// Run the peers (`openssl`, `cp`) when they are on the PATH.
    pub peers: bool,
    /// The command line, for the report.
    pub command: String,
    /// File → S3 rows, if asked for.
    pub s3: Option<S3Plan<'a>>,
}

/// File → S3 rows (`--to s3://bucket/prefix/`): the first mode and key size,
/// encrypt, at the most threads, per part size × concurrency.
pub struct S3Plan<'a> {
    /// The prefix the scratch object is written under.
    pub url: String,
    /// Where `url` is reached.
    pub stores: &'a Stores,
    /// Part sizes (each at least S3's 5 MiB).
    pub part_sizes: Vec<u64>,
    /// Parts in flight per upload.
    pub concurrency: Vec<usize>,
    /// Small objects (`count` of `size` bytes, `0` for none), uploaded
    /// `in_flight` at a time as `encrypt --to` keeps files in flight: the
    /// objects/s row beside the GB/s of the large ones.
    pub small: SmallObjects,
}

/// The small-object row of [`S3Plan`].
#[derive(Clone, Copy, Debug)]
pub struct SmallObjects {
    /// Objects per repeat (0: no row).
    pub count: usize,
    /// Bytes each.
    pub size: u64,
    /// Objects in flight at once.
    pub in_flight: usize,
}

/// A size as it is typed (`16MiB`, `100KiB`), for row ids that are stable and readable.
fn size_label(bytes: u64) -> String {
    match bytes {
        b if b > 0 && b % (1 << 30) == 0 => format!("{}GiB", b >> 30),
        b if b > 0 && b % (1 << 20) == 0 => format!("{}MiB", b >> 20),
        b if b > 0 && b % (1 << 10) == 0 => format!("{}KiB", b >> 10),
        b => b.to_string(),
    }
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

fn fill(buf: &mut [u8]) {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in buf.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
}

/// What one case does per operation.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    /// Encrypt one buffer (`cache`: the small one).
    MemSeal { cache: bool },
    /// Encrypt CBC_LANES × threads buffers, interleaved.
    MemCbcBatch { cache: bool },
    /// Decrypt one buffer.
    MemOpen { cache: bool },
    /// SHA-256 of the large buffer.
    Digest,
    /// File → file encryption.
    FileSeal { synced: bool },
    /// File → file decryption.
    FileOpen { synced: bool },
    /// `openssl speed -evp`.
    OpenSsl { decrypt: bool },
    /// `openssl speed -evp sha256`.
    OpenSslDigest,
    /// `cp` of the input file.
    Cp { synced: bool },
    /// File → S3 encryption and upload.
    S3Seal { part_size: u64, concurrency: usize },
    /// Small objects → S3, many in flight.
    S3Small { count: usize, size: u64, in_flight: usize },
}

struct Case {
    row: Row,
    op: Op,
    mode: Option<Mode>,
    key: usize,
}

struct Keyed {
    key: DataKey,
    iv: Iv,
    cipher_file: Option<PathBuf>,
    mode: Mode,
}

fn row(id: String, scope: &str, buffer: &str, mode: &str, key_bits: u16, direction: &str, threads: usize, files: usize, kernel: String, bytes: u64) -> Row {
    let layout = if files == 1 { "one file".to_string() } else { format!("{files} files interleaved") };
    Row {
        id,
        scope: scope.into(),
        buffer: buffer.into(),
        mode: mode.into(),
        key_bits,
        direction: direction.into(),
        threads,
        files,
        layout,
        kernel,
        bytes,
        samples: Vec::new(),
        gb_per_s: Stat { median: 0.0, min: 0.0, max: 0.0 },
        spread: 0.0,
        wide_spread: false,
        efficiency: None,
        peer: None,
        ratio_to_peer: None,
        objects: None,
        objects_per_s: None,
    }
}

/// Run the plan; `events` hears of every sample before it is taken ([`Event::Sample`]).
pub fn run(plan: &BenchPlan<'_>, events: &dyn Events) -> Result<Report> {
    let started = Instant::now();
    let started_unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let machine = describe_machine(plan.dir);
    let mut warnings = Vec::new();
    if let Some(note) = sealpipe::cipher::override_note() {
        warnings.push(note.to_string());
    }
    let cache_bytes = if plan.cache_bytes > 0 && plan.cache_bytes < plan.memory_bytes { plan.cache_bytes } else { 0 };
    let max_threads = *plan.threads.iter().max().unwrap_or(&1);

    // Inputs: one large buffer (the cache one is its front), one file.
    let mut input = vec![0u8; plan.memory_bytes.max(16)];
    fill(&mut input);
    let mut output = vec![0u8; input.len()];
    let file_path = plan.dir.join(format!(".sealpipe-bench-input-{}", std::process::id()));
    let out_path = plan.dir.join(format!(".sealpipe-bench-output-{}", std::process::id()));
    let cp_path = plan.dir.join(format!(".sealpipe-bench-cp-{}", std::process::id()));
    let small_path = plan.dir.join(format!(".sealpipe-bench-small-{}", std::process::id()));
    let _cleanup = Cleanup(vec![file_path.clone(), out_path.clone(), cp_path.clone(), small_path.clone()]);
    if plan.file_bytes > 0 {
        write_file(&file_path, plan.file_bytes)?;
    }

    let mut keys: Vec<Keyed> = Vec::new();
    let mut cases: Vec<Case> = Vec::new();
    let file_threads: Vec<usize> = if max_threads > 1 { vec![1, max_threads] } else { vec![1] };
    for &mode in &plan.modes {
        for &bits in &plan.key_bits {
            let b = u16::from(bits);
            let key = DataKey::random(bits)?;
            let iv = Iv::random(16)?;
            let cipher_file = if plan.file_bytes > 0 {
                let p = plan.dir.join(format!(".sealpipe-bench-{mode}-{b}-{}", std::process::id()));
                let input = Input::open(&file_path)?;
                let mut out = Output::create(&p, true)?;
                pipeline::seal(&input, Sealer::new(mode, &key, Iv::from_slice(iv.as_bytes())?, plan.chunk), &mut out, &Tuning::for_threads(max_threads, plan.chunk), DigestAlg::Sha256, &Silent)?;
                out.commit()?;
                // Outputs are written with O_DIRECT (store::local), so the page cache
                // does not hold this one: read it once, so the decrypt rows start warm
                // like the encrypt rows, whose input was written through the cache.
                std::io::copy(&mut std::fs::File::open(&p).map_err(|e| io_error(&p, "read", e))?, &mut std::io::sink()).map_err(|e| io_error(&p, "read", e))?;
                Some(p)
            } else {
                None
            };
            let k = keys.len();
            keys.push(Keyed { key, iv, cipher_file, mode });
            let kernel = kernel_name(mode).to_string();
            let m = mode.to_string();
            let mut add = |row: Row, op: Op| cases.push(Case { row, op, mode: Some(mode), key: k });
            let buffers: Vec<(&str, bool, usize)> = if cache_bytes > 0 {
                vec![("cache", true, cache_bytes), ("large", false, plan.memory_bytes)]
            } else {
                vec![("large", false, plan.memory_bytes)]
            };
            for &(buffer, cache, size) in &buffers {
                let whole = (size - size % 16) as u64;
                for &t in &plan.threads {
                    if mode == Mode::Cbc {
                        if t == 1 {
                            add(row(format!("memory/{buffer}/{m}-{b}/encrypt/one/1t"), "memory", buffer, &m, b, "encrypt", 1, 1, kernel.clone(), whole), Op::MemSeal { cache });
                        }
                        let files = cbc_batch(t);
                        let per = (size / files) & !15;
                        if per > 0 {
                        add(row(format!("memory/{buffer}/{m}-{b}/encrypt/interleaved/{t}t"), "memory", buffer, &m, b, "encrypt", t, files, kernel.clone(), (per * files) as u64), Op::MemCbcBatch { cache });
                        }
                    } else {
                        add(row(format!("memory/{buffer}/{m}-{b}/encrypt/one/{t}t"), "memory", buffer, &m, b, "encrypt", t, 1, kernel.clone(), whole), Op::MemSeal { cache });
                    }
                    add(row(format!("memory/{buffer}/{m}-{b}/decrypt/one/{t}t"), "memory", buffer, &m, b, "decrypt", t, 1, kernel.clone(), whole), Op::MemOpen { cache });
                }
            }
            if plan.file_bytes > 0 {
                for (scope, buffer, synced) in [("file", "warm", false), ("file-synced", "synced", true)] {
                    for &t in &file_threads {
                        add(row(format!("{scope}/{buffer}/{m}-{b}/encrypt/one/{t}t"), scope, buffer, &m, b, "encrypt", t, 1, kernel.clone(), plan.file_bytes), Op::FileSeal { synced });
                        add(row(format!("{scope}/{buffer}/{m}-{b}/decrypt/one/{t}t"), scope, buffer, &m, b, "decrypt", t, 1, kernel.clone(), plan.file_bytes), Op::FileOpen { synced });
                    }
                }
            }
        }
    }
    let whole = (plan.memory_bytes - plan.memory_bytes % 16) as u64;
    let sha_kernel = if machine.features.get("sha-ni").copied().unwrap_or(false) || machine.features.get("sha2").copied().unwrap_or(false) { "sha2 (sha extensions)" } else { "sha2 (portable)" };
    cases.push(Case { row: row("digest/large/sha256/hash/one/1t".into(), "digest", "large", "sha256", 0, "hash", 1, 1, sha_kernel.into(), whole), op: Op::Digest, mode: None, key: 0 });
    let scratch = format!("sealpipe-bench-{}.bin", std::process::id());
    let mut s3_destinations: BTreeMap<(u64, usize), Box<dyn sealpipe::store::Destination>> = BTreeMap::new();
    let mut small_destination: Option<Box<dyn sealpipe::store::Destination>> = None;
    let small_name = |i: usize| PathBuf::from(format!("{scratch}.small/{i:06}"));
    if let (Some(s3), Some(&mode), Some(&bits)) = (&plan.s3, plan.modes.first(), plan.key_bits.first()) {
        if plan.file_bytes == 0 {
            return Err(Error::Usage("S3 rows upload the bench file: give a --file-size above 0".into()));
        }
        let b = u16::from(bits);
        for &part_size in &s3.part_sizes {
            for &concurrency in &s3.concurrency {
                let settings = UploadSettings { part_size, concurrency, overwrite: true, ..UploadSettings::default() };
                s3_destinations.insert((part_size, concurrency), s3.stores.destination(&s3.url, settings)?);
                let part = size_label(part_size);
                let buffer = format!("{part}x{concurrency}");
                let id = format!("s3/{buffer}/{mode}-{b}/encrypt/one/{max_threads}t");
                let k = keys.iter().position(|k| k.key.bits() == bits && k.mode == mode).expect("a key per mode and size");
                cases.push(Case { row: row(id, "s3", &buffer, &mode.to_string(), b, "encrypt", max_threads, 1, kernel_name(mode).to_string(), plan.file_bytes), op: Op::S3Seal { part_size, concurrency }, mode: Some(mode), key: k });
            }
        }
        let small = s3.small;
        if small.count > 0 {
            let settings = UploadSettings { overwrite: true, ..UploadSettings::default() };
            small_destination = Some(s3.stores.destination(&s3.url, settings)?);
            write_file(&small_path, small.size)?;
            let buffer = format!("{}x{}", size_label(small.size), small.count);
            let id = format!("s3-small/{buffer}/{mode}-{b}/encrypt/{}-in-flight/{max_threads}t", small.in_flight);
            let k = keys.iter().position(|k| k.key.bits() == bits && k.mode == mode).expect("a key per mode and size");
            let mut r = row(id, "s3-small", &buffer, &mode.to_string(), b, "encrypt", max_threads, 1, kernel_name(mode).to_string(), small.size * small.count as u64);
            r.layout = format!("{} in flight", small.in_flight);
            r.objects = Some(small.count as u64);
            cases.push(Case { row: r, op: Op::S3Small { count: small.count, size: small.size, in_flight: small.in_flight }, mode: Some(mode), key: k });
        }
    }

    // Peers.
    let mut peer_cases: Vec<Case> = Vec::new();
    if plan.peers {
        if peers::openssl_version().is_some() {
            for &mode in &plan.modes {
                for &bits in &plan.key_bits {
                    let b = u16::from(bits);
                    for (dir, decrypt) in [("encrypt", false), ("decrypt", true)] {
                        let id = format!("openssl/{mode}-{b}/{dir}");
                        peer_cases.push(Case { row: row(id.clone(), "openssl", "16KiB", &mode.to_string(), b, dir, 1, 1, "openssl speed -evp".into(), 16384), op: Op::OpenSsl { decrypt }, mode: Some(mode), key: 0 });
                        // The same at the most threads (`-multi N`: N processes), the peer of sealpipe's N-thread rows.
                        if max_threads > 1 {
                            let kernel = format!("openssl speed -multi {max_threads} -evp");
                            let r = row(format!("{id}/{max_threads}t"), "openssl", "16KiB", &mode.to_string(), b, dir, max_threads, 1, kernel, 16384);
                            peer_cases.push(Case { row: r, op: Op::OpenSsl { decrypt }, mode: Some(mode), key: 0 });
                        }
                    }
                }
            }
            peer_cases.push(Case { row: row("openssl/sha256/hash".into(), "openssl", "16KiB", "sha256", 0, "hash", 1, 1, "openssl speed -evp".into(), 16384), op: Op::OpenSslDigest, mode: None, key: 0 });
        } else {
            warnings.push("openssl is not on the PATH: no openssl rows, no ratios to openssl".into());
        }
        if plan.file_bytes > 0 {
            if peers::cp_available() {
                for (buffer, synced) in [("warm", false), ("synced", true)] {
                    peer_cases.push(Case { row: row(format!("cp/{buffer}"), "cp", buffer, "copy", 0, "copy", 1, 1, "cp".into(), plan.file_bytes), op: Op::Cp { synced }, mode: None, key: 0 });
                }
            } else {
                warnings.push("cp is not on the PATH: no cp rows".into());
            }
        }
    } else {
        warnings.push("peers not run (--no-peers): no ratios".into());
    }

    let repeat = plan.repeat.max(1);
    let total = (cases.len() + peer_cases.len()) * repeat;
    let openssl_seconds = plan.min_time.as_secs_f64().round().max(1.0) as u32;
    let mut pools: BTreeMap<usize, rayon::ThreadPool> = BTreeMap::new();
    for &t in plan.threads.iter().chain(file_threads.iter()) {
        if let std::collections::btree_map::Entry::Vacant(e) = pools.entry(t) {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .map_err(|e| Error::Usage(format!("cannot start {t} threads: {e}")))?;
            e.insert(pool);
        }
    }
    let mut done = 0;
    for round in 1..=repeat {
        for case in cases.iter_mut().chain(peer_cases.iter_mut()) {
            events.emit(Event::Sample { done, total, round, rounds: repeat, id: &case.row.id });
            let bytes = case.row.bytes;
            let threads = case.row.threads;
            let gbps = match case.op {
                Op::OpenSsl { decrypt } => {
                    let cipher = format!("aes-{}-{}", case.row.key_bits, case.row.mode);
                    peers::openssl_speed(&cipher, decrypt, openssl_seconds, threads).map_err(|e| Error::Usage(format!("openssl speed {cipher}: {e}")))?
                }
                Op::OpenSslDigest => peers::openssl_speed("sha256", false, openssl_seconds, 1).map_err(|e| Error::Usage(format!("openssl speed sha256: {e}")))?,
                Op::Cp { synced } => {
                    let secs = timed(plan.min_time, || peers::cp(&file_path, &cp_path, synced))?;
                    bytes as f64 / secs / 1e9
                }
                op => {
                    let keyed = &keys[case.key];
                    let mode = case.mode;
                    let pool = &pools[&threads];
                    let secs = pool.install(|| {
                        timed(plan.min_time, || match op {
                            Op::MemSeal { cache } => {
                                let len = bytes as usize;
                                let _ = cache;
                                let mut s = Sealer::new(mode.expect("cipher case"), &keyed.key, Iv::random(16)?, plan.chunk);
                                s.update(&input[..len], &mut output[..len]);
                                Ok(())
                            }
                            Op::MemCbcBatch { .. } => {
                                let files = case.row.files;
                                let per = bytes as usize / files;
                                cbc_batch_once(&keyed.key, &input[..per * files], &mut output[..per * files], per)
                            }
                            Op::MemOpen { .. } => {
                                let len = bytes as usize;
                                let mut o = Opener::new(mode.expect("cipher case"), &keyed.key, &keyed.iv, plan.chunk);
                                o.update(&input[..len], &mut output[..len]);
                                Ok(())
                            }
                            Op::Digest => {
                                let d = sha2::Sha256::digest(&input[..bytes as usize]);
                                std::hint::black_box(d);
                                Ok(())
                            }
                            Op::FileSeal { synced } => {
                                let src = Input::open(&file_path)?;
                                let mut out = Output::create(&out_path, true)?;
                                let tuning = Tuning::for_threads(threads, plan.chunk);
                                let sealer = Sealer::new(mode.expect("cipher case"), &keyed.key, Iv::random(16)?, plan.chunk);
                                pipeline::seal(&src, sealer, &mut out, &tuning, DigestAlg::Sha256, &Silent)?;
                                if synced {
                                    out.sync()?;
                                }
                                out.commit()
                            }
                            Op::FileOpen { synced } => {
                                let m = mode.expect("cipher case");
                                let src = Input::open(keyed.cipher_file.as_deref().expect("ciphertext prepared"))?;
                                let mut out = Output::create(&out_path, true)?;
                                let tuning = Tuning::for_threads(threads, plan.chunk);
                                let opener = Opener::new(m, &keyed.key, &keyed.iv, plan.chunk);
                                pipeline::open(&src, m, opener, &mut out, &tuning, DigestAlg::Sha256, &Silent)?;
                                if synced {
                                    out.sync()?;
                                }
                                out.commit()
                            }
                            Op::S3Seal { part_size, concurrency } => {
                                let m = mode.expect("cipher case");
                                let dest = &s3_destinations[&(part_size, concurrency)];
                                let src = Input::open(&file_path)?;
                                let mut out = dest.create(Path::new(&scratch), m.sealed_len(src.len()), true, None)?;
                                let tuning = Tuning::for_threads(threads, plan.chunk);
                                let sealer = Sealer::new(m, &keyed.key, Iv::random(16)?, plan.chunk);
                                pipeline::seal(&src, sealer, &mut *out, &tuning, DigestAlg::Sha256, &Silent)?;
                                out.commit().map(drop)
                            }
                            Op::S3Small { count, size, in_flight } => {
                                let m = mode.expect("cipher case");
                                let dest = small_destination.as_deref().expect("made with the case");
                                let next = std::sync::atomic::AtomicUsize::new(0);
                                let one = |i: usize| -> Result<()> {
                                    let src = Input::open(&small_path)?;
                                    let mut out = dest.create(&small_name(i), m.sealed_len(size), true, None)?;
                                    let tuning = Tuning::for_threads(threads, plan.chunk);
                                    let sealer = Sealer::new(m, &keyed.key, Iv::random(16)?, plan.chunk);
                                    pipeline::seal(&src, sealer, &mut *out, &tuning, DigestAlg::Sha256, &Silent)?;
                                    out.commit().map(drop)
                                };
                                // Each object on a thread of its own while it waits on the network, as encrypt's files in flight.
                                std::thread::scope(|scope| {
                                    let workers: Vec<_> = (0..in_flight.min(count))
                                        .map(|_| {
                                            scope.spawn(|| loop {
                                                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                                if i >= count {
                                                    return Ok(());
                                                }
                                                one(i)?;
                                            })
                                        })
                                        .collect();
                                    workers.into_iter().try_for_each(|w| w.join().unwrap_or_else(|_| Err(Error::Usage("a small-object upload panicked".into()))))
                                })
                            }
                            Op::OpenSsl { .. } | Op::OpenSslDigest | Op::Cp { .. } => unreachable!("peers run above"),
                        })
                    })?;
                    bytes as f64 / secs / 1e9
                }
            };
            case.row.samples.push(gbps);
            done += 1;
        }
    }
    for k in &keys {
        if let Some(p) = &k.cipher_file {
            let _ = std::fs::remove_file(p);
        }
    }
    if let Some(dest) = s3_destinations.values().next() {
        if let Err(e) = dest.remove(Path::new(&scratch)) {
            warnings.push(format!("the scratch object {} is left: {e}", dest.location(Path::new(&scratch))));
        }
    }
    if let (Some(dest), Some(s3)) = (small_destination.as_deref(), &plan.s3) {
        let left = (0..s3.small.count).filter(|&i| dest.remove(&small_name(i)).is_err()).count();
        if left > 0 {
            warnings.push(format!("{left} small scratch objects are left under {}", dest.location(Path::new(&format!("{scratch}.small/")))));
        }
    }

    let mut rows: Vec<Row> = cases.into_iter().map(|c| c.row).collect();
    let mut peer_rows: Vec<Row> = peer_cases.into_iter().map(|c| c.row).collect();
    for r in rows.iter_mut().chain(peer_rows.iter_mut()) {
        r.gb_per_s = Stat::of(&r.samples);
        r.objects_per_s = r.objects.map(|n| r.gb_per_s.median * 1e9 * n as f64 / r.bytes.max(1) as f64);
        r.spread = r.gb_per_s.spread();
        r.wide_spread = repeat > 1 && r.spread > WIDE_SPREAD;
    }
    finish_rows(&mut rows, &peer_rows);
    let wide: Vec<&str> = rows.iter().chain(peer_rows.iter()).filter(|r| r.wide_spread).map(|r| r.id.as_str()).collect();
    if !wide.is_empty() {
        warnings.push(format!(
            "{} row(s) spread more than {:.0}% between repeats (a busy or throttling machine?): {}",
            wide.len(),
            WIDE_SPREAD * 100.0,
            wide.join(", ")
        ));
    }
    if repeat == 1 {
        warnings.push("one repeat per case: no spread measured".into());
    }
    Ok(Report {
        schema: SCHEMA.into(),
        version: env!("CARGO_PKG_VERSION").into(),
        command: plan.command.clone(),
        started_unix,
        wall_seconds: started.elapsed().as_secs_f64(),
        machine,
        settings: Settings {
            repeat,
            seconds: plan.min_time.as_secs_f64(),
            cache_bytes: cache_bytes as u64,
            memory_bytes: plan.memory_bytes as u64,
            file_bytes: plan.file_bytes,
            chunk: plan.chunk,
            threads: plan.threads.clone(),
        },
        rows,
        peers: peer_rows,
        warnings,
    })
}

/// The case's id without its thread count: rows of one group differ only in threads.
pub fn group_of(id: &str) -> &str {
    id.rsplit_once('/').map_or(id, |(g, _)| g)
}

/// The peer a row is compared with: `openssl speed` of the same cipher and
/// direction (one thread, 16 KiB blocks) for memory and digest rows, `cp`
/// for file rows.
pub fn peer_id(r: &Row) -> Option<String> {
    match r.scope.as_str() {
        "memory" => Some(format!("openssl/{}-{}/{}", r.mode, r.key_bits, r.direction)),
        "digest" => Some("openssl/sha256/hash".into()),
        "file" | "file-synced" => Some(format!("cp/{}", r.buffer)),
        _ => None,
    }
}

/// Fill in efficiency and the ratio to the peer.
fn finish_rows(rows: &mut [Row], peers: &[Row]) {
    let singles: BTreeMap<String, f64> = rows.iter().filter(|r| r.threads == 1).map(|r| (group_of(&r.id).to_string(), r.gb_per_s.median)).collect();
    for r in rows.iter_mut() {
        r.efficiency = singles.get(group_of(&r.id)).filter(|&&b| b > 0.0).map(|b| r.gb_per_s.median / (b * r.threads as f64));
        // openssl at the row's own thread count where it ran (`-multi N`), else its one thread.
        let same_threads = peer_id(r).filter(|_| r.scope == "memory" && r.threads > 1).map(|id| format!("{id}/{}t", r.threads));
        let peer = same_threads.and_then(|id| peers.iter().find(|p| p.id == id)).or_else(|| peer_id(r).and_then(|id| peers.iter().find(|p| p.id == id)));
        if let Some(p) = peer {
            r.peer = Some(p.id.clone());
            r.ratio_to_peer = (p.gb_per_s.median > 0.0).then(|| r.gb_per_s.median / p.gb_per_s.median);
        }
    }
}

/// Seconds per operation: run `once` until `min_time` has passed (at least once).
fn timed(min_time: Duration, mut once: impl FnMut() -> Result<()>) -> Result<f64> {
    let started = Instant::now();
    let mut runs = 0u32;
    loop {
        once()?;
        runs += 1;
        let e = started.elapsed();
        if e >= min_time {
            return Ok(e.as_secs_f64().max(1e-9) / f64::from(runs));
        }
    }
}

fn cbc_batch_once(key: &DataKey, input: &[u8], output: &mut [u8], per: usize) -> Result<()> {
    let group = per * CBC_LANES;
    input.par_chunks(group).zip(output.par_chunks_mut(group)).try_for_each(|(i, o)| {
        let mut batch = CbcBatch::new(key);
        let n = i.len() / per;
        for lane in 0..n {
            batch.start(lane, Iv::random(16)?);
        }
        let lanes: Vec<usize> = (0..n).collect();
        let inputs: Vec<&[u8]> = i.chunks(per).collect();
        let mut outputs: Vec<&mut [u8]> = o.chunks_mut(per).collect();
        batch.update(&lanes, &inputs, &mut outputs);
        Ok(())
    })
}

struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn write_file(path: &Path, len: u64) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(|e| io_error(path, "create", e))?;
    let mut block = vec![0u8; 8 << 20];
    fill(&mut block);
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).map_err(|e| io_error(path, "write", e))?;
        left -= n as u64;
    }
    Ok(())
}

/// One row of a comparison: a case and its median in each run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompareRow {
    /// The case id.
    pub id: String,
    /// Median GB/s in each run (absent where the run has no such case).
    pub medians: Vec<Option<f64>>,
    /// Each run's median / the first run's (absent where either is missing).
    pub ratios: Vec<Option<f64>>,
}

/// Runs side by side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Comparison {
    /// Each run: its label (the file name), CPU and cores.
    pub runs: Vec<CompareRun>,
    /// Every case of any run, in the order first seen.
    pub rows: Vec<CompareRow>,
}

/// One run in a comparison.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompareRun {
    /// Where it came from.
    pub label: String,
    /// CPU model.
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// The command that made it.
    pub command: String,
}

/// Match `runs`' rows by case id.
pub fn compare(runs: &[(String, Report)]) -> Comparison {
    let mut order: Vec<String> = Vec::new();
    for (_, r) in runs {
        for row in r.all_rows() {
            if !order.contains(&row.id) {
                order.push(row.id.clone());
            }
        }
    }
    let rows = order
        .into_iter()
        .map(|id| {
            let medians: Vec<Option<f64>> = runs.iter().map(|(_, r)| r.all_rows().find(|x| x.id == id).map(|x| x.gb_per_s.median)).collect();
            let base = medians.first().copied().flatten();
            let ratios = medians.iter().map(|m| match (m, base) {
                (Some(m), Some(b)) if b > 0.0 => Some(m / b),
                _ => None,
            }).collect();
            CompareRow { id, medians, ratios }
        })
        .collect();
    Comparison {
        runs: runs
            .iter()
            .map(|(label, r)| CompareRun { label: label.clone(), cpu_model: r.machine.cpu_model.clone(), cpus: r.machine.cpus, command: r.command.clone() })
            .collect(),
        rows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_range() {
        assert_eq!(Stat::of(&[3.0, 1.0, 2.0]), Stat { median: 2.0, min: 1.0, max: 3.0 });
        assert_eq!(Stat::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(thread_ladder(1), vec![1]);
        assert_eq!(thread_ladder(6), vec![1, 2, 4, 6]);
        assert_eq!(thread_ladder(8), vec![1, 2, 4, 8]);
        assert_eq!(group_of("memory/large/ctr-256/encrypt/one/4t"), "memory/large/ctr-256/encrypt/one");
    }
}
