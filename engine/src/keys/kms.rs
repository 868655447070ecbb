//! AWS KMS as the key provider (envelope encryption, FORMAT.md "Keys").
//!
//! * generated keys: `GenerateDataKey` (KeySpec `AES_256` / `AES_128`, or
//!   `NumberOfBytes` 24 for AES-192) under the service's encryption context;
//! * supplied keys: `Encrypt` of the user's key with the same context;
//! * unwrapping: `Decrypt` with the context recorded in the manifest, pinned
//!   to the key ARN so a blob from another key is refused.
//!
//! The plaintext key KMS returns is copied into a [`DataKey`] and the SDK's
//! buffer zeroized at once. Throttling and 5xx answers are retried by the
//! SDK by the one classifier (`crate::retry`), and a call still failing is
//! reported retryable ([`Error::Remote`], stage `key`); access denied,
//! missing or disabled keys and context mismatches are permanent, one line each.

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{DataKeySpec, KeyState};
use std::sync::OnceLock;

use zeroize::Zeroize;

use crate::aws::{describe, retry, Aws, Classifier};
use crate::error::{Error, Result, Stage};
use crate::format::{EncryptionContext, KeyBits};
use crate::keys::{DataKey, KeyProvider};

/// Provider name recorded in manifests.
pub const NAME: &str = super::KMS_NAME;

/// A customer managed KMS key. It is resolved to its ARN (and checked) by
/// `DescribeKey` on the first request that needs it, not when the provider
/// is made: a run refused before any file's key is asked for (an output
/// that exists, a bad flag) makes no KMS request at all.
pub struct KmsProvider {
    client: aws_sdk_kms::Client,
    handle: tokio::runtime::Handle,
    /// The key as the user named it (`--kms-key`, or a record's key id).
    key: String,
    /// The region used when the key's ARN names none.
    default_region: Option<String>,
    /// `DescribeKey`'s answer, asked once: the first caller asks, the others
    /// wait for it; a refusal is kept and repeated, never asked again.
    resolved: OnceLock<std::result::Result<Resolved, String>>,
}

/// What `DescribeKey` says about the key.
struct Resolved {
    arn: String,
    region: String,
}

impl KmsProvider {
    /// A provider for `key` (key id, key ARN, alias name `alias/...` or alias
    /// ARN). Nothing is asked of KMS here; see [`KmsProvider::resolve`].
    pub fn new(aws: &Aws, key: &str) -> Self {
        // A key (or alias) ARN names its region: its calls go there, whatever `--region` says.
        let client = match arn_region(key).filter(|r| aws.region().ok().as_deref() != Some(*r)) {
            Some(region) => aws_sdk_kms::Client::from_conf(
                aws_sdk_kms::config::Builder::from(&aws.config)
                    .region(aws_sdk_kms::config::Region::new(region.to_string()))
                    .retry_classifier(Classifier)
                    .build(),
            ),
            None => aws_sdk_kms::Client::from_conf(aws_sdk_kms::config::Builder::from(&aws.config).retry_classifier(Classifier).build()),
        };
        KmsProvider {
            client,
            handle: aws.handle.clone(),
            key: key.to_string(),
            default_region: aws.region().ok(),
            resolved: OnceLock::new(),
        }
    }

    /// The key ARN, resolved (once per provider) with `DescribeKey`, which
    /// refuses a missing, disabled or non-symmetric key.
    pub fn arn(&self) -> Result<&str> {
        self.resolve().map(|r| r.arn.as_str())
    }

    fn resolve(&self) -> Result<&Resolved> {
        self.resolved
            .get_or_init(|| self.describe().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::KeyProvider(e.clone()))
    }

    fn describe(&self) -> Result<Resolved> {
        let key = &self.key;
        let described = self
            .handle
            .block_on(self.client.describe_key().key_id(key).send())
            .map_err(|e| kms_error(&e, &format!("KMS key {key}"), "DescribeKey"))?;
        let meta = described
            .key_metadata()
            .ok_or_else(|| Error::Key(format!("KMS key {key}: DescribeKey returned no key metadata")))?;
        let arn = meta.arn().map(str::to_string).unwrap_or_else(|| meta.key_id().to_string());
        if let Some(state) = meta.key_state() {
            if *state != KeyState::Enabled {
                return Err(Error::Key(format!(
                    "KMS key {key} ({arn}) is {}, not Enabled: enable it or choose another --kms-key",
                    state.as_str()
                )));
            }
        } else if !meta.enabled() {
            return Err(Error::Key(format!("KMS key {key} ({arn}) is disabled")));
        }
        if let Some(spec) = meta.key_spec() {
            if spec.as_str() != "SYMMETRIC_DEFAULT" {
                return Err(Error::Key(format!(
                    "KMS key {key} ({arn}) has key spec {}; data keys need a symmetric encryption key (SYMMETRIC_DEFAULT)",
                    spec.as_str()
                )));
            }
        }
        // arn:aws:kms:<region>:<account>:key/<id>
        let region = arn
            .split(':')
            .nth(3)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .or_else(|| self.default_region.clone())
            .ok_or_else(|| Error::Usage("no AWS region configured: pass --region, or set AWS_REGION or a region in the profile".into()))?;
        Ok(Resolved { arn, region })
    }
}

/// The region a KMS key or alias ARN names (`arn:aws:kms:<region>:<account>:key/<id>`).
fn arn_region(key: &str) -> Option<&str> {
    let parts: Vec<&str> = key.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", _, "kms", region, _, _] if !region.is_empty() => Some(region),
        _ => None,
    }
}

