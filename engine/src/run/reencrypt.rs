//! Migrating legacy archives: decrypt old ciphertext on the fly and seal it
//! again under a new mode and key, in one streaming pass.
//!
//! [`Legacy`] is the [`Unseal`] of `reencrypt`: it finds each input's old
//! settings ([`LegacySettings`]) in an old sealpipe manifest or in an
//! Elastic Transcoder `Encryption` JSON, unwrapping the old data key only
//! when the object comes up, and hands [`crate::run::encrypt::encrypt`] an
//! [`Unsealing`] of the object: the run then sends it through
//! [`crate::pipeline::reseal`], the pipeline's one pass, which decrypts and
//! encrypts each window in memory (the plaintext never touches the disk).
//! Whatever the old mode promised is checked before the new output is
//! committed: the recorded plaintext size when the unsealing is made, the
//! GCM tag and CBC padding at the end of the pass, the recorded plaintext
//! digest (SHA-256, or the record's `--digest`) after it. A check that fails fails that object alone, and its new output
//! is discarded (uncommitted outputs are deleted / aborted).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use crate::cipher::{Opener, DEFAULT_CHUNK};
use crate::error::{Error, Result};
use crate::format::digest::{Digest, DigestAlg};
use crate::format::elastictranscoder::ElasticTranscoderEncryption;
use crate::format::record::{self, Record};
use crate::format::{unb64, Iv, Mode, Service, Target, BLOCK, GCM_TAG_LEN};
use crate::keys::{unwrap_record, DataKey, KeyProvider, ProviderFor};
use crate::pipeline::hasher::Digests;
use crate::store::local::resolve;
use crate::store::Source;

/// How an old object was encrypted, and what its plaintext must be.
pub struct LegacySettings {
    /// The old cipher mode.
    pub mode: Mode,
    /// The old data key (unwrapped).
    pub key: DataKey,
    /// The old IV.
    pub iv: Iv,
    /// The plaintext's digest, when recorded (old sealpipe manifests; not
    /// for records made with `--digest none`).
    pub plaintext_digest: Option<Digest>,
    /// Plaintext size in bytes, when recorded.
    pub plaintext_size: Option<u64>,
}

/// Turns a listed source into the plaintext to encrypt: `reencrypt` opens
/// legacy ciphertext on the fly; plain encryption has none.
pub trait Unseal: Sync {
    /// How to open `source` (whose `path()` names the object).
    fn unsealing(&self, source: &dyn Source) -> Result<Unsealing>;
}

/// How to open one legacy object in the pipeline's one pass
/// ([`crate::pipeline::reseal`]), and what its plaintext must be.
pub struct Unsealing {
    /// The old mode.
    pub mode: Mode,
    /// Decrypts it.
    pub opener: Opener,
    /// The plaintext length (for CBC, read from the last block's padding first).
    pub plain_len: u64,
    /// The digest the plaintext must have, when recorded.
    pub expected: Option<Digest>,
}

impl Unsealing {
    /// The opening of `source`, encrypted as `settings` say.
    ///
    /// Fails at once (reading nothing but, for CBC, the last two blocks)
    /// when the ciphertext length cannot be one of this mode, the IV does not
    /// fit the mode, the CBC padding is malformed, or the plaintext length
    /// differs from the recorded one. `chunk` is the unit of parallel work.
    pub fn new(source: &dyn Source, settings: &LegacySettings, chunk: usize) -> Result<Self> {
        let path = source.path();
        let mode = settings.mode;
        Target::Any.check_iv_len(mode, settings.iv.as_bytes().len()).map_err(|e| e.for_file(path))?;
        let cipher_len = source.len();
        let (whole, _) = Opener::split(mode, cipher_len).map_err(|r| Error::invalid(path, r))?;
        let plain_len = match mode {
            Mode::Ctr => cipher_len,
            Mode::Gcm => cipher_len - GCM_TAG_LEN as u64,
            Mode::Cbc => whole + cbc_last_block_len(source, settings, chunk)?,
        };
        if let Some(recorded) = settings.plaintext_size.filter(|&n| n != plain_len) {
            return Err(Error::invalid(
                path,
                format!("the legacy ciphertext decrypts to {plain_len} bytes, the manifest recorded {recorded} (truncated or replaced)"),
            ));
        }
        let opener = Opener::new(mode, &settings.key, &settings.iv, chunk);
        Ok(Unsealing { mode, opener, plain_len, expected: settings.plaintext_digest.clone() })
    }
}

