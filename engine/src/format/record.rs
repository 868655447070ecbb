//! The manifest record: one JSON object per encrypted file, one per line.
//! Each record carries what is needed to decrypt and verify the file, and
//! ready-to-paste job settings for MediaConvert ([`MediaConvertInput`]) and
//! Elastic Transcoder ([`ElasticTranscoderInput`]). No record ever holds a
//! plaintext key. Writing manifests is the run's business (`run::manifest`);
//! reading them is here.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::digest::{Digest, RecordDigest};
use super::elastictranscoder::ElasticTranscoderInput;
use super::mediaconvert::MediaConvertInput;
use super::{b64, unb64, EncryptionContext, Iv, KeyBits, Mode, Service, Target};
use crate::error::{Error, Result};

/// Where the data key came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// Made for this file (or this run) by the key provider / OS CSPRNG.
    Generated,
    /// Supplied by the user (`--data-key-file`, `--key-hex`).
    Supplied,
}

/// Server-side encryption of a stored object, as S3 names it (`--sse`):
/// what was asked for on upload, and what S3 said it applied. The ciphertext
/// is then encrypted twice: by sealpipe (client side) and by S3 at rest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSide {
    /// `AES256`, `aws:kms` or `aws:kms:dsse` (`x-amz-server-side-encryption`).
    pub algorithm: String,
    /// The KMS key S3 used (`aws:kms*`), as S3 reports it (a key ARN).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kms_key_id: Option<String>,
    /// Whether an S3 Bucket Key was used (`aws:kms`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bucket_key_enabled: Option<bool>,
}

/// One encrypted file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// The plaintext source.
    pub source: String,
    /// Where the ciphertext was written (absolute path or URL).
    pub output: String,
    /// The output's path relative to the folder of the manifest it was
    /// recorded in, when it lies below that folder (local outputs; `/`
    /// separated). Readers find the output there (`run::verify::relocate`), so a moved
    /// or copied folder verifies and decrypts as itself.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub output_relative: Option<String>,
    /// The stored object's entity tag (S3), if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub etag: Option<String>,
    /// The source version read, from a versioned bucket (S3's `VersionId`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_version_id: Option<String>,
    /// The output's version, in a versioned destination bucket.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub output_version_id: Option<String>,
    /// The whole-object checksum the store reported, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub checksum: Option<String>,
    /// The object's server-side encryption (S3 outputs), as S3 reported it on upload.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub server_side_encryption: Option<ServerSide>,
    /// Plaintext size in bytes.
    pub plaintext_size: u64,
    /// Ciphertext size in bytes (with CBC padding or the GCM tag).
    pub ciphertext_size: u64,
    /// Cipher mode.
    pub mode: Mode,
    /// AES key size in bits.
    pub key_bits: KeyBits,
    /// Key provider that wrapped the data key ("local-keyring", "aws-kms").
    pub key_provider: String,
    /// The provider's key-encryption key id.
    pub key_id: String,
    /// Whether the data key was generated or supplied.
    pub key_source: KeySource,
    /// The services the settings are for ("any", "mediaconvert", "elastictranscoder").
    pub target: String,
    /// Encryption context `encrypted_data_key` is bound to.
    pub encryption_context: EncryptionContext,
    /// The wrapped data key (base64).
    pub encrypted_data_key: String,
    /// The IV (base64 of 12 or 16 bytes).
    pub iv: String,
    /// Base64 MD5 of the plaintext data key (Elastic Transcoder's `KeyMd5`).
    pub key_md5: String,
    /// SHA-256 of the plaintext (hex), for records made with `--digest sha256`
    /// (the default, and every record before `--digest`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub plaintext_sha256: Option<String>,
    /// Any other plaintext digest, or `{"alg": "none"}` (see [`super::digest`]).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub digest: Option<RecordDigest>,
    /// MediaConvert input settings, if the key was wrapped for MediaConvert.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mediaconvert: Option<MediaConvertInput>,
    /// Elastic Transcoder settings, if the IV is 16 bytes and the key was
    /// wrapped for Elastic Transcoder.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub elastictranscoder: Option<ElasticTranscoderInput>,
    /// Unix time (seconds) the file was finished.
    pub finished_unix: u64,
    /// The shard (`I/N`) of a sharded run that encrypted the file.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub shard: Option<String>,
}

