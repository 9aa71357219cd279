//! Can a read-only subscriber be told about a message through a writable
//! "doorbell" line and then read the message from read-only pages, as fast
//! as a subscriber that polls a writable mapping? Raw seqlock rings, no
//! ringbus code: two threads pinned to two CPUs ping-pong 64-byte messages
//! over two rings of 128-byte slots (32-byte header, payload), each ring a
//! memfd mapped read-write by its writer and read-only or read-write by its
//! reader; the doorbell is a word in a second memfd that both map
//! read-write. Each variant runs in short rounds interleaved with a bare
//! cache-line ping-pong; the report gives the median of per-round ratios
//! (DESIGN.md, "Where the ping-pong nanoseconds go").
//!
//! ```text
//! cargo run --release --example doorbell_probe -- [ROUNDS]
//! ```

#![warn(clippy::undocumented_unsafe_blocks)]

use std::fs::File;
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::Instant;

use memmap2::{Mmap, MmapMut, MmapOptions};
use ringbus::wait::pin_current_thread;

#[path = "common/floor.rs"]
mod common;
use common::{compare, Error, BATCH, ITERS};

const CAP: u64 = 4096;
const STRIDE: usize = 128;
const HEADER: usize = 32;
const SIZE: usize = 64;

fn memfd(len: usize) -> Result<File, Error> {
    let fd = rustix::fs::memfd_create("doorbell-probe", rustix::fs::MemfdFlags::CLOEXEC)?;
    let f = File::from(fd);
    f.set_len(len as u64)?;
    Ok(f)
}

/// One direction: the writer's view and the reader's view of the same
/// slots and doorbell.
struct Ring {
    _w: MmapMut,
    _r: Option<Mmap>,
    _rw: Option<MmapMut>,
    _bell: MmapMut,
    wbase: usize,
    rbase: usize,
    bell: usize,
}

impl Ring {
    fn new(read_only: bool) -> Result<Ring, Error> {
        let len = CAP as usize * STRIDE;
        let data = memfd(len)?;
        let bellf = memfd(4096)?;
        // SAFETY: a private memfd of `len` bytes that nothing truncates;
        // the map lives in the `Ring` with the pointers taken from it (so do
        // the maps below).
        let mut w = unsafe { MmapOptions::new().len(len).populate().map_mut(&data)? };
        w.fill(0);
        let (r, rw, rbase) = if read_only {
            // SAFETY: as above.
            let r = unsafe { MmapOptions::new().len(len).populate().map(&data)? };
            let b = r.as_ptr() as usize;
            (Some(r), None, b)
        } else {
            // SAFETY: as above.
            let mut r = unsafe { MmapOptions::new().len(len).populate().map_mut(&data)? };
            let b = r.as_mut_ptr() as usize;
            (None, Some(r), b)
        };
        // SAFETY: as above.
        let mut bell = unsafe { MmapOptions::new().len(4096).populate().map_mut(&bellf)? };
        let wbase = w.as_mut_ptr() as usize;
        let bellp = bell.as_mut_ptr() as usize;
        Ok(Ring {
            _w: w,
            _r: r,
            _rw: rw,
            _bell: bell,
            wbase,
            rbase,
            bell: bellp,
        })
    }
}

/// Raw addresses, so the two threads can share them.
#[derive(Clone, Copy)]
struct View {
    cap: u64,
    w: usize,
    r: usize,
    bell: usize,
}

impl View {
    fn slot(&self, base: usize, seq: u64) -> usize {
        base + (seq % self.cap) as usize * STRIDE
    }

    fn stamp(&self, base: usize, seq: u64) -> &'static AtomicU64 {
        // SAFETY: probe: `base` is a live mapping of CAP slots for the
        // whole run; slot starts are 128-byte aligned.
        unsafe { &*(self.slot(base, seq) as *const AtomicU64) }
    }

    fn bell(&self) -> &'static AtomicU64 {
        // SAFETY: as above, a live page.
        unsafe { &*(self.bell as *const AtomicU64) }
    }

    fn publish(&self, seq: u64, msg: &[u8], ring_bell: bool) {
        let st = self.stamp(self.w, seq);
        st.store(2 * seq + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let p = (self.slot(self.w, seq) + HEADER) as *mut u8;
        // SAFETY: inside the slot; only this thread writes it.
        unsafe { std::ptr::copy_nonoverlapping(msg.as_ptr(), p, msg.len()) };
        st.store(2 * seq + 2, Ordering::Release);
        if ring_bell {
            self.bell().store(seq + 1, Ordering::Release);
        }
    }

    fn recv(&self, seq: u64, buf: &mut [u8], bell: bool) -> bool {
        if bell {
            while self.bell().load(Ordering::Acquire) <= seq {
                std::hint::spin_loop();
            }
        }
        let st = self.stamp(self.r, seq);
        loop {
            let s1 = st.load(Ordering::Acquire);
            if s1 == 2 * seq + 2 {
                let p = (self.slot(self.r, seq) + HEADER) as *const u8;
                // SAFETY: inside the slot; torn bytes are rejected below.
                unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
                fence(Ordering::Acquire);
                return st.load(Ordering::Relaxed) == s1;
            }
            if s1 > 2 * seq + 2 {
                return false;
            }
            std::hint::spin_loop();
        }
    }
}

fn pingpong(cpus: [usize; 2], read_only: bool, bell: bool, cap: u64) -> Result<Vec<f64>, Error> {
    let (x, y) = (Ring::new(read_only)?, Ring::new(read_only)?);
    let vx = View {
        cap,
        w: x.wbase,
        r: x.rbase,
        bell: x.bell,
    };
    let vy = View {
        cap,
        w: y.wbase,
        r: y.rbase,
        bell: y.bell,
    };
    let echo = std::thread::spawn(move || {
        pin_current_thread(cpus[1]).ok();
        let mut buf = [0u8; SIZE];
        for seq in 0..ITERS {
            if !vx.recv(seq, &mut buf, bell) {
                return false;
            }
            vy.publish(seq, &buf, bell);
        }
        true
    });
    pin_current_thread(cpus[0])?;
    let msg = [0xA5u8; SIZE];
    let mut back = [0u8; SIZE];
    let mut rtt = Vec::new();
    let mut t = Instant::now();
    for seq in 0..ITERS {
        vx.publish(seq, &msg, bell);
        if !vy.recv(seq, &mut back, bell) {
            return Err("torn echo".into());
        }
        if (seq + 1) % BATCH == 0 {
            rtt.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
            t = Instant::now();
        }
    }
    if !echo.join().map_err(|_| "echo panicked")? {
        return Err("torn ping".into());
    }
    drop((x, y));
    Ok(rtt)
}

fn main() -> Result<(), Error> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(10), |a| a.parse())?;
    if rounds == 0 {
        return Err("ROUNDS must be at least 1".into());
    }
    let variants = [
        ("ring slots, read-only", true, false, CAP),
        ("ring slots, read-write", false, false, CAP),
        ("one fixed slot, read-only", true, false, 1),
        ("one fixed slot, read-write", false, false, 1),
        ("doorbell + read-only slots", true, true, CAP),
        ("doorbell + read-write slots", false, true, CAP),
    ];
    let names: Vec<&str> = variants.iter().map(|v| v.0).collect();
    compare("64-byte ping-pong", rounds, &names, |cpus, i| {
        let (_, ro, bell, cap) = variants[i];
        pingpong(cpus, ro, bell, cap)
    })
}