/// Fails when the plaintext's digest (of the expected one's algorithm,
/// among `actual`) is not the recorded one. Nothing to compare for no
/// expectation, or an expected `none`.
pub fn check_digest(path: &Path, expected: Option<&Digest>, actual: &Digests) -> Result<()> {
    let Some(want) = expected.filter(|d| d.alg() != DigestAlg::None) else { return Ok(()) };
    let got = actual
        .get(want.alg())
        .ok_or_else(|| Error::invalid(path, format!("no {} digest of the plaintext was computed to compare", want.alg())))?;
    if got == want {
        return Ok(());
    }
    Err(Error::Digest { path: path.to_path_buf(), alg: want.alg().label(), expected: want.hex(), actual: got.hex() })
}

/// The plaintext bytes in the last CBC block: decrypt it (chained to the
/// block before it, or the IV) and read its PKCS#7 padding.
fn cbc_last_block_len(inner: &dyn Source, settings: &LegacySettings, chunk: usize) -> Result<u64> {
    let cipher_len = inner.len();
    let path = inner.path();
    let mut scratch = Vec::new();
    let (start, n) = if cipher_len >= 2 * BLOCK as u64 { (cipher_len - 2 * BLOCK as u64, 2 * BLOCK) } else { (0, BLOCK) };
    let blocks = inner.window(start, n, &mut scratch)?.to_vec();
    let (prev, last) = if n == 2 * BLOCK { blocks.split_at(BLOCK) } else { (settings.iv.as_bytes(), &blocks[..]) };
    let opener = Opener::new(Mode::Cbc, &settings.key, &Iv::from_slice(prev)?, chunk);
    let mut plain = Vec::with_capacity(BLOCK);
    opener.finish(last, &mut plain).map_err(|_| Error::Padding { path: path.to_path_buf() })?;
    Ok(plain.len() as u64)
}

/// The key providers for an old manifest's records.
pub enum RecordProviders<'a> {
    /// One provider for every record.
    One(&'a dyn KeyProvider),
    /// The provider for each record (e.g. KMS for records made with KMS,
    /// the local keyring otherwise); asked once per (provider, key id).
    PerRecord(&'a ProviderFor<'a>),
}

/// An `Encryption` object of an Elastic Transcoder style JSON, checked.
struct EtEntry {
    mode: Mode,
    wrapped: Vec<u8>,
    key_md5: String,
    iv: Vec<u8>,
}

/// Where [`Legacy`] finds each object's settings.
enum Lookup<'a> {
    Manifest {
        records: Vec<Record>,
        /// Output path / URL and `FileInput` → index of the latest record.
        index: HashMap<String, usize>,
        providers: RecordProviders<'a>,
        opened: Mutex<BTreeMap<(String, String), Arc<dyn KeyProvider>>>,
    },
    ElasticTranscoder {
        /// One `Encryption` for every input, its key unwrapped on first use.
        every: Option<(EtEntry, OnceLock<std::result::Result<DataKey, String>>)>,
        /// `Input` → its `Encryption`.
        index: HashMap<String, EtEntry>,
        provider: &'a dyn KeyProvider,
    },
}

/// The settings of legacy objects, looked up by each input's path or URL:
/// the [`Unseal`] of `reencrypt`.
pub struct Legacy<'a> {
    lookup: Lookup<'a>,
    chunk: usize,
}

