//! A pattern subscription across processes: `ringbus sub 'p.>'`, run as
//! uid 65534, reads 50 topics published by 3 publisher processes (this
//! test binary run again in the publisher's role), 20 of them created
//! before it subscribed and 30 after; every message arrives intact and in
//! order per ring, each under its topic's name. Topics the ACL does not
//! let uid 65534 read match the pattern too, and never appear: not in its
//! output, not in its `ringbus topics`.
//!
//! `harness = false`: `main` plays a publisher when [`ROLE`] says so.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;

use common::*;
use libtest_mimic::{Arguments, Trial};
use ringbus::client::{Client, Mode, TopicConfig};

/// The environment variable that makes this binary a publisher; its
/// arguments: socket, `wait` (publish a first half, say `ready`, wait for
/// a line on stdin, publish the second) or `now` (both halves at once),
/// then the topics. It leaves when its stdin closes (a topic nobody uses
/// any more is forgotten, and the test lists topics last).
const ROLE: &str = "RINGBUS_PATTERN_ROLE";
/// Messages per topic and half.
const HALF: u64 = 100;
const OPEN: usize = 50;

/// The payload of message `i` of `topic`: names both, plus a check word.
fn payload(topic: &str, i: u64) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in topic.bytes().chain(i.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{topic}/{i}/{h:016x}")
}

/// Back-pressure for even topics, overwrite (holding every message) for
/// odd ones: no loss either way.
fn config(k: usize) -> TopicConfig {
    TopicConfig {
        max_message_size: 128,
        capacity: 256,
        mode: if k % 2 == 0 {
            Mode::Backpressure
        } else {
            Mode::Overwrite
        },
        max_subscribers: 4,
    }
}

fn topic_index(topic: &str) -> usize {
    topic.rsplit('.').next().unwrap().parse().unwrap()
}

fn publisher_role() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let client = Client::connect(&args[0]).expect("connect");
    let wait = args[1] == "wait";
    let topics = &args[2..];
    let mut pubs: Vec<_> = topics
        .iter()
        .map(|t| (t, client.publisher(t, config(topic_index(t))).unwrap()))
        .collect();
    for half in 0..2 {
        if half == 1 && wait {
            println!("ready");
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
        }
        for i in half * HALF..(half + 1) * HALF {
            for (t, p) in &mut pubs {
                p.publish_timeout(payload(t, i).as_bytes(), i, PATIENCE)
                    .unwrap();
            }
        }
    }
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink()).unwrap();
}

