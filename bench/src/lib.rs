//! `ringbus bench`: ringbus measured against the hardware floor, in one run,
//! on the same pinned cores.
//!
//! The parent process (pinned to the first CPU of `--cpus`) creates the
//! shared memory of each measurement, spawns the other side(s) as separate
//! processes (`current_exe() __bench-child <spec>`, each pinned to its own
//! CPU), meets them at a start barrier, runs the publisher / timing side,
//! and collects each child's result from its stdout. Every latency sample
//! goes into an HdrHistogram; warm-up is excluded; with `--runs N` each
//! figure is the median across runs.
//!
//! Baselines, measured in the same harness (`floors.rs`, `copy_ring.rs`):
//! a cache-line ping-pong (the spin-latency floor), a seqlock slot
//! ping-pong, a futex ping-pong (the blocking floor), a Unix-socket
//! ping-pong, and SPSC copy rings: one with slots of exactly the message
//! size and copies of a compile-time length (the streaming floor), the
//! same ring with its reader reading through a read-only mapping as
//! subscribers that are not trusted do (a second baseline, which every
//! flat-out stream is also measured beside), and one with copies of a
//! run-time length. Streaming rows show the bytes each message moves
//! between cores, which bounds their ratio.
//!
//! The CLI wires two entry points: [`run`] for `ringbus bench` and
//! [`child_main`] for the hidden [`CHILD_SUBCOMMAND`].
//!
//! # What it prints
//!
//! First a [`Summary`]: one table at 64 B (the size the targets
//! are set at), one line per wait strategy, with the ping-pong's one-way
//! p50 and the stream's msgs/s in both modes, each beside the floor it was
//! paired with, the ratio, the target's bound and whether it was met, and
//! the Unix socket's ping-pong for scale. Then the full matrix: every
//! scenario at every size, percentiles, counts, losses, the targets and the
//! notes. `--json` carries both (`summary`, `rows`, `targets`).
//!
//! The matrix is printed by default, below the summary, and there is no
//! `--full` flag to ask for it: a default run takes minutes, and hiding
//! what it measured would leave a reader who wants one more figure (a
//! p99.9, a floor's own value, the losses, another size) to run it all
//! again. The summary being first is what keeps the screen readable: it is
//! the first thing on stdout (the first page of `ringbus bench | less`,
//! the top of the scrollback), and the matrix under it is there to check
//! it against.
//!
//! # Layers
//!
//! The modules, bottom up. Each imports only modules listed before it,
//! never a later one, so there are no import cycles:
//!
//! 1. leaves: `stats` (histograms, percentiles, medians), `clock` (the
//!    tick counter; uses `stats`), `shared` (the memory the processes
//!    share, the start barrier), `args` (the command line and its
//!    [`Plan`]), `progress` (the progress on stderr), `units` (how
//!    figures are written: ns, rates, sizes);
//! 2. `params`: the data every measuring module passes around (`Params`,
//!    the counts of one measurement; `SideResult`, what a child reports);
//! 3. `scenario`: what is measured, as plain data ([`Scenario`],
//!    [`Metric`], names, which floor each figure is compared with, the
//!    list a plan expands to); `driver`: the timing loops the floors and
//!    ringbus share;
//! 4. `floors`, `copy_ring` and `ring`: each side's code of the ping-pong
//!    baselines, of the streaming ones, and of ringbus;
//! 5. `child`: spawning and collecting the other side's processes (their
//!    spec names a `Scenario` and a `ring::Link`); `sample`: one
//!    measurement's figures, blocks merged, ratios to a floor;
//! 6. `measure`: running a scenario (parent side, children, the child's
//!    side) and pairing a ringbus row with its floor in blocks;
//! 7. `row`: one scenario's samples aggregated over runs;
//! 8. `targets`: the targets evaluated on the rows;
//! 9. `summary`: the first table, from the rows and the targets;
//! 10. `report`: everything together, with floors filled in, as the table
//!     (summary, then matrix) and the JSON;
//! 11. `hgrm` and `plot`: files written from a report;
//!
//! and this file on top: [`run`], [`measure()`], [`child_main`].
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod args;
mod child;
mod clock;
mod copy_ring;
mod driver;
mod floors;
mod groups;
mod hgrm;
mod journal;
mod measure;
mod params;
mod plot;
mod progress;
mod report;
mod ring;
mod row;
mod sample;
mod scenario;
mod shared;
mod stats;
mod summary;
mod targets;
mod units;

