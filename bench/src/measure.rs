//! Running measurements: one scenario once ([`measure`]: its shared
//! memory, rings or sockets, its child processes, the parent's side), a
//! ringbus row in blocks alternating with its floor
//! ([`measure_paired_blocks`]), and the child's side ([`child_side`]).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::args::Plan;
use super::child::{ChildSpec, Children};
use super::clock::Ticks;
use super::copy_ring;
use super::floors;
use super::params::{Params, SideResult};
use super::ring::{self, RingFiles};
use super::sample::{median_pair, pair_params, Sample};
use super::scenario::{Metric, Scenario};
use super::shared::{parent_barrier, Region, CONTROL_SIZE};
use super::stats::median;

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

/// Blocks a ringbus row is measured in, each right after a block of its
/// floor. The host moves the vCPUs (cross-core latency changes severalfold,
/// sometimes within a second) and other tenants come and go (a floor's
/// rate can change severalfold between consecutive measurements, DESIGN.md
/// "`ringbus bench`: how figures are taken"); a ratio taken per block and
/// then the median over blocks keeps one unlucky moment from deciding it.
pub const PAIR_BLOCKS: u64 = 5;

/// A ringbus row measured in [`PAIR_BLOCKS`] blocks alternating with its
/// floor of the same kind (a ping-pong, a stream's rate or its latency;
/// same counts, same cores): the blocks' samples merged (a stream's rate is
/// the median of the blocks' rates), and the median of the per-block
/// ratios. With `base` ([`Scenario::base`]), each block is followed by a
/// block of that baseline too, for [`Sample::vs_base`], so the row sits
/// between the two.
///
/// # Errors
/// A failed measurement.
pub fn measure_paired_blocks(
    ctx: &Ctx<'_>,
    scenario: Scenario,
    p: &Params,
    floor: (Scenario, &Params),
    base: Option<(Scenario, &Params)>,
) -> Result<Sample> {
    let (floor, floor_params) = floor;
    let block = |q: &Params| Params {
        iters: p.iters.div_ceil(PAIR_BLOCKS).max(1),
        duration_ns: p.duration_ns.map(|d| (d / PAIR_BLOCKS).max(1)),
        ..*q
    };
    let (bp, fp) = (block(p), block(floor_params));
    let mut merged: Option<Sample> = None;
    let (mut ratios, mut vs_base, mut rates) = (Vec::new(), Vec::new(), Vec::new());
    let trace = std::env::var_os("BENCH_TRACE").is_some();
    for _ in 0..PAIR_BLOCKS {
        let f = measure(ctx, floor, &fp)
            .with_context(|| format!("measuring {} (paired)", floor.slug()))?;
        let mut s = measure(ctx, scenario, &bp)?;
        // Same kind on both sides: no RTT / one-way scaling.
        s.pair_with(&f, true, true);
        if trace {
            trace_block(scenario, &f, &s);
        }
        ratios.extend(s.paired);
        rates.extend(s.msgs_per_s);
        if let Some((base, base_params)) = base {
            let b = measure(ctx, base, &block(base_params))
                .with_context(|| format!("measuring {} (paired)", base.slug()))?;
            vs_base.extend(s.ratio_to(&b, true, true));
        }
        merged = Some(match merged {
            None => s,
            Some(m) => m.merge(s),
        });
    }
    let mut m = merged.context("no blocks measured")?;
    m.msgs_per_s = (!rates.is_empty()).then(|| median(rates));
    m.paired = median_pair(&ratios);
    m.vs_base = median_pair(&vs_base);
    Ok(m)
}

/// `BENCH_TRACE=1`: one line per block on stderr, the floor's figure and
/// the ringbus one's beside it, to see which side a row's spread comes
/// from (a floor's rate can swing twofold from block to block).
fn trace_block(scenario: Scenario, floor: &Sample, s: &Sample) {
    // A ping-pong's samples are round trips; a stream's, one-way latencies.
    let p50 = match scenario.metric() {
        Metric::PingPong => "RTT p50",
        _ => "p50",
    };
    let figure = |x: &Sample| match (x.msgs_per_s, &x.hist) {
        (Some(r), _) => format!(
            "{:.1}M msgs/s behind {:.0}",
            r / 1e6,
            x.behind.unwrap_or(0.0)
        ),
        (None, Some(h)) => format!("{p50} {} ns", h.value_at_quantile(0.5)),
        (None, None) => "-".into(),
    };
    let ratio = s.paired.map_or("-".into(), |(r, _)| format!("{r:.3}"));
    eprintln!(
        "block {}: floor {} | ringbus {} | ratio {ratio}",
        scenario.slug(),
        figure(floor),
        figure(s)
    );
}

