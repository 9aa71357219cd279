//! Plain C structs and enums passed by value or through pointers, and
//! their conversion to the Rust client's types.

use std::ffi::{c_char, c_int, c_void};
use std::time::Duration;

use ringbus::client::{GroupOptions, Mode, SubscribeOptions, TopicConfig};
use ringbus::ring::{MessageInfo, Start};
use ringbus::wait::WaitStrategy;

use crate::handle::out_arg;
use crate::status::ringbus_status::{RINGBUS_ERR_INVALID_ARGUMENT, RINGBUS_ERR_UNSUPPORTED};
use crate::status::{fail, guard, Failed};

/// Timeout value meaning "wait as long as it takes".
pub const RINGBUS_WAIT_FOREVER: i64 = -1;

/// `ringbus_message_info.topic` of a zero-copy message whose ring appeared
/// during the receive that returned it (pattern subscriptions only).
pub const RINGBUS_TOPIC_UNKNOWN: u32 = u32::MAX;

/// A buffer of this many bytes holds any topic name and its NUL
/// (`ringbus_subscriber_topic_name()`).
pub const RINGBUS_TOPIC_NAME_CAPACITY: usize = 256;

const _: () = assert!(ringbus::control::MAX_TOPIC_NAME_LEN < RINGBUS_TOPIC_NAME_CAPACITY);

/// The most tags `ringbus_subscriber_filter_tag_set()` takes.
pub const RINGBUS_MAX_FILTER_TAGS: usize = 64;

const _: () = assert!(ringbus::ring::MAX_FILTER_TAGS == RINGBUS_MAX_FILTER_TAGS);

/// What a publisher does when its ring is full (`ringbus_topic_config.mode`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ringbus_mode {
    /// Never wait: overwrite the oldest message; slow subscribers get
    /// `RINGBUS_ERR_LAGGED`.
    RINGBUS_MODE_OVERWRITE = 0,
    /// Never overwrite a message a live subscriber has not read: the
    /// publisher waits (or `try_` calls return `RINGBUS_ERR_FULL`).
    RINGBUS_MODE_BACKPRESSURE = 1,
}

/// Where a new subscriber starts (`ringbus_subscribe_options.start`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ringbus_start {
    /// With the next message published after subscribing.
    RINGBUS_START_LATEST = 0,
    /// With the oldest message each ring still holds.
    RINGBUS_START_EARLIEST = 1,
    /// With `start_sequence` (a lag is reported if it is gone already). On
    /// a durable topic, what the rings no longer hold is read from its
    /// journal first, then the live rings: no gap, no duplicate.
    RINGBUS_START_SEQUENCE = 2,
    /// With the first message a durable topic journaled at
    /// `start_sequence` (CLOCK_REALTIME ns since the epoch) or later, then
    /// the live rings. A topic (not a pattern) that is durable only.
    RINGBUS_START_TIME = 3,
}

/// How blocking receives wait (`ringbus_subscribe_options.wait`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ringbus_wait {
    /// Spin for `spin_ns` (default 50 us), then sleep on a futex.
    RINGBUS_WAIT_ADAPTIVE = 0,
    /// Busy-poll: lowest latency, burns a core.
    RINGBUS_WAIT_SPIN = 1,
    /// Poll, yielding the CPU between polls.
    RINGBUS_WAIT_SPIN_YIELD = 2,
    /// Sleep on a futex at once: no CPU while idle.
    RINGBUS_WAIT_BLOCK = 3,
}

/// A topic's shape, fixed when the topic is created; a publisher of an
/// existing topic must pass the same values. Fill it with
/// `ringbus_topic_config_init()` before changing fields.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ringbus_topic_config {
    /// Largest payload in bytes (1 to 64 MiB). Default 1024.
    pub max_message_size: u32,
    /// Slots per ring: a power of two (1 to 2^24). Default 1024.
    pub capacity: u32,
    /// A `ringbus_mode` value. Default `RINGBUS_MODE_OVERWRITE`.
    pub mode: u32,
    /// Back-pressure subscribers per ring (1 to 1024). Default 16.
    pub max_subscribers: u32,
}

impl From<TopicConfig> for ringbus_topic_config {
    fn from(c: TopicConfig) -> Self {
        ringbus_topic_config {
            max_message_size: c.max_message_size,
            capacity: c.capacity,
            mode: match c.mode {
                Mode::Overwrite => ringbus_mode::RINGBUS_MODE_OVERWRITE as u32,
                Mode::Backpressure => ringbus_mode::RINGBUS_MODE_BACKPRESSURE as u32,
            },
            max_subscribers: c.max_subscribers,
        }
    }
}

impl ringbus_topic_config {
    /// The Rust config; the other fields are checked by the broker.
    pub(crate) fn to_rust(self) -> Result<TopicConfig, Failed> {
        let mode = match self.mode {
            0 => Mode::Overwrite,
            1 => Mode::Backpressure,
            m => {
                return Err(fail(
                    RINGBUS_ERR_INVALID_ARGUMENT,
                    format_args!(
                        "topic config mode {m} is neither RINGBUS_MODE_OVERWRITE (0) nor RINGBUS_MODE_BACKPRESSURE (1)"
                    ),
                ))
            }
        };
        Ok(TopicConfig {
            max_message_size: self.max_message_size,
            capacity: self.capacity,
            mode,
            max_subscribers: self.max_subscribers,
        })
    }
}

