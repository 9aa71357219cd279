//! What the bench measures: the list of scenarios a plan expands to, which
//! floor each ringbus figure is compared with, and running one scenario
//! (parent side + children) into a [`Sample`].

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::args::{Plan, ScenarioArg};
use super::child::{ChildSpec, Children, Params, SideResult};
use super::clock::Ticks;
use super::floors;
use super::shared::{parent_barrier, Region};

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
            | Scenario::UnixPingPong { .. } => Metric::PingPong,
            Scenario::CopyRingThroughput { .. } => Metric::Throughput,
            Scenario::CopyRingLatency { .. } => Metric::Latency,
        }
    }

    /// Message size, if the scenario has one.
    pub fn size(self) -> Option<usize> {
        match self {
            Scenario::LinePingPong | Scenario::FutexPingPong => None,
            Scenario::SeqlockPingPong { size }
            | Scenario::UnixPingPong { size }
            | Scenario::CopyRingThroughput { size }
            | Scenario::CopyRingLatency { size } => Some(size),
        }
    }

    /// Whether this is a baseline (no ringbus code).
    pub fn is_floor(self) -> bool {
        true
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
        };
        format!("{base}{size}")
    }

    /// The floor this figure is shown against (ratio = this / floor).
    pub fn floor(self) -> Option<Scenario> {
        match self {
            Scenario::SeqlockPingPong { .. } | Scenario::UnixPingPong { .. } => {
                Some(Scenario::LinePingPong)
            }
            _ => None,
        }
    }

    /// Number of child processes.
    fn children(self) -> u32 {
        1
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
}

/// The figures of one scenario in one run.
#[derive(Clone, Debug)]
pub struct Sample {
    /// RTT (ping-pong) or latency (streaming) samples in ns, merged over
    /// subscribers.
    pub hist: Option<Histogram<u64>>,
    /// Messages per second, summed over subscribers (throughput runs).
    pub msgs_per_s: Option<f64>,
    /// Messages received in the measured part, over all subscribers.
    pub received: u64,
    /// Messages lost (overwrite mode).
    pub lost: u64,
}

/// The scenarios `plan` asks for, floors first, each with its counts.
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
    };
    let pp = plan.scenarios.contains(&ScenarioArg::PingPong);
    let st = plan.scenarios.contains(&ScenarioArg::Streaming) || plan.fan_out();
    if pp {
        out.push((Scenario::LinePingPong, base(64)));
        out.push((Scenario::FutexPingPong, base(64)));
    }
    for &size in &plan.sizes {
        if pp {
            out.push((Scenario::SeqlockPingPong { size }, base(size)));
            out.push((Scenario::UnixPingPong { size }, base(size)));
        }
        if st {
            let thr = Params {
                iters: plan.throughput_msgs(size),
                warmup: plan.warmup.max(1),
                ..base(size)
            };
            out.push((Scenario::CopyRingThroughput { size }, thr));
            let lat = Params {
                rate: plan.rate,
                ..base(size)
            };
            out.push((Scenario::CopyRingLatency { size }, lat));
        }
    }
    out
}

/// Runs one scenario once: sets up the shared memory, starts the children
/// on their CPUs, runs the parent's side on this (already pinned) thread.
pub fn measure(ctx: &Ctx<'_>, scenario: Scenario, p: &Params) -> Result<Sample> {
    let len = match scenario {
        Scenario::LinePingPong => floors::line_len(),
        Scenario::SeqlockPingPong { size } => floors::seqlock_len(size),
        Scenario::FutexPingPong => floors::futex_len(),
        Scenario::UnixPingPong { .. } => super::shared::CONTROL_SIZE,
        Scenario::CopyRingThroughput { size } | Scenario::CopyRingLatency { size } => {
            floors::copy_ring_len(size, p.capacity)
        }
    };
    let region = Arc::new(Region::create(len)?);
    let (sock_parent, sock_child) = match scenario {
        Scenario::UnixPingPong { .. } => {
            let (a, b) = floors::unix_pair()?;
            (Some(a), Some(b))
        }
        _ => (None, None),
    };
    let n = scenario.children();
    let specs: Vec<ChildSpec> = (1..=n)
        .map(|role| ChildSpec {
            scenario,
            role,
            cpu: ctx.plan.cpus[role as usize],
            parent_pid: std::process::id() as i32,
            shm_fd: region.fd(),
            shm_len: region.len(),
            sock_fd: sock_child.as_ref().map(std::os::fd::AsRawFd::as_raw_fd),
            ring_paths: Vec::new(),
            params: *p,
        })
        .collect();
    let extra: Vec<_> = sock_child.iter().map(std::os::fd::AsFd::as_fd).collect();
    let children = Children::spawn(ctx.exe, &region, &specs, &extra)?;
    drop(extra);
    drop(sock_child); // the child has its copy; EOF must reach it when we close ours
    parent_barrier(region.control(), n)?;

    let hist = match scenario {
        Scenario::LinePingPong => Some(floors::line_parent(&region, p, ctx.ticks)?),
        Scenario::SeqlockPingPong { .. } => Some(floors::seqlock_parent(&region, p, ctx.ticks)?),
        Scenario::FutexPingPong => Some(floors::futex_parent(&region, p, ctx.ticks)?),
        Scenario::UnixPingPong { .. } => {
            let sock = sock_parent.expect("created above");
            Some(floors::unix_parent(sock, p, ctx.ticks)?)
        }
        Scenario::CopyRingThroughput { .. } | Scenario::CopyRingLatency { .. } => {
            floors::copy_ring_parent(&region, p)?;
            None
        }
    };
    let results = children.finish()?;
    Ok(match scenario.metric() {
        Metric::PingPong => Sample {
            received: hist.as_ref().map_or(0, |h| h.len()),
            hist,
            msgs_per_s: None,
            lost: 0,
        },
        Metric::Throughput | Metric::Latency => merge(&results, scenario.metric()),
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
    let msgs_per_s = (metric == Metric::Throughput).then(|| {
        results
            .iter()
            .map(|r| r.received as f64 * 1e9 / r.elapsed_ns.max(1) as f64)
            .sum()
    });
    Sample {
        hist,
        msgs_per_s,
        received: results.iter().map(|r| r.received).sum(),
        lost: results.iter().map(|r| r.lost).sum(),
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
    }
}

/// The targets that `rows` allow evaluating.
pub fn targets(_rows: &[super::report::Row]) -> Vec<super::report::Target> {
    Vec::new()
}
