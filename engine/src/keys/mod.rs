//! Data keys and the providers that wrap them (envelope encryption).
//!
//! A [`DataKey`] encrypts content; a [`KeyProvider`] encrypts ("wraps") the
//! data key under a key-encryption key bound to an [`EncryptionContext`].
//! This module ships the local keyring (the offline default); AWS KMS
//! ([`kms`], feature `aws`) plugs into the same trait.
//!
//! Never: print, log, serialize or persist a plaintext data key. `DataKey`
//! has no `Debug`, `Display` or `Serialize`, and zeroizes itself on drop.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;

use md5::Digest as _;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

#[cfg(feature = "aws")]
pub mod kms;

use crate::error::{Error, Result};
use crate::format::record::Record;
use crate::format::{b64, unb64, EncryptionContext, KeyBits};

/// A plaintext AES data key. Zeroized on drop; never printable.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct DataKey {
    bytes: [u8; 32],
    len: usize,
}

impl DataKey {
    /// A fresh key from the OS CSPRNG.
    pub fn random(bits: KeyBits) -> Result<Self> {
        let mut key = DataKey { bytes: [0; 32], len: bits.bytes() };
        getrandom::fill(&mut key.bytes[..key.len])
            .map_err(|e| Error::random(crate::error::Stage::Key, e))?;
        Ok(key)
    }

    /// A key from raw bytes (16, 24 or 32 of them).
    pub fn from_slice(raw: &[u8]) -> Result<Self> {
        if KeyBits::from_len(raw.len()).is_none() {
            return Err(Error::Key(format!(
                "a data key must be 16, 24 or 32 bytes (AES-128/192/256), got {} bytes",
                raw.len()
            )));
        }
        let mut key = DataKey { bytes: [0; 32], len: raw.len() };
        key.bytes[..raw.len()].copy_from_slice(raw);
        Ok(key)
    }

    /// Read a raw key file (`--data-key-file`), refusing any other size.
    pub fn from_file(path: &Path) -> Result<Self> {
        let raw = Zeroizing::new(fs::read(path).map_err(|e| Error::io(path, "read key file", e))?);
        DataKey::from_slice(&raw).map_err(|_| {
            Error::invalid(
                path,
                format!(
                    "data key file must hold exactly 16, 24 or 32 raw bytes, it holds {}",
                    raw.len()
                ),
            )
        })
    }

    /// The AES key size.
    pub fn bits(&self) -> KeyBits {
        KeyBits::from_len(self.len).expect("length checked at construction")
    }

