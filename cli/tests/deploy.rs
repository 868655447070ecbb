//! `sealpipe deploy` (issue 22): every variant of the generated job
//! definitions is validated offline by `scripts/validate-deploy.py`: the
//! Kubernetes Indexed Job against the API's schemas (kubernetes-validate,
//! strict, Kubernetes 1.29, 1.33 and 1.37), the AWS Batch job definition
//! and array submission against botocore's own Batch service model
//! (ParamValidator on the input shapes of RegisterJobDefinition and
//! SubmitJob). No API server and no Batch are reached: what the engines do
//! with them at run time is not tested here (see README). A check that a
//! misspelled field or a wrong type is refused proves each validator bites.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::bin;
use serde_json::Value;

const VALIDATOR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/validate-deploy.py");
const K8S_VERSIONS: &str = "1.29,1.33,1.37";

/// `sealpipe deploy ARGS`: stdout as JSON (the run must succeed).
fn deploy(args: &[&str]) -> Value {
    let out = Command::new(bin()).arg("deploy").args(args).output().unwrap();
    assert!(out.status.success(), "deploy {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("deploy {args:?} printed no JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// `sealpipe deploy ARGS` that must be refused: its one stderr line.
fn refused(args: &[&str]) -> String {
    let out = Command::new(bin()).arg("deploy").args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "deploy {args:?} must be refused: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(out.stdout.is_empty(), "nothing printed on stdout");
    err
}

/// The validator's verdict on `doc` as `kind`: (passed, its line).
fn validate(kind: &str, doc: &Value) -> (bool, String) {
    let mut child = Command::new("python3")
        .arg(VALIDATOR)
        .arg(kind)
        .args(["--kubernetes-version", K8S_VERSIONS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be on PATH");
    child.stdin.take().unwrap().write_all(doc.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)).trim().to_string();
    assert!(matches!(out.status.code(), Some(0 | 1)), "the validator itself failed (kubernetes-validate and botocore installed?): {said}");
    (out.status.success(), said)
}

fn valid(kind: &str, doc: &Value) -> String {
    let (ok, said) = validate(kind, doc);
    assert!(ok, "{kind}: {said}\n{doc:#}");
    said
}

const K8S_PVC: &[&str] = &[
    "kubernetes", "--name", "backfill-2019", "--image", "registry.example.com/sealpipe:0.1", "--shards", "16",
    "--namespace", "media", "--service-account", "sealpipe", "--ledger-claim", "sealpipe-ledger", "--parallelism", "8",
    "--backoff-limit-per-index", "5", "--cpu", "4", "--memory", "4Gi", "--",
    "encrypt", "s3://media-raw/2019/", "--to", "s3://media-in/2019/", "--kms-key", "alias/media", "--target", "mediaconvert",
    "--reuse-key", "--manifest", "/ledger/2019.jsonl", "--grace-seconds", "45", "--json",
];

#[test]
fn every_generated_definition_validates_against_the_schemas_and_the_model() {
    // Kubernetes, the ledger on a PVC, every optional setting.
    let job = deploy(K8S_PVC);
    eprintln!("kubernetes, PVC ledger: {}", valid("kubernetes", &job));
    let spec = &job["spec"];
    assert_eq!((spec["completionMode"].as_str(), spec["completions"].as_u64(), spec["parallelism"].as_u64(), spec["backoffLimitPerIndex"].as_u64()), (Some("Indexed"), Some(16), Some(8), Some(5)));
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Never", "podFailurePolicy needs it");
    assert_eq!(pod["terminationGracePeriodSeconds"], 55, "--grace-seconds 45 and 10 s to abort");
    assert_eq!(pod["serviceAccountName"], "sealpipe");
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(args[0], "encrypt");
    assert_eq!(&args[args.len() - 2..], ["--shard", "auto/16"]);
    assert!(args.windows(2).any(|w| w == ["--manifest", "/ledger/2019.jsonl"]), "{args:?}");
    assert!(container["volumeMounts"].as_array().unwrap().iter().any(|m| m["mountPath"] == "/ledger"), "{container}");
    assert!(pod["volumes"].as_array().unwrap().iter().any(|v| v["persistentVolumeClaim"]["claimName"] == "sealpipe-ledger"), "{pod}");
    let rules = spec["podFailurePolicy"]["rules"].as_array().unwrap();
    assert_eq!(rules.iter().map(|r| r["action"].as_str().unwrap()).collect::<Vec<_>>(), ["FailIndex", "Ignore", "Count"]);
    assert_eq!(rules[0]["onExitCodes"]["values"], serde_json::json!([2, 4]));

    // Kubernetes, an s3:// manifest (no volume), a reencrypt command, one shard.
    let job = deploy(&["kubernetes", "--name", "migrate", "--image", "sealpipe:0.1", "--shards", "1", "--", "reencrypt", "s3://old/2015/", "--et-encryption", "s3://old/et.json", "--to", "s3://new/2015/", "--kms-key", "alias/media", "--manifest", "s3://new/runs/2015.jsonl"]);
    eprintln!("kubernetes, s3:// manifest, reencrypt, 1 shard: {}", valid("kubernetes", &job));
    let pod = &job["spec"]["template"]["spec"];
    assert!(!pod["containers"][0]["args"].as_array().unwrap().iter().any(|a| a == "--shard"), "one shard: no --shard");
    assert!(!pod["volumes"].as_array().unwrap().iter().any(|v| v["name"] == "ledger"), "no ledger volume: {pod}");

    // AWS Batch: the job definition with the ledger on EFS, then with an s3:// manifest; the array submission.
    let batch = ["batch", "--name", "sealpipe-2019", "--image", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sealpipe:0.1", "--shards", "16"];
    let run = ["--", "encrypt", "s3://media-raw/2019/", "--to", "s3://media-in/2019/", "--kms-key", "alias/media"];
    let efs = [&batch[..], &["--job-role-arn", "arn:aws:iam::123456789012:role/sealpipe", "--efs-file-system", "fs-0123456789abcdef0", "--vcpus", "16", "--memory-mib", "8192", "--attempts", "5"], &run[..], &["--manifest", "/ledger/2019.jsonl"]].concat();
    let def = deploy(&efs);
    eprintln!("batch job definition, EFS ledger: {}", valid("register-job-definition", &def));
    assert_eq!(def["retryStrategy"]["attempts"], 5);
    let eval = def["retryStrategy"]["evaluateOnExit"].as_array().unwrap();
    let action = |code: &str| eval.iter().find(|r| r["onExitCode"] == code).map(|r| r["action"].as_str().unwrap().to_string());
    assert_eq!((action("2").as_deref(), action("130").as_deref(), action("137").as_deref()), (Some("EXIT"), Some("RETRY"), Some("RETRY")));
    let command: Vec<&str> = def["containerProperties"]["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert_eq!(&command[command.len() - 2..], ["--shard", "auto/16"]);
    assert_eq!(def["containerProperties"]["mountPoints"][0]["containerPath"], "/ledger");
    let def = deploy(&[&batch[..], &run[..], &["--manifest", "s3://media-in/runs/2019.jsonl"]].concat());
    eprintln!("batch job definition, s3:// manifest: {}", valid("register-job-definition", &def));
    assert!(def["containerProperties"].get("volumes").is_none(), "{def}");
    let job = deploy(&[&batch[..], &["--submit-job", "--job-queue", "media-batch", "--job-name", "backfill-2026-11-22"], &run[..], &["--manifest", "s3://media-in/runs/2019.jsonl"]].concat());
    eprintln!("batch submit-job: {}", valid("submit-job", &job));
    assert_eq!((job["jobDefinition"].as_str(), job["arrayProperties"]["size"].as_u64()), (Some("sealpipe-2019"), Some(16)));
}

#[test]
fn the_validators_bite() {
    // A misspelled field, unknown to the schema: refused by every version.
    let mut job = deploy(K8S_PVC);
    let spec = job["spec"].as_object_mut().unwrap();
    let limit = spec.remove("backoffLimitPerIndex").unwrap();
    spec.insert("backoffLimitPerIndx".into(), limit);
    let (ok, said) = validate("kubernetes", &job);
    assert!(!ok && said.contains("backoffLimitPerIndx"), "{said}");
    // A wrong type deep in the pod.
    let mut job = deploy(K8S_PVC);
    job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = Value::from("55");
    let (ok, said) = validate("kubernetes", &job);
    assert!(!ok, "{said}");

    let run = ["--", "encrypt", "s3://raw/", "--to", "s3://in/", "--kms-key", "alias/media", "--manifest", "s3://in/runs/m.jsonl"];
    let mut def = deploy(&[&["batch", "--name", "sealpipe", "--image", "sealpipe:0.1", "--shards", "4"], &run[..]].concat());
    def["retryStrategy"]["evaluateOnExit"][0]["onExitCodes"] = def["retryStrategy"]["evaluateOnExit"][0]["onExitCode"].take();
    def["retryStrategy"]["evaluateOnExit"][0].as_object_mut().unwrap().remove("onExitCode");
    let (ok, said) = validate("register-job-definition", &def);
    assert!(!ok && said.contains("onExitCodes"), "{said}");
    let mut job = deploy(&[&["batch", "--name", "sealpipe", "--image", "sealpipe:0.1", "--shards", "4", "--submit-job", "--job-queue", "q"], &run[..]].concat());
    job["arrayProperties"]["size"] = Value::from("4");
    let (ok, said) = validate("submit-job", &job);
    assert!(!ok && said.contains("size"), "{said}");
}

#[test]
fn commands_a_container_would_refuse_are_refused_in_one_line() {
    let k8s = ["kubernetes", "--name", "b", "--image", "i", "--shards", "4"];
    fn with<'a>(k8s: &[&'a str], extra: &[&'a str], run: &[&'a str]) -> Vec<&'a str> {
        [k8s, extra, &["--"], run].concat()
    }
    let run = ["encrypt", "s3://raw/", "--to", "s3://in/", "--kms-key", "alias/media"];
    let err = refused(&with(&k8s, &[], &run));
    assert!(err.contains("give --manifest"), "{err}");
    let err = refused(&with(&k8s, &[], &[&run[..], &["--manifest", "s3://in/m.jsonl", "--shard", "1/4"]].concat()));
    assert!(err.contains("leave --shard out") && err.contains("auto/4"), "{err}");
    let err = refused(&with(&k8s, &[], &[&run[..], &["--manifest", "/ledger/m.jsonl"]].concat()));
    assert!(err.contains("needs the shared volume (--ledger-claim)"), "{err}");
    let err = refused(&with(&k8s, &["--ledger-claim", "c"], &[&run[..], &["--manifest", "/data/m.jsonl"]].concat()));
    assert!(err.contains("not below --ledger-mount /ledger"), "{err}");
    let err = refused(&with(&k8s, &[], &["encrypt", "/archive/2019", "--to", "s3://in/", "--manifest", "s3://in/m.jsonl"]));
    assert!(err.contains("/archive/2019") && err.contains("shared volume"), "{err}");
    let err = refused(&with(&k8s, &[], &["verify", "--manifest", "s3://in/m.jsonl"]));
    assert!(err.contains("must be encrypt or reencrypt"), "{err}");
    let err = refused(&with(&k8s, &[], &["encrypt", "s3://raw/", "--too", "s3://in/"]));
    assert!(err.contains("--too"), "{err}");
    let err = refused(&["kubernetes", "--name", "Backfill_2019", "--image", "i", "--shards", "4", "--", "encrypt", "s3://raw/", "--to", "s3://in/", "--manifest", "s3://in/m.jsonl"]);
    assert!(err.contains("Kubernetes name"), "{err}");
    let err = refused(&["batch", "--name", "x", "--image", "i", "--shards", "4", "--efs-file-system", "fs-1", "--", "encrypt", "s3://raw/", "--to", "s3://in/", "--manifest", "m.jsonl"]);
    assert!(err.contains("not below --ledger-mount"), "{err}");
}

/// README's recipes are this command's output, byte for byte (and valid).
#[test]
fn readme_recipes_are_the_commands_output() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let image = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/sealpipe:0.1";
    let batch_run = ["--", "encrypt", "s3://media-raw/", "--to", "s3://media-in/", "--kms-key", "alias/media", "--target", "mediaconvert", "--reuse-key", "--manifest", "s3://media-in/runs/backfill.jsonl", "--json"];
    let recipes: Vec<(&str, Vec<&str>)> = vec![
        ("kubernetes", vec![
            "kubernetes", "--name", "backfill-2026-11-22", "--image", "registry.example.com/sealpipe:0.1", "--shards", "16", "--service-account", "sealpipe",
            "--ledger-claim", "sealpipe-ledger", "--cpu", "16", "--memory", "4Gi", "--", "encrypt", "--inventory", "s3://inv/media-raw/daily/2026-11-21T01-00Z/manifest.json",
            "--to", "s3://media-in/", "--kms-key", "alias/media", "--target", "mediaconvert", "--reuse-key", "--manifest", "/ledger/run.jsonl", "--json",
        ]),
        ("register-job-definition", [&["batch", "--name", "sealpipe", "--image", image, "--shards", "16", "--job-role-arn", "arn:aws:iam::123456789012:role/sealpipe", "--vcpus", "16", "--memory-mib", "4096"], &batch_run[..]].concat()),
        ("submit-job", [&["batch", "--name", "sealpipe", "--image", image, "--shards", "16", "--submit-job", "--job-queue", "media-batch", "--job-name", "sealpipe-backfill-2026-11-22"], &batch_run[..]].concat()),
    ];
    for (kind, args) in recipes {
        let out = Command::new(bin()).arg("deploy").args(&args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(readme.contains(&format!("```json\n{text}```")), "README lacks the {kind} recipe as printed now:\n{text}");
        valid(kind, &serde_json::from_str(&text).unwrap());
    }
}
