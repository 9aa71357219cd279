//! Byte encoding of the control frames.
//!
//! A frame is one `SOCK_SEQPACKET` message:
//!
//! ```text
//! offset 0  u8[2]  magic "RB"
//!        2  u16    protocol version
//!        4  u16    frame type (requests < 0x80, replies >= 0x80)
//!        6  u16    reserved, 0
//!        8  u32    payload length (must equal frame length - 12)
//!       12  ...    payload
//! ```
//!
//! All integers are little-endian. A string is a `u16` length then UTF-8
//! bytes; a list is a `u16` count then its items; an option is a `u8` tag
//! (0 or 1) then the value. Every length is checked against both the bytes
//! left and a per-field bound before anything is allocated, so a hostile
//! frame costs at most [`MAX_FRAME`] bytes and returns a [`DecodeError`].
//! The header layout never changes between versions, so a peer can always
//! answer a frame of the wrong version with an error it understands.

use super::frame::*;
use super::name::{validate_pattern, validate_topic_name, MAX_GROUP_NAME_LEN, MAX_PATTERN_LEN};
use crate::ring::{Mode, Start};

/// Frame magic.
pub const MAGIC: [u8; 2] = *b"RB";
/// Bytes in the frame header.
pub const HEADER_LEN: usize = 12;
/// Largest frame either side sends or accepts (well under the default
/// socket buffer, so a reply always fits in one message).
pub const MAX_FRAME: usize = 64 * 1024;
/// Largest request frame the broker accepts (requests are small).
pub const MAX_REQUEST: usize = 12 * 1024;

mod kind {
    pub const HELLO: u16 = 0x01;
    pub const OPEN_TOPIC: u16 = 0x02;
    pub const ATTACH_PUBLISHER: u16 = 0x03;
    pub const SUBSCRIBE: u16 = 0x04;
    pub const FETCH_RINGS: u16 = 0x05;
    pub const DETACH: u16 = 0x06;
    pub const LIST_TOPICS: u16 = 0x07;
    pub const STATS: u16 = 0x08;
    pub const RING_READY: u16 = 0x09;
    pub const SUBSCRIBE_PATTERN: u16 = 0x0a;
    pub const FETCH_MATCHES: u16 = 0x0b;
    pub const JOURNAL_RINGS: u16 = 0x0c;
    pub const JOURNAL_SEGMENTS: u16 = 0x0d;
    pub const OPEN_GROUP: u16 = 0x0e;
    pub const TAKE_ORPHAN: u16 = 0x0f;

    pub const WELCOME: u16 = 0x81;
    pub const TOPIC_OPENED: u16 = 0x82;
    pub const PUBLISHER_ATTACHED: u16 = 0x83;
    pub const SUBSCRIBED: u16 = 0x84;
    pub const RINGS: u16 = 0x85;
    pub const DETACHED: u16 = 0x86;
    pub const TOPICS: u16 = 0x87;
    pub const STATS_REPLY: u16 = 0x88;
    pub const READY: u16 = 0x89;
    pub const PORT_ADDED: u16 = 0x8a;
    pub const PORT_REMOVED: u16 = 0x8b;
    pub const PATTERN_SUBSCRIBED: u16 = 0x8c;
    pub const MATCHES: u16 = 0x8d;
    pub const JOURNAL_RINGS_REPLY: u16 = 0x8e;
    pub const JOURNAL_SEGMENTS_REPLY: u16 = 0x8f;
    pub const GROUP_OPENED: u16 = 0x90;
    pub const ORPHAN: u16 = 0x91;
    pub const ERROR: u16 = 0xFF;
}

/// Why a frame could not be decoded. Each says what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than a header.
    #[error("frame truncated: {len} bytes, a header needs {HEADER_LEN}")]
    TruncatedHeader {
        /// Bytes received.
        len: usize,
    },
    /// Larger than the receiver accepts.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// Bytes received (or announced).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Does not start with `RB`.
    #[error("bad frame magic {0:02x?}: not a ringbus control frame")]
    BadMagic([u8; 2]),
    /// Another protocol version.
    #[error("protocol version {got} is not supported (this side speaks {supported})")]
    UnsupportedVersion {
        /// The frame's version.
        got: u16,
        /// The version spoken here.
        supported: u16,
    },
    /// Frame type unknown (or a reply where a request belongs).
    #[error("unknown frame type {0:#06x}")]
    UnknownKind(u16),
    /// The header's payload length disagrees with the frame's size.
    #[error("payload length field says {declared} bytes but {actual} arrived")]
    LengthMismatch {
        /// From the header.
        declared: u32,
        /// Actually present.
        actual: usize,
    },
    /// A field runs past the end of the frame.
    #[error("frame truncated while reading {field}")]
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// Bytes left after the last field.
    #[error("{0} unexpected bytes after the last field")]
    TrailingBytes(usize),
    /// A string or list longer than its bound.
    #[error("{field} has length {len}, the limit is {max}")]
    TooLong {
        /// The field.
        field: &'static str,
        /// Announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A string that is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    BadUtf8(&'static str),
    /// An enum or flag field with a value outside its range.
    #[error("{field} has invalid value {value}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// A topic name that breaks the naming rules.
    #[error("bad topic name: {0}")]
    BadTopicName(#[from] super::name::TopicNameError),
    /// A pattern that breaks the rules.
    #[error("bad pattern: {0}")]
    BadPattern(#[from] super::name::PatternError),
}

impl DecodeError {
    /// The error code a broker answers this decode error with.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            DecodeError::UnknownKind(_) => ErrorCode::UnknownRequest,
            DecodeError::BadTopicName(_) | DecodeError::BadPattern(_) => ErrorCode::BadTopicName,
            _ => ErrorCode::Malformed,
        }
    }
}

/// A frame could not be encoded (a field exceeds its bound). Senders build
/// frames from checked values, so this signals a bug or a misuse such as a
/// 300-byte topic name given to the client API.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode frame: {field} has length {len}, the limit is {max}")]
pub struct EncodeError {
    /// The field.
    pub field: &'static str,
    /// Its length.
    pub len: usize,
    /// The limit.
    pub max: usize,
}

// ---------------------------------------------------------------- writing

struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    fn new(kind: u16) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
        buf.extend_from_slice(&kind.to_le_bytes());
        buf.extend_from_slice(&0u16.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        Writer { buf }
    }
    fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    fn str(&mut self, field: &'static str, s: &str, max: usize) -> Result<(), EncodeError> {
        let len = s.len();
        if len > max {
            return Err(EncodeError { field, len, max });
        }
        self.u16(len as u16);
        self.buf.extend_from_slice(s.as_bytes());
        Ok(())
    }
    fn count(&mut self, field: &'static str, len: usize, max: usize) -> Result<(), EncodeError> {
        if len > max {
            return Err(EncodeError { field, len, max });
        }
        self.u16(len as u16);
        Ok(())
    }
    fn config(&mut self, c: &TopicConfig) {
        self.u32(c.max_message_size);
        self.u32(c.capacity);
        self.u8(match c.mode {
            Mode::Overwrite => 0,
            Mode::Backpressure => 1,
        });
        self.u32(c.max_subscribers);
    }
    fn opt_config(&mut self, c: &Option<TopicConfig>) {
        match c {
            None => self.u8(0),
            Some(c) => {
                self.u8(1);
                self.config(c);
            }
        }
    }
    fn ring_ref(&mut self, r: &RingRef) {
        self.u64(r.ring_id);
        self.u32(r.publisher_pid);
        match r.port {
            None => {
                self.u8(0);
                self.u64(0);
                self.u8(0);
            }
            Some(p) => {
                self.u8(1);
                self.u64(p.port_id);
                self.u8(u8::from(p.mailbox));
            }
        }
    }
    fn held(&mut self, held: &[(u64, u64)]) -> Result<(), EncodeError> {
        self.count("held ports", held.len(), MAX_HELD_PORTS)?;
        for (ring, port) in held {
            self.u64(*ring);
            self.u64(*port);
        }
        Ok(())
    }
    fn matches(
        &mut self,
        topics: &[MatchedTopic],
        refused: &[RefusedTopic],
        more: bool,
    ) -> Result<(), EncodeError> {
        self.count("topics", topics.len(), MAX_MATCHES_PER_PAGE)?;
        for t in topics {
            self.str("topic", &t.name, MAX_TOPIC_LEN)?;
            self.u64(t.lease);
            self.opt_config(&t.config);
        }
        self.count("refused", refused.len(), MAX_MATCHES_PER_PAGE)?;
        for t in refused {
            self.str("topic", &t.name, MAX_TOPIC_LEN)?;
            self.str("reason", &t.reason, MAX_ERROR_MESSAGE_LEN)?;
        }
        self.u8(u8::from(more));
        Ok(())
    }
    fn start(&mut self, s: &Start) {
        let (k, v) = match *s {
            Start::Latest => (0, 0),
            Start::Earliest => (1, 0),
            Start::Sequence(n) => (2, n),
            Start::Time(ns) => (3, ns),
        };
        self.u8(k);
        self.u64(v);
    }
    fn finish(mut self) -> Result<Vec<u8>, EncodeError> {
        let len = self.buf.len();
        if len > MAX_FRAME {
            return Err(EncodeError {
                field: "frame",
                len,
                max: MAX_FRAME,
            });
        }
        let payload = (len - HEADER_LEN) as u32;
        self.buf[8..12].copy_from_slice(&payload.to_le_bytes());
        Ok(self.buf)
    }
}

/// Encodes a request.
///
/// # Errors
/// A string or list exceeds its bound.
pub fn encode_request(req: &Request) -> Result<Vec<u8>, EncodeError> {
    let mut w;
    match req {
        Request::Hello {
            min_version,
            max_version,
            name,
        } => {
            w = Writer::new(kind::HELLO);
            w.u16(*min_version);
            w.u16(*max_version);
            w.str("client name", name, MAX_CLIENT_NAME_LEN)?;
        }
        Request::OpenTopic { topic, config } => {
            w = Writer::new(kind::OPEN_TOPIC);
            w.str("topic", topic, MAX_TOPIC_LEN)?;
            w.config(config);
        }
        Request::AttachPublisher { topic, config } => {
            w = Writer::new(kind::ATTACH_PUBLISHER);
            w.str("topic", topic, MAX_TOPIC_LEN)?;
            w.opt_config(config);
        }
        Request::Subscribe { topic, start, held } => {
            w = Writer::new(kind::SUBSCRIBE);
            w.str("topic", topic, MAX_TOPIC_LEN)?;
            w.start(start);
            w.held(held)?;
        }
        Request::SubscribePattern {
            pattern,
            start,
            held,
        } => {
            w = Writer::new(kind::SUBSCRIBE_PATTERN);
            w.str("pattern", pattern, MAX_PATTERN_LEN)?;
            w.start(start);
            w.held(held)?;
        }
        Request::FetchMatches { lease } => {
            w = Writer::new(kind::FETCH_MATCHES);
            w.u64(*lease);
        }
        Request::FetchRings { lease, after } => {
            w = Writer::new(kind::FETCH_RINGS);
            w.u64(*lease);
            w.u64(*after);
        }
        Request::RingReady { lease } => {
            w = Writer::new(kind::RING_READY);
            w.u64(*lease);
        }
        Request::Detach { lease } => {
            w = Writer::new(kind::DETACH);
            w.u64(*lease);
        }
        Request::ListTopics { offset } => {
            w = Writer::new(kind::LIST_TOPICS);
            w.u32(*offset);
        }
        Request::Stats => w = Writer::new(kind::STATS),
        Request::JournalRings { topic, after } => {
            w = Writer::new(kind::JOURNAL_RINGS);
            w.str("topic", topic, MAX_TOPIC_LEN)?;
            w.u64(*after);
        }
        Request::JournalSegments {
            topic,
            ring_id,
            from_seq,
        } => {
            w = Writer::new(kind::JOURNAL_SEGMENTS);
            w.str("topic", topic, MAX_TOPIC_LEN)?;
            w.u64(*ring_id);
            w.u64(*from_seq);
        }
        Request::OpenGroup {
            topic,
            group,
            max_deliveries,
            lease,
        } => {
            w = Writer::new(kind::OPEN_GROUP);
            w.str("topic", topic, MAX_TOPIC_LEN)?;
            w.str("group", group, MAX_GROUP_NAME_LEN)?;
            w.u32(*max_deliveries);
            w.u64(*lease);
        }
        Request::TakeOrphan {
            topic,
            group,
            lease,
        } => {
            w = Writer::new(kind::TAKE_ORPHAN);
            w.str("topic", topic, MAX_TOPIC_LEN)?;
            w.str("group", group, MAX_GROUP_NAME_LEN)?;
            w.u64(*lease);
        }
    }
    w.finish()
}

