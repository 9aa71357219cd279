//! The ping-pong baselines ringbus is measured against, each without any
//! ringbus code, in the same two-process harness and on the same cores
//! (the streaming ones are in `copy_ring.rs`):
//!
//! * **cache line**: one 64-byte line per direction holding a sequence word,
//!   stored and spun on with atomics. Nothing crosses cores faster: this is
//!   the floor for spin-wait latency.
//! * **seqlock**: the same, but each message is a stamp followed by a
//!   payload of the message size, written and read as a seqlock (odd stamp,
//!   payload, even stamp; copy out, re-check) — what a ring slot costs.
//!
//! Both spin-wait floors end each send with a full fence ([`drain`]) before
//! the sender starts spinning on the reply. No ordering needs it; it is
//! there because it is faster: on the AMD EPYC guest this was developed on,
//! it took a step off each one-way trip, run after run (DESIGN.md, "The
//! floors fence"). A floor is the fastest bare ping-pong we know, so it
//! takes the faster form.
//! * **futex**: a 32-bit word per direction; the sender stores and
//!   `FUTEX_WAKE`s, the receiver `FUTEX_WAIT`s (process-shared): the floor
//!   for blocking waits.
//! * **unix socket**: a `SOCK_SEQPACKET` socketpair, one message each way.
//!
//! The parent is always the sender (and times the round trips); the child
//! echoes.

use std::os::fd::{AsFd, OwnedFd};
use std::ptr;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use hdrhistogram::Histogram;
use rustix::io::Errno;
use rustix::thread::futex;

use super::clock::Ticks;
use super::driver::drive_pingpong;
use super::params::{Params, SideResult};
use super::shared::{pad128, Control, Padded, Patience, Region, SharedPlain, CONTROL_SIZE};

/// Written into a ping word to tell the echo side to stop.
const STOP64: u64 = u64::MAX;
const STOP32: u32 = u32::MAX;

/// Ends a spin-wait floor's send: a full fence, so the sender's stores
/// leave its store buffer before it starts spinning (a `pause` loop) on the
/// reply. Not an ordering the protocol needs (the Release stores give it
/// that); measured faster, see the module docs.
#[inline(always)]
fn drain() {
    fence(Ordering::SeqCst);
}

/// Spins until `word == want` (true) or `word == stop` (false).
#[inline(always)]
fn spin_for(ctl: &Control, word: &AtomicU64, want: u64, stop: u64, what: &str) -> Result<bool> {
    let mut n: u32 = 0;
    let mut patience = Patience::new(ctl);
    loop {
        // Acquire: pairs with the Release store of the peer's sequence word
        // (in `line_*` or `seqlock_write`), making its message visible.
        let v = word.load(Ordering::Acquire);
        if v == want {
            return Ok(true);
        }
        if v == stop {
            return Ok(false);
        }
        std::hint::spin_loop();
        n = n.wrapping_add(1);
        if n & 0xFFFF == 0 {
            patience.check(what)?;
        }
    }
}

// ---------------------------------------------------------------- cache line

#[repr(C)]
struct Lines {
    ping: Padded<AtomicU64>,
    pong: Padded<AtomicU64>,
}
// SAFETY: two padded atomics; repr(C); zero is valid.
unsafe impl SharedPlain for Lines {}

/// Region size for the cache-line ping-pong.
pub fn line_len() -> usize {
    CONTROL_SIZE + std::mem::size_of::<Lines>()
}

/// Parent: times `ping = n` → wait `pong == n`.
pub fn line_parent(region: &Region, p: &Params, ticks: Ticks) -> Result<Histogram<u64>> {
    let ctl = region.control();
    let l: &Lines = region.at(CONTROL_SIZE)?;
    let h = drive_pingpong(p, ticks, |n, lap| {
        // Release: pairs with the Acquire load in the child's `spin_for`.
        l.ping.0.store(n, Ordering::Release);
        drain();
        lap.sent();
        if spin_for(ctl, &l.pong.0, n, STOP64, "the cache-line echo")? {
            Ok(())
        } else {
            bail!("echo side stopped early")
        }
    })?;
    // Release: pairs with the Acquire in the child's `spin_for`.
    l.ping.0.store(STOP64, Ordering::Release);
    Ok(h)
}

