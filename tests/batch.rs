//! Batches through the client API: `Publisher::publish_batch` and
//! `try_publish_batch`, `Subscriber::try_recv_batch`, and what ends a
//! receive batch early being the next receive's answer.

mod common;

use common::*;
use ringbus::broker::Config;
use ringbus::client::{Client, Mode, Publisher, SubscribeOptions, Subscriber, TopicConfig};
use ringbus::ring::{PublishError, RecvError, Start};

fn cfg(mode: Mode, capacity: u32) -> TopicConfig {
    TopicConfig {
        max_message_size: 64,
        capacity,
        mode,
        max_subscribers: 4,
    }
}

fn pair(client: &Client, topic: &str, config: TopicConfig) -> (Publisher, Subscriber) {
    let sub = client
        .subscriber(
            topic,
            SubscribeOptions {
                start: Start::Earliest,
                ..Default::default()
            },
        )
        .unwrap();
    let publisher = client.publisher(topic, config).unwrap();
    (publisher, sub)
}

/// Receives a batch of at most `max`, as (sequence, bytes).
fn batch(
    sub: &mut Subscriber,
    buf: &mut [u8],
    max: usize,
) -> Result<Vec<(u64, Vec<u8>)>, RecvError> {
    let mut got = Vec::new();
    let n = sub.try_recv_batch(buf, max, |bytes, d| got.push((d.info.seq, bytes.to_vec())))?;
    assert_eq!(n, got.len());
    Ok(got)
}

#[test]
fn batches_arrive_whole_in_order_and_bounded() {
    let dir = TestDir::new("batch-order");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let (mut p, mut sub) = pair(&client, "b.order", cfg(Mode::Backpressure, 8));
    let msgs: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; usize::from(i) + 1]).collect();
    // Eight fit; the rest waits for the subscriber.
    assert_eq!(p.try_publish_batch(&msgs, 3), Ok(0..8));
    assert_eq!(p.try_publish_batch(&msgs[8..], 3), Err(PublishError::Full));
    // A bad length anywhere: nothing published.
    let too_long = [vec![0u8; 1], vec![0u8; 65]];
    assert_eq!(
        p.publish_batch(&too_long, 0),
        Err(PublishError::TooLarge { len: 65, max: 64 })
    );
    let mut buf = [0u8; 64];
    assert_eq!(
        sub.try_recv_batch(&mut buf, 0, |_, _| {}),
        Err(RecvError::Empty)
    );
    let first = batch(&mut sub, &mut buf, 5).unwrap();
    let rest = batch(&mut sub, &mut buf, 100).unwrap();
    let want: Vec<(u64, Vec<u8>)> = (0..8u64).zip(msgs.iter().cloned()).collect();
    assert_eq!([first, rest].concat(), want);
    assert_eq!(batch(&mut sub, &mut buf, 100), Err(RecvError::Empty));
    // A batch longer than the ring: the publisher waits for room.
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while got.len() < 30 {
            let d = sub.recv_timeout(&mut buf, PATIENCE).unwrap();
            got.push((d.info.seq, d.info.tag));
            let more = batch(&mut sub, &mut buf, 7).unwrap_or_default();
            got.extend(more.into_iter().map(|(seq, _)| (seq, 4)));
        }
        got
    });
    let thirty: Vec<[u8; 8]> = (0..30u64).map(u64::to_le_bytes).collect();
    assert_eq!(p.publish_batch(&thirty, 4), Ok(8..38));
    let want: Vec<(u64, u64)> = (8..38).map(|seq| (seq, 4)).collect();
    assert_eq!(reader.join().unwrap(), want);
}

