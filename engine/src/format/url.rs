//! `s3://bucket/key` URLs: the one parser of the project. Every layer that
//! reads an `s3://` URL (the S3 store, the IAM policy, list files, plans,
//! the CLI) splits it here. The key is kept byte for byte: no `//` is
//! collapsed and no leading `/` is dropped, because S3 keys may hold both.

use crate::error::{Error, Result};

/// `s3://bucket/key`, split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    /// Bucket name.
    pub bucket: String,
    /// Key (or prefix); may be empty.
    pub key: String,
}

/// Why a text is not an `s3://bucket[/key]` URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3UrlError {
    /// It does not start with `s3://`.
    NotS3,
    /// Nothing between `s3://` and the first `/`.
    NoBucket,
}

impl S3Url {
    /// `s3://bucket[/key]` as `(bucket, key)`, borrowed; the key is what
    /// follows the first `/` after the bucket, exactly (empty if none).
    pub fn split(url: &str) -> std::result::Result<(&str, &str), S3UrlError> {
        let rest = url.strip_prefix("s3://").ok_or(S3UrlError::NotS3)?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(S3UrlError::NoBucket);
        }
        Ok((bucket, key))
    }

    /// A list or inventory entry that names one version of an object,
    /// `s3://bucket/key?versionId=ID` (the form S3's console links use), as
    /// `(url, Some(id))`; any other name as `(name, None)`. The last
    /// `?versionId=` counts: a key that itself ends in one must be written
    /// with a version after it.
    pub fn split_version(name: &str) -> (&str, Option<&str>) {
        match name.rsplit_once("?versionId=") {
            Some((url, id)) if Self::is_s3(url) && !id.is_empty() && !id.contains(['/', '?']) => (url, Some(id)),
            _ => (name, None),
        }
    }

    /// Parse `s3://bucket[/key]`.
    pub fn parse(url: &str) -> Result<S3Url> {
        match Self::split(url) {
            Ok((bucket, key)) => Ok(S3Url { bucket: bucket.to_string(), key: key.to_string() }),
            Err(S3UrlError::NotS3) => Err(Error::Usage(format!("{url}: not an s3:// URL (expected s3://bucket/prefix/)"))),
            Err(S3UrlError::NoBucket) => Err(Error::Usage(format!("{url}: no bucket name in the S3 URL"))),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_and_key_are_split_at_the_first_slash() {
        assert_eq!(S3Url::parse("s3://b/a/c.ts").unwrap(), S3Url { bucket: "b".into(), key: "a/c.ts".into() });
        assert_eq!(S3Url::parse("s3://b/p/").unwrap().key, "p/");
    }

    #[test]
    fn a_url_without_a_key_has_an_empty_key() {
        assert_eq!(S3Url::split("s3://b"), Ok(("b", "")));
        assert_eq!(S3Url::split("s3://b/"), Ok(("b", "")));
    }

    #[test]
    fn an_empty_bucket_is_refused() {
        assert_eq!(S3Url::split("s3://"), Err(S3UrlError::NoBucket));
        assert_eq!(S3Url::split("s3:///x"), Err(S3UrlError::NoBucket));
        assert_eq!(S3Url::parse("s3:///x").unwrap_err().to_string(), "s3:///x: no bucket name in the S3 URL");
    }

    #[test]
    fn other_schemes_are_not_s3() {
        assert_eq!(S3Url::split("gs://b/k"), Err(S3UrlError::NotS3));
        assert_eq!(S3Url::split("/local/path"), Err(S3UrlError::NotS3));
        assert!(S3Url::parse("S3://b/k").is_err());
    }

    #[test]
    fn the_key_is_kept_byte_for_byte() {
        assert_eq!(S3Url::split("s3://b//x"), Ok(("b", "/x")));
        assert_eq!(S3Url::split("s3://b/a//b/"), Ok(("b", "a//b/")));
        assert_eq!(S3Url::split("s3://b/é %20.ts"), Ok(("b", "é %20.ts")));
        assert_eq!(S3Url::parse("s3://b/a//b").unwrap().to_string(), "s3://b/a//b");
    }
}
