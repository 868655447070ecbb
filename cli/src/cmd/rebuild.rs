//! `sealpipe rebuild-manifest`: a manifest again from the envelopes the
//! objects under a destination prefix carry (when every copy of the
//! manifest is lost, or to check one against what is stored).

use std::process::ExitCode;

use anyhow::{anyhow, bail};

use sealpipe::{ManifestWriter, rebuild};

use crate::args::manifests::RebuildArgs;
use crate::{aws, report};

/// Rebuild, print the summary; exit 0 when every object with an envelope has its record.
pub fn run(a: RebuildArgs, ctx: &aws::Context, json: bool) -> anyhow::Result<ExitCode> {
    let store = ctx.stores.remote(&a.prefix)?.ok_or_else(|| anyhow!("{}: not an s3:// URL (expected s3://bucket/prefix/)", a.prefix))?;
    let remote = aws::is_url(&a.manifest);
    if !remote && a.manifest.exists() && !a.force {
        bail!("{}: exists; --force replaces it", a.manifest.display());
    }
    let url = a.manifest.to_string_lossy().into_owned();
    if remote && !a.force && store_of(ctx, &a.manifest)?.stat(&url).is_ok() {
        bail!("{url}: exists; --force replaces it");
    }
    // Written under a temporary name, then renamed (local) or stored as one object (s3://):
    // a rebuild that fails leaves the manifest there before it untouched.
    let tmp = match remote {
        true => {
            let dir = aws::state_dir();
            std::fs::create_dir_all(&dir).map_err(|e| anyhow!("{}: cannot create the state folder: {e}", dir.display()))?;
            dir.join(format!("rebuild-{}.jsonl", std::process::id()))
        }
        false => {
            let name = a.manifest.file_name().ok_or_else(|| anyhow!("{}: --manifest names no file", a.manifest.display()))?;
            a.manifest.with_file_name(format!(".{}.sealpipe-rebuild-{}", name.to_string_lossy(), std::process::id()))
        }
    };
    let _ = std::fs::remove_file(&tmp);
    let manifest = ManifestWriter::durable(&tmp)?;
    let events = report::events();
    events.begin("rebuild-manifest", json);
    let summary = rebuild(store, &a.prefix, &manifest, events);
    events.clear();
    drop(manifest);
    let stored = summary.map_err(anyhow::Error::from).and_then(|summary| {
        if summary.files > 0 {
            match remote {
                true => {
                    store_of(ctx, &a.manifest)?.upload(&tmp, &url, None, None)?;
                }
                false => std::fs::rename(&tmp, &a.manifest).map_err(|e| anyhow!("{}: cannot write the manifest: {e}", a.manifest.display()))?,
            }
        }
        Ok(summary)
    });
    let _ = std::fs::remove_file(&tmp);
    let summary = stored?;
    let note = "rebuilt records carry no plaintext digest (an envelope is written before the bytes): verify checks that each output decrypts and its length, not its content";
    report::summary("rebuild-manifest", "recorded", &summary, serde_json::json!({"manifest": a.manifest, "note": note}), json);
    if !json && summary.files > 0 {
        report::info(&format!("sealpipe: manifest: {} ({note})", a.manifest.display()));
    }
    Ok(super::exit_for(&summary))
}

fn store_of<'c>(ctx: &'c aws::Context, url: &std::path::Path) -> anyhow::Result<&'c dyn sealpipe::Store> {
    ctx.stores.remote_path(url)?.ok_or_else(|| anyhow!("{}: not a URL", url.display()))
}
