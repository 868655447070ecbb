//! Errors at the engine boundary.
//!
//! Every error that concerns a file names it, and renders as one line:
//! `<path>: <cause>`. [`Error::retry`] says whether trying again can help
//! and [`Error::stage`] what the run was doing, so callers (retry loops, the
//! summary, JSON events) never parse messages. A failed file becomes a
//! [`Failure`], which keeps both.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Result alias used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, and with which file.
#[derive(Debug)]
pub enum Error {
    /// An operating-system I/O error on a file (`op` says what was attempted).
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What was being done: "open", "read", "write", "rename", ...
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The input cannot be processed as asked (too large for GCM, truncated
    /// ciphertext, output inside the input tree, ...).
    Invalid {
        /// The file concerned.
        path: PathBuf,
        /// One-line cause.
        reason: String,
    },
    /// A GCM tag did not verify: the ciphertext, key, IV or tag is wrong.
    Authentication {
        /// The file concerned.
        path: PathBuf,
    },
    /// CBC padding is malformed after decryption: wrong key/IV or corrupted data.
    Padding {
        /// The file concerned.
        path: PathBuf,
    },
    /// The decrypted plaintext does not match the SHA-256 recorded at encryption.
    Digest {
        /// The file concerned.
        path: PathBuf,
        /// The algorithm ("SHA-256", "BLAKE3", "CRC-64/NVME").
        alg: &'static str,
        /// Digest recorded in the manifest (hex).
        expected: String,
        /// Digest of what was decrypted (hex).
        actual: String,
    },
    /// The final output already exists and overwriting was not allowed.
    Exists {
        /// The existing output.
        path: PathBuf,
    },
    /// A key, IV or key-provider problem not tied to one input file
    /// (keyring unreadable, wrong key length, wrapped key does not unwrap, ...).
    Key(String),
    /// The key-encryption key cannot be used at all (it does not exist, is
    /// disabled, is not for encryption, or the caller may not use it). Every
    /// file would fail the same way, so a run stops at the first one.
    KeyProvider(String),
    /// Parameters that contradict each other or the format contract.
    Usage(String),
    /// Another run of the same job holds its lease (`run/lease.rs`): this
    /// run did nothing. Trying again once that run is done will succeed.
    Held {
        /// The job's manifest (a path or URL).
        path: PathBuf,
        /// The holder, as its lease names it: "host H, pid P, since T".
        by: String,
    },
    /// A request to a remote service (S3, KMS, MediaConvert) failed. Its
    /// stage and retry are said where it is made: the retry by the one
    /// classifier that also decides what the SDK retries (`crate::retry`).
    Remote {
        /// The file or object concerned; `None` for a request about no one
        /// file (a KMS key), until [`Error::for_file`] names the file.
        path: Option<PathBuf>,
        /// One-line cause after the path: the operation and the service's
        /// code and message, or the transport's failure.
        message: String,
        /// What the run was doing.
        stage: Stage,
        /// Whether the same request may succeed later (throttling, 5xx, timeouts, resets).
        retry: Retry,
    },
    /// The operating system failed a request about no one file (its random
    /// generator): nothing a run of sealpipe can change.
    System {
        /// One-line cause.
        reason: String,
        /// What the run was doing.
        stage: Stage,
    },
    /// A task or thread of the engine ended without an answer: it panicked
    /// (a bug), or the runtime it ran on was shutting down.
    Internal {
        /// One-line cause.
        reason: String,
        /// What the run was doing.
        stage: Stage,
        /// Yes when the task was cancelled (the process is stopping), no when it panicked.
        retry: Retry,
    },
    /// An error about no one file (a key, a usage error) attributed to the
    /// file it happened with ([`Error::for_file`]): the path is added, the
    /// error's own stage, retry and message are kept.
    Located {
        /// The file concerned.
        path: PathBuf,
        /// The error, as it was made.
        error: Box<Error>,
    },
}

/// Whether trying the same operation again can help.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Retry {
    /// Transient: throttling, a 5xx answer, a timeout, a reset connection, an interrupted read.
    Yes,
    /// Permanent: bad input, a refused request, a wrong key; repeating changes nothing.
    No,
}

