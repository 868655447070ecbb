//! Errors at the engine boundary.
//!
//! Every error that concerns a file names it, and renders as one line:
//! `<path>: <cause>`. [`Error::is_retryable`] says whether trying again can
//! help, so callers never parse messages.

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
    /// Parameters that contradict each other or the format contract.
    Usage(String),
}

impl Error {
    pub(crate) fn io(path: impl AsRef<Path>, op: &'static str, source: io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), op, source }
    }

    pub(crate) fn invalid(path: impl AsRef<Path>, reason: impl Into<String>) -> Self {
        Error::Invalid { path: path.as_ref().to_path_buf(), reason: reason.into() }
    }

    /// The file this error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Io { path, .. }
            | Error::Invalid { path, .. }
            | Error::Authentication { path }
            | Error::Padding { path }
            | Error::Digest { path, .. }
            | Error::Exists { path } => Some(path),
            Error::Key(_) | Error::Usage(_) => None,
        }
    }

    /// Whether repeating the same operation may succeed (transient I/O).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted
                    | io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::ConnectionReset
            ),
            _ => false,
        }
    }

    /// Re-attribute a path-less error (key/usage) to a file, for batch reports.
    pub fn for_file(self, path: &Path) -> Self {
        match self {
            Error::Key(reason) | Error::Usage(reason) => Error::invalid(path, reason),
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
            Error::Digest { path, expected, actual } => write!(
                f,
                "{}: plaintext SHA-256 mismatch: manifest has {expected}, decrypted data has {actual}",
                path.display()
            ),
            Error::Exists { path } => {
                write!(f, "{}: output already exists (use --force to overwrite)", path.display())
            }
            Error::Key(reason) => write!(f, "{reason}"),
            Error::Usage(reason) => write!(f, "{reason}"),
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
