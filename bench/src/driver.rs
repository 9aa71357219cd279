//! Loops shared by the floors and the ringbus scenarios: the timed
//! ping-pong driver, the publisher's pacing and the subscriber's receipts.
//! Keeping them common means a floor and the ringbus figure it is compared
//! with are timed by exactly the same code.

use std::time::{Duration, Instant};

use anyhow::Result;
use hdrhistogram::Histogram;

use super::clock::{monotonic_ns, Ticks};
use super::params::{Params, SideResult, LOOK_BEHIND_EVERY};
use super::stats::new_hist;

/// How many loop iterations pass between two looks at the clock in
/// `--duration` mode.
const CLOCK_EVERY: u64 = 256;

/// When a driving loop stops: after `warmup + iters`, or `duration` after
/// the warm-up.
pub struct Budget {
    warmup: u64,
    total: u64,
    duration: Option<Duration>,
    measured_since: Option<Instant>,
}

impl Budget {
    /// The budget of one measurement.
    pub fn new(p: &Params) -> Budget {
        Budget {
            warmup: p.warmup,
            total: if p.duration_ns.is_some() {
                u64::MAX
            } else {
                p.warmup.saturating_add(p.iters)
            },
            duration: p.duration_ns.map(Duration::from_nanos),
            measured_since: None,
        }
    }

    /// Whether the `n`th (1-based) iteration is recorded.
    #[inline(always)]
    pub fn measured(&self, n: u64) -> bool {
        n > self.warmup
    }

    /// Whether another iteration follows the `n`th (1-based).
    #[inline(always)]
    pub fn more_after(&mut self, n: u64) -> bool {
        if n >= self.total {
            return false;
        }
        match self.duration {
            None => true,
            Some(d) => {
                if n == self.warmup {
                    self.measured_since = Some(Instant::now());
                }
                if n % CLOCK_EVERY != 0 {
                    return true;
                }
                match self.measured_since {
                    Some(t) => t.elapsed() < d,
                    None => true,
                }
            }
        }
    }
}

/// The ping-pong clock. The loop calls [`Lap::sent`] right after each
/// send; a sample is the time from one send to the next — one whole round
/// trip of the loop (wait for the echo, take it, send again), the period a
/// ping-pong actually runs at. Reading the clock *before* a send measured
/// worse than this: `rdtsc` holds up the instructions behind it for ~10 ns
/// on the machines we run, so the ring's multi-line message went out later
/// while the one-store floor hardly noticed (+0.05–0.1× on the ratio in
/// `bench/probes/mapping_probe.rs`, DESIGN.md "Where the ping-pong nanoseconds
/// go"). After the send, the read and the histogram update overlap the
/// message's flight.
pub struct Lap<'a> {
    hist: &'a mut Histogram<u64>,
    ticks: Ticks,
    last: Option<u64>,
    record: bool,
}

impl Lap<'_> {
    /// Marks a send: closes the previous period (recorded unless it is
    /// warm-up) and opens the next.
    #[inline(always)]
    pub fn sent(&mut self) {
        let now = Ticks::now();
        if let (Some(last), true) = (self.last, self.record) {
            self.hist
                .saturating_record(self.ticks.to_ns(now.wrapping_sub(last)));
        }
        self.last = Some(now);
    }
}

