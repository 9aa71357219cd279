//! The input format of the `broker_session` target: a list of steps, each
//!
//! ```text
//! u8   op      bits 0-2 action, bits 3-4 connection slot (0-3),
//!              bit 5 set: do not wait for the reply; bits 6-7 ignored
//! u16  len     little-endian, cut to the bytes left
//! ...  body    `len` bytes, read as the action says
//! ```
//!
//! Every step has the same shape, so a mutation of one step's action
//! leaves the steps after it intact. A slot's connection is opened by the
//! first step that sends on it; nothing is sent implicitly (not even
//! Hello). At most [`MAX_STEPS`] steps are read.
//!
//! Structured requests ([`Action::Request`]) pick topics, configs and
//! leases through small selectors, so the fuzzer reaches valid leases and
//! cross-connection misuse without guessing 64-bit numbers:
//!
//! ```text
//! [0, versions]                          Hello    (versions: HELLO_VERSIONS)
//! [1, topic, cap, size, mode, subs]      OpenTopic
//! [2, topic, present, cap, size, mode, subs]  AttachPublisher
//! [3, topic, n, (ring, port) * n]       Subscribe (held: n % 4 pairs)
//! [4, lease, after]                      FetchRings
//! [5, lease]                             RingReady
//! [6, lease]                             Detach
//! [7, offset]                            ListTopics (0xff: u32::MAX)
//! [8]                                    Stats
//! [9, pattern]                           SubscribePattern (PATTERNS)
//! [10, lease]                            FetchMatches
//! [11, topic, group, max, lease]         OpenGroup (GROUPS, max % 4)
//! [12, topic, group, lease]              TakeOrphan
//! [13, topic, after]                     JournalRings
//! [14, topic, ring, from]                JournalSegments
//! ```
//!
//! Missing bytes read as 0; the kind is `body[0] % 15`.

use ringbus::control::frame::{Request, PROTOCOL_VERSION};
use ringbus::ring::{Mode, TopicConfig};

/// Most steps read from one input.
pub const MAX_STEPS: usize = 256;
/// Connections one input can hold open at once.
pub const SLOTS: usize = 4;

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the body as one frame, as it is.
    Raw = 0,
    /// Send a frame with a valid header: the body is a `u16` frame type,
    /// then the payload.
    Framed = 1,
    /// Send a request built from the body (see the module docs).
    Request = 2,
    /// Send the body after its first byte as one frame with descriptors
    /// attached: `body[0] % 8 + 1` of them, or `MAX_FDS` for `0xff`.
    WithFds = 3,
    /// Send a frame of `u16` (the body) bytes: a Stats header, then filler.
    Sized = 4,
    /// Read every reply still owed on the connection.
    Recv = 5,
    /// Close the connection (a later step on the slot opens a new one).
    Close = 6,
    /// Shut the connection down: `body[0] % 3` is read, write, both.
    Shutdown = 7,
}

impl Action {
    fn from_bits(b: u8) -> Action {
        match b & 7 {
            0 => Action::Raw,
            1 => Action::Framed,
            2 => Action::Request,
            3 => Action::WithFds,
            4 => Action::Sized,
            5 => Action::Recv,
            6 => Action::Close,
            _ => Action::Shutdown,
        }
    }
}

/// One step of an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step<'a> {
    /// What to do.
    pub action: Action,
    /// Which connection (`0..SLOTS`).
    pub slot: usize,
    /// Wait for the reply to what this step sends.
    pub wait: bool,
    /// The step's data.
    pub body: &'a [u8],
}

/// The steps of `data` (at most [`MAX_STEPS`]).
pub fn parse(data: &[u8]) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    let mut rest = data;
    while steps.len() < MAX_STEPS {
        let Some((&op, after)) = rest.split_first() else {
            break;
        };
        let len = match after {
            [a, b, ..] => usize::from(u16::from_le_bytes([*a, *b])),
            [a] => usize::from(*a),
            [] => 0,
        };
        let after = after.get(2..).unwrap_or(&[]);
        let (body, tail) = after.split_at(len.min(after.len()));
        steps.push(Step {
            action: Action::from_bits(op),
            slot: usize::from(op >> 3) % SLOTS,
            wait: op & 0x20 == 0,
            body,
        });
        rest = tail;
    }
    steps
}

/// Protocol version ranges a structured Hello offers, by selector.
pub const HELLO_VERSIONS: [(u16, u16); 7] = [
    (PROTOCOL_VERSION, PROTOCOL_VERSION),
    (1, PROTOCOL_VERSION),
    (PROTOCOL_VERSION, PROTOCOL_VERSION + 1),
    (1, 1),
    (PROTOCOL_VERSION + 1, PROTOCOL_VERSION + 3),
    (0, u16::MAX),
    (PROTOCOL_VERSION, 1),
];

