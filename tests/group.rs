//! Consumer groups through a broker (in-process): each message goes to
//! one member of a group; other groups and plain subscribers get every
//! message; unacknowledged messages hold the publisher back; bad input is
//! a clear error.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;
use ringbus::broker::Config;
use ringbus::client::{
    Client, GroupError, GroupOptions, GroupSubscriber, Mode, SubscribeOptions, TopicConfig,
};
use ringbus::control::ErrorCode;
use ringbus::ring::claim::ClaimError;
use ringbus::ring::{PublishError, RecvError};

fn config(capacity: u32) -> TopicConfig {
    TopicConfig {
        max_message_size: 64,
        capacity,
        mode: Mode::Backpressure,
        max_subscribers: 8,
    }
}

fn member(client: &Client, topic: &str, group: &str, options: GroupOptions) -> GroupSubscriber {
    client
        .subscriber_in_group(topic, group, options)
        .unwrap_or_else(|e| panic!("joining {group}: {e}"))
}

/// Reads until the group as a whole has `total` messages; returns this
/// member's sequences.
fn drain(mut m: GroupSubscriber, done: &AtomicU64, total: u64) -> Vec<u64> {
    let mut buf = [0u8; 64];
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + PATIENCE;
    while done.load(Ordering::SeqCst) < total {
        assert!(std::time::Instant::now() < deadline, "the group stalled");
        match m.recv_timeout(&mut buf, Duration::from_millis(20)) {
            Ok(d) => {
                let seq = d.delivery.info.seq;
                assert_eq!(&buf[..8], &seq.to_le_bytes(), "payload of {seq}");
                assert!(!d.redelivered);
                seen.push(seq);
                done.fetch_add(1, Ordering::SeqCst);
            }
            Err(RecvError::Timeout) => {}
            Err(e) => panic!("member: {e}"),
        }
    }
    seen
}

#[test]
fn each_message_goes_to_one_member_and_every_group_and_plain_subscriber_gets_all() {
    const N: u64 = 20_000;
    const WORKERS: usize = 3;
    let dir = TestDir::new("group-once");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut p = client.publisher("jobs", config(64)).unwrap();
    let options = GroupOptions {
        batch: 8,
        ..Default::default()
    };
    // All members and the plain subscriber join before the first message.
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            member(
                &Client::connect(dir.socket()).unwrap(),
                "jobs",
                "workers",
                options,
            )
        })
        .collect();
    let audit = member(&client, "jobs", "audit", options);
    let mut plain = client
        .subscriber("jobs", SubscribeOptions::default())
        .unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let audit_done = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = workers
        .into_iter()
        .map(|m| {
            let done = done.clone();
            thread::spawn(move || drain(m, &done, N))
        })
        .collect();
    let audit_h = {
        let d = audit_done.clone();
        thread::spawn(move || drain(audit, &d, N))
    };
    let plain_h = thread::spawn(move || {
        let mut buf = [0u8; 64];
        for i in 0..N {
            let d = plain.recv_timeout(&mut buf, PATIENCE).unwrap();
            assert_eq!(d.info.seq, i);
        }
        N
    });
    for i in 0..N {
        p.publish(&i.to_le_bytes(), i).unwrap();
    }
    let per: Vec<Vec<u64>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let mut all: Vec<u64> = per.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..N).collect::<Vec<_>>(), "each message exactly once");
    for (i, s) in per.iter().enumerate() {
        assert!(
            !s.is_empty(),
            "worker {i} got nothing: {:?}",
            per.iter().map(Vec::len).collect::<Vec<_>>()
        );
        // In order within a member.
        assert!(s.windows(2).all(|w| w[0] < w[1]), "worker {i} out of order");
    }
    let mut audit_all = audit_h.join().unwrap();
    audit_all.sort_unstable();
    assert_eq!(
        audit_all,
        (0..N).collect::<Vec<_>>(),
        "another group gets all"
    );
    assert_eq!(
        plain_h.join().unwrap() as u64,
        N,
        "a plain subscriber gets all"
    );
}

