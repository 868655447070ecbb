//! Amazon S3 as a [`Destination`] (uploads) and a [`Source`] (ranged reads).
//!
//! ## Uploads ([`S3Destination`])
//! An output of at most one part goes up with a single `PutObject`. A larger
//! one becomes a multipart upload: the pipeline's writer thread fills a part
//! buffer, and each full part is handed to a tokio task that sends it with
//! `UploadPart`. At most `concurrency` part buffers exist at once, the one
//! being filled included: the writer takes a slot of a semaphore before it
//! starts filling a part and the slot is freed when that part's upload ends,
//! so the memory an upload holds is `part_size × concurrency`, whatever the file size. Each part carries
//! a checksum (CRC32C or CRC64NVME, or none for stores that reject them),
//! repeated in `CompleteMultipartUpload`. A part is kept as one immutable
//! [`Bytes`] until it succeeds, so the SDK's retries (throttling, 5xx,
//! timeouts, connection resets; exponential backoff) resend identical bytes.
//!
//! An upload that is dropped without a successful commit (any error in the
//! pipeline, a failed part, a failed completion) is aborted with
//! `AbortMultipartUpload`, so no parts are left billed; an abort that fails
//! is said (through the run's journal, [`Journal::warn`]) and stays journalled.
//!
//! ## Journal before network
//! With a run's [`Journal`] set, what an upload is about to create is
//! written ahead: before `CreateMultipartUpload`, the ids of the key's
//! uploads already open ([`Journal::creating`]); right after it returns,
//! the new upload id ([`Journal::opened`]), before any part; once completed
//! or aborted, [`Journal::closed`]. A `CreateMultipartUpload` whose reply is
//! lost opens an upload nobody knows the id of, and the SDK's retry opens
//! another: so when the create took more than one attempt (or failed), the
//! key's uploads are listed again once the upload is done, and every one
//! that was not open before and is not ours is aborted ([`Journal::settled`]
//! then). A crashed run's journal names the ids to abort and the uploads
//! that were open before its creates: the next run aborts by id, no clock
//! comparison ([`S3Destination::abort_journalled`]).
//!
//! ## Reads ([`S3Object`])
//! `HeadObject` gives the size and ETag; each window is fetched by
//! concurrent ranged `GetObject`s with `If-Match: <etag>`, so an object
//! replaced while it is read fails with a clear error instead of mixing versions.
//! A body that ends early or resets is read on from the byte where it
//! stopped (a ranged GET pinned to the same ETag), up to [`MAX_RESUMES`] times.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::{ChecksumChoice, Cleaned, Committed, Destination, Journal, Listed, ObjectOptions, PendingOutput, ServerSide, Sink, Source, Store, UploadSettings, Window};
use crate::aws::{code, describe, remote_error, status, Aws, Session};
use crate::error::{Error, Result};
use crate::format::b64;

/// The [`ObjectOptions`] on a `PutObject` or `CreateMultipartUpload` request builder
/// (the two share these setters but no trait).
macro_rules! object_options {
    ($req:expr, $o:expr) => {{
        let o: &ObjectOptions = $o;
        let mut req = $req.content_type(o.content_type.as_deref().unwrap_or("application/octet-stream"));
        if let Some(class) = &o.storage_class {
            req = req.storage_class(aws_sdk_s3::types::StorageClass::from(class.as_str()));
        }
        if let Some(acl) = &o.acl {
            req = req.acl(aws_sdk_s3::types::ObjectCannedAcl::from(acl.as_str()));
        }
        if let Some(owner) = &o.expected_bucket_owner {
            req = req.expected_bucket_owner(owner);
        }
        for (k, v) in &o.metadata {
            req = req.metadata(k, v);
        }
        sse!(req, o.sse.as_ref())
    }};
}

/// A [`ServerSide`] on a request builder (`PutObject`, `CreateMultipartUpload`):
/// the `x-amz-server-side-encryption*` headers.
macro_rules! sse {
    ($req:expr, $sse:expr) => {{
        let mut req = $req;
        if let Some(s) = $sse {
            let s: &ServerSide = s;
            req = req.server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::from(s.algorithm.as_str()));
            if let Some(key) = &s.kms_key_id {
                req = req.ssekms_key_id(key);
            }
            if let Some(on) = s.bucket_key_enabled {
                req = req.bucket_key_enabled(on);
            }
        }
        req
    }};
}

/// The server-side encryption S3 says it applied (a `PutObject` or
/// `CompleteMultipartUpload` answer).
macro_rules! applied_sse {
    ($out:expr) => {{
        let out = &$out;
        out.server_side_encryption().map(|a| ServerSide {
            algorithm: a.as_str().to_string(),
            kms_key_id: out.ssekms_key_id().map(str::to_string),
            bucket_key_enabled: out.bucket_key_enabled(),
        })
    }};
}

/// The error of a `PutObject` or `CreateMultipartUpload` (`op`) that created
/// nothing. A bucket whose policy refuses unencrypted uploads answers
/// `AccessDenied`: without `--sse`, the line says so.
fn create_error<E, R>(path: &Path, op: &str, err: &aws_sdk_s3::error::SdkError<E, R>, object: &ObjectOptions) -> Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + crate::aws::HasStatus + 'static,
{
    let mut e = remote_error(path, op, err);
    if let Error::Remote { reason, .. } = &mut e {
        if object.sse.is_none() && code(err) == Some("AccessDenied") {
            reason.push_str(" (if the bucket policy requires server-side encryption, give --sse AES256 or --sse aws:kms)");
        }
    }
    e
}

/// `HeadObject` of `bucket/key`: `None` if there is no such object.
fn head_object(
    client: &aws_sdk_s3::Client,
    handle: &tokio::runtime::Handle,
    bucket: &str,
    key: &str,
) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>> {
    match handle.block_on(client.head_object().bucket(bucket).key(key).send()) {
        Ok(head) => Ok(Some(head)),
        Err(e) if status(&e) == Some(404) => Ok(None),
        Err(e) => Err(Error::invalid(Path::new(&format!("s3://{bucket}/{key}")), format!("cannot check whether the object exists: {}", describe(&e)))),
    }
}

