//! The AWS flags (as the AWS CLI spells them) and the context every command
//! works in: the tokio runtime AWS calls run on, the stores URLs are reached
//! through, and the key providers. Everything behind them is in the engine.
//!
//! `--to s3://bucket/prefix/` uploads outputs instead of writing `--out`;
//! the manifest then defaults to `./sealpipe-manifest.jsonl` (a local file
//! in the current folder), unless `--manifest` names another.

use std::path::Path;
use std::sync::Arc;

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use sealpipe::aws::{AwsOptions, Session};
use sealpipe::keys::Providers;
use sealpipe::store::{ChecksumChoice, Stores};

/// Manifest written by `encrypt --to s3://...` when `--manifest` is not given.
pub const DEFAULT_S3_MANIFEST: &str = "sealpipe-manifest.jsonl";

/// AWS connection options, as with the AWS CLI (global: they apply to every command).
#[derive(Args, Clone, Default)]
pub struct AwsArgs {
    /// Wrap data keys with this AWS KMS key (key id, key ARN, alias/NAME or alias ARN) instead of the
    /// local keyring. decrypt/verify use KMS for records made with it (this flag then only overrides the key).
    /// Example: --kms-key alias/media
    #[arg(long, global = true, value_name = "KEY")]
    pub kms_key: Option<String>,
    /// AWS region (default: AWS_REGION or the profile's). Example: --region eu-west-1
    #[arg(long, global = true, value_name = "REGION")]
    pub region: Option<String>,
    /// Named profile from the shared AWS config/credentials files. Example: --profile media
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Endpoint for S3 and KMS (AWS_ENDPOINT_URL is honoured too). Example: --endpoint-url http://127.0.0.1:5000
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Path-style S3 addressing (http://host/bucket/key), for S3-compatible stores.
    #[arg(long, global = true)]
    pub force_path_style: bool,
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
    /// Upload outputs to S3 under this prefix instead of writing --out (the manifest then defaults
    /// to ./sealpipe-manifest.jsonl). Example: --to s3://media-in/2019/
    #[arg(long, value_name = "S3_URL", conflicts_with = "out")]
    pub to: Option<String>,
    /// Multipart part size (5MiB to 5GiB; raised so a file fits in 10,000 parts). Example: --part-size 64MiB
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = sealpipe::size::parse_size)]
    pub part_size: u64,
    /// Part buffers per file (the one being filled and those uploading); the upload memory per file is
    /// part size x N. Example: --concurrency 16
    #[arg(long, value_name = "N", default_value_t = sealpipe::store::s3::DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Checksum sent with every part and repeated at completion. Example: --checksum crc64nvme
    #[arg(long, value_enum, default_value = "crc32c")]
    pub checksum: ChecksumArg,
}

/// Whether a path or argument is a URL of a store (`s3://…`) rather than a local path.
pub fn is_url(path: &Path) -> bool {
    Stores::is_url(&path.to_string_lossy())
}

/// What a command works with: the runtime AWS calls run on (its
/// configuration is loaded only when first needed), the stores, the key providers.
pub struct Context {
    /// Where URLs are read and written.
    pub stores: Stores,
    /// Who wraps and unwraps data keys.
    pub providers: Providers,
    /// Kept alive for the command's whole run, and dropped last (uploads abort on it).
    _runtime: tokio::runtime::Runtime,
}

impl Context {
    /// The context of `args`, with the local keyring at `keyring` and `kms_key` as the KMS key.
    pub fn new(args: &AwsArgs, keyring: &Path, kms_key: Option<String>) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sealpipe-aws")
            .enable_all()
            .build()
            .map_err(|e| anyhow!("cannot start the AWS runtime: {e}"))?;
        let options = AwsOptions {
            region: args.region.clone(),
            profile: args.profile.clone(),
            endpoint_url: args.endpoint_url.clone(),
            force_path_style: args.force_path_style,
            max_attempts: 0,
        };
        let session = Arc::new(Session::new(runtime.handle().clone(), options));
        let providers = Providers { keyring: keyring.to_path_buf(), create_keyring: true, kms_key, session: session.clone() };
        Ok(Context { stores: Stores::new(session), providers, _runtime: runtime })
    }
}
