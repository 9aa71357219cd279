//! The bench's results: per-scenario rows (medians across runs, each beside
//! its floor), the targets, the table and the JSON form.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::args::Plan;
use super::measure::PAIR_BLOCKS;
use super::params::Params;
use super::sample::{median_pair, Sample};
use super::scenario::{Metric, Scenario};
use super::stats::{median, new_hist, Percentiles};
use ringbus::ring::Mode;
use ringbus::wait::WaitStrategy;

/// The machine the figures come from.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu_model: String,
    /// CPUs online.
    pub cpus_online: usize,
    /// Kernel release.
    pub kernel: String,
    /// Clock used for round trips, and its calibration.
    pub rtt_clock: String,
}

impl Machine {
    /// Reads `/proc/cpuinfo` and `uname`.
    pub fn detect(ticks: crate::clock::Ticks) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, m)| m.trim().to_string())
            .unwrap_or_else(|| "unknown CPU".into());
        let uname = rustix::system::uname();
        let kernel = uname.release().to_string_lossy().into_owned();
        let rtt_clock = if cfg!(target_arch = "x86_64") {
            format!(
                "rdtsc, {:.4} ns/tick, reads {:.1} ns apart (percentiles interpolated within that)",
                ticks.ns_per_tick(),
                ticks.resolution_ns()
            )
        } else {
            "CLOCK_MONOTONIC".into()
        };
        Machine {
            cpu_model,
            // Not `available_parallelism`: that is this (pinned) thread's mask.
            cpus_online: cpuinfo
                .lines()
                .filter(|l| l.starts_with("processor"))
                .count(),
            kernel,
            rtt_clock,
        }
    }
}

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
    /// [`Scenario::seqlock_floor`]); medians as for `ratio`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_seqlock: Option<f64>,
    /// The p99.9 of `ratio_seqlock`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_seqlock_p99_9: Option<f64>,
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
        let (ratio_seqlock, ratio_seqlock_p99_9) =
            medians(samples.iter().filter_map(|s| s.vs_seqlock).collect());
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
            received: samples.iter().map(|s| s.received).sum(),
            lost: samples.iter().map(|s| s.lost).sum(),
            floor: None,
            ratio,
            ratio_p99_9,
            ratio_seqlock,
            ratio_seqlock_p99_9,
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

/// One of the targets, evaluated (informational: nothing gates on
/// it).
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    /// What is compared.
    pub what: String,
    /// Measured ratio.
    pub ratio: f64,
    /// Bound.
    pub bound: f64,
    /// `ratio <= bound` (or `>=` for throughput).
    pub met: bool,
}

/// Everything the bench prints.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Where it ran.
    pub machine: Machine,
    /// With what settings.
    pub plan: Plan,
    /// One row per scenario.
    pub rows: Vec<Row>,
    /// The targets.
    pub targets: Vec<Target>,
    /// Remarks (skipped scenarios, smoke mode).
    pub notes: Vec<String>,
}

