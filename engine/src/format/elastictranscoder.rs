//! Elastic Transcoder's side of the contract (the legacy service): the
//! `Encryption` object of a job's `Input`, with the API's field names.
//! Elastic Transcoder takes only 16-byte IVs.

use serde::{Deserialize, Serialize};

use super::Mode;

/// Elastic Transcoder's job `Input` encryption settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ElasticTranscoderInput {
    /// The `Encryption` object.
    pub encryption: ElasticTranscoderEncryption,
}

/// Elastic Transcoder `Encryption`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ElasticTranscoderEncryption {
    /// `aes-ctr`, `aes-cbc-pkcs7` or `aes-gcm`.
    pub mode: String,
    /// Base64 KMS ciphertext blob of the data key.
    pub key: String,
    /// Base64 MD5 of the plaintext data key.
    pub key_md5: String,
    /// Base64 of exactly 16 IV bytes.
    pub initialization_vector: String,
}

impl ElasticTranscoderInput {
    /// The settings for a file encrypted in `mode` under the data key wrapped
    /// as `wrapped_b64` (Elastic Transcoder context), whose MD5 is `key_md5_b64`, with `iv_b64`.
    pub fn new(mode: Mode, wrapped_b64: String, key_md5_b64: String, iv_b64: String) -> Self {
        ElasticTranscoderInput {
            encryption: ElasticTranscoderEncryption {
                mode: mode.elastictranscoder_name().into(),
                key: wrapped_b64,
                key_md5: key_md5_b64,
                initialization_vector: iv_b64,
            },
        }
    }
}
