//! Splitting one run across machines: `--shard I/N` takes the files whose
//! key hashes to `I` modulo `N`.
//!
//! The key is the file's path below its input (the object key below the
//! listed prefix, or the path as written in a list file), with `/`
//! separators, so every machine puts a file in the same shard whatever its
//! mount points; the hash is the first 8 bytes of its SHA-256, stable across
//! platforms and releases (unlike `std`'s hasher).

use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

/// One shard of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: u32,
    /// Number of shards.
    pub count: u32,
}

impl Shard {
    /// Parse `I/N` (0 ≤ I < N).
    pub fn parse(text: &str) -> Result<Shard, String> {
        let (i, n) = text.split_once('/').ok_or_else(|| format!("expected I/N (e.g. 0/8), got {text:?}"))?;
        let index: u32 = i.trim().parse().map_err(|_| format!("shard index {i:?} is not a number"))?;
        let count: u32 = n.trim().parse().map_err(|_| format!("shard count {n:?} is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("shard {index}/{count}: the index must be below the count (0/{count} … {}/{count})", count.max(1) - 1));
        }
        Ok(Shard { index, count })
    }

    /// The shard of the file with this key.
    pub fn of(relative: &Path, count: u32) -> u32 {
        let key: Vec<String> = relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        let digest = Sha256::digest(key.join("/").as_bytes());
        (u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) % u64::from(count)) as u32
    }

    /// Whether the file with this key is in this shard.
    pub fn takes(&self, relative: &Path) -> bool {
        Shard::of(relative, self.count) == self.index
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_keys_stably() {
        let keys: Vec<String> = (0..1000).map(|i| format!("show/s01/seg{i:05}.ts")).collect();
        let mut counts = [0u32; 4];
        for k in &keys {
            let hits: Vec<u32> = (0..4).filter(|&i| Shard { index: i, count: 4 }.takes(Path::new(k))).collect();
            assert_eq!(hits.len(), 1, "{k} must be in exactly one shard");
            counts[hits[0] as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 200), "roughly even: {counts:?}");
        // Pinned values (Python: int.from_bytes(sha256(key)[:8], "big") % n): the
        // split must never change between releases or shards would overlap.
        assert_eq!(Shard::of(Path::new("a/b.ts"), 1 << 31), 1_084_352_029);
        assert_eq!(Shard::of(Path::new("show/s01/seg00000.ts"), 16), 3);
        assert_eq!(Shard::parse("3/8"), Ok(Shard { index: 3, count: 8 }));
        assert!(Shard::parse("8/8").is_err());
        assert!(Shard::parse("x/8").is_err());
    }
}
