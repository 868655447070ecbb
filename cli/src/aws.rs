//! The AWS flags (as the AWS CLI spells them) and the context every command
//! works in: the tokio runtime AWS calls run on, the stores URLs are reached
//! through, and the key providers. Everything behind them is in the engine.
//!
//! `--to s3://bucket/prefix/` uploads outputs instead of writing `--out`;
//! the manifest then defaults to a local file named after the destination
//! in the user's state folder ([`default_s3_manifest`]), unless `--manifest`
//! names another.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::anyhow;
use clap::{Args, ValueEnum};
use sealpipe::aws::{AwsOptions, Session};
use sealpipe::keys::Providers;
use sealpipe::store::s3::S3Store;
use sealpipe::store::{s3::ChecksumChoice, ServerSide, Stores};

/// The folder default manifests go to: `$XDG_STATE_HOME/sealpipe`, else `~/.local/state/sealpipe`
/// (else `./.sealpipe-state` when neither is set).
pub fn state_dir() -> PathBuf {
    let non_empty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
    match (std::env::var_os("XDG_STATE_HOME").and_then(non_empty), std::env::var_os("HOME").and_then(non_empty)) {
        (Some(state), _) => state.join("sealpipe"),
        (None, Some(home)) => home.join(".local/state/sealpipe"),
        (None, None) => PathBuf::from(".sealpipe-state"),
    }
}

/// Manifest written by `encrypt --to s3://bucket/prefix/` when `--manifest` is not given:
/// `<state dir>/bucket_prefix.jsonl` (the folder is created). The name is one-to-one with
/// the URL's path segments: `_` joins them, and any other byte than `A-Za-z0-9-.=` is written
/// `%XX`, so `s3://a/b_c/` and `s3://a/b/c/` never share a manifest (a ledger).
pub fn default_s3_manifest(to: &str) -> PathBuf {
    let name: String = to
        .split_once("://")
        .map_or(to, |(_, rest)| rest)
        .split('/')
        .filter(|c| !c.is_empty())
        .map(|c| {
            c.bytes()
                .map(|b| if b.is_ascii_alphanumeric() || b"-.=".contains(&b) { char::from(b).to_string() } else { format!("%{b:02X}") })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("_");
    let dir = state_dir();
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{}.jsonl", if name.is_empty() { "run" } else { &name }))
}

/// AWS connection options, as with the AWS CLI (for the commands that may reach AWS).
#[derive(Args, Clone, Default)]
pub struct AwsArgs {
    /// AWS region (default: AWS_REGION or the profile's). Example: --region eu-west-1
    #[arg(long, value_name = "REGION", help_heading = "AWS")]
    pub region: Option<String>,
    /// Named profile from the shared AWS config/credentials files. Example: --profile media
    #[arg(long, value_name = "NAME", help_heading = "AWS")]
    pub profile: Option<String>,
    /// Endpoint for S3 and KMS (AWS_ENDPOINT_URL is honoured too). Example: --endpoint-url http://127.0.0.1:5000
    #[arg(long, value_name = "URL", help_heading = "AWS")]
    pub endpoint_url: Option<String>,
    /// Path-style S3 addressing (http://host/bucket/key), for S3-compatible stores. Example: --force-path-style
    #[arg(long, help_heading = "AWS")]
    pub force_path_style: bool,
    /// Attempts per AWS request, the first included (throttling, 5xx, timeouts and lost connections
    /// are retried with backoff, in the standard retry mode). Default: AWS_MAX_ATTEMPTS, else 6.
    /// Example: --max-attempts 10
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = "AWS")]
    pub max_attempts: Option<u32>,
    /// Seconds to wait for a connection (default 10; the AWS CLI's --cli-connect-timeout).
    /// Example: --connect-timeout 30
    #[arg(long, alias = "cli-connect-timeout", value_name = "SECONDS", help_heading = "AWS")]
    pub connect_timeout: Option<f64>,
    /// Seconds to wait for data on a connection (default 120; the AWS CLI's --cli-read-timeout).
    /// Example: --read-timeout 300
    #[arg(long, alias = "cli-read-timeout", value_name = "SECONDS", help_heading = "AWS")]
    pub read_timeout: Option<f64>,
    /// PEM bundle of the certificate authorities to trust for HTTPS (a private CA in front of an
    /// S3-compatible store); sets SSL_CERT_FILE for the AWS clients. There is no --no-verify-ssl:
    /// use an http:// --endpoint-url for a local test store instead. Example: --ca-bundle corp-ca.pem
    #[arg(long, value_name = "PATH", help_heading = "AWS")]
    pub ca_bundle: Option<PathBuf>,
    /// Requester-pays buckets: every S3 request says the requester pays (x-amz-request-payer), as
    /// the AWS CLI's flag. Example: --request-payer requester
    #[arg(long, value_name = "requester", value_parser = ["requester"], help_heading = "AWS")]
    pub request_payer: Option<String>,
    /// The account the source buckets must belong to, on every request to them (and to any bucket
    /// a list or inventory names), as the AWS CLI's flag. Example: --source-expected-bucket-owner 111122223333
    #[arg(long, value_name = "ACCOUNT", help_heading = "AWS")]
    pub source_expected_bucket_owner: Option<String>,
    /// Buckets and the account each must belong to (the destination's and the manifest's, from
    /// --expected-bucket-owner), set by the command.
    #[arg(skip)]
    pub bucket_owners: Vec<(String, String)>,
    /// The region of the source buckets, as the AWS CLI's flag (default: each bucket's region is
    /// asked of S3 once, whatever --region says). Example: --source-region eu-west-1
    #[arg(long, value_name = "REGION", help_heading = "AWS")]
    pub source_region: Option<String>,
    /// Buckets and their regions (the sources', from --source-region), set by the command.
    #[arg(skip)]
    pub bucket_regions: Vec<(String, String)>,
}