/// Consumer group names structured requests pick from (the last two are
/// invalid).
pub const GROUPS: [&str; 4] = ["w", "workers", "", "a/b"];

/// Patterns structured requests pick from (the last two are invalid).
pub const PATTERNS: [&str; 6] = [">", "a.>", "*.x", "md.*", "a..>", "x>"];

/// Topics a structured request names, by selector: valid ones, the one
/// the harness's broker declares, a longest valid name and invalid ones.
pub const TOPICS: [&str; 7] = [
    "a",
    "a.b",
    "md.x",
    crate::session::DECLARED_TOPIC,
    "bad/name",
    LONGEST_TOPIC,
    "a..b",
];

const LONGEST_TOPIC: &str = concat!(
    "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
    "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
    "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
);

/// Message sizes a structured config asks for, by selector (0 is invalid).
pub const MESSAGE_SIZES: [u32; 10] = [64, 1, 8, 100, 256, 257, 1024, 4096, 65536, 0];

/// Leases a lease selector of `0xf0..` names, whatever the broker handed
/// out; below it a selector picks among the leases seen in replies.
pub const SPECIAL_LEASES: [u64; 4] = [0, u64::MAX, 1 << 32, 1];

/// A config from four selector bytes: capacity `1 << (cap % 13)` (3 for
/// `0xff`), size [`MESSAGE_SIZES`], mode bit, subscribers `subs % 40`.
pub fn config(b: [u8; 4]) -> TopicConfig {
    TopicConfig {
        capacity: if b[0] == 0xff { 3 } else { 1 << (b[0] % 13) },
        max_message_size: MESSAGE_SIZES[usize::from(b[1]) % MESSAGE_SIZES.len()],
        mode: if b[2] & 1 == 0 {
            Mode::Overwrite
        } else {
            Mode::Backpressure
        },
        max_subscribers: u32::from(b[3] % 40),
    }
}

/// Leases and ring ids seen in this input's replies, for the selectors.
#[derive(Debug, Default)]
pub struct Seen {
    /// Leases, in the order their replies arrived.
    pub leases: Vec<u64>,
    /// Ring ids, in the order their replies arrived.
    pub rings: Vec<u64>,
}

impl Seen {
    fn lease(&self, sel: u8) -> u64 {
        if sel >= 0xf0 {
            return SPECIAL_LEASES[usize::from(sel & 0x0f) % SPECIAL_LEASES.len()];
        }
        match self.leases.len() {
            0 => u64::from(sel),
            n => self.leases[usize::from(sel) % n],
        }
    }

    fn after(&self, sel: u8) -> u64 {
        match (sel, self.rings.len()) {
            (0, _) => 0,
            (0xff, _) => u64::MAX,
            (s, 0) => u64::from(s),
            (s, n) => self.rings[usize::from(s - 1) % n],
        }
    }
}

/// The request a structured body asks for.
pub fn request(body: &[u8], seen: &Seen) -> Request {
    let b = |i: usize| body.get(i).copied().unwrap_or(0);
    let topic = |i: usize| TOPICS[usize::from(b(i)) % TOPICS.len()].to_owned();
    let cfg = |i: usize| config([b(i), b(i + 1), b(i + 2), b(i + 3)]);
    match b(0) % 15 {
        0 => {
            let (min_version, max_version) =
                HELLO_VERSIONS[usize::from(b(1)) % HELLO_VERSIONS.len()];
            Request::Hello {
                min_version,
                max_version,
                name: "fuzz".into(),
            }
        }
        1 => Request::OpenTopic {
            topic: topic(1),
            config: cfg(2),
        },
        2 => Request::AttachPublisher {
            topic: topic(1),
            config: (b(2) & 1 == 1).then(|| cfg(3)),
        },
        3 => Request::Subscribe {
            topic: topic(1),
            start: ringbus::ring::Start::Earliest,
            held: (0..usize::from(b(2) % 4))
                .map(|i| (seen.after(b(3 + 2 * i)), u64::from(b(4 + 2 * i))))
                .collect(),
        },
        4 => Request::FetchRings {
            lease: seen.lease(b(1)),
            after: seen.after(b(2)),
        },
        5 => Request::RingReady {
            lease: seen.lease(b(1)),
        },
        6 => Request::Detach {
            lease: seen.lease(b(1)),
        },
        7 => Request::ListTopics {
            offset: if b(1) == 0xff {
                u32::MAX
            } else {
                u32::from(b(1))
            },
        },
        8 => Request::Stats,
        9 => Request::SubscribePattern {
            pattern: PATTERNS[usize::from(b(1)) % PATTERNS.len()].to_owned(),
            start: ringbus::ring::Start::Earliest,
            held: vec![],
        },
        10 => Request::FetchMatches {
            lease: seen.lease(b(1)),
        },
        11 => Request::OpenGroup {
            topic: topic(1),
            group: GROUPS[usize::from(b(2)) % GROUPS.len()].to_owned(),
            max_deliveries: u32::from(b(3)) % 4,
            lease: seen.lease(b(4)),
        },
        12 => Request::TakeOrphan {
            topic: topic(1),
            group: GROUPS[usize::from(b(2)) % GROUPS.len()].to_owned(),
            lease: seen.lease(b(3)),
        },
        13 => Request::JournalRings {
            topic: topic(1),
            after: seen.after(b(2)),
        },
        _ => Request::JournalSegments {
            topic: topic(1),
            ring_id: seen.after(b(2)),
            from_seq: u64::from(b(3)),
        },
    }
}