/// How a subscriber starts and waits. Fill it with
/// `ringbus_subscribe_options_init()` before changing fields; the reserved
/// fields must stay zero / NULL.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ringbus_subscribe_options {
    /// A `ringbus_start` value. Default `RINGBUS_START_LATEST`.
    pub start: u32,
    /// A `ringbus_wait` value. Default `RINGBUS_WAIT_ADAPTIVE`.
    pub wait: u32,
    /// With `RINGBUS_START_SEQUENCE`: the first sequence number to read;
    /// with `RINGBUS_START_TIME`: the time, CLOCK_REALTIME ns.
    pub start_sequence: u64,
    /// With `RINGBUS_WAIT_ADAPTIVE`: nanoseconds to spin before sleeping;
    /// 0 means the default (50 us).
    pub spin_ns: u64,
    /// A pattern to subscribe to instead of `topic` (which must then be
    /// NULL): `*` matches one segment, a final `>` one or more (`md.*.AAPL`,
    /// `md.>`). NULL (the default): subscribe to `topic`, which may itself
    /// be a pattern. Read during `ringbus_subscriber_open()` only.
    pub pattern: *const c_char,
    /// Tag filter applied at open, as `ringbus_subscriber_filter_tags()`:
    /// deliver only messages whose `(tag & tag_mask) == tag_value`. 0 (the
    /// default): no tag filter.
    pub tag_mask: u64,
    /// See `tag_mask`; must have no bits outside `tag_mask`.
    pub tag_value: u64,
    /// Join this consumer group of the topic (or pattern): the members of
    /// one group share its messages, each message going to one member;
    /// other groups and plain subscribers still get every message. Read
    /// during `ringbus_subscriber_open()` only. NULL (the default): a
    /// plain subscriber. A member receives with the copying receives
    /// (`info.deliveries` counts its deliveries; more than 1: redelivered)
    /// and acknowledges with `ringbus_subscriber_ack()` and friends; it
    /// has no zero-copy receive and no filters.
    pub group: *const c_char,
    /// Most messages a member claims at once (and, with
    /// `RINGBUS_GROUP_MANUAL_ACK`, holds unacknowledged); 0: the default
    /// (64).
    pub group_batch: u32,
    /// Deliveries of one message before it goes to the dead-letter topic
    /// (`<topic>.dlq`); every member of a group must ask for the same. 0:
    /// the default (5).
    pub group_max_deliveries: u32,
    /// `RINGBUS_GROUP_*` flags; 0: the defaults (a message is acknowledged
    /// when the member asks for the next one).
    pub group_flags: u32,
    /// Reserved for future options: must be zero.
    pub reserved32: u32,
    /// Reserved for future options: must be zero.
    pub reserved: [u64; 1],
}

/// `ringbus_subscribe_options.group_flags`: acknowledge explicitly
/// (`ringbus_subscriber_ack()`, `ringbus_subscriber_ack_through()`)
/// instead of when asking for the next message.
pub const RINGBUS_GROUP_MANUAL_ACK: u32 = 1;

impl Default for ringbus_subscribe_options {
    fn default() -> Self {
        ringbus_subscribe_options {
            start: ringbus_start::RINGBUS_START_LATEST as u32,
            wait: ringbus_wait::RINGBUS_WAIT_ADAPTIVE as u32,
            start_sequence: 0,
            spin_ns: 0,
            pattern: std::ptr::null(),
            tag_mask: 0,
            tag_value: 0,
            group: std::ptr::null(),
            group_batch: 0,
            group_max_deliveries: 0,
            group_flags: 0,
            reserved32: 0,
            reserved: [0; 1],
        }
    }
}

impl ringbus_subscribe_options {
    /// The Rust options, after checking every field but `pattern` (read by
    /// `ringbus_subscriber_open`) and the tag filter (applied there).
    pub(crate) fn to_rust(self) -> Result<SubscribeOptions, Failed> {
        if self.tag_value & !self.tag_mask != 0 {
            return Err(fail(
                RINGBUS_ERR_INVALID_ARGUMENT,
                format_args!(
                    "options.tag_value {:#x} has bits outside options.tag_mask {:#x}: no tag could match",
                    self.tag_value, self.tag_mask
                ),
            ));
        }
        if self.reserved != [0; 1] || self.reserved32 != 0 {
            return Err(unsupported("options.reserved (must be zero)"));
        }
        if self.group_flags & !RINGBUS_GROUP_MANUAL_ACK != 0 {
            return Err(unsupported(
                "options.group_flags beyond RINGBUS_GROUP_MANUAL_ACK",
            ));
        }
        if self.group.is_null()
            && (self.group_batch != 0 || self.group_max_deliveries != 0 || self.group_flags != 0)
        {
            return Err(fail(
                RINGBUS_ERR_INVALID_ARGUMENT,
                format_args!("options.group_batch, group_max_deliveries and group_flags need options.group (a group name)"),
            ));
        }
        let start = match self.start {
            0 => Start::Latest,
            1 => Start::Earliest,
            2 => Start::Sequence(self.start_sequence),
            3 => Start::Time(self.start_sequence),
            s => {
                return Err(fail(
                    RINGBUS_ERR_INVALID_ARGUMENT,
                    format_args!("options.start {s} is not a ringbus_start value (0 to 3)"),
                ))
            }
        };
        let wait = match self.wait {
            0 if self.spin_ns == 0 => WaitStrategy::default(),
            0 => WaitStrategy::Adaptive {
                spin: Duration::from_nanos(self.spin_ns),
            },
            1 => WaitStrategy::Spin,
            2 => WaitStrategy::SpinYield,
            3 => WaitStrategy::Block,
            w => {
                return Err(fail(
                    RINGBUS_ERR_INVALID_ARGUMENT,
                    format_args!("options.wait {w} is not a ringbus_wait value (0 to 3)"),
                ))
            }
        };
        Ok(SubscribeOptions { start, wait })
    }

