//! The manifest: one JSON object per encrypted file, one per line, appended
//! as each file completes. Each record carries what is needed to decrypt and
//! verify the file, and ready-to-paste job settings for MediaConvert
//! (`Settings.Inputs[]` entry) and Elastic Transcoder (`Input.Encryption`),
//! with the AWS API's field names. No record ever holds a plaintext key.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::{b64, unb64, DataKey, KeyProvider};
use crate::params::{EncryptionContext, Iv, KeyBits, Mode};

/// Where the data key came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeySource {
    /// Made for this file (or this run) by the key provider / OS CSPRNG.
    Generated,
    /// Supplied by the user (`--data-key-file`, `--key-hex`).
    Supplied,
}

/// One encrypted file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// The plaintext source.
    pub source: String,
    /// Where the ciphertext was written (absolute path or URL).
    pub output: String,
    /// The stored object's entity tag (S3), if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub etag: Option<String>,
    /// The whole-object checksum the store reported, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub checksum: Option<String>,
    /// Plaintext size in bytes.
    pub plaintext_size: u64,
    /// Ciphertext size in bytes (with CBC padding or the GCM tag).
    pub ciphertext_size: u64,
    /// Cipher mode.
    pub mode: Mode,
    /// AES key size in bits.
    pub key_bits: KeyBits,
    /// Key provider that wrapped the data key ("local-keyring", "aws-kms").
    pub key_provider: String,
    /// The provider's key-encryption key id.
    pub key_id: String,
    /// Whether the data key was generated or supplied.
    pub key_source: KeySource,
    /// The services the settings are for ("any", "mediaconvert", "elastictranscoder").
    pub target: String,
    /// Encryption context `encrypted_data_key` is bound to.
    pub encryption_context: EncryptionContext,
    /// The wrapped data key (base64).
    pub encrypted_data_key: String,
    /// The IV (base64 of 12 or 16 bytes).
    pub iv: String,
    /// Base64 MD5 of the plaintext data key (Elastic Transcoder's `KeyMd5`).
    pub key_md5: String,
    /// SHA-256 of the plaintext (hex).
    pub plaintext_sha256: String,
    /// MediaConvert input settings, if the key was wrapped for MediaConvert.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mediaconvert: Option<MediaConvertInput>,
    /// Elastic Transcoder settings, if the IV is 16 bytes and the key was
    /// wrapped for Elastic Transcoder.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub elastictranscoder: Option<ElasticTranscoderInput>,
    /// Unix time (seconds) the file was finished.
    pub finished_unix: u64,
    /// The shard (`I/N`) of a sharded run that encrypted the file.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub shard: Option<String>,
}

/// An entry of MediaConvert's `Settings.Inputs[]`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MediaConvertInput {
    /// `s3://bucket/key` (or the local path when no URL prefix was given).
    pub file_input: String,
    /// How MediaConvert decrypts the input.
    pub decryption_settings: MediaConvertDecryption,
}

/// MediaConvert `DecryptionSettings`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MediaConvertDecryption {
    /// `AES_CTR`, `AES_CBC` or `AES_GCM`.
    pub decryption_mode: String,
    /// Base64 KMS ciphertext blob of the data key.
    pub encrypted_decryption_key: String,
    /// Base64 of the 12 or 16 IV bytes.
    pub initialization_vector: String,
    /// Region of the KMS key; absent where it does not apply (the local
    /// keyring: the model allows 9-19 characters, so no placeholder).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kms_key_region: Option<String>,
}

/// Elastic Transcoder's job `Input` encryption settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ElasticTranscoderInput {
    /// The `Encryption` object.
    pub encryption: ElasticTranscoderEncryption,
}

/// Elastic Transcoder `Encryption`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ElasticTranscoderEncryption {
    /// `aes-ctr`, `aes-cbc-pkcs7` or `aes-gcm`.
    pub mode: String,
    /// Base64 KMS ciphertext blob of the data key.
    pub key: String,
    /// Base64 MD5 of the plaintext data key.
    pub key_md5: String,
    /// Base64 of exactly 16 IV bytes.
    pub initialization_vector: String,
}

/// The data key wrapped under one service's context.
pub struct WrappedFor {
    /// The service.
    pub service: crate::params::Service,
    /// The wrapped blob.
    pub blob: Vec<u8>,
}

/// Everything about one encrypted file that goes into its record.
pub struct RecordInput<'a> {
    /// Plaintext source.
    pub source: &'a Path,
    /// The committed output.
    pub committed: &'a crate::io::Committed,
    /// URL or path to put in `FileInput`.
    pub file_input: String,
    /// Mode.
    pub mode: Mode,
    /// The plaintext key (only its MD5 is recorded).
    pub key: &'a DataKey,
    /// Key source.
    pub key_source: KeySource,
    /// Provider that wrapped it.
    pub provider: &'a dyn KeyProvider,
    /// Target name.
    pub target: crate::params::Target,
    /// Wrapped copies, primary service first.
    pub wrapped: &'a [WrappedFor],
    /// IV used.
    pub iv: &'a Iv,
    /// Result of the pipeline.
    pub sealed: &'a crate::pipeline::Sealed,
}

