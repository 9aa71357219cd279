//! `#[repr(C)]` structures that live in shared memory, with compile-time
//! size, alignment and offset checks.
//!
//! A ring is made of segments that differ in who may write them:
//!
//! * the **data segment** (`RingHeader`, the latest-message slot, then
//!   `capacity` slots; see [`crate::ring`]) is written by the publisher
//!   (and, for a few words, by the broker); subscribers map it read-only,
//!   so a subscriber cannot corrupt the stream for the others;
//! * a **port** per subscriber (`PortHeader`, then the subscriber's
//!   mailbox slot) is shared by that subscriber and the ring's publisher
//!   only: its back-pressure cursor, its futex word and sleeping flag, its
//!   requests to the publisher, and the publisher's answers. No subscriber
//!   can write another's port;
//! * the **lobby** (`LobbyHeader`) is one line every process of the ring
//!   may write: a subscriber rings its bell to ask the publisher to look at
//!   its port. Nothing in it is trusted; the publisher looks at most once
//!   per [`BELL_EVERY`] messages, so ringing it on purpose costs little;
//! * the **desk** (`DeskHeader`) is shared by the publisher and the broker
//!   only: the broker's port generation and the publisher's back-pressure
//!   bound, the two halves of the join protocol.
//!
//! Every segment a client maps is a sealed memfd (`F_SEAL_SHRINK |
//! F_SEAL_GROW`): nobody can truncate one under another's mapping.
//!
//! Every field is a fixed-width integer or an atomic of one: no pointers,
//! `usize` or `bool`, so 64-bit processes built by different compilers agree
//! on the layout. Fields that more than one side touches on the hot path sit
//! on their own 128-byte line (x86_64's adjacent-line prefetcher pulls pairs
//! of 64-byte lines, which is why crossbeam pads to 128 there).

use crate::sync::{AtomicU32, AtomicU64};

/// `b"RINGBUS\0"` read as a little-endian `u64`: first word of every segment.
pub const MAGIC: u64 = u64::from_le_bytes(*b"RINGBUS\0");
/// Bumped whenever any structure in this file changes shape or meaning
/// (4: per-subscriber ports and the lobby replace the shared control
/// segment; 5: slots rounded to [`SLOT_ALIGN`], half a line).
pub const LAYOUT_VERSION: u32 = 5;
/// Padding unit that keeps independently written fields apart.
pub const PAD: usize = 128;
/// A cache line.
pub const CACHE_LINE: usize = 64;
/// Ring slots are aligned (and their stride rounded) to half a cache line,
/// so that a payload starts 32-byte aligned right after its 32-byte
/// [`SlotHeader`]. Rounded to whole lines, a 64-byte message took two
/// lines and a 1 KiB one seventeen; at half lines they take one and a half
/// and sixteen and a half, which is what a streaming reader moves between
/// cores per message. Neighbouring slots then share a line; each has its
/// own stamp, so this costs a reader at its writer's heels a line
/// transfer at worst, never a torn read (DESIGN.md, "Slots and the
/// seqlock stamp").
pub const SLOT_ALIGN: usize = 32;
/// Value of a [`PortHeader::pos`] that gates nothing (the subscriber left).
pub const CURSOR_FREE: u64 = u64::MAX;
/// A publisher looks at its ports' requests at most once per this many
/// messages when the lobby bell keeps ringing (see [`LobbyHeader`]).
pub const BELL_EVERY: u32 = 256;

/// Kind tag stored in the header so one kind of segment is never attached
/// as another.
pub const KIND_DATA: u32 = 1;
/// See [`KIND_DATA`]: a ring's lobby ([`LobbyHeader`]).
pub const KIND_LOBBY: u32 = 4;
/// See [`KIND_DATA`]: a subscriber's port ([`PortHeader`]).
pub const KIND_PORT: u32 = 5;
/// See [`KIND_DATA`]: a ring's desk ([`DeskHeader`]).
pub const KIND_DESK: u32 = 6;

