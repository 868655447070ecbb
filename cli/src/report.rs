//! Rendering a run for people and machines: indicatif bars on stderr (when it
//! is a terminal, or with `--progress`), one line per failure on stderr, and a
//! summary (text on stderr, or JSON on stdout with `--json`). Stdout carries
//! nothing but the JSON lines, so `sealpipe ... --json | jq` always parses.
//!
//! With `--json`, `encrypt` also prints one JSON object per line on stdout
//! for every file as it happens (`"event"`: `started`, `done`, `failed`
//! with its `error`, `skipped` with its `reason`, `note` with its
//! `message`), and the summary is the last line (`"event": "summary"`).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sealpipe::run::report::{Reporter, Summary};
use sealpipe::Error;

/// `-q`: errors only.
static QUIET: AtomicBool = AtomicBool::new(false);
/// 0: bars when stderr is a terminal; 1: always (`--progress`); 2: never (`--no-progress`, `-q`).
static BARS: AtomicU8 = AtomicU8::new(0);

/// Take the output flags of the command line.
pub fn configure(o: &crate::args::OutputArgs) {
    QUIET.store(o.log.quiet, Ordering::Relaxed);
    BARS.store(if o.no_progress || o.log.quiet { 2 } else if o.progress { 1 } else { 0 }, Ordering::Relaxed);
}

/// Whether only errors are printed (`-q`).
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// A line on stderr unless `-q` (notes, warnings, where the manifest went).
pub fn info(line: &str) {
    if !quiet() {
        errln!("{line}");
    }
}

/// Whether to draw bars: `--progress`, or stderr is a terminal (unless `--no-progress`/`-q`).
fn draw_bars() -> bool {
    match BARS.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => std::io::stderr().is_terminal(),
    }
}

/// Progress bars (bytes and files, and the file being worked on) on stderr; nothing when not drawn.
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
    crate::out::stdout(&line);
}

