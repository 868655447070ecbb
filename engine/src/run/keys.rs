//! Where each file's data key comes from: a fresh key per file (the
//! default), one supplied key, or a cached generated key shared by several
//! files (`--reuse-key`), like the AWS Encryption SDK's caching
//! cryptographic materials manager.
//!
//! A cached key serves files until one of its limits (files, plaintext
//! bytes, age) would be passed; then a new one is generated. Every file
//! still gets its own random IV, and the cache remembers the IVs a key has
//! used and draws again on a repeat, so no (key, IV) pair is ever used twice.
//! GCM's limit of 2^32 messages per key with random IVs is far above the
//! largest `max-files` accepted ([`MAX_FILES_PER_KEY`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::keys::{DataKey, KeyProvider};
use crate::format::record::{KeySource, WrappedFor};
use crate::format::{Iv, KeyBits, Mode, Target};

/// The most files one cached key may serve (bounds the per-key IV set to ~40 MB).
pub const MAX_FILES_PER_KEY: u64 = 1_000_000;

/// Limits of one cached data key (`--reuse-key max-files=N,max-bytes=B,max-age=T`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyReuse {
    /// Files per key.
    pub max_files: u64,
    /// Plaintext bytes per key.
    pub max_bytes: u64,
    /// Time since the key was generated.
    pub max_age: Duration,
}

impl Default for KeyReuse {
    /// 1,000 files, 64 GiB, 5 minutes: 100,000 HLS segments take about a
    /// hundred KMS requests, and a leaked key exposes at most 1,000 files.
    fn default() -> Self {
        KeyReuse { max_files: 1000, max_bytes: 64 << 30, max_age: Duration::from_secs(300) }
    }
}

impl std::str::FromStr for KeyReuse {
    type Err = String;

    /// `max-files=N,max-bytes=B,max-age=T` in any order, any subset (the rest
    /// default); `B` is a size as [`crate::size::parse_size`] reads it, `T` s/m/h suffixes.
    fn from_str(text: &str) -> std::result::Result<Self, String> {
        let mut reuse = KeyReuse::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| format!("expected NAME=VALUE, got {part:?}"))?;
            match name.trim() {
                "max-files" => reuse.max_files = value.trim().parse().map_err(|_| format!("max-files: not a count: {value:?}"))?,
                "max-bytes" => reuse.max_bytes = crate::size::parse_size(value).map_err(|e| format!("max-bytes: {e}"))?,
                "max-age" => reuse.max_age = parse_age(value).ok_or_else(|| format!("max-age: not a duration: {value:?} (examples: 90s, 5m, 1h)"))?,
                other => return Err(format!("unknown limit {other:?} (max-files, max-bytes, max-age)")),
            }
        }
        if reuse.max_files == 0 || reuse.max_files > MAX_FILES_PER_KEY {
            return Err(format!("max-files must be between 1 and {MAX_FILES_PER_KEY}"));
        }
        if reuse.max_bytes == 0 || reuse.max_age.is_zero() {
            return Err("max-bytes and max-age must be positive".into());
        }
        Ok(reuse)
    }
}

fn parse_age(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (num, unit) = match t.chars().last()? {
        's' => (&t[..t.len() - 1], 1),
        'm' => (&t[..t.len() - 1], 60),
        'h' => (&t[..t.len() - 1], 3600),
        _ => (t, 1),
    };
    Some(Duration::from_secs(num.parse::<u64>().ok()?.checked_mul(unit)?))
}

/// A data key with its wrapped copies, as one or more files use it.
pub(crate) struct Material {
    pub(crate) key: DataKey,
    /// The wrapped copies: made with a generated key, and for a supplied key
    /// by the first file whose output was created ([`Keys::wrapped`]).
    wrapped: OnceLock<Vec<WrappedFor>>,
    /// Held while a supplied key is being wrapped: one file asks, the others wait.
    wrapping: Mutex<()>,
    pub(crate) source: KeySource,
    /// IVs used under this key (only tracked for keys that serve several files).
    used_ivs: Option<Mutex<HashSet<Vec<u8>>>>,
}

impl Material {
    /// A fresh random IV of `len` bytes, never one this key used before.
    pub(crate) fn fresh_iv(&self, len: usize) -> Result<Iv> {
        loop {
            let iv = Iv::random(len)?;
            match &self.used_ivs {
                None => return Ok(iv),
                Some(set) if set.lock().unwrap_or_else(|p| p.into_inner()).insert(iv.as_bytes().to_vec()) => return Ok(iv),
                Some(_) => continue, // a repeat: draw again
            }
        }
    }
}

struct Cached {
    material: Arc<Material>,
    files: u64,
    bytes: u64,
    born: Instant,
}

/// Hands out the key material for each file of a run and counts the
/// provider requests it made.
pub(crate) struct Keys<'a> {
    provider: &'a dyn KeyProvider,
    target: Target,
    bits: KeyBits,
    reuse: Option<KeyReuse>,
    /// A supplied key: its copy, wrapped only when a file needs it.
    supplied: Option<Arc<Material>>,
    current: Mutex<Option<Cached>>,
    requests: AtomicU64,
}

