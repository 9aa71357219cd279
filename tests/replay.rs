//! Replay that merges into live: a subscriber of a durable topic starting
//! at a sequence number or a time older than its rings hold reads the
//! journal, then the live rings, with no gap and no duplicate.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ringbus::broker::Config;
use ringbus::client::{Client, SubscribeOptions, Subscriber};
use ringbus::journal::realtime_ns;
use ringbus::ring::{AttachError, RecvError, Start};

const TOPIC: &str = "r.feed";
/// The ring's capacity: journals 20 times it and more are replayed.
const CAPACITY: u64 = 64;

fn config(journal: &Path) -> Config {
    Config::parse(&format!(
        r#"
[server]
journal_dir = "{}"

[[topic]]
name = "{TOPIC}"
mode = "backpressure"
capacity = {CAPACITY}
max_message_size = 64
durable = true
fsync = "interval:1ms"
segment_bytes = 8192

[[topic]]
name = "r.plain"
mode = "backpressure"
capacity = 64
max_message_size = 64
"#,
        journal.display()
    ))
    .unwrap()
}

fn publish(socket: &Path, range: std::ops::Range<u64>) {
    let client = Client::connect(socket).unwrap();
    let mut publisher = client.publisher_existing(TOPIC).unwrap();
    for i in range {
        publisher.publish(&generated(i, 40), i % 7).unwrap();
    }
}

fn subscribe(socket: &Path, start: Start) -> (Client, Subscriber) {
    let client = Client::connect(socket).unwrap();
    let sub = client
        .subscriber(
            TOPIC,
            SubscribeOptions {
                start,
                ..SubscribeOptions::default()
            },
        )
        .unwrap();
    (client, sub)
}

/// What a subscriber got, per ring: sequence numbers in the order they
/// came, each payload checked against its sequence number and tag.
#[derive(Default)]
struct Got {
    rings: BTreeMap<u64, Vec<u64>>,
    total: u64,
    lagged: u64,
}

impl Got {
    fn take(&mut self, sub: &mut Subscriber, want: u64) {
        let mut buf = [0u8; 64];
        while self.total < want {
            match sub.recv_timeout(&mut buf, Duration::from_secs(20)) {
                Ok(d) => {
                    let payload = &buf[..d.info.len];
                    assert_eq!(check_generated(payload), d.info.seq, "payload of {d:?}");
                    assert_eq!(d.info.tag, d.info.seq % 7);
                    assert_eq!(sub.topic_name(d.topic), Some(TOPIC));
                    self.rings.entry(d.ring_id).or_default().push(d.info.seq);
                    self.total += 1;
                }
                Err(RecvError::Lagged { missed }) => self.lagged += missed,
                Err(e) => panic!("after {} messages: {e}", self.total),
            }
        }
    }
}

#[test]
fn a_subscriber_from_sequence_0_reads_the_journal_then_the_live_ring_under_load() {
    let dir = TestDir::new("replay-merge");
    let _broker = BrokerThread::start(&dir, config(&dir.path("journal")));
    // A journal 20 times the ring and more before anyone subscribes.
    const BEFORE: u64 = 20 * CAPACITY + 37;
    const TOTAL: u64 = 20_000;
    let socket = dir.socket();
    let client = Client::connect(&socket).unwrap();
    let mut publisher = client.publisher_existing(TOPIC).unwrap();
    for i in 0..BEFORE {
        publisher.publish(&generated(i, 40), i % 7).unwrap();
    }
    // The publisher goes on while the subscriber replays and merges.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for i in BEFORE..TOTAL {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                publisher.publish(&generated(i, 40), i % 7).unwrap();
            }
        })
    };
    let (_c, mut sub) = subscribe(&socket, Start::Sequence(0));
    assert!(sub.replaying());
    let mut got = Got::default();
    got.take(&mut sub, TOTAL);
    feeder.join().unwrap();
    assert!(!sub.replaying(), "live by the end");
    assert_eq!(got.lagged, 0);
    assert_eq!(got.rings.len(), 1);
    let seqs = got.rings.into_values().next().unwrap();
    assert_eq!(seqs, (0..TOTAL).collect::<Vec<_>>());
    assert_eq!(sub.lagged_total(), 0);
    drop(stop);
}

#[test]
fn a_subscriber_from_a_sequence_inside_the_journal_starts_there() {
    let dir = TestDir::new("replay-seq");
    let _broker = BrokerThread::start(&dir, config(&dir.path("journal")));
    publish(&dir.socket(), 0..3_000);
    let (_c, mut sub) = subscribe(&dir.socket(), Start::Sequence(1_234));
    let mut got = Got::default();
    got.take(&mut sub, 3_000 - 1_234);
    // A second publisher: a ring of its own, read from its first message
    // (fewer messages than its ring holds: nobody reads meanwhile).
    publish(&dir.socket(), 0..50);
    got.take(&mut sub, 3_000 - 1_234 + 50);
    let rings: Vec<Vec<u64>> = got.rings.into_values().collect();
    assert_eq!(rings[0], (1_234..3_000).collect::<Vec<_>>());
    assert_eq!(rings[1], (0..50).collect::<Vec<_>>());
}