/// A timeout flag as a duration.
fn seconds(flag: &str, value: Option<f64>) -> anyhow::Result<Option<std::time::Duration>> {
    value
        .map(|v| std::time::Duration::try_from_secs_f64(v).ok().filter(|d| !d.is_zero()).ok_or_else(|| anyhow!("{flag} must be a positive number of seconds, got {v}")))
        .transpose()
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
    /// to a file named after it under $XDG_STATE_HOME/sealpipe/). Example: --to s3://media-in/2019/
    #[arg(long, value_name = "S3_URL", conflicts_with = "out", help_heading = "Output")]
    pub to: Option<String>,
    /// Multipart part size (5MiB to 5GiB; raised so a file fits in 10,000 parts). Example: --part-size 64MiB
    #[arg(long, value_name = "SIZE", default_value = "16MiB", value_parser = sealpipe::size::parse_size, help_heading = "AWS")]
    pub part_size: u64,
    /// Part buffers per file (the one being filled and those uploading); the upload memory per file is
    /// part size x N. Example: --concurrency 16
    #[arg(long, value_name = "N", default_value_t = sealpipe::store::s3::DEFAULT_CONCURRENCY, help_heading = "AWS")]
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

fn parse_metadata(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

impl S3Args {
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
    pub fn object(&self) -> anyhow::Result<sealpipe::store::s3::ObjectOptions> {
        Ok(sealpipe::store::s3::ObjectOptions {
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
        let connect_timeout = seconds("--connect-timeout", args.connect_timeout)?;
        let read_timeout = seconds("--read-timeout", args.read_timeout)?;
        if let Some(bundle) = &args.ca_bundle {
            std::fs::metadata(bundle).map_err(|e| anyhow!("--ca-bundle {}: {e}", bundle.display()))?;
            // Read by the HTTPS client's native certificate loader, when the first client is built.
            std::env::set_var("SSL_CERT_FILE", bundle);
        }
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
            max_attempts: args.max_attempts.unwrap_or(0),
            connect_timeout,
            read_timeout,
            request_payer: args.request_payer.is_some(),
            bucket_owners: args.bucket_owners.clone(),
            other_buckets_owner: args.source_expected_bucket_owner.clone(),
            bucket_regions: args.bucket_regions.clone(),
        };
        let session = Arc::new(Session::new(runtime.handle().clone(), options));
        let providers = Providers { keyring: keyring.to_path_buf(), create_keyring: true, kms_key, session: session.clone() };
        // Every store a run can reach, by scheme: a new one is one more line here.
        let stores = Stores::from_list(vec![Arc::new(S3Store::new(session))]);
        Ok(Context { stores, providers, _runtime: runtime })
    }
}

/// `--copy-props`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CopyPropsArg {
    Default,
    MetadataDirective,
    None,
}

impl From<CopyPropsArg> for sealpipe::store::CopyProps {
    fn from(c: CopyPropsArg) -> Self {
        match c {
            CopyPropsArg::Default => sealpipe::store::CopyProps::Default,
            CopyPropsArg::MetadataDirective => sealpipe::store::CopyProps::MetadataDirective,
            CopyPropsArg::None => sealpipe::store::CopyProps::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::default_s3_manifest;

    fn name(url: &str) -> String {
        default_s3_manifest(url).file_name().unwrap().to_string_lossy().into_owned()
    }

    #[test]
    fn default_manifest_names_are_one_to_one_with_the_url() {
        assert_eq!(name("s3://media-in/2019/"), "media-in_2019.jsonl");
        assert_eq!(name("s3://media-in/2019"), "media-in_2019.jsonl", "a trailing slash names the same prefix");
        assert_ne!(name("s3://a/b_c/"), name("s3://a/b/c/"));
        assert_ne!(name("s3://a/b c/"), name("s3://a/b_c/"));
        assert_eq!(name("s3://a/b_c/"), "a_b%5Fc.jsonl");
        assert_eq!(name("s3://a/été/"), "a_%C3%A9t%C3%A9.jsonl");
    }
}
