//! Consumer groups across processes: members in processes of their own
//! (this test binary re-run as a child), each mapping the group's claim
//! table, the ring and its port; the broker and the publisher in the
//! parent. Every message is delivered exactly once (checked by sequence)
//! and spread over all members.

mod common;

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use common::*;
use libtest_mimic::{Arguments, Trial};
use ringbus::broker::Config;
use ringbus::client::{Client, GroupOptions, Mode, TopicConfig};
use ringbus::ring::RecvError;

/// Set in a child process: the directory of the test (socket, results).
const CHILD_DIR: &str = "RINGBUS_TEST_GROUP_DIR";
/// Set in a child process: its index.
const CHILD_INDEX: &str = "RINGBUS_TEST_GROUP_INDEX";
/// Set in a child process that logs each delivery as it goes (it may be
/// killed at any moment).
const CHILD_LOGS: &str = "RINGBUS_TEST_GROUP_LOGS";
const MEMBERS: usize = 3;

/// Messages: a million (about a second in a debug build).
fn messages() -> u64 {
    1_000_000
}

/// A member: joins group "workers" of "jobs", says so (`ready.N`), reads
/// until the ring ends, and writes the sequences it got (`got.N`, u64 LE).
fn child_member(dir: &Path, index: &str) {
    let client = Client::connect(dir.join("ringbus.sock")).unwrap();
    let mut m = client
        .subscriber_in_group(
            "jobs",
            "workers",
            GroupOptions {
                batch: 16,
                ..Default::default()
            },
        )
        .unwrap();
    std::fs::write(dir.join(format!("ready.{index}")), b"").unwrap();
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    let deadline = Instant::now() + PATIENCE * 4;
    loop {
        assert!(Instant::now() < deadline, "member {index} timed out");
        match m.recv_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(d) => {
                let seq = d.delivery.info.seq;
                assert_eq!(&buf[..8], &seq.to_le_bytes(), "payload of {seq}");
                got.extend_from_slice(&seq.to_le_bytes());
            }
            Err(RecvError::EndOfStream) => break,
            Err(RecvError::Timeout) => {}
            Err(e) => panic!("member {index}: {e}"),
        }
    }
    std::fs::write(dir.join(format!("got.{index}")), got).unwrap();
}

/// A member that writes each delivery to `log.N` at once (seq, then
/// `redelivered << 32 | deliveries`, u64 LE each): what it delivered
/// before a kill -9 is on record.
fn child_logging_member(dir: &Path, index: &str) {
    use std::io::Write;
    let client = Client::connect(dir.join("ringbus.sock")).unwrap();
    let mut m = client
        .subscriber_in_group(
            "jobs",
            "workers",
            GroupOptions {
                batch: 16,
                ..Default::default()
            },
        )
        .unwrap();
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("log.{index}")))
        .unwrap();
    std::fs::write(dir.join(format!("ready.{index}")), b"").unwrap();
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + PATIENCE * 4;
    loop {
        assert!(Instant::now() < deadline, "member {index} timed out");
        match m.recv_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(d) => {
                let seq = d.delivery.info.seq;
                assert_eq!(&buf[..8], &seq.to_le_bytes(), "payload of {seq}");
                let flags = u64::from(d.redelivered) << 32 | u64::from(d.deliveries);
                let mut rec = [0u8; 16];
                rec[..8].copy_from_slice(&seq.to_le_bytes());
                rec[8..].copy_from_slice(&flags.to_le_bytes());
                // One write per delivery, before the next receive (which
                // acknowledges it): on record before it can be lost.
                log.write_all(&rec).unwrap();
                // Some work: a kill finds the member holding messages.
                if seq % 4 == 0 {
                    std::thread::sleep(Duration::from_micros(20));
                }
            }
            Err(RecvError::EndOfStream) => break,
            Err(RecvError::Timeout) => {}
            Err(e) => panic!("member {index}: {e}"),
        }
    }
}

