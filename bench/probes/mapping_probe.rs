//! What the subscriber's mapping, the publish timestamp and the library's
//! wait cost, on the bare ring: two threads pinned to two CPUs ping-pong
//! 64-byte messages over two memfd rings, with the subscriber mapping the
//! data read-only (the default, with or without a mailbox) or read-write
//! (`trusted_subscribers`), timestamps on or off (off is the default), and
//! each side waiting in a bare `try_recv` loop or in the library's
//! `recv_deadline` (`WaitStrategy::Spin`). Round trips are timed in
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

#![warn(clippy::undocumented_unsafe_blocks)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringbus::broker::{Broker, BrokerOptions, Config};
use ringbus::client::{Client, SubscribeOptions, TopicConfig};

use ringbus::ring::{Consumer, Mode, PortFlags, Producer, RecvError, Start};
use ringbus::shm::{create_port, create_ring, map_ring, Access};
use ringbus::wait::{pin_current_thread, WaitStrategy};

#[path = "common/floor.rs"]
mod common;
use common::{compare, timed, Error, ITERS};

/// Round trips over two rings, in ns.
fn ring(
    cpus: [usize; 2],
    size: usize,
    access: Access,
    stamps: bool,
    mailboxes: bool,
    library_wait: bool,
) -> Result<Vec<f64>, Error> {
    let wait = match library_wait {
        true => Wait::Library(Instant::now() + std::time::Duration::from_secs(60)),
        false => Wait::TryRecv,
    };
    let cfg = TopicConfig {
        max_message_size: size as u32,
        capacity: 4096,
        mode: Mode::Overwrite,
        max_subscribers: 1,
    };
    let ra = create_ring(&cfg, 1, 0)?;
    let rb = create_ring(&cfg, 2, 0)?;
    let mut ping = Producer::new(ra.region.clone())?;
    let mut pong = Producer::new(rb.region.clone())?;
    ping.set_timestamps(stamps);
    pong.set_timestamps(stamps);
    // Each reader's port: its cursor, and its mailbox if asked for.
    let flags = PortFlags {
        mailbox: mailboxes,
        trusted: access != Access::Subscriber,
    };
    let reader = |seg: &ringbus::shm::RingSegments, producer: &mut Producer, id| {
        let (_, port) = create_port(&cfg, id, 1, 0)?;
        producer.add_port(port.clone(), flags)?;
        let region = map_ring(&seg.data, &seg.lobby, None, access, None)?;
        Ok::<_, Error>(Consumer::with_port(
            region,
            port,
            Start::Earliest,
            mailboxes,
        )?)
    };
    let mut a = reader(&ra, &mut ping, 1)?;
    let mut b = reader(&rb, &mut pong, 2)?;
    let echo = std::thread::spawn(move || -> Result<(), String> {
        pin_current_thread(cpus[1]).ok();
        let mut buf = vec![0u8; size];
        for _ in 0..ITERS {
            let info = recv(&mut a, &mut buf, wait)?;
            pong.publish(&buf[..info], 0).map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    pin_current_thread(cpus[0])?;
    let (msg, mut back) = (vec![0xA5u8; size], vec![0u8; size]);
    let rtt = timed(|_| {
        ping.publish(&msg, 0)?;
        recv(&mut b, &mut back, wait)?;
        Ok(())
    })?;
    echo.join().map_err(|_| "echo thread panicked")??;
    Ok(rtt)
}

/// How a side waits for the next message.
#[derive(Clone, Copy)]
enum Wait {
    /// Spins on `try_recv`.
    TryRecv,
    /// The library's wait: `recv_deadline` with `WaitStrategy::Spin` and a
    /// deadline fixed for the run (what the bench and a `Subscriber` do).
    Library(Instant),
}

/// Round trips through the client layer (the default path): a broker in
/// this process, a `Publisher` and a `Subscriber` (read-only data plus a
/// mailbox, `WaitStrategy::Spin`) per side, in ns. `n` names the round's
/// topics.
fn client(cpus: [usize; 2], socket: &Path, size: usize, n: usize) -> Result<Vec<f64>, Error> {
    let cfg = TopicConfig {
        max_message_size: size as u32,
        capacity: 4096,
        ..TopicConfig::default()
    };
    let opts = SubscribeOptions {
        start: Start::Earliest,
        wait: WaitStrategy::Spin,
    };
    let (ta, tb) = (format!("probe{n}.a"), format!("probe{n}.b"));
    let (c1, c2) = (Client::connect(socket)?, Client::connect(socket)?);
    c1.open_topic(&ta, cfg)?;
    c1.open_topic(&tb, cfg)?;
    let mut ping = c1.publisher(&ta, cfg)?;
    let mut back_sub = c1.subscriber(&tb, opts)?;
    let mut ping_sub = c2.subscriber(&ta, opts)?;
    let mut pong = c2.publisher(&tb, cfg)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let echo = std::thread::spawn(move || -> Result<(), String> {
        pin_current_thread(cpus[1]).ok();
        let mut buf = vec![0u8; size];
        for _ in 0..ITERS {
            let d = ping_sub
                .recv_deadline(&mut buf, Some(deadline))
                .map_err(|e| e.to_string())?;
            pong.publish(&buf[..d.info.len], 0)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    pin_current_thread(cpus[0])?;
    let (msg, mut back) = (vec![0xA5u8; size], vec![0u8; size]);
    let rtt = timed(|_| {
        ping.publish(&msg, 0)?;
        back_sub.recv_deadline(&mut back, Some(deadline))?;
        Ok(())
    })?;
    echo.join().map_err(|_| "echo thread panicked")??;
    Ok(rtt)
}

fn recv(c: &mut Consumer, buf: &mut [u8], wait: Wait) -> Result<usize, String> {
    if let Wait::Library(deadline) = wait {
        return c
            .recv_deadline(buf, WaitStrategy::Spin, Some(deadline))
            .map(|i| i.len)
            .map_err(|e| e.to_string());
    }
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
    use Access::{Subscriber as RO, TrustedSubscriber as RW};
    // (name, subscriber's mapping, timestamps, mailbox, library wait)
    let variants = [
        ("read-only, timestamps", RO, true, false, false),
        ("read-only + mailbox, timestamps", RO, true, true, false),
        ("read-only + mailbox", RO, false, true, false),
        ("read-write, timestamps", RW, true, false, false),
        ("read-write", RW, false, false, false),
        ("read-only + mailbox, library wait", RO, false, true, true),
        ("read-write, library wait", RW, false, false, true),
    ];
    // The client variant's broker, in this process (its thread sleeps in
    // `poll` between requests), its ring files on tmpfs like a real one's:
    // ring pages of a file on disk get written back and write-protected.
    let base = match Path::new("/dev/shm").is_dir() {
        true => Path::new("/dev/shm").to_path_buf(),
        false => std::env::temp_dir(),
    };
    let dir = base.join(format!("mapping-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("broker.sock");
    let mut broker = Broker::bind(BrokerOptions {
        socket: socket.clone(),
        data_dir: dir.join("data"),
        config: Config::default(),
        keeper: None,
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let broker = std::thread::spawn(move || broker.run(&flag));
    let mut names: Vec<&str> = variants.iter().map(|v| v.0).collect();
    names.push("client layer (Publisher / Subscriber), library wait");
    let title = format!("{size}-byte ping-pong");
    let mut round = 0;
    let result = compare(&title, rounds, &names, |cpus, i| {
        if i == variants.len() {
            round += 1;
            return client(cpus, &socket, size, round);
        }
        let (_, access, stamps, mailboxes, library) = variants[i];
        ring(cpus, size, access, stamps, mailboxes, library)
    });
    // Relaxed: the broker's stop flag (see `Broker::run`).
    stop.store(true, Ordering::Relaxed);
    let stopped = broker.join();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    stopped.map_err(|_| "the broker thread panicked")??;
    Ok(())
}
