//! A blocking subscriber on many rings sleeps on all of them at once and
//! is woken by whichever publisher publishes (`wait::sleep_all`): 8
//! publishers, on one topic or on 8 topics a pattern matches, take turns
//! at random, each message published by another thread only after the
//! subscriber received the one before, so every message needs a wake-up.
//! None may be lost: every message arrives, in order on its ring. A lost
//! wake-up shows as a receive that times out after [`PATIENCE`] (the
//! only time involved; nothing here measures speed).

mod common;

use std::sync::mpsc;
use std::thread;

use common::*;
use ringbus::broker::Config;
use ringbus::client::{Client, Mode, SubscribeOptions, Subscriber, TopicConfig};
use ringbus::ring::Start;
use ringbus::wait::WaitStrategy;

const RINGS: usize = 8;
const WAKEUPS: u64 = 100_000;

fn config() -> TopicConfig {
    TopicConfig {
        max_message_size: 64,
        capacity: 16,
        mode: Mode::Backpressure,
        max_subscribers: 2,
    }
}

/// Runs the ping-pong: `topics[i]` is publisher `i`'s topic.
fn ping_pong(client: &Client, mut sub: Subscriber, topics: &[String]) {
    let mut turns = Vec::new();
    let mut handles = Vec::new();
    let mut ring_of = Vec::new();
    for (i, topic) in topics.iter().enumerate() {
        let mut p = client.publisher(topic, config()).unwrap();
        ring_of.push(p.ring_id());
        let (tx, rx) = mpsc::channel::<u64>();
        turns.push(tx);
        handles.push(thread::spawn(move || {
            // Each turn: publish message `n` of this ring (payload: ring
            // index, n).
            for n in rx {
                let mut m = [0u8; 16];
                m[..8].copy_from_slice(&(i as u64).to_le_bytes());
                m[8..].copy_from_slice(&n.to_le_bytes());
                p.publish(&m, n).unwrap();
            }
        }));
    }
    // The subscriber attaches the rings as it finds them.
    let mut buf = [0u8; 64];
    eventually("the subscriber holds every ring", || {
        assert!(sub.try_recv(&mut buf).is_err(), "nothing published yet");
        (sub.rings().len() == RINGS).then_some(())
    });
    let mut sent = [0u64; RINGS];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for k in 0..WAKEUPS {
        // xorshift64: which publisher publishes next.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let i = (rng % RINGS as u64) as usize;
        turns[i].send(sent[i]).unwrap();
        let d = sub
            .recv_timeout(&mut buf, PATIENCE)
            .unwrap_or_else(|e| panic!("wake-up {k} (ring {i}, message {}): {e}", sent[i]));
        assert_eq!(
            d.ring_id, ring_of[i],
            "wake-up {k}: message from another ring"
        );
        let got_i = u64::from_le_bytes(buf[..8].try_into().unwrap());
        let got_n = u64::from_le_bytes(buf[8..16].try_into().unwrap());
        assert_eq!((got_i, got_n), (i as u64, sent[i]), "wake-up {k}");
        assert_eq!(d.info.seq, sent[i], "wake-up {k}: ring {i} out of order");
        sent[i] += 1;
    }
    assert_eq!(sent.iter().sum::<u64>(), WAKEUPS);
    drop(turns);
    for h in handles {
        h.join().unwrap();
    }
    // Nothing more arrived than was published.
    assert!(sub.try_recv(&mut buf).is_err());
}

fn blocking() -> SubscribeOptions {
    SubscribeOptions {
        start: Start::Earliest,
        wait: WaitStrategy::Block,
    }
}

#[test]
fn eight_publishers_on_one_topic_wake_one_blocking_subscriber() {
    let dir = TestDir::new("many-rings-topic");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let sub = client.subscriber("many", blocking()).unwrap();
    let topics = vec!["many".to_string(); RINGS];
    ping_pong(&client, sub, &topics);
}

#[test]
fn eight_topics_of_a_pattern_wake_one_blocking_subscriber() {
    let dir = TestDir::new("many-rings-pattern");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let sub = client.subscriber("many.*", blocking()).unwrap();
    let topics: Vec<String> = (0..RINGS).map(|i| format!("many.{i}")).collect();
    ping_pong(&client, sub, &topics);
}
