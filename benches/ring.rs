//! Cost of the publish and receive calls per message size (single thread,
//! no contention: the call's own cost). Cross-process latency and
//! throughput are `ringbus bench`'s job.
//!
//! Run: `cargo bench --bench ring`. `cargo test --benches` keeps it
//! compiling; nothing gates on its figures.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringbus::ring::{Consumer, Mode, Producer, RingConfig, RingRegion, Start};

const SIZES: [usize; 4] = [8, 64, 1024, 65536];

fn ring(size: usize, mode: Mode) -> (Producer, Consumer) {
    let region = RingRegion::heap(&RingConfig {
        max_message_size: size as u32,
        capacity: if size >= 65536 { 64 } else { 1024 },
        mode,
        max_subscribers: 1,
    })
    .expect("valid config");
    let producer = Producer::new(region.clone()).expect("writable");
    let consumer = Consumer::new(region, Start::Earliest).expect("cursor");
    (producer, consumer)
}

/// `publish` alone (overwrite ring, the publisher never waits), with the
/// per-message timestamp on (the default) and off.
fn publish(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let msg = vec![0x5Au8; size];
        for (name, stamps) in [("timestamp", true), ("no-timestamp", false)] {
            let (mut producer, _consumer) = ring(size, Mode::Overwrite);
            producer.set_timestamps(stamps);
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                b.iter(|| producer.publish(std::hint::black_box(&msg), 7).unwrap())
            });
        }
    }
    g.finish();
}

/// `publish` then `try_recv` of the same message, both modes.
fn publish_recv(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish+try_recv");
    for size in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let msg = vec![0x5Au8; size];
        let mut buf = vec![0u8; size];
        for mode in [Mode::Overwrite, Mode::Backpressure] {
            let (mut producer, mut consumer) = ring(size, mode);
            g.bench_with_input(BenchmarkId::new(mode.to_string(), size), &size, |b, _| {
                b.iter(|| {
                    producer.publish(&msg, 7).unwrap();
                    consumer.try_recv(std::hint::black_box(&mut buf)).unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, publish, publish_recv);
criterion_main!(benches);
