//! What the probes share: the bare cache-line ping-pong they are measured
//! against, and how a run's batch timings become one figure.

#![warn(clippy::undocumented_unsafe_blocks)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ringbus::wait::pin_current_thread;

pub type Error = Box<dyn std::error::Error>;

/// Round trips per run.
pub const ITERS: u64 = 30_000;
/// Round trips timed together (one clock read per batch, not per trip).
pub const BATCH: u64 = 100;

/// One cache line per direction.
#[repr(align(128))]
struct Line(AtomicU64);

/// Round trips of the bare cache-line ping-pong between `cpus`, in ns
/// (batch means).
pub fn floor(cpus: [usize; 2]) -> Result<Vec<f64>, Error> {
    static LINES: [Line; 2] = [Line(AtomicU64::new(0)), Line(AtomicU64::new(0))];
    let base = LINES[0].0.load(Ordering::Relaxed);
    let echo = std::thread::spawn(move || {
        pin_current_thread(cpus[1]).ok();
        for i in base + 1..=base + ITERS {
            while LINES[0].0.load(Ordering::Acquire) != i {
                std::hint::spin_loop();
            }
            LINES[1].0.store(i, Ordering::Release);
        }
    });
    pin_current_thread(cpus[0])?;
    let rtt = timed(|n| {
        let i = base + 1 + n;
        LINES[0].0.store(i, Ordering::Release);
        while LINES[1].0.load(Ordering::Acquire) != i {
            std::hint::spin_loop();
        }
        Ok(())
    })?;
    echo.join().map_err(|_| "echo thread panicked")?;
    Ok(rtt)
}

/// Runs `round_trip(n)` for `n` in `0..ITERS` and times them in batches of
/// [`BATCH`] (one clock read per batch): the batch means, in ns.
#[inline(always)]
pub fn timed(mut round_trip: impl FnMut(u64) -> Result<(), Error>) -> Result<Vec<f64>, Error> {
    let mut rtt = Vec::with_capacity((ITERS / BATCH) as usize);
    let mut t = Instant::now();
    for n in 0..ITERS {
        round_trip(n)?;
        if (n + 1) % BATCH == 0 {
            rtt.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
            t = Instant::now();
        }
    }
    Ok(rtt)
}

/// One-way ns: the median batch-mean round trip after a tenth of warm-up,
/// halved.
pub fn one_way(mut rtt: Vec<f64>) -> f64 {
    let rtt = rtt.split_off(rtt.len() / 10);
    median(rtt) / 2.0
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `rounds` rounds on two CPUs; each measures the floor, then every
/// variant (`run(i)` returns variant `i`'s round trips), and prints each
/// variant's median one-way time and median per-round ratio to the floor.
pub fn compare(
    title: &str,
    rounds: usize,
    names: &[&str],
    mut run: impl FnMut([usize; 2], usize) -> Result<Vec<f64>, Error>,
) -> Result<(), Error> {
    let cpus = match ringbus::wait::available_cores().as_slice() {
        [a, b, ..] => [*a, *b],
        _ => return Err("needs two CPUs".into()),
    };
    let mut floors = Vec::new();
    let mut ratios = vec![Vec::new(); names.len()];
    let mut figures = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        let f = one_way(floor(cpus)?);
        floors.push(f);
        for i in 0..names.len() {
            let r = one_way(run(cpus, i)?);
            ratios[i].push(r / f);
            figures[i].push(r);
        }
    }
    println!("{title}, CPUs {cpus:?}, {rounds} rounds of {ITERS} round trips");
    let w = names.iter().map(|n| n.len()).max().unwrap_or(0).max(16);
    println!(
        "{:w$} {:>8.1} ns one-way (median)",
        "cache-line floor",
        median(floors)
    );
    for (i, name) in names.iter().enumerate() {
        // The middle half of the rounds: how far one ring instance (each
        // round makes new ones) is from another in the same placement.
        let mut sorted = ratios[i].clone();
        sorted.sort_by(f64::total_cmp);
        let (lo, hi) = (sorted[sorted.len() / 4], sorted[sorted.len() * 3 / 4]);
        println!(
            "{name:w$} {:>8.1} ns one-way, {:.2}× the floor (median of per-round ratios; middle half {lo:.2}–{hi:.2})",
            median(figures[i].clone()),
            median(ratios[i].clone())
        );
    }
    Ok(())
}
