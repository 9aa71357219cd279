//! `ringbus record` and `ringbus replay`: three topics recorded by pattern
//! (one of them created while recording) into an MCAP file that the `mcap`
//! crate's own reader reads back; the file replayed into fresh topics,
//! every message compared; a recording stopped by SIGINT is a whole file;
//! files that are not MCAP are refused.

mod common;

use std::collections::BTreeMap;
use std::process::Stdio;

use common::*;
use ringbus::client::{Client, Mode, SubscribeOptions, Subscriber, TopicConfig};
use ringbus::ring::{RecvError, Start};

fn config(mode: Mode) -> TopicConfig {
    TopicConfig {
        max_message_size: 2048,
        capacity: 1024,
        mode,
        max_subscribers: 4,
    }
}

/// Message `i` of topic `k`: its size varies from 0 to 2000 bytes.
fn message(k: usize, i: u64) -> (Vec<u8>, u64) {
    let len = ((i * 37 + k as u64 * 101) % 2001) as usize;
    (generated_any(i * 10 + k as u64, len), (k as u64) << 32 | i)
}

/// `len` bytes derived from `seed` (any length, 0 included).
fn generated_any(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (seed.wrapping_mul(31).wrapping_add(j as u64 * 7) % 251) as u8)
        .collect()
}

const PER_TOPIC: u64 = 300;
const TOPICS: [&str; 3] = ["rec.a", "rec.b.x", "rec.c"];

/// Everything `sub` receives until `n` messages arrived: per topic name,
/// (payload, tag) in order.
fn drain(sub: &mut Subscriber, n: u64) -> BTreeMap<String, Vec<(Vec<u8>, u64)>> {
    let mut got: BTreeMap<String, Vec<(Vec<u8>, u64)>> = BTreeMap::new();
    let mut buf = vec![0u8; 4096];
    let mut count = 0;
    let end = std::time::Instant::now() + 4 * PATIENCE;
    while count < n {
        assert!(
            std::time::Instant::now() < end,
            "only {count} of {n} messages arrived"
        );
        match sub.recv_timeout(&mut buf, PATIENCE) {
            Ok(d) => {
                let name = sub.topic_name(d.topic).unwrap().to_string();
                got.entry(name)
                    .or_default()
                    .push((buf[..d.info.len].to_vec(), d.info.tag));
                count += 1;
            }
            Err(RecvError::EndOfStream) => {}
            Err(e) => panic!("after {count} of {n}: {e}"),
        }
    }
    got
}

