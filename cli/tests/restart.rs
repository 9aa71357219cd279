//! A broker that dies (kill -9) or restarts: the data path goes on without
//! it; the keeper holds the rings meanwhile and the next broker takes them
//! back, with every subscriber's port, and reclaims what processes that
//! died meanwhile held.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::*;
use ringbus::client::{Client, Mode, TopicConfig};

fn bp_config(capacity: u32) -> TopicConfig {
    TopicConfig {
        max_message_size: 256,
        capacity,
        mode: Mode::Backpressure,
        ..TopicConfig::default()
    }
}

#[test]
fn kill9_broker_data_path_survives_and_restart_takes_the_rings_back() {
    let dir = TestDir::new("mp-killbroker");
    let mut broker = BrokerProc::start(&dir, None);
    let client = Client::connect(dir.socket()).unwrap();
    let mut sub = subscribe(&client, "kb");
    let mut publisher = KillOnDrop(
        ringbus(&dir.socket())
            .args([
                "pub",
                "kb",
                "--count",
                "1000000000",
                "--size",
                "64",
                "--rate",
                "2000",
            ])
            .args(["--mode", "backpressure", "--capacity", "4096"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut check = Checker::new();
    check.until(&mut sub, "300 messages", |c| c.received >= 300);

    broker.kill9();
    // No broker: publisher and subscriber keep going.
    let before = check.received;
    check.until(&mut sub, "messages without a broker", |c| {
        c.received >= before + 300
    });

    // A new broker on the same socket and data dir re-adopts the ring.
    let _broker2 = BrokerProc::start(&dir, None);
    let client2 = Client::connect(dir.socket()).unwrap();
    let topics = client2.topics().unwrap();
    let t = topics
        .iter()
        .find(|t| t.name == "kb")
        .expect("topic re-adopted");
    assert_eq!(t.rings.len(), 1);
    assert_eq!(t.rings[0].publisher_pid, publisher.0.id());
    assert!(!t.rings[0].closed);
    assert_eq!(t.config.unwrap().mode, Mode::Backpressure);

    // New clients attach to the running stream.
    let mut sub2 = subscribe(&client2, "kb");
    let mut check2 = Checker::new();
    check2.until(&mut sub2, "messages through the new broker", |c| {
        c.received >= 100
    });
    let before = check.received;
    check.until(&mut sub, "more messages", |c| c.received >= before + 100);

    // The old subscriber re-joins the new broker by itself: a publisher
    // that attaches now reaches it too.
    let mut late = client2
        .publisher_existing("kb")
        .expect("a second publisher through the new broker");
    for i in 0..10 {
        late.publish_timeout(&generated(i, 64), i, PATIENCE)
            .unwrap();
    }
    check.until(
        &mut sub,
        "the new publisher's messages (old subscriber)",
        |c| c.next.get(&late.ring_id()) == Some(&10),
    );
    check2.until(
        &mut sub2,
        "the new publisher's messages (new subscriber)",
        |c| c.next.get(&late.ring_id()) == Some(&10),
    );
    drop(late);
    check.until(&mut sub, "end of the new ring (old subscriber)", |c| {
        c.ended == 1
    });
    check2.until(&mut sub2, "end of the new ring (new subscriber)", |c| {
        c.ended == 1
    });

    // The new broker watches the adopted publisher: its death ends the
    // ring for both subscribers, after they drain it.
    kill9(&mut publisher.0);
    check.until(&mut sub, "end of stream (old subscriber)", |c| c.ended == 2);
    check2.until(&mut sub2, "end of stream (new subscriber)", |c| {
        c.ended == 2
    });
    // Both saw both rings, contiguous, and the new one caught up with the old.
    assert_eq!(check.next.len(), 2);
    assert_eq!(check.next, check2.next);
    eventually("the dead publisher's ring to be reaped", || {
        let t = client2.topics().ok()?;
        t.iter()
            .find(|t| t.name == "kb")
            .map_or(true, |t| t.rings.iter().all(|r| r.closed))
            .then_some(())
    });
}

#[test]
fn a_ring_born_just_before_the_crash_reaches_its_subscriber_from_its_first_message() {
    let dir = TestDir::new("rs-orphan");
    let mut broker = BrokerProc::start(&dir, None);
    let client = Client::connect(dir.socket()).unwrap();
    // Subscribed, but not looking: the ring below is never listed to it by
    // the first broker, only given a port (at 0) it has not taken over.
    let mut sub = subscribe(&client, "orphan");
    let capacity = 64;
    let mut publisher = client.publisher("orphan", bp_config(capacity)).unwrap();
    let ring = publisher.ring_id();
    for i in 0..u64::from(capacity) {
        publisher
            .publish_timeout(&generated(i, 64), i, PATIENCE)
            .unwrap();
    }
    broker.kill9();
    let _broker2 = BrokerProc::start(&dir, None);
    // The port made for the subscriber still holds the publisher back:
    // three rings' worth later, the subscriber has every message.
    let total = 4 * u64::from(capacity);
    let writer = std::thread::spawn(move || {
        for i in u64::from(capacity)..total {
            publisher
                .publish_timeout(&generated(i, 64), i, PATIENCE)
                .unwrap();
        }
        publisher
    });
    let mut check = Checker::new();
    check.until(&mut sub, "every message of the ring", |c| {
        c.next.get(&ring) == Some(&total)
    });
    assert_eq!(check.next.len(), 1);
    assert_eq!(check.received, total, "from the ring's first message");
    drop(writer.join().unwrap());
    check.until(&mut sub, "the end of the ring", |c| c.ended == 1);
}

#[test]
fn a_subscriber_that_dies_while_the_broker_is_down_stops_holding_back_its_publisher() {
    let dir = TestDir::new("rs-deadsub");
    let mut broker = BrokerProc::start(&dir, None);
    let client = Client::connect(dir.socket()).unwrap();
    let mut publisher = client.publisher("deadsub", bp_config(64)).unwrap();
    let mut sub = KillOnDrop(
        ringbus(&dir.socket())
            .args(["sub", "deadsub", "--from", "earliest"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The subscriber has joined once it prints the first message.
    let mut lines = BufReader::new(sub.0.stdout.take().unwrap()).lines();
    publisher.publish_timeout(b"first", 0, PATIENCE).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "first");
    broker.kill9();
    kill9(&mut sub.0);
    // Its cursor is stuck where it died: without a broker, the publisher
    // fills the ring and waits.
    let mut sent = 1;
    while publisher.try_publish(b"x", sent).is_ok() {
        sent += 1;
    }
    assert_eq!(
        sent,
        1 + 64,
        "the subscriber read the first message; the ring holds its capacity more"
    );
    // The new broker learns from the keeper that the subscriber is dead
    // and takes its port away from the publisher.
    let _broker2 = BrokerProc::start(&dir, None);
    for i in 0..1000 {
        publisher.publish_timeout(b"y", sent + i, PATIENCE).unwrap();
    }
}

#[test]
fn the_keeper_exits_once_nothing_is_left_to_hand_over() {
    let dir = TestDir::new("rs-keeper");
    let mut broker = BrokerProc::start(&dir, None);
    let keeper_sock = dir.data().join("keeper.sock");
    assert!(keeper_sock.exists(), "the broker started a keeper");
    let status = ringbus(&dir.socket())
        .args(["pub", "gone", "--count", "10", "--size", "32"])
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    broker.kill9();
    // No broker, and the only publisher has exited: the keeper leaves.
    eventually("the keeper to exit", || {
        (!keeper_sock.exists()).then_some(())
    });
    // And a new broker starts a new one.
    let _broker2 = BrokerProc::start(&dir, None);
    eventually("a new keeper", || keeper_sock.exists().then_some(()));
    let client = Client::connect(dir.socket()).unwrap();
    assert!(client.topics().unwrap().iter().all(|t| t.name != "gone"));
}

#[test]
fn a_keeper_whose_data_directory_is_removed_exits() {
    let dir = TestDir::new("rs-keeper-gone");
    let mut broker = BrokerProc::start(&dir, None);
    let keeper = eventually("the keeper", || keeper_of(&dir.data()));
    let client = Client::connect(dir.socket()).unwrap();
    // A publisher that stays: the keeper has something to hand over.
    let mut publisher = client.publisher("kept", bp_config(64)).unwrap();
    publisher.publish(b"x", 0).unwrap();
    broker.kill9();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        keeper_of(&dir.data()),
        Some(keeper),
        "the keeper holds a live publisher's ring for the next broker"
    );
    // Nobody can reach it any more: it leaves, though the owner lives.
    std::fs::remove_dir_all(dir.data()).unwrap();
    eventually("the keeper to exit", || {
        keeper_of(&dir.data()).is_none().then_some(())
    });
    drop(publisher);
}

#[test]
fn rings_born_before_their_subscriber_re_joins_reach_it_from_their_first_message() {
    let dir = TestDir::new("rs-ghost");
    let mut broker = BrokerProc::start(&dir, None);
    let client = Client::connect(dir.socket()).unwrap();
    // Subscribed to a topic without rings yet, then not looking: it
    // re-joins the next broker only when it next receives.
    let mut sub = subscribe(&client, "ghost");
    broker.kill9();
    let _broker2 = BrokerProc::start(&dir, None);
    let client2 = Client::connect(dir.socket()).unwrap();
    // A ring that comes and goes before the subscriber is back...
    let mut gone = client2.publisher("ghost", bp_config(64)).unwrap();
    let gone_ring = gone.ring_id();
    for i in 0..10 {
        gone.publish_timeout(&generated(i, 64), i, PATIENCE)
            .unwrap();
    }
    drop(gone);
    // ...and one that would lap it: the port made for it holds the
    // publisher back until it has read everything.
    let capacity = 64;
    let mut publisher = client2.publisher("ghost", bp_config(capacity)).unwrap();
    let ring = publisher.ring_id();
    let total = 4 * u64::from(capacity);
    let writer = std::thread::spawn(move || {
        for i in 0..total {
            publisher
                .publish_timeout(&generated(i, 64), i, PATIENCE)
                .unwrap();
        }
        publisher
    });
    let mut check = Checker::new();
    check.until(&mut sub, "every message of both rings", |c| {
        c.next.get(&gone_ring) == Some(&10) && c.next.get(&ring) == Some(&total)
    });
    assert_eq!(check.received, 10 + total, "from each ring's first message");
    drop(writer.join().unwrap());
    check.until(&mut sub, "the end of both rings", |c| c.ended == 2);
}

#[test]
fn a_port_handed_over_in_a_reply_the_broker_died_before_sending_is_handed_over_again() {
    use ringbus::control::frame::{Reply, Request};
    use ringbus::control::Connection;
    use ringbus::ring::Start;
    let dir = TestDir::new("rs-undelivered");
    let mut broker = BrokerProc::start(&dir, None);
    let client = Client::connect(dir.socket()).unwrap();
    let capacity = 64;
    let mut publisher = client.publisher("lost", bp_config(capacity)).unwrap();
    // A subscription whose listing (with its port) is as good as lost:
    // the broker counts the port as handed over, nobody maps it. As if
    // the broker had died between the two.
    let mut conn = Connection::connect(&dir.socket(), "lost-reply").unwrap();
    let (reply, fds) = conn
        .call(&Request::Subscribe {
            topic: "lost".into(),
            start: Start::Earliest,
            held: vec![],
        })
        .unwrap();
    assert!(matches!(reply, Reply::Subscribed { ref rings, .. } if rings.len() == 1));
    drop(fds);
    broker.kill9();
    let _broker2 = BrokerProc::start(&dir, None);
    // The process subscribes again (as its subscriber re-joins): it gets
    // that port, and nothing else holds the publisher back.
    let mut sub = subscribe(&Client::connect(dir.socket()).unwrap(), "lost");
    let total = 4 * u64::from(capacity);
    let writer = std::thread::spawn(move || {
        for i in 0..total {
            publisher
                .publish_timeout(&generated(i, 64), i, PATIENCE)
                .unwrap();
        }
        publisher
    });
    let mut check = Checker::new();
    check.until(&mut sub, "every message", |c| c.received == total);
    assert_eq!(
        check.next.values().copied().collect::<Vec<_>>(),
        vec![total]
    );
    drop(writer.join().unwrap());
    drop(conn);
}
