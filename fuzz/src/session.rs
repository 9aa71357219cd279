//! The `broker_session` target: one input's steps (see [`crate::script`])
//! against a broker serving a thread of this process, through its real
//! socket.
//!
//! The broker is started once and kept across inputs (starting one costs
//! milliseconds), so what an input does can depend on what earlier inputs
//! left behind: the topics they opened (kept by design) and the ids the
//! broker hands out. The harness restarts it every [`RESTART_EVERY`]
//! inputs, or when opened topics pile up, to keep that history short.
//!
//! It panics (a crash to libFuzzer) when the broker
//! - sends a reply that does not decode, or with a descriptor count other
//!   than the reply announces, or that does not answer the request (a
//!   frame the decoder rejects must get the error code the decoder gives);
//! - answers an error saying it could not encode its own reply;
//! - leaves a reply unsent for [`PATIENCE`];
//! - after the input's connections are closed, fails to answer Hello and
//!   Stats on a fresh connection, or still counts their clients, leases
//!   or rings, or leaves anything but its lock file in its data directory.
//!
//! A panic on the broker's own thread aborts the process (libFuzzer's
//! panic hook), so it is caught as well.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use ringbus::broker::{Config, EmbeddedBroker};
use ringbus::control::codec::{
    decode_reply, decode_request, encode_request, HEADER_LEN, MAGIC, MAX_FRAME,
};
use ringbus::control::frame::{BrokerStats, ErrorCode, Reply, Request, MAX_FDS, PROTOCOL_VERSION};
use ringbus::control::socket;

use crate::script::{self, Action, Seen, Step, SLOTS};

/// How long the broker may take to answer one frame before the harness
/// calls it hung. Replies take microseconds; this allows for a loaded
/// machine.
pub const PATIENCE: Duration = Duration::from_secs(10);
/// Inputs served by one broker before the harness starts a fresh one.
pub const RESTART_EVERY: u64 = 50_000;
/// Opened topics (kept by the broker) that make the harness start a fresh
/// broker.
const RESTART_TOPICS: u32 = 32;
/// Largest ring (data, lobby, desk and every port) an input may ask for:
/// rings of up to 16 GiB are valid, and the fuzzer finds the large configs
/// quickly (their pages are touched by publishers only, but a fuzzing
/// process's memory is bounded).
pub const MAX_RING_BYTES: u64 = 1 << 20;
/// The topic the harness's broker declares in its configuration.
pub const DECLARED_TOPIC: &str = "decl.t";

const BROKER_CONFIG: &str = r#"
[limits]
max_topics = 48
max_clients = 64
max_publishers_per_topic = 4

[[topic]]
name = "decl.t"
max_message_size = 64
capacity = 16
mode = "backpressure"
max_subscribers = 4
"#;

/// What a sent frame must be answered with.
#[derive(Debug)]
enum Expect {
    /// The decoder rejects the frame: an error with this code.
    Rejected(ErrorCode),
    /// A decodable request: its answer, or an error.
    Answer(Request),
}

struct Conn {
    sock: OwnedFd,
    owed: VecDeque<Expect>,
}

/// What one input did, for tests.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Every reply received, in the order received.
    pub replies: Vec<Reply>,
    /// Frames not sent because they ask for a ring over
    /// [`MAX_RING_BYTES`].
    pub skipped: usize,
    /// Connections the broker closed (end of file while replies were owed
    /// or on a send).
    pub closed_by_broker: usize,
    /// The broker's counters after the input.
    pub stats: BrokerStats,
}

/// A broker and what drives inputs against it.
pub struct Harness {
    broker: EmbeddedBroker,
    served: u64,
    buf: Vec<u8>,
    devnull: File,
}

impl Harness {
    /// Starts a broker in a temporary directory.
    ///
    /// # Panics
    /// If the broker cannot start.
    pub fn start() -> Harness {
        Harness {
            broker: start_broker(),
            served: 0,
            buf: vec![0; MAX_FRAME],
            devnull: File::open("/dev/null").expect("opening /dev/null"),
        }
    }