/// The data key wrapped under one service's context.
pub struct WrappedFor {
    /// The service.
    pub service: Service,
    /// The wrapped blob.
    pub blob: Vec<u8>,
}

/// Everything about one encrypted file that goes into its record (no key
/// material: the data key is there only wrapped, and as its MD5).
pub struct RecordInput<'a> {
    /// Plaintext source, as records name it.
    pub source: &'a str,
    /// Where the output was committed (path or URL), and what the store said of it.
    pub output: String,
    /// The store's entity tag, if any.
    pub etag: Option<String>,
    /// The store's whole-object checksum, if any.
    pub checksum: Option<String>,
    /// The store's server-side encryption of the output, if any.
    pub server_side_encryption: Option<ServerSide>,
    /// URL or path to put in `FileInput`.
    pub file_input: String,
    /// Mode.
    pub mode: Mode,
    /// Size of the data key.
    pub key_bits: KeyBits,
    /// Base64 MD5 of the plaintext data key.
    pub key_md5: String,
    /// Key source.
    pub key_source: KeySource,
    /// The key provider's name and key id.
    pub key_provider: &'a str,
    /// The key-encryption key's id.
    pub key_id: String,
    /// The region of a KMS key (`None` for providers outside KMS).
    pub kms_region: Option<String>,
    /// Target.
    pub target: Target,
    /// Wrapped copies, primary service first.
    pub wrapped: &'a [WrappedFor],
    /// IV used.
    pub iv: &'a Iv,
    /// Plaintext bytes.
    pub plain_len: u64,
    /// Ciphertext bytes.
    pub cipher_len: u64,
    /// The plaintext digest.
    pub digest: &'a Digest,
}

impl Record {
    /// Build the record for a finished file.
    pub fn new(r: RecordInput<'_>) -> Record {
        let primary = &r.wrapped[0];
        let iv_b64 = b64(r.iv.as_bytes());
        let find = |s: Service| r.wrapped.iter().find(|w| w.service == s);
        let mediaconvert = find(Service::MediaConvert).map(|w| {
            MediaConvertInput::new(r.file_input.clone(), r.mode, b64(&w.blob), iv_b64.clone(), r.kms_region.clone())
        });
        let elastictranscoder = find(Service::ElasticTranscoder)
            .filter(|_| r.iv.as_bytes().len() == 16)
            .map(|w| ElasticTranscoderInput::new(r.mode, b64(&w.blob), r.key_md5.clone(), iv_b64.clone()));
        let (plaintext_sha256, digest) = RecordDigest::split(r.digest);
        Record {
            source: r.source.to_string(),
            output: r.output,
            output_relative: None,
            etag: r.etag,
            source_version_id: None,
            output_version_id: None,
            checksum: r.checksum,
            server_side_encryption: r.server_side_encryption,
            plaintext_size: r.plain_len,
            ciphertext_size: r.cipher_len,
            mode: r.mode,
            key_bits: r.key_bits,
            key_provider: r.key_provider.into(),
            key_id: r.key_id,
            key_source: r.key_source,
            target: r.target.to_string(),
            encryption_context: primary.service.encryption_context(),
            encrypted_data_key: b64(&primary.blob),
            iv: iv_b64,
            key_md5: r.key_md5,
            plaintext_sha256,
            digest,
            mediaconvert,
            elastictranscoder,
            finished_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            shard: None,
        }
    }

    /// The IV.
    pub fn iv(&self) -> Result<Iv> {
        Iv::from_slice(&unb64(&self.iv, "manifest iv")?)
    }

    /// The plaintext digest the record carries (its algorithm may be `none`).
    /// Records that [`Record::from_json`] read always have one.
    pub fn digest(&self) -> std::result::Result<Digest, String> {
        RecordDigest::join(self.plaintext_sha256.as_deref(), self.digest.as_ref())
    }

