//! `sealpipe`: encrypt media archives client-side for AWS MediaConvert and
//! Elastic Transcoder, decrypt them, and verify round trips.
//!
//! This binary parses arguments ([`args`]), builds the thread pool, and runs
//! the command ([`cmd`], one file per command), which opens the key
//! provider and renders progress ([`report`]); all the work is in the
//! `sealpipe` engine.
//!
//! Exit codes: 0 all done; 1 some files failed; 2 usage or configuration error;
//! 3 stopped early at --max-errors; 130 interrupted.

#[macro_use]
mod out;
mod args;
mod aws;
mod cmd;
mod environment;
mod interrupt;
mod logging;
mod report;

use std::process::ExitCode;

use anyhow::{anyhow, Context};
use clap::{CommandFactory, FromArgMatches};

use args::{filter_rules, upload_flags, Cli, Command, OutputArgs};
use cmd::{Global, UsageError};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match (&mut cli.command, matches.subcommand()) {
        (Command::Encrypt(c), Some((_, m))) => (c.args.filters, c.args.upload_flags) = (filter_rules(m), upload_flags(m)),
        (Command::Reencrypt(c), Some((_, m))) => (c.args.encrypt.filters, c.args.encrypt.upload_flags) = (filter_rules(m), upload_flags(m)),
        _ => {}
    }
    let output = match &cli.command {
        Command::Encrypt(c) => c.work.output.clone(),
        Command::Reencrypt(c) => c.work.output.clone(),
        Command::Decrypt(c) => c.work.output.clone(),
        Command::Verify(c) => c.work.output.clone(),
        Command::RebuildManifest(c) => c.work.output.clone(),
        Command::Bench(c) => c.output.clone(),
        Command::MergeManifests(c) => c.output.clone(),
        Command::Jobs(c) => c.output.clone(),
        Command::Policy(c) => c.log.output(),
        Command::Status(c) => c.log.output(),
        Command::Completions(_) | Command::Man(_) | Command::Deploy(_) => OutputArgs::default(),
    };
    if let Err(e) = logging::init(&output) {
        errln!("sealpipe: error: {}", one_line(&e));
        return ExitCode::from(2);
    }
    report::configure(&output);
    environment::apply_process_settings();
    interrupt::install();
    match run(cli) {
        Ok(code) => code,
        Err(UsageError(e)) => {
            errln!("sealpipe: error: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// An error and its causes on one line, each cause once (a cause whose text an
/// outer message already contains, in any case and less its OS error number, is not repeated).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        // "No such file or directory (os error 2)" under "...: no such file or directory".
        let bare = cause.split(" (os error").next().unwrap_or(&cause).to_lowercase();
        if line.to_lowercase().contains(&bare) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&cause);
    }
    line
}

/// The command: those that need no thread pool or keyring first, then the others.
fn run(cli: Cli) -> Result<ExitCode, UsageError> {
    let g = match &cli.command {
        Command::Encrypt(c) => c.work.global(c.kms.kms_key.clone()),
        Command::Reencrypt(c) => c.work.global(c.kms.kms_key.clone()),
        Command::Decrypt(c) => c.work.global(c.kms.kms_key.clone()),
        Command::Verify(c) => c.work.global(c.kms.kms_key.clone()),
        Command::RebuildManifest(c) => c.work.global(None),
        Command::Bench(c) => Global { threads: None, json: c.output.json, keyring: None, create_keyring: false, memory: None, chunk_size: c.chunk.chunk_size, kms_key: None, aws: c.aws.clone() },
        Command::MergeManifests(c) => return cmd::merge::run(c.args.clone(), c.output.json).map_err(UsageError::from),
        Command::Completions(c) => return cmd::docs::completions(Cli::command(), c.shell).map_err(UsageError::from),
        Command::Man(c) => return cmd::docs::man(Cli::command(), c.out_dir.as_deref()).map_err(UsageError::from),
        Command::Jobs(c) => return cmd::jobs::run(c),
        Command::Policy(c) => return cmd::policy::run(c),
        Command::Status(c) => return cmd::status::run(c),
        Command::Deploy(c) => return cmd::deploy::run(c, Cli::command()),
    };
    let g = &g;
    if g.chunk_size < 16 || g.chunk_size % 16 != 0 || g.chunk_size > 1 << 30 {
        return Err(anyhow!("--chunk-size must be a positive multiple of 16 (at most 1GiB), got {}", g.chunk_size).into());
    }
    let threads = g.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if threads == 0 {
        return Err(anyhow!("--threads must be at least 1").into());
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("sealpipe-{i}"))
        .build_global()
        .context("cannot start the thread pool")?;
    let keyring_path = g.keyring.clone().unwrap_or_else(environment::keyring_path);
    match cli.command {
        Command::Encrypt(c) => cmd::encrypt::run(c.args, g, &keyring_path, None, Vec::new()),
        Command::Reencrypt(c) => cmd::reencrypt::run(c.args, g, &keyring_path),
        Command::Decrypt(c) => cmd::decrypt::run(c.args, g, &keyring_path),
        Command::Verify(c) => cmd::verify::run(c.args, g, &keyring_path),
        Command::RebuildManifest(c) => cmd::rebuild::run(c.args, &cmd::context(g, &keyring_path, None)?, g.json).map_err(UsageError::from),
        Command::Bench(c) => cmd::bench::run(c.args, g),
        Command::MergeManifests(_) | Command::Jobs(_) | Command::Policy(_) | Command::Status(_) | Command::Deploy(_) | Command::Completions(_) | Command::Man(_) => {
            unreachable!("handled above")
        }
    }
}