/// Encodes a reply.
///
/// # Errors
/// A string or list exceeds its bound.
pub fn encode_reply(reply: &Reply) -> Result<Vec<u8>, EncodeError> {
    let mut w;
    match reply {
        Reply::Welcome {
            version,
            broker_pid,
            client_id,
        } => {
            w = Writer::new(kind::WELCOME);
            w.u16(*version);
            w.u32(*broker_pid);
            w.u64(*client_id);
        }
        Reply::TopicOpened { config, created } => {
            w = Writer::new(kind::TOPIC_OPENED);
            w.config(config);
            w.u8(u8::from(*created));
        }
        Reply::PublisherAttached {
            lease,
            ring_id,
            config,
        } => {
            w = Writer::new(kind::PUBLISHER_ATTACHED);
            w.u64(*lease);
            w.u64(*ring_id);
            w.config(config);
        }
        Reply::Subscribed {
            lease,
            config,
            rings,
        } => {
            w = Writer::new(kind::SUBSCRIBED);
            w.u64(*lease);
            w.opt_config(config);
            w.count("rings", rings.len(), MAX_RINGS_PER_TOPIC)?;
            rings.iter().for_each(|r| w.ring_ref(r));
        }
        Reply::Rings { config, rings } => {
            w = Writer::new(kind::RINGS);
            w.opt_config(config);
            w.count("rings", rings.len(), MAX_RINGS_PER_TOPIC)?;
            rings.iter().for_each(|r| w.ring_ref(r));
        }
        Reply::Detached { lease } => {
            w = Writer::new(kind::DETACHED);
            w.u64(*lease);
        }
        Reply::PatternSubscribed {
            lease,
            topics,
            refused,
            more,
        } => {
            w = Writer::new(kind::PATTERN_SUBSCRIBED);
            w.u64(*lease);
            w.matches(topics, refused, *more)?;
        }
        Reply::Matches {
            topics,
            refused,
            more,
        } => {
            w = Writer::new(kind::MATCHES);
            w.matches(topics, refused, *more)?;
        }
        Reply::Ready { lease } => {
            w = Writer::new(kind::READY);
            w.u64(*lease);
        }
        Reply::GroupOpened { created } => {
            w = Writer::new(kind::GROUP_OPENED);
            w.u8(u8::from(*created));
        }
        Reply::Orphan { orphan } => {
            w = Writer::new(kind::ORPHAN);
            match orphan {
                None => w.u8(0),
                Some(o) => {
                    w.u8(1);
                    w.u64(o.ring_id);
                    w.u64(o.port_id);
                    w.u64(o.to);
                    w.u32(o.deliveries);
                }
            }
        }
        Reply::PortAdded {
            port_id,
            mailbox,
            trusted,
        } => {
            w = Writer::new(kind::PORT_ADDED);
            w.u64(*port_id);
            w.u8(u8::from(*mailbox));
            w.u8(u8::from(*trusted));
        }
        Reply::PortRemoved { port_id } => {
            w = Writer::new(kind::PORT_REMOVED);
            w.u64(*port_id);
        }
        Reply::Topics {
            total,
            offset,
            topics,
        } => {
            w = Writer::new(kind::TOPICS);
            w.u32(*total);
            w.u32(*offset);
            w.count("topics", topics.len(), MAX_TOPICS_PER_PAGE)?;
            for t in topics {
                w.str("topic", &t.name, MAX_TOPIC_LEN)?;
                w.opt_config(&t.config);
                w.u32(t.publishers);
                w.u32(t.subscribers);
                w.count("rings", t.rings.len(), MAX_RINGS_PER_TOPIC)?;
                for r in &t.rings {
                    w.u64(r.ring_id);
                    w.u32(r.publisher_pid);
                    w.u8(u8::from(r.closed));
                    w.u64(r.next_seq);
                    w.u32(r.cursors);
                    match r.min_cursor {
                        None => w.u8(0),
                        Some(c) => {
                            w.u8(1);
                            w.u64(c);
                        }
                    }
                    w.u64(r.dropped);
                    w.u64(r.upstream_lost);
                    w.u64(r.bytes);
                    w.u32(r.sampled);
                    w.u64(r.sampled_bytes);
                    w.count("ports", r.ports.len(), MAX_PORTS_LISTED)?;
                    for p in &r.ports {
                        w.u32(p.pid);
                        w.u64(p.pos.unwrap_or(u64::MAX));
                        w.u64(p.delivered);
                        w.u64(p.filtered);
                        w.u64(p.dropped);
                    }
                }
                match &t.journal {
                    None => w.u8(0),
                    Some(j) => {
                        w.u8(1);
                        w.u64(j.recorded);
                        w.u64(j.lost);
                        w.u64(j.errors);
                        w.u64(j.bytes);
                        w.u64(j.segments);
                        w.u64(j.corrupt);
                        w.u64(j.damaged_segments);
                    }
                }
                w.count("groups", t.groups.len(), MAX_GROUPS_LISTED)?;
                for g in &t.groups {
                    w.str("group", &g.name, MAX_GROUP_NAME_LEN)?;
                    w.u32(g.members);
                    w.u64(g.claimed);
                    w.u64(g.acknowledged);
                    w.u64(g.backlog);
                    w.u64(g.redelivered);
                    w.u64(g.dead_lettered);
                }
            }
        }
        Reply::Stats(s) => {
            w = Writer::new(kind::STATS_REPLY);
            w.u32(s.pid);
            w.u64(s.uptime_ms);
            w.u32(s.clients);
            w.u32(s.topics);
            w.u32(s.rings);
            w.u32(s.publishers);
            w.u32(s.subscribers);
            w.u64(s.frames_received);
            w.u64(s.frames_rejected);
            w.u64(s.permission_denied);
            w.u64(s.clients_reaped);
            w.u64(s.ring_bytes);
        }
        Reply::JournalRings {
            config,
            rings,
            more,
        } => {
            w = Writer::new(kind::JOURNAL_RINGS_REPLY);
            w.opt_config(config);
            w.count("journal rings", rings.len(), MAX_JOURNAL_RINGS)?;
            for (id, end) in rings {
                w.u64(*id);
                w.u8(u8::from(end.is_some()));
                w.u64(end.unwrap_or(0));
            }
            w.u8(u8::from(*more));
        }
        Reply::JournalSegments { bases, more } => {
            w = Writer::new(kind::JOURNAL_SEGMENTS_REPLY);
            w.count("journal segments", bases.len(), MAX_JOURNAL_SEGMENTS)?;
            bases.iter().for_each(|b| w.u64(*b));
            w.u8(u8::from(*more));
        }
        Reply::Error { code, message } => {
            w = Writer::new(kind::ERROR);
            w.u16(code.to_u16());
            w.str("error message", message, MAX_ERROR_MESSAGE_LEN)?;
        }
    }
    w.finish()
}

