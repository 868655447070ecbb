//! `sealpipe decrypt`: one file, with its manifest record, its envelope, or a key and IV given.

use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;
use sealpipe::{DataKey, Event, Events as _, Iv, Mode, Summary, Target, unwrap_record};

use super::{context, exit_for, parse_hex, Global, UsageError};
use crate::args::DecryptArgs;
use crate::{aws, report};

pub fn run(a: DecryptArgs, g: &Global, keyring_path: &Path) -> Result<ExitCode, UsageError> {
    if a.out.is_dir() {
        return Err(anyhow!("--out {}: is a directory; give the path of the plaintext file to write (e.g. --out {})", a.out.display(), a.out.join(a.input.file_name().unwrap_or_default()).display()).into());
    }
    let tuning = super::memory_plan(g, None)?.tuning;
    let ctx = context(g, keyring_path, g.kms_key.clone())?;
    let mut etag = None;
    let (mode, key, iv, expected) = match &a.manifest {
        Some(m) => {
            let record = &sealpipe::record_for(&ctx.stores, m, &a.input, &aws::folders())?;
            let provider = ctx.providers.for_record(record)?;
            let key = unwrap_record(record, provider.as_ref()).map_err(|e| anyhow!("{}: {e}", a.input.display()))?;
            etag = record.etag.clone();
            let digest = record.digest().map_err(|e| anyhow!("{}: its record in {}: {e}", a.input.display(), m.display()))?;
            (record.mode, key, record.iv()?, Some(digest))
        }
        None if a.envelope => {
            let url = a.input.to_string_lossy();
            let store = ctx.stores.remote(&url)?.ok_or_else(|| anyhow!("{url}: --envelope reads an S3 object's envelope; give its s3:// URL"))?;
            let stamped = store.envelope(&url)?.ok_or_else(|| anyhow!("{url}: carries no sealpipe envelope (give --manifest, or --mode, a key and --iv-hex)"))?;
            let record = stamped.envelope.record(stamped.source.as_deref().unwrap_or_default(), &url, stamped.size, Some(stamped.etag.clone()))?;
            let provider = ctx.providers.for_record(&record)?;
            let key = unwrap_record(&record, provider.as_ref()).map_err(|e| anyhow!("{url}: {e}"))?;
            etag = Some(stamped.etag);
            // No digest: an envelope is written before the bytes; the tag or padding and the length are checked.
            (record.mode, key, record.iv()?, None)
        }
        None => {
            let given = (a.mode, a.iv_hex.as_deref(), a.key_hex.is_some() || a.data_key_file.is_some());
            let (Some(mode), Some(iv_hex), true) = given else {
                return Err(anyhow!(
                    "{}: how was it encrypted? give --manifest PATH (the manifest of the run that encrypted it, local or s3://), \
                     --envelope (an S3 object sealpipe wrote), or --mode, --key-hex or --data-key-file, and --iv-hex",
                    a.input.display()
                )
                .into());
            };
            let mode = Mode::from(mode);
            let key = match (&a.key_hex, &a.data_key_file) {
                (Some(h), _) => DataKey::from_slice(&zeroize_hex(h)?)?,
                (None, Some(f)) => DataKey::from_file(f)?,
                (None, None) => unreachable!("checked above"),
            };
            let iv_bytes = parse_hex(iv_hex, "--iv-hex")?;
            Target::Any.check_iv_len(mode, iv_bytes.len())?;
            (mode, key, Iv::from_slice(&iv_bytes)?, None)
        }
    };
    let events = report::events();
    events.begin("decrypt", false);
    let settings = sealpipe::Decryption { mode, key: &key, iv: &iv, expected: expected.as_ref(), overwrite: a.force, tuning: &tuning };
    let started = std::time::Instant::now();
    let result = ctx
        .stores
        .open(&a.input.to_string_lossy(), etag.as_deref().filter(|_| aws::is_url(&a.input)))
        .and_then(|source| sealpipe::decrypt(source.as_ref(), &a.out, &settings, events));
    events.clear();
    let summary = match result {
        Ok(opened) => Summary { files: 1, bytes: opened.cipher_len, seconds: started.elapsed().as_secs_f64(), ..Default::default() },
        Err(e) => {
            events.emit(Event::Failed { path: &a.input, error: &e });
            Summary { failures: vec![sealpipe::Failure::new(&a.input, &e)], ..Default::default() }
        }
    };
    // A failure is its one error line; a success is said as encrypt and verify say theirs.
    if g.json || summary.failures.is_empty() {
        report::summary("decrypt", "decrypted", &summary, serde_json::json!({"output": a.out}), g.json);
    }
    if !g.json && summary.failures.is_empty() {
        report::info(&format!("sealpipe: plaintext: {}", a.out.display()));
    }
    Ok(exit_for(&summary))
}

/// Parse a hex key into memory that is zeroized when dropped.
fn zeroize_hex(h: &str) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    Ok(zeroize::Zeroizing::new(parse_hex(h, "--key-hex")?))
}
