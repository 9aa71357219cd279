//! The Rust twin of `examples/c/pingpong.c`, to compare the C ABI with the
//! Rust API in the same conditions: a ping on one topic, the answer on
//! another, N round trips between two processes busy-polling on two pinned
//! CPUs; prints the one-way latency (round trip / 2) percentiles.
//!
//! ```text
//! cargo run --release --example pingpong -- [ITERATIONS] [SIZE]
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use ringbus::client::{Client, Publisher, SubscribeOptions, Subscriber, TopicConfig};
use ringbus::ring::RecvError;
use ringbus::wait::{available_cores, pin_current_thread, WaitStrategy};

type Error = Box<dyn std::error::Error>;

const STOP_TAG: u64 = u64::MAX;
const WARMUP_TAG: u64 = u64::MAX - 1;

fn open_side(out: &str, input: &str, size: usize) -> Result<(Publisher, Subscriber), Error> {
    let client = Client::connect_default()?;
    let config = TopicConfig {
        max_message_size: size.max(8) as u32,
        capacity: 64,
        ..TopicConfig::default()
    };
    let options = SubscribeOptions {
        wait: WaitStrategy::Spin,
        ..SubscribeOptions::default()
    };
    let sub = client.subscriber(input, options)?;
    let publisher = client.publisher(out, config)?;
    Ok((publisher, sub))
}

fn pin(index: usize) -> Result<(), Error> {
    let cores = available_cores();
    if cores.len() >= 2 {
        pin_current_thread(cores[index])?;
    }
    Ok(())
}

/// The child: echoes each ping until the stop tag.
fn pong(ping: &str, pong: &str, size: usize) -> Result<(), Error> {
    pin(1)?;
    let (mut publisher, mut sub) = open_side(pong, ping, size)?;
    let mut buf = vec![0u8; 65536];
    loop {
        match sub.recv(&mut buf) {
            Ok(d) if d.info.tag == STOP_TAG => return Ok(()),
            Ok(d) => {
                publisher.publish(&buf[..d.info.len], d.info.tag)?;
            }
            Err(RecvError::Lagged { .. } | RecvError::EndOfStream) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--pong") {
        return pong(&args[2], &args[3], args[4].parse()?);
    }
    let iterations: usize = args.get(1).map_or(Ok(100_000), |a| a.parse())?;
    let size: usize = args.get(2).map_or(Ok(64), |a| a.parse())?;
    let ping_topic = format!("pingpong-rs.{}.ping", std::process::id());
    let pong_topic = format!("pingpong-rs.{}.pong", std::process::id());
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--pong", &ping_topic, &pong_topic, &size.to_string()])
        .spawn()?;

    pin(0)?;
    let (mut publisher, mut sub) = open_side(&ping_topic, &pong_topic, size)?;
    let mut buf = vec![0u8; size.max(8)];
    // Until the child is subscribed, pings are lost: retry until one comes back.
    loop {
        publisher.publish(&buf[..size], WARMUP_TAG)?;
        match sub.recv_timeout(&mut buf, Duration::from_millis(10)) {
            Ok(d) if d.info.tag == WARMUP_TAG => break,
            Ok(_) | Err(RecvError::Timeout) => {}
            Err(e) => return Err(e.into()),
        }
    }
    // Drain answers to the other warm-up pings.
    let drain = Duration::from_millis(50);
    while sub.recv_timeout(&mut buf, drain).is_ok() {}

    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations as u64 {
        let t0 = Instant::now();
        let mut loan = publisher.loan(size)?;
        let n = size.min(8);
        loan[..n].copy_from_slice(&i.to_le_bytes()[..n]);
        loan.commit(i);
        let d = sub.recv(&mut buf)?;
        let rtt = t0.elapsed();
        assert!(
            d.info.tag == i && d.info.len == size,
            "round {i}: bad answer"
        );
        samples.push(rtt.as_nanos() as u64 / 2);
    }
    publisher.publish(&[], STOP_TAG)?;
    let status = child.wait()?;

    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    let mean = samples.iter().sum::<u64>() / samples.len() as u64;
    println!(
        "Rust ping-pong over ringbus: {iterations} round trips, {size}-byte messages, one-way \
         latency (round trip / 2): min {} ns, p50 {} ns, p90 {} ns, p99 {} ns, p99.9 {} ns, \
         max {} ns, mean {mean} ns",
        samples[0],
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        samples[samples.len() - 1],
    );
    if !status.success() {
        return Err("the pong process failed".into());
    }
    Ok(())
}
