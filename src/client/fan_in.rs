//! The rings a subscription reads (one per publisher), taken in turn: the
//! one place that decides which ring delivers next, for copying receives,
//! the one-ring spin and zero-copy receives alike.

use super::Delivery;
use crate::ring::{Consumer, Filter, RecvError};
use crate::wait::WaitStrategy;

/// One ring of a subscription.
pub(super) struct SubRing {
    pub ring_id: u64,
    /// The subscription's id of the ring's topic (see `Delivery::topic`).
    pub topic: u32,
    pub publisher_pid: u32,
    pub consumer: Consumer,
}

// The view `ring::wait_any_limit` takes of a subscription's rings.
impl std::borrow::Borrow<Consumer> for SubRing {
    fn borrow(&self) -> &Consumer {
        &self.consumer
    }
}

impl std::borrow::BorrowMut<Consumer> for SubRing {
    fn borrow_mut(&mut self) -> &mut Consumer {
        &mut self.consumer
    }
}

/// A subscription's rings, read round robin from the one after the last
/// that delivered.
#[derive(Default)]
pub(super) struct FanIn {
    pub rings: Vec<SubRing>,
    /// The ring to look at first.
    next: usize,
    /// The ring of the last message or error returned.
    last_ring: u64,
    /// Losses of rings dropped after their end (overwrite mode).
    lagged_dropped: u64,
    /// Messages filtered on rings dropped after their end.
    filtered_dropped: u64,
    /// What the subscription keeps (see `Subscriber::filter_tags`), and
    /// whether it turns anything down: an unfiltered receive never looks
    /// at it.
    pub filter: Filter,
    pub filtering: bool,
    /// Losses to report before anything else, oldest first: a ring joined
    /// past the position asked for (see `Subscriber::attach`). Looked at
    /// only on the receive's cold paths (the subscriber routes the next
    /// receive there while one is pending).
    pending: Vec<(u64, u64)>,
}

impl FanIn {
    /// Takes ring `ring`'s next message as a [`Delivery`]. The client's
    /// `Delivery` is built inside the consumer's receive, inlined, rather
    /// than copied from a returned `MessageInfo` (see
    /// `Consumer::try_recv_map`).
    #[inline(always)]
    fn take_from(
        ring: &mut SubRing,
        buf: &mut [u8],
        filter: Option<&mut Filter>,
    ) -> Result<Delivery, RecvError> {
        let (ring_id, topic) = (ring.ring_id, ring.topic);
        let wrap = |info| Delivery {
            ring_id,
            topic,
            info,
        };
        match filter {
            None => ring.consumer.try_recv_map(buf, wrap),
            Some(f) => ring.consumer.try_recv_filtered(buf, f, wrap),
        }
    }

    /// One look at every ring, from the one after the last that delivered.
    /// A subscription with one ring (one publisher: the common case, and
    /// every ping-pong) reads it inline; as a call, the receive returned
    /// its `Delivery` through memory and spilled the consumer's state
    /// around the call.
    #[inline(always)]
    pub fn take(&mut self, buf: &mut [u8]) -> Result<Delivery, RecvError> {
        let filter = self.filtering.then_some(&mut self.filter);
        if let [ring] = self.rings.as_mut_slice() {
            return match Self::take_from(ring, buf, filter) {
                Ok(d) => {
                    self.next = 1;
                    self.last_ring = d.ring_id;
                    Ok(d)
                }
                Err(RecvError::Empty) => Err(RecvError::Empty),
                Err(e) => self.failed(0, e),
            };
        }
        self.take_each(buf)
    }

    /// [`FanIn::take`] over any number of rings.
    #[inline(never)]
    fn take_each(&mut self, buf: &mut [u8]) -> Result<Delivery, RecvError> {
        let n = self.rings.len();
        let mut i = self.next;
        for _ in 0..n {
            if i >= n {
                i = 0;
            }
            let filter = self.filtering.then_some(&mut self.filter);
            match Self::take_from(&mut self.rings[i], buf, filter) {
                Ok(d) => {
                    self.next = i + 1;
                    self.last_ring = d.ring_id;
                    return Ok(d);
                }
                Err(RecvError::Empty) => i += 1,
                Err(e) => return self.failed(i, e),
            }
        }
        Err(RecvError::Empty)
    }