#[test]
fn a_subscriber_from_a_time_gets_what_was_journaled_since() {
    let dir = TestDir::new("replay-time");
    let journal = dir.path("journal");
    let _broker = BrokerThread::start(&dir, config(&journal));
    let client = Client::connect(dir.socket()).unwrap();
    let mut publisher = client.publisher_existing(TOPIC).unwrap();
    for i in 0..1_000 {
        publisher.publish(&generated(i, 40), i % 7).unwrap();
    }
    // Once the first thousand are journaled, a time after them.
    let mut probe = Client::connect(dir.socket())
        .unwrap()
        .subscriber(
            TOPIC,
            SubscribeOptions {
                start: Start::Sequence(0),
                ..SubscribeOptions::default()
            },
        )
        .unwrap();
    let mut seen = Got::default();
    seen.take(&mut probe, 1_000);
    drop(probe);
    eventually("the first thousand journaled", || {
        let dirs: Vec<_> = std::fs::read_dir(journal.join(TOPIC)).ok()?.collect();
        let ring = dirs.into_iter().next()?.ok()?.path();
        let mut r = ringbus::journal::JournalReader::open(&ring, 64).ok()?;
        let mut n = 0;
        while r.next_record().ok()?.is_some() {
            n += 1;
        }
        (n == 1_000).then_some(())
    });
    std::thread::sleep(Duration::from_millis(5));
    let t = realtime_ns();
    std::thread::sleep(Duration::from_millis(5));
    for i in 1_000..2_500 {
        publisher.publish(&generated(i, 40), i % 7).unwrap();
    }
    let (_c, mut sub) = subscribe(&dir.socket(), Start::Time(t));
    let mut got = Got::default();
    got.take(&mut sub, 1_500);
    // Live ones (fewer than the ring holds: nobody reads meanwhile).
    for i in 2_500..2_550 {
        publisher.publish(&generated(i, 40), i % 7).unwrap();
    }
    got.take(&mut sub, 1_550);
    let seqs = got.rings.into_values().next().unwrap();
    assert_eq!(seqs, (1_000..2_550).collect::<Vec<_>>());
}

#[test]
fn the_journal_outlives_its_rings() {
    // A broker stopped and started again with its rings gone (what a
    // reboot does to /dev/shm): a subscriber from sequence 0 reads the old
    // ring's journal whole, then the new publisher's ring live.
    let dir = TestDir::new("replay-reboot");
    let journal = dir.path("journal");
    {
        let _broker = BrokerThread::start(&dir, config(&journal));
        publish(&dir.socket(), 0..2_000);
    }
    let _broker = BrokerThread::start(&dir, config(&journal));
    let (_c, mut sub) = subscribe(&dir.socket(), Start::Sequence(0));
    let mut got = Got::default();
    got.take(&mut sub, 2_000);
    publish(&dir.socket(), 0..50);
    got.take(&mut sub, 2_050);
    let rings: Vec<Vec<u64>> = got.rings.into_values().collect();
    assert_eq!(rings.len(), 2);
    assert_eq!(rings[0], (0..2_000).collect::<Vec<_>>());
    assert_eq!(rings[1], (0..50).collect::<Vec<_>>());
}

#[test]
fn filters_apply_to_the_replay() {
    let dir = TestDir::new("replay-filter");
    let _broker = BrokerThread::start(&dir, config(&dir.path("journal")));
    publish(&dir.socket(), 0..2_000);
    let (_c, mut sub) = subscribe(&dir.socket(), Start::Sequence(0));
    sub.filter_tag_set(&[3]).unwrap();
    let mut buf = [0u8; 64];
    let want: Vec<u64> = (0..2_000).filter(|i| i % 7 == 3).collect();
    let mut seqs = Vec::new();
    while seqs.len() < want.len() {
        let d = sub.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap();
        assert_eq!(d.info.tag, 3);
        seqs.push(d.info.seq);
    }
    assert_eq!(seqs, want);
    // Those before the last one delivered were read and turned down.
    let read = want.last().unwrap() + 1;
    assert_eq!(sub.filtered_total(), read - want.len() as u64);
}

