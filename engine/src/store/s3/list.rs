//! Listing (`ListObjectsV2`), inventory fetch, and manifests kept in S3
//! (download with its ETag, and a conditional upload of a local copy): the
//! [`S3Store`] methods that move whole objects or lists.

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::OptionalObjectAttributes;

use super::{S3Store, S3Url};
use crate::aws::{describe, remote_error, remote_said, status};
use crate::error::{Error, Result, Retry, Stage};
use crate::store::{Archived, Condition, Conditional, CopyProps, Listed, Properties, RestoreRequest, ServerSide};

impl S3Store {
    /// `s3://b/p/` lists everything under `p/`; `s3://b/p` is the object `p`
    /// itself (relative path: its name) and/or everything under `p/`.
    pub(super) fn list_under(&self, input: &str, each: &mut dyn FnMut(Listed)) -> Result<()> {
        let url = S3Url::parse(input)?;
        let (aws, client) = self.client_for(input)?;
        let client = &client;
        let folder = if url.key.is_empty() || url.key.ends_with('/') { url.key.clone() } else { format!("{}/", url.key) };
        let mut token: Option<String> = None;
        loop {
            let req = client
                .list_objects_v2()
                .bucket(&url.bucket)
                .prefix(&url.key)
                .optional_object_attributes(OptionalObjectAttributes::RestoreStatus)
                .set_continuation_token(token.take());
            let page = aws.handle.block_on(req.send()).map_err(|e| {
                let cause = match crate::aws::code(&e) {
                    Some("NoSuchBucket") => "the bucket does not exist".to_string(),
                    Some("AccessDenied") => "access denied".to_string(),
                    _ => describe(&e),
                };
                remote_said(input, Stage::Plan, format!("cannot list: {cause}"), &e)
            })?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let relative = if key == url.key && !key.ends_with('/') {
                    key.rsplit('/').next().unwrap_or(key).to_string()
                } else if let Some(rest) = key.strip_prefix(&folder) {
                    rest.to_string()
                } else {
                    continue; // `p2/...` under the prefix `p`
                };
                // Folder markers (keys ending in `/`) are handed on too: the
                // plan leaves them out and counts them, as for list inputs.
                // The relative name is the key below the prefix, byte for byte.
                let object_url = format!("s3://{}/{key}", url.bucket);
                // An archived class is asked its restore status (one HeadObject per archived object:
                // a listing says it only where the store supports RestoreStatus, and moto does not).
                let archived = match object.storage_class().map(|c| c.as_str()) {
                    Some(class @ ("GLACIER" | "DEEP_ARCHIVE")) => match object.restore_status() {
                        Some(r) if r.is_restore_in_progress() == Some(false) => None,
                        Some(r) if r.is_restore_in_progress() == Some(true) => Some(Archived { class: class.to_string(), restoring: true }),
                        _ => self.head_archive(&object_url)?,
                    },
                    _ => None,
                };
                each(Listed {
                    url: object_url,
                    relative: PathBuf::from(relative),
                    size: object.size().unwrap_or(0).max(0) as u64,
                    etag: object.e_tag().unwrap_or_default().to_string(),
                    archived,
                    version_id: None,
                });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(())
    }

    /// The archive state of the object `url` as `HeadObject` says it.
    pub(super) fn head_archive(&self, url: &str) -> Result<Option<Archived>> {
        let (aws, client) = self.client_for(url)?;
        let client = &client;
        let parsed = S3Url::parse(url)?;
        let head = super::destination::head_object(client, &aws.handle, &parsed.bucket, &parsed.key, Stage::Plan)?
            .ok_or_else(|| Error::invalid(url, "cannot open: no such object (or no such bucket)"))?;
        Ok(archive_state(head.storage_class().map(|c| c.as_str()), head.archive_status().map(|a| a.as_str()), head.restore()))
    }

    /// The properties of `url` its output gets under `copy`, as `aws s3 cp`
    /// copies them: `HeadObject`'s content headers and user metadata
    /// (sealpipe's own keys left out: an earlier envelope is never copied),
    /// and with [`CopyProps::Default`] its tags (`GetObjectTagging`). A small
    /// object read whole has them from its GET instead (`S3Object::properties`).
    pub(super) fn properties_of(&self, url: &str, copy: CopyProps) -> Result<Properties> {
        if copy == CopyProps::None {
            return Ok(Properties::default());
        }
        let (aws, client) = self.client_for(url)?;
        let client = &client;
        let parsed = S3Url::parse(url)?;
        let head = super::destination::head_object(client, &aws.handle, &parsed.bucket, &parsed.key, Stage::Read)?
            .ok_or_else(|| Error::invalid(url, "cannot open: no such object (or no such bucket)"))?;
        let mut properties = properties_of!(head);
        if copy == CopyProps::Default {
            properties.tags = tags_of(client, &aws.handle, &parsed, None)?;
        }
        Ok(properties)
    }

    /// `RestoreObject` of `url`: `Ok(false)` when a restore is in progress already.
    pub(super) fn restore_object(&self, url: &str, request: &RestoreRequest) -> Result<bool> {
        use aws_sdk_s3::types::{GlacierJobParameters, RestoreRequest as S3Restore, Tier};
        let (aws, client) = self.client_for(url)?;
        let client = &client;
        let parsed = S3Url::parse(url)?;
        let job = GlacierJobParameters::builder().tier(Tier::from(request.tier.as_str())).build().map_err(|e| Error::Usage(format!("--restore: {e}")))?;
        let body = S3Restore::builder().days(request.days as i32).glacier_job_parameters(job).build();
        match aws.handle.block_on(client.restore_object().bucket(&parsed.bucket).key(&parsed.key).restore_request(body).send()) {
            Ok(_) => Ok(true),
            Err(e) if crate::aws::code(&e) == Some("RestoreAlreadyInProgress") || status(&e) == Some(409) => Ok(false),
            Err(e) => Err(remote_error(url, Stage::Plan, "S3 RestoreObject", &e)),
        }
    }

    /// Downloaded into an unlinked temporary file, chunk by chunk, so memory
    /// stays flat whatever the report's size.
    pub(super) fn fetch_to_temp(&self, url: &str) -> Result<Box<dyn std::io::Read + Send>> {
        use std::io::{Seek, Write};
        let (aws, client) = self.client_for(url)?;
        let client = &client;
        let parsed = S3Url::parse(url)?;
        let fail = |cause: String| Error::invalid(url, format!("cannot read: {cause}"));
        let mut file = tempfile::tempfile().map_err(|e| fail(e.to_string()))?;
        aws.handle.block_on(async {
            let mut out = client
                .get_object()
                .bucket(&parsed.bucket)
                .key(&parsed.key)
                .send()
                .await
                .map_err(|e| remote_said(url, Stage::Plan, format!("cannot read: {}", describe(&e)), &e))?;
            while let Some(chunk) = out.body.try_next().await.map_err(|e| Error::remote(url, Stage::Plan, Retry::Yes, format!("cannot read: {e}")))? {
                file.write_all(&chunk).map_err(|e| fail(e.to_string()))?;
            }
            Ok::<_, Error>(())
        })?;
        file.rewind().map_err(|e| fail(e.to_string()))?;
        Ok(Box::new(file))
    }

    pub(super) fn download_to(&self, url: &str, local: &Path) -> Result<Option<String>> {
        let parsed = S3Url::parse(url)?;
        let (aws, client) = self.client_for(url)?;
        let client = &client;
        let got = aws.handle.block_on(async {
            let out = client.get_object().bucket(&parsed.bucket).key(&parsed.key).send().await?;
            Ok::<_, aws_sdk_s3::error::SdkError<_, _>>((out.e_tag.unwrap_or_default(), out.body))
        });
        let (etag, body) = match got {
            Ok(got) => got,
            Err(e) if crate::aws::code(&e) == Some("NoSuchKey") || status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(remote_said(url, Stage::Plan, format!("cannot read the manifest: {}", describe(&e)), &e)),
        };
        let bytes = aws
            .handle
            .block_on(body.collect())
            .map_err(|e| Error::remote(url, Stage::Plan, Retry::Yes, format!("cannot read the manifest: reading it failed: {e}")))?
            .into_bytes();
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(local)
            .map_err(|e| Error::io(local, "create a temporary manifest", e))?;
        std::io::Write::write_all(&mut file, &bytes).map_err(|e| Error::io(local, "write", e))?;
        Ok(Some(etag))
    }

    /// A manifest written back: `If-Match` on the ETag it was read at, or
    /// `If-None-Match: *` where there was none; 412 (and 404 for `If-Match`
    /// on an object deleted since) is `Refused`, 409 `Conflict`.
    pub(super) fn upload_from(&self, local: &Path, url: &str, condition: Option<Condition<'_>>, sse: Option<&ServerSide>) -> Result<Conditional> {
        let parsed = S3Url::parse(url)?;
        let (aws, client) = self.client_for(url)?;
        let client = &client;
        aws.handle.block_on(async {
            let body = ByteStream::from_path(local).await.map_err(|e| Error::invalid(local, e.to_string()))?;
            let mut req = sse!(client.put_object().bucket(&parsed.bucket).key(&parsed.key), sse).body(body);
            req = match condition {
                None => req,
                Some(Condition::Absent) => req.if_none_match("*"),
                Some(Condition::Matches(etag)) => req.if_match(etag),
            };
            match req.send().await {
                Ok(out) => Ok(Conditional::Written(out.e_tag().unwrap_or_default().to_string())),
                Err(e) if status(&e) == Some(412) => Ok(Conditional::Refused),
                Err(e) if matches!(condition, Some(Condition::Matches(_))) && (status(&e) == Some(404) || crate::aws::code(&e) == Some("NoSuchKey")) => Ok(Conditional::Refused),
                Err(e) if status(&e) == Some(409) => Ok(Conditional::Conflict),
                Err(e) => Err(remote_said(url, Stage::Write, describe(&e), &e)),
            }
        })
    }
}

/// Whether an object of `class` (with Intelligent-Tiering's `archive_status`
/// and the `x-amz-restore` header `restore`) cannot be read now.
pub(super) fn archive_state(class: Option<&str>, archive_status: Option<&str>, restore: Option<&str>) -> Option<Archived> {
    let class = match (class, archive_status) {
        (_, Some(tier)) if !tier.is_empty() => tier,
        (Some(class @ ("GLACIER" | "DEEP_ARCHIVE")), _) => class,
        _ => return None,
    };
    match restore {
        // A restored copy is readable until its expiry date.
        Some(r) if r.contains("ongoing-request=\"false\"") => None,
        Some(r) if r.contains("ongoing-request=\"true\"") => Some(Archived { class: class.to_string(), restoring: true }),
        _ => Some(Archived { class: class.to_string(), restoring: false }),
    }
}

/// The tags of an object (of one version, when given).
pub(super) fn tags_of(client: &aws_sdk_s3::Client, handle: &tokio::runtime::Handle, url: &S3Url, version: Option<&str>) -> Result<Vec<(String, String)>> {
    let out = handle
        .block_on(client.get_object_tagging().bucket(&url.bucket).key(&url.key).set_version_id(version.map(str::to_string)).send())
        .map_err(|e| remote_error(format!("s3://{}/{}", url.bucket, url.key), Stage::Read, "S3 GetObjectTagging", &e))?;
    Ok(out.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())
}
