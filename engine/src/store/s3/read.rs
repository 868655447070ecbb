//! [`S3Object`]: an S3 object read by windows of concurrent ranged GETs,
//! each pinned to the object's ETag and resumed where a body stopped early.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::options::{client, MAX_RESUMES, MIN_RANGE_SIZE, RANGE_SIZE, READ_SPLIT, WHOLE_OBJECT_MAX};
use super::S3Url;
use super::ChecksumChoice;
use crate::aws::{describe, remote_error, remote_said, status, Aws};
use crate::error::{Error, Result, Retry, Stage};
use crate::retry::Backoff;
use crate::store::{Archived, CopyProps, Properties, Source, Window};

/// A small object read whole by one `GetObject` (at most [`WHOLE_OBJECT_MAX`]
/// bytes): its bytes, and the properties its reply carried, so that
/// neither a `HeadObject` for its properties nor a second read of its last
/// bytes is needed (issue 21: one GET per object).
struct Whole {
    body: Bytes,
    properties: Properties,
    /// `x-amz-tagging-count`: tags are asked for only when there are some.
    tag_count: i32,
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
    /// Archived and not readable now, as `HeadObject` said (unknown from a listing).
    archived: Option<Archived>,
    /// The version read (`HeadObject`'s, or the first `GetObject`'s), in a versioned bucket.
    version: Arc<OnceLock<String>>,
    /// The version an entry named: every read asks for exactly it.
    pinned: Option<String>,
    /// The object read whole, once, when it is small.
    whole: OnceLock<Whole>,
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
        Self::open_version(aws, client, url, expected_etag, None)
    }

    /// [`S3Object::open_with`] of one `version` of the object (every read pinned to it too).
    pub fn open_version(aws: &Aws, client: aws_sdk_s3::Client, url: &str, expected_etag: Option<&str>, version: Option<&str>) -> Result<Self> {
        let parsed = S3Url::parse(url)?;
        let path = PathBuf::from(url);
        let head = aws
            .handle
            .block_on(client.head_object().bucket(&parsed.bucket).key(&parsed.key).set_version_id(version.map(str::to_string)).send())
            .map_err(|e| {
                let delete_marker = e.raw_response().and_then(|r| r.headers().get("x-amz-delete-marker")) == Some("true");
                let cause = match status(&e) {
                    Some(404 | 405) if delete_marker => "deleted: its newest version is a delete marker (name a version to read an older one)".to_string(),
                    Some(404) => "no such object (or no such bucket)".to_string(),
                    Some(403) => "access denied".to_string(),
                    _ => describe(&e),
                };
                remote_said(&path, Stage::Read, format!("cannot open: {cause}"), &e)
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
        let archived = super::list::archive_state(head.storage_class().map(|c| c.as_str()), head.archive_status().map(|a| a.as_str()), head.restore());
        let read = Arc::new(OnceLock::new());
        if let Some(v) = head.version_id().or(version) {
            let _ = read.set(v.to_string());
        }
        Ok(S3Object { client, handle: aws.handle.clone(), url: parsed, path, len, etag, listed: false, archived, version: read, pinned: version.map(str::to_string), whole: OnceLock::new() })
    }

    /// An object as a listing showed it (`ListObjectsV2`: size and ETag), without
    /// another request; every read is pinned to that ETag (`If-Match`).
    pub fn listed(aws: &Aws, client: aws_sdk_s3::Client, url: &str, len: u64, etag: &str, version: Option<&str>) -> Result<Self> {
        let parsed = S3Url::parse(url)?;
        let read = Arc::new(OnceLock::new());
        if let Some(v) = version {
            let _ = read.set(v.to_string());
        }
        Ok(S3Object {
            client,
            handle: aws.handle.clone(),
            url: parsed,
            path: PathBuf::from(url),
            len,
            etag: etag.to_string(),
            listed: true,
            archived: None,
            version: read,
            pinned: version.map(str::to_string),
            whole: OnceLock::new(),
        })
    }

    /// Read whole by one GET (see [`Whole`]).
    fn is_small(&self) -> bool {
        self.len <= WHOLE_OBJECT_MAX as u64
    }

    /// The object read whole, by its one GET (made on the first call).
    fn whole(&self) -> Result<&Whole> {
        if let Some(whole) = self.whole.get() {
            return Ok(whole);
        }
        let (body, reply) = match self.len {
            // No range of an empty object: a plain GET, still pinned.
            0 => self.handle.block_on(self.read_range(0, 0))?,
            n => self.handle.block_on(self.read_range(0, n as usize))?,
        };
        let reply = reply.expect("the first reply's headers");
        let _ = self.whole.set(Whole { body, properties: reply.0, tag_count: reply.1 });
        Ok(self.whole.get().expect("set just now"))
    }

    /// Bytes `[start, start + n)` (the whole object when `n` is 0), pinned
    /// to the ETag, resumed where a body stops early; with the properties
    /// and tag count of the first reply.
    fn read_range(&self, start: u64, n: usize) -> impl std::future::Future<Output = Result<(Bytes, Option<(Properties, i32)>)>> + Send + 'static {
        let changed = if self.listed {
            "the object changed since it was listed (ETag no longer matches); nothing was written"
        } else {
            "the object changed while it was being read (ETag no longer matches)"
        };
        let path = self.path.clone();
        let (client, bucket, key) = (self.client.clone(), self.url.bucket.clone(), self.url.key.clone());
        let mut pin = self.etag.clone();
        let version = self.version.clone();
        let pinned = self.pinned.clone();
        async move {
            let mut got: Vec<u8> = Vec::with_capacity(n);
            let mut first = None;
            let mut resumes = 0;
            loop {
                // From the first byte not received yet, pinned to the ETag.
                let from = start + got.len() as u64;
                let mut req = client.get_object().bucket(&bucket).key(&key).set_version_id(pinned.clone());
                if n > 0 {
                    req = req.range(format!("bytes={from}-{}", start + n as u64 - 1));
                }
                if !pin.is_empty() {
                    req = req.if_match(&pin);
                }
                let mut out = req.send().await.map_err(|e| match status(&e) {
                    Some(412) => Error::invalid(&path, changed),
                    _ => remote_error(&path, Stage::Read, "S3 GetObject", &e),
                })?;
                if pin.is_empty() {
                    pin = out.e_tag().unwrap_or_default().to_string();
                }
                if let Some(v) = out.version_id() {
                    // Every read is pinned to one ETag: one version's bytes.
                    let _ = version.set(v.to_string());
                }
                if first.is_none() {
                    first = Some((properties_of!(out), out.tag_count().unwrap_or(0)));
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
                    return Ok::<_, Error>((Bytes::from(got), first));
                }
                if resumes >= MAX_RESUMES {
                    return Err(Error::remote(
                        &path,
                        Stage::Read,
                        Retry::Yes,
                        format!("reading the object failed: {cut} ({} of {n} bytes of the range after {MAX_RESUMES} resumed reads)", got.len()),
                    ));
                }
                // Resumed by the one backoff (the SDK's own), from where the body stopped.
                tokio::time::sleep(Backoff::attempts(MAX_RESUMES + 1).delay(resumes)).await;
                resumes += 1;
            }
        }
    }

    /// The object's ETag when opened.
    pub fn etag(&self) -> &str {
        &self.etag
    }

    /// Whether it is archived and cannot be read now (as `HeadObject` said when opened).
    pub fn archived(&self) -> &Option<Archived> {
        &self.archived
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
        if self.is_small() {
            let at = offset as usize;
            return Ok(Window::Read(&self.whole()?.body[at..at + len]));
        }
        let mut tasks = Vec::new();
        let mut at = 0usize;
        // Several ranges at once: one GET stream alone is far slower than the cipher.
        let range = len.div_ceil(READ_SPLIT).clamp(MIN_RANGE_SIZE, RANGE_SIZE);
        while at < len {
            let n = range.min(len - at);
            let start = offset + at as u64;
            tasks.push(self.handle.spawn(self.read_range(start, n)));
            at += n;
        }
        scratch.clear();
        scratch.reserve(len);
        for t in tasks {
            let (bytes, _) = self
                .handle
                .block_on(t)
                .map_err(|e| crate::aws::task_failed(Stage::Read, "S3 read task", &e).for_file(&self.path))??;
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
        if self.is_small() {
            let mut none = Vec::new();
            let window = self.window(offset, len, &mut none)?;
            buf.clear();
            buf.extend_from_slice(&window);
            return Ok(());
        }
        // Every window of a larger object is `scratch[..len]`.
        self.window(offset, len, buf)?;
        buf.truncate(len);
        debug_assert_eq!(buf.len(), len);
        Ok(())
    }

    /// A small object's properties come with its one GET (its tags, when it
    /// has some and `copy` takes them, with one `GetObjectTagging`).
    fn properties(&self, copy: CopyProps) -> Option<Result<Properties>> {
        if !self.is_small() || copy == CopyProps::None {
            return None;
        }
        Some(self.whole().and_then(|whole| {
            let mut properties = whole.properties.clone();
            if copy == CopyProps::Default && whole.tag_count > 0 {
                properties.tags = super::list::tags_of(&self.client, &self.handle, &self.url, self.pinned.as_deref())?;
            }
            Ok(properties)
        }))
    }

    fn finish(&self) -> Result<()> {
        Ok(())
    }

    fn version(&self) -> Option<String> {
        self.version.get().cloned()
    }
}
