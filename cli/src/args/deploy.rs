//! `sealpipe deploy`'s flags: the engine, the definition's settings, and
//! the run's own command after `--` (parsed by [`crate::cmd::deploy`]).

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `sealpipe deploy`.
#[derive(Args)]
pub struct DeployCmd {
    #[command(subcommand)]
    pub engine: Engine,
}

#[derive(Subcommand)]
pub enum Engine {
    /// A Kubernetes Indexed Job (JSON, for `kubectl apply -f -`): one pod per shard, each retried
    /// on its own (backoffLimitPerIndex), usage errors not retried, evictions not counted.
    #[command(after_help = "Example:
  sealpipe deploy kubernetes --name backfill-2019 --image registry.example.com/sealpipe:0.1 \\
      --shards 16 --service-account sealpipe --ledger-claim sealpipe-ledger -- \\
      encrypt s3://media-raw/2019/ --to s3://media-in/2019/ --kms-key alias/media \\
      --manifest /ledger/2019.jsonl | kubectl apply -f -")]
    Kubernetes(KubernetesArgs),
    /// An AWS Batch job definition (JSON, for `aws batch register-job-definition --cli-input-json`),
    /// or with --submit-job its array job (for `aws batch submit-job --cli-input-json`).
    #[command(after_help = "Examples:
  sealpipe deploy batch --name sealpipe-2019 \\
      --image 123456789012.dkr.ecr.eu-west-1.amazonaws.com/sealpipe:0.1 --shards 16 \\
      --job-role-arn arn:aws:iam::123456789012:role/sealpipe -- \\
      encrypt s3://media-raw/2019/ --to s3://media-in/2019/ --kms-key alias/media \\
      --manifest s3://media-in/runs/2019.jsonl > jobdef.json
  sealpipe deploy batch ... --submit-job --job-queue media-batch -- encrypt ... > job.json")]
    Batch(BatchArgs),
}

/// What every engine's definition needs.
#[derive(Args)]
pub struct CommonArgs {
    /// Name of the Job (Kubernetes: lowercase letters, digits and '-') or the job definition.
    /// Example: --name backfill-2019
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Container image (see the Dockerfile). Example: --image registry.example.com/sealpipe:0.1
    #[arg(long, value_name = "IMAGE")]
    pub image: String,
    /// Number of shards: the command runs as --shard auto/N, each shard's index from the engine.
    /// Example: --shards 16
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub shards: u32,
    /// Where the shared ledger volume is mounted in the container (a local --manifest must be below it).
    /// Example: --ledger-mount /ledger
    #[arg(long, value_name = "PATH", default_value = "/ledger")]
    pub ledger_mount: PathBuf,
    /// The run's command, as `sealpipe` takes it (encrypt or reencrypt, with --manifest), after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Args)]
pub struct KubernetesArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Namespace of the Job. Example: --namespace media
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// Service account of the pods (its IAM role through IRSA or EKS Pod Identity). Example: --service-account sealpipe
    #[arg(long, value_name = "NAME")]
    pub service_account: Option<String>,
    /// PersistentVolumeClaim (ReadWriteMany) holding the shards' manifests, mounted at --ledger-mount.
    /// Needed for a local --manifest. Example: --ledger-claim sealpipe-ledger
    #[arg(long, value_name = "CLAIM")]
    pub ledger_claim: Option<String>,
    /// Shards running at once (default: all). Example: --parallelism 8
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub parallelism: Option<u32>,
    /// Failed attempts of one shard before it is given up (evictions are not counted). Example: --backoff-limit-per-index 5
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub backoff_limit_per_index: u32,
    /// CPU request of each pod. Example: --cpu 4
    #[arg(long, value_name = "CPU")]
    pub cpu: Option<String>,
    /// Memory request and limit of each pod (above the run's --memory). Example: --memory 4Gi
    #[arg(long, value_name = "QUANTITY")]
    pub memory: Option<String>,
}

#[derive(Args)]
pub struct BatchArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// IAM role the container runs as. Example: --job-role-arn arn:aws:iam::123456789012:role/sealpipe
    #[arg(long, value_name = "ARN")]
    pub job_role_arn: Option<String>,
    /// EFS file system holding the shards' manifests, mounted at --ledger-mount. Needed for a local
    /// --manifest. Example: --efs-file-system fs-0123456789abcdef0
    #[arg(long, value_name = "ID")]
    pub efs_file_system: Option<String>,
    /// vCPUs of each child job. Example: --vcpus 16
    #[arg(long, value_name = "N", default_value = "4")]
    pub vcpus: String,
    /// Memory of each child job, MiB. Example: --memory-mib 8192
    #[arg(long, value_name = "MIB", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(4..))]
    pub memory_mib: u64,
    /// Attempts of each child job (1 to 10). Example: --attempts 5
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub attempts: u32,
    /// Print the array job's submission (for aws batch submit-job --cli-input-json) instead of the
    /// job definition. Example: --submit-job --job-queue media-batch
    #[arg(long, requires = "job_queue")]
    pub submit_job: bool,
    /// Job queue of the submission. Example: --job-queue media-batch
    #[arg(long, value_name = "QUEUE")]
    pub job_queue: Option<String>,
    /// Name of the submitted job (default: --name). Example: --job-name backfill-2026-11-22
    #[arg(long, value_name = "NAME")]
    pub job_name: Option<String>,
}

