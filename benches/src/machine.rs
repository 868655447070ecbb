//! The machine a bench ran on, as far as the OS tells it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// CPU, memory, kernel, governor and the filesystem of the bench folder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    /// CPU model name (or the architecture where the OS does not say).
    pub cpu_model: String,
    /// Logical CPUs available to this process.
    pub cpus: usize,
    /// CPU features that decide which AES/GHASH/SHA code runs (name → present).
    pub features: BTreeMap<String, bool>,
    /// Last-level cache of CPU 0, as the OS writes it (e.g. "32768K").
    pub cache: Option<String>,
    /// Physical memory, bytes.
    pub memory_bytes: Option<u64>,
    /// OS and kernel release.
    pub kernel: Option<String>,
    /// cpufreq governor of CPU 0, where readable.
    pub governor: Option<String>,
    /// The folder file → file cases ran in.
    pub dir: String,
    /// Its filesystem type (from /proc/self/mountinfo).
    pub dir_filesystem: Option<String>,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

/// Describe this machine; `dir` is the bench folder.
pub fn describe_machine(dir: &Path) -> Machine {
    #[allow(unused_mut)]
    let mut features = BTreeMap::new();
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        features.insert("aes-ni".into(), std::arch::is_x86_feature_detected!("aes"));
        features.insert("vaes".into(), std::arch::is_x86_feature_detected!("vaes"));
        features.insert("avx2".into(), std::arch::is_x86_feature_detected!("avx2"));
        features.insert("avx512f".into(), std::arch::is_x86_feature_detected!("avx512f"));
        features.insert("pclmulqdq".into(), std::arch::is_x86_feature_detected!("pclmulqdq"));
        features.insert("vpclmulqdq".into(), std::arch::is_x86_feature_detected!("vpclmulqdq"));
        features.insert("sha-ni".into(), std::arch::is_x86_feature_detected!("sha"));
    }
    #[cfg(target_arch = "aarch64")]
    {
        features.insert("aes".into(), std::arch::is_aarch64_feature_detected!("aes"));
        features.insert("pmull".into(), std::arch::is_aarch64_feature_detected!("pmull"));
        features.insert("sha2".into(), std::arch::is_aarch64_feature_detected!("sha2"));
    }
    let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name") || l.starts_with("Model"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let memory_bytes = read("/proc/meminfo").and_then(|m| {
        m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).map(|k| k * 1024)
    });
    let kernel = read("/proc/sys/kernel/osrelease").map(|r| format!("{} {r}", std::env::consts::OS));
    let cache = (0..8).rev().find_map(|i| read(&format!("/sys/devices/system/cpu/cpu0/cache/index{i}/size")));
    let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    Machine {
        cpu_model: model,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        features,
        cache,
        memory_bytes,
        kernel,
        governor: read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        dir: abs.display().to_string(),
        dir_filesystem: filesystem_of(&abs),
    }
}

/// The type of the filesystem holding `path`: the longest mount point above it.
fn filesystem_of(path: &Path) -> Option<String> {
    let info = read("/proc/self/mountinfo")?;
    let mut best: Option<(usize, String)> = None;
    for line in info.lines() {
        // id parent major:minor root mount-point options ... - fstype source super-options
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(mount), Some(dash)) = (fields.get(4), fields.iter().position(|f| *f == "-")) else { continue };
        let mount = mount.replace("\\040", " ");
        let Some(fstype) = fields.get(dash + 1) else { continue };
        if path.starts_with(&mount) && best.as_ref().is_none_or(|(n, _)| mount.len() >= *n) {
            best = Some((mount.len(), fstype.to_string()));
        }
    }
    best.map(|(_, t)| t)
}