impl Progress {
    /// Bars on stderr (see [`configure`]); JSON event lines on stdout when `events`.
    /// Sizes are binary (KiB, MiB, GiB), as in the summary.
    pub fn new(verb: &str, _enabled: bool, events: bool) -> Self {
        let bars = draw_bars().then(|| {
            let target = match BARS.load(Ordering::Relaxed) {
                1 => ProgressDrawTarget::term_like(Box::new(console::Term::stderr())),
                _ => ProgressDrawTarget::stderr(),
            };
            let multi = MultiProgress::with_draw_target(target);
            let bytes = multi.add(ProgressBar::new(0));
            bytes.set_style(
                ProgressStyle::with_template("{prefix:>9} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta} {wide_msg}")
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

    /// The end of the run: the bars drawn once more as they end (every file
    /// listed by now, so the count is the run's whole), then left above the summary.
    pub fn clear(&self) {
        if let Some((_, bytes, files)) = &self.bars {
            bytes.finish();
            files.finish();
        }
    }
}

impl Progress {
    /// A line on stderr above the progress bars (not with `-q`).
    fn say(&self, line: String) {
        if quiet() {
            return;
        }
        match &self.bars {
            Some((multi, _, _)) => {
                let _ = multi.println(line);
            }
            None => errln!("{line}"),
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
        if let Some((_, b, _)) = &self.bars {
            b.set_message(path.display().to_string());
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

    fn left_out(&self, path: &Path, reason: &str) {
        self.skipped(path, reason);
        self.say(format!("sealpipe: skipped: {}: {reason}", path.display()));
    }

    fn note(&self, path: &Path, message: &str) {
        if self.events {
            event("note", path, serde_json::json!({"message": message}));
        }
        self.say(format!("sealpipe: note: {}: {message}", path.display()));
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
            None => errln!("{line}"),
        }
    }
}

/// The summary's sentence about key requests: how many wrapped keys, and why that many.
/// `contexts` names the encryption contexts each data key is wrapped under.
pub fn key_line(s: &Summary, contexts: &[&str]) -> Option<String> {
    if s.key_requests == 0 {
        return None;
    }
    let per = contexts.len().max(1) as u64;
    let keys = s.key_requests / per;
    let plural = |n: u64, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let why = match contexts {
        [] => String::new(),
        [one] => format!(" (1 per {}: {one} context)", if keys == s.files { "file" } else { "data key" }),
        many => format!(
            " ({} per {}: {} contexts)",
            many.len(),
            if keys == s.files { "file" } else { "data key" },
            many.join(" and ")
        ),
    };
    let reuse = if keys != s.files { format!(", {}", plural(keys, "data key")) } else { String::new() };
    Some(format!("{}{reuse}, {}{why}", plural(s.files, "file"), plural(s.key_requests, "wrapped key")))
}

/// Print the summary of a run: JSON on stdout with `json`, text on stderr otherwise
/// (only the failures with `-q`). A dry run has no throughput.
pub fn summary(command: &str, verb: &str, s: &Summary, extra: serde_json::Value, json: bool) {
    let contexts: Vec<String> = extra.get("contexts").and_then(|c| c.as_array()).map(|c| c.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default();
    let contexts: Vec<&str> = contexts.iter().map(String::as_str).collect();
    if json {
        let mut v = serde_json::json!({
            "event": "summary",
            "command": command,
            "files": s.files,
            "bytes": s.bytes,
            "skipped": s.skipped,
            "skipped_bytes": s.skipped_bytes,
            "skipped_symlinks": s.left_out,
            "key_requests": s.key_requests,
            "not_attempted": s.not_attempted,
            "cleaned": s.cleaned,
            "archived": s.archived,
            "archived_bytes": s.archived_bytes,
            "restores_requested": s.restores_requested,
            "restores_in_progress": s.restores_in_progress,
            "dry_run": s.dry_run,
            "failed": s.failures.len(),
            "failures": s.failures.iter().map(|f| serde_json::json!({"path": f.path.to_string_lossy(), "error": f.message, "stage": f.stage, "retry": f.retry})).collect::<Vec<_>>(),
        });
        if let Some(obj) = v.as_object_mut() {
            if !s.dry_run {
                obj.insert("seconds".into(), s.seconds.into());
                obj.insert("gb_per_s".into(), s.gb_per_s().into());
                obj.insert("files_per_s".into(), (if s.seconds > 0.0 { s.files as f64 / s.seconds } else { 0.0 }).into());
            }
            if let Some(line) = key_line(s, &contexts) {
                obj.insert("keys".into(), line.into());
            }
            if let serde_json::Value::Object(more) = extra {
                obj.extend(more);
            }
        }
        outln!("{v}");
        return;
    }
    let say = |line: String| info(&line);
    if s.cleaned > 0 {
        say(format!("sealpipe: cleaned up {} leftover(s) of an interrupted run (open uploads aborted, temporary files deleted)", s.cleaned));
    }
    if s.dry_run {
        say(format!("sealpipe: dry run: {verb} {} file{} ({}); nothing was written", s.files, if s.files == 1 { "" } else { "s" }, sealpipe::size::human(s.bytes)));
    } else {
        let per_s = if s.seconds > 0.0 { s.bytes as f64 / s.seconds } else { 0.0 };
        say(format!(
            "sealpipe: {verb} {} file{} ({}) in {:.2} s, {}/s, {}",
            s.files,
            if s.files == 1 { "" } else { "s" },
            sealpipe::size::human(s.bytes),
            s.seconds,
            sealpipe::size::human(per_s as u64),
            files_per_second(s.files, s.seconds),
        ));
    }
    if s.skipped > 0 {
        say(format!("sealpipe: skipped {} file{} already done ({})", s.skipped, if s.skipped == 1 { "" } else { "s" }, sealpipe::size::human(s.skipped_bytes)));
    }
    if s.left_out > 0 {
        say(format!("sealpipe: skipped {} symbolic link{} (--no-follow-symlinks)", s.left_out, if s.left_out == 1 { "" } else { "s" }));
    }
    if s.archived > 0 {
        let restores = match (s.restores_requested, s.restores_in_progress) {
            (0, 0) => "--restore asks S3 to restore them; then re-run".to_string(),
            (asked, going) => format!("{asked} restore(s) requested now, {going} in progress; re-run once restored"),
        };
        say(format!(
            "sealpipe: skipped {} archived object{} ({}): not readable until restored; {restores}",
            s.archived,
            if s.archived == 1 { "" } else { "s" },
            sealpipe::size::human(s.archived_bytes)
        ));
    }
    let filtered = extra.get("filtered").and_then(|v| v.as_u64()).unwrap_or(0);
    if filtered > 0 {
        let by: Vec<String> = extra["filtered_by"]
            .as_array()
            .map(|a| a.iter().map(|r| format!("{} by {}", r["files"], r["rule"].as_str().unwrap_or(""))).collect())
            .unwrap_or_default();
        say(format!("sealpipe: skipped {filtered} file{} left out by filters ({})", if filtered == 1 { "" } else { "s" }, by.join(", ")));
    }
    if let Some(line) = key_line(s, &contexts) {
        // Only a key provider that is asked over the network (KMS) made requests; the local keyring made none.
        match extra.get("key_requests_to").and_then(|v| v.as_str()) {
            Some(provider) => say(format!("sealpipe: {line} ({provider} requests: GenerateDataKey/Encrypt)")),
            None => say(format!("sealpipe: {line}")),
        }
    }
    if s.stopped_early() {
        say(format!("sealpipe: stopped after {} failures (--max-errors); {} file(s) not attempted; re-run to resume", s.failures.len(), s.not_attempted));
    }
    if !s.failures.is_empty() {
        errln!("sealpipe: {} file{} failed:", s.failures.len(), if s.failures.len() == 1 { "" } else { "s" });
        for f in &s.failures {
            errln!("  {}", f.message);
        }
    }
}

/// "N files/s", "1 file/s" as the rate rounds.
fn files_per_second(files: u64, seconds: f64) -> String {
    let rate = format!("{:.0}", if seconds > 0.0 { files as f64 / seconds } else { 0.0 });
    let word = if rate == "1" { "file" } else { "files" };
    format!("{rate} {word}/s")
}

/// A bar counting `len` items (jobs submitted) on stderr, when bars are drawn.
pub fn counter(prefix: &str, len: u64) -> Option<ProgressBar> {
    draw_bars().then(|| {
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        bar.set_style(ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {wide_msg}").expect("valid template").progress_chars("=> "));
        bar.set_prefix(prefix.to_string());
        bar
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_file_per_second_is_singular() {
        assert_eq!(super::files_per_second(1, 1.0), "1 file/s");
        assert_eq!(super::files_per_second(3, 2.5), "1 file/s");
        assert_eq!(super::files_per_second(2, 1.0), "2 files/s");
        assert_eq!(super::files_per_second(0, 0.0), "0 files/s");
        assert_eq!(super::files_per_second(10, 0.5), "20 files/s");
    }
}
