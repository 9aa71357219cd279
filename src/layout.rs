//! `#[repr(C)]` structures that live in shared memory, with compile-time
//! size, alignment and offset checks.
//!
//! A ring is two segments:
//!
//! * the **data segment** (`RingHeader`, the latest-message slot, then
//!   `capacity` slots; see [`crate::ring`]) is written by
//!   the publisher alone; subscribers map it read-only, so a subscriber cannot
//!   corrupt the stream for the others;
//! * the **control segment** (`CtrlHeader` then `max_subscribers` cursor
//!   slots) is writable by every attached process: back-pressure cursors,
//!   the futex word and the sleeper count live here.
//!
//! Every field is a fixed-width integer or an atomic of one: no pointers,
//! `usize` or `bool`, so 64-bit processes built by different compilers agree
//! on the layout. Fields that more than one side touches on the hot path sit
//! on their own 128-byte line (x86_64's adjacent-line prefetcher pulls pairs
//! of 64-byte lines, which is why crossbeam pads to 128 there).

use crate::sync::{AtomicU32, AtomicU64};

/// `b"RINGBUS\0"` read as a little-endian `u64`: first word of both segments.
pub const MAGIC: u64 = u64::from_le_bytes(*b"RINGBUS\0");
/// Bumped whenever any structure in this file changes shape or meaning
/// (3: latest-style slots guard their tail with a check word, see
/// `ring/latest.rs`).
pub const LAYOUT_VERSION: u32 = 3;
/// Padding unit that keeps independently written fields apart.
pub const PAD: usize = 128;
/// Slots are aligned (and their stride rounded) to one cache line.
pub const CACHE_LINE: usize = 64;
/// Value of an unused [`CursorSlot::pos`].
pub const CURSOR_FREE: u64 = u64::MAX;

/// Kind tag stored in the header so a data segment is never attached as a
/// control segment or the reverse.
pub const KIND_DATA: u32 = 1;
/// See [`KIND_DATA`].
pub const KIND_CTRL: u32 = 2;
/// See [`KIND_DATA`]: a subscriber's mailbox ([`MailboxHeader`]).
pub const KIND_MAILBOX: u32 = 3;

/// Header of the data segment. Line 0 is immutable after creation; line 1
/// is written by the publisher on every message; line 2 changes once (end of
/// stream) and is polled by idle subscribers, so it is kept off line 1.
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
    /// Bytes from one slot to the next (multiple of [`CACHE_LINE`]).
    pub slot_stride: u32,
    /// Number of cursor slots in the control segment.
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

/// Header of the control segment, writable by all attached processes.
#[repr(C, align(128))]
pub struct CtrlHeader {
    // ---- line 0: identity ----
    /// [`MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`].
    pub layout_version: u32,
    /// [`KIND_CTRL`].
    pub kind: u32,
    /// Number of [`CursorSlot`]s that follow this header.
    pub max_subscribers: u32,
    /// Reserved, zero.
    pub _reserved: u32,
    /// Same value as [`RingHeader::ring_id`].
    pub ring_id: u64,
    _pad0: [u8; PAD - 32],
    // ---- line 1: sleeping subscribers ----
    /// Futex word: bumped by the publisher before each `FUTEX_WAKE`.
    pub futex: AtomicU32,
    /// Number of subscribers inside (or about to enter) `FUTEX_WAIT`.
    pub sleepers: AtomicU32,
    /// Set to 1 by the first subscriber that may block; from then on the
    /// publisher runs the sleeper check after each publish.
    pub wake_enabled: AtomicU32,
    /// Set to 1 by the publisher once it has seen `wake_enabled`; a
    /// subscriber sleeps without a time bound only after it sees this.
    pub wake_ack: AtomicU32,
    /// Set to 1 by a subscriber that polls the latest-message slot (it maps
    /// the data writable); from then on the publisher writes that slot.
    pub latest_wanted: AtomicU32,
    /// Set to 1 by the publisher once it writes the latest-message slot
    /// with every message; a subscriber reads that slot only after it sees
    /// this.
    pub latest_ack: AtomicU32,
    /// Bumped by the broker whenever it adds or removes a subscriber's
    /// mailbox of this ring; a publisher that sees it move fetches the
    /// current list.
    pub mailbox_generation: AtomicU32,
    _pad1: [u8; PAD - 28],
    // ---- line 2: back-pressure gating ----
    /// Back-pressure mode: the publisher writes no sequence at or above this
    /// bound without first re-reading the cursors. Joining subscribers read
    /// it to place their cursor where the publisher will respect it.
    pub limit: AtomicU64,
    /// Bumped each time a subscriber claims or releases a cursor.
    pub cursor_generation: AtomicU64,
    _pad2: [u8; PAD - 16],
}

