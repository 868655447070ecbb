//! `sealpipe`: encrypt media archives client-side for AWS MediaConvert and
//! Elastic Transcoder, decrypt them, and verify round trips.
//!
//! This binary parses arguments, builds the thread pool, opens the key
//! provider and renders progress; all the work is in the `sealpipe` engine.
//!
//! Exit codes: 0 all done; 1 some files failed; 2 usage or configuration error;
//! 3 stopped early at --max-errors; 130 interrupted.

mod aws;
mod bench;
mod interrupt;
mod merge;
mod reencrypt;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use sealpipe::cipher::DEFAULT_CHUNK;
use sealpipe::format::record::{self, Record};
use sealpipe::format::{Iv, KeyBits, Mode, Target};
use sealpipe::keys::{unwrap_record, DataKey, LocalKeyring};
use sealpipe::pipeline::Tuning;
use sealpipe::run::encrypt::EncryptJob;
use sealpipe::run::reencrypt::Unseal;
use sealpipe::run::keys::KeyReuse;
use sealpipe::run::manifest::ManifestWriter;
use sealpipe::run::report::Summary;
use sealpipe::run::schedule::MemoryPlan;
use sealpipe::run::shard::Shard;
use sealpipe::run::{encrypt, verify};
use sealpipe::size::parse_size;
use sealpipe::store::{ManifestCopy, Stores, UploadSettings};

const ABOUT: &str = "Encrypt media client-side (AES-CTR, AES-CBC/PKCS#7, AES-GCM) on all cores, \
so AWS Elemental MediaConvert and Amazon Elastic Transcoder can decrypt it with a wrapped data key.";

#[derive(Parser)]
#[command(name = "sealpipe", version, about = ABOUT, after_help = "Exit codes: 0 all files done (or already done), 1 some files failed, 2 usage or configuration error, 3 stopped early at --max-errors, 130 interrupted (incomplete outputs discarded; a re-run resumes).")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: Global,
}