/// Smallest part S3 accepts (all but the last part).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// Most parts in one upload.
pub const MAX_PARTS: u64 = 10_000;
/// Default part size.
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;
/// Default number of parts in flight per upload.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Largest ranged GET when reading an object.
pub const RANGE_SIZE: usize = 8 << 20;
/// A window is fetched by up to this many concurrent ranged GETs ...
pub const READ_SPLIT: usize = 4;
/// ... of at least this many bytes each.
pub const MIN_RANGE_SIZE: usize = 1 << 20;
/// A ranged GET whose body ends early is resumed at most this many times.
pub const MAX_RESUMES: u32 = 5;

/// Counts the attempts the SDK makes of one request (its retries included).
#[derive(Debug, Clone, Default)]
struct Attempts(Arc<AtomicU32>);

impl aws_sdk_s3::config::Intercept for Attempts {
    fn name(&self) -> &'static str {
        "sealpipe::Attempts"
    }

    fn read_before_attempt(
        &self,
        _: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), aws_sdk_s3::error::BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// The multipart uploads of one key, as S3 lists them, and aborts by id.
#[derive(Clone)]
struct KeyUploads {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
}

impl KeyUploads {
    /// Ids of the open uploads of exactly this key (`ListMultipartUploads`, prefix = key, every page).
    async fn list(&self) -> std::result::Result<Vec<String>, String> {
        let mut ids = Vec::new();
        let (mut key_marker, mut id_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let req = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(&self.key)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take());
            let page = req.send().await.map_err(|e| format!("S3 ListMultipartUploads failed: {}", describe(&e)))?;
            for upload in page.uploads() {
                if upload.key() == Some(self.key.as_str()) {
                    if let Some(id) = upload.upload_id() {
                        ids.push(id.to_string());
                    }
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        Ok(ids)
    }

    /// Abort `id` (the SDK retries throttling, 5xx and resets): `Ok(true)`
    /// aborted now, `Ok(false)` already gone (completed or aborted).
    async fn abort(&self, id: &str) -> std::result::Result<bool, String> {
        match self.client.abort_multipart_upload().bucket(&self.bucket).key(&self.key).upload_id(id).send().await {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some("NoSuchUpload") || status(&e) == Some(404) => Ok(false),
            Err(e) => Err(describe(&e)),
        }
    }

    /// Abort `id`, noting the outcome in `cleaned`.
    async fn abort_into(&self, id: &str, cleaned: &mut Cleaned) {
        match self.abort(id).await {
            Ok(now) => {
                cleaned.aborted += usize::from(now);
                cleaned.closed.push(id.to_string());
            }
            Err(cause) => cleaned.failed.push(format!(
                "could not abort multipart upload {id} of s3://{}/{} ({cause}); it stays in the journal and the next run aborts it",
                self.bucket, self.key
            )),
        }
    }

    /// List the key's uploads and abort every one not in `existing` (open
    /// before our create) and not `keep` (the one we use, already closed or
    /// to be closed by its owner). `settled` when all of them are gone.
    async fn abort_others(&self, existing: &[String], keep: Option<&str>, cleaned: &mut Cleaned) {
        let listed = match self.list().await {
            Ok(ids) => ids,
            Err(cause) => {
                cleaned.failed.push(format!(
                    "could not look for duplicate multipart uploads of s3://{}/{} ({cause}); the next run looks again",
                    self.bucket, self.key
                ));
                return;
            }
        };
        let failed_before = cleaned.failed.len();
        for id in listed.iter().filter(|id| !existing.contains(id) && Some(id.as_str()) != keep) {
            self.abort_into(id, cleaned).await;
        }
        cleaned.settled = cleaned.failed.len() == failed_before;
    }
}

/// Tell `journal` what `cleaned` found about `location`.
fn journal_cleaned(journal: Option<&Arc<dyn Journal>>, location: &str, cleaned: Cleaned) {
    let Some(journal) = journal else { return };
    for id in &cleaned.closed {
        journal.closed(location, id);
    }
    if cleaned.settled {
        journal.settled(location);
    }
    for line in cleaned.failed {
        journal.warn(location, line);
    }
}

/// The SDK's name of a checksum choice.
fn algorithm(choice: ChecksumChoice) -> Option<ChecksumAlgorithm> {
    match choice {
        ChecksumChoice::Crc32c => Some(ChecksumAlgorithm::Crc32C),
        ChecksumChoice::Crc64Nvme => Some(ChecksumAlgorithm::Crc64Nvme),
        ChecksumChoice::None => None,
    }
}

/// Base64 of the big-endian checksum of `data`, as S3 headers carry it.
pub fn checksum_of(choice: ChecksumChoice, data: &[u8]) -> Option<String> {
    match choice {
        ChecksumChoice::Crc32c => Some(b64(&crc32c::crc32c(data).to_be_bytes())),
        ChecksumChoice::Crc64Nvme => {
            let mut d = crc64fast_nvme::Digest::new();
            d.write(data);
            Some(b64(&d.sum64().to_be_bytes()))
        }
        ChecksumChoice::None => None,
    }
}

/// An S3 client honouring `force_path_style` and the checksum choice.
pub fn client(aws: &Aws, checksum: ChecksumChoice) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
    let mut builder = aws_sdk_s3::config::Builder::from(&aws.config).force_path_style(aws.options.force_path_style);
    if checksum == ChecksumChoice::None {
        // Stores that reject the SDK's default CRC32 headers.
        builder = builder
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// `s3://bucket/key`, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    /// Bucket name.
    pub bucket: String,
    /// Key (or prefix); may be empty.
    pub key: String,
}

impl S3Url {
    /// Parse `s3://bucket[/key]`.
    pub fn parse(url: &str) -> Result<S3Url> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| Error::Usage(format!("{url}: not an s3:// URL (expected s3://bucket/prefix/)")))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(Error::Usage(format!("{url}: no bucket name in the S3 URL")));
        }
        Ok(S3Url { bucket: bucket.to_string(), key: key.to_string() })
    }

    /// Whether `text` is an `s3://` URL.
    pub fn is_s3(text: &str) -> bool {
        text.starts_with("s3://")
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// The part size for an object of `len` bytes: at least `requested` (and
/// 5 MiB), raised to a whole MiB so that the object fits in 10,000 parts.
pub fn part_size_for(len: u64, requested: u64) -> Result<u64> {
    let mut size = requested.max(MIN_PART_SIZE);
    let needed = len.div_ceil(MAX_PARTS);
    if size < needed {
        size = needed.div_ceil(1 << 20) << 20;
    }
    if size > MAX_PART_SIZE {
        return Err(Error::Usage(format!(
            "an object of {len} bytes does not fit in {MAX_PARTS} parts of at most 5 GiB"
        )));
    }
    Ok(size)
}

/// The multipart uploads of a destination that are started and neither
/// completed nor aborted yet, so that a signal handler can abort them all
/// before the process exits (an interrupted run leaves no billed parts).
#[derive(Clone)]
pub struct OpenUploads {
    client: aws_sdk_s3::Client,
    open: Arc<Mutex<HashMap<String, (String, String, Option<Arc<dyn Journal>>)>>>,
}

impl OpenUploads {
    fn add(&self, upload_id: &str, bucket: &str, key: &str, journal: Option<Arc<dyn Journal>>) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).insert(upload_id.into(), (bucket.into(), key.into(), journal));
    }

    fn remove(&self, upload_id: &str) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(upload_id);
    }

    /// Abort every open upload (for a signal handler, on the runtime).
    /// Returns how many aborts S3 accepted.
    pub async fn abort_all(&self) -> usize {
        let open: Vec<_> = self.open.lock().unwrap_or_else(|p| p.into_inner()).drain().collect();
        let mut aborted = 0;
        for (upload_id, (bucket, key, journal)) in open {
            let uploads = KeyUploads { client: self.client.clone(), bucket: bucket.clone(), key: key.clone() };
            // A failed abort stays in the journal: the next run aborts it.
            if let Ok(now) = uploads.abort(&upload_id).await {
                aborted += usize::from(now);
                if let Some(j) = journal {
                    j.closed(&format!("s3://{bucket}/{key}"), &upload_id);
                }
            }
        }
        aborted
    }
}

