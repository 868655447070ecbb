//! One file's way from its source to its sink, the same whichever path
//! encrypts it (one file at a time, [`Run::encrypt_one`], or eight CBC files
//! at once on the multi-buffer lanes, [`schedule::Files`]): its source
//! opened, its length checked, room for its output, its key and IV, the
//! envelope and properties its output is created with, the pipeline, the
//! commit and the record.

use std::path::Path;
use std::sync::Arc;

use super::{Entry, EncryptJob, Run};
use crate::cipher::Sealer;
use crate::error::{Error, Result};
use crate::events::{Event, Events};
use crate::format::digest::DigestAlg;
use crate::format::envelope::{Envelope, EnvelopeInput};
use crate::format::record::{Record, RecordInput};
use crate::format::Iv;
use crate::pipeline;
use crate::run::keys::{Keys, Material};
use crate::run::reencrypt::check_digest;
use crate::run::schedule;
use crate::store::local::Input;
use crate::store::{About, Committed, PendingOutput, Properties, Source, Vacancy};

impl Run<'_, '_> {
    /// One file on its own (any mode; a re-encryption too): sealed through
    /// the pipeline into its output, committed, and its record made.
    pub(super) fn encrypt_one(&self, f: &Entry) -> Result<Record> {
        let job = self.job;
        let input: Box<dyn Source> = match &f.remote {
            Some(item) => match job.stores.remote(&item.url)? {
                Some(store) => store.open(item)?,
                None => return Err(Error::invalid(&f.source, "no store for this URL")),
            },
            None => Box::new(open_planned(f, self.out_real)?),
        };
        let unsealing = job.unseal.map(|u| u.unsealing(input.as_ref())).transpose()?;
        let plain_len = unsealing.as_ref().map_or(input.len(), |u| u.plain_len);
        let replace = self.room(f, plain_len)?;
        let keys = self.keys()?;
        let material: Arc<Material> = keys.for_file(plain_len).map_err(|e| self.unwritten(f, e))?;
        let iv = self.iv(&material)?;
        // The key is made (wrapped) by begin_output: only then can the sealer have it.
        let mut output = self.begin_output(f, input.as_ref(), plain_len, replace, &material, &iv)?;
        let sealer = Sealer::new(job.mode, material.key(), Iv::from_slice(iv.as_bytes())?, job.tuning.chunk);
        let sealed = match unsealing {
            Some(u) => {
                let check = u.expected.as_ref().map(|d| d.alg());
                let sealed = pipeline::reseal(input.as_ref(), u.mode, u.opener, u.plain_len, sealer, output.as_mut(), &job.tuning, job.digest, check, self.events)?;
                check_digest(input.path(), u.expected.as_ref(), &sealed.digests)?;
                sealed
            }
            None => pipeline::seal(input.as_ref(), sealer, output.as_mut(), &job.tuning, job.digest, self.events)?,
        };
        let version = input.version();
        let committed = output.commit()?;
        if let Some(hook) = job.after_commit {
            hook(&committed.location);
        }
        let mut record = file_record(job, keys, f, &material, &iv, &sealed, committed)?;
        record.source_version_id = version;
        Ok(record)
    }

    /// The first steps of every file's way, whichever path encrypts it: its
    /// plaintext length checked (as opened now, not as listed), then room for
    /// its output, so that one that exists refuses the file before its key
    /// is asked for (no KMS call). Whether the output replaces one.
    fn room(&self, f: &Entry, plain_len: u64) -> Result<bool> {
        self.job.mode.check_plaintext_len(plain_len).map_err(|r| Error::invalid(&f.source, r))?;
        self.make_room(f)
    }

    /// The IV of a file under `material`: `--iv` when given, else a fresh one
    /// of the length the target wants for the mode.
    fn iv(&self, material: &Material) -> Result<Iv> {
        match &self.job.iv {
            Some(bytes) => Iv::from_slice(bytes),
            None => material.fresh_iv(self.job.target.default_iv_len(self.job.mode)),
        }
    }

    /// The last steps before the first byte, on every path: the data key
    /// wrapped (its KMS request, if still to be made, as for the first file
    /// of a multi-buffer group: a refusal leaves no journal line, see
    /// [`Self::unwritten`]), the envelope and properties, and the pending
    /// output created.
    fn begin_output(&self, f: &Entry, input: &dyn Source, plain_len: u64, replace: bool, material: &Material, iv: &Iv) -> Result<Box<dyn PendingOutput>> {
        let job = self.job;
        self.keys()?.wrapped(material).map_err(|e| self.unwritten(f, e))?;
        let envelope = self.envelope(f, material, iv, plain_len)?;
        let properties = match input.properties(job.copy_props) {
            Some(read) => read?,
            None => self.properties(f)?,
        };
        let about = About { source: &f.name, envelope: &envelope, properties: &properties };
        job.destination.create(&f.relative, job.mode.sealed_len(plain_len), replace, Some(&about))
    }

