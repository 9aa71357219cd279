//! The streaming floors: single-producer single-consumer copy rings in the
//! bench's shared memory, no ringbus code. The publisher copies each
//! message into a slot and publishes `head`; the subscriber copies it out,
//! checks it, and hands the slot back with `tail`. Each side caches the
//! other's index (as rtrb does) and reads the shared one only when its
//! cached copy says the ring is full (publisher) or empty (subscriber), so
//! the indices' lines cross cores about once per batch, not per message.
//!
//! The same two loops run two slot layouts ([`Kind`]):
//!
//! * **fixed size**, the floor ringbus streaming rows are paired with:
//!   slots of exactly the message size and copies whose length the
//!   compiler knows ([`Fixed`], one ring instantiated per size), so a small
//!   message is a few register moves, not a `memcpy` call. Instantiated
//!   for the sizes `scenario::fixed_copy_is_compiled` names (every power of two
//!   the bench accepts, which includes the default sizes). Any other size
//!   gets slots of exactly its size with a run-time copy length
//!   ([`Exact`]); its rows say `exact slots` instead of `fixed size`. A
//!   size rounded up to a compiled one would move more bytes than the
//!   ringbus row it is compared with, which is the one thing a floor must
//!   not do.
//! * **run-time length**, a second baseline (the floor the bench used
//!   before): slots rounded up to 8 bytes, copies whose length is known
//!   only at run time ([`RunTime`]), one `memcpy` call each way per
//!   message.
//! * **read-only reader**, the fixed-size ring again, its reader reading
//!   the slots through a read-only mapping of the same memory, as a ringbus
//!   subscriber that is not trusted reads its rings (its `tail` is still
//!   written through the writable one, as a subscriber writes its cursor
//!   into its own port). What the page protection alone costs: on some
//!   hosts a stream of 1-2 KiB messages read through a read-only mapping
//!   runs at a quarter of the rate (DESIGN.md, "Read-only subscribers").
//!
//! Every message is checked on the receiving side: flat out, its first 8
//! bytes must be its sequence number; paced (latency runs), they carry its
//! publish time, stamped after the copy as the ring stamps its messages.

use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{ensure, Result};

use super::clock::monotonic_ns;
use super::driver::{Budget, Pacer, Receipts};
use super::params::{Params, SideResult};
use super::shared::{spin_until, Padded, ReadOnlyView, Region, SharedPlain, CONTROL_SIZE};

/// Which copy ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Slots of exactly the message size; copies of a compile-time length
    /// where the size has an instantiation (see the module docs).
    Fixed,
    /// Slots rounded up to 8 bytes; copies of a run-time length.
    RunTime,
    /// As [`Kind::Fixed`], the reader reading the slots through a
    /// read-only mapping ([`Region::read_only_view`]).
    ReadOnly,
}

#[repr(C)]
struct RingIdx {
    /// Messages published; written by the producer only.
    head: Padded<AtomicU64>,
    /// Messages consumed; written by the consumer only.
    tail: Padded<AtomicU64>,
}
// SAFETY: two padded atomics; repr(C); zero is valid.
unsafe impl SharedPlain for RingIdx {}

/// Offset of slot 0 in the region.
const RING_SLOTS: usize = CONTROL_SIZE + std::mem::size_of::<RingIdx>();

/// Bytes one `size`-byte message occupies in a ring of `kind`: what the
/// ring moves from one core to the other per message.
pub fn slot_bytes(kind: Kind, size: usize) -> usize {
    match kind {
        Kind::Fixed | Kind::ReadOnly => size,
        Kind::RunTime => size.next_multiple_of(8),
    }
}

/// Region size for a ring of `kind` with `capacity` slots.
pub fn region_len(kind: Kind, size: usize, capacity: u32) -> usize {
    RING_SLOTS + capacity as usize * slot_bytes(kind, size)
}

/// A copy ring's slot layout and its two copies.
trait Slots: Copy {
    /// Message bytes.
    fn len(self) -> usize;
    /// Bytes from one slot to the next.
    fn stride(self) -> usize;
    /// Whether the copies' length is a compile-time constant.
    #[cfg(test)]
    fn compile_time(self) -> bool;
    /// Copies `msg` into the slot at `slot`.
    ///
    /// # Safety
    ///
    /// `slot` is valid for writes of `self.len()` bytes that no other
    /// thread or process accesses meanwhile, and `msg.len() == self.len()`.
    unsafe fn copy_in(self, msg: &[u8], slot: *mut u8);
    /// Copies the slot at `slot` into `msg`.
    ///
    /// # Safety
    ///
    /// `slot` is valid for reads of `self.len()` bytes that no other
    /// thread or process writes meanwhile, and `msg.len() == self.len()`.
    unsafe fn copy_out(self, slot: *const u8, msg: &mut [u8]);
}