/// A bucket and key prefix that outputs are uploaded under.
pub struct S3Destination {
    client: aws_sdk_s3::Client,
    handle: tokio::runtime::Handle,
    bucket: String,
    prefix: String,
    settings: UploadSettings,
    open: OpenUploads,
    journal: Mutex<Option<Arc<dyn Journal>>>,
}

impl S3Destination {
    /// Outputs under `url` (`s3://bucket/prefix/`; the prefix is treated as
    /// a folder). Checks with `HeadBucket` that the bucket exists and is reachable.
    pub fn new(aws: &Aws, url: &str, settings: UploadSettings) -> Result<Self> {
        let parsed = S3Url::parse(url)?;
        if settings.concurrency == 0 {
            return Err(Error::Usage("--concurrency must be at least 1".into()));
        }
        if settings.part_size < MIN_PART_SIZE || settings.part_size > MAX_PART_SIZE {
            return Err(Error::Usage(format!(
                "--part-size must be between 5 MiB and 5 GiB (S3's limits), got {} bytes",
                settings.part_size
            )));
        }
        let mut prefix = parsed.key.clone();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        let client = client(aws, settings.checksum);
        let bucket = parsed.bucket;
        aws.handle.block_on(client.head_bucket().bucket(&bucket).send()).map_err(|e| {
            let cause = match status(&e) {
                Some(404) => "bucket does not exist".to_string(),
                Some(403) => "access denied to the bucket (or it belongs to another account)".to_string(),
                Some(301) => "the bucket is in another region: pass its --region".to_string(),
                _ => describe(&e),
            };
            Error::Usage(format!("s3://{bucket}/: {cause}"))
        })?;
        let open = OpenUploads { client: client.clone(), open: Arc::default() };
        Ok(S3Destination { client, handle: aws.handle.clone(), bucket, prefix, settings, open, journal: Mutex::new(None) })
    }

    /// The uploads in progress, to abort them on a signal.
    pub fn open_uploads(&self) -> OpenUploads {
        self.open.clone()
    }

    fn key(&self, relative: &Path) -> String {
        let rel: Vec<String> = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        format!("{}{}", self.prefix, rel.join("/"))
    }
}

impl Destination for S3Destination {
    fn location(&self, relative: &Path) -> String {
        format!("s3://{}/{}", self.bucket, self.key(relative))
    }

    fn refuses_name(&self, relative: &Path) -> Option<String> {
        super::key_too_long(&self.key(relative)).map(|reason| format!("output {reason}"))
    }

    fn stored_len(&self, relative: &Path) -> Result<Option<u64>> {
        self.head_len(&self.key(relative))
    }

    fn relative(&self, location: &str) -> Option<PathBuf> {
        let key = location.strip_prefix(&format!("s3://{}/", self.bucket))?.strip_prefix(&self.prefix)?;
        Some(key.split('/').collect())
    }

    /// Nothing: S3 outputs have no temporary files (uploads: [`Destination::abort_journalled`]).
    fn clean_interrupted(&self, _relative: &Path) -> Result<usize> {
        Ok(0)
    }

    fn remove(&self, relative: &Path) -> Result<()> {
        let key = self.key(relative);
        self.handle
            .block_on(self.client.delete_object().bucket(&self.bucket).key(&key).send())
            .map_err(|e| remote_error(format!("s3://{}/{key}", self.bucket), "S3 DeleteObject", &e))?;
        Ok(())
    }

    fn abort_journalled(&self, relative: &Path, uploads: &[String], existing: Option<&[String]>) -> Cleaned {
        let key_uploads = self.key_uploads(&self.key(relative));
        self.handle.block_on(async {
            let mut cleaned = Cleaned { settled: existing.is_none(), ..Cleaned::default() };
            for id in uploads {
                key_uploads.abort_into(id, &mut cleaned).await;
            }
            if let Some(existing) = existing {
                // Uploads of the key opened by a create whose reply was lost (no id journalled).
                let mut others = Cleaned::default();
                let already: Vec<String> = existing.iter().chain(uploads).cloned().collect();
                key_uploads.abort_others(&already, None, &mut others).await;
                cleaned.aborted += others.aborted;
                cleaned.closed.extend(others.closed);
                cleaned.failed.extend(others.failed);
                cleaned.settled = others.settled;
            }
            cleaned
        })
    }

    fn set_journal(&self, journal: Option<Arc<dyn Journal>>) {
        *self.journal.lock().unwrap_or_else(|p| p.into_inner()) = journal;
    }

    fn on_interrupt(&self) -> Option<Box<dyn Fn() -> usize + Send + Sync>> {
        let uploads = self.open.clone();
        let handle = self.handle.clone();
        Some(Box::new(move || handle.block_on(uploads.abort_all())))
    }

