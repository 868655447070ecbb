//! `sealpipe`: encrypt media archives client-side for AWS MediaConvert and
//! Elastic Transcoder, decrypt them, and verify round trips.
//!
//! This binary parses arguments, builds the thread pool, opens the key
//! provider and renders progress; all the work is in the `sealpipe` engine.
//!
//! Exit codes: 0 all done; 1 some files failed; 2 usage or configuration error;
//! 3 stopped early at --max-errors; 130 interrupted.

#[macro_use]
mod out;
mod aws;
mod bench;
mod deploy;
mod docs;
mod interrupt;
mod jobs;
mod logging;
mod merge;
mod rebuild;
mod reencrypt;
mod report;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::builder::TypedValueParser as _;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use sealpipe::run::filter::{Filter, Rule};
use sealpipe::cipher::DEFAULT_CHUNK;
use sealpipe::format::digest::DigestAlg;
use sealpipe::format::record::{self, Record};
use sealpipe::format::{Iv, KeyBits, Mode, Target};
use sealpipe::keys::{unwrap_record, DataKey, LocalKeyring};
use sealpipe::pipeline::Tuning;
use sealpipe::format::url::S3Url;
use sealpipe::run::encrypt::EncryptJob;
use sealpipe::run::reencrypt::Unseal;
use sealpipe::run::keys::KeyReuse;
use sealpipe::run::lease::Lease;
use sealpipe::run::manifest::{Flusher, ManifestWriter};
use sealpipe::run::report::Summary;
use sealpipe::run::schedule::MemoryPlan;
use sealpipe::run::shard::Shard;
use sealpipe::run::{encrypt, verify};
use sealpipe::size::parse_size;
use sealpipe::store::{s3::UploadSettings, ManifestCopy, Stores};

const ABOUT: &str = "Encrypt media client-side (AES-CTR, AES-CBC/PKCS#7, AES-GCM) on all cores, \
so AWS Elemental MediaConvert and Amazon Elastic Transcoder can decrypt it with a wrapped data key.";

#[derive(Parser)]
#[command(name = "sealpipe", version, about = ABOUT, max_term_width = 100, after_help = "Exit codes: 0 all files done (or already done), 1 some files failed, 2 usage or configuration error, 3 stopped early at --max-errors, 130 interrupted (incomplete outputs discarded; a re-run resumes).")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What the commands that do work are given, built from the flags each of them takes.
#[derive(Clone)]
struct Global {
    threads: Option<usize>,
    json: bool,
    keyring: Option<PathBuf>,
    create_keyring: bool,
    memory: Option<u64>,
    chunk_size: u64,
    kms_key: Option<String>,
    aws: aws::AwsArgs,
}