/// Child: echoes each `ping` into `pong`.
pub fn line_child(region: &Region) -> Result<SideResult> {
    let ctl = region.control();
    let l: &Lines = region.at(CONTROL_SIZE)?;
    let mut n = 1;
    while spin_for(ctl, &l.ping.0, n, STOP64, "the next cache-line ping")? {
        // Release: pairs with the Acquire load in the parent's `spin_for`.
        l.pong.0.store(n, Ordering::Release);
        drain();
        n += 1;
    }
    Ok(SideResult::default())
}

// ------------------------------------------------------------------- seqlock

/// Offset of the payload after a seqlock slot's stamp.
const STAMP: usize = 8;

fn seqlock_slot(size: usize) -> usize {
    pad128(STAMP + size)
}

/// Region size for the seqlock ping-pong with `size`-byte payloads.
pub fn seqlock_len(size: usize) -> usize {
    CONTROL_SIZE + 2 * seqlock_slot(size)
}

struct SeqSlot<'a> {
    stamp: &'a AtomicU64,
    payload: *mut u8,
}

fn seq_slots(region: &Region, size: usize) -> Result<(SeqSlot<'_>, SeqSlot<'_>)> {
    let a = CONTROL_SIZE;
    let b = CONTROL_SIZE + seqlock_slot(size);
    let slot = |off: usize| -> Result<SeqSlot<'_>> {
        Ok(SeqSlot {
            stamp: &region.at::<Padded<AtomicU64>>(off)?.0,
            payload: region.bytes(off + STAMP, size)?,
        })
    };
    Ok((slot(a)?, slot(b)?))
}

/// Writes message `n` into `slot` as a seqlock writer.
///
/// # Safety
///
/// No other process reads `slot`'s payload concurrently. The ping-pong
/// guarantees it: a side rewrites its slot only after the peer's echo, which
/// the peer sends after it finished reading.
#[inline(always)]
unsafe fn seqlock_write(slot: &SeqSlot<'_>, src: &[u8], n: u64) {
    slot.stamp.store(2 * n - 1, Ordering::Relaxed);
    // Release fence: orders the odd stamp before the payload stores; pairs
    // with the Acquire fence in `seqlock_read` (a reader that saw any of the
    // new payload sees the odd stamp on its re-check).
    fence(Ordering::Release);
    // SAFETY: the caller guarantees exclusive access; `payload` has
    // `src.len()` bytes (checked by `Region::bytes`).
    unsafe { ptr::copy_nonoverlapping(src.as_ptr(), slot.payload, src.len()) };
    // Release: publishes the payload; pairs with the Acquire load of the
    // stamp in `spin_for` (called by `seqlock_read`).
    slot.stamp.store(2 * n, Ordering::Release);
    drain();
}

/// Reads message `n` from `slot` as a seqlock reader; false if told to stop.
///
/// # Safety
///
/// As for [`seqlock_write`]: the writer does not rewrite `slot` while this
/// runs.
#[inline(always)]
unsafe fn seqlock_read(ctl: &Control, slot: &SeqSlot<'_>, dst: &mut [u8], n: u64) -> Result<bool> {
    loop {
        if !spin_for(ctl, slot.stamp, 2 * n, STOP64, "a seqlock message")? {
            return Ok(false);
        }
        // SAFETY: see the function's contract; `payload` has `dst.len()`
        // bytes.
        unsafe { ptr::copy_nonoverlapping(slot.payload, dst.as_mut_ptr(), dst.len()) };
        // Acquire fence: pairs with the Release fence in `seqlock_write`, so
        // the re-check below sees an odd stamp if the copy overlapped a write.
        fence(Ordering::Acquire);
        if slot.stamp.load(Ordering::Relaxed) == 2 * n {
            return Ok(true);
        }
    }
}

fn seq_of(buf: &[u8]) -> u64 {
    u64::from_le_bytes(buf[..8].try_into().expect("messages are at least 8 bytes"))
}

