//! The reading side of a ring: any number per ring, each with its own
//! position (and, through its port, its own cursor, wake word and
//! mailbox).

use super::copy::copy_out_short;
use super::filter::Filter;
use super::latest::{LatestSlot, LATEST_HEAD};
use super::port::Port;
use super::region::{AttachError, RingRegion};
use super::{stamp_done, stamp_writing, Mode, TopicConfig};
use crate::layout::{SlotHeader, CACHE_LINE, CURSOR_FREE, REQUEST_LATEST};
use crate::sync::{fence, spin_hint, AtomicU32, AtomicU64, Ordering};
use crate::wait::{wait_until, wait_until_all, Bed, Limit, WaitStrategy, WakeState, QUIET_POLLS};
use std::borrow::BorrowMut;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where a new subscriber starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Start {
    /// With the next message published after it joins.
    #[default]
    Latest,
    /// With the oldest message the ring still holds.
    Earliest,
    /// With this sequence number (a lag is reported if it is gone already).
    /// On a durable topic a subscriber reads what its rings no longer hold
    /// from the journal first.
    Sequence(u64),
    /// With the first message journaled at this CLOCK_REALTIME time (ns
    /// since the epoch) or later: durable topics only (their journal keeps
    /// each message's time), read by a topic subscriber.
    Time(u64),
}

impl std::str::FromStr for Start {
    type Err = String;
    /// `latest`, `earliest`, or a sequence number.
    fn from_str(s: &str) -> Result<Start, String> {
        match s {
            "latest" => Ok(Start::Latest),
            "earliest" => Ok(Start::Earliest),
            n => n.parse().map(Start::Sequence).map_err(|_| {
                format!("unknown start {n:?}: expected latest, earliest or a sequence number")
            }),
        }
    }
}

/// What a subscriber learns about a received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageInfo {
    /// Sequence number within its ring (0, 1, 2, ...).
    pub seq: u64,
    /// The publisher's tag.
    pub tag: u64,
    /// CLOCK_MONOTONIC ns at publish (0 if the publisher disabled it).
    pub timestamp: u64,
    /// Payload length in bytes.
    pub len: usize,
}

/// Why no message was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// No new message yet.
    #[error("no message available")]
    Empty,
    /// The publisher overwrote `missed` messages before this subscriber read
    /// them; the next receive continues with the oldest message still held
    /// (or, when lapped again within a ring's worth of messages, with the
    /// message half a ring behind the publisher).
    #[error("subscriber lagged: {missed} messages were overwritten before they were read")]
    Lagged {
        /// How many messages were skipped.
        missed: u64,
    },
    /// The publisher is gone and every message has been read.
    #[error("end of stream: the publisher is gone and the ring is drained")]
    EndOfStream,
    /// The caller's buffer is smaller than the message (which stays unread).
    #[error("buffer too small: the message needs {needed} bytes")]
    BufferTooSmall {
        /// The message's length.
        needed: usize,
    },
    /// Nothing arrived before the timeout.
    #[error("timed out waiting for a message")]
    Timeout,
    /// Zero-copy receive needs back-pressure mode (in overwrite mode the
    /// publisher may rewrite the slot while it is being read).
    #[error("zero-copy receive is only available on back-pressure rings")]
    ZeroCopyUnsupported,
    /// The subscription's predicate panicked on message `seq`, which is
    /// skipped; the next receive goes on with the message after it.
    #[error("the subscription's filter predicate panicked on message {seq}, which was skipped")]
    FilterPanicked {
        /// The sequence number of the skipped message.
        seq: u64,
    },
    /// The slot holds a length larger than the ring allows: the publisher
    /// wrote garbage. The message is skipped.
    #[error("corrupt slot: message {seq} claims {len} bytes, more than the ring's maximum")]
    Corrupt {
        /// The sequence number of the skipped message.
        seq: u64,
        /// The claimed length.
        len: u64,
    },
}

/// Most messages a filtered receive skips before it returns `Empty` (the
/// ring still ready), so a receive returns within a bounded time.
pub const SKIP_BUDGET: u32 = 1024;

/// Runs `filter`'s predicate on a message: `Some(keep)`, or `None` if it
/// panicked (the panic is caught: a predicate's bug costs the message, not
/// the process).
pub(crate) fn judge(filter: &mut Filter, info: &MessageInfo, bytes: &[u8]) -> Option<bool> {
    match filter.predicate() {
        None => Some(true),
        Some(p) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p(info, bytes))).ok(),
    }
}

/// After it sees the publisher ahead of it, a consumer reads this many
/// messages from the ring before it polls the latest slot (or mailbox)
/// again; each time it sees the publisher ahead meanwhile, the count starts
/// over. See `Consumer::streaming`.
pub(super) const STREAM_HOLD: u32 = 1024;

/// One reader of a ring.
pub struct Consumer {
    region: Arc<RingRegion>,
    slots: *const u8,
    stride: usize,
    mask: u64,
    capacity: u64,
    max: usize,
    /// The latest-message slot (or the mailbox's) and its inline capacity.
    latest: LatestSlot,
    latest_inline: usize,
    /// Whether to read caught-up messages from the latest slot
    /// ([`RingRegion::polls_latest`]) once the publisher writes it.
    use_latest: bool,
    /// Cached ack: the publisher writes the latest slot (or mailbox).
    latest_acked: bool,
    /// The ack word to check: the data segment's `latest_ack`, or the
    /// port's `mailbox_ack`.
    ack: *const AtomicU32,
    /// This subscriber's port (cursor, wake word, requests, mailbox), if
    /// it has one.
    port: Option<Arc<Port>>,
    /// Whether `port` is one of the heap ring's own
    /// (`RingRegion::local_port`), handed back to it on drop.
    local_port: bool,
    /// Leave the port's cursor as it is on drop ([`Consumer::keep_cursor`]).
    keep_cursor: bool,
    /// Whether `latest` is the port's mailbox slot.
    mailbox: bool,
    /// Every message below this is known to be in its ring slot (seen
    /// started in the latest slot): until `next` reaches it, read the ring
    /// and leave the latest slot's line alone.
    known_head: u64,
    /// Sequence of the next message to read.
    next: u64,
    /// Non-zero while messages stream in faster than one round trip: the
    /// publisher was seen ahead of us within the last `STREAM_HOLD`
    /// messages. Meanwhile a caught-up consumer polls the ring slot, not
    /// the latest slot: polling a second copy of every message while the
    /// publisher writes the next one costs each message another contended
    /// cache line, a large share of streaming throughput; the latest slot
    /// pays off only when a message comes after a wait.
    streaming: u32,
    /// Our port's cursor: gates the publisher on back-pressure rings;
    /// position and loss report on overwrite rings.
    cursor: Option<*const AtomicU64>,
    /// What the cursor was last set to (`next` then): every message below
    /// it is released to the publisher.
    released: u64,
    /// Release the cursor once `next` is this far past `released`, and
    /// whenever the ring is found empty (see [`Consumer::advance`]).
    release_every: u64,
    /// Read-ahead (see [`Consumer::read_ahead`]): the head as last seen at
    /// a cursor release (every message below it is complete in its slot;
    /// stays 0 where `ahead` is 0, which turns read-ahead off), how many
    /// messages ahead to fetch, and how many lines of each.
    ahead_until: u64,
    ahead: u64,
    ahead_lines: usize,
    backpressure: bool,
    wake: WakeState,
    /// Overwrite mode: where `try_recv_with` copies before validating.
    scratch: Vec<u8>,
    lagged: u64,
    /// Messages a filter turned down (see `try_recv_filtered`).
    filtered: u64,
    /// Where this consumer started: every message from here to `next` was
    /// delivered, filtered or lost.
    origin: u64,
    /// This consumer has returned `EndOfStream`: nothing more will come.
    finished: bool,
    /// Where the last lap sent this consumer (see `lapped`), if it was
    /// ever lapped.
    resumed_at: Option<u64>,
}