    /// Runs one input and checks that the broker survived it.
    ///
    /// # Panics
    /// When the broker misbehaves (see the module docs).
    pub fn run(&mut self, data: &[u8]) -> Outcome {
        let mut run = Run {
            harness: self,
            slots: Default::default(),
            seen: Seen::default(),
            out: Outcome::default(),
        };
        for step in script::parse(data) {
            run.step(step);
        }
        let Run { mut out, slots, .. } = run;
        drop(slots);
        out.stats = self.check_still_serving();
        self.served += 1;
        if self.served.is_multiple_of(RESTART_EVERY) || out.stats.topics > RESTART_TOPICS {
            // Dropping the old broker first frees its directory and thread.
            drop(std::mem::replace(&mut self.broker, start_broker()));
        }
        out
    }

    /// After every connection of an input is closed: a fresh one is served
    /// and the broker holds nothing for the closed ones. Their hang-ups may
    /// still be queued behind frames the broker has not read, so the
    /// counters are asked again until they settle.
    fn check_still_serving(&mut self) -> BrokerStats {
        let path = self.broker.socket();
        let sock = retrying(|| socket::connect(path))
            .unwrap_or_else(|e| panic!("the broker no longer accepts connections: {e}"));
        socket::set_timeouts(sock.as_fd(), Some(PATIENCE)).expect("setting socket timeouts");
        let hello = Request::Hello {
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            name: "oracle".into(),
        };
        match self.ask(sock.as_fd(), &hello) {
            Reply::Welcome { .. } => {}
            other => panic!("the broker answered Hello with {other:?}"),
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            let stats = match self.ask(sock.as_fd(), &Request::Stats) {
                Reply::Stats(s) => s,
                other => panic!("the broker answered Stats with {other:?}"),
            };
            let settled = stats.clients == 1
                && stats.publishers == 0
                && stats.subscribers == 0
                && stats.rings == 0
                && stats.ring_bytes == 0;
            if settled {
                self.check_no_ring_files();
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "{PATIENCE:?} after its clients left, the broker still holds {stats:?}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn check_no_ring_files(&self) {
        let dir = self.broker.data_dir();
        let entries = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading the data directory {}: {e}", dir.display()));
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            assert!(
                name == ".broker.lock",
                "{name} left in the data directory after its clients left"
            );
        }
    }

    /// One request and its reply on the oracle's connection.
    fn ask(&mut self, sock: BorrowedFd<'_>, req: &Request) -> Reply {
        let frame = encode_request(req).expect("encoding the oracle's request");
        retrying(|| socket::send_frame(sock, &frame, &[]))
            .unwrap_or_else(|e| panic!("the broker does not take {req:?}: {e}"));
        match retrying(|| socket::recv_frame(sock, &mut self.buf)) {
            Ok(Some(got)) => decode_reply(&self.buf[..got.len])
                .unwrap_or_else(|e| panic!("the broker's reply to {req:?} does not decode: {e}")),
            Ok(None) => panic!("the broker hung up instead of answering {req:?}"),
            Err(e) => panic!("no answer to {req:?} within {PATIENCE:?}: {e}"),
        }
    }
}

/// Runs a blocking socket call again when a signal interrupts it
/// (libFuzzer's timer signal does, now and then), for at most
/// [`PATIENCE`] in all.
fn retrying<T>(mut call: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match call() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted && Instant::now() < deadline => {}
            done => return done,
        }
    }
}

fn start_broker() -> EmbeddedBroker {
    let config = Config::parse(BROKER_CONFIG).expect("the harness's broker config");
    EmbeddedBroker::with_config(config).expect("starting the embedded broker")
}

/// One input in progress.
struct Run<'h> {
    harness: &'h mut Harness,
    slots: [Option<Conn>; SLOTS],
    seen: Seen,
    out: Outcome,
}

