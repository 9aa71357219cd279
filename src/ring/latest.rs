//! The layout of a latest-style slot: the shared latest-message slot and a
//! mailbox's slot (see the module docs of [`super`]).
//!
//! ```text
//! line 0: SlotHeader (stamp, len, tag, timestamp) | head: payload[..HEAD]
//! line 1: check | tail: payload[HEAD..inline]
//! ```
//!
//! A message longer than [`LATEST_HEAD`] spans two lines, and the reader
//! polls line 0. With the stamp alone guarding both lines, the writer's odd
//! stamp went out with line 0 as soon as it owned that line, then waited
//! for line 1; a reader polling line 0 took the line back meanwhile, and
//! the rest of the message cost another transfer each way (the bench's
//! `line_probe`; DESIGN.md, "The latest-message slot").
//!
//! So the tail has its own guard, the **check** word, in the line it
//! guards. The writer of message `seq` with a tail:
//! 1. `check = 2 * seq + 1`; Release fence; writes the tail;
//! 2. then line 0 in one burst: odd stamp (Release), Release fence, head,
//!    header fields, done stamp (Release).
//!
//! The reader of `seq` sees the done stamp (Acquire), copies the header,
//! head and tail, runs an Acquire fence, and keeps the copy only if the
//! stamp is unchanged and, for a message with a tail, `check` still reads
//! `2 * seq + 1`. A writer that moved on rewrote the tail only after
//! setting `check` to its own sequence, and line 0 only after its odd
//! stamp: a copy that saw any of its bytes sees one of those (the usual
//! seqlock pairing of Release and Acquire fences, once per guard). A
//! message without a tail leaves line 1 alone, so an older message's tail
//! and check stay whole.

use std::mem::size_of;

use super::copy::payload_bytes;
use crate::layout::SlotHeader;
use crate::sync::AtomicU64;

/// Payload bytes a latest-style slot keeps in line 0, beside the header.
/// Under loom one word, so the models' 16-byte messages have a tail.
pub(crate) const LATEST_HEAD: usize = if cfg!(loom) { 8 } else { 32 };

/// Bytes of a latest-style slot holding `inline` payload bytes, before
/// padding: header, head, check word, tail. The check word is there even
/// when `inline` has no tail, so every slot has the same shape.
pub(crate) fn latest_slot_bytes(inline: usize) -> usize {
    size_of::<SlotHeader>()
        + payload_bytes(LATEST_HEAD)
        + size_of::<AtomicU64>()
        + payload_bytes(inline.saturating_sub(LATEST_HEAD))
}

/// The addresses of a latest-style slot's parts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LatestSlot {
    /// Stamp and header fields.
    pub hdr: *const SlotHeader,
    /// Payload bytes `..LATEST_HEAD`.
    pub head: *mut u8,
    /// The tail's guard.
    pub check: *const AtomicU64,
    /// Payload bytes `LATEST_HEAD..`.
    pub tail: *mut u8,
}

impl LatestSlot {
    /// The parts of the slot at `base`.
    ///
    /// # Safety
    /// `base` must point to a slot of `latest_slot_bytes(inline)` bytes
    /// (the ring's `latest_inline`), 128-byte aligned in real builds (so the
    /// check word starts line 1), inside memory that outlives the result's
    /// use.
    pub(crate) unsafe fn at(base: *mut u8) -> LatestSlot {
        // SAFETY: all offsets stay inside the slot per the caller's
        // guarantee (`latest_slot_bytes` adds the same sizes).
        unsafe {
            let head = base.add(size_of::<SlotHeader>());
            let check = head.add(payload_bytes(LATEST_HEAD));
            LatestSlot {
                hdr: base as *const SlotHeader,
                head,
                check: check as *const AtomicU64,
                tail: check.add(size_of::<AtomicU64>()),
            }
        }
    }

    /// Initialises a fresh slot of `inline` payload bytes at `base`.
    ///
    /// # Safety
    /// As for [`LatestSlot::at`], and `base` valid for writes and not yet
    /// visible to another thread or process.
    pub(crate) unsafe fn init(base: *mut u8, inline: usize) {
        // SAFETY: the caller's guarantee; each part lies inside the slot,
        // aligned for its type.
        unsafe {
            let s = LatestSlot::at(base);
            (s.hdr as *mut SlotHeader).write(SlotHeader::new());
            super::copy::init_payload(s.head, LATEST_HEAD);
            (s.check as *mut AtomicU64).write(AtomicU64::new(0));
            super::copy::init_payload(s.tail, inline.saturating_sub(LATEST_HEAD));
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn the_check_word_starts_the_second_line() {
        let mut slot = vec![0u64; 16];
        let base = slot.as_mut_ptr() as *mut u8;
        // SAFETY: a 128-byte buffer, the slot of `latest_slot_bytes(88)`
        // bytes; only addresses are taken.
        let s = unsafe { LatestSlot::at(base) };
        let at = |p: usize| p - base as usize;
        assert_eq!(at(s.head as usize), 32);
        assert_eq!(at(s.check as usize), 64);
        assert_eq!(at(s.tail as usize), 72);
        assert_eq!(latest_slot_bytes(88), 128);
        assert_eq!(latest_slot_bytes(64), 104);
        assert_eq!(latest_slot_bytes(8), 72);
    }
}
