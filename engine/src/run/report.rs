//! What a run tells its caller at its end: the totals ([`Summary`]). What
//! happens as it goes is the event stream ([`crate::events`]).

use crate::error::Failure;

/// Totals of a run.
#[derive(Debug, Default)]
pub struct Summary {
    /// Files that completed (with `dry_run`: that would be encrypted).
    pub files: u64,
    /// Input bytes of the completed files (with `dry_run`: that would be encrypted).
    pub bytes: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Files that failed: which, at what stage, whether a re-run may help, and the one-line cause.
    pub failures: Vec<Failure>,
    /// Files left alone because the ledger records them done (or listed twice).
    pub skipped: u64,
    /// Their bytes.
    pub skipped_bytes: u64,
    /// Entries under input folders left out on purpose (symbolic links with
    /// `--no-follow-symlinks`), each emitted as [`Event::LeftOut`](crate::events::Event::LeftOut).
    pub left_out: u64,
    /// Requests to the key provider (GenerateDataKey, Encrypt).
    pub key_requests: u64,
    /// Files listed but not attempted because `max_errors` stopped the run.
    pub not_attempted: u64,
    /// `max_errors` stopped the run early.
    pub stopped: bool,
    /// Leftovers of an interrupted run cleaned up first (uploads aborted, temporary files).
    pub cleaned: usize,
    /// Nothing was changed: the counts are what a run would do.
    pub dry_run: bool,
    /// Archived objects left alone because they cannot be read now
    /// (GLACIER, DEEP_ARCHIVE, not restored), each reported with its class.
    pub archived: u64,
    /// Their bytes.
    pub archived_bytes: u64,
    /// Of them, restores this run asked for (`--restore`).
    pub restores_requested: u64,
    /// Of them, restores already in progress.
    pub restores_in_progress: u64,
    /// Verified files whose records carry no digest (`--digest none`): they
    /// decrypt (GCM tag, CBC padding) and have the recorded length, but
    /// their content was compared with nothing.
    pub unchecked_content: u64,
    /// The caller's stop ([`super::encrypt::EncryptJob::stop`]) left files
    /// unstarted: what was in flight finished and is recorded; a re-run does the rest.
    pub interrupted: bool,
}

impl Summary {
    /// Throughput in GB/s (10^9 bytes per second).
    pub fn gb_per_s(&self) -> f64 {
        if self.seconds > 0.0 {
            self.bytes as f64 / self.seconds / 1e9
        } else {
            0.0
        }
    }

    /// Whether `max_errors` stopped the run early.
    pub fn stopped_early(&self) -> bool {
        self.stopped
    }
}

