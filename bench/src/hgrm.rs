//! HdrHistogram percentile-distribution files (`.hgrm`), the text format of
//! the Java library's `outputPercentileDistribution`, which the HdrHistogram
//! plotter (<https://hdrhistogram.github.io/HdrHistogram/plotFiles.html>) and
//! other tools read. Values are written in nanoseconds.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

use super::report::Report;

/// Quantile steps per halving of the distance to 100 %, as the Java default.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// Renders `h` with every value divided by `scale`.
pub fn render(h: &Histogram<u64>, scale: f64) -> String {
    let digits = usize::from(h.sigfig());
    let mut s = String::new();
    let _ = write!(
        s,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if !h.is_empty() {
        let mut total = 0u64;
        for v in h.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
            total += v.count_since_last_iteration();
            let value = v.value_iterated_to() as f64 / scale;
            let q = v.quantile_iterated_to();
            if q < 1.0 {
                let _ = writeln!(
                    s,
                    "{value:>12.digits$} {q:>2.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                );
            } else {
                let _ = writeln!(s, "{value:>12.digits$} {q:>2.12} {total:>10}");
            }
        }
    }
    let _ = writeln!(
        s,
        "#[Mean    = {:>12.digits$}, StdDeviation   = {:>12.digits$}]",
        h.mean() / scale,
        h.stdev() / scale
    );
    let _ = writeln!(
        s,
        "#[Max     = {:>12.digits$}, Total count    = {:>12}]",
        h.max() as f64 / scale,
        h.len()
    );
    let sub_buckets = (2 * 10u64.pow(u32::from(h.sigfig()))).next_power_of_two();
    let _ = writeln!(
        s,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        sub_buckets
    );
    s
}

/// Writes one `<id>.hgrm` per latency row of `report` into `dir`.
pub fn write_all(report: &Report, dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating the --hgrm directory {}", dir.display()))?;
    let mut written = Vec::new();
    for row in &report.rows {
        let Some(h) = &row.merged else { continue };
        let suffix = if row.div == 2.0 { "-oneway" } else { "" };
        let path = dir.join(format!("{}{suffix}.hgrm", row.id));
        std::fs::write(&path, render(h, row.div))
            .with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_hist;

    #[test]
    fn hgrm_has_header_rows_and_footer() {
        let mut h = new_hist();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let text = render(&h, 2.0);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("Value") && lines[0].contains("1/(1-Percentile)"));
        assert_eq!(lines[1], "");
        let first: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(first.len(), 4);
        assert_eq!(first[0], "5.000", "values are scaled");
        let last_data = lines[lines.len() - 4];
        let cols: Vec<&str> = last_data.split_whitespace().collect();
        assert_eq!(cols.len(), 3, "the 100% line has no 1/(1-p): {last_data}");
        assert_eq!(cols[1], "1.000000000000");
        assert_eq!(cols[2], "1000");
        assert!(lines[lines.len() - 3].starts_with("#[Mean"));
        assert!(lines[lines.len() - 2].contains("Total count    =         1000"));
        assert!(lines[lines.len() - 1].contains("SubBuckets     =         2048"));
    }
}