// ---------------------------------------------------------------- reading

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(DecodeError::Truncated { field })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, field)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, field)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::BadValue {
                field,
                value: u64::from(v),
            }),
        }
    }
    fn str(&mut self, field: &'static str, max: usize) -> Result<String, DecodeError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        let b = self.take(len, field)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| DecodeError::BadUtf8(field))
    }
    fn topic(&mut self) -> Result<String, DecodeError> {
        let t = self.str("topic", MAX_TOPIC_LEN)?;
        validate_topic_name(&t)?;
        Ok(t)
    }
    /// A list count, bounded by `max` and by the bytes left (each item is
    /// at least `min_item` bytes), so no hostile count allocates.
    fn count(
        &mut self,
        field: &'static str,
        max: usize,
        min_item: usize,
    ) -> Result<usize, DecodeError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(DecodeError::TooLong { field, len, max });
        }
        if len * min_item > self.buf.len() - self.pos {
            return Err(DecodeError::Truncated { field });
        }
        Ok(len)
    }
    fn config(&mut self) -> Result<TopicConfig, DecodeError> {
        let max_message_size = self.u32("max_message_size")?;
        let capacity = self.u32("capacity")?;
        let mode = match self.u8("mode")? {
            0 => Mode::Overwrite,
            1 => Mode::Backpressure,
            v => {
                return Err(DecodeError::BadValue {
                    field: "mode",
                    value: u64::from(v),
                })
            }
        };
        let max_subscribers = self.u32("max_subscribers")?;
        Ok(TopicConfig {
            max_message_size,
            capacity,
            mode,
            max_subscribers,
        })
    }
    fn opt_config(&mut self) -> Result<Option<TopicConfig>, DecodeError> {
        Ok(if self.bool("config present")? {
            Some(self.config()?)
        } else {
            None
        })
    }
    fn ring_ref(&mut self) -> Result<RingRef, DecodeError> {
        let ring_id = self.u64("ring_id")?;
        let publisher_pid = self.u32("publisher_pid")?;
        let has_port = self.bool("port present")?;
        let port_id = self.u64("port_id")?;
        let mailbox = self.bool("mailbox")?;
        // Without a port its fields are zeros: one encoding per value.
        if !has_port && (port_id != 0 || mailbox) {
            return Err(DecodeError::BadValue {
                field: "port_id of a ring listed without a port",
                value: port_id.max(u64::from(mailbox)),
            });
        }
        Ok(RingRef {
            ring_id,
            publisher_pid,
            port: has_port.then_some(PortRef { port_id, mailbox }),
        })
    }
    fn held(&mut self) -> Result<Vec<(u64, u64)>, DecodeError> {
        let n = self.count("held ports", MAX_HELD_PORTS, 16)?;
        (0..n)
            .map(|_| Ok((self.u64("held ring")?, self.u64("held port")?)))
            .collect()
    }
    fn matches(&mut self) -> Result<(Vec<MatchedTopic>, Vec<RefusedTopic>, bool), DecodeError> {
        let n = self.count("topics", MAX_MATCHES_PER_PAGE, 12)?;
        let topics = (0..n)
            .map(|_| {
                Ok(MatchedTopic {
                    name: self.topic()?,
                    lease: self.u64("lease")?,
                    config: self.opt_config()?,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        let n = self.count("refused", MAX_MATCHES_PER_PAGE, 5)?;
        let refused = (0..n)
            .map(|_| {
                Ok(RefusedTopic {
                    name: self.topic()?,
                    reason: self.str("reason", MAX_ERROR_MESSAGE_LEN)?,
                })
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok((topics, refused, self.bool("more")?))
    }
    fn ring_refs(&mut self) -> Result<Vec<RingRef>, DecodeError> {
        let n = self.count("rings", MAX_RINGS_PER_TOPIC, 22)?;
        (0..n).map(|_| self.ring_ref()).collect()
    }
    fn start(&mut self) -> Result<Start, DecodeError> {
        let k = self.u8("start kind")?;
        let v = self.u64("start sequence")?;
        match k {
            // Only a sequence start carries a number: one encoding per value.
            0 | 1 if v != 0 => Err(DecodeError::BadValue {
                field: "start sequence (of a start that takes none)",
                value: v,
            }),
            0 => Ok(Start::Latest),
            1 => Ok(Start::Earliest),
            2 => Ok(Start::Sequence(v)),
            3 => Ok(Start::Time(v)),
            k => Err(DecodeError::BadValue {
                field: "start kind",
                value: u64::from(k),
            }),
        }
    }
    /// A list of strictly ascending `u64`s (one encoding per set).
    fn ascending(&mut self, field: &'static str, max: usize) -> Result<Vec<u64>, DecodeError> {
        let n = self.count(field, max, 8)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let x = self.u64(field)?;
            if v.last().is_some_and(|&last| x <= last) {
                return Err(DecodeError::BadValue {
                    field: "a list that must ascend",
                    value: x,
                });
            }
            v.push(x);
        }
        Ok(v)
    }
    fn journal_rings(&mut self) -> Result<Vec<(u64, Option<u64>)>, DecodeError> {
        let n = self.count("journal rings", MAX_JOURNAL_RINGS, 17)?;
        let mut v: Vec<(u64, Option<u64>)> = Vec::with_capacity(n);
        for _ in 0..n {
            let id = self.u64("journal ring")?;
            if v.last().is_some_and(|&(last, _)| id <= last) {
                return Err(DecodeError::BadValue {
                    field: "a list that must ascend",
                    value: id,
                });
            }
            let ended = self.bool("journal ring ended")?;
            let end = self.u64("journal ring end")?;
            if !ended && end != 0 {
                return Err(DecodeError::BadValue {
                    field: "end of a ring that has not ended",
                    value: end,
                });
            }
            v.push((id, ended.then_some(end)));
        }
        Ok(v)
    }
    fn end(&self) -> Result<(), DecodeError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// Checks the header and returns the frame type and a reader over the
/// payload.
fn open(frame: &[u8], max: usize) -> Result<(u16, Reader<'_>), DecodeError> {
    if frame.len() > max {
        return Err(DecodeError::Oversized {
            len: frame.len(),
            max,
        });
    }
    if frame.len() < HEADER_LEN {
        return Err(DecodeError::TruncatedHeader { len: frame.len() });
    }
    let magic = [frame[0], frame[1]];
    if magic != MAGIC {
        return Err(DecodeError::BadMagic(magic));
    }
    let version = u16::from_le_bytes([frame[2], frame[3]]);
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            got: version,
            supported: PROTOCOL_VERSION,
        });
    }
    let kind = u16::from_le_bytes([frame[4], frame[5]]);
    let reserved = u16::from_le_bytes([frame[6], frame[7]]);
    if reserved != 0 {
        return Err(DecodeError::BadValue {
            field: "reserved header field",
            value: u64::from(reserved),
        });
    }
    let declared = u32::from_le_bytes([frame[8], frame[9], frame[10], frame[11]]);
    let actual = frame.len() - HEADER_LEN;
    if declared as usize != actual {
        return Err(DecodeError::LengthMismatch { declared, actual });
    }
    Ok((
        kind,
        Reader {
            buf: frame,
            pos: HEADER_LEN,
        },
    ))
}

/// Decodes a request (the broker's side). Never panics, whatever the bytes.
///
/// # Errors
/// [`DecodeError`] says what was wrong with the frame.
pub fn decode_request(frame: &[u8]) -> Result<Request, DecodeError> {
    let (k, mut r) = open(frame, MAX_REQUEST)?;
    let req = match k {
        kind::HELLO => Request::Hello {
            min_version: r.u16("min_version")?,
            max_version: r.u16("max_version")?,
            name: r.str("client name", MAX_CLIENT_NAME_LEN)?,
        },
        kind::OPEN_TOPIC => Request::OpenTopic {
            topic: r.topic()?,
            config: r.config()?,
        },
        kind::ATTACH_PUBLISHER => Request::AttachPublisher {
            topic: r.topic()?,
            config: r.opt_config()?,
        },
        kind::SUBSCRIBE => Request::Subscribe {
            topic: r.topic()?,
            start: r.start()?,
            held: r.held()?,
        },
        kind::SUBSCRIBE_PATTERN => {
            let pattern = r.str("pattern", MAX_PATTERN_LEN)?;
            validate_pattern(&pattern)?;
            Request::SubscribePattern {
                pattern,
                start: r.start()?,
                held: r.held()?,
            }
        }
        kind::FETCH_MATCHES => Request::FetchMatches {
            lease: r.u64("lease")?,
        },
        kind::FETCH_RINGS => Request::FetchRings {
            lease: r.u64("lease")?,
            after: r.u64("after")?,
        },
        kind::DETACH => Request::Detach {
            lease: r.u64("lease")?,
        },
        kind::RING_READY => Request::RingReady {
            lease: r.u64("lease")?,
        },
        kind::LIST_TOPICS => Request::ListTopics {
            offset: r.u32("offset")?,
        },
        kind::STATS => Request::Stats,
        kind::JOURNAL_RINGS => Request::JournalRings {
            topic: r.topic()?,
            after: r.u64("after")?,
        },
        kind::JOURNAL_SEGMENTS => Request::JournalSegments {
            topic: r.topic()?,
            ring_id: r.u64("ring_id")?,
            from_seq: r.u64("from_seq")?,
        },
        kind::OPEN_GROUP => Request::OpenGroup {
            topic: r.topic()?,
            group: r.str("group", MAX_GROUP_NAME_LEN)?,
            max_deliveries: r.u32("max_deliveries")?,
            lease: r.u64("lease")?,
        },
        kind::TAKE_ORPHAN => Request::TakeOrphan {
            topic: r.topic()?,
            group: r.str("group", MAX_GROUP_NAME_LEN)?,
            lease: r.u64("lease")?,
        },
        other => return Err(DecodeError::UnknownKind(other)),
    };
    r.end()?;
    Ok(req)
}

/// Decodes a reply (the client's side). Never panics, whatever the bytes.
///
/// # Errors
/// [`DecodeError`] says what was wrong with the frame.
pub fn decode_reply(frame: &[u8]) -> Result<Reply, DecodeError> {
    let (k, mut r) = open(frame, MAX_FRAME)?;
    let reply = match k {
        kind::WELCOME => Reply::Welcome {
            version: r.u16("version")?,
            broker_pid: r.u32("broker_pid")?,
            client_id: r.u64("client_id")?,
        },
        kind::TOPIC_OPENED => Reply::TopicOpened {
            config: r.config()?,
            created: r.bool("created")?,
        },
        kind::PUBLISHER_ATTACHED => Reply::PublisherAttached {
            lease: r.u64("lease")?,
            ring_id: r.u64("ring_id")?,
            config: r.config()?,
        },
        kind::SUBSCRIBED => Reply::Subscribed {
            lease: r.u64("lease")?,
            config: r.opt_config()?,
            rings: r.ring_refs()?,
        },
        kind::RINGS => Reply::Rings {
            config: r.opt_config()?,
            rings: r.ring_refs()?,
        },
        kind::DETACHED => Reply::Detached {
            lease: r.u64("lease")?,
        },
        kind::PATTERN_SUBSCRIBED => {
            let lease = r.u64("lease")?;
            let (topics, refused, more) = r.matches()?;
            Reply::PatternSubscribed {
                lease,
                topics,
                refused,
                more,
            }
        }
        kind::MATCHES => {
            let (topics, refused, more) = r.matches()?;
            Reply::Matches {
                topics,
                refused,
                more,
            }
        }
        kind::READY => Reply::Ready {
            lease: r.u64("lease")?,
        },
        kind::GROUP_OPENED => Reply::GroupOpened {
            created: r.bool("created")?,
        },
        kind::ORPHAN => Reply::Orphan {
            orphan: match r.bool("orphan")? {
                false => None,
                true => Some(OrphanRef {
                    ring_id: r.u64("ring_id")?,
                    port_id: r.u64("port_id")?,
                    to: r.u64("to")?,
                    deliveries: r.u32("deliveries")?,
                }),
            },
        },
        kind::PORT_ADDED => Reply::PortAdded {
            port_id: r.u64("port_id")?,
            mailbox: r.bool("mailbox")?,
            trusted: r.bool("trusted")?,
        },
        kind::PORT_REMOVED => Reply::PortRemoved {
            port_id: r.u64("port_id")?,
        },
        kind::TOPICS => {
            let total = r.u32("total")?;
            let offset = r.u32("offset")?;
            let n = r.count("topics", MAX_TOPICS_PER_PAGE, 14)?;
            let mut topics = Vec::with_capacity(n);
            for _ in 0..n {
                let name = r.topic()?;
                let config = r.opt_config()?;
                let publishers = r.u32("publishers")?;
                let subscribers = r.u32("subscribers")?;
                let nr = r.count("rings", MAX_RINGS_PER_TOPIC, 62)?;
                let mut rings = Vec::with_capacity(nr);
                for _ in 0..nr {
                    rings.push(RingInfo {
                        ring_id: r.u64("ring_id")?,
                        publisher_pid: r.u32("publisher_pid")?,
                        closed: r.bool("closed")?,
                        next_seq: r.u64("next_seq")?,
                        cursors: r.u32("cursors")?,
                        min_cursor: if r.bool("min_cursor present")? {
                            Some(r.u64("min_cursor")?)
                        } else {
                            None
                        },
                        dropped: r.u64("dropped")?,
                        upstream_lost: r.u64("upstream_lost")?,
                        bytes: r.u64("bytes")?,
                        sampled: r.u32("sampled")?,
                        sampled_bytes: r.u64("sampled_bytes")?,
                        ports: {
                            let np = r.count("ports", MAX_PORTS_LISTED, 36)?;
                            (0..np)
                                .map(|_| {
                                    Ok(PortInfo {
                                        pid: r.u32("port pid")?,
                                        pos: Some(r.u64("port pos")?).filter(|&p| p != u64::MAX),
                                        delivered: r.u64("delivered")?,
                                        filtered: r.u64("filtered")?,
                                        dropped: r.u64("port dropped")?,
                                    })
                                })
                                .collect::<Result<_, DecodeError>>()?
                        },
                    });
                }
                let journal = match r.bool("journal present")? {
                    false => None,
                    true => Some(JournalCounters {
                        recorded: r.u64("journal recorded")?,
                        lost: r.u64("journal lost")?,
                        errors: r.u64("journal errors")?,
                        bytes: r.u64("journal bytes")?,
                        segments: r.u64("journal segments")?,
                        corrupt: r.u64("journal corrupt")?,
                        damaged_segments: r.u64("journal damaged segments")?,
                    }),
                };
                let ng = r.count("groups", MAX_GROUPS_LISTED, 2 + 4 + 5 * 8)?;
                let groups = (0..ng)
                    .map(|_| {
                        Ok(GroupInfo {
                            name: r.str("group", MAX_GROUP_NAME_LEN)?,
                            members: r.u32("group members")?,
                            claimed: r.u64("group claimed")?,
                            acknowledged: r.u64("group acknowledged")?,
                            backlog: r.u64("group backlog")?,
                            redelivered: r.u64("group redelivered")?,
                            dead_lettered: r.u64("group dead-lettered")?,
                        })
                    })
                    .collect::<Result<Vec<_>, DecodeError>>()?;
                topics.push(TopicInfo {
                    name,
                    config,
                    publishers,
                    subscribers,
                    rings,
                    journal,
                    groups,
                });
            }
            Reply::Topics {
                total,
                offset,
                topics,
            }
        }
        kind::STATS_REPLY => Reply::Stats(BrokerStats {
            pid: r.u32("pid")?,
            uptime_ms: r.u64("uptime_ms")?,
            clients: r.u32("clients")?,
            topics: r.u32("topics")?,
            rings: r.u32("rings")?,
            publishers: r.u32("publishers")?,
            subscribers: r.u32("subscribers")?,
            frames_received: r.u64("frames_received")?,
            frames_rejected: r.u64("frames_rejected")?,
            permission_denied: r.u64("permission_denied")?,
            clients_reaped: r.u64("clients_reaped")?,
            ring_bytes: r.u64("ring_bytes")?,
        }),
        kind::JOURNAL_RINGS_REPLY => Reply::JournalRings {
            config: r.opt_config()?,
            rings: r.journal_rings()?,
            more: r.bool("more")?,
        },
        kind::JOURNAL_SEGMENTS_REPLY => Reply::JournalSegments {
            bases: r.ascending("journal segments", MAX_JOURNAL_SEGMENTS)?,
            more: r.bool("more")?,
        },
        kind::ERROR => Reply::Error {
            code: ErrorCode::from_u16(r.u16("error code")?),
            message: r.str("error message", MAX_ERROR_MESSAGE_LEN)?,
        },
        other => return Err(DecodeError::UnknownKind(other)),
    };
    r.end()?;
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> TopicConfig {
        TopicConfig {
            max_message_size: 100,
            capacity: 64,
            mode: Mode::Backpressure,
            max_subscribers: 4,
        }
    }

    fn requests() -> Vec<Request> {
        vec![
            Request::Hello {
                min_version: 1,
                max_version: 3,
                name: "x".into(),
            },
            Request::OpenTopic {
                topic: "a.b".into(),
                config: cfg(),
            },
            Request::AttachPublisher {
                topic: "a".into(),
                config: None,
            },
            Request::AttachPublisher {
                topic: "a".into(),
                config: Some(cfg()),
            },
            Request::Subscribe {
                topic: "t".into(),
                start: Start::Latest,
                held: vec![],
            },
            Request::Subscribe {
                topic: "t".into(),
                start: Start::Earliest,
                held: vec![],
            },
            Request::Subscribe {
                topic: "t".into(),
                start: Start::Sequence(u64::MAX),
                held: vec![(1, 2), (u64::MAX, 0)],
            },
            Request::FetchRings { lease: 7, after: 9 },
            Request::RingReady { lease: 8 },
            Request::SubscribePattern {
                pattern: "md.*.>".into(),
                start: Start::Earliest,
                held: vec![(3, 4)],
            },
            Request::FetchMatches { lease: 2 },
            Request::Detach { lease: u64::MAX },
            Request::ListTopics { offset: 3 },
            Request::Stats,
            Request::Subscribe {
                topic: "d.t".into(),
                start: Start::Time(1_733_000_000_000_000_000),
                held: vec![],
            },
            Request::JournalRings {
                topic: "d.t".into(),
                after: 5,
            },
            Request::JournalSegments {
                topic: "d.t".into(),
                ring_id: 9,
                from_seq: u64::MAX,
            },
            Request::OpenGroup {
                topic: "t".into(),
                group: "workers".into(),
                max_deliveries: 5,
                lease: 7,
            },
            Request::TakeOrphan {
                topic: "t".into(),
                group: "workers".into(),
                lease: u64::MAX,
            },
        ]
    }

    fn replies() -> Vec<Reply> {
        let ring = RingInfo {
            ring_id: 1,
            publisher_pid: 2,
            closed: true,
            next_seq: 3,
            cursors: 1,
            min_cursor: Some(2),
            dropped: 5,
            upstream_lost: 6,
            bytes: 4096,
            sampled: 3,
            sampled_bytes: 300,
            ports: vec![
                PortInfo {
                    pid: 9,
                    pos: Some(3),
                    delivered: 2,
                    filtered: 1,
                    dropped: 0,
                },
                PortInfo {
                    pid: 10,
                    pos: None,
                    delivered: 0,
                    filtered: 0,
                    dropped: 7,
                },
            ],
        };
        vec![
            Reply::Welcome {
                version: 1,
                broker_pid: 5,
                client_id: 6,
            },
            Reply::TopicOpened {
                config: cfg(),
                created: true,
            },
            Reply::PublisherAttached {
                lease: 1,
                ring_id: 2,
                config: cfg(),
            },
            Reply::Subscribed {
                lease: 1,
                config: None,
                rings: vec![
                    RingRef {
                        ring_id: 4,
                        publisher_pid: 9,
                        port: None,
                    },
                    RingRef {
                        ring_id: 5,
                        publisher_pid: 9,
                        port: Some(PortRef {
                            port_id: 3,
                            mailbox: true,
                        }),
                    },
                ],
            },
            Reply::Rings {
                config: Some(cfg()),
                rings: vec![],
            },
            Reply::Detached { lease: 3 },
            Reply::Ready { lease: 3 },
            Reply::GroupOpened { created: true },
            Reply::Orphan { orphan: None },
            Reply::Orphan {
                orphan: Some(OrphanRef {
                    ring_id: 1,
                    port_id: 2,
                    to: u64::MAX,
                    deliveries: 3,
                }),
            },
            Reply::PatternSubscribed {
                lease: 4,
                topics: vec![MatchedTopic {
                    name: "md.a".into(),
                    lease: 5,
                    config: Some(cfg()),
                }],
                refused: vec![RefusedTopic {
                    name: "md.b".into(),
                    reason: "no".into(),
                }],
                more: true,
            },
            Reply::Matches {
                topics: vec![],
                refused: vec![],
                more: false,
            },
            Reply::PortAdded {
                port_id: 7,
                mailbox: true,
                trusted: false,
            },
            Reply::PortRemoved { port_id: u64::MAX },
            Reply::Topics {
                total: 1,
                offset: 0,
                topics: vec![TopicInfo {
                    name: "x.y".into(),
                    config: Some(cfg()),
                    publishers: 1,
                    subscribers: 2,
                    rings: vec![
                        ring.clone(),
                        RingInfo {
                            min_cursor: None,
                            ..ring
                        },
                    ],
                    journal: Some(JournalCounters {
                        recorded: 9,
                        lost: 1,
                        errors: 2,
                        bytes: 4096,
                        segments: 3,
                        corrupt: 4,
                        damaged_segments: 5,
                    }),
                    groups: vec![
                        GroupInfo {
                            name: "workers".into(),
                            members: 3,
                            claimed: 100,
                            acknowledged: 90,
                            backlog: 7,
                            redelivered: 4,
                            dead_lettered: 1,
                        },
                        GroupInfo::default(),
                    ],
                }],
            },
            Reply::Stats(BrokerStats {
                pid: 1,
                ring_bytes: 77,
                ..Default::default()
            }),
            Reply::JournalRings {
                config: Some(TopicConfig::default()),
                rings: vec![(1, None), (7, Some(0)), (u64::MAX, Some(u64::MAX))],
                more: true,
            },
            Reply::JournalSegments {
                bases: vec![0, 4096, u64::MAX],
                more: false,
            },
            Reply::error(ErrorCode::ConfigMismatch, "nope"),
            Reply::error(ErrorCode::Other(999), ""),
        ]
    }

    #[test]
    fn round_trips() {
        for req in requests() {
            let bytes = encode_request(&req).unwrap();
            assert_eq!(decode_request(&bytes).unwrap(), req);
            // Every strict prefix is rejected, never accepted or panicking.
            for cut in 0..bytes.len() {
                assert!(decode_request(&bytes[..cut]).is_err());
            }
        }
        for reply in replies() {
            let bytes = encode_reply(&reply).unwrap();
            assert_eq!(decode_reply(&bytes).unwrap(), reply);
            for cut in 0..bytes.len() {
                assert!(decode_reply(&bytes[..cut]).is_err());
            }
        }
    }

    #[test]
    fn typed_errors() {
        let good = encode_request(&Request::Stats).unwrap();
        let mut v = good.clone();
        v[2] = 9;
        assert_eq!(
            decode_request(&v),
            Err(DecodeError::UnsupportedVersion {
                got: 9,
                supported: PROTOCOL_VERSION
            })
        );
        let mut v = good.clone();
        v[4] = 0x77;
        assert_eq!(decode_request(&v), Err(DecodeError::UnknownKind(0x77)));
        let mut v = good.clone();
        v[0] = b'X';
        assert!(matches!(decode_request(&v), Err(DecodeError::BadMagic(_))));
        let mut v = good.clone();
        v.push(0);
        assert!(matches!(
            decode_request(&v),
            Err(DecodeError::LengthMismatch { .. })
        ));
        assert_eq!(
            decode_request(&vec![0u8; MAX_REQUEST + 1]),
            Err(DecodeError::Oversized {
                len: MAX_REQUEST + 1,
                max: MAX_REQUEST
            })
        );
        // A reply type where a request belongs.
        let reply = encode_reply(&Reply::Detached { lease: 1 }).unwrap();
        assert_eq!(decode_request(&reply), Err(DecodeError::UnknownKind(0x86)));
        // A bad topic name inside an otherwise good frame.
        let mut w = Writer::new(kind::SUBSCRIBE);
        w.str("topic", "../etc", 255).unwrap();
        let v = w.finish().unwrap();
        assert!(matches!(
            decode_request(&v),
            Err(DecodeError::BadTopicName(_))
        ));
        // Bad mode value.
        let mut v = encode_request(&Request::OpenTopic {
            topic: "a".into(),
            config: cfg(),
        })
        .unwrap();
        let mode_at = HEADER_LEN + 2 + 1 + 8;
        v[mode_at] = 7;
        assert_eq!(
            decode_request(&v),
            Err(DecodeError::BadValue {
                field: "mode",
                value: 7
            })
        );
        // Trailing bytes with a consistent length field.
        let mut v = encode_request(&Request::Detach { lease: 1 }).unwrap();
        v.push(1);
        let n = (v.len() - HEADER_LEN) as u32;
        v[8..12].copy_from_slice(&n.to_le_bytes());
        assert_eq!(decode_request(&v), Err(DecodeError::TrailingBytes(1)));
    }

    #[test]
    fn encode_bounds() {
        let long = Request::Subscribe {
            topic: "a".repeat(300),
            start: Start::Latest,
            held: vec![],
        };
        assert!(encode_request(&long).is_err());
        let msg = Reply::error(ErrorCode::Internal, "é".repeat(2000));
        assert!(encode_reply(&msg).is_ok());
        let ring = RingRef {
            ring_id: 1,
            publisher_pid: 1,
            port: None,
        };
        let too_many = Reply::Rings {
            config: None,
            rings: vec![ring; MAX_RINGS_PER_TOPIC + 1],
        };
        assert!(encode_reply(&too_many).is_err());
    }

    #[test]
    fn journal_frames_have_one_encoding() {
        let rings = |rings: Vec<(u64, Option<u64>)>| {
            encode_reply(&Reply::JournalRings {
                config: None,
                rings,
                more: false,
            })
            .unwrap()
        };
        // Ring ids must ascend.
        let v = rings(vec![(7, None), (7, None)]);
        assert!(matches!(
            decode_reply(&v),
            Err(DecodeError::BadValue { .. })
        ));
        // A ring that has not ended carries a zero end.
        let mut v = rings(vec![(7, None)]);
        let end = v.len() - 1 - 8;
        v[end] = 1;
        assert!(matches!(
            decode_reply(&v),
            Err(DecodeError::BadValue { .. })
        ));
        let v = encode_reply(&Reply::JournalSegments {
            bases: vec![3, 2],
            more: false,
        })
        .unwrap();
        assert!(matches!(
            decode_reply(&v),
            Err(DecodeError::BadValue { .. })
        ));
        // More than a page is refused at encoding.
        let too_many = Reply::JournalSegments {
            bases: (0..MAX_JOURNAL_SEGMENTS as u64 + 1).collect(),
            more: false,
        };
        assert!(encode_reply(&too_many).is_err());
    }

    #[test]
    fn port_frames_are_checked() {
        // A start kind that does not exist.
        let mut v = encode_request(&Request::Subscribe {
            topic: "t".into(),
            start: Start::Latest,
            held: vec![],
        })
        .unwrap();
        v[HEADER_LEN + 3] = 4;
        assert!(matches!(
            decode_request(&v),
            Err(DecodeError::BadValue {
                field: "start kind",
                ..
            })
        ));
        // A mailbox flag that is neither 0 nor 1.
        let mut v = encode_reply(&Reply::Rings {
            config: None,
            rings: vec![RingRef {
                ring_id: 1,
                publisher_pid: 2,
                port: Some(PortRef {
                    port_id: 1,
                    mailbox: true,
                }),
            }],
        })
        .unwrap();
        *v.last_mut().unwrap() = 2;
        assert!(decode_reply(&v).is_err());
        // Descriptors a reply announces: two per ring, three with a port.
        let r = Reply::Subscribed {
            lease: 1,
            config: None,
            rings: vec![
                RingRef {
                    ring_id: 1,
                    publisher_pid: 2,
                    port: Some(PortRef {
                        port_id: 1,
                        mailbox: false,
                    }),
                },
                RingRef {
                    ring_id: 2,
                    publisher_pid: 2,
                    port: None,
                },
            ],
        };
        assert_eq!(r.fd_count(), 1 + 3 + 2);
        // A start without a sequence carries zeros for it.
        let good = encode_request(&Request::Subscribe {
            topic: "md.x".into(),
            start: Start::Earliest,
            held: vec![],
        })
        .unwrap();
        let mut v = good.clone();
        let at = HEADER_LEN + 2 + 4 + 1 + 7;
        v[at] = 0x80;
        assert!(
            matches!(decode_request(&v), Err(DecodeError::BadValue { .. })),
            "{v:?}"
        );
        // A ring listed without a port carries zeros for it: anything else
        // is refused (one encoding per value; found by fuzzing).
        let good = encode_reply(&r).unwrap();
        assert_eq!(decode_reply(&good), Ok(r.clone()));
        for at in [good.len() - 9, good.len() - 1] {
            let mut v = good.clone();
            v[at] = 1;
            assert!(
                matches!(decode_reply(&v), Err(DecodeError::BadValue { .. })),
                "byte {at}"
            );
        }
        assert_eq!(
            Reply::PortAdded {
                port_id: 1,
                mailbox: false,
                trusted: false
            }
            .fd_count(),
            1
        );
        assert_eq!(Reply::PortRemoved { port_id: 1 }.fd_count(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(if cfg!(miri) { 16 } else { 1024 }))]

        /// Arbitrary bytes never panic either decoder.
        #[test]
        fn decoders_total(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(&bytes);
            let _ = decode_reply(&bytes);
        }

        /// A valid header followed by arbitrary payload bytes never panics
        /// and, when accepted, re-encodes to the same bytes.
        #[test]
        fn payload_fuzz(kind in 0u16..0x100, payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut v = Vec::new();
            v.extend_from_slice(&MAGIC);
            v.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
            v.extend_from_slice(&kind.to_le_bytes());
            v.extend_from_slice(&0u16.to_le_bytes());
            v.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            v.extend_from_slice(&payload);
            if let Ok(req) = decode_request(&v) {
                prop_assert_eq!(encode_request(&req).unwrap(), v.clone());
            }
            if let Ok(rep) = decode_reply(&v) {
                prop_assert_eq!(encode_reply(&rep).unwrap(), v);
            }
        }

        /// Mutating one byte of a valid frame never panics.
        #[test]
        fn mutation(i in 0usize..10, pos in any::<usize>(), byte in any::<u8>()) {
            let req = &requests()[i];
            let mut v = encode_request(req).unwrap();
            let p = pos % v.len();
            v[p] = byte;
            let _ = decode_request(&v);
        }
    }
}