    /// The key bytes. Only for handing to a cipher or to a wrapping call.
    pub fn expose_secret(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// Base64 of the MD5 of the key: Elastic Transcoder's `KeyMd5`.
    pub fn md5_base64(&self) -> String {
        b64(&md5::Md5::digest(self.expose_secret()))
    }
}

/// Wraps and unwraps data keys under a key-encryption key.
///
/// Implementations: [`LocalKeyring`] here; AWS KMS in [`kms`] (feature `aws`).
pub trait KeyProvider: Send + Sync {
    /// Provider name recorded in manifests ("local-keyring", "aws-kms").
    fn name(&self) -> &'static str;
    /// Identifier of the key-encryption key (keyring fingerprint, KMS ARN).
    /// A provider that resolves its key lazily (KMS) resolves it here, so
    /// this may fail as a key request does.
    fn key_id(&self) -> Result<String>;
    /// Where the key-encryption key is kept, when it is a file (the local keyring's path).
    fn file(&self) -> Option<&Path> {
        None
    }
    /// [`KeyProvider::key_id`] where it is known without a request (a KMS
    /// key named by its ARN, or already resolved); `None` otherwise. A run
    /// with nothing to do compares records with it and asks KMS nothing.
    fn known_key_id(&self) -> Option<String> {
        self.key_id().ok()
    }
    /// The region of a KMS key, written as MediaConvert's `KmsKeyRegion`;
    /// `None` for providers outside KMS (the local keyring).
    fn kms_region(&self) -> Result<Option<String>>;
    /// A fresh data key and its wrapped copy under `context`.
    fn generate(&self, bits: KeyBits, context: &EncryptionContext) -> Result<(DataKey, Vec<u8>)> {
        let key = DataKey::random(bits)?;
        let wrapped = self.wrap(&key, context)?;
        Ok((key, wrapped))
    }
    /// Wrap an existing data key under `context`.
    fn wrap(&self, key: &DataKey, context: &EncryptionContext) -> Result<Vec<u8>>;
    /// Unwrap a data key; fails unless `context` is the one used to wrap it.
    fn unwrap(&self, wrapped: &[u8], context: &EncryptionContext) -> Result<DataKey>;
}

/// Opens the key provider that unwraps a record's data key (KMS for records
/// made with KMS, the local keyring otherwise).
pub type ProviderFor<'a> = dyn Fn(&Record) -> Result<Box<dyn KeyProvider>> + Sync + 'a;

/// Opens key providers as a command's flags say: the KMS key of `--kms-key`
/// for new keys (the local keyring without it), and for an existing record
/// the provider that made it (its KMS key, or the keyring).
pub struct Providers {
    /// The local keyring file.
    pub keyring: PathBuf,
    /// Create the keyring file when it does not exist (the default path, or
    /// `--create-keyring`). Without, a missing keyring is an error: an
    /// explicit `--keyring` path that does not exist is more likely a typo
    /// than a wish for a new key-encryption key.
    pub create_keyring: bool,
    /// `--kms-key`: wrap new keys with KMS; for records, it overrides their key id.
    pub kms_key: Option<String>,
    /// Where KMS is reached.
    #[cfg(feature = "aws")]
    pub session: std::sync::Arc<crate::aws::Session>,
}

impl Providers {
    /// The provider that wraps new data keys (creating the keyring on first
    /// use when [`Providers::create_keyring`]).
    pub fn for_new_keys(&self) -> Result<Box<dyn KeyProvider>> {
        match &self.kms_key {
            Some(key) => self.kms(key),
            None if self.create_keyring => Ok(Box::new(LocalKeyring::open_or_create(&self.keyring)?)),
            None => Ok(Box::new(self.existing_keyring()?)),
        }
    }

    /// What [`Providers::for_new_keys`] would give, for a dry run: the same
    /// checks, but nothing is created (a keyring still to be made is a
    /// provider that refuses to wrap).
    pub fn for_dry_run(&self) -> Result<Box<dyn KeyProvider>> {
        match &self.kms_key {
            Some(key) => self.kms(key),
            None if self.create_keyring && !self.keyring.exists() => Ok(Box::new(NotCreated(self.keyring.clone()))),
            None => self.for_new_keys(),
        }
    }

    fn existing_keyring(&self) -> Result<LocalKeyring> {
        match fs::metadata(&self.keyring) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Usage(format!(
                "keyring {} does not exist: check --keyring, or add --create-keyring to make a new one there",
                self.keyring.display()
            ))),
            _ => LocalKeyring::open(&self.keyring),
        }
    }

    /// The provider that can unwrap `record`'s data key.
    pub fn for_record(&self, record: &Record) -> Result<Box<dyn KeyProvider>> {
        if record.key_provider == KMS_NAME {
            self.kms(self.kms_key.as_deref().unwrap_or(&record.key_id))
        } else {
            Ok(Box::new(LocalKeyring::open(&self.keyring)?))
        }
    }

    #[cfg(feature = "aws")]
    fn kms(&self, key: &str) -> Result<Box<dyn KeyProvider>> {
        Ok(Box::new(kms::KmsProvider::new(self.session.aws()?, key)))
    }

    #[cfg(not(feature = "aws"))]
    fn kms(&self, key: &str) -> Result<Box<dyn KeyProvider>> {
        Err(Error::Usage(format!("KMS key {key}: this build has no AWS support")))
    }
}

/// A keyring a dry run would create: never created, it wraps nothing.
struct NotCreated(PathBuf);

impl KeyProvider for NotCreated {
    fn name(&self) -> &'static str {
        "local-keyring"
    }
    fn key_id(&self) -> Result<String> {
        Ok(format!("(not created: {})", self.0.display()))
    }
    fn kms_region(&self) -> Result<Option<String>> {
        Ok(None)
    }
    fn wrap(&self, _: &DataKey, _: &EncryptionContext) -> Result<Vec<u8>> {
        Err(Error::Key(format!("keyring {} is not created in a dry run", self.0.display())))
    }
    fn unwrap(&self, _: &[u8], _: &EncryptionContext) -> Result<DataKey> {
        Err(Error::Key(format!("keyring {} is not created in a dry run", self.0.display())))
    }
}

