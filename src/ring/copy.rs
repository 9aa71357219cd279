//! Moving payload bytes in and out of slots.
//!
//! The payload of a slot may be read by a subscriber while the publisher
//! rewrites it (that is what the seqlock stamp detects). Real builds copy
//! with `ptr::copy_nonoverlapping`: the reader treats what it copied as
//! garbage until the stamp re-check says it is whole, which is the usual
//! seqlock contract (C++ P1478 "byte-wise atomic memcpy" names it). Under
//! Miri and loom the same protocol runs with relaxed atomic word copies so
//! the race detectors see no data race and loom can interleave the words.

#[cfg(loom)]
use crate::sync::AtomicU64;

/// Bytes a payload area needs for `max` bytes of message.
pub(crate) const fn payload_bytes(max: usize) -> usize {
    #[cfg(loom)]
    {
        max.div_ceil(8) * std::mem::size_of::<AtomicU64>()
    }
    #[cfg(not(loom))]
    {
        max.div_ceil(8) * 8
    }
}

/// Writes `data` into the payload area at `dst`.
///
/// # Safety
/// `dst` must point to a payload area of at least `payload_bytes(data.len())`
/// bytes that this thread may write (the publisher's own slot, stamped odd),
/// 8-byte aligned, initialised for loom builds.
#[inline(always)]
pub(crate) unsafe fn copy_in(dst: *mut u8, data: &[u8]) {
    #[cfg(not(any(miri, loom)))]
    {
        // SAFETY: the caller guarantees `dst` has room for `data.len()` bytes;
        // `data` is a caller-owned slice, so the two cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len()) }
    }
    #[cfg(any(miri, loom))]
    {
        for (i, chunk) in data.chunks(8).enumerate() {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            // SAFETY: word `i` lies inside the area (caller's size guarantee)
            // and is 8-byte aligned (the area is).
            let w = unsafe { word_at(dst, i) };
            w.store(u64::from_le_bytes(word), crate::sync::Ordering::Relaxed);
        }
    }
}