/// [`PortHeader::requests`] bit: the subscriber may sleep on the port's
/// futex; the publisher answers with [`PortHeader::wake_ack`] and from then
/// on wakes it.
pub const REQUEST_WAKE: u32 = 1;
/// [`PortHeader::requests`] bit: the subscriber polls the shared
/// latest-message slot (it maps the data writable); the publisher honours it
/// only for ports its broker marked trusted.
pub const REQUEST_LATEST: u32 = 2;

/// Header of the data segment. Line 0 is immutable after creation; line 1
/// is written by the publisher on every message; line 2 changes once (end of
/// stream) and is polled by idle subscribers, so it is kept off line 1;
/// line 3 holds the publisher's latest-slot answer. Nothing here is written
/// by the broker after creation: once its publisher has mapped it, the
/// segment is sealed against every other writer.
#[repr(C, align(128))]
pub struct RingHeader {
    // ---- line 0: identity and configuration, written once at creation ----
    /// [`MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`].
    pub layout_version: u32,
    /// [`KIND_DATA`].
    pub kind: u32,
    /// Bytes from the start of the segment to slot 0 (this header and the
    /// latest-message slot).
    pub header_size: u32,
    /// Largest payload a slot holds, in bytes.
    pub max_message_size: u32,
    /// Number of slots, a power of two.
    pub capacity: u32,
    /// [`crate::ring::Mode`] as an integer.
    pub mode: u32,
    /// Bytes from one slot to the next (multiple of [`SLOT_ALIGN`]).
    pub slot_stride: u32,
    /// Most ports (subscribers with a cursor) the ring serves.
    pub max_subscribers: u32,
    /// Identifier chosen by the creator (the broker's ring id); 0 if none.
    pub ring_id: u64,
    /// Process id of the publisher that owns this ring (0 if unknown).
    pub publisher_pid: u32,
    /// Reserved, zero.
    pub _reserved: u32,
    _pad0: [u8; PAD - 56],
    // ---- line 1: the publisher's hot line ----
    /// Sequence number of the next message; every message below it is
    /// complete. Written only by the publisher.
    pub head: AtomicU64,
    _pad1: [u8; PAD - 8],
    // ---- line 2: end of stream ----
    /// Non-zero once the publisher is gone: set by its drop, or by the
    /// broker when it reaps a dead publisher.
    pub closed: AtomicU32,
    _pad2: [u8; PAD - 4],
    // ---- line 3: the publisher's answer ----
    /// Set to 1 by the publisher once it writes the latest-message slot
    /// with every message; a subscriber reads that slot only after it sees
    /// this.
    pub latest_ack: AtomicU32,
    _pad3: [u8; PAD - 4],
}

/// Header of a ring's **desk**, a one-page segment only the publisher and
/// the broker map: the two halves of the join protocol, which no subscriber
/// may touch (a subscriber that could raise `limit` would place new
/// cursors past messages they should read).
#[repr(C, align(128))]
pub struct DeskHeader {
    // ---- line 0: identity, written once at creation ----
    /// [`MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`].
    pub layout_version: u32,
    /// [`KIND_DESK`].
    pub kind: u32,
    /// The ring's id.
    pub ring_id: u64,
    _pad0: [u8; PAD - 24],
    // ---- line 1: the broker's ----
    /// Bumped by whoever adds or removes a port of this ring (the broker)
    /// after queueing the change for the publisher; a publisher that sees
    /// it move takes the queued changes.
    pub generation: AtomicU32,
    _pad1: [u8; PAD - 4],
    // ---- line 2: the publisher's ----
    /// Back-pressure mode: the publisher writes no sequence at or above this
    /// bound without first re-reading its ports' cursors. Whoever adds a
    /// port reads it to place the new cursor where the publisher will
    /// respect it.
    pub limit: AtomicU64,
    /// Messages the publisher reports lost before they reached this ring
    /// (a bridge's import: a sequence gap on the far side, a full ring),
    /// counted for `ringbus topics`. Zero in desks of older publishers.
    pub lost: AtomicU64,
    _pad2: [u8; PAD - 16],
}