use std::io::Write;

use anyhow::{Context, Result};
use ringbus::broker::{Config, EmbeddedBroker};

pub use args::{BenchArgs, Plan, ScenarioArg};
pub use child::CHILD_SUBCOMMAND;
pub use report::Report;
pub use row::Row;
pub use scenario::{Metric, Scenario};
pub use summary::Summary;
pub use targets::Target;

/// Runs `ringbus bench` with `args`: prints the table (or JSON) on stdout,
/// writes `--hgrm` / `--plot` files, shows progress on stderr.
///
/// Must be called from the binary that routes [`CHILD_SUBCOMMAND`] to
/// [`child_main`]: the other side of each measurement is that binary
/// re-executed. Children die with the calling thread (`PR_SET_PDEATHSIG`),
/// so call it from a thread that outlives the run (e.g. `main`).
///
/// # Errors
///
/// Bad arguments, unavailable CPUs, a child that fails or stalls, or an
/// output file that cannot be written.
pub fn run(args: &BenchArgs) -> Result<()> {
    let report = measure(args)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", report.to_json())?;
    } else {
        write!(out, "{}", report.to_table())?;
    }
    if let Some(dir) = &args.hgrm {
        let files = hgrm::write_all(&report, dir)?;
        if !args.json {
            writeln!(
                out,
                "wrote {} .hgrm files to {}",
                files.len(),
                dir.display()
            )?;
        }
    }
    if let Some(path) = &args.plot {
        std::fs::write(path, plot::render(&report))
            .with_context(|| format!("writing the --plot file {}", path.display()))?;
        if !args.json {
            writeln!(out, "wrote the latency plot to {}", path.display())?;
        }
    }
    Ok(())
}

