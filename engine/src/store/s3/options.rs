//! What S3 requests are built from: the object-option and SSE request
//! macros, S3's limits, part sizing, per-part checksums, the client.

use std::path::Path;

use aws_sdk_s3::types::ChecksumAlgorithm;

use crate::aws::{code, remote_error, Aws, Classifier};
use crate::error::{Error, Result, Stage};
use crate::format::b64;
pub use super::settings::{key_too_long, ChecksumChoice, ObjectOptions, UploadSettings, MAX_KEY_BYTES};

/// The [`ObjectOptions`] on a `PutObject` or `CreateMultipartUpload` request builder
/// (the two share these setters but no trait).
macro_rules! object_options {
    ($req:expr, $o:expr) => {{
        let o: &$crate::store::s3::ObjectOptions = $o;
        let mut req = $req.content_type(o.content_type.as_deref().unwrap_or("application/octet-stream"));
        if let Some(class) = &o.storage_class {
            req = req.storage_class(aws_sdk_s3::types::StorageClass::from(class.as_str()));
        }
        if let Some(acl) = &o.acl {
            req = req.acl(aws_sdk_s3::types::ObjectCannedAcl::from(acl.as_str()));
        }
        if let Some(owner) = &o.expected_bucket_owner {
            req = req.expected_bucket_owner(owner);
        }
        for (k, v) in &o.metadata {
            req = req.metadata(k, v);
        }
        req = req
            .set_cache_control(o.cache_control.clone())
            .set_content_disposition(o.content_disposition.clone())
            .set_content_language(o.content_language.clone())
            .set_content_encoding(o.content_encoding.clone())
            .set_tagging(o.tagging.clone())
            .set_expires(o.expires.as_deref().and_then(|d| aws_smithy_types::DateTime::from_str(d, aws_smithy_types::date_time::Format::HttpDate).ok()));
        sse!(req, o.sse.as_ref())
    }};
}

/// A [`ServerSide`] on a request builder (`PutObject`, `CreateMultipartUpload`):
/// the `x-amz-server-side-encryption*` headers.
/// The [`crate::store::Properties`] (but tags) of a `HeadObject` or
/// `GetObject` reply: the two SDK types have the same accessors.
macro_rules! properties_of {
    ($out:expr) => {{
        let out = &$out;
        let mut metadata: Vec<(String, String)> =
            out.metadata().into_iter().flatten().filter(|(k, _)| !k.starts_with("sealpipe-")).map(|(k, v)| (k.clone(), v.clone())).collect();
        metadata.sort();
        $crate::store::Properties {
            content_type: out.content_type().map(str::to_string),
            cache_control: out.cache_control().map(str::to_string),
            content_disposition: out.content_disposition().map(str::to_string),
            content_language: out.content_language().map(str::to_string),
            content_encoding: out.content_encoding().map(str::to_string),
            expires: out.expires_string().map(str::to_string),
            metadata,
            tags: Vec::new(),
        }
    }};
}

macro_rules! sse {
    ($req:expr, $sse:expr) => {{
        let mut req = $req;
        if let Some(s) = $sse {
            let s: &$crate::store::ServerSide = s;
            req = req.server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::from(s.algorithm.as_str()));
            if let Some(key) = &s.kms_key_id {
                req = req.ssekms_key_id(key);
            }
            if let Some(on) = s.bucket_key_enabled {
                req = req.bucket_key_enabled(on);
            }
        }
        req
    }};
}

/// The server-side encryption S3 says it applied (a `PutObject` or
/// `CompleteMultipartUpload` answer).
macro_rules! applied_sse {
    ($out:expr) => {{
        let out = &$out;
        out.server_side_encryption().map(|a| $crate::store::ServerSide {
            algorithm: a.as_str().to_string(),
            kms_key_id: out.ssekms_key_id().map(str::to_string),
            bucket_key_enabled: out.bucket_key_enabled(),
        })
    }};
}

/// The error of a `PutObject` or `CreateMultipartUpload` (`op`) that created
/// nothing. A bucket whose policy refuses unencrypted uploads answers
/// `AccessDenied`: without `--sse`, the line says so.
pub(super) fn create_error<E, R>(path: &Path, op: &str, err: &aws_sdk_s3::error::SdkError<E, R>, object: &ObjectOptions) -> Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + crate::aws::HasStatus + 'static,
{
    let mut e = remote_error(path, Stage::Write, op, err);
    if let Error::Remote { message: reason, .. } = &mut e {
        if object.sse.is_none() && code(err) == Some("AccessDenied") {
            reason.push_str(" (if the bucket policy requires server-side encryption, give --sse AES256 or --sse aws:kms)");
        }
    }
    e
}