impl<'a> Keys<'a> {
    /// Keys for a run. Nothing is asked of the provider here: a supplied key
    /// is wrapped (once per service) when the first file's output exists.
    pub(crate) fn new(provider: &'a dyn KeyProvider, target: Target, mode: Mode, bits: KeyBits, reuse: Option<KeyReuse>, supplied: Option<&DataKey>) -> Result<Self> {
        if mode == Mode::Gcm && reuse.is_some_and(|r| r.max_files > 1 << 32) {
            return Err(Error::Usage("one GCM data key may encrypt at most 2^32 files with random IVs".into()));
        }
        let supplied = match supplied {
            Some(key) => {
                let copy = DataKey::from_slice(key.expose_secret())?;
                Some(Arc::new(Material { key: copy, wrapped: OnceLock::new(), wrapping: Mutex::default(), source: KeySource::Supplied, used_ivs: Some(Mutex::default()) }))
            }
            None => None,
        };
        Ok(Keys { provider, target, bits, reuse, supplied, current: Mutex::new(None), requests: AtomicU64::new(0) })
    }

    /// The wrapped copies of `material`'s key, wrapping it now if no file
    /// needed them before (a supplied key). Call it once the file's output
    /// is created, so a refused output asks the provider for nothing.
    /// A refusal is not kept: the next file asks again.
    pub(crate) fn wrapped<'m>(&self, material: &'m Material) -> Result<&'m [WrappedFor]> {
        if let Some(wrapped) = material.wrapped.get() {
            return Ok(wrapped);
        }
        let _one = material.wrapping.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(wrapped) = material.wrapped.get() {
            return Ok(wrapped);
        }
        let wrapped = self.wrap_all(&material.key, None)?;
        Ok(material.wrapped.get_or_init(|| wrapped))
    }

    /// Requests made to the key provider so far (GenerateDataKey, Encrypt).
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The supplied key, if the run has one.
    pub(crate) fn supplied(&self) -> Option<&Arc<Material>> {
        self.supplied.as_ref()
    }

    /// Key material for a file of `len` plaintext bytes.
    pub(crate) fn for_file(&self, len: u64) -> Result<Arc<Material>> {
        if let Some(m) = &self.supplied {
            return Ok(m.clone());
        }
        let Some(limits) = self.reuse else { return self.generate(false).map(Arc::new) };
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = current.as_mut() {
            if c.files < limits.max_files && c.bytes.saturating_add(len) <= limits.max_bytes && c.born.elapsed() < limits.max_age {
                c.files += 1;
                c.bytes += len;
                return Ok(c.material.clone());
            }
        }
        // Generated while holding the lock: other files wait for this key
        // rather than each asking the provider for their own.
        let material = Arc::new(self.generate(true)?);
        *current = Some(Cached { material: material.clone(), files: 1, bytes: len, born: Instant::now() });
        Ok(material)
    }

    fn generate(&self, shared: bool) -> Result<Material> {
        let services = self.target.services();
        self.requests.fetch_add(1, Ordering::Relaxed);
        let (key, primary) = self.provider.generate(self.bits, &services[0].encryption_context())?;
        let wrapped = OnceLock::from(self.wrap_all(&key, Some(primary))?);
        Ok(Material { key, wrapped, wrapping: Mutex::default(), source: KeySource::Generated, used_ivs: shared.then(Mutex::default) })
    }

    /// Wrap `key` for every service of the target (the first already wrapped when `primary`).
    fn wrap_all(&self, key: &DataKey, primary: Option<Vec<u8>>) -> Result<Vec<WrappedFor>> {
        let services = self.target.services();
        let mut wrapped = Vec::with_capacity(services.len());
        for (i, &service) in services.iter().enumerate() {
            let blob = match (i, &primary) {
                (0, Some(blob)) => blob.clone(),
                _ => {
                    self.requests.fetch_add(1, Ordering::Relaxed);
                    self.provider.wrap(key, &service.encryption_context())?
                }
            };
            wrapped.push(WrappedFor { service, blob });
        }
        Ok(wrapped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_with_defaults_and_units() {
        let r: KeyReuse = "max-files=500,max-age=2m".parse().unwrap();
        assert_eq!(r, KeyReuse { max_files: 500, max_bytes: 64 << 30, max_age: Duration::from_secs(120) });
        let r: KeyReuse = "max-bytes=10G".parse().unwrap();
        assert_eq!(r.max_bytes, 10 << 30);
        assert!("max-files=0".parse::<KeyReuse>().is_err());
        assert!("max-files=2000000".parse::<KeyReuse>().is_err());
        assert!("max-bytes=lots".parse::<KeyReuse>().is_err());
        assert!("colour=blue".parse::<KeyReuse>().is_err());
    }
}