/// kill -9 one of three members every `every` messages and start a
/// replacement: every message is delivered at least once; a message
/// delivered more than once was delivered unflagged at most once (its
/// first member's), every other delivery says `redelivered`, with a
/// delivery count above 1.
fn killed_members_leave_their_unacknowledged_messages_to_the_others() {
    const N: u64 = 1_000_000;
    const EVERY: u64 = 40_000;
    const LAST_KILL: u64 = N - 4 * EVERY;
    let dir = TestDir::new("group-kill");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut p = client
        .publisher(
            "jobs",
            TopicConfig {
                max_message_size: 64,
                capacity: 256,
                mode: Mode::Backpressure,
                max_subscribers: 16,
            },
        )
        .unwrap();
    let spawn = |i: usize| {
        let c = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_DIR, &dir.0)
            .env(CHILD_INDEX, i.to_string())
            .env(CHILD_LOGS, "1")
            .spawn()
            .unwrap();
        eventually("a member joined", || {
            dir.path(&format!("ready.{i}")).exists().then_some(())
        });
        c
    };
    let mut next_index = 0;
    let mut live: Vec<(usize, std::process::Child)> = (0..MEMBERS)
        .map(|_| {
            next_index += 1;
            (next_index - 1, spawn(next_index - 1))
        })
        .collect();
    let mut kills = 0;
    for i in 0..N {
        if i > 0 && i % EVERY == 0 && i <= LAST_KILL {
            let (_, mut victim) = live.remove(kills % live.len());
            victim.kill().unwrap();
            victim.wait().unwrap();
            kills += 1;
            next_index += 1;
            live.push((next_index - 1, spawn(next_index - 1)));
        }
        p.publish_timeout(&i.to_le_bytes(), i, PATIENCE)
            .unwrap_or_else(|e| panic!("message {i}: {e} (the group stalled)"));
    }
    drop(p);
    for (_, c) in &mut live {
        let st = c.wait().unwrap();
        assert!(st.success(), "a member failed: {st:?}");
    }
    let mut plain = vec![0u32; N as usize];
    let mut flagged = vec![0u32; N as usize];
    for i in 0..next_index {
        let bytes = std::fs::read(dir.path(&format!("log.{i}"))).unwrap_or_default();
        for rec in bytes.chunks_exact(16) {
            let seq = u64::from_le_bytes(rec[..8].try_into().unwrap());
            let flags = u64::from_le_bytes(rec[8..].try_into().unwrap());
            assert!(seq < N, "sequence {seq} was never published");
            let (redelivered, deliveries) = (flags >> 32 == 1, flags as u32);
            if redelivered {
                assert!(
                    deliveries >= 2,
                    "message {seq} redelivered with count {deliveries}"
                );
                flagged[seq as usize] += 1;
            } else {
                assert_eq!(deliveries, 1, "message {seq}");
                plain[seq as usize] += 1;
            }
        }
    }
    let missing = (0..N as usize)
        .filter(|&s| plain[s] + flagged[s] == 0)
        .count();
    let twice_unflagged = plain.iter().filter(|&&c| c > 1).count();
    let redelivered = flagged.iter().filter(|&&c| c > 0).count();
    let lost: Vec<usize> = (0..N as usize)
        .filter(|&s| plain[s] + flagged[s] == 0)
        .take(20)
        .collect();
    assert_eq!(
        (missing, twice_unflagged),
        (0, 0),
        "{kills} kills; lost: {lost:?}"
    );
    assert!(kills >= 20, "only {kills} kills");
    // The kills found members holding messages (they do some work per
    // message): the hand-over ran.
    assert!(redelivered > 0, "no message was redelivered");
    eprintln!("{N} messages, {kills} members killed: {redelivered} messages redelivered (flagged)");
}

