//! The bench's results: the rows with their floors filled in, the issue's
//! targets, the summary, and the two forms they are printed in: the table
//! (summary first, then the full matrix) and the JSON.

use std::fmt::Write as _;

use serde::Serialize;

use super::args::Plan;
use super::measure::PAIR_BLOCKS;
use super::row::Row;
use super::scenario::{Metric, Scenario};
use super::stats::Percentiles;
use super::summary::Summary;
use super::targets::{targets, Target};
use super::units::{ns, si, size};
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
    /// The first table: one line per wait strategy at one size.
    pub summary: Summary,
    /// Remarks (skipped scenarios, smoke mode).
    pub notes: Vec<String>,
    /// `--scenarios journal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<crate::journal::JournalReport>,
    /// `--scenarios groups`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<crate::groups::GroupsReport>,
}

/// Below this ratio to its floor, the copy ring with a read-only reader
/// gets a note in the report (the protection, not noise, slowed it).
const READ_ONLY_SLOW: f64 = 0.8;

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
        // Where the page protection alone slows the copy ring, say what it
        // means for subscribers.
        let slowed: Vec<String> = rows
            .iter()
            .filter(|r| matches!(r.scenario, Scenario::ReadOnlyRingThroughput { .. }))
            .filter_map(|r| Some((r.size?, r.ratio?)))
            .filter(|&(_, ratio)| ratio < READ_ONLY_SLOW)
            .map(|(size, ratio)| format!("{size} B: {ratio:.2}x"))
            .collect();
        if !slowed.is_empty() {
            notes.push(format!(
                "a reader reading through a read-only mapping slowed the copy ring on this \
                 host ({}, against the floor): subscribers that are not trusted read their \
                 rings that way; the broker's `trusted_subscribers = true` (`--trusted` here) \
                 maps ring data read-write (DESIGN.md, \"Read-only subscribers\")",
                slowed.join(", ")
            ));
        }
        let summary = Summary::of(&plan, &rows, &targets);
        Report {
            machine,
            plan,
            rows,
            targets,
            summary,
            notes,
            journal: None,
            groups: None,
        }
    }

    /// Live streaming messages/s at `size` (back-pressure, the fastest
    /// wait measured), to set replay against.
    fn live_streaming(&self, size: usize) -> Option<f64> {
        self.rows
            .iter()
            .filter(|r| {
                matches!(r.scenario, Scenario::RingThroughput { size: s, mode: ringbus::ring::Mode::Backpressure, .. } if s == size)
            })
            .filter_map(|r| r.msgs_per_s)
            .max_by(f64::total_cmp)
    }

    fn journal_table(&self, s: &mut String) {
        let Some(j) = &self.journal else {
            return;
        };
        let _ = writeln!(
            s,
            "\nDurable topic: publisher → ring → recorder → journal (fsync interval:10ms, on {}), \
             against the disk's own buffered write loop; then reading the journal back",
            j.filesystem
        );
        let _ = writeln!(
            s,
            "  {:>6} {:>12} {:>14} {:>8} {:>10} {:>12} {:>8} {:>14} {:>14} {:>8} {:>14} {:>14} {:>8}",
            "size",
            "disk MB/s",
            "journal MB/s",
            "ratio",
            "payload",
            "disk+wb MB/s",
            "ratio",
            "read msg/s",
            "live msg/s",
            "ratio",
            "sub msg/s",
            "live alone",
            "ratio"
        );
        for r in &j.rows {
            let live = self.live_streaming(r.size);
            let _ = writeln!(
                s,
                "  {:>6} {:>12.1} {:>14.1} {:>8.2} {:>10.2} {:>12.1} {:>8.2} {:>14.0} {:>14} {:>8} {:>14.0} {:>14.0} {:>8.2}",
                r.size,
                r.disk_bytes_per_s / 1e6,
                r.journal_bytes_per_s / 1e6,
                r.ratio(),
                r.payload_ratio(),
                r.disk_early_bytes_per_s / 1e6,
                r.early_ratio,
                r.replay_msgs_per_s,
                live.map_or("-".into(), |l| format!("{l:.0}")),
                live.map_or("-".into(), |l| format!("{:.2}", r.replay_msgs_per_s / l)),
                r.subscriber_replay_msgs_per_s,
                r.plain_msgs_per_s,
                r.replay_ratio,
            );
        }
        let _ = writeln!(
            s,
            "  (journal MB/s counts the bytes the journal writes: a 48-byte header and padding to 8 \
             per message; ratio: the median of same-run ratios; payload: the ratio by payload bytes \
             alone; disk+wb: the loop starting each write's writeback at once, as the journal \
             does, and the journal's ratio to it; read: JournalReader over the journal just \
             written, beside live streaming of the streaming scenario (if run); sub: a subscriber \
             from sequence 0 replaying it through the client API, over the same run's live \
             streaming alone; targets >= 0.7x, informational)"
        );
        let _ = writeln!(
            s,
            "\nA non-durable topic streaming alone, then beside a durable topic whose recorder runs \
             (its publisher idle)"
        );
        let _ = writeln!(
            s,
            "  {:>6} {:>14} {:>16} {:>8}",
            "size", "alone msg/s", "beside msg/s", "ratio"
        );
        for r in &j.rows {
            let _ = writeln!(
                s,
                "  {:>6} {:>14.0} {:>16.0} {:>8.2}",
                r.size, r.plain_msgs_per_s, r.beside_durable_msgs_per_s, r.neighbour_ratio
            );
        }
        let _ = writeln!(
            s,
            "  (ratio: the median of same-run ratios; target: unchanged, 1.0 within the noise)"
        );
    }

    fn groups_table(&self, s: &mut String) {
        let Some(g) = &self.groups else {
            return;
        };
        let _ = writeln!(
            s,
            "\nConsumer groups, 64 B, back-pressure, spin (threads over {} CPUs)",
            g.cpus
        );
        let _ = writeln!(
            s,
            "  streaming  plain {:>12.0} msg/s   one-member group {:>12.0} msg/s   ratio {:.2} (target >= 0.7)",
            g.plain_msgs_per_s,
            g.group_msgs_per_s,
            g.streaming_ratio()
        );
        let _ = writeln!(
            s,
            "  ping-pong  plain p50 {:>8.0} ns     one-member group p50 {:>8.0} ns     ratio {:.2} (target <= 1.2)",
            g.plain_rtt_p50_ns,
            g.group_rtt_p50_ns,
            g.rtt_ratio()
        );
        let row: Vec<String> = g
            .members
            .iter()
            .map(|(m, r)| format!("{m} member{}: {r:.0} msg/s", if *m == 1 { "" } else { "s" }))
            .collect();
        let _ = writeln!(s, "  aggregate  {}", row.join("   "));
        if g.cpus <= 2 {
            let _ = writeln!(
                s,
                "  (with {} CPUs, members share cores with the publisher: the aggregate rows mean \
                 something only with a CPU per thread)",
                g.cpus
            );
        }
    }

    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report is plain data")
    }

    /// The report as text: the summary, then the full matrix.
    pub fn to_table(&self) -> String {
        let mut s = String::new();
        let p = &self.plan;
        self.summary.render(&mut s, p.smoke);
        let _ = writeln!(s);
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
            let _ = writeln!(
                s,
                "\nStreaming throughput, flat out (B/msg: bytes a message moves between cores; \
                 behind: messages the subscriber ran behind its publisher, on average, \
                 of a ring of `cap`; \
                 ×read-only: ringbus / the fixed-size copy ring read through a read-only mapping, \
                 as subscribers that are not trusted read their rings, measured beside it)"
            );
            let _ = writeln!(
                s,
                "  {:<34} {:>6} {:>6} {:>7} {:>6} {:>10} {:>11} {:>8} {:>10}  {:<32} {:>6} {:>10}",
                "",
                "size",
                "B/msg",
                "behind",
                "cap",
                "msgs/s",
                "bytes/s",
                "lost",
                "count",
                "vs",
                "×",
                "×read-only"
            );
            for r in thr {
                let _ = writeln!(
                    s,
                    "  {:<34} {:>6} {:>6} {:>7} {:>6} {:>10} {:>11} {:>8} {:>10}  {:<32} {:>6} {:>10}",
                    r.name,
                    size(r.size),
                    r.bytes_per_msg.map(|b| b.to_string()).unwrap_or_default(),
                    r.behind.map(|b| format!("{b:.0}")).unwrap_or_default(),
                    r.params.capacity,
                    r.msgs_per_s.map(si).unwrap_or_default(),
                    r.bytes_per_s
                        .map(|b| format!("{}B", si(b)))
                        .unwrap_or_default(),
                    r.lost,
                    r.received,
                    r.floor.clone().unwrap_or_default(),
                    r.ratio.map(|x| format!("{x:.2}")).unwrap_or_default(),
                    r.ratio_read_only_ring
                        .map(|x| format!("{x:.2}"))
                        .unwrap_or_default(),
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
        self.journal_table(&mut s);
        self.groups_table(&mut s);
        if !self.targets.is_empty() {
            let _ = writeln!(s, "\nTargets (informational, never gating):");
            let w = self.targets.iter().map(|t| t.what.chars().count()).max();
            let w = w.unwrap_or(0);
            for t in &self.targets {
                let _ = writeln!(
                    s,
                    "  {:<w$} {:>6.3} (bound {:.2})  {}",
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
        " {:>9}  {:<30} {:>5} {:>6}",
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
            " {:>9}  {:<30} {:>5} {:>6}",
            l.count,
            r.floor.clone().unwrap_or_default(),
            r.ratio.map(|x| format!("{x:.2}")).unwrap_or_default(),
            r.ratio_p99_9.map(|x| format!("{x:.2}")).unwrap_or_default(),
        );
    }
}