    /// The receive of a subscription with one ring: the consumer's own
    /// loop (take, else spin on its one line, take), nothing else.
    /// `Empty` once the spin has run out, or when there is not exactly one
    /// ring. The ring is bound once for the loop: looked up again for each
    /// spin (through [`FanIn::take`]) it cost the ping-pong a visible share
    /// of a hop. The answer is a plain `Result`, not an `Option` around
    /// one: the nested enum kept the `Delivery` in memory, copied through
    /// the stack with wide loads of fields just stored one by one, and each
    /// copy stalled on those stores: a streaming subscriber fell behind its
    /// publisher (DESIGN.md, "Where the streaming nanoseconds go").
    #[inline(always)]
    pub fn take_spinning(
        &mut self,
        buf: &mut [u8],
        wait: WaitStrategy,
    ) -> Result<Delivery, RecvError> {
        let [ring] = self.rings.as_mut_slice() else {
            return Err(RecvError::Empty);
        };
        loop {
            let filter = self.filtering.then_some(&mut self.filter);
            match Self::take_from(ring, buf, filter) {
                Ok(d) => {
                    self.next = 1;
                    self.last_ring = d.ring_id;
                    return Ok(d);
                }
                Err(RecvError::Empty) => {}
                Err(e) => return self.failed(0, e),
            }
            if !ring.consumer.spin_ready(wait) {
                return Err(RecvError::Empty);
            }
        }
    }

    /// Ring `i` answered `e` (not `Empty`): notes which ring it was, and
    /// drops a ring that ended.
    #[cold]
    #[inline(never)]
    fn failed(&mut self, i: usize, e: RecvError) -> Result<Delivery, RecvError> {
        self.last_ring = self.rings[i].ring_id;
        self.next = i;
        if e == RecvError::EndOfStream {
            self.drop_ring(i);
        }
        Err(e)
    }

    fn drop_ring(&mut self, i: usize) {
        let ring = self.rings.remove(i);
        ring.consumer.report_counts();
        self.lagged_dropped += ring.consumer.lagged_total();
        self.filtered_dropped += ring.consumer.filtered_total();
    }

    /// Messages published but not yet read, over the rings held.
    pub fn backlog(&self) -> u64 {
        self.rings.iter().map(|r| r.consumer.backlog()).sum()
    }

    /// Messages the filter turned down, over all rings ever held.
    pub fn filtered_total(&self) -> u64 {
        self.filtered_dropped
            + self
                .rings
                .iter()
                .map(|r| r.consumer.filtered_total())
                .sum::<u64>()
    }

    /// Publishes each ring's delivered and filtered counts in its port.
    pub fn report_counts(&self) {
        for r in &self.rings {
            r.consumer.report_counts();
        }
    }

    /// The index of a ring with something to read (a message, a lag or a
    /// corrupt slot), round robin, for a zero-copy receive. A drained ring
    /// whose publisher left is dropped (`EndOfStream`), as in
    /// [`FanIn::take`].
    pub fn ready(&mut self) -> Result<usize, RecvError> {
        // A ring whose zero-copy read returned end of stream (a torn last
        // message behind the head) was reported then: dropped here, or it
        // would be ready, and end, forever.
        if self.rings.iter().any(|r| r.consumer.finished()) {
            while let Some(i) = self.rings.iter().position(|r| r.consumer.finished()) {
                self.drop_ring(i);
            }
            self.next = 0;
        }
        let n = self.rings.len();
        let mut i = self.next;
        for _ in 0..n {
            if i >= n {
                i = 0;
            }
            if !self.rings[i].consumer.is_ready() {
                i += 1;
                continue;
            }
            if self.filtering {
                // What the filter turns down is passed over here, so that
                // the ring returned has a message to give.
                match self.rings[i].consumer.skip_unwanted(&mut self.filter) {
                    Ok(()) => {}
                    Err(RecvError::Empty) => {
                        let c = &self.rings[i].consumer;
                        if !(c.ended() && c.backlog() == 0) {
                            i += 1;
                            continue;
                        }
                    }
                    Err(e) => return self.failed(i, e).map(|_| i),
                }
            }
            let c = &self.rings[i].consumer;
            self.last_ring = self.rings[i].ring_id;
            // Closed and nothing left past our position: `closed` is set
            // after the publisher's last message, so this is final.
            if c.ended() && c.backlog() == 0 {
                self.next = i;
                self.drop_ring(i);
                return Err(RecvError::EndOfStream);
            }
            self.next = i + 1;
            return Ok(i);
        }
        Err(RecvError::Empty)
    }