    fn create(&self, relative: &Path, len: u64, replace: bool) -> Result<Box<dyn PendingOutput>> {
        let key = self.key(relative);
        let url = format!("s3://{}/{key}", self.bucket);
        let path = PathBuf::from(&url);
        let fresh = !self.settings.overwrite && !replace;
        let replacing = !self.settings.overwrite && replace;
        if fresh && head_object(&self.client, &self.handle, &self.bucket, &key)?.is_some() {
            return Err(Error::Exists { path });
        }
        let part_size = part_size_for(len, self.settings.part_size).map_err(|e| e.for_file(&path))?;
        let checksum = self.settings.checksum;
        let mut upload = Upload {
            client: self.client.clone(),
            handle: self.handle.clone(),
            bucket: self.bucket.clone(),
            key,
            path,
            len,
            part_size: part_size as usize,
            checksum,
            buf: Vec::new(),
            written: 0,
            object: self.settings.object.clone(),
            multipart: None,
            whole_crc64: None,
            open: self.open.clone(),
            journal: self.journal.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            duplicates: None,
            fresh,
            replacing,
        };
        if len > part_size {
            let location = upload.url();
            let key_uploads = self.key_uploads(&upload.key);
            // Journal before network: the uploads open before ours, so that
            // any other one a lost reply leaves can be told apart by id.
            let existing = match self.handle.block_on(key_uploads.list()) {
                Ok(ids) => {
                    if let Some(j) = &upload.journal {
                        j.creating(&location, &ids)?;
                    }
                    Some(ids)
                }
                // Without the right to list uploads, duplicates cannot be found (said below if any may exist).
                Err(_) => None,
            };
            let mut req = object_options!(upload.client.create_multipart_upload().bucket(&upload.bucket).key(&upload.key), &upload.object);
            if let Some(alg) = algorithm(checksum) {
                req = req.checksum_algorithm(alg);
            }
            if checksum == ChecksumChoice::Crc64Nvme {
                req = req.checksum_type(ChecksumType::FullObject);
                upload.whole_crc64 = Some(crc64fast_nvme::Digest::new());
            }
            let attempts = Attempts::default();
            let sent = upload.handle.block_on(req.customize().interceptor(attempts.clone()).send());
            let retried = attempts.0.load(Ordering::Relaxed) > 1;
            let upload_id = match sent.map_err(|e| create_error(&upload.path, "S3 CreateMultipartUpload", &e, &upload.object)).and_then(|out| {
                out.upload_id.ok_or_else(|| upload.fail("CreateMultipartUpload", "the response has no UploadId"))
            }) {
                Ok(id) => id,
                Err(e) => {
                    // Any attempt may have opened an upload whose reply was lost.
                    upload.settle_duplicates(&key_uploads, existing, None);
                    return Err(e);
                }
            };
            upload.open.add(&upload_id, &upload.bucket, &upload.key, upload.journal.clone());
            if let Some(j) = &upload.journal {
                if let Err(e) = j.opened(&location, &upload_id) {
                    // Not journalled: not sent a part to. Abort it now (the journal cannot say it).
                    let _ = upload.handle.block_on(key_uploads.abort(&upload_id));
                    upload.open.remove(&upload_id);
                    return Err(e);
                }
            }
            match (retried, existing) {
                // One attempt, answered: no other upload was opened.
                (false, Some(_)) => {
                    if let Some(j) = &upload.journal {
                        j.settled(&location);
                    }
                }
                (true, existing) => upload.duplicates = Some(existing),
                (false, None) => {}
            }
            upload.multipart = Some(Multipart {
                upload_id,
                next_part: 1,
                tasks: Vec::new(),
                done: Vec::new(),
                slots: Arc::new(Semaphore::new(self.settings.concurrency.max(1))),
                filling: None,
            });
            upload.buf = Vec::with_capacity(upload.part_size);
        } else {
            upload.buf = Vec::with_capacity(len as usize);
        }
        Ok(Box::new(upload))
    }
}

impl S3Destination {
    fn head_len(&self, key: &str) -> Result<Option<u64>> {
        Ok(head_object(&self.client, &self.handle, &self.bucket, key)?.map(|head| head.content_length().unwrap_or(0).max(0) as u64))
    }

    fn key_uploads(&self, key: &str) -> KeyUploads {
        KeyUploads { client: self.client.clone(), bucket: self.bucket.clone(), key: key.to_string() }
    }
}

struct Multipart {
    upload_id: String,
    next_part: i32,
    tasks: Vec<JoinHandle<Result<CompletedPart>>>,
    done: Vec<CompletedPart>,
    slots: Arc<Semaphore>,
    /// The slot of the part being filled (taken before its first byte).
    filling: Option<OwnedSemaphorePermit>,
}

/// One object being uploaded.
struct Upload {
    client: aws_sdk_s3::Client,
    handle: tokio::runtime::Handle,
    bucket: String,
    key: String,
    path: PathBuf,
    len: u64,
    part_size: usize,
    checksum: ChecksumChoice,
    buf: Vec<u8>,
    written: u64,
    multipart: Option<Multipart>,
    whole_crc64: Option<crc64fast_nvme::Digest>,
    open: OpenUploads,
    journal: Option<Arc<dyn Journal>>,
    /// The create took more than one attempt: once this upload is closed,
    /// abort the key's other uploads not among these (open before the
    /// create; `None`: they could not be listed).
    duplicates: Option<Option<Vec<String>>>,
    /// Headers every object is created with.
    object: ObjectOptions,
    /// Created where no object was (no `--force`, not replacing an output
    /// of ours): a single `PutObject` is then conditional (`If-None-Match: *`),
    /// so if this run is killed with it on the wire and it lands late, after
    /// the next run wrote the object again under a new key, it is refused
    /// instead of replacing that object with one no record can decrypt.
    fresh: bool,
    /// Replacing an output an interrupted run journalled (not `--force`): its
    /// `PutObject` is conditional on the object this run sees just before
    /// (its ETag, or none), for the same reason.
    replacing: bool,
}

