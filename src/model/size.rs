//! Byte sizes: parsed from `2GiB`, `500MB`, `1024`; printed with binary units.

#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "invalid size `{0}`: expected a number with an optional unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB), e.g. `2GiB`"
)]
pub struct SizeError(pub String);

/// Parse a size such as `2GiB` or `512 MB` into bytes.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num.parse().map_err(|_| SizeError(s.to_string()))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        _ => return Err(SizeError(s.to_string())),
    };
    if n < 0.0 || !n.is_finite() {
        return Err(SizeError(s.to_string()));
    }
    Ok((n * mult as f64).round() as u64)
}

/// Human-readable binary size: `1.5 MiB`, `812 B`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("512 MB").unwrap(), 512_000_000);
        assert_eq!(parse_size("10").unwrap(), 10);
        assert!(parse_size("2 GB!").is_err());
        assert!(parse_size("lots").is_err());
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(12), "12 B");
    }
}
