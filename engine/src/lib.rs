//! # sealpipe engine
//!
//! Client-side encryption of media files for AWS Elemental MediaConvert and
//! Amazon Elastic Transcoder, on all cores. The byte-level contract is
//! `docs/FORMAT.md`. Modules, from the bottom up; each uses only those above it
//! in this list (`scripts/check-layers.py` keeps it so):
//!
//! * [`error`], [`size`]: typed errors (which file, what stage, whether a
//!   retry can help); sizes as the AWS CLI writes them;
//! * [`events`]: the one stream of what happens (files started, done, failed;
//!   bytes done; a store's warnings; jobs sent; bench samples), which the caller renders;
//! * [`retry`]: the one retry policy (which failures are transient, the backoff);
//! * [`format`]: the contract as types: modes, IVs, keys sizes, the manifest
//!   record, and one module per service's settings block;
//! * `aws` (feature `aws`): the AWS configuration every AWS client is made from;
//! * [`keys`]: data keys and the providers that wrap them (local keyring, KMS);
//! * [`cipher`]: streaming, parallel AES-CTR/CBC/GCM;
//! * [`store`]: where bytes come from and go (local files, S3), chosen by URL scheme;
//! * [`pipeline`]: the one data path: source → cipher + plaintext digest → sink;
//! * [`run`]: whole jobs: plan, ledger, keys, schedule, encrypt/verify/reencrypt, report.
//!
//! Throughput measurement (`sealpipe bench`) is a crate of its own, `benches/`
//! (`sealpipe-benches`), built on this one's public API.
//!
//! The engine never parses arguments, prints nothing and reads no
//! environment variable: what it is configured with, the caller passes
//! (the CLI reads its environment in one place, `cli/src/environment.rs`);
//! parallelism runs on the caller's rayon pool, AWS calls on the caller's
//! tokio runtime.
//! `unsafe` is denied but in the cipher kernels (intrinsics) and two libc
//! calls of `run::lease`, each allowed with its reason.

#![warn(missing_docs)]
#![deny(unsafe_code)]

pub mod error;
pub mod events;
pub mod retry;
pub mod size;
pub mod format;
#[cfg(feature = "aws")]
pub mod aws;
pub mod keys;
pub mod cipher;
pub mod store;
pub mod pipeline;
pub mod run;

// The facade: what a caller (the CLI) needs, named from the crate root, so
// that it never reaches into the modules below (`scripts/check-layers.py`
// holds the CLI to it). The modules stay public for the benches and tests.
// Beside it, a caller may use the contract's own modules: `format::jobs`,
// `format::policy`, `format::deploy` (the services' documents).

// Errors, sizes, the event stream.
pub use error::{Error, Failure, Result};
pub use events::{Event, Events, JobOutcome};
pub use size::{human as human_size, parse_size};
// The contract's types.
pub use format::digest::DigestAlg;
pub use format::record::Record;
pub use format::url::S3Url;
pub use format::{Iv, KeyBits, Mode, Service, Target};
// Keys.
pub use keys::{unwrap_record, DataKey, KeyProvider, LocalKeyring, ProviderFor, Providers};
// Where bytes come from and go.
#[cfg(feature = "aws")]
pub use aws::{AwsOptions, Session};
pub use cipher::{force_kernel, DEFAULT_CHUNK};
pub use store::local::{buffered_writes_only, discard_pending_outputs, resolve as resolve_local, LocalDir};
#[cfg(feature = "aws")]
pub use store::s3::{check_part_size, ObjectOptions, S3Store, DEFAULT_CONCURRENCY as DEFAULT_PART_CONCURRENCY};
pub use store::s3::{ChecksumChoice, UploadSettings};
pub use store::{CopyProps, ManifestCopy, RestoreRequest, ServerSide, Store, Stores};
// Runs: what each command does, and what it is given and gives back.
pub use run::encrypt::{encrypt, EncryptJob};
pub use run::filter::{Filter, Rule};
pub use run::inputs::{parse_inventory_manifest, read_inventory_csv_gz, read_list, Named};
pub use run::keys::KeyReuse;
pub use run::lease::{Lease, DEFAULT_TTL as LEASE_TTL};
pub use run::location::{
    fetch as fetch_manifest, jobs_ledger, locate as locate_manifest, read as read_manifest, read_lines as read_manifest_lines, record_for, Folders, Place,
};
pub use run::manifest::{Flusher, ManifestWriter};
pub use run::merge::{merge, Duplicate, DuplicateKind, MergeReport};
pub use run::rebuild::rebuild;
pub use run::reencrypt::{Legacy, RecordProviders, Unseal};
pub use run::report::Summary;
pub use run::schedule::{MemoryPlan, DEFAULT_REMOTE_IN_FLIGHT};
pub use run::shard::Shard;
pub use run::status::{save_last_run, status, LastRun, Status};
#[cfg(feature = "aws")]
pub use run::submit::{submit_all, Backoff, JobRequest, SubmitOptions};
pub use run::verify::{decrypt, relocate, unverified_line, verify_all, Decryption};