#[test]
fn unacknowledged_messages_hold_the_publisher_back_and_acks_release_it() {
    let dir = TestDir::new("group-ack");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut p = client.publisher("t", config(4)).unwrap();
    let mut m = member(
        &client,
        "t",
        "g",
        GroupOptions {
            auto_ack: false,
            ..Default::default()
        },
    );
    for i in 0..4u64 {
        p.try_publish(&i.to_le_bytes(), i).unwrap();
    }
    assert_eq!(p.try_publish(b"x", 9), Err(PublishError::Full));
    let mut buf = [0u8; 64];
    let got: Vec<_> = (0..4)
        .map(|_| m.recv_timeout(&mut buf, PATIENCE).unwrap())
        .collect();
    assert_eq!(
        got.iter().map(|d| d.delivery.info.seq).collect::<Vec<_>>(),
        [0, 1, 2, 3]
    );
    // Read but not acknowledged: still held, the ring still full.
    assert_eq!(p.try_publish(b"x", 9), Err(PublishError::Full));
    // Out of order: 1 and 2 acknowledged, 0 not: nothing is released.
    m.ack(&got[1]).unwrap();
    m.ack(&got[2]).unwrap();
    assert_eq!(p.try_publish(b"x", 9), Err(PublishError::Full));
    // Twice, or never delivered: a clear error.
    assert!(matches!(
        m.ack(&got[1]),
        Err(GroupError::Claim(ClaimError::NotHeld { seq: 1, .. }))
    ));
    let mut fake = got[3];
    fake.delivery.info.seq = 77;
    assert!(matches!(
        m.ack(&fake),
        Err(GroupError::Claim(ClaimError::NotHeld { seq: 77, .. }))
    ));
    fake.delivery.ring_id ^= 1;
    assert!(matches!(m.ack(&fake), Err(GroupError::UnknownRing(_))));
    // 0 acknowledged: 0, 1, 2 are released (three slots).
    m.ack(&got[0]).unwrap();
    for i in 4..7u64 {
        p.try_publish(&i.to_le_bytes(), i).unwrap();
    }
    assert_eq!(p.try_publish(b"x", 9), Err(PublishError::Full));
    m.ack_through(&got[3]).unwrap();
    p.try_publish(&7u64.to_le_bytes(), 7).unwrap();
    let d = m.recv_timeout(&mut buf, PATIENCE).unwrap();
    assert_eq!(d.delivery.info.seq, 4);
}

/// A member dropped (its process lives on) holding a claim it has not
/// finished hands it to the other members, flagged `redelivered`: what
/// it claimed and never read, and what it read and never acknowledged
/// (under the implicit acknowledgement, leaving acknowledges the last
/// message delivered, as a next receive would). Nothing is lost; nothing
/// else comes twice.
#[test]
fn a_member_that_leaves_hands_what_it_holds_to_the_others() {
    for auto_ack in [true, false] {
        a_member_leaves(auto_ack);
    }
}

