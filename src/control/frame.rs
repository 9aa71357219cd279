//! The control protocol's frames: what clients ask and what the broker
//! answers. The byte encoding lives in [`super::codec`].
//!
//! Descriptors travel beside a frame as `SCM_RIGHTS` ancillary data; each
//! reply documents which descriptors come with it and in which order.

use crate::ring::Start;
pub use crate::ring::TopicConfig;

/// Version of the frame format spoken by this build. A broker answers a
/// frame of any other version with [`ErrorCode::UnsupportedVersion`].
/// (3: ports and the publisher's channel replace the control segment and
/// mailbox fetches; 4: pattern subscriptions; 5: [`RingInfo`] samples the
/// sizes of the latest messages; 6: [`TopicInfo`] carries a durable
/// topic's [`JournalCounters`], and the journal requests
/// ([`Request::JournalRings`], [`Request::JournalSegments`]) and
/// [`crate::ring::Start::Time`] come.)
pub const PROTOCOL_VERSION: u16 = 6;

/// Largest topic name, in bytes.
pub const MAX_TOPIC_LEN: usize = 255;
/// Largest client name sent in [`Request::Hello`], in bytes.
pub const MAX_CLIENT_NAME_LEN: usize = 64;
/// Largest human-readable message in [`Reply::Error`], in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 1024;
/// Most rings one topic can have (and one reply can carry: three
/// descriptors each, under the kernel's 253 descriptors per message).
pub const MAX_RINGS_PER_TOPIC: usize = 64;
/// Most topics one [`Reply::Topics`] page carries.
pub const MAX_TOPICS_PER_PAGE: usize = 32;
/// Most descriptors any reply carries: the topic segment plus three per
/// ring (data, lobby, port).
pub const MAX_FDS: usize = 1 + 3 * MAX_RINGS_PER_TOPIC;
/// Most topics (and most refusals) one [`Reply::Matches`] or
/// [`Reply::PatternSubscribed`] carries.
pub const MAX_MATCHES_PER_PAGE: usize = 32;
/// Most `(ring, port)` pairs a re-joining subscription names in `held`.
pub const MAX_HELD_PORTS: usize = 512;
/// Most ring ids in one [`Reply::JournalRings`] page.
pub const MAX_JOURNAL_RINGS: usize = 1024;
/// Most segment descriptors in one [`Reply::JournalSegments`].
pub const MAX_JOURNAL_SEGMENTS: usize = 64;