/// Parent: writes message `n` into the ping slot, reads the echo.
pub fn seqlock_parent(region: &Region, p: &Params, ticks: Ticks) -> Result<Histogram<u64>> {
    let ctl = region.control();
    let (ping, pong) = seq_slots(region, p.size)?;
    let mut tx = vec![0xA5u8; p.size];
    let mut rx = vec![0u8; p.size];
    let h = drive_pingpong(p, ticks, |n, lap| {
        tx[..8].copy_from_slice(&n.to_le_bytes());
        // SAFETY: ping-pong alternation (see `seqlock_write`).
        unsafe { seqlock_write(&ping, &tx, n) };
        lap.sent();
        // SAFETY: as above.
        if !unsafe { seqlock_read(ctl, &pong, &mut rx, n)? } {
            bail!("echo side stopped early");
        }
        ensure!(
            seq_of(&rx) == n,
            "seqlock echo carried {} for {n}",
            seq_of(&rx)
        );
        Ok(())
    })?;
    // Release: pairs with the Acquire in the child's `spin_for`.
    ping.stamp.store(STOP64, Ordering::Release);
    Ok(h)
}

/// Child: copies each ping out and writes it back as the pong.
pub fn seqlock_child(region: &Region, p: &Params) -> Result<SideResult> {
    let ctl = region.control();
    let (ping, pong) = seq_slots(region, p.size)?;
    let mut buf = vec![0u8; p.size];
    let mut n = 1;
    // SAFETY: ping-pong alternation (see `seqlock_write`).
    while unsafe { seqlock_read(ctl, &ping, &mut buf, n)? } {
        ensure!(
            seq_of(&buf) == n,
            "seqlock ping carried {} for {n}",
            seq_of(&buf)
        );
        // SAFETY: as above.
        unsafe { seqlock_write(&pong, &buf, n) };
        n += 1;
    }
    Ok(SideResult::default())
}

// --------------------------------------------------------------------- futex

#[repr(C)]
struct Words {
    ping: Padded<AtomicU32>,
    pong: Padded<AtomicU32>,
}
// SAFETY: two padded atomics; repr(C); zero is valid.
unsafe impl SharedPlain for Words {}

/// Region size for the futex ping-pong.
pub fn futex_len() -> usize {
    CONTROL_SIZE + std::mem::size_of::<Words>()
}

/// Stores `v` and wakes the peer (always: this is the raw floor).
#[inline(always)]
fn futex_send(word: &AtomicU32, v: u32) -> Result<()> {
    // Release: pairs with the Acquire load in `futex_recv`.
    word.store(v, Ordering::Release);
    // Process-shared futex (no FUTEX_PRIVATE_FLAG): the peer is another
    // process mapping the same page.
    futex::wake(word, futex::Flags::empty(), 1).context("FUTEX_WAKE")?;
    Ok(())
}

/// Sleeps until `word == want` (true) or [`STOP32`] (false).
#[inline(always)]
fn futex_recv(ctl: &Control, word: &AtomicU32, want: u32) -> Result<bool> {
    let mut patience = Patience::new(ctl);
    let timeout = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 100_000_000,
    };
    loop {
        // Acquire: pairs with the Release store in `futex_send`.
        let v = word.load(Ordering::Acquire);
        if v == want {
            return Ok(true);
        }
        if v == STOP32 {
            return Ok(false);
        }
        match futex::wait(word, futex::Flags::empty(), v, Some(&timeout)) {
            Ok(()) | Err(Errno::AGAIN) | Err(Errno::INTR) => {}
            Err(Errno::TIMEDOUT) => patience.check("a futex wake-up")?,
            Err(e) => return Err(e).context("FUTEX_WAIT"),
        }
    }
}

