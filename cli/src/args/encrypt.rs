//! The flags of `encrypt` and `reencrypt` (which takes every flag of
//! encrypt and names where the legacy settings are), and the S3 upload
//! flags of both, with what they ask of the engine.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::builder::TypedValueParser as _;
use clap::{Args, ValueEnum};
use sealpipe::{ChecksumChoice, DigestAlg, KeyReuse, Rule, ServerSide};

use super::{ModeArg, TargetArg};

#[derive(Args)]
pub struct EncryptArgs {
    /// Files or folders to encrypt, or s3://bucket/prefix/ (every object under it; a file changed
    /// between listing and reading fails). Example: testdata/media
    #[arg(value_name = "INPUT", required_unless_present_any = ["from_list", "inventory"])]
    pub inputs: Vec<PathBuf>,
    /// Where the encrypted files go: this local folder; files keep their relative paths and names.
    /// Give --out or --to. Example: --out /tmp/enc
    #[arg(long, value_name = "DIR", help_heading = "Destination")]
    pub out: Option<PathBuf>,
    /// Where the encrypted files go: uploaded to S3 under this prefix, instead of --out (the manifest
    /// then defaults to a file named after it under $XDG_STATE_HOME/sealpipe/). Example: --to s3://media-in/2019/
    #[arg(long, value_name = "S3_URL", conflicts_with = "out", help_heading = "Destination")]
    pub to: Option<String>,
    /// Manifest to append records to (an s3:// URL is uploaded at the end of the run, also after failures).
    /// Default: OUT/manifest.jsonl, or with --to a file named after the destination under
    /// $XDG_STATE_HOME/sealpipe/ (~/.local/state/sealpipe/). Example: --manifest run.jsonl
    #[arg(long, value_name = "PATH", help_heading = "Destination")]
    pub manifest: Option<PathBuf>,
    /// A list file: one local path or s3:// URL per line (# comments; - for standard input).
    /// Outputs keep the path without its root, or the object key. Repeatable. Example: --from-list todo.txt
    #[arg(long, value_name = "FILE", help_heading = "Input")]
    pub from_list: Vec<PathBuf>,
    /// An S3 Inventory report: its manifest.json, or one CSV.gz data file (local or s3://); every
    /// current object it lists, read as a stream. Repeatable.
    /// Example: --inventory s3://inv/media-in/daily/2026-11-21T01-00Z/manifest.json
    #[arg(long, value_name = "PATH", help_heading = "Input")]
    pub inventory: Vec<PathBuf>,
    /// Take files matching this pattern again after an --exclude (as the AWS CLI: every file is
    /// taken by default, filters apply in order and the last match wins; * also matches /; matched
    /// against the path below the input). Alone it leaves nothing out: --include '*.ts' takes
    /// every file; --exclude '*' --include '*.ts' takes only .ts files. Repeatable.
    /// Example: --exclude '*' --include '*.ts'
    #[arg(long = "include", value_name = "PATTERN", help_heading = "Input")]
    pub include_glob: Vec<String>,
    /// Leave out files matching this pattern (see --include; counted in the summary as filtered).
    /// Repeatable. Example: --exclude '*.tmp' --exclude 'cache/*'
    #[arg(long = "exclude", value_name = "PATTERN", help_heading = "Input")]
    pub exclude_glob: Vec<String>,
    /// --include and --exclude in command-line order (filled from the matches).
    #[arg(skip)]
    pub filters: Vec<Rule>,
    /// Ask S3 to restore archived sources (GLACIER, DEEP_ARCHIVE, Intelligent-Tiering's archive
    /// tiers), once each: RestoreObject for this many days at this tier (default days=7,tier=Bulk).
    /// Without it they are only reported; either way a later run encrypts what is restored.
    /// Example: --restore days=3,tier=Standard
    #[arg(long, value_name = "days=N,tier=T", num_args = 0..=1, default_missing_value = "", value_parser = parse_restore, help_heading = "Input")]
    pub restore: Option<sealpipe::RestoreRequest>,
    /// Skip symbolic links inside input folders (reported as skipped) instead of encrypting the
    /// files they point to, as `aws s3 cp --no-follow-symlinks` does. Example: --no-follow-symlinks
    #[arg(long, help_heading = "Input")]
    pub no_follow_symlinks: bool,
    /// Cipher mode. Example: --mode gcm
    #[arg(long, value_enum, default_value = "ctr", help_heading = "Keys")]
    pub mode: ModeArg,
    /// Service(s) that will decrypt: sets IV length, encryption context and settings blocks.
    /// Example: --target mediaconvert
    #[arg(long, value_enum, default_value = "any", help_heading = "Keys")]
    pub target: TargetArg,
    /// Key size for generated data keys. Example: --key-bits 128
    #[arg(long, default_value_t = 256, value_parser = clap::builder::PossibleValuesParser::new(["128", "192", "256"]).map(|s| s.parse::<u16>().expect("listed values parse")), help_heading = "Keys")]
    pub key_bits: u16,
    /// Let one generated data key serve several files (each with its own random IV), within
    /// limits: max-files (default 1000, at most 1000000), max-bytes (default 64G), max-age
    /// (default 5m). Without it every file gets its own key. Example: --reuse-key max-files=500,max-age=10m
    #[arg(long, value_name = "LIMITS", num_args = 0..=1, default_missing_value = "", value_parser = parse_reuse, help_heading = "Keys")]
    pub reuse_key: Option<KeyReuse>,
    /// Use this raw data key (16, 24 or 32 bytes) for every file instead of a fresh key per file.
    /// Example: --data-key-file key.bin  (made with: openssl rand 32 > key.bin)
    #[arg(long, value_name = "PATH", help_heading = "Keys")]
    pub data_key_file: Option<PathBuf>,
    /// Use this IV (hex; 16 bytes, or 12 for GCM; a 12-byte CTR IV is allowed with a warning). Refused when one key
    /// would encrypt several files. Example: --iv-hex 00112233445566778899aabbccddeeff
    #[arg(long, value_name = "HEX", help_heading = "Keys")]
    pub iv_hex: Option<String>,
    /// Plaintext digest each record carries and verify compares: sha256 (as sha256sum prints it),
    /// blake3 (as b3sum prints it) and crc64nvme (S3's ChecksumCRC64NVME, in hex) hash in parallel
    /// and never cap one file; none records no digest, so verify can check only that each file
    /// decrypts and has its length. Example: --digest blake3
    #[arg(long, default_value = "sha256", value_parser = clap::builder::PossibleValuesParser::new(["sha256", "blake3", "crc64nvme", "none"]).map(|s| s.parse::<DigestAlg>().expect("listed values parse")), help_heading = "Manifest")]
    pub digest: DigestAlg,
    /// With an s3:// --manifest: store its records in S3 at least this often as the run goes
    /// (seconds), so a machine lost mid-run loses at most that much of the record; an output whose
    /// record was lost is found by its envelope and encrypted again. Example: --manifest-flush-seconds 30
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Manifest")]
    pub manifest_flush_seconds: u64,
    /// With an s3:// --manifest: also store it once this many new records wait. Example: --manifest-flush-records 500
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..), help_heading = "Manifest")]
    pub manifest_flush_records: u64,
    /// Prefix for each record's MediaConvert FileInput (relative path appended).
    /// Default: the local output path. Example: --file-input-prefix s3://media-in/2019/
    #[arg(long, value_name = "URL", help_heading = "Manifest")]
    pub file_input_prefix: Option<String>,
    /// Take only shard I of N (a stable hash of each file's key); auto/N reads the index from
    /// JOB_COMPLETION_INDEX (Kubernetes Indexed Job) or AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch).
    /// The manifest name gets .shard-I-of-N (or put {shard} in --manifest). Example: --shard auto/16
    #[arg(long, value_name = "I/N", help_heading = "Run control")]
    pub shard: Option<String>,
    /// Stop starting files after this many failures (exit code 3); a re-run resumes. Example: --max-errors 10
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), help_heading = "Run control")]
    pub max_errors: Option<u64>,
    /// Files in flight at once when S3 is a source or the destination (the AWS CLI's
    /// max_concurrent_requests; default 64): each waits on the network, not a core, and
    /// small objects need many. --memory still bounds them (large files take a bigger share).
    /// Local to local: one per thread. Example: --max-concurrent-requests 128
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..4097), help_heading = "Performance")]
    pub max_concurrent_requests: Option<u64>,
    /// Show what would be done (files to encrypt, already done, bytes) without encrypting,
    /// writing or asking for keys. Example: --dry-run
    #[arg(long, help_heading = "Run control")]
    pub dry_run: bool,
    /// Overwrite outputs that already exist, and encrypt again files the manifest records as done.
    /// Example: --force
    #[arg(long, help_heading = "Run control")]
    pub force: bool,
    /// How long the lease on an s3:// manifest lasts without renewal, in seconds: a run that dies
    /// blocks the next run of the job on another host this long (on the same host, not at all).
    /// It is renewed every third of it. Example: --lease-seconds 300
    #[arg(long, value_name = "SECONDS", default_value_t = sealpipe::LEASE_TTL.as_secs(), value_parser = clap::value_parser!(u64).range(3..), help_heading = "Run control")]
    pub lease_seconds: u64,
    /// On SIGTERM or Ctrl-C (an eviction, a spot reclaim): start no more files, let those in flight
    /// finish and store the manifest within this many seconds, then exit 130 (a re-run resumes);
    /// past it, or on a second signal, in-flight files are aborted. Keep it under the engine's own
    /// grace (Kubernetes' terminationGracePeriodSeconds, default 30); 0 aborts at once.
    /// Example: --grace-seconds 90
    #[arg(long, value_name = "SECONDS", default_value_t = 20, help_heading = "Run control")]
    pub grace_seconds: u64,
    #[command(flatten)]
    pub s3: S3Args,
    /// Not a flag of sealpipe: folders and s3:// prefixes are always encrypted recursively (refused
    /// with a line that says so, for habits from `aws s3 cp --recursive`).
    #[arg(long, short = 'r', hide = true)]
    pub recursive: bool,
    /// The S3 upload flags given on the command line (filled from the matches), refused with --out.
    #[arg(skip)]
    pub upload_flags: Vec<String>,
}

