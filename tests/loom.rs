//! Loom models of the ring's protocols. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 cargo test --release --test loom`
//! (`.ci/run` does). Capacity is 4 so the models reach wrap-around.
//!
//! Each model was checked against a deliberately broken ring (seqlock
//! re-check removed; join without the limit read; futex word read after the
//! last poll) and fails on it. Loom does not model store buffering (its own
//! docs: `Relaxed` is not fully modelled), so the two SeqCst fences of the
//! Dekker pairs (sleeper check, cursor join) are argued in `src/wait.rs` and
//! `Producer::refresh_limit` rather than found by these models.
#![cfg(loom)]

use loom::thread;
use ringbus::ring::{
    Consumer, Mailbox, Mode, Producer, PublishError, RecvError, RingRegion, Start, TopicConfig,
};
use ringbus::wait::WaitStrategy;

fn config(mode: Mode) -> TopicConfig {
    // 16-byte payloads: two words, so a torn copy is observable.
    TopicConfig {
        max_message_size: 16,
        capacity: 4,
        mode,
        max_subscribers: 2,
    }
}

fn payload(n: u64) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..8].copy_from_slice(&n.to_le_bytes());
    p[8..].copy_from_slice(&(!n).to_le_bytes());
    p
}

/// A 24-byte message: too long for the models' 16-byte inline area, so
/// the latest slot or mailbox only announces it.
fn long(n: u64) -> [u8; 24] {
    let mut p = [0u8; 24];
    p[..16].copy_from_slice(&payload(n));
    p[16..].copy_from_slice(&n.to_le_bytes());
    p
}

fn check(buf: &[u8; 16], seq: u64) {
    let a = u64::from_le_bytes(buf[..8].try_into().unwrap());
    let b = u64::from_le_bytes(buf[8..].try_into().unwrap());
    assert_eq!(a, seq, "message {seq} carries the payload of {a}");
    assert_eq!(b, !seq, "torn message {seq}: words {a} and {}", !b);
}

