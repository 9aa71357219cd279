//! Zero-copy receive through the client API (`Subscriber::try_recv_ref`,
//! `recv_ref_timeout`) against an in-process broker.

mod common;

use std::time::Duration;

use common::*;
use ringbus::broker::Config;
use ringbus::client::{Client, Mode, SubscribeOptions, TopicConfig};
use ringbus::ring::{PublishError, RecvError};

fn cfg(mode: Mode, capacity: u32) -> TopicConfig {
    TopicConfig {
        max_message_size: 64,
        capacity,
        mode,
        max_subscribers: 4,
    }
}

#[test]
fn zero_copy_reads_every_ring_holds_slots_and_ends_streams() {
    let dir = TestDir::new("zc");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut sub = client
        .subscriber("zc", SubscribeOptions::default())
        .unwrap();
    assert_eq!(sub.try_recv_ref().err(), Some(RecvError::Empty));
    let mut a = client.publisher("zc", cfg(Mode::Backpressure, 4)).unwrap();
    let mut b = client.publisher("zc", cfg(Mode::Backpressure, 4)).unwrap();
    for i in 0..4u64 {
        a.try_publish(&i.to_le_bytes(), i).unwrap();
        b.try_publish(&(100 + i).to_le_bytes(), 100 + i).unwrap();
    }
    // Both rings are full; a held view keeps its slot taken.
    assert_eq!(a.try_publish(b"x", 0), Err(PublishError::Full));
    let mut seen = Vec::new();
    {
        let (ring, msg) = sub.recv_ref_timeout(PATIENCE).unwrap();
        assert!(ring == a.ring_id() || ring == b.ring_id());
        assert_eq!(
            msg.info().tag,
            u64::from_le_bytes(msg[..8].try_into().unwrap())
        );
        seen.push(msg.info().tag);
        let full = if ring == a.ring_id() { &mut a } else { &mut b };
        assert_eq!(full.try_publish(b"x", 0), Err(PublishError::Full));
    }
    while let Ok((_, msg)) = sub.try_recv_ref() {
        seen.push(msg.info().tag);
    }
    seen.sort_unstable();
    assert_eq!(seen, [0, 1, 2, 3, 100, 101, 102, 103]);
    // Released: both publishers have room again.
    a.try_publish(b"a", 4).unwrap();
    b.try_publish(b"b", 104).unwrap();
    drop(a);
    let mut ends = 0;
    let mut tags = Vec::new();
    while tags.len() < 2 || ends < 1 {
        match sub.recv_ref_timeout(PATIENCE) {
            Ok((_, m)) => tags.push(m.info().tag),
            Err(RecvError::EndOfStream) => ends += 1,
            Err(e) => panic!("{e}"),
        }
    }
    tags.sort_unstable();
    assert_eq!((tags, ends), (vec![4, 104], 1));
    assert_eq!(
        sub.recv_ref_timeout(Duration::from_millis(5)).err(),
        Some(RecvError::Timeout)
    );
}

#[test]
fn zero_copy_needs_a_backpressure_topic() {
    let dir = TestDir::new("zc-ow");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut sub = client
        .subscriber("zc.ow", SubscribeOptions::default())
        .unwrap();
    let mut p = client.publisher("zc.ow", cfg(Mode::Overwrite, 8)).unwrap();
    p.publish(b"m", 0).unwrap();
    let mut buf = [0u8; 64];
    // The first copying receive learns the topic's config.
    assert_eq!(sub.recv_timeout(&mut buf, PATIENCE).unwrap().info.len, 1);
    assert_eq!(
        sub.try_recv_ref().err(),
        Some(RecvError::ZeroCopyUnsupported)
    );
}
