//! `sealpipe completions SHELL` and `sealpipe man`: generated from the same
//! clap definition the parser uses, so they never drift from `--help`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

/// Print the completion script for `shell` on stdout.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    clap_complete::generate(shell, &mut cmd, "sealpipe", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

/// Print `sealpipe.1` on stdout, or write it and one page per command into `out_dir`.
pub fn man(cmd: clap::Command, out_dir: Option<&Path>) -> anyhow::Result<ExitCode> {
    match out_dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(cmd).render(&mut page).context("cannot render the man page")?;
            std::io::Write::write_all(&mut std::io::stdout().lock(), &page).context("stdout")?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("--out-dir {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir).with_context(|| format!("--out-dir {}", dir.display()))?;
            crate::report::info(&format!("sealpipe: man pages written to {}", dir.display()));
        }
    }
    Ok(ExitCode::SUCCESS)
}
