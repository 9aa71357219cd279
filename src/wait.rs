//! How a subscriber waits for the next message: busy spin, spin then yield,
//! futex block, or adaptive (bounded spin, then futex); and the process-shared
//! futex protocol that makes blocking cost the publisher nothing while no
//! subscriber sleeps.
//!
//! # The sleeper protocol (no lost wake-ups)
//!
//! A subscriber sleeps on the futex word of its own port (the state it
//! shares with the publisher only, see [`crate::ring::Port`]).
//!
//! Waiter (`sleep_once`):
//! 1. `w = port.futex.load(Acquire)`;
//! 2. `port.sleeping = 1`; `fence(SeqCst)`;
//! 3. poll once more; if something arrived, `sleeping = 0` and return;
//! 4. `FUTEX_WAIT(port.futex, w)`; `sleeping = 0`; loop.
//!
//! Publisher (after each message, for every port that asked to be woken):
//! `stamp.store(Release)`; `fence(SeqCst)`; for each such port, if
//! `sleeping != 0`: `futex += 1` (Release); `FUTEX_WAKE`.
//!
//! The two SeqCst fences order the waiter's `sleeping = 1` and the
//! publisher's stamp store: either the publisher sees the sleeper and wakes
//! it (the kernel compares the futex word with `w` under its lock, so a wake
//! between steps 1 and 4 makes the wait return at once), or the waiter's
//! poll in step 3 sees the message. `tests/loom.rs` checks this.
//!
//! The fence costs about as much as the rest of a publish, so a publisher
//! runs it only for ports that asked: a subscriber about to sleep for the
//! first time sets [`REQUEST_WAKE`] in its port and rings the ring's lobby
//! bell, and the publisher, which reads the bell after every message,
//! answers `wake_ack` in the port and from then on wakes it. Until a
//! subscriber sees `wake_ack` its futex waits are bounded to 1 ms, so a
//! message published in the hand-over window is late by at most that,
//! never lost. A ring whose subscribers all spin never pays for the fence;
//! a subscriber can make its publisher pay for it, and for a wake-up per
//! message, only as a subscriber that really sleeps does.
//!
//! # Many rings
//!
//! A subscriber on several rings (`sleep_all`) runs steps 1–2 for every
//! port it holds, one `fence(SeqCst)` for all, polls every ring once more,
//! then sleeps in one `futex_waitv` on all the words with their `w`
//! values: the kernel checks every word under its locks before sleeping,
//! and a wake of any of them ends the wait. Each port's pair is the one
//! above (the fence orders every `sleeping = 1` before the poll), so a
//! publisher on any ring either sees its port's sleeper or its message is
//! seen by the poll; the publisher side is unchanged. The sleep is bounded
//! to 1 ms (`UNWOKEN_BOUND`) while a ring cannot wake it: a hand-over not
//! yet acknowledged, a ring without a port, a ring past the 128th
//! (`MAX_BEDS`), or a kernel without `futex_waitv` (ENOSYS, remembered;
//! then it sleeps on the first word only). Rings that appear meanwhile move a generation counter
//! that wakes nobody: the subscriber's wait slices (250 ms) bound how late
//! it finds them, as with one ring.

use crate::layout::{LobbyHeader, PortHeader, REQUEST_WAKE};
use crate::sync::{fence, spin_hint, AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How a blocking receive waits for a message. Parsed from and shown as
/// `spin`, `spin-yield`, `block` and `adaptive` (the CLI's `--wait`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WaitStrategy {
    /// Busy-poll: lowest latency, burns a core.
    Spin,
    /// Poll a few times, then `sched_yield` between polls.
    SpinYield,
    /// Sleep on the ring's futex at once: no CPU while idle, a syscall per
    /// wake-up.
    Block,
    /// Spin for a bounded time (`spin`), then block.
    Adaptive {
        /// How long to spin before sleeping.
        spin: Duration,
    },
}

