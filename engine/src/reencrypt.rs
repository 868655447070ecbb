//! Migrating legacy archives: decrypt old ciphertext on the fly and seal it
//! again under a new mode and key, in one streaming pass.
//!
//! [`Legacy`] is the [`Unseal`] of `reencrypt`: it finds each input's old
//! settings ([`LegacySettings`]) in an old sealpipe manifest or in an
//! Elastic Transcoder `Encryption` JSON, unwrapping the old data key only
//! when the object comes up, and hands [`crate::batch::encrypt_with`] a
//! [`Decrypted`] view of the object instead of its ciphertext.
//!
//! [`Decrypted`] decrypts the windows the pipeline asks for, in order, with
//! an [`Opener`], so memory stays bounded by the pipeline's window whatever
//! the object size, and the plaintext never touches the disk. Whatever the
//! old mode promised is checked before the new output is committed: the
//! GCM tag and CBC padding when the last window is read, the recorded
//! plaintext size at construction, the recorded SHA-256 in
//! [`Source::finish`]. A check that fails fails that object alone, and its
//! new output is discarded (uncommitted outputs are deleted / aborted).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};

use crate::batch::{resolve, Unseal};
use crate::cipher::{OpenFailure, Opener, DEFAULT_CHUNK};
use crate::error::{Error, Result};
use crate::io::{Source, Window};
use crate::keys::{unb64, DataKey, KeyProvider};
use crate::manifest::{self, ElasticTranscoderEncryption, Record};
use crate::params::{Iv, Mode, Service, Target, BLOCK, GCM_TAG_LEN};

/// How an old object was encrypted, and what its plaintext must be.
pub struct LegacySettings {
    /// The old cipher mode.
    pub mode: Mode,
    /// The old data key (unwrapped).
    pub key: DataKey,
    /// The old IV.
    pub iv: Iv,
    /// SHA-256 (hex) of the plaintext, when recorded (old sealpipe manifests).
    pub plaintext_sha256: Option<String>,
    /// Plaintext size in bytes, when recorded.
    pub plaintext_size: Option<u64>,
}

/// Why the decryption of an object stopped.
#[derive(Clone, Copy)]
enum Stopped {
    /// The old tag, padding or length did not verify.
    Open(OpenFailure),
    /// Reading or a call out of order failed (the caller got that error).
    Early,
}

/// Where a [`Decrypted`] is in its one pass.
struct State {
    /// Decrypts the next whole blocks; taken when the last window is read.
    opener: Option<Opener>,
    /// Plaintext offset of the next window.
    next: u64,
    /// Buffer for windows of the ciphertext.
    cipher_scratch: Vec<u8>,
    /// Hashes the plaintext, when there is a recorded digest to compare.
    hasher: Option<Sha256>,
    /// Set once the last window was decrypted and verified.
    digest: Option<[u8; 32]>,
    /// Set when the pass failed.
    stopped: Option<Stopped>,
}

/// The plaintext of a legacy ciphertext [`Source`], decrypted as it is read.
///
/// Reads must make one sequential pass, as [`crate::pipeline::seal`] does:
/// each window starts where the last one ended, and ends on a 16-byte
/// boundary or at the end of the plaintext. The window that reaches the end
/// checks the GCM tag or CBC padding; [`Source::finish`] then compares the
/// recorded SHA-256 and confirms the ciphertext did not change.
pub struct Decrypted {
    inner: Box<dyn Source>,
    len: u64,
    /// Plaintext (and ciphertext) bytes decrypted by whole blocks; the rest
    /// of the ciphertext goes to [`Opener::finish`].
    whole: u64,
    expected_sha256: Option<String>,
    state: Mutex<State>,
}

impl Decrypted {
    /// The plaintext view of `inner`, encrypted as `settings` say.
    ///
    /// Fails at once (reading nothing but, for CBC, the last two blocks)
    /// when the ciphertext length cannot be one of this mode, the IV does not
    /// fit the mode, the CBC padding is malformed, or the plaintext length
    /// differs from the recorded one. `chunk` is the unit of parallel work.
    pub fn new(inner: Box<dyn Source>, settings: &LegacySettings, chunk: usize) -> Result<Self> {
        let path = inner.path().to_path_buf();
        let mode = settings.mode;
        Target::Any.check_iv_len(mode, settings.iv.as_bytes().len()).map_err(|e| e.for_file(&path))?;
        let cipher_len = inner.len();
        let (whole, _) = Opener::split(mode, cipher_len).map_err(|r| Error::invalid(&path, r))?;
        let len = match mode {
            Mode::Ctr => cipher_len,
            Mode::Gcm => cipher_len - GCM_TAG_LEN as u64,
            Mode::Cbc => whole + cbc_last_block_len(inner.as_ref(), settings, chunk)?,
        };
        if let Some(recorded) = settings.plaintext_size.filter(|&n| n != len) {
            return Err(Error::invalid(
                &path,
                format!("the legacy ciphertext decrypts to {len} bytes, the manifest recorded {recorded} (truncated or replaced)"),
            ));
        }
        let state = State {
            opener: Some(Opener::new(mode, &settings.key, &settings.iv, chunk)),
            next: 0,
            cipher_scratch: Vec::new(),
            hasher: settings.plaintext_sha256.as_ref().map(|_| Sha256::new()),
            digest: None,
            stopped: None,
        };
        Ok(Decrypted { inner, len, whole, expected_sha256: settings.plaintext_sha256.clone(), state: Mutex::new(state) })
    }

    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn stopped_error(&self, why: Stopped) -> Error {
        let path = self.path().to_path_buf();
        match why {
            Stopped::Open(OpenFailure::Authentication) => Error::Authentication { path },
            Stopped::Open(OpenFailure::Padding) => Error::Padding { path },
            Stopped::Open(OpenFailure::Truncated) => Error::invalid(path, "the legacy ciphertext is truncated"),
            Stopped::Early => Error::invalid(path, "decrypting the legacy ciphertext stopped early; output discarded"),
        }
    }

