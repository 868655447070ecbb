//! Reading encrypted files back: [`decrypt`] one file to a local output,
//! and [`verify`] every record of a manifest (decrypt, check the GCM tag or
//! CBC padding, the size and the plaintext SHA-256), each distinct data key
//! unwrapped once.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rayon::prelude::*;

use super::reencrypt::check_digest;
use super::report::{Reporter, Summary};
use crate::cipher::Opener;
use crate::error::{Error, Failure, Result};
use crate::format::record::Record;
use crate::format::{Iv, Mode};
use crate::keys::{unwrap_record, DataKey, KeyProvider, ProviderFor};
use crate::pipeline::{self, Tuning};
use crate::store::local::{resolve, Output};
use crate::store::{Discard, Source, Stores, LOCAL_ONLY};

/// How to decrypt one file.
pub struct Decryption<'a> {
    /// Cipher mode.
    pub mode: Mode,
    /// The data key.
    pub key: &'a DataKey,
    /// The IV.
    pub iv: &'a Iv,
    /// The plaintext SHA-256 (hex) the output must have, when known (from a manifest record).
    pub expected_sha256: Option<&'a str>,
    /// Replace an existing output.
    pub overwrite: bool,
    /// Buffer and chunk sizes.
    pub tuning: &'a Tuning,
}

/// Decrypt `source` (a local file, an S3 object) to the local file `out`,
/// refusing to leave anything under the final name unless the tag/padding
/// verify and, if given, the plaintext matches `expected_sha256`.
pub fn decrypt(source: &dyn Source, out: &Path, d: &Decryption<'_>, reporter: &dyn Reporter) -> Result<pipeline::Opened> {
    let input = source.path();
    if resolve(input) == resolve(out) {
        return Err(Error::invalid(input, "output would overwrite the input; choose another --out"));
    }
    reporter.planned(1, source.len());
    let mut output = Output::create(out, d.overwrite)?;
    let opener = Opener::new(d.mode, d.key, d.iv, d.tuning.chunk);
    let opened = pipeline::open(source, d.mode, opener, &mut output, d.tuning, &|n| reporter.progress(n))?;
    check_digest(input, d.expected_sha256, &opened.sha256)?;
    output.commit()?;
    reporter.finished(input, opened.cipher_len);
    Ok(opened)
}


/// Read back every record's (local) output, decrypt it with `provider`'s
/// keys, check tag/padding, size and plaintext SHA-256.
pub fn verify(records: &[Record], provider: &dyn KeyProvider, tuning: &Tuning, reporter: &dyn Reporter) -> Summary {
    verify_group(records, provider, &LOCAL_ONLY, tuning, reporter)
}

/// [`verify`] of records made by several providers, with outputs in any
/// store: each group of records sharing a (provider, key id) is unwrapped by
/// the provider `providers` opens for it.
pub fn verify_all(records: &[Record], providers: &ProviderFor<'_>, stores: &Stores, tuning: &Tuning, reporter: &dyn Reporter) -> Result<Summary> {
    let mut groups: BTreeMap<(&str, &str), Vec<Record>> = BTreeMap::new();
    for r in records {
        groups.entry((&r.key_provider, &r.key_id)).or_default().push(r.clone());
    }
    let mut total = Summary::default();
    for group in groups.values() {
        let provider = providers(&group[0])?;
        let s = verify_group(group, provider.as_ref(), stores, tuning, reporter);
        total.files += s.files;
        total.bytes += s.bytes;
        total.seconds += s.seconds;
        total.failures.extend(s.failures);
    }
    total.failures.sort();
    Ok(total)
}

fn verify_group(records: &[Record], provider: &dyn KeyProvider, stores: &Stores, tuning: &Tuning, reporter: &dyn Reporter) -> Summary {
    let started = Instant::now();
    reporter.planned(records.len() as u64, records.iter().map(|r| r.ciphertext_size).sum());
    let done = Mutex::new((0u64, 0u64));
    let failures = Mutex::new(Vec::new());
    let keys = UnwrappedKeys::default();
    records.par_iter().with_max_len(1).for_each(|record| {
        let path = PathBuf::from(&record.output);
        match verify_one(record, &path, provider, &keys, stores, tuning, reporter) {
            Ok(()) => {
                let mut d = done.lock().unwrap();
                d.0 += 1;
                d.1 += record.ciphertext_size;
                reporter.finished(&path, record.ciphertext_size);
            }
            Err(err) => {
                let err = err.for_file(&path);
                reporter.failed(&path, &err);
                failures.lock().unwrap().push(Failure::new(&path, &err));
            }
        }
    });
    let (files, bytes) = *done.lock().unwrap();
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    Summary { files, bytes, seconds: started.elapsed().as_secs_f64(), failures, ..Summary::default() }
}

/// What [`unwrap_record`] reads: the provider and its key, the wrapped blob, its context and the key size.
type WrappedId = (String, String, String, Vec<u8>, u16);

/// Data keys unwrapped during one verification. The records of a
/// `--reuse-key` run share a few data keys: each is asked of the provider
/// (KMS `Decrypt`) once, not once per file. Zeroized when the verification ends.
#[derive(Default)]
struct UnwrappedKeys(Mutex<HashMap<WrappedId, KeySlot>>);

/// One data key, filled by the first record that needs it (the others wait on its lock).
type KeySlot = Arc<Mutex<Option<Arc<DataKey>>>>;

impl UnwrappedKeys {
    fn get(&self, record: &Record, provider: &dyn KeyProvider) -> Result<Arc<DataKey>> {
        let id = (
            record.key_provider.clone(),
            record.key_id.clone(),
            record.encrypted_data_key.clone(),
            record.encryption_context.canonical(),
            u16::from(record.key_bits),
        );
        let slot = self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_default().clone();
        // Held while unwrapping: other records of the same key wait for it instead of asking too.
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = slot.as_ref() {
            return Ok(key.clone());
        }
        let key = Arc::new(unwrap_record(record, provider)?);
        *slot = Some(key.clone());
        Ok(key)
    }
}

fn verify_one(record: &Record, path: &Path, provider: &dyn KeyProvider, keys: &UnwrappedKeys, stores: &Stores, tuning: &Tuning, reporter: &dyn Reporter) -> Result<()> {
    let input = stores.open(&record.output, record.etag.as_deref())?;
    if input.len() != record.ciphertext_size {
        return Err(Error::invalid(
            path,
            format!("ciphertext is {} bytes, the manifest recorded {} (truncated or replaced)", input.len(), record.ciphertext_size),
        ));
    }
    let key = keys.get(record, provider)?;
    let iv = record.iv()?;
    let opener = Opener::new(record.mode, &key, &iv, tuning.chunk);
    let opened = pipeline::open(input.as_ref(), record.mode, opener, &mut Discard, tuning, &|n| reporter.progress(n))?;
    check_digest(path, Some(&record.plaintext_sha256), &opened.sha256)
}