/// What a client asks. Clients never send descriptors; a broker closes any
/// it receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// First frame on a connection. The broker answers [`Reply::Welcome`]
    /// or an error if it speaks none of `min_version..=max_version`.
    Hello {
        /// Oldest protocol version the client speaks.
        min_version: u16,
        /// Newest protocol version the client speaks.
        max_version: u16,
        /// Free-form name shown in stats (at most 64 bytes).
        name: String,
    },
    /// Create a topic, or open it if it exists with the same config.
    /// Answer: [`Reply::TopicOpened`].
    OpenTopic {
        /// Topic name.
        topic: String,
        /// Wanted config; an existing topic must match it.
        config: TopicConfig,
    },
    /// Become a publisher of `topic`: the broker creates a fresh ring.
    /// `config: None` takes the existing topic's config. Answer:
    /// [`Reply::PublisherAttached`].
    AttachPublisher {
        /// Topic name.
        topic: String,
        /// Wanted config, or `None` for the existing one.
        config: Option<TopicConfig>,
    },
    /// Subscribe to `topic` (created without a config if it does not exist
    /// yet), starting at `start` in the rings that exist now (the broker
    /// places back-pressure cursors there). Answer: [`Reply::Subscribed`].
    Subscribe {
        /// Topic name.
        topic: String,
        /// Where to start.
        start: Start,
        /// A subscriber re-joining a restarted broker: the rings it reads
        /// already and its port on each, as `(ring_id, port_id)`. The
        /// broker gives it those ports back (they are its process's) and
        /// leaves the rings out of the answer. At most
        /// [`MAX_HELD_PORTS`].
        held: Vec<(u64, u64)>,
    },
    /// Subscribe to every topic whose name matches `pattern` (see
    /// [`crate::control::pattern_matches`]) and that this client may read:
    /// those that exist now, at `start`, and those created later, from
    /// their first message. The broker makes one subscription (lease) per
    /// matched topic, reported in pages. Answer:
    /// [`Reply::PatternSubscribed`].
    SubscribePattern {
        /// The pattern.
        pattern: String,
        /// Where to start in the rings of the topics that exist now.
        start: Start,
        /// As for [`Request::Subscribe`], over all the topics.
        held: Vec<(u64, u64)>,
    },
    /// The topics a pattern subscription matched and has not reported yet
    /// (asked when the broker's directory generation moved, or while the
    /// last answer said `more`). Answer: [`Reply::Matches`].
    FetchMatches {
        /// The pattern subscription's lease.
        lease: u64,
    },
    /// Ask for the rings of a subscription whose id is above `after`
    /// (sent when the topic's generation counter moved). Answer:
    /// [`Reply::Rings`].
    FetchRings {
        /// The subscription's lease.
        lease: u64,
        /// Highest ring id the client already has.
        after: u64,
    },
    /// The publisher of a new ring has mapped it: the broker seals its data
    /// against any other writer and hands it to subscribers from now on.
    /// Answer: [`Reply::Detached`]-like [`Reply::Ready`].
    RingReady {
        /// The publisher's lease.
        lease: u64,
    },
    /// Give back a publisher or subscriber lease. Answer:
    /// [`Reply::Detached`].
    Detach {
        /// The lease to give back.
        lease: u64,
    },
    /// List topics, one page starting at `offset`. Answer: [`Reply::Topics`].
    ListTopics {
        /// Index of the first topic wanted (topics are sorted by name).
        offset: u32,
    },
    /// Broker-wide counters. Answer: [`Reply::Stats`].
    Stats,
    /// The rings of a durable topic that have a journal, with ids above
    /// `after` (one page). Needs the right to subscribe. Answer:
    /// [`Reply::JournalRings`]; [`ErrorCode::NotFound`] for a topic
    /// without a journal.
    JournalRings {
        /// The topic.
        topic: String,
        /// Highest ring id the client already has.
        after: u64,
    },
    /// Read-only descriptors of the journal segments of ring `ring_id`
    /// of `topic` that may hold sequence `from_seq` or later: the last
    /// segment starting at or before it, and those after (one page).
    /// Needs the right to subscribe. Answer: [`Reply::JournalSegments`].
    JournalSegments {
        /// The topic.
        topic: String,
        /// The ring.
        ring_id: u64,
        /// The first sequence number wanted.
        from_seq: u64,
    },
    /// Join consumer group `group` of `topic` (a topic, not a pattern: a
    /// pattern member sends one per matched topic). Answer:
    /// [`Reply::GroupOpened`] with the group's claim table
    /// (`ring::claim`); refused with `ConfigMismatch` when the group
    /// exists with another `max_deliveries`.
    OpenGroup {
        /// The topic.
        topic: String,
        /// The group's name (the topic naming rules, at most
        /// [`crate::control::name::MAX_GROUP_NAME_LEN`] bytes).
        group: String,
        /// Deliveries of one message before it is dead-lettered.
        max_deliveries: u32,
        /// The member's subscription (a topic's lease, or a pattern's):
        /// when it ends, what its ports hold unacknowledged goes to the
        /// group's other members.
        lease: u64,
    },
    /// Take one range a member of `group` that died or left held
    /// unacknowledged on `topic`. Answer: [`Reply::Orphan`].
    TakeOrphan {
        /// The topic.
        topic: String,
        /// The group.
        group: String,
        /// The taking member's subscription (as in
        /// [`Request::OpenGroup`]): if it ends before the range is read,
        /// the range goes on again.
        lease: u64,
    },
}