/// Runs every measurement `args` asks for and returns the report without
/// printing it.
///
/// # Errors
///
/// As [`run`].
pub fn measure(args: &BenchArgs) -> Result<Report> {
    let allowed = args::allowed_cpus()?;
    let plan = Plan::from_args(args, &allowed)?;
    if let Some(dir) = &args.hgrm {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the --hgrm directory {}", dir.display()))?;
    }
    if let Some(path) = &args.plot {
        // Fail now, not after minutes of measuring.
        std::fs::write(path, "")
            .with_context(|| format!("the --plot file {} is not writable", path.display()))?;
    }
    let exe = std::env::current_exe().context("finding the ringbus executable")?;
    let ticks = clock::Ticks::calibrate();
    // The broker's thread starts before this thread is pinned, so it is
    // free to run on any CPU.
    let broker = if plan.direct {
        None
    } else {
        Some(start_broker(plan.trusted)?)
    };
    let client = match &broker {
        Some(b) => Some(
            b.client()
                .context("connecting to the bench's embedded broker")?,
        ),
        None => None,
    };
    child::pin(plan.cpus[0])?;

    let mut notes = Vec::new();
    if plan.smoke {
        notes.push("smoke mode: tiny counts, the figures mean nothing".to_string());
    }
    notes.push(
        "the cache-line and seqlock floors fence (mfence) after each send: faster than without \
         on the machine this was tuned on (DESIGN.md, \"The floors fence\")"
            .to_string(),
    );
    notes.push(if plan.timestamps {
        "--timestamps: ringbus publishers stamp every message".to_string()
    } else {
        "ringbus publishers stamp only latency-run messages (the library's default is off; \
         --timestamps stamps all)"
            .to_string()
    });
    notes.push(if plan.direct {
        "--direct: ringbus rows use bare Producer / Consumer on memfd rings, no broker".to_string()
    } else {
        "ringbus rows go through an embedded broker: Client, Publisher, Subscriber".to_string()
    });
    notes.push(if plan.trusted {
        "--trusted: subscribers map ring data read-write and poll the latest-message slot"
            .to_string()
    } else if plan.direct && plan.mailboxes {
        "subscribers map ring data read-only and poll a private mailbox (the default; \
         --no-mailboxes polls the ring, --trusted maps the data read-write)"
            .to_string()
    } else {
        "subscribers map ring data read-only (the default; --trusted maps it read-write)"
            .to_string()
    });
    let streams = plan.scenarios.contains(&ScenarioArg::Streaming) || plan.fan_out();
    let exact: Vec<String> = (plan.sizes.iter())
        .filter(|&&s| streams && !scenario::fixed_copy_is_compiled(s))
        .map(|s| format!("{s} B"))
        .collect();
    if !exact.is_empty() {
        notes.push(format!(
            "streaming floor at {}: \"copy ring (exact slots)\", slots of exactly the message \
             size copied with a run-time length; copies of a length known at compile time are \
             built for powers of two ({} B to {} KiB)",
            exact.join(", "),
            args::MIN_SIZE,
            args::MAX_SIZE >> 10
        ));
    }
    if plan.shared_cpus {
        notes.push("CPUs are shared between sides: the figures mean nothing".to_string());
    }
    if plan.scenarios.contains(&ScenarioArg::FanOut) && !plan.fan_out() {
        notes.push(format!(
            "fan-out skipped: it needs at least 3 CPUs in --cpus (have {:?})",
            plan.cpus
        ));
    }

    let list = scenario::list(&plan);
    let ctx = measure::Ctx {
        plan: &plan,
        exe: &exe,
        ticks,
        broker: client.as_ref(),
        count: std::cell::Cell::new(0),
    };
    let mut samples: Vec<Vec<sample::Sample>> = vec![Vec::new(); list.len()];
    let journal_steps = usize::from(plan.scenarios.contains(&ScenarioArg::Journal));
    let group_steps = usize::from(plan.scenarios.contains(&ScenarioArg::Groups));
    let mut progress =
        progress::Progress::new(list.len() * plan.runs as usize + journal_steps + group_steps);
    for run in 0..plan.runs {
        for (k, (sc, params)) in list.iter().enumerate() {
            let size = sc.size().map(|s| format!(" ({s} B)")).unwrap_or_default();
            progress.step(&format!(
                "run {}/{}: {} {}{size}",
                run + 1,
                plan.runs,
                sc.label(),
                sc.metric().name(),
            ));
            samples[k].push(measure::measure_row(&ctx, &list, *sc, params)?);
        }
    }
    let journal = match journal_steps {
        0 => None,
        _ => {
            progress.step(&format!(
                "run {0}/{0}: journal: the disk's write loop, a durable topic, reading it back",
                plan.runs
            ));
            Some(measure_journal(&plan)?)
        }
    };
    let groups = match group_steps {
        0 => None,
        _ => {
            progress.step(&format!(
                "run {0}/{0}: groups: one member against a plain subscriber; 1, 2, 4 members",
                plan.runs
            ));
            Some(measure_groups(&plan)?)
        }
    };
    progress.finish();
    drop(client);
    if let Some(b) = broker {
        b.stop().context("the bench's embedded broker failed")?;
    }
    let rows = list
        .iter()
        .zip(&samples)
        .map(|((sc, p), s)| Row::new(*sc, *p, s))
        .collect();
    let machine = report::Machine::detect(ticks);
    let mut report = Report::new(machine, plan, rows, notes);
    report.journal = journal;
    report.groups = groups;
    Ok(report)
}

/// `--scenarios groups`, on a thread that pins its own threads to the
/// plan's CPUs.
fn measure_groups(plan: &Plan) -> Result<groups::GroupsReport> {
    let cpus = plan.cpus.clone();
    let (runs, smoke) = (plan.runs as usize, plan.smoke);
    std::thread::spawn(move || groups::measure(runs, smoke, &cpus))
        .join()
        .map_err(|_| anyhow::anyhow!("the groups bench panicked"))?
}

