//! Peers measured in the same run: `openssl speed -evp` (one thread, 16 KiB
//! blocks, machine-readable `-mr` output) and `cp`.

use std::path::Path;
use std::process::{Command, Stdio};

use sealpipe::error::Result;

use crate::{invalid, io_error};

/// `openssl version`, when `openssl` is on the PATH.
pub fn openssl_version() -> Option<String> {
    let out = Command::new("openssl").arg("version").stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Whether `cp` runs.
pub fn cp_available() -> bool {
    Command::new("cp").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// GB/s of `openssl speed -mr -seconds S -bytes 16384 [-multi N] [-decrypt] -evp CIPHER`
/// (with `-multi`, the sum over its N processes).
pub fn openssl_speed(cipher: &str, decrypt: bool, seconds: u32, threads: usize) -> std::result::Result<f64, String> {
    let mut cmd = Command::new("openssl");
    cmd.args(["speed", "-mr", "-seconds", &seconds.to_string(), "-bytes", "16384"]);
    if threads > 1 {
        cmd.args(["-multi", &threads.to_string()]);
    }
    if decrypt {
        cmd.arg("-decrypt");
    }
    cmd.args(["-evp", cipher]);
    let out = cmd.stderr(Stdio::null()).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!("exit status {}", out.status));
    }
    parse_mr(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| "no +F: line in its output".into())
}

/// The bytes/s of the one block size in `openssl speed -mr` output, in GB/s
/// (with `-multi`, the total line: each process's own lines start `Got:`).
pub fn parse_mr(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("+F:"))?;
    let v: f64 = line.rsplit(':').next()?.trim().parse().ok()?;
    Some(v / 1e9)
}

/// `cp src dst`, and with `synced` the copy's data flushed to disk (fsync)
/// before it counts as done.
pub fn cp(src: &Path, dst: &Path, synced: bool) -> Result<()> {
    let status = Command::new("cp").arg(src).arg(dst).status().map_err(|e| io_error(dst, "run cp", e))?;
    if !status.success() {
        return Err(invalid(dst, format!("cp failed: {status}")));
    }
    if synced {
        std::fs::File::open(dst).and_then(|f| f.sync_all()).map_err(|e| io_error(dst, "sync", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_machine_readable_speed() {
        let out = "+H:16384\n+F:25:AES-256-CTR:8162859885.71\n";
        assert!((super::parse_mr(out).unwrap() - 8.16285988571).abs() < 1e-9);
        let multi = "Got: +H:16384 from 0\nGot: +F:25:AES-256-CTR:2686681088.00 from 0\nGot: +H:16384 from 1\nGot: +F:25:AES-256-CTR:3401498624.00 from 1\n+F:25:AES-256-CTR:6088179712.00\n";
        assert!((super::parse_mr(multi).unwrap() - 6.088179712).abs() < 1e-9);
    }
}
