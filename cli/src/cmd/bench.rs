//! `sealpipe bench`: the rendering of the measurements the `sealpipe_bench`
//! crate makes (text, JSON, HTML report), comparisons and capacity plans.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context};
use sealpipe::{human_size as human, KeyBits, Mode};
use sealpipe_bench::{self as bench, BenchPlan, Report};

use super::{Global, UsageError};
use crate::args::bench::BenchArgs;

/// The command line as typed (arguments with spaces quoted).
fn command_line() -> String {
    std::env::args()
        .map(|a| if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') { format!("'{}'", a.replace('\'', "'\\''")) } else { a })
        .collect::<Vec<_>>()
        .join(" ")
}

fn write_report(path: &Path, html: &str) -> anyhow::Result<()> {
    std::fs::write(path, html).with_context(|| format!("cannot write {}", path.display()))?;
    errln!("sealpipe: bench: report written to {}", path.display());
    Ok(())
}

fn read_report(path: &Path) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let r: Report = serde_json::from_str(&text).with_context(|| format!("{}: not a sealpipe bench JSON (--json output)", path.display()))?;
    if r.schema != bench::SCHEMA {
        bail!("{}: schema {:?}, this sealpipe reads {:?}", path.display(), r.schema, bench::SCHEMA);
    }
    Ok(r)
}

/// Half the last-level cache, 4-32 MiB, whole MiB.
fn default_cache_size(machine: &bench::Machine) -> u64 {
    let llc = machine.cache.as_deref().and_then(|c| {
        let c = c.trim();
        let (num, mult) = match c.chars().last() {
            Some('K') => (&c[..c.len() - 1], 1u64 << 10),
            Some('M') => (&c[..c.len() - 1], 1 << 20),
            _ => (c, 1),
        };
        num.parse::<u64>().ok().map(|n| n * mult)
    });
    (llc.unwrap_or(32 << 20) / 2).clamp(4 << 20, 32 << 20) >> 20 << 20
}

