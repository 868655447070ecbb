//! Capacity plan (`sealpipe bench --plan`): from a bench report, an
//! archive's shape and a fleet, per-shard estimates of wall time, KMS
//! data-key requests, S3 requests and memory.
//!
//! Assumptions, stated in the output too: objects all of the average size;
//! the wall time is the bytes over the lowest of three rates (the cipher at
//! the shard's cores as measured, SHA-256 at one core per file in flight,
//! the network); per-request latency is not modelled.

use serde::{Deserialize, Serialize};

use super::{Report, Row};
use sealpipe::error::{Error, Result};
use sealpipe::run::schedule::MemoryPlan;
use sealpipe::store::s3::{part_size_for, LISTED_MAX, MIN_RANGE_SIZE, RANGE_SIZE, READ_SPLIT, WHOLE_OBJECT_MAX};

/// KMS's default quota for symmetric cryptographic requests (GenerateDataKey, Encrypt, Decrypt)
/// per account and region, requests per second. Adjustable through Service Quotas; lower in some regions.
pub const KMS_SYMMETRIC_QUOTA: f64 = 10_000.0;

/// What to plan for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlanInput {
    /// Objects in the archive.
    pub objects: u64,
    /// Bytes in the archive.
    pub bytes: u64,
    /// Shards (machines or pods).
    pub shards: u64,
    /// Cores per shard.
    pub cores: usize,
    /// Network per shard, Gbit/s.
    pub network_gbps: f64,
    /// Mode (`ctr`, `cbc`, `gcm`).
    pub mode: String,
    /// Key size.
    pub key_bits: u16,
    /// Requested multipart part size.
    pub part_size: u64,
    /// Part buffers per upload.
    pub concurrency: usize,
    /// Memory budget per shard (`--memory`).
    pub memory: u64,
    /// Parallel work unit.
    pub chunk: usize,
    /// `--reuse-key` limits: files, bytes and seconds per key.
    pub reuse_max_files: u64,
    /// Bytes per cached key.
    pub reuse_max_bytes: u64,
    /// Seconds per cached key.
    pub reuse_max_age_s: f64,
    /// Whether the source is an S3 prefix that every shard lists (false: an inventory or list file).
    pub source_listed: bool,
    /// Whether the source is in S3 (ranged GETs counted).
    pub source_s3: bool,
    /// KMS requests per second allowed (account, region).
    pub kms_quota: f64,
}

/// One rate that bounds the wall time.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rate {
    /// `cipher`, `digest` or `network`.
    pub name: String,
    /// GB/s per shard.
    pub gb_per_s: f64,
    /// Where it came from.
    pub source: String,
}

/// The estimate, per shard unless named `fleet_`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Estimate {
    /// The input.
    pub input: PlanInput,
    /// Objects per shard.
    pub objects: u64,
    /// Bytes per shard.
    pub bytes: u64,
    /// Average object size.
    pub object_bytes: u64,
    /// The three rates.
    pub rates: Vec<Rate>,
    /// The lowest of them.
    pub bottleneck: String,
    /// Wall time, seconds.
    pub wall_seconds: f64,
    /// GenerateDataKey requests without `--reuse-key` (one per object).
    pub data_keys: u64,
    /// With `--reuse-key` at the given limits.
    pub data_keys_reused: u64,
    /// Fleet-wide request rate without reuse, per second (all shards at once).
    pub fleet_kms_per_s: f64,
    /// With reuse.
    pub fleet_kms_per_s_reused: f64,
    /// `fleet_kms_per_s / kms_quota`.
    pub kms_quota_share: f64,
    /// With reuse.
    pub kms_quota_share_reused: f64,
    /// Part size each object uploads with.
    pub part_size: u64,
    /// PutObject requests (objects of at most one part).
    pub s3_put: u64,
    /// CreateMultipartUpload requests.
    pub s3_create_multipart: u64,
    /// UploadPart requests.
    pub s3_upload_part: u64,
    /// CompleteMultipartUpload requests.
    pub s3_complete_multipart: u64,
    /// HeadObject requests: none while the destination prefix holds at most
    /// `LISTED_MAX` keys (it is listed once instead), else one per output.
    pub s3_head: u64,
    /// ListObjectsV2 pages of 1000 of the source (every shard lists the whole prefix; none from an inventory).
    pub s3_list_pages: u64,
    /// ListObjectsV2 pages of 1000 of the destination, listed once by every
    /// shard (at its fullest, a re-run: every object's output) when it holds
    /// at most `LISTED_MAX` keys; none beyond (HeadObject instead).
    pub s3_dest_list_pages: u64,
    /// GetObject requests (S3 sources): one for an object up to
    /// `WHOLE_OBJECT_MAX`, ranged GETs by window beyond.
    pub s3_get: u64,
    /// Buffers held at most (`MemoryPlan::bound`).
    pub memory_bytes: u64,
    /// Files in flight under that budget.
    pub files_in_flight: usize,
    /// Assumptions and caveats.
    pub notes: Vec<String>,
}