    /// Decrypt plaintext `[offset, offset + len)` into `out` (see [`Source::window`]).
    fn decrypt(&self, st: &mut State, offset: u64, len: usize, out: &mut Vec<u8>) -> Result<()> {
        let end = offset + len as u64;
        if offset != st.next || end > self.len {
            return Err(Error::invalid(
                self.path(),
                format!(
                    "legacy ciphertext read out of order (bytes {offset}..{end} after {} of {}): it is decrypted in one sequential pass",
                    st.next, self.len
                ),
            ));
        }
        let last = end == self.len;
        if !last && !end.is_multiple_of(BLOCK as u64) {
            return Err(Error::invalid(self.path(), format!("legacy ciphertext window ends at {end}, inside a 16-byte block")));
        }
        let Some(opener) = st.opener.as_mut() else {
            // Past the end already: only empty windows remain.
            return Ok(());
        };
        let body_end = if last { self.whole } else { end };
        let body = (body_end - offset) as usize;
        out.resize(body, 0);
        if body > 0 {
            let cipher = self.inner.window(offset, body, &mut st.cipher_scratch)?;
            opener.update(&cipher, out);
        }
        if last {
            let cipher_tail = (self.inner.len() - self.whole) as usize;
            let tail = self.inner.window(self.whole, cipher_tail, &mut st.cipher_scratch)?.to_vec();
            let opener = st.opener.take().expect("checked above");
            // `finish` hands back no unauthenticated tail; the windows before
            // it only ever reach an output that is never committed.
            opener.finish(&tail, out).map_err(|f| {
                st.stopped = Some(Stopped::Open(f));
                self.stopped_error(Stopped::Open(f))
            })?;
            if out.len() != len {
                st.stopped = Some(Stopped::Open(OpenFailure::Padding));
                return Err(Error::invalid(self.path(), "the legacy CBC padding changed while the object was read"));
            }
        }
        if let Some(h) = st.hasher.as_mut() {
            h.update(&*out);
        }
        if last {
            st.digest = Some(st.hasher.take().map(|h| h.finalize().into()).unwrap_or_default());
        }
        st.next = end;
        Ok(())
    }
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

impl Source for Decrypted {
    fn path(&self) -> &Path {
        self.inner.path()
    }

    /// The plaintext length.
    fn len(&self) -> u64 {
        self.len
    }

    fn window<'a>(&'a self, offset: u64, len: usize, scratch: &'a mut Vec<u8>) -> Result<Window<'a>> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = st.stopped {
            return Err(self.stopped_error(why));
        }
        scratch.clear();
        if let Err(e) = self.decrypt(&mut st, offset, len, scratch) {
            st.stopped.get_or_insert(Stopped::Early);
            scratch.clear();
            return Err(e);
        }
        Ok(Window::Read(&scratch[..]))
    }

    /// Fails unless the whole ciphertext was decrypted and verified, it did
    /// not change meanwhile, and the plaintext matches the recorded SHA-256.
    fn finish(&self) -> Result<()> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = st.stopped {
            return Err(self.stopped_error(why));
        }
        let Some(digest) = st.digest else {
            return Err(Error::invalid(self.path(), "the legacy ciphertext was not read to its end; output discarded"));
        };
        self.inner.finish()?;
        match &self.expected_sha256 {
            Some(want) if !want.eq_ignore_ascii_case(&hex::encode(digest)) => Err(Error::Digest {
                path: self.path().to_path_buf(),
                expected: want.clone(),
                actual: hex::encode(digest),
            }),
            _ => Ok(()),
        }
    }
}

/// Opens the key provider that unwraps a record's data key.
pub type ProviderFor<'a> = dyn Fn(&Record) -> Result<Box<dyn KeyProvider>> + Sync + 'a;

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