/// The only member is killed holding messages; a replacement started
/// after its death gets them (the group and its orphans outlive their
/// last member for a while), flagged.
fn a_replacement_of_the_only_member_gets_what_it_left() {
    const N: u64 = 20_000;
    let dir = TestDir::new("group-solo");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut p = client
        .publisher(
            "jobs",
            TopicConfig {
                max_message_size: 64,
                capacity: 256,
                mode: Mode::Backpressure,
                max_subscribers: 16,
            },
        )
        .unwrap();
    let spawn = |i: usize| {
        let c = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_DIR, &dir.0)
            .env(CHILD_INDEX, i.to_string())
            .env(CHILD_LOGS, "1")
            .spawn()
            .unwrap();
        eventually("a member joined", || {
            dir.path(&format!("ready.{i}")).exists().then_some(())
        });
        c
    };
    let mut first = spawn(0);
    for i in 0..N / 2 {
        p.publish_timeout(&i.to_le_bytes(), i, PATIENCE).unwrap();
    }
    first.kill().unwrap();
    first.wait().unwrap();
    // Its death seen (its ports orphaned or removed) before the
    // replacement joins: the replacement must find the orphans.
    std::thread::sleep(Duration::from_millis(200));
    let mut second = spawn(1);
    for i in N / 2..N {
        p.publish_timeout(&i.to_le_bytes(), i, PATIENCE)
            .unwrap_or_else(|e| panic!("message {i}: {e}"));
    }
    drop(p);
    assert!(second.wait().unwrap().success());
    let mut plain = vec![0u32; N as usize];
    let mut flagged = vec![0u32; N as usize];
    for i in 0..2 {
        let bytes = std::fs::read(dir.path(&format!("log.{i}"))).unwrap_or_default();
        for rec in bytes.chunks_exact(16) {
            let seq = u64::from_le_bytes(rec[..8].try_into().unwrap()) as usize;
            let flags = u64::from_le_bytes(rec[8..].try_into().unwrap());
            if flags >> 32 == 1 {
                flagged[seq] += 1;
            } else {
                plain[seq] += 1;
            }
        }
    }
    let missing: Vec<usize> = (0..N as usize)
        .filter(|&s| plain[s] + flagged[s] == 0)
        .take(10)
        .collect();
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(
        plain.iter().all(|&c| c <= 1),
        "a message delivered twice unflagged"
    );
    eprintln!(
        "solo member killed at {}: {} messages redelivered to its replacement",
        N / 2,
        flagged.iter().filter(|&&c| c > 0).count()
    );
}

fn three_member_processes_get_each_message_exactly_once() {
    let n = messages();
    let dir = TestDir::new("group-procs");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut p = client
        .publisher(
            "jobs",
            TopicConfig {
                max_message_size: 64,
                capacity: 1024,
                mode: Mode::Backpressure,
                max_subscribers: 8,
            },
        )
        .unwrap();
    let mut children: Vec<_> = (0..MEMBERS)
        .map(|i| {
            Command::new(std::env::current_exe().unwrap())
                .env(CHILD_DIR, &dir.0)
                .env(CHILD_INDEX, i.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    eventually("every member joined", || {
        (0..MEMBERS)
            .all(|i| dir.path(&format!("ready.{i}")).exists())
            .then_some(())
    });
    for i in 0..n {
        p.publish(&i.to_le_bytes(), i).unwrap();
    }
    drop(p);
    for c in &mut children {
        let st = c.wait().unwrap();
        assert!(st.success(), "a member failed: {st:?}");
    }
    let mut seen = vec![0u8; n as usize];
    let mut per = Vec::new();
    for i in 0..MEMBERS {
        let bytes = std::fs::read(dir.path(&format!("got.{i}"))).unwrap();
        per.push(bytes.len() / 8);
        for c in bytes.chunks_exact(8) {
            let seq = u64::from_le_bytes(c.try_into().unwrap());
            assert!(seq < n, "sequence {seq} was never published");
            seen[seq as usize] += 1;
        }
    }
    let twice = seen.iter().filter(|&&c| c > 1).count();
    let missing = seen.iter().filter(|&&c| c == 0).count();
    assert_eq!((missing, twice), (0, 0), "per member: {per:?}");
    assert!(per.iter().all(|&k| k > 0), "not spread over all: {per:?}");
    eprintln!("{n} messages over {MEMBERS} member processes: {per:?}");
}

fn main() -> ExitCode {
    if let Ok(dir) = std::env::var(CHILD_DIR) {
        let index = std::env::var(CHILD_INDEX).unwrap();
        if std::env::var(CHILD_LOGS).is_ok() {
            child_logging_member(Path::new(&dir), &index);
        } else {
            child_member(Path::new(&dir), &index);
        }
        return ExitCode::SUCCESS;
    }
    let args = Arguments::from_args();
    let tests = vec![
        Trial::test(
            "three_member_processes_get_each_message_exactly_once",
            || {
                three_member_processes_get_each_message_exactly_once();
                Ok(())
            },
        ),
        Trial::test("a_replacement_of_the_only_member_gets_what_it_left", || {
            a_replacement_of_the_only_member_gets_what_it_left();
            Ok(())
        }),
        Trial::test(
            "killed_members_leave_their_unacknowledged_messages_to_the_others",
            || {
                killed_members_leave_their_unacknowledged_messages_to_the_others();
                Ok(())
            },
        ),
    ];
    libtest_mimic::run(&args, tests).exit_code()
}
