//! `sealpipe jobs` and `sealpipe policy`: the last steps of the MediaConvert
//! guide, done for a whole manifest. `jobs` makes one `CreateJob` request per
//! record (printed as JSON Lines, written one file per job, or submitted with
//! a jobs ledger so a re-run sends only what is missing); `policy` prints the
//! IAM policies the service role and the encrypting principal need. The
//! requests and policies are made by `sealpipe::format::{jobs, policy}`,
//! submission by `sealpipe::run::submit`; this file is flags and printing.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context as _};
use clap::Args;
use serde_json::{json, Value};

use sealpipe::format::jobs::{self, JobOptions, JobTemplate};
use sealpipe::format::policy::{self, EncryptingRun, S3Prefix};
use sealpipe::format::record::Record;
use sealpipe::format::{Service, Target};
use sealpipe::keys::LocalKeyring;
use sealpipe::run::submit::{self, Backoff, JobOutcome, JobRequest, SubmitOptions};

use crate::{aws, report, OutputArgs, TargetArg, UsageError};

/// `sealpipe jobs`.
#[derive(Args)]
pub(crate) struct JobsArgs {
    /// Manifest of an encrypt run (a local path or an s3:// URL). Example: --manifest run.jsonl
    #[arg(long, value_name = "PATH")]
    manifest: PathBuf,
    /// A CreateJob request exported from the MediaConvert console (JSON with Role and Settings
    /// holding one input, whose selectors and options every job keeps). Example: --template create-job.json
    #[arg(long, value_name = "FILE", conflicts_with = "job_template", required_unless_present = "job_template")]
    template: Option<PathBuf>,
    /// A MediaConvert job template name instead of --template (needs --role). Example:
    /// --job-template System-Ott_Hls_Ts_Avc_Aac
    #[arg(long, value_name = "NAME", requires = "role")]
    job_template: Option<String>,
    /// IAM role MediaConvert runs the jobs as (with --job-template; overrides a --template's Role).
    /// Example: --role arn:aws:iam::123456789012:role/MediaConvert
    #[arg(long, value_name = "ARN")]
    role: Option<String>,
    /// Queue (name or ARN) of every job. Example: --queue Default
    #[arg(long, value_name = "QUEUE")]
    queue: Option<String>,
    /// Job priority, -50 to 50. Example: --priority 10
    #[arg(long, value_name = "N", allow_negative_numbers = true, value_parser = clap::value_parser!(i32).range(-50..=50))]
    priority: Option<i32>,
    /// UserMetadata entry of every job (repeatable); sealpipe adds the source path and record id.
    /// Example: --user-metadata team=video
    #[arg(long, value_name = "KEY=VALUE")]
    user_metadata: Vec<String>,
    /// Write one <record id>.json per job into this folder, each accepted as it is by
    /// `aws mediaconvert create-job --cli-input-json file://...` (default: JSON Lines on stdout).
    /// Example: --out-dir jobs/
    #[arg(long, value_name = "DIR", conflicts_with = "submit")]
    out_dir: Option<PathBuf>,
    /// Submit the jobs. Each job id goes to the jobs ledger (<manifest>.jobs.jsonl beside a local
    /// manifest; under $XDG_STATE_HOME/sealpipe/ for an s3:// one), so a re-run submits only what is
    /// missing. Example: --submit
    #[arg(long)]
    submit: bool,
    /// Most CreateJob requests started per second with --submit (throttling is retried with
    /// backoff). Example: --max-rps 5
    #[arg(long, value_name = "N", default_value_t = 5.0)]
    max_rps: f64,
    /// The jobs ledger of --submit, instead of the default. Example: --ledger run.jobs.jsonl
    #[arg(long, value_name = "PATH", requires = "submit")]
    ledger: Option<PathBuf>,
}

