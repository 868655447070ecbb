//! One object being uploaded: a single `PutObject` (conditional, with its
//! 412 recovery) or a multipart upload whose parts are sent by tokio tasks,
//! at most `concurrency` part buffers at once, each reused once its request
//! is done with it; aborted when dropped uncommitted.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::destination::head_object;
use super::options::{checksum_of, create_error, ChecksumChoice, ObjectOptions};
use super::orphans::{journal_cleaned, KeyUploads, OpenUploads};
use crate::aws::{describe, remote_error, remote_said, status, task_failed};
use crate::error::{Error, Result, Retry, Stage};
use crate::events::{Event, Events};
use crate::format::b64;
use crate::store::{Cleaned, Committed, Journal, PendingOutput, Sink};

pub(super) struct Multipart {
    pub(super) upload_id: String,
    pub(super) next_part: i32,
    pub(super) tasks: Vec<JoinHandle<Result<CompletedPart>>>,
    pub(super) done: Vec<CompletedPart>,
    pub(super) slots: Arc<Semaphore>,
    /// The slot of the part being filled (taken before its first byte).
    pub(super) filling: Option<OwnedSemaphorePermit>,
    /// Part buffers the SDK is done with, to fill again.
    pub(super) spare: Spare,
}

/// Part buffers handed back when the last reference to a sent part drops
/// (the SDK keeps one for its retries until the request is over). A
/// multipart upload then allocates at most as many buffers as it has slots
/// (plus any still held by a finishing request), however many parts it has,
/// instead of a fresh part-sized buffer per part: fresh ones cost a page
/// fault per 4 KiB, about 6% of an upload's CPU in issue 21's profile. The
/// spares live and die with their upload, so they are within the file's
/// share of `--memory`. (bytes has no pool of its own; `Bytes::from_owner`
/// is its hook for this.)
#[derive(Clone, Default)]
pub(super) struct Spare(Arc<Mutex<Vec<Vec<u8>>>>);

impl Spare {
    /// An empty buffer of at least `capacity` bytes: a spare if there is one.
    fn take(&self, capacity: usize) -> Vec<u8> {
        let mut buf = self.0.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default();
        buf.clear();
        buf.reserve_exact(capacity);
        buf
    }

    /// `buf` as a request body that comes back here once the SDK drops it.
    fn lend(&self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Lent { buf, home: self.clone() })
    }
}

struct Lent {
    buf: Vec<u8>,
    home: Spare,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        self.home.0.lock().unwrap_or_else(|e| e.into_inner()).push(buf);
    }
}

/// One object being uploaded.
pub(super) struct Upload {
    pub(super) client: aws_sdk_s3::Client,
    pub(super) handle: tokio::runtime::Handle,
    pub(super) bucket: String,
    pub(super) key: String,
    pub(super) path: PathBuf,
    pub(super) len: u64,
    pub(super) part_size: usize,
    pub(super) checksum: ChecksumChoice,
    pub(super) buf: Vec<u8>,
    pub(super) written: u64,
    pub(super) multipart: Option<Multipart>,
    pub(super) whole_crc64: Option<crc64fast_nvme::Digest>,
    pub(super) open: OpenUploads,
    pub(super) journal: Option<Arc<dyn Journal>>,
    /// Where what could not be done is said (an abort that failed).
    pub(super) events: Arc<dyn Events>,
    /// The create took more than one attempt: once this upload is closed,
    /// abort the key's other uploads not among these (open before the
    /// create; `None`: they could not be listed).
    pub(super) duplicates: Option<Option<Vec<String>>>,
    /// Headers every object is created with.
    pub(super) object: ObjectOptions,
    /// Created where no object was (no `--force`, not replacing an output
    /// of ours): a single `PutObject` is then conditional (`If-None-Match: *`),
    /// so if this run is killed with it on the wire and it lands late, after
    /// the next run wrote the object again under a new key, it is refused
    /// instead of replacing that object with one no record can decrypt.
    pub(super) fresh: bool,
    /// Replacing an output an interrupted run journalled (not `--force`): its
    /// `PutObject` is conditional on the object this run sees just before
    /// (its ETag, or none), for the same reason.
    pub(super) replacing: bool,
}