/// A dead group member's unacknowledged range, handed to a live member
/// with the dead member's port (its cursor at the range's start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrphanRef {
    /// The ring.
    pub ring_id: u64,
    /// The port's id within the ring.
    pub port_id: u64,
    /// The end of the range (exclusive).
    pub to: u64,
    /// How many times its messages have been delivered before.
    pub deliveries: u32,
}

/// One ring of a topic, as announced to a subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingRef {
    /// Broker-assigned id, increasing across the broker's life.
    pub ring_id: u64,
    /// Process id of the ring's publisher.
    pub publisher_pid: u32,
    /// The subscriber's port on this ring, whose descriptor follows the
    /// ring's two; `None` when the ring's ports ran out (an overwrite ring
    /// is then read without one).
    pub port: Option<PortRef>,
}

/// A topic a pattern subscription matched: the subscription the broker
/// made on it. Its topic segment is among the reply's descriptors; its
/// rings come with [`Request::FetchRings`] on `lease`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedTopic {
    /// The topic's name.
    pub name: String,
    /// The subscription to this topic (ended with the pattern's lease).
    pub lease: u64,
    /// The topic's config, `None` until a publisher sets it.
    pub config: Option<TopicConfig>,
}

/// A topic a pattern matched but could not be subscribed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefusedTopic {
    /// The topic's name.
    pub name: String,
    /// Why (at most 1 KiB).
    pub reason: String,
}

/// A subscriber's port on a ring, as the broker announces it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRef {
    /// The port's id within its ring.
    pub port_id: u64,
    /// The publisher writes the port's mailbox with every message.
    pub mailbox: bool,
}

/// One ring in a [`TopicInfo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingInfo {
    /// Broker-assigned id.
    pub ring_id: u64,
    /// Process id of the ring's publisher.
    pub publisher_pid: u32,
    /// The publisher is gone: subscribers drain the ring, then it ends.
    pub closed: bool,
    /// Sequence number of the next message (messages published so far).
    pub next_seq: u64,
    /// Subscribers holding a cursor on this ring (every back-pressure
    /// subscriber; overwrite subscribers while free slots last).
    pub cursors: u32,
    /// Lowest cursor, if any subscriber holds one.
    pub min_cursor: Option<u64>,
    /// Messages lost to overwrites, summed over the cursor holders.
    pub dropped: u64,
    /// Messages its publisher reports lost before they reached the ring
    /// (a bridge's import).
    pub upstream_lost: u64,
    /// Bytes of shared memory the ring uses: data segment, lobby and
    /// ports.
    pub bytes: u64,
    /// How many of the latest messages still in the ring (at most 64) the
    /// broker read the length of when it answered.
    pub sampled: u32,
    /// Their payload bytes: `sampled_bytes / sampled` is the recent mean
    /// message size (a byte rate without a byte counter on the data path).
    pub sampled_bytes: u64,
    /// Its subscribers' ports, at most [`MAX_PORTS_LISTED`].
    pub ports: Vec<PortInfo>,
}

/// Most ports a [`RingInfo`] lists.
pub const MAX_PORTS_LISTED: usize = 16;

/// Most consumer groups a [`TopicInfo`] lists.
pub const MAX_GROUPS_LISTED: usize = 16;

/// One consumer group of a topic, as [`Reply::Topics`] lists it. Counts
/// come from the group's claim table, which its members write: a report,
/// as accurate as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group's name.
    pub name: String,
    /// Member subscriptions.
    pub members: u32,
    /// Messages claimed by members, over the topic's rings.
    pub claimed: u64,
    /// Of those, acknowledged (claimed and no longer held by a member,
    /// live, dead or gone).
    pub acknowledged: u64,
    /// Published, not yet claimed.
    pub backlog: u64,
    /// Messages handed on to other members by members that died or left
    /// holding them.
    pub redelivered: u64,
    /// Messages members sent to the dead-letter topic.
    pub dead_lettered: u64,
}