pub fn parse_reuse(text: &str) -> Result<KeyReuse, String> {
    text.parse()
}

/// `--restore [days=N,tier=T]`.
pub fn parse_restore(text: &str) -> Result<sealpipe::RestoreRequest, String> {
    let mut request = sealpipe::RestoreRequest { days: 7, tier: "Bulk".into() };
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

/// `--checksum`.
#[derive(Clone, Copy, ValueEnum)]
pub enum ChecksumArg {
    /// CRC32C on every part (composite object checksum).
    Crc32c,
    /// CRC64NVME on every part and the whole object.
    Crc64nvme,
    /// No checksum headers (stores that reject them).
    None,
}

impl From<ChecksumArg> for ChecksumChoice {
    fn from(c: ChecksumArg) -> Self {
        match c {
            ChecksumArg::Crc32c => ChecksumChoice::Crc32c,
            ChecksumArg::Crc64nvme => ChecksumChoice::Crc64Nvme,
            ChecksumArg::None => ChecksumChoice::None,
        }
    }
}

/// Upload options of `encrypt`.
#[derive(Args)]
pub struct S3Args {
    /// Multipart part size (5MiB to 5GiB; raised so a file fits in 10,000 parts). Example: --part-size 64MiB
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = sealpipe::parse_size, help_heading = "AWS")]
    pub part_size: u64,
    /// Part buffers per file (the one being filled and those uploading); the upload memory per file is
    /// part size x N. Example: --concurrency 16
    #[arg(long, value_name = "N", default_value_t = sealpipe::DEFAULT_PART_CONCURRENCY, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), help_heading = "AWS")]
    pub concurrency: usize,
    /// Checksum sent with every part and repeated at completion. Example: --checksum crc64nvme
    #[arg(long, value_enum, default_value = "crc32c", help_heading = "AWS")]
    pub checksum: ChecksumArg,
    /// Storage class of the uploaded objects (STANDARD, STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR,
    /// ...; default: the bucket's). Example: --storage-class INTELLIGENT_TIERING
    #[arg(long, value_name = "CLASS", help_heading = "AWS")]
    pub storage_class: Option<String>,
    /// Content-Type of every uploaded object (default: an S3 source's, or guessed from a local
    /// file's extension, as aws s3 cp does: .ts video/mp2t, .m3u8 application/vnd.apple.mpegurl, ...).
    /// Example: --content-type video/mp4
    #[arg(long, value_name = "TYPE", help_heading = "AWS")]
    pub content_type: Option<String>,
    /// Cache-Control of every uploaded object (default: an S3 source's). Example: --cache-control max-age=31536000
    #[arg(long, value_name = "VALUE", help_heading = "AWS")]
    pub cache_control: Option<String>,
    /// Content-Disposition of every uploaded object (default: an S3 source's). Example: --content-disposition attachment
    #[arg(long, value_name = "VALUE", help_heading = "AWS")]
    pub content_disposition: Option<String>,
    /// Content-Language of every uploaded object (default: an S3 source's). Example: --content-language en
    #[arg(long, value_name = "VALUE", help_heading = "AWS")]
    pub content_language: Option<String>,
    /// Content-Encoding of every uploaded object (default: an S3 source's). Example: --content-encoding identity
    #[arg(long, value_name = "VALUE", help_heading = "AWS")]
    pub content_encoding: Option<String>,
    /// What an S3 source's output gets from it, as aws s3 cp's --copy-props: default (content
    /// headers, user metadata and tags), metadata-directive (not tags), none. Example: --copy-props none
    #[arg(long, value_enum, default_value = "default", help_heading = "AWS")]
    pub copy_props: CopyPropsArg,
    /// User metadata on every uploaded object (x-amz-meta-KEY); repeatable, or comma-separated.
    /// Example: --metadata project=archive,year=2019
    #[arg(long, value_name = "KEY=VALUE", value_delimiter = ',', value_parser = parse_metadata, help_heading = "AWS")]
    pub metadata: Vec<(String, String)>,
    /// Canned ACL of the uploaded objects (private, bucket-owner-full-control, ...).
    /// Example: --acl bucket-owner-full-control
    #[arg(long, value_name = "ACL", help_heading = "AWS")]
    pub acl: Option<String>,
    /// Fail the uploads unless the bucket belongs to this account. Example: --expected-bucket-owner 123456789012
    #[arg(long, value_name = "ACCOUNT", help_heading = "AWS")]
    pub expected_bucket_owner: Option<String>,
    /// Server-side encryption of the uploaded objects and of an s3:// manifest, on top of sealpipe's
    /// own (as the AWS CLI spells it; --sse alone is AES256). Recorded in the manifest as S3 reports
    /// it. Example: --sse aws:kms
    #[arg(long, value_name = "ALGORITHM", num_args = 0..=1, default_missing_value = "AES256",
          value_parser = ["AES256", "aws:kms", "aws:kms:dsse"], help_heading = "AWS")]
    pub sse: Option<String>,
    /// KMS key S3 encrypts the objects with, for --sse aws:kms or aws:kms:dsse (default: the
    /// account's aws/s3 key). Example: --sse-kms-key-id alias/s3-media
    #[arg(long, value_name = "KEY", help_heading = "AWS")]
    pub sse_kms_key_id: Option<String>,
    /// Use an S3 Bucket Key for --sse aws:kms (fewer KMS requests by S3). Example: --bucket-key-enabled
    #[arg(long, help_heading = "AWS")]
    pub bucket_key_enabled: bool,
}

