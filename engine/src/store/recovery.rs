//! Recovery, a capability a [`Destination`](super::Destination) may have
//! ([`Destination::recovery`](super::Destination::recovery)): a store that
//! opens something on the way to an output that outlives a crash and is
//! billed while open (S3's multipart uploads) writes each one ahead to the
//! run's [`Journal`] before the request that opens it, aborts what is still
//! open when the process is interrupted, and lets the next run abort by id
//! what a killed run's journal names. A store whose outputs are simply
//! dropped when unfinished (local files) has none.
//!
//! What the store opens is named by opaque ids (S3: upload ids): the
//! journal keeps them, and gives them back to the same kind of store.

use std::path::Path;
use std::sync::Arc;

use crate::error::Result;

/// What a destination that opens resources outliving a crash can do about them.
pub trait Recovery: Sync {
    /// Write ahead to `journal` what this destination is about to open from
    /// now on; `None` stops it.
    fn set_journal(&self, journal: Option<Arc<dyn Journal>>);
    /// Close what a run's journal names for `relative`: the ids it opened
    /// (`opened`), and, where it sent a create whose duplicates were never
    /// checked (`existing`: what of that output was open before it), every
    /// other one of exactly that output. By id only: no clock decides.
    fn abort_journalled(&self, relative: &Path, opened: &[String], existing: Option<&[String]>) -> Cleaned;
    /// What to call when the process is interrupted (Ctrl-C, SIGTERM) so
    /// nothing stays open and billed: it aborts what is in progress and
    /// returns how many.
    fn on_interrupt(&self) -> Box<dyn Fn() -> usize + Send + Sync>;
}

/// What [`Recovery::abort_journalled`] did.
#[derive(Debug, Default)]
pub struct Cleaned {
    /// Aborted now.
    pub aborted: usize,
    /// Ids that are closed (aborted now, or already gone).
    pub closed: Vec<String>,
    /// What of the output was open was listed and every one not open
    /// before the create was aborted (nothing left to look for).
    pub settled: bool,
    /// What could not be done, one line each (the store says each as an
    /// [`Event::Warning`](crate::events::Event::Warning); the ids stay journalled).
    pub failed: Vec<String>,
}

/// The run's journal as a destination writes to it: what it is about to
/// open, before the request that opens it, and what it closed.
pub trait Journal: Send + Sync {
    /// A create of something (S3: a multipart upload) for `location` is
    /// about to be sent; `existing` are the ids of those of it open before.
    fn creating(&self, location: &str, existing: &[String]) -> Result<()>;
    /// `id` of `location` is open (before anything is sent into it).
    fn opened(&self, location: &str, id: &str) -> Result<()>;
    /// `id` is completed or aborted.
    fn closed(&self, location: &str, id: &str);
    /// Everything of `location` other than the journalled ids is known to
    /// be closed (or never existed): nothing to look for any more.
    fn settled(&self, location: &str);
}
