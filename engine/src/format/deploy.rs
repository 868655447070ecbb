//! Job definitions for the engines users run shards on (issue 22,
//! `sealpipe deploy`): a Kubernetes Indexed Job, and an AWS Batch job
//! definition with its array job submission, each running one encrypt (or
//! reencrypt) command as `--shard auto/N`.
//!
//! The retry rules follow the exit codes of the CLI: a usage or
//! configuration error (2) and objects waiting for a restore (4) are not
//! retried (a retry would fail the same way, or find nothing restored
//! yet); an interrupted run (130: SIGTERM or Ctrl-C, the graceful stop or
//! the abort) and a process killed by SIGKILL or SIGTERM before its handler
//! ran (137, 143, as container runtimes report them) are retried, and
//! resume from their manifest; anything else (1 some files failed, 3
//! stopped at `--max-errors`) is retried within the attempts. On
//! Kubernetes a pod disrupted by an eviction, a preemption or a node drain
//! (its `DisruptionTarget` condition) is retried without counting against
//! `backoffLimitPerIndex`.
//!
//! Pure functions returning `serde_json::Value`s: the Kubernetes object is
//! accepted by `kubectl apply -f -`, the Batch ones by `aws batch
//! register-job-definition --cli-input-json` and `aws batch submit-job
//! --cli-input-json`. Validated offline in the suite (`cli/tests/deploy.rs`)
//! against the Kubernetes API schemas and botocore's Batch service model.

use serde_json::{json, Map, Value};

/// The container's name (Kubernetes' `podFailurePolicy` rules name it).
pub const CONTAINER: &str = "sealpipe";

/// Exit codes a retry cannot fix: usage or configuration error, archived objects waiting for a restore.
pub const NOT_RETRIED: [i32; 2] = [2, 4];

/// Exit codes of an interrupted run: 130 (the CLI's own), 137 and 143 (killed by SIGKILL, SIGTERM).
pub const RETRIED: [i32; 3] = [130, 137, 143];

/// Seconds the engine waits after SIGTERM beyond the run's `--grace-seconds`
/// before it kills the container: time to abort what is in flight and exit.
pub const GRACE_MARGIN_SECONDS: u64 = 10;

/// Where the shards' manifests (the ledger a retry resumes from) live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ledger {
    /// In S3 (`--manifest s3://...`): no volume; a retried shard resumes from the object.
    Manifest,
    /// On a shared volume mounted at `mount`: a PersistentVolumeClaim's name, or an EFS file system id.
    Volume {
        /// The claim (Kubernetes) or file system id (Batch).
        source: String,
        /// Where the container sees it.
        mount: String,
    },
}

/// One sharded run: what every engine's definition is made of.
#[derive(Clone, Debug)]
pub struct Run {
    /// Name of the Job or the job definition.
    pub name: String,
    /// Container image.
    pub image: String,
    /// Number of shards.
    pub shards: u32,
    /// The command's arguments (`encrypt ...`), without `--shard`.
    pub args: Vec<String>,
    /// Where the ledger lives.
    pub ledger: Ledger,
    /// The run's `--grace-seconds`.
    pub grace_seconds: u64,
}

impl Run {
    /// The container's arguments: the command's, then `--shard auto/N` (none for one shard).
    pub fn container_args(&self) -> Vec<String> {
        let mut args = self.args.clone();
        if self.shards > 1 {
            args.extend(["--shard".to_string(), format!("auto/{}", self.shards)]);
        }
        args
    }
}

/// Kubernetes-specific settings.
#[derive(Clone, Debug, Default)]
pub struct Kubernetes {
    /// Namespace of the Job (none: kubectl's current one).
    pub namespace: Option<String>,
    /// Service account the pods run as (its IAM role through IRSA or Pod Identity).
    pub service_account: Option<String>,
    /// Shards run at once (none: all).
    pub parallelism: Option<u32>,
    /// Failed attempts of one shard before it is given up.
    pub backoff_limit_per_index: u32,
    /// CPU request, e.g. "4".
    pub cpu: Option<String>,
    /// Memory request and limit, e.g. "4Gi".
    pub memory: Option<String>,
}

/// The Indexed Job: one pod per shard (`JOB_COMPLETION_INDEX`), each
/// retried on its own (`backoffLimitPerIndex`) as `podFailurePolicy` says.
pub fn kubernetes_job(run: &Run, k: &Kubernetes) -> Value {
    let labels = json!({"app.kubernetes.io/name": "sealpipe", "app.kubernetes.io/instance": run.name});
    let mut metadata = json!({"name": run.name, "labels": labels});
    if let Some(ns) = &k.namespace {
        metadata["namespace"] = json!(ns);
    }
    // A read-only root file system: the state folder (an s3:// manifest's
    // working copy, its journal) and the temporary folder are the pod's own.
    let mut mounts = vec![json!({"name": "state", "mountPath": "/state"}), json!({"name": "tmp", "mountPath": "/tmp"})];
    let mut volumes = vec![json!({"name": "state", "emptyDir": {}}), json!({"name": "tmp", "emptyDir": {}})];
    if let Ledger::Volume { source, mount } = &run.ledger {
        mounts.push(json!({"name": "ledger", "mountPath": mount}));
        volumes.push(json!({"name": "ledger", "persistentVolumeClaim": {"claimName": source}}));
    }
    let mut container = json!({
        "name": CONTAINER,
        "image": run.image,
        "args": run.container_args(),
        "env": [{"name": "XDG_STATE_HOME", "value": "/state"}, {"name": "TMPDIR", "value": "/tmp"}],
        "volumeMounts": mounts,
        "securityContext": {
            "runAsNonRoot": true,
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]}
        }
    });
    let mut resources = Map::new();
    let mut requests = Map::new();
    if let Some(cpu) = &k.cpu {
        requests.insert("cpu".into(), json!(cpu));
    }
    if let Some(memory) = &k.memory {
        requests.insert("memory".into(), json!(memory));
        resources.insert("limits".into(), json!({"memory": memory}));
    }
    if !requests.is_empty() {
        resources.insert("requests".into(), Value::Object(requests));
    }
    if !resources.is_empty() {
        container["resources"] = Value::Object(resources);
    }
    let mut pod = json!({
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": run.grace_seconds + GRACE_MARGIN_SECONDS,
        "containers": [container],
        "volumes": volumes
    });
    if let Some(sa) = &k.service_account {
        pod["serviceAccountName"] = json!(sa);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "completionMode": "Indexed",
            "completions": run.shards,
            "parallelism": k.parallelism.unwrap_or(run.shards).min(run.shards),
            "backoffLimitPerIndex": k.backoff_limit_per_index,
            "podFailurePolicy": {"rules": [
                {"action": "FailIndex", "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": NOT_RETRIED}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                {"action": "Count", "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": RETRIED}}
            ]},
            "template": {"metadata": {"labels": labels}, "spec": pod}
        }
    })
}

