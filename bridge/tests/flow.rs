//! A -> bridge -> Zenoh -> bridge -> B, two-way bridging without loops,
//! and the accounting of losses. Two embedded brokers stand in for two
//! hosts; Zenoh runs over TCP on 127.0.0.1 (multicast scouting off).

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use ringbus::broker::EmbeddedBroker;
use ringbus::client::{Client, Mode, SubscribeOptions, TopicConfig};
use ringbus::ring::Start;

const TOPICS: [&str; 3] = ["md.eu", "md.us.px", "md.asia.px"];

fn bp(capacity: u32) -> TopicConfig {
    TopicConfig {
        max_message_size: 64 << 10,
        capacity,
        mode: Mode::Backpressure,
        max_subscribers: 16,
    }
}

fn earliest() -> SubscribeOptions {
    SubscribeOptions {
        start: Start::Earliest,
        ..SubscribeOptions::default()
    }
}

/// Publishes on `probe` at A until a message of it reaches `sub` at B:
/// the bridges are subscribed and peered.
fn until_peered(a: &Client, probe: &str, sub: &mut ringbus::client::Subscriber) {
    let mut p = a.publisher(probe, TopicConfig::default()).unwrap();
    eventually("the bridges to peer", || {
        p.publish(b"probe", 0).unwrap();
        recv_for(sub, Duration::from_millis(50))
            .iter()
            .any(|g| g.topic == probe)
            .then_some(())
    });
}

