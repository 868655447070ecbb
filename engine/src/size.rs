//! Sizes as people write them on the command line, the way the AWS CLI
//! reads them (`multipart_chunksize = 8MB`): a whole number of bytes, or one
//! with a unit, where every unit is binary whatever its spelling — `8M`,
//! `8MB`, `8MiB`, `8mb` and `8388608` are all 8 MiB. The one parser for
//! every size the project takes (part size, chunk size, memory budget,
//! bench sizes, `--reuse-key max-bytes=`).

/// Parse `text` as a byte count; the error says what was wrong, with examples.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let bad = || format!("not a size: {text:?} (examples: 8388608, 8M, 8MB, 8MiB, 2G)");
    if digits.is_empty() {
        return Err(bad());
    }
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        _ => return Err(bad()),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    n.checked_mul(1u64 << shift).ok_or_else(|| format!("size too large: {text:?}"))
}

/// `bytes` with a binary unit, as the summaries print it (`1.5 GiB`).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_unit_is_binary() {
        for text in ["8M", "8MiB", "8MB", "8mb", "8m", "8 MiB", "8388608"] {
            assert_eq!(parse_size(text), Ok(8 << 20), "{text}");
        }
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("2GB"), Ok(2 << 30));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("0"), Ok(0));
    }

    #[test]
    fn malformed_sizes_are_refused_with_examples() {
        for text in ["", "M", "8X", "8.5M", "-1", "8MBs", "99999999999T"] {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains(&format!("{text:?}")), "{text}: {err}");
        }
    }
}
