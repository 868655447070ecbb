//! Logging with `tracing`: warnings by default (the AWS SDK's own only from -v), `-q` errors only, `-v` info,
//! `-vv` (or `--log-level debug`) debug, which includes the AWS SDK's own
//! tracing. Never trace: at trace level the SDK logs whole requests and
//! responses. At debug it logs request metadata; credentials are redacted by
//! the SDK's `Debug` impls (`Credentials`, KMS `Plaintext` fields print as
//! "** redacted **"), and sealpipe logs no key material.
//! Goes to stderr, or appended to `--log-file`.

use std::fs::OpenOptions;
use std::sync::Mutex;

use anyhow::Context as _;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

use crate::{LogLevel, OutputArgs};

/// The level the flags ask for.
pub fn level(o: &OutputArgs) -> LevelFilter {
    match (o.log_level, o.quiet, o.verbose) {
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
    let layer = tracing_subscriber::fmt::layer().with_target(true);
    match &o.log_file {
        Some(path) => {
            let file = OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("--log-file {}", path.display()))?;
            tracing_subscriber::registry().with(layer.with_ansi(false).with_writer(Mutex::new(file)).with_filter(filter)).try_init().ok();
        }
        None => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            tracing_subscriber::registry().with(layer.with_ansi(ansi).with_writer(std::io::stderr).with_filter(filter)).try_init().ok();
        }
    }
    Ok(())
}
