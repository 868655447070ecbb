//! The plaintext digest a manifest record carries, and which algorithm made
//! it (`--digest`). Computing digests is the pipeline's business
//! (`pipeline::hasher`); this is what they are and how records spell them.
//!
//! A SHA-256 record spells its digest as it always has, `plaintext_sha256`
//! (hex), so manifests of every sealpipe version read alike. Any other
//! algorithm goes in `"digest": {"alg": "blake3", "value": "<hex>"}`, and a
//! record made without a digest says so: `"digest": {"alg": "none"}`.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// A plaintext digest algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DigestAlg {
    /// SHA-256 (hex, what `sha256sum` prints). Sequential: one core per file.
    Sha256,
    /// BLAKE3, 32 bytes (hex, what `b3sum` prints). A tree hash: parallel within a file.
    Blake3,
    /// CRC-64/NVME, the 8 bytes big-endian (hex; base64 of the same bytes is
    /// what S3 reports as `ChecksumCRC64NVME`). Parallel within a file. Not
    /// cryptographic: it catches corruption, not tampering.
    Crc64Nvme,
    /// No digest: verification can only check that the file decrypts (GCM
    /// tag, CBC padding) and has the recorded length.
    None,
}

impl DigestAlg {
    /// Every algorithm, for tests and help.
    pub const ALL: [DigestAlg; 4] = [DigestAlg::Sha256, DigestAlg::Blake3, DigestAlg::Crc64Nvme, DigestAlg::None];

    /// The name records and the command line use.
    pub fn name(self) -> &'static str {
        match self {
            DigestAlg::Sha256 => "sha256",
            DigestAlg::Blake3 => "blake3",
            DigestAlg::Crc64Nvme => "crc64nvme",
            DigestAlg::None => "none",
        }
    }

    /// The name people know it by, for messages.
    pub fn label(self) -> &'static str {
        match self {
            DigestAlg::Sha256 => "SHA-256",
            DigestAlg::Blake3 => "BLAKE3",
            DigestAlg::Crc64Nvme => "CRC-64/NVME",
            DigestAlg::None => "no digest",
        }
    }

    /// Bytes of a value (0 for `none`).
    pub fn size(self) -> usize {
        match self {
            DigestAlg::Sha256 | DigestAlg::Blake3 => 32,
            DigestAlg::Crc64Nvme => 8,
            DigestAlg::None => 0,
        }
    }
}

impl fmt::Display for DigestAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DigestAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        DigestAlg::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown digest {s:?} (expected sha256, blake3, crc64nvme or none)"))
    }
}

/// A plaintext digest: its algorithm and value (empty for `none`).
#[derive(Clone, PartialEq, Eq)]
pub struct Digest {
    alg: DigestAlg,
    value: Vec<u8>,
}

impl Digest {
    /// A digest of `alg` with these bytes (their length must be the algorithm's).
    pub fn new(alg: DigestAlg, value: Vec<u8>) -> Digest {
        assert_eq!(value.len(), alg.size(), "a {alg} digest is {} bytes", alg.size());
        Digest { alg, value }
    }

    /// Parse a hex value of `alg`, as records write it.
    pub fn from_hex(alg: DigestAlg, text: &str) -> Result<Digest, String> {
        let value = hex::decode(text.trim()).map_err(|e| format!("{alg} digest {text:?} is not hex: {e}"))?;
        if value.len() != alg.size() {
            return Err(format!("{alg} digest {text:?} is {} bytes, expected {}", value.len(), alg.size()));
        }
        Ok(Digest { alg, value })
    }

    /// The algorithm.
    pub fn alg(&self) -> DigestAlg {
        self.alg
    }

    /// The value's bytes (big-endian for CRC-64/NVME; empty for `none`).
    pub fn bytes(&self) -> &[u8] {
        &self.value
    }

    /// The value in lowercase hex (empty for `none`).
    pub fn hex(&self) -> String {
        hex::encode(&self.value)
    }

    /// For CRC-64/NVME, the value as S3 reports `ChecksumCRC64NVME` of an
    /// object holding the plaintext (base64 of the 8 big-endian bytes).
    pub fn s3_checksum(&self) -> Option<String> {
        (self.alg == DigestAlg::Crc64Nvme).then(|| base64::engine::general_purpose::STANDARD.encode(&self.value))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.alg, self.hex())
    }
}

