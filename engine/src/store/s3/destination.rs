//! [`S3Destination`]: a bucket and key prefix outputs are uploaded under;
//! creates an [`Upload`] per output, with the journal written before the
//! network (see the module documentation of [`super`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use aws_sdk_s3::types::ChecksumType;
use tokio::sync::Semaphore;

use super::options::{algorithm, check_part_size, client_in, create_error, part_size_for, parts_in_flight, MAX_PARTS};
use super::orphans::{KeyUploads, OpenUploads};
use super::upload::{Multipart, Spare, Upload};
use super::S3Url;
use crate::aws::{describe, remote_error, remote_said, status, Aws};
use crate::error::{Error, Result, Stage};
use crate::events::{Event, Events};
use crate::format::envelope::{Envelope, ENVELOPE_KEY};
use super::options::{key_too_long, ChecksumChoice, ObjectOptions, UploadSettings};
use crate::store::{About, Cleaned, Destination, Journal, PendingOutput, Recovery, Vacancy};

/// `HeadObject` of `bucket/key`, asked at `stage`: `None` if there is no such object.
pub(super) fn head_object(
    client: &aws_sdk_s3::Client,
    handle: &tokio::runtime::Handle,
    bucket: &str,
    key: &str,
    stage: Stage,
) -> Result<Option<aws_sdk_s3::operation::head_object::HeadObjectOutput>> {
    match handle.block_on(client.head_object().bucket(bucket).key(key).send()) {
        Ok(head) => Ok(Some(head)),
        Err(e) if status(&e) == Some(404) => Ok(None),
        Err(e) => Err(remote_said(format!("s3://{bucket}/{key}"), stage, format!("cannot check whether the object exists: {}", describe(&e)), &e)),
    }
}

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

/// A bucket and key prefix that outputs are uploaded under.
pub struct S3Destination {
    client: aws_sdk_s3::Client,
    handle: tokio::runtime::Handle,
    bucket: String,
    prefix: String,
    settings: UploadSettings,
    open: OpenUploads,
    journal: Mutex<Option<Arc<dyn Journal>>>,
    /// Where what could not be done is said, as it happens.
    events: Arc<dyn Events>,
    /// The keys under the prefix when the first fresh output was asked
    /// about ([`S3Destination::existing`]).
    existing: OnceLock<Option<HashSet<String>>>,
}

/// The most keys a destination prefix is listed for ([`S3Destination::existing`]):
/// 100 `ListObjectsV2` pages, about 10 MB of names. A prefix holding more is
/// asked about each output by `HeadObject`, as before.
pub const LISTED_MAX: usize = 100_000;

impl S3Destination {
    /// Outputs under `url` (`s3://bucket/prefix/`; the prefix is treated as
    /// a folder). Checks with `HeadBucket` that the bucket exists and is reachable.
    pub fn new(aws: &Aws, url: &str, settings: UploadSettings, region: Option<&str>, events: Arc<dyn Events>) -> Result<Self> {
        let parsed = S3Url::parse(url)?;
        if settings.concurrency == 0 {
            return Err(Error::Usage("--concurrency must be at least 1".into()));
        }
        check_part_size(settings.part_size).map_err(|e| Error::Usage(format!("--part-size: {e}")))?;
        let mut prefix = parsed.key.clone();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        // Signed for and sent to the bucket's own region (`None`: the configured one).
        let client = client_in(aws, settings.checksum, region);
        let bucket = parsed.bucket;
        aws.handle.block_on(client.head_bucket().bucket(&bucket).send()).map_err(|e| {
            let cause = match status(&e) {
                Some(404) => "bucket does not exist".to_string(),
                Some(403) => "access denied to the bucket (or it belongs to another account)".to_string(),
                Some(301) => "the bucket is in another region, and S3 did not say which".to_string(),
                _ => describe(&e),
            };
            remote_said(format!("s3://{bucket}/"), Stage::Plan, cause, &e)
        })?;
        let open = OpenUploads { client: client.clone(), open: Arc::default() };
        Ok(S3Destination { client, handle: aws.handle.clone(), bucket, prefix, settings, open, journal: Mutex::new(None), events, existing: OnceLock::new() })
    }

    /// The uploads in progress, to abort them on a signal.
    pub fn open_uploads(&self) -> OpenUploads {
        self.open.clone()
    }