pub fn run(a: BenchArgs, g: &Global) -> Result<ExitCode, UsageError> {
    if !a.compare.is_empty() {
        return compare(&a, g);
    }
    if a.plan.is_some() {
        return plan(&a, g);
    }
    let max = a.max_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let key_bits = a.key_bits.iter().map(|&b| KeyBits::try_from(b).map_err(|e| anyhow!(e))).collect::<anyhow::Result<Vec<_>>>()?;
    if !(a.seconds >= 0.0 && a.seconds.is_finite()) {
        return Err(anyhow!("--seconds must be a number of seconds, at least 0").into());
    }
    if a.memory_size < 16 {
        return Err(anyhow!("--memory-size must be at least 16 bytes").into());
    }
    let dir = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let machine = bench::describe_machine(&dir);
    let cache = a.cache_size.unwrap_or_else(|| default_cache_size(&machine));
    let ctx = match &a.to {
        Some(to) => {
            if !sealpipe::Stores::is_url(to) {
                return Err(anyhow!("--to {to}: not an s3:// URL (expected s3://bucket/prefix/)").into());
            }
            for &p in &a.s3_part_sizes {
                sealpipe::check_part_size(p).map_err(|e| anyhow!("--s3-part-sizes: {e}"))?;
            }
            if a.file_size == 0 {
                return Err(anyhow!("--to uploads the bench file: give a --file-size above 0").into());
            }
            Some(crate::aws::Context::new(&g.aws, &crate::environment::keyring_path(), None)?)
        }
        None => None,
    };
    let plan = BenchPlan {
        modes: a.modes.iter().map(|&m| Mode::from(m)).collect(),
        key_bits,
        threads: bench::thread_ladder(max),
        cache_bytes: cache as usize,
        memory_bytes: a.memory_size as usize,
        file_bytes: a.file_size,
        dir: &dir,
        min_time: std::time::Duration::from_secs_f64(a.seconds),
        repeat: a.repeat.max(1),
        chunk: g.chunk_size as usize,
        peers: !a.no_peers,
        command: command_line(),
        s3: match (&a.to, &ctx) {
            (Some(to), Some(ctx)) => Some(bench::S3Plan {
                url: to.clone(),
                stores: &ctx.stores,
                part_sizes: a.s3_part_sizes.clone(),
                concurrency: a.s3_concurrency.clone(),
                small: bench::SmallObjects { count: a.s3_small_objects, size: a.s3_small_size, in_flight: a.max_concurrent_requests },
            }),
            _ => None,
        },
    };
    if !g.json {
        let feats: Vec<String> = machine.features.iter().map(|(n, on)| format!("{n}{}", if *on { "+" } else { "-" })).collect();
        outln!("cpu: {} ({} logical CPUs)", machine.cpu_model, machine.cpus);
        outln!("features: {}", feats.join(" "));
    }
    let events = crate::report::events();
    events.start_clock();
    let report = bench::run(&plan, events)?;
    let json = serde_json::to_string(&report).context("cannot serialize the report")?;
    if let Some(path) = &a.report {
        write_report(path, &bench::html::report(&report, &json))?;
    }
    if g.json {
        outln!("{json}");
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &Report) {
    let m = &r.machine;
    outln!(
        "memory: {}; kernel: {}; governor: {}; bench folder: {} ({})",
        m.memory_bytes.map_or("unknown".into(), human),
        m.kernel.as_deref().unwrap_or("unknown"),
        m.governor.as_deref().unwrap_or("not readable"),
        m.dir,
        m.dir_filesystem.as_deref().unwrap_or("unknown filesystem")
    );
    outln!(
        "in memory: {} (fits the caches) and {}; file -> file: {}; median of {} repeats (min-max), >= {} s each; GB/s = 10^9 B/s",
        if r.settings.cache_bytes > 0 { human(r.settings.cache_bytes) } else { "-".into() },
        human(r.settings.memory_bytes),
        if r.settings.file_bytes > 0 { human(r.settings.file_bytes) } else { "not measured".into() },
        r.settings.repeat,
        r.settings.seconds
    );
    outln!(
        "{:<12} {:<6} {:<8} {:<7} {:>7} {:<22} {:<9} {:>8} {:>15} {:>6} {:>6} {:>8}  peer",
        "scope", "buffer", "mode", "dir", "threads", "layout", "kernel", "GB/s", "min-max", "spread", "eff", "x peer"
    );
    for x in r.rows.iter().chain(r.peers.iter()) {
        outln!(
            "{:<12} {:<6} {:<8} {:<7} {:>7} {:<22} {:<9} {:>8.2} {:>15} {:>5.0}%{} {:>6} {:>8}  {}",
            x.scope,
            x.buffer,
            if x.key_bits > 0 { format!("{}-{}", x.mode, x.key_bits) } else { x.mode.clone() },
            x.direction,
            x.threads,
            x.layout,
            x.kernel.split(' ').next().unwrap_or(""),
            x.gb_per_s.median,
            format!("{:.2}-{:.2}", x.gb_per_s.min, x.gb_per_s.max),
            x.spread * 100.0,
            if x.wide_spread { "!" } else { " " },
            x.efficiency.map_or("-".into(), |e| format!("{:.0}%", e * 100.0)),
            x.ratio_to_peer.map_or("-".into(), |v| format!("{v:.2}")),
            x.peer.as_deref().unwrap_or("")
        );
    }
    for x in r.rows.iter().filter_map(|x| Some((x, x.objects_per_s?))) {
        outln!("{}: {:.1} objects/s ({} objects of {} each, {})", x.0.id, x.1, x.0.objects.unwrap_or(0), human(x.0.bytes / x.0.objects.unwrap_or(1).max(1)), x.0.layout);
    }
    if !r.rows.iter().any(|x| x.scope == "s3") {
        outln!("S3 rows: not measured (--to s3://bucket/prefix/ measures them).");
    }
    for w in &r.warnings {
        outln!("warning: {w}");
    }
}

fn compare(a: &BenchArgs, g: &Global) -> Result<ExitCode, UsageError> {
    let runs = a.compare.iter().map(|p| Ok((p.display().to_string(), read_report(p)?))).collect::<anyhow::Result<Vec<_>>>()?;
    let c = bench::compare(&runs);
    let json = serde_json::to_string(&c).context("cannot serialize the comparison")?;
    if let Some(path) = &a.report {
        write_report(path, &bench::html::comparison(&c, &json))?;
    }
    if g.json {
        outln!("{json}");
        return Ok(ExitCode::SUCCESS);
    }
    for (i, r) in c.runs.iter().enumerate() {
        outln!("run {}: {} ({}, {} CPUs)", i + 1, r.label, r.cpu_model, r.cpus);
    }
    let mut header = format!("{:<48}", "case");
    for i in 0..c.runs.len() {
        header.push_str(&format!(" {:>9}", format!("{} GB/s", i + 1)));
        if i > 0 {
            header.push_str(&format!(" {:>7}", format!("{}/1", i + 1)));
        }
    }
    outln!("{header}");
    for row in &c.rows {
        let mut line = format!("{:<48}", row.id);
        for (i, m) in row.medians.iter().enumerate() {
            line.push_str(&format!(" {:>9}", m.map_or("-".into(), |v| format!("{v:.2}"))));
            if i > 0 {
                line.push_str(&format!(" {:>7}", row.ratios[i].map_or("-".into(), |v| format!("{v:.2}"))));
            }
        }
        outln!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

fn plan(a: &BenchArgs, g: &Global) -> Result<ExitCode, UsageError> {
    use sealpipe_bench::capacity::{estimate, PlanInput};
    let report = read_report(a.plan.as_deref().expect("--plan given"))?;
    let cores = a.cores.unwrap_or(report.machine.cpus);
    let (objects, bytes) = match (a.objects, a.bytes) {
        (Some(objects), Some(bytes)) => (objects, bytes),
        _ if !a.plan_inventory.is_empty() => inventory_shape(&a.plan_inventory)?,
        _ => return Err(anyhow!("--plan needs the archive's shape: --objects N --bytes SIZE, or --plan-inventory").into()),
    };
    let input = PlanInput {
        objects,
        bytes,
        shards: a.shards,
        cores,
        network_gbps: a.network_gbps,
        mode: Mode::from(a.plan_mode).to_string(),
        key_bits: a.plan_key_bits,
        part_size: a.part_size,
        concurrency: a.concurrency,
        memory: g.memory.unwrap_or(1 << 30),
        chunk: g.chunk_size as usize,
        reuse_max_files: a.reuse_max_files,
        reuse_max_bytes: 64 << 30,
        reuse_max_age_s: 300.0,
        source_listed: !a.from_inventory && a.plan_inventory.is_empty() && !a.local_source,
        source_s3: !a.local_source,
        kms_quota: a.kms_quota,
    };
    let e = estimate(&report, &input)?;
    if g.json {
        outln!("{}", serde_json::to_string(&e).context("cannot serialize the plan")?);
        return Ok(ExitCode::SUCCESS);
    }
    let hours = e.wall_seconds / 3600.0;
    outln!("per shard ({} shards, {} cores, {} Gbit/s each): {} objects, {} ({} each on average)", input.shards, cores, input.network_gbps, e.objects, human(e.bytes), human(e.object_bytes));
    for r in &e.rates {
        outln!("  {:<8} {:>8.2} GB/s  {}", r.name, r.gb_per_s, r.source);
    }
    outln!("wall time: {:.0} s ({hours:.1} h), bound by {}", e.wall_seconds, e.bottleneck);
    outln!(
        "KMS GenerateDataKey: {} per shard without --reuse-key (fleet {:.0}/s = {:.1}% of {} /s), {} with it (fleet {:.2}/s = {:.3}%)",
        e.data_keys,
        e.fleet_kms_per_s,
        e.kms_quota_share * 100.0,
        input.kms_quota,
        e.data_keys_reused,
        e.fleet_kms_per_s_reused,
        e.kms_quota_share_reused * 100.0
    );
    outln!(
        "S3 requests per shard: PutObject {}, CreateMultipartUpload {}, UploadPart {} ({} parts), CompleteMultipartUpload {}, HeadObject {}, ListObjectsV2 pages {} (and {} of the destination), GetObject {}",
        e.s3_put, e.s3_create_multipart, e.s3_upload_part, human(e.part_size), e.s3_complete_multipart, e.s3_head, e.s3_list_pages, e.s3_dest_list_pages, e.s3_get
    );
    outln!("memory: at most {} of buffers ({} files in flight)", human(e.memory_bytes), e.files_in_flight);
    for n in &e.notes {
        outln!("note: {n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Objects and bytes of an S3 Inventory report: a `manifest.json` (its CSV
/// data files read from beside it, by file name, and checked against the
/// sizes it gives) or `.csv.gz` data files.
fn inventory_shape(paths: &[PathBuf]) -> anyhow::Result<(u64, u64)> {
    use sealpipe::{parse_inventory_manifest, read_inventory_csv_gz};
    let (mut objects, mut bytes) = (0u64, 0u64);
    let mut count = |path: &Path, schema: Option<&[String]>| -> anyhow::Result<()> {
        let file = std::fs::File::open(path).with_context(|| format!("--plan-inventory {}", path.display()))?;
        read_inventory_csv_gz(std::io::BufReader::new(file), path, schema, &mut |named| {
            let size = named.size.ok_or_else(|| sealpipe::Error::Usage(format!("{}: {}: no Size column (the plan needs object sizes)", path.display(), named.name)))?;
            objects += 1;
            bytes += size;
            Ok(())
        })?;
        Ok(())
    };
    for path in paths {
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read(path).with_context(|| format!("--plan-inventory {}", path.display()))?;
            let manifest = parse_inventory_manifest(&text, path)?;
            let dir = path.parent().unwrap_or(Path::new("."));
            for f in &manifest.files {
                let name = f.key.rsplit('/').next().unwrap_or(&f.key);
                let local = dir.join(name);
                let len = std::fs::metadata(&local)
                    .with_context(|| format!("{}: its data file {name} should be beside it (download the report's files with it)", path.display()))?
                    .len();
                if len != f.size {
                    return Err(anyhow!("{}: {} is {len} bytes, the manifest says {} (a partial download?)", path.display(), local.display(), f.size));
                }
                count(&local, Some(&manifest.file_schema))?;
            }
        } else {
            count(path, None)?;
        }
    }
    if objects == 0 {
        return Err(anyhow!("--plan-inventory: the report lists no objects"));
    }
    Ok((objects, bytes))
}
