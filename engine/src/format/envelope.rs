//! The envelope each S3 output carries in its own user metadata: what is
//! needed to decrypt it (the wrapped data key or keys with their provider
//! and key id, the IV, mode and key size) and the identity of its record.
//! A committed output then stays decryptable even if every copy of the
//! manifest is lost, as the AWS S3 Encryption Client keeps its envelope with
//! the object; `rebuild-manifest` turns envelopes back into records.
//!
//! One metadata key, `x-amz-meta-sealpipe-envelope`, holds compact JSON
//! (layout in `docs/FORMAT.md` §6); `x-amz-meta-sealpipe-source` holds the
//! source's name, percent-encoded, when it fits in S3's 2 KB of user
//! metadata beside the envelope. No plaintext key is ever in it: only the
//! wrapped copies, and the key's MD5 (what Elastic Transcoder's `KeyMd5`
//! already publishes).

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::digest::{Digest, DigestAlg};
use super::record::{KeySource, Record, RecordInput, WrappedFor};
use super::{b64, unb64, Iv, KeyBits, Mode, Service, Target};
use crate::error::{Error, Result};

/// The user metadata key of the envelope (`x-amz-meta-sealpipe-envelope`).
pub const ENVELOPE_KEY: &str = "sealpipe-envelope";
/// The user metadata key of the source's name (`x-amz-meta-sealpipe-source`).
pub const SOURCE_KEY: &str = "sealpipe-source";
/// S3's limit on user metadata: names and values, in bytes, together.
pub const MAX_USER_METADATA: usize = 2048;

/// The identity of the record of `source` → `output`: the first 16 bytes of
/// SHA-256(source, NUL, output). The ledger keys its records by it, and an
/// envelope names its record with it (in hex), so a run can tell an output
/// it made for this source from any other object.
pub fn record_id(source: &str, output: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0]);
    h.update(output.as_bytes());
    h.finalize()[..16].try_into().expect("16 bytes")
}

/// The identity of a job: the first 8 bytes of SHA-256 of its manifest's
/// name (its URL for an `s3://` manifest, else its resolved path), in hex.
pub fn job_id(manifest: &str) -> String {
    hex::encode(&Sha256::digest(manifest.as_bytes())[..8])
}

/// One wrapped copy of the data key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeKey {
    /// Key provider (`aws-kms`, `local-keyring`).
    pub p: String,
    /// The provider's key id (a KMS key ARN, `local:<fingerprint>`).
    pub k: String,
    /// The service whose encryption context it is bound to (`mediaconvert`, `elastictranscoder`).
    pub s: String,
    /// The wrapped blob, base64.
    pub w: String,
}

/// What an output carries about itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Layout version: 1.
    pub v: u32,
    /// [`record_id`] of its record, 32 hex digits.
    pub id: String,
    /// [`job_id`] of the manifest its record went to, 16 hex digits: a
    /// re-run of that job tells its own unrecorded outputs by it, and never
    /// takes for its own an output another job's manifest records.
    pub j: String,
    /// Cipher mode.
    pub mode: Mode,
    /// Key size in bits.
    pub bits: KeyBits,
    /// The IV, base64.
    pub iv: String,
    /// Plaintext length in bytes.
    pub n: u64,
    /// Base64 MD5 of the plaintext data key (Elastic Transcoder's `KeyMd5`).
    pub m: String,
    /// The services the settings are for (`any`, `mediaconvert`, `elastictranscoder`).
    pub t: String,
    /// The data key was supplied by the user, not generated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sup: bool,
    /// The wrapped copies, primary service first.
    pub keys: Vec<EnvelopeKey>,
}

/// Everything an envelope is made from.
pub struct EnvelopeInput<'a> {
    /// The source and the output, as records name them.
    pub source: &'a str,
    /// [`job_id`] of the run's manifest.
    pub job: &'a str,
    /// The output location.
    pub output: &'a str,
    /// Mode, key size, IV, plaintext length, target.
    pub mode: Mode,
    /// Key size.
    pub bits: KeyBits,
    /// IV.
    pub iv: &'a Iv,
    /// Plaintext length.
    pub plain_len: u64,
    /// Base64 MD5 of the plaintext key.
    pub key_md5: String,
    /// Target.
    pub target: Target,
    /// Generated or supplied.
    pub key_source: KeySource,
    /// Provider name and key id.
    pub provider: &'a str,
    /// The key-encryption key id.
    pub key_id: &'a str,
    /// The wrapped copies.
    pub wrapped: &'a [WrappedFor],
}