/// Per-slot header; the payload follows it directly. Written by the
/// publisher only. `stamp` is a seqlock word: `2 * seq + 1` while message
/// `seq` is being written, `2 * seq + 2` once it is complete, 0 before the
/// slot was ever used. `len`, `tag` and `timestamp` are atomics (read
/// `Relaxed`) because readers may read them while they are being written;
/// the stamp check that follows decides whether what was read is kept.
#[repr(C)]
pub struct SlotHeader {
    /// Seqlock stamp, see above.
    pub stamp: AtomicU64,
    /// Payload length in bytes.
    pub len: AtomicU32,
    /// Reserved, zero.
    pub _reserved: AtomicU32,
    /// User tag (used by filters).
    pub tag: AtomicU64,
    /// CLOCK_MONOTONIC nanoseconds at publish, or 0 if timestamps are off
    /// (the publisher's default).
    pub timestamp: AtomicU64,
}

/// Header of a ring's **lobby**, a one-page segment every process of the
/// ring may write. It carries hints only: a subscriber that set a request
/// in its port bumps `bell`, and the publisher, which reads the bell on
/// every message, then looks at its ports (at most once per
/// [`BELL_EVERY`] messages).
#[repr(C, align(128))]
pub struct LobbyHeader {
    // ---- line 0: identity, written once at creation ----
    /// [`MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`].
    pub layout_version: u32,
    /// [`KIND_LOBBY`].
    pub kind: u32,
    /// The ring's id.
    pub ring_id: u64,
    _pad0: [u8; PAD - 24],
    // ---- line 1: the bell ----
    /// Bumped by a subscriber that wants its port looked at.
    pub bell: AtomicU32,
    _pad1: [u8; PAD - 4],
}

/// Header of a **port**: one subscriber's state on one ring, in a segment
/// that only that subscriber and the ring's publisher map (both
/// read-write). The subscriber's mailbox slot (a [`SlotHeader`], then
/// `inline` payload bytes) follows at [`PORT_SLOT_OFFSET`]. What a
/// subscriber writes here can mislead only the publisher's view of that
/// same subscriber: its own cursor, its own wake-ups, its own mailbox.
#[repr(C, align(128))]
pub struct PortHeader {
    // ---- line 0: identity, written once by the port's creator ----
    /// [`MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`].
    pub layout_version: u32,
    /// [`KIND_PORT`].
    pub kind: u32,
    /// The ring this port belongs to.
    pub ring_id: u64,
    /// The port's id, unique within its ring.
    pub port_id: u64,
    /// Payload bytes the mailbox slot holds inline (the ring's
    /// `latest_inline`).
    pub inline: u32,
    /// Reserved, zero.
    pub _reserved: u32,
    _pad0: [u8; PAD - 40],
    // ---- line 1: the subscriber's, written as it reads ----
    /// Next sequence this subscriber will read, or [`CURSOR_FREE`]. On a
    /// back-pressure ring it gates the publisher; on an overwrite ring it
    /// only shows the subscriber's position.
    pub pos: AtomicU64,
    /// Messages this subscriber lost so far (for the broker's listing).
    pub dropped: AtomicU64,
    /// [`REQUEST_WAKE`] | [`REQUEST_LATEST`]: what the subscriber asks of
    /// the publisher (see [`LobbyHeader`]).
    pub requests: AtomicU32,
    /// Set to 1 by the subscriber once it has taken the port over (the
    /// broker frees a port nobody took over).
    pub adopted: AtomicU32,
    /// Messages delivered to the subscriber (published now and then, for
    /// the broker's listing).
    pub delivered: AtomicU64,
    /// Messages its filters turned down (likewise).
    pub filtered: AtomicU64,
    /// A consumer group member's end of its claims on this ring (0 for a
    /// plain subscriber): with `pos`, the range the broker hands to the
    /// group's live members when this one dies (`ring::claim`).
    pub group_to: AtomicU64,
    _pad1: [u8; PAD - 48],
    // ---- line 2: sleeping ----
    /// Futex word: bumped by the publisher before each `FUTEX_WAKE`.
    pub futex: AtomicU32,
    /// Non-zero while the subscriber is inside (or about to enter)
    /// `FUTEX_WAIT` on `futex`.
    pub sleeping: AtomicU32,
    _pad2: [u8; PAD - 8],
    // ---- line 3: the publisher's (and the broker's) answers ----
    /// Set to 1 by the publisher once it writes the mailbox slot with every
    /// message; [`MAILBOX_RETIRED`] once it has stopped for good.
    pub mailbox_ack: AtomicU32,
    /// Set to 1 by the publisher once it wakes this subscriber; the
    /// subscriber sleeps without a time bound only after it sees this.
    pub wake_ack: AtomicU32,
    /// Set to 1 by the broker when the ring's publisher died: the ring has
    /// ended for this subscriber (as the data segment's `closed` says for a
    /// publisher that left). A subscriber that forges it ends its own
    /// stream only.
    pub closed: AtomicU32,
    _pad3: [u8; PAD - 12],
}

