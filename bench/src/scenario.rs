//! What the bench measures: the list of scenarios a plan expands to, which
//! floor each ringbus figure is compared with, and running one scenario
//! (parent side + children) into a [`Sample`].

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use super::args::{Plan, ScenarioArg};
use super::child::{ChildSpec, Children, Params, SideResult};
use super::clock::Ticks;
use super::floors;
use super::report::{Row, Target};
use super::ring::{self, RingFiles};
use super::shared::CONTROL_SIZE;
use super::shared::{parent_barrier, Region};
use super::stats::Percentiles;
use ringbus::ring::Mode;
use ringbus::wait::WaitStrategy;

/// One measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Scenario {
    /// Floor: 64-byte cache-line ping-pong.
    LinePingPong,
    /// Baseline: seqlock slot ping-pong with `size`-byte payloads.
    SeqlockPingPong {
        /// Payload bytes.
        size: usize,
    },
    /// Floor for blocking waits: futex ping-pong.
    FutexPingPong,
    /// Baseline: Unix `SOCK_SEQPACKET` ping-pong.
    UnixPingPong {
        /// Payload bytes.
        size: usize,
    },
    /// Floor for throughput: SPSC copy ring, flat out.
    CopyRingThroughput {
        /// Payload bytes.
        size: usize,
    },
    /// Copy ring at a fixed rate: publish-to-receive latency.
    CopyRingLatency {
        /// Payload bytes.
        size: usize,
    },
    /// ringbus ping-pong over two rings.
    RingPingPong {
        /// Payload bytes.
        size: usize,
        /// Receive wait strategy (both sides).
        wait: WaitStrategy,
        /// Ring mode.
        mode: Mode,
    },
    /// ringbus streaming, flat out, 1 → `subscribers`.
    RingThroughput {
        /// Payload bytes.
        size: usize,
        /// Subscribers' wait strategy.
        wait: WaitStrategy,
        /// Ring mode.
        mode: Mode,
        /// Subscriber processes.
        subscribers: u32,
    },
    /// ringbus streaming at a fixed rate: publish-to-receive latency.
    RingLatency {
        /// Payload bytes.
        size: usize,
        /// Subscribers' wait strategy.
        wait: WaitStrategy,
        /// Ring mode.
        mode: Mode,
        /// Subscriber processes.
        subscribers: u32,
    },
}

/// What a scenario's figures mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Round trips; reported as RTT and one-way = RTT / 2.
    PingPong,
    /// Messages per second (plus loss).
    Throughput,
    /// Publish timestamp to receipt, ns.
    Latency,
}

impl Scenario {
    /// The kind of figure.
    pub fn metric(self) -> Metric {
        match self {
            Scenario::LinePingPong
            | Scenario::SeqlockPingPong { .. }
            | Scenario::FutexPingPong
            | Scenario::UnixPingPong { .. }
            | Scenario::RingPingPong { .. } => Metric::PingPong,
            Scenario::CopyRingThroughput { .. } | Scenario::RingThroughput { .. } => {
                Metric::Throughput
            }
            Scenario::CopyRingLatency { .. } | Scenario::RingLatency { .. } => Metric::Latency,
        }
    }

    /// Message size, if the scenario has one.
    pub fn size(self) -> Option<usize> {
        match self {
            Scenario::LinePingPong | Scenario::FutexPingPong => None,
            Scenario::SeqlockPingPong { size }
            | Scenario::UnixPingPong { size }
            | Scenario::CopyRingThroughput { size }
            | Scenario::CopyRingLatency { size }
            | Scenario::RingPingPong { size, .. }
            | Scenario::RingThroughput { size, .. }
            | Scenario::RingLatency { size, .. } => Some(size),
        }
    }

    /// Wait strategy and mode of a ringbus scenario.
    fn ring(self) -> Option<(WaitStrategy, Mode)> {
        match self {
            Scenario::RingPingPong { wait, mode, .. }
            | Scenario::RingThroughput { wait, mode, .. }
            | Scenario::RingLatency { wait, mode, .. } => Some((wait, mode)),
            _ => None,
        }
    }

    /// Whether this is a baseline (no ringbus code).
    pub fn is_floor(self) -> bool {
        self.ring().is_none()
    }

