//! The IAM policies a run needs (issue 13, `sealpipe policy`): what the
//! MediaConvert guide asks users to configure by hand.
//!
//! * [`service_role_policy`]: the inline policy for the MediaConvert role
//!   (or the Elastic Transcoder pipeline role): `kms:Decrypt` on the key,
//!   only under that service's encryption context
//!   (`kms:EncryptionContext:service`);
//! * [`encrypting_principal_policy`]: what the principal running
//!   `sealpipe encrypt` needs: `kms:GenerateDataKey` and `kms:Encrypt` under
//!   the contexts of the targets (`kms:Decrypt` too when it verifies),
//!   `kms:DescribeKey` (no encryption context, so no condition), and the S3
//!   actions of an upload to the destination bucket/prefix.
//!
//! Pure functions returning policy documents as `serde_json::Value`. KMS
//! resources must be key ARNs (an alias does not match a key in a policy).

use serde_json::{json, Value};

use crate::error::{Error, Result};
use super::url::{S3Url, S3UrlError};
use super::Service;

/// Policy language version.
pub const VERSION: &str = "2012-10-17";

/// The condition key of the `service` pair of the encryption context.
pub const CONTEXT_KEY: &str = "kms:EncryptionContext:service";

/// An S3 destination (or source): bucket and key prefix (may be empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Prefix {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix, without a leading `/` (empty: the whole bucket).
    pub prefix: String,
}

impl S3Prefix {
    /// Parse `s3://bucket/prefix`.
    pub fn parse(url: &str) -> Result<Self> {
        let (bucket, prefix) = S3Url::split(url).map_err(|e| match e {
            S3UrlError::NotS3 => Error::Usage(format!("{url}: not an s3://bucket/prefix URL")),
            S3UrlError::NoBucket => Error::Usage(format!("{url}: no bucket name")),
        })?;
        Ok(S3Prefix { bucket: bucket.into(), prefix: prefix.into() })
    }
}

/// What the encrypting principal does.
#[derive(Clone, Debug)]
pub struct EncryptingRun<'a> {
    /// The KMS key ARN that wraps data keys.
    pub key_arn: &'a str,
    /// The services the keys are wrapped for (`--target`: one or both).
    pub services: &'a [Service],
    /// Where outputs (and an `s3://` manifest) are uploaded; `None`: local output.
    pub destination: Option<&'a S3Prefix>,
    /// Whether the run also unwraps keys (`verify`, `decrypt`): adds `kms:Decrypt`.
    pub decrypts: bool,
    /// S3 prefixes the run reads its sources from (listing, ranged reads,
    /// the properties and tags it copies).
    pub sources: &'a [S3Prefix],
    /// An `s3://` manifest the run keeps (`bucket`, `key`): read, stored as
    /// the run goes, and its lease `KEY.lease` taken, renewed and given back.
    pub manifest: Option<&'a S3Prefix>,
    /// Tags are copied (`--copy-props default`): read on sources, written on outputs.
    pub copies_tags: bool,
    /// Archived sources are restored (`--restore`).
    pub restores: bool,
}

impl<'a> EncryptingRun<'a> {
    /// A run with no S3 sources or manifest, no tags, no restores.
    pub fn new(key_arn: &'a str, services: &'a [Service], destination: Option<&'a S3Prefix>, decrypts: bool) -> Self {
        EncryptingRun { key_arn, services, destination, decrypts, sources: &[], manifest: None, copies_tags: false, restores: false }
    }
}

/// The key ARN's partition (`aws`, `aws-cn`, `aws-us-gov`), refusing what
/// is not a KMS key ARN.
fn partition(key_arn: &str) -> Result<&str> {
    let parts: Vec<&str> = key_arn.splitn(6, ':').collect();
    match parts.as_slice() {
        ["arn", partition, "kms", region, account, resource]
            if !partition.is_empty() && !region.is_empty() && !account.is_empty() && resource.starts_with("key/") =>
        {
            Ok(partition)
        }
        _ => Err(Error::Usage(format!(
            "{key_arn}: a policy needs the KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID; `aws kms describe-key --key-id ALIAS` shows it)"
        ))),
    }
}

fn service_principal(service: Service) -> String {
    service.encryption_context().0["service"].clone()
}

fn context_condition(services: &[Service]) -> Value {
    let values: Vec<String> = services.iter().map(|s| service_principal(*s)).collect();
    let value = if values.len() == 1 { json!(values[0]) } else { json!(values) };
    json!({"StringEquals": {CONTEXT_KEY: value}})
}

