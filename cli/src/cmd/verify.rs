//! `sealpipe verify`: decrypt every file of a manifest and compare its plaintext digest.

use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;
use sealpipe::format::record::Record;
use sealpipe::run::location;
use sealpipe::run::verify;

use super::{context, exit_for, Global, UsageError};
use crate::args::VerifyArgs;
use crate::{aws, report};

pub fn run(a: VerifyArgs, g: &Global, keyring_path: &Path) -> Result<ExitCode, UsageError> {
    let tuning = super::memory_plan(g, None)?.tuning;
    let ctx = context(g, keyring_path, g.kms_key.clone())?;
    let (mut records, bad_lines) = location::read_lines(&ctx.stores, &a.manifest, &aws::folders())?;
    // Outputs recorded below the manifest's folder are read below it, wherever it is now.
    let relocated = if aws::is_url(&a.manifest) { None } else { verify::relocate(&mut records, &a.manifest) };
    if let (Some(folder), false) = (relocated, g.json) {
        report::info(&format!("sealpipe: verify: outputs are read below {} (their folder moved since they were recorded)", folder.display()));
    }
    if records.is_empty() && bad_lines.is_empty() {
        return Err(anyhow!("{}: manifest has no records", a.manifest.display()).into());
    }
    let progress = report::Progress::new("verify", !g.json, false);
    let mut summary = verify::verify_all(&records, &|r: &Record| ctx.providers.for_record(r), &ctx.stores, &tuning, &progress)?;
    // A line that is not a record (torn by a crash mid-append, or damaged) leaves a file unverified: a failure.
    for bad in &bad_lines {
        use sealpipe::run::report::Reporter;
        let (what, err) = verify::unverified_line(&a.manifest, bad);
        progress.failed(&what, &err);
        summary.failures.push(sealpipe::error::Failure::new(&what, &err));
    }
    summary.failures.sort();
    progress.clear();
    // Records made with --digest none: said, never counted as a content check.
    let unchecked = summary.unchecked_content;
    let note = format!("{unchecked} file(s) carry no digest (--digest none): checked only that they decrypt and have the recorded length, not their content");
    report::summary("verify", "verified", &summary, serde_json::json!({"manifest": a.manifest, "content_unchecked": unchecked, "note": (unchecked > 0).then_some(&note)}), g.json);
    if unchecked > 0 && !g.json {
        report::info(&format!("sealpipe: verify: {note}"));
    }
    Ok(exit_for(&summary))
}
