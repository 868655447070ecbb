//! The flags of `sealpipe jobs` and `sealpipe policy`.

use std::path::PathBuf;

use clap::Args;

use super::aws::{AwsArgs, ConnectArgs};
use super::{LogArgs, OutputArgs, TargetArg};

/// `sealpipe jobs`.
#[derive(Args)]
pub struct JobsArgs {
    /// Manifest of an encrypt run (a local path or an s3:// URL). Example: --manifest run.jsonl
    #[arg(long, value_name = "PATH", help_heading = "Input")]
    pub manifest: PathBuf,
    /// A CreateJob request exported from the MediaConvert console (JSON with Role and Settings
    /// holding one input, whose selectors and options every job keeps). Example: --template create-job.json
    #[arg(long, value_name = "FILE", conflicts_with = "job_template", required_unless_present = "job_template", help_heading = "Input")]
    pub template: Option<PathBuf>,
    /// A MediaConvert job template name instead of --template (needs --role). Example:
    /// --job-template System-Ott_Hls_Ts_Avc_Aac
    #[arg(long, value_name = "NAME", requires = "role", help_heading = "Input")]
    pub job_template: Option<String>,
    /// IAM role MediaConvert runs the jobs as (with --job-template; overrides a --template's Role).
    /// Example: --role arn:aws:iam::123456789012:role/MediaConvert
    #[arg(long, value_name = "ARN", help_heading = "Input")]
    pub role: Option<String>,
    /// Queue (name or ARN) of every job. Example: --queue Default
    #[arg(long, value_name = "QUEUE", help_heading = "Job settings")]
    pub queue: Option<String>,
    /// Job priority, -50 to 50. Example: --priority 10
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-50..=50), help_heading = "Job settings")]
    pub priority: Option<i32>,
    /// UserMetadata entry of every job (repeatable); sealpipe adds the source path and record id.
    /// Example: --user-metadata team=video
    #[arg(long, value_name = "KEY=VALUE", help_heading = "Job settings")]
    pub user_metadata: Vec<String>,
    /// Write one <record id>.json per job into this folder, each accepted as it is by
    /// `aws mediaconvert create-job --cli-input-json file://...` (default: JSON Lines on stdout).
    /// Example: --out-dir jobs/
    #[arg(long, value_name = "DIR", conflicts_with = "submit", help_heading = "Output")]
    pub out_dir: Option<PathBuf>,
    /// Submit the jobs. Each job id goes to the jobs ledger (<manifest>.jobs.jsonl beside a local
    /// manifest; under $XDG_STATE_HOME/sealpipe/ for an s3:// one), so a re-run submits only what is
    /// missing. Example: --submit
    #[arg(long, help_heading = "Submit")]
    pub submit: bool,
    /// Most CreateJob requests started per second with --submit (throttling is retried with
    /// backoff). Example: --max-rps 5
    #[arg(long, value_name = "N", default_value_t = 5.0, help_heading = "Submit")]
    pub max_rps: f64,
    /// The jobs ledger of --submit, instead of the default. Example: --ledger run.jobs.jsonl
    #[arg(long, value_name = "PATH", requires = "submit", help_heading = "Submit")]
    pub ledger: Option<PathBuf>,
}

/// `sealpipe jobs` with its AWS and output flags.
#[derive(Args)]
pub struct JobsCmd {
    #[command(flatten)]
    pub args: JobsArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `sealpipe policy`.
#[derive(Args)]
pub struct PolicyArgs {
    /// Manifest whose KMS key the policies are for (a local path or an s3:// URL; an s3:// one is
    /// also the run's manifest, as --run-manifest). Example:
    /// --manifest run.jsonl
    #[arg(long, value_name = "PATH", required_unless_present = "kms_key", help_heading = "Key")]
    pub manifest: Option<PathBuf>,
    /// The KMS key's ARN, instead of a manifest's (policies name keys by ARN). Example:
    /// --kms-key arn:aws:kms:eu-west-1:123456789012:key/1234abcd-...
    #[arg(long, value_name = "ARN", conflicts_with = "manifest", help_heading = "Key")]
    pub kms_key: Option<String>,
    /// The services the data keys are wrapped for (with --kms-key; a manifest's records say).
    /// Example: --target mediaconvert
    #[arg(long, value_enum, help_heading = "Key")]
    pub target: Option<TargetArg>,
    /// Where the run uploads (adds the S3 statements to the encrypting principal's policy).
    /// Example: --to s3://media-in/2019/
    #[arg(long, value_name = "S3_URL", help_heading = "What the run does")]
    pub to: Option<String>,
    /// The encrypting principal also runs verify, decrypt or reencrypt (adds kms:Decrypt and s3:GetObject).
    /// Example: --decrypts
    #[arg(long, help_heading = "What the run does")]
    pub decrypts: bool,
    /// An S3 prefix the run reads sources from (adds listing and reads; repeatable). Example:
    /// --from s3://old-archive/raw/
    #[arg(long, value_name = "S3_URL", help_heading = "What the run does")]
    pub from: Vec<String>,
    /// The run's s3:// manifest (adds reading and storing it, and its lease). Example:
    /// --run-manifest s3://media-in/runs/2019.jsonl
    #[arg(long, value_name = "S3_URL", help_heading = "What the run does")]
    pub run_manifest: Option<String>,
    /// The run copies tags from its sources (encrypt's default --copy-props; adds GetObjectTagging
    /// and PutObjectTagging). Example: --copy-tags
    #[arg(long, help_heading = "What the run does")]
    pub copy_tags: bool,
    /// The run restores archived sources (encrypt --restore; adds RestoreObject). Example: --restore
    #[arg(long, help_heading = "What the run does")]
    pub restore: bool,
}

/// `sealpipe policy` with the flags it uses: those that reach an s3:// --manifest, and the log's.
#[derive(Args)]
pub struct PolicyCmd {
    #[command(flatten)]
    pub args: PolicyArgs,
    #[command(flatten)]
    pub aws: ConnectArgs,
    #[command(flatten)]
    pub log: LogArgs,
}