/// One subscriber of a ring, as listed by [`Reply::Topics`]. The counts
/// are the subscriber's own, published every few dozen messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// The subscriber's process (as the broker saw it).
    pub pid: u32,
    /// Its position (`None` once it let go of the port).
    pub pos: Option<u64>,
    /// Messages delivered to it.
    pub delivered: u64,
    /// Messages its filters turned down.
    pub filtered: u64,
    /// Messages it lost to overwrites.
    pub dropped: u64,
}

impl RingInfo {
    /// Messages published but not yet consumed by the slowest subscriber
    /// holding a cursor (`None` without cursors).
    pub fn lag(&self) -> Option<u64> {
        self.min_cursor.map(|c| self.next_seq.saturating_sub(c))
    }

    /// Mean payload size of the latest messages (`None` before any).
    pub fn mean_message_size(&self) -> Option<f64> {
        (self.sampled > 0).then(|| self.sampled_bytes as f64 / f64::from(self.sampled))
    }
}

/// One topic as listed by [`Reply::Topics`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    /// Topic name.
    pub name: String,
    /// Its config, `None` while only subscribers have asked for it.
    pub config: Option<TopicConfig>,
    /// Attached publishers.
    pub publishers: u32,
    /// Attached subscribers.
    pub subscribers: u32,
    /// Its rings (live and closed-but-kept).
    pub rings: Vec<RingInfo>,
    /// A durable topic's recorder counters (`None`: not durable, or its
    /// recorder has not started).
    pub journal: Option<JournalCounters>,
    /// Its consumer groups, at most [`MAX_GROUPS_LISTED`], by name.
    pub groups: Vec<GroupInfo>,
}

/// What a durable topic's recorder counted, over every ring's journal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JournalCounters {
    /// Messages appended to the journals.
    pub recorded: u64,
    /// Messages the journals will never have (lost before they were
    /// recorded: a gap after a crash without a keeper).
    pub lost: u64,
    /// Failed writes (a full disk, a directory the broker may not write):
    /// each retried, the publishers held back meanwhile.
    pub errors: u64,
    /// Bytes of the journals' segment files.
    pub bytes: u64,
    /// Segment files.
    pub segments: u64,
    /// Damaged stretches in the middle of segments found at recovery
    /// (readers step over them).
    pub corrupt: u64,
    /// Segment files set aside at recovery (`NAME.damaged`).
    pub damaged_segments: u64,
}

/// Broker-wide counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerStats {
    /// The broker's process id.
    pub pid: u32,
    /// Milliseconds since the broker started.
    pub uptime_ms: u64,
    /// Connected clients.
    pub clients: u32,
    /// Known topics.
    pub topics: u32,
    /// Rings (all topics).
    pub rings: u32,
    /// Publisher leases.
    pub publishers: u32,
    /// Subscriber leases.
    pub subscribers: u32,
    /// Frames received.
    pub frames_received: u64,
    /// Frames answered with an error.
    pub frames_rejected: u64,
    /// Clients refused by the ACL (requests, not connections).
    pub permission_denied: u64,
    /// Dead processes whose rings or cursors the broker reclaimed through
    /// their pidfd (a publisher's ring is usually closed earlier, when its
    /// connection ends).
    pub clients_reaped: u64,
    /// Bytes of shared memory in rings.
    pub ring_bytes: u64,
}

/// Why a request failed, as carried by [`Reply::Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// The frame could not be decoded (truncated, oversized, bad field).
    Malformed,
    /// The frame's protocol version is not spoken by the broker.
    UnsupportedVersion,
    /// The frame's type is unknown to the broker.
    UnknownRequest,
    /// A request came before [`Request::Hello`].
    HelloRequired,
    /// The topic name breaks the naming rules.
    BadTopicName,
    /// The topic config is invalid (not a power of two, too large...).
    InvalidConfig,
    /// The topic exists with another config.
    ConfigMismatch,
    /// The ACL refuses this uid/gid the action on the topic.
    PermissionDenied,
    /// A broker limit (topics, clients, publishers per topic) is reached.
    LimitExceeded,
    /// No such topic or lease.
    NotFound,
    /// The broker failed (I/O error creating a ring...).
    Internal,
    /// A code this build does not know (sent by a newer broker).
    Other(u16),
}

