//! MediaConvert's side of the contract: the `Settings.Inputs[]` entry that
//! decrypts one file (`FileInput` + `DecryptionSettings`), with the API's
//! field names, so a record's block pastes into a job as it is.

use serde::{Deserialize, Serialize};

use super::Mode;

/// An entry of MediaConvert's `Settings.Inputs[]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MediaConvertInput {
    /// `s3://bucket/key` (or the local path when no URL prefix was given).
    pub file_input: String,
    /// How MediaConvert decrypts the input.
    pub decryption_settings: MediaConvertDecryption,
}

/// MediaConvert `DecryptionSettings`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MediaConvertDecryption {
    /// `AES_CTR`, `AES_CBC` or `AES_GCM`.
    pub decryption_mode: String,
    /// Base64 KMS ciphertext blob of the data key.
    pub encrypted_decryption_key: String,
    /// Base64 of the 12 or 16 IV bytes.
    pub initialization_vector: String,
    /// Region of the KMS key; absent where it does not apply (the local
    /// keyring): the service model wants 9 to 19 characters.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kms_key_region: Option<String>,
}


impl MediaConvertInput {
    /// The entry for `file_input`, encrypted in `mode` under the data key
    /// wrapped as `wrapped_b64` (KMS `CiphertextBlob`, MediaConvert context) with `iv_b64`.
    pub fn new(file_input: String, mode: Mode, wrapped_b64: String, iv_b64: String, kms_key_region: Option<String>) -> Self {
        MediaConvertInput {
            file_input,
            decryption_settings: MediaConvertDecryption {
                decryption_mode: mode.mediaconvert_name().into(),
                encrypted_decryption_key: wrapped_b64,
                initialization_vector: iv_b64,
                kms_key_region,
            },
        }
    }
}