pub fn parse_metadata(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

impl S3Args {
    /// The ids of the flags that say what an uploaded object is (its checksum, class, headers,
    /// metadata, ACL, owner, server-side encryption): lost without a word on a local output, so
    /// refused with --out. --part-size and --concurrency only size buffers, and are let be.
    pub const UPLOAD_ONLY: &'static [&'static str] = &[
        "checksum", "storage_class", "content_type", "cache_control", "content_disposition",
        "content_language", "content_encoding", "copy_props", "metadata", "acl", "expected_bucket_owner", "sse",
        "sse_kms_key_id", "bucket_key_enabled",
    ];

    /// The server-side encryption these flags ask for; refuses KMS options without a KMS algorithm.
    pub fn sse(&self) -> anyhow::Result<Option<ServerSide>> {
        let kms = self.sse.as_deref().is_some_and(|a| a.starts_with("aws:kms"));
        if self.sse_kms_key_id.is_some() && !kms {
            return Err(anyhow!("--sse-kms-key-id needs --sse aws:kms or --sse aws:kms:dsse"));
        }
        if self.bucket_key_enabled && self.sse.as_deref() != Some("aws:kms") {
            return Err(anyhow!("--bucket-key-enabled needs --sse aws:kms"));
        }
        Ok(self.sse.as_ref().map(|algorithm| ServerSide {
            algorithm: algorithm.clone(),
            kms_key_id: self.sse_kms_key_id.clone(),
            bucket_key_enabled: self.bucket_key_enabled.then_some(true),
        }))
    }

    /// The object headers these flags ask for.
    pub fn object(&self) -> anyhow::Result<sealpipe::ObjectOptions> {
        Ok(sealpipe::ObjectOptions {
            storage_class: self.storage_class.clone(),
            content_type: self.content_type.clone(),
            metadata: self.metadata.clone(),
            cache_control: self.cache_control.clone(),
            content_disposition: self.content_disposition.clone(),
            content_language: self.content_language.clone(),
            content_encoding: self.content_encoding.clone(),
            tagging: None,
            expires: None,
            acl: self.acl.clone(),
            expected_bucket_owner: self.expected_bucket_owner.clone(),
            sse: self.sse()?,
        })
    }
}

