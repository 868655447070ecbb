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
use sealpipe::aws::{aws_sdk_s3, Aws, AwsOptions, S3Url};
use sealpipe::batch::{self, Reporter, Summary};
use sealpipe::io::{Input, Listed, RemoteInputs, Source};
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
    /// Part buffers per file (the one being filled and those uploading); the upload memory per file is
    /// part size x N. Example: --concurrency 16
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

    /// Fetch the manifest at `url` into a local temporary file. A missing
    /// object is an empty manifest when `may_be_missing` (encrypt appends to it), else an error.
    pub fn fetch_manifest(&self, url: &str, may_be_missing: bool) -> anyhow::Result<RemoteManifest> {
        let parsed = S3Url::parse(url)?;
        if parsed.key.is_empty() || parsed.key.ends_with('/') {
            return Err(anyhow!("{url}: a manifest URL must name an object (s3://bucket/run.jsonl)"));
        }
        let aws = self.aws()?;
        let client = aws.s3_client(ChecksumChoice::Crc32c);
        // An encrypt run's local copy has a name fixed by the URL, so a run
        // killed before uploading it leaves it (and its journal) for the
        // re-run to resume from, instead of losing the records since the start.
        let local = if may_be_missing {
            // Keyed by the endpoint too: the same URL on another S3 is another object.
            let endpoint = self.args.endpoint_url.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()).unwrap_or_default();
            let tag = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(format!("{endpoint}\n{url}").as_bytes())[..12]);
            std::env::temp_dir().join(format!("sealpipe-ledger-{tag}.jsonl"))
        } else {
            let mut nonce = [0u8; 8];
            std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut nonce)).ok();
            std::env::temp_dir().join(format!("sealpipe-manifest-{}-{}.jsonl", std::process::id(), hex::encode(nonce)))
        };
        let manifest = RemoteManifest { url: url.to_string(), parsed, local, client, handle: aws.handle.clone(), keep: false };
        if may_be_missing && manifest.local.exists() {
            eprintln!("sealpipe: resuming from {} (the local copy of {url} an interrupted run left)", manifest.local.display());
            return Ok(manifest);
        }
        let got = aws.handle.block_on(async {
            let out = manifest.client.get_object().bucket(&manifest.parsed.bucket).key(&manifest.parsed.key).send().await?;
            let body = out.body.collect().await.map_err(|e| anyhow!("reading it failed: {e}"))?;
            Ok::<_, anyhow::Error>(body.into_bytes())
        });
        let bytes = match got {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                let missing = e
                    .downcast_ref::<aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_object::GetObjectError>>()
                    .map(|se| sealpipe::aws::code(se) == Some("NoSuchKey") || sealpipe::aws::status(se) == Some(404));
                match (missing, e.downcast_ref::<aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::get_object::GetObjectError>>()) {
                    (Some(true), _) if may_be_missing => None,
                    (Some(true), _) => return Err(anyhow!("{url}: no such manifest object")),
                    (_, Some(se)) => return Err(anyhow!("{url}: cannot read the manifest: {}", sealpipe::aws::describe(se))),
                    _ => return Err(anyhow!("{url}: cannot read the manifest: {e}")),
                }
            }
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&manifest.local)
            .map_err(|e| anyhow!("{}: cannot create a temporary manifest: {e}", manifest.local.display()))?;
        if let Some(bytes) = bytes {
            std::io::Write::write_all(&mut file, &bytes).map_err(|e| anyhow!("{}: {e}", manifest.local.display()))?;
        } else {
            // Absent until the run writes a record (refused runs leave no manifest).
            drop(file);
            let _ = std::fs::remove_file(&manifest.local);
        }
        Ok(manifest)
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

/// A manifest stored in S3, worked on as a local temporary file
/// (removed when dropped, unless an upload of it failed).
pub struct RemoteManifest {
    pub url: String,
    parsed: S3Url,
    pub local: std::path::PathBuf,
    client: aws_sdk_s3::Client,
    handle: tokio::runtime::Handle,
    keep: bool,
}

impl RemoteManifest {
    /// Upload the local copy with `PutObject` (if the run wrote one).
    pub fn upload(&mut self) -> anyhow::Result<bool> {
        if !self.local.exists() {
            return Ok(false);
        }
        let put = self.handle.block_on(async {
            let body = aws_sdk_s3::primitives::ByteStream::from_path(&self.local).await.map_err(|e| anyhow!("{e}"))?;
            self.client
                .put_object()
                .bucket(&self.parsed.bucket)
                .key(&self.parsed.key)
                .body(body)
                .send()
                .await
                .map_err(|e| anyhow!(sealpipe::aws::describe(&e)))
        });
        if let Err(e) = put {
            self.keep = true;
            return Err(anyhow!("{}: cannot upload the manifest ({e}); its records are kept in {}", self.url, self.local.display()));
        }
        Ok(true)
    }
}

impl Drop for RemoteManifest {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.local);
        }
    }
}

