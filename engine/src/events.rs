//! What happens, as it happens: the one stream every part of the engine
//! tells its caller through. Stores (a warning about an upload left open),
//! the pipeline (bytes done), runs (a file started, done, failed, skipped),
//! job submission (a MediaConvert job sent) and the bench (the case about
//! to run) all emit an [`Event`] into the caller's [`Events`]; the CLI
//! renders the one stream as progress bars, plain lines on stderr or JSON
//! lines on stdout. The engine never prints.
//!
//! A new kind of event is one variant here, the line that emits it, and
//! its rendering in `cli/src/report.rs`.

use std::path::Path;

use crate::error::Error;

/// One thing that happened. Borrowed: an event lives as long as the call
/// that hears it.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// More work is known: this many files and plaintext bytes (said as listing goes).
    Planned {
        /// Files.
        files: u64,
        /// Their bytes.
        bytes: u64,
    },
    /// A file is starting.
    Started {
        /// The file.
        path: &'a Path,
    },
    /// Bytes of a file went through the cipher.
    Progress {
        /// How many, since the last event.
        bytes: u64,
    },
    /// A file is done.
    Finished {
        /// The file.
        path: &'a Path,
        /// Its plaintext bytes.
        bytes: u64,
    },
    /// A file failed; the run goes on.
    Failed {
        /// The file.
        path: &'a Path,
        /// Why, with its stage and whether a re-run may help.
        error: &'a Error,
    },
    /// A file is left alone (already done, …).
    Skipped {
        /// The file.
        path: &'a Path,
        /// Why.
        reason: &'a str,
    },
    /// An entry under an input is left out on purpose (a symbolic link with
    /// `--no-follow-symlinks`): unlike a file already done, the user is told
    /// of each one.
    LeftOut {
        /// The entry.
        path: &'a Path,
        /// Why.
        reason: &'a str,
    },
    /// Something the user must know about a file (e.g. encrypted again under a new key).
    Note {
        /// The file.
        path: &'a Path,
        /// What.
        message: &'a str,
    },
    /// Something a store could not do that the user must hear of (an abort
    /// that failed: the upload stays journalled and the next run tries again;
    /// metadata that did not fit). Said where it happens, while the run goes on.
    Warning {
        /// The object or file it concerns (a URL or a path).
        location: &'a str,
        /// What.
        message: &'a str,
    },
    /// A copy of the manifest could not be stored; it is tried again at the next flush.
    ManifestNotStored {
        /// Why.
        error: &'a Error,
    },
    /// A MediaConvert job request was dealt with.
    Job {
        /// The source file the job transcodes.
        source: &'a str,
        /// The manifest record it was made from.
        record: &'a str,
        /// Its `ClientRequestToken`.
        token: &'a str,
        /// What became of it.
        outcome: JobOutcome<'a>,
    },
    /// The bench is about to take a sample.
    Sample {
        /// Samples taken so far.
        done: usize,
        /// Samples in the whole run.
        total: usize,
        /// Round (1-based).
        round: usize,
        /// Rounds.
        rounds: usize,
        /// The case about to run.
        id: &'a str,
    },
}

/// What became of one job request ([`Event::Job`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome<'a> {
    /// Sent now; the job's id.
    Submitted(&'a str),
    /// The ledger already records its job: not sent again.
    AlreadySubmitted(&'a str),
    /// An interrupted run had sent it: found by its token, not sent again.
    Found(&'a str),
    /// Refused or failed after retries: the one-line cause.
    Failed(&'a str),
}

impl JobOutcome<'_> {
    /// Its name in JSON lines.
    pub fn status(&self) -> &'static str {
        match self {
            JobOutcome::Submitted(_) => "submitted",
            JobOutcome::AlreadySubmitted(_) => "already-submitted",
            JobOutcome::Found(_) => "found",
            JobOutcome::Failed(_) => "failed",
        }
    }

    /// The job's id, when there is a job.
    pub fn job_id(&self) -> Option<&str> {
        match *self {
            JobOutcome::Submitted(id) | JobOutcome::AlreadySubmitted(id) | JobOutcome::Found(id) => Some(id),
            JobOutcome::Failed(_) => None,
        }
    }
}

/// Hears every [`Event`] of a run, from any thread.
pub trait Events: Send + Sync {
    /// `event` happened.
    fn emit(&self, event: Event<'_>);
}

impl<E: Events + ?Sized> Events for &E {
    fn emit(&self, event: Event<'_>) {
        (**self).emit(event)
    }
}

impl<E: Events + ?Sized> Events for std::sync::Arc<E> {
    fn emit(&self, event: Event<'_>) {
        (**self).emit(event)
    }
}

/// Hears nothing.
pub struct Silent;

impl Events for Silent {
    fn emit(&self, _: Event<'_>) {}
}
