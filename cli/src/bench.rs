//! `sealpipe bench`: the arguments and the rendering of the engine's measurements.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::Args;
use sealpipe::format::{KeyBits, Mode};
use sealpipe::size::parse_size;

use crate::{Global, ModeArg, UsageError};

#[derive(Args)]
pub(crate) struct BenchArgs {
    /// Modes to measure, comma-separated. Example: --modes ctr,gcm
    #[arg(long, value_enum, value_delimiter = ',', default_value = "ctr,cbc,gcm")]
    modes: Vec<ModeArg>,
    /// Key sizes, comma-separated. Example: --key-bits 128,256
    #[arg(long, value_delimiter = ',', default_value = "256")]
    key_bits: Vec<u16>,
    /// Largest thread count; measured at 1, 2, 4, ... up to it. Default: all cores. Example: --max-threads 16
    #[arg(long, value_name = "N")]
    max_threads: Option<usize>,
    /// Buffer size for in-memory runs. Example: --memory-size 256MiB
    #[arg(long, default_value = "64M", value_parser = parse_size)]
    memory_size: u64,
    /// File size for file-to-file runs; 0 skips them. Example: --file-size 2G
    #[arg(long, default_value = "256M", value_parser = parse_size)]
    file_size: u64,
    /// Folder for the temporary bench files (default: the system temp folder). Example: --dir /mnt/nvme
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Minimum seconds per case (the best iteration is reported). Example: --seconds 3
    #[arg(long, default_value_t = 1.0)]
    seconds: f64,
}

pub(crate) fn run(a: BenchArgs, g: &Global) -> Result<ExitCode, UsageError> {
    use sealpipe::bench::{self, BenchPlan, Scope};
    let cpu = bench::cpu_features();
    let max = a.max_threads.unwrap_or(cpu.cpus).max(1);
    let key_bits = a.key_bits.iter().map(|&b| KeyBits::try_from(b).map_err(|e| anyhow!(e))).collect::<anyhow::Result<Vec<_>>>()?;
    let tmp = std::env::temp_dir();
    let dir = a.dir.clone().unwrap_or(tmp);
    let plan = BenchPlan {
        modes: a.modes.iter().map(|&m| Mode::from(m)).collect(),
        key_bits,
        threads: bench::thread_ladder(max),
        memory_bytes: a.memory_size as usize,
        file_bytes: a.file_size,
        dir: &dir,
        min_time: std::time::Duration::from_secs_f64(a.seconds),
        chunk: g.chunk_size as usize,
    };
    if !g.json {
        let feats: Vec<String> = cpu.features.iter().map(|(n, on)| format!("{n}{}", if *on { "+" } else { "-" })).collect();
        println!("cpu: {} ({} logical CPUs)", cpu.model, cpu.cpus);
        println!("features: {}", feats.join(" "));
        println!(
            "memory runs: {} per iteration; file runs: {} file in {}; best of >= {:.1} s each",
            sealpipe::size::human(a.memory_size),
            sealpipe::size::human(a.file_size),
            dir.display(),
            a.seconds
        );
        println!("{:<7} {:<4} {:>4} {:>8} {:>6} {:>9} {:>11}", "scope", "mode", "key", "threads", "files", "GB/s", "efficiency");
    }
    let results = bench::run(&plan, |m| {
        if !g.json {
            let scope = match m.scope {
                Scope::Memory => "memory",
                Scope::File => "file",
            };
            println!(
                "{:<7} {:<4} {:>4} {:>8} {:>6} {:>9.2} {:>10.0}%",
                scope, m.mode, m.key_bits, m.threads, m.files, m.gb_per_s, m.efficiency * 100.0
            );
        }
    })?;
    if g.json {
        println!("{}", serde_json::json!({"command": "bench", "cpu": cpu, "results": results}));
    }
    Ok(ExitCode::SUCCESS)
}
