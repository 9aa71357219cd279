//! Command-line arguments of `ringbus bench` and their validation into a
//! [`Plan`]. Bad input is an error that says what to change, never a panic.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use clap::{Args, ValueEnum};
use ringbus::ring::Mode;
use ringbus::wait::WaitStrategy;
use serde::{Deserialize, Serialize};

/// Which families of measurements to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioArg {
    /// Round trips between two processes (RTT and one-way = RTT / 2).
    PingPong,
    /// One publisher to one subscriber: messages/s flat out, and latency at
    /// a fixed `--rate`.
    Streaming,
    /// One publisher to N subscribers (needs N + 1 CPUs in `--cpus`).
    FanOut,
    /// A durable topic's journal against the disk's own write loop, and
    /// reading it back.
    Journal,
    /// Consumer groups: a one-member group against a plain subscriber
    /// (streaming, ping-pong), and 1, 2, 4 members (only when asked for).
    Groups,
}

/// `ringbus bench`: measure ringbus against the hardware floor, in one run,
/// on the same two cores.
///
/// Starts everything it needs (shared memory, child processes), pins the
/// publisher and the subscriber to different CPUs, records every sample in
/// an HdrHistogram and prints each ringbus figure beside its floor: first a
/// summary at 64 B (one line per wait strategy, with the targets),
/// then the full matrix.
#[derive(Args, Clone, Debug, Default)]
pub struct BenchArgs {
    /// CPUs to pin to: publisher first, then subscriber(s) [default: the
    /// first two CPUs this process may run on].
    #[arg(long, value_delimiter = ',', value_name = "A,B[,C..]")]
    pub cpus: Option<Vec<usize>>,

    /// Message sizes in bytes (each at least 8).
    #[arg(long, value_delimiter = ',', value_name = "BYTES,..")]
    pub sizes: Option<Vec<usize>>,

    /// Wait strategies of the receiving side [default: all three].
    #[arg(long, value_delimiter = ',', value_name = "spin|adaptive|block,..")]
    pub wait: Option<Vec<WaitStrategy>>,

    /// Ring modes [default: both].
    #[arg(long, value_delimiter = ',', value_name = "overwrite|backpressure,..")]
    pub mode: Option<Vec<Mode>>,

    /// Which measurements to run [default: all that the CPUs allow].
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "ping-pong|streaming|fan-out|journal|groups,.."
    )]
    pub scenarios: Option<Vec<ScenarioArg>>,

    /// Repeat everything N times and report the median of each figure.
    #[arg(long, value_name = "N")]
    pub runs: Option<u32>,

    /// Measured round trips per ping-pong, and messages per latency run (at
    /// most one second's worth); throughput runs send 20 times as many,
    /// capped at 1 GiB of payload.
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    pub iters: Option<u64>,

    /// Run each measurement for this long instead of a fixed count
    /// (e.g. `500ms`, `2s`).
    #[arg(long, value_name = "TIME", value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Warm-up round trips / messages before each measurement (not
    /// recorded) [default: a tenth of the count, at least 1000].
    #[arg(long, value_name = "N")]
    pub warmup: Option<u64>,

    /// Publish rate of the streaming latency runs, in messages per second
    /// (capped at 1 GiB/s of payload per size).
    #[arg(long, value_name = "MSGS_PER_S")]
    pub rate: Option<u64>,

    /// Ring capacity in messages, a power of two [default: by size, about
    /// 4 MiB of slots, between 64 and 4096].
    #[arg(long, value_name = "N")]
    pub capacity: Option<u32>,

    /// Have ringbus publishers stamp every message in ping-pong and
    /// throughput runs too (`set_timestamps(true)`; off by default, as in
    /// the library), to see what the clock read costs. Streaming latency
    /// runs always stamp: their figure is measured from the stamp.
    #[arg(long)]
    pub timestamps: bool,

    /// Reach the rings directly (memfds, bare producer / consumer) instead
    /// of through the embedded broker and its client: the ring's own cost.
    #[arg(long)]
    pub direct: bool,

    /// Subscribers map ring data read-write, as with the broker's
    /// `trusted_subscribers = true`, and poll the latest-message slot
    /// (default: read-only data, the secure setting).
    #[arg(long)]
    pub trusted: bool,

    /// With `--direct` and read-only subscribers: no mailboxes (each
    /// subscriber then polls the read-only ring slots), to see what they buy.
    #[arg(long)]
    pub no_mailboxes: bool,

    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,

    /// Write one HdrHistogram percentile-distribution file (`.hgrm`) per
    /// latency figure into DIR.
    #[arg(long, value_name = "DIR")]
    pub hgrm: Option<PathBuf>,

    /// Write an SVG plot of the latency percentiles to FILE.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// Tiny counts so the whole run takes seconds (CI); figures are not
    /// meaningful.
    #[arg(long)]
    pub smoke: bool,

    /// Let `--cpus` name a CPU twice (to exercise fan-out on a small
    /// machine in tests; the figures are then meaningless).
    #[arg(long, hide = true)]
    pub allow_shared_cpus: bool,
}