/// `sealpipe jobs` with its AWS and output flags.
#[derive(Args)]
pub(crate) struct JobsCmd {
    #[command(flatten)]
    args: JobsArgs,
    #[command(flatten)]
    aws: aws::AwsArgs,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

/// `sealpipe policy`.
#[derive(Args)]
pub(crate) struct PolicyArgs {
    /// Manifest whose KMS key the policies are for (a local path or an s3:// URL). Example:
    /// --manifest run.jsonl
    #[arg(long, value_name = "PATH", required_unless_present = "kms_key")]
    manifest: Option<PathBuf>,
    /// The KMS key's ARN, instead of a manifest's (policies name keys by ARN). Example:
    /// --kms-key arn:aws:kms:eu-west-1:123456789012:key/1234abcd-...
    #[arg(long, value_name = "ARN", conflicts_with = "manifest")]
    kms_key: Option<String>,
    /// The services the data keys are wrapped for (with --kms-key; a manifest's records say).
    /// Example: --target mediaconvert
    #[arg(long, value_enum)]
    target: Option<TargetArg>,
    /// Where the run uploads (adds the S3 statements to the encrypting principal's policy).
    /// Example: --to s3://media-in/2019/
    #[arg(long, value_name = "S3_URL")]
    to: Option<String>,
    /// The encrypting principal also runs verify, decrypt or reencrypt (adds kms:Decrypt and s3:GetObject).
    /// Example: --decrypts
    #[arg(long)]
    decrypts: bool,
    /// An S3 prefix the run reads sources from (adds listing and reads; repeatable). Example:
    /// --from s3://old-archive/raw/
    #[arg(long, value_name = "S3_URL")]
    from: Vec<String>,
    /// The run's s3:// manifest (adds reading and storing it, and its lease). Example:
    /// --run-manifest s3://media-in/runs/2019.jsonl
    #[arg(long, value_name = "S3_URL")]
    run_manifest: Option<String>,
    /// The run copies tags from its sources (encrypt's default --copy-props; adds GetObjectTagging
    /// and PutObjectTagging). Example: --copy-tags
    #[arg(long)]
    copy_tags: bool,
    /// The run restores archived sources (encrypt --restore; adds RestoreObject). Example: --restore
    #[arg(long)]
    restore: bool,
}

/// `sealpipe policy` with its AWS (for an s3:// manifest) and output flags.
#[derive(Args)]
pub(crate) struct PolicyCmd {
    #[command(flatten)]
    args: PolicyArgs,
    #[command(flatten)]
    aws: aws::AwsArgs,
    #[command(flatten)]
    pub(crate) output: OutputArgs,
}

fn options(a: &JobsArgs, region: Option<String>) -> anyhow::Result<JobOptions> {
    let mut user_metadata = BTreeMap::new();
    for kv in &a.user_metadata {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => user_metadata.insert(k.to_string(), v.to_string()),
            _ => return Err(anyhow!("--user-metadata {kv}: expected KEY=VALUE")),
        };
    }
    Ok(JobOptions { region, queue: a.queue.clone(), priority: a.priority, user_metadata })
}

fn template(a: &JobsArgs) -> anyhow::Result<JobTemplate> {
    match (&a.template, &a.job_template, &a.role) {
        (Some(path), _, role) => {
            let bytes = std::fs::read(path).with_context(|| format!("--template {}", path.display()))?;
            let mut t = JobTemplate::from_request_json(&bytes).with_context(|| format!("--template {}", path.display()))?;
            if let Some(role) = role {
                t.set_role(role)?;
            }
            Ok(t)
        }
        (None, Some(name), Some(role)) => Ok(JobTemplate::named(name, role)?),
        _ => Err(anyhow!("give --template FILE, or --job-template NAME with --role ARN")),
    }
}

/// The jobs ledger: beside a local manifest, in the state folder for an s3:// one.
fn ledger_path(manifest: &Path) -> PathBuf {
    if aws::is_url(manifest) {
        let named = aws::default_s3_manifest(&manifest.to_string_lossy());
        return named.with_extension("jobs.jsonl");
    }
    let mut name = manifest.as_os_str().to_owned();
    name.push(".jobs.jsonl");
    PathBuf::from(name)
}

