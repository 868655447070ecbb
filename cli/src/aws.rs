//! The AWS side of the CLI: options, the tokio runtime (made only when an
//! AWS feature is used), KMS providers and S3 destinations/sources.
//!
//! `--to s3://bucket/prefix/` uploads outputs instead of writing `--out`;
//! the manifest then defaults to `./sealpipe-manifest.jsonl` (a local file
//! in the current folder), unless `--manifest` names another.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use sealpipe::aws::kms::KmsProvider;
use sealpipe::aws::s3::{ChecksumChoice, S3Destination, S3Object, UploadSettings, DEFAULT_CONCURRENCY};
use sealpipe::aws::{Aws, AwsOptions, S3Url};
use sealpipe::batch::{self, Reporter, Summary};
use sealpipe::io::{Input, Source};
use sealpipe::keys::{KeyProvider, LocalKeyring};
use sealpipe::manifest::Record;
use sealpipe::pipeline::Tuning;

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
    /// Multipart part size (5M to 5G; raised so a file fits in 10,000 parts). Example: --part-size 64M
    #[arg(long, value_name = "BYTES", default_value = "16M", value_parser = crate::parse_size)]
    pub part_size: u64,
    /// Parts uploaded at once per file; the upload memory per file is part size x (N + 1). Example: --concurrency 16
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY)]
    pub concurrency: usize,
    /// Checksum sent with every part and repeated at completion. Example: --checksum crc64nvme
    #[arg(long, value_enum, default_value = "crc32c")]
    pub checksum: ChecksumArg,
}

/// Whether a path or argument is an `s3://` URL.
pub fn is_s3(path: &Path) -> bool {
    S3Url::is_s3(&path.to_string_lossy())
}

/// The AWS configuration and its runtime, made on first use.
pub struct Session {
    args: AwsArgs,
    loaded: OnceLock<(tokio::runtime::Runtime, Aws)>,
}

impl Session {
    pub fn new(args: &AwsArgs) -> Self {
        Session { args: args.clone(), loaded: OnceLock::new() }
    }

    fn aws(&self) -> anyhow::Result<&Aws> {
        if let Some((_, aws)) = self.loaded.get() {
            return Ok(aws);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sealpipe-aws")
            .enable_all()
            .build()
            .map_err(|e| anyhow!("cannot start the AWS runtime: {e}"))?;
        let options = AwsOptions {
            region: self.args.region.clone(),
            profile: self.args.profile.clone(),
            endpoint_url: self.args.endpoint_url.clone(),
            force_path_style: self.args.force_path_style,
            max_attempts: 0,
        };
        let aws = Aws::load(runtime.handle().clone(), options);
        aws.region()?;
        let _ = self.loaded.set((runtime, aws));
        Ok(&self.loaded.get().expect("set above").1)
    }

    /// The KMS provider of `--kms-key`, if given.
    pub fn kms_from_flag(&self) -> anyhow::Result<Option<KmsProvider>> {
        match &self.args.kms_key {
            Some(key) => Ok(Some(KmsProvider::new(self.aws()?, key)?)),
            None => Ok(None),
        }
    }

    /// The S3 destination of `--to`, if given.
    pub fn destination(&self, s3: &S3Args, overwrite: bool) -> anyhow::Result<Option<S3Destination>> {
        let Some(to) = &s3.to else { return Ok(None) };
        S3Url::parse(to)?;
        let settings = UploadSettings {
            part_size: s3.part_size,
            concurrency: s3.concurrency,
            checksum: s3.checksum.into(),
            overwrite,
        };
        let destination = S3Destination::new(self.aws()?, to, settings)?;
        self.abort_on_signal(&destination);
        Ok(Some(destination))
    }

    /// On Ctrl-C or SIGTERM, abort the destination's open multipart uploads
    /// (see [`crate::interrupt`]).
    pub fn abort_on_signal(&self, destination: &S3Destination) {
        let Some((runtime, _)) = self.loaded.get() else { return };
        let uploads = destination.open_uploads();
        let handle = runtime.handle().clone();
        crate::interrupt::on_interrupt(move || {
            let n = handle.block_on(uploads.abort_all());
            eprintln!("sealpipe: interrupted: aborted {n} open multipart upload(s)");
        });
    }

    /// Open an S3 object for reading (pinned to `etag` when known).
    pub fn open_object(&self, url: &str, etag: Option<&str>) -> sealpipe::Result<S3Object> {
        let aws = self.aws().map_err(|e| sealpipe::Error::Usage(e.to_string()))?;
        S3Object::open(aws, url, etag)
    }

    /// The provider that can unwrap `record`'s data key.
    pub fn provider_for(&self, record: &Record, keyring_path: &Path) -> anyhow::Result<Box<dyn KeyProvider>> {
        if record.key_provider == sealpipe::aws::kms::NAME {
            let key = self.args.kms_key.as_deref().unwrap_or(&record.key_id);
            Ok(Box::new(KmsProvider::new(self.aws()?, key)?))
        } else {
            Ok(Box::new(LocalKeyring::open(keyring_path)?))
        }
    }
}

/// Verify `records`, each with the provider that wrapped it, reading
/// `s3://` outputs from S3 and the rest from local files.
pub fn verify(records: &[Record], session: &Session, keyring_path: &Path, tuning: &Tuning, reporter: &dyn Reporter) -> anyhow::Result<Summary> {
    let mut groups: BTreeMap<(String, String), Vec<Record>> = BTreeMap::new();
    for r in records {
        groups.entry((r.key_provider.clone(), r.key_id.clone())).or_default().push(r.clone());
    }
    let open = |record: &Record| -> sealpipe::Result<Box<dyn Source>> {
        if S3Url::is_s3(&record.output) {
            Ok(Box::new(session.open_object(&record.output, record.etag.as_deref())?))
        } else {
            Ok(Box::new(Input::open(Path::new(&record.output))?))
        }
    };
    let mut total = Summary::default();
    for group in groups.values() {
        let provider = session.provider_for(&group[0], keyring_path)?;
        let s = batch::verify_with(group, provider.as_ref(), &open, tuning, reporter);
        total.files += s.files;
        total.bytes += s.bytes;
        total.seconds += s.seconds;
        total.failures.extend(s.failures);
    }
    total.failures.sort();
    Ok(total)
}
