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
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sealpipe::{Event, Events, JobOutcome, Summary};

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

/// The one renderer of the engine's event stream ([`sealpipe::events`]):
/// bars on stderr (bytes and files and the file being worked on, or a count
/// of jobs), a line on stderr for what a person must read (failures, notes,
/// a store's warnings), and, when the run asked for them, one JSON line per
/// event on stdout. One per process ([`events`]): stores hold it from the
/// start (a warning can come before any run), and the command's run
/// [`Render::begin`]s it.
pub struct Render {
    bars: OnceLock<Bars>,
    json: AtomicBool,
    started: OnceLock<Instant>,
    jobs: [AtomicU64; 4],
}

enum Bars {
    /// Bytes and files of a run.
    Files { multi: MultiProgress, bytes: ProgressBar, files: ProgressBar },
    /// A count of items (jobs submitted).
    Count(ProgressBar),
}

static RENDER: Render = Render {
    bars: OnceLock::new(),
    json: AtomicBool::new(false),
    started: OnceLock::new(),
    jobs: [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
};

/// The process's renderer.
pub fn events() -> &'static Render {
    &RENDER
}

/// The same, as the shared handle a store keeps.
pub fn shared() -> Arc<dyn Events> {
    Arc::new(&RENDER)
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

fn bar_target() -> ProgressDrawTarget {
    match BARS.load(Ordering::Relaxed) {
        1 => ProgressDrawTarget::term_like(Box::new(console::Term::stderr())),
        _ => ProgressDrawTarget::stderr(),
    }
}

impl Render {
    /// A run starts: bars for `verb` (see [`configure`]), and JSON event
    /// lines on stdout when `json`. Sizes are binary (KiB, MiB, GiB), as in the summary.
    pub fn begin(&self, verb: &str, json: bool) {
        self.json.store(json, Ordering::Relaxed);
        self.start_clock();
        if !draw_bars() {
            return;
        }
        let multi = MultiProgress::with_draw_target(bar_target());
        let bytes = multi.add(ProgressBar::new(0));
        bytes.set_style(
            ProgressStyle::with_template("{prefix:>9} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta} {wide_msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bytes.set_prefix(verb.to_string());
        let files = multi.add(ProgressBar::new(0));
        files.set_style(ProgressStyle::with_template("{prefix:>9} {pos}/{len} files").expect("valid template"));
        files.set_prefix("");
        let _ = self.bars.set(Bars::Files { multi, bytes, files });
    }

    /// A run of `len` items starts (jobs submitted): a bar counting them
    /// under `prefix`, and JSON event lines when `json`.
    pub fn begin_count(&self, prefix: &str, len: u64, json: bool) {
        self.json.store(json, Ordering::Relaxed);
        self.start_clock();
        if !draw_bars() {
            return;
        }
        let bar = ProgressBar::with_draw_target(Some(len), bar_target());
        bar.set_style(ProgressStyle::with_template("{prefix:>9} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {wide_msg}").expect("valid template").progress_chars("=> "));
        bar.set_prefix(prefix.to_string());
        let _ = self.bars.set(Bars::Count(bar));
    }

    /// From now on, "so far" counts (the bench's lines).
    pub fn start_clock(&self) {
        let _ = self.started.set(Instant::now());
    }

    /// The end of the run: the file bars drawn once more as they end (every
    /// file listed by now, so the count is the run's whole), then left above
    /// the summary; a count bar is cleared.
    pub fn clear(&self) {
        match self.bars.get() {
            Some(Bars::Files { bytes, files, .. }) => {
                bytes.finish();
                files.finish();
            }
            Some(Bars::Count(bar)) => bar.finish_and_clear(),
            None => {}
        }
    }

    /// Jobs dealt with so far, by outcome: submitted, already submitted, found, failed.
    pub fn jobs(&self) -> [u64; 4] {
        self.jobs.each_ref().map(|n| n.load(Ordering::Relaxed))
    }

    /// A line on stderr above the bars (not with `-q`).
    fn say(&self, line: String) {
        if !quiet() {
            self.error(line);
        }
    }

    /// A line on stderr above the bars, even with `-q`.
    fn error(&self, line: String) {
        match self.bars.get() {
            Some(Bars::Files { multi, .. }) => {
                let _ = multi.println(line);
            }
            Some(Bars::Count(bar)) => bar.suspend(|| errln!("{line}")),
            None => errln!("{line}"),
        }
    }

    fn json(&self) -> bool {
        self.json.load(Ordering::Relaxed)
    }
}

impl Events for Render {
    fn emit(&self, e: Event<'_>) {
        let files = || match self.bars.get() {
            Some(Bars::Files { bytes, files, .. }) => Some((bytes, files)),
            _ => None,
        };
        match e {
            Event::Planned { files: n, bytes } => {
                if let Some((b, f)) = files() {
                    b.inc_length(bytes);
                    f.inc_length(n);
                }
            }
            Event::Progress { bytes } => {
                if let Some((b, _)) = files() {
                    b.inc(bytes);
                }
            }
            Event::Started { path } => {
                if self.json() {
                    event("started", path, serde_json::Value::Null);
                }
                if let Some((b, _)) = files() {
                    b.set_message(path.display().to_string());
                }
            }
            Event::Finished { path, bytes } => {
                if self.json() {
                    event("done", path, serde_json::json!({"bytes": bytes}));
                }
                if let Some((_, f)) = files() {
                    f.inc(1);
                }
            }
            Event::Skipped { path, reason } => {
                if self.json() {
                    event("skipped", path, serde_json::json!({"reason": reason}));
                }
            }
            Event::LeftOut { path, reason } => {
                if self.json() {
                    event("skipped", path, serde_json::json!({"reason": reason}));
                }
                self.say(format!("sealpipe: skipped: {}: {reason}", path.display()));
            }
            Event::Note { path, message } => {
                if self.json() {
                    event("note", path, serde_json::json!({"message": message}));
                }
                self.say(format!("sealpipe: note: {}: {message}", path.display()));
            }
            // Said like a note about the object, as the JSON lines have always said it.
            Event::Warning { location, message } => self.emit(Event::Note { path: Path::new(location), message }),
            Event::Failed { path, error } => {
                if self.json() {
                    event("failed", path, serde_json::json!({"error": error.to_string(), "stage": error.stage(), "retry": error.retry()}));
                }
                if let Some((_, f)) = files() {
                    f.inc(1);
                }
                self.error(format!("sealpipe: error: {error}"));
            }
            // The error names the manifest and says what happens next (a later turn, or the end of the run).
            Event::ManifestNotStored { error } => self.say(format!("sealpipe: warning: cannot store the manifest as the run goes: {error}")),
            Event::Job { source, record, token, outcome } => {
                let i = match outcome {
                    JobOutcome::Submitted(_) => 0,
                    JobOutcome::AlreadySubmitted(_) => 1,
                    JobOutcome::Found(_) => 2,
                    JobOutcome::Failed(_) => 3,
                };
                self.jobs[i].fetch_add(1, Ordering::Relaxed);
                if self.json() {
                    let mut v = serde_json::json!({"event": "job", "status": outcome.status(), "source": source, "record": record, "token": token});
                    if let Some(id) = outcome.job_id() {
                        v["job_id"] = serde_json::json!(id);
                    }
                    if let JobOutcome::Failed(e) = outcome {
                        v["error"] = serde_json::json!(e);
                    }
                    outln!("{v}");
                }
                if let JobOutcome::Failed(e) = outcome {
                    self.error(format!("sealpipe: failed: {e}"));
                }
                if let Some(Bars::Count(bar)) = self.bars.get() {
                    bar.inc(1);
                    bar.set_message(source.to_string());
                }
            }
            Event::Sample { done, total, round, rounds, id } => {
                let seconds = self.started.get().map_or(0.0, |t| t.elapsed().as_secs_f64());
                errln!("sealpipe: bench: round {round}/{rounds}, case {}/{total} ({} left, {seconds:.0} s so far): {id}", done + 1, total - done);
            }
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
        say(format!("sealpipe: dry run: {verb} {} file{} ({}); nothing was written", s.files, if s.files == 1 { "" } else { "s" }, sealpipe::human_size(s.bytes)));
    } else {
        let per_s = if s.seconds > 0.0 { s.bytes as f64 / s.seconds } else { 0.0 };
        say(format!(
            "sealpipe: {verb} {} file{} ({}) in {:.2} s, {}/s, {}",
            s.files,
            if s.files == 1 { "" } else { "s" },
            sealpipe::human_size(s.bytes),
            s.seconds,
            sealpipe::human_size(per_s as u64),
            files_per_second(s.files, s.seconds),
        ));
    }
    if s.skipped > 0 {
        say(format!("sealpipe: skipped {} file{} already done ({})", s.skipped, if s.skipped == 1 { "" } else { "s" }, sealpipe::human_size(s.skipped_bytes)));
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
            sealpipe::human_size(s.archived_bytes)
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
