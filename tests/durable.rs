//! Durable topics: the broker's recorder journals every message of a
//! back-pressure topic to disk, in order and intact, and a journal outlives
//! the broker and its rings; bad durable configs are refused clearly.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use ringbus::broker::{Broker, BrokerOptions, Config};
use ringbus::client::Client;
use ringbus::journal::JournalReader;

fn config(journal: &Path, extra: &str) -> Config {
    Config::parse(&format!(
        r#"
[server]
journal_dir = "{}"

[[topic]]
name = "d.orders"
mode = "backpressure"
capacity = 64
max_message_size = 64
durable = true
fsync = "interval:1ms"
{extra}
"#,
        journal.display()
    ))
    .unwrap()
}

/// The ring journals of `topic`, oldest ring first.
fn ring_journals(journal: &Path, topic: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(journal.join(topic))
        .map(|rd| rd.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Every record of a ring's journal, checked intact; their sequence numbers.
fn journaled(dir: &Path) -> Vec<u64> {
    let mut r = JournalReader::open(dir, 64).unwrap();
    let mut seqs = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        assert_eq!(check_generated(rec.payload), rec.meta.seq);
        assert_eq!(rec.meta.tag, rec.meta.seq % 7);
        assert!(rec.meta.recorded_ns > 0);
        seqs.push(rec.meta.seq);
    }
    assert_eq!(r.corrupt_skipped(), 0);
    seqs
}

fn publish(socket: &Path, range: std::ops::Range<u64>) {
    let client = Client::connect(socket).unwrap();
    let mut publisher = client.publisher_existing("d.orders").unwrap();
    for i in range {
        publisher.publish(&generated(i, 40), i % 7).unwrap();
    }
}

#[test]
fn every_message_of_a_durable_topic_is_journaled_and_outlives_the_broker() {
    let dir = TestDir::new("durable");
    let journal = dir.path("journal");
    const N: u64 = 20_000;
    {
        let _broker = BrokerThread::start(&dir, config(&journal, ""));
        // 20 000 messages through a 64-slot ring: the recorder's cursor
        // holds the publisher back, so none is lost on the way to disk.
        publish(&dir.socket(), 0..N);
        eventually("the recorder to journal every message", || {
            let rings = ring_journals(&journal, "d.orders");
            (rings.len() == 1 && journaled(&rings[0]).len() == N as usize).then_some(())
        });
    }
    let rings = ring_journals(&journal, "d.orders");
    assert_eq!(rings.len(), 1);
    assert_eq!(journaled(&rings[0]), (0..N).collect::<Vec<_>>());

    // A broker started again (its rings gone, as after a reboot) journals
    // the new ring beside the old one, which stays as it was.
    {
        let _broker = BrokerThread::start(&dir, config(&journal, ""));
        publish(&dir.socket(), 0..100);
        eventually("the second ring's journal", || {
            let rings = ring_journals(&journal, "d.orders");
            (rings.len() == 2 && journaled(&rings[1]).len() == 100).then_some(())
        });
    }
    let rings = ring_journals(&journal, "d.orders");
    assert_eq!(journaled(&rings[0]), (0..N).collect::<Vec<_>>());
    assert_eq!(journaled(&rings[1]), (0..100).collect::<Vec<_>>());
}

#[test]
fn retention_keeps_a_durable_topic_within_its_bytes() {
    let dir = TestDir::new("durable-retain");
    let journal = dir.path("journal");
    let extra = "segment_bytes = 4096\nretain_bytes = 16384";
    {
        let _broker = BrokerThread::start(&dir, config(&journal, extra));
        publish(&dir.socket(), 0..5_000);
        eventually("the last message journaled", || {
            let rings = ring_journals(&journal, "d.orders");
            (rings.len() == 1 && journaled(&rings[0]).last() == Some(&4_999)).then_some(())
        });
    }
    let ring = &ring_journals(&journal, "d.orders")[0];
    let seqs = journaled(ring);
    let bytes: u64 = std::fs::read_dir(ring)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(bytes <= 16_384 + 4_096, "{bytes} bytes kept");
    // What is kept is the newest messages, whole and contiguous.
    let first = seqs[0];
    assert!(first > 0);
    assert_eq!(seqs, (first..5_000).collect::<Vec<_>>());
}

#[test]
fn bad_durable_configs_are_refused_clearly() {
    let topic = |extra: &str| format!("[[topic]]\nname = \"t\"\n{extra}\n");
    for (text, says) in [
        (topic("durable = true"), "must be mode = \"backpressure\""),
        (
            topic("mode = \"backpressure\"\ndurable = true\nfsync = \"sometimes\""),
            "fsync \"sometimes\"",
        ),
        (
            topic("mode = \"backpressure\"\ndurable = true\nretain_age = \"7y\""),
            "retain_age",
        ),
        (
            topic("mode = \"backpressure\"\ndurable = true\nsegment_bytes = 10"),
            "segment_bytes",
        ),
        (topic("fsync = \"always\""), "add durable = true"),
    ] {
        let err = Config::parse(&text).unwrap_err().to_string();
        assert!(err.contains(says), "{text}: {err}");
    }

    // A journal directory that cannot be made: the broker does not start
    // (rather than run a durable topic unrecorded).
    let dir = TestDir::new("durable-bad-dir");
    std::fs::write(dir.path("file"), b"not a directory").unwrap();
    let opts = BrokerOptions {
        socket: dir.socket(),
        data_dir: dir.data(),
        config: config(&dir.path("file").join("journal"), ""),
        keeper: None,
    };
    let err = Broker::bind(opts)
        .err()
        .expect("a broker with no journal dir");
    assert!(err.to_string().contains("journal directory"), "{err}");
}