/// Copies `out.len()` bytes out of the payload area at `src`. The bytes may
/// be torn; the caller validates the stamp afterwards.
///
/// # Safety
/// `src` must point to a payload area of at least `payload_bytes(out.len())`
/// readable bytes, 8-byte aligned, initialised for loom builds.
#[inline(always)]
pub(crate) unsafe fn copy_out(src: *const u8, out: &mut [u8]) {
    #[cfg(not(any(miri, loom)))]
    {
        // SAFETY: the caller guarantees `src` has `out.len()` readable bytes;
        // `out` is the caller's exclusive buffer, so they cannot overlap.
        unsafe { std::ptr::copy_nonoverlapping(src, out.as_mut_ptr(), out.len()) }
    }
    #[cfg(any(miri, loom))]
    {
        for (i, chunk) in out.chunks_mut(8).enumerate() {
            // SAFETY: as in `copy_in`.
            let w = unsafe { word_at(src as *mut u8, i) };
            let word = w.load(crate::sync::Ordering::Relaxed).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// As [`copy_out`], for the short copies of a latest-style slot's head
/// and tail (a caught-up reader's receive) and of a ring slot's payload
/// (a streaming reader's): up to 32 bytes with two overlapping moves of
/// a fixed size, written out here instead of a call to `memcpy`, whose
/// call and size dispatch sit on the ping-pong's critical path (the
/// reader's take) and are a good share of a small message's receive.
/// Longer copies go to `copy_out`. `ringbus bench --direct`, 64 B spin
/// ping-pong, alternating runs: see DESIGN.md, "Where the ping-pong
/// nanoseconds go".
///
/// # Safety
/// As for [`copy_out`].
#[inline(always)]
pub(crate) unsafe fn copy_out_short(src: *const u8, out: &mut [u8]) {
    #[cfg(not(any(miri, loom)))]
    {
        let n = out.len();
        if n > 32 {
            // SAFETY: the caller's guarantee, passed on.
            return unsafe { copy_out(src, out) };
        }
        // SAFETY: the caller guarantees `n` readable bytes at `src`; `out`
        // holds `n`; `n <= 32`.
        unsafe { short_moves(src, out.as_mut_ptr(), n) }
    }
    #[cfg(any(miri, loom))]
    {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { copy_out(src, out) }
    }
}

/// As [`copy_in`], for the short copies into a latest-style slot's head
/// and tail (the publisher's copy a caught-up reader waits for) and into
/// a message's ring slot: up to 32 bytes as [`short_moves`], longer ones
/// through `copy_in`. Two `memcpy` calls in a mailbox sit on the reply's
/// hop, as the reader's did (DESIGN.md, "Where the ping-pong nanoseconds
/// go"); one into the ring slot is most of a small message's publish. The
/// runs of a batch or loan of longer messages stay `memcpy`.
///
/// # Safety
/// As for [`copy_in`].
#[inline(always)]
pub(crate) unsafe fn copy_in_short(dst: *mut u8, data: &[u8]) {
    #[cfg(not(any(miri, loom)))]
    {
        let n = data.len();
        if n > 32 {
            // SAFETY: the caller's guarantee, passed on.
            return unsafe { copy_in(dst, data) };
        }
        // SAFETY: `data` holds `n <= 32` bytes, `dst` has room for them
        // (the caller's guarantee), and they cannot overlap.
        unsafe { short_moves(data.as_ptr(), dst, n) }
    }
    #[cfg(any(miri, loom))]
    {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { copy_in(dst, data) }
    }
}

/// Copies `n <= 32` bytes from `src` to `d` with at most two overlapping
/// moves of one fixed width (16, 8, 4 or 1 bytes): [`copy_out_short`]'s
/// moves, separate so that Miri checks them on plain buffers (under Miri
/// the ring copies go word by word through atomics instead).
///
/// # Safety
/// `n <= 32`; `src` readable and `d` writable for `n` bytes; the areas do
/// not overlap.
#[cfg(not(loom))]
#[inline(always)]
pub(crate) unsafe fn short_moves(src: *const u8, d: *mut u8, n: usize) {
    use std::ptr::{read_unaligned as rd, write_unaligned as wr};
    debug_assert!(n <= 32);
    // SAFETY: every move reads `src[k..k + w]` and writes `d[k..k + w]`
    // with `k + w <= n` (a pair overlaps when `n` is below twice its
    // width), inside what the caller guarantees. Unaligned moves of plain
    // bytes: any bit pattern is valid.
    unsafe {
        match n {
            16.. => {
                let (a, b) = (
                    rd(src as *const [u8; 16]),
                    rd(src.add(n - 16) as *const [u8; 16]),
                );
                wr(d as *mut [u8; 16], a);
                wr(d.add(n - 16) as *mut [u8; 16], b);
            }
            8..=15 => {
                let (a, b) = (rd(src as *const u64), rd(src.add(n - 8) as *const u64));
                wr(d as *mut u64, a);
                wr(d.add(n - 8) as *mut u64, b);
            }
            4..=7 => {
                let (a, b) = (rd(src as *const u32), rd(src.add(n - 4) as *const u32));
                wr(d as *mut u32, a);
                wr(d.add(n - 4) as *mut u32, b);
            }
            1..=3 => {
                let (a, m, b) = (*src, *src.add(n / 2), *src.add(n - 1));
                *d = a;
                *d.add(n / 2) = m;
                *d.add(n - 1) = b;
            }
            0 => {}
        }
    }
}

/// Copies `len` bytes from one payload area to another (a loaned slot's
/// payload into the latest-message slot).
///
/// # Safety
/// `src` must be readable and `dst` writable for `payload_bytes(len)`
/// bytes, both 8-byte aligned payload areas (initialised for loom builds),
/// and the two must not overlap. Only the publisher calls this, on areas it
/// alone writes.
#[inline(always)]
pub(crate) unsafe fn copy_area(src: *const u8, dst: *mut u8, len: usize) {
    #[cfg(not(any(miri, loom)))]
    {
        // SAFETY: the caller guarantees both ranges and that they are apart.
        unsafe { std::ptr::copy_nonoverlapping(src, dst, len) }
    }
    #[cfg(any(miri, loom))]
    {
        for i in 0..len.div_ceil(8) {
            // SAFETY: as in `copy_in`, for both areas.
            let (from, to) = unsafe { (word_at(src as *mut u8, i), word_at(dst, i)) };
            to.store(
                from.load(crate::sync::Ordering::Relaxed),
                crate::sync::Ordering::Relaxed,
            );
        }
    }
}

/// Word `i` of a payload area, as an atomic.
///
/// # Safety
/// Word `i` must lie inside a live payload area, 8-byte aligned.
#[cfg(any(miri, loom))]
#[inline(always)]
unsafe fn word_at<'a>(base: *mut u8, i: usize) -> &'a crate::sync::AtomicU64 {
    let stride = std::mem::size_of::<crate::sync::AtomicU64>();
    // SAFETY: the caller guarantees the word is in bounds and aligned; under
    // loom the region initialiser placed an AtomicU64 object there.
    unsafe { &*(base.add(i * stride) as *const crate::sync::AtomicU64) }
}

/// Initialises a payload area of `max` bytes (loom needs real objects).
///
/// # Safety
/// `dst` must be valid for writes of `payload_bytes(max)` bytes, 8-byte aligned.
#[inline]
pub(crate) unsafe fn init_payload(dst: *mut u8, max: usize) {
    #[cfg(loom)]
    for i in 0..max.div_ceil(8) {
        // SAFETY: in bounds and aligned per the caller's guarantee.
        unsafe {
            (dst.add(i * std::mem::size_of::<AtomicU64>()) as *mut AtomicU64)
                .write(AtomicU64::new(0))
        };
    }
    #[cfg(not(loom))]
    {
        let _ = (dst, max);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::short_moves;

    #[test]
    fn short_moves_copy_every_length_exactly() {
        let src: Vec<u8> = (1..=40).collect();
        for n in 0..=32 {
            let mut dst = vec![0u8; 40];
            // SAFETY: `n <= 32` bytes of two distinct 40-byte buffers.
            unsafe { short_moves(src.as_ptr(), dst.as_mut_ptr(), n) };
            assert_eq!(&dst[..n], &src[..n], "length {n}");
            assert!(
                dst[n..].iter().all(|&b| b == 0),
                "length {n} wrote past its end"
            );
        }
    }
}