/// One subscriber's cursor, on its own padded line (subscribers write
/// theirs on every message; the publisher reads them only when its cached
/// limit runs out). On back-pressure rings the cursor gates the publisher;
/// on overwrite rings it only reports the subscriber's position and losses
/// (for `ringbus topics`), and a subscriber that finds no free slot simply
/// goes without.
#[repr(C, align(128))]
pub struct CursorSlot {
    /// Next sequence this subscriber will read, or [`CURSOR_FREE`].
    pub pos: AtomicU64,
    /// Process id of the owner (for the broker's reaper); 0 if unknown.
    pub owner_pid: AtomicU32,
    /// Reserved, zero.
    pub _reserved: AtomicU32,
    /// Messages this subscriber lost to overwrites so far.
    pub dropped: AtomicU64,
    _pad: [u8; PAD - 24],
}

/// Header of a **mailbox**: one subscriber's private copy of the
/// latest-message slot, in a segment only that subscriber and the ring's
/// publisher map (both read-write), so a subscriber that polls a writable
/// line need not be able to write the shared data segment (see
/// [`crate::ring::Mailbox`]). The slot (a [`SlotHeader`], then `inline`
/// payload bytes) follows the header, at offset [`PAD`].
#[repr(C, align(128))]
pub struct MailboxHeader {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`].
    pub layout_version: u32,
    /// [`KIND_MAILBOX`].
    pub kind: u32,
    /// The ring whose messages this mailbox receives.
    pub ring_id: u64,
    /// Payload bytes the slot holds inline (the ring's `latest_inline`).
    pub inline: u32,
    /// Reserved, zero.
    pub _reserved: u32,
    /// Set to 1 by the publisher once it writes the mailbox with every
    /// message; [`MAILBOX_RETIRED`] once it has stopped for good.
    pub ack: AtomicU32,
    _pad: [u8; PAD - 36],
}

/// [`MailboxHeader::ack`] of a mailbox its publisher no longer writes.
pub const MAILBOX_RETIRED: u32 = 2;

impl MailboxHeader {
    pub(crate) fn new(ring_id: u64, inline: u32) -> Self {
        MailboxHeader {
            magic: MAGIC,
            layout_version: LAYOUT_VERSION,
            kind: KIND_MAILBOX,
            ring_id,
            inline,
            _reserved: 0,
            ack: AtomicU32::new(0),
            _pad: [0; PAD - 36],
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

impl CtrlHeader {
    pub(crate) fn new(max_subscribers: u32, ring_id: u64, capacity: u32) -> Self {
        CtrlHeader {
            magic: MAGIC,
            layout_version: LAYOUT_VERSION,
            kind: KIND_CTRL,
            max_subscribers,
            _reserved: 0,
            ring_id,
            _pad0: [0; PAD - 32],
            futex: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            wake_enabled: AtomicU32::new(0),
            wake_ack: AtomicU32::new(0),
            latest_wanted: AtomicU32::new(0),
            latest_ack: AtomicU32::new(0),
            mailbox_generation: AtomicU32::new(0),
            _pad1: [0; PAD - 28],
            limit: AtomicU64::new(u64::from(capacity)),
            cursor_generation: AtomicU64::new(0),
            _pad2: [0; PAD - 16],
        }
    }
}

impl CursorSlot {
    pub(crate) fn new() -> Self {
        CursorSlot {
            pos: AtomicU64::new(CURSOR_FREE),
            owner_pid: AtomicU32::new(0),
            _reserved: AtomicU32::new(0),
            dropped: AtomicU64::new(0),
            _pad: [0; PAD - 24],
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

    const _: () = assert!(size_of::<RingHeader>() == 3 * PAD);
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

    const _: () = assert!(size_of::<CtrlHeader>() == 3 * PAD);
    const _: () = assert!(offset_of!(CtrlHeader, futex) == PAD);
    const _: () = assert!(offset_of!(CtrlHeader, sleepers) == PAD + 4);
    const _: () = assert!(offset_of!(CtrlHeader, wake_enabled) == PAD + 8);
    const _: () = assert!(offset_of!(CtrlHeader, wake_ack) == PAD + 12);
    const _: () = assert!(offset_of!(CtrlHeader, latest_wanted) == PAD + 16);
    const _: () = assert!(offset_of!(CtrlHeader, latest_ack) == PAD + 20);
    const _: () = assert!(offset_of!(CtrlHeader, mailbox_generation) == PAD + 24);
    const _: () = assert!(offset_of!(CtrlHeader, limit) == 2 * PAD);
    const _: () = assert!(offset_of!(CtrlHeader, cursor_generation) == 2 * PAD + 8);

    const _: () = assert!(size_of::<MailboxHeader>() == PAD);
    const _: () = assert!(offset_of!(MailboxHeader, ring_id) == 16);
    const _: () = assert!(offset_of!(MailboxHeader, inline) == 24);
    const _: () = assert!(offset_of!(MailboxHeader, ack) == 32);

    const _: () = assert!(offset_of!(CursorSlot, pos) == 0);
    const _: () = assert!(offset_of!(CursorSlot, owner_pid) == 8);
    const _: () = assert!(offset_of!(CursorSlot, dropped) == 16);
    const _: () = assert!(size_of::<CursorSlot>() == PAD);
    const _: () = assert!(align_of::<CursorSlot>() == PAD);
}
