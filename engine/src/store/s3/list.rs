//! Listing (`ListObjectsV2`), inventory fetch, and manifests kept in S3
//! (download and upload of a local copy): the [`S3Store`] methods that move whole objects or lists.

use std::path::{Path, PathBuf};

use aws_sdk_s3::primitives::ByteStream;

use super::{S3Store, S3Url};
use crate::aws::{describe, status};
use crate::error::{Error, Result};
use crate::store::{Listed, ServerSide};

impl S3Store {
    /// `s3://b/p/` lists everything under `p/`; `s3://b/p` is the object `p`
    /// itself (relative path: its name) and/or everything under `p/`.
    pub(super) fn list_under(&self, input: &str, each: &mut dyn FnMut(Listed)) -> Result<()> {
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
                // Folder markers (keys ending in `/`) are handed on too: the
                // plan leaves them out and counts them, as for list inputs.
                // The relative name is the key below the prefix, byte for byte.
                each(Listed {
                    url: format!("s3://{}/{key}", url.bucket),
                    relative: PathBuf::from(relative),
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

    /// Downloaded into an unlinked temporary file, chunk by chunk, so memory
    /// stays flat whatever the report's size.
    pub(super) fn fetch_to_temp(&self, url: &str) -> Result<Box<dyn std::io::Read + Send>> {
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

    pub(super) fn download_to(&self, url: &str, local: &Path) -> Result<bool> {
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

    pub(super) fn upload_from(&self, local: &Path, url: &str, sse: Option<&ServerSide>) -> Result<()> {
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