/// Smallest part S3 accepts (all but the last part).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// Largest part S3 accepts.
pub const MAX_PART_SIZE: u64 = 5 << 30;
/// Most parts in one upload.
pub const MAX_PARTS: u64 = 10_000;
/// Default part size.
pub const DEFAULT_PART_SIZE: u64 = 16 << 20;
/// Default number of parts in flight per upload.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Largest ranged GET when reading an object.
pub const RANGE_SIZE: usize = 8 << 20;
/// A window is fetched by up to this many concurrent ranged GETs ...
pub const READ_SPLIT: usize = 4;
/// ... of at least this many bytes each.
pub const MIN_RANGE_SIZE: usize = 1 << 20;
/// Objects up to this size are read whole by one GET, which also brings
/// their properties (HLS segments are 100 KiB to 2 MiB); larger ones by
/// windows of concurrent ranged GETs. It is the largest window a run plans.
pub const WHOLE_OBJECT_MAX: usize = 8 << 20;
/// A ranged GET whose body ends early is resumed at most this many times.
pub const MAX_RESUMES: u32 = 5;

/// Refuse a part size outside S3's limits (5 MiB to 5 GiB); the caller names its flag.
pub fn check_part_size(part_size: u64) -> Result<()> {
    if (MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
        return Ok(());
    }
    Err(Error::Usage(format!("{part_size} bytes is outside S3's part sizes, 5MiB to 5GiB")))
}

/// The SDK's name of a checksum choice.
pub(super) fn algorithm(choice: ChecksumChoice) -> Option<ChecksumAlgorithm> {
    match choice {
        ChecksumChoice::Crc32c => Some(ChecksumAlgorithm::Crc32C),
        ChecksumChoice::Crc64Nvme => Some(ChecksumAlgorithm::Crc64Nvme),
        ChecksumChoice::None => None,
    }
}

/// Base64 of the big-endian checksum of `data`, as S3 headers carry it.
pub fn checksum_of(choice: ChecksumChoice, data: &[u8]) -> Option<String> {
    match choice {
        ChecksumChoice::Crc32c => Some(b64(&crc32c::crc32c(data).to_be_bytes())),
        ChecksumChoice::Crc64Nvme => {
            let mut d = crc64fast_nvme::Digest::new();
            d.write(data);
            Some(b64(&d.sum64().to_be_bytes()))
        }
        ChecksumChoice::None => None,
    }
}

/// An S3 client honouring `force_path_style` and the checksum choice.
pub fn client(aws: &Aws, checksum: ChecksumChoice) -> aws_sdk_s3::Client {
    client_in(aws, checksum, None)
}

/// [`client`] whose requests are signed for and sent to `region` (a bucket's
/// own, found by [`bucket_region`]); `None`: the configured region.
pub fn client_in(aws: &Aws, checksum: ChecksumChoice, region: Option<&str>) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
    let mut builder = aws_sdk_s3::config::Builder::from(&aws.config).force_path_style(aws.options.force_path_style).retry_classifier(Classifier);
    if let Some(region) = region {
        builder = builder.region(aws_sdk_s3::config::Region::new(region.to_string()));
    }
    if checksum == ChecksumChoice::None {
        // Stores that reject the SDK's default CRC32 headers.
        builder = builder
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    }
    builder = builder.interceptor(UnsignedOverTls);
    let o = &aws.options;
    if o.request_payer || !o.bucket_owners.is_empty() || o.other_buckets_owner.is_some() {
        builder = builder.interceptor(BucketHeaders {
            request_payer: o.request_payer,
            owners: o.bucket_owners.clone(),
            other: o.other_buckets_owner.clone(),
            path_style: o.force_path_style,
        });
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// The region `bucket` lives in, as S3 says it on a `HeadBucket` through
/// `client`: the `x-amz-bucket-region` header of its answer, a 200 or the
/// 301 `PermanentRedirect` (or 400 `AuthorizationHeaderMalformed`) a
/// request signed for another region gets. `None` when the answer names
/// none (an S3-compatible store): the configured region is used.
pub fn bucket_region(aws: &Aws, client: &aws_sdk_s3::Client, bucket: &str) -> Option<String> {
    match aws.handle.block_on(client.head_bucket().bucket(bucket).send()) {
        Ok(out) => out.bucket_region().map(str::to_string),
        Err(e) => e.raw_response().and_then(|r| r.headers().get("x-amz-bucket-region")).map(str::to_string),
    }
}

/// Who pays and who owns, on every S3 request the client sends (reads,
/// writes, listings, multipart calls, manifests and leases alike), set in
/// this one place rather than on each of the SDK's request builders: a
/// new call cannot forget them.
#[derive(Debug, Clone)]
struct BucketHeaders {
    request_payer: bool,
    owners: Vec<(String, String)>,
    other: Option<String>,
    path_style: bool,
}

impl aws_sdk_s3::config::Intercept for BucketHeaders {
    fn name(&self) -> &'static str {
        "sealpipe::BucketHeaders"
    }

    fn modify_before_signing(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        _: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), aws_sdk_s3::error::BoxError> {
        let request = context.request_mut();
        let bucket = bucket_of(request.uri(), self.path_style).map(str::to_string);
        let headers = request.headers_mut();
        if self.request_payer && !headers.contains_key("x-amz-request-payer") {
            headers.insert("x-amz-request-payer", "requester");
        }
        if let Some(bucket) = bucket {
            let owner = self.owners.iter().find(|(b, _)| *b == bucket).map(|(_, o)| o).or(self.other.as_ref());
            if let (Some(owner), false) = (owner, headers.contains_key("x-amz-expected-bucket-owner")) {
                headers.insert("x-amz-expected-bucket-owner", owner.clone());
            }
        }
        Ok(())
    }
}