    /// Human name for tables and legends.
    pub fn label(self) -> String {
        match self {
            Scenario::LinePingPong => "floor: cache line".into(),
            Scenario::SeqlockPingPong { .. } => "base: seqlock copy".into(),
            Scenario::FutexPingPong => "floor: futex".into(),
            Scenario::UnixPingPong { .. } => "base: unix seqpacket".into(),
            Scenario::CopyRingThroughput { .. } | Scenario::CopyRingLatency { .. } => {
                "floor: copy ring".into()
            }
            Scenario::RingPingPong { wait, mode, .. } => {
                format!("ringbus {}/{}", wait.name(), mode.name())
            }
            Scenario::RingThroughput {
                wait,
                mode,
                subscribers,
                ..
            }
            | Scenario::RingLatency {
                wait,
                mode,
                subscribers,
                ..
            } => {
                let fan = if subscribers > 1 {
                    format!(" 1→{subscribers}")
                } else {
                    String::new()
                };
                format!("ringbus{fan} {}/{}", wait.name(), mode.name())
            }
        }
    }

    /// A file-name-safe identifier.
    pub fn slug(self) -> String {
        let size = self.size().map(|s| format!("-{s}B")).unwrap_or_default();
        let base = match self {
            Scenario::LinePingPong => "floor-line-pingpong",
            Scenario::SeqlockPingPong { .. } => "base-seqlock-pingpong",
            Scenario::FutexPingPong => "floor-futex-pingpong",
            Scenario::UnixPingPong { .. } => "base-unix-pingpong",
            Scenario::CopyRingThroughput { .. } => "floor-copyring-throughput",
            Scenario::CopyRingLatency { .. } => "floor-copyring-latency",
            Scenario::RingPingPong { wait, mode, .. } => {
                return format!("ringbus-pingpong-{}-{}{size}", wait.name(), mode.name());
            }
            Scenario::RingThroughput {
                wait,
                mode,
                subscribers,
                ..
            } => {
                return format!(
                    "ringbus-throughput-1to{subscribers}-{}-{}{size}",
                    wait.name(),
                    mode.name()
                );
            }
            Scenario::RingLatency {
                wait,
                mode,
                subscribers,
                ..
            } => {
                return format!(
                    "ringbus-latency-1to{subscribers}-{}-{}{size}",
                    wait.name(),
                    mode.name()
                );
            }
        };
        format!("{base}{size}")
    }

    /// The seqlock ping-pong a spin or adaptive ping-pong row is also
    /// compared with: a stamp and the whole payload per message, as a ring
    /// slot carries, with no ringbus code (the "seqlock floor"; the
    /// cache-line floor carries a sequence word only, so it is the
    /// stricter of the two).
    pub fn seqlock_floor(self) -> Option<Scenario> {
        match self {
            Scenario::RingPingPong { size, wait, .. } if wait != WaitStrategy::Block => {
                Some(Scenario::SeqlockPingPong { size })
            }
            _ => None,
        }
    }

    /// The floor this figure is shown against (ratio = this / floor).
    ///
    /// Spin and adaptive waits are compared with the cache-line ping-pong
    /// (ping-pong) or the copy ring (streaming); blocking waits with the
    /// futex ping-pong's one-way figure, the cost of one wake-up.
    pub fn floor(self) -> Option<Scenario> {
        match self {
            Scenario::SeqlockPingPong { .. } | Scenario::UnixPingPong { .. } => {
                Some(Scenario::LinePingPong)
            }
            Scenario::RingPingPong { wait, .. } => Some(match wait {
                WaitStrategy::Block => Scenario::FutexPingPong,
                _ => Scenario::LinePingPong,
            }),
            Scenario::RingThroughput { size, .. } => Some(Scenario::CopyRingThroughput { size }),
            Scenario::RingLatency { size, wait, .. } => Some(match wait {
                WaitStrategy::Block => Scenario::FutexPingPong,
                _ => Scenario::CopyRingLatency { size },
            }),
            _ => None,
        }
    }

    /// Number of child processes.
    fn children(self) -> u32 {
        match self {
            Scenario::RingThroughput { subscribers, .. }
            | Scenario::RingLatency { subscribers, .. } => subscribers,
            _ => 1,
        }
    }
}

/// Everything `measure` needs besides the scenario.
pub struct Ctx<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// The executable to spawn children from.
    pub exe: &'a Path,
    /// Calibrated ticks for RTTs.
    pub ticks: Ticks,
    /// A client of the embedded broker (`None` with `--direct`).
    pub broker: Option<&'a ringbus::client::Client>,
    /// Measurements made so far (names each one's topics).
    pub count: std::cell::Cell<u64>,
}

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
    /// ringbus rows: this sample divided by its floor, measured just before
    /// it on the same cores — `(p50 or msgs/s ratio, p99.9 ratio)`.
    pub paired: Option<(f64, Option<f64>)>,
    /// Spin and adaptive ping-pong rows: the same ratios to the seqlock
    /// ping-pong of the same message size, measured right after each block
    /// (the "seqlock floor": a stamp and the whole payload).
    pub vs_seqlock: Option<(f64, Option<f64>)>,
    /// How far apart the values the samples' clock reads are, in ns
    /// ([`Ticks::resolution_ns`]; `CLOCK_MONOTONIC` reads the same counter):
    /// percentiles interpolate within it.
    pub resolution: f64,
}

