//! What an S3 destination is told besides the generic [`OutputSettings`]:
//! how uploads are cut and sent, what every object is created with, and
//! S3's limit on key length. Plain data with no AWS SDK in it, so it builds
//! without the `aws` feature too (the bench's plan names it; see `store/mod.rs`).

use crate::store::{OutputSettings, ServerSide};

/// The checksum sent with every part (`--checksum`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChecksumChoice {
    /// CRC32C per part; the object checksum is S3's composite of the parts.
    #[default]
    Crc32c,
    /// CRC64NVME per part and of the whole object (full-object checksum).
    Crc64Nvme,
    /// No checksum headers (for S3-compatible stores that reject them).
    None,
}

/// How uploads are cut and sent.
#[derive(Clone, Debug)]
pub struct UploadSettings {
    /// Requested part size (raised where needed so a file fits in 10,000 parts).
    pub part_size: u64,
    /// Parts in flight per upload.
    pub concurrency: usize,
    /// Per-part checksum.
    pub checksum: ChecksumChoice,
    /// Replace existing objects.
    pub overwrite: bool,
    /// Headers of every uploaded object (storage class, content type, metadata, ACL, owner check).
    pub object: ObjectOptions,
}

/// What every uploaded object is created with, as `aws s3 cp` spells it.
#[derive(Clone, Debug, Default)]
pub struct ObjectOptions {
    /// `--storage-class` (`STANDARD`, `STANDARD_IA`, `INTELLIGENT_TIERING`, `GLACIER_IR`, ...); `None`: the bucket's default.
    pub storage_class: Option<String>,
    /// `--content-type`; `None`: `application/octet-stream` (ciphertext).
    pub content_type: Option<String>,
    /// `--metadata k=v`: user metadata (`x-amz-meta-k`).
    pub metadata: Vec<(String, String)>,
    /// `--cache-control`, `--content-disposition`, `--content-language`,
    /// `--content-encoding`; `None`: the source's (see [`crate::store::Properties`]).
    pub cache_control: Option<String>,
    /// See [`ObjectOptions::cache_control`].
    pub content_disposition: Option<String>,
    /// See [`ObjectOptions::cache_control`].
    pub content_language: Option<String>,
    /// See [`ObjectOptions::cache_control`].
    pub content_encoding: Option<String>,
    /// Tags, as S3's `x-amz-tagging` query string (`k=v&k2=v2`, URL-encoded).
    pub tagging: Option<String>,
    /// `Expires` (an HTTP date), copied from an S3 source.
    pub expires: Option<String>,
    /// `--acl` (a canned ACL: `private`, `bucket-owner-full-control`, ...).
    pub acl: Option<String>,
    /// `--expected-bucket-owner`: the account id the bucket must belong to.
    pub expected_bucket_owner: Option<String>,
    /// `--sse`, `--sse-kms-key-id`, `--bucket-key-enabled`: server-side
    /// encryption asked for (on objects and on manifests written to the store).
    pub sse: Option<ServerSide>,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            part_size: 16 << 20,
            concurrency: 8,
            checksum: ChecksumChoice::default(),
            overwrite: false,
            object: ObjectOptions::default(),
        }
    }
}

/// The generic settings of an S3 upload's destination (`overwrite`), with these in them.
impl From<UploadSettings> for OutputSettings {
    fn from(settings: UploadSettings) -> Self {
        OutputSettings::new(settings.overwrite).with(settings)
    }
}

impl UploadSettings {
    /// The S3 settings in `settings`, or the defaults; `overwrite` is the generic one.
    pub fn of(settings: &OutputSettings) -> Self {
        let mut own = settings.get::<UploadSettings>().cloned().unwrap_or_default();
        own.overwrite = settings.overwrite;
        own
    }
}

/// S3's limit on the length of an object key, in bytes (UTF-8).
pub const MAX_KEY_BYTES: usize = 1024;

/// Why `key` cannot be an S3 object key, if it is too long: refused before
/// any request (the SDK cannot even build the URI of a 64 KiB key).
pub fn key_too_long(key: &str) -> Option<String> {
    (key.len() > MAX_KEY_BYTES).then(|| format!("key longer than S3's {MAX_KEY_BYTES}-byte limit ({} bytes); refused", key.len()))
}