/// Spin budget of `adaptive` when none is given.
pub const DEFAULT_ADAPTIVE_SPIN: Duration = Duration::from_micros(50);

impl Default for WaitStrategy {
    /// `Adaptive` with [`DEFAULT_ADAPTIVE_SPIN`].
    fn default() -> Self {
        WaitStrategy::Adaptive {
            spin: DEFAULT_ADAPTIVE_SPIN,
        }
    }
}

impl WaitStrategy {
    /// The strategy's spin budget before sleeping (`None`: never sleeps).
    fn spin_budget(self) -> Option<Duration> {
        match self {
            WaitStrategy::Spin | WaitStrategy::SpinYield => None,
            WaitStrategy::Block => Some(Duration::ZERO),
            WaitStrategy::Adaptive { spin } => Some(spin),
        }
    }

    /// Whether a wait with this strategy starts with [`QUIET_POLLS`] bare
    /// polls (`Spin`, `Adaptive`).
    pub(crate) fn spins_first(self) -> bool {
        matches!(self, WaitStrategy::Spin | WaitStrategy::Adaptive { .. })
    }

    /// Whether this strategy may sleep on the futex.
    pub fn may_block(self) -> bool {
        self.spin_budget().is_some()
    }

    /// The strategy's name, as [`FromStr`](std::str::FromStr) parses it
    /// (the spin budget of `adaptive` is not part of it).
    pub fn name(self) -> &'static str {
        match self {
            WaitStrategy::Spin => "spin",
            WaitStrategy::SpinYield => "spin-yield",
            WaitStrategy::Block => "block",
            WaitStrategy::Adaptive { .. } => "adaptive",
        }
    }
}

impl std::fmt::Display for WaitStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for WaitStrategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "spin" => Ok(WaitStrategy::Spin),
            "spin_yield" | "spin-yield" | "yield" => Ok(WaitStrategy::SpinYield),
            "block" | "futex" => Ok(WaitStrategy::Block),
            "adaptive" => Ok(WaitStrategy::default()),
            other => Err(format!(
                "unknown wait strategy {other:?}: expected spin, spin-yield, block or adaptive"
            )),
        }
    }
}

/// A subscriber's memory of the wake hand-over (see the module docs).
#[derive(Default, Debug)]
pub(crate) struct WakeState {
    /// It asked ([`REQUEST_WAKE`] and the bell).
    asked: bool,
    /// The publisher answered: wake-ups are on.
    acked: bool,
}

/// Where a subscriber sleeps: its port's wake word, and the lobby whose
/// bell it rings to ask for wake-ups. A subscriber without a port (an
/// overwrite ring whose ports ran out) naps instead.
#[derive(Clone, Copy)]
pub(crate) struct Bed<'a> {
    pub port: &'a PortHeader,
    pub lobby: &'a LobbyHeader,
}

/// When a wait gives up: at `by`, or `within` after the wait's first look
/// at the clock, whichever comes first (neither: never). `within` lets a
/// caller bound a wait without reading the clock itself: a wait that ends
/// before its first look costs no clock read at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Limit {
    /// An absolute deadline.
    pub by: Option<Instant>,
    /// A bound counted from the wait's first clock read.
    pub within: Option<Duration>,
}

impl Limit {
    /// Gives up at `deadline` (`None`: never).
    pub(crate) fn by(deadline: Option<Instant>) -> Limit {
        Limit {
            by: deadline,
            within: None,
        }
    }

