//! The seed corpora, as code: real frames of every request and reply type,
//! malformed frames, and broker sessions that walk every request.
//!
//! `corpus/<target>/` holds exactly these files (a test checks it), plus
//! inputs that once crashed a target, named `crash-*`. To rewrite the
//! seeds after changing them here:
//!
//! ```text
//! RINGBUS_FUZZ_WRITE_SEEDS=1 cargo test --lib seeds
//! ```

use ringbus::control::codec::{encode_reply, encode_request, HEADER_LEN, MAX_REQUEST};
use ringbus::control::frame::{
    BrokerStats, ErrorCode, GroupInfo, JournalCounters, PortInfo, PortRef, Reply, Request,
    RingInfo, RingRef, TopicConfig, TopicInfo, MAX_RINGS_PER_TOPIC, PROTOCOL_VERSION,
};
use ringbus::ring::Mode;

use crate::script::{Action, Script};

/// A seed: file name and contents.
pub type Seed = (String, Vec<u8>);

fn cfg(mode: Mode) -> TopicConfig {
    TopicConfig {
        max_message_size: 64,
        capacity: 16,
        mode,
        max_subscribers: 4,
    }
}

/// One request of every type (and the variants of the optional fields).
pub fn requests() -> Vec<(&'static str, Request)> {
    vec![
        (
            "hello",
            Request::Hello {
                min_version: PROTOCOL_VERSION,
                max_version: PROTOCOL_VERSION,
                name: "seed".into(),
            },
        ),
        (
            "open-topic",
            Request::OpenTopic {
                topic: "md.x".into(),
                config: cfg(Mode::Backpressure),
            },
        ),
        (
            "attach-publisher",
            Request::AttachPublisher {
                topic: "md.x".into(),
                config: None,
            },
        ),
        (
            "attach-publisher-config",
            Request::AttachPublisher {
                topic: "a".into(),
                config: Some(cfg(Mode::Overwrite)),
            },
        ),
        (
            "subscribe",
            Request::Subscribe {
                topic: "md.x".into(),
                start: ringbus::ring::Start::Earliest,
                held: vec![],
            },
        ),
        (
            "subscribe-held",
            Request::Subscribe {
                topic: "md.x".into(),
                start: ringbus::ring::Start::Sequence(7),
                held: vec![(1, 1), (2, 5)],
            },
        ),
        ("fetch-rings", Request::FetchRings { lease: 2, after: 0 }),
        ("ring-ready", Request::RingReady { lease: 1 }),
        ("detach", Request::Detach { lease: 1 }),
        ("list-topics", Request::ListTopics { offset: 0 }),
        ("stats", Request::Stats),
        (
            "journal-rings",
            Request::JournalRings {
                topic: "md.aapl".into(),
                after: 0,
            },
        ),
        (
            "journal-segments",
            Request::JournalSegments {
                topic: "md.aapl".into(),
                ring_id: 1,
                from_seq: 4096,
            },
        ),
        (
            "open-group",
            Request::OpenGroup {
                topic: "md.x".into(),
                group: "workers".into(),
                max_deliveries: 5,
                lease: 1,
            },
        ),
        (
            "take-orphan",
            Request::TakeOrphan {
                topic: "md.x".into(),
                group: "workers".into(),
                lease: 1,
            },
        ),
    ]
}