/// Writes inputs in this format (the seed generator's side).
#[derive(Clone, Debug, Default)]
pub struct Script {
    bytes: Vec<u8>,
}

impl Script {
    /// An empty input.
    pub fn new() -> Script {
        Script::default()
    }

    /// Appends a step.
    pub fn step(mut self, action: Action, slot: usize, wait: bool, body: &[u8]) -> Script {
        assert!(slot < SLOTS && body.len() <= usize::from(u16::MAX));
        let op = action as u8 | (slot as u8) << 3 | if wait { 0 } else { 0x20 };
        self.bytes.push(op);
        self.bytes
            .extend_from_slice(&(body.len() as u16).to_le_bytes());
        self.bytes.extend_from_slice(body);
        self
    }

    /// A structured request on `slot`, waiting for its reply.
    pub fn request(self, slot: usize, body: &[u8]) -> Script {
        self.step(Action::Request, slot, true, body)
    }

    /// A structured Hello that the broker accepts.
    pub fn hello(self, slot: usize) -> Script {
        self.request(slot, &[0, 0])
    }

    /// The input's bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_steps_parse_back() {
        let bytes = Script::new()
            .hello(1)
            .step(Action::Raw, 3, false, b"xyz")
            .step(Action::Close, 0, true, &[])
            .into_bytes();
        let steps = parse(&bytes);
        assert_eq!(steps.len(), 3);
        assert_eq!(
            steps[0],
            Step {
                action: Action::Request,
                slot: 1,
                wait: true,
                body: &[0, 0]
            }
        );
        assert_eq!(
            steps[1],
            Step {
                action: Action::Raw,
                slot: 3,
                wait: false,
                body: b"xyz"
            }
        );
        assert_eq!(steps[2].action, Action::Close);
    }

    #[test]
    fn short_and_long_inputs_are_bounded() {
        assert!(parse(&[]).is_empty());
        // A length past the end takes what is left.
        assert_eq!(parse(&[0, 200, 0, 1, 2])[0].body, &[1, 2]);
        assert_eq!(parse(&[0, 9])[0].body, &[] as &[u8]);
        assert_eq!(parse(&[5, 0, 0].repeat(1000)).len(), MAX_STEPS);
    }

    #[test]
    fn selectors_pick_what_was_seen() {
        let seen = Seen {
            leases: vec![10, 20],
            rings: vec![7],
        };
        assert_eq!(
            request(&[6, 1], &seen),
            Request::Detach { lease: 20 },
            "selector 1 is the second lease seen"
        );
        assert_eq!(
            request(&[6, 0xf1], &seen),
            Request::Detach { lease: u64::MAX }
        );
        assert_eq!(
            request(&[4, 0, 1], &seen),
            Request::FetchRings {
                lease: 10,
                after: 7
            }
        );
        assert_eq!(
            request(&[6, 5], &Seen::default()),
            Request::Detach { lease: 5 }
        );
        assert_eq!(request(&[], &seen), request(&[0, 0], &seen));
        assert!(matches!(
            request(&[2, 0, 1, 6, 0, 1, 4], &seen),
            Request::AttachPublisher { config: Some(c), .. } if c.validate().is_ok()
        ));
        assert!(LONGEST_TOPIC.len() == ringbus::control::MAX_TOPIC_NAME_LEN);
    }
}