    /// The keys under the prefix, listed once (issue 21: a million small
    /// outputs must not cost a million `HeadObject`s): an output whose key
    /// is not among them needs no request to know it is free, since its
    /// write is conditional anyway (`If-None-Match: *`: an object that
    /// appeared since is refused by S3, and then told apart as ours or not).
    /// `None` when the prefix holds more than [`LISTED_MAX`] keys or cannot
    /// be listed (no `s3:ListBucket`): each output is then asked about alone.
    fn existing(&self) -> Option<&HashSet<String>> {
        self.existing
            .get_or_init(|| {
                let mut keys = HashSet::new();
                let mut token = None;
                loop {
                    let req = self.client.list_objects_v2().bucket(&self.bucket).prefix(&self.prefix).set_continuation_token(token.take());
                    let page = self.handle.block_on(req.send()).ok()?;
                    keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_string)));
                    if keys.len() > LISTED_MAX {
                        return None;
                    }
                    match page.next_continuation_token() {
                        Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                        _ => return Some(keys),
                    }
                }
            })
            .as_ref()
    }

    fn key(&self, relative: &Path) -> String {
        // Byte for byte: an S3 key is a name, `//` and a leading `/` included.
        format!("{}{}", self.prefix, relative.to_string_lossy())
    }
}

impl Destination for S3Destination {
    fn location(&self, relative: &Path) -> String {
        format!("s3://{}/{}", self.bucket, self.key(relative))
    }

    fn refuses_name(&self, relative: &Path) -> Option<String> {
        key_too_long(&self.key(relative)).map(|reason| format!("output {reason}"))
    }

    fn stored_len(&self, relative: &Path) -> Result<Option<u64>> {
        self.head_len(&self.key(relative))
    }

    fn relative(&self, location: &str) -> Option<PathBuf> {
        let key = location.strip_prefix(&format!("s3://{}/", self.bucket))?.strip_prefix(&self.prefix)?;
        Some(PathBuf::from(key))
    }

    /// Nothing: S3 outputs have no temporary files (uploads: [`Recovery::abort_journalled`]).
    fn clean_interrupted(&self, _relative: &Path) -> Result<usize> {
        Ok(0)
    }

    fn remove(&self, relative: &Path) -> Result<()> {
        let key = self.key(relative);
        self.handle
            .block_on(self.client.delete_object().bucket(&self.bucket).key(&key).send())
            .map_err(|e| remote_error(format!("s3://{}/{key}", self.bucket), Stage::Write, "S3 DeleteObject", &e))?;
        Ok(())
    }

    /// Multipart uploads outlive a crash and are billed while open.
    fn recovery(&self) -> Option<&dyn Recovery> {
        Some(self)
    }

    /// For a fresh output, one look at the prefix's listing, and a
    /// `HeadObject` only when its key is listed or the prefix could not be
    /// (none when overwriting or replacing). An object there is ours, unrecorded, when `ours` accepts
    /// its envelope; anything else is refused.
    fn vacant(&self, relative: &Path, ours: &dyn Fn(&Envelope) -> bool, replace: bool) -> Result<Vacancy> {
        if self.settings.overwrite || replace {
            return Ok(Vacancy::Free);
        }
        let key = self.key(relative);
        if self.existing().is_some_and(|keys| !keys.contains(&key)) {
            return Ok(Vacancy::Free);
        }
        let url = format!("s3://{}/{key}", self.bucket);
        match head_object(&self.client, &self.handle, &self.bucket, &key, Stage::Write)? {
            None => Ok(Vacancy::Free),
            Some(head) => {
                let envelope = head.metadata().and_then(|m| m.get(ENVELOPE_KEY)).and_then(|text| Envelope::parse(text).ok());
                match envelope {
                    Some(e) if ours(&e) => Ok(Vacancy::Unrecorded),
                    _ => Err(Error::Exists { path: PathBuf::from(url) }),
                }
            }
        }
    }

    fn create(&self, relative: &Path, len: u64, replace: bool, about: Option<&About<'_>>) -> Result<Box<dyn PendingOutput>> {
        let key = self.key(relative);
        let url = format!("s3://{}/{key}", self.bucket);
        let path = PathBuf::from(&url);
        let fresh = !self.settings.overwrite && !replace;
        let replacing = !self.settings.overwrite && replace;
        let object = match about {
            Some(about) => self.object_for(&url, about)?,
            None => self.settings.object.clone(),
        };
        let part_size = part_size_for(len, self.settings.part_size).map_err(|e| e.for_file(&path))?;
        // Parts in flight shrink where the part size was raised, so the
        // upload holds no more than the memory plan gave it (`--memory`).
        let slots = if len > part_size {
            parts_in_flight(part_size, self.settings.part_size, self.settings.concurrency.max(1)).ok_or_else(|| {
                let share = self.settings.part_size * self.settings.concurrency.max(1) as u64;
                Error::invalid(
                    &path,
                    format!(
                        "a {len}-byte object needs {} parts to fit in {MAX_PARTS}, more than the {} of part buffers --memory leaves an upload; raise --memory",
                        crate::size::human(part_size),
                        crate::size::human(share)
                    ),
                )
            })?
        } else {
            1
        };
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
            object,
            multipart: None,
            whole_crc64: None,
            open: self.open.clone(),
            journal: self.journal.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            events: self.events.clone(),
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
                slots: Arc::new(Semaphore::new(slots)),
                filling: None,
                spare: Spare::default(),
            });
            upload.buf = Vec::with_capacity(upload.part_size);
        } else {
            upload.buf = Vec::with_capacity(len as usize);
        }
        Ok(Box::new(upload))
    }
}