fn a_member_leaves(auto_ack: bool) {
    const N: u64 = 20;
    let dir = TestDir::new("group-leave");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut p = client.publisher("t", config(64)).unwrap();
    let options = GroupOptions {
        batch: 8,
        auto_ack,
        ..Default::default()
    };
    let mut a = member(&Client::connect(dir.socket()).unwrap(), "t", "g", options);
    let mut b = member(&Client::connect(dir.socket()).unwrap(), "t", "g", options);
    for i in 0..N {
        p.try_publish(&i.to_le_bytes(), i).unwrap();
    }
    let mut buf = [0u8; 64];
    let first = a.recv_timeout(&mut buf, PATIENCE).unwrap();
    assert_eq!(first.delivery.info.seq, 0);
    // `a` holds 0..8: 0 delivered (acknowledged by the drop under the
    // implicit acknowledgement), 1..8 claimed.
    drop(a);
    let handed_on = if auto_ack { 1..8 } else { 0..8 };
    let mut seen = std::collections::BTreeMap::new();
    let deadline = std::time::Instant::now() + PATIENCE;
    while (seen.len() as u64) < N {
        assert!(std::time::Instant::now() < deadline, "got only {seen:?}");
        match b.recv_timeout(&mut buf, Duration::from_millis(20)) {
            Ok(d) => {
                let seq = d.delivery.info.seq;
                assert_eq!(&buf[..8], &seq.to_le_bytes(), "payload of {seq}");
                let before = seen.insert(seq, (d.redelivered, d.deliveries));
                assert_eq!(before, None, "{seq} delivered twice to b");
                if !auto_ack {
                    b.ack(&d).unwrap();
                }
            }
            Err(RecvError::Timeout) => {}
            Err(e) => panic!("b: {e}"),
        }
        if auto_ack && seen.len() as u64 == N - 1 {
            // 0 was acknowledged by `a`: it never comes again.
            assert!(!seen.contains_key(&0));
            seen.insert(0, (false, 1));
        }
    }
    for (seq, (redelivered, deliveries)) in seen {
        let held = handed_on.contains(&seq);
        assert_eq!(redelivered, held, "auto_ack {auto_ack}: {seq}");
        assert_eq!(
            deliveries,
            if held { 2 } else { 1 },
            "auto_ack {auto_ack}: {seq}"
        );
    }
    // Nothing more (nothing twice), and once `b` has acknowledged them,
    // the publisher has the ring again.
    let more = b.recv_timeout(&mut buf, Duration::from_millis(200));
    assert!(matches!(more, Err(RecvError::Timeout)), "{more:?}");
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut sent = 0;
    while sent < 64 {
        assert!(
            std::time::Instant::now() < deadline,
            "the ring stays held ({sent} sent)"
        );
        match p.try_publish(b"more", 1) {
            Ok(_) => sent += 1,
            Err(PublishError::Full) => {
                let _ = b.try_recv(&mut buf);
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// `ringbus topics` (the broker's topic list) counts each group's work:
/// members, claimed, acknowledged, backlog, redelivered, dead-lettered.
#[test]
fn the_topic_list_counts_each_groups_work() {
    use ringbus::control::frame::GroupInfo;
    let dir = TestDir::new("group-topics");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut p = client.publisher("t", config(64)).unwrap();
    let group = |client: &Client| -> GroupInfo {
        let topics = client.topics().unwrap();
        let t = topics.iter().find(|t| t.name == "t").unwrap();
        assert_eq!(t.groups.len(), 1, "{:?}", t.groups);
        t.groups[0].clone()
    };
    let auto = GroupOptions {
        batch: 4,
        max_deliveries: 2,
        ..Default::default()
    };
    let manual = GroupOptions {
        auto_ack: false,
        ..auto
    };
    let mut a = member(&Client::connect(dir.socket()).unwrap(), "t", "g", auto);
    let mut b = member(&Client::connect(dir.socket()).unwrap(), "t", "g", manual);
    for i in 0..10u64 {
        p.try_publish(&i.to_le_bytes(), i).unwrap();
    }
    let mut buf = [0u8; 64];
    // `a` claims 0..4, reads 0 and 1 (0 acknowledged by asking for 1).
    assert_eq!(
        a.recv_timeout(&mut buf, PATIENCE)
            .unwrap()
            .delivery
            .info
            .seq,
        0
    );
    assert_eq!(
        a.recv_timeout(&mut buf, PATIENCE)
            .unwrap()
            .delivery
            .info
            .seq,
        1
    );
    // `b` claims 4..8, reads 4 and hands it back.
    let d = b.recv_timeout(&mut buf, PATIENCE).unwrap();
    assert_eq!(d.delivery.info.seq, 4);
    assert_eq!(
        group(&client),
        GroupInfo {
            name: "g".into(),
            members: 2,
            claimed: 8,
            acknowledged: 1,
            backlog: 2,
            redelivered: 0,
            dead_lettered: 0,
        }
    );
    // Handed back until max_deliveries (2): dead-lettered, acknowledged.
    b.nack(&d).unwrap();
    let again = b.recv_timeout(&mut buf, PATIENCE).unwrap();
    assert_eq!((again.delivery.info.seq, again.deliveries), (4, 2));
    b.nack(&again).unwrap();
    let next = b.recv_timeout(&mut buf, PATIENCE).unwrap();
    assert_eq!(next.delivery.info.seq, 5, "4 went to the dead-letter topic");
    assert_eq!(b.dead_lettered(), 1);
    // `a` leaves: 1 acknowledged by the drop, 2 and 3 handed on.
    drop(a);
    let g = group(&client);
    assert_eq!(
        (g.members, g.claimed, g.redelivered, g.dead_lettered),
        (1, 8, 2, 1),
        "{g:?}"
    );
    // Held: `b`'s 5..8, and 2..4 waiting for a member.
    assert_eq!(g.acknowledged, 3, "{g:?}");
    assert_eq!(g.backlog, 2, "{g:?}");
}

#[test]
fn bad_group_input_is_a_clear_error() {
    let dir = TestDir::new("group-bad");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let _p = client.publisher("t", config(4)).unwrap();
    for bad in ["", "a/b", ".x", "x..y", &"g".repeat(65)] {
        let e = client
            .subscriber_in_group("t", bad, GroupOptions::default())
            .expect_err(bad);
        assert_eq!(e.code(), Some(ErrorCode::BadTopicName), "{bad:?}: {e}");
        assert!(e.to_string().contains("group name"), "{bad:?}: {e}");
    }
    let zero = GroupOptions {
        max_deliveries: 0,
        ..Default::default()
    };
    let e = client.subscriber_in_group("t", "g", zero).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidConfig), "{e}");
    let _m = member(&client, "t", "g", GroupOptions::default());
    let other = GroupOptions {
        max_deliveries: 3,
        ..Default::default()
    };
    let e = client.subscriber_in_group("t", "g", other).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ConfigMismatch), "{e}");
    assert!(e.to_string().contains("max_deliveries"), "{e}");
    // Another group may choose its own.
    let _o = member(&client, "t", "h", other);
}

