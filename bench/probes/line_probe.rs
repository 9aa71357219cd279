//! Why a latest-style slot guards its second line with a check word
//! (`src/ring/latest.rs`): two threads pinned to two CPUs ping-pong 64-byte
//! messages through one 128-byte seqlock slot per direction (header and 32
//! payload bytes in line 0, the other 32 in line 1), guarded either by the
//! stamp in line 0 alone (odd stamp, payload, header, done stamp) or by a
//! check word in line 1 written first with the tail, then line 0 in one
//! burst. Rounds interleaved with the bare cache-line ping-pong; the report
//! gives the median of per-round ratios to it.
//!
//! ```text
//! cargo run --release --example line_probe -- [ROUNDS]
//! ```

#![allow(clippy::needless_range_loop)]
#![warn(clippy::undocumented_unsafe_blocks)]

use std::sync::atomic::{fence, AtomicU64, Ordering};

use ringbus::wait::pin_current_thread;

#[path = "common/floor.rs"]
mod common;
use common::{compare, timed, Error, ITERS};

// 128-byte slot: line 0 = stamp, len, tag, ts, payload[0..32]; line 1 = payload[32..64], ..., check at 120.
#[repr(C, align(4096))]
struct Slot {
    w: [AtomicU64; 16],
}
static A: Slot = Slot {
    w: [const { AtomicU64::new(0) }; 16],
};
static B: Slot = Slot {
    w: [const { AtomicU64::new(0) }; 16],
};
const CHECK: usize = 15;

#[inline(always)]
fn publish(s: &Slot, seq: u64, msg: &[u64; 8], v: usize) {
    if v == 0 || v == 2 {
        if v == 2 {
            // SAFETY: a prefetch hint of an address inside `s`; it never
            // faults and changes no memory.
            unsafe {
                core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_ET0 }>(
                    s.w[8].as_ptr() as *const i8,
                )
            };
        }
        s.w[0].store(2 * seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for i in 0..8 {
            s.w[4 + i].store(msg[i], Ordering::Relaxed);
        }
        s.w[1].store(64, Ordering::Relaxed);
        s.w[2].store(0, Ordering::Relaxed);
        s.w[3].store(0, Ordering::Relaxed);
        s.w[0].store(2 * seq + 2, Ordering::Release);
    } else {
        s.w[CHECK].store(2 * seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for i in 4..8 {
            s.w[4 + i].store(msg[i], Ordering::Relaxed);
        }
        s.w[0].store(2 * seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for i in 0..4 {
            s.w[4 + i].store(msg[i], Ordering::Relaxed);
        }
        s.w[1].store(64, Ordering::Relaxed);
        s.w[2].store(0, Ordering::Relaxed);
        s.w[3].store(0, Ordering::Relaxed);
        s.w[0].store(2 * seq + 2, Ordering::Release);
    }
}

#[inline(always)]
fn recv(s: &Slot, seq: u64, out: &mut [u64; 8], v: usize) {
    loop {
        let s1 = s.w[0].load(Ordering::Acquire);
        if s1 == 2 * seq + 2 {
            let _len = s.w[1].load(Ordering::Relaxed);
            for i in 0..8 {
                out[i] = s.w[4 + i].load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            // Only variant 1 writes the check word; the others leave it
            // stale, so checking it there would wait for ever.
            let ok = s.w[0].load(Ordering::Relaxed) == s1
                && (v != 1 || s.w[CHECK].load(Ordering::Relaxed) == 2 * seq + 1);
            if ok {
                return;
            }
        }
        std::hint::spin_loop();
    }
}

fn run(cpus: [usize; 2], v: usize) -> Result<Vec<f64>, Error> {
    let base = A.w[0].load(Ordering::Relaxed) / 2;
    let echo = std::thread::spawn(move || {
        pin_current_thread(cpus[1]).ok();
        let mut buf = [0u64; 8];
        for i in base..base + ITERS {
            recv(&A, i, &mut buf, v);
            publish(&B, i, &buf, v);
        }
    });
    pin_current_thread(cpus[0])?;
    let msg = [0xA5u64; 8];
    let mut back = [0u64; 8];
    let rtt = timed(|n| {
        publish(&A, base + n, &msg, v);
        recv(&B, base + n, &mut back, v);
        Ok(())
    })?;
    echo.join().map_err(|_| "echo")?;
    Ok(rtt)
}

fn main() -> Result<(), Error> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(10), |a| a.parse())?;
    if rounds == 0 {
        return Err("ROUNDS must be at least 1".into());
    }
    compare(
        "2-line message",
        rounds,
        &[
            "odd stamp in line 0",
            "check word in line 1",
            "prefetchw line 1, odd stamp in line 0",
            "odd stamp in line 0 (again)",
            "check word in line 1 (again)",
            "prefetchw (again)",
        ],
        |cpus, i| run(cpus, i % 3),
    )
}