/// Slots of exactly `N` bytes, copied with the constant length `N`.
#[derive(Clone, Copy)]
struct Fixed<const N: usize>;

impl<const N: usize> Slots for Fixed<N> {
    #[inline(always)]
    fn len(self) -> usize {
        N
    }
    #[inline(always)]
    fn stride(self) -> usize {
        N
    }
    #[cfg(test)]
    fn compile_time(self) -> bool {
        true
    }
    #[inline(always)]
    unsafe fn copy_in(self, msg: &[u8], slot: *mut u8) {
        debug_assert_eq!(msg.len(), N);
        // SAFETY: the caller's contract: `msg` has `N` bytes and `slot` is
        // writable for `N`, exclusively.
        unsafe { ptr::copy_nonoverlapping(msg.as_ptr(), slot, N) }
    }
    #[inline(always)]
    unsafe fn copy_out(self, slot: *const u8, msg: &mut [u8]) {
        debug_assert_eq!(msg.len(), N);
        // SAFETY: the caller's contract, as in `copy_in`.
        unsafe { ptr::copy_nonoverlapping(slot, msg.as_mut_ptr(), N) }
    }
}

/// Slots of exactly the message size, copied with a run-time length: the
/// fixed-size floor of a size without an instantiation.
#[derive(Clone, Copy)]
struct Exact {
    size: usize,
}

/// Slots rounded up to 8 bytes, copied with a run-time length.
#[derive(Clone, Copy)]
struct RunTime {
    size: usize,
}

macro_rules! runtime_copies {
    ($t:ty, $kind:expr) => {
        impl Slots for $t {
            #[inline(always)]
            fn len(self) -> usize {
                self.size
            }
            #[inline(always)]
            fn stride(self) -> usize {
                slot_bytes($kind, self.size)
            }
            #[cfg(test)]
            fn compile_time(self) -> bool {
                false
            }
            #[inline(always)]
            unsafe fn copy_in(self, msg: &[u8], slot: *mut u8) {
                debug_assert_eq!(msg.len(), self.size);
                // SAFETY: the caller's contract: `msg` has `size` bytes and
                // `slot` is writable for `size`, exclusively.
                unsafe { ptr::copy_nonoverlapping(msg.as_ptr(), slot, self.size) }
            }
            #[inline(always)]
            unsafe fn copy_out(self, slot: *const u8, msg: &mut [u8]) {
                debug_assert_eq!(msg.len(), self.size);
                // SAFETY: the caller's contract, as in `copy_in`.
                unsafe { ptr::copy_nonoverlapping(slot, msg.as_mut_ptr(), self.size) }
            }
        }
    };
}
runtime_copies!(Exact, Kind::Fixed);
runtime_copies!(RunTime, Kind::RunTime);

/// Evaluates `$body` with `$s` bound to the slot layout of a ring of
/// `$kind` for `$size`-byte messages: [`Fixed`] for the sizes
/// `scenario::fixed_copy_is_compiled` names, else [`Exact`]; or
/// [`RunTime`].
macro_rules! with_slots {
    (@fixed $size:ident, |$s:ident| $body:expr, $($n:literal),*) => {
        match $size {
            $($n => {
                let $s = Fixed::<$n>;
                $body
            })*
            size => {
                let $s = Exact { size };
                $body
            }
        }
    };
    ($kind:expr, $size:expr, |$s:ident| $body:expr) => {
        match ($kind, $size) {
            (Kind::RunTime, size) => {
                let $s = RunTime { size };
                $body
            }
            // The powers of two in `MIN_SIZE..=MAX_SIZE`
            // (`fixed_copy_is_compiled`; a test checks they agree).
            (Kind::Fixed | Kind::ReadOnly, size) => with_slots!(
                @fixed size, |$s| $body,
                8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
                131072, 262144, 524288, 1048576
            ),
        }
    };
}

struct CopyRing<'a, S> {
    idx: &'a RingIdx,
    slots: *mut u8,
    /// Where the reader reads the slots: `slots`, or the same memory
    /// through a read-only view.
    read: *const u8,
    mask: u64,
    cap: u64,
    layout: S,
}