/// The name records give the AWS KMS provider.
pub const KMS_NAME: &str = "aws-kms";

/// Unwrap `record`'s data key with `provider`, which must be the one that wrapped it.
pub fn unwrap_record(record: &Record, provider: &dyn KeyProvider) -> Result<DataKey> {
    let key_id = provider.key_id()?;
    if record.key_provider != provider.name() || record.key_id != key_id {
        // A keyring is a file: name it, and the flag that names another.
        let hint = match provider.file() {
            Some(file) => format!(" (the keyring {}); give the keyring that wrapped it with --keyring PATH", file.display()),
            None => String::new(),
        };
        return Err(Error::Key(format!(
            "the data key was wrapped by {} {}, not by {} {key_id}{hint}",
            record.key_provider,
            record.key_id,
            provider.name(),
        )));
    }
    let key = provider.unwrap(&record.wrapped_key()?, &record.encryption_context)?;
    if KeyBits::from_len(key.expose_secret().len()) != Some(record.key_bits) {
        return Err(Error::Key(format!("unwrapped key is not {}-bit", u16::from(record.key_bits))));
    }
    Ok(key)
}

/// Magic prefix of a locally wrapped key blob.
const BLOB_MAGIC: &[u8; 4] = b"SPK1";
const KEK_ID_LEN: usize = 8;
const NONCE_LEN: usize = 12;

/// The offline key provider: a 256-bit key-encryption key in a 0600 file,
/// wrapping data keys with AES-256-GCM (random 96-bit nonce, the canonical
/// encryption context as AAD, so unwrapping needs the same context, as with KMS).
///
/// Wrapped blob: `"SPK1" ‖ kek fingerprint (8) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`.
pub struct LocalKeyring {
    kek: Zeroizing<[u8; 32]>,
    fingerprint: [u8; KEK_ID_LEN],
    path: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct KeyringFile {
    format: String,
    kek: String,
}

const KEYRING_FORMAT: &str = "sealpipe-keyring-v1";

impl LocalKeyring {
    /// Open the keyring at `path`, creating it (mode 0600) on first use.
    pub fn open_or_create(path: &Path) -> Result<Self> {
        match fs::read(path) {
            Ok(text) => Self::parse(path, &Zeroizing::new(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(Error::io(path, "read keyring", e)),
        }
    }

    /// Open an existing keyring (decryption never creates one).
    pub fn open(path: &Path) -> Result<Self> {
        let text = fs::read(path).map_err(|e| Error::io(path, "read keyring", e))?;
        Self::parse(path, &Zeroizing::new(text))
    }

    /// The keyring file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn create(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create keyring directory", e))?;
        }
        let mut kek = Zeroizing::new([0u8; 32]);
        getrandom::fill(kek.as_mut())
            .map_err(|e| Error::random(crate::error::Stage::Key, e))?;
        let body = Zeroizing::new(
            serde_json::to_vec_pretty(&KeyringFile {
                format: KEYRING_FORMAT.into(),
                kek: b64(kek.as_ref()),
            })
            .expect("keyring serializes"),
        );
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(path) {
            Ok(mut file) => {
                file.write_all(&body)
                    .and_then(|_| file.sync_all())
                    .map_err(|e| Error::io(path, "write keyring", e))?;
                Ok(Self::from_kek(kek, path))
            }
            // Another process created it between our read and our create.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::open(path),
            Err(e) => Err(Error::io(path, "create keyring", e)),
        }
    }

