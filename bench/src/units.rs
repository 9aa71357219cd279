//! How the bench writes figures: nanoseconds with a unit, rates with an SI
//! prefix, message sizes.

/// A message size for a table: `64`, `64Ki`; `-` if none.
pub fn size(s: Option<usize>) -> String {
    match s {
        None => "-".into(),
        Some(s) if s >= 1024 && s % 1024 == 0 => format!("{}Ki", s / 1024),
        Some(s) => s.to_string(),
    }
}

/// Formats ns with a unit: `65.5ns`, `12.3µs`, `4.56ms`.
pub fn ns(v: f64) -> String {
    if v < 100.0 {
        format!("{v:.1}ns")
    } else if v < 10_000.0 {
        format!("{v:.0}ns")
    } else if v < 1_000_000.0 {
        format!("{:.1}µs", v / 1e3)
    } else {
        format!("{:.1}ms", v / 1e6)
    }
}

/// Formats a rate with an SI prefix: `12.3M`, `456k`.
pub fn si(v: f64) -> String {
    if v >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(ns(65.3), "65.3ns");
        assert_eq!(ns(1234.0), "1234ns");
        assert_eq!(ns(23_456.0), "23.5µs");
        assert_eq!(ns(1_234_567.0), "1.2ms");
        assert_eq!(si(12_345_678.0), "12.35M");
        assert_eq!(size(Some(65536)), "64Ki");
        assert_eq!(size(Some(64)), "64");
    }
}