impl Run<'_> {
    fn step(&mut self, step: Step<'_>) {
        let Step {
            action,
            slot,
            wait,
            body,
        } = step;
        match action {
            Action::Raw => self.send(slot, body, 0, wait),
            Action::Framed => {
                let kind = match body {
                    [a, b, ..] => u16::from_le_bytes([*a, *b]),
                    _ => 0,
                };
                let payload = body.get(2..).unwrap_or(&[]);
                self.send(slot, &frame(kind, payload, payload.len()), 0, wait);
            }
            Action::Request => {
                let req = script::request(body, &self.seen);
                // Every selector gives a request within the encoder's bounds.
                let bytes = encode_request(&req).expect("encoding a structured request");
                self.send(slot, &bytes, 0, wait);
            }
            Action::WithFds => {
                let n = match body.first() {
                    None => 1,
                    Some(0xff) => MAX_FDS,
                    Some(b) => usize::from(b % 8) + 1,
                };
                self.send(slot, body.get(1..).unwrap_or(&[]), n, wait);
            }
            Action::Sized => {
                let len = match body {
                    [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
                    _ => MAX_FRAME,
                };
                // A Stats frame whose header announces what follows.
                let mut bytes = frame(0x08, &[], len.saturating_sub(HEADER_LEN));
                bytes.resize(len, 0xa5);
                self.send(slot, &bytes, 0, wait);
            }
            Action::Recv => self.drain(slot),
            Action::Close => self.slots[slot] = None,
            Action::Shutdown => {
                if let Some(c) = &self.slots[slot] {
                    let how = match body.first().map_or(0, |b| b % 3) {
                        0 => rustix::net::Shutdown::Read,
                        1 => rustix::net::Shutdown::Write,
                        _ => rustix::net::Shutdown::Both,
                    };
                    // Errors (not connected any more) change nothing here.
                    let _ = rustix::net::shutdown(&c.sock, how);
                }
            }
        }
    }

    /// Sends `bytes` as one frame on `slot` (opening it if needed) with
    /// `fds` copies of a descriptor, and reads the reply if `wait`.
    fn send(&mut self, slot: usize, bytes: &[u8], fds: usize, wait: bool) {
        let parsed = decode_request(bytes);
        if let Ok(req) = &parsed {
            if asks_for_a_large_ring(req) {
                self.out.skipped += 1;
                return;
            }
        }
        let conn = match &mut self.slots[slot] {
            Some(c) => c,
            empty => {
                let path = self.harness.broker.socket();
                let sock = retrying(|| socket::connect(path))
                    .unwrap_or_else(|e| panic!("the broker no longer accepts connections: {e}"));
                socket::set_timeouts(sock.as_fd(), Some(PATIENCE))
                    .expect("setting socket timeouts");
                empty.insert(Conn {
                    sock,
                    owed: VecDeque::new(),
                })
            }
        };
        let attached = vec![self.harness.devnull.as_fd(); fds];
        if retrying(|| socket::send_frame(conn.sock.as_fd(), bytes, &attached)).is_err() {
            // The broker hung up (after garbage, say), or we shut it down.
            self.slots[slot] = None;
            self.out.closed_by_broker += 1;
            return;
        }
        conn.owed.push_back(match parsed {
            Ok(req) => Expect::Answer(req),
            Err(e) => Expect::Rejected(e.code()),
        });
        if wait {
            self.drain(slot);
        }
    }

    /// Reads every reply owed on `slot`, checking each.
    fn drain(&mut self, slot: usize) {
        loop {
            let Some(conn) = &mut self.slots[slot] else {
                return;
            };
            let Some(expect) = conn.owed.pop_front() else {
                return;
            };
            let buf = &mut self.harness.buf;
            let got = match retrying(|| socket::recv_frame(conn.sock.as_fd(), buf)) {
                Ok(Some(got)) => got,
                Ok(None) => {
                    self.slots[slot] = None;
                    self.out.closed_by_broker += 1;
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    panic!("no reply within {PATIENCE:?} to a frame expecting {expect:?}")
                }
                // The broker closed with our next frame unread (a reset
                // rather than end of file: which one depends on timing).
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                    self.slots[slot] = None;
                    self.out.closed_by_broker += 1;
                    return;
                }
                // Read side shut down by the input.
                Err(_) => {
                    self.slots[slot] = None;
                    return;
                }
            };
            assert!(!got.truncated, "a reply larger than {MAX_FRAME} bytes");
            let reply = decode_reply(&buf[..got.len])
                .unwrap_or_else(|e| panic!("the broker sent a reply that does not decode: {e}"));
            assert_eq!(
                got.fds.len(),
                reply.fd_count(),
                "descriptors with {reply:?}"
            );
            check_answer(&expect, &reply);
            self.note(&reply);
            self.out.replies.push(reply);
        }
    }

    /// Remembers leases and ring ids for later selectors.
    fn note(&mut self, reply: &Reply) {
        match reply {
            Reply::PublisherAttached { lease, ring_id, .. } => {
                self.seen.leases.push(*lease);
                self.seen.rings.push(*ring_id);
            }
            Reply::Subscribed { lease, rings, .. } => {
                self.seen.leases.push(*lease);
                self.seen.rings.extend(rings.iter().map(|r| r.ring_id));
            }
            Reply::Rings { rings, .. } => {
                self.seen.rings.extend(rings.iter().map(|r| r.ring_id));
            }
            Reply::PatternSubscribed { lease, topics, .. } => {
                self.seen.leases.push(*lease);
                self.seen.leases.extend(topics.iter().map(|t| t.lease));
            }
            Reply::Matches { topics, .. } => {
                self.seen.leases.extend(topics.iter().map(|t| t.lease));
            }
            _ => {}
        }
    }
}