fn publisher(socket: &Path, mode: &str, topics: &[String]) -> KillOnDrop {
    KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .env(ROLE, "publisher")
            .arg(socket)
            .arg(mode)
            .args(topics)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

fn finish(p: &mut Child) {
    drop(p.stdin.take());
    let status = p.wait().unwrap();
    assert!(status.success(), "a publisher failed: {status}");
}

fn a_pattern_subscriber_follows_topics_of_three_processes_within_its_acl() {
    assert!(
        is_root(),
        "this test runs a subscriber as uid 65534 and so needs root (CI runs as root)"
    );
    let dir = world_reachable_dir("pattern-mp");
    let bin = dir.path("ringbus");
    std::fs::copy(BIN, &bin).unwrap();
    let conf = dir.path("broker.toml");
    std::fs::write(
        &conf,
        "[[acl]]\ntopic = \"p.open.>\"\nsubscribe = { uids = [65534] }\n",
    )
    .unwrap();
    let _broker = BrokerProc::start(&dir, Some(&conf));
    let socket = dir.socket();
    let client = Client::connect(&socket).unwrap();
    let open = |r: std::ops::Range<usize>| r.map(|k| format!("p.open.{k}")).collect::<Vec<_>>();
    let secret = |r: std::ops::Range<usize>| r.map(|k| format!("p.secret.{k}")).collect::<Vec<_>>();

    // Before the subscriber: 20 readable topics and 3 it may not read,
    // half of their messages published.
    let mut first = publisher(&socket, "wait", &[open(0..20), secret(0..3)].concat());
    let mut ready = String::new();
    BufReader::new(first.0.stdout.as_mut().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready, "ready\n");

    let total = OPEN as u64 * 2 * HALF;
    let mut sub = KillOnDrop(
        Command::new(&bin)
            .env_remove("RINGBUS_SOCKET")
            .arg("--socket")
            .arg(&socket)
            .args(["sub", "p.>", "--from", "earliest", "--json"])
            .arg("--count")
            .arg(total.to_string())
            .current_dir("/")
            .uid(65534)
            .gid(65534)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    eventually("the pattern subscriber on the first topics", || {
        let t = client.topics().ok()?;
        let subscribed = t
            .iter()
            .filter(|t| t.name.starts_with("p.open.") && t.subscribers == 1)
            .count();
        (subscribed == 20).then_some(())
    });
    // Lines come through a thread, so that a stall shows as a failure.
    let (tx, lines) = channel();
    let out = sub.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });

    // The second half of the first topics, and 30 topics created after
    // the subscription (plus 3 more it may not read) by two processes.
    writeln!(first.0.stdin.as_mut().unwrap(), "go").unwrap();
    let mut second = publisher(&socket, "now", &[open(20..35), secret(3..5)].concat());
    let mut third = publisher(&socket, "now", &[open(35..50), secret(5..6)].concat());

    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    let mut rings: BTreeMap<String, u64> = BTreeMap::new();
    let mut n = 0;
    while n < total {
        let line = lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("stalled after {n} of {total} messages: {next:?}"));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(event) = v["event"].as_str() {
            // A ring that ended; never a loss.
            assert_eq!(event, "end", "{line}");
            continue;
        }
        n += 1;
        let topic = v["topic"].as_str().unwrap_or_else(|| panic!("{line}"));
        assert!(
            topic.starts_with("p.open."),
            "a topic it may not read: {line}"
        );
        let want = next.entry(topic.to_string()).or_insert(0);
        // One ring per topic: its sequence numbers are the message numbers.
        assert_eq!(v["seq"].as_u64(), Some(*want), "{line}");
        assert_eq!(v["tag"].as_u64(), Some(*want), "{line}");
        assert_eq!(
            v["text"].as_str(),
            Some(payload(topic, *want).as_str()),
            "{line}"
        );
        let ring = v["ring"].as_u64().unwrap();
        assert_eq!(
            *rings.entry(topic.to_string()).or_insert(ring),
            ring,
            "{line}"
        );
        *want += 1;
    }
    assert!(sub.0.wait().unwrap().success());
    while let Ok(line) = lines.recv() {
        assert!(
            line.contains("\"event\":\"end\""),
            "more than --count: {line}"
        );
    }
    assert_eq!(next.len(), OPEN);
    assert!(next.values().all(|&n| n == 2 * HALF), "{next:?}");
    // Its topic list holds what it may read, and nothing else; the
    // broker's owner sees every topic.
    let listed = |cmd: &mut Command| -> Vec<String> {
        let out = cmd.args(["topics", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    let mut nobody = Command::new(&bin);
    nobody
        .env_remove("RINGBUS_SOCKET")
        .arg("--socket")
        .arg(&socket)
        .current_dir("/")
        .uid(65534)
        .gid(65534);
    let theirs = listed(&mut nobody);
    assert_eq!(theirs.len(), OPEN, "{theirs:?}");
    assert!(
        theirs.iter().all(|t| t.starts_with("p.open.")),
        "{theirs:?}"
    );
    let all = listed(&mut ringbus(&socket));
    assert_eq!(all.len(), OPEN + 6, "{all:?}");
    for p in [&mut first, &mut second, &mut third] {
        finish(&mut p.0);
    }
}

fn main() {
    if std::env::var(ROLE).is_ok() {
        publisher_role();
        return;
    }
    let args = Arguments::from_args();
    let trials = vec![Trial::test(
        "a_pattern_subscriber_follows_topics_of_three_processes_within_its_acl",
        || {
            a_pattern_subscriber_follows_topics_of_three_processes_within_its_acl();
            Ok(())
        },
    )];
    libtest_mimic::run(&args, trials).exit();
}
