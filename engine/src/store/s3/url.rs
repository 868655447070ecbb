//! `s3://bucket/key` URLs.

use crate::error::{Error, Result};

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