/// `--scenarios journal`, on a thread free to run on every CPU of the plan
/// (this one is pinned to the first): the publisher and the broker's
/// recorder are two threads.
fn measure_journal(plan: &Plan) -> Result<journal::JournalReport> {
    let cpus = plan.cpus.clone();
    let sizes = plan.sizes.clone();
    let runs = plan.runs as usize;
    let bytes: u64 = if plan.smoke { 2 << 20 } else { 128 << 20 };
    std::thread::spawn(move || {
        let mut set = rustix::thread::CpuSet::new();
        for c in cpus {
            set.set(c);
        }
        rustix::thread::sched_setaffinity(None, &set).context("unpinning the journal bench")?;
        journal::measure(&sizes, runs, bytes)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the journal bench panicked"))?
}

/// The broker the bench measures through: embedded in this process, in a
/// temporary directory. `trusted`: subscribers get read-write data
/// descriptors (`server.trusted_subscribers`).
fn start_broker(trusted: bool) -> Result<EmbeddedBroker> {
    let mut c = Config::default();
    c.server.trusted_subscribers = trusted;
    // Every measurement opens topics of its own, and opened topics are
    // kept for the broker's life, which is this run's: a full `--runs 3`
    // opens ~1 400 (each paired block is a measurement), past the default
    // limit of 1 024.
    c.limits.max_topics = u32::MAX;
    EmbeddedBroker::with_config(c).context("starting the bench's embedded broker")
}

/// Entry point of a bench child (`ringbus __bench-child <SPEC>`): plays one
/// side of one measurement and prints its result as JSON on stdout.
///
/// # Errors
///
/// A malformed spec (the subcommand is internal), a parent that is gone, or
/// a failure in the measurement; the parent reports it.
pub fn child_main(spec_json: &str) -> Result<()> {
    let (spec, region) = child::child_setup(spec_json)?;
    let result = measure::child_side(&spec, &region);
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            region
                .control()
                .abort
                .store(1, std::sync::atomic::Ordering::Relaxed);
            return Err(e);
        }
    };
    let json = serde_json::to_string(&result).context("encoding the child's result")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{json}")?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::args::{BenchArgs, Plan};
    use super::params::Params;
    use super::report::{Machine, Report};
    use super::row::Row;
    use super::sample::Sample;
    use super::scenario::Scenario;
    use super::stats::new_hist;
    use ringbus::ring::Mode;
    use ringbus::wait::WaitStrategy;

    fn params(size: usize) -> Params {
        Params {
            size,
            iters: 1000,
            warmup: 10,
            rate: 0,
            capacity: 64,
            duration_ns: None,
            timestamps: true,
            trusted: false,
            mailboxes: false,
        }
    }

    /// A ping-pong sample whose RTTs are `rtt` (1000 of them).
    fn pingpong(rtt: u64) -> Sample {
        let mut h = new_hist();
        h.record_n(rtt, 1000).unwrap();
        Sample {
            hist: Some(h),
            msgs_per_s: None,
            received: 1000,
            lost: 0,
            behind: None,
            paired: None,
            vs_base: None,
            resolution: 1.0,
        }
    }

    fn throughput(msgs_per_s: f64) -> Sample {
        Sample {
            hist: None,
            msgs_per_s: Some(msgs_per_s),
            received: 1000,
            lost: 0,
            behind: None,
            paired: None,
            vs_base: None,
            resolution: 1.0,
        }
    }

    #[test]
    fn report_pairs_floors_evaluates_targets_and_renders() {
        let plan = Plan::from_args(
            &BenchArgs {
                sizes: Some(vec![64]),
                ..Default::default()
            },
            &[0, 1],
        )
        .unwrap();
        let spin = Scenario::RingPingPong {
            size: 64,
            wait: WaitStrategy::Spin,
            mode: Mode::Overwrite,
        };
        let stream = Scenario::RingThroughput {
            size: 64,
            wait: WaitStrategy::Spin,
            mode: Mode::Overwrite,
            subscribers: 1,
        };
        // Two runs; each ringbus sample paired with the floor just before it.
        // Run 1 in a slow vCPU placement, run 2 in a fast one: the paired
        // ratio is 2.25 in both, whatever the placement.
        let mut spins = vec![pingpong(360), pingpong(180)];
        spins[0].pair_with(&pingpong(160), true, true);
        spins[1].pair_with(&pingpong(80), true, true);
        // And beside a seqlock ping-pong (the floor): 1.125, 1.0.
        spins[0].vs_base = Some((1.125, Some(1.4)));
        spins[1].vs_base = Some((1.0, Some(1.2)));
        let mut streams = vec![throughput(8e6), throughput(4e6)];
        // How far behind the subscriber ran, per run: the row has the median.
        streams[0].behind = Some(30.0);
        streams[1].behind = Some(50.0);
        streams[0].pair_with(&throughput(10e6), false, false);
        streams[1].pair_with(&throughput(5e6), false, false);
        // And beside the copy ring with a read-only reader.
        streams[0].vs_base = Some((1.5, None));
        streams[1].vs_base = Some((1.3, None));
        let rows = vec![
            Row::new(Scenario::LinePingPong, params(64), &[pingpong(80)]),
            Row::new(spin, params(64), &spins),
            Row::new(
                Scenario::FixedRingThroughput { size: 64 },
                params(64),
                &[throughput(10e6)],
            ),
            Row::new(
                Scenario::ReadOnlyRingThroughput { size: 64 },
                params(64),
                &[throughput(6e6)],
            ),
            Row::new(stream, params(64), &streams),
        ];
        let machine = Machine {
            cpu_model: "test CPU".into(),
            cpus_online: 2,
            kernel: "6.0".into(),
            rtt_clock: "test".into(),
        };
        let report = Report::new(machine, plan, rows, vec!["a note".into()]);

        let spin_row = &report.rows[1];
        assert_eq!(spin_row.floor.as_deref(), Some("floor: cache line"));
        assert!((spin_row.ratio.unwrap() - 2.25).abs() < 0.01);
        assert_eq!(spin_row.latency.unwrap().count, 2000);
        assert!(
            (spin_row.latency.unwrap().p50 - 135.0).abs() < 1.0,
            "median of 180, 90"
        );
        let stream_row = &report.rows[4];
        assert_eq!(
            stream_row.floor.as_deref(),
            Some("floor: copy ring (fixed size)")
        );
        assert!((stream_row.ratio.unwrap() - 0.8).abs() < 1e-9);
        assert!((stream_row.ratio_read_only_ring.unwrap() - 1.4).abs() < 1e-9);
        assert_eq!(stream_row.ratio_seqlock, None);
        // A ring slot: the 32-byte header and 64 bytes of payload, in half
        // cache lines; the floor moves the payload only.
        assert_eq!(stream_row.bytes_per_msg, Some(96));
        assert_eq!(report.rows[2].bytes_per_msg, Some(64));
        let base = &report.rows[3];
        assert_eq!(base.name, "base: copy ring (read-only reader)");
        assert_eq!(base.bytes_per_msg, Some(64), "the floor's slots");
        assert!(
            (base.ratio.unwrap() - 0.6).abs() < 1e-9,
            "ratio of the medians"
        );

        let t: Vec<_> = report
            .targets
            .iter()
            .map(|t| (t.what.as_str(), t.met))
            .collect();
        assert!(t.contains(&(
            "spin overwrite 64 B ping-pong p50 / cache-line floor (stricter)",
            false
        )));
        assert!(
            (spin_row.ratio_seqlock.unwrap() - 1.0625).abs() < 1e-9,
            "median of the runs' seqlock ratios"
        );
        assert!(t.contains(&("spin overwrite 64 B ping-pong p50 / seqlock floor", true)));
        assert!(t.contains(&("spin overwrite 64 B ping-pong p99.9 / seqlock floor", true)));
        assert!(t.contains(&(
            "spin overwrite 64 B streaming msgs/s / copy ring (fixed size) (at least)",
            true
        )));

        // The summary: the spin line only (no other wait ran), both
        // references of its ping-pong with the targets' verdicts, the
        // stream beside its floor.
        let summary = &report.summary;
        assert_eq!(summary.size, 64);
        assert_eq!(summary.lines.len(), 1);
        assert_eq!(summary.lines[0].wait, WaitStrategy::Spin);
        let pp = summary.lines[0].ping_pong_p50.as_ref().unwrap();
        assert!((pp.ringbus.overwrite.unwrap() - 135.0).abs() < 1.0);
        assert_eq!(pp.ringbus.backpressure, None, "not measured");
        let names: Vec<&str> = pp.against.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["base: seqlock copy", "floor: cache line"]);
        assert!((pp.against[0].ratio.overwrite.unwrap() - 1.0625).abs() < 1e-9);
        assert_eq!(pp.against[0].met.overwrite, Some(true));
        assert_eq!(
            pp.against[1].value,
            Some(40.0),
            "the floor row's one-way p50"
        );
        assert_eq!(pp.against[1].met.overwrite, Some(false));
        assert_eq!(pp.against[1].bound.unwrap().value, 1.15);
        let st = summary.lines[0].streaming_msgs_per_s.as_ref().unwrap();
        assert_eq!(st.ringbus.overwrite, Some(6e6), "median of 8e6 and 4e6");
        assert_eq!(st.against[0].value, Some(10e6));
        assert_eq!(st.against[0].met.overwrite, Some(true));
        assert!(st.against[0]
            .bound
            .is_some_and(|b| !b.at_most && b.value == 0.65));
        assert_eq!(st.against[1].name, "base: copy ring (read-only reader)");
        assert_eq!(st.against[1].ratio.overwrite, Some(1.4));
        assert_eq!(st.against[1].bound, None);

        let table = report.to_table();
        assert!(table.starts_with("Summary at 64 B"), "{table}");
        let spin_line = table.find("\n  spin ").expect("a spin line");
        assert!(spin_line < table.find("Ping-pong: one-way").unwrap());
        assert!(table.contains("≤1.15 MISSED") && table.contains("≥0.65 met"));
        assert!(table.contains("ringbus spin/overwrite") && table.contains("2.25"));
        assert!(table.contains("note: a note"));
        assert!(
            table.contains("slowed the copy ring on this host (64 B: 0.60x, against the floor)"),
            "the read-only reader's ring ran at 0.6x its floor: {table}"
        );
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["rows"].as_array().unwrap().len(), 5);
        assert_eq!(json["rows"][4]["bytes_per_msg"], 96);
        assert_eq!(json["rows"][4]["behind"], 40.0);
        assert_eq!(json["rows"][4]["ratio_read_only_ring"], 1.4);
        assert_eq!(json["rows"][1]["rtt"]["count"], 2000);
        assert_eq!(
            json["rows"][1]["per_run"][0]["p50"], 180.0,
            "one-way of run 1"
        );
        assert_eq!(json["rows"][1]["per_run"][1]["ratio"], 2.25);
        assert_eq!(json["summary"]["lines"][0]["wait"], "spin");
        assert_eq!(
            json["summary"]["lines"][0]["ping_pong_p50"]["against"][1]["met"]["overwrite"],
            false
        );

        let svg = super::plot::render(&report);
        assert_eq!(
            svg.matches("<polyline").count(),
            2,
            "line floor + ringbus spin"
        );
        assert!(svg.contains("stroke-dasharray"), "floors are dashed");
        let hgrm = super::hgrm::render(report.rows[1].merged.as_ref().unwrap(), 2.0);
        assert!(hgrm.contains("Total count    =         2000"));
    }
}
