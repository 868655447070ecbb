//! "A new store is one module plus one line": `mem://`, a whole object
//! store in memory, is this one module (the [`Store`] and [`Destination`]
//! traits over a map), and the one line is the list a [`Stores`] is
//! assembled from (`Stores::from_list(vec![...])`), as the CLI assembles
//! S3's. Through it a run lists, reads, encrypts, uploads with envelopes,
//! resumes, and verifies, with no other change to the engine.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sealpipe::error::{Error, Result};
use sealpipe::format::envelope::{Envelope, ENVELOPE_KEY};
use sealpipe::keys::{KeyProvider, LocalKeyring};
use sealpipe::run::encrypt::{encrypt, EncryptJob};
use sealpipe::run::manifest::ManifestWriter;
use sealpipe::events::Silent;
use sealpipe::run::verify;
use sealpipe::store::{
    About, Committed, Condition, Conditional, CopyProps, Destination, Listed, PendingOutput, Properties, RestoreRequest, ServerSide, Sink,
    OutputSettings, Source, Stamped, Store, Stores, Tagged, Vacancy, Window,
};

// ---------------------------------------------------------------------------
// The module: mem://key, objects in a map.
// ---------------------------------------------------------------------------

#[derive(Clone)]
struct Object {
    body: Arc<Vec<u8>>,
    etag: String,
    metadata: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct MemStore {
    objects: Arc<Mutex<BTreeMap<String, Object>>>,
}

static ETAGS: AtomicU64 = AtomicU64::new(1);

fn key_of(url: &str) -> &str {
    url.strip_prefix("mem://").unwrap_or(url)
}

fn invalid(url: &str, reason: &str) -> Error {
    Error::Invalid { path: PathBuf::from(url), reason: reason.to_string() }
}

impl MemStore {
    fn put(&self, key: &str, body: Vec<u8>, metadata: Vec<(String, String)>) -> String {
        let etag = format!("\"{}\"", ETAGS.fetch_add(1, Ordering::Relaxed));
        self.objects.lock().unwrap().insert(key.to_string(), Object { body: Arc::new(body), etag: etag.clone(), metadata });
        etag
    }

    fn get(&self, url: &str) -> Result<Object> {
        self.objects.lock().unwrap().get(key_of(url)).cloned().ok_or_else(|| invalid(url, "no such object"))
    }

