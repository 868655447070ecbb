//! `sealpipe verify`: decrypt every file of a manifest and compare its plaintext digest.

use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;
use sealpipe::{Event, Events as _, Record};

use super::{context, exit_for, Global, UsageError};
use crate::args::VerifyArgs;
use crate::{aws, report};

pub fn run(a: VerifyArgs, g: &Global, keyring_path: &Path) -> Result<ExitCode, UsageError> {
    let tuning = super::memory_plan(g, None)?.tuning;
    let ctx = context(g, keyring_path, g.kms_key.clone())?;
    let (mut records, bad_lines) = sealpipe::read_manifest_lines(&ctx.stores, &a.manifest, &aws::folders())?;
    // Outputs recorded below the manifest's folder are read below it, wherever it is now.
    let relocated = if aws::is_url(&a.manifest) { None } else { sealpipe::relocate(&mut records, &a.manifest) };
    if let (Some(folder), false) = (relocated, g.json) {
        report::info(&format!("sealpipe: verify: outputs are read below {} (their folder moved since they were recorded)", folder.display()));
    }
    if records.is_empty() && bad_lines.is_empty() {
        return Err(anyhow!("{}: manifest has no records", a.manifest.display()).into());
    }
    let events = report::events();
    events.begin("verify", false);
    let mut summary = sealpipe::verify_all(&records, &|r: &Record| ctx.providers.for_record(r), &ctx.stores, &tuning, events)?;
    // A line that is not a record (torn by a crash mid-append, or damaged) leaves a file unverified: a failure.
    for bad in &bad_lines {
        let (what, err) = sealpipe::unverified_line(&a.manifest, bad);
        events.emit(Event::Failed { path: &what, error: &err });
        summary.failures.push(sealpipe::Failure::new(&what, &err));
    }
    summary.failures.sort();
    events.clear();
    // Records made with --digest none: said, never counted as a content check.
    let unchecked = summary.unchecked_content;
    let note = format!("{unchecked} file(s) carry no digest (--digest none): checked only that they decrypt and have the recorded length, not their content");
    report::summary("verify", "verified", &summary, serde_json::json!({"manifest": a.manifest, "content_unchecked": unchecked, "note": (unchecked > 0).then_some(&note)}), g.json);
    if unchecked > 0 && !g.json {
        report::info(&format!("sealpipe: verify: {note}"));
    }
    Ok(exit_for(&summary))
}