impl Upload {
    /// After a create that may have opened uploads we do not know the id of:
    /// abort every upload of the key that was not open before (`existing`) and is not `keep`.
    fn settle_duplicates(&self, key_uploads: &KeyUploads, existing: Option<Vec<String>>, keep: Option<&str>) {
        let location = self.url();
        let Some(existing) = existing else {
            if let Some(j) = &self.journal {
                j.warn(&location, format!("the uploads of {location} could not be listed after a CreateMultipartUpload that may have opened more than one: an upload may stay open"));
            }
            return;
        };
        let mut cleaned = Cleaned::default();
        self.handle.block_on(key_uploads.abort_others(&existing, keep, &mut cleaned));
        journal_cleaned(self.journal.as_ref(), &location, cleaned);
    }

    fn fail(&self, op: &str, cause: &str) -> Error {
        Error::invalid(&self.path, format!("S3 {op} failed: {cause}"))
    }

    /// Hand the full buffer to an upload task, waiting for a free slot first.
    fn send_part(&mut self) -> Result<()> {
        // The next buffer is allocated only once its slot is held (in `write`).
        let data = Bytes::from(std::mem::take(&mut self.buf));
        self.collect_finished()?;
        self.take_slot();
        let mp = self.multipart.as_mut().expect("multipart upload");
        let permit = mp.filling.take().expect("a slot is held while a part is filled");
        let number = mp.next_part;
        mp.next_part += 1;
        let checksum = checksum_of(self.checksum, &data);
        let request = {
            let mut r = self
                .client
                .upload_part()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(&mp.upload_id)
                .part_number(number)
                .content_length(data.len() as i64);
            match (self.checksum, &checksum) {
                (ChecksumChoice::Crc32c, Some(c)) => r = r.checksum_algorithm(ChecksumAlgorithm::Crc32C).checksum_crc32_c(c),
                (ChecksumChoice::Crc64Nvme, Some(c)) => {
                    r = r.checksum_algorithm(ChecksumAlgorithm::Crc64Nvme).checksum_crc64_nvme(c)
                }
                _ => {}
            }
            r
        };
        let path = self.path.clone();
        let choice = self.checksum;
        mp.tasks.push(self.handle.spawn(async move {
            let _permit = permit;
            // `data` is one immutable buffer: every retry the SDK makes sends these exact bytes.
            let out = request
                .body(ByteStream::from(data))
                .send()
                .await
                .map_err(|e| remote_error(&path, format!("S3 UploadPart {number}"), &e))?;
            let mut part = CompletedPart::builder().part_number(number).set_e_tag(out.e_tag);
            match (choice, checksum) {
                (ChecksumChoice::Crc32c, Some(c)) => part = part.checksum_crc32_c(c),
                (ChecksumChoice::Crc64Nvme, Some(c)) => part = part.checksum_crc64_nvme(c),
                _ => {}
            }
            Ok(part.build())
        }));
        Ok(())
    }

    /// Hold a part slot for the part about to be filled (waiting for an upload
    /// to finish if all are taken), unless one is held already.
    fn take_slot(&mut self) {
        let mp = self.multipart.as_mut().expect("multipart upload");
        if mp.filling.is_none() {
            let permit = self.handle.block_on(mp.slots.clone().acquire_owned()).expect("the semaphore is never closed");
            mp.filling = Some(permit);
        }
    }

    /// Gather the parts already sent; a part that failed fails the upload now.
    fn collect_finished(&mut self) -> Result<()> {
        let mp = self.multipart.as_mut().expect("multipart upload");
        let (finished, running): (Vec<_>, Vec<_>) = std::mem::take(&mut mp.tasks).into_iter().partition(|t| t.is_finished());
        mp.tasks = running;
        for t in finished {
            let part = self
                .handle
                .block_on(t)
                .map_err(|e| Error::invalid(&self.path, format!("S3 upload task failed: {e}")))??;
            self.multipart.as_mut().expect("multipart upload").done.push(part);
        }
        Ok(())
    }

    fn complete_single(&mut self) -> Result<Committed> {
        let data = Bytes::from(std::mem::take(&mut self.buf));
        let sent = checksum_of(self.checksum, &data);
        // Every write that is not an explicit --force is conditional on the
        // object as this run last saw it: absent (If-None-Match: *), or, when
        // replacing an output an interrupted run journalled, the object then
        // there (If-Match: its ETag). So a PutObject of a killed run that
        // lands late, after a later run committed, is refused (412), even
        // when that killed run was itself replacing (a chain of kills).
        let conditional = self.fresh || self.replacing;
        let mut attempt = 0;
        let out = loop {
            attempt += 1;
            let seen = if self.replacing { self.etag_now()? } else { None };
            let mut req = object_options!(self.client.put_object().bucket(&self.bucket).key(&self.key).content_length(data.len() as i64), &self.object);
            match (self.checksum, sent.clone()) {
                (ChecksumChoice::Crc32c, Some(c)) => req = req.checksum_algorithm(ChecksumAlgorithm::Crc32C).checksum_crc32_c(c),
                (ChecksumChoice::Crc64Nvme, Some(c)) => req = req.checksum_algorithm(ChecksumAlgorithm::Crc64Nvme).checksum_crc64_nvme(c),
                _ => {}
            }
            req = match (&seen, conditional) {
                (Some(etag), _) => req.if_match(etag),
                (None, true) => req.if_none_match("*"),
                (None, false) => req,
            };
            match self.handle.block_on(req.body(ByteStream::from(data.clone())).send()) {
                Ok(out) => break out,
                // The object is not as we saw it: ours when an attempt whose
                // reply was lost was applied before this retry; when replacing,
                // a late write of an interrupted run landed meanwhile (look
                // again and replace that); another writer's otherwise.
                Err(e) if conditional && status(&e) == Some(412) => match self.ours_already(&data, sent.as_deref()) {
                    Err(Error::Exists { .. }) if self.replacing && attempt < 3 => continue,
                    settled => return settled,
                },
                Err(e) => return Err(create_error(&self.path, "S3 PutObject", &e, &self.object)),
            }
        };
        let checksum = out
            .checksum_crc32_c()
            .map(|c| format!("CRC32C:{c}"))
            .or_else(|| out.checksum_crc64_nvme().map(|c| format!("CRC64NVME:{c}")));
        Ok(Committed { location: self.url(), etag: out.e_tag().map(str::to_string), checksum, server_side_encryption: applied_sse!(out) })
    }