    /// Parse one manifest line: a record whose digest members agree
    /// ([`Record::digest`]); anything else is a `serde_json` data error.
    pub fn from_json(line: &str) -> serde_json::Result<Record> {
        let record: Record = serde_json::from_str(line)?;
        match record.digest() {
            Ok(_) => Ok(record),
            Err(reason) => Err(<serde_json::Error as serde::de::Error>::custom(reason)),
        }
    }

    /// The wrapped data key's blob.
    pub fn wrapped_key(&self) -> Result<Vec<u8>> {
        unb64(&self.encrypted_data_key, "manifest encrypted_data_key")
    }
}

/// Read every record of a manifest (a torn last line is left out; see [`for_each_record`]).
pub fn read(path: &Path) -> Result<Vec<Record>> {
    let file = File::open(path).map_err(|e| Error::io(path, "open manifest", e))?;
    let mut records = Vec::new();
    for_each_record(file, path, &mut |r, _| {
        records.push(r);
        Ok(())
    })?;
    Ok(records)
}

/// A manifest line that is not a record: torn (a process killed while
/// appending it) or otherwise unparsable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadLine {
    /// Its line number (1-based).
    pub number: usize,
    /// The `output` the line names, when the part that survived holds it whole.
    pub output: Option<String>,
    /// Why it is not a record.
    pub reason: String,
}

/// One non-empty line of a manifest, as [`for_each_line`] hands it over.
pub enum Line {
    /// A record.
    Record(Record),
    /// A line that is not a record.
    Bad(BadLine),
}

/// Every record of a manifest, and every line that is not one (anywhere,
/// the last included): for `verify`, which reports each bad line as a failure.
pub fn read_all(path: &Path) -> Result<(Vec<Record>, Vec<BadLine>)> {
    let file = File::open(path).map_err(|e| Error::io(path, "open manifest", e))?;
    let (mut records, mut bad) = (Vec::new(), Vec::new());
    for_each_line(file, path, &mut |line, _| {
        match line {
            Line::Record(r) => records.push(r),
            Line::Bad(b) => bad.push(b),
        }
        Ok(())
    })?;
    Ok((records, bad))
}

/// The one reader of sealpipe's JSONL files (manifests, journals, jobs
/// ledgers): calls `each` with the number (from 1) and the bytes of every
/// line that is not blank, its `\n` or `\r\n` cut off. Bytes, not
/// `lines()`: a line cut inside a UTF-8 sequence (a process killed while
/// appending it) is the caller's to judge, not a read error. Only reading fails.
pub fn for_each_jsonl_line(file: File, path: &Path, each: &mut dyn FnMut(usize, &[u8]) -> Result<()>) -> Result<()> {
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut bytes = Vec::new();
    let mut n = 0;
    loop {
        bytes.clear();
        if reader.read_until(b'\n', &mut bytes).map_err(|e| Error::io(path, "read", e))? == 0 {
            return Ok(());
        }
        n += 1;
        let line = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !line.iter().all(u8::is_ascii_whitespace) {
            each(n, line)?;
        }
    }
}

/// Call `each` with every non-empty line of the manifest `file` (at `path`)
/// and its line index: a [`Line::Record`], or a [`Line::Bad`] for a line
/// that does not parse as one, wherever it is (a line that is not UTF-8
/// included: records are written as UTF-8). Only reading fails.
pub(crate) fn for_each_line(file: File, path: &Path, each: &mut dyn FnMut(Line, usize) -> Result<()>) -> Result<()> {
    const TORN: &str = "torn: the record ends before it is complete";
    for_each_jsonl_line(file, path, &mut |n, bytes| {
        let bad = |reason: String| Line::Bad(BadLine { number: n, output: salvaged_output(&String::from_utf8_lossy(bytes)), reason });
        let line = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            // Cut inside its last character: torn; anywhere else: corrupt.
            Err(e) if e.error_len().is_none() => return each(bad(TORN.to_string()), n - 1),
            Err(e) => return each(bad(format!("not valid UTF-8 (at byte {})", e.valid_up_to())), n - 1),
        };
        match Record::from_json(line) {
            Ok(r) => each(Line::Record(r), n - 1),
            Err(e) => {
                let reason = match e.classify() {
                    serde_json::error::Category::Eof => TORN.to_string(),
                    _ => format!("not a sealpipe manifest record: {e}"),
                };
                each(bad(reason), n - 1)
            }
        }
    })
}