impl Report {
    /// Builds the report and fills in floors, ratios and targets.
    pub fn new(machine: Machine, plan: Plan, mut rows: Vec<Row>, mut notes: Vec<String>) -> Report {
        let snapshot: Vec<(Scenario, Option<Percentiles>, Option<f64>, String)> = rows
            .iter()
            .map(|r| (r.scenario, r.latency, r.msgs_per_s, r.name.clone()))
            .collect();
        for row in &mut rows {
            let Some(floor) = row.scenario.floor() else {
                continue;
            };
            let Some((_, flat, frate, fid)) = snapshot.iter().find(|s| s.0 == floor) else {
                continue;
            };
            row.floor = Some(fid.clone());
            if row.ratio.is_some() {
                continue; // paired ratios, measured next to their floor
            }
            match (row.latency, flat, row.msgs_per_s, frate) {
                (Some(l), Some(f), _, _) => {
                    row.ratio = Some(l.p50 / f.p50.max(f64::MIN_POSITIVE));
                    row.ratio_p99_9 = Some(l.p99_9 / f.p99_9.max(f64::MIN_POSITIVE));
                }
                (_, _, Some(r), Some(f)) => row.ratio = Some(r / f.max(f64::MIN_POSITIVE)),
                _ => {}
            }
        }
        let targets = targets(&rows);
        // A blocking receive answered faster than any futex wake-up never
        // slept: the comparison with the futex floor then says nothing.
        let quick: Vec<&str> = rows
            .iter()
            .filter(|r| {
                matches!(
                    r.scenario,
                    Scenario::RingPingPong {
                        wait: WaitStrategy::Block,
                        ..
                    }
                ) && r.latency.is_some_and(|l| l.p50 < 1_000.0)
            })
            .map(|r| r.id.as_str())
            .collect();
        if !quick.is_empty() {
            notes.push(format!(
                "block waits answered in under 1 µs at p50 ({}): the receiver mostly caught the \
                 reply while polling before it slept, so the ratio to the futex floor flatters",
                quick.join(", ")
            ));
        }
        Report {
            machine,
            plan,
            rows,
            targets,
            notes,
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report is plain data")
    }

    /// The report as a table.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let p = &self.plan;
        let _ = writeln!(
            s,
            "ringbus bench — {} ({} CPUs online), Linux {}, pinned to CPUs {:?}",
            self.machine.cpu_model, self.machine.cpus_online, self.machine.kernel, p.cpus
        );
        let runs = if p.runs > 1 {
            format!("median of {} runs", p.runs)
        } else {
            "1 run".into()
        };
        let count = match p.duration {
            Some(d) => format!("{:?} per measurement", d),
            None => format!("{} measured round trips / messages", p.iters),
        };
        let _ = writeln!(
            s,
            "{runs}; {count} after {} warm-up; RTT clock: {}",
            p.warmup, self.machine.rtt_clock
        );
        let _ = writeln!(
            s,
            "×: ringbus figure / the floor in `vs`, that floor re-measured next to it on the same \
             cores, in {} blocks alternating with it (median of the blocks' ratios; a blocking \
             stream's latency follows one futex ping-pong), median over runs",
            PAIR_BLOCKS
        );

        let pp: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.metric == Metric::PingPong)
            .collect();
        if !pp.is_empty() {
            let _ = writeln!(s, "\nPing-pong: one-way latency = RTT / 2");
            latency_table(&mut s, &pp, true);
        }
        let thr: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.metric == Metric::Throughput)
            .collect();
        if !thr.is_empty() {
            let _ = writeln!(s, "\nStreaming throughput, flat out");
            let _ = writeln!(
                s,
                "  {:<34} {:>6} {:>10} {:>11} {:>8} {:>10}  {:<28} {:>6}",
                "", "size", "msgs/s", "bytes/s", "lost", "count", "vs", "×"
            );
            for r in thr {
                let _ = writeln!(
                    s,
                    "  {:<34} {:>6} {:>10} {:>11} {:>8} {:>10}  {:<28} {:>6}",
                    r.name,
                    size(r.size),
                    r.msgs_per_s.map(si).unwrap_or_default(),
                    r.bytes_per_s
                        .map(|b| format!("{}B", si(b)))
                        .unwrap_or_default(),
                    r.lost,
                    r.received,
                    r.floor.clone().unwrap_or_default(),
                    r.ratio.map(|x| format!("{x:.2}")).unwrap_or_default(),
                );
            }
        }
        let lat: Vec<&Row> = self
            .rows
            .iter()
            .filter(|r| r.metric == Metric::Latency)
            .collect();
        if !lat.is_empty() {
            let capped: Vec<String> = lat
                .iter()
                .filter(|r| r.params.rate < p.rate)
                .filter_map(|r| r.size.map(|sz| (sz, r.params.rate)))
                .fold(Vec::new(), |mut v, (sz, rate)| {
                    let t = format!("{rate}/s at {sz} B");
                    if !v.contains(&t) {
                        v.push(t);
                    }
                    v
                });
            let cap = if capped.is_empty() {
                String::new()
            } else {
                format!(" (capped to 1 GiB/s: {})", capped.join(", "))
            };
            let _ = writeln!(
                s,
                "\nStreaming latency at {} msgs/s{cap}: publish timestamp → received (CLOCK_MONOTONIC)",
                p.rate
            );
            latency_table(&mut s, &lat, false);
        }
        if !self.targets.is_empty() {
            let _ = writeln!(s, "\nTargets (informational, never gating):");
            for t in &self.targets {
                let _ = writeln!(
                    s,
                    "  {:<68} {:>6.3} (bound {:.2})  {}",
                    t.what,
                    t.ratio,
                    t.bound,
                    if t.met { "met" } else { "MISSED" }
                );
            }
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }
}

