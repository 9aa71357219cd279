//! The delivery guarantees, through a broker: every message a subscriber
//! does not get is accounted for (`Lagged`, counted in `lagged_total`),
//! whichever way its ring appears — before the subscription, while it is
//! being made, or after it — in overwrite mode; nothing is lost in
//! back-pressure mode; a start position a back-pressure ring can no longer
//! hold is reported, not skipped in silence.

mod common;

use std::sync::Barrier;
use std::thread;

use common::*;
use ringbus::broker::Config;
use ringbus::client::{Client, Mode, SubscribeOptions, Subscriber, TopicConfig};
use ringbus::ring::{RecvError, Start};

const CAPACITY: u32 = 64;
const MESSAGES: u64 = 1000;

fn config(mode: Mode) -> TopicConfig {
    TopicConfig {
        max_message_size: 64,
        capacity: CAPACITY,
        mode,
        max_subscribers: 4,
    }
}

fn subscribe(client: &Client, topic: &str, start: Start) -> Subscriber {
    client
        .subscriber(
            topic,
            SubscribeOptions {
                start,
                ..Default::default()
            },
        )
        .unwrap()
}

/// What a subscriber saw, read until its rings are empty: each message's
/// sequence and each reported loss, in order.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Message(u64),
    Lost(u64),
}

fn drain(sub: &mut Subscriber) -> Vec<Seen> {
    let mut buf = [0u8; 64];
    let mut seen = Vec::new();
    loop {
        match sub.try_recv(&mut buf) {
            Ok(d) => {
                let v = u64::from_le_bytes(buf[..8].try_into().unwrap());
                assert_eq!(v, d.info.seq, "payload and sequence agree");
                seen.push(Seen::Message(v));
            }
            Err(RecvError::Lagged { missed }) => seen.push(Seen::Lost(missed)),
            Err(RecvError::Empty) => return seen,
            Err(e) => panic!("unexpected {e}"),
        }
    }
}

/// `Lost(n)` then the last `CAPACITY` messages: what a subscriber that
/// was there for all `MESSAGES` but read none until the end must see.
fn lapped_once() -> Vec<Seen> {
    let first = MESSAGES - u64::from(CAPACITY);
    let mut want = vec![Seen::Lost(first)];
    want.extend((first..MESSAGES).map(Seen::Message));
    want
}

fn publish_all(p: &mut ringbus::client::Publisher) {
    for i in 0..MESSAGES {
        p.publish(&i.to_le_bytes(), i).unwrap();
    }
}

/// When the publisher's ring appears, relative to the subscription.
#[derive(Clone, Copy, Debug)]
enum Order {
    /// The publisher attaches first.
    Before,
    /// The publisher attaches while the subscription is being made (in
    /// whatever interleaving the scheduler gives).
    During,
    /// The publisher attaches once the subscription exists.
    After,
}

/// A publisher and a subscriber (`Start::Earliest`) of `topic`, made in
/// `order`. Nothing is published yet: the subscriber is there for every
/// message.
fn open(
    client: &Client,
    topic: &str,
    mode: Mode,
    order: Order,
) -> (ringbus::client::Publisher, Subscriber) {
    let publisher = || client.publisher(topic, config(mode)).unwrap();
    match order {
        Order::Before => {
            let p = publisher();
            (p, subscribe(client, topic, Start::Earliest))
        }
        Order::After => {
            let s = subscribe(client, topic, Start::Earliest);
            (publisher(), s)
        }
        Order::During => {
            let both = Barrier::new(2);
            thread::scope(|scope| {
                let p = scope.spawn(|| {
                    both.wait();
                    publisher()
                });
                both.wait();
                let s = subscribe(client, topic, Start::Earliest);
                (p.join().unwrap(), s)
            })
        }
    }
}

#[test]
fn overwrite_losses_are_reported_whichever_way_the_ring_appears() {
    let dir = TestDir::new("dlv-ow");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    for order in [Order::Before, Order::After] {
        let topic = format!("ow.{order:?}");
        let (mut p, mut sub) = open(&client, &topic, Mode::Overwrite, order);
        publish_all(&mut p);
        assert_eq!(drain(&mut sub), lapped_once(), "{order:?}");
        assert_eq!(sub.lagged_total(), MESSAGES - u64::from(CAPACITY));
    }
    // The race, many times over.
    for round in 0..30 {
        let topic = format!("ow.during.{round}");
        let (mut p, mut sub) = open(&client, &topic, Mode::Overwrite, Order::During);
        publish_all(&mut p);
        assert_eq!(drain(&mut sub), lapped_once(), "round {round}");
    }
}