/// Where a port's mailbox slot starts.
pub const PORT_SLOT_OFFSET: usize = 4 * PAD;

/// [`PortHeader::mailbox_ack`] of a mailbox its publisher no longer writes.
pub const MAILBOX_RETIRED: u32 = 2;

impl LobbyHeader {
    pub(crate) fn new(ring_id: u64) -> Self {
        LobbyHeader {
            magic: MAGIC,
            layout_version: LAYOUT_VERSION,
            kind: KIND_LOBBY,
            ring_id,
            _pad0: [0; PAD - 24],
            bell: AtomicU32::new(0),
            _pad1: [0; PAD - 4],
        }
    }
}

impl PortHeader {
    pub(crate) fn new(ring_id: u64, port_id: u64, inline: u32, pos: u64) -> Self {
        PortHeader {
            magic: MAGIC,
            layout_version: LAYOUT_VERSION,
            kind: KIND_PORT,
            ring_id,
            port_id,
            inline,
            _reserved: 0,
            _pad0: [0; PAD - 40],
            pos: AtomicU64::new(pos),
            dropped: AtomicU64::new(0),
            requests: AtomicU32::new(0),
            adopted: AtomicU32::new(0),
            delivered: AtomicU64::new(0),
            filtered: AtomicU64::new(0),
            group_to: AtomicU64::new(0),
            _pad1: [0; PAD - 48],
            futex: AtomicU32::new(0),
            sleeping: AtomicU32::new(0),
            _pad2: [0; PAD - 8],
            mailbox_ack: AtomicU32::new(0),
            wake_ack: AtomicU32::new(0),
            closed: AtomicU32::new(0),
            _pad3: [0; PAD - 12],
        }
    }
}

impl DeskHeader {
    pub(crate) fn new(ring_id: u64, capacity: u32) -> Self {
        DeskHeader {
            magic: MAGIC,
            layout_version: LAYOUT_VERSION,
            kind: KIND_DESK,
            ring_id,
            _pad0: [0; PAD - 24],
            generation: AtomicU32::new(0),
            _pad1: [0; PAD - 4],
            limit: AtomicU64::new(u64::from(capacity)),
            lost: AtomicU64::new(0),
            _pad2: [0; PAD - 16],
        }
    }
}

impl RingHeader {
    /// A header as the creator writes it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        header_size: u32,
        max_message_size: u32,
        capacity: u32,
        mode: u32,
        slot_stride: u32,
        max_subscribers: u32,
        ring_id: u64,
        publisher_pid: u32,
    ) -> Self {
        RingHeader {
            magic: MAGIC,
            layout_version: LAYOUT_VERSION,
            kind: KIND_DATA,
            header_size,
            max_message_size,
            capacity,
            mode,
            slot_stride,
            max_subscribers,
            ring_id,
            publisher_pid,
            _reserved: 0,
            _pad0: [0; PAD - 56],
            head: AtomicU64::new(0),
            _pad1: [0; PAD - 8],
            closed: AtomicU32::new(0),
            _pad2: [0; PAD - 4],
            latest_ack: AtomicU32::new(0),
            _pad3: [0; PAD - 4],
        }
    }
}

impl SlotHeader {
    pub(crate) fn new() -> Self {
        SlotHeader {
            stamp: AtomicU64::new(0),
            len: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
            tag: AtomicU64::new(0),
            timestamp: AtomicU64::new(0),
        }
    }
}

