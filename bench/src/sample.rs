//! One measurement's figures ([`Sample`]), merging the blocks of a row, and
//! the ratios of a ringbus figure to the floor measured next to it.

use hdrhistogram::Histogram;

use super::params::{Params, SideResult};
use super::scenario::Metric;
use super::stats::{median, new_hist, Percentiles};

/// The figures of one scenario in one run.
#[derive(Clone, Debug)]
pub struct Sample {
    /// RTT (ping-pong) or latency (streaming) samples in ns, merged over
    /// subscribers.
    pub hist: Option<Histogram<u64>>,
    /// Messages per second of the slowest subscriber (throughput runs).
    pub msgs_per_s: Option<f64>,
    /// Messages received in the measured part, over all subscribers.
    pub received: u64,
    /// Messages lost (overwrite mode).
    pub lost: u64,
    /// Flat-out streams: how far behind its publisher the furthest-behind
    /// subscriber was on average, in messages (see [`SideResult::behind`]).
    pub behind: Option<f64>,
    /// ringbus rows: this sample divided by its floor, measured just before
    /// it on the same cores — `(p50 or msgs/s ratio, p99.9 ratio)`.
    pub paired: Option<(f64, Option<f64>)>,
    /// Rows with a [`Scenario::base`]: the same ratios to that baseline,
    /// measured right after each block (spin and adaptive ping-pongs: the
    /// seqlock copy; flat-out streams: the copy ring with a read-only reader).
    ///
    /// [`Scenario::base`]: super::scenario::Scenario::base
    pub vs_base: Option<(f64, Option<f64>)>,
    /// How far apart the values the samples' clock reads are, in ns
    /// ([`super::clock::Ticks::resolution_ns`]; `CLOCK_MONOTONIC` reads the
    /// same counter): percentiles interpolate within it.
    pub resolution: f64,
}

impl Sample {
    /// This sample and `other` (a later block of the same row) as one:
    /// histograms added, counts summed; the rate (the median of the
    /// blocks') and the pairing are left to the caller.
    pub fn merge(mut self, other: Sample) -> Sample {
        match (&mut self.hist, other.hist) {
            (Some(h), Some(o)) => {
                // Same bounds (`new_hist`): adding cannot fail.
                let _ = h.add(&o);
            }
            (h @ None, o) => *h = o,
            (Some(_), None) => {}
        }
        // Weighted by the messages each block received.
        self.behind = match (self.behind, other.behind) {
            (Some(a), Some(b)) => {
                let (ra, rb) = (self.received as f64, other.received as f64);
                Some((a * ra + b * rb) / (ra + rb).max(1.0))
            }
            (a, b) => a.or(b),
        };
        self.received += other.received;
        self.lost += other.lost;
        self.paired = None;
        self.vs_base = None;
        self.resolution = self.resolution.max(other.resolution);
        self
    }

    /// The figures a ratio is taken of: `(p50, p99.9)` of a latency, or
    /// `(msgs/s, None)`.
    fn figures(&self) -> Option<(f64, Option<f64>)> {
        if let Some(h) = &self.hist {
            let p = Percentiles::of(h, 1.0, self.resolution);
            return Some((p.p50, Some(p.p99_9)));
        }
        self.msgs_per_s.map(|m| (m, None))
    }

    /// Records this sample's ratio to `floor`, measured just before it.
    /// Ping-pong RTTs and one-way times give the same ratio; a ping-pong
    /// floor for a streaming latency row is halved to one-way.
    pub fn pair_with(&mut self, floor: &Sample, floor_is_rtt: bool, self_is_rtt: bool) {
        self.paired = self.ratio_to(floor, floor_is_rtt, self_is_rtt);
    }

    /// This sample's `(p50 or msgs/s, p99.9)` divided by `floor`'s (see
    /// [`Sample::pair_with`]).
    pub fn ratio_to(
        &self,
        floor: &Sample,
        floor_is_rtt: bool,
        self_is_rtt: bool,
    ) -> Option<(f64, Option<f64>)> {
        let (Some((a, a999)), Some((b, b999))) = (self.figures(), floor.figures()) else {
            return None;
        };
        let scale = match (self_is_rtt, floor_is_rtt) {
            (false, true) => 0.5,
            (true, false) => 2.0,
            _ => 1.0,
        };
        let ratio = |x: f64, f: f64| x / (f * scale).max(f64::MIN_POSITIVE);
        Some((ratio(a, b), a999.zip(b999).map(|(x, f)| ratio(x, f))))
    }
}

/// Counts of a floor measured just before a ringbus row, for its ratio:
/// a fifth of the full count (at least 2000), enough for p50 and p99.9.
pub fn pair_params(floor: &Params) -> Params {
    Params {
        iters: (floor.iters / 5).max(2_000).min(floor.iters),
        ..*floor
    }
}

impl Sample {
    /// The sample of a streaming measurement from its children's results
    /// (one per subscriber); `metric` says which figure it carries.
    pub fn from_sides(results: &[SideResult], metric: Metric) -> Sample {
        let mut hist = None;
        if metric == Metric::Latency {
            let mut h = new_hist();
            for r in results {
                // Both come from `new_hist`, so the bounds always agree.
                let _ = h.add(r.hist());
            }
            hist = Some(h);
        }
        // Fan-out: every subscriber receives every message, so the run's rate
        // is its slowest subscriber's.
        let msgs_per_s = (metric == Metric::Throughput).then(|| {
            results
                .iter()
                .map(|r| r.received as f64 * 1e9 / r.elapsed_ns.max(1) as f64)
                .fold(f64::INFINITY, f64::min)
        });
        Sample {
            hist,
            msgs_per_s,
            received: results.iter().map(|r| r.received).sum(),
            lost: results.iter().map(|r| r.lost).sum(),
            behind: results.iter().filter_map(|r| r.behind).reduce(f64::max),
            paired: None,
            vs_base: None,
            resolution: 1.0,
        }
    }
}

/// The medians of `(p50, p99.9)` ratio pairs; `None` if there are none.
pub fn median_pair(pairs: &[(f64, Option<f64>)]) -> Option<(f64, Option<f64>)> {
    let p999: Vec<f64> = pairs.iter().filter_map(|r| r.1).collect();
    (!pairs.is_empty()).then(|| {
        (
            median(pairs.iter().map(|r| r.0).collect()),
            (!p999.is_empty()).then(|| median(p999)),
        )
    })
}