/// Parent: `ping = n` + wake, sleep until `pong == n`.
pub fn futex_parent(region: &Region, p: &Params, ticks: Ticks) -> Result<Histogram<u64>> {
    let ctl = region.control();
    let w: &Words = region.at(CONTROL_SIZE)?;
    let h = drive_pingpong(p, ticks, |n, lap| {
        // Wraps after 2^32 - 1 round trips, hours at futex speeds; 0 and
        // STOP32 are skipped so they keep their meaning.
        let v = (n % u64::from(STOP32 - 1)) as u32 + 1;
        futex_send(&w.ping.0, v)?;
        lap.sent();
        if futex_recv(ctl, &w.pong.0, v)? {
            Ok(())
        } else {
            bail!("echo side stopped early")
        }
    })?;
    futex_send(&w.ping.0, STOP32)?;
    Ok(h)
}

/// Child: echoes each ping.
pub fn futex_child(region: &Region) -> Result<SideResult> {
    let ctl = region.control();
    let w: &Words = region.at(CONTROL_SIZE)?;
    let mut n: u64 = 1;
    loop {
        let v = (n % u64::from(STOP32 - 1)) as u32 + 1;
        if !futex_recv(ctl, &w.ping.0, v)? {
            return Ok(SideResult::default());
        }
        futex_send(&w.pong.0, v)?;
        n += 1;
    }
}

// --------------------------------------------------------------- unix socket

/// A connected `SOCK_SEQPACKET` pair with 10 s timeouts: (parent, child).
pub fn unix_pair() -> Result<(OwnedFd, OwnedFd)> {
    use rustix::net::{socketpair, sockopt, AddressFamily, SocketFlags, SocketType};
    let (a, b) = socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .context("socketpair(AF_UNIX, SOCK_SEQPACKET)")?;
    for s in [&a, &b] {
        for t in [sockopt::Timeout::Recv, sockopt::Timeout::Send] {
            sockopt::set_socket_timeout(s, t, Some(Duration::from_secs(10)))
                .context("setting a socket timeout")?;
        }
    }
    Ok((a, b))
}

fn sock_send(fd: &OwnedFd, buf: &[u8]) -> Result<()> {
    let n = rustix::net::send(fd, buf, rustix::net::SendFlags::empty()).context("send")?;
    ensure!(n == buf.len(), "short send: {n} of {} bytes", buf.len());
    Ok(())
}

/// Receives one message; `None` at end of stream.
fn sock_recv(fd: &OwnedFd, buf: &mut [u8]) -> Result<Option<usize>> {
    loop {
        match rustix::net::recv(fd.as_fd(), &mut *buf, rustix::net::RecvFlags::empty()) {
            Ok((_, 0)) => return Ok(None),
            Ok((_, n)) => return Ok(Some(n)),
            Err(Errno::INTR) => continue,
            Err(Errno::AGAIN) => bail!("no message on the Unix socket for 10 s"),
            Err(e) => return Err(e).context("recv"),
        }
    }
}

/// Parent: send `size` bytes, receive the echo.
pub fn unix_parent(sock: OwnedFd, p: &Params, ticks: Ticks) -> Result<Histogram<u64>> {
    let mut tx = vec![0x5Au8; p.size];
    let mut rx = vec![0u8; p.size + 1];
    let h = drive_pingpong(p, ticks, |n, lap| {
        tx[..8].copy_from_slice(&n.to_le_bytes());
        sock_send(&sock, &tx)?;
        lap.sent();
        match sock_recv(&sock, &mut rx)? {
            Some(len) if len == p.size && seq_of(&rx) == n => Ok(()),
            Some(len) => bail!("bad echo on the Unix socket ({len} bytes)"),
            None => bail!("echo side closed the Unix socket early"),
        }
    })?;
    drop(sock); // end of stream stops the echo side
    Ok(h)
}

/// Child: echoes every message until end of stream.
pub fn unix_child(sock: OwnedFd, p: &Params) -> Result<SideResult> {
    let mut buf = vec![0u8; p.size + 1];
    while let Some(len) = sock_recv(&sock, &mut buf)? {
        ensure!(
            len == p.size,
            "got {len} bytes on the Unix socket, expected {}",
            p.size
        );
        sock_send(&sock, &buf[..len])?;
    }
    Ok(SideResult::default())
}