impl ErrorCode {
    /// Wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::Malformed => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::UnknownRequest => 3,
            ErrorCode::HelloRequired => 4,
            ErrorCode::BadTopicName => 5,
            ErrorCode::InvalidConfig => 6,
            ErrorCode::ConfigMismatch => 7,
            ErrorCode::PermissionDenied => 8,
            ErrorCode::LimitExceeded => 9,
            ErrorCode::NotFound => 10,
            ErrorCode::Internal => 11,
            ErrorCode::Other(v) => v,
        }
    }

    /// From the wire value; unknown values become [`ErrorCode::Other`].
    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => ErrorCode::Malformed,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::UnknownRequest,
            4 => ErrorCode::HelloRequired,
            5 => ErrorCode::BadTopicName,
            6 => ErrorCode::InvalidConfig,
            7 => ErrorCode::ConfigMismatch,
            8 => ErrorCode::PermissionDenied,
            9 => ErrorCode::LimitExceeded,
            10 => ErrorCode::NotFound,
            11 => ErrorCode::Internal,
            v => ErrorCode::Other(v),
        }
    }
}

/// What the broker answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Answer to [`Request::Hello`].
    Welcome {
        /// The version both sides now speak.
        version: u16,
        /// The broker's process id.
        broker_pid: u32,
        /// Id of this connection (for logs).
        client_id: u64,
    },
    /// Answer to [`Request::OpenTopic`].
    TopicOpened {
        /// The topic's config.
        config: TopicConfig,
        /// Whether this request created it.
        created: bool,
    },
    /// Answer to [`Request::AttachPublisher`]. Descriptors: the ring's data
    /// segment, lobby and desk, all read-write, and the publisher's end of
    /// the ring's channel, on which the broker sends [`Reply::PortAdded`] and
    /// [`Reply::PortRemoved`] (and bumps the ring's generation after each).
    PublisherAttached {
        /// Lease to give back with [`Request::Detach`].
        lease: u64,
        /// The new ring's id.
        ring_id: u64,
        /// The topic's config (what the ring was created with).
        config: TopicConfig,
    },
    /// Answer to [`Request::Subscribe`]. Descriptors: the topic segment
    /// (read-only), then for each ring in `rings` its data segment
    /// (read-only) and its lobby, then its port if [`RingRef::port`].
    Subscribed {
        /// Lease to give back with [`Request::Detach`].
        lease: u64,
        /// The topic's config, `None` until a publisher sets it.
        config: Option<TopicConfig>,
        /// The live rings, in id order.
        rings: Vec<RingRef>,
    },
    /// Answer to [`Request::SubscribePattern`]. Descriptors: the broker's
    /// directory segment (read-only: its generation moves whenever a topic
    /// is created or a ring becomes readable anywhere), then each topic's
    /// segment.
    PatternSubscribed {
        /// Lease to give back with [`Request::Detach`] (it ends every
        /// topic's subscription too).
        lease: u64,
        /// The first page of matched topics.
        topics: Vec<MatchedTopic>,
        /// Matched topics that could not be subscribed to.
        refused: Vec<RefusedTopic>,
        /// More matched topics wait: ask with [`Request::FetchMatches`].
        more: bool,
    },
    /// Answer to [`Request::FetchMatches`]. Descriptors: each topic's
    /// segment.
    Matches {
        /// Newly matched topics.
        topics: Vec<MatchedTopic>,
        /// Matched topics that could not be subscribed to.
        refused: Vec<RefusedTopic>,
        /// More wait.
        more: bool,
    },
    /// Answer to [`Request::FetchRings`]. Descriptors: for each ring its
    /// data segment (read-only) and lobby, then its port if
    /// [`RingRef::port`].
    Rings {
        /// The topic's config, `None` until a publisher sets it.
        config: Option<TopicConfig>,
        /// The rings with an id above the one asked, in id order.
        rings: Vec<RingRef>,
    },
    /// Answer to [`Request::RingReady`].
    Ready {
        /// The publisher's lease.
        lease: u64,
    },
    /// On a publisher's channel: a subscriber's new port. Descriptor: the
    /// port (read-write).
    PortAdded {
        /// The port's id within the ring.
        port_id: u64,
        /// Write its mailbox with every message.
        mailbox: bool,
        /// It may ask for the shared latest-message slot.
        trusted: bool,
    },
    /// On a publisher's channel: port `port_id`'s subscriber left or died.
    PortRemoved {
        /// The port's id within the ring.
        port_id: u64,
    },
    /// Answer to [`Request::Detach`].
    Detached {
        /// The lease given back.
        lease: u64,
    },
    /// Answer to [`Request::ListTopics`].
    Topics {
        /// Number of topics in all.
        total: u32,
        /// Index of the first topic in this page.
        offset: u32,
        /// At most [`MAX_TOPICS_PER_PAGE`] topics.
        topics: Vec<TopicInfo>,
    },
    /// Answer to [`Request::Stats`].
    Stats(BrokerStats),
    /// A page of the rings of a topic that have a journal.
    JournalRings {
        /// The topic's config, once known (a journal record holds at most
        /// its `max_message_size`).
        config: Option<TopicConfig>,
        /// Ring ids, ascending, each with the sequence number its ring
        /// ends at if its publisher has left and the broker still holds it
        /// (until its recorder has journaled the rest).
        rings: Vec<(u64, Option<u64>)>,
        /// Whether more rings follow (ask again after the last).
        more: bool,
    },
    /// Segment files of a ring's journal. Descriptors: one per base,
    /// read-only, in order.
    JournalSegments {
        /// The first sequence number of each segment (its name), ascending.
        bases: Vec<u64>,
        /// Whether more segments follow (ask again from after the last).
        more: bool,
    },
    /// A request failed; the connection stays usable unless the frame
    /// could not be decoded.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// What was wrong, for humans (at most 1 KiB).
        message: String,
    },
    /// Answer to [`Request::OpenGroup`]. Descriptor: the group's claim
    /// table (read-write).
    GroupOpened {
        /// This request created the group.
        created: bool,
    },
    /// Answer to [`Request::TakeOrphan`]: a range, with its port as the
    /// descriptor, or none left.
    Orphan {
        /// The range taken, if any.
        orphan: Option<OrphanRef>,
    },
}

