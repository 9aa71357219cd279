//! Histograms, their summary figures, and medians across runs.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest value a histogram holds: one hour in ns (larger values saturate).
const HIST_MAX_NS: u64 = 3_600_000_000_000;

/// An empty histogram for ns samples, 3 significant digits (0.1 % error).
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("constant bounds are valid")
}

/// Percentiles of one distribution, in ns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p99_9: f64,
    /// 99.99th percentile.
    pub p99_99: f64,
    /// Largest sample.
    pub max: f64,
    /// Mean.
    pub mean: f64,
    /// Samples recorded.
    pub count: u64,
}

impl Percentiles {
    /// Summarises `h`, dividing every value by `div` (2 turns an RTT into
    /// one-way).
    pub fn of(h: &Histogram<u64>, div: f64) -> Percentiles {
        let q = |x: f64| h.value_at_quantile(x) as f64 / div;
        Percentiles {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p99_9: q(0.999),
            p99_99: q(0.9999),
            max: h.max() as f64 / div,
            mean: h.mean() / div,
            count: h.len(),
        }
    }

    /// The figures in table order (p50 .. max).
    pub fn row(&self) -> [f64; 6] {
        [
            self.p50,
            self.p90,
            self.p99,
            self.p99_9,
            self.p99_99,
            self.max,
        ]
    }

    /// Median of each figure across runs (counts are summed).
    pub fn median_of(runs: &[Percentiles]) -> Percentiles {
        let m = |f: fn(&Percentiles) -> f64| median(runs.iter().map(f).collect());
        Percentiles {
            p50: m(|p| p.p50),
            p90: m(|p| p.p90),
            p99: m(|p| p.p99),
            p99_9: m(|p| p.p99_9),
            p99_99: m(|p| p.p99_99),
            max: m(|p| p.max),
            mean: m(|p| p.mean),
            count: runs.iter().map(|p| p.count).sum(),
        }
    }
}

/// Median of `v` (mean of the middle two for an even count); 0 if empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_hist();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let p = Percentiles::of(&h, 1.0);
        assert_eq!(p.count, 10_000);
        assert!((p.p50 - 5_000.0).abs() <= 5.0, "{}", p.p50);
        assert!((p.p99 - 9_900.0).abs() <= 10.0, "{}", p.p99);
        assert!((p.max - 10_000.0).abs() <= 10.0);
        let half = Percentiles::of(&h, 2.0);
        assert!((half.p50 - 2_500.0).abs() <= 3.0);
    }

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median(vec![]), 0.0);
        let a = Percentiles {
            p50: 1.0,
            count: 5,
            ..Default::default()
        };
        let b = Percentiles {
            p50: 3.0,
            count: 5,
            ..Default::default()
        };
        let c = Percentiles {
            p50: 2.0,
            count: 5,
            ..Default::default()
        };
        let m = Percentiles::median_of(&[a, b, c]);
        assert_eq!(m.p50, 2.0);
        assert_eq!(m.count, 15);
    }
}