/// The cipher rate at `cores` from the report: the memory (large buffer)
/// encryption rows of `mode`/`key_bits` (CBC: files interleaved), the row
/// at the most threads not above `cores`, scaled linearly beyond it.
fn cipher_rate(r: &Report, mode: &str, key_bits: u16, cores: usize) -> Result<Rate> {
    let pick = |bits: Option<u16>| -> Vec<&Row> {
        let mut v: Vec<&Row> = r
            .rows
            .iter()
            .filter(|x| x.scope == "memory" && x.mode == mode && x.direction == "encrypt" && bits.is_none_or(|b| x.key_bits == b))
            .filter(|x| mode != "cbc" || x.layout != "one file")
            .collect();
        let large: Vec<&Row> = v.iter().copied().filter(|x| x.buffer == "large").collect();
        if !large.is_empty() {
            v = large;
        }
        v
    };
    let mut rows = pick(Some(key_bits));
    let mut note = String::new();
    if rows.is_empty() {
        rows = pick(None);
        note = format!(" (no {key_bits}-bit rows; used {}-bit)", rows.first().map_or(0, |x| x.key_bits));
    }
    let below = rows.iter().filter(|x| x.threads <= cores).max_by_key(|x| x.threads);
    let best = below.or_else(|| rows.iter().min_by_key(|x| x.threads)).ok_or_else(|| Error::Usage(format!("the bench report has no in-memory {mode} encryption rows")))?;
    let scaled = best.gb_per_s.median * cores as f64 / best.threads as f64;
    let source = if best.threads == cores {
        format!("{} (median){note}", best.id)
    } else {
        format!("{} (median) × {cores}/{} cores, linear{note}", best.id, best.threads)
    };
    Ok(Rate { name: "cipher".into(), gb_per_s: scaled, source })
}

/// Ranged GETs for one object of `len` bytes read a window at a time.
fn gets_for(len: u64, window: u64) -> u64 {
    if len <= WHOLE_OBJECT_MAX as u64 {
        return u64::from(len > 0);
    }
    let per_window = |w: u64| -> u64 {
        if w == 0 {
            return 0;
        }
        let range = w.div_ceil(READ_SPLIT as u64).clamp(MIN_RANGE_SIZE as u64, RANGE_SIZE as u64);
        w.div_ceil(range)
    };
    let window = window.max(1);
    (len / window) * per_window(window) + per_window(len % window)
}