/// The text inputs are matched by: a store's URLs as they are, local paths
/// made absolute with symlinks resolved.
fn lookup_key(text: &str) -> String {
    if crate::store::Stores::is_url(text) {
        text.to_string()
    } else {
        resolve(Path::new(text)).display().to_string()
    }
}

impl<'a> Legacy<'a> {
    /// Settings from old manifest records (the latest record of an output
    /// wins); each record's key is unwrapped when its object comes up.
    pub fn from_records(records: Vec<Record>, providers: RecordProviders<'a>) -> Self {
        let mut index = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            index.insert(lookup_key(&r.output), i);
            if let Some(mc) = &r.mediaconvert {
                index.insert(lookup_key(&mc.file_input), i);
            }
        }
        let lookup = Lookup::Manifest { records, index, providers, opened: Mutex::new(BTreeMap::new()) };
        Legacy { lookup, chunk: DEFAULT_CHUNK }
    }

    /// Settings from the local manifest at `path` (see [`Legacy::from_records`]).
    pub fn from_manifest(path: &Path, providers: RecordProviders<'a>) -> Result<Self> {
        let records = record::read(path)?;
        if records.is_empty() {
            return Err(Error::invalid(path, "manifest has no records"));
        }
        Ok(Self::from_records(records, providers))
    }

    /// Settings from Elastic Transcoder style JSON (`origin` names it in
    /// errors): `{"Encryption": {...}}` or the bare `{"Mode": ...}` object
    /// for every input, or `[{"Input": "s3://b/k", "Encryption": {...}}, ...]`
    /// for each listed input. `Key` is unwrapped by `provider` under the
    /// Elastic Transcoder encryption context, and must match `KeyMd5`.
    pub fn from_et_json(text: &[u8], origin: &Path, provider: &'a dyn KeyProvider) -> Result<Self> {
        let bad = |reason: String| Error::invalid(origin, reason);
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let mut every = None;
        let mut index = HashMap::new();
        let mut add = |item: &serde_json::Value, n: Option<usize>| -> Result<()> {
            let at = n.map(|n| format!("entry {}: ", n + 1)).unwrap_or_default();
            let input = match item.get("Input") {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(bad(format!("{at}\"Input\" must be a local path or an s3:// URL string"))),
                None if n.is_some() => return Err(bad(format!("{at}no \"Input\" naming the object"))),
                None => None,
            };
            let encryption = item.get("Encryption").ok_or_else(|| bad(format!("{at}no \"Encryption\" object")))?;
            let entry = et_entry(encryption).map_err(|reason| bad(format!("{at}Encryption: {reason}")))?;
            match input {
                Some(input) => {
                    if index.insert(lookup_key(&input), entry).is_some() {
                        return Err(bad(format!("{at}{input} is listed twice")));
                    }
                }
                None => every = Some((entry, OnceLock::new())),
            }
            Ok(())
        };
        match &value {
            serde_json::Value::Array(items) => {
                for (n, item) in items.iter().enumerate() {
                    add(item, Some(n))?;
                }
                if items.is_empty() {
                    return Err(bad("the list of inputs is empty".into()));
                }
            }
            serde_json::Value::Object(o) if o.contains_key("Encryption") => add(&value, None)?,
            serde_json::Value::Object(o) if o.contains_key("Mode") => {
                let entry = et_entry(&value).map_err(|reason| bad(format!("Encryption: {reason}")))?;
                every = Some((entry, OnceLock::new()));
            }
            _ => {
                return Err(bad(
                    "expected {\"Encryption\": {...}}, an Encryption object, or [{\"Input\": ..., \"Encryption\": {...}}, ...]".into(),
                ))
            }
        }
        Ok(Legacy { lookup: Lookup::ElasticTranscoder { every, index, provider }, chunk: DEFAULT_CHUNK })
    }

    /// [`Legacy::from_et_json`] of the file at `path`.
    pub fn from_et_file(path: &Path, provider: &'a dyn KeyProvider) -> Result<Self> {
        let text = std::fs::read(path).map_err(|e| Error::io(path, "read", e))?;
        Self::from_et_json(&text, path, provider)
    }

    /// Decrypt in parallel pieces of `chunk` bytes (a multiple of 16; the
    /// default is [`DEFAULT_CHUNK`]).
    pub fn with_chunk(mut self, chunk: usize) -> Self {
        assert!(chunk >= BLOCK && chunk.is_multiple_of(BLOCK), "chunk must be a positive multiple of 16");
        self.chunk = chunk;
        self
    }

    /// The settings of the object at `object` (a local path or `s3://` URL),
    /// with its data key unwrapped.
    pub fn settings_for(&self, object: &Path) -> Result<LegacySettings> {
        let key = lookup_key(&object.to_string_lossy());
        let missing = || Error::invalid(object, "no legacy settings for this object (not in the manifest / Encryption JSON)");
        match &self.lookup {
            Lookup::Manifest { records, index, providers, opened } => {
                let record = &records[*index.get(&key).ok_or_else(missing)?];
                let data_key = match providers {
                    RecordProviders::One(p) => unwrap_record(record, *p)?,
                    RecordProviders::PerRecord(open) => {
                        let id = (record.key_provider.clone(), record.key_id.clone());
                        let cached = opened.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned();
                        let provider = match cached {
                            Some(p) => p,
                            None => {
                                let p: Arc<dyn KeyProvider> = Arc::from(open(record)?);
                                opened.lock().unwrap_or_else(|p| p.into_inner()).entry(id).or_insert(p).clone()
                            }
                        };
                        unwrap_record(record, provider.as_ref())?
                    }
                };
                let digest = record.digest().map_err(|reason| Error::invalid(object, format!("its manifest record: {reason}")))?;
                Ok(LegacySettings {
                    mode: record.mode,
                    key: data_key,
                    iv: record.iv()?,
                    plaintext_digest: Some(digest).filter(|d| d.alg() != DigestAlg::None),
                    plaintext_size: Some(record.plaintext_size),
                })
            }
            Lookup::ElasticTranscoder { every, index, provider } => {
                let (entry, key) = match (index.get(&key), every) {
                    (Some(entry), _) => (entry, et_unwrap(entry, *provider)?),
                    (None, Some((entry, cached))) => {
                        let key = cached.get_or_init(|| et_unwrap(entry, *provider).map_err(|e| e.to_string()));
                        match key {
                            Ok(k) => (entry, DataKey::from_slice(k.expose_secret())?),
                            Err(reason) => return Err(Error::Key(reason.clone())),
                        }
                    }
                    (None, None) => return Err(missing()),
                };
                Ok(LegacySettings { mode: entry.mode, key, iv: Iv::from_slice(&entry.iv)?, plaintext_digest: None, plaintext_size: None })
            }
        }
    }
}

