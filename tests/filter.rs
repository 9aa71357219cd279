//! Filters: tag mask and value, tag sets and predicates, checked against a
//! reference filter over every message; filtered messages count as read
//! (a back-pressure publisher does not wait for them); a predicate that
//! panics costs its message, not the process.

mod common;

use common::*;
use ringbus::broker::Config;
use ringbus::client::{Client, Mode, SubscribeOptions, Subscriber, TopicConfig};
use ringbus::ring::{MessageInfo, RecvError, Start};

fn cfg(mode: Mode, capacity: u32) -> TopicConfig {
    TopicConfig {
        max_message_size: 64,
        capacity,
        mode,
        max_subscribers: 16,
    }
}

fn earliest() -> SubscribeOptions {
    SubscribeOptions {
        start: Start::Earliest,
        ..SubscribeOptions::default()
    }
}

/// A tag that exercises every bit pattern the filters look at.
fn tag_of(i: u64) -> u64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17) & 0xffff
}

/// One filter set-up and its reference.
struct Case {
    mask: u64,
    value: u64,
    tags: Vec<u64>,
    /// Keep payloads whose first byte is even.
    predicate: bool,
}

impl Case {
    fn keeps(&self, tag: u64, payload: &[u8]) -> bool {
        tag & self.mask == self.value
            && (self.tags.is_empty() || self.tags.contains(&tag))
            && (!self.predicate || payload[0] % 2 == 0)
    }

    fn apply(&self, sub: &mut Subscriber) {
        sub.filter_tags(self.mask, self.value).unwrap();
        sub.filter_tag_set(&self.tags).unwrap();
        if self.predicate {
            sub.filter(|_: &MessageInfo, p: &[u8]| p[0] % 2 == 0);
        }
    }
}

fn cases() -> Vec<Case> {
    let set: Vec<u64> = (0..64).map(|i| tag_of(i * 7)).collect();
    let mut v = Vec::new();
    for (mask, value) in [(0, 0), (0xf, 0x3), (0xff00, 0x0100), (0xffff, tag_of(5))] {
        for tags in [vec![], set.clone()] {
            for predicate in [false, true] {
                v.push(Case {
                    mask,
                    value,
                    tags: tags.clone(),
                    predicate,
                });
            }
        }
    }
    v
}

#[test]
fn filters_deliver_exactly_what_the_reference_keeps() {
    let dir = TestDir::new("filter-ref");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let cases = cases();
    // Every case reads the same back-pressure stream: a small ring, so
    // the publisher moves on only as fast as every filtering subscriber
    // reads, filtered messages included.
    let mut subs: Vec<Subscriber> = cases
        .iter()
        .map(|c| {
            let mut s = client.subscriber("f.bp", earliest()).unwrap();
            c.apply(&mut s);
            s
        })
        .collect();
    let mut publisher = client
        .publisher("f.bp", cfg(Mode::Backpressure, 64))
        .unwrap();
    assert_eq!(cases.len(), 16, "one port for each case");
    let n: u64 = 100_000;
    // The publisher ends its stream when the thread drops it.
    let writer = std::thread::spawn(move || {
        for i in 0..n {
            publisher
                .publish_timeout(&generated(i, 32), tag_of(i), PATIENCE)
                .unwrap();
        }
    });
    let mut buf = [0u8; 64];
    let mut expect: Vec<u64> = vec![0; cases.len()];
    let mut done = vec![false; cases.len()];
    // A stall shows as a failure with where each case stood, not a hang.
    let mut idle_since = std::time::Instant::now();
    while done.iter().any(|d| !d) {
        assert!(
            idle_since.elapsed() < PATIENCE,
            "stalled: read up to {expect:?}, ended {done:?}"
        );
        for (k, s) in subs.iter_mut().enumerate() {
            if done[k] {
                continue;
            }
            match s.try_recv(&mut buf) {
                Ok(d) => {
                    let i = check_generated(&buf[..d.info.len]);
                    // Every message between the last delivered and this one
                    // was turned down, and rightly.
                    for skipped in expect[k]..i {
                        let p = generated(skipped, 32);
                        assert!(
                            !cases[k].keeps(tag_of(skipped), &p),
                            "case {k} lost {skipped}"
                        );
                    }
                    assert!(
                        cases[k].keeps(d.info.tag, &buf[..d.info.len]),
                        "case {k}: {i}"
                    );
                    expect[k] = i + 1;
                    idle_since = std::time::Instant::now();
                }
                Err(RecvError::Empty) => {}
                Err(RecvError::EndOfStream) => {
                    done[k] = true;
                    idle_since = std::time::Instant::now();
                }
                Err(e) => panic!("case {k}: {e}"),
            }
        }
    }
    writer.join().unwrap();
    for (k, s) in subs.iter().enumerate() {
        // What came after the last delivery was turned down too.
        for skipped in expect[k]..n {
            assert!(!cases[k].keeps(tag_of(skipped), &generated(skipped, 32)));
        }
        let kept = (0..n)
            .filter(|&i| cases[k].keeps(tag_of(i), &generated(i, 32)))
            .count() as u64;
        assert_eq!(s.filtered_total(), n - kept, "case {k}");
    }
}

