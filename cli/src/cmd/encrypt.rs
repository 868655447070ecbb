//! `sealpipe encrypt` (and, with the legacy inputs decrypted as they are
//! read, `reencrypt`): the flags checked, the manifest located and its
//! job's lease taken, the run, the manifest stored back, the summary.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use sealpipe::{DataKey, EncryptJob, Filter, Flusher, KeyBits, Lease, ManifestWriter, Mode, Place, S3Url, Shard, Stores, Target, Unseal, UploadSettings};

use super::{context, exit_for, parse_hex, Global, UsageError};
use crate::args::EncryptArgs;
use crate::{aws, interrupt, report};

/// `encrypt`, or with `unseal` `reencrypt` (the inputs are legacy ciphertext, decrypted as they are read).
pub fn run(a: EncryptArgs, g: &Global, keyring_path: &Path, unseal: Option<&dyn Unseal>, exclude: Vec<PathBuf>) -> Result<ExitCode, UsageError> {
    let (command, verb) = if unseal.is_some() { ("reencrypt", "re-encrypted") } else { ("encrypt", "encrypted") };
    let mode = Mode::from(a.mode);
    let target = Target::from(a.target);
    let iv = match &a.iv_hex {
        Some(h) => {
            let iv = parse_hex(h, "--iv-hex")?;
            target.check_iv_len(mode, iv.len())?;
            if let Some(warning) = Target::iv_warning(mode, iv.len()) {
                report::info(&format!("sealpipe: warning: --iv-hex: {warning}"));
            }
            Some(iv)
        }
        None => None,
    };
    let supplied_key = a.data_key_file.as_deref().map(DataKey::from_file).transpose()?;
    if supplied_key.is_some() && a.reuse_key.is_some() {
        return Err(anyhow!("--reuse-key caches generated keys; it cannot be combined with --data-key-file").into());
    }
    let shard = a.shard.as_deref().map(resolve_shard).transpose()?;
    // Argument checks before any network or credential work.
    check_destination(&a)?;
    if let Some(out) = &a.out {
        check_out_dir(out)?;
    }
    if a.to.is_some() {
        sealpipe::check_part_size(a.s3.part_size).map_err(|e| anyhow!("--part-size: {e}"))?;
    }
    // Objects and an s3:// manifest are stored with the same server-side encryption.
    let object = a.s3.object()?;
    let manifest_sse = object.sse.clone();
    let ctx = context(&with_buckets(g, &a), keyring_path, g.kms_key.clone())?;
    // Where the job's manifest is: a store URL (each shard its own), or a local path.
    let folders = aws::folders();
    let located = sealpipe::locate_manifest(&ctx.stores, a.manifest.as_deref(), a.out.as_deref(), a.to.as_deref(), shard, &folders)?;
    // Said once the run is sure to start (after every check that can refuse it).
    let default_manifest_note = match (&located.default_for, &located.place) {
        (Some(to), Place::Local(path)) => Some(format!("sealpipe: manifest: {} (the default for --to {to}; --manifest names another)", path.display())),
        _ => None,
    };
    // One budget sizes every buffer: files in flight, pipeline windows, part buffers.
    let upload = a.to.as_ref().map(|_| (a.s3.part_size, a.s3.concurrency));
    let plan = super::memory_plan(g, upload)?;
    let settings = UploadSettings { part_size: a.s3.part_size, concurrency: plan.upload_concurrency, checksum: a.s3.checksum.into(), overwrite: a.force, object };
    let destination = match (&a.to, &a.out) {
        (Some(to), _) if !aws::is_url(Path::new(to)) => return Err(anyhow!("{to}: not an s3:// URL (expected s3://bucket/prefix/)").into()),
        (Some(to), _) => ctx.stores.destination(to, settings)?,
        (None, Some(out)) => Box::new(sealpipe::LocalDir::new(out, a.force)),
        (None, None) => return Err(anyhow!("give --out DIR or --to s3://bucket/prefix/").into()),
    };
    // One run of the job at a time: taken before the manifest is read and
    // held until it is written back (dropped last of this function's
    // values, on every path). A refused run has written nothing.
    let lease = match &located.place {
        _ if a.dry_run => None,
        Place::Remote(url) => {
            let store = ctx.stores.remote_shared(url)?.ok_or_else(|| anyhow!("{url}: not a URL"))?;
            Some(Lease::remote(std::sync::Arc::clone(store), url, std::time::Duration::from_secs(a.lease_seconds), manifest_sse.clone())?)
        }
        Place::Local(path) => Some(Lease::local(path)?),
    };
    if let Some(lease) = &lease {
        interrupt::on_interrupt(lease.on_interrupt());
    }
    if let Some(holder) = lease.as_ref().and_then(|l| l.took_over.as_ref()) {
        report::info(&format!("sealpipe: took over the lease of {} (a run that is gone, or whose lease ran out)", holder.describe()));
    }
    // An s3:// manifest is written to a local temporary file and uploaded at the end.
    let mut remote_manifest = match &located.place {
        Place::Remote(url) => Some(super::fetch_manifest(&ctx, url, true)?),
        Place::Local(_) => None,
    };
    let manifest_path = match (&remote_manifest, &located.place) {
        (Some(m), _) => m.local.clone(),
        (None, Place::Local(path)) => path.clone(),
        (None, Place::Remote(_)) => unreachable!("a remote manifest has its copy"),
    };
    // The manifest is the ledger a re-run resumes from: every record synced to disk.
    let manifest = ManifestWriter::durable(&manifest_path)?;
    // Only now, every check that can refuse the run done: the key provider
    // (a dry run creates no keyring; the files' keys are asked for one by one).
    let keyring_was_there = keyring_path.exists();
    let provider = if a.dry_run { ctx.providers.for_dry_run()? } else { ctx.providers.for_new_keys()? };
    // Said once, at the end of the run that made it (see below): losing it loses every file it wraps keys for.
    let new_keyring = provider.file().filter(|f| !keyring_was_there && f.exists()).map(Path::to_path_buf);
    if let Some(note) = &default_manifest_note {
        report::info(note);
    }
    if let Some(abort) = destination.recovery().map(|r| r.on_interrupt()) {
        interrupt::on_interrupt(move || {
            let n = abort();
            errln!("sealpipe: interrupted: aborted {n} open multipart upload(s)");
        });
    }

    let filter = Filter::new(a.filters);
    // Network-bound runs keep many files in flight (within the budget); local ones one per thread.
    let remote = a.to.is_some() || !a.from_list.is_empty() || !a.inventory.is_empty() || a.inputs.iter().any(|p| Stores::is_url(&p.to_string_lossy()));
    let in_flight = match (a.max_concurrent_requests, remote) {
        (Some(n), _) => n as usize,
        (None, true) => sealpipe::DEFAULT_REMOTE_IN_FLIGHT,
        (None, false) => plan.files_in_flight,
    };
    let pause = crate::environment::after_commit_pause();
    let job = EncryptJob {
        filter: (!filter.is_empty()).then_some(&filter),
        lists: a.from_list,
        inventories: a.inventory,
        mode,
        digest: a.digest,
        key_bits: KeyBits::try_from(a.key_bits).map_err(|e| anyhow!(e))?,
        target,
        supplied_key,
        reuse_key: a.reuse_key,
        iv,
        overwrite: a.force,
        file_input_prefix: a.file_input_prefix,
        tuning: plan.tuning,
        files_in_flight: in_flight,
        memory: Some(plan),
        shard,
        max_errors: a.max_errors,
        dry_run: a.dry_run,
        unseal,
        exclude,
        stores: &ctx.stores,
        follow_symlinks: !a.no_follow_symlinks,
        manifest_name: remote_manifest.as_ref().map(|m| m.url.clone()),
        restore: a.restore.clone(),
        copy_props: a.s3.copy_props.into(),
        stop: (!a.dry_run).then(|| interrupt::graceful(std::time::Duration::from_secs(a.grace_seconds))),
        after_commit: pause.as_ref().map(|p| p as &(dyn Fn(&str) + Sync)),
        ..EncryptJob::new(a.inputs, destination.as_ref(), provider.as_ref())
    };
    let events = report::events();
    events.begin(command, g.json);
    // An s3:// manifest is stored as the run goes, not only at its end.
    let flusher = Flusher::new(std::time::Duration::from_secs(a.manifest_flush_seconds), a.manifest_flush_records);
    let summary = std::thread::scope(|scope| {
        if let Some(copy) = remote_manifest.as_ref().filter(|_| !a.dry_run) {
            let (manifest, flusher, sse, lease) = (&manifest, &flusher, manifest_sse.as_ref(), lease.as_ref());
            let snapshot = copy.local.with_extension("snapshot");
            scope.spawn(move || {
                // Only while the lease is still this run's (renewed once more first), as at the end.
                let upload = |p: &Path| lease.map_or(Ok(()), Lease::confirm).and_then(|()| copy.upload_snapshot(p, sse));
                flusher.run(manifest, &snapshot, &upload, events);
            });
        }
        let summary = sealpipe::encrypt(&job, &manifest, events);
        flusher.stop();
        summary
    })?;
    events.clear();
    drop(manifest);
    // Also after a partial failure: the records of the files that did finish.
    let manifest_path = match remote_manifest.as_mut() {
        Some(m) if !a.dry_run => {
            // Never over another run's manifest: a lease lost meanwhile keeps the records here.
            if let Err(e) = lease.as_ref().map_or(Ok(()), |l| l.confirm()) {
                return Err(anyhow!("{e}; its records are kept in {}", m.keep_local().display()).into());
            }
            m.upload(manifest_sse.as_ref())?;
            if m.joined > 0 {
                report::info(&format!("sealpipe: manifest: {} was written by another run meanwhile; its {} line(s) this run's copy lacked are kept beside this run's records", m.url, m.joined));
            }
            PathBuf::from(&m.url)
        }
        Some(m) => PathBuf::from(&m.url),
        None => manifest_path,
    };
    // The provider that wrapped new keys over the network (KMS), for the summary's request count.
    let key_requests_to = (job.supplied_key.is_none() && g.kms_key.is_some()).then_some("KMS");
    let extra = serde_json::json!({
        "key_requests_to": key_requests_to,
        "keyring_created": new_keyring,
        "manifest": manifest_path,
        "mode": mode.to_string(),
        "threads": rayon::current_num_threads(),
        "shard": shard.map(|s| s.to_string()),
        "interrupted": summary.interrupted,
        "filtered": filter.rejected(),
        "filtered_by": filter.reasons().into_iter().map(|(rule, files)| serde_json::json!({"rule": rule, "files": files})).collect::<Vec<_>>(),
        "contexts": target.services().iter().map(|s| match s {
            sealpipe::Service::MediaConvert => "MediaConvert",
            sealpipe::Service::ElasticTranscoder => "Elastic Transcoder",
        }).collect::<Vec<_>>(),
    });
    if let Some(Err(e)) = lease.map(Lease::release) {
        report::info(&format!("sealpipe: warning: the job's lease was not given back ({e}); it ends when its time runs out"));
    }
    if !a.dry_run {
        // For `sealpipe status`: what this run could not do, which the manifest does not say.
        let last = sealpipe::LastRun::of(&summary, filter.rejected());
        if let Err(e) = sealpipe::save_last_run(&manifest_path, &folders, &last) {
            report::info(&format!("sealpipe: warning: cannot keep this run's outcome for sealpipe status: {e}"));
        }
    }
    let verb = if a.dry_run { "would encrypt" } else { verb };
    report::summary(command, verb, &summary, extra, g.json);
    if !g.json && summary.files > 0 && !a.dry_run {
        report::info(&format!("sealpipe: manifest: {}", manifest_path.display()));
        if let Some(file) = &new_keyring {
            report::info(&format!(
                "sealpipe: keyring: created {} (mode 0600); only it can unwrap the data keys of these files: back it up (e.g. cp {} to a safe place)",
                file.display(),
                file.display()
            ));
        }
    }
    if summary.interrupted {
        errln!("sealpipe: interrupted: no file left half done; {} file(s) finished and recorded in {}; a re-run does the rest", summary.files, manifest_path.display());
    }
    Ok(exit_for(&summary))
}

