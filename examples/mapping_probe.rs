//! What the subscriber's mapping and the publish timestamp cost, on the
//! bare ring: two threads pinned to two CPUs ping-pong 64-byte messages
//! over two memfd rings, with the subscriber mapping the data read-only
//! (the default) or read-write (`trusted_subscribers`), timestamps on or
//! off. Round trips are timed in batches of 100 (no clock read per trip).
//! Each variant runs in short rounds interleaved with a bare
//! cache-line ping-pong, and the report gives the median of the per-round
//! ratios to that floor: the floor itself moves as the host moves the
//! vCPUs, so only ratios taken side by side compare (DESIGN.md, "Where the
//! ping-pong nanoseconds go").
//!
//! ```text
//! cargo run --release --example mapping_probe -- [ROUNDS] [SIZE]
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ringbus::ring::{Consumer, Mode, Producer, RecvError, RingConfig, Start};
use ringbus::shm::{create_ring_memfd, map_ring, Access};
use ringbus::wait::{available_cores, pin_current_thread};

type Error = Box<dyn std::error::Error>;

const ITERS: usize = 30_000;
/// Round trips timed together (one clock read per batch, not per trip).
const BATCH: usize = 100;

/// One cache line per direction.
#[repr(align(128))]
struct Line(AtomicU64);

/// Round trips of the bare cache-line ping-pong, in ns.
fn floor(cpus: [usize; 2]) -> Result<Vec<f64>, Error> {
    static LINES: [Line; 2] = [Line(AtomicU64::new(0)), Line(AtomicU64::new(0))];
    let base = LINES[0].0.load(Ordering::Relaxed);
    let echo = std::thread::spawn(move || {
        pin_current_thread(cpus[1]).ok();
        for i in base + 1..=base + ITERS as u64 {
            while LINES[0].0.load(Ordering::Acquire) != i {
                std::hint::spin_loop();
            }
            LINES[1].0.store(i, Ordering::Release);
        }
    });
    pin_current_thread(cpus[0])?;
    let mut rtt = Vec::with_capacity(ITERS / BATCH);
    let mut t = Instant::now();
    for i in base + 1..=base + ITERS as u64 {
        LINES[0].0.store(i, Ordering::Release);
        while LINES[1].0.load(Ordering::Acquire) != i {
            std::hint::spin_loop();
        }
        if (i - base) % BATCH as u64 == 0 {
            rtt.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
            t = Instant::now();
        }
    }
    echo.join().map_err(|_| "echo thread panicked")?;
    Ok(rtt)
}

/// Round trips over two rings, in ns.
fn ring(cpus: [usize; 2], size: usize, access: Access, stamps: bool) -> Result<Vec<f64>, Error> {
    let cfg = RingConfig {
        max_message_size: size as u32,
        capacity: 4096,
        mode: Mode::Overwrite,
        max_subscribers: 1,
    };
    let (ad, ac) = create_ring_memfd("probe-a", &cfg, 1, 0)?;
    let (bd, bc) = create_ring_memfd("probe-b", &cfg, 2, 0)?;
    let mut ping = Producer::new(map_ring(&ad, &ac, Access::ReadWrite, None)?)?;
    let mut pong = Producer::new(map_ring(&bd, &bc, Access::ReadWrite, None)?)?;
    ping.set_timestamps(stamps);
    pong.set_timestamps(stamps);
    let mut a = Consumer::new(map_ring(&ad, &ac, access, None)?, Start::Earliest)?;
    let mut b = Consumer::new(map_ring(&bd, &bc, access, None)?, Start::Earliest)?;
    let echo = std::thread::spawn(move || -> Result<(), String> {
        pin_current_thread(cpus[1]).ok();
        let mut buf = vec![0u8; size];
        for _ in 0..ITERS {
            let info = spin_recv(&mut a, &mut buf)?;
            pong.publish(&buf[..info], 0).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    pin_current_thread(cpus[0])?;
    let (msg, mut back) = (vec![0xA5u8; size], vec![0u8; size]);
    let mut rtt = Vec::with_capacity(ITERS / BATCH);
    let mut t = Instant::now();
    for i in 1..=ITERS {
        ping.publish(&msg, 0)?;
        spin_recv(&mut b, &mut back)?;
        if i % BATCH == 0 {
            rtt.push(t.elapsed().as_nanos() as f64 / BATCH as f64);
            t = Instant::now();
        }
    }
    echo.join().map_err(|_| "echo thread panicked")??;
    Ok(rtt)
}

fn spin_recv(c: &mut Consumer, buf: &mut [u8]) -> Result<usize, String> {
    loop {
        match c.try_recv(buf) {
            Ok(info) => return Ok(info.len),
            Err(RecvError::Empty) => std::hint::spin_loop(),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// One-way ns: the median batch-mean round trip after a tenth of warm-up,
/// halved.
fn one_way(mut rtt: Vec<f64>) -> f64 {
    let rtt = rtt.split_off(rtt.len() / 10);
    median(rtt) / 2.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(Ok(10), |a| a.parse())?;
    let size: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    if rounds == 0 || size == 0 {
        return Err("ROUNDS and SIZE must be at least 1".into());
    }
    let cores = available_cores();
    let cpus = match cores.as_slice() {
        [a, b, ..] => [*a, *b],
        _ => return Err("needs two CPUs".into()),
    };
    let variants = [
        ("read-only, timestamps", Access::Subscriber, true),
        ("read-only, no timestamps", Access::Subscriber, false),
        ("read-write, timestamps", Access::TrustedSubscriber, true),
        (
            "read-write, no timestamps",
            Access::TrustedSubscriber,
            false,
        ),
    ];
    let mut floors = Vec::new();
    let mut ratios = vec![Vec::new(); variants.len()];
    let mut figures = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        let f = one_way(floor(cpus)?);
        floors.push(f);
        for (i, (_, access, stamps)) in variants.iter().enumerate() {
            let r = one_way(ring(cpus, size, *access, *stamps)?);
            ratios[i].push(r / f);
            figures[i].push(r);
        }
    }
    println!("{size}-byte ping-pong, CPUs {cpus:?}, {rounds} rounds of {ITERS} round trips");
    println!(
        "{:28} {:>8.1} ns one-way (median)",
        "cache-line floor",
        median(floors)
    );
    for (i, (name, _, _)) in variants.iter().enumerate() {
        println!(
            "{name:28} {:>8.1} ns one-way, {:.2}× the floor (median of per-round ratios)",
            median(figures[i].clone()),
            median(ratios[i].clone())
        );
    }
    Ok(())
}