impl<'a, S: Slots> CopyRing<'a, S> {
    /// The ring in `region`; its reader reads the slots through `view` if
    /// given (the read-only reader).
    fn new(
        region: &'a Region,
        p: &Params,
        layout: S,
        view: Option<&ReadOnlyView>,
    ) -> Result<CopyRing<'a, S>> {
        ensure!(
            p.capacity.is_power_of_two(),
            "capacity must be a power of two"
        );
        ensure!(
            layout.len() == p.size,
            "copy ring for {}-byte messages given {}-byte ones",
            layout.len(),
            p.size
        );
        let area = p.capacity as usize * layout.stride();
        let slots = region.bytes(RING_SLOTS, area)?;
        Ok(CopyRing {
            idx: region.at(CONTROL_SIZE)?,
            slots,
            read: match view {
                Some(v) => v.bytes(RING_SLOTS, area)?,
                None => slots,
            },
            mask: u64::from(p.capacity) - 1,
            cap: u64::from(p.capacity),
            layout,
        })
    }

    /// Where slot `seq` starts in the slot area: `(seq & mask) * stride
    /// + stride <= capacity * stride`, the size of both mappings' slot
    /// areas, checked in `new`.
    #[inline(always)]
    fn offset(&self, seq: u64) -> usize {
        (seq & self.mask) as usize * self.layout.stride()
    }

    /// Slot `seq`, for the writer.
    #[inline(always)]
    fn slot(&self, seq: u64) -> *mut u8 {
        // SAFETY: inside the slot area (see `offset`).
        unsafe { self.slots.add(self.offset(seq)) }
    }

    /// Slot `seq`, for the reader.
    #[inline(always)]
    fn read_slot(&self, seq: u64) -> *const u8 {
        // SAFETY: inside the slot area (see `offset`).
        unsafe { self.read.add(self.offset(seq)) }
    }
}

fn seq_of(buf: &[u8]) -> u64 {
    u64::from_le_bytes(buf[..8].try_into().expect("messages are at least 8 bytes"))
}

/// Parent: publishes `warmup + iters` messages into a ring of `kind` (flat
/// out, or paced at `p.rate` with the publish time in the first 8 bytes),
/// then sets `stop`.
pub fn parent(region: &Region, p: &Params, kind: Kind) -> Result<()> {
    with_slots!(kind, p.size, |s| publish(region, p, s))
}

/// Child: consumes from a ring of `kind` until the publisher's `stop`,
/// checking sequence numbers (flat out) or recording latencies (paced).
pub fn child(region: &Region, p: &Params, kind: Kind) -> Result<SideResult> {
    let view = match kind {
        Kind::ReadOnly => Some(region.read_only_view()?),
        Kind::Fixed | Kind::RunTime => None,
    };
    with_slots!(kind, p.size, |s| consume(region, p, s, view.as_ref()))
}

fn publish<S: Slots>(region: &Region, p: &Params, layout: S) -> Result<()> {
    let ctl = region.control();
    let ring = CopyRing::new(region, p, layout, None)?;
    let paced = p.rate > 0;
    let mut pacer = Pacer::new(p.rate);
    let mut budget = Budget::new(p);
    let mut msg = vec![0x3Cu8; p.size];
    let mut head = 0u64;
    let mut limit = ring.cap; // cached tail + capacity
    loop {
        if head == limit {
            spin_until(ctl, "space in the copy ring", || {
                // Acquire: pairs with the Release store of `tail` in
                // `consume`, so its copy out of the slot is done before we
                // overwrite it.
                limit = ring.idx.tail.0.load(Ordering::Acquire) + ring.cap;
                head < limit
            })?;
        }
        if paced {
            pacer.wait();
        }
        msg[..8].copy_from_slice(&head.to_le_bytes());
        // SAFETY: slot `head` is free (head < tail + capacity) and only this
        // process writes slots; `msg` has the ring's message size.
        unsafe { ring.layout.copy_in(&msg, ring.slot(head)) };
        if paced {
            // Stamped after the copy, as the ring stamps its messages.
            let stamp = monotonic_ns().to_le_bytes();
            // SAFETY: as above; the first 8 bytes of the same slot.
            unsafe { ptr::copy_nonoverlapping(stamp.as_ptr(), ring.slot(head), 8) };
        }
        head += 1;
        // Release: publishes the slot; pairs with the Acquire load of
        // `head` in `consume`.
        ring.idx.head.0.store(head, Ordering::Release);
        if !budget.more_after(head) {
            break;
        }
    }
    // Release: pairs with the Acquire load of `stop` in `consume`; `head`
    // is already published.
    ctl.stop.store(head + 1, Ordering::Release);
    Ok(())
}

