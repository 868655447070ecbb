//! `sealpipe policy`: the IAM policies the MediaConvert / Elastic
//! Transcoder role and the encrypting principal need, made by
//! `sealpipe::format::policy`; this file is flags and printing.

use std::process::ExitCode;

use anyhow::anyhow;
use serde_json::{json, Value};

use sealpipe::format::jobs;
use sealpipe::format::policy::{self, EncryptingRun, S3Prefix};
use sealpipe::{Record, Service, Target};

use super::UsageError;
use crate::args::jobs::PolicyCmd;
use crate::aws;

pub fn run(c: &PolicyCmd) -> Result<ExitCode, UsageError> {
    let a = &c.args;
    let (key_arn, target) = match (&a.manifest, &a.kms_key) {
        (Some(m), _) => {
            let ctx = aws::Context::new(&c.aws.all(), &crate::environment::keyring_path(), None)?;
            let records = super::records(m, &ctx)?;
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
    // An s3:// --manifest is the run's manifest too: the principal reads and stores it (and its lease) there.
    let s3_manifest = a.manifest.as_ref().map(|m| m.to_string_lossy().into_owned()).filter(|m| aws::is_url(std::path::Path::new(m)));
    let manifest = a.run_manifest.as_deref().or(s3_manifest.as_deref()).map(S3Prefix::parse).transpose()?;
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