impl Envelope {
    /// The envelope of one output.
    pub fn new(e: EnvelopeInput<'_>) -> Envelope {
        Envelope {
            v: 1,
            id: hex::encode(record_id(e.source, e.output)),
            j: e.job.to_string(),
            mode: e.mode,
            bits: e.bits,
            iv: b64(e.iv.as_bytes()),
            n: e.plain_len,
            m: e.key_md5,
            t: e.target.to_string(),
            sup: e.key_source == KeySource::Supplied,
            keys: e
                .wrapped
                .iter()
                .map(|w| EnvelopeKey { p: e.provider.to_string(), k: e.key_id.to_string(), s: w.service.short_name().to_string(), w: b64(&w.blob) })
                .collect(),
        }
    }

    /// The user metadata of an output: the envelope, and the source's name
    /// when both fit with `others` (the user's `--metadata`) in 2 KB. An
    /// envelope that does not fit with `others` is an error naming the sizes:
    /// an output is never written without it.
    pub fn metadata(&self, source: &str, others: &[(String, String)]) -> std::result::Result<Vec<(String, String)>, String> {
        let envelope = serde_json::to_string(self).expect("envelopes serialize");
        let others_len: usize = others.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut used = others_len + ENVELOPE_KEY.len() + envelope.len();
        if used > MAX_USER_METADATA {
            return Err(format!(
                "its envelope ({} bytes) and --metadata ({others_len} bytes) exceed S3's {MAX_USER_METADATA} bytes of user metadata; give less --metadata",
                ENVELOPE_KEY.len() + envelope.len()
            ));
        }
        let mut pairs = vec![(ENVELOPE_KEY.to_string(), envelope)];
        let source = percent_encode(source);
        used += SOURCE_KEY.len() + source.len();
        if used <= MAX_USER_METADATA {
            pairs.push((SOURCE_KEY.to_string(), source));
        }
        Ok(pairs)
    }

    /// Parse the value of `x-amz-meta-sealpipe-envelope`.
    pub fn parse(text: &str) -> std::result::Result<Envelope, String> {
        let e: Envelope = serde_json::from_str(text).map_err(|e| format!("not a sealpipe envelope: {e}"))?;
        if e.v != 1 {
            return Err(format!("envelope version {} (this sealpipe reads version 1)", e.v));
        }
        if e.keys.is_empty() {
            return Err("the envelope holds no wrapped key".into());
        }
        Ok(e)
    }

    /// Whether it names the record of `source` → `output`.
    pub fn is_for(&self, source: &str, output: &str) -> bool {
        self.id == hex::encode(record_id(source, output))
    }

    /// Whether it names the record of `source` → `output` in the job `job` ([`job_id`]).
    pub fn is_of_job(&self, job: &str, source: &str, output: &str) -> bool {
        self.j == job && self.is_for(source, output)
    }

    /// The record an output with this envelope stands for: everything but
    /// the plaintext digest, which is known only once the output is written
    /// (so the record says `{"alg": "none"}`, and `verify` checks that it
    /// decrypts, its tag or padding and its length, not its content).
    pub fn record(&self, source: &str, output: &str, cipher_len: u64, etag: Option<String>) -> Result<Record> {
        let what = |reason: String| Error::invalid(std::path::Path::new(output), format!("its envelope: {reason}"));
        let target = match self.t.as_str() {
            "any" => Target::Any,
            "mediaconvert" => Target::MediaConvert,
            "elastictranscoder" => Target::ElasticTranscoder,
            other => return Err(what(format!("unknown target {other:?}"))),
        };
        let mut wrapped = Vec::new();
        for k in &self.keys {
            let service = match k.s.as_str() {
                "mediaconvert" => Service::MediaConvert,
                "elastictranscoder" => Service::ElasticTranscoder,
                other => return Err(what(format!("unknown service {other:?}"))),
            };
            wrapped.push(WrappedFor { service, blob: unb64(&k.w, "envelope wrapped key")? });
        }
        let primary = &self.keys[0];
        let iv = Iv::from_slice(&unb64(&self.iv, "envelope iv")?)?;
        // A KMS key ARN names its region: arn:aws:kms:<region>:<account>:key/<id>.
        let kms_region = (primary.p == "aws-kms").then(|| primary.k.split(':').nth(3).map(str::to_string)).flatten();
        let none = Digest::new(DigestAlg::None, Vec::new());
        Ok(Record::new(RecordInput {
            source,
            output: output.to_string(),
            etag,
            checksum: None,
            server_side_encryption: None,
            file_input: output.to_string(),
            mode: self.mode,
            key_bits: self.bits,
            key_md5: self.m.clone(),
            key_source: if self.sup { KeySource::Supplied } else { KeySource::Generated },
            key_provider: &primary.p,
            key_id: primary.k.clone(),
            kms_region,
            target,
            wrapped: &wrapped,
            iv: &iv,
            plain_len: self.n,
            cipher_len,
            digest: &none,
        }))
    }
}

