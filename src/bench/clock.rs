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
pub use crate::ring::monotonic_ns;

/// A cheap per-core tick counter and its calibrated conversion to ns.
#[derive(Clone, Copy, Debug)]
pub struct Ticks {
    /// ns per tick × 2^32.
    mult: u64,
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
            return Ticks { mult: 1 << 32 };
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
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
