//! A subscriber's mailbox: its private copy of the latest-message slot.
//!
//! The latest-message slot pays off only for a reader that polls it through
//! a writable mapping (DESIGN.md, "Where the ping-pong nanoseconds go"), and
//! a subscriber that may write the data segment could corrupt the stream for
//! everyone. A mailbox gives a subscriber that writable line without that
//! power: a small segment that only this subscriber and the ring's publisher
//! map (both read-write). The publisher writes every message there as it
//! writes the shared latest slot (small messages inline, long ones announced
//! by header), and the subscriber polls its mailbox instead of the shared
//! slot. What a subscriber writes into its own mailbox can mislead only
//! itself: the publisher never reads a mailbox, and the reader applies the
//! same stamp checks as to the shared slot.
//!
//! Hand-over: [`crate::ring::Producer::add_mailbox`] announces the last
//! message published so far ("read the ring slot") and then sets the
//! header's `ack` (Release); [`crate::ring::Consumer::attach_mailbox`] reads
//! the mailbox only once it has seen the ack (Acquire), so, as with the
//! shared slot, it is sent to the ring for everything older.
//! [`crate::ring::Producer::remove_mailbox`] stamps the slot past any
//! sequence, which sends the reader to the ring for good.

use super::latest::LatestSlot;
use super::region::{check_ident, AttachError, RingRegion};
use super::{TopicConfig, TopicConfigError};
use crate::layout::{MailboxHeader, KIND_MAILBOX, PAD};
use std::alloc::Layout;
use std::any::Any;
use std::mem::size_of;
use std::ptr::NonNull;
use std::sync::Arc;

enum Backing {
    Heap(Layout),
    External(#[allow(dead_code)] Box<dyn Any + Send + Sync>),
}

/// One subscriber's mailbox segment, validated (see the module docs).
pub struct Mailbox {
    base: NonNull<u8>,
    ring_id: u64,
    inline: usize,
    backing: Backing,
}

// SAFETY: all shared access goes through atomics and the seqlock protocol;
// the memory is owned by `backing` (a heap layout or a mapping), which is
// Send + Sync.
unsafe impl Send for Mailbox {}
// SAFETY: see `Send`.
unsafe impl Sync for Mailbox {}

impl Mailbox {
    /// A fresh mailbox on the heap for ring `ring_id` of `config` (tests,
    /// loom, in-process use).
    ///
    /// # Errors
    /// The config is invalid.
    pub fn heap(config: &TopicConfig, ring_id: u64) -> Result<Arc<Mailbox>, TopicConfigError> {
        let len = config.validate()?.mailbox_len;
        let layout = Layout::from_size_align(len as usize, PAD)
            .map_err(|_| TopicConfigError::TooBig(len))?;
        // SAFETY: non-zero size (at least two 128-byte lines).
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(p) else {
            std::alloc::handle_alloc_error(layout);
        };
        // SAFETY: a fresh allocation of `mailbox_len` bytes, 128-byte
        // aligned, not shared yet.
        unsafe { init(base.as_ptr(), config, ring_id) };
        Ok(Arc::new(Mailbox {
            base,
            ring_id,
            inline: config.sizes().latest_inline as usize,
            backing: Backing::Heap(layout),
        }))
    }

