//! What the subscriber's mapping and the publish timestamp cost, on the
//! bare ring: two threads pinned to two CPUs ping-pong 64-byte messages
//! over two memfd rings, with the subscriber mapping the data read-only
//! (the default, with or without a mailbox) or read-write
//! (`trusted_subscribers`), timestamps on or off. Round trips are timed in
//! batches of 100 (no clock read per trip).
//! Each variant runs in short rounds interleaved with a bare
//! cache-line ping-pong, and the report gives the median of the per-round
//! ratios to that floor: the floor itself moves as the host moves the
//! vCPUs, so only ratios taken side by side compare (DESIGN.md, "Where the
//! ping-pong nanoseconds go").
//!
//! ```text
//! cargo run --release --example mapping_probe -- [ROUNDS] [SIZE]
//! ```

use std::time::Instant;

use ringbus::ring::{Consumer, Mode, Producer, RecvError, RingConfig, Start};
use ringbus::shm::{create_mailbox_memfd, create_ring_memfd, map_mailbox, map_ring, Access};
use ringbus::wait::pin_current_thread;

#[path = "common/floor.rs"]
mod common;
use common::{compare, Error, BATCH, ITERS};

/// Round trips over two rings, in ns.
fn ring(
    cpus: [usize; 2],
    size: usize,
    access: Access,
    stamps: bool,
    mailboxes: bool,
) -> Result<Vec<f64>, Error> {
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
    if mailboxes {
        for (id, producer, consumer) in [(1, &mut ping, &mut a), (2, &mut pong, &mut b)] {
            let m = create_mailbox_memfd(&cfg, id)?;
            producer.add_mailbox(map_mailbox(&m, &cfg, id)?)?;
            consumer.attach_mailbox(map_mailbox(&m, &cfg, id)?)?;
        }
    }
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
    let mut rtt = Vec::with_capacity((ITERS / BATCH) as usize);
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

fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(Ok(10), |a| a.parse())?;
    let size: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    if rounds == 0 || size == 0 {
        return Err("ROUNDS and SIZE must be at least 1".into());
    }
    let variants = [
        ("read-only, timestamps", Access::Subscriber, true, false),
        ("read-only, no timestamps", Access::Subscriber, false, false),
        (
            "read-only + mailbox, timestamps",
            Access::Subscriber,
            true,
            true,
        ),
        (
            "read-write, timestamps",
            Access::TrustedSubscriber,
            true,
            false,
        ),
        (
            "read-write, no timestamps",
            Access::TrustedSubscriber,
            false,
            false,
        ),
    ];
    let names: Vec<&str> = variants.iter().map(|v| v.0).collect();
    let title = format!("{size}-byte ping-pong");
    compare(&title, rounds, &names, |cpus, i| {
        let (_, access, stamps, mailboxes) = variants[i];
        ring(cpus, size, access, stamps, mailboxes)
    })
}
