//! Micro-benchmarks of the ring: publish cost and receive cost per message
//! size (one thread, heap memory), and a two-thread ping-pong.
//! `cargo bench --bench ring`; `cargo test --benches` runs each once.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringbus::ring::{Consumer, Mode, Producer, RecvError, RingRegion, Start, TopicConfig};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const SIZES: [usize; 4] = [8, 64, 1024, 65536];

fn region(size: usize, capacity: u32) -> Arc<RingRegion> {
    RingRegion::heap(&TopicConfig {
        max_message_size: size as u32,
        capacity,
        mode: Mode::Overwrite,
        max_subscribers: 4,
    })
    .unwrap()
}

fn publish(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish");
    for size in SIZES {
        let msg = vec![0x5Au8; size];
        g.throughput(Throughput::Bytes(size as u64));
        for ts in [true, false] {
            let mut p = Producer::new(region(size, 256)).unwrap();
            p.set_timestamps(ts);
            let name = if ts { "timestamped" } else { "no_timestamp" };
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                b.iter(|| p.publish(black_box(&msg), 1).unwrap())
            });
        }
    }
    g.finish();
}

fn receive(c: &mut Criterion) {
    let mut g = c.benchmark_group("receive");
    for size in SIZES {
        let msg = vec![0x5Au8; size];
        let mut buf = vec![0u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        let r = region(size, 256);
        let mut p = Producer::new(r.clone()).unwrap();
        p.set_timestamps(false);
        let mut s = Consumer::new(r, Start::Latest).unwrap();
        // Receive cost: each iteration refills the ring in one batch of 128
        // (untimed) and then times 128 receives.
        g.bench_with_input(BenchmarkId::new("try_recv", size), &size, |b, _| {
            b.iter_custom(|iters| {
                let mut total = std::time::Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let n = left.min(128);
                    for _ in 0..n {
                        p.publish(&msg, 0).unwrap();
                    }
                    let t = std::time::Instant::now();
                    for _ in 0..n {
                        black_box(s.try_recv(&mut buf).unwrap());
                    }
                    total += t.elapsed();
                    left -= n;
                }
                total
            })
        });
    }
    g.finish();
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_pong_two_threads");
    let size = 64;
    let (ping, pong) = (region(size, 64), region(size, 64));
    let stop = Arc::new(AtomicBool::new(false));
    let echo = {
        // Joined before the first ping: a consumer made in the thread could
        // start after it (Start::Latest) and the ping-pong would never start.
        let mut rx = Consumer::new(ping.clone(), Start::Latest).unwrap();
        let mut tx = Producer::new(pong.clone()).unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Pinned apart when the machine has two CPUs (best effort).
            let _ = ringbus::wait::pin_current_thread(1);
            tx.set_timestamps(false);
            let mut buf = [0u8; 64];
            while !stop.load(Ordering::Relaxed) {
                match rx.try_recv(&mut buf) {
                    Ok(i) => {
                        tx.publish(&buf[..i.len], i.tag).unwrap();
                    }
                    Err(RecvError::Empty) => std::hint::spin_loop(),
                    Err(e) => panic!("{e}"),
                }
            }
        })
    };
    let _ = ringbus::wait::pin_current_thread(0);
    let mut tx = Producer::new(ping).unwrap();
    tx.set_timestamps(false);
    let mut rx = Consumer::new(pong, Start::Latest).unwrap();
    let msg = [7u8; 64];
    let mut buf = [0u8; 64];
    g.bench_function("rtt_64B", |b| {
        b.iter(|| {
            tx.publish(&msg, 0).unwrap();
            loop {
                match rx.try_recv(&mut buf) {
                    Ok(_) => break,
                    Err(RecvError::Empty) => std::hint::spin_loop(),
                    Err(e) => panic!("{e}"),
                }
            }
        })
    });
    g.finish();
    stop.store(true, Ordering::Relaxed);
    echo.join().unwrap();
}

criterion_group!(benches, publish, receive, ping_pong);
criterion_main!(benches);
