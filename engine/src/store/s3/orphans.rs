//! Multipart uploads nobody will complete: the open uploads of a
//! destination (aborted on a signal), the uploads of one key as S3 lists
//! them (aborted by id), and what that tells the run's journal.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::aws::{code, describe, status};
use crate::events::{Event, Events};
use crate::store::{Cleaned, Journal};

/// The multipart uploads of one key, as S3 lists them, and aborts by id.
#[derive(Clone)]
pub(super) struct KeyUploads {
    pub(super) client: aws_sdk_s3::Client,
    pub(super) bucket: String,
    pub(super) key: String,
}

impl KeyUploads {
    /// Ids of the open uploads of exactly this key (`ListMultipartUploads`, prefix = key, every page).
    pub(super) async fn list(&self) -> std::result::Result<Vec<String>, String> {
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
    pub(super) async fn abort(&self, id: &str) -> std::result::Result<bool, String> {
        match self.client.abort_multipart_upload().bucket(&self.bucket).key(&self.key).upload_id(id).send().await {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some("NoSuchUpload") || status(&e) == Some(404) => Ok(false),
            Err(e) => Err(describe(&e)),
        }
    }

    /// Abort `id`, noting the outcome in `cleaned`.
    pub(super) async fn abort_into(&self, id: &str, cleaned: &mut Cleaned) {
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
    pub(super) async fn abort_others(&self, existing: &[String], keep: Option<&str>, cleaned: &mut Cleaned) {
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

/// Tell `journal` what `cleaned` found about `location`, and `events` what could not be done.
pub(super) fn journal_cleaned(journal: Option<&Arc<dyn Journal>>, events: &dyn Events, location: &str, cleaned: Cleaned) {
    for message in &cleaned.failed {
        events.emit(Event::Warning { location, message });
    }
    let Some(journal) = journal else { return };
    for id in &cleaned.closed {
        journal.closed(location, id);
    }
    if cleaned.settled {
        journal.settled(location);
    }
}

/// The multipart uploads of a destination that are started and neither
/// completed nor aborted yet, so that a signal handler can abort them all
/// before the process exits (an interrupted run leaves no billed parts).
#[derive(Clone)]
pub struct OpenUploads {
    pub(super) client: aws_sdk_s3::Client,
    pub(super) open: Arc<Mutex<HashMap<String, (String, String, Option<Arc<dyn Journal>>)>>>,
}

impl OpenUploads {
    pub(super) fn add(&self, upload_id: &str, bucket: &str, key: &str, journal: Option<Arc<dyn Journal>>) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).insert(upload_id.into(), (bucket.into(), key.into(), journal));
    }

    pub(super) fn remove(&self, upload_id: &str) {
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