#[test]
fn a_batch_stopped_by_its_caller_leaves_the_rest_unread() {
    let dir = TestDir::new("batch-while");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let (mut p, mut sub) = pair(&client, "b.while", cfg(Mode::Backpressure, 16));
    let msgs: Vec<[u8; 8]> = (0..6u64).map(u64::to_le_bytes).collect();
    assert_eq!(p.publish_batch(&msgs, 1), Ok(0..6));
    let mut buf = [0u8; 64];
    let mut seen = Vec::new();
    // Stops after the third: three taken, counted, the rest left.
    let n = sub
        .try_recv_batch_while(&mut buf, 10, |_, d| {
            seen.push(d.info.seq);
            seen.len() < 3
        })
        .unwrap();
    assert_eq!((n, seen), (3, vec![0, 1, 2]));
    let rest = batch(&mut sub, &mut buf, 10).unwrap();
    assert_eq!(rest.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [3, 4, 5]);
}

#[test]
fn the_end_of_a_ring_after_a_batch_is_the_next_answer() {
    let dir = TestDir::new("batch-end");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let (p, mut sub) = pair(&client, "b.end", cfg(Mode::Backpressure, 8));
    let mut p = Some(p);
    let three: [&[u8]; 3] = [b"a", b"b", b"c"];
    p.as_mut().unwrap().publish_batch(&three, 0).unwrap();
    let ring = p.as_ref().unwrap().ring_id();
    let mut buf = [0u8; 64];
    // The publisher leaves during the batch: its three messages, then
    // (next call) the end of its ring.
    let mut seqs = Vec::new();
    let n = sub
        .try_recv_batch(&mut buf, 10, |_, d| {
            drop(p.take());
            seqs.push(d.info.seq);
        })
        .unwrap();
    assert_eq!((n, seqs), (3, vec![0, 1, 2]));
    assert_eq!(
        sub.try_recv_batch(&mut buf, 10, |_, _| {}),
        Err(RecvError::EndOfStream)
    );
    assert_eq!(sub.last_ring_id(), ring);
    assert_eq!(
        sub.try_recv_batch(&mut buf, 10, |_, _| {}),
        Err(RecvError::Empty)
    );
}

#[test]
fn a_loss_during_a_batch_is_reported_next() {
    let dir = TestDir::new("batch-lag");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let (mut p, mut sub) = pair(&client, "b.lag", cfg(Mode::Overwrite, 8));
    p.publish(b"first", 0).unwrap();
    let mut buf = [0u8; 64];
    // Twenty more while the batch runs: the ring of eight laps it.
    let n = sub
        .try_recv_batch(&mut buf, 10, |bytes, _| {
            assert_eq!(bytes, b"first");
            for i in 0..20u64 {
                p.publish(&i.to_le_bytes(), 1).unwrap();
            }
        })
        .unwrap();
    assert_eq!(n, 1);
    let lagged = sub.try_recv_batch(&mut buf, 10, |_, _| {});
    assert!(
        matches!(lagged, Err(RecvError::Lagged { missed }) if missed > 0),
        "{lagged:?}"
    );
    assert_eq!(
        sub.lagged_total(),
        match lagged {
            Err(RecvError::Lagged { missed }) => missed,
            _ => 0,
        }
    );
    // Then the messages still in the ring, up to the last.
    let got = batch(&mut sub, &mut buf, 100).unwrap();
    assert_eq!(got.last().map(|(seq, _)| *seq), Some(20));
}

#[test]
fn a_message_too_large_for_the_buffer_ends_the_batch_unread() {
    let dir = TestDir::new("batch-small");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let (mut p, mut sub) = pair(&client, "b.small", cfg(Mode::Backpressure, 8));
    let two: [&[u8]; 2] = [b"ok", b"too long for it"];
    p.publish_batch(&two, 0).unwrap();
    let mut small = [0u8; 4];
    assert_eq!(
        batch(&mut sub, &mut small, 10).unwrap(),
        vec![(0, b"ok".to_vec())]
    );
    assert_eq!(
        batch(&mut sub, &mut small, 10),
        Err(RecvError::BufferTooSmall { needed: 15 })
    );
    let mut buf = [0u8; 64];
    assert_eq!(
        batch(&mut sub, &mut buf, 10).unwrap(),
        vec![(1, two[1].to_vec())]
    );
}