/// Estimate per shard.
pub fn estimate(r: &Report, input: &PlanInput) -> Result<Estimate> {
    if input.shards == 0 || input.objects == 0 || input.cores == 0 {
        return Err(Error::Usage("--objects, --shards and --cores must be at least 1".into()));
    }
    let objects = input.objects.div_ceil(input.shards);
    let bytes = input.bytes.div_ceil(input.shards);
    let object_bytes = input.bytes / input.objects;
    let part_size = part_size_for(object_bytes, input.part_size)?;
    let plan = MemoryPlan::new(input.memory, input.cores, input.chunk, Some((part_size, input.concurrency)))?;
    let mut notes = vec![
        format!("every object taken as the average size, {}", sealpipe::size::human(object_bytes)),
        "wall time = bytes / the lowest rate; per-request latency, retries and small-object overheads are not modelled".into(),
        format!(
            "KMS quota: {} symmetric requests/s per account and region (the default in most regions; adjustable in Service Quotas, and shared with every other caller of the key)",
            input.kms_quota
        ),
    ];
    let cipher = cipher_rate(r, &input.mode, input.key_bits, input.cores)?;
    let digest_row = r.rows.iter().find(|x| x.scope == "digest").ok_or_else(|| Error::Usage("the bench report has no SHA-256 (digest) row".into()))?;
    let hashers = plan.files_in_flight.min(input.cores).max(1);
    let digest = Rate {
        name: "digest".into(),
        gb_per_s: digest_row.gb_per_s.median * hashers as f64,
        source: format!("{} (median) × {hashers} file(s) in flight, one SHA-256 per file", digest_row.id),
    };
    let network = Rate { name: "network".into(), gb_per_s: input.network_gbps / 8.0, source: format!("{} Gbit/s / 8, each byte in once and out once (full duplex)", input.network_gbps) };
    let rates = vec![cipher, digest, network];
    let low = rates.iter().min_by(|a, b| a.gb_per_s.total_cmp(&b.gb_per_s)).expect("three rates");
    let wall_seconds = bytes as f64 / (low.gb_per_s * 1e9);
    let bottleneck = low.name.clone();

    let data_keys = objects;
    let by_files = objects.div_ceil(input.reuse_max_files.max(1));
    let by_bytes = bytes.div_ceil(input.reuse_max_bytes.max(1));
    let by_age = (wall_seconds / input.reuse_max_age_s.max(1.0)).ceil() as u64;
    let data_keys_reused = by_files.max(by_bytes).max(by_age).max(1);
    notes.push(format!(
        "--reuse-key: a key per {} files, {} or {} s, whichever comes first ({by_files} by files, {by_bytes} by bytes, {by_age} by age)",
        input.reuse_max_files,
        sealpipe::size::human(input.reuse_max_bytes),
        input.reuse_max_age_s
    ));
    let fleet = input.shards as f64 / wall_seconds.max(1e-9);
    let fleet_kms_per_s = data_keys as f64 * fleet;
    let fleet_kms_per_s_reused = data_keys_reused as f64 * fleet;

    let multipart = object_bytes > part_size;
    let parts = if multipart { object_bytes.div_ceil(part_size) } else { 0 };
    let (s3_put, s3_create_multipart, s3_upload_part, s3_complete_multipart) =
        if multipart { (0, objects, objects * parts, objects) } else { (objects, 0, 0, 0) };
    let listed_dest = input.objects <= LISTED_MAX as u64;
    let dest_pages = if listed_dest { input.objects.div_ceil(1000).max(1) } else { 0 };
    let s3_list_pages = if input.source_listed { input.objects.div_ceil(1000) } else { 0 };
    notes.push(if listed_dest {
        "HEAD: none; the destination prefix is listed once per shard (at most 100,000 keys), at its fullest on a re-run".into()
    } else {
        "HEAD: one per output; a destination prefix of over 100,000 keys is not listed".into()
    });
    if input.source_listed {
        notes.push("LIST: every shard lists the whole prefix and keeps its own share (--shard hashes keys), so pages are for all objects".into());
    }
    let s3_get = if input.source_s3 { objects * gets_for(object_bytes, plan.tuning.window as u64) } else { 0 };
    Ok(Estimate {
        input: input.clone(),
        objects,
        bytes,
        object_bytes,
        rates,
        bottleneck,
        wall_seconds,
        data_keys,
        data_keys_reused,
        fleet_kms_per_s,
        fleet_kms_per_s_reused,
        kms_quota_share: fleet_kms_per_s / input.kms_quota,
        kms_quota_share_reused: fleet_kms_per_s_reused / input.kms_quota,
        part_size,
        s3_put,
        s3_create_multipart,
        s3_upload_part,
        s3_complete_multipart,
        s3_head: if listed_dest { 0 } else { objects },
        s3_list_pages,
        s3_dest_list_pages: dest_pages,
        s3_get,
        memory_bytes: plan.bound(),
        files_in_flight: plan.files_in_flight,
        notes,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn gets_follow_the_window() {
        // Up to 8 MiB: one GetObject reads the whole object (issue 21).
        assert_eq!(super::gets_for(8 << 20, 8 << 20), 1);
        // Beyond, ranged GETs by window. 8 MiB window: 4 ranges of 2 MiB each (and one for the last byte);
        // 100 MB = 11 windows + 7,725,312 bytes (4 ranges of ≥1 MiB).
        assert_eq!(super::gets_for((8 << 20) + 1, 8 << 20), 4 + 1);
        assert_eq!(super::gets_for(100_000_000, 8 << 20), 11 * 4 + 4);
        assert_eq!(super::gets_for(0, 8 << 20), 0);
    }
}
