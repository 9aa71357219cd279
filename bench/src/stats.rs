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
    /// one-way). `resolution` is how far apart, in ns, the values the
    /// clock could produce are ([`super::clock::Ticks::resolution_ns`]):
    /// percentiles are interpolated, each recorded value standing for
    /// samples spread evenly over one resolution step around it (or over
    /// its histogram bucket, if wider). On a clock that reads in 10 ns
    /// steps a plain median jumps between 100 and 110 ns; the interpolated
    /// one says where between them half the samples lie. The maximum and
    /// the mean are not interpolated.
    pub fn of(h: &Histogram<u64>, div: f64, resolution: f64) -> Percentiles {
        let spread = Spread::of(h, resolution);
        let q = |x: f64| spread.quantile(x) / div;
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

/// A histogram's samples as a piecewise-uniform distribution: each
/// recorded value's count spread evenly over `[lo, hi)`.
struct Spread {
    /// `(lo, hi, count)`, by value.
    parts: Vec<(f64, f64, f64)>,
    total: f64,
}

impl Spread {
    fn of(h: &Histogram<u64>, resolution: f64) -> Spread {
        let parts: Vec<(f64, f64, f64)> = h
            .iter_recorded()
            .map(|v| {
                let at = v.value_iterated_to();
                let (lo, hi) = (h.lowest_equivalent(at), h.highest_equivalent(at));
                let mid = (lo as f64 + hi as f64) / 2.0;
                let half = resolution.max((hi - lo + 1) as f64) / 2.0;
                (mid - half, mid + half, v.count_at_value() as f64)
            })
            .collect();
        let total = parts.iter().map(|p| p.2).sum();
        Spread { parts, total }
    }

    /// How many samples lie below `x`.
    fn below(&self, x: f64) -> f64 {
        self.parts
            .iter()
            .map(|&(lo, hi, n)| n * ((x - lo) / (hi - lo)).clamp(0.0, 1.0))
            .sum()
    }

    /// The value below which a fraction `q` of the samples lie; 0 if empty.
    fn quantile(&self, q: f64) -> f64 {
        let (Some(first), Some(last)) = (self.parts.first(), self.parts.last()) else {
            return 0.0;
        };
        let want = q.clamp(0.0, 1.0) * self.total;
        // `below` is continuous and non-decreasing: bisect (to well under
        // 0.01 ns for any value a histogram holds).
        let (mut lo, mut hi) = (first.0, last.1);
        for _ in 0..64 {
            let mid = (lo + hi) / 2.0;
            if self.below(mid) < want {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        (lo + hi) / 2.0
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
        let p = Percentiles::of(&h, 1.0, 1.0);
        assert_eq!(p.count, 10_000);
        assert!((p.p50 - 5_000.0).abs() <= 5.0, "{}", p.p50);
        assert!((p.p99 - 9_900.0).abs() <= 10.0, "{}", p.p99);
        assert!((p.max - 10_000.0).abs() <= 10.0);
        let half = Percentiles::of(&h, 2.0, 1.0);
        assert!((half.p50 - 2_500.0).abs() <= 3.0);
    }

    #[test]
    fn percentiles_interpolate_within_the_clock_step() {
        // A clock with 10 ns steps: true round trips of ~103 ns read as 100
        // (60 %) or 110 (40 %).
        let mut h = new_hist();
        h.record_n(100, 600).unwrap();
        h.record_n(110, 400).unwrap();
        let p = Percentiles::of(&h, 1.0, 10.0);
        // Half the samples lie below 95 + 10 * 500 / 600.
        assert!(
            (p.p50 - (95.0 + 10.0 * 500.0 / 600.0)).abs() < 0.01,
            "{}",
            p.p50
        );
        assert!(
            (p.p90 - (105.0 + 10.0 * 300.0 / 400.0)).abs() < 0.01,
            "{}",
            p.p90
        );
        assert_eq!(p.max, 110.0);
        // Without the step, the median is a recorded value.
        assert!((Percentiles::of(&h, 1.0, 1.0).p50 - 100.33).abs() < 0.01);
        // Halved for one-way.
        assert!((Percentiles::of(&h, 2.0, 10.0).p50 - p.p50 / 2.0).abs() < 0.01);
        assert_eq!(Percentiles::of(&new_hist(), 1.0, 10.0).p50, 0.0);
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
