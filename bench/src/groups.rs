//! `--scenarios groups`: consumer groups against plain subscribers, 64-byte
//! messages, threads of one process over an embedded broker.
//!
//! * **streaming**: a publisher streams into a back-pressure topic; one
//!   reader: a plain subscriber, or the only member of a group (spin
//!   waits both). Messages/s, from the first publish to the last receive.
//!   The group's cost is the claim (a CAS and a load of the ring's head per
//!   batch of up to 64) and the acknowledgement (the cursor store a plain
//!   subscriber makes anyway).
//! * **ping-pong**: a round trip through two topics; the echo side reads
//!   `ping` as a plain subscriber or as a one-member group (spin). p50 of
//!   the round trip.
//! * **members**: aggregate messages/s of a group of 1, 2 and 4 members
//!   reading one publisher's stream. Only meaningful with a CPU per
//!   thread (the plan's CPUs: the publisher on the first, members on the
//!   others, round-robin).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use ringbus::broker::EmbeddedBroker;
use ringbus::client::{Client, GroupOptions, Mode, SubscribeOptions, TopicConfig};
use ringbus::ring::Start;
use ringbus::wait::WaitStrategy;

const SIZE: usize = 64;

/// What `--scenarios groups` measured.
#[derive(Clone, Debug, Serialize)]
pub struct GroupsReport {
    /// Messages per streaming run.
    pub messages: u64,
    /// Plain subscriber, messages/s.
    pub plain_msgs_per_s: f64,
    /// One-member group, messages/s.
    pub group_msgs_per_s: f64,
    /// Round trips per ping-pong run.
    pub round_trips: u64,
    /// Plain echo, p50 round trip, ns.
    pub plain_rtt_p50_ns: f64,
    /// One-member group echo, p50 round trip, ns.
    pub group_rtt_p50_ns: f64,
    /// (members, aggregate messages/s).
    pub members: Vec<(usize, f64)>,
    /// CPUs the threads were spread over.
    pub cpus: usize,
}

impl GroupsReport {
    /// Group streaming over plain streaming.
    pub fn streaming_ratio(&self) -> f64 {
        self.group_msgs_per_s / self.plain_msgs_per_s
    }

