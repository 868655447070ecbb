//! # sealpipe engine
//!
//! Client-side encryption of media files for AWS Elemental MediaConvert and
//! Amazon Elastic Transcoder, on all cores. The byte-level contract is
//! `FORMAT.md`; this crate implements it:
//!
//! * [`params`]: modes, key sizes, services, IVs and encryption contexts;
//! * [`cipher`]: streaming, parallel AES-CTR/CBC/GCM ([`cipher::Sealer`], [`cipher::Opener`]);
//! * [`keys`]: data keys and the [`keys::KeyProvider`] seam (local keyring);
//! * [`io`]: reading inputs (windowed mmap or plain reads) and writing outputs atomically;
//! * [`pipeline`]: one file through read → encrypt/hash → write, with bounded memory;
//! * [`manifest`]: the per-file JSON Lines record with ready-to-paste job settings;
//! * [`batch`]: listing and running a whole batch (resumable, shardable), reporting through [`batch::Reporter`];
//! * [`keycache`]: where each file's data key comes from (fresh, supplied, or cached: `--reuse-key`);
//! * `ledger`: what earlier runs finished (the manifest) and left in flight (the journal);
//! * `plan`: inputs named by list files and S3 Inventory reports;
//! * [`shard`]: `--shard I/N`, a stable split of the inputs across machines;
//! * [`merge`]: joining the manifests of sharded runs, with duplicates and gaps reported;
//! * [`inputs`]: streaming readers for list files and S3 Inventory reports;
//! * [`reencrypt`]: legacy archives decrypted on the fly (settings from an old
//!   manifest or an Elastic Transcoder `Encryption` JSON) and sealed again in one pass;
//! * [`bench`]: throughput measurement on the target hardware;
//! * `aws` (feature `aws`): KMS key provider, S3 destination and source.
//!
//! The engine never prints and never parses arguments; parallelism runs on
//! the caller's rayon pool.

#![warn(missing_docs)]

#[cfg(feature = "aws")]
pub mod aws;
pub mod batch;
pub mod bench;
pub mod cipher;
pub mod error;
pub mod inputs;
pub mod io;
pub mod jobs;
pub mod keycache;
pub mod keys;
mod lanes;
pub mod ledger;
pub mod manifest;
pub mod merge;
pub mod params;
pub mod pipeline;
pub mod policy;
mod plan;
pub mod shard;
pub mod reencrypt;

pub use error::{Error, Result};
