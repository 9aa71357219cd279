//! The publish timestamp clock: CLOCK_MONOTONIC nanoseconds, read cheaply.
//!
//! A vDSO `clock_gettime` costs ~23 ns on the reference machine (KVM, TSC
//! clocksource) — three times the rest of a 64-byte publish, and on the
//! message's critical path. Where the TSC is invariant (`constant_tsc` and
//! `nonstop_tsc`), [`Clock`] reads the TSC instead (`rdtsc`, not
//! serialising, so it overlaps the payload copy) and maps ticks to
//! CLOCK_MONOTONIC with a linear fit that it re-anchors against
//! `clock_gettime` once per millisecond of TSC time. The slope is refitted
//! over the whole life of the clock at each anchor, so after the first
//! milliseconds the error is a few nanoseconds; values never go backwards.
//! Elsewhere it falls back to `clock_gettime`.

use crate::ring::monotonic_ns;

/// Re-anchor after this many nanoseconds of TSC time.
const ANCHOR_NS: u64 = 1_000_000;

/// A per-publisher CLOCK_MONOTONIC source (see the module docs).
#[derive(Debug, Clone)]
pub struct Clock {
    tsc: Option<TscFit>,
}

#[derive(Debug, Clone)]
struct TscFit {
    first_tsc: u64,
    first_ns: u64,
    base_tsc: u64,
    base_ns: u64,
    /// Nanoseconds per tick, fixed point with 32 fractional bits.
    mult: u64,
    /// Ticks after `base_tsc` at which to re-anchor.
    anchor_ticks: u64,
    last: u64,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock, calibrated now (takes ~100 µs when the TSC is used).
    pub fn new() -> Clock {
        Clock {
            tsc: if tsc_usable() {
                TscFit::calibrate()
            } else {
                None
            },
        }
    }

    /// A clock that always calls `clock_gettime`.
    pub fn vdso() -> Clock {
        Clock { tsc: None }
    }

    /// Whether this clock reads the TSC.
    pub fn uses_tsc(&self) -> bool {
        self.tsc.is_some()
    }

    /// CLOCK_MONOTONIC nanoseconds.
    #[inline(always)]
    pub fn now(&mut self) -> u64 {
        match &mut self.tsc {
            Some(fit) => fit.now(),
            None => monotonic_ns(),
        }
    }
}