impl Record {
    /// Build the record for a finished file.
    pub fn new(r: RecordInput<'_>) -> Record {
        use crate::params::Service;
        let primary = &r.wrapped[0];
        let iv_b64 = b64(r.iv.as_bytes());
        let key_md5 = r.key.md5_base64();
        let find = |s: Service| r.wrapped.iter().find(|w| w.service == s);
        let mediaconvert = find(Service::MediaConvert).map(|w| MediaConvertInput {
            file_input: r.file_input.clone(),
            decryption_settings: MediaConvertDecryption {
                decryption_mode: r.mode.mediaconvert_name().into(),
                encrypted_decryption_key: b64(&w.blob),
                initialization_vector: iv_b64.clone(),
                kms_key_region: (r.provider.name() != "local-keyring").then(|| r.provider.region()),
            },
        });
        let elastictranscoder = find(Service::ElasticTranscoder)
            .filter(|_| r.iv.as_bytes().len() == 16)
            .map(|w| ElasticTranscoderInput {
                encryption: ElasticTranscoderEncryption {
                    mode: r.mode.elastictranscoder_name().into(),
                    key: b64(&w.blob),
                    key_md5: key_md5.clone(),
                    initialization_vector: iv_b64.clone(),
                },
            });
        Record {
            source: r.source.display().to_string(),
            output: r.committed.location.clone(),
            etag: r.committed.etag.clone(),
            checksum: r.committed.checksum.clone(),
            plaintext_size: r.sealed.plain_len,
            ciphertext_size: r.sealed.cipher_len,
            mode: r.mode,
            key_bits: r.key.bits(),
            key_provider: r.provider.name().into(),
            key_id: r.provider.key_id(),
            key_source: r.key_source,
            target: r.target.to_string(),
            encryption_context: primary.service.encryption_context(),
            encrypted_data_key: b64(&primary.blob),
            iv: iv_b64,
            key_md5,
            plaintext_sha256: hex::encode(r.sealed.sha256),
            mediaconvert,
            elastictranscoder,
            finished_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            shard: None,
        }
    }

    /// The IV.
    pub fn iv(&self) -> Result<Iv> {
        Iv::from_slice(&unb64(&self.iv, "manifest iv")?)
    }

    /// Unwrap this record's data key with `provider`.
    pub fn data_key(&self, provider: &dyn KeyProvider) -> Result<DataKey> {
        if self.key_provider != provider.name() || self.key_id != provider.key_id() {
            return Err(Error::Key(format!(
                "the data key of {} was wrapped by {} {}, not by {} {}",
                self.output,
                self.key_provider,
                self.key_id,
                provider.name(),
                provider.key_id()
            )));
        }
        let blob = unb64(&self.encrypted_data_key, "manifest encrypted_data_key")?;
        let key = provider.unwrap(&blob, &self.encryption_context)?;
        if KeyBits::from_len(key.expose_secret().len()) != Some(self.key_bits) {
            return Err(Error::Key(format!("{}: unwrapped key is not {}-bit", self.output, u16::from(self.key_bits))));
        }
        Ok(key)
    }
}

/// Appends records to a JSON Lines manifest, one whole line per write.
///
/// Nothing is created on disk until [`ManifestWriter::open`] (or the first
/// write), so a run refused before any work leaves no manifest behind.
///
/// The manifest is the run's ledger (see `ledger`). Each record is one
/// `write(2)` in append mode before [`ManifestWriter::write`] returns, so it
/// survives the process being killed. With `durable`, a background thread
/// also `fdatasync`s the file whenever records were appended since its last
/// sync (group commit: one sync covers every record written meanwhile), and
/// [`ManifestWriter::flush`] waits until all of them are on disk; workers
/// never wait for the disk. A record lost to a power cut between its write
/// and the next sync only costs a redo: its output is in the journal.
pub struct ManifestWriter {
    file: Mutex<Option<Arc<File>>>,
    path: PathBuf,
    durable: bool,
    sync: Arc<(Mutex<SyncState>, Condvar)>,
    syncer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

#[derive(Default)]
struct SyncState {
    /// Records appended.
    written: u64,
    /// Records known to be on disk.
    synced: u64,
    /// The writer is being dropped: sync what is left, then stop.
    closing: bool,
    /// The last sync failed with this.
    failed: Option<String>,
}

impl ManifestWriter {
    /// Prepare to append to `path` (created, with its folder, on [`ManifestWriter::open`]).
    pub fn append(path: &Path) -> Result<Self> {
        Ok(Self::new(path, false))
    }

    /// [`ManifestWriter::append`], with records synced to disk in the background.
    pub fn durable(path: &Path) -> Result<Self> {
        Ok(Self::new(path, true))
    }

    fn new(path: &Path, durable: bool) -> Self {
        ManifestWriter { file: Mutex::new(None), path: path.to_path_buf(), durable, sync: Arc::default(), syncer: Mutex::new(None) }
    }