/// Parses `500ms`, `2s`, `1.5s`, `1m`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let value: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; write e.g. `500ms` or `2s`"))?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        "m" | "min" => 60.0,
        _ => {
            return Err(format!(
                "unknown unit `{unit}` in `{s}`; use ns, us, ms, s or m"
            ))
        }
    };
    let secs = value * scale;
    if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
        return Err(format!(
            "duration `{s}` must be above zero and at most one hour"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Largest message size the bench accepts (the copy-ring floor keeps at least
/// 64 such messages in one mapping).
pub const MAX_SIZE: usize = 1 << 20;
/// Smallest message size: each message carries an 8-byte sequence number.
pub const MIN_SIZE: usize = 8;

/// The validated, defaulted form of [`BenchArgs`].
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// CPUs: `[publisher, subscriber, more subscribers..]`.
    pub cpus: Vec<usize>,
    /// Message sizes.
    pub sizes: Vec<usize>,
    /// Wait strategies.
    pub waits: Vec<WaitStrategy>,
    /// Ring modes.
    pub modes: Vec<Mode>,
    /// Scenario families to run.
    pub scenarios: Vec<ScenarioArg>,
    /// Repetitions; figures are medians across them.
    pub runs: u32,
    /// Measured round trips / latency messages (ignored with `duration`).
    pub iters: u64,
    /// Time per measurement instead of a count.
    #[serde(serialize_with = "ser_opt_duration")]
    pub duration: Option<Duration>,
    /// Warm-up per measurement.
    pub warmup: u64,
    /// Messages per second in latency runs.
    pub rate: u64,
    /// Ring capacity override.
    pub capacity: Option<u32>,
    /// Smoke mode (tiny counts).
    pub smoke: bool,
    /// Some CPUs run more than one side (`--allow-shared-cpus`).
    pub shared_cpus: bool,
    /// ringbus publishers stamp ping-pong and throughput messages
    /// (`--timestamps`; latency runs always do).
    pub timestamps: bool,
    /// Rings reached without the broker (`--direct`).
    pub direct: bool,
    /// Subscribers map data read-write (`--trusted`).
    pub trusted: bool,
    /// Direct read-only subscribers get a mailbox (not `--no-mailboxes`).
    pub mailboxes: bool,
}

fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// Payload bytes per second a latency run may publish.
const LATENCY_BYTES_PER_S: u64 = 1 << 30;

/// Payload bytes a throughput run may move, whatever the count.
const THROUGHPUT_BYTES: u64 = 1 << 30;

impl Plan {
    /// Validates `args` against `allowed_cpus` (the CPUs this process may
    /// run on) and fills in the defaults.
    pub fn from_args(args: &BenchArgs, allowed_cpus: &[usize]) -> Result<Plan> {
        let cpus = match &args.cpus {
            Some(c) => c.clone(),
            None => {
                ensure!(
                    allowed_cpus.len() >= 2,
                    "the bench needs two CPUs to pin the publisher and the subscriber apart, \
                     but this process may only run on {allowed_cpus:?}"
                );
                allowed_cpus[..2].to_vec()
            }
        };
        ensure!(
            cpus.len() >= 2,
            "--cpus needs at least two CPUs (publisher, subscriber), got {cpus:?}"
        );
        for (i, c) in cpus.iter().enumerate() {
            ensure!(
                allowed_cpus.contains(c),
                "--cpus: CPU {c} is not available to this process (available: {allowed_cpus:?})"
            );
            ensure!(
                args.allow_shared_cpus || !cpus[..i].contains(c),
                "--cpus: CPU {c} is listed twice; each side needs its own CPU"
            );
        }

        let sizes = args
            .sizes
            .clone()
            .unwrap_or_else(|| vec![8, 64, 1024, 65536]);
        ensure!(!sizes.is_empty(), "--sizes: give at least one size");
        for &s in &sizes {
            ensure!(
                (MIN_SIZE..=MAX_SIZE).contains(&s),
                "--sizes: {s} bytes is out of range; sizes must be {MIN_SIZE}..={MAX_SIZE} bytes \
                 (each message carries an 8-byte sequence number)"
            );
        }
        let sizes = dedup(sizes);

        let waits = dedup(args.wait.clone().unwrap_or_else(|| {
            vec![
                WaitStrategy::Spin,
                WaitStrategy::default(),
                WaitStrategy::Block,
            ]
        }));
        let modes = dedup(
            args.mode
                .clone()
                .unwrap_or_else(|| vec![Mode::Overwrite, Mode::Backpressure]),
        );
        ensure!(!waits.is_empty(), "--wait: give at least one strategy");
        ensure!(
            !waits.contains(&WaitStrategy::SpinYield),
            "--wait: spin-yield is not measured by the bench (spin, adaptive or block)"
        );
        ensure!(!modes.is_empty(), "--mode: give at least one mode");
        let scenarios = dedup(args.scenarios.clone().unwrap_or_else(|| {
            vec![
                ScenarioArg::PingPong,
                ScenarioArg::Streaming,
                ScenarioArg::FanOut,
                ScenarioArg::Journal,
            ]
        }));
        ensure!(!scenarios.is_empty(), "--scenarios: give at least one");
        if args
            .scenarios
            .as_ref()
            .is_some_and(|s| s.contains(&ScenarioArg::FanOut))
        {
            ensure!(
                cpus.len() >= 3,
                "--scenarios fan-out needs at least three CPUs in --cpus \
                 (one publisher, two or more subscribers)"
            );
        }

        let runs = args.runs.unwrap_or(1);
        ensure!(
            (1..=101).contains(&runs),
            "--runs must be 1..=101, got {runs}"
        );

        let default_iters = if args.smoke { 2_000 } else { 50_000 };
        let iters = args.iters.unwrap_or(default_iters);
        ensure!(
            (1..=1_000_000_000).contains(&iters),
            "--iters must be 1..=1000000000, got {iters}"
        );
        let warmup = match args.warmup {
            Some(w) => w,
            None if args.smoke => 200,
            None => (iters / 10).max(1_000),
        };
        ensure!(
            warmup <= 1_000_000_000,
            "--warmup must be at most 1000000000, got {warmup}"
        );

        let rate = args
            .rate
            .unwrap_or(if args.smoke { 50_000 } else { 100_000 });
        ensure!(
            (1..=100_000_000).contains(&rate),
            "--rate must be 1..=100000000 messages per second, got {rate}"
        );
        if let Some(c) = args.capacity {
            ensure!(
                c.is_power_of_two() && (2..=1 << 24).contains(&c),
                "--capacity must be a power of two in 2..=16777216, got {c}"
            );
        }
        let plan = Plan {
            sizes,
            waits,
            modes,
            scenarios,
            runs,
            iters,
            duration: args.duration,
            warmup,
            rate,
            capacity: args.capacity,
            smoke: args.smoke,
            shared_cpus: (1..cpus.len()).any(|i| cpus[..i].contains(&cpus[i])),
            timestamps: args.timestamps,
            direct: args.direct,
            trusted: args.trusted,
            mailboxes: !args.no_mailboxes,
            cpus,
        };
        for &s in &plan.sizes {
            let cap = plan.capacity_for(s);
            let bytes = u64::from(cap) * s.next_multiple_of(8) as u64;
            if bytes > 1 << 30 {
                bail!(
                    "--capacity {cap} × {s}-byte messages needs {} MiB per ring; \
                     choose a smaller --capacity",
                    bytes >> 20
                );
            }
        }
        Ok(plan)
    }

    /// Ring capacity (messages) for `size`-byte messages: the override, or
    /// about 4 MiB of slots clamped to 64..=4096.
    pub fn capacity_for(&self, size: usize) -> u32 {
        if let Some(c) = self.capacity {
            return c;
        }
        let slots = (4usize << 20) / size.next_multiple_of(64).max(64);
        (slots.clamp(64, 4096) as u32).next_power_of_two().min(4096)
    }

    /// Messages sent by a flat-out throughput run of `size`-byte messages.
    pub fn throughput_msgs(&self, size: usize) -> u64 {
        let by_bytes = (THROUGHPUT_BYTES / size as u64).max(1_000);
        self.iters.saturating_mul(20).min(by_bytes)
    }

    /// Publish rate of latency runs for `size`-byte messages: `--rate`,
    /// capped at 1 GiB/s of payload so large messages measure latency, not
    /// a queue that grows because copies cannot keep up.
    pub fn latency_rate(&self, size: usize) -> u64 {
        self.rate.min((LATENCY_BYTES_PER_S / size as u64).max(1))
    }

    /// Messages in a latency run: `--iters`, but at most about one second
    /// of messages at the run's rate (and at least 1000).
    pub fn latency_msgs(&self, size: usize) -> u64 {
        self.iters.min(self.latency_rate(size).max(1_000))
    }

    /// Whether the fan-out scenario runs (asked for, or by default, and the
    /// CPUs allow it).
    pub fn fan_out(&self) -> bool {
        self.scenarios.contains(&ScenarioArg::FanOut) && self.cpus.len() >= 3
    }
}

fn dedup<T: PartialEq>(v: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(v.len());
    for x in v {
        if !out.contains(&x) {
            out.push(x);
        }
    }
    out
}

/// Reads the CPUs this process may run on.
pub fn allowed_cpus() -> Result<Vec<usize>> {
    let cpus = ringbus::wait::available_cores();
    ensure!(
        !cpus.is_empty(),
        "could not read this process's CPU affinity mask"
    );
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &BenchArgs) -> Result<Plan> {
        Plan::from_args(args, &[0, 1, 2, 3])
    }

    #[test]
    fn defaults_use_first_two_cpus_and_all_sizes() {
        let p = plan(&BenchArgs::default()).unwrap();
        assert_eq!(p.cpus, vec![0, 1]);
        assert_eq!(p.sizes, vec![8, 64, 1024, 65536]);
        assert_eq!(p.runs, 1);
        assert!(!p.fan_out());
        assert_eq!(p.warmup, 5_000);
    }

    #[test]
    fn patterns_filters_and_batches_sit_after_their_exact_topic_rows() {
        use crate::scenario::{list, Scenario};
        let p = plan(&BenchArgs::default()).unwrap();
        let rows: Vec<Scenario> = list(&p).into_iter().map(|(s, _)| s).collect();
        let routed: Vec<Scenario> = rows
            .iter()
            .copied()
            .filter(|s| s.unrouted().is_some())
            .collect();
        // Both modes' pattern ping-pongs, batched and loaned streams; the
        // back-pressure filtered stream.
        assert_eq!(routed.len(), 7 * p.sizes.len(), "{routed:?}");
        for r in routed {
            let at = |x: Scenario| rows.iter().position(|s| *s == x).unwrap();
            assert!(at(r.unrouted().unwrap()) < at(r), "{r:?}");
            assert_eq!(r.floor(), r.unrouted());
        }
        // Through the broker only.
        let direct = plan(&BenchArgs {
            direct: true,
            ..Default::default()
        })
        .unwrap();
        assert!(list(&direct).iter().all(|(s, _)| s.unrouted().is_none()));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let cases = [
            BenchArgs {
                cpus: Some(vec![0]),
                ..Default::default()
            },
            BenchArgs {
                cpus: Some(vec![0, 0]),
                ..Default::default()
            },
            BenchArgs {
                cpus: Some(vec![0, 9]),
                ..Default::default()
            },
            BenchArgs {
                sizes: Some(vec![4]),
                ..Default::default()
            },
            BenchArgs {
                sizes: Some(vec![MAX_SIZE + 1]),
                ..Default::default()
            },
            BenchArgs {
                runs: Some(0),
                ..Default::default()
            },
            BenchArgs {
                iters: Some(0),
                ..Default::default()
            },
            BenchArgs {
                rate: Some(0),
                ..Default::default()
            },
            BenchArgs {
                capacity: Some(3),
                ..Default::default()
            },
            BenchArgs {
                scenarios: Some(vec![ScenarioArg::FanOut]),
                ..Default::default()
            },
        ];
        for a in cases {
            let err = plan(&a).expect_err("must be rejected");
            assert!(!format!("{err:#}").is_empty());
        }
        assert!(Plan::from_args(&BenchArgs::default(), &[3]).is_err());
    }

    #[test]
    fn fan_out_needs_three_cpus() {
        let a = BenchArgs {
            cpus: Some(vec![2, 0, 1]),
            ..Default::default()
        };
        assert!(plan(&a).unwrap().fan_out());
    }

    #[test]
    fn capacity_scales_with_size() {
        let p = plan(&BenchArgs::default()).unwrap();
        assert_eq!(p.capacity_for(8), 4096);
        assert_eq!(p.capacity_for(65536), 64);
        assert!(p.capacity_for(1024).is_power_of_two());
        assert_eq!(p.throughput_msgs(64), 1_000_000);
        assert_eq!(p.throughput_msgs(65536), 16_384);
        assert_eq!(p.latency_rate(64), 100_000);
        assert_eq!(p.latency_rate(65536), 16_384);
        assert_eq!(p.latency_msgs(64), 50_000);
        assert_eq!(p.latency_msgs(65536), 16_384);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("abc").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }
}