/// AWS Batch-specific settings.
#[derive(Clone, Debug)]
pub struct Batch {
    /// The role the container runs as.
    pub job_role_arn: Option<String>,
    /// vCPUs of each child job.
    pub vcpus: String,
    /// Memory of each child job, MiB.
    pub memory_mib: u64,
    /// Attempts per child job (1 to 10).
    pub attempts: u32,
}

/// The job definition (`aws batch register-job-definition --cli-input-json`).
pub fn batch_job_definition(run: &Run, b: &Batch) -> Value {
    let mut container = json!({
        "image": run.image,
        "command": run.container_args(),
        "resourceRequirements": [{"type": "VCPU", "value": b.vcpus}, {"type": "MEMORY", "value": b.memory_mib.to_string()}],
    });
    if let Some(role) = &b.job_role_arn {
        container["jobRoleArn"] = json!(role);
    }
    if let Ledger::Volume { source, mount } = &run.ledger {
        container["volumes"] = json!([{"name": "ledger", "efsVolumeConfiguration": {"fileSystemId": source, "transitEncryption": "ENABLED"}}]);
        container["mountPoints"] = json!([{"sourceVolume": "ledger", "containerPath": mount, "readOnly": false}]);
    }
    // Up to 5 rules; a job none matches (exit 1 or 3, or a host gone with no exit code) is retried.
    let mut rules: Vec<Value> = NOT_RETRIED.iter().map(|c| json!({"onExitCode": c.to_string(), "action": "EXIT"})).collect();
    rules.extend(RETRIED.iter().map(|c| json!({"onExitCode": c.to_string(), "action": "RETRY"})));
    json!({
        "jobDefinitionName": run.name,
        "type": "container",
        "platformCapabilities": ["EC2"],
        "retryStrategy": {"attempts": b.attempts, "evaluateOnExit": rules},
        "containerProperties": container,
        "tags": {"app": "sealpipe"}
    })
}

/// The array job (`aws batch submit-job --cli-input-json`): one child per
/// shard (`AWS_BATCH_JOB_ARRAY_INDEX`), of the definition named `run.name`.
pub fn batch_submit_job(run: &Run, job_name: &str, queue: &str) -> Value {
    let mut job = json!({"jobName": job_name, "jobQueue": queue, "jobDefinition": run.name});
    if run.shards > 1 {
        job["arrayProperties"] = json!({"size": run.shards});
    }
    job
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ledger: Ledger, shards: u32) -> Run {
        Run { name: "backfill".into(), image: "sealpipe:1".into(), shards, args: vec!["encrypt".into(), "s3://raw/".into()], ledger, grace_seconds: 20 }
    }

    #[test]
    fn a_shard_index_comes_from_the_engine_and_the_retry_rules_follow_the_exit_codes() {
        let r = run(Ledger::Volume { source: "ledger".into(), mount: "/ledger".into() }, 16);
        assert_eq!(r.container_args(), ["encrypt", "s3://raw/", "--shard", "auto/16"]);
        assert_eq!(run(Ledger::Manifest, 1).container_args(), ["encrypt", "s3://raw/"]);
        let job = kubernetes_job(&r, &Kubernetes { backoff_limit_per_index: 3, parallelism: Some(40), ..Default::default() });
        assert_eq!(job["spec"]["parallelism"], 16, "never more pods at once than shards");
        assert_eq!(job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"], 30);
        let rules = job["spec"]["podFailurePolicy"]["rules"].as_array().unwrap();
        assert_eq!(rules[0]["onExitCodes"]["values"], json!([2, 4]));
        assert_eq!(rules[0]["action"], "FailIndex");
        assert_eq!(rules[1]["action"], "Ignore");
        assert_eq!(rules[2]["onExitCodes"]["values"], json!([130, 137, 143]));
        let def = batch_job_definition(&r, &Batch { job_role_arn: None, vcpus: "4".into(), memory_mib: 4096, attempts: 3 });
        let eval = def["retryStrategy"]["evaluateOnExit"].as_array().unwrap();
        assert_eq!(eval.len(), 5, "Batch takes at most 5 rules");
        assert_eq!(def["containerProperties"]["mountPoints"][0]["containerPath"], "/ledger");
        assert_eq!(batch_submit_job(&r, "backfill-1", "q")["arrayProperties"]["size"], 16);
        assert!(batch_submit_job(&run(Ledger::Manifest, 1), "j", "q").get("arrayProperties").is_none());
    }
}