/// `s3://bucket/prefix/` inputs of `encrypt`: listed with `ListObjectsV2`
/// (page by page), each object read by ranged GETs pinned to the listed ETag.
pub struct S3Inputs<'a> {
    session: &'a Session,
    client: OnceLock<aws_sdk_s3::Client>,
}

impl<'a> S3Inputs<'a> {
    pub fn new(session: &'a Session) -> Self {
        S3Inputs { session, client: OnceLock::new() }
    }

    /// The configuration and one client (one connection pool) for every listing and read.
    fn client(&self) -> sealpipe::Result<(&Aws, &aws_sdk_s3::Client)> {
        let aws = self.session.aws().map_err(|e| sealpipe::Error::Usage(e.to_string()))?;
        Ok((aws, self.client.get_or_init(|| aws.s3_client(ChecksumChoice::Crc32c))))
    }
}

impl RemoteInputs for S3Inputs<'_> {
    fn handles(&self, input: &Path) -> bool {
        is_s3(input)
    }

    /// `s3://b/p/` lists everything under `p/`; `s3://b/p` is the object `p`
    /// itself (relative path: its name) and/or everything under `p/`.
    fn list(&self, input: &Path, each: &mut dyn FnMut(Listed)) -> sealpipe::Result<()> {
        let text = input.to_string_lossy();
        let url = S3Url::parse(&text)?;
        let (aws, client) = self.client()?;
        let folder = if url.key.is_empty() || url.key.ends_with('/') { url.key.clone() } else { format!("{}/", url.key) };
        let mut token: Option<String> = None;
        loop {
            let req = client.list_objects_v2().bucket(&url.bucket).prefix(&url.key).set_continuation_token(token.take());
            let page = aws.handle.block_on(req.send()).map_err(|e| {
                let cause = match sealpipe::aws::code(&e) {
                    Some("NoSuchBucket") => "the bucket does not exist".to_string(),
                    Some("AccessDenied") => "access denied".to_string(),
                    _ => sealpipe::aws::describe(&e),
                };
                sealpipe::Error::Invalid { path: input.to_path_buf(), reason: format!("cannot list: {cause}") }
            })?;
            // Test hook: a window between listing a page and reading its objects, to replace one in.
            if let Some(ms) = std::env::var("SEALPIPE_TEST_PAUSE_AFTER_LIST_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
                eprintln!("sealpipe: test hook: {} listed; pausing {ms} ms", input.display());
                std::thread::sleep(std::time::Duration::from_millis(ms));
            }
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let relative = if key == url.key && !key.ends_with('/') {
                    key.rsplit('/').next().unwrap_or(key).to_string()
                } else if let Some(rest) = key.strip_prefix(&folder) {
                    rest.to_string()
                } else {
                    continue; // `p2/...` under the prefix `p`
                };
                if relative.is_empty() || key.ends_with('/') {
                    continue; // folder markers
                }
                each(Listed {
                    url: format!("s3://{}/{key}", url.bucket),
                    relative: relative.split('/').collect(),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    etag: object.e_tag().unwrap_or_default().to_string(),
                });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(())
    }

    fn stat(&self, url: &str) -> sealpipe::Result<Listed> {
        let (aws, client) = self.client()?;
        let object = S3Object::open_with(aws, client.clone(), url, None)?;
        let key = S3Url::parse(url)?.key;
        Ok(Listed { url: url.to_string(), relative: key.split('/').collect(), size: object.len(), etag: object.etag().to_string() })
    }

    /// Downloaded into an unlinked temporary file, chunk by chunk, so memory
    /// stays flat whatever the report's size.
    fn fetch(&self, url: &str) -> sealpipe::Result<Box<dyn std::io::Read + Send>> {
        use std::io::{Seek, Write};
        let (aws, client) = self.client()?;
        let parsed = S3Url::parse(url)?;
        let path = Path::new(url);
        let fail = |cause: String| sealpipe::Error::Invalid { path: path.to_path_buf(), reason: format!("cannot read: {cause}") };
        let mut file = tempfile::tempfile().map_err(|e| fail(e.to_string()))?;
        aws.handle.block_on(async {
            let mut out = client.get_object().bucket(&parsed.bucket).key(&parsed.key).send().await.map_err(|e| fail(sealpipe::aws::describe(&e)))?;
            while let Some(chunk) = out.body.try_next().await.map_err(|e| fail(e.to_string()))? {
                file.write_all(&chunk).map_err(|e| fail(e.to_string()))?;
            }
            Ok::<_, sealpipe::Error>(())
        })?;
        file.rewind().map_err(|e| fail(e.to_string()))?;
        Ok(Box::new(file))
    }

    fn open(&self, item: &Listed) -> sealpipe::Result<Box<dyn Source>> {
        let (aws, client) = self.client()?;
        Ok(Box::new(S3Object::listed(aws, client.clone(), &item.url, item.size, &item.etag)?))
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
