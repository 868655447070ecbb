//! The command line: every clap definition (commands, flags, value enums),
//! apart from the glue that runs the commands (`crate::cmd`). Flags shared
//! by several commands are groups here (`OutputArgs`, `WorkArgs`, ...); each
//! command's own are in the file of its group: [`encrypt`] (encrypt,
//! reencrypt, their S3 upload flags), [`decrypt`] (decrypt, verify, status),
//! [`aws`] (the AWS connection flags), [`bench`], [`jobs`] (jobs, policy),
//! [`manifests`] (merge-manifests, rebuild-manifest).

pub mod aws;
pub mod bench;
pub mod decrypt;
pub mod deploy;
pub mod encrypt;
pub mod jobs;
pub mod manifests;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sealpipe::{DEFAULT_CHUNK, Mode, parse_size, Rule, Target};

pub use self::decrypt::{DecryptArgs, VerifyArgs};
pub use self::encrypt::{EncryptArgs, ReencryptArgs};


const ABOUT: &str = "Encrypt media client-side (AES-CTR, AES-CBC/PKCS#7, AES-GCM) on all cores, \
so AWS Elemental MediaConvert and Amazon Elastic Transcoder can decrypt it with a wrapped data key.";

#[derive(Parser)]
#[command(name = "sealpipe", version, about = ABOUT, max_term_width = 100, after_help = "Exit codes: 0 all files done (or already done), 1 some files failed, 2 usage or configuration error, 3 stopped early at --max-errors, 130 interrupted (incomplete outputs discarded; a re-run resumes).")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}


/// Output, verbosity and logging: every command.
#[derive(Args, Clone, Default)]
pub struct OutputArgs {
    /// Print one JSON event per line on stdout as files go (started, done, failed, skipped, note),
    /// then a summary line last (files, bytes, seconds, GB/s, failures); everything else goes to
    /// stderr. Example: --json | jq .
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// Draw progress bars on stderr even when it is not a terminal. Example: --progress
    #[arg(long, help_heading = "Output", conflicts_with = "no_progress")]
    pub progress: bool,
    /// Never draw progress bars (default: drawn when stderr is a terminal). Example: --no-progress
    #[arg(long, help_heading = "Output")]
    pub no_progress: bool,
    /// Verbosity and the log.
    #[command(flatten)]
    pub log: LogArgs,
}

/// Verbosity and the log: every command (alone, for those that print one document and draw no progress).
#[derive(Args, Clone, Default)]
pub struct LogArgs {
    /// Print errors only: no progress, summary or notes on stderr (--json still prints). Example: -q
    #[arg(short, long, help_heading = "Output", conflicts_with_all = ["verbose", "log_level"])]
    pub quiet: bool,
    /// More log detail on stderr: -v info, -vv debug (the AWS SDK's own requests, redacted).
    /// Example: -vv
    #[arg(short, long, action = clap::ArgAction::Count, help_heading = "Output")]
    pub verbose: u8,
    /// Log level (default warn). debug includes the AWS SDK's tracing (no credentials or key
    /// material). Example: --log-level debug
    #[arg(long, value_enum, value_name = "LEVEL", help_heading = "Output")]
    pub log_level: Option<LogLevel>,
    /// Write the log to this file (appended) instead of stderr. Example: --log-file sealpipe.log
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub log_file: Option<PathBuf>,
}

