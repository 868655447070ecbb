//! The AWS flags, as the AWS CLI spells them (for the commands that may reach AWS):
//! [`ConnectArgs`] (where and as whom) and the rest of [`AwsArgs`] (retries, timeouts, owners).

use std::path::PathBuf;

use clap::Args;

/// AWS connection options, as with the AWS CLI (for the commands that may reach AWS).
#[derive(Args, Clone, Default)]
pub struct AwsArgs {
    /// Where and as whom (the flags every command that reaches AWS takes).
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Attempts per AWS request, the first included (throttling, 5xx, timeouts and lost connections
    /// are retried with backoff, in the standard retry mode). Default: AWS_MAX_ATTEMPTS, else 6.
    /// Example: --max-attempts 10
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = "AWS")]
    pub max_attempts: Option<u32>,
    /// Seconds to wait for a connection (default 10; the AWS CLI's --cli-connect-timeout).
    /// Example: --connect-timeout 30
    #[arg(long, alias = "cli-connect-timeout", value_name = "SECONDS", help_heading = "AWS")]
    pub connect_timeout: Option<f64>,
    /// Seconds to wait for data on a connection (default 120; the AWS CLI's --cli-read-timeout).
    /// Example: --read-timeout 300
    #[arg(long, alias = "cli-read-timeout", value_name = "SECONDS", help_heading = "AWS")]
    pub read_timeout: Option<f64>,
    /// Requester-pays buckets: every S3 request says the requester pays (x-amz-request-payer), as
    /// the AWS CLI's flag. Example: --request-payer requester
    #[arg(long, value_name = "requester", value_parser = ["requester"], help_heading = "AWS")]
    pub request_payer: Option<String>,
    /// The account the source buckets must belong to, on every request to them (and to any bucket
    /// a list or inventory names), as the AWS CLI's flag. Example: --source-expected-bucket-owner 111122223333
    #[arg(long, value_name = "ACCOUNT", help_heading = "AWS")]
    pub source_expected_bucket_owner: Option<String>,
    /// Buckets and the account each must belong to (the destination's and the manifest's, from
    /// --expected-bucket-owner), set by the command.
    #[arg(skip)]
    pub bucket_owners: Vec<(String, String)>,
    /// The region of the source buckets, as the AWS CLI's flag (default: each bucket's region is
    /// asked of S3 once, whatever --region says). Example: --source-region eu-west-1
    #[arg(long, value_name = "REGION", help_heading = "AWS")]
    pub source_region: Option<String>,
    /// Buckets and their regions (the sources', from --source-region), set by the command.
    #[arg(skip)]
    pub bucket_regions: Vec<(String, String)>,
}

/// Where AWS is and as whom: the flags of a command that only reads an object or two
/// (`policy` and `status` with an s3:// manifest), and the first of every other's AWS flags.
#[derive(Args, Clone, Default)]
pub struct ConnectArgs {
    /// AWS region (default: AWS_REGION or the profile's). Example: --region eu-west-1
    #[arg(long, value_name = "REGION", help_heading = "AWS")]
    pub region: Option<String>,
    /// Named profile from the shared AWS config/credentials files. Example: --profile media
    #[arg(long, value_name = "NAME", help_heading = "AWS")]
    pub profile: Option<String>,
    /// Endpoint for S3, KMS and MediaConvert (AWS_ENDPOINT_URL is honoured too). Example: --endpoint-url http://127.0.0.1:5000
    #[arg(long, value_name = "URL", help_heading = "AWS")]
    pub endpoint_url: Option<String>,
    /// Path-style S3 addressing (http://host/bucket/key), for S3-compatible stores. Example: --force-path-style
    #[arg(long, help_heading = "AWS")]
    pub force_path_style: bool,
    /// PEM bundle of the certificate authorities to trust for HTTPS (a private CA in front of an
    /// S3-compatible store); sets SSL_CERT_FILE for the AWS clients. There is no --no-verify-ssl:
    /// use an http:// --endpoint-url for a local test store instead. Example: --ca-bundle corp-ca.pem
    #[arg(long, value_name = "PATH", help_heading = "AWS")]
    pub ca_bundle: Option<PathBuf>,
}

impl ConnectArgs {
    /// As the whole set of AWS flags, the others at their defaults.
    pub fn all(&self) -> AwsArgs {
        AwsArgs { connect: self.clone(), ..AwsArgs::default() }
    }
}
