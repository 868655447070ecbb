//! `sealpipe reencrypt`: the options naming the legacy settings, and the key
//! providers that unwrap the old data keys. The run itself is `encrypt`'s,
//! with the inputs decrypted on the fly by [`sealpipe::reencrypt::Legacy`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;
use sealpipe::format::record::Record;
use sealpipe::keys::{KeyProvider, ProviderFor};
use sealpipe::pipeline::Tuning;
use sealpipe::run::reencrypt::{Legacy, RecordProviders};

use crate::{aws, EncryptArgs, Global, UsageError};

/// Arguments of `reencrypt`: those of `encrypt` (the INPUTs being the legacy
/// objects) and where their old settings are.
#[derive(Args)]
#[command(mut_arg("inputs", |a| a.help(
    "Legacy encrypted files or folders, or s3://bucket/prefix/ (every object under it). Example: s3://old-archive/2015/"
)))]
pub struct ReencryptArgs {
    #[command(flatten)]
    pub encrypt: EncryptArgs,
    #[command(flatten)]
    pub legacy: LegacyArgs,
}

/// Where the legacy objects' settings come from.
#[derive(Args)]
pub struct LegacyArgs {
    #[command(flatten)]
    pub from: LegacyFrom,
    /// KMS key that wrapped the keys of --et-encryption (default: --kms-key; without either, the
    /// local keyring). Example: --legacy-kms-key alias/old-transcoder
    #[arg(long, value_name = "KEY", conflicts_with = "from_manifest", help_heading = "Keys")]
    pub legacy_kms_key: Option<String>,
}

/// Exactly one source of legacy settings.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct LegacyFrom {
    /// Old sealpipe manifest of the legacy objects (a local file or s3://bucket/key); each record's key
    /// is unwrapped by the provider that made it (its KMS key, else the local keyring), and its
    /// plaintext SHA-256 is checked. Example: --from-manifest old-run.jsonl
    #[arg(long, value_name = "PATH", help_heading = "Input")]
    pub from_manifest: Option<PathBuf>,
    /// Elastic Transcoder Encryption JSON: {"Encryption": {"Mode": "aes-cbc-pkcs7", "Key": ..., "KeyMd5": ...,
    /// "InitializationVector": ...}} (or the bare inner object) for every input, or
    /// [{"Input": "s3://bucket/key", "Encryption": {...}}, ...] per object. Example: --et-encryption et.json
    #[arg(long, value_name = "PATH", help_heading = "Input")]
    pub et_encryption: Option<PathBuf>,
}

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
            let records = crate::read_manifest(manifest, &ctx)?;
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
            None => Box::new(sealpipe::keys::LocalKeyring::open(keyring_path)?),
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
pub fn run(a: ReencryptArgs, g: &Global, keyring_path: &Path, tuning: Tuning) -> Result<ExitCode, UsageError> {
    let mut keys = LegacyKeys::open(&a.legacy, g, keyring_path)?;
    let legacy = keys.legacy(tuning.chunk)?;
    // A legacy manifest kept inside the folder being migrated is not an input.
    let exclude = a.legacy.from.from_manifest.iter().filter(|m| !crate::aws::is_url(m)).cloned().collect();
    crate::encrypt(a.encrypt, g, keyring_path, tuning, Some(&legacy), exclude)
}
