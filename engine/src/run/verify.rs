//! Reading encrypted files back: [`decrypt`] one file to a local output,
//! and [`verify`] every record of a manifest (decrypt, check the GCM tag or
//! CBC padding, the size and the plaintext digest: SHA-256, or the record's
//! `digest` algorithm; a `none` record has only the rest), each distinct data key
//! unwrapped once. Verification checks the whole record ([`check_record`]):
//! every wrapped copy of the key (the record's and each service block's)
//! unwraps to one key whose MD5 is `key_md5`, and the blocks' IVs and modes
//! are the record's.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rayon::prelude::*;

use super::reencrypt::check_digest;
use super::report::Summary;
use crate::events::{Event, Events};
use crate::cipher::Opener;
use crate::error::{Error, Failure, Result};
use crate::format::digest::{Digest, DigestAlg};
use crate::format::record::Record;
use crate::format::{EncryptionContext, Iv, Mode, Service};
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
    /// The plaintext digest the output must have, when known (from a manifest record).
    pub expected: Option<&'a Digest>,
    /// Replace an existing output.
    pub overwrite: bool,
    /// Buffer and chunk sizes.
    pub tuning: &'a Tuning,
}

/// Decrypt `source` (a local file, an S3 object) to the local file `out`,
/// refusing to leave anything under the final name unless the tag/padding
/// verify and, if given, the plaintext matches `expected`.
pub fn decrypt(source: &dyn Source, out: &Path, d: &Decryption<'_>, events: &dyn Events) -> Result<pipeline::Opened> {
    let input = source.path();
    if resolve(input) == resolve(out) {
        return Err(Error::invalid(input, "output would overwrite the input; choose another --out"));
    }
    events.emit(Event::Planned { files: 1, bytes: source.len() });
    let mut output = Output::create(out, d.overwrite)?;
    let opener = Opener::new(d.mode, d.key, d.iv, d.tuning.chunk);
    let alg = d.expected.map_or(DigestAlg::None, |e| e.alg());
    let opened = pipeline::open(source, d.mode, opener, &mut output, d.tuning, alg, events)?;
    check_digest(input, d.expected, &opened.digests)?;
    output.commit()?;
    events.emit(Event::Finished { path: input, bytes: opened.cipher_len });
    Ok(opened)
}


/// Point each record's `output` where a reader of the local manifest at
/// `manifest` finds it. Records whose output lay below their manifest's
/// folder say so ([`Record::output_relative`]); when that folder moved
/// (copied, renamed) with its outputs, every such output is read below the
/// manifest's folder now, so a copied folder is read as itself, never the
/// original, and an output missing there fails by its new path. The
/// folder moved with its outputs when any of them is there; when none is,
/// the manifest alone was moved (copied out of the folder), and the
/// records' own paths stand. Returns the folder outputs are now read
/// below, when they were relocated.
pub fn relocate(records: &mut [Record], manifest: &Path) -> Option<PathBuf> {
    let folder = resolve(manifest).parent().map(Path::to_path_buf).unwrap_or_default();
    let beside = |r: &Record| r.output_relative.as_ref().map(|rel| folder.join(rel));
    let moved = records.iter().any(|r| beside(r).is_some_and(|p| p.display().to_string() != r.output));
    if !moved || !records.iter().any(|r| beside(r).is_some_and(|p| p.exists())) {
        return None;
    }
    for r in records {
        if let Some(path) = beside(r) {
            r.output = path.display().to_string();
        }
    }
    Some(folder)
}

/// Read back every record's (local) output, decrypt it with `provider`'s
/// keys, check tag/padding, size and plaintext digest.
pub fn verify(records: &[Record], provider: &dyn KeyProvider, tuning: &Tuning, events: &dyn Events) -> Summary {
    verify_group(records, provider, &LOCAL_ONLY, tuning, events)
}

