//! `sealpipe jobs`: the last step of the MediaConvert guide, done for a
//! whole manifest: one `CreateJob` request per record (printed as JSON
//! Lines, written one file per job, or submitted with a jobs ledger so a
//! re-run sends only what is missing). The requests are made by
//! `sealpipe::format::jobs`, submission by `sealpipe::submit_all`; this
//! file is flags and printing.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{anyhow, Context as _};
use serde_json::json;

use sealpipe::format::jobs::{self, JobOptions, JobTemplate};
use sealpipe::{Backoff, JobRequest, SubmitOptions};

use super::UsageError;
use crate::args::jobs::{JobsArgs, JobsCmd};
use crate::{aws, report};

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

pub fn run(c: &JobsCmd) -> Result<ExitCode, UsageError> {
    let (a, json_out) = (&c.args, c.output.json);
    if !(a.max_rps > 0.0 && a.max_rps.is_finite()) {
        return Err(anyhow!("--max-rps must be a positive number, got {}", a.max_rps).into());
    }
    let template = template(a)?;
    let ctx = aws::Context::new(&c.aws, &crate::environment::keyring_path(), None)?;
    let records = super::records(&a.manifest, &ctx)?;
    // KmsKeyRegion is left out only where the key is in the job's region: that region must be known.
    let region = match &c.aws.connect.region {
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
    let ledger = a.ledger.clone().unwrap_or_else(|| sealpipe::jobs_ledger(&a.manifest, &aws::folders()));
    let aws = ctx.providers.session.aws()?;
    let options = SubmitOptions { max_rps: a.max_rps, in_flight: (a.max_rps.ceil() as usize).clamp(1, 16), backoff: Backoff::default() };
    let events = report::events();
    events.begin_count("jobs", requests.len() as u64, json_out);
    let started = std::time::Instant::now();
    // Ctrl-C or SIGTERM exits (130) at once: every job so far is in the synced ledger, and one sent
    // but not yet recorded is found by its token by the next run.
    sealpipe::submit_all(aws, requests, &ledger, &options, events).map_err(|e| anyhow!("{e}"))?;
    events.clear();
    let [submitted, already, found, failed] = events.jobs().map(|n| n as usize);
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
