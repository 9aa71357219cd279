//! The first thing `ringbus bench` prints: one table at one message size
//! (64 B when measured), one line per wait strategy, with the ping-pong's
//! one-way p50 and the stream's rate in both modes, each beside the floor
//! it is paired with, the ratio, and the bound with its verdict;
//! and the Unix socket's ping-pong for scale. Built from the rows and the
//! evaluated targets, so it never disagrees with the matrix below it.

use std::fmt::Write as _;

use serde::Serialize;

use super::args::Plan;
use super::row::Row;
use super::scenario::{Scenario, FILTER_KEEPS_ONE_IN, MANY_RINGS};
use super::targets::{Figure, Target};
use super::units::{ns, si};
use ringbus::ring::Mode;
use ringbus::wait::WaitStrategy;

/// The size the summary is taken at when it was measured: the issue's
/// targets are set at 64 bytes.
const SUMMARY_SIZE: usize = 64;

/// Width of a target cell: `≤1.15 MISSED bp`.
const TARGET_W: usize = 15;

/// A figure in each ring mode (`None`: that mode did not run).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PerMode<T> {
    /// Overwrite mode.
    pub overwrite: Option<T>,
    /// Back-pressure mode.
    pub backpressure: Option<T>,
}

impl<T: Copy> PerMode<T> {
    fn of(mut f: impl FnMut(Mode) -> Option<T>) -> PerMode<T> {
        PerMode {
            overwrite: f(Mode::Overwrite),
            backpressure: f(Mode::Backpressure),
        }
    }

    fn both(&self) -> [Option<T>; 2] {
        [self.overwrite, self.backpressure]
    }
}

/// A bound on a ratio, from the targets.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Bound {
    /// The bound.
    pub value: f64,
    /// An upper bound (latency); else a lower one (throughput).
    pub at_most: bool,
}

/// A ringbus figure compared with one reference (a floor, or for the
/// adaptive wait the spin wait's figure).
#[derive(Clone, Debug, Serialize)]
pub struct Reference {
    /// The reference's name, as in the matrix.
    pub name: String,
    /// The reference's own figure (its row's median); `None` where the
    /// reference is another summary line's figure.
    pub value: Option<f64>,
    /// ringbus / reference in each mode (paired ratios: measured next to
    /// each other).
    pub ratio: PerMode<f64>,
    /// The bound on that ratio, if it sets one.
    pub bound: Option<Bound>,
    /// Whether each mode's ratio is within `bound`.
    pub met: PerMode<bool>,
}

/// One ringbus figure of a summary line: its value in each mode and what
/// it is compared with.
#[derive(Clone, Debug, Serialize)]
pub struct Compared {
    /// ns (ping-pong one-way p50) or msgs/s (streaming).
    pub ringbus: PerMode<f64>,
    /// The references it is compared with: for a spin or adaptive
    /// ping-pong the seqlock copy and the cache line; for a stream the
    /// fixed-size copy ring (its floor) and the same ring with a read-only
    /// reader.
    pub against: Vec<Reference>,
}

/// One wait strategy's line.
#[derive(Clone, Debug, Serialize)]
pub struct Line {
    /// The receiving side's wait strategy (by name in the JSON:
    /// `adaptive`, not its spin budget).
    #[serde(serialize_with = "wait_name")]
    pub wait: WaitStrategy,
    /// Ping-pong, one-way p50 in ns.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_pong_p50: Option<Compared>,
    /// Streaming flat out to one subscriber, msgs/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streaming_msgs_per_s: Option<Compared>,
}

/// The summary table.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// Message size of every figure in it, bytes.
    pub size: usize,
    /// One line per wait strategy measured (spin, adaptive, block).
    pub lines: Vec<Line>,
    /// The Unix socket ping-pong's one-way p50, ns: the kernel's way, for
    /// scale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unix_socket_p50: Option<f64>,
    /// Patterns and filters, each beside the same figure through an exact
    /// topic (spin wait).
    pub routed: Vec<RoutedLine>,
    /// The block ping-pong whose subscriber holds [`MANY_RINGS`] rings
    /// (one publisher active), beside the raw futex ping-pong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub many_rings: Option<RoutedLine>,
}