/// A record's `digest` member: `{"alg": "blake3", "value": "<hex>"}`, or
/// `{"alg": "none"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordDigest {
    /// The algorithm.
    pub alg: DigestAlg,
    /// The value in hex; absent for `none`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub value: Option<String>,
}

impl RecordDigest {
    /// How a record writes `digest` besides `plaintext_sha256`: SHA-256 goes
    /// in `plaintext_sha256` alone (as every earlier manifest has it), the
    /// others here.
    pub fn split(digest: &Digest) -> (Option<String>, Option<RecordDigest>) {
        match digest.alg {
            DigestAlg::Sha256 => (Some(digest.hex()), None),
            DigestAlg::None => (None, Some(RecordDigest { alg: DigestAlg::None, value: None })),
            alg => (None, Some(RecordDigest { alg, value: Some(digest.hex()) })),
        }
    }

    /// The digest a record's `plaintext_sha256` and `digest` members say,
    /// or why they say none (the reason a reader reports for the line).
    pub fn join(plaintext_sha256: Option<&str>, digest: Option<&RecordDigest>) -> Result<Digest, String> {
        let own = match digest {
            None => None,
            Some(RecordDigest { alg: DigestAlg::None, value: None }) => Some(Digest { alg: DigestAlg::None, value: Vec::new() }),
            Some(RecordDigest { alg: DigestAlg::None, value: Some(_) }) => return Err("digest \"none\" has a value".into()),
            Some(RecordDigest { alg, value: None }) => return Err(format!("digest {alg} has no value")),
            Some(RecordDigest { alg, value: Some(v) }) => Some(Digest::from_hex(*alg, v)?),
        };
        match (plaintext_sha256, own) {
            (Some(sha), None) => Digest::from_hex(DigestAlg::Sha256, sha).map_err(|e| format!("plaintext_sha256: {e}")),
            (None, Some(d)) => Ok(d),
            (Some(sha), Some(d)) if d.alg == DigestAlg::Sha256 && d.hex().eq_ignore_ascii_case(sha.trim()) => Ok(d),
            (Some(_), Some(d)) => Err(format!("plaintext_sha256 and a different {} digest", d.alg)),
            (None, None) => Err("no plaintext_sha256 and no digest".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_spell_each_algorithm_and_read_it_back() {
        for alg in DigestAlg::ALL {
            assert_eq!(alg.name().parse::<DigestAlg>(), Ok(alg));
            let d = Digest::new(alg, (0..alg.size() as u8).collect());
            let (sha, member) = RecordDigest::split(&d);
            assert_eq!(sha.is_some(), alg == DigestAlg::Sha256, "{alg}");
            assert_eq!(RecordDigest::join(sha.as_deref(), member.as_ref()), Ok(d.clone()), "{alg}");
        }
        assert!("md5".parse::<DigestAlg>().is_err());
        let member = |alg, value: Option<&str>| RecordDigest { alg, value: value.map(String::from) };
        let cases = [
            (None, None, "no plaintext_sha256"),
            (None, Some(member(DigestAlg::Blake3, None)), "no value"),
            (None, Some(member(DigestAlg::Crc64Nvme, Some("00"))), "1 bytes, expected 8"),
            (None, Some(member(DigestAlg::None, Some("00"))), "has a value"),
            (Some("zz"), None, "not hex"),
            (Some(&"00".repeat(32)[..]), Some(member(DigestAlg::Blake3, Some(&"00".repeat(32)))), "different blake3"),
        ];
        for (sha, d, want) in cases {
            let err = RecordDigest::join(sha, d.as_ref()).unwrap_err();
            assert!(err.contains(want), "{err} / {want}");
        }
        let crc = Digest::new(DigestAlg::Crc64Nvme, 0xAE8B14860A799888u64.to_be_bytes().to_vec());
        assert_eq!(crc.hex(), "ae8b14860a799888");
        assert_eq!(crc.s3_checksum().as_deref(), Some("rosUhgp5mIg="));
    }
}
