//! A subscriber's **port** on a ring: the state it shares with the ring's
//! publisher and nobody else (see [`crate::layout::PortHeader`]).
//!
//! * its **cursor** (`pos`): on a back-pressure ring the publisher never
//!   overwrites a message at or above it; on an overwrite ring it shows the
//!   subscriber's position and losses to the broker;
//! * its **wake word** (`futex`, `sleeping`): a subscriber that may block
//!   sleeps on its own port, and the publisher wakes it there;
//! * its **requests** (wake-ups, the shared latest slot) and the
//!   publisher's answers;
//! * its **mailbox**: a private copy of the latest-message slot, which the
//!   publisher writes with every message when the port's creator asked for
//!   one (a read-only subscriber then polls a writable line without being
//!   able to write the shared data segment).
//!
//! Isolation: a port segment is a sealed memfd mapped read-write by one
//! subscriber and the publisher only. Whatever a subscriber writes into its
//! own port misleads the publisher about that subscriber alone (its cursor
//! can stall the publisher, as not reading would), and the reader applies
//! the same stamp checks to its mailbox as to the shared slot.
//!
//! Hand-over of a mailbox: [`crate::ring::Producer::add_port`] announces
//! the last message published so far ("read the ring slot") and then sets
//! `mailbox_ack` (Release); the consumer reads the mailbox only once it has
//! seen the ack (Acquire), so it is sent to the ring for everything older.
//! Removing the port stamps the slot past any sequence and sets
//! [`MAILBOX_RETIRED`](crate::layout::MAILBOX_RETIRED), which sends the
//! reader to the ring for good.

use super::latest::LatestSlot;
use super::region::{check_ident, AttachError, RingRegion};
use super::{TopicConfig, TopicConfigError};
use crate::layout::{PortHeader, KIND_PORT, PAD, PORT_SLOT_OFFSET};
use crate::sync::Ordering;
use std::alloc::Layout;
use std::any::Any;
use std::ptr::NonNull;
use std::sync::Arc;

enum Backing {
    Heap(Layout),
    External(#[allow(dead_code)] Box<dyn Any + Send + Sync>),
}

/// One subscriber's port segment, validated (see the module docs).
pub struct Port {
    base: NonNull<u8>,
    ring_id: u64,
    port_id: u64,
    inline: usize,
    backing: Backing,
}

// SAFETY: all shared access goes through atomics and the seqlock protocol;
// the memory is owned by `backing` (a heap layout or a mapping), which is
// Send + Sync.
unsafe impl Send for Port {}
// SAFETY: see `Send`.
unsafe impl Sync for Port {}

/// What the port's creator (the broker) decided for it; the publisher
/// takes this from its creator, never from the port's own memory, which
/// the subscriber can write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortFlags {
    /// Write every message to the port's mailbox slot too.
    pub mailbox: bool,
    /// The subscriber maps the data segment writable and may ask for the
    /// shared latest-message slot ([`crate::layout::REQUEST_LATEST`]).
    pub trusted: bool,
}

impl Port {
    /// A fresh port on the heap for port `port_id` of ring `ring_id` of
    /// `config`, its cursor at `pos` (tests, loom, in-process use).
    ///
    /// # Errors
    /// The config is invalid.
    pub fn heap(
        config: &TopicConfig,
        ring_id: u64,
        port_id: u64,
        pos: u64,
    ) -> Result<Arc<Port>, TopicConfigError> {
        let len = config.validate()?.port_len;
        let layout = Layout::from_size_align(len as usize, PAD)
            .map_err(|_| TopicConfigError::TooBig(len))?;
        // SAFETY: non-zero size (at least five 128-byte lines).
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(p) else {
            std::alloc::handle_alloc_error(layout);
        };
        // SAFETY: a fresh allocation of `port_len` bytes, 128-byte aligned,
        // not shared yet.
        unsafe { init(base.as_ptr(), config, ring_id, port_id, pos) };
        Ok(Arc::new(Port {
            base,
            ring_id,
            port_id,
            inline: config.sizes().latest_inline as usize,
            backing: Backing::Heap(layout),
        }))
    }

