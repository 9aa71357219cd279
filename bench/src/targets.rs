//! The targets, evaluated on the rows of a run (informational:
//! nothing gates on them).

use serde::Serialize;

use super::row::Row;
use super::scenario::{Scenario, FILTER_KEEPS_ONE_IN, MANY_RINGS};
use ringbus::ring::Mode;
use ringbus::wait::WaitStrategy;

/// The figure a target bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Figure {
    /// Median one-way latency.
    P50,
    /// 99.9th percentile of the one-way latency.
    #[serde(rename = "p99.9")]
    P99_9,
    /// Messages per second, flat out.
    MsgsPerS,
}

/// One of the targets, evaluated (informational: nothing gates on
/// it).
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// What is compared.
    pub what: String,
    /// The ringbus row the target is about.
    pub row: Scenario,
    /// What that row is compared with: a floor, or another ringbus row.
    pub against: Scenario,
    /// Which of the row's figures.
    pub figure: Figure,
    /// Measured ratio.
    pub ratio: f64,
    /// Bound.
    pub bound: f64,
    /// The bound is an upper one (`ratio <= bound`); else a lower one
    /// (`ratio >= bound`, throughput).
    pub at_most: bool,
    /// Whether `ratio` is within `bound`.
    pub met: bool,
}

/// The targets that `rows` allow evaluating, for each mode that
/// ran: ping-pongs at 64 B (and their p50 at 8 B and 1 KiB); flat-out
/// streams at 8 B, 64 B and 1 KiB.
pub fn targets(rows: &[Row]) -> Vec<Target> {
    let find = |sc: Scenario| rows.iter().find(|r| r.scenario == sc);
    let lat = |sc: Scenario| find(sc).and_then(|r| r.latency);
    let mut out = Vec::new();
    let mut push = |what: String,
                    (row, against, figure): (Scenario, Scenario, Figure),
                    ratio: f64,
                    bound: f64,
                    at_most: bool| {
        out.push(Target {
            met: if at_most {
                ratio <= bound
            } else {
                ratio >= bound
            },
            what,
            row,
            against,
            figure,
            ratio,
            bound,
            at_most,
        });
    };
    let size = 64;
    for mode in [Mode::Overwrite, Mode::Backpressure] {
        let m = mode.name();
        let pp = |wait| Scenario::RingPingPong { size, wait, mode };
        let spin = pp(WaitStrategy::Spin);
        if let Some(r) = find(spin) {
            // The floor (a stamp and the 64-byte payload), then the
            // bare cache line (a sequence word only), the stricter one.
            let floors = [
                (
                    "seqlock floor",
                    Scenario::SeqlockPingPong { size },
                    r.ratio_seqlock,
                    r.ratio_seqlock_p99_9,
                ),
                (
                    "cache-line floor (stricter)",
                    Scenario::LinePingPong,
                    r.ratio,
                    r.ratio_p99_9,
                ),
            ];
            for (floor, against, p50, p999) in floors {
                if let Some(x) = p50 {
                    push(
                        format!("spin {m} 64 B ping-pong p50 / {floor}"),
                        (spin, against, Figure::P50),
                        x,
                        1.15,
                        true,
                    );
                }
                if let Some(x) = p999 {
                    push(
                        format!("spin {m} 64 B ping-pong p99.9 / {floor}"),
                        (spin, against, Figure::P99_9),
                        x,
                        1.5,
                        true,
                    );
                }
            }
        }
        // The other sizes against the seqlock copy of their own size.
        for size in PING_PONG_SIZES {
            let spin = Scenario::RingPingPong {
                size,
                wait: WaitStrategy::Spin,
                mode,
            };
            if let Some(x) = find(spin).and_then(|r| r.ratio_seqlock) {
                push(
                    format!("spin {m} {size} B ping-pong p50 / seqlock floor"),
                    (spin, Scenario::SeqlockPingPong { size }, Figure::P50),
                    x,
                    1.15,
                    true,
                );
            }
        }
        let block = pp(WaitStrategy::Block);
        if let Some(x) = find(block).and_then(|r| r.ratio) {
            push(
                format!("block {m} 64 B ping-pong p50 / raw futex p50"),
                (block, Scenario::FutexPingPong, Figure::P50),
                x,
                1.15,
                true,
            );
        }
        let many = Scenario::ManyRingsPingPong { size, mode };
        if let Some(x) = find(many).and_then(|r| r.ratio) {
            push(
                format!(
                    "block {m} 64 B ping-pong, subscriber on {MANY_RINGS} rings (one active) p50 / raw futex p50"
                ),
                (many, Scenario::FutexPingPong, Figure::P50),
                x,
                1.15,
                true,
            );
        }
        let adaptive = pp(WaitStrategy::default());
        if let (Some(a), Some(s)) = (lat(adaptive), lat(spin)) {
            push(
                format!("adaptive {m} 64 B ping-pong p50 / spin p50"),
                (adaptive, spin, Figure::P50),
                a.p50 / s.p50,
                1.2,
                true,
            );
        }
    }
    // Streaming against the fixed-size copy ring. The bounds are lower
    // for smaller messages, where a ring slot's header and its rounding to
    // whole cache lines weigh most against a floor that moves only the
    // payload (`Row::bytes_per_msg`).
    for (size, bound) in STREAMING_AT_LEAST {
        for mode in [Mode::Overwrite, Mode::Backpressure] {
            let stream = Scenario::RingThroughput {
                size,
                wait: WaitStrategy::Spin,
                mode,
                subscribers: 1,
            };
            let (Some(x), Some(floor)) = (find(stream).and_then(|r| r.ratio), stream.floor())
            else {
                continue;
            };
            let name = floor.label();
            let name = name.strip_prefix("floor: ").unwrap_or(&name);
            push(
                format!(
                    "spin {} {size} B streaming msgs/s / {name} (at least)",
                    mode.name()
                ),
                (stream, floor, Figure::MsgsPerS),
                x,
                bound,
                false,
            );
        }
    }
    // Routing: a pattern and a tag filter against the same row through an
    // exact topic, measured alternately with it.
    for mode in [Mode::Overwrite, Mode::Backpressure] {
        let m = mode.name();
        let routed = [
            (
                Scenario::PatternPingPong { size: 64, mode },
                format!("pattern spin {m} 64 B ping-pong p50 / exact topic's"),
                Figure::P50,
                PATTERN_AT_MOST,
                true,
            ),
            (
                Scenario::FilteredThroughput { size: 64, mode },
                format!(
                    "tag filter 1/{FILTER_KEEPS_ONE_IN} spin {m} 64 B msgs/s (all got through) / unfiltered (at least)"
                ),
                Figure::MsgsPerS,
                FILTERED_AT_LEAST,
                false,
            ),
        ];
        for (row, what, figure, bound, at_most) in routed {
            if let (Some(x), Some(exact)) = (find(row).and_then(|r| r.ratio), row.unrouted()) {
                push(what, (row, exact, figure), x, bound, at_most);
            }
        }
    }
    out
}

/// The bound on a pattern subscription's ping-pong p50 over the
/// exact topic's.
pub const PATTERN_AT_MOST: f64 = 1.05;

/// The bound on a filtering subscriber's rate (delivered and
/// filtered) over an unfiltered one's.
pub const FILTERED_AT_LEAST: f64 = 1.0;

/// Spin ping-pong sizes, besides 64 B, held to the seqlock copy's p50.
const PING_PONG_SIZES: [usize; 2] = [8, 1024];

/// The lower bounds on a spin stream's msgs/s over the fixed-size
/// copy ring's, by message size.
const STREAMING_AT_LEAST: [(usize, f64); 3] = [(8, 0.5), (64, 0.65), (1024, 0.85)];