/// Bodies this large or larger, sent over TLS with a checksum header, are
/// not hashed for SigV4 (`UNSIGNED-PAYLOAD`, as the AWS CRT client sends
/// them): TLS and the part's CRC carry their integrity, and the SHA-256 of
/// every payload byte was a third of the CPU of an upload (issue 21's
/// profile). Over plain HTTP, and for small bodies (manifests), payloads stay signed.
const UNSIGNED_PAYLOAD_MIN: usize = 64 << 10;

/// Marks large request bodies sent over TLS with a checksum `UNSIGNED-PAYLOAD` (see [`UNSIGNED_PAYLOAD_MIN`]).
#[derive(Debug)]
pub(super) struct UnsignedOverTls;

impl aws_sdk_s3::config::Intercept for UnsignedOverTls {
    fn name(&self) -> &'static str {
        "sealpipe::UnsignedOverTls"
    }

    fn modify_before_signing(
        &self,
        context: &mut aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextMut<'_>,
        _: &aws_sdk_s3::config::RuntimeComponents,
        cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> std::result::Result<(), aws_sdk_s3::error::BoxError> {
        let request = context.request_mut();
        let tls = request.uri().starts_with("https://");
        let large = request.body().bytes().is_some_and(|b| b.len() >= UNSIGNED_PAYLOAD_MIN);
        let checksummed = request.headers().iter().any(|(name, _)| name.starts_with("x-amz-checksum-"));
        if tls && large && checksummed {
            cfg.interceptor_state().store_put(aws_runtime::auth::PayloadSigningOverride::unsigned_payload());
        }
        Ok(())
    }
}

/// The bucket a request URI addresses: the first path segment with
/// path-style addressing, else the host's first label
/// (`bucket.s3.region.amazonaws.com`); `None` for a request to no bucket.
fn bucket_of(uri: &str, path_style: bool) -> Option<&str> {
    let rest = uri.split_once("://").map_or(uri, |(_, r)| r);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host = host.split(':').next().unwrap_or(host);
    if !path_style && (host.contains(".s3.") || host.contains(".s3-")) {
        return host.split('.').next().filter(|b| !b.is_empty());
    }
    path.split(['/', '?']).next().filter(|b| !b.is_empty())
}

/// The part size for an object of `len` bytes: at least `requested` (and
/// 5 MiB), raised to a whole MiB so that the object fits in 10,000 parts.
pub fn part_size_for(len: u64, requested: u64) -> Result<u64> {
    let mut size = requested.max(MIN_PART_SIZE);
    let needed = len.div_ceil(MAX_PARTS);
    if size < needed {
        size = needed.div_ceil(1 << 20) << 20;
    }
    if size > MAX_PART_SIZE {
        return Err(Error::Usage(format!(
            "an object of {len} bytes does not fit in {MAX_PARTS} parts of at most 5 GiB"
        )));
    }
    Ok(size)
}