/// A frame with a valid header of type `kind` that announces `declared`
/// payload bytes, followed by `payload`.
fn frame(kind: u16, payload: &[u8], declared: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(HEADER_LEN + payload.len());
    v.extend_from_slice(&MAGIC);
    v.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    v.extend_from_slice(&kind.to_le_bytes());
    v.extend_from_slice(&0u16.to_le_bytes());
    v.extend_from_slice(&(declared as u32).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

fn asks_for_a_large_ring(req: &Request) -> bool {
    let config = match req {
        Request::OpenTopic { config, .. } => config,
        Request::AttachPublisher {
            config: Some(config),
            ..
        } => config,
        _ => return false,
    };
    config.validate().is_ok_and(|s| {
        s.data_len + s.lobby_len + s.desk_len + u64::from(config.max_subscribers) * s.port_len
            > MAX_RING_BYTES
    })
}

/// Panics unless `reply` answers what `expect` says.
fn check_answer(expect: &Expect, reply: &Reply) {
    if let Reply::Error { code, message } = reply {
        // `send_reply`'s fallback: the broker built a reply it cannot send.
        assert!(
            !message.starts_with("cannot encode frame"),
            "the broker could not encode its reply to {expect:?}: {message}"
        );
        if let Expect::Rejected(want) = expect {
            assert_eq!(code, want, "error code for a rejected frame ({message})");
        }
        return;
    }
    let answers = match expect {
        Expect::Rejected(_) => false,
        Expect::Answer(req) => matches!(
            (req, reply),
            (Request::Hello { .. }, Reply::Welcome { .. })
                | (Request::OpenTopic { .. }, Reply::TopicOpened { .. })
                | (
                    Request::AttachPublisher { .. },
                    Reply::PublisherAttached { .. }
                )
                | (Request::Subscribe { .. }, Reply::Subscribed { .. })
                | (Request::FetchRings { .. }, Reply::Rings { .. })
                | (Request::RingReady { .. }, Reply::Ready { .. })
                | (
                    Request::SubscribePattern { .. },
                    Reply::PatternSubscribed { .. }
                )
                | (Request::FetchMatches { .. }, Reply::Matches { .. })
                | (Request::Detach { .. }, Reply::Detached { .. })
                | (Request::ListTopics { .. }, Reply::Topics { .. })
                | (Request::Stats, Reply::Stats(_))
                | (Request::OpenGroup { .. }, Reply::GroupOpened { .. })
                | (Request::TakeOrphan { .. }, Reply::Orphan { .. })
        ),
    };
    assert!(answers, "{reply:?} does not answer {expect:?}");
}