/// Runs one scenario once: sets up the shared memory (and rings, sockets),
/// starts the children on their CPUs, runs the parent's side on this
/// (already pinned) thread.
pub fn measure(ctx: &Ctx<'_>, scenario: Scenario, p: &Params) -> Result<Sample> {
    let len = match scenario {
        Scenario::LinePingPong => floors::line_len(),
        Scenario::SeqlockPingPong { size } => floors::seqlock_len(size),
        Scenario::FutexPingPong => floors::futex_len(),
        Scenario::FixedRingThroughput { size }
        | Scenario::FixedRingLatency { size }
        | Scenario::CopyRingThroughput { size }
        | Scenario::CopyRingLatency { size }
        | Scenario::ReadOnlyRingThroughput { size } => {
            let kind = copy_ring_kind(scenario).context("not a copy ring")?;
            copy_ring::region_len(kind, size, p.capacity)
        }
        Scenario::UnixPingPong { .. }
        | Scenario::RingPingPong { .. }
        | Scenario::RingThroughput { .. }
        | Scenario::RingLatency { .. }
        | Scenario::PatternPingPong { .. }
        | Scenario::ManyRingsPingPong { .. }
        | Scenario::FilteredThroughput { .. }
        | Scenario::BatchedThroughput { .. }
        | Scenario::LoanedThroughput { .. } => CONTROL_SIZE,
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
        let (e, l, files) = ring::parent_setup(
            ctx.broker,
            measurement,
            &cfg,
            wait,
            pingpong,
            scenario.route(),
            p,
        )?;
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
        Scenario::FixedRingThroughput { .. }
        | Scenario::FixedRingLatency { .. }
        | Scenario::CopyRingThroughput { .. }
        | Scenario::CopyRingLatency { .. }
        | Scenario::ReadOnlyRingThroughput { .. } => {
            let kind = copy_ring_kind(scenario).context("not a copy ring")?;
            copy_ring::parent(&region, p, kind)?;
            None
        }
        Scenario::RingPingPong { .. }
        | Scenario::PatternPingPong { .. }
        | Scenario::ManyRingsPingPong { .. } => match ends {
            // `_idle`: publishers that only hold rings, until the end.
            Some(ring::ParentEnds::PingPong(tx, rx, _idle)) => {
                Some(ring::pingpong_parent(&region, tx, rx, p, ctx.ticks)?)
            }
            _ => anyhow::bail!("ping-pong ends missing"),
        },
        Scenario::RingThroughput { .. }
        | Scenario::RingLatency { .. }
        | Scenario::FilteredThroughput { .. }
        | Scenario::BatchedThroughput { .. }
        | Scenario::LoanedThroughput { .. } => match ends {
            Some(ring::ParentEnds::Stream(tx)) => {
                ring::stream_parent(tx, p, scenario.route())?;
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
            behind: None,
            paired: None,
            vs_base: None,
            resolution: ctx.ticks.resolution_ns(),
        },
        Metric::Throughput | Metric::Latency => Sample {
            resolution: ctx.ticks.resolution_ns(),
            ..Sample::from_sides(&results, scenario.metric())
        },
    })
}

/// Which copy ring a copy-ring scenario runs.
fn copy_ring_kind(scenario: Scenario) -> Option<copy_ring::Kind> {
    match scenario {
        Scenario::FixedRingThroughput { .. } | Scenario::FixedRingLatency { .. } => {
            Some(copy_ring::Kind::Fixed)
        }
        Scenario::CopyRingThroughput { .. } | Scenario::CopyRingLatency { .. } => {
            Some(copy_ring::Kind::RunTime)
        }
        Scenario::ReadOnlyRingThroughput { .. } => Some(copy_ring::Kind::ReadOnly),
        _ => None,
    }
}