// SAFETY: the raw pointers point into `region` or `port`, kept alive by
// the consumer and themselves Send; a consumer is used by one thread at a time (`&mut self`).
unsafe impl Send for Consumer {}

impl Consumer {
    /// A new reader of `region`, starting at `start`. On a ring on the
    /// heap it gets a port from the ring itself (so in back-pressure mode
    /// the publisher will not overwrite what it has not read); a mapped
    /// ring's ports come from its broker ([`Consumer::with_port`]), and
    /// without one only an overwrite ring can be read. A
    /// [`Start::Sequence`] the ring can no longer deliver is reported: in
    /// overwrite mode as [`RecvError::Lagged`] by the first receive; in
    /// back-pressure mode (the publisher may already be writing past it) by
    /// moving forward, the skipped messages counted in
    /// [`Consumer::lagged_total`] (the client's `Subscriber` returns them
    /// as `Lagged` before the first message).
    ///
    /// # Errors
    /// [`AttachError::NoPort`] for a back-pressure ring that is not on the
    /// heap.
    pub fn new(region: Arc<RingRegion>, start: Start) -> Result<Consumer, AttachError> {
        if let Start::Time(_) = start {
            return Err(AttachError::TimeStart);
        }
        let next = start_at(&region, start);
        let backpressure = region.config().mode == Mode::Backpressure;
        match region.local_port(next) {
            Some(Ok(port)) => {
                let mut c = Consumer::with_port(region, port, start, false)?;
                c.local_port = true;
                Ok(c)
            }
            // An overwrite ring is read without a port when they ran out.
            Some(Err(e)) if backpressure => Err(e),
            None if backpressure => Err(AttachError::NoPort),
            Some(Err(_)) | None => {
                let mut c = Consumer::unjoined(region, next);
                // Without a port there is nobody to ask for the shared slot.
                c.use_latest = false;
                Ok(c)
            }
        }
    }

    /// A new reader of `region` through `port`, which the ring's broker
    /// made for it (and gave the ring's producer). On a back-pressure ring
    /// the port's cursor says where to start (its creator placed it from
    /// the start asked for, and [`RingRegion::admit_port`] may have moved it
    /// forward; what that skipped of a [`Start::Sequence`] is counted as
    /// lost). On an overwrite ring the cursor gates nothing, but it still
    /// says where the subscription began: the broker placed it when it
    /// made the subscription, so a reader that maps the ring later starts
    /// there too (what was overwritten meanwhile is reported as `Lagged`
    /// by the first receive), not at whatever `start` means by then. A
    /// free cursor (a port of an older broker) falls back to `start`. With
    /// `mailbox`, caught-up messages are read from the port's mailbox once
    /// the publisher writes it.
    ///
    /// # Errors
    /// [`AttachError::Corrupt`] for a port of another ring, or a
    /// back-pressure port whose cursor is free.
    pub fn with_port(
        region: Arc<RingRegion>,
        port: Arc<Port>,
        start: Start,
        mailbox: bool,
    ) -> Result<Consumer, AttachError> {
        port.check_fits(&region)?;
        if let Start::Time(_) = start {
            return Err(AttachError::TimeStart);
        }
        let h = port.header();
        let backpressure = region.config().mode == Mode::Backpressure;
        let next = if backpressure {
            let pos = port.pos();
            if pos == CURSOR_FREE {
                return Err(AttachError::Corrupt(
                    "the port's cursor is free: it was given up".into(),
                ));
            }
            pos
        } else {
            // A `Start::Latest` taken now would silently skip what was
            // published between the broker's reply and this attach (a
            // pattern's topics are attached one by one after it).
            let next = match port.pos() {
                CURSOR_FREE => start_at(&region, start),
                pos => pos,
            };
            // Release: pairs with the Acquire in Port::pos (the broker's
            // listing of positions; an overwrite ring's cursor gates
            // nothing).
            h.pos.store(next, Ordering::Release);
            next
        };
        h.adopted.store(1, Ordering::Relaxed);
        let mut c = Consumer::unjoined(region, next);
        c.cursor = Some(&h.pos as *const AtomicU64);
        if backpressure {
            if let Start::Sequence(s) = start {
                c.lagged = next.saturating_sub(s);
            }
        }
        if mailbox {
            c.latest = port.slot();
            c.ack = &h.mailbox_ack;
            c.use_latest = true;
            c.mailbox = true;
        }
        c.port = Some(port);
        c.report_dropped();
        c.want_latest();
        Ok(c)
    }

    /// A consumer at `next` without a port.
    fn unjoined(region: Arc<RingRegion>, next: u64) -> Consumer {
        let c: TopicConfig = *region.config();
        let capacity = u64::from(c.capacity);
        Consumer {
            slots: region.slots(),
            // SAFETY: the latest slot lies in the data segment (validated
            // sizes), 128-byte aligned, kept mapped by `region`.
            latest: unsafe { LatestSlot::at(region.latest()) },
            latest_inline: region.sizes().latest_inline as usize,
            use_latest: region.polls_latest(),
            latest_acked: false,
            ack: &region.header().latest_ack,
            port: None,
            local_port: false,
            keep_cursor: false,
            mailbox: false,
            known_head: 0,
            stride: region.sizes().slot_stride as usize,
            mask: capacity - 1,
            capacity,
            max: c.max_message_size as usize,
            next,
            streaming: 0,
            cursor: None,
            released: next,
            release_every: release_batch(capacity),
            ahead_until: 0,
            ahead: read_ahead_distance(region.sizes().slot_stride),
            ahead_lines: read_ahead_lines(region.sizes().slot_stride),
            backpressure: c.mode == Mode::Backpressure,
            wake: WakeState::default(),
            scratch: if c.mode == Mode::Backpressure {
                Vec::new()
            } else {
                vec![0; c.max_message_size as usize]
            },
            lagged: 0,
            filtered: 0,
            origin: next,
            finished: false,
            resumed_at: None,
            region,
        }
    }