    /// The ETag of the object now, `None` if there is none.
    fn etag_now(&self) -> Result<Option<String>> {
        Ok(head_object(&self.client, &self.handle, &self.bucket, &self.key)?.and_then(|head| head.e_tag().map(str::to_string)))
    }

    /// After a conditional `PutObject` refused because the object exists:
    /// the object as committed if it is the one we sent (same length, and
    /// the same checksum, or with `--checksum none` an ETag that is the
    /// MD5 of what we sent), else [`Error::Exists`].
    fn ours_already(&self, data: &[u8], sent: Option<&str>) -> Result<Committed> {
        let head = self
            .handle
            .block_on(self.client.head_object().bucket(&self.bucket).key(&self.key).checksum_mode(ChecksumMode::Enabled).send())
            .map_err(|e| Error::invalid(&self.path, format!("PutObject was refused (the object exists) and the object cannot be read back: {}", describe(&e))))?;
        let stored = head.checksum_crc32_c().or(head.checksum_crc64_nvme());
        let etag = head.e_tag().map(|t| t.trim_matches('"').to_string());
        let same = head.content_length() == Some(data.len() as i64)
            && match sent {
                Some(sum) => stored == Some(sum),
                None => etag.as_deref() == Some(hex::encode(<md5::Md5 as md5::Digest>::digest(data)).as_str()),
            };
        if !same {
            return Err(Error::Exists { path: self.path.clone() });
        }
        let checksum = head
            .checksum_crc32_c()
            .map(|c| format!("CRC32C:{c}"))
            .or_else(|| head.checksum_crc64_nvme().map(|c| format!("CRC64NVME:{c}")));
        Ok(Committed { location: self.url(), etag: head.e_tag().map(str::to_string), checksum, server_side_encryption: applied_sse!(head) })
    }

    fn complete_multipart(&mut self) -> Result<Committed> {
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        let mp = self.multipart.as_mut().expect("multipart upload");
        let tasks = std::mem::take(&mut mp.tasks);
        let upload_id = mp.upload_id.clone();
        let mut parts = std::mem::take(&mut mp.done);
        let mut first_error = None;
        for t in tasks {
            match self.handle.block_on(t) {
                Ok(Ok(part)) => parts.push(part),
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(Error::invalid(&self.path, format!("S3 upload task failed: {e}")));
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        parts.sort_by_key(|p| p.part_number());
        let mut req = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build());
        if let Some(d) = &self.whole_crc64 {
            req = req.checksum_crc64_nvme(b64(&d.sum64().to_be_bytes())).checksum_type(ChecksumType::FullObject);
        }
        let out = self
            .handle
            .block_on(req.send())
            .map_err(|e| remote_error(&self.path, "S3 CompleteMultipartUpload", &e))?;
        // Completed: nothing to abort any more.
        self.open.remove(&upload_id);
        self.multipart = None;
        if let Some(j) = &self.journal {
            j.closed(&self.url(), &upload_id);
        }
        if let Some(existing) = self.duplicates.take() {
            let key_uploads = KeyUploads { client: self.client.clone(), bucket: self.bucket.clone(), key: self.key.clone() };
            self.settle_duplicates(&key_uploads, existing, Some(&upload_id));
        }
        let checksum = out
            .checksum_crc32_c()
            .map(|c| format!("CRC32C:{c}"))
            .or_else(|| out.checksum_crc64_nvme().map(|c| format!("CRC64NVME:{c}")));
        Ok(Committed { location: self.url(), etag: out.e_tag().map(str::to_string), checksum, server_side_encryption: applied_sse!(out) })
    }

    fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }
}

impl Sink for Upload {
    fn write(&mut self, mut data: &[u8]) -> Result<()> {
        if self.written + data.len() as u64 > self.len {
            return Err(Error::invalid(&self.path, format!("more than the announced {} bytes written", self.len)));
        }
        self.written += data.len() as u64;
        if let Some(d) = self.whole_crc64.as_mut() {
            d.write(data);
        }
        if self.multipart.is_none() {
            self.buf.extend_from_slice(data);
            return Ok(());
        }
        while !data.is_empty() {
            if self.buf.is_empty() {
                self.collect_finished()?;
                self.take_slot();
                self.buf.reserve_exact(self.part_size);
            }
            let take = (self.part_size - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == self.part_size {
                self.send_part()?;
            }
        }
        Ok(())
    }
}

impl PendingOutput for Upload {
    fn commit(mut self: Box<Self>) -> Result<Committed> {
        if self.written != self.len {
            return Err(Error::invalid(
                &self.path,
                format!("{} bytes written, {} announced; upload discarded", self.written, self.len),
            ));
        }
        if self.multipart.is_some() {
            self.complete_multipart()
        } else {
            self.complete_single()
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let Some(mp) = self.multipart.take() else { return };
        for t in &mp.tasks {
            t.abort();
        }
        let key_uploads = KeyUploads { client: self.client.clone(), bucket: self.bucket.clone(), key: self.key.clone() };
        let open = self.open.clone();
        let journal = self.journal.clone();
        let location = self.url();
        let duplicates = self.duplicates.take();
        let fut = async move {
            for t in mp.tasks {
                let _ = t.await;
            }
            // Aborted or already gone: closed. A failure is said and stays journalled.
            let mut cleaned = Cleaned::default();
            key_uploads.abort_into(&mp.upload_id, &mut cleaned).await;
            open.remove(&mp.upload_id);
            match duplicates {
                Some(Some(existing)) => key_uploads.abort_others(&existing, Some(&mp.upload_id), &mut cleaned).await,
                Some(None) => cleaned.failed.push(format!(
                    "the uploads of {location} could not be listed after a CreateMultipartUpload that may have opened more than one: an upload may stay open"
                )),
                None => {}
            }
            journal_cleaned(journal.as_ref(), &location, cleaned);
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Inside the runtime we cannot block: abort in the background.
            self.handle.spawn(fut);
        } else {
            self.handle.block_on(fut);
        }
    }
}

/// An S3 object read by windows of concurrent ranged GETs.
pub struct S3Object {
    client: aws_sdk_s3::Client,
    handle: tokio::runtime::Handle,
    url: S3Url,
    path: PathBuf,
    len: u64,
    etag: String,
    /// Opened from a listing (not a `HeadObject`): an ETag mismatch then
    /// means the object changed since it was listed.
    listed: bool,
}

impl S3Object {
    /// Open `url` with `HeadObject`. With `expected_etag` (from a manifest),
    /// refuse an object that was replaced since.
    pub fn open(aws: &Aws, url: &str, expected_etag: Option<&str>) -> Result<Self> {
        Self::open_with(aws, client(aws, ChecksumChoice::Crc32c), url, expected_etag)
    }