    /// The group options (after [`Self::to_rust`] checked the fields).
    pub(crate) fn to_group(self, o: SubscribeOptions) -> GroupOptions {
        let d = GroupOptions::default();
        GroupOptions {
            start: o.start,
            wait: o.wait,
            batch: match self.group_batch {
                0 => d.batch,
                b => b,
            },
            auto_ack: self.group_flags & RINGBUS_GROUP_MANUAL_ACK == 0,
            max_deliveries: match self.group_max_deliveries {
                0 => d.max_deliveries,
                m => m,
            },
        }
    }
}

/// A reserved field that was set.
fn unsupported(what: &str) -> Failed {
    fail(
        RINGBUS_ERR_UNSUPPORTED,
        format_args!("{what}: not supported by this version of ringbus"),
    )
}

/// What a subscriber learns about a received message. On
/// `RINGBUS_ERR_BUFFER_TOO_SMALL`, `len` is the size needed; on
/// `RINGBUS_ERR_LAGGED`, `missed` is the number of messages lost.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ringbus_message_info {
    /// Sequence number within its ring (0, 1, 2, ... per publisher).
    pub sequence: u64,
    /// The publisher's tag.
    pub tag: u64,
    /// CLOCK_MONOTONIC nanoseconds at publish, or 0 unless the publisher
    /// turned timestamps on; compare with `ringbus_now_ns()`.
    pub timestamp_ns: u64,
    /// The ring (one per publisher) the message or error came from.
    pub ring_id: u64,
    /// Payload length in bytes.
    pub len: usize,
    /// With `RINGBUS_ERR_LAGGED`: how many messages were overwritten
    /// unread; otherwise 0.
    pub missed: u64,
    /// The topic the message came from, as an id of this subscription: 0
    /// for a topic subscription, one per matched topic for a pattern (ids
    /// are never reused); on an error, the topic of `ring_id`.
    /// `ringbus_subscriber_topic_name()` gives its name. 0 in the info a
    /// filter predicate is given.
    pub topic: u32,
    /// For a consumer group member: how many times the message has been
    /// delivered, this time included (more than 1: it was held by a
    /// member that died, left or handed it back, and may have been
    /// processed before). 0 for a plain subscriber.
    pub deliveries: u32,
}

impl ringbus_message_info {
    pub(crate) fn of(ring_id: u64, topic: u32, m: MessageInfo) -> Self {
        ringbus_message_info {
            sequence: m.seq,
            tag: m.tag,
            timestamp_ns: m.timestamp,
            ring_id,
            len: m.len,
            missed: 0,
            topic,
            deliveries: 0,
        }
    }
}

/// A message read in place (zero-copy receive): `data` points into the
/// ring and stays valid until `ringbus_subscriber_release()` (or closing the
/// subscriber); the publisher cannot reuse the slot meanwhile.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ringbus_message_view {
    /// The payload (`info.len` bytes, read-only).
    pub data: *const c_void,
    /// Sequence, tag, timestamp, ring, length, topic.
    pub info: ringbus_message_info,
}

/// Fills `config` with the default topic config (1 KiB messages, 1024
/// slots, overwrite mode, 16 back-pressure subscribers).
///
/// # Safety
/// `config` is NULL or points to writable memory for a
/// `ringbus_topic_config`.
#[no_mangle]
pub unsafe extern "C" fn ringbus_topic_config_init(config: *mut ringbus_topic_config) -> c_int {
    guard(|| {
        let out = out_arg(config, "config")?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out.write(TopicConfig::default().into()) };
        Ok(())
    })
}

/// Fills `options` with the default subscribe options (start with the
/// next message, adaptive wait, no filter).
///
/// # Safety
/// `options` is NULL or points to writable memory for a
/// `ringbus_subscribe_options`.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscribe_options_init(
    options: *mut ringbus_subscribe_options,
) -> c_int {
    guard(|| {
        let out = out_arg(options, "options")?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out.write(ringbus_subscribe_options::default()) };
        Ok(())
    })
}