/// Output, verbosity and logging: every command.
#[derive(Args, Clone, Default)]
struct OutputArgs {
    /// Print one JSON event per line on stdout as files go (started, done, failed, skipped, note),
    /// then a summary line last (files, bytes, seconds, GB/s, failures); everything else goes to
    /// stderr. Example: --json | jq .
    #[arg(long, help_heading = "Output")]
    json: bool,
    /// Draw progress bars on stderr even when it is not a terminal. Example: --progress
    #[arg(long, help_heading = "Output", conflicts_with = "no_progress")]
    progress: bool,
    /// Never draw progress bars (default: drawn when stderr is a terminal). Example: --no-progress
    #[arg(long, help_heading = "Output")]
    no_progress: bool,
    /// Print errors only: no progress, summary or notes on stderr (--json still prints). Example: -q
    #[arg(short, long, help_heading = "Output", conflicts_with_all = ["verbose", "log_level"])]
    quiet: bool,
    /// More log detail on stderr: -v info, -vv debug (the AWS SDK's own requests, redacted).
    /// Example: -vv
    #[arg(short, long, action = clap::ArgAction::Count, help_heading = "Output")]
    verbose: u8,
    /// Log level (default warn). debug includes the AWS SDK's tracing (no credentials or key
    /// material). Example: --log-level debug
    #[arg(long, value_enum, value_name = "LEVEL", help_heading = "Output")]
    log_level: Option<LogLevel>,
    /// Write the log to this file (appended) instead of stderr. Example: --log-file sealpipe.log
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    log_file: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// The parallel work unit (every command that encrypts or decrypts, bench too).
#[derive(Args, Clone)]
struct ChunkArg {
    /// Parallel work unit (a multiple of 16 bytes). Example: --chunk-size 4MiB
    #[arg(long, value_name = "SIZE", default_value_t = DEFAULT_CHUNK as u64, value_parser = parse_size, help_heading = "Performance")]
    chunk_size: u64,
}

/// Threads and memory of a run.
#[derive(Args, Clone)]
struct PerfArgs {
    /// Worker threads (default: all cores). Example: --threads 4
    #[arg(long, value_name = "N", help_heading = "Performance")]
    threads: Option<usize>,
    /// Memory for buffers, the whole run's bound: files in flight x pipeline windows x upload part
    /// buffers are sized to fit it (default: 1GiB, or a quarter of RAM if less). Not counted: about 60
    /// bytes per finished file for the resume ledger. Example: --memory 512MiB
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Performance")]
    memory: Option<u64>,
    #[command(flatten)]
    chunk: ChunkArg,
}

/// The local keyring.
#[derive(Args, Clone)]
struct KeyringArg {
    /// Local keyring file. The default one is created (mode 0600) on first use; a --keyring path
    /// that does not exist is an error unless --create-keyring is given.
    /// Default: $SEALPIPE_KEYRING, else ~/.config/sealpipe/keyring.json.
    /// Example: --keyring ./keyring.json
    #[arg(long, value_name = "PATH", help_heading = "Keys")]
    keyring: Option<PathBuf>,
    /// Create the --keyring file (mode 0600) if it does not exist. Example: --create-keyring
    #[arg(long, help_heading = "Keys")]
    create_keyring: bool,
}

/// `--kms-key` of the commands that make new data keys.
#[derive(Args, Clone)]
struct KmsWrapArg {
    /// Wrap data keys with this AWS KMS key (key id, key ARN, alias/NAME or alias ARN) instead of the
    /// local keyring. Example: --kms-key alias/media
    #[arg(long, value_name = "KEY", help_heading = "Keys")]
    kms_key: Option<String>,
}

/// `--kms-key` of the commands that only unwrap recorded keys.
#[derive(Args, Clone)]
struct KmsUnwrapArg {
    /// KMS key to unwrap records made with KMS (default: the key each record names; records made
    /// with the local keyring use it). Example: --kms-key alias/media
    #[arg(long, value_name = "KEY", help_heading = "Keys")]
    kms_key: Option<String>,
}

/// The flags of every command that reads or writes encrypted data.
#[derive(Args, Clone)]
struct WorkArgs {
    #[command(flatten)]
    keyring: KeyringArg,
    #[command(flatten)]
    aws: aws::AwsArgs,
    #[command(flatten)]
    perf: PerfArgs,
    #[command(flatten)]
    output: OutputArgs,
}

impl WorkArgs {
    fn global(&self, kms_key: Option<String>) -> Global {
        Global {
            threads: self.perf.threads,
            json: self.output.json,
            keyring: self.keyring.keyring.clone(),
            create_keyring: self.keyring.create_keyring,
            memory: self.perf.memory,
            chunk_size: self.perf.chunk.chunk_size,
            kms_key,
            aws: self.aws.clone(),
        }
    }
}

#[derive(Args)]
struct EncryptCmd {
    #[command(flatten)]
    args: EncryptArgs,
    #[command(flatten)]
    kms: KmsWrapArg,
    #[command(flatten)]
    work: WorkArgs,
}

#[derive(Args)]
struct ReencryptCmd {
    #[command(flatten)]
    args: reencrypt::ReencryptArgs,
    #[command(flatten)]
    kms: KmsWrapArg,
    #[command(flatten)]
    work: WorkArgs,
}

#[derive(Args)]
struct DecryptCmd {
    #[command(flatten)]
    args: DecryptArgs,
    #[command(flatten)]
    kms: KmsUnwrapArg,
    #[command(flatten)]
    work: WorkArgs,
}

#[derive(Args)]
struct VerifyCmd {
    #[command(flatten)]
    args: VerifyArgs,
    #[command(flatten)]
    kms: KmsUnwrapArg,
    #[command(flatten)]
    work: WorkArgs,
}

/// `bench`: its own flags, plus the output flags, the chunk size it measures with, and the AWS flags of `--to`.
#[derive(Args)]
struct BenchCmd {
    #[command(flatten)]
    args: bench::BenchArgs,
    #[command(flatten)]
    chunk: ChunkArg,
    /// For the file -> S3 rows (--to).
    #[command(flatten)]
    aws: aws::AwsArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct RebuildCmd {
    #[command(flatten)]
    args: rebuild::RebuildArgs,
    #[command(flatten)]
    work: WorkArgs,
}

#[derive(Args)]
struct MergeCmd {
    #[command(flatten)]
    args: merge::MergeArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Args)]
struct CompletionsArgs {
    /// Shell to write completions for. Example: bash
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Args)]
struct ManArgs {
    /// Write sealpipe.1 and one page per command (sealpipe-encrypt.1, ...) into this folder instead
    /// of printing sealpipe.1 on stdout. Example: --out-dir /usr/local/share/man/man1
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Encrypt files and folders (recursively) into --out, writing a manifest with job settings.
    #[command(after_help = "Examples:
  sealpipe encrypt testdata/media --out /tmp/enc
  sealpipe encrypt big.mp4 --out /tmp/enc --mode gcm --target mediaconvert
  sealpipe encrypt clip.ts --out /tmp/enc --mode cbc --data-key-file key.bin \\
      --iv-hex 00112233445566778899aabbccddeeff
  sealpipe encrypt archive/ --out /tmp/enc \\
      --file-input-prefix s3://media-in/archive/
  sealpipe encrypt /archive/2019 --to s3://media-in/2019/ --kms-key alias/media \\
      --target mediaconvert --manifest run.jsonl
  sealpipe encrypt s3://old-archive/raw/ --to s3://media-in/raw/ \\
      --kms-key alias/media --manifest s3://media-in/runs/raw.jsonl
  sealpipe encrypt media/ --out /tmp/enc --exclude '*' --include '*.ts' --json | jq .")]
    Encrypt(EncryptCmd),
    /// Re-encrypt legacy archives (Elastic Transcoder or older sealpipe runs) to a new mode and key in one
    /// streaming pass: the old GCM tag, CBC padding and recorded digest are verified before each new
    /// output is committed, and the plaintext never touches the disk. Takes every option of encrypt.
    #[command(after_help = "Examples:
  sealpipe reencrypt s3://old-archive/2015/ --et-encryption et.json \\
      --to s3://media-in/2015/ --mode gcm --target mediaconvert \\
      --kms-key alias/media --manifest 2015.jsonl
  sealpipe reencrypt s3://media-in/2019/ \\
      --from-manifest s3://media-in/runs/2019.jsonl --to s3://media-mc/2019/ \\
      --mode gcm --target mediaconvert --kms-key alias/media
  sealpipe reencrypt /archive/enc-2019 --from-manifest runs/2019.jsonl \\
      --out /archive/gcm-2019 --mode gcm

An Encryption JSON for every input (the Input of an Elastic Transcoder job):
  {\"Encryption\": {\"Mode\": \"aes-cbc-pkcs7\", \"Key\": \"<base64 KMS blob>\",
                  \"KeyMd5\": \"...\", \"InitializationVector\": \"...\"}}
or one per object:
  [{\"Input\": \"s3://old-archive/2015/a.mp4\", \"Encryption\": {...}}, ...]")]
    Reencrypt(ReencryptCmd),
    /// Decrypt one file, using its manifest record or an explicit key and IV.
    #[command(after_help = "Examples:
  sealpipe decrypt /tmp/enc/big.mp4 --manifest /tmp/enc/manifest.jsonl \\
      --out /tmp/big.mp4
  sealpipe decrypt x.enc --mode ctr --key-hex 603deb10...0914dff4 \\
      --iv-hex f0f1f2f3...fcfdfeff --out x")]
    Decrypt(DecryptCmd),
    /// Decrypt every file of a manifest and compare its plaintext digest (SHA-256, or the record's --digest).
    #[command(after_help = "Example:
  sealpipe verify --manifest /tmp/enc/manifest.jsonl")]
    Verify(VerifyCmd),
    /// Measure throughput on this machine: per mode, key size and thread count, in memory and file to file.
    #[command(after_help = "Examples:
  sealpipe bench
  sealpipe bench --modes ctr,gcm --key-bits 128,256 --memory-size 256M \\
      --file-size 2G --json")]
    Bench(BenchCmd),
    /// Write a manifest again from the envelopes the S3 objects under a prefix carry (when every
    /// copy of a manifest is lost): one record per object, its key, IV and mode; no plaintext digest.
    #[command(after_help = "Examples:
  sealpipe rebuild-manifest s3://media-in/2019/ --manifest rebuilt.jsonl
  sealpipe verify --manifest rebuilt.jsonl

Exit codes: 0 every object with an envelope has its record, 1 some envelopes could not be read, 2 usage error.")]
    RebuildManifest(RebuildCmd),
    /// Join the manifests of sharded runs; report duplicates and gaps.
    #[command(after_help = "Examples:
  sealpipe merge-manifests run-0.jsonl run-1.jsonl run-2.jsonl run-3.jsonl \\
      --out run.jsonl
  sealpipe merge-manifests shards/*.jsonl --expect-list sources.txt --json

Exit codes: 0 no duplicates and no gaps, 1 duplicates or gaps found, 2 unreadable or malformed input.")]
    MergeManifests(MergeCmd),
    /// MediaConvert CreateJob requests for the files of a manifest: printed, written one file per job,
    /// or submitted (a re-run submits only what is missing).
    #[command(after_help = "Examples:
  sealpipe jobs --manifest run.jsonl --template create-job.json --region eu-west-1
  sealpipe jobs --manifest run.jsonl --job-template System-Ott_Hls_Ts_Avc_Aac \\
      --role arn:aws:iam::123456789012:role/MediaConvert --region eu-west-1 --out-dir jobs/
  sealpipe jobs --manifest s3://media-in/runs/2019.jsonl --template create-job.json \\
      --region eu-west-1 --submit --max-rps 5 --json

Records whose key the local keyring wraps are refused, one line each (MediaConvert cannot unwrap them).
Exit codes: 0 every record has its request (or job), 1 some were refused or failed, 2 usage or configuration error.")]
    Jobs(jobs::JobsCmd),
    /// Print the IAM policies the MediaConvert / Elastic Transcoder role and the encrypting principal
    /// need for a manifest's KMS key (JSON).
    #[command(after_help = "Examples:
  sealpipe policy --manifest run.jsonl --to s3://media-in/2019/
  sealpipe policy --kms-key arn:aws:kms:eu-west-1:123456789012:key/1234abcd \\
      --target mediaconvert --to s3://media-in/2019/ | jq .service_roles.mediaconvert")]
    Policy(jobs::PolicyCmd),
    /// Print a Kubernetes Indexed Job or an AWS Batch job definition (and its array job) that runs an
    /// encrypt or reencrypt command as N shards, from that command's own flags (after `--`).
    Deploy(deploy::DeployCmd),
    /// Print a shell completion script on stdout.
    #[command(after_help = "Examples:
  sealpipe completions bash > ~/.local/share/bash-completion/completions/sealpipe
  sealpipe completions zsh > ~/.zfunc/_sealpipe
  sealpipe completions fish > ~/.config/fish/completions/sealpipe.fish
  sealpipe completions powershell >> $PROFILE")]
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout, or write one page per command with --out-dir.
    #[command(after_help = "Examples:
  sealpipe man | man -l -
  sealpipe man --out-dir /usr/local/share/man/man1")]
    Man(ManArgs),
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
    #[arg(long, value_name = "FILE", help_heading = "Input")]
    from_list: Vec<PathBuf>,
    /// An S3 Inventory report: its manifest.json, or one CSV.gz data file (local or s3://); every
    /// current object it lists, read as a stream. Repeatable.
    /// Example: --inventory s3://inv/media-in/daily/2026-11-21T01-00Z/manifest.json
    #[arg(long, value_name = "PATH", help_heading = "Input")]
    inventory: Vec<PathBuf>,
    /// Take files matching this pattern again after an --exclude (as the AWS CLI: every file is
    /// taken by default, filters apply in order and the last match wins; * also matches /; matched
    /// against the path below the input). Repeatable. Example: --exclude '*' --include '*.ts'
    #[arg(long = "include", value_name = "PATTERN", help_heading = "Input")]
    include_glob: Vec<String>,
    /// Leave out files matching this pattern (see --include; counted in the summary as skipped).
    /// Repeatable. Example: --exclude '*.tmp' --exclude 'cache/*'
    #[arg(long = "exclude", value_name = "PATTERN", help_heading = "Input")]
    exclude_glob: Vec<String>,
    /// --include and --exclude in command-line order (filled from the matches).
    #[arg(skip)]
    filters: Vec<Rule>,
    /// Let one generated data key serve several files (each with its own random IV), within
    /// limits: max-files (default 1000, at most 1000000), max-bytes (default 64G), max-age
    /// (default 5m). Without it every file gets its own key. Example: --reuse-key max-files=500,max-age=10m
    #[arg(long, value_name = "LIMITS", num_args = 0..=1, default_missing_value = "", value_parser = parse_reuse, help_heading = "Keys")]
    reuse_key: Option<KeyReuse>,
    /// Take only shard I of N (a stable hash of each file's key); auto/N reads the index from
    /// JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch).
    /// The manifest name gets .shard-I-of-N (or put {shard} in --manifest). Example: --shard auto/16
    #[arg(long, value_name = "I/N", help_heading = "Run control")]
    shard: Option<String>,
    /// Stop starting files after this many failures (exit code 3); a re-run resumes. Example: --max-errors 10
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Run control")]
    max_errors: Option<u64>,
    /// Show what would be done (files to encrypt, already done, bytes) without encrypting,
    /// writing or asking for keys. Example: --dry-run
    #[arg(long, help_heading = "Run control")]
    dry_run: bool,
    /// Output folder; files keep their relative paths and names (or --to s3://...). Example: --out /tmp/enc
    #[arg(long, value_name = "DIR", required_unless_present = "to", help_heading = "Output")]
    out: Option<PathBuf>,
    #[command(flatten)]
    s3: aws::S3Args,
    /// Cipher mode. Example: --mode gcm
    #[arg(long, value_enum, default_value = "ctr", help_heading = "Keys")]
    mode: ModeArg,
    /// Plaintext digest each record carries and verify compares: sha256 (as sha256sum prints it),
    /// blake3 (as b3sum prints it) and crc64nvme (S3's ChecksumCRC64NVME, in hex) hash in parallel
    /// and never cap one file; none records no digest, so verify can check only that each file
    /// decrypts and has its length. Example: --digest blake3
    #[arg(long, default_value = "sha256", value_parser = clap::builder::PossibleValuesParser::new(["sha256", "blake3", "crc64nvme", "none"]).map(|s| s.parse::<DigestAlg>().expect("listed values parse")), help_heading = "Output")]
    digest: DigestAlg,
    /// Service(s) that will decrypt: sets IV length, encryption context and settings blocks.
    /// Example: --target mediaconvert
    #[arg(long, value_enum, default_value = "any", help_heading = "Keys")]
    target: TargetArg,
    /// Key size for generated data keys. Example: --key-bits 128
    #[arg(long, default_value_t = 256, value_parser = clap::builder::PossibleValuesParser::new(["128", "192", "256"]).map(|s| s.parse::<u16>().expect("listed values parse")), help_heading = "Keys")]
    key_bits: u16,
    /// Use this raw data key (16, 24 or 32 bytes) for every file instead of a fresh key per file.
    /// Example: --data-key-file key.bin  (made with: openssl rand 32 > key.bin)
    #[arg(long, value_name = "PATH", help_heading = "Keys")]
    data_key_file: Option<PathBuf>,
    /// Use this IV (hex; 16 bytes, or 12 for GCM; a 12-byte CTR IV is allowed with a warning). Refused when one key
    /// would encrypt several files. Example: --iv-hex 00112233445566778899aabbccddeeff
    #[arg(long, value_name = "HEX", help_heading = "Keys")]
    iv_hex: Option<String>,
    /// Manifest to append records to (an s3:// URL is uploaded at the end of the run, also after failures).
    /// Default: OUT/manifest.jsonl, or with --to a file named after the destination under
    /// $XDG_STATE_HOME/sealpipe/ (~/.local/state/sealpipe/). Example: --manifest run.jsonl
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    manifest: Option<PathBuf>,
    /// Ask S3 to restore archived sources (GLACIER, DEEP_ARCHIVE, Intelligent-Tiering's archive
    /// tiers), once each: RestoreObject for this many days at this tier (default days=7,tier=Bulk).
    /// Without it they are only reported; either way a later run encrypts what is restored.
    /// Example: --restore days=3,tier=Standard
    #[arg(long, value_name = "days=N,tier=T", num_args = 0..=1, default_missing_value = "", value_parser = parse_restore, help_heading = "Input")]
    restore: Option<sealpipe::store::RestoreRequest>,
    /// With an s3:// --manifest: store its records in S3 at least this often as the run goes
    /// (seconds), so a machine lost mid-run loses at most that much of the record; an output whose
    /// record was lost is found by its envelope and encrypted again. Example: --manifest-flush-seconds 30
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Output")]
    manifest_flush_seconds: u64,
    /// With an s3:// --manifest: also store it once this many new records wait. Example: --manifest-flush-records 500
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Output")]
    manifest_flush_records: u64,
    /// Prefix for each record's MediaConvert FileInput (relative path appended).
    /// Default: the local output path. Example: --file-input-prefix s3://media-in/2019/
    #[arg(long, value_name = "URL", help_heading = "Output")]
    file_input_prefix: Option<String>,
    /// Overwrite outputs that already exist, and encrypt again files the manifest records as done.
    /// Example: --force
    #[arg(long, help_heading = "Run control")]
    force: bool,
    /// How long the lease on an s3:// manifest lasts without renewal, in seconds: a run that dies
    /// blocks the next run of the job on another host this long (on the same host, not at all).
    /// It is renewed every third of it. Example: --lease-seconds 300
    #[arg(long, value_name = "SECONDS", default_value_t = sealpipe::run::lease::DEFAULT_TTL.as_secs(), value_parser = clap::value_parser!(u64).range(3..), help_heading = "Run control")]
    lease_seconds: u64,
    /// Skip symbolic links inside input folders (reported as skipped) instead of encrypting the
    /// files they point to, as `aws s3 cp --no-follow-symlinks` does. Example: --no-follow-symlinks
    #[arg(long, help_heading = "Input")]
    no_follow_symlinks: bool,
    /// On SIGTERM or Ctrl-C (an eviction, a spot reclaim): start no more files, let those in flight
    /// finish and store the manifest within this many seconds, then exit 130 (a re-run resumes);
    /// past it, or on a second signal, in-flight files are aborted. Keep it under the engine's own
    /// grace (Kubernetes' terminationGracePeriodSeconds, default 30); 0 aborts at once.
    /// Example: --grace-seconds 90
    #[arg(long, value_name = "SECONDS", default_value_t = 20, help_heading = "Run control")]
    grace_seconds: u64,
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

/// [`shard_manifest`] for a manifest URL: the key's last segment gets the
/// tag (the key is kept byte for byte otherwise, `//` included).
fn shard_url(url: &str, shard: Option<Shard>) -> String {
    let Some(shard) = shard else { return url.to_string() };
    let tag = format!("shard-{}-of-{}", shard.index, shard.count);
    if url.contains("{shard}") {
        return url.replace("{shard}", &tag);
    }
    let name_at = url.rfind('/').map_or(0, |i| i + 1);
    match url[name_at..].rfind('.').filter(|&dot| dot > 0) {
        Some(dot) => format!("{}.{tag}{}", &url[..name_at + dot], &url[name_at + dot..]),
        None => format!("{url}.{tag}"),
    }
}

#[derive(Args)]
struct DecryptArgs {
    /// The encrypted file. Example: /tmp/enc/big.mp4
    #[arg(value_name = "INPUT")]
    input: PathBuf,
    /// Where to write the plaintext: a file path (not a folder). Example: --out /tmp/big.mp4
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    out: PathBuf,
    /// Manifest holding the file's record (key, IV, mode, digest); a local file or s3://bucket/key. Example: --manifest /tmp/enc/manifest.jsonl
    #[arg(long, value_name = "PATH", conflicts_with_all = ["key_hex", "data_key_file"], help_heading = "Keys")]
    manifest: Option<PathBuf>,
    /// Take the key, IV and mode from the object's own envelope (an S3 output sealpipe wrote
    /// carries one in its metadata), without a manifest. Example: --envelope
    #[arg(long, conflicts_with_all = ["manifest", "key_hex", "data_key_file", "mode", "iv_hex"], help_heading = "Keys")]
    envelope: bool,
    /// Cipher mode, without a manifest. Example: --mode ctr
    #[arg(long, value_enum, required_unless_present_any = ["manifest", "envelope"], help_heading = "Keys")]
    mode: Option<ModeArg>,
    /// Raw data key in hex, without a manifest. Example: --key-hex 603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4
    #[arg(long, value_name = "HEX", conflicts_with = "data_key_file", help_heading = "Keys")]
    key_hex: Option<String>,
    /// Raw data key file (16, 24 or 32 bytes), without a manifest. Example: --data-key-file key.bin
    #[arg(long, value_name = "PATH", help_heading = "Keys")]
    data_key_file: Option<PathBuf>,
    /// IV in hex, without a manifest (12 or 16 bytes for CTR/GCM, 16 for CBC).
    /// Example: --iv-hex f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff
    #[arg(long, value_name = "HEX", required_unless_present_any = ["manifest", "envelope"], help_heading = "Keys")]
    iv_hex: Option<String>,
    /// Overwrite the output if it exists. Example: --force
    #[arg(long, help_heading = "Run control")]
    force: bool,
}

#[derive(Args)]
struct VerifyArgs {
    /// Manifest whose files to verify (a local file or s3://bucket/key). Example: --manifest /tmp/enc/manifest.jsonl
    #[arg(long, value_name = "PATH", help_heading = "Input")]
    manifest: PathBuf,
}

/// An error that makes the whole command pointless (exit code 2).
struct UsageError(anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for UsageError {
    fn from(e: E) -> Self {
        UsageError(e.into())
    }
}

/// The `--include`/`--exclude` rules of `m` in the order they were given.
fn filter_rules(m: &clap::ArgMatches) -> Vec<Rule> {
    let mut rules = Vec::new();
    for (id, include) in [("include_glob", true), ("exclude_glob", false)] {
        if let (Some(at), Some(values)) = (m.indices_of(id), m.get_many::<String>(id)) {
            for (i, v) in at.zip(values) {
                rules.push((i, if include { Rule::Include(v.clone()) } else { Rule::Exclude(v.clone()) }));
            }
        }
    }
    rules.sort_by_key(|(i, _)| *i);
    rules.into_iter().map(|(_, r)| r).collect()
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match (&mut cli.command, matches.subcommand()) {
        (Command::Encrypt(c), Some((_, m))) => c.args.filters = filter_rules(m),
        (Command::Reencrypt(c), Some((_, m))) => c.args.encrypt.filters = filter_rules(m),
        _ => {}
    }
    let output = match &cli.command {
        Command::Encrypt(c) => c.work.output.clone(),
        Command::Reencrypt(c) => c.work.output.clone(),
        Command::Decrypt(c) => c.work.output.clone(),
        Command::Verify(c) => c.work.output.clone(),
        Command::RebuildManifest(c) => c.work.output.clone(),
        Command::Bench(c) => c.output.clone(),
        Command::MergeManifests(c) => c.output.clone(),
        Command::Jobs(c) => c.output.clone(),
        Command::Policy(c) => c.output.clone(),
        Command::Completions(_) | Command::Man(_) | Command::Deploy(_) => OutputArgs::default(),
    };
    if let Err(e) = logging::init(&output) {
        errln!("sealpipe: error: {}", one_line(&e));
        return ExitCode::from(2);
    }
    report::configure(&output);
    interrupt::install();
    match run(cli) {
        Ok(code) => code,
        Err(UsageError(e)) => {
            errln!("sealpipe: error: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line, each cause once (a cause whose text an
/// outer message already contains is not repeated).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if line.contains(&cause) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&cause);
    }
    line
}

fn run(cli: Cli) -> Result<ExitCode, UsageError> {
    let g = match &cli.command {
        Command::Encrypt(c) => c.work.global(c.kms.kms_key.clone()),
        Command::Reencrypt(c) => c.work.global(c.kms.kms_key.clone()),
        Command::Decrypt(c) => c.work.global(c.kms.kms_key.clone()),
        Command::Verify(c) => c.work.global(c.kms.kms_key.clone()),
        Command::RebuildManifest(c) => c.work.global(None),
        Command::Bench(c) => Global { threads: None, json: c.output.json, keyring: None, create_keyring: false, memory: None, chunk_size: c.chunk.chunk_size, kms_key: None, aws: c.aws.clone() },
        Command::MergeManifests(c) => return merge::run(c.args.clone(), c.output.json).map_err(UsageError::from),
        Command::Completions(c) => return docs::completions(Cli::command(), c.shell).map_err(UsageError::from),
        Command::Man(c) => return docs::man(Cli::command(), c.out_dir.as_deref()).map_err(UsageError::from),
        Command::Jobs(c) => return jobs::run_jobs(c),
        Command::Policy(c) => return jobs::run_policy(c),
        Command::Deploy(c) => return deploy::run(c, Cli::command()),
    };
    let g = &g;
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
        Command::Encrypt(c) => encrypt(c.args, g, &keyring_path, tuning, None, Vec::new()),
        Command::Reencrypt(c) => reencrypt::run(c.args, g, &keyring_path, tuning),
        Command::Decrypt(c) => decrypt(c.args, g, &keyring_path, tuning),
        Command::Verify(c) => verify(c.args, g, &keyring_path, tuning),
        Command::RebuildManifest(c) => rebuild::run(c.args, &context(g, &keyring_path, None)?, g.json).map_err(UsageError::from),
        Command::Bench(c) => bench::run(c.args, g),
        Command::MergeManifests(_) | Command::Jobs(_) | Command::Policy(_) | Command::Deploy(_) | Command::Completions(_) | Command::Man(_) => {
            unreachable!("handled above")
        }
    }
}

/// `--out DIR` must be a folder or creatable as one: said about the flag, not a path derived from it.
fn check_out_dir(out: &Path) -> anyhow::Result<()> {
    let existing = out.ancestors().find(|p| !p.as_os_str().is_empty() && p.symlink_metadata().is_ok());
    match existing {
        Some(p) if !p.is_dir() && p == out => Err(anyhow!("--out {}: not a directory (it is a file; give a folder)", out.display())),
        Some(p) if !p.is_dir() => Err(anyhow!("--out {}: cannot create it: {} is not a directory", out.display(), p.display())),
        _ => Ok(()),
    }
}

fn parse_hex(text: &str, flag: &str) -> anyhow::Result<Vec<u8>> {
    hex::decode(text.trim()).map_err(|e| anyhow!("malformed hex in {flag}: {e}"))
}

fn exit_for(summary: &Summary) -> ExitCode {
    if summary.interrupted {
        // Stopped by a signal with everything in flight finished and recorded: retried, it resumes.
        ExitCode::from(interrupt::INTERRUPTED)
    } else if summary.stopped_early() {
        ExitCode::from(3)
    } else if !summary.failures.is_empty() {
        ExitCode::from(1)
    } else if summary.archived > 0 {
        // Work remains: archived objects wait for a restore.
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    }
}

/// `--restore [days=N,tier=T]`.
fn parse_restore(text: &str) -> Result<sealpipe::store::RestoreRequest, String> {
    let mut request = sealpipe::store::RestoreRequest { days: 7, tier: "Bulk".into() };
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some(("days", n)) => request.days = n.parse().ok().filter(|d| (1..=36500).contains(d)).ok_or_else(|| format!("days={n}: a number of days from 1"))?,
            Some(("tier", t)) => match ["Bulk", "Standard", "Expedited"].iter().find(|k| k.eq_ignore_ascii_case(t)) {
                Some(tier) => request.tier = tier.to_string(),
                None => return Err(format!("tier={t}: expected Bulk, Standard or Expedited")),
            },
            _ => return Err(format!("{part}: expected days=N or tier=Bulk|Standard|Expedited")),
        }
    }
    Ok(request)
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
                report::info(&format!("sealpipe: warning: --iv-hex: {warning}"));
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
    // Argument checks before any network or credential work.
    if let Some(out) = &a.out {
        check_out_dir(out)?;
    }
    if a.s3.to.is_some() {
        use sealpipe::store::s3::{MAX_PART_SIZE, MIN_PART_SIZE};
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&a.s3.part_size) {
            return Err(anyhow!("--part-size must be between 5MiB and 5GiB (S3's limits), got {}", a.s3.part_size).into());
        }
        if a.s3.concurrency == 0 {
            return Err(anyhow!("--concurrency must be at least 1").into());
        }
    }
    // Objects and an s3:// manifest are stored with the same server-side encryption.
    let object = a.s3.object()?;
    let manifest_sse = object.sse.clone();
    let ctx = context(&with_buckets(g, &a), keyring_path, g.kms_key.clone())?;
    let mut default_manifest_note = None;
    // Where the job's manifest is: an s3:// URL (each shard its own), or a local path.
    let manifest_url = a.manifest.as_deref().filter(|m| aws::is_url(m)).map(|m| shard_url(&m.to_string_lossy(), shard));
    let local_manifest = match &manifest_url {
        Some(url) => {
            let store = ctx.stores.remote(url)?.ok_or_else(|| anyhow!("{url}: not a URL"))?;
            ManifestCopy::check_url(store, url)?;
            None
        }
        None => Some(shard_manifest(
            &a.manifest.clone().unwrap_or_else(|| match (&a.out, &a.s3.to) {
                (Some(out), _) => out.join("manifest.jsonl"),
                (None, Some(to)) => {
                    let path = aws::default_s3_manifest(to);
                    // Said once the run is sure to start (after every check that can refuse it).
                    default_manifest_note = Some(format!("sealpipe: manifest: {} (the default for --to {to}; --manifest names another)", path.display()));
                    path
                }
                (None, None) => PathBuf::from("manifest.jsonl"),
            }),
            shard,
        )),
    };
    // One budget sizes every buffer: files in flight, pipeline windows, part buffers.
    let budget = g.memory.unwrap_or_else(MemoryPlan::default_budget);
    let upload = a.s3.to.as_ref().map(|_| (a.s3.part_size, a.s3.concurrency));
    let plan = MemoryPlan::new(budget, rayon::current_num_threads(), tuning.chunk, upload)?;
    let settings = UploadSettings { part_size: a.s3.part_size, concurrency: if a.s3.concurrency == 0 { 0 } else { plan.upload_concurrency }, checksum: a.s3.checksum.into(), overwrite: a.force, object };
    let destination = match (&a.s3.to, &a.out) {
        (Some(to), _) if !Stores::is_url(to) => return Err(anyhow!("{to}: not an s3:// URL (expected s3://bucket/prefix/)").into()),
        (Some(to), _) => ctx.stores.destination(to, settings)?,
        (None, Some(out)) => Box::new(sealpipe::store::local::LocalDir::new(out, a.force)),
        (None, None) => return Err(anyhow!("give --out DIR or --to s3://bucket/prefix/").into()),
    };
    // One run of the job at a time: taken before the manifest is read and
    // held until it is written back (dropped last of this function's
    // values, on every path). A refused run has written nothing.
    let lease = match (&manifest_url, &local_manifest) {
        _ if a.dry_run => None,
        (Some(url), _) => {
            let store = ctx.stores.remote_shared(url)?.ok_or_else(|| anyhow!("{url}: not a URL"))?;
            Some(Lease::remote(std::sync::Arc::clone(store), url, std::time::Duration::from_secs(a.lease_seconds), manifest_sse.clone())?)
        }
        (None, Some(path)) => Some(Lease::local(path)?),
        (None, None) => unreachable!("a manifest is a URL or a path"),
    };
    if let Some(lease) = &lease {
        interrupt::on_interrupt(lease.on_interrupt());
    }
    if let Some(holder) = lease.as_ref().and_then(|l| l.took_over.as_ref()) {
        report::info(&format!("sealpipe: took over the lease of {} (a run that is gone, or whose lease ran out)", holder.describe()));
    }
    // An s3:// manifest is written to a local temporary file and uploaded at the end.
    let mut remote_manifest = match &manifest_url {
        Some(url) => Some(fetch_manifest(&ctx, Path::new(url), true)?),
        None => None,
    };
    let manifest_path = match (&remote_manifest, local_manifest) {
        (Some(m), _) => m.local.clone(),
        (None, Some(path)) => path,
        (None, None) => unreachable!("a manifest is a URL or a path"),
    };
    // The manifest is the ledger a re-run resumes from: every record synced to disk.
    let manifest = ManifestWriter::durable(&manifest_path)?;
    // Only now, every check that can refuse the run done: the key provider
    // (a dry run creates no keyring; the files' keys are asked for one by one).
    let provider = if a.dry_run { ctx.providers.for_dry_run()? } else { ctx.providers.for_new_keys()? };
    if let Some(note) = &default_manifest_note {
        report::info(note);
    }
    if let Some(abort) = destination.recovery().map(|r| r.on_interrupt()) {
        interrupt::on_interrupt(move || {
            let n = abort();
            errln!("sealpipe: interrupted: aborted {n} open multipart upload(s)");
        });
    }

    let filter = Filter::new(a.filters);
    let job = EncryptJob {
        filter: (!filter.is_empty()).then_some(&filter),
        lists: a.from_list,
        inventories: a.inventory,
        mode,
        digest: a.digest,
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
        exclude: [manifest_path.clone(), sealpipe::run::ledger::journal_path(&manifest_path), sealpipe::run::lease::lock_path(&manifest_path)].into_iter().chain(exclude).collect(),
        stores: &ctx.stores,
        follow_symlinks: !a.no_follow_symlinks,
        manifest_name: remote_manifest.as_ref().map(|m| m.url.clone()),
        restore: a.restore.clone(),
        copy_props: a.s3.copy_props.into(),
        stop: (!a.dry_run).then(|| interrupt::graceful(std::time::Duration::from_secs(a.grace_seconds))),
        ..EncryptJob::new(a.inputs, destination.as_ref(), provider.as_ref())
    };
    let progress = report::Progress::new(command, !g.json, g.json);
    // An s3:// manifest is stored as the run goes, not only at its end.
    let flusher = Flusher::new(std::time::Duration::from_secs(a.manifest_flush_seconds), a.manifest_flush_records);
    let summary = std::thread::scope(|scope| {
        if let Some(copy) = remote_manifest.as_ref().filter(|_| !a.dry_run) {
            let (manifest, flusher, sse, lease) = (&manifest, &flusher, manifest_sse.as_ref(), lease.as_ref());
            let snapshot = copy.local.with_extension("snapshot");
            scope.spawn(move || {
                // Only while the lease is still this run's (renewed once more first), as at the end.
                let upload = |p: &Path| lease.map_or(Ok(()), Lease::confirm).and_then(|()| copy.upload_snapshot(p, sse));
                // The error names the manifest and says what happens next (a later turn, or the end of the run).
                let warn = |e: &sealpipe::Error| report::info(&format!("sealpipe: warning: cannot store the manifest as the run goes: {e}"));
                flusher.run(manifest, &snapshot, &upload, &warn);
            });
        }
        let summary = encrypt::encrypt(&job, &manifest, &progress);
        flusher.stop();
        summary
    })?;
    progress.clear();
    drop(manifest);
    // Also after a partial failure: the records of the files that did finish.
    let manifest_path = match remote_manifest.as_mut() {
        Some(m) if !a.dry_run => {
            // Never over another run's manifest: a lease lost meanwhile keeps the records here.
            if let Err(e) = lease.as_ref().map_or(Ok(()), |l| l.confirm()) {
                return Err(anyhow!("{e}; its records are kept in {}", m.keep_local().display()).into());
            }
            m.upload(manifest_sse.as_ref())?;
            if m.joined > 0 {
                report::info(&format!("sealpipe: manifest: {} was written by another run meanwhile; its {} line(s) this run's copy lacked are kept beside this run's records", m.url, m.joined));
            }
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
        "interrupted": summary.interrupted,
        "filtered": filter.rejected(),
        "filtered_by": filter.reasons().into_iter().map(|(rule, files)| serde_json::json!({"rule": rule, "files": files})).collect::<Vec<_>>(),
        "contexts": target.services().iter().map(|s| match s {
            sealpipe::format::Service::MediaConvert => "MediaConvert",
            sealpipe::format::Service::ElasticTranscoder => "Elastic Transcoder",
        }).collect::<Vec<_>>(),
    });
    if let Some(Err(e)) = lease.map(Lease::release) {
        report::info(&format!("sealpipe: warning: the job's lease was not given back ({e}); it ends when its time runs out"));
    }
    let verb = if a.dry_run { "would encrypt" } else { verb };
    report::summary(command, verb, &summary, extra, g.json);
    if !g.json && summary.files > 0 && !a.dry_run {
        report::info(&format!("sealpipe: manifest: {}", manifest_path.display()));
    }
    if summary.interrupted {
        errln!("sealpipe: interrupted: no file left half done; {} file(s) finished and recorded in {}; a re-run does the rest", summary.files, manifest_path.display());
    }
    Ok(exit_for(&summary))
}

fn decrypt(a: DecryptArgs, g: &Global, keyring_path: &Path, tuning: Tuning) -> Result<ExitCode, UsageError> {
    if a.out.is_dir() {
        return Err(anyhow!("--out {}: is a directory; give the path of the plaintext file to write (e.g. --out {})", a.out.display(), a.out.join(a.input.file_name().unwrap_or_default()).display()).into());
    }
    let ctx = context(g, keyring_path, g.kms_key.clone())?;
    let mut etag = None;
    let (mode, key, iv, expected) = match &a.manifest {
        Some(m) => {
            let mut records = read_manifest(m, &ctx)?;
            if !aws::is_url(m) {
                let _ = verify::relocate(&mut records, m);
            }
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
            let digest = record.digest().map_err(|e| anyhow!("{}: its record in {}: {e}", a.input.display(), m.display()))?;
            (record.mode, key, record.iv()?, Some(digest))
        }
        None if a.envelope => {
            let url = a.input.to_string_lossy();
            let store = ctx.stores.remote(&url)?.ok_or_else(|| anyhow!("{url}: --envelope reads an S3 object's envelope; give its s3:// URL"))?;
            let stamped = store.envelope(&url)?.ok_or_else(|| anyhow!("{url}: carries no sealpipe envelope (give --manifest, or --mode, a key and --iv-hex)"))?;
            let record = stamped.envelope.record(stamped.source.as_deref().unwrap_or_default(), &url, stamped.size, Some(stamped.etag.clone()))?;
            let provider = ctx.providers.for_record(&record)?;
            let key = unwrap_record(&record, provider.as_ref()).map_err(|e| anyhow!("{url}: {e}"))?;
            etag = Some(stamped.etag);
            // No digest: an envelope is written before the bytes; the tag or padding and the length are checked.
            (record.mode, key, record.iv()?, None)
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
    let settings = verify::Decryption { mode, key: &key, iv: &iv, expected: expected.as_ref(), overwrite: a.force, tuning: &tuning };
    let started = std::time::Instant::now();
    let result = ctx
        .stores
        .open(&a.input.to_string_lossy(), etag.as_deref().filter(|_| aws::is_url(&a.input)))
        .and_then(|source| verify::decrypt(source.as_ref(), &a.out, &settings, &progress));
    progress.clear();
    let summary = match result {
        Ok(opened) => Summary { files: 1, bytes: opened.cipher_len, seconds: started.elapsed().as_secs_f64(), ..Default::default() },
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
    // A run's working copy lives in the state folder (it outlives a reboot); a read-only copy in the temporary folder.
    let work = if appending { aws::state_dir() } else { std::env::temp_dir() };
    let copy = ManifestCopy::fetch(store, &url, appending, &work)?;
    if copy.resumed {
        report::info(&format!("sealpipe: resuming from {} (the local copy of {url} an interrupted run left)", copy.local.display()));
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

/// The records of a manifest, and its lines that are not records (torn or unparsable).
fn read_manifest_lines(path: &Path, ctx: &aws::Context) -> anyhow::Result<(Vec<Record>, Vec<record::BadLine>)> {
    if aws::is_url(path) {
        let remote = fetch_manifest(ctx, path, false)?;
        Ok(record::read_all(&remote.local).map_err(|e| anyhow!("{}: {e}", remote.url))?)
    } else {
        Ok(record::read_all(path)?)
    }
}

/// `g` with the account each bucket of the run must belong to, sent on
/// every request to it: the destination's and an `s3://` manifest's
/// (`--expected-bucket-owner`), the sources' (`--source-expected-bucket-owner`,
/// also for any bucket a list or inventory names); and the sources' region
/// where `--source-region` says it.
fn with_buckets(g: &Global, a: &EncryptArgs) -> Global {
    let mut g = g.clone();
    let bucket = |url: &str| S3Url::split(url).ok().map(|(b, _)| b.to_string());
    if let Some(owner) = &a.s3.expected_bucket_owner {
        let manifest = a.manifest.as_ref().map(|m| m.to_string_lossy().into_owned());
        for b in a.s3.to.iter().chain(manifest.iter()).filter_map(|u| bucket(u)) {
            g.aws.bucket_owners.push((b, owner.clone()));
        }
    }
    for b in a.inputs.iter().filter_map(|p| bucket(&p.to_string_lossy())) {
        if let Some(owner) = &g.aws.source_expected_bucket_owner {
            g.aws.bucket_owners.push((b.clone(), owner.clone()));
        }
        if let Some(region) = &g.aws.source_region {
            g.aws.bucket_regions.push((b, region.clone()));
        }
    }
    g
}

/// The context of a command; the keyring is created on first use only at
/// its default path or with --create-keyring.
fn context(g: &Global, keyring_path: &Path, kms_key: Option<String>) -> anyhow::Result<aws::Context> {
    let mut ctx = aws::Context::new(&g.aws, keyring_path, kms_key)?;
    ctx.providers.create_keyring = g.create_keyring || g.keyring.is_none();
    Ok(ctx)
}

/// Parse a hex key into memory that is zeroized when dropped.
fn zeroize_hex(h: &str) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    Ok(zeroize::Zeroizing::new(parse_hex(h, "--key-hex")?))
}

fn verify(a: VerifyArgs, g: &Global, keyring_path: &Path, tuning: Tuning) -> Result<ExitCode, UsageError> {
    let ctx = context(g, keyring_path, g.kms_key.clone())?;
    let (mut records, bad_lines) = read_manifest_lines(&a.manifest, &ctx)?;
    // Outputs recorded below the manifest's folder are read below it, wherever it is now.
    let relocated = if aws::is_url(&a.manifest) { None } else { verify::relocate(&mut records, &a.manifest) };
    if let (Some(folder), false) = (relocated, g.json) {
        report::info(&format!("sealpipe: verify: outputs are read below {} (their folder moved since they were recorded)", folder.display()));
    }
    if records.is_empty() && bad_lines.is_empty() {
        return Err(anyhow!("{}: manifest has no records", a.manifest.display()).into());
    }
    let progress = report::Progress::new("verify", !g.json, false);
    let mut summary = verify::verify_all(&records, &|r: &Record| ctx.providers.for_record(r), &ctx.stores, &tuning, &progress)?;
    // A line that is not a record (torn by a crash mid-append, or damaged) leaves a file unverified: a failure.
    for bad in &bad_lines {
        use sealpipe::run::report::Reporter;
        let (what, err) = verify::unverified_line(&a.manifest, bad);
        progress.failed(&what, &err);
        summary.failures.push(sealpipe::error::Failure::new(&what, &err));
    }
    summary.failures.sort();
    progress.clear();
    // Records made with --digest none: said, never counted as a content check.
    let unchecked = summary.unchecked_content;
    let note = format!("{unchecked} file(s) carry no digest (--digest none): checked only that they decrypt and have the recorded length, not their content");
    report::summary("verify", "verified", &summary, serde_json::json!({"manifest": a.manifest, "content_unchecked": unchecked, "note": (unchecked > 0).then_some(&note)}), g.json);
    if unchecked > 0 && !g.json {
        report::info(&format!("sealpipe: verify: {note}"));
    }
    Ok(exit_for(&summary))
}