    /// [`S3Object::open`] with an existing client (and its connection pool),
    /// for many objects in a row (a list file's entries).
    pub fn open_with(aws: &Aws, client: aws_sdk_s3::Client, url: &str, expected_etag: Option<&str>) -> Result<Self> {
        let parsed = S3Url::parse(url)?;
        let path = PathBuf::from(url);
        let head = aws
            .handle
            .block_on(client.head_object().bucket(&parsed.bucket).key(&parsed.key).send())
            .map_err(|e| {
                let cause = match status(&e) {
                    Some(404) => "no such object (or no such bucket)".to_string(),
                    Some(403) => "access denied".to_string(),
                    _ => describe(&e),
                };
                Error::invalid(&path, format!("cannot open: {cause}"))
            })?;
        let etag = head.e_tag().unwrap_or_default().to_string();
        if let Some(want) = expected_etag {
            if !etag.is_empty() && want != etag {
                return Err(Error::invalid(
                    &path,
                    format!("the object changed since it was written (ETag {etag}, the manifest recorded {want})"),
                ));
            }
        }
        let len = head.content_length().unwrap_or(0).max(0) as u64;
        Ok(S3Object { client, handle: aws.handle.clone(), url: parsed, path, len, etag, listed: false })
    }

    /// An object as a listing showed it (`ListObjectsV2`: size and ETag), without
    /// another request; every read is pinned to that ETag (`If-Match`).
    pub fn listed(aws: &Aws, client: aws_sdk_s3::Client, url: &str, len: u64, etag: &str) -> Result<Self> {
        let parsed = S3Url::parse(url)?;
        Ok(S3Object { client, handle: aws.handle.clone(), url: parsed, path: PathBuf::from(url), len, etag: etag.to_string(), listed: true })
    }

    /// The object's ETag when opened.
    pub fn etag(&self) -> &str {
        &self.etag
    }
}

impl Source for S3Object {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn window<'a>(&'a self, offset: u64, len: usize, scratch: &'a mut Vec<u8>) -> Result<Window<'a>> {
        if len == 0 {
            return Ok(Window::Read(&[]));
        }
        if offset + len as u64 > self.len {
            return Err(Error::invalid(&self.path, "read past the end of the object"));
        }
        let mut tasks = Vec::new();
        let mut at = 0usize;
        // Several ranges at once: one GET stream alone is far slower than the cipher.
        let range = len.div_ceil(READ_SPLIT).clamp(MIN_RANGE_SIZE, RANGE_SIZE);
        let changed = if self.listed {
            "the object changed since it was listed (ETag no longer matches); nothing was written"
        } else {
            "the object changed while it was being read (ETag no longer matches)"
        };
        while at < len {
            let n = range.min(len - at);
            let start = offset + at as u64;
            let end = start + n as u64 - 1;
            let path = self.path.clone();
            let (client, bucket, key) = (self.client.clone(), self.url.bucket.clone(), self.url.key.clone());
            let mut pin = self.etag.clone();
            tasks.push(self.handle.spawn(async move {
                let mut got: Vec<u8> = Vec::with_capacity(n);
                let mut resumes = 0;
                loop {
                    // From the first byte not received yet, pinned to the ETag.
                    let from = start + got.len() as u64;
                    let mut req = client.get_object().bucket(&bucket).key(&key).range(format!("bytes={from}-{end}"));
                    if !pin.is_empty() {
                        req = req.if_match(&pin);
                    }
                    let mut out = req.send().await.map_err(|e| match status(&e) {
                        Some(412) => Error::invalid(&path, changed),
                        _ => remote_error(&path, "S3 GetObject", &e),
                    })?;
                    if pin.is_empty() {
                        pin = out.e_tag().unwrap_or_default().to_string();
                    }
                    let cut = loop {
                        match out.body.try_next().await {
                            Ok(Some(chunk)) if got.len() + chunk.len() > n => {
                                return Err(Error::invalid(&path, "the object changed while it was being read (a ranged read returned too many bytes)"));
                            }
                            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
                            Ok(None) => break "the body ended early".to_string(),
                            Err(e) => break e.to_string(),
                        }
                    };
                    if got.len() == n {
                        return Ok::<_, Error>(Bytes::from(got));
                    }
                    resumes += 1;
                    if resumes > MAX_RESUMES {
                        return Err(Error::invalid(
                            &path,
                            format!("reading the object failed: {cut} ({} of {n} bytes of the range after {MAX_RESUMES} resumed reads)", got.len()),
                        ));
                    }
                }
            }));
            at += n;
        }
        scratch.clear();
        scratch.reserve(len);
        for t in tasks {
            let bytes = self
                .handle
                .block_on(t)
                .map_err(|e| Error::invalid(&self.path, format!("S3 read task failed: {e}")))??;
            scratch.extend_from_slice(&bytes);
        }
        if scratch.len() != len {
            return Err(Error::invalid(
                &self.path,
                "the object changed while it was being read (short ranged read)",
            ));
        }
        Ok(Window::Read(&scratch[..len]))
    }

    fn read_into(&self, offset: u64, len: usize, buf: &mut Vec<u8>) -> Result<()> {
        // Every window of this source is `scratch[..len]`.
        self.window(offset, len, buf)?;
        buf.truncate(len);
        debug_assert_eq!(buf.len(), len);
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        Ok(())
    }
}

/// S3 as a [`Store`]: `s3://bucket/prefix/` listed with `ListObjectsV2`
/// (page by page), objects read by ranged GETs pinned to their ETag,
/// outputs uploaded by [`S3Destination`]. One client (one connection pool)
/// serves every listing and read; the AWS configuration is loaded on first use.
pub struct S3Store {
    session: Arc<Session>,
    client: std::sync::OnceLock<aws_sdk_s3::Client>,
}

impl S3Store {
    /// S3 through `session`.
    pub fn new(session: Arc<Session>) -> Self {
        S3Store { session, client: std::sync::OnceLock::new() }
    }