/// The consumer's loop; it reads the slots through `view` if given (the
/// read-only reader).
fn consume<S: Slots>(
    region: &Region,
    p: &Params,
    layout: S,
    view: Option<&ReadOnlyView>,
) -> Result<SideResult> {
    let ctl = region.control();
    let ring = CopyRing::new(region, p, layout, view)?;
    let paced = p.rate > 0;
    let mut receipts = Receipts::new(p, paced);
    let mut msg = vec![0u8; p.size];
    let mut tail = 0u64;
    let mut avail = 0u64; // cached head
    loop {
        if tail == avail {
            let mut done = false;
            spin_until(ctl, "a copy-ring message", || {
                // Acquire: pairs with the Release store of `head` in
                // `publish`.
                avail = ring.idx.head.0.load(Ordering::Acquire);
                // Acquire: pairs with the Release store of `stop` in
                // `publish`.
                done = tail == avail && ctl.stop.load(Ordering::Acquire) == tail + 1;
                tail != avail || done
            })?;
            if done {
                return Ok(receipts.finish());
            }
        }
        // SAFETY: slot `tail` is published (tail < head) and the producer
        // does not reuse it until our Release of `tail` below; `msg` has
        // the ring's message size. A read-only view maps the same memory,
        // so the Acquire of `head` orders these reads through it too.
        unsafe { ring.layout.copy_out(ring.read_slot(tail), &mut msg) };
        let word = seq_of(&msg);
        // Release: hands the slot back; pairs with the Acquire load of
        // `tail` in `publish`.
        ring.idx.tail.0.store(tail + 1, Ordering::Release);
        if paced {
            receipts.got(tail, word);
        } else {
            ensure!(word == tail, "copy ring delivered {word} for {tail}");
            receipts.got(tail, 0);
            receipts.look_behind(tail, || {
                // Relaxed: a look at how far ahead the publisher is, not
                // a hand-over (the Acquire load above is).
                ring.idx
                    .head
                    .0
                    .load(Ordering::Relaxed)
                    .saturating_sub(tail + 1)
            });
        }
        tail += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{MAX_SIZE, MIN_SIZE};
    use crate::scenario::fixed_copy_is_compiled;

    #[test]
    fn compiled_sizes_are_the_ones_the_scenarios_name() {
        let sizes = (MIN_SIZE..=MAX_SIZE)
            .filter(|s| s.is_power_of_two())
            .chain([9, 24, 100, 1000, 1500, MAX_SIZE - 1]);
        for size in sizes {
            let compiled = with_slots!(Kind::Fixed, size, |s| (s.compile_time(), s.stride()));
            assert_eq!(compiled, (fixed_copy_is_compiled(size), size), "{size}");
            let read_only = with_slots!(Kind::ReadOnly, size, |s| (s.compile_time(), s.stride()));
            assert_eq!(read_only, compiled, "{size}");
            let runtime = with_slots!(Kind::RunTime, size, |s| (s.compile_time(), s.stride()));
            assert_eq!(runtime, (false, size.next_multiple_of(8)), "{size}");
        }
    }

    /// Both layouts through the real loops, on two threads: every message
    /// arrives, in order, and a mismatch in the size is refused.
    #[test]
    fn both_rings_deliver_every_message() {
        for (kind, size) in [
            (Kind::Fixed, 64),
            (Kind::Fixed, 24),
            (Kind::RunTime, 12),
            (Kind::Fixed, 8),
            (Kind::ReadOnly, 64),
            (Kind::ReadOnly, 24),
        ] {
            let p = Params {
                size,
                iters: 5_000,
                warmup: 100,
                rate: 0,
                capacity: 16,
                duration_ns: None,
                timestamps: false,
                trusted: false,
                mailboxes: false,
            };
            let region = Region::create(region_len(kind, size, p.capacity)).unwrap();
            let got = std::thread::scope(|s| {
                let rx = s.spawn(|| child(&region, &p, kind));
                parent(&region, &p, kind).unwrap();
                rx.join().unwrap().unwrap()
            });
            assert_eq!((got.received, got.lost), (5_000, 0), "{kind:?} {size}");
        }
        let region = Region::create(region_len(Kind::Fixed, 64, 16)).unwrap();
        let p = Params {
            size: 64,
            iters: 1,
            warmup: 0,
            rate: 0,
            capacity: 16,
            duration_ns: None,
            timestamps: false,
            trusted: false,
            mailboxes: false,
        };
        assert!(CopyRing::new(&region, &p, Fixed::<8>, None).is_err());
    }
}
