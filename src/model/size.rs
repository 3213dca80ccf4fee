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
    let bytes = (n * mult as f64).round();
    // 2^64 as f64: anything at or above it would saturate to u64::MAX instead of failing.
    if n < 0.0 || !bytes.is_finite() || bytes >= 18_446_744_073_709_551_616.0 {
        return Err(SizeError(s.to_string()));
    }
    Ok(bytes as u64)
}

/// The sum of descriptor sizes, or None when it does not fit in 64 bits (a hostile
/// descriptor can claim 2^64-1 bytes). Never wraps.
pub fn checked_total(sizes: impl IntoIterator<Item = u64>) -> Option<u64> {
    sizes.into_iter().try_fold(0u64, u64::checked_add)
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
        assert!(
            parse_size("99999999999999999999 TiB").is_err(),
            "no saturation"
        );
        assert_eq!(parse_size("16383PiB").ok(), None, "unknown unit");
    }

    #[test]
    fn totals_never_wrap() {
        assert_eq!(checked_total([1, 2, 3]), Some(6));
        assert_eq!(checked_total([]), Some(0));
        assert_eq!(checked_total([u64::MAX]), Some(u64::MAX));
        assert_eq!(checked_total([100, u64::MAX]), None);
        assert_eq!(checked_total([u64::MAX / 2 + 1, u64::MAX / 2 + 1]), None);
    }
}