    fn client(&self) -> Result<(&Aws, &aws_sdk_s3::Client)> {
        let aws = self.session.aws()?;
        Ok((aws, self.client.get_or_init(|| client(aws, ChecksumChoice::Crc32c))))
    }
}

impl Store for S3Store {
    fn scheme(&self) -> &'static str {
        "s3"
    }

    fn endpoint(&self) -> String {
        self.session.endpoint()
    }

    /// `s3://b/p/` lists everything under `p/`; `s3://b/p` is the object `p`
    /// itself (relative path: its name) and/or everything under `p/`.
    fn list(&self, input: &str, each: &mut dyn FnMut(Listed)) -> Result<()> {
        let url = S3Url::parse(input)?;
        let (aws, client) = self.client()?;
        let folder = if url.key.is_empty() || url.key.ends_with('/') { url.key.clone() } else { format!("{}/", url.key) };
        let mut token: Option<String> = None;
        loop {
            let req = client.list_objects_v2().bucket(&url.bucket).prefix(&url.key).set_continuation_token(token.take());
            let page = aws.handle.block_on(req.send()).map_err(|e| match crate::aws::code(&e) {
                Some("NoSuchBucket") => Error::invalid(input, "cannot list: the bucket does not exist"),
                Some("AccessDenied") => Error::invalid(input, "cannot list: access denied"),
                _ => Error::invalid(input, format!("cannot list: {}", describe(&e))),
            })?;
            // Test hook: a window between listing a page and reading its objects, to replace one in.
            if let Some(ms) = std::env::var("SEALPIPE_TEST_PAUSE_AFTER_LIST_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
                eprintln!("sealpipe: test hook: {input} listed; pausing {ms} ms");
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

    fn stat(&self, url: &str) -> Result<Listed> {
        let (aws, client) = self.client()?;
        let object = S3Object::open_with(aws, client.clone(), url, None)?;
        let key = S3Url::parse(url)?.key;
        Ok(Listed { url: url.to_string(), relative: key.split('/').collect(), size: object.len(), etag: object.etag().to_string() })
    }

    fn open(&self, item: &Listed) -> Result<Box<dyn Source>> {
        let (aws, client) = self.client()?;
        Ok(Box::new(S3Object::listed(aws, client.clone(), &item.url, item.size, &item.etag)?))
    }

    fn open_url(&self, url: &str, etag: Option<&str>) -> Result<Box<dyn Source>> {
        let (aws, client) = self.client()?;
        Ok(Box::new(S3Object::open_with(aws, client.clone(), url, etag)?))
    }

    /// Downloaded into an unlinked temporary file, chunk by chunk, so memory
    /// stays flat whatever the report's size.
    fn fetch(&self, url: &str) -> Result<Box<dyn std::io::Read + Send>> {
        use std::io::{Seek, Write};
        let (aws, client) = self.client()?;
        let parsed = S3Url::parse(url)?;
        let fail = |cause: String| Error::invalid(url, format!("cannot read: {cause}"));
        let mut file = tempfile::tempfile().map_err(|e| fail(e.to_string()))?;
        aws.handle.block_on(async {
            let mut out = client.get_object().bucket(&parsed.bucket).key(&parsed.key).send().await.map_err(|e| fail(describe(&e)))?;
            while let Some(chunk) = out.body.try_next().await.map_err(|e| fail(e.to_string()))? {
                file.write_all(&chunk).map_err(|e| fail(e.to_string()))?;
            }
            Ok::<_, Error>(())
        })?;
        file.rewind().map_err(|e| fail(e.to_string()))?;
        Ok(Box::new(file))
    }

    fn destination(&self, url: &str, settings: UploadSettings) -> Result<Box<dyn Destination>> {
        S3Url::parse(url)?;
        Ok(Box::new(S3Destination::new(self.session.aws()?, url, settings)?))
    }

    fn download(&self, url: &str, local: &Path) -> Result<bool> {
        let parsed = S3Url::parse(url)?;
        let (aws, client) = self.client()?;
        let got = aws.handle.block_on(async {
            let out = client.get_object().bucket(&parsed.bucket).key(&parsed.key).send().await?;
            Ok::<_, aws_sdk_s3::error::SdkError<_, _>>(out.body)
        });
        let body = match got {
            Ok(body) => body,
            Err(e) if crate::aws::code(&e) == Some("NoSuchKey") || status(&e) == Some(404) => return Ok(false),
            Err(e) => return Err(Error::invalid(url, format!("cannot read the manifest: {}", describe(&e)))),
        };
        let bytes = aws
            .handle
            .block_on(body.collect())
            .map_err(|e| Error::invalid(url, format!("cannot read the manifest: reading it failed: {e}")))?
            .into_bytes();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(local)
            .map_err(|e| Error::io(local, "create a temporary manifest", e))?;
        std::io::Write::write_all(&mut file, &bytes).map_err(|e| Error::io(local, "write", e))?;
        Ok(true)
    }

    fn upload(&self, local: &Path, url: &str, sse: Option<&ServerSide>) -> Result<()> {
        let parsed = S3Url::parse(url)?;
        let (aws, client) = self.client()?;
        aws.handle.block_on(async {
            let body = ByteStream::from_path(local).await.map_err(|e| Error::invalid(local, e.to_string()))?;
            sse!(client.put_object().bucket(&parsed.bucket).key(&parsed.key), sse)
                .body(body)
                .send()
                .await
                .map_err(|e| Error::invalid(url, describe(&e)))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_size_fits_ten_thousand_parts() {
        assert_eq!(part_size_for(1 << 30, DEFAULT_PART_SIZE).unwrap(), DEFAULT_PART_SIZE);
        assert_eq!(part_size_for(100, 1).unwrap(), MIN_PART_SIZE);
        let big = 1u64 << 40; // 1 TiB
        let p = part_size_for(big, DEFAULT_PART_SIZE).unwrap();
        assert!(big.div_ceil(p) <= MAX_PARTS && p % (1 << 20) == 0, "{p}");
        assert!(part_size_for(60 << 40, DEFAULT_PART_SIZE).is_err());
    }

    #[test]
    fn checksums_are_big_endian_base64() {
        // CRC32C("123456789") = 0xE3069283.
        assert_eq!(checksum_of(ChecksumChoice::Crc32c, b"123456789").unwrap(), b64(&[0xE3, 0x06, 0x92, 0x83]));
        assert_eq!(checksum_of(ChecksumChoice::None, b"x"), None);
    }
}
