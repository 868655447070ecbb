//! `sealpipe status`: how far a job is, from its manifests, their journals
//! and their last runs' outcomes (`sealpipe::status`); text or one JSON
//! object on stdout (the report is what it prints, as bench does).

use std::process::ExitCode;

use sealpipe::{human_size as human, Status};

use super::UsageError;
use crate::args::StatusCmd;
use crate::aws;

/// Print the status of every manifest given, and their total; exit 1 when files failed or are in flight.
pub fn run(c: &StatusCmd) -> Result<ExitCode, UsageError> {
    let ctx = aws::Context::new(&c.aws.all(), &crate::environment::keyring_path(), None)?;
    let folders = aws::folders();
    let all = c.manifests.iter().map(|m| sealpipe::status(&ctx.stores, m, &folders)).collect::<sealpipe::Result<Vec<Status>>>()?;
    let failed: usize = all.iter().filter_map(|s| s.last_run.as_ref()).map(|r| r.failures.len()).sum();
    let in_flight: usize = all.iter().map(|s| s.in_flight.len()).sum();
    let (files, bytes) = all.iter().fold((0, 0), |(f, b), s| (f + s.files, b + s.bytes));
    if c.json {
        let v = serde_json::json!({"command": "status", "files": files, "bytes": bytes, "failed": failed, "in_flight": in_flight, "manifests": all});
        outln!("{v}");
    } else {
        for s in &all {
            print(s);
        }
        if all.len() > 1 {
            outln!("total: {files} file{} done ({}), {failed} failed, {in_flight} in flight", plural(files), human(bytes));
        }
    }
    Ok(if failed + in_flight > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn print(s: &Status) {
    outln!("{}: {} file{} done ({})", s.manifest, s.files, plural(s.files), human(s.bytes));
    if let Some(copy) = &s.unfinished_copy {
        outln!("  read from {} (the local copy of a run not yet finished on this host)", copy.display());
    }
    for shard in &s.shards {
        outln!("  shard {}: {} file{} ({})", shard.shard.as_deref().unwrap_or("(none)"), shard.files, plural(shard.files), human(shard.bytes));
    }
    if !s.in_flight.is_empty() {
        outln!("  in flight: {} (started, not recorded: running now, or left by a run that was stopped; a re-run settles them)", s.in_flight.len());
        for output in s.in_flight.iter().take(20) {
            outln!("    {output}");
        }
    }
    if s.open_uploads > 0 {
        outln!("  open multipart uploads: {}", s.open_uploads);
    }
    match &s.last_run {
        None => outln!("  last run: none recorded on this host"),
        Some(r) => {
            let when = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()).saturating_sub(r.finished_unix);
            outln!(
                "  last run ({when} s ago): {} encrypted, {} already done, {} filtered, {} archived ({}), {} not attempted, {} failed",
                r.files,
                r.skipped,
                r.filtered,
                r.archived,
                human(r.archived_bytes),
                r.not_attempted,
                r.failures.len()
            );
            for f in &r.failures {
                outln!("    failed ({}, retry: {}): {}", f.stage, f.retry, f.error);
            }
        }
    }
}