/// One reply of every type.
pub fn replies() -> Vec<(&'static str, Reply)> {
    let ring = RingRef {
        ring_id: 3,
        publisher_pid: 100,
        port: Some(PortRef {
            port_id: 1,
            mailbox: false,
        }),
    };
    let info = RingInfo {
        ring_id: 3,
        publisher_pid: 100,
        closed: false,
        next_seq: 10,
        cursors: 1,
        min_cursor: Some(4),
        dropped: 0,
        upstream_lost: 2,
        bytes: 8192,
        sampled: 6,
        sampled_bytes: 384,
        ports: vec![PortInfo {
            pid: 101,
            pos: Some(4),
            delivered: 3,
            filtered: 1,
            dropped: 0,
        }],
    };
    vec![
        (
            "welcome",
            Reply::Welcome {
                version: PROTOCOL_VERSION,
                broker_pid: 100,
                client_id: 1,
            },
        ),
        (
            "topic-opened",
            Reply::TopicOpened {
                config: cfg(Mode::Backpressure),
                created: true,
            },
        ),
        (
            "publisher-attached",
            Reply::PublisherAttached {
                lease: 1,
                ring_id: 3,
                config: cfg(Mode::Overwrite),
            },
        ),
        (
            "subscribed",
            Reply::Subscribed {
                lease: 2,
                config: Some(cfg(Mode::Backpressure)),
                rings: vec![
                    ring,
                    RingRef { port: None, ..ring },
                    RingRef {
                        ring_id: 4,
                        port: Some(PortRef {
                            port_id: 9,
                            mailbox: true,
                        }),
                        ..ring
                    },
                ],
            },
        ),
        (
            "rings",
            Reply::Rings {
                config: None,
                rings: vec![ring],
            },
        ),
        ("ready", Reply::Ready { lease: 1 }),
        ("group-opened", Reply::GroupOpened { created: true }),
        ("orphan-none", Reply::Orphan { orphan: None }),
        (
            "port-added",
            Reply::PortAdded {
                port_id: 2,
                mailbox: true,
                trusted: false,
            },
        ),
        ("port-removed", Reply::PortRemoved { port_id: 2 }),
        ("detached", Reply::Detached { lease: 1 }),
        (
            "topics",
            Reply::Topics {
                total: 2,
                offset: 0,
                topics: vec![
                    TopicInfo {
                        name: "md.x".into(),
                        config: Some(cfg(Mode::Backpressure)),
                        publishers: 1,
                        subscribers: 1,
                        rings: vec![
                            info.clone(),
                            RingInfo {
                                closed: true,
                                min_cursor: None,
                                ..info
                            },
                        ],
                        journal: Some(JournalCounters {
                            recorded: 10,
                            lost: 0,
                            errors: 1,
                            bytes: 4128,
                            segments: 1,
                            corrupt: 0,
                            damaged_segments: 0,
                        }),
                        groups: vec![GroupInfo {
                            name: "workers".into(),
                            members: 2,
                            claimed: 10,
                            acknowledged: 8,
                            backlog: 0,
                            redelivered: 1,
                            dead_lettered: 0,
                        }],
                    },
                    TopicInfo {
                        name: "a".into(),
                        config: None,
                        publishers: 0,
                        subscribers: 1,
                        groups: vec![],
                        rings: vec![],
                        journal: None,
                    },
                ],
            },
        ),
        (
            "stats",
            Reply::Stats(BrokerStats {
                pid: 100,
                uptime_ms: 5,
                clients: 2,
                topics: 1,
                rings: 1,
                publishers: 1,
                subscribers: 1,
                frames_received: 9,
                frames_rejected: 1,
                permission_denied: 0,
                clients_reaped: 0,
                ring_bytes: 8192,
            }),
        ),
        (
            "journal-rings",
            Reply::JournalRings {
                config: None,
                rings: vec![(1, None), (2, Some(4096))],
                more: false,
            },
        ),
        (
            "journal-segments",
            Reply::JournalSegments {
                bases: vec![0, 4096],
                more: true,
            },
        ),
        (
            "error",
            Reply::error(ErrorCode::NotFound, "no lease 7 on this connection"),
        ),
    ]
}