/// Bytes each message of a streaming scenario moves from the publisher's
/// core to a subscriber's: a ringbus ring's slot stride (its slot header
/// and the payload, in whole cache lines), a copy ring's slot. What a
/// stream's ratio to its floor is bounded by when both are limited by
/// moving lines between cores. `None` for ping-pongs.
pub fn bytes_per_msg(scenario: Scenario, p: &Params) -> Option<u64> {
    if scenario.metric() == Metric::PingPong {
        return None;
    }
    if let Some(kind) = copy_ring_kind(scenario) {
        return Some(copy_ring::slot_bytes(kind, p.size) as u64);
    }
    let (_, mode) = scenario.ring()?;
    let cfg = ring::config(p, mode, scenario.children()).ok()?;
    Some(cfg.sizes().slot_stride)
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
        Scenario::FixedRingThroughput { .. }
        | Scenario::FixedRingLatency { .. }
        | Scenario::CopyRingThroughput { .. }
        | Scenario::CopyRingLatency { .. }
        | Scenario::ReadOnlyRingThroughput { .. } => {
            let kind = copy_ring_kind(spec.scenario).context("not a copy ring")?;
            child_barrier(region.control())?;
            copy_ring::child(region, p, kind)
        }
        Scenario::RingPingPong { .. }
        | Scenario::RingThroughput { .. }
        | Scenario::RingLatency { .. }
        | Scenario::PatternPingPong { .. }
        | Scenario::ManyRingsPingPong { .. }
        | Scenario::FilteredThroughput { .. }
        | Scenario::BatchedThroughput { .. }
        | Scenario::LoanedThroughput { .. } => {
            let (wait, mode) = spec.scenario.ring().context("not a ring scenario")?;
            let link = spec.link.as_ref().context("ringbus child without a link")?;
            let cfg = ring::config(p, mode, spec.scenario.children())?;
            let pingpong = spec.scenario.metric() == Metric::PingPong;
            let reader = spec.role.saturating_sub(1) as usize;
            ring::child(region, link, &cfg, wait, pingpong, p, reader)
        }
    }
}

/// One run of one row of `list`: the scenario alone (a floor, or a row
/// without one), or paired with its floor measured right next to it.
///
/// A ringbus figure is paired with its floor because the hypervisor may
/// move the vCPUs between cores (this changes cross-core latency
/// severalfold), and adjacent measurements usually share a placement. A
/// row whose floor measures the same thing (a ping-pong, a stream's rate,
/// a stream's latency) alternates with it in blocks, the ratio being the
/// median of the blocks'; the rest (a blocking stream's latency against
/// the futex ping-pong) follow one floor measurement.
///
/// # Errors
/// A failed measurement, or a floor that `list` lacks.
pub fn measure_row(
    ctx: &Ctx<'_>,
    list: &[(Scenario, Params)],
    sc: Scenario,
    params: &Params,
) -> Result<Sample> {
    let floor = sc.floor().filter(|_| !sc.is_floor());
    let floor_params = |f: Scenario| {
        list.iter()
            .find(|(x, _)| *x == f)
            .map(|(_, p)| *p)
            .context("a floor missing from the list")
    };
    Ok(match floor {
        Some(f) if sc.metric() == f.metric() => {
            // Some rows also sit beside a baseline (`Scenario::base`).
            let base = sc.base();
            let base_params = base.map(floor_params).transpose()?;
            measure_paired_blocks(
                ctx,
                sc,
                params,
                (f, &floor_params(f)?),
                base.zip(base_params.as_ref()),
            )
            .with_context(|| format!("measuring {}", sc.slug()))?
        }
        Some(f) => {
            let fp = pair_params(&floor_params(f)?);
            let fs =
                measure(ctx, f, &fp).with_context(|| format!("measuring {} (paired)", f.slug()))?;
            let mut s =
                measure(ctx, sc, params).with_context(|| format!("measuring {}", sc.slug()))?;
            s.pair_with(
                &fs,
                f.metric() == Metric::PingPong,
                sc.metric() == Metric::PingPong,
            );
            s
        }
        None => measure(ctx, sc, params).with_context(|| format!("measuring {}", sc.slug()))?,
    })
}
