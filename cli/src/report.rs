//! Rendering a run for people and machines: indicatif bars on a terminal,
//! one line per failure on stderr, and a summary (text, or JSON with `--json`).
//!
//! With `--json`, `encrypt` also prints one JSON object per line on stdout
//! for every file as it happens (`"event"`: `started`, `done`, `failed`
//! with its `error`, `skipped` with its `reason`, `note` with its
//! `message`), and the summary is the last line (`"event": "summary"`).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sealpipe::run::report::{Reporter, Summary};
use sealpipe::Error;

/// Progress bars (bytes and files) when stdout is a terminal; nothing otherwise.
pub struct Progress {
    bars: Option<(MultiProgress, ProgressBar, ProgressBar)>,
    files_total: AtomicU64,
    events: bool,
}

/// One JSON event line on stdout (whole lines: stdout is locked for each).
fn event(kind: &str, path: &Path, extra: serde_json::Value) {
    // Lossy: serde refuses (panics on) a path that is not UTF-8; such a file is refused, and still reported.
    let mut v = serde_json::json!({"event": kind, "file": path.to_string_lossy()});
    if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    let line = format!("{v}\n");
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), line.as_bytes());
}

impl Progress {
    /// Bars when `enabled` and stdout is a terminal; JSON event lines when `events`.
    pub fn new(verb: &str, enabled: bool, events: bool) -> Self {
        let bars = (enabled && std::io::stdout().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
            let bytes = multi.add(ProgressBar::new(0));
            bytes.set_style(
                ProgressStyle::with_template("{prefix:>9} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bytes.set_prefix(verb.to_string());
            let files = multi.add(ProgressBar::new(0));
            files.set_style(
                ProgressStyle::with_template("{prefix:>9} {pos}/{len} files").expect("valid template"),
            );
            files.set_prefix("");
            (multi, bytes, files)
        });
        Progress { bars, files_total: AtomicU64::new(0), events }
    }

    pub fn clear(&self) {
        if let Some((_, bytes, files)) = &self.bars {
            bytes.finish_and_clear();
            files.finish_and_clear();
        }
    }
}

impl Reporter for Progress {
    fn planned(&self, files: u64, bytes: u64) {
        self.files_total.fetch_add(files, Ordering::Relaxed);
        if let Some((_, b, f)) = &self.bars {
            b.inc_length(bytes);
            f.inc_length(files);
        }
    }

    fn progress(&self, n: u64) {
        if let Some((_, b, _)) = &self.bars {
            b.inc(n);
        }
    }

    fn started(&self, path: &Path) {
        if self.events {
            event("started", path, serde_json::Value::Null);
        }
    }

    fn finished(&self, path: &Path, bytes: u64) {
        if self.events {
            event("done", path, serde_json::json!({"bytes": bytes}));
        }
        if let Some((_, _, f)) = &self.bars {
            f.inc(1);
        }
    }

    fn skipped(&self, path: &Path, reason: &str) {
        if self.events {
            event("skipped", path, serde_json::json!({"reason": reason}));
        }
    }

    fn note(&self, path: &Path, message: &str) {
        if self.events {
            event("note", path, serde_json::json!({"message": message}));
        }
        let line = format!("sealpipe: note: {}: {message}", path.display());
        match &self.bars {
            Some((multi, _, _)) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn failed(&self, path: &Path, error: &Error) {
        if self.events {
            event("failed", path, serde_json::json!({"error": error.to_string(), "stage": error.stage(), "retry": error.retry()}));
        }
        let line = format!("sealpipe: error: {error}");
        match &self.bars {
            Some((multi, _, f)) => {
                f.inc(1);
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }
}

/// Print the summary of a run: JSON on stdout with `json`, text on stderr otherwise.
pub fn summary(command: &str, verb: &str, s: &Summary, extra: serde_json::Value, json: bool) {
    if json {
        let mut v = serde_json::json!({
            "event": "summary",
            "command": command,
            "files": s.files,
            "bytes": s.bytes,
            "seconds": s.seconds,
            "gb_per_s": s.gb_per_s(),
            "files_per_s": if s.seconds > 0.0 { s.files as f64 / s.seconds } else { 0.0 },
            "skipped": s.skipped,
            "skipped_bytes": s.skipped_bytes,
            "key_requests": s.key_requests,
            "not_attempted": s.not_attempted,
            "cleaned": s.cleaned,
            "dry_run": s.dry_run,
            "failed": s.failures.len(),
            "failures": s.failures.iter().map(|f| serde_json::json!({"path": f.path.to_string_lossy(), "error": f.message, "stage": f.stage, "retry": f.retry})).collect::<Vec<_>>(),
        });
        if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
            obj.extend(more);
        }
        println!("{v}");
        return;
    }
    if s.cleaned > 0 {
        eprintln!("sealpipe: cleaned up {} leftover(s) of an interrupted run (open uploads aborted, temporary files deleted)", s.cleaned);
    }
    if s.dry_run {
        eprintln!("sealpipe: dry run: {verb} {} file{} ({}); nothing was written", s.files, if s.files == 1 { "" } else { "s" }, sealpipe::size::human(s.bytes));
    } else {
        eprintln!(
            "sealpipe: {verb} {} file{} ({}) in {:.2} s, {:.2} GB/s, {:.0} files/s",
            s.files,
            if s.files == 1 { "" } else { "s" },
            sealpipe::size::human(s.bytes),
            s.seconds,
            s.gb_per_s(),
            if s.seconds > 0.0 { s.files as f64 / s.seconds } else { 0.0 }
        );
    }
    if s.skipped > 0 {
        eprintln!("sealpipe: skipped {} file{} already done ({})", s.skipped, if s.skipped == 1 { "" } else { "s" }, sealpipe::size::human(s.skipped_bytes));
    }
    if s.key_requests > 0 {
        eprintln!("sealpipe: {} key provider request{} (GenerateDataKey/Encrypt)", s.key_requests, if s.key_requests == 1 { "" } else { "s" });
    }
    if s.stopped_early() {
        eprintln!("sealpipe: stopped after {} failures (--max-errors); {} file(s) not attempted; re-run to resume", s.failures.len(), s.not_attempted);
    }
    if !s.failures.is_empty() {
        eprintln!("sealpipe: {} file{} failed:", s.failures.len(), if s.failures.len() == 1 { "" } else { "s" });
        for f in &s.failures {
            eprintln!("  {}", f.message);
        }
    }
}