    /// Asks the publisher to write the shared latest-message slot, if this
    /// consumer polls it (a trusted subscriber: its mapping is writable).
    fn want_latest(&self) {
        if !self.use_latest || self.mailbox {
            return;
        }
        if let Some(port) = &self.port {
            let h = port.header();
            if h.requests.load(Ordering::Relaxed) & REQUEST_LATEST == 0 {
                // Release: pairs with the Acquire load of `requests` in
                // Producer::answer_requests.
                h.requests.fetch_or(REQUEST_LATEST, Ordering::Release);
                self.region.lobby().bell.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// Whether the publisher writes the latest slot (checked until it does).
    #[inline(always)]
    fn latest_acked(&mut self) -> bool {
        if !self.latest_acked {
            // SAFETY: `ack` points into the region or the port we hold.
            let ack = unsafe { &*self.ack };
            // Acquire: pairs with the Release in Producer::enable_latest or
            // Producer::insert_port: its announcement of every earlier
            // message is visible.
            self.latest_acked = ack.load(Ordering::Acquire) != 0;
        }
        self.latest_acked
    }

    /// Whether the ring has ended for this reader: its publisher closed it
    /// (left), or the broker found it dead and told this reader's port.
    /// Every message published before is complete by then.
    #[inline]
    pub fn ended(&self) -> bool {
        // Acquire (both): pairs with the Release in RingRegion::close, or
        // in Port::close (the broker's, for a dead publisher), each after
        // the publisher's last complete message.
        self.region.is_closed()
            || self
                .port
                .as_ref()
                .is_some_and(|p| p.header().closed.load(Ordering::Acquire) != 0)
    }

    /// Whether this consumer has returned [`RecvError::EndOfStream`]: a
    /// reader that holds several rings drops it then.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The id of this consumer's port, if it has one.
    pub fn port_id(&self) -> Option<u64> {
        self.port.as_ref().map(|p| p.port_id())
    }

    /// Whether the publisher writes this consumer a private mailbox.
    pub fn has_mailbox(&self) -> bool {
        self.mailbox
    }

    /// The ring's configuration.
    pub fn config(&self) -> &TopicConfig {
        self.region.config()
    }

    /// The memory this consumer reads.
    pub fn region(&self) -> &Arc<RingRegion> {
        &self.region
    }

    /// Sequence number of the next message this consumer will read.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Moves forward to `seq` (at most to the ring's head) without reading
    /// what lies before it, before the first receive: for a subscriber
    /// that got those messages elsewhere (a durable topic's journal).
    /// Returns where it now is. What it skipped counts as neither
    /// delivered nor lost.
    pub fn skip_to(&mut self, seq: u64) -> u64 {
        let to = seq.min(self.region.head());
        if to > self.next {
            self.next = to;
            self.origin = to;
            self.release();
        }
        self.next
    }

    /// Releases the cursor after every `n` messages read (at least 1)
    /// instead of [`release_batch`]'s: for models and tests of the
    /// gating protocol.
    #[doc(hidden)]
    pub fn set_release_every(&mut self, n: u64) {
        self.release_every = n.max(1);
    }

    /// Hands this consumer's cursor to a group reader
    /// ([`crate::ring::claim::GroupCursor`]): receives no longer move it,
    /// the group reader stores its oldest unacknowledged sequence there
    /// itself. Returns the port that holds it (`None`: no port).
    pub(crate) fn release_cursor(&mut self) -> Option<Arc<Port>> {
        self.cursor = None;
        self.port.clone()
    }

    /// Leaves the port's cursor where it is when this consumer is
    /// dropped (not freed): a group member leaving with unacknowledged
    /// messages, whose port the broker then hands to another member. A
    /// port the heap ring gave out is freed all the same. Called just
    /// before the consumer is dropped.
    pub(crate) fn keep_cursor(&mut self) {
        self.keep_cursor = !self.local_port;
    }

    /// Moves the read position to `seq`: the start of a range a group
    /// member claimed. Only a group reader calls it (the cursor is its
    /// own, see [`Consumer::release_cursor`]).
    pub(crate) fn seek(&mut self, seq: u64) {
        self.next = seq;
    }

    /// How many messages from `seq` on (at most `max`) are complete in
    /// their ring slots (or overwritten, on an overwrite ring): a group
    /// member sizes a claim by it without reading the ring's head, a line
    /// the publisher writes with every message. The lines read are those
    /// the member reads next anyway.
    pub(crate) fn ready_run(&self, seq: u64, max: u64) -> u64 {
        let mut n = 0;
        while n < max {
            let s = seq.wrapping_add(n);
            // Relaxed: a hint; the receive checks the stamp with Acquire.
            if self.slot(s).0.stamp.load(Ordering::Relaxed) < stamp_done(s) {
                break;
            }
            n += 1;
        }
        n
    }

    /// Messages published but not yet read by this consumer.
    pub fn backlog(&self) -> u64 {
        self.region.head().saturating_sub(self.next)
    }

    /// Total messages this consumer lost to overwrites.
    pub fn lagged_total(&self) -> u64 {
        self.lagged
    }

    #[inline(always)]
    fn slot(&self, seq: u64) -> (&SlotHeader, *const u8) {
        // SAFETY: `seq & mask < capacity`; the data segment holds `capacity`
        // slots of `stride` bytes after the header (validated at attach),
        // each starting with an initialised, aligned SlotHeader.
        unsafe {
            let p = self.slots.add((seq & self.mask) as usize * self.stride);
            (
                &*(p as *const SlotHeader),
                p.add(std::mem::size_of::<SlotHeader>()),
            )
        }
    }

    /// Copies the next message into `buf`.
    ///
    /// # Errors
    /// [`RecvError::Empty`], [`RecvError::Lagged`], [`RecvError::EndOfStream`],
    /// [`RecvError::BufferTooSmall`] (message left unread), [`RecvError::Corrupt`].
    #[inline]
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<MessageInfo, RecvError> {
        self.try_recv_map(buf, |info| info)
    }

    /// [`Consumer::try_recv`], returning `wrap(info)`: the client layer
    /// builds its `Delivery` here, inlined, instead of copying a returned
    /// `MessageInfo` into it: a whole-struct copy of a just-received info
    /// (vector loads of fields just stored one by one) stalls on the stores
    /// and delays the reply (DESIGN.md, "Where the ping-pong nanoseconds
    /// go").
    #[inline(always)]
    pub(crate) fn try_recv_map<T>(
        &mut self,
        buf: &mut [u8],
        wrap: impl FnOnce(MessageInfo) -> T,
    ) -> Result<T, RecvError> {
        if self.use_latest
            && self.streaming == 0
            && self.next >= self.known_head
            && self.latest_acked()
        {
            if let Some(r) = self.try_latest(buf) {
                return r.map(wrap);
            }
        }
        let (info, payload, s1) = self.peek(buf.len())?;
        // SAFETY: `peek` checked `len <= max`, so the copy stays in the
        // payload area, and `len <= buf.len()`.
        unsafe { copy_out_short(payload, &mut buf[..info.len]) };
        self.finish_copy(info.seq, s1)?;
        if self.use_latest {
            self.note_stream();
        }
        Ok(wrap(info))
    }

    /// After a message read from the ring: whether the publisher is ahead
    /// (the next message is already complete), which starts or extends a
    /// streaming spell, or not, which runs it down (see `streaming`). The
    /// line read is the one the next receive reads anyway.
    #[inline(always)]
    fn note_stream(&mut self) {
        // Relaxed: a hint only; the receive itself re-reads the stamp with
        // Acquire.
        let ahead = self.slot(self.next).0.stamp.load(Ordering::Relaxed) >= stamp_done(self.next);
        if ahead {
            self.streaming = STREAM_HOLD;
        } else {
            self.streaming = self.streaming.saturating_sub(1);
        }
    }

    /// Caught up: takes message `next` from the latest-message slot (see the
    /// module docs). `None`: read its ring slot instead, because the message
    /// is too long to be inline, the publisher is already past it, or the
    /// ring has ended (its slots have the final word on end of stream).
    #[inline(always)]
    fn try_latest(&mut self, buf: &mut [u8]) -> Option<Result<MessageInfo, RecvError>> {
        let seq = self.next;
        let want = stamp_done(seq);
        // SAFETY: the latest slot lives in the region (or mailbox) we hold.
        let (l, check) = unsafe { (&*self.latest.hdr, &*self.latest.check) };
        // Acquire: pairs with the Release stamp stores in producer.rs's
        // `write_slot` and `announce`: the payload and header (done stamp),
        // or every earlier ring slot (any later stamp), are visible.
        let s1 = l.stamp.load(Ordering::Acquire);
        if s1 != want {
            if s1 > want {
                // Message (s1 - 1) / 2 > seq has started: all below it are
                // in the ring. (A bogus stamp only sends us to the ring.)
                self.known_head = (s1 - 1) / 2;
                return None;
            }
            if self.ended() {
                return None;
            }
            self.caught_up();
            return Some(Err(RecvError::Empty));
        }
        let len = l.len.load(Ordering::Relaxed) as usize;
        if len <= self.latest_inline {
            let info = MessageInfo {
                seq,
                tag: l.tag.load(Ordering::Relaxed),
                timestamp: l.timestamp.load(Ordering::Relaxed),
                len,
            };
            let tail = len > LATEST_HEAD;
            if len <= buf.len() {
                let head = len.min(LATEST_HEAD);
                // SAFETY: the head holds `LATEST_HEAD` bytes and the tail
                // `latest_inline - LATEST_HEAD` (latest.rs), `len <=
                // latest_inline`, and `len <= buf.len()`.
                unsafe {
                    copy_out_short(self.latest.head, &mut buf[..head]);
                    if tail {
                        copy_out_short(self.latest.tail, &mut buf[head..len]);
                    }
                }
            }
            // Acquire: pairs with the Release fences in `write_slot`: if
            // the copy saw any byte of a newer message, the loads below see
            // its odd stamp (line 0) or its check word (the tail).
            fence(Ordering::Acquire);
            let whole = l.stamp.load(Ordering::Relaxed) == s1
                && (!tail || check.load(Ordering::Relaxed) == stamp_writing(seq));
            if whole {
                if len > buf.len() {
                    return Some(Err(RecvError::BufferTooSmall { needed: len }));
                }
                self.advance();
                return Some(Ok(info));
            }
        }
        // Too long to inline (announced only; its ring slot was sealed
        // first), or overwritten while we copied (the publisher sealed our
        // ring slot before moving on): message `seq` is in the ring.
        self.known_head = seq.wrapping_add(1);
        None
    }

    /// Reads the header of the next message if it is complete: its info,
    /// payload pointer and stamp. `room` is the most the caller can take.
    #[inline(always)]
    fn peek(&mut self, room: usize) -> Result<(MessageInfo, *const u8, u64), RecvError> {
        let seq = self.next;
        let (hdr, payload) = self.slot(seq);
        // Acquire: pairs with the Release stamp store in Producer::seal.
        let s1 = hdr.stamp.load(Ordering::Acquire);
        if s1 != stamp_done(seq) {
            return Err(self.not_ready(seq, s1));
        }
        let info = MessageInfo {
            seq,
            tag: hdr.tag.load(Ordering::Relaxed),
            timestamp: hdr.timestamp.load(Ordering::Relaxed),
            len: hdr.len.load(Ordering::Relaxed) as usize,
        };
        if info.len > self.max || info.len > room {
            return Err(self.bad_len(seq, s1, info.len));
        }
        // Every read of a slot reads ahead, a skip's too, whole slots
        // though a skip reads only the tag: a tag-filtered 1 KiB stream
        // ran faster with them than with the tag's line alone, or none.
        self.read_ahead(seq);
        Ok((info, payload, s1))
    }

    /// Receives the next message and hands it to `f` as validated bytes:
    /// in place on back-pressure rings, from a private copy on overwrite
    /// rings (allocated once, when the consumer was made).
    ///
    /// # Errors
    /// As [`Consumer::try_recv`], except `BufferTooSmall`.
    #[inline]
    pub fn try_recv_with<R>(
        &mut self,
        f: impl FnOnce(&[u8], MessageInfo) -> R,
    ) -> Result<R, RecvError> {
        if self.backpressure {
            let msg = self.try_recv_ref()?;
            let info = msg.info();
            return Ok(f(&msg, info));
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        let r = self
            .try_recv(&mut scratch)
            .map(|info| f(&scratch[..info.len], info));
        self.scratch = scratch;
        r
    }

    /// Zero-copy receive (back-pressure rings only): a view of the message
    /// in the ring; the slot is released when the view is dropped.
    ///
    /// # Errors
    /// [`RecvError::ZeroCopyUnsupported`] on overwrite rings; otherwise as
    /// [`Consumer::try_recv`].
    #[inline]
    pub fn try_recv_ref(&mut self) -> Result<MessageRef<'_>, RecvError> {
        if !self.backpressure {
            return Err(RecvError::ZeroCopyUnsupported);
        }
        let (info, payload, _) = self.peek(usize::MAX)?;
        Ok(MessageRef {
            consumer: self,
            payload,
            info,
        })
    }

    /// Zero-copy receive of every message ready now, in order, as long as
    /// `f` asks for more (back-pressure rings only): `f` sees each in
    /// place, and the cursor stays at the first until the returned batch is
    /// dropped, then passes them all with one store (what a journal needs:
    /// it releases messages only once they are written, and writes many at
    /// a time). [`BatchRef::rewind`] gives them back unreleased instead.
    ///
    /// # Errors
    /// As [`Consumer::try_recv_ref`], for the first message only: a later
    /// one that is not ready ends the batch and is left for the next call.
    pub fn try_recv_ref_batch(
        &mut self,
        mut f: impl FnMut(&[u8], MessageInfo) -> bool,
    ) -> Result<BatchRef<'_>, RecvError> {
        if !self.backpressure {
            return Err(RecvError::ZeroCopyUnsupported);
        }
        let first = self.next;
        loop {
            if self.next != first {
                // Peeked without its side effects (a lap, an end of
                // stream, a bad length are the next call's to report).
                // Acquire: pairs with the Release stamp store in
                // Producer::seal, as in `peek`.
                let s = self.slot(self.next).0.stamp.load(Ordering::Acquire);
                if s != stamp_done(self.next) {
                    break;
                }
                let len = self.slot(self.next).0.len.load(Ordering::Relaxed) as usize;
                if len > self.max {
                    break;
                }
            }
            let (info, payload, _) = match self.peek(usize::MAX) {
                Ok(m) => m,
                Err(e) if self.next == first => return Err(e),
                Err(_) => break,
            };
            // SAFETY: `len <= max` (checked by `peek`), inside the slot's
            // payload area; our cursor is at `first`, at or before this
            // message, so the publisher does not rewrite its slot until
            // the batch is dropped and the cursor moves.
            let bytes = unsafe { std::slice::from_raw_parts(payload, info.len) };
            self.next = self.next.wrapping_add(1);
            if !f(bytes, info) {
                break;
            }
        }
        Ok(BatchRef {
            count: self.next.wrapping_sub(first),
            first,
            consumer: self,
        })
    }

    /// Waits for the next message as `wait` says, then copies it into `buf`.
    ///
    /// # Errors
    /// As [`Consumer::try_recv`], never `Empty`.
    #[inline(always)]
    pub fn recv(&mut self, buf: &mut [u8], wait: WaitStrategy) -> Result<MessageInfo, RecvError> {
        self.recv_limit(buf, wait, Limit::default())
    }

    /// As [`Consumer::recv`], giving up after `timeout`: counted from the
    /// wait's first clock read, which a spinning wait makes a few
    /// microseconds in (so a message that comes sooner costs no clock
    /// read).
    ///
    /// # Errors
    /// [`RecvError::Timeout`]; as [`Consumer::try_recv`].
    #[inline(always)]
    pub fn recv_timeout(
        &mut self,
        buf: &mut [u8],
        wait: WaitStrategy,
        timeout: Duration,
    ) -> Result<MessageInfo, RecvError> {
        let limit = Limit {
            by: None,
            within: Some(timeout),
        };
        self.recv_limit(buf, wait, limit)
    }

    /// As [`Consumer::recv`], giving up at `deadline` (`None`: never).
    ///
    /// # Errors
    /// [`RecvError::Timeout`]; as [`Consumer::try_recv`].
    #[inline(always)]
    pub fn recv_deadline(
        &mut self,
        buf: &mut [u8],
        wait: WaitStrategy,
        deadline: Option<Instant>,
    ) -> Result<MessageInfo, RecvError> {
        self.recv_limit(buf, wait, Limit::by(deadline))
    }

    /// The receives' wait, until `limit`.
    #[inline(always)]
    fn recv_limit(
        &mut self,
        buf: &mut [u8],
        wait: WaitStrategy,
        mut limit: Limit,
    ) -> Result<MessageInfo, RecvError> {
        // Wait with `is_ready` (one stamp load per poll) and receive once
        // it says so. Inlined into the caller: returned from a call, the
        // `MessageInfo` goes through memory, and the caller's copy of it
        // holds back its next publish (DESIGN.md, "Where the ping-pong
        // nanoseconds go").
        loop {
            match self.try_recv(buf) {
                Err(RecvError::Empty) => {}
                r => return r,
            }
            if self.spin_ready(wait) {
                continue;
            }
            if !self.wait_ready_limit(wait, &mut limit) {
                return Err(RecvError::Timeout);
            }
        }
    }

    /// A spinning strategy's first polls, before any clock read or wait
    /// bookkeeping: whether something became ready within them. A spin
    /// ping-pong's wait ends here (see [`QUIET_POLLS`]).
    #[inline(always)]
    pub(crate) fn spin_ready(&self, wait: WaitStrategy) -> bool {
        if cfg!(loom) || !wait.spins_first() {
            return false;
        }
        for _ in 0..QUIET_POLLS {
            if self.is_ready() {
                return true;
            }
            spin_hint();
        }
        false
    }

    /// Waits until a message (or end of stream) can be read, without
    /// consuming it; `false` on timeout.
    pub fn wait_ready(&mut self, wait: WaitStrategy, deadline: Option<Instant>) -> bool {
        self.wait_ready_limit(wait, &mut Limit::by(deadline))
    }

    /// As [`Consumer::wait_ready`], until `limit` (fixed to a deadline at
    /// the wait's first clock read, see [`wait_until`]).
    pub(crate) fn wait_ready_limit(&mut self, wait: WaitStrategy, limit: &mut Limit) -> bool {
        // The raw pointers only detach the borrows from `self`, which the
        // poll closure borrows.
        let lobby: *const crate::layout::LobbyHeader = self.region.lobby();
        let port = self
            .port
            .as_ref()
            .map(|p| p.header() as *const crate::layout::PortHeader);
        // SAFETY: the lobby lives in the region and the port header in the
        // port, which `self` keeps alive (and in place) beyond this call.
        let bed = port.map(|port| unsafe {
            Bed {
                port: &*port,
                lobby: &*lobby,
            }
        });
        let mut wake = std::mem::take(&mut self.wake);
        let r = wait_until(bed, wait, limit, &mut wake, || {
            self.is_ready().then_some(())
        });
        self.wake = wake;
        r.is_some()
    }

    /// Where this consumer sleeps, if it has a port, with its hand-over
    /// memory taken out (put it back with [`Consumer::end_sleep`]). The
    /// references are detached from `self`, which the caller keeps alive
    /// and in place while it uses them.
    fn take_bed<'a>(&mut self) -> Option<(Bed<'a>, WakeState)> {
        let port: *const crate::layout::PortHeader = self.port.as_ref()?.header();
        let lobby: *const crate::layout::LobbyHeader = self.region.lobby();
        // SAFETY: the lobby lives in the region and the port header in the
        // port, which `self` keeps alive (and in place) as long as the
        // caller of this private function uses them (`wait_any_limit`,
        // within one call that holds the consumers).
        let bed = unsafe {
            Bed {
                port: &*port,
                lobby: &*lobby,
            }
        };
        Some((bed, std::mem::take(&mut self.wake)))
    }

    /// Whether a receive now would return something other than `Empty`.
    #[inline]
    pub fn is_ready(&self) -> bool {
        let seq = self.next;
        // Poll one line only, the one `try_recv` would read: a second,
        // rotating line in the loop would delay seeing the first.
        let stamp = if self.use_latest
            && self.streaming == 0
            && self.latest_acked
            && seq >= self.known_head
        {
            // SAFETY: the latest slot lives in the region we hold.
            let latest = unsafe { &*self.latest.hdr };
            // Acquire: pairs with the Release stamp stores in producer.rs's
            // `write_slot` and `announce` (any stamp from `seq` on: ready).
            latest.stamp.load(Ordering::Acquire)
        } else {
            // Acquire: pairs with the Release stamp store in Producer::seal.
            self.slot(seq).0.stamp.load(Ordering::Acquire)
        };
        stamp >= stamp_done(seq) || self.ended()
    }

    /// After a copy: re-checks the stamp (seqlock) and moves on.
    #[inline(always)]
    fn finish_copy(&mut self, seq: u64, s1: u64) -> Result<(), RecvError> {
        // Acquire: pairs with the Release fence in Producer::begin; if the
        // copy saw any byte of a newer message, this load sees its stamp.
        fence(Ordering::Acquire);
        let s2 = self.slot(seq).0.stamp.load(Ordering::Relaxed);
        if s2 != s1 {
            return Err(self.lapped(seq, s2));
        }
        self.advance();
        Ok(())
    }

    /// Moves past message `next`. The cursor follows in batches of
    /// `release_every` messages, not every message: a store per message
    /// moves the cursor's line to this core each time and, when the
    /// publisher is waiting on a full ring, back to its core at each of
    /// its re-reads (`Producer::refresh_limit`, a fence each), so a full
    /// ring streamed a few messages per refresh at a fraction of its
    /// speed. Holding back the cursor never lets the publisher overwrite
    /// an unread message (it is only ever lower than `next`), and never
    /// stalls it for good: the cursor is released whenever the ring is
    /// found empty (`caught_up`), and a publisher held at the cursor sees
    /// at least `capacity - release_every` unread messages ahead of us,
    /// so reading on releases it. What it costs: a subscriber that stops
    /// reading mid-batch holds up to `release_every - 1` slots it has
    /// read (see [`release_batch`]).
    #[inline(always)]
    fn advance(&mut self) {
        self.next = self.next.wrapping_add(1);
        if self.next.wrapping_sub(self.released) >= self.release_every {
            self.release();
            self.look_ahead();
        }
    }

    /// Sets the cursor to `next`: every message read is released.
    #[inline(always)]
    fn release(&mut self) {
        self.released = self.next;
        if let Some(c) = self.cursor {
            // SAFETY: the cursor lives in the port we hold.
            let c = unsafe { &*c };
            // Release: our reads of the slots happen before the
            // publisher's overwrite; pairs with the Acquire in
            // Producer::slowest_cursor.
            c.store(self.next, Ordering::Release);
        }
    }

    /// Notes how far ahead the publisher is, for [`Consumer::read_ahead`],
    /// if this consumer reads ahead and has run out of messages known to
    /// be complete. Called at batch releases only: a reader far behind
    /// looks at the head's line (which the publisher writes with every
    /// message) once per that many messages, one at its heels at most once
    /// per `release_every` (never while it polls for the next message:
    /// that read the line under the publisher's store, and a tag-filtered
    /// stream, which keeps up, ran at half its speed).
    #[inline(always)]
    fn look_ahead(&mut self) {
        #[cfg(not(loom))]
        if self.ahead != 0 && self.next.wrapping_add(self.ahead) >= self.ahead_until {
            // Relaxed: only decides which slots to prefetch; every read of
            // a slot still checks its stamp with Acquire.
            self.ahead_until = self.region.header().head.load(Ordering::Relaxed);
        }
    }

    /// The head as [`Consumer::look_ahead`] last saw it (0: never looked).
    #[cfg(test)]
    pub(super) fn ahead_until(&self) -> u64 {
        self.ahead_until
    }

    /// Reading message `seq` from its slot while the publisher is known to
    /// be well ahead (see `ahead_until`): asks for the lines of the slot
    /// [`read_ahead_distance`] messages on, at least a page further, so
    /// that they are on their way while this message is copied. A reader
    /// that runs behind its publisher reads lines written long before,
    /// out of the other core's cache; the hardware's own prefetchers stop
    /// at each page, and without this the reader waited for the first
    /// lines of every page, which made it the slower side of a flat-out
    /// stream (`ringbus bench --scenarios streaming`; DESIGN.md, "Where
    /// the streaming nanoseconds go"). Slots the publisher may still be
    /// writing are never fetched: the lines would only be taken from it.
    #[inline(always)]
    fn read_ahead(&self, seq: u64) {
        #[cfg(all(target_arch = "x86_64", not(any(miri, loom))))]
        {
            let at = seq.wrapping_add(self.ahead);
            if at < self.ahead_until {
                let (hdr, _) = self.slot(at);
                let p = (hdr as *const SlotHeader).cast::<i8>();
                for i in 0..self.ahead_lines {
                    // SAFETY: `_mm_prefetch` only hints (it never faults and
                    // changes no memory); the address is inside slot `at`,
                    // whose `stride > 64 * (ahead_lines - 1)` bytes are
                    // mapped.
                    unsafe {
                        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                        _mm_prefetch::<_MM_HINT_T0>(p.add(i * CACHE_LINE));
                    }
                }
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(any(miri, loom)))))]
        let _ = seq;
    }

    /// Nothing more is ready: release what was read (the publisher may be
    /// waiting on it), once.
    #[inline(always)]
    fn caught_up(&mut self) {
        if self.released != self.next {
            self.release();
        }
    }

    /// The slot does not hold message `seq` (stamp `s`): not yet, lapped, or
    /// the stream ended.
    #[cold]
    fn not_ready(&mut self, seq: u64, s: u64) -> RecvError {
        if s > stamp_done(seq) {
            return self.lapped(seq, s);
        }
        if self.ended() {
            // Acquire: pairs with the Release stamp store; `closed` was set
            // after the last message, so one re-check is final.
            let s = self.slot(seq).0.stamp.load(Ordering::Acquire);
            if s == stamp_done(seq) {
                self.caught_up();
                return RecvError::Empty;
            }
            if s > stamp_done(seq) {
                return self.lapped(seq, s);
            }
            // An odd stamp here is a publisher that died mid-write: the torn
            // message is never delivered.
            self.finished = true;
            return RecvError::EndOfStream;
        }
        self.caught_up();
        RecvError::Empty
    }

    /// A length that does not fit: the message may have been overwritten
    /// while we read the header, or the publisher wrote garbage.
    #[cold]
    fn bad_len(&mut self, seq: u64, s1: u64, len: usize) -> RecvError {
        // Acquire: as in `finish_copy`, pairs with the Release fence in
        // Producer::begin: a length read from a newer message comes with
        // its stamp.
        fence(Ordering::Acquire);
        let s2 = self.slot(seq).0.stamp.load(Ordering::Relaxed);
        if s2 != s1 {
            return self.lapped(seq, s2);
        }
        if len <= self.max {
            return RecvError::BufferTooSmall { needed: len };
        }
        self.advance();
        RecvError::Corrupt {
            seq,
            len: len as u64,
        }
    }

    /// Message `seq` was overwritten (the slot's stamp `s` belongs to a later
    /// message): skip to the oldest message that may still be held, or, when
    /// lapped again within a ring's worth of messages of the last lap, to
    /// half a ring behind the publisher.
    ///
    /// The oldest message held is the one the publisher overwrites next: a
    /// reader that resumes there while the publisher streams reads every
    /// slot as it is rewritten, is lapped again at once, and stays in that
    /// lockstep, each read a contended line, losing most messages and
    /// running at a fraction of the stream's rate (DESIGN.md, "A reader
    /// lapped twice resumes half a ring behind"). Half a ring of slack gets
    /// the reader out; an isolated lap (a reader back from a pause, a
    /// publisher that has stopped) still loses only what was overwritten.
    #[cold]
    fn lapped(&mut self, seq: u64, s: u64) -> RecvError {
        // Stamp 2q+1 or 2q+2 means message q has started, so messages up to
        // q - capacity are gone; `head` may tell us more are.
        let q = s.saturating_sub(1) / 2;
        let from_stamp = q.saturating_sub(self.capacity).saturating_add(1);
        let head = self.region.head();
        let from_head = head.saturating_sub(self.capacity);
        let mut resume = from_stamp.max(from_head).max(seq.saturating_add(1));
        if self
            .resumed_at
            .is_some_and(|r| seq.saturating_sub(r) < self.capacity)
        {
            resume = resume.max(head.saturating_sub(self.capacity / 2));
        }
        self.resumed_at = Some(resume);
        let missed = resume - seq;
        self.next = resume;
        self.release();
        self.lagged = self.lagged.saturating_add(missed);
        self.report_dropped();
        RecvError::Lagged { missed }
    }

    /// Shows the broker (`ringbus topics`) how many messages this consumer
    /// lost.
    fn report_dropped(&self) {
        if let Some(p) = &self.port {
            p.header().dropped.store(self.lagged, Ordering::Relaxed);
        }
    }

    /// Messages a filter turned down.
    pub fn filtered_total(&self) -> u64 {
        self.filtered
    }

    /// Messages delivered: every one read since this consumer started,
    /// less those filtered and lost.
    pub fn delivered_total(&self) -> u64 {
        (self.next.wrapping_sub(self.origin))
            .saturating_sub(self.filtered)
            .saturating_sub(self.lagged)
    }

    /// Writes the delivered and filtered counts into the port, for the
    /// broker's listing (`ringbus topics`).
    pub fn report_counts(&self) {
        if let Some(p) = &self.port {
            let h = p.header();
            // Relaxed: figures for display, read by the broker whenever.
            h.delivered.store(self.delivered_total(), Ordering::Relaxed);
            h.filtered.store(self.filtered, Ordering::Relaxed);
        }
    }

    /// Receives the next message `filter` keeps into `buf`, skipping
    /// (as read) those it turns down: by tag from the slot header before
    /// anything is copied, by predicate in place on a back-pressure ring
    /// (the slot is the subscriber's until it moves on) and over the
    /// validated copy in `buf` on an overwrite ring. Each tag is read
    /// after the message's stamp and checked against it again before the
    /// message is skipped: a tag of a newer message never decides. At most
    /// [`SKIP_BUDGET`] messages are skipped per call (`Empty` then, with
    /// the ring still ready).
    ///
    /// # Errors
    /// As [`Consumer::try_recv`]; [`RecvError::FilterPanicked`].
    pub fn try_recv_filtered<T>(
        &mut self,
        buf: &mut [u8],
        filter: &mut Filter,
        wrap: impl FnOnce(MessageInfo) -> T,
    ) -> Result<T, RecvError> {
        for _ in 0..SKIP_BUDGET {
            self.skip_unwanted(filter)?;
            let (info, payload, s1) = self.peek(usize::MAX)?;
            if info.len > buf.len() {
                return Err(RecvError::BufferTooSmall { needed: info.len });
            }
            // SAFETY: `peek` checked `len <= max`, so the copy stays in the
            // payload area, and `len <= buf.len()`.
            unsafe { copy_out_short(payload, &mut buf[..info.len]) };
            self.finish_copy(info.seq, s1)?;
            if self.backpressure {
                return Ok(wrap(info));
            }
            // Overwrite ring: the predicate runs on the validated copy.
            match judge(filter, &info, &buf[..info.len]) {
                Some(true) => return Ok(wrap(info)),
                Some(false) => self.filtered += 1,
                None => {
                    self.filtered += 1;
                    return Err(RecvError::FilterPanicked { seq: info.seq });
                }
            }
        }
        Err(RecvError::Empty)
    }

    /// [`Consumer::try_recv_ref`] of the next message `filter` keeps (see
    /// [`Consumer::try_recv_filtered`]).
    ///
    /// # Errors
    /// As [`Consumer::try_recv_ref`]; [`RecvError::FilterPanicked`].
    pub fn try_recv_ref_filtered(
        &mut self,
        filter: &mut Filter,
    ) -> Result<MessageRef<'_>, RecvError> {
        if !self.backpressure {
            return Err(RecvError::ZeroCopyUnsupported);
        }
        self.skip_unwanted(filter)?;
        self.try_recv_ref()
    }

    /// Moves past the messages `filter` turns down, up to the first it
    /// keeps (not consumed). The predicate is consulted here only on a
    /// back-pressure ring, in place.
    ///
    /// # Errors
    /// `Empty` when nothing kept is ready (after at most [`SKIP_BUDGET`]
    /// skips); otherwise as [`Consumer::try_recv`];
    /// [`RecvError::FilterPanicked`].
    pub fn skip_unwanted(&mut self, filter: &mut Filter) -> Result<(), RecvError> {
        for _ in 0..SKIP_BUDGET {
            let (info, payload, s1) = self.peek(usize::MAX)?;
            let keep = if filter.keeps_tag(info.tag) {
                if !self.backpressure {
                    return Ok(());
                }
                // SAFETY: a back-pressure slot is not rewritten until our
                // cursor moves past it (the publisher waits for it), and
                // `peek` checked the length against the slot's size.
                let bytes = unsafe { std::slice::from_raw_parts(payload, info.len) };
                match judge(filter, &info, bytes) {
                    Some(k) => k,
                    None => {
                        self.advance();
                        self.filtered += 1;
                        return Err(RecvError::FilterPanicked { seq: info.seq });
                    }
                }
            } else {
                // The tag was read after the stamp: check that it is still
                // this message's (as `finish_copy` does for a payload).
                fence(Ordering::Acquire);
                let s2 = self.slot(info.seq).0.stamp.load(Ordering::Relaxed);
                if s2 != s1 {
                    return Err(self.lapped(info.seq, s2));
                }
                false
            };
            if keep {
                return Ok(());
            }
            self.advance();
            self.filtered += 1;
        }
        Err(RecvError::Empty)
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("region", &self.region)
            .field("next_seq", &self.next)
            .field("backpressure", &self.backpressure)
            .field("cursor", &self.cursor.is_some())
            .finish()
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(p) = self.port.as_ref().filter(|_| !self.keep_cursor) {
            // Release: pairs with the Acquire in Producer::slowest_cursor:
            // our reads happen before the publisher overwrites the slots.
            p.header().pos.store(CURSOR_FREE, Ordering::Release);
            // Only a port the heap ring gave out goes back to it: another
            // (the caller's, `with_port`) is its maker's to remove, and its
            // id may even be one the ring gave another reader.
            if self.local_port {
                self.region.local_port_gone(p.port_id());
            }
        }
    }
}