#[test]
fn a_start_the_journal_no_longer_holds_is_reported() {
    let dir = TestDir::new("replay-retained");
    let journal = dir.path("journal");
    let mut cfg = config(&journal);
    cfg.topics[0].retain_bytes = Some(16_384);
    let _broker = BrokerThread::start(&dir, cfg);
    publish(&dir.socket(), 0..5_000);
    let (_c, mut sub) = subscribe(&dir.socket(), Start::Sequence(0));
    let mut buf = [0u8; 64];
    let first = match sub.recv_timeout(&mut buf, Duration::from_secs(20)) {
        Err(RecvError::Lagged { missed }) => missed,
        other => panic!("expected the loss first, got {other:?}"),
    };
    assert!(first > 0);
    let mut next = first;
    while next < 5_000 {
        let d = sub.recv_timeout(&mut buf, Duration::from_secs(20)).unwrap();
        assert_eq!(d.info.seq, next);
        next += 1;
    }
    assert_eq!(sub.lagged_total(), first);
}

#[test]
fn bad_starts_are_refused_clearly() {
    let dir = TestDir::new("replay-bad");
    let _broker = BrokerThread::start(&dir, config(&dir.path("journal")));
    let client = Client::connect(dir.socket()).unwrap();
    let at = |topic: &str, start| {
        client
            .subscriber(
                topic,
                SubscribeOptions {
                    start,
                    ..SubscribeOptions::default()
                },
            )
            .map(drop)
    };
    // A time needs a journal.
    let e = at("r.plain", Start::Time(1)).unwrap_err();
    assert!(e.to_string().contains("not durable"), "{e}");
    // And a topic, not a pattern.
    match at("r.>", Start::Time(1)) {
        Err(ringbus::client::ClientError::Attach {
            source: AttachError::TimeStart,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // A sequence on a topic without a journal reads its rings as before.
    at("r.plain", Start::Sequence(0)).unwrap();
}

#[test]
fn the_broker_hands_journals_read_only_and_refuses_what_it_cannot_do() {
    use ringbus::control::frame::{ErrorCode, Reply, Request};
    use ringbus::control::{Connection, ConnectionError};
    use std::os::fd::AsFd;
    let dir = TestDir::new("replay-api");
    let _broker = BrokerThread::start(&dir, config(&dir.path("journal")));
    // A durable topic with nothing journaled yet lists no ring.
    let mut conn = Connection::connect(&dir.socket(), "journal-test").unwrap();
    let (reply, _) = conn
        .call(&Request::JournalRings {
            topic: TOPIC.into(),
            after: 0,
        })
        .unwrap();
    assert!(
        matches!(&reply, Reply::JournalRings { rings, .. } if rings.is_empty()),
        "{reply:?}"
    );
    publish(&dir.socket(), 0..500);
    let rings = eventually("the ring's journal", || {
        let (reply, _) = conn
            .call(&Request::JournalRings {
                topic: TOPIC.into(),
                after: 0,
            })
            .unwrap();
        match reply {
            Reply::JournalRings { rings, config, .. } if !rings.is_empty() => {
                assert_eq!(config.unwrap().max_message_size, 64);
                Some(rings)
            }
            _ => None,
        }
    });
    let (reply, fds) = conn
        .call(&Request::JournalSegments {
            topic: TOPIC.into(),
            ring_id: rings[0].0,
            from_seq: 0,
        })
        .unwrap();
    let Reply::JournalSegments { bases, more } = reply else {
        panic!("{reply:?}")
    };
    assert!(!more);
    assert_eq!(bases[0], 0);
    assert_eq!(fds.len(), bases.len());
    for fd in &fds {
        let mode = rustix::fs::fcntl_getfl(fd.as_fd()).unwrap() & rustix::fs::OFlags::RWMODE;
        assert_eq!(mode, rustix::fs::OFlags::RDONLY, "segments are read-only");
    }
    let refused = |conn: &mut Connection, req: Request| match conn.call(&req) {
        Err(ConnectionError::Refused { code, message }) => (code, message),
        other => panic!("{req:?} answered {other:?}"),
    };
    let (code, message) = refused(
        &mut conn,
        Request::JournalSegments {
            topic: TOPIC.into(),
            ring_id: 12345,
            from_seq: 0,
        },
    );
    assert_eq!(code, ErrorCode::NotFound, "{message}");
    let (code, message) = refused(
        &mut conn,
        Request::JournalRings {
            topic: "r.plain".into(),
            after: 0,
        },
    );
    assert_eq!(code, ErrorCode::NotFound, "{message}");
    assert!(message.contains("not durable"), "{message}");
    // A time is resolved by the client from the journal, never by the
    // broker's cursor placement.
    let (code, message) = refused(
        &mut conn,
        Request::Subscribe {
            topic: TOPIC.into(),
            start: Start::Time(1),
            held: vec![],
        },
    );
    assert_eq!(code, ErrorCode::InvalidConfig, "{message}");
}
