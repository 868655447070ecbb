//! The glue of each command: flags in, the engine's run, the report out.
//! One file per command or small group; the flags themselves are in
//! [`crate::args`].

pub mod bench;
pub mod decrypt;
pub mod deploy;
pub mod docs;
pub mod encrypt;
pub mod jobs;
pub mod merge;
pub mod policy;
pub mod rebuild;
pub mod reencrypt;
pub mod status;
pub mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use sealpipe::{ManifestCopy, MemoryPlan, Record, Summary};

use crate::args::aws::AwsArgs;
use crate::args::WorkArgs;
use crate::{aws, report};

/// What the commands that do work are given, built from the flags each of them takes.
#[derive(Clone)]
pub struct Global {
    pub threads: Option<usize>,
    pub json: bool,
    pub keyring: Option<PathBuf>,
    pub create_keyring: bool,
    pub memory: Option<u64>,
    pub chunk_size: u64,
    pub kms_key: Option<String>,
    pub aws: AwsArgs,
}

impl WorkArgs {
    /// The [`Global`] of these flags, with `kms_key` as the command's KMS key.
    pub fn global(&self, kms_key: Option<String>) -> Global {
        Global {
            threads: self.perf.threads,
            json: self.output.json,
            keyring: self.keyring.keyring.clone(),
            create_keyring: self.keyring.create_keyring,
            memory: self.perf.memory,
            chunk_size: self.perf.chunk.chunk_size,
            kms_key,
            aws: self.aws.clone(),
        }
    }
}

/// An error that makes the whole command pointless (exit code 2).
pub struct UsageError(pub anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for UsageError {
    fn from(e: E) -> Self {
        UsageError(e.into())
    }
}

/// The context of a command; the keyring is created on first use only at
/// its default path or with --create-keyring.
pub fn context(g: &Global, keyring_path: &Path, kms_key: Option<String>) -> anyhow::Result<aws::Context> {
    let mut ctx = aws::Context::new(&g.aws, keyring_path, kms_key)?;
    ctx.providers.create_keyring = g.create_keyring || g.keyring.is_none();
    Ok(ctx)
}

pub fn parse_hex(text: &str, flag: &str) -> anyhow::Result<Vec<u8>> {
    hex::decode(text.trim()).map_err(|e| anyhow!("malformed hex in {flag}: {e}"))
}

/// The exit code of a run: 0 all done, 1 some failed, 3 stopped at --max-errors, 4 archived objects wait.
pub fn exit_for(summary: &Summary) -> ExitCode {
    if summary.interrupted {
        // Stopped by a signal with everything in flight finished and recorded: retried, it resumes.
        ExitCode::from(crate::interrupt::INTERRUPTED)
    } else if summary.stopped_early() {
        ExitCode::from(3)
    } else if !summary.failures.is_empty() {
        ExitCode::from(1)
    } else if summary.archived > 0 {
        // Work remains: archived objects wait for a restore.
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    }
}

/// The plan of every buffer of the command's run, from `--memory` (see
/// [`MemoryPlan`]); `upload` is `(part size, parts in flight)` for S3 destinations.
pub fn memory_plan(g: &Global, upload: Option<(u64, usize)>) -> anyhow::Result<MemoryPlan> {
    let budget = g.memory.unwrap_or_else(MemoryPlan::default_budget);
    Ok(MemoryPlan::new(budget, rayon::current_num_threads(), g.chunk_size as usize, upload)?)
}

/// The local working copy of the manifest at `url` (see
/// [`sealpipe::fetch_manifest`]), saying when it resumes an interrupted run's.
pub fn fetch_manifest<'c>(ctx: &'c aws::Context, url: &str, appending: bool) -> anyhow::Result<ManifestCopy<'c>> {
    let copy = sealpipe::fetch_manifest(&ctx.stores, url, appending, &aws::folders())?;
    if copy.resumed {
        report::info(&format!("sealpipe: resuming from {} (the local copy of {url} an interrupted run left)", copy.local.display()));
    }
    Ok(copy)
}

/// The records of a manifest, local or in a store.
pub fn read_manifest(path: &Path, ctx: &aws::Context) -> anyhow::Result<Vec<Record>> {
    Ok(sealpipe::read_manifest(&ctx.stores, path, &aws::folders())?)
}

/// The records of a manifest (local or in a store), refusing one that has none.
pub fn records(manifest: &Path, ctx: &aws::Context) -> anyhow::Result<Vec<Record>> {
    let records = read_manifest(manifest, ctx)?;
    if records.is_empty() {
        return Err(anyhow!("{}: manifest has no records", manifest.display()));
    }
    Ok(records)
}