/// Descriptors that accompany `rings`: two each, three with a port.
fn ring_fds(rings: &[RingRef]) -> usize {
    rings
        .iter()
        .map(|r| 2 + usize::from(r.port.is_some()))
        .sum()
}

impl Reply {
    /// An error reply; `message` is cut to [`MAX_ERROR_MESSAGE_LEN`] bytes
    /// (on a character boundary).
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Reply {
        let mut message = message.into();
        if message.len() > MAX_ERROR_MESSAGE_LEN {
            let mut cut = MAX_ERROR_MESSAGE_LEN;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        Reply::Error { code, message }
    }

    /// Number of descriptors that must accompany this reply.
    pub fn fd_count(&self) -> usize {
        match self {
            Reply::PublisherAttached { .. } => 4,
            Reply::Subscribed { rings, .. } => 1 + ring_fds(rings),
            Reply::Rings { rings, .. } => ring_fds(rings),
            Reply::PortAdded { .. } => 1,
            Reply::PatternSubscribed { topics, .. } => 1 + topics.len(),
            Reply::Matches { topics, .. } => topics.len(),
            Reply::JournalSegments { bases, .. } => bases.len(),
            Reply::GroupOpened { .. } => 1,
            Reply::Orphan { orphan } => usize::from(orphan.is_some()),
            _ => 0,
        }
    }
}