    /// Notes a loss to report before the next message (see `pending`).
    pub fn defer_lag(&mut self, ring_id: u64, missed: u64) {
        self.pending.push((ring_id, missed));
    }

    /// Whether a loss waits to be reported.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The oldest loss waiting to be reported, as the error to return.
    #[cold]
    pub fn take_pending(&mut self) -> Option<RecvError> {
        if self.pending.is_empty() {
            return None;
        }
        let (ring_id, missed) = self.pending.remove(0);
        self.last_ring = ring_id;
        Some(RecvError::Lagged { missed })
    }

    /// The rings held with a port, as `(ring_id, port_id)`: what a
    /// re-joined broker is told this subscriber reads already.
    pub fn held_ports(&self) -> Vec<(u64, u64)> {
        self.rings
            .iter()
            .filter_map(|r| r.consumer.port_id().map(|p| (r.ring_id, p)))
            .collect()
    }

    /// Whether ring `ring_id` is held.
    pub fn holds(&self, ring_id: u64) -> bool {
        self.rings.iter().any(|r| r.ring_id == ring_id)
    }

    /// The ring of the last message or error returned.
    pub fn last_ring(&self) -> u64 {
        self.last_ring
    }

    /// Notes the ring of a message or error returned from elsewhere (a
    /// journal replay).
    pub fn set_last_ring(&mut self, ring_id: u64) {
        self.last_ring = ring_id;
    }

    /// Messages lost, over all rings ever held (reported ones and those
    /// waiting to be).
    pub fn lagged_total(&self) -> u64 {
        self.lagged_dropped
            + self
                .rings
                .iter()
                .map(|r| r.consumer.lagged_total())
                .sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Mode, Producer, RingRegion, Start, TopicConfig};
    use std::sync::atomic::Ordering;

    #[test]
    fn a_ring_that_ends_on_a_torn_slot_ends_once_for_zero_copy_reads() {
        let config = TopicConfig {
            max_message_size: 8,
            capacity: 4,
            mode: Mode::Backpressure,
            max_subscribers: 2,
        };
        let region = RingRegion::heap(&config).unwrap();
        let consumer = Consumer::new(region.clone(), Start::Earliest).unwrap();
        let mut p = Producer::new(region.clone()).unwrap();
        let mut fan_in = FanIn::default();
        fan_in.rings.push(SubRing {
            ring_id: 1,
            topic: 0,
            publisher_pid: 0,
            consumer,
        });
        // A publisher that died mid-write (its slot stamped odd), with a
        // head past that slot (a dying or hostile publisher's), then closed.
        let _never_committed = p.loan(8).unwrap();
        region.header().head.store(3, Ordering::Release);
        region.close().unwrap();
        let mut ends = 0;
        for _ in 0..16 {
            match fan_in.ready() {
                Ok(i) => match fan_in.rings[i].consumer.try_recv_ref() {
                    Err(RecvError::EndOfStream) => ends += 1,
                    other => panic!("a torn slot was read: {:?}", other.err()),
                },
                Err(RecvError::EndOfStream) => ends += 1,
                Err(RecvError::Empty) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(ends, 1, "one end of stream, then nothing");
        assert!(fan_in.rings.is_empty(), "the ended ring is dropped");
    }
}