impl Sample {
    /// This sample and `other` (a later block of the same row) as one:
    /// histograms added, counts summed; the rate (the median of the
    /// blocks') and the pairing are left to the caller.
    fn merge(mut self, other: Sample) -> Sample {
        match (&mut self.hist, other.hist) {
            (Some(h), Some(o)) => {
                // Same bounds (`new_hist`): adding cannot fail.
                let _ = h.add(&o);
            }
            (h @ None, o) => *h = o,
            (Some(_), None) => {}
        }
        self.received += other.received;
        self.lost += other.lost;
        self.paired = None;
        self.vs_seqlock = None;
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
    fn ratio_to(
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

/// Blocks a ringbus row is measured in, each right after a block of its
/// floor. The host moves the vCPUs (cross-core latency changes severalfold,
/// sometimes within a second) and other tenants come and go (the copy
/// ring's rate moved 11–58 M msg/s between runs on 2026-12-03); a ratio
/// taken per block and then the median over blocks keeps one unlucky
/// moment from deciding it.
pub const PAIR_BLOCKS: u64 = 5;

/// A ringbus row measured in [`PAIR_BLOCKS`] blocks alternating with its
/// floor of the same kind (a ping-pong, a stream's rate or its latency;
/// same counts, same cores): the blocks' samples merged (a stream's rate is
/// the median of the blocks' rates), and the median of the per-block
/// ratios. With `seqlock`, each block is followed by one of that seqlock
/// ping-pong too, for [`Sample::vs_seqlock`], so the row sits between its
/// two floors.
///
/// # Errors
/// A failed measurement.
pub fn measure_paired_blocks(
    ctx: &Ctx<'_>,
    scenario: Scenario,
    p: &Params,
    floor: (Scenario, &Params),
    seqlock: Option<(Scenario, &Params)>,
) -> Result<Sample> {
    let (floor, floor_params) = floor;
    let block = |q: &Params| Params {
        iters: p.iters.div_ceil(PAIR_BLOCKS).max(1),
        duration_ns: p.duration_ns.map(|d| (d / PAIR_BLOCKS).max(1)),
        ..*q
    };
    let (bp, fp) = (block(p), block(floor_params));
    let mut merged: Option<Sample> = None;
    let (mut ratios, mut vs_seqlock, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..PAIR_BLOCKS {
        let f = measure(ctx, floor, &fp)
            .with_context(|| format!("measuring {} (paired)", floor.slug()))?;
        let mut s = measure(ctx, scenario, &bp)?;
        // Same kind on both sides: no RTT / one-way scaling.
        s.pair_with(&f, true, true);
        ratios.extend(s.paired);
        rates.extend(s.msgs_per_s);
        if let Some((base, base_params)) = seqlock {
            let b = measure(ctx, base, &block(base_params))
                .with_context(|| format!("measuring {} (paired)", base.slug()))?;
            vs_seqlock.extend(s.ratio_to(&b, true, true));
        }
        merged = Some(match merged {
            None => s,
            Some(m) => m.merge(s),
        });
    }
    let mut m = merged.context("no blocks measured")?;
    m.msgs_per_s = (!rates.is_empty()).then(|| super::stats::median(rates));
    m.paired = median_pair(&ratios);
    m.vs_seqlock = median_pair(&vs_seqlock);
    Ok(m)
}

/// The medians of `(p50, p99.9)` ratio pairs; `None` if there are none.
pub fn median_pair(pairs: &[(f64, Option<f64>)]) -> Option<(f64, Option<f64>)> {
    let p999: Vec<f64> = pairs.iter().filter_map(|r| r.1).collect();
    (!pairs.is_empty()).then(|| {
        (
            super::stats::median(pairs.iter().map(|r| r.0).collect()),
            (!p999.is_empty()).then(|| super::stats::median(p999)),
        )
    })
}

/// The scenarios `plan` asks for, each ringbus figure after its floors,
/// each with its counts.
pub fn list(plan: &Plan) -> Vec<(Scenario, Params)> {
    let mut out = Vec::new();
    let base = |size: usize| Params {
        size,
        iters: plan.iters,
        warmup: plan.warmup,
        rate: 0,
        capacity: plan.capacity_for(size),
        duration_ns: plan
            .duration
            .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64),
        timestamps: plan.timestamps,
        trusted: plan.trusted,
        mailboxes: plan.mailboxes && !plan.trusted,
    };
    let thr = |size: usize| Params {
        iters: plan.throughput_msgs(size),
        warmup: plan.warmup.max(1),
        ..base(size)
    };
    // Latency is measured from the publish stamp: always stamped.
    let lat = |size: usize| Params {
        rate: plan.latency_rate(size),
        iters: plan.latency_msgs(size),
        timestamps: true,
        ..base(size)
    };
    let pp = plan.scenarios.contains(&ScenarioArg::PingPong);
    let st = plan.scenarios.contains(&ScenarioArg::Streaming);
    let fan = plan.fan_out();
    // The floors every ratio needs: always measured.
    out.push((Scenario::LinePingPong, base(64)));
    out.push((Scenario::FutexPingPong, base(64)));
    for &size in &plan.sizes {
        if pp {
            out.push((Scenario::SeqlockPingPong { size }, base(size)));
            out.push((Scenario::UnixPingPong { size }, base(size)));
            for &mode in &plan.modes {
                for &wait in &plan.waits {
                    out.push((Scenario::RingPingPong { size, wait, mode }, base(size)));
                }
            }
        }
        if st || fan {
            out.push((Scenario::CopyRingThroughput { size }, thr(size)));
            out.push((Scenario::CopyRingLatency { size }, lat(size)));
        }
        let mut fans = Vec::new();
        if st {
            fans.push(1);
        }
        if fan {
            fans.push(plan.cpus.len() as u32 - 1);
        }
        for subscribers in fans {
            for &mode in &plan.modes {
                for &wait in &plan.waits {
                    out.push((
                        Scenario::RingThroughput {
                            size,
                            wait,
                            mode,
                            subscribers,
                        },
                        thr(size),
                    ));
                    out.push((
                        Scenario::RingLatency {
                            size,
                            wait,
                            mode,
                            subscribers,
                        },
                        lat(size),
                    ));
                }
            }
        }
    }
    out
}

/// Runs one scenario once: sets up the shared memory (and rings, sockets),
/// starts the children on their CPUs, runs the parent's side on this
/// (already pinned) thread.
pub fn measure(ctx: &Ctx<'_>, scenario: Scenario, p: &Params) -> Result<Sample> {
    let len = match scenario {
        Scenario::LinePingPong => floors::line_len(),
        Scenario::SeqlockPingPong { size } => floors::seqlock_len(size),
        Scenario::FutexPingPong => floors::futex_len(),
        Scenario::CopyRingThroughput { size } | Scenario::CopyRingLatency { size } => {
            floors::copy_ring_len(size, p.capacity)
        }
        Scenario::UnixPingPong { .. }
        | Scenario::RingPingPong { .. }
        | Scenario::RingThroughput { .. }
        | Scenario::RingLatency { .. } => CONTROL_SIZE,
    };
    let region = Arc::new(Region::create(len)?);
    let n = scenario.children();

    // Ringbus scenarios: rings (or topics) A parent → children and, for
    // ping-pong, B child → parent, with the parent's ends made before any
    // child starts.
    let measurement = ctx.count.get();
    ctx.count.set(measurement + 1);
    let mut ends = None;
    let mut link = None;
    let mut rings: Vec<RingFiles> = Vec::new();
    if let Some((wait, mode)) = scenario.ring() {
        let cfg = ring::config(p, mode, n)?;
        let pingpong = scenario.metric() == Metric::PingPong;
        let (e, l, files) = ring::parent_setup(ctx.broker, measurement, &cfg, wait, pingpong, p)?;
        ends = Some(e);
        link = Some(l);
        rings = files;
    }
    let (sock_parent, sock_child) = match scenario {
        Scenario::UnixPingPong { .. } => {
            let (a, b) = floors::unix_pair()?;
            (Some(a), Some(b))
        }
        _ => (None, None),
    };

    let specs: Vec<ChildSpec> = (1..=n)
        .map(|role| ChildSpec {
            scenario,
            role,
            cpu: ctx.plan.cpus[role as usize],
            parent_pid: std::process::id() as i32,
            shm_fd: region.fd(),
            shm_len: region.len(),
            sock_fd: sock_child.as_ref().map(AsRawFd::as_raw_fd),
            link: link.clone(),
            params: *p,
        })
        .collect();
    let mut extra: Vec<BorrowedFd<'_>> = sock_child.iter().map(AsFd::as_fd).collect();
    for r in &rings {
        extra.extend(r.fds());
    }
    let children = Children::spawn(ctx.exe, &region, &specs, &extra)?;
    drop(extra);
    drop(sock_child); // the child has its copy; EOF must reach it when we close ours
    drop(rings); // the children and our mappings hold the rings now
    parent_barrier(region.control(), n)?;

    let hist = match scenario {
        Scenario::LinePingPong => Some(floors::line_parent(&region, p, ctx.ticks)?),
        Scenario::SeqlockPingPong { .. } => Some(floors::seqlock_parent(&region, p, ctx.ticks)?),
        Scenario::FutexPingPong => Some(floors::futex_parent(&region, p, ctx.ticks)?),
        Scenario::UnixPingPong { .. } => {
            let sock = sock_parent.context("unix socket missing")?;
            Some(floors::unix_parent(sock, p, ctx.ticks)?)
        }
        Scenario::CopyRingThroughput { .. } | Scenario::CopyRingLatency { .. } => {
            floors::copy_ring_parent(&region, p)?;
            None
        }
        Scenario::RingPingPong { .. } => match ends {
            Some(ring::ParentEnds::PingPong(tx, rx)) => {
                Some(ring::pingpong_parent(&region, tx, rx, p, ctx.ticks)?)
            }
            _ => anyhow::bail!("ping-pong ends missing"),
        },
        Scenario::RingThroughput { .. } | Scenario::RingLatency { .. } => match ends {
            Some(ring::ParentEnds::Stream(tx)) => {
                ring::stream_parent(tx, p)?;
                None
            }
            _ => anyhow::bail!("publisher missing"),
        },
    };
    let results = children.finish()?;
    Ok(match scenario.metric() {
        Metric::PingPong => Sample {
            received: hist.as_ref().map_or(0, |h| h.len()),
            hist,
            msgs_per_s: None,
            lost: 0,
            paired: None,
            vs_seqlock: None,
            resolution: ctx.ticks.resolution_ns(),
        },
        Metric::Throughput | Metric::Latency => Sample {
            resolution: ctx.ticks.resolution_ns(),
            ..merge(&results, scenario.metric())
        },
    })
}

fn merge(results: &[SideResult], metric: Metric) -> Sample {
    let mut hist = None;
    if metric == Metric::Latency {
        let mut h = super::stats::new_hist();
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
        paired: None,
        vs_seqlock: None,
        resolution: 1.0,
    }
}

/// The child's side of `spec.scenario`, after the start barrier.
pub fn child_side(spec: &ChildSpec, region: &Region) -> Result<SideResult> {
    use super::shared::child_barrier;
    use std::os::fd::FromRawFd;
    let p = &spec.params;
    match spec.scenario {
        Scenario::LinePingPong => {
            child_barrier(region.control())?;
            floors::line_child(region)
        }
        Scenario::SeqlockPingPong { .. } => {
            child_barrier(region.control())?;
            floors::seqlock_child(region, p)
        }
        Scenario::FutexPingPong => {
            child_barrier(region.control())?;
            floors::futex_child(region)
        }
        Scenario::UnixPingPong { .. } => {
            let raw = spec
                .sock_fd
                .ok_or_else(|| anyhow::anyhow!("unix ping-pong child without a socket"))?;
            anyhow::ensure!(raw >= 0, "bad socket descriptor {raw}");
            // SAFETY: borrowed only for one fcntl, which fails with EBADF
            // (touching nothing) if the descriptor is not open.
            let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw) };
            rustix::io::fcntl_getfd(borrowed)
                .with_context(|| format!("socket descriptor {raw} is not open"))?;
            // SAFETY: the parent passed this inherited descriptor for this
            // child's exclusive use; nothing else here owns it.
            let sock = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
            child_barrier(region.control())?;
            floors::unix_child(sock, p)
        }
        Scenario::CopyRingThroughput { .. } | Scenario::CopyRingLatency { .. } => {
            child_barrier(region.control())?;
            floors::copy_ring_child(region, p)
        }
        Scenario::RingPingPong { .. }
        | Scenario::RingThroughput { .. }
        | Scenario::RingLatency { .. } => {
            let (wait, mode) = spec.scenario.ring().context("not a ring scenario")?;
            let link = spec.link.as_ref().context("ringbus child without a link")?;
            let cfg = ring::config(p, mode, spec.scenario.children())?;
            let pingpong = spec.scenario.metric() == Metric::PingPong;
            let reader = spec.role.saturating_sub(1) as usize;
            ring::child(region, link, &cfg, wait, pingpong, p, reader)
        }
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
