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

/// A tmpfs mounted for a test (which must run as root, as CI does), and
/// unmounted however the test ends.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, options: &str) -> Mount {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test mounts a small tmpfs to fill: it needs root (CI runs it as root)"
        );
        std::fs::create_dir_all(dir).unwrap();
        mount(&["-t", "tmpfs", "-o", options, "tmpfs"], dir);
        Mount(dir.to_owned())
    }

    fn remount(&self, options: &str) {
        mount(&["-o", &format!("remount,{options}")], &self.0);
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

fn mount(args: &[&str], dir: &Path) {
    let out = std::process::Command::new("mount")
        .args(args)
        .arg(dir)
        .output()
        .expect("running mount");
    assert!(
        out.status.success(),
        "mount {args:?} {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The durable topic's journal counters as `ListTopics` reports them.
fn counters(client: &Client) -> ringbus::control::JournalCounters {
    client
        .topics()
        .unwrap()
        .into_iter()
        .find(|t| t.name == "d.orders")
        .and_then(|t| t.journal)
        .expect("d.orders listed with its journal counters")
}

#[test]
fn a_journal_dir_that_is_not_writable_stops_the_broker_clearly() {
    let dir = TestDir::new("durable-ro");
    let ro = Mount::tmpfs(&dir.path("ro"), "size=1m,mode=0700");
    ro.remount("ro");
    let opts = BrokerOptions {
        socket: dir.socket(),
        data_dir: dir.data(),
        config: config(&dir.path("ro"), ""),
        keeper: None,
    };
    let err = Broker::bind(opts)
        .err()
        .expect("a broker with a read-only journal dir");
    let err = err.to_string();
    assert!(
        err.contains("is not writable") && err.contains("Read-only file system"),
        "{err}"
    );
}

#[test]
fn a_full_disk_holds_the_publisher_back_and_loses_nothing() {
    let dir = TestDir::new("durable-full");
    let journal = dir.path("journal");
    // About 11 000 records of 88 bytes fit in a megabyte.
    let disk = Mount::tmpfs(&journal, "size=1m,mode=0700");
    const N: u64 = 30_000;
    let _broker = BrokerThread::start(&dir, config(&journal, ""));
    let client = Client::connect(dir.socket()).unwrap();
    let published = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let publisher = {
        let (socket, published) = (dir.socket(), published.clone());
        std::thread::spawn(move || {
            let client = Client::connect(&socket).unwrap();
            let mut publisher = client.publisher_existing("d.orders").unwrap();
            for i in 0..N {
                publisher.publish(&generated(i, 40), i % 7).unwrap();
                published.store(i + 1, std::sync::atomic::Ordering::Relaxed);
            }
        })
    };
    let full = eventually("the disk to fill", || {
        let c = counters(&client);
        (c.errors > 0).then_some(c)
    });
    // Held back: a ring (64 messages) ahead of the journal at most, and
    // still short of the end while the disk stays full.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let c = counters(&client);
    let sent = published.load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent < N, "the publisher was not held back: {sent}");
    assert!(sent <= c.recorded + 64, "{sent} published, {c:?}");
    assert!(c.errors >= full.errors, "{c:?}");
    assert_eq!(c.lost, 0, "{c:?}");
    // What is journaled is whole and contiguous.
    let rings = ring_journals(&journal, "d.orders");
    assert_eq!(rings.len(), 1);
    let before = journaled(&rings[0]);
    assert!(!before.is_empty());
    assert_eq!(before, (0..before.len() as u64).collect::<Vec<_>>());
    // Room again: recording resumes where it stopped, with no gap.
    disk.remount("size=8m");
    publisher.join().unwrap();
    eventually("every message journaled", || {
        (counters(&client).recorded == N).then_some(())
    });
    assert_eq!(journaled(&rings[0]), (0..N).collect::<Vec<_>>());
    assert_eq!(counters(&client).lost, 0);
}