/// The records of the manifest (local or in a store).
fn records(manifest: &Path, ctx: &aws::Context) -> anyhow::Result<Vec<Record>> {
    let records = crate::read_manifest(manifest, ctx)?;
    if records.is_empty() {
        return Err(anyhow!("{}: manifest has no records", manifest.display()));
    }
    Ok(records)
}

pub(crate) fn run_jobs(c: &JobsCmd) -> Result<ExitCode, UsageError> {
    let (a, json_out) = (&c.args, c.output.json);
    if !(a.max_rps > 0.0 && a.max_rps.is_finite()) {
        return Err(anyhow!("--max-rps must be a positive number, got {}", a.max_rps).into());
    }
    let template = template(a)?;
    let ctx = aws::Context::new(&c.aws, &LocalKeyring::default_path(), None)?;
    let records = records(&a.manifest, &ctx)?;
    // KmsKeyRegion is left out only where the key is in the job's region: that region must be known.
    let region = match &c.aws.region {
        Some(r) => r.clone(),
        None => ctx.providers.session.aws()?.region().map_err(|_| anyhow!("give --region: the region jobs run in decides whether KmsKeyRegion is needed"))?,
    };
    let opts = options(a, Some(region))?;

    let mut refused = 0usize;
    let mut requests = Vec::new();
    for r in &records {
        match jobs::build_request(r, &template, &opts) {
            Ok(request) => requests.push(JobRequest {
                record: jobs::record_id(r),
                source: r.source.clone(),
                token: jobs::client_request_token(r, &template, &opts),
                request,
            }),
            Err(e) => {
                refused += 1;
                errln!("sealpipe: refused: {e}");
            }
        }
    }
    let failed = if a.submit {
        submit_all(a, &ctx, &requests, json_out)?
    } else if let Some(dir) = &a.out_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("--out-dir {}", dir.display()))?;
        for job in &requests {
            let path = dir.join(format!("{}.json", job.record));
            let body = serde_json::to_vec_pretty(&job.request).expect("JSON serializes");
            // Written whole or not at all: a temporary name, renamed.
            let tmp = dir.join(format!(".{}.json.tmp", job.record));
            std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, &path)).with_context(|| format!("{}", path.display()))?;
        }
        report::info(&format!("sealpipe: {} job request(s) written to {}", requests.len(), dir.display()));
        0
    } else {
        let mut out = std::io::stdout().lock();
        for job in &requests {
            writeln!(out, "{}", serde_json::to_string(&job.request).expect("JSON serializes"))?;
        }
        0
    };
    Ok(if refused + failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Submit what the ledger lacks; how many jobs failed.
fn submit_all(a: &JobsArgs, ctx: &aws::Context, requests: &[JobRequest], json_out: bool) -> anyhow::Result<usize> {
    let ledger = a.ledger.clone().unwrap_or_else(|| ledger_path(&a.manifest));
    let aws = ctx.providers.session.aws()?;
    let options = SubmitOptions { max_rps: a.max_rps, in_flight: (a.max_rps.ceil() as usize).clamp(1, 16), backoff: Backoff::default() };
    let bar = report::counter("jobs", requests.len() as u64);
    let (mut submitted, mut already, mut found, mut failed) = (0usize, 0usize, 0usize, 0usize);
    let started = std::time::Instant::now();
    // Ctrl-C or SIGTERM exits (130) at once: every job so far is in the synced ledger, and one sent
    // but not yet recorded is found by its token by the next run.
    submit::submit_all(aws, requests, &ledger, &options, &mut |job, outcome| {
        let (status, job_id, error) = match outcome {
            JobOutcome::Submitted(id) => {
                submitted += 1;
                ("submitted", Some(id), None)
            }
            JobOutcome::AlreadySubmitted(id) => {
                already += 1;
                ("already-submitted", Some(id), None)
            }
            JobOutcome::Found(id) => {
                found += 1;
                ("found", Some(id), None)
            }
            JobOutcome::Failed(e) => {
                failed += 1;
                ("failed", None, Some(e))
            }
        };
        if json_out {
            let mut v = json!({"event": "job", "status": status, "source": job.source, "record": job.record, "token": job.token});
            if let Some(id) = job_id {
                v["job_id"] = json!(id);
            }
            if let Some(e) = error {
                v["error"] = json!(e);
            }
            outln!("{v}");
        }
        if let Some(e) = error {
            match &bar {
                Some(b) => b.suspend(|| errln!("sealpipe: failed: {e}")),
                None => errln!("sealpipe: failed: {e}"),
            }
        }
        if let Some(b) = &bar {
            b.inc(1);
            b.set_message(job.source.clone());
        }
    })
    .map_err(|e| anyhow!("{e}"))?;
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    if json_out {
        outln!(
            "{}",
            json!({"event": "summary", "command": "jobs", "submitted": submitted, "already_submitted": already, "found": found,
                   "failed": failed, "ledger": ledger, "seconds": seconds})
        );
    } else {
        report::info(&format!(
            "sealpipe: {submitted} job(s) submitted, {already} already submitted, {found} found from an interrupted run, {failed} failed in {seconds:.1} s (ledger {})",
            ledger.display()
        ));
    }
    Ok(failed)
}

pub(crate) fn run_policy(c: &PolicyCmd) -> Result<ExitCode, UsageError> {
    let a = &c.args;
    let (key_arn, target) = match (&a.manifest, &a.kms_key) {
        (Some(m), _) => {
            let ctx = aws::Context::new(&c.aws, &LocalKeyring::default_path(), None)?;
            let records = records(m, &ctx)?;
            let kms: Vec<&Record> = records.iter().filter(|r| r.key_provider == jobs::KMS_PROVIDER).collect();
            let mut keys: Vec<&str> = kms.iter().map(|r| r.key_id.as_str()).collect();
            keys.sort_unstable();
            keys.dedup();
            let key = match keys.as_slice() {
                [one] => one.to_string(),
                [] => return Err(anyhow!("{}: no record's key is wrapped by AWS KMS (the local keyring needs no policy)", m.display()).into()),
                many => return Err(anyhow!("{}: records use {} KMS keys ({}); give --kms-key for one", m.display(), many.len(), many.join(", ")).into()),
            };
            // The services of the records: those their keys are wrapped for.
            let target = match a.target {
                Some(t) => t.into(),
                None if kms.iter().all(|r| r.elastictranscoder.is_none()) => Target::MediaConvert,
                None if kms.iter().all(|r| r.mediaconvert.is_none()) => Target::ElasticTranscoder,
                None => Target::Any,
            };
            (key, target)
        }
        (None, Some(k)) => (k.clone(), a.target.map_or(Target::Any, Target::from)),
        (None, None) => return Err(anyhow!("give --manifest or --kms-key (a key ARN)").into()),
    };
    let services: &[Service] = target.services();
    let dest = a.to.as_deref().map(S3Prefix::parse).transpose()?;
    let mut roles = serde_json::Map::new();
    for s in services {
        roles.insert(s.short_name().into(), policy::service_role_policy(&key_arn, *s)?);
    }
    let sources = a.from.iter().map(|u| S3Prefix::parse(u)).collect::<sealpipe::Result<Vec<_>>>()?;
    let manifest = a.run_manifest.as_deref().map(S3Prefix::parse).transpose()?;
    let run = EncryptingRun {
        sources: &sources,
        manifest: manifest.as_ref(),
        copies_tags: a.copy_tags,
        restores: a.restore,
        ..EncryptingRun::new(&key_arn, services, dest.as_ref(), a.decrypts)
    };
    let principal = policy::encrypting_principal_policy(&run)?;
    let out: Value = json!({"kms_key": key_arn, "target": target.to_string(), "service_roles": roles, "encrypting_principal": principal});
    outln!("{}", serde_json::to_string_pretty(&out).expect("JSON serializes"));
    Ok(ExitCode::SUCCESS)
}