    /// Create or open the manifest for appending, if not done yet. Call it
    /// before starting work, so an unwritable manifest stops the run early.
    pub fn open(&self) -> Result<()> {
        self.handle().map(|_| ())
    }

    fn handle(&self) -> Result<Arc<File>> {
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(|e| Error::io(dir, "create directory", e))?;
            }
            let opened = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(|e| Error::io(&self.path, "open manifest", e))?;
            drop_torn_tail(&opened, &self.path)?;
            let opened = Arc::new(opened);
            if self.durable {
                let (file, sync) = (opened.clone(), self.sync.clone());
                *self.syncer.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::thread::spawn(move || sync_loop(&file, &sync)));
            }
            *file = Some(opened);
        }
        Ok(file.as_ref().expect("opened above").clone())
    }

    /// The manifest path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record as one line.
    pub fn write(&self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_vec(record).expect("records serialize");
        line.push(b'\n');
        let file = self.handle()?;
        let (state, wake) = &*self.sync;
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        // One write(2) of the whole line, in append mode, under the lock.
        (&*file).write_all(&line).map_err(|e| Error::io(&self.path, "append to manifest", e))?;
        state.written += 1;
        wake.notify_all();
        Ok(())
    }

    /// Wait until every record written is on disk (durable writers; a no-op otherwise).
    pub fn flush(&self) -> Result<()> {
        if !self.durable {
            return Ok(());
        }
        let (state, wake) = &*self.sync;
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        while state.synced < state.written && state.failed.is_none() && self.syncer.lock().unwrap_or_else(|p| p.into_inner()).is_some() {
            state = wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        match &state.failed {
            Some(cause) => Err(Error::io(&self.path, "fsync manifest", std::io::Error::other(cause.clone()))),
            None => Ok(()),
        }
    }
}

/// The background syncer: sync whenever records are waiting, until closed.
fn sync_loop(file: &File, sync: &(Mutex<SyncState>, Condvar)) {
    let (state, wake) = sync;
    let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        while s.synced == s.written && !s.closing {
            s = wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if s.synced == s.written && s.closing {
            return;
        }
        let target = s.written;
        drop(s);
        let result = file.sync_data();
        s = state.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => s.synced = s.synced.max(target),
            Err(e) => {
                s.failed = Some(e.to_string());
                s.synced = s.written; // nothing more to wait for; flush reports the failure
            }
        }
        wake.notify_all();
    }
}

impl Drop for ManifestWriter {
    fn drop(&mut self) {
        let (state, wake) = &*self.sync;
        state.lock().unwrap_or_else(|p| p.into_inner()).closing = true;
        wake.notify_all();
        if let Some(t) = self.syncer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// Cut a last line that a killed process left half-written, so the records
/// appended next start on a line of their own.
fn drop_torn_tail(file: &File, path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let len = file.metadata().map_err(|e| Error::io(path, "stat manifest", e))?.len();
    if len == 0 {
        return Ok(());
    }
    let mut reader = File::open(path).map_err(|e| Error::io(path, "open manifest", e))?;
    let mut last = [0u8; 1];
    reader.seek(SeekFrom::Start(len - 1)).and_then(|_| reader.read_exact(&mut last)).map_err(|e| Error::io(path, "read manifest", e))?;
    if last[0] == b'\n' {
        return Ok(());
    }
    // Find the end of the last whole line.
    let mut end = len;
    let mut buf = vec![0u8; 64 << 10];
    let keep = loop {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        reader.seek(SeekFrom::Start(start)).and_then(|_| reader.read_exact(&mut buf[..n])).map_err(|e| Error::io(path, "read manifest", e))?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            break start + i as u64 + 1;
        }
        if start == 0 {
            break 0;
        }
        end = start;
    };
    file.set_len(keep).map_err(|e| Error::io(path, "repair manifest", e))
}

/// Read every record of a manifest.
pub fn read(path: &Path) -> Result<Vec<Record>> {
    let file = File::open(path).map_err(|e| Error::io(path, "open manifest", e))?;
    let mut records = Vec::new();
    for_each_record(file, path, &mut |r, _| {
        records.push(r);
        Ok(())
    })?;
    Ok(records)
}

/// Call `each` with every record of the manifest `file` (at `path`) and its
/// line index. A torn last line (a process killed while appending it, before
/// its file counted as done) is not a record and is skipped; a bad line
/// anywhere else is an error naming it.
pub(crate) fn for_each_record(file: File, path: &Path, each: &mut dyn FnMut(Record, usize) -> Result<()>) -> Result<()> {
    let mut lines = BufReader::new(file).lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        let line = line.map_err(|e| Error::io(path, "read manifest", e))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(&line) {
            Ok(r) => each(r, n)?,
            Err(_) if lines.peek().is_none() => {}
            Err(e) => return Err(Error::invalid(path, format!("line {}: not a sealpipe manifest record: {e}", n + 1))),
        }
    }
    Ok(())
}