/// How far ahead [`Consumer::read_ahead`] fetches: the first slot at
/// least a page (4 KiB) past the one being read; 0 (never) for slots
/// under [`READ_AHEAD_MIN_STRIDE`].
pub(super) fn read_ahead_distance(stride: u64) -> u64 {
    if stride < READ_AHEAD_MIN_STRIDE {
        return 0;
    }
    4096u64.div_ceil(stride)
}

/// Slots smaller than this are not read ahead: a page holds 8 or more of
/// them, so its first-line wait is shared by as many messages (8, 64 and
/// 256-byte streams ran no faster with read-ahead: DESIGN.md, "Where the
/// streaming nanoseconds go").
const READ_AHEAD_MIN_STRIDE: u64 = 512;

/// How many lines of a slot [`Consumer::read_ahead`] fetches: all of
/// them, up to 2 KiB (past that the hardware's prefetcher follows the
/// copy within the page). A slot may start half way into a line
/// ([`crate::layout::SLOT_ALIGN`]): one address per started line of the
/// stride, each inside the slot, then reaches every line it touches.
pub(super) fn read_ahead_lines(stride: u64) -> usize {
    (stride as usize).div_ceil(CACHE_LINE).clamp(1, 32)
}

/// How many messages a consumer reads between cursor stores on a ring of
/// `capacity` (see `Consumer::advance`): a quarter of the ring, at most 64
/// (a 64-byte message's batch then moves 6 KiB of slots per cursor line
/// transfer; more buys nothing measurable and holds more slots back).
pub(crate) fn release_batch(capacity: u64) -> u64 {
    (capacity / 4).clamp(1, 64)
}