/// `g` with the account each bucket of the run must belong to, sent on
/// every request to it: the destination's and an `s3://` manifest's
/// (`--expected-bucket-owner`), the sources' (`--source-expected-bucket-owner`,
/// also for any bucket a list or inventory names); and the sources' region
/// where `--source-region` says it.
fn with_buckets(g: &Global, a: &EncryptArgs) -> Global {
    let mut g = g.clone();
    let bucket = |url: &str| S3Url::split(url).ok().map(|(b, _)| b.to_string());
    if let Some(owner) = &a.s3.expected_bucket_owner {
        let manifest = a.manifest.as_ref().map(|m| m.to_string_lossy().into_owned());
        for b in a.to.iter().chain(manifest.iter()).filter_map(|u| bucket(u)) {
            g.aws.bucket_owners.push((b, owner.clone()));
        }
    }
    for b in a.inputs.iter().filter_map(|p| bucket(&p.to_string_lossy())) {
        if let Some(owner) = &g.aws.source_expected_bucket_owner {
            g.aws.bucket_owners.push((b.clone(), owner.clone()));
        }
        if let Some(region) = &g.aws.source_region {
            g.aws.bucket_regions.push((b, region.clone()));
        }
    }
    g
}

/// The shard to take: `I/N`, or `auto/N` with the index from the job array's environment.
fn resolve_shard(text: &str) -> anyhow::Result<Shard> {
    let Some(count) = text.strip_prefix("auto/") else { return Shard::parse(text).map_err(|e| anyhow!("--shard: {e}")) };
    for var in ["JOB_COMPLETION_INDEX", "AWS_BATCH_JOB_ARRAY_INDEX"] {
        if let Ok(index) = std::env::var(var) {
            return Shard::parse(&format!("{}/{count}", index.trim())).map_err(|e| anyhow!("--shard auto/{count}: {var}={index}: {e}"));
        }
    }
    Err(anyhow!("--shard auto/{count}: neither JOB_COMPLETION_INDEX (Kubernetes Indexed Job) nor AWS_BATCH_JOB_ARRAY_INDEX (AWS Batch array job) is set"))
}