#[derive(Args)]
struct Global {
    /// Worker threads (default: all cores). Example: --threads 4
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    /// Print a machine-readable JSON summary on stdout (files, bytes, seconds, GB/s, failures).
    #[arg(long, global = true)]
    json: bool,
    /// Local keyring file (created with mode 0600 on first use).
    /// Default: $SEALPIPE_KEYRING, else ~/.config/sealpipe/keyring.json.
    /// Example: --keyring ./keyring.json
    #[arg(long, global = true, value_name = "PATH")]
    keyring: Option<PathBuf>,
    /// Memory for buffers, the whole run's bound: files in flight x pipeline windows x upload part
    /// buffers are sized to fit it (default: 1GiB, or a quarter of RAM if less). Not counted: about 60
    /// bytes per finished file for the resume ledger. Example: --memory 512MiB
    #[arg(long, global = true, value_name = "SIZE", value_parser = parse_size)]
    memory: Option<u64>,
    /// Parallel work unit (a multiple of 16 bytes). Example: --chunk-size 4MiB
    #[arg(long, global = true, value_name = "SIZE", default_value_t = DEFAULT_CHUNK as u64, value_parser = parse_size)]
    chunk_size: u64,
    #[command(flatten)]
    aws: aws::AwsArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Encrypt files and folders (recursively) into --out, writing a manifest with job settings.
    #[command(after_help = "Examples:
  sealpipe encrypt testdata/media --out /tmp/enc
  sealpipe encrypt big.mp4 --out /tmp/enc --mode gcm --target mediaconvert
  sealpipe encrypt clip.ts --out /tmp/enc --mode cbc --data-key-file key.bin --iv-hex 00112233445566778899aabbccddeeff
  sealpipe encrypt archive/ --out /tmp/enc --file-input-prefix s3://media-in/archive/
  sealpipe encrypt /archive/2019 --to s3://media-in/2019/ --kms-key alias/media --target mediaconvert --manifest run.jsonl
  sealpipe encrypt s3://old-archive/raw/ --to s3://media-in/raw/ --kms-key alias/media --manifest s3://media-in/runs/raw.jsonl")]
    Encrypt(EncryptArgs),
    /// Re-encrypt legacy archives (Elastic Transcoder or older sealpipe runs) to a new mode and key in one
    /// streaming pass: the old GCM tag, CBC padding and recorded SHA-256 are verified before each new
    /// output is committed, and the plaintext never touches the disk. Takes every option of encrypt.
    #[command(after_help = "Examples:
  sealpipe reencrypt s3://old-archive/2015/ --et-encryption et.json --to s3://media-in/2015/ --mode gcm --target mediaconvert --kms-key alias/media --manifest 2015.jsonl
  sealpipe reencrypt s3://media-in/2019/ --from-manifest s3://media-in/runs/2019.jsonl --to s3://media-mc/2019/ --mode gcm --target mediaconvert --kms-key alias/media
  sealpipe reencrypt /archive/enc-2019 --from-manifest runs/2019.jsonl --out /archive/gcm-2019 --mode gcm

An Encryption JSON for every input (the Input of an Elastic Transcoder job):
  {\"Encryption\": {\"Mode\": \"aes-cbc-pkcs7\", \"Key\": \"<base64 KMS blob>\", \"KeyMd5\": \"...\", \"InitializationVector\": \"...\"}}
or one per object: [{\"Input\": \"s3://old-archive/2015/a.mp4\", \"Encryption\": {...}}, ...]")]
    Reencrypt(reencrypt::ReencryptArgs),
    /// Decrypt one file, using its manifest record or an explicit key and IV.
    #[command(after_help = "Examples:
  sealpipe decrypt /tmp/enc/big.mp4 --manifest /tmp/enc/manifest.jsonl --out /tmp/big.mp4
  sealpipe decrypt x.enc --mode ctr --key-hex 603deb10...0914dff4 --iv-hex f0f1f2f3...fcfdfeff --out x")]
    Decrypt(DecryptArgs),
    /// Decrypt every file of a manifest and compare its plaintext SHA-256.
    #[command(after_help = "Example:
  sealpipe verify --manifest /tmp/enc/manifest.jsonl")]
    Verify(VerifyArgs),
    /// Measure throughput on this machine: per mode, key size and thread count, in memory and file to file.
    #[command(after_help = "Examples:
  sealpipe bench
  sealpipe bench --modes ctr,gcm --key-bits 128,256 --memory-size 256M --file-size 2G --json")]
    Bench(bench::BenchArgs),
    /// Join the manifests of sharded runs; report duplicates and gaps.
    #[command(after_help = "Examples:
  sealpipe merge-manifests run-0.jsonl run-1.jsonl run-2.jsonl run-3.jsonl --out run.jsonl
  sealpipe merge-manifests shards/*.jsonl --expect-list sources.txt --json
Exit codes: 0 no duplicates and no gaps, 1 duplicates or gaps found, 2 unreadable or malformed input.")]
    MergeManifests(merge::MergeArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Ctr,
    Cbc,
    Gcm,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Ctr => Mode::Ctr,
            ModeArg::Cbc => Mode::Cbc,
            ModeArg::Gcm => Mode::Gcm,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum TargetArg {
    /// Both services: 16-byte IVs, key wrapped for each service's context.
    Any,
    /// MediaConvert: 16-byte IVs for CTR and CBC, 12-byte for GCM.
    Mediaconvert,
    /// Elastic Transcoder (legacy): 16-byte IVs.
    Elastictranscoder,
}

impl From<TargetArg> for Target {
    fn from(t: TargetArg) -> Target {
        match t {
            TargetArg::Any => Target::Any,
            TargetArg::Mediaconvert => Target::MediaConvert,
            TargetArg::Elastictranscoder => Target::ElasticTranscoder,
        }
    }
}

#[derive(Args)]
struct EncryptArgs {
    /// Files or folders to encrypt, or s3://bucket/prefix/ (every object under it; a file changed
    /// between listing and reading fails). Example: testdata/media
    #[arg(value_name = "INPUT", required_unless_present_any = ["from_list", "inventory"])]
    inputs: Vec<PathBuf>,
    /// A list file: one local path or s3:// URL per line (# comments; - for standard input).
    /// Outputs keep the path without its root, or the object key. Repeatable. Example: --from-list todo.txt
    #[arg(long, value_name = "FILE")]
    from_list: Vec<PathBuf>,
    /// An S3 Inventory report: its manifest.json, or one CSV.gz data file (local or s3://); every
    /// current object it lists, read as a stream. Repeatable.
    /// Example: --inventory s3://inv/media-in/daily/2026-11-21T01-00Z/manifest.json
    #[arg(long, value_name = "PATH")]
    inventory: Vec<PathBuf>,
    /// Let one generated data key serve several files (each with its own random IV), within
    /// limits: max-files (default 1000, at most 1000000), max-bytes (default 64G), max-age
    /// (default 5m). Without it every file gets its own key. Example: --reuse-key max-files=500,max-age=10m
    #[arg(long, value_name = "LIMITS", num_args = 0..=1, default_missing_value = "", value_parser = parse_reuse)]
    reuse_key: Option<KeyReuse>,
    /// Take only shard I of N (a stable hash of each file's key); auto/N reads the index from
    /// JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch).
    /// The manifest name gets .shard-I-of-N (or put {shard} in --manifest). Example: --shard auto/16
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Stop starting files after this many failures (exit code 3); a re-run resumes. Example: --max-errors 10
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_errors: Option<u64>,
    /// Show what would be done (files to encrypt, already done, bytes) without encrypting,
    /// writing or asking for keys.
    #[arg(long)]
    dry_run: bool,
    /// Output folder; files keep their relative paths and names (or --to s3://...). Example: --out /tmp/enc
    #[arg(long, value_name = "DIR", required_unless_present = "to")]
    out: Option<PathBuf>,
    #[command(flatten)]
    s3: aws::S3Args,
    /// Cipher mode. Example: --mode gcm
    #[arg(long, value_enum, default_value = "ctr")]
    mode: ModeArg,
    /// Service(s) that will decrypt: sets IV length, encryption context and settings blocks.
    /// Example: --target mediaconvert
    #[arg(long, value_enum, default_value = "any")]
    target: TargetArg,
    /// Key size for generated data keys. Example: --key-bits 128
    #[arg(long, default_value_t = 256, value_parser = clap::builder::PossibleValuesParser::new(["128", "192", "256"]).map(|s| s.parse::<u16>().expect("listed values parse")))]
    key_bits: u16,
    /// Use this raw data key (16, 24 or 32 bytes) for every file instead of a fresh key per file.
    /// Example: --data-key-file key.bin  (made with: openssl rand 32 > key.bin)
    #[arg(long, value_name = "PATH")]
    data_key_file: Option<PathBuf>,
    /// Use this IV (hex; 16 bytes, or 12 for GCM; a 12-byte CTR IV is allowed with a warning). Refused when one key
    /// would encrypt several files. Example: --iv-hex 00112233445566778899aabbccddeeff
    #[arg(long, value_name = "HEX")]
    iv_hex: Option<String>,
    /// Manifest to append records to (an s3:// URL is uploaded at the end of the run, also after failures).
    /// Default: OUT/manifest.jsonl, or ./sealpipe-manifest.jsonl with --to. Example: --manifest run.jsonl
    #[arg(long, value_name = "PATH")]
    manifest: Option<PathBuf>,
    /// Prefix for each record's MediaConvert FileInput (relative path appended).
    /// Default: the local output path. Example: --file-input-prefix s3://media-in/2019/
    #[arg(long, value_name = "URL")]
    file_input_prefix: Option<String>,
    /// Overwrite outputs that already exist, and encrypt again files the manifest records as done.
    #[arg(long)]
    force: bool,
}

fn parse_reuse(text: &str) -> Result<KeyReuse, String> {
    text.parse()
}

/// The shard to take: `I/N`, or `auto/N` with the index from the job array's environment.
fn resolve_shard(text: &str) -> anyhow::Result<Shard> {
    let Some(count) = text.strip_prefix("auto/") else { return Shard::parse(text).map_err(|e| anyhow!("--shard: {e}")) };
    for var in ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"] {
        if let Ok(index) = std::env::var(var) {
            return Shard::parse(&format!("{}/{count}", index.trim())).map_err(|e| anyhow!("--shard auto/{count}: {var}={index}: {e}"));
        }
    }
    Err(anyhow!("--shard auto/{count}: neither JOB_COMPLETION_INDEX (Kubernetes Indexed Job) nor AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array job) is set"))
}

/// The manifest path of one shard: `{shard}` replaced, or `.shard-I-of-N` before the extension.
fn shard_manifest(path: &Path, shard: Option<Shard>) -> PathBuf {
    let Some(shard) = shard else { return path.to_path_buf() };
    let tag = format!("shard-{}-of-{}", shard.index, shard.count);
    let text = path.to_string_lossy();
    if text.contains("{shard}") {
        return PathBuf::from(text.replace("{shard}", &tag));
    }
    match (path.file_stem(), path.extension()) {
        (Some(stem), Some(ext)) => path.with_file_name(format!("{}.{tag}.{}", stem.to_string_lossy(), ext.to_string_lossy())),
        _ => PathBuf::from(format!("{text}.{tag}")),
    }
}

#[derive(Args)]
struct DecryptArgs {
    /// The encrypted file. Example: /tmp/enc/big.mp4
    #[arg(value_name = "INPUT")]
    input: PathBuf,
    /// Where to write the plaintext. Example: --out /tmp/big.mp4
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Manifest holding the file's record (key, IV, mode, digest); a local file or s3://bucket/key. Example: --manifest /tmp/enc/manifest.jsonl
    #[arg(long, value_name = "PATH", conflicts_with_all = ["key_hex", "data_key_file"])]
    manifest: Option<PathBuf>,
    /// Cipher mode, without a manifest. Example: --mode ctr
    #[arg(long, value_enum, required_unless_present = "manifest")]
    mode: Option<ModeArg>,
    /// Raw data key in hex, without a manifest. Example: --key-hex 603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4
    #[arg(long, value_name = "HEX", conflicts_with = "data_key_file")]
    key_hex: Option<String>,
    /// Raw data key file (16, 24 or 32 bytes), without a manifest. Example: --data-key-file key.bin
    #[arg(long, value_name = "PATH")]
    data_key_file: Option<PathBuf>,
    /// IV in hex, without a manifest (12 or 16 bytes for CTR/GCM, 16 for CBC).
    /// Example: --iv-hex f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff
    #[arg(long, value_name = "HEX", required_unless_present = "manifest")]
    iv_hex: Option<String>,
    /// Overwrite the output if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct VerifyArgs {
    /// Manifest whose files to verify (a local file or s3://bucket/key). Example: --manifest /tmp/enc/manifest.jsonl
    #[arg(long, value_name = "PATH")]
    manifest: PathBuf,
}

/// An error that makes the whole command pointless (exit code 2).
struct UsageError(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for UsageError {
    fn from(e: E) -> Self {
        UsageError(e.into())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    interrupt::install();
    match run(cli) {
        Ok(code) => code,
        Err(UsageError(e)) => {
            eprintln!("sealpipe: error: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ")
}

fn run(cli: Cli) -> Result<ExitCode, UsageError> {
    let g = &cli.global;
    if g.chunk_size < 16 || g.chunk_size % 16 != 0 || g.chunk_size > 1 << 30 {
        return Err(anyhow!("--chunk-size must be a positive multiple of 16 (at most 1GiB), got {}", g.chunk_size).into());
    }
    let chunk = g.chunk_size as usize;
    let threads = g.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        return Err(anyhow!("--threads must be at least 1").into());
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("sealpipe-{i}"))
        .build_global()
        .context("cannot start the thread pool")?;
    let budget = g.memory.unwrap_or_else(MemoryPlan::default_budget);
    let tuning = MemoryPlan::new(budget, threads, chunk, None)?.tuning;
    let keyring_path = g.keyring.clone().unwrap_or_else(LocalKeyring::default_path);
    match cli.command {
        Command::Encrypt(a) => encrypt(a, g, &keyring_path, tuning, None, Vec::new()),
        Command::Reencrypt(a) => reencrypt::run(a, g, &keyring_path, tuning),
        Command::Decrypt(a) => decrypt(a, g, &keyring_path, tuning),
        Command::Verify(a) => verify(a, g, &keyring_path, tuning),
        Command::Bench(a) => bench::run(a, g),
        Command::MergeManifests(a) => merge::run(a, g.json).map_err(UsageError::from),
    }
}

fn parse_hex(text: &str, flag: &str) -> anyhow::Result<Vec<u8>> {
    hex::decode(text.trim()).map_err(|e| anyhow!("malformed hex in {flag}: {e}"))
}

fn exit_for(summary: &Summary) -> ExitCode {
    if summary.stopped_early() {
        ExitCode::from(3)
    } else if summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// `encrypt`, or with `unseal` `reencrypt` (the inputs are legacy ciphertext, decrypted as they are read).
fn encrypt(a: EncryptArgs, g: &Global, keyring_path: &Path, tuning: Tuning, unseal: Option<&dyn Unseal>, exclude: Vec<PathBuf>) -> Result<ExitCode, UsageError> {
    let (command, verb) = if unseal.is_some() { ("reencrypt", "re-encrypted") } else { ("encrypt", "encrypted") };
    let mode = Mode::from(a.mode);
    let target = Target::from(a.target);
    let iv = match &a.iv_hex {
        Some(h) => {
            let iv = parse_hex(h, "--iv-hex")?;
            target.check_iv_len(mode, iv.len())?;
            if let Some(warning) = Target::iv_warning(mode, iv.len()) {
                eprintln!("sealpipe: warning: --iv-hex: {warning}");
            }
            Some(iv)
        }
        None => None,
    };
    let supplied_key = a.data_key_file.as_deref().map(DataKey::from_file).transpose()?;
    if supplied_key.is_some() && a.reuse_key.is_some() {
        return Err(anyhow!("--reuse-key caches generated keys; it cannot be combined with --data-key-file").into());
    }
    let shard = a.shard.as_deref().map(resolve_shard).transpose()?;
    let ctx = aws::Context::new(&g.aws, keyring_path, g.aws.kms_key.clone())?;
    let provider = ctx.providers.for_new_keys()?;
    // An s3:// manifest is written to a local temporary file and uploaded at the end.
    let mut remote_manifest = match a.manifest.as_deref().filter(|m| aws::is_url(m)) {
        Some(m) => Some(fetch_manifest(&ctx, m, true)?),
        None => None,
    };
    let manifest_path = match &remote_manifest {
        Some(m) => m.local.clone(),
        None => shard_manifest(
            &a.manifest.clone().unwrap_or_else(|| match &a.out {
                Some(out) => out.join("manifest.jsonl"),
                None => PathBuf::from(aws::DEFAULT_S3_MANIFEST),
            }),
            shard,
        ),
    };
    // The manifest is the ledger a re-run resumes from: every record synced to disk.
    let manifest = ManifestWriter::durable(&manifest_path)?;
    // One budget sizes every buffer: files in flight, pipeline windows, part buffers.
    let budget = g.memory.unwrap_or_else(MemoryPlan::default_budget);
    let upload = a.s3.to.as_ref().map(|_| (a.s3.part_size, a.s3.concurrency));
    let plan = MemoryPlan::new(budget, rayon::current_num_threads(), tuning.chunk, upload)?;
    let settings = UploadSettings { part_size: a.s3.part_size, concurrency: if a.s3.concurrency == 0 { 0 } else { plan.upload_concurrency }, checksum: a.s3.checksum.into(), overwrite: a.force };
    let destination = match (&a.s3.to, &a.out) {
        (Some(to), _) if !Stores::is_url(to) => return Err(anyhow!("{to}: not an s3:// URL (expected s3://bucket/prefix/)").into()),
        (Some(to), _) => ctx.stores.destination(to, settings)?,
        (None, Some(out)) => Box::new(sealpipe::store::local::LocalDir::new(out, a.force)),
        (None, None) => return Err(anyhow!("give --out DIR or --to s3://bucket/prefix/").into()),
    };
    if let Some(abort) = destination.on_interrupt() {
        interrupt::on_interrupt(move || {
            let n = abort();
            eprintln!("sealpipe: interrupted: aborted {n} open multipart upload(s)");
        });
    }

    let job = EncryptJob {
        lists: a.from_list,
        inventories: a.inventory,
        mode,
        key_bits: KeyBits::try_from(a.key_bits).map_err(|e| anyhow!(e))?,
        target,
        supplied_key,
        reuse_key: a.reuse_key,
        iv,
        overwrite: a.force,
        file_input_prefix: a.file_input_prefix,
        tuning: plan.tuning,
        files_in_flight: plan.files_in_flight,
        shard,
        max_errors: a.max_errors,
        dry_run: a.dry_run,
        unseal,
        exclude: [manifest_path.clone(), sealpipe::run::ledger::journal_path(&manifest_path)].into_iter().chain(exclude).collect(),
        stores: &ctx.stores,
        ..EncryptJob::new(a.inputs, destination.as_ref(), provider.as_ref())
    };
    let progress = report::Progress::new(command, !g.json, g.json);
    let summary = encrypt::encrypt(&job, &manifest, &progress)?;
    progress.clear();
    drop(manifest);
    // Also after a partial failure: the records of the files that did finish.
    let manifest_path = match remote_manifest.as_mut() {
        Some(m) if !a.dry_run => {
            m.upload()?;
            PathBuf::from(&m.url)
        }
        Some(m) => PathBuf::from(&m.url),
        None => manifest_path,
    };
    let extra = serde_json::json!({
        "manifest": manifest_path,
        "mode": mode.to_string(),
        "threads": rayon::current_num_threads(),
        "shard": shard.map(|s| s.to_string()),
    });
    let verb = if a.dry_run { "would encrypt" } else { verb };
    report::summary(command, verb, &summary, extra, g.json);
    if !g.json && summary.files > 0 && !a.dry_run {
        eprintln!("sealpipe: manifest: {}", manifest_path.display());
    }
    Ok(exit_for(&summary))
}

fn decrypt(a: DecryptArgs, g: &Global, keyring_path: &Path, tuning: Tuning) -> Result<ExitCode, UsageError> {
    let ctx = aws::Context::new(&g.aws, keyring_path, g.aws.kms_key.clone())?;
    let mut etag = None;
    let (mode, key, iv, expected) = match &a.manifest {
        Some(m) => {
            let records = read_manifest(m, &ctx)?;
            let wanted = sealpipe::store::local::resolve(&a.input);
            let input_text = a.input.to_string_lossy();
            let record = records
                .iter()
                .rev()
                .find(|r| {
                    sealpipe::store::local::resolve(Path::new(&r.output)) == wanted
                        || r.mediaconvert.as_ref().is_some_and(|mc| mc.file_input == input_text)
                })
                .ok_or_else(|| anyhow!("{}: no record for this file in manifest {}", a.input.display(), m.display()))?;
            let provider = ctx.providers.for_record(record)?;
            let key = unwrap_record(record, provider.as_ref()).map_err(|e| anyhow!("{}: {e}", a.input.display()))?;
            etag = record.etag.clone();
            (record.mode, key, record.iv()?, Some(record.plaintext_sha256.clone()))
        }
        None => {
            let mode = Mode::from(a.mode.expect("clap requires --mode without --manifest"));
            let key = match (&a.key_hex, &a.data_key_file) {
                (Some(h), _) => DataKey::from_slice(&zeroize_hex(h)?)?,
                (None, Some(f)) => DataKey::from_file(f)?,
                (None, None) => return Err(anyhow!("without --manifest, give the key with --key-hex or --data-key-file").into()),
            };
            let iv_bytes = parse_hex(a.iv_hex.as_deref().expect("clap requires --iv-hex without --manifest"), "--iv-hex")?;
            Target::Any.check_iv_len(mode, iv_bytes.len())?;
            (mode, key, Iv::from_slice(&iv_bytes)?, None)
        }
    };
    let progress = report::Progress::new("decrypt", !g.json, false);
    let settings = verify::Decryption { mode, key: &key, iv: &iv, expected_sha256: expected.as_deref(), overwrite: a.force, tuning: &tuning };
    let result = ctx
        .stores
        .open(&a.input.to_string_lossy(), etag.as_deref().filter(|_| aws::is_url(&a.input)))
        .and_then(|source| verify::decrypt(source.as_ref(), &a.out, &settings, &progress));
    progress.clear();
    let summary = match result {
        Ok(opened) => Summary { files: 1, bytes: opened.cipher_len, ..Default::default() },
        Err(e) => {
            use sealpipe::run::report::Reporter;
            progress.failed(&a.input, &e);
            Summary { failures: vec![sealpipe::error::Failure::new(&a.input, &e)], ..Default::default() }
        }
    };
    if g.json {
        report::summary("decrypt", "decrypted", &summary, serde_json::json!({"output": a.out}), true);
    }
    Ok(exit_for(&summary))
}

/// The local working copy of the manifest at the URL `path` (see [`ManifestCopy`]).
fn fetch_manifest<'c>(ctx: &'c aws::Context, path: &Path, appending: bool) -> anyhow::Result<ManifestCopy<'c>> {
    let url = path.to_string_lossy();
    let store = ctx.stores.remote(&url)?.ok_or_else(|| anyhow!("{url}: not a URL"))?;
    let copy = ManifestCopy::fetch(store, &url, appending)?;
    if copy.resumed {
        eprintln!("sealpipe: resuming from {} (the local copy of {url} an interrupted run left)", copy.local.display());
    }
    Ok(copy)
}

/// The records of a local manifest, or of one in a store (`s3://bucket/key`, downloaded first).
fn read_manifest(path: &Path, ctx: &aws::Context) -> anyhow::Result<Vec<Record>> {
    if aws::is_url(path) {
        let remote = fetch_manifest(ctx, path, false)?;
        Ok(record::read(&remote.local).map_err(|e| anyhow!("{}: {e}", remote.url))?)
    } else {
        Ok(record::read(path)?)
    }
}

/// Parse a hex key into memory that is zeroized when dropped.
fn zeroize_hex(h: &str) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    Ok(zeroize::Zeroizing::new(parse_hex(h, "--key-hex")?))
}

fn verify(a: VerifyArgs, g: &Global, keyring_path: &Path, tuning: Tuning) -> Result<ExitCode, UsageError> {
    let ctx = aws::Context::new(&g.aws, keyring_path, g.aws.kms_key.clone())?;
    let records = read_manifest(&a.manifest, &ctx)?;
    if records.is_empty() {
        return Err(anyhow!("{}: manifest has no records", a.manifest.display()).into());
    }
    let progress = report::Progress::new("verify", !g.json, false);
    let summary = verify::verify_all(&records, &|r: &Record| ctx.providers.for_record(r), &ctx.stores, &tuning, &progress)?;
    progress.clear();
    report::summary("verify", "verified", &summary, serde_json::json!({"manifest": a.manifest}), g.json);
    Ok(exit_for(&summary))
}