/// Upload ids are journalled before each `CreateMultipartUpload`'s answer
/// is used, aborted on a signal, and aborted by id by the next run.
impl Recovery for S3Destination {
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
            // Said here; the ids stay journalled, and the next run tries again.
            for message in &cleaned.failed {
                self.events.emit(Event::Warning { location: &self.location(relative), message });
            }
            cleaned
        })
    }

    fn set_journal(&self, journal: Option<Arc<dyn Journal>>) {
        *self.journal.lock().unwrap_or_else(|p| p.into_inner()) = journal;
    }

    fn on_interrupt(&self) -> Box<dyn Fn() -> usize + Send + Sync> {
        let uploads = self.open.clone();
        let handle = self.handle.clone();
        Box::new(move || handle.block_on(uploads.abort_all()))
    }
}

impl S3Destination {
    /// The headers of one output: the flags', then the source's properties
    /// where the flags say nothing; in its user metadata the envelope,
    /// `--metadata`, then the source's metadata (a key `--metadata` names
    /// is not copied). The envelope always goes: copied metadata that would
    /// take the whole past S3's 2 KB is dropped, said as a warning; with
    /// `--metadata` alone too much, the file is refused.
    fn object_for(&self, url: &str, about: &About<'_>) -> Result<ObjectOptions> {
        let mut object = self.settings.object.clone();
        let p = about.properties;
        let or = |flag: &mut Option<String>, source: &Option<String>| {
            if flag.is_none() {
                flag.clone_from(source);
            }
        };
        or(&mut object.content_type, &p.content_type);
        or(&mut object.cache_control, &p.cache_control);
        or(&mut object.content_disposition, &p.content_disposition);
        or(&mut object.content_language, &p.content_language);
        or(&mut object.content_encoding, &p.content_encoding);
        or(&mut object.expires, &p.expires);
        if object.tagging.is_none() && !p.tags.is_empty() {
            object.tagging = Some(tagging(&p.tags));
        }
        let copied: Vec<(String, String)> =
            p.metadata.iter().filter(|(k, _)| !object.metadata.iter().any(|(mine, _)| mine.eq_ignore_ascii_case(k))).cloned().collect();
        let mut with_copied = object.metadata.clone();
        with_copied.extend(copied.iter().cloned());
        let envelope = match about.envelope.metadata(about.source, &with_copied) {
            Ok(pairs) => {
                object.metadata = with_copied;
                pairs
            }
            Err(reason) if copied.is_empty() => return Err(Error::invalid(Path::new(url), reason)),
            Err(_) => {
                let pairs = about.envelope.metadata(about.source, &object.metadata).map_err(|reason| Error::invalid(Path::new(url), reason))?;
                let names: Vec<&str> = copied.iter().map(|(k, _)| k.as_str()).collect();
                let message = format!("the source's user metadata ({}) is not copied: with the envelope it exceeds S3's 2 KB, and the envelope goes first", names.join(", "));
                self.events.emit(Event::Warning { location: url, message: &message });
                pairs
            }
        };
        object.metadata.extend(envelope);
        Ok(object)
    }

    fn head_len(&self, key: &str) -> Result<Option<u64>> {
        Ok(head_object(&self.client, &self.handle, &self.bucket, key, Stage::Write)?.map(|head| head.content_length().unwrap_or(0).max(0) as u64))
    }

    fn key_uploads(&self, key: &str) -> KeyUploads {
        KeyUploads { client: self.client.clone(), bucket: self.bucket.clone(), key: key.to_string() }
    }
}

/// Tags as S3's `x-amz-tagging` query string: `k=v&k2=v2`, each part URL-encoded.
fn tagging(tags: &[(String, String)]) -> String {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    tags.iter().map(|(k, v)| format!("{}={}", utf8_percent_encode(k, NON_ALPHANUMERIC), utf8_percent_encode(v, NON_ALPHANUMERIC))).collect::<Vec<_>>().join("&")
}