/// The time-stamp counter (0 where there is none to read).
#[cfg(all(target_arch = "x86_64", not(any(miri, loom))))]
#[inline(always)]
pub(crate) fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` has no memory effects; x86_64 always has it.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(all(target_arch = "x86_64", not(any(miri, loom))))]
fn tsc_usable() -> bool {
    // Invariant TSC: constant rate and keeps counting in deep C-states; the
    // kernel also uses it as its clocksource only when it trusts it.
    let flags_ok = cpuinfo("flags").is_some_and(|flags| {
        let has = |flag| flags.split_whitespace().any(|f| f == flag);
        has("constant_tsc") && has("nonstop_tsc")
    });
    let source_ok =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .map(|s| s.trim() == "tsc")
            .unwrap_or(false);
    flags_ok && source_ok
}

#[cfg(not(all(target_arch = "x86_64", not(any(miri, loom)))))]
fn tsc_usable() -> bool {
    false
}

#[cfg(not(all(target_arch = "x86_64", not(any(miri, loom)))))]
pub(crate) fn rdtsc() -> u64 {
    0
}

/// The value of `key` in the first CPU's record of `/proc/cpuinfo`
/// (`None` where the file or the key is missing). Read up to that line
/// only: the kernel writes the file CPU by CPU as it is read, each with
/// its clock rate, and a many-core machine has hundreds of them.
pub(crate) fn cpuinfo(key: &str) -> Option<String> {
    let file = std::io::BufReader::new(std::fs::File::open("/proc/cpuinfo").ok()?);
    cpuinfo_field(std::io::BufRead::lines(file).map_while(Result::ok), key)
}

/// The first value of `key` among the `lines` of `/proc/cpuinfo`.
fn cpuinfo_field(lines: impl IntoIterator<Item = impl AsRef<str>>, key: &str) -> Option<String> {
    lines.into_iter().find_map(|line| {
        let (k, value) = line.as_ref().split_once(':')?;
        (k.trim() == key).then(|| value.trim().to_owned())
    })
}

/// TSC ticks per microsecond where the TSC is invariant (see the module
/// docs), measured once per process (~100 µs); `None` elsewhere.
pub(crate) fn tsc_ticks_per_us() -> Option<u64> {
    static TICKS: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        if !tsc_usable() {
            return None;
        }
        let fit = TscFit::calibrate()?;
        // `mult` is ns per tick with 32 fractional bits.
        let ticks = (1000u128 << 32) / u128::from(fit.mult);
        u64::try_from(ticks).ok().filter(|&t| t > 0)
    })
}

/// One (tsc, ns) pair, the ns read bracketed by two TSC reads; the pair is
/// taken from the tightest of a few tries.
fn anchor() -> (u64, u64) {
    let mut best = (u64::MAX, 0, 0);
    for _ in 0..5 {
        let a = rdtsc();
        let ns = monotonic_ns();
        let b = rdtsc();
        let width = b.wrapping_sub(a);
        if width < best.0 {
            best = (width, a + width / 2, ns);
        }
    }
    (best.1, best.2)
}

impl TscFit {
    fn calibrate() -> Option<TscFit> {
        let (t0, n0) = anchor();
        let (mut t1, mut n1) = anchor();
        while n1.saturating_sub(n0) < 100_000 {
            std::hint::spin_loop();
            (t1, n1) = anchor();
        }
        let ticks = t1.checked_sub(t0).filter(|&t| t > 0)?;
        let mult = (((n1 - n0) as u128) << 32) / ticks as u128;
        let mult = u64::try_from(mult).ok().filter(|&m| m > 0)?;
        let anchor_ticks = ((ANCHOR_NS as u128) << 32) / mult as u128;
        Some(TscFit {
            first_tsc: t0,
            first_ns: n0,
            base_tsc: t1,
            base_ns: n1,
            mult,
            anchor_ticks: anchor_ticks as u64,
            last: n1,
        })
    }

    #[inline(always)]
    fn now(&mut self) -> u64 {
        let dt = rdtsc().wrapping_sub(self.base_tsc);
        if dt >= self.anchor_ticks {
            return self.reanchor();
        }
        let ns = self.base_ns + ((u128::from(dt) * u128::from(self.mult)) >> 32) as u64;
        // Never backwards across a re-anchor.
        let ns = ns.max(self.last);
        self.last = ns;
        ns
    }

    #[cold]
    fn reanchor(&mut self) -> u64 {
        let (t, n) = anchor();
        let ticks = t.wrapping_sub(self.first_tsc);
        if ticks > 0 && n > self.first_ns {
            let mult = (u128::from(n - self.first_ns) << 32) / u128::from(ticks);
            if let Ok(m) = u64::try_from(mult) {
                if m > 0 {
                    self.mult = m;
                    self.anchor_ticks = (((ANCHOR_NS as u128) << 32) / u128::from(m)) as u64;
                }
            }
        }
        self.base_tsc = t;
        self.base_ns = n;
        let ns = n.max(self.last);
        self.last = ns;
        ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_fields_are_the_first_cpus() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu constant_tsc\n\n\
                    processor\t: 1\nvendor_id\t: Other\n";
        let field = |key| cpuinfo_field(text.lines(), key);
        assert_eq!(field("vendor_id").as_deref(), Some("AuthenticAMD"));
        assert_eq!(field("flags").as_deref(), Some("fpu constant_tsc"));
        assert_eq!(field("processor").as_deref(), Some("0"));
        // Other architectures' cpuinfo has no vendor_id line.
        assert_eq!(
            cpuinfo_field("BogoMIPS\t: 50.00\n".lines(), "vendor_id"),
            None
        );
        assert_eq!(cpuinfo_field("".lines(), "flags"), None);
    }

    #[test]
    #[cfg_attr(miri, ignore = "reads the real clock")]
    fn tracks_clock_monotonic_and_never_goes_back() {
        let mut c = Clock::new();
        let mut prev = 0;
        for i in 0..200_000u32 {
            let before = monotonic_ns();
            let t = c.now();
            let after = monotonic_ns();
            assert!(t >= prev, "went backwards: {t} < {prev}");
            prev = t;
            if i % 1000 == 0 {
                // Within 50 µs of the kernel's clock (the fit is far closer;
                // the slack absorbs preemption between the three reads).
                assert!(
                    t + 50_000 >= before && t <= after + 50_000,
                    "{before} <= {t} <= {after}"
                );
            }
        }
    }
}
