//! Helpers of the bridge's tests: two brokers stand in for two hosts,
//! Zenoh runs over TCP (or TLS) on 127.0.0.1 with explicit endpoints and
//! multicast scouting off.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use ringbus::client::{Mode, Subscriber};
use ringbus::ring::RecvError;
use ringbus_zenoh::{Bridge, ImportTopic, Settings};

/// A guard against hanging forever (never a performance assertion).
pub const PATIENCE: Duration = Duration::from_secs(60);

/// A TCP port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A Zenoh config for tests: peer, no multicast scouting, the given
/// endpoints.
pub fn zconfig(listen: &[String], connect: &[String]) -> zenoh::Config {
    let mut c = zenoh::Config::default();
    c.insert_json5("scouting/multicast/enabled", "false")
        .unwrap();
    if !listen.is_empty() {
        c.insert_json5("listen/endpoints", &serde_json::to_string(listen).unwrap())
            .unwrap();
    }
    if !connect.is_empty() {
        c.insert_json5(
            "connect/endpoints",
            &serde_json::to_string(connect).unwrap(),
        )
        .unwrap();
    }
    c
}

/// Settings for a bridge of the broker at `socket`.
pub fn settings(socket: &std::path::Path, export: &[&str], import: &[&str]) -> Settings {
    Settings {
        socket: Some(socket.to_owned()),
        export: export.iter().map(|s| s.to_string()).collect(),
        import: import.iter().map(|s| s.to_string()).collect(),
        import_topic: ImportTopic {
            max_message_size: 64 << 10,
            capacity: 256,
            mode: Mode::Backpressure,
            max_subscribers: 16,
        },
        import_wait_ms: 60_000,
        ..Settings::default()
    }
}

pub fn start(s: Settings, listen: &[String], connect: &[String]) -> Bridge {
    Bridge::start(s, zconfig(listen, connect)).expect("bridge starts")
}

/// Polls `f` until it returns `Some`, panicking after [`PATIENCE`].
pub fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One received message.
#[derive(Debug)]
pub struct Got {
    pub topic: String,
    pub tag: u64,
    pub seq: u64,
    pub timestamp: u64,
    pub payload: Vec<u8>,
}

/// Receives one message, failing the test after [`PATIENCE`].
pub fn recv(sub: &mut Subscriber) -> Got {
    let mut buf = vec![0u8; 64 << 10];
    let end = Instant::now() + PATIENCE;
    loop {
        assert!(Instant::now() < end, "no message within {PATIENCE:?}");
        match sub.recv_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(d) => {
                return Got {
                    topic: sub.topic_name(d.topic).unwrap().to_string(),
                    tag: d.info.tag,
                    seq: d.info.seq,
                    timestamp: d.info.timestamp,
                    payload: buf[..d.info.len].to_vec(),
                }
            }
            Err(RecvError::Timeout | RecvError::Empty) => {}
            Err(e) => panic!("receive failed: {e}"),
        }
    }
}

/// Receives for `d`, returning what came (to check that nothing does).
pub fn recv_for(sub: &mut Subscriber, d: Duration) -> Vec<Got> {
    let mut buf = vec![0u8; 64 << 10];
    let end = Instant::now() + d;
    let mut out = Vec::new();
    while Instant::now() < end {
        if let Ok(m) = sub.recv_timeout(&mut buf, Duration::from_millis(20)) {
            out.push(Got {
                topic: sub.topic_name(m.topic).unwrap().to_string(),
                tag: m.info.tag,
                seq: m.info.seq,
                timestamp: m.info.timestamp,
                payload: buf[..m.info.len].to_vec(),
            });
        }
    }
    out
}

/// The payload of message `i` of topic number `t`: `size` bytes, its
/// first 8 `i` (when they fit), the rest a pattern of both.
pub fn payload(t: usize, i: u64, size: usize) -> Vec<u8> {
    let mut p: Vec<u8> = (0..size)
        .map(|k| {
            (k as u64)
                .wrapping_mul(31)
                .wrapping_add(i)
                .wrapping_add(t as u64 * 7) as u8
        })
        .collect();
    if size >= 8 {
        p[..8].copy_from_slice(&i.to_le_bytes());
    }
    p
}

/// The size of message `i`: 0, 1, 7, 8, 64 KiB and spread values between.
pub fn size_of(i: u64) -> usize {
    match i % 8 {
        0 => 0,
        1 => 1,
        2 => 7,
        3 => 8,
        4 => 64 << 10,
        _ => ((i * 7919) % (64 << 10)) as usize,
    }
}
