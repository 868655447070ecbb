//! Whole jobs over many files, built on the one data path ([`crate::pipeline`]):
//!
//! * [`plan`]: inputs (folders, files, store prefixes, list files, S3
//!   Inventory reports, this shard's share) → a stream of entries;
//! * [`ledger`] and [`manifest`]: what earlier runs finished (the manifest) and
//!   left in flight (the journal), so a re-run resumes;
//! * [`location`]: where a job's manifest is, and reading one wherever it is (a local
//!   file or a store's object), for the commands to share;
//! * [`lease`]: who may run a job now (one run per manifest; a dead holder never blocks);
//! * [`keys`]: where each file's data key comes from (fresh, supplied, cached);
//! * [`schedule`]: files over the workers (one per worker, or the multi-buffer CBC path);
//! * [`encrypt`], [`verify`] (and `decrypt`), [`reencrypt`]: the commands' runs;
//! * [`report`]: events and the summary, for the caller to render;
//! * [`filter`]: `--include`/`--exclude`, as the AWS CLI evaluates them;
//! * [`status`]: how far a job is (done, in flight, the last run's failures), for `sealpipe status`;
//! * [`rebuild`]: a manifest again from the envelopes S3 outputs carry;
//! * [`merge`]: joining the manifests of sharded runs; [`inputs`] and
//!   [`shard`]: the readers and the split behind `plan`.

pub mod encrypt;
pub mod filter;
pub mod inputs;
pub mod keys;
pub mod lease;
pub mod location;
pub mod ledger;
pub mod manifest;
pub mod merge;
pub mod plan;
pub mod rebuild;
pub mod reencrypt;
pub mod report;
pub mod schedule;
pub mod shard;
pub mod status;
#[cfg(feature = "aws")]
pub mod submit;
pub mod verify;
