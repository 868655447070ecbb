//! The format contract (`docs/FORMAT.md`), as types: modes, key sizes, target
//! services, IVs and encryption contexts here; the manifest [`record`] and
//! one module per service's settings block ([`mediaconvert`],
//! [`elastictranscoder`]), so a change on a service's side touches one file;
//! whole MediaConvert `CreateJob` requests ([`jobs`]) and the IAM policies the
//! services' roles need ([`policy`]); the Kubernetes and AWS Batch job
//! definitions of a sharded run ([`deploy`]).
//! This module depends on nothing else of the engine but its errors.

pub mod deploy;
pub mod digest;
pub mod elastictranscoder;
pub mod envelope;
pub mod jobs;
pub mod mediaconvert;
pub mod policy;
pub mod record;
pub mod url;

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;

use crate::error::{Error, Result};

/// AES block size in bytes; every mode here works on 16-byte blocks.
pub const BLOCK: usize = 16;

/// Length of the GCM authentication tag appended to the ciphertext.
pub const GCM_TAG_LEN: usize = 16;

/// Largest plaintext AES-GCM may encrypt under one (key, IV): 2^36 − 32 bytes
/// (NIST SP 800-38D: at most 2^32 − 2 blocks).
pub const GCM_MAX_PLAINTEXT: u64 = (1 << 36) - 32;

/// Cipher mode of the bytes on disk / in S3. No header, no framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// AES-CTR, 128-bit big-endian counter; output length = input length.
    Ctr,
    /// AES-CBC with PKCS#7 padding (1 to 16 bytes, always added).
    Cbc,
    /// AES-GCM, no AAD; output = ciphertext ‖ 16-byte tag.
    Gcm,
}

impl Mode {
    /// All modes, for tests and benchmarks.
    pub const ALL: [Mode; 3] = [Mode::Ctr, Mode::Cbc, Mode::Gcm];

    /// MediaConvert's `DecryptionMode` value.
    pub fn mediaconvert_name(self) -> &'static str {
        match self {
            Mode::Ctr => "AES_CTR",
            Mode::Cbc => "AES_CBC",
            Mode::Gcm => "AES_GCM",
        }
    }

    /// Elastic Transcoder's `Encryption.Mode` value.
    pub fn elastictranscoder_name(self) -> &'static str {
        match self {
            Mode::Ctr => "aes-ctr",
            Mode::Cbc => "aes-cbc-pkcs7",
            Mode::Gcm => "aes-gcm",
        }
    }

    /// Ciphertext length for a plaintext of `plain` bytes.
    pub fn sealed_len(self, plain: u64) -> u64 {
        match self {
            Mode::Ctr => plain,
            Mode::Cbc => (plain / BLOCK as u64 + 1) * BLOCK as u64,
            Mode::Gcm => plain + GCM_TAG_LEN as u64,
        }
    }

    /// Check that a plaintext of `len` bytes may be encrypted in this mode.
    pub fn check_plaintext_len(self, len: u64) -> std::result::Result<(), String> {
        if self == Mode::Gcm && len > GCM_MAX_PLAINTEXT {
            return Err(format!(
                "{len} bytes is over the AES-GCM limit of 2^36 - 32 bytes (64 GiB - 32 B) per file; use --mode ctr or cbc"
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Ctr => "ctr",
            Mode::Cbc => "cbc",
            Mode::Gcm => "gcm",
        })
    }
}

/// AES key size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "u16", try_from = "u16")]
pub enum KeyBits {
    /// AES-128.
    B128,
    /// AES-192.
    B192,
    /// AES-256 (the default).
    B256,
}

impl KeyBits {
    /// Key length in bytes.
    pub fn bytes(self) -> usize {
        match self {
            KeyBits::B128 => 16,
            KeyBits::B192 => 24,
            KeyBits::B256 => 32,
        }
    }

    /// The key size of a raw key of `len` bytes, if it is an AES key size.
    pub fn from_len(len: usize) -> Option<Self> {
        match len {
            16 => Some(KeyBits::B128),
            24 => Some(KeyBits::B192),
            32 => Some(KeyBits::B256),
            _ => None,
        }
    }
}

impl From<KeyBits> for u16 {
    fn from(k: KeyBits) -> u16 {
        k.bytes() as u16 * 8
    }
}

impl TryFrom<u16> for KeyBits {
    type Error = String;
    fn try_from(bits: u16) -> std::result::Result<Self, String> {
        KeyBits::from_len(bits as usize / 8)
            .filter(|_| bits % 8 == 0)
            .ok_or_else(|| format!("key size must be 128, 192 or 256 bits, not {bits}"))
    }
}

/// An AWS media service that will decrypt the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// AWS Elemental MediaConvert.
    MediaConvert,
    /// Amazon Elastic Transcoder (legacy; 16-byte IVs only).
    ElasticTranscoder,
}

