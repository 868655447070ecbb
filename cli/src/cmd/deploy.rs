//! `sealpipe deploy`: the job definitions of a sharded run, printed from
//! the run's own command line (issue 22). The command after `--` is parsed
//! as `sealpipe` would parse it (so a definition never carries a command
//! the container would refuse), checked for what a container run needs (a
//! named manifest, in S3 or on the shared volume; no `--shard`, which the
//! engine's index sets), and put in a Kubernetes Indexed Job or an AWS
//! Batch job definition (or its array submission), made by
//! `sealpipe::format::deploy`. This file is checks and printing; the flags are `args::deploy`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail};

use sealpipe::format::deploy::{self, Batch, Kubernetes, Ledger, Run};

use super::UsageError;
use crate::args::deploy::{CommonArgs, DeployCmd, Engine};

/// Print the definition `c` asks for; `cli` parses the run's command.
pub(crate) fn run(c: &DeployCmd, cli: clap::Command) -> Result<ExitCode, UsageError> {
    let value = match &c.engine {
        Engine::Kubernetes(k) => {
            check_name(&k.common.name, true)?;
            let run = sharded_run(&k.common, k.ledger_claim.as_deref(), "--ledger-claim", cli)?;
            let settings = Kubernetes {
                namespace: k.namespace.clone(),
                service_account: k.service_account.clone(),
                parallelism: k.parallelism,
                backoff_limit_per_index: k.backoff_limit_per_index,
                cpu: k.cpu.clone(),
                memory: k.memory.clone(),
            };
            deploy::kubernetes_job(&run, &settings)
        }
        Engine::Batch(b) => {
            check_name(&b.common.name, false)?;
            let run = sharded_run(&b.common, b.efs_file_system.as_deref(), "--efs-file-system", cli)?;
            if b.submit_job {
                let name = b.job_name.clone().unwrap_or_else(|| b.common.name.clone());
                check_name(&name, false)?;
                deploy::batch_submit_job(&run, &name, b.job_queue.as_deref().expect("clap requires --job-queue"))
            } else {
                deploy::batch_job_definition(&run, &Batch { job_role_arn: b.job_role_arn.clone(), vcpus: b.vcpus.clone(), memory_mib: b.memory_mib, attempts: b.attempts })
            }
        }
    };
    outln!("{}", pretty(&value, 0));
    Ok(ExitCode::SUCCESS)
}

/// Indented JSON, with arrays of numbers and strings (arguments, exit codes) on one line.
fn pretty(v: &serde_json::Value, depth: usize) -> String {
    use serde_json::Value;
    let pad = |d: usize| "  ".repeat(d);
    match v {
        Value::Object(m) if !m.is_empty() => {
            let items: Vec<String> = m.iter().map(|(k, v)| format!("{}{}: {}", pad(depth + 1), Value::from(k.as_str()), pretty(v, depth + 1))).collect();
            format!("{{\n{}\n{}}}", items.join(",\n"), pad(depth))
        }
        Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
            let items: Vec<String> = a.iter().map(|x| format!("{}{}", pad(depth + 1), pretty(x, depth + 1))).collect();
            format!("[\n{}\n{}]", items.join(",\n"), pad(depth))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(Value::to_string).collect::<Vec<_>>().join(", ")),
        other => other.to_string(),
    }
}

/// A Kubernetes name (RFC 1123 label: it is also a label's value) or a Batch one.
fn check_name(name: &str, kubernetes: bool) -> anyhow::Result<()> {
    let ok = if kubernetes {
        name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric())
    } else {
        (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if ok {
        Ok(())
    } else if kubernetes {
        bail!("--name {name:?}: a Kubernetes name has at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit")
    } else {
        bail!("{name:?}: an AWS Batch name has 1 to 128 letters, digits, '-' and '_'")
    }
}

/// The run of `common.command`, checked as a container would run it.
fn sharded_run(common: &CommonArgs, volume: Option<&str>, volume_flag: &str, cli: clap::Command) -> anyhow::Result<Run> {
    let argv = std::iter::once("sealpipe".to_string()).chain(common.command.iter().cloned());
    let matches = cli.try_get_matches_from(argv).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
        anyhow!("the command after --: {first}")
    })?;
    let Some((command @ ("encrypt" | "reencrypt"), m)) = matches.subcommand() else {
        bail!("the command after -- must be encrypt or reencrypt, got {:?}", common.command.first().map(String::as_str).unwrap_or_default());
    };
    if let Some(shard) = m.get_one::<String>("shard") {
        bail!("{command} --shard {shard}: leave --shard out; each shard's index comes from the engine (--shard auto/{} is added)", common.shards);
    }
    let Some(manifest) = m.get_one::<PathBuf>("manifest") else {
        bail!("{command}: give --manifest (an s3:// URL, or a path below --ledger-mount {} on the shared volume): a container's own folders go with it, and a retried shard resumes from its manifest", common.ledger_mount.display());
    };
    let mount = &common.ledger_mount;
    if !mount.is_absolute() {
        bail!("--ledger-mount {}: give an absolute path", mount.display());
    }
    let below = |p: &Path| p.is_absolute() && p.starts_with(mount) && p != mount;
    let remote = manifest.to_string_lossy().contains("://");
    if !remote {
        if volume.is_none() {
            bail!("--manifest {}: a local manifest needs the shared volume ({volume_flag}), or give an s3:// manifest", manifest.display());
        }
        if !below(manifest) {
            bail!("--manifest {}: not below --ledger-mount {} (the shared volume): a retried shard would not find it", manifest.display(), mount.display());
        }
    }
    // Local inputs and outputs exist in the container only on the shared volume.
    let inputs = m.get_many::<PathBuf>("inputs").into_iter().flatten();
    for path in inputs.chain(m.get_one::<PathBuf>("out")) {
        if !path.to_string_lossy().contains("://") && (volume.is_none() || !below(path)) {
            bail!("{}: a local path in a container run must be below --ledger-mount {} on the shared volume ({volume_flag}); use s3:// inputs and --to", path.display(), mount.display());
        }
    }
    let ledger = match volume {
        Some(source) => Ledger::Volume { source: source.to_string(), mount: mount.display().to_string() },
        None => Ledger::Manifest,
    };
    let grace_seconds = m.get_one::<u64>("grace_seconds").copied().unwrap_or(20);
    Ok(Run { name: common.name.clone(), image: common.image.clone(), shards: common.shards, args: common.command.clone(), ledger, grace_seconds })
}