/// Where a reader starting at `start` begins in `region` now.
fn start_at(region: &RingRegion, start: Start) -> u64 {
    let head = region.head();
    match start {
        // Refused before (`AttachError::TimeStart`).
        Start::Latest | Start::Time(_) => head,
        Start::Earliest => head.saturating_sub(u64::from(region.config().capacity)),
        Start::Sequence(s) => s,
    }
}

/// A message read in place from a back-pressure ring. The publisher cannot
/// reuse its slot until the view is dropped.
pub struct MessageRef<'a> {
    consumer: &'a mut Consumer,
    payload: *const u8,
    info: MessageInfo,
}

impl MessageRef<'_> {
    /// Sequence, tag, timestamp, length.
    pub fn info(&self) -> MessageInfo {
        self.info
    }

    /// The ring the message is read from. Holding it keeps the payload's
    /// memory mapped after the view is dropped (the bytes may then be
    /// rewritten by the publisher): what a binding needs to hand the payload
    /// to a language whose views it cannot revoke.
    pub fn region(&self) -> &Arc<RingRegion> {
        &self.consumer.region
    }

    /// Re-checks that the slot still holds this message. Always true while
    /// the publisher follows the protocol; a check for callers that do not
    /// trust the publishing process.
    pub fn is_intact(&self) -> bool {
        let seq = self.info.seq;
        // Acquire: pairs with the Release stamp store in Producer::seal.
        self.consumer.slot(seq).0.stamp.load(Ordering::Acquire) == stamp_done(seq)
    }
}