impl Service {
    /// The service's name in sealpipe's JSON (`mediaconvert`, `elastictranscoder`), as `--target` spells it.
    pub fn short_name(self) -> &'static str {
        match self {
            Service::MediaConvert => "mediaconvert",
            Service::ElasticTranscoder => "elastictranscoder",
        }
    }

    /// The KMS encryption context the service passes to `Decrypt`.
    pub fn encryption_context(self) -> EncryptionContext {
        let value = match self {
            Service::MediaConvert => "mediaconvert.amazonaws.com",
            Service::ElasticTranscoder => "elastictranscoder.amazonaws.com",
        };
        EncryptionContext(BTreeMap::from([("service".to_string(), value.to_string())]))
    }
}

/// Which services the output is prepared for (`--target`).
///
/// The data key is wrapped once per service, each time under that service's
/// encryption context, so every settings block in the manifest is usable as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Target {
    /// Both services where the format allows (16-byte IVs; the default).
    #[default]
    Any,
    /// MediaConvert only: 12-byte IVs for GCM (the standard GCM form), 16 for CTR and CBC.
    MediaConvert,
    /// Elastic Transcoder only.
    ElasticTranscoder,
}

impl Target {
    /// The services whose settings are written, primary first.
    pub fn services(self) -> &'static [Service] {
        match self {
            Target::Any => &[Service::MediaConvert, Service::ElasticTranscoder],
            Target::MediaConvert => &[Service::MediaConvert],
            Target::ElasticTranscoder => &[Service::ElasticTranscoder],
        }
    }

    /// IV length used when sealpipe generates the IV. CTR IVs are 16 bytes
    /// for every target: the IV is then the whole first counter block, where
    /// a 12-byte one leaves MediaConvert's counter start undocumented (FORMAT.md).
    pub fn default_iv_len(self, mode: Mode) -> usize {
        match (self, mode) {
            (Target::MediaConvert, Mode::Gcm) => 12,
            _ => 16,
        }
    }

    /// Why an explicitly requested IV of `len` bytes is risky, if it is:
    /// a 12-byte CTR IV, whose counter start MediaConvert does not document.
    pub fn iv_warning(mode: Mode, len: usize) -> Option<&'static str> {
        (mode == Mode::Ctr && len == 12).then_some(
            "a 12-byte CTR IV is read here as IV ‖ 00000000 (as OpenSSL pads a short -iv); MediaConvert does not document \
             where its counter starts for one, so a wrong guess makes the file unreadable: prefer a 16-byte IV",
        )
    }

    /// Check a user-supplied IV length against the mode and the target.
    pub fn check_iv_len(self, mode: Mode, len: usize) -> Result<()> {
        let ok = match mode {
            Mode::Cbc => len == 16,
            Mode::Ctr | Mode::Gcm => len == 16 || (len == 12 && self != Target::ElasticTranscoder),
        };
        if ok {
            return Ok(());
        }
        let allowed = match (mode, self) {
            (Mode::Cbc, _) | (_, Target::ElasticTranscoder) => "16 bytes",
            _ => "12 or 16 bytes",
        };
        Err(Error::Usage(format!(
            "IV of {len} bytes is not valid for {mode} with target {self}: it must be {allowed}"
        )))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Any => "any",
            Target::MediaConvert => "mediaconvert",
            Target::ElasticTranscoder => "elastictranscoder",
        })
    }
}

/// A KMS encryption context: string pairs, serialized with sorted keys.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct EncryptionContext(pub BTreeMap<String, String>);

impl EncryptionContext {
    /// Canonical bytes (sorted-key JSON), used as AAD when wrapping locally.
    pub fn canonical(&self) -> Vec<u8> {
        serde_json::to_vec(&self.0).expect("a map of strings serializes")
    }
}

/// An initialisation vector (12 or 16 bytes).
///
/// Deliberately not `Clone`: an IV made for encryption is used once, by the
/// one sealer that consumes it. Fresh IVs come only from the OS CSPRNG.
pub struct Iv {
    bytes: [u8; 16],
    len: usize,
}

impl Iv {
    /// A fresh IV of `len` bytes (12 or 16) from the OS CSPRNG.
    pub fn random(len: usize) -> Result<Self> {
        assert!(len == 12 || len == 16, "IV length must be 12 or 16");
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes[..len])
            .map_err(|e| Error::random(crate::error::Stage::Key, e))?;
        Ok(Iv { bytes, len })
    }

    /// An IV given by the user or read from a manifest (12 or 16 bytes).
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        if bytes.len() != 12 && bytes.len() != 16 {
            return Err(Error::Usage(format!(
                "IV must be 12 or 16 bytes, got {} bytes",
                bytes.len()
            )));
        }
        let mut iv = Iv { bytes: [0; 16], len: bytes.len() };
        iv.bytes[..bytes.len()].copy_from_slice(bytes);
        Ok(iv)
    }

    /// The IV bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The first CTR counter block: the IV itself, or for a 12-byte IV,
    /// IV ‖ 00 00 00 00 (what OpenSSL does with a short `-iv`).
    pub(crate) fn ctr_block(&self) -> [u8; 16] {
        self.bytes
    }
}

impl fmt::Debug for Iv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Iv({})", hex::encode(self.as_bytes()))
    }
}

/// Base64 (standard alphabet, padded), as the AWS APIs use.
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decode standard base64, naming `what` in the error.
pub fn unb64(text: &str, what: &str) -> Result<Vec<u8>> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| Error::Usage(format!("malformed base64 in {what}: {e}")))
}