/// The text inputs are matched by: `s3://` URLs as they are, local paths
/// made absolute with symlinks resolved.
fn lookup_key(text: &str) -> String {
    if text.starts_with("s3://") {
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
        let records = manifest::read(path)?;
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
                    RecordProviders::One(p) => record.data_key(*p)?,
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
                        record.data_key(provider.as_ref())?
                    }
                };
                Ok(LegacySettings {
                    mode: record.mode,
                    key: data_key,
                    iv: record.iv()?,
                    plaintext_sha256: Some(record.plaintext_sha256.clone()),
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
                Ok(LegacySettings { mode: entry.mode, key, iv: Iv::from_slice(&entry.iv)?, plaintext_sha256: None, plaintext_size: None })
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
    fn plaintext(&self, source: Box<dyn Source>) -> Result<Box<dyn Source>> {
        let path: PathBuf = source.path().to_path_buf();
        let settings = self.settings_for(&path).map_err(|e| e.for_file(&path))?;
        Ok(Box::new(Decrypted::new(source, &settings, self.chunk)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cipher::seal_to_vec;

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

    fn settings(mode: Mode, plain: &[u8]) -> LegacySettings {
        LegacySettings {
            mode,
            key: DataKey::from_slice(&[5u8; 24]).unwrap(),
            iv: Iv::from_slice(&[0xee; 16]).unwrap(),
            plaintext_sha256: Some(hex::encode(Sha256::digest(plain))),
            plaintext_size: Some(plain.len() as u64),
        }
    }

    fn legacy(mode: Mode, plain: &[u8]) -> Decrypted {
        let s = settings(mode, plain);
        let cipher = seal_to_vec(mode, &s.key, Iv::from_slice(s.iv.as_bytes()).unwrap(), 16, plain);
        Decrypted::new(Box::new(Mem(cipher)), &s, 32).unwrap()
    }

    #[test]
    fn any_sequential_split_reads_the_plaintext_and_verifies() {
        let plain: Vec<u8> = (0..100u8).collect();
        for mode in Mode::ALL {
            // Whole blocks then the tail; one window for everything; an empty tail read after the end.
            for splits in [&[48usize, 96, 100][..], &[100], &[96, 100, 100]] {
                let d = legacy(mode, &plain);
                assert_eq!(d.len(), 100);
                let (mut got, mut at, mut scratch) = (Vec::new(), 0u64, Vec::new());
                for &end in splits {
                    got.extend_from_slice(&d.window(at, end - at as usize, &mut scratch).unwrap());
                    at = end as u64;
                }
                assert_eq!(got, plain, "{mode} {splits:?}");
                d.finish().unwrap();
            }
        }
    }

    #[test]
    fn reads_out_of_order_or_unfinished_fail() {
        let plain = vec![1u8; 64];
        let mut scratch = Vec::new();
        let d = legacy(Mode::Gcm, &plain);
        let err = d.window(16, 16, &mut scratch).err().unwrap().to_string();
        assert!(err.starts_with("mem.bin: legacy ciphertext read out of order"), "{err}");
        // Once stopped, it stays stopped.
        assert!(d.window(0, 16, &mut scratch).is_err());
        assert!(d.finish().is_err());

        let d = legacy(Mode::Ctr, &plain);
        assert!(d.window(0, 10, &mut scratch).err().unwrap().to_string().contains("inside a 16-byte block"));
        let d = legacy(Mode::Cbc, &plain);
        d.window(0, 32, &mut scratch).unwrap();
        let err = d.finish().err().unwrap().to_string();
        assert_eq!(err, "mem.bin: the legacy ciphertext was not read to its end; output discarded");
    }

    #[test]
    fn cbc_length_comes_from_the_padding_and_lengths_are_checked() {
        for n in [0usize, 1, 15, 16, 17, 31, 32, 33] {
            let plain = vec![3u8; n];
            assert_eq!(legacy(Mode::Cbc, &plain).len(), n as u64);
        }
        let s = settings(Mode::Cbc, b"x");
        let short = |len: usize| Decrypted::new(Box::new(Mem(vec![0; len])), &s, 32).err().unwrap().to_string();
        assert!(short(15).contains("non-zero multiple of 16"), "{}", short(15));
        assert!(short(0).contains("non-zero multiple of 16"));
        let s = settings(Mode::Gcm, b"x");
        let err = Decrypted::new(Box::new(Mem(vec![0; 15])), &s, 32).err().unwrap().to_string();
        assert!(err.contains("shorter than its 16-byte tag"), "{err}");
        let mut s = settings(Mode::Cbc, b"x");
        s.iv = Iv::from_slice(&[0; 12]).unwrap();
        let err = Decrypted::new(Box::new(Mem(vec![0; 16])), &s, 32).err().unwrap().to_string();
        assert!(err.starts_with("mem.bin: IV of 12 bytes"), "{err}");
    }
}