/// The targets that `rows` allow evaluating (64-byte messages,
/// each mode that ran). Informational: nothing gates on them.
pub fn targets(rows: &[Row]) -> Vec<Target> {
    let find = |sc: Scenario| rows.iter().find(|r| r.scenario == sc);
    let lat = |sc: Scenario| find(sc).and_then(|r| r.latency);
    let mut out = Vec::new();
    let mut push = |what: String, ratio: f64, bound: f64, at_most: bool| {
        out.push(Target {
            met: if at_most {
                ratio <= bound
            } else {
                ratio >= bound
            },
            what,
            ratio,
            bound,
        });
    };
    let size = 64;
    for mode in [Mode::Overwrite, Mode::Backpressure] {
        let m = mode.name();
        let pp = |wait| Scenario::RingPingPong { size, wait, mode };
        let spin = lat(pp(WaitStrategy::Spin));
        if let Some(r) = find(pp(WaitStrategy::Spin)) {
            // The floor (a stamp and the 64-byte payload), then the
            // bare cache line (a sequence word only), the stricter one.
            let floors = [
                ("seqlock floor", r.ratio_seqlock, r.ratio_seqlock_p99_9),
                ("cache-line floor (stricter)", r.ratio, r.ratio_p99_9),
            ];
            for (floor, p50, p999) in floors {
                if let Some(x) = p50 {
                    push(
                        format!("spin {m} 64 B ping-pong p50 / {floor}"),
                        x,
                        1.15,
                        true,
                    );
                }
                if let Some(x) = p999 {
                    push(
                        format!("spin {m} 64 B ping-pong p99.9 / {floor}"),
                        x,
                        1.5,
                        true,
                    );
                }
            }
        }
        if let Some(x) = find(pp(WaitStrategy::Block)).and_then(|r| r.ratio) {
            push(
                format!("block {m} 64 B ping-pong p50 / raw futex p50"),
                x,
                1.15,
                true,
            );
        }
        if let (Some(a), Some(s)) = (lat(pp(WaitStrategy::default())), spin) {
            push(
                format!("adaptive {m} 64 B ping-pong p50 / spin p50"),
                a.p50 / s.p50,
                1.2,
                true,
            );
        }
        let ring = find(Scenario::RingThroughput {
            size,
            wait: WaitStrategy::Spin,
            mode,
            subscribers: 1,
        });
        if let Some(x) = ring.and_then(|r| r.ratio) {
            push(
                format!("spin {m} 64 B streaming msgs/s / copy ring (at least)"),
                x,
                0.8,
                false,
            );
        }
    }
    out
}

fn latency_table(s: &mut String, rows: &[&Row], rtt: bool) {
    let _ = write!(s, "  {:<34} {:>6}", "", "size");
    for h in ["p50", "p90", "p99", "p99.9", "p99.99", "max"] {
        let _ = write!(s, " {h:>8}");
    }
    if rtt {
        let _ = write!(s, " {:>8}", "RTT p50");
    }
    let _ = writeln!(
        s,
        " {:>9}  {:<28} {:>5} {:>6}",
        "count", "vs", "×p50", "×p99.9"
    );
    for r in rows {
        let Some(l) = r.latency else { continue };
        let _ = write!(s, "  {:<34} {:>6}", r.name, size(r.size));
        for v in l.row() {
            let _ = write!(s, " {:>8}", ns(v));
        }
        if rtt {
            let _ = write!(s, " {:>8}", r.rtt.map(|x| ns(x.p50)).unwrap_or_default());
        }
        let _ = writeln!(
            s,
            " {:>9}  {:<28} {:>5} {:>6}",
            l.count,
            r.floor.clone().unwrap_or_default(),
            r.ratio.map(|x| format!("{x:.2}")).unwrap_or_default(),
            r.ratio_p99_9.map(|x| format!("{x:.2}")).unwrap_or_default(),
        );
    }
}

fn size(s: Option<usize>) -> String {
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
