//! The flags of `sealpipe merge-manifests` and `sealpipe rebuild-manifest`.

use std::path::PathBuf;

use clap::Args;

#[derive(Args, Clone)]
pub struct MergeArgs {
    /// Manifests to join (local JSON Lines files), e.g. one per shard. Example: run-0.jsonl run-1.jsonl
    #[arg(required = true, value_name = "MANIFEST")]
    pub manifests: Vec<PathBuf>,
    /// Write the merged manifest here: one record per source, the newest. Without it, only report.
    /// Example: --out merged.jsonl
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub out: Option<PathBuf>,
    /// Replace --out if it exists. Example: --force
    #[arg(long, requires = "out", help_heading = "Output")]
    pub force: bool,
    /// List file of the sources the run should have covered: one local path or s3:// URL per line,
    /// # comments allowed; relative paths are taken from the current folder. Each source with no
    /// record is a gap. Example: --expect-list sources.txt
    #[arg(long, value_name = "FILE", help_heading = "Input")]
    pub expect_list: Option<PathBuf>,
}

#[derive(Args, Clone)]
pub struct RebuildArgs {
    /// The destination prefix whose objects carry sealpipe envelopes. Example: s3://media-in/2019/
    #[arg(value_name = "PREFIX")]
    pub prefix: String,
    /// Where to write the rebuilt manifest (a local file or s3://bucket/key). Example: --manifest rebuilt.jsonl
    #[arg(long, value_name = "PATH", help_heading = "Output")]
    pub manifest: PathBuf,
    /// Replace --manifest if it exists. Example: --force
    #[arg(long, help_heading = "Output")]
    pub force: bool,
}
