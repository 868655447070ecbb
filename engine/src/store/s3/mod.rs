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
//! is said as it happens (an [`Event::Warning`](crate::events::Event::Warning)
//! to the store's events) and stays journalled.
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
//! comparison (`S3Destination`'s [`crate::store::Recovery`]).
//!
//! ## Reads ([`S3Object`])
//! `HeadObject` gives the size and ETag; each window is fetched by
//! concurrent ranged `GetObject`s with `If-Match: <etag>`, so an object
//! replaced while it is read fails with a clear error instead of mixing versions.
//! A body that ends early or resets is read on from the byte where it
//! stopped (a ranged GET pinned to the same ETag), up to [`MAX_RESUMES`] times.
//!
//! The module's files, one job each:
//! * `settings.rs`: what a destination is told ([`UploadSettings`], [`ObjectOptions`], [`ChecksumChoice`]) and S3's key limit;
//! * `options.rs`: request macros (object options, SSE), S3's limits, part sizing, checksums, client construction;
//! * `destination.rs`: [`S3Destination`], the [`Destination`] (create, stat, remove, journalled aborts);
//! * `upload.rs`: one object being uploaded (single `PutObject` or multipart), its state machine;
//! * `orphans.rs`: [`OpenUploads`] and the uploads of one key (listing, aborts by id), journal glue;
//! * `read.rs`: [`S3Object`], ETag-pinned ranged reads;
//! * `list.rs`: listing, inventory fetch, manifest download and upload;
//! * `conditional.rs`: small objects written only if a condition holds (a run's lease).

#[macro_use]
mod options;
mod conditional;
mod destination;
mod list;
mod orphans;
mod read;
mod settings;
mod upload;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use destination::{S3Destination, LISTED_MAX};
pub use options::{
    check_part_size, checksum_of, client, key_too_long, part_size_for, ChecksumChoice, ObjectOptions, UploadSettings, MAX_KEY_BYTES, DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, MAX_PARTS, MAX_PART_SIZE, MAX_RESUMES, MIN_PART_SIZE,
    MIN_RANGE_SIZE, RANGE_SIZE, READ_SPLIT, WHOLE_OBJECT_MAX,
};
pub use orphans::OpenUploads;
pub use read::S3Object;
/// The one `s3://` parser lives in `format::url` (below the stores); re-exported for the store's callers.
pub use crate::format::url::S3Url;

use super::{Condition, Conditional, CopyProps, Destination, Listed, OutputSettings, Properties, RestoreRequest, ServerSide, Source, Stamped, Store, Tagged};
use crate::aws::{Aws, Session};
use crate::error::{Error, Result, Stage};
use crate::events::Events;
use crate::format::envelope::{percent_decode, Envelope, ENVELOPE_KEY, SOURCE_KEY};

/// S3 as a [`Store`]: `s3://bucket/prefix/` listed with `ListObjectsV2`
/// (page by page), objects read by ranged GETs pinned to their ETag,
/// outputs uploaded by [`S3Destination`]. One client (one connection pool)
/// serves every listing and read; the AWS configuration is loaded on first use.
pub struct S3Store {
    session: Arc<Session>,
    client: std::sync::OnceLock<aws_sdk_s3::Client>,
    /// Each bucket's region, found once ([`options::bucket_region`]), and a
    /// client per region: source, destination and manifest buckets may each
    /// be in another region, whatever `--region` says.
    regions: std::sync::Mutex<std::collections::HashMap<String, Option<String>>>,
    clients: std::sync::Mutex<std::collections::HashMap<String, aws_sdk_s3::Client>>,
    /// Where the store says what it could not do (an abort that failed), as it happens.
    events: Arc<dyn Events>,
}

impl S3Store {
    /// S3 through `session`, saying what it could not do to `events`.
    pub fn new(session: Arc<Session>, events: Arc<dyn Events>) -> Self {
        S3Store { session, client: std::sync::OnceLock::new(), regions: Default::default(), clients: Default::default(), events }
    }

    /// The client of the configured region (requests that name no bucket).
    fn client(&self) -> Result<(&Aws, &aws_sdk_s3::Client)> {
        let aws = self.session.aws()?;
        Ok((aws, self.client.get_or_init(|| client(aws, ChecksumChoice::Crc32c))))
    }

    /// The region of `bucket` (`None`: the configured one), asked once per run.
    fn region_of(&self, bucket: &str) -> Result<Option<String>> {
        if let Some(r) = self.regions.lock().unwrap_or_else(|p| p.into_inner()).get(bucket) {
            return Ok(r.clone());
        }
        let (aws, default) = self.client()?;
        let configured = aws.config.region().map(|r| r.to_string());
        let said = aws.options.bucket_regions.iter().find(|(b, _)| b == bucket).map(|(_, r)| r.clone());
        let found = said.or_else(|| options::bucket_region(aws, default, bucket)).filter(|r| Some(r) != configured.as_ref());
        self.regions.lock().unwrap_or_else(|p| p.into_inner()).insert(bucket.to_string(), found.clone());
        Ok(found)
    }

