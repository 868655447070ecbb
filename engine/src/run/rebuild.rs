//! Rebuilding a manifest from the envelopes outputs carry: every object
//! under a destination prefix that holds a sealpipe envelope becomes a
//! record again, so losing every copy of a manifest loses no key.
//!
//! A rebuilt record has everything the original had but the plaintext
//! digest (an envelope is written before the bytes are, so it cannot hold
//! one): it says `{"alg": "none"}`, and `verify` of it checks that each
//! output decrypts, its GCM tag or CBC padding and its length, and says
//! that content was not compared.

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;

use super::manifest::ManifestWriter;
use super::report::Summary;
use crate::events::{Event, Events};
use crate::error::{Error, Failure, Result};
use crate::store::{Listed, Stamped, Store};

/// Objects asked for their envelopes at once (one `HeadObject` each).
const BATCH: usize = 256;

/// Write to `manifest` a record for every object under `prefix` in `store`
/// that carries an envelope. Objects without one are left out, said one by
/// one; an envelope that does not parse, or names another record than this
/// object's, fails that object alone.
pub fn rebuild(store: &dyn Store, prefix: &str, manifest: &ManifestWriter, events: &dyn Events) -> Result<Summary> {
    let started = Instant::now();
    let mut summary = Summary::default();
    let mut batch: Vec<Listed> = Vec::with_capacity(BATCH);
    let mut fatal: Option<Error> = None;
    let take = |batch: &mut Vec<Listed>, summary: &mut Summary| -> Result<()> {
        let found: Vec<(Listed, Result<Option<Stamped>>)> = batch.par_drain(..).map(|l| {
            let stamped = store.envelope(&l.url);
            (l, stamped)
        }).collect();
        for (listed, stamped) in found {
            let path = PathBuf::from(&listed.url);
            match stamped.and_then(|s| s.map(|s| record_of(&listed, s)).transpose()) {
                Ok(Some(record)) => {
                    manifest.write(&record)?;
                    summary.files += 1;
                    summary.bytes += record.plaintext_size;
                    events.emit(Event::Finished { path: &path, bytes: record.plaintext_size });
                }
                Ok(None) => {
                    summary.left_out += 1;
                    events.emit(Event::LeftOut { path: &path, reason: "carries no sealpipe envelope" });
                }
                Err(e) => {
                    let e = e.for_file(&path);
                    events.emit(Event::Failed { path: &path, error: &e });
                    summary.failures.push(Failure::new(&path, &e));
                }
            }
        }
        Ok(())
    };
    store.list(prefix, &mut |listed| {
        if fatal.is_some() {
            return;
        }
        batch.push(listed);
        if batch.len() >= BATCH {
            if let Err(e) = take(&mut batch, &mut summary) {
                fatal = Some(e);
            }
        }
    })?;
    if let Some(e) = fatal {
        return Err(e);
    }
    take(&mut batch, &mut summary)?;
    manifest.flush()?;
    summary.failures.sort();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The record an object's envelope stands for.
fn record_of(listed: &Listed, stamped: Stamped) -> Result<crate::format::record::Record> {
    let path = Path::new(&listed.url);
    // Without its source's name (too long to fit beside the envelope) the record names none.
    let source = stamped.source.unwrap_or_default();
    if !source.is_empty() && !stamped.envelope.is_for(&source, &listed.url) {
        return Err(Error::invalid(
            path,
            format!("its envelope names another record than {source} -> {} (an object copied from elsewhere?); left out", listed.url),
        ));
    }
    stamped.envelope.record(&source, &listed.url, stamped.size, Some(stamped.etag))
}
