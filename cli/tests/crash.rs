//! The crash proof of durable topics: a publisher streams a long run of
//! messages into a durable topic of a real `ringbus serve` process, the
//! broker is killed (-9) at a random point and restarted while the
//! publisher goes on; then the broker stops, everything in memory goes as
//! in a reboot (the publisher's ring, the keeper holding the rings: the
//! rings are memfds, so this is what losing `/dev/shm` amounts to), a
//! fresh broker starts, and the journal must hold every message whose
//! publish returned, intact and in order.
//!
//! `RINGBUS_CRASH_MESSAGES` sets the count (default 10 000 000 in release
//! builds, 1 000 000 in debug ones, where the broker is much slower);
//! `RINGBUS_CRASH_SEED` replays a run (the seed is printed).
//!
//! The check reads the journal's directories with [`JournalReader`] (the
//! test runs as the journal's owner); once a subscriber can start from
//! sequence 0 of a journal, [`read_back`] is the one function to switch.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ringbus::client::Client;
use ringbus::journal::JournalReader;

const TOPIC: &str = "d.crash";
const SIZE: usize = 24;

/// A message's payload: its number, a hash of it, and its length again,
/// so that a record that is whole but not this message's shows.
fn payload(seq: u64) -> [u8; SIZE] {
    let mut p = [0u8; SIZE];
    p[..8].copy_from_slice(&seq.to_le_bytes());
    p[8..16].copy_from_slice(&seq.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    p[16..].copy_from_slice(&(SIZE as u64).to_le_bytes());
    p
}

fn messages() -> u64 {
    let default = if cfg!(debug_assertions) {
        1_000_000
    } else {
        10_000_000
    };
    std::env::var("RINGBUS_CRASH_MESSAGES")
        .map(|v| v.parse().expect("RINGBUS_CRASH_MESSAGES: a count"))
        .unwrap_or(default)
}

/// xorshift64*: enough to pick a kill point and a pause.
struct Rng(u64);

impl Rng {
    fn seeded() -> (Rng, u64) {
        let seed = std::env::var("RINGBUS_CRASH_SEED")
            .map(|v| v.parse().expect("RINGBUS_CRASH_SEED: a number"))
            .unwrap_or_else(|_| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        (Rng(seed | 1), seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

fn write_config(dir: &TestDir, fsync: &str) -> std::path::PathBuf {
    let config = dir.path("ringbus.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\njournal_dir = \"{}\"\n\n[[topic]]\nname = \"{TOPIC}\"\nmode = \"backpressure\"\ncapacity = 4096\nmax_message_size = {SIZE}\ndurable = true\nfsync = \"{fsync}\"\n",
            dir.path("journal").display()
        ),
    )
    .unwrap();
    config
}

/// Kills the keeper of `dir`'s broker, if one runs, and waits until it is
/// gone.
fn kill_keeper(dir: &TestDir) {
    if let Some(pid) = keeper_of(&dir.data()) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid).unwrap(),
            rustix::process::Signal::KILL,
        );
    }
    eventually("the keeper to be gone", || {
        keeper_of(&dir.data()).is_none().then_some(())
    });
}

/// Every message the journal of `topic` holds, per ring, checked intact:
/// the sequence numbers in order.
fn read_back(journal_dir: &Path) -> Vec<Vec<u64>> {
    let mut rings: Vec<_> = std::fs::read_dir(journal_dir.join(TOPIC))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    rings.sort();
    rings
        .iter()
        .map(|ring| {
            let mut r = JournalReader::open(ring, SIZE as u32).unwrap();
            let mut seqs = Vec::new();
            while let Some(rec) = r.next_record().unwrap() {
                let seq = rec.meta.seq;
                assert_eq!(
                    rec.payload,
                    payload(seq),
                    "record {seq} is not as published"
                );
                assert_eq!(rec.meta.tag, seq, "record {seq}'s tag");
                seqs.push(seq);
            }
            assert_eq!(r.corrupt_skipped(), 0, "{}: damage", ring.display());
            seqs
        })
        .collect()
}

/// What a subscriber from sequence 0 of `topic` gets (from the journal,
/// its rings being gone), `n` messages, checked intact: per ring, the
/// sequence numbers in order.
fn replay(socket: &Path, n: u64) -> Vec<Vec<u64>> {
    use ringbus::client::SubscribeOptions;
    use ringbus::ring::Start;
    let client = Client::connect(socket).unwrap();
    let mut sub = client
        .subscriber(
            TOPIC,
            SubscribeOptions {
                start: Start::Sequence(0),
                ..SubscribeOptions::default()
            },
        )
        .unwrap();
    let mut rings = std::collections::BTreeMap::<u64, Vec<u64>>::new();
    let mut buf = [0u8; SIZE];
    for _ in 0..n {
        let d = sub.recv_timeout(&mut buf, PATIENCE).unwrap();
        let seq = d.info.seq;
        assert_eq!(
            buf[..d.info.len],
            payload(seq),
            "message {seq} is not as published"
        );
        assert_eq!(d.info.tag, seq, "message {seq}'s tag");
        rings.entry(d.ring_id).or_default().push(seq);
    }
    assert_eq!(sub.lagged_total(), 0, "a subscriber from 0 lost messages");
    rings.into_values().collect()
}

fn crash_and_reboot(fsync: &str) {
    let n = messages();
    let (mut rng, seed) = Rng::seeded();
    let kill_at = n / 10 + rng.below(n * 8 / 10);
    let pause = Duration::from_millis(rng.below(300));
    eprintln!(
        "crash test ({fsync}): {n} messages, seed {seed} (RINGBUS_CRASH_SEED), broker killed after {kill_at} published, down for {pause:?}"
    );
    let dir = TestDir::new("crash");
    let config = write_config(&dir, fsync);
    let mut broker = BrokerProc::start(&dir, Some(&config));
    let published = Arc::new(AtomicU64::new(0));
    let publisher = {
        let published = published.clone();
        let socket = dir.socket();
        std::thread::spawn(move || {
            let client = Client::connect(&socket).unwrap();
            let mut p = client.publisher_existing(TOPIC).unwrap();
            for seq in 0..n {
                p.publish(&payload(seq), seq).unwrap();
                // Release: the main thread kills the broker only once the
                // messages counted here were published.
                published.store(seq + 1, Ordering::Release);
            }
            // Kept until the journal has it all: the ring (a memfd) goes
            // with its last holder.
            (client, p)
        })
    };
    // No deadline (a long run in a debug build takes minutes), but the
    // publisher must keep moving.
    let mut last = (0, std::time::Instant::now());
    while published.load(Ordering::Acquire) < kill_at {
        assert!(!publisher.is_finished(), "the publisher ended early");
        let now = published.load(Ordering::Acquire);
        if now != last.0 {
            last = (now, std::time::Instant::now());
        }
        assert!(
            last.1.elapsed() < PATIENCE,
            "seed {seed}: the publisher is stuck at {now}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    broker.kill9();
    std::thread::sleep(pause);
    let at_restart = published.load(Ordering::Acquire);
    let mut broker = BrokerProc::start(&dir, Some(&config));
    let (client, p) = publisher.join().expect("the publisher panicked");
    eprintln!("crash test: {at_restart} published when the broker came back");
    // A graceful stop: the recorder drains the ring into the journal
    // before the broker exits.
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&broker.child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = broker.child.wait().unwrap();
    assert!(status.success(), "broker: {status}");
    // The reboot: the publisher's ring and the keeper go.
    drop(p);
    drop(client);
    kill_keeper(&dir);
    let mut broker = BrokerProc::start(&dir, Some(&config));
    let rings = read_back(&dir.path("journal"));
    // And what a subscriber from sequence 0 reads through the broker:
    // the same, from the journal (replay-merge with no live ring).
    assert_eq!(replay(&dir.socket(), n), rings, "seed {seed}: replayed");
    broker.kill9();
    kill_keeper(&dir);
    // One ring (the publisher's, kept across the crash by the keeper), and
    // every message whose publish returned: with `fsync = "always"` each
    // was on disk before the recorder let the ring reuse its slot; with an
    // interval, the host did not crash, so what the broker wrote is in the
    // page cache even where it was not yet synced.
    assert_eq!(rings.len(), 1, "one ring's journal");
    let seqs = &rings[0];
    assert_eq!(seqs.len() as u64, n, "seed {seed}: messages journaled");
    assert!(
        seqs.iter().copied().eq(0..n),
        "seed {seed}: not every message, in order"
    );
}

#[test]
fn a_durable_topic_loses_nothing_to_a_kill_and_a_reboot_fsync_always() {
    crash_and_reboot("always");
}

#[test]
fn a_durable_topic_loses_nothing_to_a_kill_and_a_reboot_fsync_interval() {
    crash_and_reboot("interval:10ms");
}