#[test]
fn a_recording_reads_back_and_replays_every_message() {
    let dir = TestDir::new("mcap-rt");
    let _broker = BrokerProc::start(&dir, None);
    let client = Client::connect(dir.socket()).unwrap();
    let file = dir.path("rec.mcap");
    let total = PER_TOPIC * TOPICS.len() as u64;

    // Two topics exist before the recording, one appears during it.
    let mut pubs = vec![
        client
            .publisher(TOPICS[0], config(Mode::Backpressure))
            .unwrap(),
        client
            .publisher(TOPICS[1], config(Mode::Overwrite))
            .unwrap(),
    ];
    let mut rec = KillOnDrop(
        ringbus(&dir.socket())
            // The duration only bounds a recording that misses messages.
            .args(["record", "rec.>", "--count", &total.to_string()])
            .args(["--duration", "120", "-o"])
            .arg(&file)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    eventually("the recorder on both topics", || {
        let t = client.topics().ok()?;
        (t.iter().filter(|t| t.subscribers == 1).count() == 2).then_some(())
    });
    pubs.push(
        client
            .publisher(TOPICS[2], config(Mode::Backpressure))
            .unwrap(),
    );
    for p in &mut pubs {
        p.set_timestamps(true);
    }
    for i in 0..PER_TOPIC {
        for (k, p) in pubs.iter_mut().enumerate() {
            let (payload, tag) = message(k, i);
            p.publish_timeout(&payload, tag, PATIENCE).unwrap();
        }
    }
    let out = rec.0.wait_with_output_ref();
    assert!(out.0.success(), "{}", out.1);
    assert!(
        out.1.contains(&format!("recorded {total} messages")),
        "{}",
        out.1
    );

    // The mcap crate's own reader: three channels with their topics and
    // configs, every message framed with its sequence number and tag.
    let bytes = std::fs::read(&file).unwrap();
    let summary = mcap::Summary::read(&bytes)
        .unwrap()
        .expect("a summary section");
    assert_eq!(summary.channels.len(), 3);
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for m in mcap::MessageStream::new(&bytes).unwrap() {
        let m = m.unwrap();
        let k = TOPICS.iter().position(|t| *t == m.channel.topic).unwrap();
        assert_eq!(m.channel.message_encoding, "ringbus.framed");
        assert_eq!(m.channel.metadata["ringbus.topic"], TOPICS[k]);
        let mode = if k == 1 { "overwrite" } else { "backpressure" };
        assert_eq!(m.channel.metadata["ringbus.mode"], mode);
        assert_eq!(m.channel.metadata["ringbus.max_message_size"], "2048");
        let i = seen.entry(TOPICS[k].to_string()).or_insert(0);
        let seq = u64::from_le_bytes(m.data[..8].try_into().unwrap());
        let tag = u64::from_le_bytes(m.data[8..16].try_into().unwrap());
        assert_eq!(seq, *i);
        assert_eq!(m.sequence, *i as u32);
        let (payload, want_tag) = message(k, *i);
        assert_eq!(tag, want_tag);
        assert_eq!(&m.data[16..], &payload[..]);
        // Publish timestamps, on the wall clock.
        assert!(m.log_time > 1_600_000_000 * 1_000_000_000, "{}", m.log_time);
        *i += 1;
    }
    assert!(seen.values().all(|&n| n == PER_TOPIC), "{seen:?}");

    // Replayed into fresh topics: everything, in order, with its tag.
    let mut again = client
        .subscriber(
            "again.>",
            SubscribeOptions {
                start: Start::Earliest,
                ..Default::default()
            },
        )
        .unwrap();
    let out = ringbus(&dir.socket())
        .args(["replay", "--max", "--prefix", "again."])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = drain(&mut again, total);
    for (k, t) in TOPICS.iter().enumerate() {
        let want: Vec<(Vec<u8>, u64)> = (0..PER_TOPIC).map(|i| message(k, i)).collect();
        assert!(got[&format!("again.{t}")] == want, "topic {t}");
    }
    let topics = client.topics().unwrap();
    let replayed = topics.iter().find(|t| t.name == "again.rec.b.x").unwrap();
    assert_eq!(replayed.config.unwrap().mode, Mode::Overwrite);

    // Only the topics asked for.
    let mut only = client
        .subscriber(
            "only.>",
            SubscribeOptions {
                start: Start::Earliest,
                ..Default::default()
            },
        )
        .unwrap();
    let out = ringbus(&dir.socket())
        .args([
            "replay", "--max", "--prefix", "only.", "--topics", "rec.b.*",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = drain(&mut only, PER_TOPIC);
    assert_eq!(got.keys().collect::<Vec<_>>(), ["only.rec.b.x"]);
    assert!(client
        .topics()
        .unwrap()
        .iter()
        .all(|t| t.name != "only.rec.a"));
}

#[test]
fn a_recording_stopped_by_sigint_is_a_whole_file() {
    let dir = TestDir::new("mcap-int");
    let _broker = BrokerProc::start(&dir, None);
    let client = Client::connect(dir.socket()).unwrap();
    let file = dir.path("int.mcap");
    let mut rec = KillOnDrop(
        ringbus(&dir.socket())
            .args([
                "record",
                "int.t",
                "--layout",
                "raw",
                "--encoding",
                "json",
                "-o",
            ])
            .arg(&file)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    eventually("the recorder", || {
        let t = client.topics().ok()?;
        (t.iter().find(|t| t.name == "int.t")?.subscribers == 1).then_some(())
    });
    let mut p = client
        .publisher("int.t", config(Mode::Backpressure))
        .unwrap();
    for i in 0..50u64 {
        p.publish_timeout(format!("{{\"i\":{i}}}").as_bytes(), i, PATIENCE)
            .unwrap();
    }
    eventually("the recorder to have read everything", || {
        let t = client.topics().ok()?;
        (t.iter().find(|t| t.name == "int.t")?.rings[0].lag() == Some(0)).then_some(())
    });
    let pid = rustix::process::Pid::from_raw(rec.0.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = rec.0.wait_with_output_ref();
    assert!(out.0.success(), "{}", out.1);
    let bytes = std::fs::read(&file).unwrap();
    let messages: Vec<_> = mcap::MessageStream::new(&bytes)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(messages.len(), 50);
    for (i, m) in messages.iter().enumerate() {
        // Raw: the payload alone, under the encoding given.
        assert_eq!(m.channel.message_encoding, "json");
        assert_eq!(&m.data[..], format!("{{\"i\":{i}}}").as_bytes());
    }
    assert!(mcap::Summary::read(&bytes).unwrap().is_some());
}

#[test]
fn bad_files_and_arguments_are_clear_errors() {
    let dir = TestDir::new("mcap-bad");
    let _broker = BrokerProc::start(&dir, None);
    let junk = dir.path("junk.mcap");
    std::fs::write(&junk, b"this is not an mcap file at all").unwrap();
    let empty = dir.path("empty.mcap");
    std::fs::write(&empty, b"").unwrap();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["replay".into(), junk.display().to_string()],
            "is not a readable MCAP file",
        ),
        (
            vec!["replay".into(), empty.display().to_string()],
            "is not a readable MCAP file",
        ),
        (
            vec!["replay".into(), dir.path("none.mcap").display().to_string()],
            "cannot read",
        ),
        (
            vec![
                "replay".into(),
                "--rate".into(),
                "0".into(),
                junk.display().to_string(),
            ],
            "--rate must be a positive number",
        ),
        (
            vec![
                "replay".into(),
                "--topics".into(),
                "a..b".into(),
                junk.display().to_string(),
            ],
            "bad --topics",
        ),
        (
            vec![
                "record".into(),
                "x".into(),
                "-o".into(),
                "/nonexistent/dir/f.mcap".into(),
            ],
            "cannot create",
        ),
        (
            vec![
                "record".into(),
                "x".into(),
                "--duration".into(),
                "0".into(),
                "-o".into(),
                junk.display().to_string(),
            ],
            "--duration must be a positive number",
        ),
        (
            vec![
                "record".into(),
                "x".into(),
                "--encoding".into(),
                "json".into(),
                "-o".into(),
                junk.display().to_string(),
            ],
            "with --layout raw",
        ),
    ];
    for (args, want) in cases {
        let out = ringbus(&dir.socket()).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // A truncated recording: the messages before the cut, or a clear
    // error; never a panic.
    let client = Client::connect(dir.socket()).unwrap();
    let file = dir.path("cut.mcap");
    let mut rec = KillOnDrop(
        ringbus(&dir.socket())
            .args(["record", "cut.t", "--count", "20", "-o"])
            .arg(&file)
            .spawn()
            .unwrap(),
    );
    eventually("the recorder", || {
        let t = client.topics().ok()?;
        (t.iter().find(|t| t.name == "cut.t")?.subscribers == 1).then_some(())
    });
    let mut p = client
        .publisher("cut.t", config(Mode::Backpressure))
        .unwrap();
    for i in 0..20u64 {
        p.publish_timeout(&[7u8; 100], i, PATIENCE).unwrap();
    }
    assert!(rec.0.wait().unwrap().success());
    let whole = std::fs::read(&file).unwrap();
    for cut in [whole.len() / 2, whole.len() - 1, 9] {
        std::fs::write(&file, &whole[..cut]).unwrap();
        let out = ringbus(&dir.socket())
            .args(["replay", "--max", "--prefix", "cut2."])
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "cut at {cut}: {err}");
        assert!(
            out.status.success() || err.contains("is not a readable MCAP file"),
            "cut at {cut}: {err}"
        );
    }
}

/// `wait_with_output` for a child held in a [`KillOnDrop`]: its status and
/// its stderr.
trait WaitRef {
    fn wait_with_output_ref(&mut self) -> (std::process::ExitStatus, String);
}

impl WaitRef for std::process::Child {
    fn wait_with_output_ref(&mut self) -> (std::process::ExitStatus, String) {
        use std::io::Read;
        let mut err = String::new();
        if let Some(mut e) = self.stderr.take() {
            e.read_to_string(&mut err).unwrap();
        }
        (self.wait().unwrap(), err)
    }
}