/// [`verify`] of records made by several providers, with outputs in any
/// store: each group of records sharing a (provider, key id) is unwrapped by
/// the provider `providers` opens for it.
pub fn verify_all(records: &[Record], providers: &ProviderFor<'_>, stores: &Stores, tuning: &Tuning, events: &dyn Events) -> Result<Summary> {
    let mut groups: BTreeMap<(&str, &str), Vec<Record>> = BTreeMap::new();
    for r in records {
        groups.entry((&r.key_provider, &r.key_id)).or_default().push(r.clone());
    }
    let mut total = Summary::default();
    for group in groups.values() {
        let provider = providers(&group[0])?;
        let s = verify_group(group, provider.as_ref(), stores, tuning, events);
        total.files += s.files;
        total.bytes += s.bytes;
        total.seconds += s.seconds;
        total.unchecked_content += s.unchecked_content;
        total.failures.extend(s.failures);
    }
    total.failures.sort();
    Ok(total)
}

fn verify_group(records: &[Record], provider: &dyn KeyProvider, stores: &Stores, tuning: &Tuning, events: &dyn Events) -> Summary {
    let started = Instant::now();
    events.emit(Event::Planned { files: records.len() as u64, bytes: records.iter().map(|r| r.ciphertext_size).sum() });
    let done = Mutex::new((0u64, 0u64, 0u64));
    let failures = Mutex::new(Vec::new());
    let keys = UnwrappedKeys::default();
    records.par_iter().with_max_len(1).for_each(|record| {
        let path = PathBuf::from(&record.output);
        match verify_one(record, &path, provider, &keys, stores, tuning, events) {
            Ok(alg) => {
                let mut d = done.lock().unwrap();
                d.0 += 1;
                d.1 += record.ciphertext_size;
                d.2 += u64::from(alg == DigestAlg::None);
                events.emit(Event::Finished { path: &path, bytes: record.ciphertext_size });
            }
            Err(err) => {
                let err = err.for_file(&path);
                events.emit(Event::Failed { path: &path, error: &err });
                failures.lock().unwrap().push(Failure::new(&path, &err));
            }
        }
    });
    let (files, bytes, unchecked_content) = *done.lock().unwrap();
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    Summary { files, bytes, seconds: started.elapsed().as_secs_f64(), failures, unchecked_content, ..Summary::default() }
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
        self.get_copy(record, &record.encrypted_data_key, &record.encryption_context, provider)
    }

    /// The key `blob_b64` (one wrapped copy of `record`'s key, under `context`) unwraps to.
    fn get_copy(&self, record: &Record, blob_b64: &str, context: &EncryptionContext, provider: &dyn KeyProvider) -> Result<Arc<DataKey>> {
        let id = (
            record.key_provider.clone(),
            record.key_id.clone(),
            blob_b64.to_string(),
            context.canonical(),
            u16::from(record.key_bits),
        );
        let slot = self.0.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_default().clone();
        // Held while unwrapping: other records of the same key wait for it instead of asking too.
        let mut slot = slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = slot.as_ref() {
            return Ok(key.clone());
        }
        let key = match blob_b64 == record.encrypted_data_key && context == &record.encryption_context {
            true => unwrap_record(record, provider)?,
            false => {
                let copy = Record { encrypted_data_key: blob_b64.to_string(), encryption_context: context.clone(), ..record.clone() };
                unwrap_record(&copy, provider)?
            }
        };
        let key = Arc::new(key);
        *slot = Some(key.clone());
        Ok(key)
    }
}