/// A destination, and no flag that means something else here: `--recursive`
/// (folders and prefixes always are), upload flags with `--out` (only an
/// `s3://` manifest is stored with `--sse` and `--expected-bucket-owner` then).
fn check_destination(a: &EncryptArgs) -> anyhow::Result<()> {
    if a.recursive {
        return Err(anyhow!("--recursive: not needed: folders and s3:// prefixes are always encrypted recursively (every file below them); drop it"));
    }
    if a.out.is_none() && a.to.is_none() {
        return Err(anyhow!("give a destination: --out DIR (a local folder) or --to s3://bucket/prefix/ (uploads to S3)"));
    }
    if a.out.is_some() {
        let manifest_in_s3 = a.manifest.as_deref().is_some_and(aws::is_url);
        let for_manifest = ["--sse", "--sse-kms-key-id", "--bucket-key-enabled", "--expected-bucket-owner"];
        if let Some(flag) = a.upload_flags.iter().find(|f| !(manifest_in_s3 && for_manifest.contains(&f.as_str()))) {
            return Err(anyhow!("{flag} applies to uploads (--to s3://bucket/prefix/), not to --out {}", a.out.as_deref().unwrap_or(Path::new("")).display()));
        }
    }
    Ok(())
}

/// `--out DIR` must be a folder or creatable as one: said about the flag, not a path derived from it.
fn check_out_dir(out: &Path) -> anyhow::Result<()> {
    let existing = out.ancestors().find(|p| !p.as_os_str().is_empty() && p.symlink_metadata().is_ok());
    match existing {
        Some(p) if !p.is_dir() && p == out => Err(anyhow!("--out {}: not a directory (it is a file; give a folder)", out.display())),
        Some(p) if !p.is_dir() => Err(anyhow!("--out {}: cannot create it: {} is not a directory", out.display(), p.display())),
        _ => Ok(()),
    }
}
