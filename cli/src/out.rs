//! Writing to stdout and stderr without panicking on a closed pipe
//! (`sealpipe ... --json | head -1`, `... 2>&1 | head -1`).
//!
//! `println!`/`eprintln!` panic when the write fails ("failed printing to
//! stdout: Broken pipe"). Here a failed write marks that stream closed and
//! later lines to it are dropped; the run itself goes on to its end, so the
//! manifest and ledger are finished as if nobody had stopped reading, and the
//! exit status is the run's own. (ripgrep stops searching on a broken pipe;
//! sealpipe finishes instead, because stopping half-way through an encryption
//! run leaves work for the next run and nothing to gain: output is only a
//! report of work that is being done anyway.)

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Write `text` whole to stdout, unless it was found closed.
pub fn stdout(text: &str) {
    if STDOUT_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_all(text.as_bytes()).and_then(|()| out.flush()).is_err() {
        STDOUT_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Write `text` whole to stderr, unless it was found closed.
pub fn stderr(text: &str) {
    if STDERR_CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut err = std::io::stderr().lock();
    if err.write_all(text.as_bytes()).is_err() {
        STDERR_CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `println!` that never panics (see the module docs).
macro_rules! outln {
    ($($arg:tt)*) => { $crate::out::stdout(&format!("{}\n", format_args!($($arg)*))) };
}

/// `eprintln!` that never panics (see the module docs).
macro_rules! errln {
    ($($arg:tt)*) => { $crate::out::stderr(&format!("{}\n", format_args!($($arg)*))) };
}


/// A writer for the log that drops what it cannot write to a closed stderr
/// (tracing-subscriber would otherwise `eprintln!` the failure, which panics).
pub struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !STDERR_CLOSED.load(Ordering::Relaxed) && std::io::stderr().write_all(buf).is_err() {
            STDERR_CLOSED.store(true, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}