impl LogArgs {
    /// As the whole set of output flags, the others at their defaults.
    pub fn output(&self) -> OutputArgs {
        OutputArgs { log: self.clone(), ..OutputArgs::default() }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

/// The parallel work unit (every command that encrypts or decrypts, bench too).
#[derive(Args, Clone)]
pub struct ChunkArg {
    /// Parallel work unit (a multiple of 16 bytes). Example: --chunk-size 4MiB
    #[arg(long, value_name = "SIZE", default_value_t = DEFAULT_CHUNK as u64, value_parser = parse_size, help_heading = "Performance")]
    pub chunk_size: u64,
}

/// Threads and memory of a run.
#[derive(Args, Clone)]
pub struct PerfArgs {
    /// Worker threads (default: all cores). Example: --threads 4
    #[arg(long, value_name = "N", help_heading = "Performance")]
    pub threads: Option<usize>,
    /// Memory for buffers, the whole run's bound: files in flight x pipeline windows x upload part
    /// buffers are sized to fit it (default: 1GiB, or a quarter of RAM if less). Not counted: about 60
    /// bytes per finished file for the resume ledger. Example: --memory 512MiB
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Performance")]
    pub memory: Option<u64>,
    #[command(flatten)]
    pub chunk: ChunkArg,
}

/// The local keyring.
#[derive(Args, Clone)]
pub struct KeyringArg {
    /// Local keyring file, the only thing that can unwrap the data keys it wrapped (back it up). The
    /// default one is created (mode 0600) on first use; a --keyring path that does not exist is an
    /// error unless --create-keyring is given. Default: $SEALPIPE_KEYRING, else
    /// $XDG_CONFIG_HOME/sealpipe/keyring.json (~/.config/sealpipe/keyring.json when it is unset).
    /// Example: --keyring ./keyring.json
    #[arg(long, value_name = "PATH", help_heading = "Keys")]
    pub keyring: Option<PathBuf>,
    /// Create the --keyring file (mode 0600) if it does not exist. Example: --create-keyring
    #[arg(long, help_heading = "Keys")]
    pub create_keyring: bool,
}

/// `--kms-key` of the commands that make new data keys.
#[derive(Args, Clone)]
pub struct KmsWrapArg {
    /// Wrap data keys with this AWS KMS key (key id, key ARN, alias/NAME or alias ARN) instead of the
    /// local keyring. Example: --kms-key alias/media
    #[arg(long, value_name = "KEY", help_heading = "Keys")]
    pub kms_key: Option<String>,
}

/// `--kms-key` of the commands that only unwrap recorded keys.
#[derive(Args, Clone)]
pub struct KmsUnwrapArg {
    /// KMS key to unwrap records made with KMS (default: the key each record names; records made
    /// with the local keyring use it). Example: --kms-key alias/media
    #[arg(long, value_name = "KEY", help_heading = "Keys")]
    pub kms_key: Option<String>,
}

/// The flags of every command that reads or writes encrypted data.
#[derive(Args, Clone)]
pub struct WorkArgs {
    #[command(flatten)]
    pub keyring: KeyringArg,
    #[command(flatten)]
    pub aws: aws::AwsArgs,
    #[command(flatten)]
    pub perf: PerfArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct EncryptCmd {
    #[command(flatten)]
    pub args: EncryptArgs,
    #[command(flatten)]
    pub kms: KmsWrapArg,
    #[command(flatten)]
    pub work: WorkArgs,
}

#[derive(Args)]
pub struct ReencryptCmd {
    #[command(flatten)]
    pub args: ReencryptArgs,
    #[command(flatten)]
    pub kms: KmsWrapArg,
    #[command(flatten)]
    pub work: WorkArgs,
}

#[derive(Args)]
pub struct DecryptCmd {
    #[command(flatten)]
    pub args: DecryptArgs,
    #[command(flatten)]
    pub kms: KmsUnwrapArg,
    #[command(flatten)]
    pub work: WorkArgs,
}

#[derive(Args)]
pub struct VerifyCmd {
    #[command(flatten)]
    pub args: VerifyArgs,
    #[command(flatten)]
    pub kms: KmsUnwrapArg,
    #[command(flatten)]
    pub work: WorkArgs,
}

/// `bench`: its own flags, plus the output flags, the chunk size it measures with, and the AWS flags of `--to`.
#[derive(Args)]
#[command(mut_arg("json", |a| a.help(
    "Print the whole run as one JSON document on stdout (schema sealpipe-bench/1: machine, settings, rows, peers), \
     as --compare and --plan read it; progress still goes to stderr. Example: --json > bench.json"
)))]
pub struct BenchCmd {
    #[command(flatten)]
    pub args: bench::BenchArgs,
    #[command(flatten)]
    pub chunk: ChunkArg,
    /// For the file -> S3 rows (--to).
    #[command(flatten)]
    pub aws: aws::AwsArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args)]
pub struct RebuildCmd {
    #[command(flatten)]
    pub args: manifests::RebuildArgs,
    #[command(flatten)]
    pub work: WorkArgs,
}

#[derive(Args)]
pub struct MergeCmd {
    #[command(flatten)]
    pub args: manifests::MergeArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `status`: how far a job is.
#[derive(Args)]
pub struct StatusCmd {
    /// Manifests of the job (local files or s3:// URLs), e.g. one per shard. Example: run.jsonl
    #[arg(value_name = "MANIFEST", required = true)]
    pub manifests: Vec<PathBuf>,
    /// Print one JSON object on stdout instead of text. Example: --json | jq .files
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    #[command(flatten)]
    pub aws: aws::ConnectArgs,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// Shell to write completions for. Example: bash
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Write sealpipe.1 and one page per command (sealpipe-encrypt.1, ...) into this folder instead
    /// of printing sealpipe.1 on stdout. Example: --out-dir /usr/local/share/man/man1
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// How far a job is: files done and bytes (per shard in a merged manifest), files in flight,
    /// and the last run's failures with their causes, archived and skipped objects.
    #[command(after_help = "Examples:
  sealpipe status /tmp/enc/manifest.jsonl
  sealpipe status runs/2019.shard-*.jsonl
  sealpipe status s3://media-in/runs/2019.jsonl --json | jq .files

Exit codes: 0 nothing failed or in flight, 1 some files failed or are in flight, 2 unreadable manifest.")]
    Status(StatusCmd),
    /// Print a shell completion script on stdout.
    #[command(after_help = "Examples:
  sealpipe completions bash > ~/.local/share/bash-completion/completions/sealpipe
  sealpipe completions zsh > ~/.zfunc/_sealpipe
  sealpipe completions fish > ~/.config/fish/completions/sealpipe.fish
  sealpipe completions powershell >> $PROFILE

The folders must exist first, e.g. mkdir -p ~/.local/share/bash-completion/completions")]
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout, or write one page per command with --out-dir.
    #[command(after_help = "Examples:
  sealpipe man | man -l -
  sealpipe man --out-dir /usr/local/share/man/man1")]
    Man(ManArgs),
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ModeArg {
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
pub enum TargetArg {
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

/// The S3 upload flags of encrypt (`S3Args`) given on the command line of `m`, as typed (`--sse`).
pub fn upload_flags(m: &clap::ArgMatches) -> Vec<String> {
    use clap::parser::ValueSource;
    let mut given: Vec<(usize, String)> = m
        .ids()
        .map(|id| id.as_str())
        .filter(|id| encrypt::S3Args::UPLOAD_ONLY.contains(id) && m.value_source(id) == Some(ValueSource::CommandLine))
        .map(|id| (m.index_of(id).unwrap_or(0), format!("--{}", id.replace('_', "-"))))
        .collect();
    given.sort();
    given.into_iter().map(|(_, flag)| flag).collect()
}

/// The `--include`/`--exclude` rules of `m` in the order they were given.
pub fn filter_rules(m: &clap::ArgMatches) -> Vec<Rule> {
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