    /// Attaches to an initialised port segment of `len` bytes owned by
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
    ) -> Result<Port, AttachError> {
        let sizes = config.validate()?;
        if len < sizes.port_len {
            return Err(AttachError::Truncated {
                segment: "port",
                len,
                need: sizes.port_len,
            });
        }
        let h = base.as_ptr() as *const PortHeader;
        // Volatile reads, once each: the other process may scribble on
        // these words (as in the ring's own validation).
        macro_rules! rd {
            ($f:ident) => {
                // SAFETY: in bounds (`len >= port_len`, which holds the
                // header) and aligned (the struct is, the field at its
                // natural offset); plain integers, any bit pattern valid.
                unsafe { std::ptr::addr_of!((*h).$f).read_volatile() }
            };
        }
        check_ident(
            "port",
            rd!(magic),
            rd!(layout_version),
            rd!(kind),
            KIND_PORT,
        )?;
        let (found_ring, inline) = (rd!(ring_id), rd!(inline));
        if found_ring != ring_id || u64::from(inline) != sizes.latest_inline {
            return Err(AttachError::Corrupt(format!(
                "port is for ring {found_ring} with {inline} inline bytes, expected ring \
                 {ring_id} with {}",
                sizes.latest_inline
            )));
        }
        Ok(Port {
            base,
            ring_id,
            port_id: rd!(port_id),
            inline: sizes.latest_inline as usize,
            backing: Backing::External(backing),
        })
    }

    /// The ring this port belongs to.
    pub fn ring_id(&self) -> u64 {
        self.ring_id
    }

    /// The port's id within its ring (as its creator wrote it).
    pub fn port_id(&self) -> u64 {
        self.port_id
    }

    /// The subscriber's cursor: the next sequence it will read
    /// ([`crate::layout::CURSOR_FREE`] once it left).
    pub fn pos(&self) -> u64 {
        // Acquire: pairs with the Release cursor store in
        // Consumer::advance.
        self.header().pos.load(Ordering::Acquire)
    }

    /// A consumer group member's claim end (`PortHeader::group_to`): its
    /// unacknowledged range is the cursor up to this. Read by the broker
    /// once the member is gone.
    pub fn group_to(&self) -> u64 {
        // Relaxed: the member is gone; its stores are in.
        self.header().group_to.load(Ordering::Relaxed)
    }

    /// Messages the subscriber reports lost.
    pub fn dropped(&self) -> u64 {
        self.header().dropped.load(Ordering::Relaxed)
    }

    /// Whether the subscriber has taken the port over.
    pub fn adopted(&self) -> bool {
        self.header().adopted.load(Ordering::Relaxed) != 0
    }

    /// Ends the ring for this port's subscriber: its publisher died, and
    /// whoever found it dead (the broker) says so here, since nobody will
    /// close the data segment for it. The subscriber drains every message
    /// the publisher completed, then sees end of stream; if it sleeps on
    /// the port, it is woken to see it.
    pub fn close(&self) {
        let h = self.header();
        // Release: pairs with the Acquire in Consumer::ended; every message
        // the publisher completed before it died (which its closer learnt
        // of first) is complete for a subscriber that sees this.
        h.closed.store(1, Ordering::Release);
        crate::wait::wake_port(h);
    }

    /// Checks that this port fits `region`'s ring: same ring id, same
    /// inline size.
    pub(crate) fn check_fits(&self, region: &RingRegion) -> Result<(), AttachError> {
        let inline = region.sizes().latest_inline as usize;
        if self.ring_id != region.ring_id() || self.inline != inline {
            return Err(AttachError::Corrupt(format!(
                "port of ring {} ({} inline bytes) used with ring {} ({inline} inline bytes)",
                self.ring_id,
                self.inline,
                region.ring_id()
            )));
        }
        Ok(())
    }

    pub(crate) fn header(&self) -> &PortHeader {
        // SAFETY: validated (or written by `init`) at creation; lives as
        // long as `self`.
        unsafe { &*(self.base.as_ptr() as *const PortHeader) }
    }

    /// The mailbox slot (a latest-style slot of `inline` payload bytes).
    pub(crate) fn slot(&self) -> LatestSlot {
        // SAFETY: the slot follows the header at PORT_SLOT_OFFSET, inside
        // `port_len` bytes (which hold a latest slot's padded length), and
        // lives as long as `self`.
        unsafe { LatestSlot::at(self.base.as_ptr().add(PORT_SLOT_OFFSET)) }
    }
}

impl std::fmt::Debug for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Port")
            .field("ring_id", &self.ring_id)
            .field("port_id", &self.port_id)
            .field("pos", &self.pos())
            .finish()
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        if let Backing::Heap(layout) = self.backing {
            // SAFETY: allocated in `heap` with this layout; last owner.
            unsafe { std::alloc::dealloc(self.base.as_ptr(), layout) };
        }
    }
}

/// Writes a new port's header and empty mailbox slot, its cursor at `pos`.
///
/// # Safety
/// `base` must be valid for writes of `config.sizes().port_len` bytes,
/// 128-byte aligned, and not yet visible to another thread or process.
pub(crate) unsafe fn init(
    base: *mut u8,
    config: &TopicConfig,
    ring_id: u64,
    port_id: u64,
    pos: u64,
) {
    let inline = config.sizes().latest_inline;
    // SAFETY: the header at 0 and the slot at PORT_SLOT_OFFSET (a multiple
    // of 128 bytes in) lie inside the segment per the caller's guarantee,
    // aligned for their types.
    unsafe {
        (base as *mut PortHeader).write(PortHeader::new(ring_id, port_id, inline as u32, pos));
        super::latest::LatestSlot::init(base.add(PORT_SLOT_OFFSET), inline as usize);
    }
}