fn count() -> u64 {
    std::env::var("RINGBUS_ZENOH_TEST_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

#[test]
fn a_to_b_intact_and_in_order() {
    let a = EmbeddedBroker::start().unwrap();
    let b = EmbeddedBroker::start().unwrap();
    let port = free_port();
    let ep = vec![format!("tcp/127.0.0.1:{port}")];
    let x = start(settings(a.socket(), &["md.>"], &[]), &ep, &[]);
    let y = start(settings(b.socket(), &[], &["md.>"]), &[], &ep);
    let ca = a.client().unwrap();
    let cb = b.client().unwrap();
    let mut sub = cb.subscriber("md.>", earliest()).unwrap();
    until_peered(&ca, "md.probe", &mut sub);
    // Zenoh may drop a few probes while the peers meet (counted as a gap
    // in the probe's ring): the accounting starts here.
    let ybase = y.stats().snapshot();

    // Message 0 of each topic first: B's subscriber then holds the
    // importer's rings before the rest come (a back-pressure ring waits
    // for the subscribers it has).
    let n = count();
    let mut pubs: Vec<_> = TOPICS
        .iter()
        .map(|t| ca.publisher(t, bp(256)).unwrap())
        .collect();
    for (t, p) in pubs.iter_mut().enumerate() {
        p.publish(&payload(t, 0, size_of(0)), 0).unwrap();
    }
    let mut next = [0u64; 3];
    let check = |g: Got, next: &mut [u64; 3]| {
        let Some(t) = TOPICS.iter().position(|&n| n == g.topic) else {
            assert_eq!(g.topic, "md.probe");
            return;
        };
        let i = next[t];
        assert_eq!(g.tag, i, "{}: out of order or lost", g.topic);
        assert_eq!(g.payload.len(), size_of(i), "{} #{i}: length", g.topic);
        assert!(
            g.payload == payload(t, i, size_of(i)),
            "{} #{i}: corrupt",
            g.topic
        );
        assert!(g.timestamp > 0, "imported messages are stamped");
        next[t] += 1;
    };
    while next.contains(&0) {
        check(recv(&mut sub), &mut next);
    }
    let senders: Vec<_> = pubs
        .into_iter()
        .enumerate()
        .map(|(t, mut p)| {
            std::thread::spawn(move || {
                for i in 1..n {
                    let seq = p.publish(&payload(t, i, size_of(i)), i).unwrap();
                    assert_eq!(seq, i);
                }
                p
            })
        })
        .collect();
    while next.iter().any(|&k| k < n) {
        check(recv(&mut sub), &mut next);
    }
    let _pubs: Vec<_> = senders.into_iter().map(|s| s.join().unwrap()).collect();
    let (xs, ys) = (x.stats().snapshot(), y.stats().snapshot());
    assert_eq!(xs.export_lagged, 0);
    assert_eq!(ys.import_gap, ybase.import_gap);
    assert_eq!(ys.import_full + ys.import_too_large + ys.import_errors, 0);
    assert!(ys.imported >= 3 * n, "{ys:?}");
    assert!(ys.import_batched <= ys.import_queued, "{ys:?}");
    eprintln!("{} messages per topic, 3 topics: {xs:?} {ys:?}", n);
}

/// Both bridges export and import the same pattern: each message crosses
/// once, and never comes back.
/// Bursts with pauses between them: the first sample after each pause is
/// (as a rule) published by the import's callback, the rest of a burst
/// goes through its queue; every message arrives once, in order,
/// whichever way each went.
#[test]
fn bursts_and_pauses_arrive_in_order() {
    let a = EmbeddedBroker::start().unwrap();
    let b = EmbeddedBroker::start().unwrap();
    let ep = vec![format!("tcp/127.0.0.1:{}", free_port())];
    let _x = start(settings(a.socket(), &["md.>"], &[]), &ep, &[]);
    let y = start(settings(b.socket(), &[], &["md.>"]), &[], &ep);
    let (ca, cb) = (a.client().unwrap(), b.client().unwrap());
    let mut probe = cb.subscriber("md.probe", earliest()).unwrap();
    until_peered(&ca, "md.probe", &mut probe);
    let mut sub = cb.subscriber("md.burst", earliest()).unwrap();
    let mut p = ca.publisher("md.burst", bp(1024)).unwrap();
    let base = y.stats().snapshot();
    let mut sent = 0u64;
    for round in 0..40u64 {
        let first = sent;
        for _ in 0..(round % 8) * 16 + 1 {
            p.publish(&payload(0, sent, 48), sent).unwrap();
            sent += 1;
        }
        // Read as they come, so that the import never waits for room.
        for i in first..sent {
            let g = recv(&mut sub);
            assert_eq!((g.tag, g.payload), (i, payload(0, i, 48)), "message {i}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let ys = y.stats().snapshot();
    assert_eq!(ys.imported - base.imported, sent, "{ys:?}");
    assert_eq!(ys.import_gap, base.import_gap, "{ys:?}");
    // Which way each sample went depends on when it arrived (timing
    // gates no test): reported, not asserted.
    let queued = ys.import_queued - base.import_queued;
    let batched = ys.import_batched - base.import_batched;
    eprintln!("{queued} of {sent} samples went through the import's queue, {batched} in batches");
    assert!(batched <= queued && queued <= sent, "{ys:?}");
}

#[test]
fn two_way_overlapping_patterns_do_not_loop() {
    let a = EmbeddedBroker::start().unwrap();
    let b = EmbeddedBroker::start().unwrap();
    let port = free_port();
    let ep = vec![format!("tcp/127.0.0.1:{port}")];
    let x = start(settings(a.socket(), &["md.>"], &["md.>"]), &ep, &[]);
    let y = start(
        settings(b.socket(), &["md.>", "other.>"], &["md.>"]),
        &[],
        &ep,
    );
    let (ca, cb) = (a.client().unwrap(), b.client().unwrap());
    let mut sub_a = ca.subscriber("md.>", earliest()).unwrap();
    let mut sub_b = cb.subscriber("md.>", earliest()).unwrap();
    until_peered(&ca, "md.probe-a", &mut sub_b);
    until_peered(&cb, "md.probe-b", &mut sub_a);
    // Let the probes that are still crossing arrive, then start counting.
    recv_for(&mut sub_a, Duration::from_millis(300));
    recv_for(&mut sub_b, Duration::from_millis(300));
    let gaps_before = x.stats().snapshot().import_gap + y.stats().snapshot().import_gap;

    let n = 200u64;
    let mut pa = ca.publisher("md.from-a", bp(1024)).unwrap();
    let mut pb = cb.publisher("md.from-b", bp(1024)).unwrap();
    for i in 0..n {
        pa.publish(&payload(0, i, 16), i).unwrap();
        pb.publish(&payload(1, i, 16), i).unwrap();
    }
    let tally = |got: &[Got], topic: &str| got.iter().filter(|g| g.topic == topic).count() as u64;
    let mut got_a = Vec::new();
    let mut got_b = Vec::new();
    eventually("both sides to receive every message", || {
        got_a.extend(recv_for(&mut sub_a, Duration::from_millis(50)));
        got_b.extend(recv_for(&mut sub_b, Duration::from_millis(50)));
        (tally(&got_a, "md.from-b") >= n && tally(&got_b, "md.from-a") >= n).then_some(())
    });
    // A loop would bring copies back: wait for them.
    got_a.extend(recv_for(&mut sub_a, Duration::from_millis(1000)));
    got_b.extend(recv_for(&mut sub_b, Duration::from_millis(1000)));
    assert_eq!(
        tally(&got_a, "md.from-a"),
        n,
        "A's own messages came back to A"
    );
    assert_eq!(tally(&got_a, "md.from-b"), n);
    assert_eq!(
        tally(&got_b, "md.from-b"),
        n,
        "B's own messages came back to B"
    );
    assert_eq!(tally(&got_b, "md.from-a"), n);
    let (xs, ys) = (x.stats().snapshot(), y.stats().snapshot());
    assert!(xs.export_skipped_own >= n, "{xs:?}");
    assert!(ys.export_skipped_own >= n, "{ys:?}");
    assert_eq!(xs.import_gap + ys.import_gap, gaps_before);
}

/// A full import ring: every sample is published or counted.
#[test]
fn import_full_is_counted() {
    let a = EmbeddedBroker::start().unwrap();
    let b = EmbeddedBroker::start().unwrap();
    let port = free_port();
    let ep = vec![format!("tcp/127.0.0.1:{port}")];
    let _x = start(settings(a.socket(), &["lossy.>"], &[]), &ep, &[]);
    let mut sy = settings(b.socket(), &[], &["lossy.>"]);
    sy.import_wait_ms = 0;
    let y = start(sy, &[], &ep);
    let (ca, cb) = (a.client().unwrap(), b.client().unwrap());

    // Import side: a back-pressure ring of 4 slots whose one subscriber
    // stops reading after the first message.
    cb.open_topic("lossy.full", bp(4)).unwrap();
    let mut stalled = cb.subscriber("lossy.full", earliest()).unwrap();
    let mut probe_sub = cb.subscriber("lossy.probe", earliest()).unwrap();
    until_peered(&ca, "lossy.probe", &mut probe_sub);
    // Probes still on their way would be counted too: let them land.
    while !recv_for(&mut probe_sub, Duration::from_millis(300)).is_empty() {}
    let base = y.stats().snapshot();
    let mut full = ca.publisher("lossy.full", bp(1024)).unwrap();
    full.publish(b"first", 0).unwrap();
    assert_eq!(recv(&mut stalled).payload, b"first");
    let n = 100u64;
    for i in 1..=n {
        full.publish(&payload(0, i, 32), i).unwrap();
    }
    let ys = eventually("every import to be published or counted", || {
        let s = y.stats().snapshot();
        (s.imported + s.import_full >= base.imported + base.import_full + 1 + n).then_some(s)
    });
    // "first", then 4 slots' worth; the rest found the ring full.
    let (imported, full) = (
        ys.imported - base.imported,
        ys.import_full - base.import_full,
    );
    assert!(full >= n - 4, "{ys:?}");
    assert_eq!(imported + full, 1 + n, "{ys:?}");
    assert_eq!(ys.import_gap, base.import_gap);
    // The local side shows them too (`ringbus topics`).
    assert_eq!(upstream_lost(&cb, "lossy.full"), full);
}

/// What the topic's rings' publishers report lost upstream, per the
/// broker's topic list.
fn upstream_lost(client: &ringbus::client::Client, topic: &str) -> u64 {
    let topics = client.topics().unwrap();
    let t = topics.iter().find(|t| t.name == topic).unwrap();
    t.rings.iter().map(|r| r.upstream_lost).sum()
}

/// A lapped exporter: every message is exported or counted as lagged,
/// and what was lagged shows at import as a gap of the same size.
#[test]
fn export_lag_is_counted_and_seen_as_a_gap() {
    let a = EmbeddedBroker::start().unwrap();
    let b = EmbeddedBroker::start().unwrap();
    let port = free_port();
    let ep = vec![format!("tcp/127.0.0.1:{port}")];
    let x = start(settings(a.socket(), &["lossy.>"], &[]), &ep, &[]);
    let y = start(settings(b.socket(), &[], &["lossy.>"]), &[], &ep);
    let (ca, cb) = (a.client().unwrap(), b.client().unwrap());
    let mut lap_sub = cb.subscriber("lossy.>", earliest()).unwrap();
    until_peered(&ca, "lossy.probe", &mut lap_sub);

    // An overwrite ring of 2 slots written far faster than Zenoh puts.
    let overwrite = TopicConfig {
        max_message_size: 1024,
        capacity: 2,
        mode: Mode::Overwrite,
        max_subscribers: 16,
    };
    let mut lap = ca.publisher("lossy.lap", overwrite).unwrap();
    lap.publish(b"first", 0).unwrap();
    eventually("the first message", || {
        recv_for(&mut lap_sub, Duration::from_millis(50))
            .iter()
            .any(|g| g.payload == b"first")
            .then_some(())
    });
    let before = x.stats().snapshot();
    let ybefore = y.stats().snapshot();
    let m = 20_000u64;
    for i in 1..=m {
        lap.publish(&payload(1, i, 512), i).unwrap();
    }
    lap.publish(b"last", u64::MAX).unwrap();
    let mut received = 0u64;
    loop {
        let g = recv(&mut lap_sub);
        if g.topic != "lossy.lap" {
            continue;
        }
        if g.tag == u64::MAX {
            break;
        }
        received += 1;
    }
    let xs = x.stats().snapshot();
    let lagged = xs.export_lagged - before.export_lagged;
    let exported = xs.exported - before.exported;
    assert_eq!(exported + lagged, m + 1, "{xs:?}");
    assert_eq!(received, exported - 1);
    let ys = y.stats().snapshot();
    assert_eq!(ys.import_gap - ybefore.import_gap, lagged, "{ys:?}");
    assert!(x.stats().export_lagged.load(Ordering::Relaxed) > 0);
    // The importing side's ring shows the gap (`ringbus topics`).
    assert_eq!(upstream_lost(&cb, "lossy.lap"), lagged);
}
