//! The sizes of a ring's latest messages, for a byte rate shown by
//! `ringbus top` and `--metrics` (messages per second times the mean
//! size). The data path counts no bytes; the broker reads the length of
//! the last few slots, off the data path, when it is asked.

use crate::layout::SlotHeader;
use crate::ring::{stamp_done, RingRegion};
use crate::sync::{fence, Ordering};

/// Most slots read per ring per listing.
pub(super) const SAMPLE_MESSAGES: u64 = 64;

/// `(messages, bytes)`: how many of the latest (at most
/// [`SAMPLE_MESSAGES`]) messages still held in `region` were read whole,
/// and their payload bytes. A slot being rewritten meanwhile is skipped.
pub(super) fn latest_sizes(region: &RingRegion) -> (u32, u64) {
    let head = region.head();
    let cap = u64::from(region.config().capacity);
    let max_len = u64::from(region.config().max_message_size);
    let stride = region.sizes().slot_stride;
    let first = head.saturating_sub(SAMPLE_MESSAGES.min(cap));
    let slots = region.slots();
    let (mut n, mut bytes) = (0u32, 0u64);
    for seq in first..head {
        let off = (seq & (cap - 1)) * stride;
        // SAFETY: `seq & (cap - 1) < capacity`; the data segment holds
        // `capacity` slots of `stride` bytes after its header (validated
        // when the region was mapped), each starting with an aligned
        // SlotHeader of atomics; the region outlives this borrow.
        let hdr = unsafe { &*(slots.add(off as usize) as *const SlotHeader) };
        // Acquire: pairs with the Release stamp store in Producer::seal,
        // so `len` is the one of message `seq`.
        let s1 = hdr.stamp.load(Ordering::Acquire);
        let len = u64::from(hdr.len.load(Ordering::Relaxed));
        // Acquire: pairs with the Release fence in Producer::begin; if the
        // `len` load saw a newer message's, this load sees its stamp.
        fence(Ordering::Acquire);
        let s2 = hdr.stamp.load(Ordering::Relaxed);
        if s1 == stamp_done(seq) && s2 == s1 && len <= max_len {
            n += 1;
            bytes += len;
        }
    }
    (n, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Mode, Producer, TopicConfig};

    #[test]
    fn samples_the_latest_messages_held() {
        let config = TopicConfig {
            capacity: 128,
            max_message_size: 64,
            mode: Mode::Overwrite,
            ..TopicConfig::default()
        };
        let region = RingRegion::heap(&config).unwrap();
        let mut p = Producer::new(region.clone()).unwrap();
        assert_eq!(latest_sizes(&region), (0, 0));
        for len in 1..=10usize {
            p.publish(&[7u8; 64][..len], 0).unwrap();
        }
        assert_eq!(latest_sizes(&region), (10, 55));
        // Only the latest 64 count, also once the ring has wrapped.
        for _ in 0..200 {
            p.publish(&[1u8; 8], 0).unwrap();
        }
        assert_eq!(latest_sizes(&region), (64, 64 * 8));
    }
}
