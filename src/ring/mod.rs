//! The single-producer / multi-consumer ring every message crosses.
//!
//! One publisher writes a ring; any number of subscribers read it. The code
//! is independent of where the memory comes from: [`RingRegion::heap`] for
//! unit tests, loom and Miri, a mapped file (see [`crate::shm`]) for real use.
//!
//! # Index encoding
//!
//! Messages are numbered from 0. Message `seq` lives in slot
//! `seq & (capacity - 1)`. Each slot starts with a seqlock stamp:
//!
//! | stamp          | meaning                                   |
//! |----------------|-------------------------------------------|
//! | `0`            | slot never written                        |
//! | `2 * seq + 1`  | message `seq` is being written            |
//! | `2 * seq + 2`  | message `seq` is complete                 |
//!
//! A reader waiting for `seq` compares the stamp with `2 * seq + 2`: smaller
//! means "not yet", equal means "ready", larger means the slot has moved on to
//! `seq + k * capacity` and the reader was lapped. After copying, the reader
//! re-reads the stamp; any change means the copy may be torn and is dropped.
//!
//! # The latest-message slot
//!
//! Besides the ring, the data segment has one more slot, at a fixed address
//! right after the header, with the same stamp encoding. Once a subscriber
//! that polls it has asked (`REQUEST_LATEST` in its port, answered by
//! `latest_ack` in the data segment, a hand-over like the wake one), every
//! publish writes it too:
//!
//! * a message of at most `latest_inline` bytes (`LATEST_INLINE_MAX`, or
//!   the max message size if smaller) goes there **first**, header and
//!   payload, and then into its ring slot;
//! * a longer message goes into its ring slot first; then the latest slot
//!   gets its header only (its `len` is above `latest_inline`: "read the
//!   ring slot").
//!
//! A subscriber that has caught up polls only the latest slot and copies
//! a small message from there. The reason is measured, not theoretical: on
//! the machines we run, a reader spinning on one fixed line sees a new
//! message ~25–40 ns sooner than a reader whose every message lands on a
//! fresh slot — but only through a writable mapping, so only subscribers
//! whose data pages are writable poll it ([`RingRegion::polls_latest`];
//! see DESIGN.md, "Where the ping-pong nanoseconds go"). A
//! subscriber that is behind never touches the latest slot: the stamp it
//! last saw there (`known_head`) tells it which ring slots are already
//! written, so a backlog is drained from the ring alone, as before.
//!
//! A subscriber whose data pages are read-only gets the same through the
//! mailbox of its [`Port`]: its private copy of the latest slot, written by
//! the publisher like the shared one. And a subscriber that finds the publisher
//! ahead of it (a stream, not a wait) reads the ring for the next
//! `STREAM_HOLD` messages instead of polling either copy: a second copy
//! polled while the next message is written costs streaming throughput.
//!
//! Two orderings make this sound. The latest slot's odd stamp for message
//! `m` is a Release store, so a reader that sees the latest slot at `m`
//! also sees every ring slot below `m` complete. A long message's ring slot
//! is sealed before the latest slot announces it, so a reader sent to the
//! ring by that announcement finds the message there. Whatever a reader
//! gets from the latest slot passes the same stamp re-check as a ring slot.
//!
//! # Modes
//!
//! * [`Mode::Overwrite`]: the publisher never waits; lapped readers get
//!   [`RecvError::Lagged`] once and resume at the oldest message held, or,
//!   lapped again within a ring's worth of messages, at half a ring behind
//!   the publisher (see `Consumer::lapped`).
//! * [`Mode::Backpressure`]: each subscriber owns a cursor in its [`Port`];
//!   the publisher never writes sequence `s` while a live cursor is at or
//!   below `s - capacity`. It caches the bound (`cached_limit`) so the
//!   common case reads no shared line (the Disruptor's gating sequence).
//!
//! # Ports
//!
//! A subscriber's state that the publisher must see (cursor, wake word,
//! requests, mailbox) lives in its own [`Port`], shared with the publisher
//! only. Ports reach the publisher through a [`PortSource`] (the broker's
//! channel, or, for a ring on the heap, an in-process queue): whoever adds
//! one queues it, bumps the `generation` in the ring's desk (which only the
//! publisher and the broker map), and places the cursor where the
//! publisher will respect it
//! ([`RingRegion::admit_port`]); the publisher takes queued ports whenever
//! the generation moved, and always before it extends its back-pressure
//! bound.

pub mod claim;
mod consumer;
mod copy;
mod filter;
mod latest;
mod port;
mod producer;
mod region;
mod write_ahead;