/// Check an `Encryption` object: a client-side mode, base64 key, KeyMd5 and IV.
fn et_entry(value: &serde_json::Value) -> std::result::Result<EtEntry, String> {
    let e: ElasticTranscoderEncryption = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
    let mode = Mode::ALL
        .into_iter()
        .find(|m| m.elastictranscoder_name().eq_ignore_ascii_case(&e.mode) || m.mediaconvert_name() == e.mode)
        .ok_or_else(|| {
            format!("Mode {:?} is not a client-side mode this can decrypt (aes-cbc-pkcs7, aes-ctr or aes-gcm)", e.mode)
        })?;
    let wrapped = unb64(&e.key, "Key").map_err(|e| e.to_string())?;
    let md5 = unb64(&e.key_md5, "KeyMd5").map_err(|e| e.to_string())?;
    if md5.len() != 16 {
        return Err(format!("KeyMd5 must be the base64 of 16 bytes, it holds {}", md5.len()));
    }
    let iv = unb64(&e.initialization_vector, "InitializationVector").map_err(|e| e.to_string())?;
    Target::Any.check_iv_len(mode, iv.len()).map_err(|e| format!("InitializationVector: {e}"))?;
    Ok(EtEntry { mode, wrapped, key_md5: e.key_md5.trim().to_string(), iv })
}