    /// Attaches to an initialised mailbox segment of `len` bytes owned by
    /// `backing`, after checking that it belongs to ring `ring_id` of
    /// `config`.
    ///
    /// # Safety
    /// `base` must be valid for reads and writes of `len` bytes, 128-byte
    /// aligned, for as long as `backing` lives, and the segment must not
    /// shrink meanwhile (a sealed memfd). The contents may be anything: they
    /// are validated here and read only through atomics afterwards.
    pub unsafe fn attach(
        base: NonNull<u8>,
        len: u64,
        config: &TopicConfig,
        ring_id: u64,
        backing: Box<dyn Any + Send + Sync>,
    ) -> Result<Mailbox, AttachError> {
        let sizes = config.validate()?;
        if len < sizes.mailbox_len {
            return Err(AttachError::Truncated {
                segment: "mailbox",
                len,
                need: sizes.mailbox_len,
            });
        }
        let h = base.as_ptr() as *const MailboxHeader;
        // Volatile reads, once each: the other process may scribble on
        // these words (as in the ring's own validation).
        macro_rules! rd {
            ($f:ident) => {
                // SAFETY: in bounds (`len >= mailbox_len`, which holds the
                // header) and aligned (the struct is, the field at its
                // natural offset); plain integers, any bit pattern valid.
                unsafe { std::ptr::addr_of!((*h).$f).read_volatile() }
            };
        }
        check_ident(
            "mailbox",
            rd!(magic),
            rd!(layout_version),
            rd!(kind),
            KIND_MAILBOX,
        )?;
        let (found_ring, inline) = (rd!(ring_id), rd!(inline));
        if found_ring != ring_id || u64::from(inline) != sizes.latest_inline {
            return Err(AttachError::Corrupt(format!(
                "mailbox is for ring {found_ring} with {inline} inline bytes, expected ring \
                 {ring_id} with {}",
                sizes.latest_inline
            )));
        }
        Ok(Mailbox {
            base,
            ring_id,
            inline: sizes.latest_inline as usize,
            backing: Backing::External(backing),
        })
    }

    /// The ring this mailbox belongs to.
    pub fn ring_id(&self) -> u64 {
        self.ring_id
    }

    /// Checks that this mailbox fits `region`'s ring: same ring id, same
    /// inline size.
    pub(crate) fn check_fits(&self, region: &RingRegion) -> Result<(), AttachError> {
        let inline = region.sizes().latest_inline as usize;
        if self.ring_id != region.ring_id() || self.inline != inline {
            return Err(AttachError::Corrupt(format!(
                "mailbox of ring {} ({} inline bytes) used with ring {} ({inline} inline bytes)",
                self.ring_id,
                self.inline,
                region.ring_id()
            )));
        }
        Ok(())
    }

    pub(crate) fn header(&self) -> &MailboxHeader {
        // SAFETY: validated (or written by `init`) at creation; lives as
        // long as `self`.
        unsafe { &*(self.base.as_ptr() as *const MailboxHeader) }
    }

    /// The slot (a latest-style slot of `inline` payload bytes).
    pub(crate) fn slot(&self) -> LatestSlot {
        // SAFETY: the slot follows the 128-byte header, inside
        // `mailbox_len` bytes (which hold a latest slot's padded length),
        // and lives as long as `self`.
        unsafe { LatestSlot::at(self.base.as_ptr().add(size_of::<MailboxHeader>())) }
    }
}

impl std::fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailbox")
            .field("ring_id", &self.ring_id)
            .field("inline", &self.inline)
            .finish()
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        if let Backing::Heap(layout) = self.backing {
            // SAFETY: allocated in `heap` with this layout; last owner.
            unsafe { std::alloc::dealloc(self.base.as_ptr(), layout) };
        }
    }
}

/// Writes a new mailbox's header and empty slot.
///
/// # Safety
/// `base` must be valid for writes of `config.sizes().mailbox_len` bytes,
/// 128-byte aligned, and not yet visible to another thread or process.
pub(crate) unsafe fn init(base: *mut u8, config: &TopicConfig, ring_id: u64) {
    let inline = config.sizes().latest_inline;
    // SAFETY: the header at 0 and the slot right after it (a multiple of
    // 128 bytes in) lie inside the segment per the caller's guarantee,
    // aligned for their types.
    unsafe {
        (base as *mut MailboxHeader).write(MailboxHeader::new(ring_id, inline as u32));
        super::latest::LatestSlot::init(base.add(size_of::<MailboxHeader>()), inline as usize);
    }
}