#[test]
fn a_group_spans_the_rings_of_several_publishers_and_patterns() {
    const N: u64 = 2_000;
    let dir = TestDir::new("group-rings");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let options = GroupOptions {
        batch: 4,
        ..Default::default()
    };
    let a = member(
        &Client::connect(dir.socket()).unwrap(),
        "md.>",
        "w",
        options,
    );
    let b = member(
        &Client::connect(dir.socket()).unwrap(),
        "md.>",
        "w",
        options,
    );
    let start = Arc::new(Barrier::new(3));
    let done = Arc::new(AtomicU64::new(0));
    let total = 2 * N;
    let readers: Vec<_> = [a, b]
        .into_iter()
        .map(|m| {
            let (done, start) = (done.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let mut m = m;
                let mut buf = [0u8; 64];
                let mut seen = Vec::new();
                let deadline = std::time::Instant::now() + PATIENCE;
                while done.load(Ordering::SeqCst) < total {
                    assert!(std::time::Instant::now() < deadline, "stalled");
                    match m.recv_timeout(&mut buf, Duration::from_millis(20)) {
                        Ok(d) => {
                            let topic = m
                                .subscriber()
                                .topic_name(d.delivery.topic)
                                .unwrap()
                                .to_owned();
                            seen.push((topic, d.delivery.info.seq));
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(RecvError::Timeout | RecvError::EndOfStream) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                seen
            })
        })
        .collect();
    // Two topics, created after the members joined: the pattern's group
    // reads both from their first message.
    let mut p1 = client.publisher("md.a", config(16)).unwrap();
    let mut p2 = client.publisher("md.b", config(16)).unwrap();
    start.wait();
    for i in 0..N {
        p1.publish(&i.to_le_bytes(), i).unwrap();
        p2.publish(&i.to_le_bytes(), i).unwrap();
    }
    let mut all = HashSet::new();
    for r in readers {
        for x in r.join().unwrap() {
            assert!(all.insert(x.clone()), "{x:?} delivered twice");
        }
    }
    assert_eq!(all.len() as u64, total);
}

#[test]
fn a_poison_message_goes_to_the_dead_letter_topic_after_max_deliveries() {
    use ringbus::client::DeadLetter;
    const N: u64 = 100;
    const POISON: u64 = 40;
    let dir = TestDir::new("group-dlq");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut p = client.publisher("jobs", config(16)).unwrap();
    let mut m = member(
        &client,
        "jobs",
        "workers",
        GroupOptions {
            max_deliveries: 3,
            ..Default::default()
        },
    );
    // The dead-letter topic's reader, there before the first dead letter.
    let mut dlq = client
        .subscriber("jobs.dlq", SubscribeOptions::default())
        .unwrap();
    let writer = thread::spawn(move || {
        for i in 0..N {
            let tag = if i == POISON { 666 } else { i };
            p.publish(&i.to_le_bytes(), tag).unwrap();
        }
        p
    });
    let mut buf = [0u8; 64];
    let mut processed = Vec::new();
    let mut poison_seen = Vec::new();
    while processed.len() < (N - 1) as usize {
        let d = m.recv_timeout(&mut buf, PATIENCE).unwrap();
        if d.delivery.info.tag == 666 {
            poison_seen.push((d.redelivered, d.deliveries));
            m.nack(&d).unwrap();
            // Handed back already: a second nack or an ack is refused.
            assert!(m.nack(&d).is_err());
            continue;
        }
        processed.push(d.delivery.info.seq);
    }
    let _p = writer.join().unwrap();
    assert_eq!(
        processed,
        (0..N).filter(|&i| i != POISON).collect::<Vec<_>>(),
        "the rest flow on, in order"
    );
    assert_eq!(poison_seen, [(false, 1), (true, 2), (true, 3)]);
    assert_eq!(m.dead_lettered(), 1);
    let mut big = [0u8; 1024];
    let d = dlq.recv_timeout(&mut big, PATIENCE).unwrap();
    let dead = DeadLetter::parse(&big[..d.info.len]).expect("a dead-letter record");
    assert_eq!(
        (dead.topic.as_str(), dead.seq, dead.tag, dead.deliveries),
        ("jobs", POISON, 666, 3)
    );
    assert_eq!(dead.ring_id, m.subscriber().rings()[0].ring_id);
    assert_eq!(dead.payload, POISON.to_le_bytes());
    assert_eq!(d.info.tag, 666);
    // Nothing else was dead-lettered.
    assert_eq!(
        dlq.recv_timeout(&mut big, Duration::from_millis(50)),
        Err(RecvError::Timeout)
    );
}

#[test]
fn overwrite_topics_balance_at_most_once_and_a_lapped_member_is_told() {
    const N: u64 = 1_000;
    let dir = TestDir::new("group-ovw");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut p = client
        .publisher(
            "ticks",
            TopicConfig {
                mode: Mode::Overwrite,
                ..config(16)
            },
        )
        .unwrap();
    let options = GroupOptions {
        batch: 4,
        ..Default::default()
    };
    let mut a = member(&client, "ticks", "g", options);
    let mut b = member(
        &Client::connect(dir.socket()).unwrap(),
        "ticks",
        "g",
        options,
    );
    let mut buf = [0u8; 64];
    // The publisher never waits for the group.
    for i in 0..N {
        p.try_publish(&i.to_le_bytes(), i).unwrap();
    }
    let mut seen = HashSet::new();
    let mut lagged = 0;
    for round in 0..4 {
        let m = if round % 2 == 0 { &mut a } else { &mut b };
        loop {
            match m.try_recv(&mut buf) {
                Ok(d) => {
                    let seq = d.delivery.info.seq;
                    assert_eq!(&buf[..8], &seq.to_le_bytes());
                    assert!(seen.insert(seq), "{seq} delivered twice");
                }
                Err(RecvError::Lagged { missed }) => lagged += missed,
                Err(RecvError::Empty) => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(lagged > 0, "nobody was told of the overwritten messages");
    assert!(
        seen.len() as u64 <= 16 + 4,
        "more than the ring holds: {}",
        seen.len()
    );
    // Caught up, the group shares what comes next, once each.
    for i in N..N + 8 {
        p.try_publish(&i.to_le_bytes(), i).unwrap();
    }
    let mut next = Vec::new();
    for m in [&mut a, &mut b] {
        while let Ok(d) = m.try_recv(&mut buf) {
            next.push(d.delivery.info.seq);
        }
    }
    next.sort_unstable();
    assert_eq!(next, (N..N + 8).collect::<Vec<_>>());
}