/// `--copy-props`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CopyPropsArg {
    Default,
    MetadataDirective,
    None,
}

impl From<CopyPropsArg> for sealpipe::CopyProps {
    fn from(c: CopyPropsArg) -> Self {
        match c {
            CopyPropsArg::Default => sealpipe::CopyProps::Default,
            CopyPropsArg::MetadataDirective => sealpipe::CopyProps::MetadataDirective,
            CopyPropsArg::None => sealpipe::CopyProps::None,
        }
    }
}

/// Arguments of `reencrypt`: those of `encrypt` (the INPUTs being the legacy
/// objects) and where their old settings are.
#[derive(Args)]
#[command(mut_arg("inputs", |a| a.help(
    "Legacy encrypted files or folders, or s3://bucket/prefix/ (every object under it). Example: s3://old-archive/2015/"
)))]
pub struct ReencryptArgs {
    #[command(flatten)]
    pub encrypt: EncryptArgs,
    #[command(flatten)]
    pub legacy: LegacyArgs,
}

/// Where the legacy objects' settings come from.
#[derive(Args)]
pub struct LegacyArgs {
    #[command(flatten)]
    pub from: LegacyFrom,
    /// KMS key that wrapped the keys of --et-encryption (default: --kms-key; without either, the
    /// local keyring). Example: --legacy-kms-key alias/old-transcoder
    #[arg(long, value_name = "KEY", conflicts_with = "from_manifest", help_heading = "Keys")]
    pub legacy_kms_key: Option<String>,
}

/// Exactly one source of legacy settings.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct LegacyFrom {
    /// Old sealpipe manifest of the legacy objects (a local file or s3://bucket/key); each record's key
    /// is unwrapped by the provider that made it (its KMS key, else the local keyring), and its
    /// plaintext SHA-256 is checked. Example: --from-manifest old-run.jsonl
    #[arg(long, value_name = "PATH", help_heading = "Input")]
    pub from_manifest: Option<PathBuf>,
    /// Elastic Transcoder Encryption JSON: {"Encryption": {"Mode": "aes-cbc-pkcs7", "Key": ..., "KeyMd5": ...,
    /// "InitializationVector": ...}} (or the bare inner object) for every input, or
    /// [{"Input": "s3://bucket/key", "Encryption": {...}}, ...] per object. Example: --et-encryption et.json
    #[arg(long, value_name = "PATH", help_heading = "Input")]
    pub et_encryption: Option<PathBuf>,
}