    fn holds(&self, condition: Condition<'_>, key: &str) -> bool {
        let now = self.objects.lock().unwrap().get(key).map(|o| o.etag.clone());
        match condition {
            Condition::Absent => now.is_none(),
            Condition::Matches(etag) => now.as_deref() == Some(etag),
        }
    }
}

struct MemSource {
    path: PathBuf,
    body: Arc<Vec<u8>>,
}

impl Source for MemSource {
    fn path(&self) -> &Path {
        &self.path
    }
    fn len(&self) -> u64 {
        self.body.len() as u64
    }
    fn window<'a>(&'a self, offset: u64, len: usize, _scratch: &'a mut Vec<u8>) -> Result<Window<'a>> {
        let start = offset as usize;
        self.body.get(start..start + len).map(Window::Read).ok_or_else(|| invalid(&self.path.to_string_lossy(), "read past the end"))
    }
    fn finish(&self) -> Result<()> {
        Ok(())
    }
}

impl Store for MemStore {
    fn scheme(&self) -> &'static str {
        "mem"
    }
    fn endpoint(&self) -> String {
        String::new()
    }
    fn list(&self, url: &str, each: &mut dyn FnMut(Listed)) -> Result<()> {
        let prefix = key_of(url).to_string();
        let found: Vec<(String, Object)> = self.objects.lock().unwrap().range(prefix.clone()..).take_while(|(k, _)| k.starts_with(&prefix)).map(|(k, o)| (k.clone(), o.clone())).collect();
        for (key, o) in found {
            each(Listed { url: format!("mem://{key}"), relative: PathBuf::from(&key[prefix.len()..]), size: o.body.len() as u64, etag: o.etag, archived: None, version_id: None });
        }
        Ok(())
    }
    fn stat(&self, url: &str) -> Result<Listed> {
        let o = self.get(url)?;
        Ok(Listed { url: url.to_string(), relative: PathBuf::from(key_of(url)), size: o.body.len() as u64, etag: o.etag, archived: None, version_id: None })
    }
    fn open(&self, item: &Listed) -> Result<Box<dyn Source>> {
        self.open_url(&item.url, Some(&item.etag))
    }
    fn open_url(&self, url: &str, etag: Option<&str>) -> Result<Box<dyn Source>> {
        let o = self.get(url)?;
        if etag.is_some_and(|e| e != o.etag) {
            return Err(invalid(url, "the object changed since it was listed"));
        }
        Ok(Box::new(MemSource { path: PathBuf::from(url), body: o.body }))
    }
    fn fetch(&self, url: &str) -> Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(Cursor::new(self.get(url)?.body.to_vec())))
    }
    fn destination(&self, url: &str, settings: &OutputSettings) -> Result<Box<dyn Destination>> {
        let mut prefix = key_of(url).to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(Box::new(MemDestination { store: self.clone(), prefix, overwrite: settings.overwrite }))
    }
    fn download(&self, url: &str, local: &Path) -> Result<Option<String>> {
        let Ok(o) = self.get(url) else { return Ok(None) };
        std::fs::write(local, o.body.as_slice()).map_err(|e| Error::Io { path: local.to_path_buf(), op: "write", source: e })?;
        Ok(Some(o.etag))
    }
    fn upload(&self, local: &Path, url: &str, condition: Option<Condition<'_>>, _sse: Option<&ServerSide>) -> Result<Conditional> {
        let body = std::fs::read(local).map_err(|e| Error::Io { path: local.to_path_buf(), op: "read", source: e })?;
        match condition {
            Some(c) if !self.holds(c, key_of(url)) => Ok(Conditional::Refused),
            _ => Ok(Conditional::Written(self.put(key_of(url), body, Vec::new()))),
        }
    }
    fn properties(&self, _url: &str, _copy: CopyProps) -> Result<Properties> {
        Ok(Properties::default())
    }
    fn restore(&self, url: &str, _request: &RestoreRequest) -> Result<bool> {
        Err(invalid(url, "mem:// archives nothing"))
    }
    fn envelope(&self, url: &str) -> Result<Option<Stamped>> {
        let o = self.get(url)?;
        let Some((_, text)) = o.metadata.iter().find(|(k, _)| k == ENVELOPE_KEY) else { return Ok(None) };
        let envelope = Envelope::parse(text).map_err(|r| invalid(url, &r))?;
        Ok(Some(Stamped { envelope, source: None, size: o.body.len() as u64, etag: o.etag }))
    }
    fn put_if(&self, url: &str, body: &[u8], condition: Condition<'_>, _sse: Option<&ServerSide>) -> Result<Conditional> {
        match self.holds(condition, key_of(url)) {
            true => Ok(Conditional::Written(self.put(key_of(url), body.to_vec(), Vec::new()))),
            false => Ok(Conditional::Refused),
        }
    }
    fn get_tagged(&self, url: &str) -> Result<Option<Tagged>> {
        Ok(self.get(url).ok().map(|o| Tagged { body: o.body.to_vec(), etag: o.etag }))
    }
    fn delete_if(&self, url: &str, etag: &str) -> Result<bool> {
        let mut objects = self.objects.lock().unwrap();
        match objects.get(key_of(url)) {
            Some(o) if o.etag == etag => Ok(objects.remove(key_of(url)).is_some()),
            _ => Ok(false),
        }
    }
}

struct MemDestination {
    store: MemStore,
    prefix: String,
    overwrite: bool,
}

struct MemOutput {
    store: MemStore,
    key: String,
    buf: Vec<u8>,
    metadata: Vec<(String, String)>,
    fresh: bool,
}

impl Sink for MemOutput {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(data);
        Ok(())
    }
}

impl PendingOutput for MemOutput {
    fn commit(self: Box<Self>) -> Result<Committed> {
        let location = format!("mem://{}", self.key);
        if self.fresh && !self.store.holds(Condition::Absent, &self.key) {
            return Err(Error::Exists { path: PathBuf::from(location) });
        }
        let etag = self.store.put(&self.key, self.buf, self.metadata);
        Ok(Committed { location, etag: Some(etag), ..Committed::default() })
    }
}