pub(crate) use consumer::judge;
pub(crate) use consumer::wait_any_limit;
pub use consumer::{
    wait_any, BatchRef, Consumer, MessageInfo, MessageRef, RecvError, Start, SKIP_BUDGET,
};
pub use filter::{Filter, FilterError, Predicate, MAX_FILTER_TAGS};
pub(crate) use port::init as init_port;
pub use port::{Port, PortFlags};
pub use producer::{Loan, LoanMany, PortChange, PortSource, Producer, PublishError, MAX_MAILBOXES};
pub(crate) use region::init as init_segments;
pub use region::{AttachError, RingRegion};

use std::fmt;

/// Largest payload a ring accepts (64 MiB).
pub const MAX_MESSAGE_SIZE_LIMIT: u32 = 64 << 20;
/// Largest number of slots a ring accepts (2^24).
pub const CAPACITY_LIMIT: u32 = 1 << 24;
/// Largest number of back-pressure cursors per ring.
pub const MAX_SUBSCRIBERS_LIMIT: u32 = 1024;
/// Largest data segment a ring may have (16 GiB).
pub const SEGMENT_SIZE_LIMIT: u64 = 16 << 30;

/// What the publisher does when the ring is full. Parsed from and shown as
/// `overwrite` and `backpressure` (configs, the CLI's `--mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Never wait: overwrite the oldest message; slow readers see `Lagged`.
    Overwrite,
    /// Never overwrite a message a live subscriber has not consumed.
    Backpressure,
}

impl Mode {
    /// Integer stored in the ring header.
    pub fn as_u32(self) -> u32 {
        match self {
            Mode::Overwrite => 0,
            Mode::Backpressure => 1,
        }
    }

    /// Inverse of [`Mode::as_u32`]; `None` for an unknown value.
    pub fn from_u32(v: u32) -> Option<Mode> {
        match v {
            0 => Some(Mode::Overwrite),
            1 => Some(Mode::Backpressure),
            _ => None,
        }
    }
}

impl Mode {
    /// The mode's name in configs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Overwrite => "overwrite",
            Mode::Backpressure => "backpressure",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Mode {
    type Err = TopicConfigError;
    fn from_str(s: &str) -> Result<Mode, TopicConfigError> {
        match s {
            "overwrite" => Ok(Mode::Overwrite),
            "backpressure" | "back-pressure" => Ok(Mode::Backpressure),
            other => Err(TopicConfigError::UnknownMode(other.to_string())),
        }
    }
}

/// Configuration of a topic, shared by all its rings: what a publisher
/// asks for, what the broker checks against an existing topic, and the
/// shape of each ring (fixed at creation, stored in its header, checked on
/// every attach).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TopicConfig {
    /// Largest payload, in bytes (1 ..= 64 MiB).
    pub max_message_size: u32,
    /// Slots per ring: a power of two (1 ..= 2^24).
    pub capacity: u32,
    /// Overwrite (the publisher never waits) or back-pressure (nothing
    /// lost).
    pub mode: Mode,
    /// Cursor slots per ring: the most back-pressure subscribers at once
    /// (1 ..= 1024); subscribers beyond it are refused with
    /// [`AttachError::NoCursor`] at attach.
    pub max_subscribers: u32,
}

impl Default for TopicConfig {
    /// 1 KiB messages, 1024 slots, overwrite, 16 subscribers.
    fn default() -> Self {
        TopicConfig {
            max_message_size: 1024,
            capacity: 1024,
            mode: Mode::Overwrite,
            max_subscribers: 16,
        }
    }
}

impl fmt::Display for TopicConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "max_message_size={} capacity={} mode={} max_subscribers={}",
            self.max_message_size, self.capacity, self.mode, self.max_subscribers
        )
    }
}

/// A [`TopicConfig`] that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    /// `capacity` is zero, not a power of two, or too large.
    #[error("capacity {0} must be a power of two between 1 and {CAPACITY_LIMIT}")]
    Capacity(u32),
    /// `max_message_size` is zero or too large.
    #[error("max message size {0} must be between 1 and {MAX_MESSAGE_SIZE_LIMIT} bytes")]
    MaxMessageSize(u32),
    /// `max_subscribers` is zero or too large.
    #[error("max subscribers {0} must be between 1 and {MAX_SUBSCRIBERS_LIMIT}")]
    MaxSubscribers(u32),
    /// The whole segment would be too large.
    #[error("ring would need {0} bytes, more than the {SEGMENT_SIZE_LIMIT}-byte limit: lower capacity or max message size")]
    TooBig(u64),
    /// A mode name that is neither `overwrite` nor `backpressure`.
    #[error("unknown mode {0:?}: expected \"overwrite\" or \"backpressure\"")]
    UnknownMode(String),
}