/// Verify one record's file; returns the digest algorithm its content was compared with.
fn verify_one(record: &Record, path: &Path, provider: &dyn KeyProvider, keys: &UnwrappedKeys, stores: &Stores, tuning: &Tuning, events: &dyn Events) -> Result<DigestAlg> {
    let expected = record.digest().map_err(|reason| Error::invalid(path, format!("the manifest record's digest: {reason}")))?;
    let input = stores.open(&record.output, record.etag.as_deref())?;
    if input.len() != record.ciphertext_size {
        return Err(Error::invalid(
            path,
            format!("ciphertext is {} bytes, the manifest recorded {} (truncated or replaced)", input.len(), record.ciphertext_size),
        ));
    }
    let key = keys.get(record, provider)?;
    check_record(record, path, &key, provider, keys)?;
    let iv = record.iv()?;
    let opener = Opener::new(record.mode, &key, &iv, tuning.chunk);
    let opened = pipeline::open(input.as_ref(), record.mode, opener, &mut Discard, tuning, expected.alg(), events)?;
    check_digest(path, Some(&expected), &opened.digests)?;
    Ok(expected.alg())
}

/// Check that `record` agrees with itself: the data key `key` (its
/// `encrypted_data_key` unwrapped) has the MD5 `key_md5`; each service block
/// holds the record's IV and mode, and its wrapped key unwraps (under that
/// service's context) to the same key; Elastic Transcoder's `KeyMd5` is the
/// record's. A block a service would decrypt with is as much the record as
/// the fields `verify` decrypts with.
fn check_record(record: &Record, path: &Path, key: &DataKey, provider: &dyn KeyProvider, keys: &UnwrappedKeys) -> Result<()> {
    let bad = |what: String| Err(Error::invalid(path, format!("the manifest record does not agree with itself: {what}")));
    let md5 = key.md5_base64();
    if record.key_md5 != md5 {
        return bad(format!("key_md5 is {}, the data key's MD5 is {md5}", record.key_md5));
    }
    let same_key = |service: Service, blob: &str| -> Result<bool> {
        let copy = keys.get_copy(record, blob, &service.encryption_context(), provider)?;
        Ok(copy.expose_secret() == key.expose_secret())
    };
    if let Some(mc) = &record.mediaconvert {
        let d = &mc.decryption_settings;
        if d.initialization_vector != record.iv {
            return bad(format!("mediaconvert InitializationVector is {}, the record's iv is {}", d.initialization_vector, record.iv));
        }
        if d.decryption_mode != record.mode.mediaconvert_name() {
            return bad(format!("mediaconvert DecryptionMode is {}, the record's mode is {}", d.decryption_mode, record.mode));
        }
        if !same_key(Service::MediaConvert, &d.encrypted_decryption_key).map_err(|e| e.for_file(path))? {
            return bad("mediaconvert EncryptedDecryptionKey unwraps to another key".into());
        }
    }
    if let Some(et) = &record.elastictranscoder {
        let e = &et.encryption;
        if e.initialization_vector != record.iv {
            return bad(format!("elastictranscoder InitializationVector is {}, the record's iv is {}", e.initialization_vector, record.iv));
        }
        if e.mode != record.mode.elastictranscoder_name() {
            return bad(format!("elastictranscoder Mode is {}, the record's mode is {}", e.mode, record.mode));
        }
        if e.key_md5 != md5 {
            return bad(format!("elastictranscoder KeyMd5 is {}, the data key's MD5 is {md5}", e.key_md5));
        }
        if !same_key(Service::ElasticTranscoder, &e.key).map_err(|e| e.for_file(path))? {
            return bad("elastictranscoder Key unwraps to another key".into());
        }
    }
    Ok(())
}

/// The failure `verify` reports for a manifest line that is not a record
/// (torn by a crash mid-append, or damaged): the file it would name is not
/// verified. Named by the output the line still shows, else by the line.
pub fn unverified_line(manifest: &Path, bad: &crate::format::record::BadLine) -> (PathBuf, Error) {
    let what = PathBuf::from(bad.output.clone().unwrap_or_else(|| format!("{}: line {}", manifest.display(), bad.number)));
    let reason = format!("manifest {} line {} is not a record ({}); its file is not verified", manifest.display(), bad.number, bad.reason);
    (what.clone(), Error::invalid(&what, reason))
}
