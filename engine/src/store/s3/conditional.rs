//! Small objects written only if a condition holds: `PutObject` with
//! `If-None-Match: *` or `If-Match: <etag>`, `GetObject` with the ETag,
//! `DeleteObject` with `If-Match`. A run's lease on a job is one such object
//! (`run/lease.rs`): the store says whether the condition held, and 412 (or
//! 409, a concurrent conditional write) is an answer, never a failure.

use aws_sdk_s3::primitives::ByteStream;

use super::{S3Store, S3Url};
use crate::aws::{code, describe, remote_error, remote_said, status};
use crate::error::{Error, Result, Retry, Stage};
use crate::store::{Condition, Conditional, ServerSide, Tagged};

impl S3Store {
    pub(super) fn put_conditional(&self, url: &str, body: &[u8], condition: Condition<'_>, sse: Option<&ServerSide>) -> Result<Conditional> {
        let parsed = S3Url::parse(url)?;
        let (aws, client) = self.client_for(url)?;
        let client = &client;
        let mut req = sse!(client.put_object().bucket(&parsed.bucket).key(&parsed.key), sse).body(ByteStream::from(body.to_vec()));
        req = match condition {
            Condition::Absent => req.if_none_match("*"),
            Condition::Matches(etag) => req.if_match(etag),
        };
        match aws.handle.block_on(req.send()) {
            Ok(out) => Ok(Conditional::Written(out.e_tag().unwrap_or_default().to_string())),
            Err(e) if status(&e) == Some(412) => Ok(Conditional::Refused),
            // If-Match on an object that is gone: S3 answers 404 NoSuchKey.
            Err(e) if matches!(condition, Condition::Matches(_)) && (status(&e) == Some(404) || code(&e) == Some("NoSuchKey")) => Ok(Conditional::Refused),
            Err(e) if status(&e) == Some(409) => Ok(Conditional::Conflict),
            Err(e) => Err(remote_error(url, Stage::Write, "S3 PutObject", &e)),
        }
    }

    pub(super) fn get_small(&self, url: &str) -> Result<Option<Tagged>> {
        let parsed = S3Url::parse(url)?;
        let (aws, client) = self.client_for(url)?;
        let client = &client;
        let out = match aws.handle.block_on(client.get_object().bucket(&parsed.bucket).key(&parsed.key).send()) {
            Ok(out) => out,
            Err(e) if code(&e) == Some("NoSuchKey") || status(&e) == Some(404) => return Ok(None),
            Err(e) => return Err(remote_error(url, Stage::Plan, "S3 GetObject", &e)),
        };
        let etag = out.e_tag().unwrap_or_default().to_string();
        let body = aws
            .handle
            .block_on(out.body.collect())
            .map_err(|e| Error::remote(url, Stage::Plan, Retry::Yes, format!("reading the object failed: {e}")))?
            .into_bytes()
            .to_vec();
        Ok(Some(Tagged { body, etag }))
    }

    pub(super) fn delete_matching(&self, url: &str, etag: &str) -> Result<bool> {
        let parsed = S3Url::parse(url)?;
        let (aws, client) = self.client_for(url)?;
        let client = &client;
        match aws.handle.block_on(client.delete_object().bucket(&parsed.bucket).key(&parsed.key).if_match(etag).send()) {
            Ok(_) => Ok(true),
            Err(e) if status(&e) == Some(412) || status(&e) == Some(404) || code(&e) == Some("NoSuchKey") => Ok(false),
            Err(e) => Err(remote_said(url, Stage::Write, format!("cannot delete: {}", describe(&e)), &e)),
        }
    }
}
