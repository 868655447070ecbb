//! Streaming readers for list files (placeholder until the inventory reader lands).

use std::path::Path;

use crate::error::{Error, Result};

/// One object named by a list file or an inventory report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    /// A local path as written, or `s3://bucket/key`.
    pub name: String,
    /// Size in bytes, when the listing gives it.
    pub size: Option<u64>,
    /// Entity tag (without quotes), when the listing gives it.
    pub etag: Option<String>,
}

/// Read a list file: one path or URL per line.
pub fn read_list(reader: impl std::io::BufRead, origin: &Path, each: &mut dyn FnMut(Named) -> Result<()>) -> Result<u64> {
    let mut n = 0;
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| Error::invalid(origin, format!("line {}: {e}", i + 1)))?;
        let name = line.trim();
        if name.is_empty() || name.starts_with('#') {
            continue;
        }
        each(Named { name: name.to_string(), size: None, etag: None })?;
        n += 1;
    }
    Ok(n)
}
