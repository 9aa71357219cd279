//! Clocks for the bench.
//!
//! * Round trips are timed on one core by one process, so they use the
//!   cheapest counter there is: the TSC on x86_64 (`rdtsc`, a few ns, versus
//!   about 20 ns for `clock_gettime`), converted to ns with a factor
//!   calibrated against `CLOCK_MONOTONIC` at start-up. Elsewhere they fall
//!   back to `CLOCK_MONOTONIC`.
//! * End-to-end latencies cross processes and compare with the publish
//!   timestamp in the message, so they use `CLOCK_MONOTONIC` (the clock the
//!   ring stamps messages with).

use std::time::Duration;

/// `CLOCK_MONOTONIC` in nanoseconds (vDSO, no syscall): the clock ring
/// timestamps are compared with.
pub use ringbus::ring::monotonic_ns;

/// A cheap per-core tick counter and its calibrated conversion to ns.
#[derive(Clone, Copy, Debug)]
pub struct Ticks {
    /// ns per tick × 2^32.
    mult: u64,
    /// How far apart, in ticks, the values the counter returns are (see
    /// [`Ticks::resolution_ns`]).
    step: u64,
}

impl Ticks {
    /// Reads the counter.
    #[inline(always)]
    pub fn now() -> u64 {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: `rdtsc` has no preconditions; it is present on every
            // x86_64 CPU and only reads a counter.
            unsafe { core::arch::x86_64::_rdtsc() }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            monotonic_ns()
        }
    }

    /// Measures the counter's rate against `CLOCK_MONOTONIC` over three
    /// 7 ms sleeps and averages them (long enough that the few ns of skew
    /// between the paired reads is below 1e-6).
    pub fn calibrate() -> Ticks {
        if !cfg!(target_arch = "x86_64") {
            return Ticks {
                mult: 1 << 32,
                step: 1,
            };
        }
        let mut best: Option<f64> = None;
        for _ in 0..3 {
            let (n0, t0) = (monotonic_ns(), Self::now());
            std::thread::sleep(Duration::from_millis(7));
            let (n1, t1) = (monotonic_ns(), Self::now());
            if t1 <= t0 || n1 <= n0 {
                continue;
            }
            let ns_per_tick = (n1 - n0) as f64 / (t1 - t0) as f64;
            best = Some(match best {
                Some(b) => (b + ns_per_tick) / 2.0,
                None => ns_per_tick,
            });
        }
        let ns_per_tick = best.unwrap_or(1.0);
        Ticks {
            mult: (ns_per_tick * 4_294_967_296.0).round() as u64,
            step: Self::measure_step(),
        }
    }

    /// The counter's step in ticks. Under some hypervisors the TSC reads in
    /// coarse steps: on the 2-vCPU EPYC guest we measure on, every value is
    /// a multiple of ~26 ticks (10 ns) apart, so a 100 ns round trip reads
    /// as 90, 100 or 110 and a median lands on a 10 ns grid — as coarse as
    /// the 15 % the ping-pong target allows. Measured by timing waits of
    /// many lengths (0 to ~400 loop turns) and looking at which differences
    /// occur: on a fine counter they fill a range, on a stepped one they
    /// bunch at multiples of the step. Returns the median distance between
    /// neighbouring bunches, or 1 if there is one bunch.
    fn measure_step() -> u64 {
        const READS: u64 = 20_000;
        let mut seen = std::collections::BTreeMap::<u64, u64>::new();
        for i in 0..READS {
            let turns = (i * 37) % 400;
            let t0 = Self::now();
            for k in 0..turns {
                std::hint::black_box(k);
            }
            *seen.entry(Self::now().wrapping_sub(t0)).or_default() += 1;
        }
        step_of(&seen, READS / 1000)
    }

    /// The spacing of the values the counter returns, in ns (at least 1):
    /// what a single sample can resolve. Percentiles interpolate within it
    /// (`stats::Percentiles::of`).
    pub fn resolution_ns(self) -> f64 {
        (self.step as f64 * self.ns_per_tick()).max(1.0)
    }

    /// Converts a tick difference to ns.
    #[inline(always)]
    pub fn to_ns(self, ticks: u64) -> u64 {
        ((u128::from(ticks) * u128::from(self.mult)) >> 32) as u64
    }

    /// ns per tick, for the report.
    pub fn ns_per_tick(self) -> f64 {
        self.mult as f64 / 4_294_967_296.0
    }
}

/// The step behind the differences `seen` (difference → how often): the
/// differences seen at least `min_count` times, grouped into bunches of
/// neighbours at most 2 apart; the median distance between the weighted
/// centres of neighbouring bunches, or 1 for a single bunch.
fn step_of(seen: &std::collections::BTreeMap<u64, u64>, min_count: u64) -> u64 {
    // (weighted sum, count, last difference) per bunch.
    let mut bunches: Vec<(f64, f64, u64)> = Vec::new();
    for (&d, &n) in seen.iter().filter(|(_, &n)| n >= min_count.max(1)) {
        match bunches.last_mut() {
            Some((sum, count, last)) if d - *last <= 2 => {
                *sum += d as f64 * n as f64;
                *count += n as f64;
                *last = d;
            }
            _ => bunches.push((d as f64 * n as f64, n as f64, d)),
        }
    }
    let centres: Vec<f64> = bunches.iter().map(|(s, n, _)| s / n).collect();
    let gaps: Vec<f64> = centres.windows(2).map(|w| w[1] - w[0]).collect();
    if gaps.is_empty() {
        return 1;
    }
    (super::stats::median(gaps).round() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn a_stepped_counter_is_recognised() {
        // As measured on the EPYC guest: multiples of ~26 ticks, a few
        // stray 1s and 259s.
        let seen: BTreeMap<u64, u64> = [
            (1, 35),
            (26, 2161),
            (52, 1844),
            (78, 1477),
            (104, 1572),
            (130, 1854),
            (259, 23),
            (260, 1757),
            (312, 468),
            (500, 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(step_of(&seen, 20), 26);
    }

    #[test]
    fn a_fine_counter_has_step_one() {
        let seen: BTreeMap<u64, u64> = (30..400).map(|d| (d, 50 + d % 7)).collect();
        assert_eq!(step_of(&seen, 20), 1);
        assert_eq!(step_of(&BTreeMap::new(), 20), 1);
        let t = Ticks::calibrate();
        assert!(t.resolution_ns() >= 1.0 && t.resolution_ns() < 1_000.0);
    }

    #[test]
    fn ticks_convert_roughly_to_wall_time() {
        let t = Ticks::calibrate();
        let (n0, t0) = (monotonic_ns(), Ticks::now());
        std::thread::sleep(Duration::from_millis(20));
        let (n1, t1) = (monotonic_ns(), Ticks::now());
        let wall = (n1 - n0) as f64;
        let ticks = t.to_ns(t1 - t0) as f64;
        assert!((ticks / wall - 1.0).abs() < 0.05, "{ticks} vs {wall}");
    }
}