/// The `output` of a torn record line, when the part that survived holds
/// the whole `"output":"..."` member (records write `source`, then `output`).
fn salvaged_output(line: &str) -> Option<String> {
    let at = line.find("\"output\":")? + "\"output\":".len();
    let mut values = serde_json::Deserializer::from_str(line[at..].trim_start()).into_iter::<String>();
    values.next()?.ok()
}

/// Call `each` with every record of the manifest `file` (at `path`) and its
/// line index. A torn last line (a process killed while appending it, before
/// its file counted as done) is not a record and is skipped; a bad line
/// anywhere else is an error naming it. Readers that must account for the
/// torn line too (`verify`; resume, which treats the output it names as
/// written but unrecorded) use [`for_each_line`].
pub(crate) fn for_each_record(file: File, path: &Path, each: &mut dyn FnMut(Record, usize) -> Result<()>) -> Result<()> {
    for_each_record_torn(file, path, each).map(|_| ())
}

/// [`for_each_record`], returning the torn last line, if there is one.
pub(crate) fn for_each_record_torn(file: File, path: &Path, each: &mut dyn FnMut(Record, usize) -> Result<()>) -> Result<Option<BadLine>> {
    let mut pending: Option<BadLine> = None;
    for_each_line(file, path, &mut |line, n| {
        if let Some(bad) = pending.take() {
            return Err(Error::invalid(path, format!("line {}: {}", bad.number, bad.reason)));
        }
        match line {
            Line::Record(r) => each(r, n),
            Line::Bad(bad) => {
                pending = Some(bad);
                Ok(())
            }
        }
    })?;
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(text: &str) -> Vec<std::result::Result<String, BadLine>> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let mut out = Vec::new();
        for_each_line(f.reopen().unwrap(), f.path(), &mut |l, _| {
            out.push(match l {
                Line::Record(r) => Ok(r.output),
                Line::Bad(b) => Err(b),
            });
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn a_torn_line_is_reported_with_the_output_it_names() {
        let got = lines("{\"source\":\"/a\",\"output\":\"s3://b/enc/a.ts\",\"etag\":\"x\n\n{\"source\":\"/b\",\"outp");
        assert_eq!(got.len(), 2);
        let first = got[0].clone().unwrap_err();
        assert_eq!((first.number, first.output.as_deref()), (1, Some("s3://b/enc/a.ts")));
        assert!(first.reason.starts_with("torn"), "{}", first.reason);
        let second = got[1].clone().unwrap_err();
        assert_eq!((second.number, second.output), (3, None));
    }

    #[test]
    fn a_line_that_is_not_utf8_is_a_bad_line_not_a_record() {
        let record = "{\"source\":\"/a\",\"output\":\"s3://b/enc/a.ts\",\"etag\":\"x\"}";
        let mut bytes = record.as_bytes().to_vec();
        bytes[9] = 0xff; // inside "/a": a lossy reading would have made it "/\u{fffd}" and parsed it
        bytes.extend_from_slice(b"\n{\"source\":\"/\xc3");
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&bytes).unwrap();
        let mut got = Vec::new();
        for_each_line(f.reopen().unwrap(), f.path(), &mut |l, _| {
            got.push(match l {
                Line::Record(r) => panic!("not a record: {r:?}"),
                Line::Bad(b) => b,
            });
            Ok(())
        })
        .unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].reason.starts_with("not valid UTF-8"), "{}", got[0].reason);
        assert_eq!(got[0].output.as_deref(), Some("s3://b/enc/a.ts"));
        assert!(got[1].reason.starts_with("torn"), "cut inside its last character: {}", got[1].reason);
    }

    #[test]
    fn for_each_record_skips_only_a_torn_last_line() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"{\"source\":\"/a\",\"outp\n\n").unwrap();
        assert!(for_each_record(f.reopen().unwrap(), f.path(), &mut |_, _| Ok(())).is_ok());
        f.write_all(b"{}\n").unwrap();
        let err = for_each_record(f.reopen().unwrap(), f.path(), &mut |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }
}