impl Upload {
    /// After a create that may have opened uploads we do not know the id of:
    /// abort every upload of the key that was not open before (`existing`) and is not `keep`.
    pub(super) fn settle_duplicates(&self, key_uploads: &KeyUploads, existing: Option<Vec<String>>, keep: Option<&str>) {
        let location = self.url();
        let Some(existing) = existing else {
            let message = format!("the uploads of {location} could not be listed after a CreateMultipartUpload that may have opened more than one: an upload may stay open");
            self.events.emit(Event::Warning { location: &location, message: &message });
            return;
        };
        let mut cleaned = Cleaned::default();
        self.handle.block_on(key_uploads.abort_others(&existing, keep, &mut cleaned));
        journal_cleaned(self.journal.as_ref(), self.events.as_ref(), &location, cleaned);
    }

    pub(super) fn fail(&self, op: &str, cause: &str) -> Error {
        Error::remote(&self.path, Stage::Write, Retry::No, format!("S3 {op} failed: {cause}"))
    }

    /// Hand the full buffer to an upload task, waiting for a free slot first.
    fn send_part(&mut self) -> Result<()> {
        // The next buffer is taken only once its slot is held (in `write`).
        let full = std::mem::take(&mut self.buf);
        self.collect_finished()?;
        self.take_slot();
        let mp = self.multipart.as_mut().expect("multipart upload");
        let data = mp.spare.lend(full);
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
                .map_err(|e| remote_error(&path, Stage::Write, format_args!("S3 UploadPart {number}"), &e))?;
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
                .map_err(|e| task_failed(Stage::Write, "S3 upload task", &e).for_file(&self.path))??;
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
        Ok(Committed { location: self.url(), etag: out.e_tag().map(str::to_string), checksum, server_side_encryption: applied_sse!(out), version_id: out.version_id().map(str::to_string) })
    }

    /// The ETag of the object now, `None` if there is none.
    fn etag_now(&self) -> Result<Option<String>> {
        Ok(head_object(&self.client, &self.handle, &self.bucket, &self.key, Stage::Write)?.and_then(|head| head.e_tag().map(str::to_string)))
    }

    /// After a conditional `PutObject` refused because the object exists:
    /// the object as committed if it is the one we sent (same length, and
    /// the same checksum, or with `--checksum none` an ETag that is the
    /// MD5 of what we sent), else [`Error::Exists`].
    fn ours_already(&self, data: &[u8], sent: Option<&str>) -> Result<Committed> {
        let head = self
            .handle
            .block_on(self.client.head_object().bucket(&self.bucket).key(&self.key).checksum_mode(ChecksumMode::Enabled).send())
            .map_err(|e| remote_said(&self.path, Stage::Write, format!("PutObject was refused (the object exists) and the object cannot be read back: {}", describe(&e)), &e))?;
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
        Ok(Committed { location: self.url(), etag: head.e_tag().map(str::to_string), checksum, server_side_encryption: applied_sse!(head), version_id: head.version_id().map(str::to_string) })
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
                    first_error.get_or_insert(task_failed(Stage::Write, "S3 upload task", &e).for_file(&self.path));
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
            .map_err(|e| remote_error(&self.path, Stage::Write, "S3 CompleteMultipartUpload", &e))?;
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
        Ok(Committed { location: self.url(), etag: out.e_tag().map(str::to_string), checksum, server_side_encryption: applied_sse!(out), version_id: out.version_id().map(str::to_string) })
    }

    pub(super) fn url(&self) -> String {
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
                self.buf = self.multipart.as_ref().expect("multipart upload").spare.take(self.part_size);
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
        let events = self.events.clone();
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
            journal_cleaned(journal.as_ref(), events.as_ref(), &location, cleaned);
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Inside the runtime we cannot block: abort in the background.
            self.handle.spawn(fut);
        } else {
            self.handle.block_on(fut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Spare;

    #[test]
    fn a_sent_part_buffer_comes_back_to_be_filled_again() {
        let spare = Spare::default();
        let mut buf = spare.take(1 << 20);
        buf.extend_from_slice(&[7; 1000]);
        let at = buf.as_ptr();
        let body = spare.lend(buf);
        let retry = body.clone(); // as the SDK keeps one for a retry
        assert_eq!(&body[..], &[7u8; 1000][..]);
        drop(body);
        assert!(spare.0.lock().unwrap().is_empty(), "a clone still holds it");
        drop(retry);
        let again = spare.take(1 << 20);
        assert_eq!(again.as_ptr(), at, "the same allocation, not a fresh one");
        assert!(again.is_empty() && again.capacity() >= 1 << 20);
        assert!(spare.take(16).capacity() >= 16, "none spare: a new one");
    }
}