impl std::ops::Deref for MessageRef<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len <= max` (checked), inside the slot's payload area; our
        // cursor is at this message, so the publisher does not write the
        // slot until the view is dropped and the cursor moves.
        unsafe { std::slice::from_raw_parts(self.payload, self.info.len) }
    }
}

impl Drop for MessageRef<'_> {
    fn drop(&mut self) {
        self.consumer.advance();
    }
}

/// Messages read in place by [`Consumer::try_recv_ref_batch`]: the
/// publisher cannot reuse their slots until it is dropped, which moves the
/// cursor past them all.
pub struct BatchRef<'a> {
    consumer: &'a mut Consumer,
    first: u64,
    count: u64,
}

impl BatchRef<'_> {
    /// How many messages it holds.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// Whether it holds none (never, as returned).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Gives the messages back unreleased: the next receive returns them
    /// again (a journal whose write failed retries them).
    pub fn rewind(self) {
        let mut this = std::mem::ManuallyDrop::new(self);
        this.consumer.next = this.first;
    }
}

impl Drop for BatchRef<'_> {
    fn drop(&mut self) {
        // One store for the whole batch, now: its reader (the journal)
        // releases messages only once they are written.
        self.consumer.release();
    }
}

/// Waits until any of `consumers` can be read (a message or end of stream),
/// as `wait` says; `false` at `deadline`. A blocking wait sleeps on the
/// futex words of all their ports at once (`futex_waitv`), woken by the
/// publisher of any of them; see [`crate::wait`], "Many rings", for the
/// rings it can only poll.
pub fn wait_any<C: BorrowMut<Consumer>>(
    consumers: &mut [C],
    wait: WaitStrategy,
    deadline: Option<Instant>,
) -> bool {
    wait_any_limit(consumers, wait, &mut Limit::by(deadline))
}

/// As [`wait_any`], until `limit`.
pub(crate) fn wait_any_limit<C: BorrowMut<Consumer>>(
    consumers: &mut [C],
    wait: WaitStrategy,
    limit: &mut Limit,
) -> bool {
    if let [one] = consumers {
        return one.borrow_mut().wait_ready_limit(wait, limit);
    }
    let mut beds = Vec::with_capacity(consumers.len());
    let mut states = Vec::with_capacity(consumers.len());
    let mut unwoken = false;
    for c in consumers.iter_mut() {
        match c.borrow_mut().take_bed() {
            Some((bed, state)) => {
                beds.push(bed);
                states.push(state);
            }
            None => unwoken = true,
        }
    }
    let r = wait_until_all(&beds, &mut states, unwoken, wait, limit, || {
        consumers
            .iter()
            .any(|c| c.borrow().is_ready())
            .then_some(())
    });
    drop(beds);
    let mut states = states.into_iter();
    for c in consumers.iter_mut() {
        let c = c.borrow_mut();
        if c.port.is_some() {
            c.wake = states.next().unwrap_or_default();
        }
    }
    r.is_some()
}
