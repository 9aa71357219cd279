//! One row of the report: a scenario's samples over all runs aggregated
//! (medians across runs, merged histograms, the paired ratios).

use hdrhistogram::Histogram;
use serde::Serialize;

use super::measure::bytes_per_msg;
use super::params::Params;
use super::sample::{median_pair, Sample};
use super::scenario::{Metric, Scenario};
use super::stats::{median, new_hist, Percentiles};

/// One scenario's figures over all runs.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Human name.
    pub name: String,
    /// Identifier (also the `.hgrm` file name).
    pub id: String,
    /// What ran.
    pub scenario: Scenario,
    /// Kind of figure.
    pub metric: Metric,
    /// Message size, if any.
    pub size: Option<usize>,
    /// Counts used.
    pub params: Params,
    /// Runs aggregated.
    pub runs: usize,
    /// Ping-pong: round-trip percentiles (medians across runs), ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rtt: Option<Percentiles>,
    /// Ping-pong: one-way = RTT / 2; streaming latency runs: publish to
    /// receipt. Medians across runs, ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Percentiles>,
    /// Throughput runs: messages per second (median across runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgs_per_s: Option<f64>,
    /// Throughput runs: payload bytes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_s: Option<f64>,
    /// Streaming rows: bytes each message moves from the publisher's core
    /// to a subscriber's (a ringbus slot: its 32-byte header and the
    /// payload in whole cache lines; a copy ring's slot), so the physical
    /// bound of a ratio between two streams is visible.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_msg: Option<u64>,
    /// Flat-out streams: how many messages behind its publisher the
    /// subscriber ran on average (a few: at its heels, each message read as
    /// it is written; about the capacity: a ring behind, the ring full),
    /// the median over runs. A stream settles in one of those two states,
    /// and which one decides its rate more than anything else (DESIGN.md,
    /// "Where the streaming nanoseconds go").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub behind: Option<f64>,
    /// Measured messages received, all runs.
    pub received: u64,
    /// Messages lost (overwrite mode), all runs.
    pub lost: u64,
    /// Name of the row this row is compared with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub floor: Option<String>,
    /// This row's p50 (or messages/s) divided by its floor's: for ringbus
    /// rows the median over runs of the ratio to the floor measured next to
    /// it (the median over blocks alternating with the floor, but for a
    /// blocking stream's latency),
    /// else the ratio of the medians.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    /// This row's p99.9 divided by the floor's (latency rows).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_p99_9: Option<f64>,
    /// Spin and adaptive ping-pong rows: p50 and p99.9 divided by the
    /// seqlock ping-pong's of the same size, measured beside it (see
    /// [`Scenario::base`]); medians as for `ratio`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_seqlock: Option<f64>,
    /// The p99.9 of `ratio_seqlock`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_seqlock_p99_9: Option<f64>,
    /// Flat-out ringbus streams: msgs/s divided by the fixed-size copy
    /// ring's with a read-only reader, measured beside it (see
    /// [`Scenario::base`]); medians as for `ratio`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_read_only_ring: Option<f64>,
    /// Each run's own figures, in run order (to see the spread behind a
    /// median).
    pub per_run: Vec<RunFigures>,
    /// All runs' samples merged (one-way or latency ns), for `.hgrm` and
    /// the plot.
    #[serde(skip)]
    pub merged: Option<Histogram<u64>>,
    /// Divisor from the recorded values to `latency` (2 for ping-pong).
    #[serde(skip)]
    pub div: f64,
}

impl Row {
    /// Aggregates `samples` (one per run).
    pub fn new(scenario: Scenario, params: Params, samples: &[Sample]) -> Row {
        let metric = scenario.metric();
        let div = if metric == Metric::PingPong { 2.0 } else { 1.0 };
        let hists: Vec<&Histogram<u64>> = samples.iter().filter_map(|s| s.hist.as_ref()).collect();
        let (rtt, latency, merged) = if hists.is_empty() {
            (None, None, None)
        } else {
            let of = |div: f64| -> Vec<Percentiles> {
                samples
                    .iter()
                    .filter_map(|s| {
                        s.hist
                            .as_ref()
                            .map(|h| Percentiles::of(h, div, s.resolution))
                    })
                    .collect()
            };
            let raw = Percentiles::median_of(&of(1.0));
            let per_run_div = of(div);
            let lat = Percentiles::median_of(&per_run_div);
            let mut m = new_hist();
            for h in &hists {
                let _ = m.add(*h);
            }
            (
                (metric == Metric::PingPong).then_some(raw),
                Some(lat),
                Some(m),
            )
        };
        let rates: Vec<f64> = samples.iter().filter_map(|s| s.msgs_per_s).collect();
        let msgs_per_s = (!rates.is_empty()).then(|| median(rates));
        let medians = |pairs: Vec<(f64, Option<f64>)>| match median_pair(&pairs) {
            Some((p50, p999)) => (Some(p50), p999),
            None => (None, None),
        };
        let (ratio, ratio_p99_9) = medians(samples.iter().filter_map(|s| s.paired).collect());
        let vs_base = medians(samples.iter().filter_map(|s| s.vs_base).collect());
        let (ratio_seqlock, ratio_seqlock_p99_9) = match scenario.base() {
            Some(Scenario::SeqlockPingPong { .. }) => vs_base,
            _ => (None, None),
        };
        let ratio_read_only_ring = match scenario.base() {
            Some(Scenario::ReadOnlyRingThroughput { .. }) => vs_base.0,
            _ => None,
        };
        let per_run = samples
            .iter()
            .map(|s| {
                let p = s
                    .hist
                    .as_ref()
                    .map(|h| Percentiles::of(h, div, s.resolution));
                RunFigures {
                    p50: p.map(|p| p.p50),
                    p99_9: p.map(|p| p.p99_9),
                    msgs_per_s: s.msgs_per_s,
                    ratio: s.paired.map(|r| r.0),
                }
            })
            .collect();
        Row {
            per_run,
            name: scenario.label(),
            id: scenario.slug(),
            scenario,
            metric,
            size: scenario.size(),
            params,
            runs: samples.len(),
            rtt,
            latency,
            msgs_per_s,
            bytes_per_s: msgs_per_s.map(|m| m * params.size as f64),
            bytes_per_msg: bytes_per_msg(scenario, &params),
            behind: {
                let b: Vec<f64> = samples.iter().filter_map(|s| s.behind).collect();
                (!b.is_empty()).then(|| median(b))
            },
            received: samples.iter().map(|s| s.received).sum(),
            lost: samples.iter().map(|s| s.lost).sum(),
            floor: None,
            ratio,
            ratio_p99_9,
            ratio_seqlock,
            ratio_seqlock_p99_9,
            ratio_read_only_ring,
            merged,
            div,
        }
    }
}

/// One run's figures of one row.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct RunFigures {
    /// p50 (one-way for ping-pong), ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50: Option<f64>,
    /// p99.9 (one-way for ping-pong), ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_9: Option<f64>,
    /// Messages per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub msgs_per_s: Option<f64>,
    /// Ratio to the floor measured next to it (see [`Row::ratio`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
}