    /// A client whose requests go to the region of the bucket `url` names.
    fn client_for(&self, url: &str) -> Result<(&Aws, aws_sdk_s3::Client)> {
        let bucket = S3Url::parse(url)?.bucket;
        let (aws, default) = self.client()?;
        match self.region_of(&bucket)? {
            None => Ok((aws, default.clone())),
            Some(region) => {
                let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
                let c = clients.entry(region.clone()).or_insert_with(|| options::client_in(aws, ChecksumChoice::Crc32c, Some(&region)));
                Ok((aws, c.clone()))
            }
        }
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
        self.list_under(input, each)
    }

    fn stat(&self, name: &str) -> Result<Listed> {
        let (url, version) = S3Url::split_version(name);
        let (aws, client) = self.client_for(url)?;
        let object = S3Object::open_version(aws, client, url, None, version)?;
        let key = S3Url::parse(url)?.key;
        Ok(Listed {
            url: url.to_string(),
            relative: PathBuf::from(key),
            size: object.len(),
            etag: object.etag().to_string(),
            archived: object.archived().clone(),
            version_id: version.map(str::to_string),
        })
    }

    fn properties(&self, url: &str, copy: CopyProps) -> Result<Properties> {
        self.properties_of(url, copy)
    }

    fn restore(&self, url: &str, request: &RestoreRequest) -> Result<bool> {
        self.restore_object(url, request)
    }

    fn open(&self, item: &Listed) -> Result<Box<dyn Source>> {
        let (aws, client) = self.client_for(&item.url)?;
        let client = &client;
        Ok(Box::new(S3Object::listed(aws, client.clone(), &item.url, item.size, &item.etag, item.version_id.as_deref())?))
    }

    fn open_url(&self, url: &str, etag: Option<&str>) -> Result<Box<dyn Source>> {
        let (aws, client) = self.client_for(url)?;
        let client = &client;
        Ok(Box::new(S3Object::open_with(aws, client.clone(), url, etag)?))
    }

    /// Downloaded into an unlinked temporary file, chunk by chunk, so memory
    /// stays flat whatever the report's size.
    fn fetch(&self, url: &str) -> Result<Box<dyn std::io::Read + Send>> {
        self.fetch_to_temp(url)
    }

    fn destination(&self, url: &str, settings: &OutputSettings) -> Result<Box<dyn Destination>> {
        S3Url::parse(url)?;
        let region = self.region_of(&S3Url::parse(url)?.bucket)?;
        Ok(Box::new(S3Destination::new(self.session.aws()?, url, UploadSettings::of(settings), region.as_deref(), self.events.clone())?))
    }

    /// A key longer than S3's limit ([`MAX_KEY_BYTES`]).
    fn refuses_name(&self, url: &str) -> Option<String> {
        let (url, _) = S3Url::split_version(url);
        key_too_long(S3Url::split(url).map(|(_, key)| key).unwrap_or(""))
    }

    fn download(&self, url: &str, local: &Path) -> Result<Option<String>> {
        self.download_to(url, local)
    }

    fn upload(&self, local: &Path, url: &str, condition: Option<Condition<'_>>, sse: Option<&ServerSide>) -> Result<Conditional> {
        self.upload_from(local, url, condition, sse)
    }

    /// `HeadObject`: the envelope is user metadata (`x-amz-meta-sealpipe-envelope`).
    fn envelope(&self, url: &str) -> Result<Option<Stamped>> {
        let (aws, client) = self.client_for(url)?;
        let client = &client;
        let parsed = S3Url::parse(url)?;
        let head = destination::head_object(client, &aws.handle, &parsed.bucket, &parsed.key, Stage::Plan)?
            .ok_or_else(|| Error::invalid(Path::new(url), "no such object"))?;
        let metadata = head.metadata();
        let Some(text) = metadata.and_then(|m| m.get(ENVELOPE_KEY)) else { return Ok(None) };
        let envelope = Envelope::parse(text).map_err(|reason| Error::invalid(Path::new(url), format!("x-amz-meta-{ENVELOPE_KEY}: {reason}")))?;
        Ok(Some(Stamped {
            envelope,
            source: metadata.and_then(|m| m.get(SOURCE_KEY)).and_then(|s| percent_decode(s)),
            size: head.content_length().unwrap_or(0).max(0) as u64,
            etag: head.e_tag().unwrap_or_default().to_string(),
        }))
    }

    fn put_if(&self, url: &str, body: &[u8], condition: Condition<'_>, sse: Option<&ServerSide>) -> Result<Conditional> {
        self.put_conditional(url, body, condition, sse)
    }

    fn get_tagged(&self, url: &str) -> Result<Option<Tagged>> {
        self.get_small(url)
    }

    fn delete_if(&self, url: &str, etag: &str) -> Result<bool> {
        self.delete_matching(url, etag)
    }
}
