//! Interoperability with Zenoh applications that know nothing of ringbus:
//! the `zenoh` crate alone subscribes to `ringbus/**` and publishes under
//! `ringbus/...`.

mod common;

use std::time::Duration;

use common::*;
use ringbus::broker::EmbeddedBroker;
use ringbus::client::{SubscribeOptions, TopicConfig};
use ringbus::ring::Start;
use ringbus_zenoh::attachment::Meta;
use zenoh::Wait;

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

#[test]
fn plain_zenoh_subscriber_gets_bytes_and_attachment() {
    let a = EmbeddedBroker::start().unwrap();
    let port = free_port();
    let ep = vec![format!("tcp/127.0.0.1:{port}")];
    let x = start(settings(a.socket(), &["md.>"], &[]), &ep, &[]);
    let session = zenoh::open(zconfig(&[], &ep)).wait().unwrap();
    let zsub = session.declare_subscriber("ringbus/**").wait().unwrap();
    let ca = a.client().unwrap();
    let mut p = ca
        .publisher(
            "md.eu.px",
            TopicConfig {
                max_message_size: 64 << 10,
                ..TopicConfig::default()
            },
        )
        .unwrap();
    p.set_timestamps(true);
    // Until the peers see each other, puts go nowhere: probe.
    let first = eventually("a sample", || {
        p.publish(b"probe", 1).unwrap();
        zsub.recv_timeout(Duration::from_millis(50)).unwrap()
    });
    assert_eq!(first.key_expr().as_str(), "ringbus/md/eu/px");
    while zsub.try_recv().unwrap().is_some() {}
    let sizes = [0usize, 1, 100, 4096, 64 << 10];
    let mut sent = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let data = payload(0, i as u64, size);
        let seq = p.publish(&data, 1000 + i as u64).unwrap();
        sent.push((seq, data));
    }
    for (i, (seq, data)) in sent.iter().enumerate() {
        let s = eventually("the next sample", || {
            zsub.recv_timeout(Duration::from_millis(50)).unwrap()
        });
        assert_eq!(s.key_expr().as_str(), "ringbus/md/eu/px");
        assert!(
            s.payload().to_bytes() == data.as_slice(),
            "sample {i} differs"
        );
        let meta = Meta::decode(&s.attachment().expect("an attachment").to_bytes())
            .expect("a ringbus attachment");
        assert_eq!(meta.tag, 1000 + i as u64);
        assert_eq!(meta.seq, *seq);
        assert_eq!(meta.ring_id, p.ring_id());
        assert_eq!(meta.bridge_id, x.id());
        assert!(meta.timestamp > 0 && meta.timestamp <= monotonic_ns());
    }
    session.close().wait().unwrap();
}

#[test]
fn plain_zenoh_publisher_feeds_a_ringbus_subscriber() {
    let b = EmbeddedBroker::start().unwrap();
    let port = free_port();
    let ep = vec![format!("tcp/127.0.0.1:{port}")];
    let y = start(settings(b.socket(), &[], &[">"]), &ep, &[]);
    let session = zenoh::open(zconfig(&[], &ep)).wait().unwrap();
    let cb = b.client().unwrap();
    let opts = SubscribeOptions {
        start: Start::Earliest,
        ..SubscribeOptions::default()
    };
    let mut sub = cb.subscriber("cmd.>", opts).unwrap();
    eventually("the probe", || {
        session.put("ringbus/cmd/probe", "probe").wait().unwrap();
        recv_for(&mut sub, Duration::from_millis(50))
            .into_iter()
            .next()
    });
    // Keys that are not topics, and a malformed attachment.
    for bad in ["ringbus/cmd/a.b", "ringbus/cmd/sp ace", "elsewhere/cmd/x"] {
        session.put(bad, "nope").wait().unwrap();
    }
    session
        .put("ringbus/cmd/go", "with junk")
        .attachment(vec![1u8, 2, 3])
        .wait()
        .unwrap();
    let data = payload(3, 9, 5000);
    session.put("ringbus/cmd/go", data.clone()).wait().unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let g = recv(&mut sub);
        if g.topic == "cmd.go" {
            got.push(g);
        }
    }
    assert_eq!(got[0].payload, b"with junk");
    assert_eq!(got[0].tag, 0);
    assert_eq!(got[1].payload, data);
    let s = eventually("the bad keys to be counted", || {
        let s = y.stats().snapshot();
        (s.import_bad_key >= 2).then_some(s)
    });
    assert_eq!(s.import_bad_key, 2, "{s:?}");
    assert!(s.import_foreign >= 3, "{s:?}");
    assert_eq!(s.import_gap, 0);
    session.close().wait().unwrap();
}
