//! `sealpipe reencrypt`: the key providers that unwrap the old data keys.
//! The run itself is `encrypt`'s, with the inputs decrypted on the fly by
//! [`sealpipe::Legacy`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use sealpipe::{KeyProvider, Legacy, ProviderFor, Record, RecordProviders};

use super::{Global, UsageError};
use crate::args::encrypt::{LegacyArgs, ReencryptArgs};
use crate::aws;

/// The legacy settings, loaded, with what unwraps their keys.
pub enum LegacyKeys {
    /// Old manifest records; providers opened per (provider, key id) as records need them
    /// (kept with the context whose runtime their KMS calls run on).
    Manifest { records: Vec<Record>, open: Box<ProviderFor<'static>> },
    /// An Encryption JSON file and the provider of its keys.
    ElasticTranscoder { path: PathBuf, provider: Box<dyn KeyProvider>, _ctx: Box<aws::Context> },
}

impl LegacyKeys {
    /// Read the manifest or the JSON named by `a` (refusing an unreadable or empty one)
    /// and open the provider of ET keys.
    pub fn open(a: &LegacyArgs, g: &Global, keyring_path: &Path) -> anyhow::Result<Self> {
        if let Some(manifest) = &a.from.from_manifest {
            // Records name their own KMS key: --kms-key is the new one, not theirs.
            let ctx = aws::Context::new(&g.aws, keyring_path, None)?;
            let records = super::read_manifest(manifest, &ctx)?;
            if records.is_empty() {
                return Err(anyhow!("{}: manifest has no records", manifest.display()));
            }
            // The whole context moves in (its runtime drives the KMS calls), not just its providers.
            let open = move |r: &Record| -> sealpipe::Result<Box<dyn KeyProvider>> {
                let ctx = &ctx;
                ctx.providers.for_record(r)
            };
            return Ok(LegacyKeys::Manifest { records, open: Box::new(open) });
        }
        let path = a.from.et_encryption.clone().expect("clap requires --from-manifest or --et-encryption");
        let kms_key = a.legacy_kms_key.clone().or_else(|| g.kms_key.clone());
        let ctx = aws::Context::new(&g.aws, keyring_path, kms_key)?;
        let provider = match &ctx.providers.kms_key {
            Some(_) => ctx.providers.for_new_keys()?,
            None => Box::new(sealpipe::LocalKeyring::open(keyring_path)?),
        };
        Ok(LegacyKeys::ElasticTranscoder { path, provider, _ctx: Box::new(ctx) })
    }

    /// The [`Legacy`] lookup over these settings, decrypting in pieces of `chunk` bytes.
    pub fn legacy(&mut self, chunk: usize) -> sealpipe::Result<Legacy<'_>> {
        let legacy = match self {
            LegacyKeys::Manifest { records, open } => {
                Legacy::from_records(std::mem::take(records), RecordProviders::PerRecord(&**open))
            }
            LegacyKeys::ElasticTranscoder { path, provider, .. } => Legacy::from_et_file(path, &**provider)?,
        };
        Ok(legacy.with_chunk(chunk))
    }
}

/// `sealpipe reencrypt`: `encrypt` of the legacy objects' plaintext.
pub fn run(a: ReencryptArgs, g: &Global, keyring_path: &Path) -> Result<ExitCode, UsageError> {
    let mut keys = LegacyKeys::open(&a.legacy, g, keyring_path)?;
    let legacy = keys.legacy(g.chunk_size as usize)?;
    // A legacy manifest kept inside the folder being migrated is not an input.
    let exclude = a.legacy.from.from_manifest.iter().filter(|m| !aws::is_url(m)).cloned().collect();
    super::encrypt::run(a.encrypt, g, keyring_path, Some(&legacy), exclude)
}
