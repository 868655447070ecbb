//! Everything sealpipe reads from its environment, in one place. The engine
//! reads none of it: what it is configured with, the CLI passes down.
//!
//! | variable | what it says |
//! |---|---|
//! | `SEALPIPE_KEYRING`, `XDG_CONFIG_HOME`, `HOME` | the default local keyring ([`keyring_path`]) |
//! | `AWS_MAX_ATTEMPTS` | attempts per request without `--max-attempts` ([`max_attempts`]) |
//! | `AWS_ENDPOINT_URL` | the endpoint without `--endpoint-url` ([`endpoint_url`]) |
//! | `SEALPIPE_KERNEL` | the AES kernel of every mode (vaes512, vaes256, aesni, soft), for benchmarks ([`apply_process_settings`]) |
//! | `SEALPIPE_NO_DIRECT_IO` | local outputs through the page cache, as `cp` writes ([`apply_process_settings`]) |
//! | `SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS`, `SEALPIPE_TEST_PAUSE_SKIP_COMMITS` | the tests' pause between a commit and its record ([`after_commit_pause`]) |
//!
//! The AWS SDK reads its own (credentials, region, profile, `AWS_CA_BUNDLE`, ...).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The default keyring path: `$SEALPIPE_KEYRING`, else
/// `$XDG_CONFIG_HOME/sealpipe/keyring.json`, else `~/.config/sealpipe/keyring.json`.
pub fn keyring_path() -> PathBuf {
    if let Some(p) = std::env::var_os("SEALPIPE_KEYRING") {
        return PathBuf::from(p);
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    config.join("sealpipe").join("keyring.json")
}

/// Attempts per request: `--max-attempts`, else `AWS_MAX_ATTEMPTS` (a
/// positive number), else 0 (the engine's default).
pub fn max_attempts(flag: Option<u32>) -> u32 {
    flag.or_else(|| std::env::var("AWS_MAX_ATTEMPTS").ok()?.trim().parse::<u32>().ok().filter(|&n| n > 0)).unwrap_or(0)
}

/// The endpoint: `--endpoint-url`, else `AWS_ENDPOINT_URL`.
pub fn endpoint_url(flag: Option<&String>) -> Option<String> {
    flag.cloned().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok().filter(|v| !v.trim().is_empty()))
}

/// Settings of the whole process, before any work: a forced AES kernel and
/// buffered local writes.
pub fn apply_process_settings() {
    if let Some(kernel) = std::env::var("SEALPIPE_KERNEL").ok().filter(|v| !v.trim().is_empty()) {
        sealpipe::force_kernel(&kernel);
    }
    if std::env::var_os("SEALPIPE_NO_DIRECT_IO").is_some() {
        sealpipe::buffered_writes_only();
    }
}

/// The tests' hook between an output's commit and its record: with
/// `SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS=MS`, after the first
/// `SEALPIPE_TEST_PAUSE_SKIP_COMMITS` commits (default 0), each commit says
/// so on stderr (the line a test waits on) and waits MS, so that the test
/// can kill the run at exactly that point.
pub fn after_commit_pause() -> Option<impl Fn(&str) + Sync> {
    let ms = std::env::var("SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS").ok()?.parse::<u64>().ok()?;
    let skip = std::env::var("SEALPIPE_TEST_PAUSE_SKIP_COMMITS").ok().and_then(|v| v.parse().ok()).unwrap_or(0u64);
    let commits = AtomicU64::new(0);
    Some(move |location: &str| {
        if commits.fetch_add(1, Ordering::Relaxed) >= skip {
            errln!("sealpipe: test hook: {location}: pausing {ms} ms (SEALPIPE_TEST_PAUSE_AFTER_COMMIT_MS)");
            std::thread::sleep(Duration::from_millis(ms));
        }
    })
}
