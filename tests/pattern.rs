//! Pattern subscriptions: topics that exist and topics created later, by
//! pattern, with every message of each ring in order; bad patterns; a
//! pattern's lease ending its topics' subscriptions.

mod common;

use std::collections::HashMap;

use common::*;
use ringbus::broker::Config;
use ringbus::client::{Client, Mode, SubscribeOptions, TopicConfig};
use ringbus::ring::{RecvError, Start};

fn cfg(mode: Mode) -> TopicConfig {
    TopicConfig {
        max_message_size: 64,
        capacity: 64,
        mode,
        max_subscribers: 4,
    }
}

fn earliest() -> SubscribeOptions {
    SubscribeOptions {
        start: Start::Earliest,
        ..SubscribeOptions::default()
    }
}

#[test]
fn a_pattern_takes_topics_that_exist_and_those_created_later() {
    let dir = TestDir::new("pat-live");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    // Before: a back-pressure topic with messages waiting, and topics the
    // pattern does not match.
    let mut before = client.publisher("md.a", cfg(Mode::Backpressure)).unwrap();
    let mut other = client.publisher("news.a", cfg(Mode::Overwrite)).unwrap();
    let mut deep = client.publisher("md", cfg(Mode::Overwrite)).unwrap();
    for i in 0..10 {
        before.publish(&generated(i, 32), i).unwrap();
    }
    let mut sub = client.subscriber("md.>", earliest()).unwrap();
    // After: new topics, one a level deeper, both modes.
    let after = client.publisher("md.b", cfg(Mode::Backpressure)).unwrap();
    let deeper = client.publisher("md.c.x", cfg(Mode::Overwrite)).unwrap();
    other.publish(b"not for md.>", 0).unwrap();
    deep.publish(b"not for md.>", 0).unwrap();
    let n = 200;
    let writers: Vec<_> = [(before, 10), (after, 0), (deeper, 0)]
        .into_iter()
        .map(|(mut p, from)| {
            std::thread::spawn(move || {
                for i in from..n {
                    p.publish_timeout(&generated(i, 32), i, PATIENCE).unwrap();
                }
                p
            })
        })
        .collect();
    // Per topic: the next sequence number (received or reported lost).
    let mut next: HashMap<String, u64> = HashMap::new();
    let mut buf = [0u8; 64];
    while next.len() < 3 || next.values().any(|&v| v < n) {
        match sub.recv_timeout(&mut buf, PATIENCE) {
            Ok(d) => {
                let topic = sub.topic_name(d.topic).unwrap().to_owned();
                let seq = check_generated(&buf[..d.info.len]);
                let want = next.entry(topic.clone()).or_insert(0);
                assert_eq!(seq, *want, "{topic}: lost or repeated");
                *want += 1;
            }
            // The overwrite topic may lap the reader: told, never silent.
            Err(RecvError::Lagged { missed }) => {
                let ring = sub.last_ring_id();
                let r = sub.rings().into_iter().find(|r| r.ring_id == ring).unwrap();
                let topic = sub.topic_name(r.topic).unwrap().to_owned();
                assert_eq!(topic, "md.c.x", "a back-pressure topic lost messages");
                *next.entry(topic).or_insert(0) += missed;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let mut topics: Vec<_> = next.keys().cloned().collect();
    topics.sort();
    assert_eq!(topics, ["md.a", "md.b", "md.c.x"]);
    assert!(next.values().all(|&v| v == n));
    for w in writers {
        drop(w.join().unwrap());
    }
    drop(sub);
    // The pattern's lease took its topics' subscriptions with it.
    let t = client.topics().unwrap();
    assert!(t.iter().all(|t| t.subscribers == 0), "{t:?}");
}

#[test]
fn bad_patterns_are_refused_saying_where() {
    let dir = TestDir::new("pat-bad");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    for (p, says) in [
        ("md..>", "byte 3"),
        (">.x", "'>' at byte 0"),
        ("a>", "inside a segment"),
        ("md.a*", "inside a segment"),
    ] {
        let e = client
            .subscriber(p, SubscribeOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains(says), "{p}: {e}");
    }
    let long = format!("{}.>", "a".repeat(260));
    let e = client
        .subscriber(&long, SubscribeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("limit is 255"), "{e}");
}