#[test]
fn an_overwrite_subscriber_filters_validated_copies() {
    let dir = TestDir::new("filter-ow");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut sub = client.subscriber("f.ow", earliest()).unwrap();
    sub.filter_tags(0x1, 0x1).unwrap();
    sub.filter(|info: &MessageInfo, p: &[u8]| check_generated(p) == info.tag);
    let mut p = client
        .publisher("f.ow", cfg(Mode::Overwrite, 4096))
        .unwrap();
    for i in 0..4000u64 {
        p.publish(&generated(i, 32), i).unwrap();
    }
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    loop {
        match sub.try_recv(&mut buf) {
            Ok(d) => got.push(check_generated(&buf[..d.info.len])),
            Err(RecvError::Empty) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(got, (0..4000).filter(|i| i % 2 == 1).collect::<Vec<u64>>());
    assert_eq!(sub.filtered_total(), 2000);
}

#[test]
fn a_panicking_predicate_costs_its_message_not_the_process() {
    let dir = TestDir::new("filter-panic");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut sub = client.subscriber("f.p", earliest()).unwrap();
    sub.filter(|info: &MessageInfo, _: &[u8]| {
        assert!(info.tag != 3, "a predicate's bug");
        true
    });
    let mut p = client
        .publisher("f.p", cfg(Mode::Backpressure, 16))
        .unwrap();
    for i in 0..6u64 {
        p.publish(&generated(i, 8), i).unwrap();
    }
    let mut buf = [0u8; 64];
    let mut seen = Vec::new();
    for _ in 0..6 {
        match sub.recv_timeout(&mut buf, PATIENCE) {
            Ok(d) => seen.push(d.info.tag),
            Err(RecvError::FilterPanicked { seq }) => seen.push(1000 + seq),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(seen, [0, 1, 2, 1003, 4, 5]);
    // Zero-copy receives filter too.
    let mut zc = client.subscriber("f.p", earliest()).unwrap();
    zc.filter_tag_set(&[1, 4]).unwrap();
    let tags: Vec<u64> = (0..2)
        .map(|_| zc.recv_ref_timeout(PATIENCE).unwrap().1.info().tag)
        .collect();
    assert_eq!(tags, [1, 4]);
    // 0, then 2 and 3; 5 is not looked at yet.
    assert_eq!(zc.filtered_total(), 3);
}

#[test]
fn bad_filters_are_refused() {
    let dir = TestDir::new("filter-bad");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut sub = client.subscriber("f.b", earliest()).unwrap();
    let e = sub.filter_tags(0xff, 0x100).unwrap_err().to_string();
    assert!(e.contains("outside mask"), "{e}");
    let e = sub.filter_tag_set(&[0; 65]).unwrap_err().to_string();
    assert!(e.contains("at most 64"), "{e}");
}
