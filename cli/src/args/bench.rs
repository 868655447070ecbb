//! The flags of `sealpipe bench`: what to measure, the S3 rows, the report, comparisons and the capacity plan.

use std::path::PathBuf;

use clap::Args;
use sealpipe::parse_size;

use super::ModeArg;

#[derive(Args)]
// Examples for `sealpipe bench --help` live on the `Bench` variant in main.rs (its
// after_help wins over one here): --report, --compare and --plan have theirs in their flag docs.
pub struct BenchArgs {
    /// Modes to measure, comma-separated. Example: --modes ctr,gcm
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ctr,cbc,gcm", help_heading = "Measure")]
    pub modes: Vec<ModeArg>,
    /// Key sizes, comma-separated. Example: --key-bits 128,256
    #[arg(long, value_delimiter = ',', default_value = "256", help_heading = "Measure")]
    pub key_bits: Vec<u16>,
    /// Largest thread count; measured at 1, 2, 4, ... up to it (file rows at 1 and at it). Default: all cores. Example: --max-threads 16
    #[arg(long, value_name = "N", help_heading = "Measure")]
    pub max_threads: Option<usize>,
    /// In-memory buffer that does not fit the caches. Example: --memory-size 512MiB
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size, help_heading = "Measure")]
    pub memory_size: u64,
    /// In-memory buffer that fits the caches (default: half the last-level cache, 4-32 MiB; 0 skips;
    /// not measured unless below --memory-size). Example: --cache-size 8MiB
    #[arg(long, value_name = "SIZE", value_parser = parse_size, help_heading = "Measure")]
    pub cache_size: Option<u64>,
    /// File size for file-to-file runs; 0 skips them. Example: --file-size 2G
    #[arg(long, value_name = "SIZE", default_value = "256M", value_parser = parse_size, help_heading = "Measure")]
    pub file_size: u64,
    /// Folder for the temporary bench files (default: the system temp folder). Example: --dir /mnt/nvme
    #[arg(long, value_name = "DIR", help_heading = "Measure")]
    pub dir: Option<PathBuf>,
    /// Minimum seconds per sample (operations repeat until it has passed). Example: --seconds 2
    #[arg(long, value_name = "S", default_value_t = 0.5, help_heading = "Measure")]
    pub seconds: f64,
    /// Samples per case, interleaved across cases. Example: --repeat 9
    #[arg(long, value_name = "N", default_value_t = 5, help_heading = "Measure")]
    pub repeat: usize,
    /// Do not run the peers (openssl speed, cp): no ratios. Example: --no-peers
    #[arg(long, help_heading = "Measure")]
    pub no_peers: bool,
    /// Also measure file -> S3: the --file-size file encrypted (first of --modes and --key-bits, most
    /// threads) and uploaded under this prefix as encrypt --to does, per part size and concurrency;
    /// the scratch object is deleted at the end. Example: --to s3://media-in/bench/
    #[arg(long, value_name = "S3_URL", help_heading = "S3 rows")]
    pub to: Option<String>,
    /// Part sizes of the S3 rows, comma-separated (each 5MiB to 5GiB). Example: --s3-part-sizes 8MiB,16MiB,64MiB
    #[arg(long, value_name = "SIZES", value_delimiter = ',', value_parser = parse_size, default_value = "8MiB,16MiB,64MiB", requires = "to", help_heading = "S3 rows")]
    pub s3_part_sizes: Vec<u64>,
    /// Parts in flight per upload of the S3 rows, comma-separated. Example: --s3-concurrency 4,8,16
    #[arg(long, value_name = "NS", value_delimiter = ',', default_value = "4,8,16", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), requires = "to", help_heading = "S3 rows")]
    pub s3_concurrency: Vec<usize>,
    /// Small objects of the S3 rows' objects/s row (0: none), each of --s3-small-size, uploaded
    /// --max-concurrent-requests at a time as encrypt --to keeps files in flight, then deleted.
    /// Example: --s3-small-objects 500
    #[arg(long, value_name = "N", default_value_t = 200, requires = "to", help_heading = "S3 rows")]
    pub s3_small_objects: usize,
    /// Bytes of each small object (an HLS segment is 100KiB-2MiB). Example: --s3-small-size 1MiB
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value = "256KiB", requires = "to", help_heading = "S3 rows")]
    pub s3_small_size: u64,
    /// Small objects in flight at once (encrypt's default with S3). Example: --max-concurrent-requests 128
    #[arg(long, value_name = "N", default_value_t = sealpipe::DEFAULT_REMOTE_IN_FLIGHT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..), requires = "to", help_heading = "S3 rows")]
    pub max_concurrent_requests: usize,
    /// Write a self-contained HTML report (charts, tables, machine, command, raw JSON). Example: --report bench.html
    #[arg(long, value_name = "PATH", help_heading = "Report")]
    pub report: Option<PathBuf>,
    /// Set bench JSON files (from --json) side by side, matched by case, with ratios to the first. Example: --compare a.json b.json
    #[arg(long, value_name = "JSON", num_args = 2.., conflicts_with = "plan", help_heading = "Report")]
    pub compare: Vec<PathBuf>,
    /// Capacity plan from a bench JSON: per-shard wall time, KMS and S3 requests, memory. Example: --plan bench.json
    #[arg(long, value_name = "JSON", help_heading = "Capacity plan")]
    pub plan: Option<PathBuf>,
    /// Plan: objects in the archive (or --plan-inventory). Example: --objects 10000000
    #[arg(long, value_name = "N", requires = "bytes", conflicts_with = "plan_inventory", help_heading = "Capacity plan")]
    pub objects: Option<u64>,
    /// Plan: bytes in the archive (a size, or plain bytes). Example: --bytes 1000000000000000
    #[arg(long, value_name = "SIZE", value_parser = parse_size, requires = "objects", help_heading = "Capacity plan")]
    pub bytes: Option<u64>,
    /// Plan: the archive's shape from an S3 Inventory report instead of --objects/--bytes: its
    /// manifest.json (the CSV data files it lists are read from the same folder, by file name) or
    /// the .csv.gz data files themselves (then every row counts: without the manifest's schema,
    /// delete markers and older versions cannot be told apart); implies --from-inventory. Example:
    /// --plan-inventory inv/manifest.json
    #[arg(long, value_name = "PATH", num_args = 1.., help_heading = "Capacity plan")]
    pub plan_inventory: Vec<PathBuf>,
    /// Plan: shards (machines or pods). Example: --shards 200
    #[arg(long, value_name = "N", default_value_t = 1, help_heading = "Capacity plan")]
    pub shards: u64,
    /// Plan: cores per shard (default: this machine's). Example: --cores 16
    #[arg(long, value_name = "N", help_heading = "Capacity plan")]
    pub cores: Option<usize>,
    /// Plan: network per shard, Gbit/s. Example: --network-gbps 25
    #[arg(long, value_name = "GBPS", default_value_t = 10.0, help_heading = "Capacity plan")]
    pub network_gbps: f64,
    /// Plan: the mode the archive is encrypted in. Example: --plan-mode gcm
    #[arg(long, value_enum, default_value = "ctr", help_heading = "Capacity plan")]
    pub plan_mode: ModeArg,
    /// Plan: key size. Example: --plan-key-bits 128
    #[arg(long, default_value_t = 256, help_heading = "Capacity plan")]
    pub plan_key_bits: u16,
    /// Plan: multipart part size (as encrypt's --part-size). Example: --plan-part-size 64MiB
    #[arg(long = "plan-part-size", value_name = "SIZE", default_value = "16MiB", value_parser = parse_size, help_heading = "Capacity plan")]
    pub part_size: u64,
    /// Plan: part buffers per upload (as encrypt's --concurrency). Example: --plan-concurrency 16
    #[arg(long = "plan-concurrency", value_name = "N", default_value_t = sealpipe::DEFAULT_PART_CONCURRENCY, help_heading = "Capacity plan")]
    pub concurrency: usize,
    /// Plan: files per cached key with --reuse-key (its max-files). Example: --reuse-max-files 1000
    #[arg(long, value_name = "N", default_value_t = 1000, help_heading = "Capacity plan")]
    pub reuse_max_files: u64,
    /// Plan: the source is an inventory or list file (no LIST requests) rather than an s3:// prefix.
    /// Example: --from-inventory
    #[arg(long, help_heading = "Capacity plan")]
    pub from_inventory: bool,
    /// Plan: the source is local (no GET requests) rather than in S3. Example: --local-source
    #[arg(long, help_heading = "Capacity plan")]
    pub local_source: bool,
    /// Plan: KMS symmetric requests per second for the account and region (default quota 10,000; adjustable).
    /// Example: --kms-quota 50000
    #[arg(long, value_name = "N", default_value_t = 10_000.0, help_heading = "Capacity plan")]
    pub kms_quota: f64,
}