impl TopicConfig {
    /// Checks every field; returns the derived sizes.
    pub fn validate(&self) -> Result<Sizes, TopicConfigError> {
        if self.capacity == 0 || !self.capacity.is_power_of_two() || self.capacity > CAPACITY_LIMIT
        {
            return Err(TopicConfigError::Capacity(self.capacity));
        }
        if self.max_message_size == 0 || self.max_message_size > MAX_MESSAGE_SIZE_LIMIT {
            return Err(TopicConfigError::MaxMessageSize(self.max_message_size));
        }
        if self.max_subscribers == 0 || self.max_subscribers > MAX_SUBSCRIBERS_LIMIT {
            return Err(TopicConfigError::MaxSubscribers(self.max_subscribers));
        }
        let sizes = Sizes::of(self);
        if sizes.data_len > SEGMENT_SIZE_LIMIT {
            return Err(TopicConfigError::TooBig(sizes.data_len));
        }
        Ok(sizes)
    }

    /// Sizes of the two segments (config assumed valid).
    pub fn sizes(&self) -> Sizes {
        Sizes::of(self)
    }
}

/// Stamp of a slot while message `seq` is being written (see above).
#[inline(always)]
pub(crate) fn stamp_writing(seq: u64) -> u64 {
    seq.wrapping_mul(2).wrapping_add(1)
}

/// Stamp of a slot holding complete message `seq`.
#[inline(always)]
pub(crate) fn stamp_done(seq: u64) -> u64 {
    seq.wrapping_mul(2).wrapping_add(2)
}

/// Largest payload the latest-message slot holds inline (real builds).
/// Longer messages are announced there by header only and read from their
/// ring slot.
#[cfg(not(loom))]
pub const LATEST_INLINE_MAX: u32 = 256;
/// Under loom, two words: the models' 16-byte messages are inline, and a
/// 24-byte one is announced only, without copying hundreds of atomic words.
#[cfg(loom)]
pub const LATEST_INLINE_MAX: u32 = 16;

/// Byte sizes derived from a [`TopicConfig`]: a ring's memory is exactly its
/// header (with the latest-message slot) plus `capacity` times the slot
/// stride.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    /// Bytes before slot 0 in the data segment: the [`RingHeader`] and the
    /// latest-message slot.
    ///
    /// [`RingHeader`]: crate::layout::RingHeader
    pub header_size: u64,
    /// Offset of the latest-message slot (right after the `RingHeader`).
    pub latest_offset: u64,
    /// Payload bytes the latest-message slot holds inline:
    /// `min(max_message_size, LATEST_INLINE_MAX)`.
    pub latest_inline: u64,
    /// Bytes from one slot to the next.
    pub slot_stride: u64,
    /// Whole data segment.
    pub data_len: u64,
    /// The lobby (see [`crate::layout::LobbyHeader`]).
    pub lobby_len: u64,
    /// The desk (see [`crate::layout::DeskHeader`]).
    pub desk_len: u64,
    /// A subscriber's port ([`Port`]): its header (four 128-byte lines),
    /// then a mailbox slot the size of the latest-message slot.
    pub port_len: u64,
}

impl Sizes {
    fn of(c: &TopicConfig) -> Sizes {
        use crate::layout::PAD;
        use crate::layout::{
            DeskHeader, LobbyHeader, RingHeader, SlotHeader, PORT_SLOT_OFFSET, SLOT_ALIGN,
        };
        use std::mem::size_of;
        let latest_offset = size_of::<RingHeader>() as u64;
        let latest_inline = c.max_message_size.min(LATEST_INLINE_MAX);
        // The latest-message slot gets whole 128-byte lines of its own: it is
        // the line caught-up subscribers poll.
        let pad = PAD as u64;
        let latest_len =
            (latest::latest_slot_bytes(latest_inline as usize) as u64).div_ceil(pad) * pad;
        let header_size = latest_offset + latest_len;
        let payload = copy::payload_bytes(c.max_message_size as usize) as u64;
        let align = SLOT_ALIGN as u64;
        let slot_stride = (size_of::<SlotHeader>() as u64 + payload).div_ceil(align) * align;
        Sizes {
            header_size,
            latest_offset,
            latest_inline: u64::from(latest_inline),
            slot_stride,
            data_len: header_size + u64::from(c.capacity) * slot_stride,
            lobby_len: size_of::<LobbyHeader>() as u64,
            desk_len: size_of::<DeskHeader>() as u64,
            port_len: PORT_SLOT_OFFSET as u64 + latest_len,
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of [`MessageInfo::timestamp`].
#[inline]
pub fn monotonic_ns() -> u64 {
    #[cfg(any(loom, miri))]
    {
        0
    }
    #[cfg(not(any(loom, miri)))]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
        (t.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(t.tv_nsec as u64)
    }
}

#[cfg(test)]
mod tests;
