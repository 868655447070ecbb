//! The context every command works in: the process's one tokio runtime
//! (AWS calls and the signal watcher run on it), the stores URLs are
//! reached through, the key providers, and the folders manifests' copies
//! live in. Everything behind them is in the engine.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::anyhow;
use sealpipe::{AwsOptions, Folders, Providers, S3Store, Session, Stores};

use crate::args::aws::AwsArgs;

/// The process's one runtime: every AWS call of every context, and the
/// signal watcher ([`crate::interrupt`]). Started on first use, never
/// dropped, so uploads can still be aborted while the process exits.
static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// A handle on the process's runtime (started on first use).
pub fn runtime() -> anyhow::Result<tokio::runtime::Handle> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt.handle().clone());
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sealpipe-aws")
        .enable_all()
        .build()
        .map_err(|e| anyhow!("cannot start the AWS runtime: {e}"))?;
    // Another thread may have won the race: its runtime is the one.
    Ok(RUNTIME.get_or_init(|| rt).handle().clone())
}


/// The folder default manifests go to: `$XDG_STATE_HOME/sealpipe`, else `~/.local/state/sealpipe`
/// (else `./.sealpipe-state` when neither is set).
pub fn state_dir() -> PathBuf {
    let non_empty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
    match (std::env::var_os("XDG_STATE_HOME").and_then(non_empty), std::env::var_os("HOME").and_then(non_empty)) {
        (Some(state), _) => state.join("sealpipe"),
        (None, Some(home)) => home.join(".local/state/sealpipe"),
        (None, None) => PathBuf::from(".sealpipe-state"),
    }
}

/// The folders the engine keeps manifests' copies in: the state folder, and the temporary one.
pub fn folders() -> Folders {
    Folders { state: state_dir(), temp: std::env::temp_dir() }
}

/// A timeout flag as a duration.
fn seconds(flag: &str, value: Option<f64>) -> anyhow::Result<Option<std::time::Duration>> {
    value
        .map(|v| std::time::Duration::try_from_secs_f64(v).ok().filter(|d| !d.is_zero()).ok_or_else(|| anyhow!("{flag} must be a positive number of seconds, got {v}")))
        .transpose()
}

/// Whether a path or argument is a URL of a store (`s3://…`) rather than a local path.
pub fn is_url(path: &Path) -> bool {
    Stores::is_url(&path.to_string_lossy())
}

/// What a command works with: the stores and the key providers, whose AWS
/// calls run on the process's [`runtime`] (the AWS configuration is loaded
/// only when first needed).
pub struct Context {
    /// Where URLs are read and written.
    pub stores: Stores,
    /// Who wraps and unwraps data keys.
    pub providers: Providers,
}

impl Context {
    /// The context of `args`, with the local keyring at `keyring` and `kms_key` as the KMS key.
    pub fn new(args: &AwsArgs, keyring: &Path, kms_key: Option<String>) -> anyhow::Result<Self> {
        let connect_timeout = seconds("--connect-timeout", args.connect_timeout)?;
        let read_timeout = seconds("--read-timeout", args.read_timeout)?;
        if let Some(bundle) = &args.connect.ca_bundle {
            std::fs::metadata(bundle).map_err(|e| anyhow!("--ca-bundle {}: {e}", bundle.display()))?;
            // Read by the HTTPS client's native certificate loader, when the first client is built.
            std::env::set_var("SSL_CERT_FILE", bundle);
        }
        let options = AwsOptions {
            region: args.connect.region.clone(),
            profile: args.connect.profile.clone(),
            endpoint_url: crate::environment::endpoint_url(args.connect.endpoint_url.as_ref()),
            force_path_style: args.connect.force_path_style,
            max_attempts: crate::environment::max_attempts(args.max_attempts),
            connect_timeout,
            read_timeout,
            request_payer: args.request_payer.is_some(),
            bucket_owners: args.bucket_owners.clone(),
            other_buckets_owner: args.source_expected_bucket_owner.clone(),
            bucket_regions: args.bucket_regions.clone(),
        };
        let session = Arc::new(Session::new(runtime()?, options));
        let providers = Providers { keyring: keyring.to_path_buf(), create_keyring: true, kms_key, session: session.clone() };
        // Every store a run can reach, by scheme: a new one is one more line here.
        // Each says what it could not do into the process's one event stream.
        let stores = Stores::from_list(vec![Arc::new(S3Store::new(session, crate::report::shared()))]);
        Ok(Context { stores, providers })
    }
}