/// Runs a timed ping-pong: `round_trip(n, lap)` sends message `n`
/// (1-based), calls `lap.sent()` at once, and waits for its echo. Returns
/// the histogram of round trips in ns (see [`Lap`]), warm-up excluded. The
/// round trip of message `n` ends at the send of `n + 1`, so one more
/// message goes out than are measured.
#[inline(always)]
pub fn drive_pingpong(
    p: &Params,
    ticks: Ticks,
    mut round_trip: impl FnMut(u64, &mut Lap<'_>) -> Result<()>,
) -> Result<Histogram<u64>> {
    let mut hist = new_hist();
    let mut budget = Budget::new(p);
    let mut lap = Lap {
        hist: &mut hist,
        ticks,
        last: None,
        record: false,
    };
    // Message `n`'s send closes the round trip of `n - 1`.
    let mut n = 1u64;
    round_trip(n, &mut lap)?;
    loop {
        lap.record = budget.measured(n);
        let more = budget.more_after(n);
        n += 1;
        round_trip(n, &mut lap)?;
        if !more {
            return Ok(hist);
        }
    }
}

/// Publishes at a fixed rate: `wait()` spins until the next message is due
/// and returns the current `CLOCK_MONOTONIC` ns (the message's timestamp).
pub struct Pacer {
    start: u64,
    period_ns: f64,
    n: u64,
}

impl Pacer {
    /// A pacer for `rate` messages per second starting now; `rate` 0 means
    /// flat out.
    pub fn new(rate: u64) -> Pacer {
        Pacer {
            start: monotonic_ns(),
            period_ns: if rate == 0 { 0.0 } else { 1e9 / rate as f64 },
            n: 0,
        }
    }

    /// Waits until the next message is due; returns the time.
    #[inline(always)]
    pub fn wait(&mut self) -> u64 {
        let due = self.start + (self.n as f64 * self.period_ns) as u64;
        self.n += 1;
        loop {
            let now = monotonic_ns();
            if now >= due {
                return now;
            }
            std::hint::spin_loop();
        }
    }
}

/// The subscriber's bookkeeping: which messages are measured, when the
/// measured part started and ended, and (in latency runs) every
/// publish-to-receive latency. Reads the clock only where needed: once at
/// the end of warm-up and once at the end in throughput runs; per message in
/// latency runs.
pub struct Receipts {
    warmup: u64,
    started: bool,
    latency: Option<Histogram<u64>>,
    start_ns: u64,
    received: u64,
    /// One past the highest sequence number seen.
    end: u64,
    /// Sum and count of the looks at how far behind the subscriber is, and
    /// the message after which it looks next.
    behind: u64,
    looks: u64,
    next_look: u64,
}

impl Receipts {
    /// Bookkeeping for a run with `p`; `latency` records a histogram.
    pub fn new(p: &Params, latency: bool) -> Receipts {
        Receipts {
            warmup: p.warmup,
            started: false,
            latency: latency.then(new_hist),
            start_ns: 0,
            received: 0,
            end: 0,
            behind: 0,
            looks: 0,
            next_look: p.warmup,
        }
    }

    /// After message `index` (and any before it): once per
    /// [`LOOK_BEHIND_EVERY`] measured messages, notes `backlog()`, how many
    /// messages the subscriber is behind its publisher (see
    /// [`SideResult::behind`]).
    #[inline(always)]
    pub fn look_behind(&mut self, index: u64, backlog: impl FnOnce() -> u64) {
        if index >= self.next_look {
            self.behind += backlog();
            self.looks += 1;
            self.next_look = index + LOOK_BEHIND_EVERY;
        }
    }

    /// Message `index` (0-based sequence number) arrived; `stamp_ns` is its
    /// publish time (latency runs). The measured interval starts at the last
    /// warm-up message (or the first one after it, if that was lost).
    #[inline(always)]
    pub fn got(&mut self, index: u64, stamp_ns: u64) {
        if !self.started && index + 1 >= self.warmup {
            self.started = true;
            self.start_ns = monotonic_ns();
        }
        if index < self.warmup {
            return;
        }
        self.received += 1;
        self.end = index + 1;
        if let Some(h) = &mut self.latency {
            h.saturating_record(monotonic_ns().saturating_sub(stamp_ns));
        }
    }

    /// One past the highest sequence number seen.
    pub fn next(&self) -> u64 {
        self.end
    }

    /// Message `index` arrived, and every one since the last one seen was
    /// filtered out by the subscriber: all of them count as got through
    /// (a filtered stream's rate). No latency is recorded.
    pub fn got_through(&mut self, index: u64) {
        if !self.started && index + 1 >= self.warmup {
            self.started = true;
            self.start_ns = monotonic_ns();
        }
        if index >= self.warmup {
            self.received += index + 1 - self.end.max(self.warmup);
        }
        self.end = index + 1;
    }

    /// The result, ending the measured interval now. Messages lost
    /// (overwrite mode) are the measured sequence numbers up to the last one
    /// seen that were never received, however the subscriber was lapped.
    pub fn finish(self) -> SideResult {
        let end = monotonic_ns();
        let mut r = SideResult {
            received: self.received,
            lost: self
                .end
                .saturating_sub(self.warmup)
                .saturating_sub(self.received),
            elapsed_ns: end.saturating_sub(self.start_ns),
            behind: (self.looks > 0).then(|| self.behind as f64 / self.looks as f64),
            ..Default::default()
        };
        if let Some(h) = &self.latency {
            r.set_hist(h);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(warmup: u64, iters: u64) -> Params {
        Params {
            size: 64,
            iters,
            warmup,
            rate: 0,
            capacity: 64,
            duration_ns: None,
            timestamps: true,
            trusted: false,
            mailboxes: false,
        }
    }

    #[test]
    fn how_far_behind_is_looked_at_once_per_1024_measured_messages() {
        let mut r = Receipts::new(&params(10, 5000), false);
        let mut asked = Vec::new();
        for seq in 0..5010 {
            r.got(seq, 0);
            r.look_behind(seq, || {
                asked.push(seq);
                seq
            });
        }
        assert_eq!(asked, [10, 1034, 2058, 3082, 4106]);
        assert_eq!(r.finish().behind, Some(2058.0));
        // Batches: looked at after the first message at or past each mark.
        let mut r = Receipts::new(&params(10, 5000), false);
        let mut asked = Vec::new();
        for end in (32..2100).step_by(32) {
            r.look_behind(end, || {
                asked.push(end);
                7
            });
        }
        assert_eq!(asked, [32, 1056, 2080]);
        assert_eq!(
            Receipts::new(&params(10, 5000), false).finish().behind,
            None
        );
    }

    #[test]
    fn a_filtered_stream_counts_what_it_got_through() {
        // Warm-up 20; kept: every 16th message of 0..100.
        let mut r = Receipts::new(&params(20, 80), false);
        for seq in (0..100).step_by(16) {
            r.got_through(seq);
        }
        // Kept 96 last: messages 20..=96 got through, lost none.
        let s = r.finish();
        assert_eq!((s.received, s.lost), (77, 0));
    }

    #[test]
    fn budget_counts_warmup_then_iters() {
        let p = params(3, 5);
        let mut b = Budget::new(&p);
        let mut n = 0;
        let mut measured = 0;
        loop {
            n += 1;
            if b.measured(n) {
                measured += 1;
            }
            if !b.more_after(n) {
                break;
            }
        }
        assert_eq!((n, measured), (8, 5));
    }

    #[test]
    fn pingpong_driver_excludes_warmup() {
        let p = params(10, 100);
        let mut calls = 0;
        let h = drive_pingpong(&p, Ticks::calibrate(), |n, lap| {
            calls += 1;
            assert_eq!(n, calls, "messages are numbered from 1");
            lap.sent();
            Ok(())
        })
        .unwrap();
        // One more message than samples: the last round trip ends at the
        // send after it.
        assert_eq!(calls, 111);
        assert_eq!(h.len(), 100);
    }

    #[test]
    fn receipts_skip_warmup() {
        let p = params(2, 3);
        let mut r = Receipts::new(&p, true);
        for i in 0..5 {
            r.got(i, monotonic_ns());
        }
        let res = r.finish();
        assert_eq!(res.received, 3);
        assert_eq!(res.lost, 0);
        assert_eq!(res.hist().len(), 3);
    }

    #[test]
    fn receipts_count_losses_across_the_warmup_boundary() {
        let p = params(10, 100);
        let mut r = Receipts::new(&p, false);
        // Lapped from 3 straight to 50, then from 60 to 100.
        for i in (0..3).chain(50..60).chain(100..110) {
            r.got(i, 0);
        }
        let res = r.finish();
        assert_eq!(res.received, 20);
        assert_eq!(res.lost, 110 - 10 - 20);
    }
}