    /// Group p50 round trip over plain.
    pub fn rtt_ratio(&self) -> f64 {
        self.group_rtt_p50_ns / self.plain_rtt_p50_ns
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pin(cpu: Option<usize>) {
    if let Some(c) = cpu {
        let mut set = rustix::thread::CpuSet::new();
        set.set(c);
        let _ = rustix::thread::sched_setaffinity(None, &set);
    }
}

fn config(capacity: u32) -> TopicConfig {
    TopicConfig {
        max_message_size: SIZE as u32,
        capacity,
        mode: Mode::Backpressure,
        max_subscribers: 8,
    }
}

fn spin_group(batch: u32) -> GroupOptions {
    GroupOptions {
        start: Start::Latest,
        wait: WaitStrategy::Spin,
        batch,
        ..Default::default()
    }
}

/// One streaming run: `readers` group members (0: one plain subscriber).
fn stream(client: &Client, topic: &str, readers: usize, n: u64, cpus: &[usize]) -> Result<f64> {
    let mut p = client.publisher(topic, config(1024))?;
    let done = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    let count = readers.max(1);
    let start = Arc::new(std::sync::Barrier::new(count + 1));
    for i in 0..count {
        let (done, start) = (done.clone(), start.clone());
        let cpu = cpus
            .get(1 + i % cpus.len().saturating_sub(1).max(1))
            .copied();
        let mut plain = (readers == 0).then(|| {
            client.subscriber(
                topic,
                SubscribeOptions {
                    start: Start::Latest,
                    wait: WaitStrategy::Spin,
                },
            )
        });
        let mut member =
            (readers > 0).then(|| client.subscriber_in_group(topic, "bench", spin_group(64)));
        let plain = plain.take().transpose()?;
        let member = member.take().transpose()?;
        threads.push(std::thread::spawn(move || {
            pin(cpu);
            let mut buf = [0u8; SIZE];
            start.wait();
            match (plain, member) {
                (Some(mut s), _) => {
                    for _ in 0..n {
                        s.recv(&mut buf).expect("plain receive");
                    }
                    done.fetch_add(n, Ordering::SeqCst);
                }
                (_, Some(mut m)) => {
                    // As the plain reader: no clock read per message (the
                    // group's members stop when all `n` are in).
                    let mut mine = 0u64;
                    loop {
                        match m.try_recv(&mut buf) {
                            Ok(_) => {
                                mine += 1;
                                if mine % 256 == 0 {
                                    done.fetch_add(256, Ordering::Relaxed);
                                }
                            }
                            Err(ringbus::ring::RecvError::Empty) => {
                                done.fetch_add(mine % 256, Ordering::Relaxed);
                                mine -= mine % 256;
                                if done.load(Ordering::Relaxed) >= n {
                                    break;
                                }
                                std::hint::spin_loop();
                            }
                            Err(e) => panic!("group receive: {e}"),
                        }
                    }
                }
                _ => unreachable!(),
            }
            Instant::now()
        }));
    }
    pin(cpus.first().copied());
    let payload = [7u8; SIZE];
    start.wait();
    let t0 = Instant::now();
    for i in 0..n {
        p.publish(&payload, i)?;
    }
    let end = threads
        .into_iter()
        .map(|t| t.join().expect("a reader panicked"))
        .max()
        .unwrap_or_else(Instant::now);
    Ok(n as f64 / end.duration_since(t0).as_secs_f64())
}

/// One ping-pong run: p50 round trip, the echo reading `ping` as a plain
/// subscriber or a one-member group.
fn ping_pong(client: &Client, tag: &str, group: bool, trips: u64, cpus: &[usize]) -> Result<f64> {
    let ping = format!("bench.pp.{tag}.ping");
    let pong = format!("bench.pp.{tag}.pong");
    let spin = SubscribeOptions {
        start: Start::Latest,
        wait: WaitStrategy::Spin,
    };
    let mut back = client.subscriber(&pong, spin)?;
    let mut out = client.publisher(&ping, config(64))?;
    let plain = (!group)
        .then(|| client.subscriber(&ping, spin))
        .transpose()?;
    let member = group
        .then(|| client.subscriber_in_group(&ping, "bench", spin_group(64)))
        .transpose()?;
    let echo_client = client.clone();
    let cpu = cpus.get(1).copied();
    let total = trips + trips / 10;
    let echo = std::thread::spawn(move || -> Result<()> {
        pin(cpu);
        let mut reply = echo_client.publisher(&pong, config(64))?;
        let mut buf = [0u8; SIZE];
        match (plain, member) {
            (Some(mut s), _) => {
                for i in 0..total {
                    s.recv(&mut buf)?;
                    reply.publish(&buf, i)?;
                }
            }
            (_, Some(mut m)) => {
                for i in 0..total {
                    m.recv(&mut buf)?;
                    reply.publish(&buf, i)?;
                }
            }
            _ => unreachable!(),
        }
        Ok(())
    });
    pin(cpus.first().copied());
    // The echo's publisher on `pong` must exist before the first ping.
    let deadline = Instant::now() + Duration::from_secs(10);
    while back.rings().is_empty() {
        anyhow::ensure!(Instant::now() < deadline, "the echo never attached");
        let _ = back.try_recv(&mut [0u8; SIZE]);
        std::thread::sleep(Duration::from_millis(1));
    }
    let mut buf = [0u8; SIZE];
    let mut rtts = Vec::with_capacity(trips as usize);
    for i in 0..total {
        let t = Instant::now();
        out.publish(&buf.clone(), i)?;
        back.recv(&mut buf)?;
        if i >= total - trips {
            rtts.push(t.elapsed().as_nanos() as f64);
        }
    }
    echo.join().expect("the echo panicked")?;
    Ok(median(rtts))
}

/// Runs the scenario `runs` times (medians), on `cpus`.
pub fn measure(runs: usize, smoke: bool, cpus: &[usize]) -> Result<GroupsReport> {
    let broker = EmbeddedBroker::start().context("starting a broker")?;
    let client = broker.client()?;
    let n: u64 = if smoke { 20_000 } else { 2_000_000 };
    let trips: u64 = if smoke { 2_000 } else { 100_000 };
    let mut plain = Vec::new();
    let mut group = Vec::new();
    let mut prtt = Vec::new();
    let mut grtt = Vec::new();
    let mut members: Vec<(usize, Vec<f64>)> = [1, 2, 4].iter().map(|&m| (m, Vec::new())).collect();
    for r in 0..runs {
        plain.push(stream(&client, &format!("bench.g.plain.{r}"), 0, n, cpus)?);
        group.push(stream(&client, &format!("bench.g.one.{r}"), 1, n, cpus)?);
        prtt.push(ping_pong(&client, &format!("p{r}"), false, trips, cpus)?);
        grtt.push(ping_pong(&client, &format!("g{r}"), true, trips, cpus)?);
        for (m, v) in &mut members {
            v.push(stream(&client, &format!("bench.g.m{m}.{r}"), *m, n, cpus)?);
        }
    }
    drop(client);
    broker.stop().context("the groups bench's broker failed")?;
    Ok(GroupsReport {
        messages: n,
        plain_msgs_per_s: median(plain),
        group_msgs_per_s: median(group),
        round_trips: trips,
        plain_rtt_p50_ns: median(prtt),
        group_rtt_p50_ns: median(grtt),
        members: members.into_iter().map(|(m, v)| (m, median(v))).collect(),
        cpus: cpus.len(),
    })
}