    /// Whether `f`'s output may be written, and whether it then replaces
    /// what is there: an output of this job whose record was lost (its
    /// envelope says so) is replaced, saying so; any other existing output
    /// refuses the file ([`Error::Exists`]).
    fn make_room(&self, f: &Entry) -> Result<bool> {
        let output = self.job.destination.location(&f.relative);
        let ours = |e: &Envelope| e.is_of_job(&self.job_id, &f.name, &output);
        match self.job.destination.vacant(&f.relative, &ours, f.replace)? {
            Vacancy::Unrecorded => {
                self.events.emit(Event::Note { path: &f.source, message: "an earlier run of this job wrote this output and its record was lost (its machine with it); encrypting it again under a new key" });
                Ok(true)
            }
            Vacancy::Free => Ok(f.replace),
        }
    }

    /// The properties `f`'s output gets from its source: an S3 source's
    /// (as `copy_props` says), a local file's guessed Content-Type.
    fn properties(&self, f: &Entry) -> Result<Properties> {
        match &f.remote {
            Some(item) => match self.job.stores.remote(&item.url)? {
                Some(store) => store.properties(&item.url, self.job.copy_props),
                None => Ok(Properties::default()),
            },
            None => Ok(crate::store::local::properties(&f.source)),
        }
    }

    /// The envelope `f`'s output carries: it stays decryptable without any manifest.
    fn envelope(&self, f: &Entry, material: &Material, iv: &Iv, plain_len: u64) -> Result<Envelope> {
        let job = self.job;
        let key_id = job.provider.key_id()?;
        Ok(Envelope::new(EnvelopeInput {
            source: &f.name,
            job: &self.job_id,
            output: &job.destination.location(&f.relative),
            mode: job.mode,
            bits: material.key().bits(),
            iv,
            plain_len,
            key_md5: material.key().md5_base64(),
            target: job.target,
            key_source: material.source,
            provider: job.provider.name(),
            key_id: &key_id,
            wrapped: self.keys()?.wrapped(material)?,
        }))
    }

    /// A file that failed before a byte of its output was written (its key
    /// was refused), its pending output (if any) already discarded: its journal line
    /// goes too, so a run stopped by an unusable key leaves no journal naming
    /// outputs that were never created (finding 9). A file replacing an
    /// output keeps its line: an earlier run's write may still land there.
    fn unwritten(&self, f: &Entry, e: Error) -> Error {
        if !f.replace {
            self.ledger.dropped(&self.job.destination.location(&f.relative));
        }
        e
    }

}

impl schedule::Files for Run<'_, '_> {
    fn open(&self, file: &Entry, material: &Material) -> Result<(Box<dyn Source>, Box<dyn PendingOutput>, Iv)> {
        let input = open_planned(file, self.out_real)?;
        let replace = self.room(file, input.len())?;
        let iv = self.iv(material)?;
        // The group's key is generated (or a supplied one wrapped) by the first file that gets this far.
        let output = self.begin_output(file, &input, input.len(), replace, material, &iv)?;
        Ok((Box::new(input), output, iv))
    }

    fn done(&self, file: &Entry, material: &Material, result: Result<(pipeline::Sealed, Committed, Iv)>) {
        let record = result.and_then(|(sealed, committed, iv)| file_record(self.job, self.keys()?, file, material, &iv, &sealed, committed));
        self.settle(file, record);
    }

    fn failed(&self, file: &Entry, error: Error) {
        self.settle(file, Err(error));
    }

    fn events(&self) -> &dyn Events {
        self.events
    }

    fn window(&self) -> usize {
        self.job.tuning.window
    }

    fn digest(&self) -> DigestAlg {
        self.job.digest
    }
}

/// Open a planned local file, refusing one whose output would replace it.
fn open_planned(f: &Entry, out_real: Option<&Path>) -> Result<Input> {
    if out_real.is_some_and(|out| Path::new(&f.name) == out.join(&f.relative)) {
        return Err(Error::invalid(&f.source, "output would overwrite the source; choose another --out"));
    }
    Input::open(&f.source)
}

/// The manifest record of a file sealed and committed.
fn file_record(job: &EncryptJob<'_>, keys: &Keys<'_>, f: &Entry, material: &Material, iv: &Iv, sealed: &pipeline::Sealed, committed: Committed) -> Result<Record> {
    let output_version_id = committed.version_id.clone();
    let file_input = match &job.file_input_prefix {
        Some(prefix) => format!("{prefix}{}", f.relative.to_string_lossy().replace('\\', "/")),
        None => committed.location.clone(),
    };
    let mut record = Record::new(RecordInput {
        source: &f.name,
        output: committed.location,
        etag: committed.etag,
        checksum: committed.checksum,
        server_side_encryption: committed.server_side_encryption,
        file_input,
        mode: job.mode,
        key_bits: material.key().bits(),
        key_md5: material.key().md5_base64(),
        key_source: material.source,
        key_provider: job.provider.name(),
        key_id: job.provider.key_id()?,
        kms_region: job.provider.kms_region()?,
        target: job.target,
        wrapped: keys.wrapped(material)?,
        iv,
        plain_len: sealed.plain_len,
        cipher_len: sealed.cipher_len,
        digest: sealed.digest(),
    });
    record.output_version_id = output_version_id;
    Ok(record)
}