#[test]
fn a_ring_that_appears_later_is_read_from_its_first_message_whatever_the_start() {
    let dir = TestDir::new("dlv-latest");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut sub = subscribe(&client, "t", Start::Latest);
    let mut p = client.publisher("t", config(Mode::Overwrite)).unwrap();
    publish_all(&mut p);
    assert_eq!(drain(&mut sub), lapped_once());
}

#[test]
fn backpressure_loses_nothing_whichever_way_the_ring_appears() {
    let dir = TestDir::new("dlv-bp");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    for order in [Order::Before, Order::During, Order::After] {
        let (p, mut sub) = open(&client, &format!("bp.{order:?}"), Mode::Backpressure, order);
        // The publisher runs ahead as far as back-pressure lets it while
        // the subscriber reads: every message arrives, in order.
        let writer = thread::spawn(move || {
            let mut p = p;
            publish_all(&mut p);
            p
        });
        let mut buf = [0u8; 64];
        for i in 0..MESSAGES {
            let d = sub
                .recv_timeout(&mut buf, PATIENCE)
                .unwrap_or_else(|e| panic!("{order:?}: message {i}: {e}"));
            assert_eq!(
                (d.info.seq, &buf[..8]),
                (i, &i.to_le_bytes()[..]),
                "{order:?}"
            );
        }
        drop(writer.join().unwrap());
        assert_eq!(sub.lagged_total(), 0, "{order:?}");
    }
}

#[test]
fn a_start_a_backpressure_ring_no_longer_holds_is_reported() {
    let dir = TestDir::new("dlv-seq");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut p = client.publisher("t", config(Mode::Backpressure)).unwrap();
    // Nobody holds the publisher back yet.
    publish_all(&mut p);
    // The publisher may already write a ring's worth past its last
    // message, so a new cursor starts no lower than where that leaves it:
    // what lies between the start asked for and there is reported lost.
    let mut sub = subscribe(&client, "t", Start::Sequence(10));
    let seen = drain(&mut sub);
    let Some(Seen::Lost(lost)) = seen.first() else {
        panic!("no loss reported first: {seen:?}");
    };
    let first = 10 + lost;
    assert!(first >= MESSAGES - u64::from(CAPACITY), "{seen:?}");
    let want: Vec<Seen> = (first..MESSAGES).map(Seen::Message).collect();
    assert_eq!(seen[1..], want[..]);
    assert_eq!(sub.lagged_total(), *lost);
    // The next message asked for: nothing is lost, it arrives.
    let mut sub = subscribe(&client, "t", Start::Sequence(MESSAGES));
    p.publish(&MESSAGES.to_le_bytes(), 0).unwrap();
    assert_eq!(drain(&mut sub), vec![Seen::Message(MESSAGES)]);
    assert_eq!(sub.lagged_total(), 0);
}

#[test]
fn backlog_counts_what_is_published_and_not_yet_read() {
    let dir = TestDir::new("dlv-backlog");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut buf = [0u8; 64];
    // Back-pressure: every unread message, up to the capacity.
    let mut p = client
        .publisher("bp.t", config(Mode::Backpressure))
        .unwrap();
    let mut sub = subscribe(&client, "bp.t", Start::Earliest);
    assert_eq!(sub.backlog(), 0);
    for i in 0..10u64 {
        p.publish(&i.to_le_bytes(), 0).unwrap();
    }
    assert_eq!(sub.backlog(), 10);
    for _ in 0..4 {
        sub.try_recv(&mut buf).unwrap();
    }
    assert_eq!(sub.backlog(), 6);
    assert_eq!(drain(&mut sub).len(), 6);
    assert_eq!(sub.backlog(), 0);
    // Overwrite: past the capacity too (those are lost, and said so).
    let mut p = client.publisher("ow.t", config(Mode::Overwrite)).unwrap();
    let mut sub = subscribe(&client, "ow.t", Start::Earliest);
    publish_all(&mut p);
    assert_eq!(sub.backlog(), MESSAGES);
    assert_eq!(drain(&mut sub), lapped_once());
    assert_eq!(sub.backlog(), 0);
}