/// Frames each decoder must reject, one per kind of damage.
pub fn malformed() -> Vec<Seed> {
    let stats = encode_request(&Request::Stats).expect("Stats encodes");
    let open = encode_request(&Request::OpenTopic {
        topic: "md.x".into(),
        config: cfg(Mode::Overwrite),
    })
    .expect("OpenTopic encodes");
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = open.clone();
        f(&mut v);
        v
    };
    let set_len = |v: &mut Vec<u8>| {
        let n = (v.len() - HEADER_LEN) as u32;
        v[8..12].copy_from_slice(&n.to_le_bytes());
    };
    let mut too_many_rings = encode_reply(&Reply::Rings {
        config: None,
        rings: vec![],
    })
    .expect("Rings encodes");
    let at = too_many_rings.len() - 2;
    too_many_rings[at..].copy_from_slice(&(MAX_RINGS_PER_TOPIC as u16 + 1).to_le_bytes());
    let seeds: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("short-header", stats[..7].to_vec()),
        ("magic", with(&|v| v[0] = b'X')),
        (
            "other-version",
            with(&|v| v[2] = PROTOCOL_VERSION as u8 + 1),
        ),
        ("unknown-kind", with(&|v| v[4] = 0x7e)),
        ("reserved-set", with(&|v| v[6] = 1)),
        ("length-mismatch", with(&|v| v[8] += 1)),
        (
            "truncated-payload",
            with(&|v| {
                v.truncate(v.len() - 3);
                set_len(v)
            }),
        ),
        (
            "trailing-bytes",
            with(&|v| {
                v.push(0);
                set_len(v)
            }),
        ),
        ("mode", with(&|v| v[HEADER_LEN + 2 + 4 + 8] = 2)),
        ("topic-name", with(&|v| v[HEADER_LEN + 4] = b'/')),
        ("utf8", with(&|v| v[HEADER_LEN + 2] = 0xff)),
        ("too-many-rings", too_many_rings),
        ("oversized-request", {
            let mut v = stats.clone();
            v.resize(MAX_REQUEST + 1, 0);
            set_len(&mut v);
            v
        }),
    ];
    seeds
        .into_iter()
        .map(|(n, v)| (format!("bad-{n}"), v))
        .collect()
}

/// The `frame_decoder` corpus.
pub fn frame_decoder() -> Vec<Seed> {
    let mut seeds = Vec::new();
    for (name, req) in requests() {
        let bytes = encode_request(&req).expect("seed requests encode");
        seeds.push((format!("request-{name}"), bytes));
    }
    for (name, reply) in replies() {
        let bytes = encode_reply(&reply).expect("seed replies encode");
        seeds.push((format!("reply-{name}"), bytes));
    }
    seeds.extend(malformed());
    seeds
}

// Structured request bodies (see `script`): topic selectors index
// `script::TOPICS`, lease selectors the leases seen so far.
const TOPIC_A: u8 = 0;
const TOPIC_MD: u8 = 2;
const TOPIC_DECLARED: u8 = 3;
const TOPIC_BAD: u8 = 4;
const TOPIC_LONGEST: u8 = 5;
/// Capacity 16, 64-byte messages, back-pressure, 4 subscribers.
const BACKPRESSURE: [u8; 4] = [4, 0, 1, 4];
/// Capacity 16, 64-byte messages, overwrite, 4 subscribers.
const OVERWRITE: [u8; 4] = [4, 0, 0, 4];

fn open_topic(topic: u8, cfg: [u8; 4]) -> Vec<u8> {
    [&[1, topic][..], &cfg].concat()
}

fn attach(topic: u8, cfg: Option<[u8; 4]>) -> Vec<u8> {
    match cfg {
        Some(c) => [&[2, topic, 1][..], &c].concat(),
        None => vec![2, topic, 0],
    }
}

const fn subscribe(topic: u8) -> [u8; 2] {
    [3, topic]
}

const fn fetch_rings(lease: u8, after: u8) -> [u8; 3] {
    [4, lease, after]
}

const fn ring_ready(lease: u8) -> [u8; 2] {
    [5, lease]
}

const fn detach(lease: u8) -> [u8; 2] {
    [6, lease]
}

const LIST: [u8; 2] = [7, 0];
const STATS: [u8; 1] = [8];

fn raw(req: &Request) -> Vec<u8> {
    encode_request(req).expect("seed requests encode")
}

