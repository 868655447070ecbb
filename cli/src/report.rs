//! Rendering a run for people and machines: indicatif bars on a terminal,
//! one line per failure on stderr, and a summary (text, or JSON with `--json`).

use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sealpipe::batch::{Reporter, Summary};
use sealpipe::Error;

/// Progress bars (bytes and files) when stdout is a terminal; nothing otherwise.
pub struct Progress {
    bars: Option<(MultiProgress, ProgressBar, ProgressBar)>,
    files_total: AtomicU64,
}

impl Progress {
    pub fn new(verb: &str, enabled: bool) -> Self {
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
        Progress { bars, files_total: AtomicU64::new(0) }
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

    fn finished(&self, _path: &Path, _bytes: u64) {
        if let Some((_, _, f)) = &self.bars {
            f.inc(1);
        }
    }

    fn failed(&self, _path: &Path, error: &Error) {
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
            "command": command,
            "files": s.files,
            "bytes": s.bytes,
            "seconds": s.seconds,
            "gb_per_s": s.gb_per_s(),
            "failed": s.failures.len(),
            "failures": s.failures.iter().map(|(p, e)| serde_json::json!({"path": p, "error": e})).collect::<Vec<_>>(),
        });
        if let (Some(obj), serde_json::Value::Object(more)) = (v.as_object_mut(), extra) {
            obj.extend(more);
        }
        println!("{v}");
        return;
    }
    eprintln!(
        "sealpipe: {verb} {} file{} ({}) in {:.2} s, {:.2} GB/s",
        s.files,
        if s.files == 1 { "" } else { "s" },
        human_bytes(s.bytes),
        s.seconds,
        s.gb_per_s()
    );
    if !s.failures.is_empty() {
        eprintln!("sealpipe: {} file{} failed:", s.failures.len(), if s.failures.len() == 1 { "" } else { "s" });
        for (_, e) in &s.failures {
            eprintln!("  {e}");
        }
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
