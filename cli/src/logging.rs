//! Logging with `tracing`: warnings by default (the AWS SDK's own only from -v), `-q` errors only, `-v` info,
//! `-vv` (or `--log-level debug`) debug, which includes the AWS SDK's own
//! tracing. Never trace: at trace level the SDK logs whole requests and
//! responses. At debug it logs request metadata; credentials are redacted by
//! the SDK's `Debug` impls (`Credentials`, KMS `Plaintext` fields print as
//! "** redacted **"), and sealpipe logs no key material.
//! Goes to stderr, or appended to `--log-file`.

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Mutex;

use anyhow::Context as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

use crate::args::{LogLevel, OutputArgs};

/// The level the flags ask for.
pub fn level(o: &OutputArgs) -> LevelFilter {
    match (o.log.log_level, o.log.quiet, o.log.verbose) {
        (Some(LogLevel::Error), ..) => LevelFilter::ERROR,
        (Some(LogLevel::Warn), ..) => LevelFilter::WARN,
        (Some(LogLevel::Info), ..) => LevelFilter::INFO,
        (Some(LogLevel::Debug), ..) => LevelFilter::DEBUG,
        (None, true, _) => LevelFilter::ERROR,
        (None, false, 0) => LevelFilter::WARN,
        (None, false, 1) => LevelFilter::INFO,
        (None, false, _) => LevelFilter::DEBUG,
    }
}

/// Install the subscriber. Our own events at `level`; the AWS SDK's only when asked for
/// (warnings with -v, everything up to debug with -vv): sealpipe reports the failures that
/// matter itself, one line each, and the SDK's warnings (a missing config file) are noise.
pub fn init(o: &OutputArgs) -> anyhow::Result<()> {
    let level = level(o);
    let others = if level >= LevelFilter::DEBUG {
        LevelFilter::DEBUG
    } else if level >= LevelFilter::INFO {
        LevelFilter::WARN
    } else {
        LevelFilter::OFF
    };
    let filter = Targets::new().with_target("sealpipe", level).with_default(others);
    // No internal-error reports: tracing-subscriber `eprintln!`s a failed write, which panics on a closed stderr.
    let layer = tracing_subscriber::fmt::layer().with_target(true).log_internal_errors(false);
    match &o.log.log_file {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("--log-file {}", path.display()))?;
            let file = Mutex::new(file);
            let writer = move || Redact(file.lock().unwrap_or_else(|p| p.into_inner()).try_clone().expect("log file handle"));
            tracing_subscriber::registry().with(layer.with_ansi(false).with_writer(writer).with_filter(filter)).try_init().ok();
        }
        None => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            tracing_subscriber::registry().with(layer.with_ansi(ansi).with_writer(|| Redact(crate::out::Stderr)).with_filter(filter)).try_init().ok();
        }
    }
    Ok(())
}

/// A log writer that blanks the access key id the SDK's debug output shows
/// beside its already redacted secret (`access_key_id: "AKIA..."`).
struct Redact<W: Write>(W);

impl<W: Write> Write for Redact<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// `text` with the value of every `access_key_id: "..."` (and `session_token`) replaced.
fn redact(text: &str) -> String {
    let mut out = text.to_string();
    for field in ["access_key_id: \"", "session_token: \"", "session_token: Some(\""] {
        let mut from = 0;
        while let Some(at) = out[from..].find(field) {
            let start = from + at + field.len();
            let Some(len) = out[start..].find('"') else { break };
            out.replace_range(start..start + len, "** redacted **");
            from = start + "** redacted **".len() + 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn access_key_ids_are_redacted() {
        let line = r#"Credentials { provider_name: "Env", access_key_id: "AKIAXXXX", secret_access_key: "** redacted **", session_token: Some("tok") }"#;
        let got = super::redact(line);
        assert!(!got.contains("AKIAXXXX") && !got.contains("tok\""), "{got}");
        assert!(got.contains("provider_name: \"Env\""), "{got}");
    }
}