impl Destination for MemDestination {
    fn location(&self, relative: &Path) -> String {
        format!("mem://{}{}", self.prefix, relative.to_string_lossy())
    }
    fn vacant(&self, relative: &Path, ours: &dyn Fn(&Envelope) -> bool, replace: bool) -> Result<Vacancy> {
        let url = self.location(relative);
        if self.overwrite || replace || self.store.get(&url).is_err() {
            return Ok(Vacancy::Free);
        }
        match self.store.envelope(&url)? {
            Some(stamped) if ours(&stamped.envelope) => Ok(Vacancy::Unrecorded),
            _ => Err(Error::Exists { path: PathBuf::from(url) }),
        }
    }
    fn create(&self, relative: &Path, _len: u64, replace: bool, about: Option<&About<'_>>) -> Result<Box<dyn PendingOutput>> {
        let metadata = match about {
            Some(about) => about.envelope.metadata(about.source, &[]).map_err(|r| invalid(&self.location(relative), &r))?,
            None => Vec::new(),
        };
        let key = key_of(&self.location(relative)).to_string();
        Ok(Box::new(MemOutput { store: self.store.clone(), key, buf: Vec::new(), metadata, fresh: !self.overwrite && !replace }))
    }
    fn stored_len(&self, relative: &Path) -> Result<Option<u64>> {
        Ok(self.store.get(&self.location(relative)).ok().map(|o| o.body.len() as u64))
    }
    fn relative(&self, location: &str) -> Option<PathBuf> {
        key_of(location).strip_prefix(&self.prefix).map(PathBuf::from)
    }
    fn clean_interrupted(&self, _relative: &Path) -> Result<usize> {
        Ok(0)
    }
    fn remove(&self, relative: &Path) -> Result<()> {
        self.store.objects.lock().unwrap().remove(key_of(&self.location(relative)));
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The line, and a run through it.
// ---------------------------------------------------------------------------

#[test]
fn a_new_store_is_one_module_plus_one_line() {
    let store = MemStore::default();
    let files = [("raw/a.ts", 1_000usize), ("raw/sub/b.ts", 33), ("raw/c.mp4", 3 << 20), ("other/x.ts", 10)];
    for (i, (key, len)) in files.iter().enumerate() {
        store.put(key, (0..*len).map(|n| (n * 31 + i) as u8).collect(), Vec::new());
    }
    // The one line.
    let stores = Stores::from_list(vec![Arc::new(store.clone())]);

    let dir = tempfile::tempdir().unwrap();
    let keyring = LocalKeyring::open_or_create(&dir.path().join("keyring.json")).unwrap();
    let destination = stores.destination("mem://enc/", OutputSettings::default()).unwrap();
    let manifest = dir.path().join("m.jsonl");
    let run = || {
        let job = EncryptJob { stores: &stores, ..EncryptJob::new(vec![PathBuf::from("mem://raw/")], destination.as_ref(), &keyring) };
        let writer = ManifestWriter::durable(&manifest).unwrap();
        rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap().install(|| encrypt(&job, &writer, &Silent)).unwrap()
    };
    let first = run();
    assert_eq!((first.files, first.failures.len()), (3, 0), "{:?}", first.failures);
    let outputs: Vec<String> = store.objects.lock().unwrap().keys().filter(|k| k.starts_with("enc/")).cloned().collect();
    assert_eq!(outputs, ["enc/a.ts", "enc/c.mp4", "enc/sub/b.ts"]);
    for key in &outputs {
        assert!(store.envelope(&format!("mem://{key}")).unwrap().is_some(), "{key} carries its envelope");
    }

    let records = sealpipe::format::record::read(&manifest).unwrap();
    let open = |_: &sealpipe::format::record::Record| -> Result<Box<dyn KeyProvider>> { Ok(Box::new(LocalKeyring::open_or_create(&dir.path().join("keyring.json"))?)) };
    let verified = verify::verify_all(&records, &open, &stores, &Default::default(), &Silent).unwrap();
    assert_eq!((verified.files, verified.failures.len()), (3, 0), "{:?}", verified.failures);

    // Resumed through the same store: nothing is done twice.
    let again = run();
    assert_eq!((again.files, again.skipped), (0, 3));
}