    fn parse(path: &Path, text: &[u8]) -> Result<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path)
                .map_err(|e| Error::io(path, "stat keyring", e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(Error::invalid(
                    path,
                    format!("keyring is accessible by other users (mode {:o}); run chmod 600 on it", mode & 0o777),
                ));
            }
        }
        let file: KeyringFile = serde_json::from_slice(text)
            .map_err(|e| Error::invalid(path, format!("not a sealpipe keyring: {e}")))?;
        if file.format != KEYRING_FORMAT {
            return Err(Error::invalid(path, format!("unknown keyring format {:?}", file.format)));
        }
        let raw = Zeroizing::new(unb64(&file.kek, "keyring").map_err(|e| e.for_file(path))?);
        let kek: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| Error::invalid(path, "keyring key must be 32 bytes"))?;
        Ok(Self::from_kek(Zeroizing::new(kek), path))
    }

    fn from_kek(kek: Zeroizing<[u8; 32]>, path: &Path) -> Self {
        let digest = sha2::Sha256::new_with_prefix(b"sealpipe keyring id\0")
            .chain_update(kek.as_ref())
            .finalize();
        let mut fingerprint = [0u8; KEK_ID_LEN];
        fingerprint.copy_from_slice(&digest[..KEK_ID_LEN]);
        LocalKeyring { kek, fingerprint, path: path.to_path_buf() }
    }

    /// `local:` and the key-encryption key's fingerprint.
    pub fn id(&self) -> String {
        format!("local:{}", hex::encode(self.fingerprint))
    }

    fn aead(&self) -> Aes256Gcm {
        Aes256Gcm::new(&(*self.kek).into())
    }
}

impl KeyProvider for LocalKeyring {
    fn name(&self) -> &'static str {
        "local-keyring"
    }

    fn key_id(&self) -> Result<String> {
        Ok(self.id())
    }

    fn file(&self) -> Option<&Path> {
        Some(&self.path)
    }

    fn kms_region(&self) -> Result<Option<String>> {
        Ok(None)
    }

    fn wrap(&self, key: &DataKey, context: &EncryptionContext) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::random(crate::error::Stage::Key, e))?;
        let aad = context.canonical();
        let sealed = self
            .aead()
            .encrypt(&nonce.into(), Payload { msg: key.expose_secret(), aad: &aad })
            .map_err(|_| Error::Key("local keyring: wrapping the data key failed".into()))?;
        let mut blob = Vec::with_capacity(4 + KEK_ID_LEN + NONCE_LEN + sealed.len());
        blob.extend_from_slice(BLOB_MAGIC);
        blob.extend_from_slice(&self.fingerprint);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok(blob)
    }

    fn unwrap(&self, wrapped: &[u8], context: &EncryptionContext) -> Result<DataKey> {
        let header = 4 + KEK_ID_LEN + NONCE_LEN;
        if wrapped.len() < header + 16 + 16 || &wrapped[..4] != BLOB_MAGIC {
            return Err(Error::Key(
                "encrypted data key is not a sealpipe local-keyring blob".into(),
            ));
        }
        if wrapped[4..4 + KEK_ID_LEN] != self.fingerprint {
            return Err(Error::Key(format!(
                "encrypted data key was wrapped by keyring local:{}, not by {} ({})",
                hex::encode(&wrapped[4..4 + KEK_ID_LEN]),
                self.id(),
                self.path.display()
            )));
        }
        let nonce: [u8; NONCE_LEN] = wrapped[4 + KEK_ID_LEN..header].try_into().expect("sliced");
        let aad = context.canonical();
        let plain = Zeroizing::new(
            self.aead()
                .decrypt(&nonce.into(), Payload { msg: &wrapped[header..], aad: &aad })
                .map_err(|_| {
                    Error::Key(
                        "encrypted data key does not unwrap: encryption context mismatch or corrupted key blob"
                            .into(),
                    )
                })?,
        );
        DataKey::from_slice(&plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Service;

    #[test]
    fn keyring_is_created_0600_and_wraps_under_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/keyring.json");
        let ring = LocalKeyring::open_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let mc = Service::MediaConvert.encryption_context();
        let et = Service::ElasticTranscoder.encryption_context();
        let (key, blob) = ring.generate(KeyBits::B256, &mc).unwrap();
        // Reopening reads the same KEK.
        let again = LocalKeyring::open(&path).unwrap();
        assert_eq!(again.id(), ring.id());
        let back = again.unwrap(&blob, &mc).unwrap();
        assert_eq!(back.expose_secret(), key.expose_secret());
        let err = again.unwrap(&blob, &et).err().expect("wrong context must fail");
        assert!(err.to_string().contains("encryption context mismatch"), "{err}");
        // The blob does not contain the plaintext key.
        assert!(!blob.windows(32).any(|w| w == key.expose_secret()));
    }

    #[test]
    fn data_key_file_of_wrong_size_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.bin");
        fs::write(&path, [7u8; 20]).unwrap();
        let err = DataKey::from_file(&path).err().unwrap().to_string();
        assert!(err.contains("k.bin") && err.contains("holds 20"), "{err}");
    }
}