/// Part buffers an upload of `part_size`-byte parts may hold at once, when
/// the memory plan gave each upload `concurrency` buffers of `planned` bytes:
/// as many as fit in that share (at most `concurrency`). A file whose part
/// size [`part_size_for`] raised holds fewer; `None` where not even one fits
/// (the run's `--memory` is too small for the file).
pub fn parts_in_flight(part_size: u64, planned: u64, concurrency: usize) -> Option<usize> {
    let share = planned.max(MIN_PART_SIZE) * concurrency as u64;
    let fits = (share / part_size.max(1)).min(concurrency as u64) as usize;
    (fits > 0).then_some(fits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_of_a_request_in_either_addressing() {
        assert_eq!(bucket_of("http://127.0.0.1:9000/media/k/a.ts?x-id=GetObject", true), Some("media"));
        assert_eq!(bucket_of("https://media.s3.eu-west-1.amazonaws.com/k/a.ts", false), Some("media"));
        assert_eq!(bucket_of("https://s3.eu-west-1.amazonaws.com/media?list-type=2", false), Some("media"));
        assert_eq!(bucket_of("http://127.0.0.1:9000/", true), None);
    }

    #[test]
    fn part_size_fits_ten_thousand_parts() {
        assert_eq!(part_size_for(1 << 30, DEFAULT_PART_SIZE).unwrap(), DEFAULT_PART_SIZE);
        assert_eq!(part_size_for(100, 1).unwrap(), MIN_PART_SIZE);
        let big = 1u64 << 40; // 1 TiB
        let p = part_size_for(big, DEFAULT_PART_SIZE).unwrap();
        assert!(big.div_ceil(p) <= MAX_PARTS && p % (1 << 20) == 0, "{p}");
        assert!(part_size_for(60 << 40, DEFAULT_PART_SIZE).is_err());
    }

    /// Issue 24, finding 8: a file whose part size is raised to fit 10,000
    /// parts holds no more part memory than the plan gave it, at every size
    /// up to S3's 5 TiB single-object limit on many stores (no huge files).
    #[test]
    fn finding_8_memory_holds_for_every_file_size() {
        for budget in [256u64 << 20, 1 << 30, 4 << 30] {
            let plan = crate::run::schedule::MemoryPlan::new(budget, 2, 1 << 20, Some((DEFAULT_PART_SIZE, DEFAULT_CONCURRENCY))).unwrap();
            let share = plan.part_size * plan.upload_concurrency as u64;
            let mut size = 1u64 << 20;
            while size <= 5u64 << 40 {
                for len in [size - 1, size, size + 1] {
                    let part = part_size_for(len, plan.part_size).unwrap();
                    match parts_in_flight(part, plan.part_size, plan.upload_concurrency) {
                        Some(n) => {
                            assert!(n >= 1 && n as u64 * part <= share, "{len} bytes: {n} x {part} over the plan's {share}");
                            assert!(n <= plan.upload_concurrency);
                        }
                        // Refused only where one part alone is over the share.
                        None => assert!(part > share, "{len} bytes refused though a {part}-byte part fits {share}"),
                    }
                }
                size *= 2;
            }
            // The plan as a whole: parts never exceed what bound() counted.
            assert!(plan.bound() <= budget, "{} > {budget}", plan.bound());
        }
        // 1 TiB at the defaults under 1 GiB: one 105 MiB part at a time, not 8 (840 MiB).
        let plan = crate::run::schedule::MemoryPlan::new(1 << 30, 2, 1 << 20, Some((DEFAULT_PART_SIZE, DEFAULT_CONCURRENCY))).unwrap();
        let part = part_size_for(1 << 40, plan.part_size).unwrap();
        assert_eq!(part, 105 << 20);
        let n = parts_in_flight(part, plan.part_size, plan.upload_concurrency).unwrap();
        assert!(n as u64 * part <= plan.part_size * plan.upload_concurrency as u64 && n < plan.upload_concurrency);
        // 5 TiB needs 525 MiB parts: over a 1 GiB run's per-upload share, refused.
        assert_eq!(parts_in_flight(part_size_for(5 << 40, plan.part_size).unwrap(), plan.part_size, plan.upload_concurrency), None);
        assert_eq!(parts_in_flight(MIN_PART_SIZE, MIN_PART_SIZE, 8), Some(8));
    }

    #[test]
    fn checksums_are_big_endian_base64() {
        // CRC32C("123456789") = 0xE3069283.
        assert_eq!(checksum_of(ChecksumChoice::Crc32c, b"123456789").unwrap(), b64(&[0xE3, 0x06, 0x92, 0x83]));
        assert_eq!(checksum_of(ChecksumChoice::None, b"x"), None);
    }
}