/// A name as an ASCII metadata value: bytes outside printable ASCII, and `%`, as `%XX`.
pub fn percent_encode(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The name [`percent_encode`] wrote; `None` if it is not one.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wrapped(n: usize) -> Vec<WrappedFor> {
        [Service::MediaConvert, Service::ElasticTranscoder].iter().map(|&service| WrappedFor { service, blob: vec![7u8; n] }).collect()
    }

    fn envelope(blob_len: usize, key_id: &str) -> Envelope {
        let iv = Iv::from_slice(&[9u8; 16]).unwrap();
        Envelope::new(EnvelopeInput {
            source: "s3://src/k/clip.mp4",
            job: &job_id("s3://dst/runs/m.jsonl"),
            output: "s3://dst/enc/k/clip.mp4",
            mode: Mode::Ctr,
            bits: KeyBits::B256,
            iv: &iv,
            plain_len: 1234,
            key_md5: b64(&[1u8; 16]),
            target: Target::Any,
            key_source: KeySource::Generated,
            provider: "aws-kms",
            key_id,
            wrapped: &wrapped(blob_len),
        })
    }

    const ARN: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn an_envelope_round_trips_into_the_record_it_stands_for() {
        let e = envelope(184, ARN);
        let text = &e.metadata("s3://src/k/clip.mp4", &[]).unwrap()[0].1;
        let back = Envelope::parse(text).unwrap();
        assert_eq!(back, e);
        assert!(back.is_for("s3://src/k/clip.mp4", "s3://dst/enc/k/clip.mp4"));
        assert!(!back.is_for("s3://src/k/other.mp4", "s3://dst/enc/k/clip.mp4"));
        assert!(back.is_of_job(&job_id("s3://dst/runs/m.jsonl"), "s3://src/k/clip.mp4", "s3://dst/enc/k/clip.mp4"));
        assert!(!back.is_of_job(&job_id("s3://dst/runs/other.jsonl"), "s3://src/k/clip.mp4", "s3://dst/enc/k/clip.mp4"), "another job's output is never ours");
        let r = back.record("s3://src/k/clip.mp4", "s3://dst/enc/k/clip.mp4", 1234, None).unwrap();
        assert_eq!((r.mode, r.key_bits, r.plaintext_size, r.key_id.as_str()), (Mode::Ctr, KeyBits::B256, 1234, ARN));
        assert_eq!(r.iv, b64(&[9u8; 16]));
        assert_eq!(r.encrypted_data_key, b64(&[7u8; 184]));
        assert_eq!(r.mediaconvert.as_ref().map(|m| m.decryption_settings.kms_key_region.clone()), Some(Some("eu-west-1".to_string())));
        assert!(r.elastictranscoder.is_some());
        assert_eq!(r.digest().unwrap().alg(), DigestAlg::None, "no digest is claimed");
    }

    /// The size docs/FORMAT.md states: both services' KMS blobs (184 bytes
    /// for a 256-bit key, as KMS returns them) and a full key ARN.
    #[test]
    fn the_envelope_with_both_services_kms_keys_fits_in_2_kb() {
        let e = envelope(184, ARN);
        let pairs = e.metadata("s3://src/k/clip.mp4", &[]).unwrap();
        let envelope_bytes = pairs[0].0.len() + pairs[0].1.len();
        assert!((700..=1000).contains(&envelope_bytes), "{envelope_bytes} bytes: update docs/FORMAT.md");
        assert_eq!(pairs.len(), 2, "the source fits beside it");
        // A source name too long to fit is left out; the envelope never is.
        let long = format!("s3://src/{}", "k".repeat(1200));
        assert_eq!(e.metadata(&long, &[]).unwrap().len(), 1);
        let err = e.metadata("s", &[("note".into(), "x".repeat(1500))]).unwrap_err();
        assert!(err.contains("exceed S3's 2048 bytes"), "{err}");
    }

    #[test]
    fn names_are_percent_encoded_byte_for_byte() {
        for name in ["s3://b/k//lead /ü.ts", "a%b", "tab\there"] {
            let enc = percent_encode(name);
            assert!(enc.bytes().all(|b| (0x20..0x7f).contains(&b)), "{enc}");
            assert_eq!(percent_decode(&enc).as_deref(), Some(name));
        }
    }
}