/// Unwrap an entry's key under the Elastic Transcoder context and check its MD5.
fn et_unwrap(entry: &EtEntry, provider: &dyn KeyProvider) -> Result<DataKey> {
    let key = provider.unwrap(&entry.wrapped, &Service::ElasticTranscoder.encryption_context())?;
    if key.md5_base64() != entry.key_md5 {
        return Err(Error::Key("the unwrapped data key does not match Encryption.KeyMd5 (wrong Key or KeyMd5)".into()));
    }
    Ok(key)
}

impl Unseal for Legacy<'_> {
    fn unsealing(&self, source: &dyn Source) -> Result<Unsealing> {
        let path = source.path();
        let settings = self.settings_for(path).map_err(|e| e.for_file(path))?;
        Unsealing::new(source, &settings, self.chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cipher::{seal_to_vec, Sealer};
    use crate::pipeline::hasher::reference::reference;
    use crate::pipeline::{reseal, Tuning};
    use sha2::{Digest as _, Sha256};
    use crate::store::{Sink, Window};

    /// Ciphertext held in memory.
    struct Mem(Vec<u8>);

    impl Source for Mem {
        fn path(&self) -> &Path {
            Path::new("mem.bin")
        }
        fn len(&self) -> u64 {
            self.0.len() as u64
        }
        fn window<'a>(&'a self, offset: u64, len: usize, _: &'a mut Vec<u8>) -> Result<Window<'a>> {
            Ok(Window::Read(&self.0[offset as usize..offset as usize + len]))
        }
        fn finish(&self) -> Result<()> {
            Ok(())
        }
    }

    impl Sink for Mem {
        fn write(&mut self, data: &[u8]) -> Result<()> {
            self.0.extend_from_slice(data);
            Ok(())
        }
    }

    fn settings(mode: Mode, plain: &[u8]) -> LegacySettings {
        LegacySettings {
            mode,
            key: DataKey::from_slice(&[5u8; 24]).unwrap(),
            iv: Iv::from_slice(&[0xee; 16]).unwrap(),
            plaintext_digest: Some(Digest::new(DigestAlg::Sha256, Sha256::digest(plain).to_vec())),
            plaintext_size: Some(plain.len() as u64),
        }
    }

    fn legacy(mode: Mode, plain: &[u8]) -> (Mem, LegacySettings) {
        let s = settings(mode, plain);
        let cipher = seal_to_vec(mode, &s.key, Iv::from_slice(s.iv.as_bytes()).unwrap(), 16, plain);
        (Mem(cipher), s)
    }

    #[test]
    fn reseal_equals_sealing_the_plaintext_for_every_pair_of_modes_and_window() {
        let new_key = DataKey::from_slice(&[9u8; 32]).unwrap();
        for n in [0usize, 1, 15, 16, 17, 100, 160, 1000] {
            let plain: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            for old in Mode::ALL {
                for new in Mode::ALL {
                    for (window, alg) in [16usize, 48, 4096].into_iter().flat_map(|w| DigestAlg::ALL.map(|a| (w, a))) {
                        let (source, s) = legacy(old, &plain);
                        let u = Unsealing::new(&source, &s, 32).unwrap();
                        assert_eq!(u.plain_len, n as u64, "{old} {n}");
                        let sealer = Sealer::new(new, &new_key, Iv::from_slice(&[3; 16]).unwrap(), 32);
                        let mut out = Mem(Vec::new());
                        let tuning = Tuning { chunk: 32, window, depth: 2 };
                        let check = u.expected.as_ref().map(|d| d.alg());
                        let sealed = reseal(&source, u.mode, u.opener, u.plain_len, sealer, &mut out, &tuning, alg, check, &crate::events::Silent).unwrap();
                        let want = seal_to_vec(new, &new_key, Iv::from_slice(&[3; 16]).unwrap(), 16, &plain);
                        assert!(out.0 == want, "{old}->{new} {n} window {window}");
                        check_digest(Path::new("x"), u.expected.as_ref(), &sealed.digests).unwrap();
                        assert_eq!(sealed.digest().bytes(), &reference(alg, &plain)[..], "{old}->{new} {n} {alg}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_recorded_digest_of_another_algorithm_is_checked() {
        let plain = vec![7u8; 100];
        let (source, mut s) = legacy(Mode::Ctr, &plain);
        let mut blake = blake3::hash(&plain).as_bytes().to_vec();
        s.plaintext_digest = Some(Digest::new(DigestAlg::Blake3, blake.clone()));
        let tuning = Tuning { chunk: 32, window: 48, depth: 2 };
        let run = |s: &LegacySettings| {
            let u = Unsealing::new(&source, s, 32).unwrap();
            let sealer = Sealer::new(Mode::Gcm, &s.key, Iv::from_slice(&[3; 16]).unwrap(), 32);
            let check = u.expected.as_ref().map(|d| d.alg());
            let sealed = reseal(&source, u.mode, u.opener, u.plain_len, sealer, &mut Mem(Vec::new()), &tuning, DigestAlg::Crc64Nvme, check, &crate::events::Silent).unwrap();
            assert_eq!(sealed.digest().alg(), DigestAlg::Crc64Nvme);
            check_digest(Path::new("old.bin"), u.expected.as_ref(), &sealed.digests)
        };
        run(&s).unwrap();
        blake[0] ^= 1;
        s.plaintext_digest = Some(Digest::new(DigestAlg::Blake3, blake));
        let err = run(&s).unwrap_err().to_string();
        assert!(err.starts_with("old.bin: plaintext BLAKE3 mismatch"), "{err}");
    }

    #[test]
    fn a_bad_old_tag_fails_the_reseal() {
        let (mut source, s) = legacy(Mode::Gcm, &[1u8; 64]);
        let last = source.0.len() - 1;
        source.0[last] ^= 1;
        let u = Unsealing::new(&source, &s, 32).unwrap();
        let sealer = Sealer::new(Mode::Ctr, &s.key, Iv::from_slice(&[3; 16]).unwrap(), 32);
        let tuning = Tuning { chunk: 32, window: 32, depth: 2 };
        let err = reseal(&source, u.mode, u.opener, u.plain_len, sealer, &mut Mem(Vec::new()), &tuning, DigestAlg::Sha256, None, &crate::events::Silent).err().unwrap();
        assert!(matches!(err, Error::Authentication { .. }), "{err}");
    }

    #[test]
    fn cbc_length_comes_from_the_padding_and_lengths_are_checked() {
        for n in [0usize, 1, 15, 16, 17, 31, 32, 33] {
            let plain = vec![3u8; n];
            let (source, s) = legacy(Mode::Cbc, &plain);
            assert_eq!(Unsealing::new(&source, &s, 32).unwrap().plain_len, n as u64);
        }
        let s = settings(Mode::Cbc, b"x");
        let short = |len: usize| Unsealing::new(&Mem(vec![0; len]), &s, 32).err().unwrap().to_string();
        assert!(short(15).contains("non-zero multiple of 16"), "{}", short(15));
        assert!(short(0).contains("non-zero multiple of 16"));
        let s = settings(Mode::Gcm, b"x");
        let err = Unsealing::new(&Mem(vec![0; 15]), &s, 32).err().unwrap().to_string();
        assert!(err.contains("shorter than its 16-byte tag"), "{err}");
        let mut s = settings(Mode::Cbc, b"x");
        s.iv = Iv::from_slice(&[0; 12]).unwrap();
        let err = Unsealing::new(&Mem(vec![0; 16]), &s, 32).err().unwrap().to_string();
        assert!(err.starts_with("mem.bin: IV of 12 bytes"), "{err}");
    }
}