/// Overwrite mode: a reader racing a publisher that laps it never accepts a
/// torn or misplaced message, and every gap is reported as lag.
#[test]
fn overwrite_never_delivers_torn_messages() {
    loom::model(|| {
        let region = RingRegion::heap(&config(Mode::Overwrite)).unwrap();
        let mut consumer = Consumer::new(region.clone(), Start::Earliest).unwrap();
        let mut producer = Producer::new(region).unwrap();
        for n in 0..3 {
            producer.publish(&payload(n), n).unwrap();
        }
        let t = thread::spawn(move || {
            for n in 3..6 {
                producer.publish(&payload(n), n).unwrap();
            }
        });
        let (mut expect, mut buf) = (0u64, [0u8; 16]);
        for _ in 0..3 {
            match consumer.try_recv(&mut buf) {
                Ok(info) => {
                    assert_eq!(info.seq, expect);
                    check(&buf, info.seq);
                    expect += 1;
                }
                Err(RecvError::Lagged { missed }) => expect += missed,
                Err(RecvError::Empty) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        t.join().unwrap();
    });
}

/// The latest-message slot with both kinds of message: 16-byte ones are
/// inline there, 24-byte ones only announced (read from the ring slot),
/// and the hand-over that turns the slot on racing the reader. The reader
/// gets every message whole, in order, from whichever slot, or a lag report
/// for what was overwritten.
#[test]
fn latest_slot_never_delivers_torn_or_misplaced_messages() {
    loom::model(|| {
        let config = TopicConfig {
            max_message_size: 24,
            ..config(Mode::Overwrite)
        };
        let region = RingRegion::heap(&config).unwrap();
        let mut producer = Producer::new(region.clone()).unwrap();
        // Message 0 goes out before any subscriber asks for the latest
        // slot; the publisher starts writing it (and acknowledges) while
        // the reader below is already reading: the hand-over races too.
        producer.publish(&payload(0), 0).unwrap();
        let mut consumer = Consumer::new(region, Start::Earliest).unwrap();
        let t = thread::spawn(move || {
            producer.publish(&long(1), 1).unwrap();
            producer.publish(&payload(2), 2).unwrap();
            producer.publish(&long(3), 3).unwrap();
        });
        let (mut expect, mut buf) = (0u64, [0u8; 24]);
        for _ in 0..4 {
            match consumer.try_recv(&mut buf) {
                Ok(info) => {
                    assert_eq!(info.seq, expect);
                    assert_eq!(info.tag, expect, "header of another message");
                    assert_eq!(info.len, if expect % 2 == 0 { 16 } else { 24 });
                    check(buf[..16].try_into().unwrap(), info.seq);
                    if info.len == 24 {
                        assert_eq!(buf[16..], expect.to_le_bytes(), "torn long message");
                    }
                    expect += 1;
                }
                Err(RecvError::Lagged { missed }) => expect += missed,
                Err(RecvError::Empty) => {}
                Err(e) => panic!("{e:?}"),
            }
        }
        t.join().unwrap();
        // Whatever was not read yet is still there, in order.
        while expect < 4 {
            match consumer.try_recv(&mut buf) {
                Ok(info) => {
                    assert_eq!(info.seq, expect);
                    expect += 1;
                }
                Err(RecvError::Lagged { missed }) => expect += missed,
                Err(e) => panic!("after the publisher finished: {e:?}"),
            }
        }
    });
}

/// A subscriber's mailbox, added by the publisher while the reader already
/// reads (the hand-over races the reader), with an announced long message
/// and an inline one: every message arrives whole, in order, from whichever
/// slot, or is reported as lag.
#[test]
fn mailbox_never_delivers_torn_or_misplaced_messages() {
    loom::model(|| {
        let config = TopicConfig {
            max_message_size: 24,
            ..config(Mode::Overwrite)
        };
        let region = RingRegion::heap(&config).unwrap();
        let mailbox = Mailbox::heap(&config, 0).unwrap();
        let mut producer = Producer::new(region.clone()).unwrap();
        producer.publish(&payload(0), 0).unwrap();
        let mut consumer = Consumer::new(region, Start::Earliest).unwrap();
        consumer.attach_mailbox(mailbox.clone()).unwrap();
        let t = thread::spawn(move || {
            producer.add_mailbox(mailbox).unwrap();
            producer.publish(&long(1), 1).unwrap();
            producer.publish(&payload(2), 2).unwrap();
        });
        let (mut expect, mut buf) = (0u64, [0u8; 24]);
        let mut take = |consumer: &mut Consumer, expect: &mut u64, must: bool| match consumer
            .try_recv(&mut buf)
        {
            Ok(info) => {
                assert_eq!(info.seq, *expect);
                assert_eq!(info.tag, *expect, "header of another message");
                assert_eq!(info.len, if *expect % 2 == 0 { 16 } else { 24 });
                check(buf[..16].try_into().unwrap(), info.seq);
                if info.len == 24 {
                    assert_eq!(buf[16..], expect.to_le_bytes(), "torn long message");
                }
                *expect += 1;
            }
            Err(RecvError::Lagged { missed }) => *expect += missed,
            Err(RecvError::Empty) if !must => {}
            Err(e) => panic!("{e:?}"),
        };
        for _ in 0..3 {
            take(&mut consumer, &mut expect, false);
        }
        t.join().unwrap();
        // Whatever was not read yet is still there, in order.
        while expect < 3 {
            take(&mut consumer, &mut expect, true);
        }
    });
}

/// A mailbox added after the last message: its reader must still be sent
/// to the ring for what was published before (the announcement), not wait
/// in an empty mailbox.
#[test]
fn mailbox_added_after_the_last_message_loses_nothing() {
    loom::model(|| {
        let region = RingRegion::heap(&config(Mode::Overwrite)).unwrap();
        let mailbox = Mailbox::heap(&config(Mode::Overwrite), 0).unwrap();
        let mut producer = Producer::new(region.clone()).unwrap();
        producer.publish(&payload(0), 0).unwrap();
        producer.publish(&payload(1), 1).unwrap();
        let mut consumer = Consumer::new(region, Start::Earliest).unwrap();
        consumer.attach_mailbox(mailbox.clone()).unwrap();
        let t = thread::spawn(move || {
            producer.add_mailbox(mailbox).unwrap();
            producer
        });
        let mut buf = [0u8; 16];
        let info = consumer.try_recv(&mut buf).unwrap();
        assert_eq!(info.seq, 0);
        check(&buf, 0);
        let _producer = t.join().unwrap();
        let info = consumer
            .try_recv(&mut buf)
            .expect("message 1 after the hand-over");
        assert_eq!(info.seq, 1);
        check(&buf, 1);
    });
}

/// Back-pressure mode: with a live subscriber the publisher never reuses a
/// slot the subscriber has not released; nothing is lost.
#[test]
fn backpressure_never_overwrites() {
    loom::model(|| {
        // Two slots and three messages: the third must wait for the first
        // to be released (more messages only multiply the spin states).
        let config = TopicConfig {
            capacity: 2,
            ..config(Mode::Backpressure)
        };
        let region = RingRegion::heap(&config).unwrap();
        let mut consumer = Consumer::new(region.clone(), Start::Latest).unwrap();
        let mut producer = Producer::new(region).unwrap();
        const N: u64 = 3;
        let t = thread::spawn(move || {
            let mut n = 0;
            while n < N {
                match producer.try_publish(&payload(n), n) {
                    Ok(_) => n += 1,
                    Err(PublishError::Full) => thread::yield_now(),
                    Err(e) => panic!("{e:?}"),
                }
            }
        });
        let mut buf = [0u8; 16];
        let mut n = 0;
        while n < N {
            match consumer.try_recv(&mut buf) {
                Ok(info) => {
                    assert_eq!(info.seq, n);
                    check(&buf, n);
                    n += 1;
                }
                Err(RecvError::Empty) => thread::yield_now(),
                Err(e) => panic!("back-pressure subscriber saw {e:?}"),
            }
        }
        t.join().unwrap();
    });
}

/// A subscriber joining a back-pressure ring while the publisher is
/// running: once it holds a zero-copy view, the publisher never rewrites
/// that slot (the join protocol's Dekker pair).
#[test]
fn backpressure_join_race() {
    loom::model(|| {
        let region = RingRegion::heap(&config(Mode::Backpressure)).unwrap();
        let mut producer = Producer::new(region.clone()).unwrap();
        producer.publish(&payload(0), 0).unwrap();
        let t = thread::spawn(move || {
            for n in 1..7 {
                if producer.try_publish(&payload(n), n).is_err() {
                    break;
                }
            }
        });
        let mut consumer = Consumer::new(region, Start::Earliest).unwrap();
        if let Ok(view) = consumer.try_recv_ref() {
            thread::yield_now();
            assert!(
                view.is_intact(),
                "publisher overwrote a slot held by a joined subscriber"
            );
        }
        t.join().unwrap();
    });
}

/// The futex sleeper protocol never loses a wake-up: a subscriber blocked
/// without a timeout is always woken by the publish (loom reports a
/// deadlock otherwise). The wake hand-over is done first, so the untimed
/// wait is what is checked.
#[test]
fn blocking_wait_never_loses_a_wakeup() {
    loom::model(|| {
        let region = RingRegion::heap(&config(Mode::Overwrite)).unwrap();
        let mut producer = Producer::new(region.clone()).unwrap();
        let mut consumer = Consumer::new(region.clone(), Start::Latest).unwrap();
        // Hand-over: the subscriber announces it may block, the publisher
        // acknowledges on its next publish.
        assert!(!consumer.wait_ready(WaitStrategy::Block, Some(std::time::Instant::now())));
        producer.publish(&payload(0), 0).unwrap();
        let mut buf = [0u8; 16];
        consumer.try_recv(&mut buf).unwrap();
        let t = thread::spawn(move || {
            producer.publish(&payload(1), 1).unwrap();
            producer
        });
        let info = consumer.recv(&mut buf, WaitStrategy::Block).unwrap();
        assert_eq!(info.seq, 1);
        check(&buf, 1);
        drop(t.join().unwrap());
    });
}

/// The same during the hand-over itself: the subscriber's waits are bounded
/// until the publisher acknowledges, so the message still arrives.
#[test]
fn blocking_wait_during_wake_handover() {
    loom::model(|| {
        let region = RingRegion::heap(&config(Mode::Overwrite)).unwrap();
        let mut producer = Producer::new(region.clone()).unwrap();
        let mut consumer = Consumer::new(region, Start::Latest).unwrap();
        let t = thread::spawn(move || {
            producer.publish(&payload(0), 0).unwrap();
            producer
        });
        let mut buf = [0u8; 16];
        assert_eq!(consumer.recv(&mut buf, WaitStrategy::Block).unwrap().seq, 0);
        drop(t.join().unwrap());
    });
}