/// Static layout checks: the byte offsets are part of the on-disk format
/// shared with other processes (and with C readers), so any drift is a
/// compile error. Loom's atomics are larger than std's, so the checks hold
/// only for real builds.
#[cfg(not(loom))]
mod asserts {
    use super::*;
    use core::mem::{align_of, offset_of, size_of};

    const _: () = assert!(size_of::<RingHeader>() == 4 * PAD);
    const _: () = assert!(align_of::<RingHeader>() == PAD);
    const _: () = assert!(offset_of!(RingHeader, magic) == 0);
    const _: () = assert!(offset_of!(RingHeader, layout_version) == 8);
    const _: () = assert!(offset_of!(RingHeader, kind) == 12);
    const _: () = assert!(offset_of!(RingHeader, header_size) == 16);
    const _: () = assert!(offset_of!(RingHeader, max_message_size) == 20);
    const _: () = assert!(offset_of!(RingHeader, capacity) == 24);
    const _: () = assert!(offset_of!(RingHeader, mode) == 28);
    const _: () = assert!(offset_of!(RingHeader, slot_stride) == 32);
    const _: () = assert!(offset_of!(RingHeader, max_subscribers) == 36);
    const _: () = assert!(offset_of!(RingHeader, ring_id) == 40);
    const _: () = assert!(offset_of!(RingHeader, publisher_pid) == 48);
    const _: () = assert!(offset_of!(RingHeader, head) == PAD);
    const _: () = assert!(offset_of!(RingHeader, closed) == 2 * PAD);

    const _: () = assert!(size_of::<SlotHeader>() == 32);
    const _: () = assert!(offset_of!(SlotHeader, stamp) == 0);
    const _: () = assert!(offset_of!(SlotHeader, len) == 8);
    const _: () = assert!(offset_of!(SlotHeader, tag) == 16);
    const _: () = assert!(offset_of!(SlotHeader, timestamp) == 24);

    const _: () = assert!(offset_of!(RingHeader, latest_ack) == 3 * PAD);

    const _: () = assert!(size_of::<DeskHeader>() == 3 * PAD);
    const _: () = assert!(offset_of!(DeskHeader, ring_id) == 16);
    const _: () = assert!(offset_of!(DeskHeader, generation) == PAD);
    const _: () = assert!(offset_of!(DeskHeader, limit) == 2 * PAD);

    const _: () = assert!(size_of::<LobbyHeader>() == 2 * PAD);
    const _: () = assert!(offset_of!(LobbyHeader, ring_id) == 16);
    const _: () = assert!(offset_of!(LobbyHeader, bell) == PAD);

    const _: () = assert!(size_of::<PortHeader>() == PORT_SLOT_OFFSET);
    const _: () = assert!(align_of::<PortHeader>() == PAD);
    const _: () = assert!(offset_of!(PortHeader, ring_id) == 16);
    const _: () = assert!(offset_of!(PortHeader, port_id) == 24);
    const _: () = assert!(offset_of!(PortHeader, inline) == 32);
    const _: () = assert!(offset_of!(PortHeader, pos) == PAD);
    const _: () = assert!(offset_of!(PortHeader, dropped) == PAD + 8);
    const _: () = assert!(offset_of!(PortHeader, requests) == PAD + 16);
    const _: () = assert!(offset_of!(PortHeader, adopted) == PAD + 20);
    const _: () = assert!(offset_of!(PortHeader, delivered) == PAD + 24);
    const _: () = assert!(offset_of!(PortHeader, filtered) == PAD + 32);
    const _: () = assert!(offset_of!(PortHeader, group_to) == PAD + 40);
    const _: () = assert!(offset_of!(PortHeader, futex) == 2 * PAD);
    const _: () = assert!(offset_of!(PortHeader, sleeping) == 2 * PAD + 4);
    const _: () = assert!(offset_of!(PortHeader, mailbox_ack) == 3 * PAD);
    const _: () = assert!(offset_of!(PortHeader, wake_ack) == 3 * PAD + 4);
    const _: () = assert!(offset_of!(PortHeader, closed) == 3 * PAD + 8);
}