/// The inline policy of the role `service` runs as: `kms:Decrypt` of
/// `key_arn`, only under `service`'s encryption context.
pub fn service_role_policy(key_arn: &str, service: Service) -> Result<Value> {
    partition(key_arn)?;
    let sid = match service {
        Service::MediaConvert => "MediaConvertDecryptsSealpipeDataKeys",
        Service::ElasticTranscoder => "ElasticTranscoderDecryptsSealpipeDataKeys",
    };
    Ok(json!({
        "Version": VERSION,
        "Statement": [{
            "Sid": sid,
            "Effect": "Allow",
            "Action": ["kms:Decrypt"],
            "Resource": key_arn,
            "Condition": context_condition(&[service]),
        }]
    }))
}

/// The policy of the principal that runs the encryption.
pub fn encrypting_principal_policy(run: &EncryptingRun<'_>) -> Result<Value> {
    let partition = partition(run.key_arn)?;
    if run.services.is_empty() {
        return Err(Error::Usage("no target service: keys are wrapped for MediaConvert, Elastic Transcoder or both".into()));
    }
    let mut services = run.services.to_vec();
    services.sort();
    services.dedup();
    let mut kms_actions = vec!["kms:GenerateDataKey", "kms:Encrypt"];
    if run.decrypts {
        kms_actions.push("kms:Decrypt");
    }
    let mut statements = vec![
        json!({
            "Sid": "WrapDataKeysForTheServices",
            "Effect": "Allow",
            "Action": kms_actions,
            "Resource": run.key_arn,
            "Condition": context_condition(&services),
        }),
        json!({
            "Sid": "ResolveTheKey",
            "Effect": "Allow",
            "Action": ["kms:DescribeKey"],
            "Resource": run.key_arn,
        }),
    ];
    if let Some(dest) = run.destination {
        let bucket = format!("arn:{partition}:s3:::{}", dest.bucket);
        let mut actions = vec!["s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject"];
        if run.copies_tags {
            // PutObject and CreateMultipartUpload with x-amz-tagging.
            actions.push("s3:PutObjectTagging");
        }
        statements.push(json!({
            "Sid": "WriteAndReadBackOutputs",
            "Effect": "Allow",
            "Action": actions,
            "Resource": format!("{bucket}/{}*", dest.prefix),
        }));
        statements.push(json!({
            "Sid": "ListOutputsAndOpenUploads",
            "Effect": "Allow",
            "Action": ["s3:ListBucket", "s3:ListBucketMultipartUploads"],
            "Resource": bucket,
        }));
    }
    for (i, source) in run.sources.iter().enumerate() {
        let bucket = format!("arn:{partition}:s3:::{}", source.bucket);
        let mut actions = vec!["s3:GetObject"];
        if run.copies_tags {
            actions.push("s3:GetObjectTagging");
        }
        if run.restores {
            actions.push("s3:RestoreObject");
        }
        let n = if run.sources.len() > 1 { (i + 1).to_string() } else { String::new() };
        statements.push(json!({"Sid": format!("ReadSources{n}"), "Effect": "Allow", "Action": actions, "Resource": format!("{bucket}/{}*", source.prefix)}));
        statements.push(json!({"Sid": format!("ListSources{n}"), "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": bucket}));
    }
    if let Some(m) = run.manifest {
        let object = format!("arn:{partition}:s3:::{}/{}", m.bucket, m.prefix);
        statements.push(json!({
            "Sid": "KeepTheManifestAndItsLease",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
            "Resource": [object.clone(), format!("{object}.lease")],
        }));
    }
    Ok(json!({"Version": VERSION, "Statement": statements}))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn statement<'a>(policy: &'a Value, sid: &str) -> &'a Value {
        policy["Statement"].as_array().unwrap().iter().find(|s| s["Sid"] == sid).unwrap_or_else(|| panic!("no {sid} in {policy:#}"))
    }

    #[test]
    fn mediaconvert_role_may_only_decrypt_under_its_context() {
        let p = service_role_policy(ARN, Service::MediaConvert).unwrap();
        assert_eq!(p["Version"], "2012-10-17");
        let st = p["Statement"].as_array().unwrap();
        assert_eq!(st.len(), 1);
        assert_eq!(st[0]["Effect"], "Allow");
        assert_eq!(st[0]["Action"], json!(["kms:Decrypt"]));
        assert_eq!(st[0]["Resource"], ARN);
        assert_eq!(st[0]["Condition"], json!({"StringEquals": {"kms:EncryptionContext:service": "mediaconvert.amazonaws.com"}}));
        let p = service_role_policy(ARN, Service::ElasticTranscoder).unwrap();
        assert_eq!(p["Statement"][0]["Condition"]["StringEquals"][CONTEXT_KEY], "elastictranscoder.amazonaws.com");
    }

    #[test]
    fn encrypting_principal_policy_structure() {
        let dest = S3Prefix::parse("s3://media-in/2019/").unwrap();
        let both = [Service::ElasticTranscoder, Service::MediaConvert];
        let run = EncryptingRun::new(ARN, &both, Some(&dest), false);
        let p = encrypting_principal_policy(&run).unwrap();
        let wrap = statement(&p, "WrapDataKeysForTheServices");
        assert_eq!(wrap["Action"], json!(["kms:GenerateDataKey", "kms:Encrypt"]));
        assert_eq!(wrap["Resource"], ARN);
        assert_eq!(
            wrap["Condition"]["StringEquals"][CONTEXT_KEY],
            json!(["mediaconvert.amazonaws.com", "elastictranscoder.amazonaws.com"])
        );
        let describe = statement(&p, "ResolveTheKey");
        assert_eq!(describe["Action"], json!(["kms:DescribeKey"]));
        assert!(describe.get("Condition").is_none(), "DescribeKey has no encryption context");
        let objects = statement(&p, "WriteAndReadBackOutputs");
        assert_eq!(objects["Resource"], "arn:aws:s3:::media-in/2019/*");
        assert_eq!(objects["Action"], json!(["s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject"]));
        let bucket = statement(&p, "ListOutputsAndOpenUploads");
        assert_eq!(bucket["Resource"], "arn:aws:s3:::media-in");
        assert_eq!(bucket["Action"], json!(["s3:ListBucket", "s3:ListBucketMultipartUploads"]));

        let one = [Service::MediaConvert];
        let run = EncryptingRun::new(ARN, &one, None, true);
        let p = encrypting_principal_policy(&run).unwrap();
        assert_eq!(p["Statement"].as_array().unwrap().len(), 2, "local output: no S3 statements");
        let wrap = statement(&p, "WrapDataKeysForTheServices");
        assert_eq!(wrap["Action"], json!(["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"]));
        assert_eq!(wrap["Condition"]["StringEquals"][CONTEXT_KEY], "mediaconvert.amazonaws.com");
    }

    #[test]
    fn sources_manifest_tags_and_restores_have_their_statements() {
        let dest = S3Prefix::parse("s3://media-in/2019/").unwrap();
        let sources = [S3Prefix::parse("s3://raw-a/2019/").unwrap(), S3Prefix::parse("s3://raw-b/").unwrap()];
        let manifest = S3Prefix::parse("s3://runs/2019.jsonl").unwrap();
        let run = EncryptingRun { sources: &sources, manifest: Some(&manifest), copies_tags: true, restores: true, ..EncryptingRun::new(ARN, &[Service::MediaConvert], Some(&dest), false) };
        let p = encrypting_principal_policy(&run).unwrap();
        assert_eq!(statement(&p, "WriteAndReadBackOutputs")["Action"], json!(["s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObjectTagging"]));
        let read = statement(&p, "ReadSources1");
        assert_eq!((&read["Resource"], &read["Action"]), (&json!("arn:aws:s3:::raw-a/2019/*"), &json!(["s3:GetObject", "s3:GetObjectTagging", "s3:RestoreObject"])));
        assert_eq!(statement(&p, "ListSources2")["Resource"], "arn:aws:s3:::raw-b");
        let m = statement(&p, "KeepTheManifestAndItsLease");
        assert_eq!(m["Resource"], json!(["arn:aws:s3:::runs/2019.jsonl", "arn:aws:s3:::runs/2019.jsonl.lease"]));
        assert_eq!(m["Action"], json!(["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]));
        // One source: no number in its Sids; without tags or restores, reads only.
        let run = EncryptingRun { sources: &sources[..1], ..EncryptingRun::new(ARN, &[Service::MediaConvert], None, false) };
        let p = encrypting_principal_policy(&run).unwrap();
        assert_eq!(statement(&p, "ReadSources")["Action"], json!(["s3:GetObject"]));
    }

    #[test]
    fn partitions_and_refusals() {
        let cn = "arn:aws-cn:kms:cn-north-1:123456789012:key/abcd";
        let dest = S3Prefix::parse("s3://b").unwrap();
        assert_eq!(dest.prefix, "");
        let run = EncryptingRun::new(cn, &[Service::MediaConvert], Some(&dest), false);
        let p = encrypting_principal_policy(&run).unwrap();
        assert_eq!(statement(&p, "WriteAndReadBackOutputs")["Resource"], "arn:aws-cn:s3:::b/*");
        for bad in ["alias/media", "1234abcd", "arn:aws:kms:eu-west-1:123456789012:alias/media"] {
            let e = service_role_policy(bad, Service::MediaConvert).unwrap_err().to_string();
            assert!(e.contains("key ARN"), "{e}");
        }
        let run = EncryptingRun::new(ARN, &[], None, false);
        assert!(encrypting_principal_policy(&run).is_err());
        assert!(S3Prefix::parse("/local").is_err());
        assert!(S3Prefix::parse("s3:///x").is_err());
    }
}