/// The `broker_session` corpus.
pub fn broker_session() -> Vec<Seed> {
    let hello = raw(&requests()[0].1);
    let mut seeds: Vec<(&str, Script)> = vec![
        ("hello-stats", Script::new().hello(0).request(0, &STATS)),
        (
            // Every request type, structured, on two connections.
            "publish-subscribe",
            Script::new()
                .hello(0)
                .request(0, &open_topic(TOPIC_MD, BACKPRESSURE))
                .request(0, &attach(TOPIC_MD, None))
                .request(0, &ring_ready(0))
                .hello(1)
                .request(1, &subscribe(TOPIC_MD))
                .request(1, &fetch_rings(1, 0))
                .request(1, &LIST)
                .request(0, &detach(0))
                .request(1, &fetch_rings(1, 1))
                .request(1, &detach(1))
                .request(0, &STATS),
        ),
        (
            // A back-pressure ring that appears after the subscription: a
            // port is made at once, then handed over by FetchRings once
            // the publisher said it mapped the ring.
            "late-backpressure-ring",
            Script::new()
                .hello(0)
                .hello(1)
                .request(1, &subscribe(TOPIC_A))
                .request(0, &attach(TOPIC_A, Some(BACKPRESSURE)))
                .request(0, &ring_ready(1))
                .request(1, &fetch_rings(0, 0))
                .step(Action::Close, 1, true, &[])
                .request(0, &STATS),
        ),
        (
            // The declared topic, and its publisher leaving while a
            // subscriber has not fetched its ring.
            "declared-topic",
            Script::new()
                .hello(0)
                .hello(2)
                .request(2, &subscribe(TOPIC_DECLARED))
                .request(0, &attach(TOPIC_DECLARED, None))
                .step(Action::Close, 0, true, &[])
                .request(2, &fetch_rings(0, 0))
                .request(2, &LIST),
        ),
        (
            // Leases used from the wrong connection, and unknown ones.
            "foreign-leases",
            Script::new()
                .hello(0)
                .hello(1)
                .request(0, &attach(TOPIC_A, Some(OVERWRITE)))
                .request(1, &detach(0))
                .request(1, &ring_ready(0))
                .request(1, &fetch_rings(0, 0xff))
                .request(0, &fetch_rings(0, 0))
                .request(0, &detach(0xf1))
                .request(0, &detach(0))
                .request(0, &detach(0)),
        ),
        (
            // A topic's limits: config mismatch, invalid configs, the
            // fifth publisher over `max_publishers_per_topic`.
            "limits",
            Script::new()
                .hello(0)
                .request(0, &open_topic(TOPIC_A, OVERWRITE))
                .request(0, &open_topic(TOPIC_A, BACKPRESSURE))
                .request(0, &attach(TOPIC_MD, Some([0xff, 0, 0, 4])))
                .request(0, &attach(TOPIC_MD, Some([4, 9, 0, 4])))
                .request(0, &attach(TOPIC_MD, Some([4, 0, 0, 0])))
                .request(0, &attach(TOPIC_MD, None))
                .request(0, &attach(TOPIC_A, None))
                .request(0, &attach(TOPIC_A, None))
                .request(0, &attach(TOPIC_A, None))
                .request(0, &attach(TOPIC_A, None))
                .request(0, &attach(TOPIC_A, None))
                .request(0, &LIST),
        ),
        (
            // Names: invalid (the connection survives) and the longest.
            "topic-names",
            Script::new()
                .hello(0)
                .request(0, &subscribe(TOPIC_BAD))
                .request(0, &subscribe(TOPIC_LONGEST))
                .request(0, &attach(TOPIC_LONGEST, Some(OVERWRITE)))
                .request(0, &[7, 0xff])
                .request(0, &LIST),
        ),
        (
            // Hello with versions the broker does not speak.
            "hello-versions",
            Script::new()
                .request(0, &[0, 3])
                .request(1, &[0, 6])
                .request(2, &[0, 5])
                .request(2, &STATS),
        ),
        ("no-hello", Script::new().request(0, &STATS)),
        (
            // Every request type as raw frames, after a raw Hello.
            "raw-requests",
            requests().iter().fold(Script::new(), |s, (_, r)| {
                s.step(Action::Raw, 0, true, &raw(r))
            }),
        ),
        (
            // Payloads under a valid header.
            "framed",
            Script::new()
                .step(Action::Raw, 0, true, &hello)
                .step(Action::Framed, 0, true, &[0x08, 0])
                .step(Action::Framed, 0, true, &[0x77, 0])
                .step(
                    Action::Framed,
                    0,
                    true,
                    &[0x04, 0, 4, 0, b'a', b'/', b'b', b'c'],
                )
                .step(Action::Framed, 0, true, &[0x07, 0, 1, 2]),
        ),
        (
            "garbage-after-hello",
            Script::new()
                .hello(0)
                .step(Action::Raw, 0, true, b"not a ringbus frame")
                .request(0, &STATS),
        ),
        (
            "descriptors-attached",
            Script::new()
                .step(Action::WithFds, 0, true, &[[2].as_slice(), &hello].concat())
                .step(Action::WithFds, 0, true, &[0xff, 1, 2, 3])
                .step(Action::WithFds, 1, true, &[0]),
        ),
        (
            "oversized",
            Script::new()
                .hello(0)
                .step(
                    Action::Sized,
                    0,
                    true,
                    &(MAX_REQUEST as u16 + 1).to_le_bytes(),
                )
                .step(Action::Sized, 1, true, &60_000u16.to_le_bytes()),
        ),
        (
            // Frames sent without reading the replies, then read at once.
            "pipelined",
            (0..20)
                .fold(Script::new().step(Action::Raw, 0, false, &hello), |s, _| {
                    s.step(Action::Request, 0, false, &STATS)
                })
                .step(Action::Recv, 0, true, &[]),
        ),
        (
            // A client that leaves with a publisher and subscriber, and
            // one that stops reading or writing.
            "hang-ups",
            Script::new()
                .hello(0)
                .request(0, &attach(TOPIC_A, Some(BACKPRESSURE)))
                .request(0, &subscribe(TOPIC_A))
                .step(Action::Request, 0, false, &STATS)
                .step(Action::Close, 0, true, &[])
                .hello(1)
                .step(Action::Shutdown, 1, true, &[0])
                .step(Action::Request, 1, true, &STATS)
                .hello(2)
                .step(Action::Shutdown, 2, true, &[1])
                .request(2, &STATS),
        ),
    ];
    seeds.push((
        "empty-frame",
        Script::new().hello(0).step(Action::Raw, 0, true, &[]),
    ));
    seeds
        .into_iter()
        .map(|(n, s)| (n.to_owned(), s.into_bytes()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn corpus_dir(target: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("corpus")
            .join(target)
    }

    /// The committed seeds are what this file generates (or, with
    /// `RINGBUS_FUZZ_WRITE_SEEDS=1`, become it). Files named `crash-*` are
    /// kept regression inputs and left alone.
    #[test]
    fn committed_seeds_are_current() {
        let write = std::env::var_os("RINGBUS_FUZZ_WRITE_SEEDS").is_some();
        for (target, seeds) in [
            ("frame_decoder", frame_decoder()),
            ("broker_session", broker_session()),
        ] {
            let dir = corpus_dir(target);
            let want: BTreeMap<String, Vec<u8>> = seeds.into_iter().collect();
            let mut have = BTreeMap::new();
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries {
                    let e = e.unwrap();
                    let name = e.file_name().into_string().unwrap();
                    if !name.starts_with("crash-") {
                        have.insert(name, std::fs::read(e.path()).unwrap());
                    }
                }
            }
            if write {
                std::fs::create_dir_all(&dir).unwrap();
                for name in have.keys().filter(|n| !want.contains_key(*n)) {
                    std::fs::remove_file(dir.join(name)).unwrap();
                }
                for (name, bytes) in &want {
                    std::fs::write(dir.join(name), bytes).unwrap();
                }
            } else {
                assert!(
                    have == want,
                    "corpus/{target} differs from seeds.rs: rerun with RINGBUS_FUZZ_WRITE_SEEDS=1"
                );
            }
        }
    }
}
