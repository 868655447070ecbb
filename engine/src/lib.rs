//! # sealpipe engine
//!
//! Client-side encryption of media files for AWS Elemental MediaConvert and
//! Amazon Elastic Transcoder, on all cores. The byte-level contract is
//! `docs/FORMAT.md`. Modules, from the bottom up; each uses only those above it
//! in this list (`scripts/check-layers.py` keeps it so):
//!
//! * [`error`], [`size`]: typed errors (which file, what stage, whether a
//!   retry can help); sizes as the AWS CLI writes them;
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

pub use error::{Error, Result};