/// A routed figure (a pattern subscription, a tag filter) beside the same
/// figure through an exact topic.
#[derive(Clone, Debug, Serialize)]
pub struct RoutedLine {
    /// What it is: `pattern: ping-pong p50`, `tag filter: msgs/s`.
    pub what: String,
    /// ns (a ping-pong's one-way p50), else msgs/s.
    pub ping_pong: bool,
    /// The figures and the ratio to the exact topic's.
    pub figure: Compared,
}

impl Summary {
    /// The summary of `rows` (with `targets` evaluated on them): at 64 B
    /// if measured, else at the first size of `plan`.
    pub fn of(plan: &Plan, rows: &[Row], targets: &[Target]) -> Summary {
        let size = if plan.sizes.contains(&SUMMARY_SIZE) {
            SUMMARY_SIZE
        } else {
            plan.sizes.first().copied().unwrap_or(SUMMARY_SIZE)
        };
        let find = |sc: Scenario| rows.iter().find(|r| r.scenario == sc);
        let p50 = |sc: Scenario| find(sc).and_then(|r| r.latency).map(|l| l.p50);
        let rate = |sc: Scenario| find(sc).and_then(|r| r.msgs_per_s);
        // The bound and verdicts of the targets on `row(mode)` against
        // `against(mode)`.
        let judged =
            |row: &dyn Fn(Mode) -> Scenario, against: &dyn Fn(Mode) -> Scenario, figure: Figure| {
                let target = |mode| {
                    targets.iter().find(|t| {
                        t.row == row(mode) && t.against == against(mode) && t.figure == figure
                    })
                };
                let bound = [Mode::Overwrite, Mode::Backpressure]
                    .into_iter()
                    .find_map(target)
                    .map(|t| Bound {
                        value: t.bound,
                        at_most: t.at_most,
                    });
                (bound, PerMode::of(|m| target(m).map(|t| t.met)))
            };

        let waits = [
            WaitStrategy::Spin,
            WaitStrategy::default(),
            WaitStrategy::Block,
        ];
        let mut lines = Vec::new();
        for wait in waits.into_iter().filter(|w| plan.waits.contains(w)) {
            let pp = |mode| Scenario::RingPingPong { size, wait, mode };
            let ping_pong_p50 = has_any(&pp, &find).then(|| {
                let mut against = Vec::new();
                if let Some(seqlock) = pp(Mode::Overwrite).base() {
                    let (bound, met) = judged(&pp, &|_| seqlock, Figure::P50);
                    against.push(Reference {
                        name: seqlock.label(),
                        value: p50(seqlock),
                        ratio: PerMode::of(|m| find(pp(m)).and_then(|r| r.ratio_seqlock)),
                        bound,
                        met,
                    });
                }
                if let Some(floor) = pp(Mode::Overwrite).floor() {
                    let (bound, met) = judged(&pp, &|_| floor, Figure::P50);
                    against.push(Reference {
                        name: floor.label(),
                        value: p50(floor),
                        ratio: PerMode::of(|m| find(pp(m)).and_then(|r| r.ratio)),
                        bound,
                        met,
                    });
                }
                if wait != WaitStrategy::Spin && wait != WaitStrategy::Block {
                    // The issue bounds the adaptive wait by the spin wait.
                    let spin = |mode| Scenario::RingPingPong {
                        size,
                        wait: WaitStrategy::Spin,
                        mode,
                    };
                    let ratio = |m| Some(p50(pp(m))? / p50(spin(m))?.max(f64::MIN_POSITIVE));
                    if has_any(&spin, &find) {
                        let (bound, met) = judged(&pp, &spin, Figure::P50);
                        against.push(Reference {
                            name: format!("ringbus {}", WaitStrategy::Spin.name()),
                            value: None,
                            ratio: PerMode::of(ratio),
                            bound,
                            met,
                        });
                    }
                }
                Compared {
                    ringbus: PerMode::of(|m| p50(pp(m))),
                    against,
                }
            });
            let stream = |mode| Scenario::RingThroughput {
                size,
                wait,
                mode,
                subscribers: 1,
            };
            let streaming_msgs_per_s = has_any(&stream, &find).then(|| {
                let mut against = Vec::new();
                if let Some(floor) = stream(Mode::Overwrite).floor() {
                    let (bound, met) = judged(&stream, &|_| floor, Figure::MsgsPerS);
                    against.push(Reference {
                        name: floor.label(),
                        value: rate(floor),
                        ratio: PerMode::of(|m| find(stream(m)).and_then(|r| r.ratio)),
                        bound,
                        met,
                    });
                }
                if let Some(base) = stream(Mode::Overwrite).base() {
                    against.push(Reference {
                        name: base.label(),
                        value: rate(base),
                        ratio: PerMode::of(|m| {
                            find(stream(m)).and_then(|r| r.ratio_read_only_ring)
                        }),
                        bound: None,
                        met: PerMode::default(),
                    });
                }
                Compared {
                    ringbus: PerMode::of(|m| rate(stream(m))),
                    against,
                }
            });
            if ping_pong_p50.is_some() || streaming_msgs_per_s.is_some() {
                lines.push(Line {
                    wait,
                    ping_pong_p50,
                    streaming_msgs_per_s,
                });
            }
        }
        let mut routed = Vec::new();
        let pattern = |mode| Scenario::PatternPingPong { size, mode };
        let filtered = |mode| Scenario::FilteredThroughput { size, mode };
        let routes: [(&RowOf<'_>, String, Figure); 2] = [
            (&pattern, "pattern: ping-pong p50".into(), Figure::P50),
            (
                &filtered,
                format!("tag filter 1/{FILTER_KEEPS_ONE_IN}: msgs/s"),
                Figure::MsgsPerS,
            ),
        ];
        for (row, what, figure) in routes {
            if !has_any(row, &find) {
                continue;
            }
            let exact = |mode| row(mode).unrouted().expect("a routed scenario");
            let (bound, met) = judged(row, &exact, figure);
            let ping_pong = figure == Figure::P50;
            routed.push(RoutedLine {
                what,
                ping_pong,
                figure: Compared {
                    ringbus: PerMode::of(|m| if ping_pong { p50(row(m)) } else { rate(row(m)) }),
                    against: vec![Reference {
                        name: "exact topic".into(),
                        value: None,
                        ratio: PerMode::of(|m| find(row(m)).and_then(|r| r.ratio)),
                        bound,
                        met,
                    }],
                },
            });
        }
        let many = |mode| Scenario::ManyRingsPingPong { size, mode };
        let many_rings = has_any(&many, &find).then(|| {
            let futex = Scenario::FutexPingPong;
            let (bound, met) = judged(&many, &|_| futex, Figure::P50);
            RoutedLine {
                what: format!(
                    "block, subscriber on {MANY_RINGS} rings (one active): ping-pong p50"
                ),
                ping_pong: true,
                figure: Compared {
                    ringbus: PerMode::of(|m| p50(many(m))),
                    against: vec![Reference {
                        name: futex.label(),
                        value: p50(futex),
                        ratio: PerMode::of(|m| find(many(m)).and_then(|r| r.ratio)),
                        bound,
                        met,
                    }],
                },
            }
        });
        Summary {
            size,
            lines,
            unix_socket_p50: p50(Scenario::UnixPingPong { size }),
            routed,
            many_rings,
        }
    }

    /// Writes the summary as a table to `s`. `smoke`: the figures mean
    /// nothing, which the title says.
    pub fn render(&self, s: &mut String, smoke: bool) {
        let _ = writeln!(
            s,
            "Summary at {} B: ringbus beside its floor (the full matrix follows){}",
            self.size,
            if smoke {
                " — smoke mode, the figures mean nothing"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "  ping-pong: one-way p50 (RTT / 2); streaming: msgs/s flat out, one subscriber; \
             ow: overwrite, bp: back-pressure"
        );
        let _ = writeln!(
            s,
            "  ×: ringbus / floor, the two measured alternately on the same cores; target: the \
             issue's bound on ×"
        );
        if self.lines.is_empty() {
            let _ = writeln!(
                s,
                "  (no ringbus ping-pong or streaming at {} B)",
                self.size
            );
        }
        // Each reference column as wide as its longest name.
        let width = |c: fn(&Line) -> Option<&Compared>| {
            self.lines
                .iter()
                .filter_map(c)
                .flat_map(|c| &c.against)
                .map(|r| short_name(r).chars().count())
                .fold("vs".len(), usize::max)
        };
        let pp_w = width(|l| l.ping_pong_p50.as_ref());
        let st_w = width(|l| l.streaming_msgs_per_s.as_ref());
        let pp_head = format!(
            "{:>8} {:>8}  {:<pp_w$} {:>8} {:>5} {:>5}  {:<TARGET_W$}",
            "ow", "bp", "vs", "its p50", "×ow", "×bp", "target"
        );
        let st_head = format!(
            "{:>8} {:>8}  {:<st_w$} {:>8} {:>5} {:>5}  target",
            "ow", "bp", "vs", "msgs/s", "×ow", "×bp"
        );
        let pp_width = pp_head.chars().count();
        let _ = writeln!(
            s,
            "  {:<9} {:<pp_width$} │ streaming msgs/s",
            "", "ping-pong one-way p50"
        );
        let _ = writeln!(s, "  {:<9} {pp_head} │ {st_head}", "wait");
        for line in &self.lines {
            let pp = line.ping_pong_p50.as_ref();
            let st = line.streaming_msgs_per_s.as_ref();
            let depth = pp
                .map_or(0, |c| c.against.len())
                .max(st.map_or(0, |c| c.against.len()))
                .max(1);
            for k in 0..depth {
                let (wait, pp_values, st_values) = if k == 0 {
                    (
                        line.wait.name(),
                        pp.map_or_else(blank_values, |c| values(&c.ringbus, ns)),
                        st.map_or_else(blank_values, |c| values(&c.ringbus, si)),
                    )
                } else {
                    ("", blank_values(), blank_values())
                };
                let pp_ref = pp
                    .and_then(|c| c.against.get(k))
                    .map(|r| reference(r, pp_w, ns))
                    .unwrap_or_else(|| blank_reference(pp_w));
                let st_ref = st
                    .and_then(|c| c.against.get(k))
                    .map(|r| reference(r, st_w, si))
                    .unwrap_or_default();
                let line = format!("  {wait:<9} {pp_values}  {pp_ref} │ {st_values}  {st_ref}");
                let _ = writeln!(s, "{}", line.trim_end());
            }
        }
        if !self.routed.is_empty() {
            let _ = writeln!(
                s,
                "  routing (spin): × is routed / the same through an exact topic, measured \
                 alternately"
            );
            let w = self
                .routed
                .iter()
                .map(|r| r.what.chars().count())
                .fold(0, usize::max);
            for r in &self.routed {
                let unit = if r.ping_pong { ns } else { si };
                let vs = r
                    .figure
                    .against
                    .first()
                    .map(|x| reference(x, "exact topic".len(), unit))
                    .unwrap_or_default();
                let line = format!("  {:<w$} {}  {vs}", r.what, values(&r.figure.ringbus, unit));
                let _ = writeln!(s, "{}", line.trim_end());
            }
        }
        if let Some(r) = &self.many_rings {
            let vs = r
                .figure
                .against
                .first()
                .map(|x| reference(x, x.name.chars().count(), ns))
                .unwrap_or_default();
            let line = format!("  {} {}  {vs}", r.what, values(&r.figure.ringbus, ns));
            let _ = writeln!(s, "{}", line.trim_end());
        }
        if let Some(u) = self.unix_socket_p50 {
            let _ = writeln!(
                s,
                "  for scale, the kernel's way: Unix socket (seqpacket) ping-pong one-way p50 {}",
                ns(u)
            );
        }
    }
}

fn wait_name<S: serde::Serializer>(w: &WaitStrategy, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(w.name())
}

/// A row in each mode.
type RowOf<'a> = dyn Fn(Mode) -> Scenario + 'a;

/// Whether any mode of `row` was measured.
fn has_any<'a>(row: &dyn Fn(Mode) -> Scenario, find: &dyn Fn(Scenario) -> Option<&'a Row>) -> bool {
    [Mode::Overwrite, Mode::Backpressure]
        .into_iter()
        .any(|m| find(row(m)).is_some())
}

/// The ringbus figures' cells: ow, bp.
fn values(v: &PerMode<f64>, unit: fn(f64) -> String) -> String {
    let [ow, bp] = v.both().map(|x| x.map(unit).unwrap_or_else(|| "-".into()));
    format!("{ow:>8} {bp:>8}")
}

fn blank_values() -> String {
    format!("{:>8} {:>8}", "", "")
}

/// A reference's cells: name, its figure, the two ratios, the target.
fn reference(r: &Reference, name_width: usize, unit: fn(f64) -> String) -> String {
    let [ow, bp] = r
        .ratio
        .both()
        .map(|x| x.map(|x| format!("{x:.2}")).unwrap_or_else(|| "-".into()));
    let value = r.value.map(unit).unwrap_or_default();
    format!(
        "{:<name_width$} {value:>8} {ow:>5} {bp:>5}  {:<TARGET_W$}",
        short_name(r),
        target(r)
    )
}

fn blank_reference(name_width: usize) -> String {
    format!(
        "{:<name_width$} {:>8} {:>5} {:>5}  {:<TARGET_W$}",
        "", "", "", "", ""
    )
}

/// A reference's name without its `floor: ` / `base: ` prefix (the column
/// says what it is).
fn short_name(r: &Reference) -> &str {
    let name = r.name.strip_prefix("floor: ").unwrap_or(&r.name);
    name.strip_prefix("base: ").unwrap_or(name)
}

/// `≤1.15 met`, `≥0.65 MISSED`, `≤1.15 MISSED bp` (only back-pressure
/// missed), or `-` without a bound.
fn target(r: &Reference) -> String {
    let Some(b) = r.bound else {
        return "-".into();
    };
    let sign = if b.at_most { '≤' } else { '≥' };
    let [ow, bp] = r.met.both();
    let verdict = match (ow, bp) {
        (Some(false), Some(true)) => "MISSED ow",
        (Some(true), Some(false)) => "MISSED bp",
        (Some(false), _) | (_, Some(false)) => "MISSED",
        (Some(true), _) | (_, Some(true)) => "met",
        (None, None) => "-",
    };
    format!("{sign}{:.2} {verdict}", b.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::BenchArgs;
    use crate::params::Params;
    use crate::sample::Sample;
    use crate::targets::targets;

    fn rate(msgs_per_s: f64, paired: Option<f64>) -> Sample {
        Sample {
            hist: None,
            msgs_per_s: Some(msgs_per_s),
            received: 1000,
            lost: 0,
            behind: None,
            paired: paired.map(|r| (r, None)),
            vs_base: None,
            resolution: 1.0,
        }
    }

    /// Only streams ran: the ping-pong half of each line stays blank, and
    /// the columns still line up.
    #[test]
    fn a_missing_half_keeps_the_columns() {
        let plan = Plan::from_args(
            &BenchArgs {
                sizes: Some(vec![64]),
                ..Default::default()
            },
            &[0, 1],
        )
        .unwrap();
        let p = Params {
            size: 64,
            iters: 1000,
            warmup: 10,
            rate: 0,
            capacity: 64,
            duration_ns: None,
            timestamps: false,
            trusted: false,
            mailboxes: false,
        };
        let stream = |wait, mode| Scenario::RingThroughput {
            size: 64,
            wait,
            mode,
            subscribers: 1,
        };
        let rows = vec![
            Row::new(
                Scenario::FixedRingThroughput { size: 64 },
                p,
                &[rate(10e6, None)],
            ),
            Row::new(
                stream(WaitStrategy::Spin, Mode::Overwrite),
                p,
                &[rate(7e6, Some(0.7))],
            ),
            Row::new(
                stream(WaitStrategy::Block, Mode::Backpressure),
                p,
                &[rate(5e6, Some(0.5))],
            ),
        ];
        let summary = Summary::of(&plan, &rows, &targets(&rows));
        let waits: Vec<_> = summary.lines.iter().map(|l| l.wait).collect();
        assert_eq!(waits, [WaitStrategy::Spin, WaitStrategy::Block]);
        assert!(summary.lines[0].ping_pong_p50.is_none());
        let mut s = String::new();
        summary.render(&mut s, false);
        let bars: Vec<usize> = s
            .lines()
            .filter_map(|l| l.chars().position(|c| c == '│'))
            .collect();
        assert_eq!(bars.len(), 6, "{s}");
        assert!(bars.iter().all(|&b| b == bars[0]), "{s}");
        assert!(s.contains("≥0.65 met"), "{s}");
        assert!(!s.contains("Unix socket"), "no ping-pong ran: {s}");
    }
}