/// What the run was doing with a file when it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Finding inputs, or deciding what to do with one (listing, parameters, the ledger).
    Plan,
    /// Getting or unwrapping a data key.
    Key,
    /// Reading the source.
    Read,
    /// Writing or committing the output.
    Write,
    /// Checking what was decrypted (tag, padding, digest).
    Verify,
}

/// One file that failed, as a run reports it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Failure {
    /// The file or object.
    pub path: PathBuf,
    /// What the run was doing.
    pub stage: Stage,
    /// Whether a re-run may succeed without any change.
    pub retry: Retry,
    /// The one-line message (`<path>: <cause>`).
    pub message: String,
}

impl Failure {
    /// The failure of `path` with `error`.
    pub fn new(path: &Path, error: &Error) -> Self {
        Failure { path: path.to_path_buf(), stage: error.stage(), retry: error.retry(), message: error.to_string() }
    }
}

impl PartialOrd for Failure {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Failure {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (&self.path, &self.message).cmp(&(&other.path, &other.message))
    }
}

impl Error {
    pub(crate) fn io(path: impl AsRef<Path>, op: &'static str, source: io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), op, source }
    }

    pub(crate) fn invalid(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Invalid { path: path.as_ref().to_path_buf(), reason: reason.into() }
    }

    /// A remote request about `path` that failed: `message` follows the path.
    #[cfg_attr(not(feature = "aws"), allow(dead_code))] // the remote stores are behind `aws`
    pub(crate) fn remote(path: impl AsRef<Path>, stage: Stage, retry: Retry, message: impl Into<String>) -> Self {
        Error::Remote { path: Some(path.as_ref().to_path_buf()), message: message.into(), stage, retry }
    }

    /// The OS random generator failed while the run was at `stage`.
    pub(crate) fn random(stage: Stage, err: impl fmt::Display) -> Self {
        Error::System { reason: format!("cannot read the OS random generator: {err}"), stage }
    }

