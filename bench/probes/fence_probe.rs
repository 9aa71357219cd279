//! What a fence after the send does to the bare cache-line ping-pong: two
//! threads pinned to two CPUs bounce a sequence word through one line per
//! direction, as the floor in `common/floor.rs` does, with a full fence (or
//! a cheaper relative) between each side's store and its spin on the reply,
//! and with the spin's hint varied. Rounds interleaved with the plain
//! floor; the report gives the median of per-round ratios to it
//! (DESIGN.md, "The floors fence").
//!
//! ```text
//! cargo run --release --example fence_probe -- [ROUNDS]
//! ```

#![warn(clippy::undocumented_unsafe_blocks)]

use std::sync::atomic::{fence, AtomicU64, Ordering};

use ringbus::wait::pin_current_thread;

#[path = "common/floor.rs"]
mod common;
use common::{compare, timed, Error, ITERS};

/// One cache line per direction.
#[repr(align(128))]
struct Line(AtomicU64);

/// What a side does between its store and its spin, and how it spins.
#[derive(Clone, Copy)]
struct Variant {
    name: &'static str,
    /// After the store: 0 nothing, 1 `mfence`, 2 a locked add on the
    /// stack, 3 `sfence`, 4 `mfence` then ~30 ns of register-only work.
    after: u8,
    /// Which side does it: 0 both, 1 the timing side only, 2 the echo only.
    side: u8,
    /// The spin's hint: 0 `pause`, 1 none, 2 `lfence`.
    hint: u8,
}

const VARIANTS: [Variant; 9] = [
    Variant {
        name: "plain (the floor again)",
        after: 0,
        side: 0,
        hint: 0,
    },
    Variant {
        name: "mfence, both sides",
        after: 1,
        side: 0,
        hint: 0,
    },
    Variant {
        name: "mfence, timing side only",
        after: 1,
        side: 1,
        hint: 0,
    },
    Variant {
        name: "mfence, echo side only",
        after: 1,
        side: 2,
        hint: 0,
    },
    Variant {
        name: "locked add, both sides",
        after: 2,
        side: 0,
        hint: 0,
    },
    Variant {
        name: "sfence, both sides",
        after: 3,
        side: 0,
        hint: 0,
    },
    Variant {
        name: "mfence then 30 ns of work",
        after: 4,
        side: 0,
        hint: 0,
    },
    Variant {
        name: "no hint in the spin",
        after: 0,
        side: 0,
        hint: 1,
    },
    Variant {
        name: "mfence, lfence in the spin",
        after: 1,
        side: 0,
        hint: 2,
    },
];

#[inline(always)]
fn after_store(v: Variant, timing_side: bool) {
    let mine = match v.side {
        0 => true,
        1 => timing_side,
        _ => !timing_side,
    };
    if !mine {
        return;
    }
    match v.after {
        1 | 4 => fence(Ordering::SeqCst),
        2 => {
            let z = AtomicU64::new(0);
            z.fetch_add(0, Ordering::SeqCst);
            std::hint::black_box(&z);
        }
        // SAFETY: `sfence` only orders stores; it touches no memory or
        // registers Rust knows of.
        3 => unsafe { std::arch::asm!("sfence", options(nostack, preserves_flags)) },
        _ => {}
    }
    if v.after == 4 {
        let mut x: u64 = 7;
        for _ in 0..30 {
            // SAFETY: register-only arithmetic.
            unsafe {
                std::arch::asm!("imul {0}, {0}, 3", inout(reg) x, options(nomem, nostack, pure))
            };
        }
        std::hint::black_box(x);
    }
}

#[inline(always)]
fn hint(v: Variant) {
    match v.hint {
        0 => std::hint::spin_loop(),
        // SAFETY: `lfence` waits for earlier loads; no memory or registers.
        2 => unsafe { std::arch::asm!("lfence", options(nostack, nomem, preserves_flags)) },
        _ => {}
    }
}

/// Round trips of variant `v` between `cpus`, in ns (batch means).
fn run(cpus: [usize; 2], v: Variant) -> Result<Vec<f64>, Error> {
    static LINES: [Line; 2] = [Line(AtomicU64::new(0)), Line(AtomicU64::new(0))];
    let base = LINES[0].0.load(Ordering::Relaxed);
    let echo = std::thread::spawn(move || {
        pin_current_thread(cpus[1]).ok();
        for i in base + 1..=base + ITERS {
            // Acquire: pairs with the timing side's Release store.
            while LINES[0].0.load(Ordering::Acquire) != i {
                hint(v);
            }
            // Release: pairs with the timing side's Acquire load.
            LINES[1].0.store(i, Ordering::Release);
            after_store(v, false);
        }
    });
    pin_current_thread(cpus[0])?;
    let rtt = timed(|n| {
        let i = base + 1 + n;
        // Release: pairs with the echo's Acquire load.
        LINES[0].0.store(i, Ordering::Release);
        after_store(v, true);
        // Acquire: pairs with the echo's Release store.
        while LINES[1].0.load(Ordering::Acquire) != i {
            hint(v);
        }
        Ok(())
    })?;
    echo.join().map_err(|_| "echo thread panicked")?;
    Ok(rtt)
}

fn main() -> Result<(), Error> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(10), |a| a.parse())?;
    if rounds == 0 {
        return Err("ROUNDS must be at least 1".into());
    }
    let names: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
    compare("cache-line ping-pong", rounds, &names, |cpus, i| {
        run(cpus, VARIANTS[i])
    })
}