    /// The deadline this limit means, seen from `now`.
    pub(crate) fn resolve(self, now: Instant) -> Option<Instant> {
        let within = self.within.and_then(|d| now.checked_add(d));
        match (self.by, within) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Bare polls a spinning wait (`Spin`, `Adaptive`) makes first
/// (`Consumer::spin_ready`), with no clock read and none of
/// [`wait_until`]'s bookkeeping. A spin ping-pong's wait ends within a few
/// polls, and both would slow it: a clock read (`rdtsc`, which holds up
/// what follows) landing as the message arrives, and the bookkeeping of
/// `wait_until`'s loop between polls (DESIGN.md, "Where the ping-pong
/// nanoseconds go"). 256 polls are a few microseconds: the most a deadline
/// or the adaptive spin budget is late by.
pub(crate) const QUIET_POLLS: u32 = 256;
/// Polls between clock reads in [`wait_until`].
const CLOCK_EVERY: u32 = 64;

/// Polls `poll` until it returns `Some`, waiting between polls as
/// `strategy` says; `None` once `limit` has passed. The adaptive spin
/// budget and `limit.within` count from the first clock read, which also
/// fixes `limit` to the deadline it then means (so a caller that waits
/// again keeps it), after the
/// first [`CLOCK_EVERY`] polls (callers spin [`QUIET_POLLS`] before
/// calling this).
pub(crate) fn wait_until<T>(
    bed: Option<Bed<'_>>,
    strategy: WaitStrategy,
    limit: &mut Limit,
    state: &mut WakeState,
    mut poll: impl FnMut() -> Option<T>,
) -> Option<T> {
    // (deadline, end of the spin budget), fixed at the first clock read.
    let mut times: Option<(Option<Instant>, Option<Instant>)> = None;
    let mut spins: u32 = 0;
    loop {
        if let Some(r) = poll() {
            return Some(r);
        }
        spins = spins.wrapping_add(1);
        if spin_step(strategy, spins) {
            continue;
        }
        let now = Instant::now();
        let (deadline, spin_until) = *times.get_or_insert_with(|| {
            *limit = Limit::by(limit.resolve(now));
            (limit.by, strategy.spin_budget().map(|d| now + d))
        });
        if spin_until.is_some_and(|t| now >= t || cfg!(loom)) {
            // Past the spin budget: sleep (a deadline already passed still
            // gets this one round, with a zero timeout, so even a zero-time
            // wait announces the subscriber to the publisher).
            let r = match bed {
                Some(bed) => sleep_once(bed, deadline, state, &mut poll),
                None => nap(deadline, &mut poll),
            };
            if let Some(r) = r {
                return Some(r);
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
    }
}

/// One step of spinning between polls: whether it spun (`false`: time to
/// read the clock, every [`CLOCK_EVERY`] polls). `Block` does not spin at
/// all, and loom goes straight on (every spin there is a scheduling point).
#[inline]
fn spin_step(strategy: WaitStrategy, spins: u32) -> bool {
    if strategy == WaitStrategy::Block || cfg!(loom) || spins % CLOCK_EVERY == 0 {
        return false;
    }
    if strategy == WaitStrategy::SpinYield && spins > CLOCK_EVERY {
        std::thread::yield_now();
    } else {
        spin_hint();
    }
    true
}

/// As [`wait_until`], for a subscriber on several rings: `beds` are the
/// ports of those that have one (`states[i]` the hand-over memory of
/// `beds[i]`), `unwoken` whether some ring has none. Once the spin budget
/// is spent it sleeps on all the ports at once ([`sleep_all`]).
pub(crate) fn wait_until_all<T>(
    beds: &[Bed<'_>],
    states: &mut [WakeState],
    unwoken: bool,
    strategy: WaitStrategy,
    limit: &mut Limit,
    mut poll: impl FnMut() -> Option<T>,
) -> Option<T> {
    let now = Instant::now();
    *limit = Limit::by(limit.resolve(now));
    let deadline = limit.by;
    let spin_until = strategy.spin_budget().map(|d| now + d);
    let mut spins: u32 = 0;
    loop {
        if let Some(r) = poll() {
            return Some(r);
        }
        spins = spins.wrapping_add(1);
        if spin_step(strategy, spins) {
            continue;
        }
        if spin_until.is_some_and(|t| cfg!(loom) || Instant::now() >= t) {
            if let Some(r) = sleep_all(beds, states, unwoken, deadline, &mut poll) {
                return Some(r);
            }
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
    }
}

/// One round of the sleeper protocol.
fn sleep_once<T>(
    bed: Bed<'_>,
    deadline: Option<Instant>,
    state: &mut WakeState,
    poll: &mut impl FnMut() -> Option<T>,
) -> Option<T> {
    let port = bed.port;
    hand_over(bed, state);
    // Acquire: pairs with the publisher's Release increment in `wake_port`.
    let w = port.futex.load(Ordering::Acquire);
    port.sleeping.store(1, Ordering::Relaxed);
    // SeqCst: the waiter's half of the Dekker pair; partner is the fence
    // in `notify_ports` (see the module docs).
    fence(Ordering::SeqCst);
    let r = poll();
    if r.is_none() {
        let mut timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if !state.acked {
            timeout = Some(timeout.map_or(Duration::from_millis(1), |t| {
                t.min(Duration::from_millis(1))
            }));
        }
        futex_wait(&port.futex, w, timeout);
    }
    port.sleeping.store(0, Ordering::Relaxed);
    r
}

/// The most futex words one `futex_waitv` call takes (the kernel's
/// `FUTEX_WAITV_MAX`).
pub(crate) const MAX_BEDS: usize = 128;

/// The longest sleep of a wait that some ring cannot cut short: a ring
/// without a port, a publisher that has not acknowledged wake-ups yet, a
/// ring beyond [`MAX_BEDS`], or a kernel without `futex_waitv`.
const UNWOKEN_BOUND: Duration = Duration::from_millis(1);

/// One round of the sleeper protocol on several ports at once (see the
/// module docs, "Many rings"): sleeps until a publisher of any of them
/// wakes it, `deadline`, or — when `unwoken` says some ring has no bed,
/// or a ring's hand-over is not done — [`UNWOKEN_BOUND`]. `states[i]` is
/// the hand-over memory of `beds[i]`.
pub(crate) fn sleep_all<T>(
    beds: &[Bed<'_>],
    states: &mut [WakeState],
    unwoken: bool,
    deadline: Option<Instant>,
    poll: &mut impl FnMut() -> Option<T>,
) -> Option<T> {
    debug_assert_eq!(beds.len(), states.len());
    // Rings beyond what one call takes are polled on the bound only.
    let n = beds.len().min(MAX_BEDS);
    let mut bounded = unwoken || beds.len() > n;
    if n == 0 {
        return nap(deadline, poll);
    }
    let mut words = [0u32; MAX_BEDS];
    for ((bed, state), word) in beds.iter().zip(states.iter_mut()).zip(&mut words).take(n) {
        bounded |= !hand_over(*bed, state);
        // Acquire: pairs with the publisher's Release increment in
        // `wake_port`.
        *word = bed.port.futex.load(Ordering::Acquire);
        bed.port.sleeping.store(1, Ordering::Relaxed);
    }
    // SeqCst: the waiter's half of the Dekker pair of every port at once;
    // partner is the fence in `notify_ports` (see the module docs).
    fence(Ordering::SeqCst);
    let r = poll();
    if r.is_none() {
        let mut timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if bounded {
            timeout = Some(timeout.map_or(UNWOKEN_BOUND, |t| t.min(UNWOKEN_BOUND)));
        }
        futex_wait_all(&beds[..n], &words[..n], timeout);
    }
    for bed in &beds[..n] {
        bed.port.sleeping.store(0, Ordering::Relaxed);
    }
    r
}

/// The wake hand-over of one port (see the module docs): asks once, then
/// looks for the answer. Returns whether the publisher answered (its
/// wake-ups are on).
fn hand_over(bed: Bed<'_>, state: &mut WakeState) -> bool {
    if !state.acked {
        if !state.asked {
            ask_for_wakeups(bed);
            state.asked = true;
        }
        // Acquire: pairs with the Release store of `wake_ack` in
        // Producer::answer_requests; every message after it runs the
        // sleeper check for this port.
        state.acked = bed.port.wake_ack.load(Ordering::Acquire) != 0;
    }
    state.acked
}

/// Asks the publisher for wake-ups: the request in the port, then the bell
/// that makes the publisher look.
fn ask_for_wakeups(bed: Bed<'_>) {
    // Release: pairs with the Acquire load of `requests` in
    // Producer::answer_requests.
    bed.port.requests.fetch_or(REQUEST_WAKE, Ordering::Release);
    bed.lobby.bell.fetch_add(1, Ordering::Release);
}

/// A wait with nowhere to sleep: a short nap, then one more poll.
fn nap<T>(deadline: Option<Instant>, poll: &mut impl FnMut() -> Option<T>) -> Option<T> {
    let step = Duration::from_millis(1);
    let step = deadline.map_or(step, |d| {
        d.saturating_duration_since(Instant::now()).min(step)
    });
    if !cfg!(loom) {
        std::thread::sleep(step);
    }
    poll()
}

/// Publisher side: wakes the ports in `wakers` whose subscriber sleeps,
/// after a message became visible.
#[inline(always)]
pub(crate) fn notify_ports(wakers: &[*const PortHeader]) {
    // SeqCst: the publisher's half of the Dekker pair; partner is the fence
    // in `sleep_once` (see the module docs).
    fence(Ordering::SeqCst);
    for &p in wakers {
        // SAFETY: the producer keeps every port in `wakers` alive (its
        // list is rebuilt whenever its ports change).
        let p = unsafe { &*p };
        if p.sleeping.load(Ordering::Relaxed) != 0 {
            wake_port(p);
        }
    }
}

/// Wakes the subscriber of `port` if it sleeps (end of stream, a port
/// going away, a dead publisher's ring closed by the broker).
pub(crate) fn wake_port(port: &PortHeader) {
    // Release: pairs with the waiter's Acquire load of the futex word.
    port.futex.fetch_add(1, Ordering::Release);
    futex_wake(&port.futex);
}

/// The futex system call on a process-shared word (not FUTEX_PRIVATE: the
/// word lives in a mapping several processes share). Made through
/// `libc::syscall` with the kernel's argument types (`u32 *uaddr, int op,
/// u32 val, const struct timespec *timeout, u32 *uaddr2, u32 val3`):
/// rustix 1.1's wrapper passes `*const AtomicU32` for `uaddr`, which
/// Miri (nightly of 2026-10) reports as UB in a variadic call, and Miri
/// runs the ring's tests, whose producers wake sleepers on drop.
#[cfg(not(loom))]
fn futex(word: &AtomicU32, op: libc::c_int, val: u32, timeout: Option<&libc::timespec>) {
    let timeout = timeout.map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32 for the whole call (the kernel
    // only compares it and queues on its address); `timeout` is null or
    // points to a timespec that outlives the call; the unused `uaddr2` is
    // null. EAGAIN (the word moved), EINTR and ETIMEDOUT all mean "poll
    // again" to every caller, so the result is not needed.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            val,
            timeout,
            std::ptr::null_mut::<u32>(),
            0u32,
        );
    }
}

#[cfg(not(loom))]
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    futex(word, libc::FUTEX_WAIT, expected, ts.as_ref());
}

/// Sleeps until any of `beds`' futex words differs from its `words`
/// entry, is woken, or `timeout` passes: one `futex_waitv` (Linux 5.16).
/// Without it (ENOSYS, remembered), or on an error it does not expect,
/// sleeps on the first word only, at most [`UNWOKEN_BOUND`]: the other
/// rings are then polled every millisecond, as before `futex_waitv`.
#[cfg(not(loom))]
fn futex_wait_all(beds: &[Bed<'_>], words: &[u32], timeout: Option<Duration>) {
    use rustix::io::Errno;
    use rustix::thread::futex;
    // Only a hint shared by all threads; nothing is published through it.
    static NO_WAITV: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let fallback = |timeout: Option<Duration>| {
        let t = timeout.map_or(UNWOKEN_BOUND, |t| t.min(UNWOKEN_BOUND));
        futex_wait(&beds[0].port.futex, words[0], Some(t));
    };
    if beds.len() == 1 {
        return futex_wait(&beds[0].port.futex, words[0], timeout);
    }
    if NO_WAITV.load(Ordering::Relaxed) {
        return fallback(timeout);
    }
    let mut waiters = [futex::Wait::new(); MAX_BEDS];
    for (w, (bed, &val)) in waiters.iter_mut().zip(beds.iter().zip(words)) {
        w.val = u64::from(val);
        w.uaddr = futex::WaitPtr::new(bed.port.futex.as_ptr().cast());
        // Process-shared (no FUTEX2_PRIVATE): the words live in mappings
        // several processes share.
        w.flags = futex::WaitFlags::SIZE_U32;
    }
    // futex_waitv takes an absolute CLOCK_MONOTONIC deadline (the clock of
    // `Instant` on Linux).
    let at = timeout.map(|t| {
        let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        let nsec = now.tv_nsec as u64 + u64::from(t.subsec_nanos());
        let secs = t.as_secs().saturating_add(nsec / 1_000_000_000);
        rustix::time::Timespec {
            tv_sec: now.tv_sec.saturating_add(secs.min(i64::MAX as u64) as i64),
            tv_nsec: (nsec % 1_000_000_000) as _,
        }
    });
    match futex::waitv(
        &waiters[..beds.len()],
        futex::WaitvFlags::empty(),
        at.as_ref(),
        futex::ClockId::Monotonic,
    ) {
        // Woken, a word moved, a signal, the deadline: the caller polls.
        Ok(_) | Err(Errno::AGAIN | Errno::INTR | Errno::TIMEDOUT) => {}
        Err(e) => {
            if e == Errno::NOSYS {
                NO_WAITV.store(true, Ordering::Relaxed);
            }
            fallback(timeout);
        }
    }
}

#[cfg(not(loom))]
fn futex_wake(word: &AtomicU32) {
    futex(word, libc::FUTEX_WAKE, i32::MAX as u32, None);
}

// Loom has no futex: model it as a condition variable whose check-and-sleep
// is atomic under its mutex, which is the property the protocol relies on.
// A timed wait may return at any moment, so under loom it returns at once.
#[cfg(loom)]
loom::lazy_static! {
    static ref FUTEX: (loom::sync::Mutex<()>, loom::sync::Condvar) =
        (loom::sync::Mutex::new(()), loom::sync::Condvar::new());
}

#[cfg(loom)]
fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    if timeout.is_some() {
        loom::thread::yield_now();
        return;
    }
    let guard = FUTEX.0.lock().unwrap();
    if word.load(Ordering::Relaxed) == expected {
        drop(FUTEX.1.wait(guard).unwrap());
    }
}

#[cfg(loom)]
fn futex_wait_all(beds: &[Bed<'_>], words: &[u32], timeout: Option<Duration>) {
    if timeout.is_some() {
        loom::thread::yield_now();
        return;
    }
    let guard = FUTEX.0.lock().unwrap();
    let unmoved = beds
        .iter()
        .zip(words)
        .all(|(bed, &w)| bed.port.futex.load(Ordering::Relaxed) == w);
    if unmoved {
        drop(FUTEX.1.wait(guard).unwrap());
    }
}

#[cfg(loom)]
fn futex_wake(_word: &AtomicU32) {
    let _guard = FUTEX.0.lock().unwrap();
    FUTEX.1.notify_all();
}

/// Pins the calling thread to CPU `core` (an index as the OS numbers them).
/// Any CPU of the machine may be named, not only those in the calling
/// thread's current mask (a thread pinned elsewhere can move).
pub fn pin_current_thread(core: usize) -> Result<(), PinError> {
    use rustix::thread::{sched_setaffinity, CpuSet};
    if core >= CpuSet::MAX_CPU {
        return Err(PinError::NoSuchCore(core));
    }
    let mut set = CpuSet::new();
    set.set(core);
    // `None`: the calling thread (sched_setaffinity(0, ...)).
    sched_setaffinity(None, &set).map_err(|_| PinError::Refused(core))
}

/// CPUs this process may run on (its affinity mask), in ascending order.
pub fn available_cores() -> Vec<usize> {
    use rustix::thread::{sched_getaffinity, CpuSet};
    match sched_getaffinity(None) {
        Ok(set) => (0..CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect(),
        Err(_) => Vec::new(),
    }
}

/// Why a thread could not be pinned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    /// A CPU number beyond what the OS can address.
    #[error("CPU {0} does not exist (see `nproc`)")]
    NoSuchCore(usize),
    /// `sched_setaffinity` failed: the CPU is offline, absent, or outside
    /// this process's cgroup / cpuset.
    #[error("cannot pin to CPU {0}: it is offline, absent or not allowed for this process (see `nproc`, taskset)")]
    Refused(usize),
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_limit_is_the_sooner_of_its_deadline_and_its_bound() {
        let now = Instant::now();
        let soon = now + Duration::from_millis(1);
        let late = now + Duration::from_secs(1);
        let within = |d| Limit {
            by: None,
            within: Some(d),
        };
        assert_eq!(Limit::default().resolve(now), None);
        assert_eq!(Limit::by(Some(soon)).resolve(now), Some(soon));
        assert_eq!(within(Duration::from_secs(1)).resolve(now), Some(late));
        let both = |by, d| Limit {
            by: Some(by),
            within: Some(d),
        };
        assert_eq!(both(soon, Duration::from_secs(1)).resolve(now), Some(soon));
        assert_eq!(
            both(late, Duration::from_millis(1)).resolve(now),
            Some(soon)
        );
        // A bound past the clock's range means no bound.
        assert_eq!(within(Duration::MAX).resolve(now), None);
    }

    /// `ring::wait_any` on three heap rings: times out when nothing comes;
    /// a message on any one ring, published by another thread while it
    /// sleeps, ends the wait, before and after the hand-over. (Not under
    /// Miri, which has no `futex_waitv`: these tests are outside `ring::`.)
    #[test]
    fn a_wait_on_many_rings_ends_with_a_message_on_any() {
        use crate::ring::{wait_any, Consumer, Mode, Producer, Start, TopicConfig};
        let config = TopicConfig {
            max_message_size: 16,
            capacity: 4,
            mode: Mode::Backpressure,
            max_subscribers: 1,
        };
        let mut producers = Vec::new();
        let mut consumers = Vec::new();
        for _ in 0..3 {
            let region = crate::ring::RingRegion::heap(&config).unwrap();
            producers.push(Some(Producer::new(region.clone()).unwrap()));
            consumers.push(Consumer::new(region, Start::Latest).unwrap());
        }
        let t = Instant::now();
        let soon = Some(t + Duration::from_millis(20));
        assert!(!wait_any(&mut consumers, WaitStrategy::Block, soon));
        assert!(t.elapsed() >= Duration::from_millis(20));
        let mut buf = [0u8; 16];
        for round in 0..6u64 {
            let i = (round % 3) as usize;
            let mut p = producers[i].take().unwrap();
            let h = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(5));
                p.publish(&round.to_le_bytes(), round).unwrap();
                p
            });
            let patience = Some(Instant::now() + Duration::from_secs(30));
            assert!(wait_any(&mut consumers, WaitStrategy::Block, patience));
            producers[i] = Some(h.join().unwrap());
            let ready: Vec<bool> = consumers.iter().map(Consumer::is_ready).collect();
            assert_eq!(ready, (0..3).map(|k| k == i).collect::<Vec<_>>());
            assert_eq!(consumers[i].try_recv(&mut buf).unwrap().tag, round);
        }
    }
}