    /// The file this error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Io { path, .. }
            | Error::Invalid { path, .. }
            | Error::Authentication { path }
            | Error::Padding { path }
            | Error::Digest { path, .. }
            | Error::Exists { path }
            | Error::Held { path, .. }
            | Error::Located { path, .. } => Some(path),
            Error::Remote { path, .. } => path.as_deref(),
            Error::Key(_) | Error::KeyProvider(_) | Error::Usage(_) | Error::System { .. } | Error::Internal { .. } => None,
        }
    }

    /// Whether repeating the same operation may succeed.
    pub fn retry(&self) -> Retry {
        match self {
            Error::Io { source, .. }
                if matches!(
                    source.kind(),
                    io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::ConnectionReset
                ) =>
            {
                Retry::Yes
            }
            Error::Remote { retry, .. } | Error::Internal { retry, .. } => *retry,
            Error::Located { error, .. } => error.retry(),
            Error::Held { .. } => Retry::Yes,
            _ => Retry::No,
        }
    }

    /// What was being done when this error happened.
    pub fn stage(&self) -> Stage {
        match self {
            Error::Io { op, .. } => match *op {
                "open" | "read" | "map" | "stat" | "open list file" | "open inventory" | "read inventory manifest" => Stage::Read,
                _ => Stage::Write,
            },
            Error::Remote { stage, .. } | Error::System { stage, .. } | Error::Internal { stage, .. } => *stage,
            Error::Located { error, .. } => error.stage(),
            Error::Exists { .. } => Stage::Write,
            Error::Authentication { .. } | Error::Padding { .. } | Error::Digest { .. } => Stage::Verify,
            Error::Key(_) | Error::KeyProvider(_) => Stage::Key,
            Error::Invalid { .. } | Error::Usage(_) | Error::Held { .. } => Stage::Plan,
        }
    }

    /// Attribute an error about no one file to `path`, for batch reports:
    /// only the path is added (its stage, retry and message stay as made).
    /// An error that names a file already, and a key-encryption key that
    /// cannot be used at all ([`Error::KeyProvider`], which ends the run), are kept as they are.
    pub fn for_file(self, path: &Path) -> Self {
        match self {
            Error::Remote { path: None, message, stage, retry } => Error::Remote { path: Some(path.to_path_buf()), message, stage, retry },
            e @ (Error::Key(_) | Error::Usage(_) | Error::System { .. } | Error::Internal { .. }) => {
                Error::Located { path: path.to_path_buf(), error: Box::new(e) }
            }
            other => other,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, op, source } => {
                let cause = match source.kind() {
                    io::ErrorKind::NotFound => "no such file or directory".to_string(),
                    io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                    _ => source.to_string(),
                };
                write!(f, "{}: cannot {op}: {cause}", path.display())
            }
            Error::Invalid { path, reason } => write!(f, "{}: {reason}", path.display()),
            Error::Authentication { path } => write!(
                f,
                "{}: GCM authentication tag does not verify (wrong key or IV, or the ciphertext was modified); nothing written",
                path.display()
            ),
            Error::Padding { path } => write!(
                f,
                "{}: bad CBC padding after decryption (wrong key or IV, or corrupted ciphertext)",
                path.display()
            ),
            Error::Digest { path, alg, expected, actual } => write!(
                f,
                "{}: plaintext {alg} mismatch: manifest has {expected}, decrypted data has {actual}",
                path.display()
            ),
            Error::Exists { path } => {
                write!(f, "{}: output already exists (use --force to overwrite)", path.display())
            }
            Error::Key(reason) | Error::KeyProvider(reason) => write!(f, "{reason}"),
            Error::Usage(reason) => write!(f, "{reason}"),
            Error::Remote { path: Some(path), message, .. } => write!(f, "{}: {message}", path.display()),
            Error::Remote { path: None, message, .. } => write!(f, "{message}"),
            Error::System { reason, .. } | Error::Internal { reason, .. } => write!(f, "{reason}"),
            Error::Located { path, error } => write!(f, "{}: {error}", path.display()),
            Error::Held { path, by } => write!(f, "{}: another run of this job holds it ({by}); wait for it to finish", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_attached_adds_only_the_path() {
        let file = Path::new("enc/a.mp4");
        // A key error keeps its stage (not the plan's), its retry and its message.
        let e = Error::Key("the data key was wrapped by local-keyring local:1, not by local-keyring local:2".into()).for_file(file);
        assert_eq!((e.stage(), e.retry(), e.path()), (Stage::Key, Retry::No, Some(file)));
        assert_eq!(e.to_string(), "enc/a.mp4: the data key was wrapped by local-keyring local:1, not by local-keyring local:2");
        // A remote error about no one file (KMS) gets the path, keeps the rest.
        let kms = Error::Remote { path: None, message: "KMS key k: KMS Decrypt failed: x".into(), stage: Stage::Key, retry: Retry::Yes };
        let e = kms.for_file(file);
        assert_eq!((e.stage(), e.retry()), (Stage::Key, Retry::Yes));
        assert_eq!(e.to_string(), "enc/a.mp4: KMS key k: KMS Decrypt failed: x");
        // One that names its file already is unchanged; so is a key that cannot be used at all.
        let e = Error::remote("s3://b/k", Stage::Read, Retry::Yes, "cannot open: SlowDown").for_file(file);
        assert_eq!((e.stage(), e.retry(), e.to_string().as_str()), (Stage::Read, Retry::Yes, "s3://b/k: cannot open: SlowDown"));
        assert!(matches!(Error::KeyProvider("refused".into()).for_file(file), Error::KeyProvider(_)));
    }

    #[test]
    fn system_and_task_failures_have_kinds_of_their_own() {
        let e = Error::random(Stage::Write, "ENOSYS");
        assert_eq!((e.stage(), e.retry(), e.path()), (Stage::Write, Retry::No, None));
        assert_eq!(e.to_string(), "cannot read the OS random generator: ENOSYS");
        let cancelled = Error::Internal { reason: "S3 read task failed: cancelled".into(), stage: Stage::Read, retry: Retry::Yes };
        let e = cancelled.for_file(Path::new("s3://b/k"));
        assert_eq!((e.stage(), e.retry()), (Stage::Read, Retry::Yes));
        assert_eq!(e.to_string(), "s3://b/k: S3 read task failed: cancelled");
    }
}