/// One line for a failed KMS call about `what`.
fn kms_error<E, R>(err: &SdkError<E, R>, what: &str, op: &str) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + crate::aws::HasStatus + 'static,
{
    let code = crate::aws::code(err).unwrap_or("");
    let hint = match code {
        "NotFoundException" => "the key does not exist in this account and region",
        "AccessDeniedException" => "access denied: the caller lacks permission on this key",
        "DisabledException" => "the key is disabled",
        "KMSInvalidStateException" => "the key is not in a usable state (pending deletion or import?)",
        "InvalidCiphertextException" => {
            "the encrypted data key does not decrypt: encryption context mismatch, another key, or a corrupted blob"
        }
        "IncorrectKeyException" => "the encrypted data key was made under a different KMS key",
        "InvalidKeyUsageException" => "the key cannot be used for encryption",
        "UnrecognizedClientException" | "InvalidClientTokenId" | "InvalidSignatureException" => {
            "the AWS credentials were rejected"
        }
        _ => "",
    };
    let detail = describe(err);
    // A key that refuses to make or wrap keys refuses every file the same
    // way: the run stops at the first (exit 2) rather than failing each one.
    let unusable = matches!(op, "GenerateDataKey" | "Encrypt")
        && matches!(
            code,
            "NotFoundException"
                | "AccessDeniedException"
                | "DisabledException"
                | "KMSInvalidStateException"
                | "InvalidKeyUsageException"
                | "UnrecognizedClientException"
                | "InvalidClientTokenId"
                | "InvalidSignatureException"
        );
    if unusable {
        return Error::KeyProvider(format!("{what}: KMS {op} refused: {hint} ({detail})"));
    }
    let message = if hint.is_empty() { format!("{what}: KMS {op} failed: {detail}") } else { format!("{what}: KMS {op} failed: {hint} ({detail})") };
    // About no one file (the caller names it): retryable as the SDK's classifier judged it.
    Error::Remote { path: None, message, stage: Stage::Key, retry: retry(err) }
}

fn context_pairs(context: &EncryptionContext) -> impl Iterator<Item = (String, String)> + '_ {
    context.0.iter().map(|(k, v)| (k.clone(), v.clone()))
}

impl KeyProvider for KmsProvider {
    fn name(&self) -> &'static str {
        NAME
    }

    fn key_id(&self) -> Result<String> {
        self.arn().map(str::to_string)
    }

    /// Resolved already, or named by its key ARN: no `DescribeKey` for it.
    fn known_key_id(&self) -> Option<String> {
        match self.resolved.get() {
            Some(Ok(r)) => Some(r.arn.clone()),
            _ if self.key.starts_with("arn:") && self.key.contains(":key/") => Some(self.key.clone()),
            _ => None,
        }
    }

    fn kms_region(&self) -> Result<Option<String>> {
        self.resolve().map(|r| Some(r.region.clone()))
    }

    fn generate(&self, bits: KeyBits, context: &EncryptionContext) -> Result<(DataKey, Vec<u8>)> {
        let arn = self.arn()?;
        let mut req = self.client.generate_data_key().key_id(arn);
        for (k, v) in context_pairs(context) {
            req = req.encryption_context(k, v);
        }
        req = match bits {
            KeyBits::B256 => req.key_spec(DataKeySpec::Aes256),
            KeyBits::B128 => req.key_spec(DataKeySpec::Aes128),
            other => req.number_of_bytes(other.bytes() as i32),
        };
        let out = self
            .handle
            .block_on(req.send())
            .map_err(|e| kms_error(&e, &format!("KMS key {arn}"), "GenerateDataKey"))?;
        let mut plain = out.plaintext.map(Blob::into_inner).unwrap_or_default();
        let key = DataKey::from_slice(&plain);
        plain.zeroize();
        let key = key?;
        if key.bits() != bits {
            return Err(Error::Key(format!("KMS key {arn}: GenerateDataKey returned a key of the wrong size")));
        }
        let wrapped = out
            .ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| Error::Key(format!("KMS key {arn}: GenerateDataKey returned no CiphertextBlob")))?;
        Ok((key, wrapped))
    }

    fn wrap(&self, key: &DataKey, context: &EncryptionContext) -> Result<Vec<u8>> {
        let arn = self.arn()?;
        let mut req = self.client.encrypt().key_id(arn).plaintext(Blob::new(key.expose_secret().to_vec()));
        for (k, v) in context_pairs(context) {
            req = req.encryption_context(k, v);
        }
        let out = self
            .handle
            .block_on(req.send())
            .map_err(|e| kms_error(&e, &format!("KMS key {arn}"), "Encrypt"))?;
        out.ciphertext_blob
            .map(Blob::into_inner)
            .ok_or_else(|| Error::Key(format!("KMS key {arn}: Encrypt returned no CiphertextBlob")))
    }

    fn unwrap(&self, wrapped: &[u8], context: &EncryptionContext) -> Result<DataKey> {
        let arn = self.arn()?;
        let mut req = self.client.decrypt().key_id(arn).ciphertext_blob(Blob::new(wrapped.to_vec()));
        for (k, v) in context_pairs(context) {
            req = req.encryption_context(k, v);
        }
        let out = self
            .handle
            .block_on(req.send())
            .map_err(|e| kms_error(&e, &format!("KMS key {arn}"), "Decrypt"))?;
        let mut plain = out.plaintext.map(Blob::into_inner).unwrap_or_default();
        let key = DataKey::from_slice(&plain);
        plain.zeroize();
        key.map_err(|_| Error::Key(format!("KMS key {arn}: Decrypt returned a key that is not 16, 24 or 32 bytes")))
    }
}
