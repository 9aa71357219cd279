//! The publishing side of a ring: one per ring, never shared.

use super::copy::{copy_area, copy_in, copy_in_short, payload_bytes};
use super::latest::{LatestSlot, LATEST_HEAD};
use super::port::{Port, PortFlags};
use super::region::{AttachError, RingRegion};
use super::write_ahead::{
    prefetch_for_write, write_ahead_gap_ticks, write_ahead_l2, write_ahead_lines,
    WRITE_AHEAD_MIN_LEN,
};
use super::{stamp_done, stamp_writing, Mode, TopicConfig};
use crate::clock::{rdtsc, tsc_ticks_per_us, Clock};
use crate::layout::{
    DeskHeader, PortHeader, SlotHeader, BELL_EVERY, CACHE_LINE, CURSOR_FREE, MAILBOX_RETIRED,
    REQUEST_LATEST, REQUEST_WAKE,
};
use crate::sync::{fence, AtomicU32, AtomicU64, Ordering};
use crate::wait::{notify_ports, wake_port};
use std::cell::Cell;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a message was not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// The message is larger than the ring's `max_message_size`.
    #[error("message of {len} bytes exceeds the ring's max message size of {max} bytes")]
    TooLarge {
        /// Length asked for.
        len: usize,
        /// The ring's limit.
        max: usize,
    },
    /// Back-pressure mode: every slot holds a message some live subscriber
    /// has not consumed yet.
    #[error("ring is full: a subscriber has not consumed the oldest message (back-pressure)")]
    Full,
    /// Back-pressure mode: still full when the timeout expired.
    #[error("ring stayed full until the timeout expired (back-pressure)")]
    Timeout,
    /// A loan of more slots than the ring has ([`Producer::loan_many`]).
    #[error("a loan of {n} slots exceeds the ring's capacity of {capacity} slots")]
    TooMany {
        /// Slots asked for.
        n: usize,
        /// The ring's capacity.
        capacity: usize,
    },
}

/// Most mailboxes a producer writes: each costs every message one more
/// copy, and a waiting reader one more contended line. Further read-only
/// subscribers read the ring slots.
pub const MAX_MAILBOXES: usize = 32;

/// Most messages of a batch written before they are sealed
/// ([`Producer::publish_batch`]): enough that the stall of sealing each
/// message as it is written is paid rarely (DESIGN.md, "Where the
/// streaming nanoseconds go"), few enough that the first message of a run
/// is not held back long (64 copies of 1 KiB are a few microseconds).
const SEAL_RUN: u64 = 64;

/// A batch whose messages are all this short is sealed message by message
/// instead: for short messages the passes over a run cost more than they
/// save (measured at 64 B on AMD EPYC and at 256 B on an Intel Xeon:
/// DESIGN.md, "Where the streaming nanoseconds go"). Messages up to 256
/// bytes are also the ones a mailbox holds inline, so no run writes one.
/// Loom models the runs, whose messages it keeps short.
#[cfg(not(loom))]
const SEAL_EACH_UP_TO: usize = 256;
#[cfg(loom)]
const SEAL_EACH_UP_TO: usize = 0;

/// A change to a ring's set of ports, queued for its producer by whoever
/// adds or removes ports (the broker, through the publisher's channel; an
/// in-process queue for a ring on the heap) before it bumps the ring's
/// `generation`.
#[derive(Debug)]
pub enum PortChange {
    /// A subscriber's new port, with what its creator decided for it.
    Add {
        /// The port.
        port: Arc<Port>,
        /// Whether to write its mailbox; whether it may ask for the shared
        /// latest slot.
        flags: PortFlags,
    },
    /// Port `port_id`'s subscriber left or died: it gates nothing now.
    Remove {
        /// The port's id.
        port_id: u64,
    },
}

/// Where a producer takes its port changes from whenever the ring's
/// generation moves (see [`Producer::set_port_source`]).
pub trait PortSource: Send {
    /// The changes queued since the last call, without waiting; `None` if
    /// the source is gone for good (the producer keeps the ports it has).
    fn take(&mut self) -> Option<Vec<PortChange>>;
}

/// The in-process queue of a ring on the heap.
struct LocalSource(Arc<RingRegion>);

impl PortSource for LocalSource {
    fn take(&mut self) -> Option<Vec<PortChange>> {
        Some(self.0.local().map(|l| l.take()).unwrap_or_default())
    }
}

/// One subscriber's port, as the producer uses it.
struct PortEntry {
    port: Arc<Port>,
    flags: PortFlags,
    /// The producer writes its mailbox.
    mailbox_on: bool,
    /// The producer wakes it (it asked, and was answered).
    waking: bool,
}

/// The single writer of a ring.
///
/// ```
/// use ringbus::ring::{Consumer, Producer, TopicConfig, RingRegion, Start};
/// let region = RingRegion::heap(&TopicConfig::default()).unwrap();
/// let mut publisher = Producer::new(region.clone()).unwrap();
/// let mut subscriber = Consumer::new(region, Start::Earliest).unwrap();
/// publisher.publish(b"hello", 7).unwrap();
/// let mut buf = [0u8; 1024];
/// let info = subscriber.try_recv(&mut buf).unwrap();
/// assert_eq!((&buf[..info.len], info.tag, info.seq), (&b"hello"[..], 7, 0));
/// ```
pub struct Producer {
    region: Arc<RingRegion>,
    // Copies of the validated config, so the hot path reads no shared line.
    slots: *mut u8,
    /// The words every message touches besides its slot, found once:
    /// the ring's head, the desk (its port generation) and the lobby's
    /// bell.
    head: *const AtomicU64,
    desk: *const DeskHeader,
    bell: *const AtomicU32,
    stride: usize,
    mask: u64,
    capacity: u64,
    max: usize,
    /// Lines of the next slot asked for, for writing, after each message
    /// of at least `write_ahead_min_len` bytes that came less than
    /// `write_ahead_gap` TSC ticks after the one before, at `last_out`
    /// (0: never; see `write_ahead.rs`).
    write_ahead: usize,
    write_ahead_min_len: usize,
    write_ahead_gap: u64,
    last_out: u64,
    /// The latest-message slot and how much payload it holds inline.
    latest: LatestSlot,
    latest_inline: usize,
    backpressure: bool,
    /// Publish timestamps; `None` (the default) when off.
    clock: Option<Clock>,
    /// Sequence of the next message.
    seq: u64,
    /// Back-pressure: sequences below this may be written without reading
    /// the cursors (the cached gating sequence plus capacity).
    cached_limit: u64,
    /// Whether some port is woken (`wakers` is not empty): whether to run
    /// the sleeper check after each message.
    wake_on: bool,
    /// Whether every message also goes to the latest-message slot (some
    /// trusted subscriber asked for it; see `enable_latest`).
    latest_on: bool,
    /// The subscribers' ports.
    ports: Vec<PortEntry>,
    /// The cursors that gate a back-pressure ring (every port's `pos`).
    gating: Vec<*const AtomicU64>,
    /// The ports woken after each message (those that asked).
    wakers: Vec<*const PortHeader>,
    /// The latest-style slots every message goes to, as `publish` reads
    /// them (see `retarget`): the first in `lead` (valid while `lead_on`),
    /// any others in `extra`.
    lead: LatestSlot,
    lead_on: bool,
    extra: Vec<LatestSlot>,
    /// A message goes to its ring slot alone, with no timestamp: no
    /// latest-style slot is written (`!lead_on`) and `clock` is off. Kept
    /// by `note_ring_only` wherever either changes: one flag for `put` to
    /// read, not two (reading both published a few percent slower).
    ring_only: bool,
    /// Where port changes come from when the generation moves.
    source: Option<Box<dyn PortSource>>,
    /// The ring's generation the ports belong to.
    gen_seen: u32,
    /// The lobby's bell as last answered.
    bell_seen: u32,
    /// No look at the ports' requests before this sequence (see
    /// `hear_bell`).
    scan_after: u64,
}

// SAFETY: `slots`, `head`, `desk`, `bell` and `latest` point into
// `region`, the port pointers (`gating`, `wakers`, `lead`, `extra`) into
// ports held in `ports` (the lists are rebuilt whenever `ports` changes,
// see `retarget`), all kept alive by the producer and Send; a producer is
// used by one thread at a time (`&mut self`).
unsafe impl Send for Producer {}

impl Producer {
    /// The writer of `region`. There must be one producer per ring (the
    /// broker gives each publisher its own ring). A ring on the heap brings
    /// its consumers' ports along; a mapped ring gets them from a
    /// [`PortSource`] ([`Producer::set_port_source`]) or
    /// [`Producer::add_port`].
    ///
    /// # Errors
    /// [`AttachError::Corrupt`] if the data segment is mapped read-only, or
    /// the ring's desk is not mapped.
    pub fn new(region: Arc<RingRegion>) -> Result<Producer, AttachError> {
        if !region.data_writable() || region.desk().is_none() {
            return Err(AttachError::Corrupt(
                "a publisher needs a writable data segment and the ring's desk".into(),
            ));
        }
        let c = *region.config();
        let seq = region.head();
        // A producer made again for a ring whose subscribers already poll
        // the latest slot keeps writing it.
        let latest_on = region.header().latest_ack.load(Ordering::Relaxed) != 0;
        // SAFETY: the latest slot lies in the data segment (validated
        // sizes), 128-byte aligned, kept mapped by `region`.
        let latest = unsafe { LatestSlot::at(region.latest()) };
        let local = region
            .local()
            .is_some()
            .then(|| Box::new(LocalSource(region.clone())) as Box<dyn PortSource>);
        let stride = region.sizes().slot_stride as usize;
        let mut write_ahead = write_ahead_lines(stride, u64::from(c.capacity), write_ahead_l2());
        let mut write_ahead_gap = 0;
        if write_ahead != 0 {
            match write_ahead_gap_ticks(tsc_ticks_per_us()) {
                Some(g) => write_ahead_gap = g,
                None => write_ahead = 0,
            }
        }
        let desk: *const DeskHeader = region.desk().expect("checked above");
        let mut p = Producer {
            slots: region.slots(),
            head: &region.header().head,
            desk,
            bell: &region.lobby().bell,
            write_ahead,
            write_ahead_min_len: WRITE_AHEAD_MIN_LEN,
            write_ahead_gap,
            last_out: 0,
            latest,
            latest_inline: region.sizes().latest_inline as usize,
            stride,
            mask: u64::from(c.capacity) - 1,
            capacity: u64::from(c.capacity),
            max: c.max_message_size as usize,
            backpressure: c.mode == Mode::Backpressure,
            clock: None,
            seq,
            cached_limit: 0,
            wake_on: false,
            latest_on,
            ports: Vec::new(),
            gating: Vec::new(),
            wakers: Vec::new(),
            lead: latest,
            lead_on: latest_on,
            extra: Vec::new(),
            ring_only: !latest_on,
            source: None,
            gen_seen: 0,
            bell_seen: 0,
            scan_after: 0,
            region,
        };
        if let Some(source) = local {
            p.set_port_source(source);
        }
        Ok(p)
    }

    /// The ring's configuration.
    pub fn config(&self) -> &TopicConfig {
        self.region.config()
    }

    /// The memory this producer writes.
    pub fn region(&self) -> &Arc<RingRegion> {
        &self.region
    }

    /// Sequence number the next message will get.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Turns the per-message CLOCK_MONOTONIC timestamp on or off. Off by
    /// default: messages then carry 0. On, every publish reads the clock
    /// (`rdtsc`) while it writes the message, on the message's critical
    /// path (DESIGN.md, "Timestamps"); turn it on where the publish time is
    /// worth that.
    pub fn set_timestamps(&mut self, on: bool) {
        if on != self.clock.is_some() {
            self.clock = on.then(Clock::new);
            self.note_ring_only();
        }
    }

    /// Starts serving `port`: its cursor gates a back-pressure ring, its
    /// mailbox gets every message if `flags.mailbox` (and fewer than
    /// [`MAX_MAILBOXES`] are written), its requests are answered. For a
    /// port added while this producer runs, its creator must have placed
    /// the cursor with [`RingRegion::admit_port`]. Adding a port twice does
    /// nothing.
    ///
    /// # Errors
    /// [`AttachError::Corrupt`] if the port belongs to another ring or
    /// holds a different number of inline bytes.
    pub fn add_port(&mut self, port: Arc<Port>, flags: PortFlags) -> Result<(), AttachError> {
        port.check_fits(&self.region)?;
        self.insert_port(port, flags);
        self.answer_requests();
        self.retarget();
        Ok(())
    }

    fn insert_port(&mut self, port: Arc<Port>, flags: PortFlags) {
        let id = port.port_id();
        if self.ports.iter().any(|e| e.port.port_id() == id) {
            return;
        }
        let mailboxes = self.ports.iter().filter(|e| e.mailbox_on).count();
        let mailbox_on = flags.mailbox && mailboxes < MAX_MAILBOXES;
        if mailbox_on {
            if let Some(last) = self.seq.checked_sub(1) {
                // SAFETY: the port's mailbox slot, which only the publisher
                // writes; nothing is copied.
                unsafe { announce(&port.slot(), last, u32::MAX as usize, 0, 0) };
            }
            // Release: the announcement is visible to a reader that sees
            // the ack; pairs with the Acquire in Consumer::latest_acked.
            port.header().mailbox_ack.store(1, Ordering::Release);
        }
        self.ports.push(PortEntry {
            port,
            flags,
            mailbox_on,
            waking: false,
        });
    }

    /// Stops serving port `port_id`; returns whether it was served. Its
    /// cursor gates nothing from now on, and its mailbox slot is stamped
    /// past every sequence, so its reader goes back to the ring for good.
    pub fn remove_port(&mut self, port_id: u64) -> bool {
        let removed = self.take_port(port_id);
        self.retarget();
        removed
    }

    fn take_port(&mut self, port_id: u64) -> bool {
        let Some(i) = self.ports.iter().position(|e| e.port.port_id() == port_id) else {
            return false;
        };
        let e = self.ports.swap_remove(i);
        if e.mailbox_on {
            // SAFETY: the slot header lies in the port `e` holds.
            let hdr = unsafe { &*e.port.slot().hdr };
            // Release: pairs with the Acquire stamp load in
            // Consumer::try_latest (any stamp past `want` sends the reader
            // to the ring; this one is past them all).
            hdr.stamp.store(u64::MAX, Ordering::Release);
            // Release: pairs with the Acquire in Consumer::latest_acked: a
            // reader that first sees the mailbox acknowledged here finds
            // the stamp above.
            e.port
                .header()
                .mailbox_ack
                .store(MAILBOX_RETIRED, Ordering::Release);
        }
        // A subscriber asleep on it learns it is on its own.
        wake_port(e.port.header());
        true
    }

    /// Takes port changes from `source` now, and again after any message
    /// once the ring's generation (bumped by whoever queues a change) has
    /// moved, and always before extending a back-pressure bound. A take is
    /// expected not to wait (a non-blocking read of a channel).
    pub fn set_port_source(&mut self, source: Box<dyn PortSource>) {
        self.source = Some(source);
        let g = self.generation();
        self.sync_ports(g);
    }

    fn desk(&self) -> &DeskHeader {
        // SAFETY: the desk of `region`, which `self` keeps mapped (checked
        // present in `new`).
        unsafe { &*self.desk }
    }

    /// Counts `n` messages lost before they reached this ring (a bridge
    /// importing from another host: a gap in the far ring's sequence, a
    /// message dropped at a full ring). Shown by `ringbus topics`; readers
    /// of the ring are not told.
    #[cold]
    pub fn report_lost(&mut self, n: u64) {
        // Relaxed: a count for reports, read by the broker.
        self.desk().lost.fetch_add(n, Ordering::Relaxed);
    }

    fn generation(&self) -> u32 {
        // Relaxed: a hint that changes are queued; the queue itself
        // (a socket, a mutex) orders them after whoever queued them.
        self.desk().generation.load(Ordering::Relaxed)
    }

    /// Applies the changes queued since the last take. Returns false if the
    /// source is gone, in which case the ports stay as they were.
    #[cold]
    fn sync_ports(&mut self, generation: u32) -> bool {
        let Some(source) = self.source.as_mut() else {
            self.gen_seen = generation;
            return true;
        };
        let Some(changes) = source.take() else {
            // Gone for good (no broker, no keeper): no new port can come.
            self.source = None;
            self.gen_seen = generation;
            return false;
        };
        self.gen_seen = generation;
        for c in changes {
            match c {
                PortChange::Add { port, flags } => {
                    // A port of another ring is its sender's mistake: skipped.
                    if port.check_fits(&self.region).is_ok() {
                        self.insert_port(port, flags);
                    }
                }
                PortChange::Remove { port_id } => {
                    self.take_port(port_id);
                }
            }
        }
        self.answer_requests();
        self.retarget();
        true
    }

    /// The lobby's bell rang: looks at the ports' requests, at most once
    /// per [`BELL_EVERY`] messages while looking finds nothing new (a bell
    /// rung on purpose costs the producer little).
    #[cold]
    #[inline(never)]
    fn hear_bell(&mut self, bell: u32) {
        if self.seq < self.scan_after {
            return;
        }
        self.bell_seen = bell;
        let found = self.answer_requests();
        self.scan_after = if found {
            self.seq
        } else {
            self.seq.saturating_add(u64::from(BELL_EVERY))
        };
        if found {
            self.retarget();
        }
    }

    /// Answers the ports' requests not answered yet: wake-ups, and the
    /// shared latest slot for trusted ports. Returns whether any was new.
    fn answer_requests(&mut self) -> bool {
        let mut found = false;
        let mut want_latest = false;
        for e in &mut self.ports {
            let h = e.port.header();
            // Acquire: pairs with the subscriber's Release when it set the
            // request (`wait::ask_for_wakeups`, Consumer::want_latest).
            let r = h.requests.load(Ordering::Acquire);
            if r & REQUEST_WAKE != 0 && !e.waking {
                e.waking = true;
                found = true;
                // Release: the messages published so far are visible to a
                // waiter that sees the ack; pairs with the Acquire in
                // `wait::sleep_once`. Every message from now on runs the
                // sleeper check for this port (`wakers`).
                h.wake_ack.store(1, Ordering::Release);
            }
            if r & REQUEST_LATEST != 0 && e.flags.trusted && !self.latest_on {
                want_latest = true;
            }
        }
        if want_latest {
            self.enable_latest();
            found = true;
        }
        found
    }

    /// Recomputes what `publish` reads besides the ring slot: the shared
    /// latest slot while it is on, then every mailbox written, the first
    /// of them in a field of its own, written as the shared slot alone was:
    /// written through the loop, a lone mailbox costs the ping-pong a
    /// visible share of a hop (DESIGN.md, "Mailboxes"); and the cursors and
    /// wake words. Runs on the cold paths that change the set.
    fn retarget(&mut self) {
        let shared = self.latest_on.then_some(self.latest);
        let mut all = shared.into_iter().chain(
            self.ports
                .iter()
                .filter(|e| e.mailbox_on)
                .map(|e| e.port.slot()),
        );
        self.lead_on = match all.next() {
            Some(first) => {
                self.lead = first;
                true
            }
            None => false,
        };
        self.extra.clear();
        self.extra.extend(all);
        self.note_ring_only();
        self.gating.clear();
        self.gating.extend(
            self.ports
                .iter()
                .map(|e| &e.port.header().pos as *const AtomicU64),
        );
        self.wakers.clear();
        self.wakers.extend(
            self.ports
                .iter()
                .filter(|e| e.waking)
                .map(|e| e.port.header() as *const PortHeader),
        );
        self.wake_on = !self.wakers.is_empty();
    }

    /// Whether a message is its ring slot alone (see `ring_only`).
    fn note_ring_only(&mut self) {
        self.ring_only = !self.lead_on && self.clock.is_none();
    }

    /// How many ports this producer serves.
    pub fn ports(&self) -> usize {
        self.ports.len()
    }

    /// How many mailboxes this producer writes.
    pub fn mailboxes(&self) -> usize {
        self.ports.iter().filter(|e| e.mailbox_on).count()
    }

    /// Copies `data` into the ring as one message with `tag`; returns its
    /// sequence number. In back-pressure mode waits (without bound) for a
    /// subscriber to make room; see [`Producer::try_publish`] and
    /// [`Producer::publish_timeout`].
    ///
    /// # Errors
    /// [`PublishError::TooLarge`] if `data` exceeds the max message size.
    #[inline]
    pub fn publish(&mut self, data: &[u8], tag: u64) -> Result<u64, PublishError> {
        self.check_len(data.len())?;
        self.wait_for_room(None)?;
        Ok(self.write(data, tag))
    }

    /// As [`Producer::publish`], but never waits.
    ///
    /// # Errors
    /// [`PublishError::Full`] in back-pressure mode when no slot is free;
    /// [`PublishError::TooLarge`].
    #[inline]
    pub fn try_publish(&mut self, data: &[u8], tag: u64) -> Result<u64, PublishError> {
        self.check_len(data.len())?;
        if !self.has_room() {
            return Err(PublishError::Full);
        }
        Ok(self.write(data, tag))
    }

    /// As [`Producer::publish`], waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`PublishError::Timeout`]; [`PublishError::TooLarge`].
    pub fn publish_timeout(
        &mut self,
        data: &[u8],
        tag: u64,
        timeout: Duration,
    ) -> Result<u64, PublishError> {
        self.check_len(data.len())?;
        self.wait_for_room(Some(Instant::now() + timeout))?;
        Ok(self.write(data, tag))
    }

    /// Publishes every message of `msgs` (byte slices, arrays or vectors)
    /// in order, each with `tag`; returns their sequence numbers. Each is
    /// readable as soon as it is written, but the ring's head, the wake-up
    /// of sleeping subscribers and the look for new subscribers come once
    /// per batch (and before any wait for room), not once per message. In
    /// back-pressure mode waits for room as [`Producer::publish`] does, so
    /// a batch may be longer than the ring.
    ///
    /// ```
    /// # use ringbus::ring::{Producer, TopicConfig, RingRegion};
    /// # let mut publisher = Producer::new(RingRegion::heap(&TopicConfig::default()).unwrap()).unwrap();
    /// let seqs = publisher.publish_batch(&[b"bid", b"ask"], 0).unwrap();
    /// assert_eq!(seqs, 0..2);
    /// let quotes: Vec<Vec<u8>> = vec![b"1.25".to_vec(), b"1.5".to_vec()];
    /// assert_eq!(publisher.publish_batch(&quotes, 1).unwrap(), 2..4);
    /// ```
    ///
    /// # Errors
    /// [`PublishError::TooLarge`] if any message exceeds the max message
    /// size: then none is published.
    pub fn publish_batch<M: AsRef<[u8]>>(
        &mut self,
        msgs: &[M],
        tag: u64,
    ) -> Result<std::ops::Range<u64>, PublishError> {
        self.publish_many(msgs, tag, true)
    }

    /// As [`Producer::publish_batch`], but never waits: publishes the
    /// longest prefix of `msgs` that fits now and returns its sequence
    /// numbers (the caller sends the rest later).
    ///
    /// # Errors
    /// [`PublishError::Full`] in back-pressure mode when not even the
    /// first message fits; [`PublishError::TooLarge`] as for
    /// `publish_batch` (none published).
    pub fn try_publish_batch<M: AsRef<[u8]>>(
        &mut self,
        msgs: &[M],
        tag: u64,
    ) -> Result<std::ops::Range<u64>, PublishError> {
        self.publish_many(msgs, tag, false)
    }

    /// Borrows the next slot's payload area (`len` bytes) to be filled in
    /// place; [`Loan::commit`] publishes it. Waits for room like `publish`.
    ///
    /// ```
    /// # use ringbus::ring::{Producer, TopicConfig, RingRegion};
    /// # let mut publisher = Producer::new(RingRegion::heap(&TopicConfig::default()).unwrap()).unwrap();
    /// let mut loan = publisher.loan(4).unwrap();
    /// loan.copy_from_slice(b"ping");
    /// let seq = loan.commit(0);
    /// # assert_eq!(seq, 0);
    /// ```
    ///
    /// # Errors
    /// [`PublishError::TooLarge`].
    #[inline]
    pub fn loan(&mut self, len: usize) -> Result<Loan<'_>, PublishError> {
        self.check_len(len)?;
        self.wait_for_room(None)?;
        Ok(self.begin_loan(len))
    }

    /// As [`Producer::loan`], waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`PublishError::Timeout`]; [`PublishError::TooLarge`].
    pub fn loan_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<Loan<'_>, PublishError> {
        self.check_len(len)?;
        self.wait_for_room(Some(Instant::now() + timeout))?;
        Ok(self.begin_loan(len))
    }

    /// As [`Producer::loan`], but never waits.
    ///
    /// # Errors
    /// [`PublishError::Full`]; [`PublishError::TooLarge`].
    #[inline]
    pub fn try_loan(&mut self, len: usize) -> Result<Loan<'_>, PublishError> {
        self.check_len(len)?;
        if !self.has_room() {
            return Err(PublishError::Full);
        }
        Ok(self.begin_loan(len))
    }

    /// Borrows the payload areas of the next `n` slots (`len` bytes each)
    /// to be filled in place; [`LoanMany::commit`] publishes them in order
    /// with one update of the ring's head and one wake-up of sleeping
    /// subscribers for the lot: a [`Producer::publish_batch`] without the
    /// copy. Waits until all `n` slots are free, as `loan` waits for one.
    ///
    /// ```
    /// # use ringbus::ring::{Producer, TopicConfig, RingRegion};
    /// # let mut publisher = Producer::new(RingRegion::heap(&TopicConfig::default()).unwrap()).unwrap();
    /// let mut loans = publisher.loan_many(3, 8).unwrap();
    /// for (i, slot) in loans.iter_mut().enumerate() {
    ///     slot.copy_from_slice(&(i as u64).to_le_bytes());
    /// }
    /// assert_eq!(loans.commit(0), 0..3);
    /// ```
    ///
    /// # Errors
    /// [`PublishError::TooLarge`]; [`PublishError::TooMany`] if `n` exceeds
    /// the ring's capacity.
    pub fn loan_many(&mut self, n: usize, len: usize) -> Result<LoanMany<'_>, PublishError> {
        self.check_many(n, len)?;
        self.wait_until(None, |p| p.has_room_for(n))?;
        Ok(self.begin_many(n, len))
    }

    /// As [`Producer::loan_many`], waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`PublishError::Timeout`]; as `loan_many`.
    pub fn loan_many_timeout(
        &mut self,
        n: usize,
        len: usize,
        timeout: Duration,
    ) -> Result<LoanMany<'_>, PublishError> {
        self.check_many(n, len)?;
        self.wait_until(Some(Instant::now() + timeout), |p| p.has_room_for(n))?;
        Ok(self.begin_many(n, len))
    }

    /// As [`Producer::loan_many`], but never waits.
    ///
    /// # Errors
    /// [`PublishError::Full`] when fewer than `n` slots are free; as
    /// `loan_many`.
    pub fn try_loan_many(&mut self, n: usize, len: usize) -> Result<LoanMany<'_>, PublishError> {
        self.check_many(n, len)?;
        if !self.has_room_for(n) {
            return Err(PublishError::Full);
        }
        Ok(self.begin_many(n, len))
    }

    fn check_many(&self, n: usize, len: usize) -> Result<(), PublishError> {
        self.check_len(len)?;
        let capacity = self.capacity as usize;
        if n > capacity {
            return Err(PublishError::TooMany { n, capacity });
        }
        Ok(())
    }

    /// Whether sequences `self.seq .. self.seq + n` may be written now.
    fn has_room_for(&mut self, n: usize) -> bool {
        let end = self.seq.saturating_add(n as u64);
        // `refresh_limit` leaves the bound it computed in `cached_limit`.
        !self.backpressure || end <= self.cached_limit || {
            self.refresh_limit();
            end <= self.cached_limit
        }
    }

    #[inline(always)]
    fn check_len(&self, len: usize) -> Result<(), PublishError> {
        if len > self.max {
            return Err(PublishError::TooLarge { len, max: self.max });
        }
        Ok(())
    }

    /// Whether sequence `self.seq` may be written now.
    #[inline(always)]
    fn has_room(&mut self) -> bool {
        !self.backpressure || self.seq < self.cached_limit || self.refresh_limit()
    }

    fn wait_for_room(&mut self, deadline: Option<Instant>) -> Result<(), PublishError> {
        self.wait_until(deadline, Self::has_room)
    }

    /// Waits until `room(self)` says yes.
    #[inline(always)]
    fn wait_until(
        &mut self,
        deadline: Option<Instant>,
        mut room: impl FnMut(&mut Self) -> bool,
    ) -> Result<(), PublishError> {
        // Spin, then yield (crossbeam's Backoff), then sleep in short steps:
        // a subscriber does not wake the publisher, so this polls.
        let backoff = crossbeam_utils::Backoff::new();
        while !room(self) {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(PublishError::Timeout);
            }
            if cfg!(loom) {
                // Loom runs one thread at a time: let the subscriber run.
                crate::sync::spin_hint();
            } else if backoff.is_completed() {
                std::thread::sleep(Duration::from_micros(20));
            } else {
                backoff.snooze();
            }
        }
        Ok(())
    }

    /// Re-reads the cursors (back-pressure slow path). Also the publisher's
    /// half of the join protocol: a port added while we scan is either
    /// taken from the source (we see the generation its adder bumped) or
    /// placed inside the bound we store (its adder sees it); see
    /// [`RingRegion::admit_port`]. Whenever the ports changed, the bound is
    /// computed again over the new set: a new port's cursor may lie below
    /// the old bound, and a removed one's no longer holds it down (kept,
    /// it made the first publish after a removal report `Full`).
    #[cold]
    fn refresh_limit(&mut self) -> bool {
        loop {
            let limit = self.slowest_cursor() + self.capacity;
            self.desk().limit.store(limit, Ordering::Relaxed);
            // SeqCst: Dekker pair with the fence in RingRegion::admit_port:
            // either its adder reads the limit stored above or we read the
            // generation it bumped.
            fence(Ordering::SeqCst);
            let g = self.generation();
            if g == self.gen_seen {
                self.cached_limit = limit;
                return self.seq < limit;
            }
            if !self.sync_ports(g) {
                // Changes are queued that cannot be taken: a port we cannot
                // see may sit anywhere above the bound we had, so keep that
                // bound.
                let kept = self.cached_limit.min(limit);
                self.desk().limit.store(kept, Ordering::Relaxed);
                self.cached_limit = kept;
                return self.seq < kept;
            }
        }
    }

    /// The lowest live cursor, or `self.seq` if none is below it. Cursor
    /// values come from other processes: one above `self.seq` is clamped,
    /// so a bogus cursor can stall only its own subscriber's messages.
    fn slowest_cursor(&self) -> u64 {
        let mut min = self.seq;
        for &pos in &self.gating {
            // SAFETY: `gating` points into ports held in `self.ports`
            // (rebuilt by `retarget` whenever that changes).
            let pos = unsafe { &*pos };
            // Acquire: pairs with the Release cursor store in
            // Consumer::advance, so the subscriber's reads of the slot
            // happen before we overwrite it.
            let pos = pos.load(Ordering::Acquire);
            if pos != CURSOR_FREE {
                min = min.min(pos);
            }
        }
        min
    }

    #[inline(always)]
    fn slot(&self, seq: u64) -> *mut u8 {
        // SAFETY: `seq & mask < capacity`, and the data segment holds
        // `capacity` slots of `stride` bytes after the header (validated).
        unsafe { self.slots.add((seq & self.mask) as usize * self.stride) }
    }

    /// Marks the slot of `self.seq` as being written; returns its header
    /// and payload area.
    #[inline(always)]
    fn begin(&self) -> (*const SlotHeader, *mut u8) {
        let p = self.slot(self.seq);
        // SAFETY: a slot starts with an initialised SlotHeader, 32-byte aligned.
        let hdr = unsafe { &*(p as *const SlotHeader) };
        hdr.stamp.store(stamp_writing(self.seq), Ordering::Relaxed);
        // Release: orders the odd stamp before the payload stores that
        // follow; pairs with the Acquire fence in Consumer::finish_copy (a
        // reader that saw any new byte then sees the odd stamp).
        fence(Ordering::Release);
        // SAFETY: the payload follows the header inside the slot.
        (hdr, unsafe { p.add(std::mem::size_of::<SlotHeader>()) })
    }

    /// The publish timestamp (0 when turned off).
    #[inline(always)]
    fn timestamp(&mut self) -> u64 {
        match &mut self.clock {
            Some(c) => c.now(),
            None => 0,
        }
    }

    /// Writes an inline message (`len <= latest_inline`, payload copied in
    /// by `fill(dst, from, n)`, which copies message bytes `from..from + n`
    /// to `dst`) into the shared latest slot, if in use, and every mailbox;
    /// returns the timestamp written, or `None` if there was nowhere to
    /// write (or the message is too long to inline).
    #[inline(always)]
    fn write_inline_copies(
        &mut self,
        len: usize,
        tag: u64,
        fill: impl Fn(*mut u8, usize, usize),
    ) -> Option<u64> {
        if len > self.latest_inline {
            return None;
        }
        let seq = self.seq;
        let mut ts = None;
        if self.lead_on {
            // SAFETY: `lead` is the latest slot, in the region we hold, or
            // the slot of a mailbox in `self.mailboxes` (see `retarget`),
            // with `latest_inline >= len` payload bytes (checked in
            // `add_mailbox`); only the publisher writes either.
            ts = Some(unsafe { write_slot(&self.lead, seq, len, tag, ts, &mut self.clock, &fill) });
        }
        for slot in &self.extra {
            // SAFETY: as for `lead`.
            ts = Some(unsafe { write_slot(slot, seq, len, tag, ts, &mut self.clock, &fill) });
        }
        ts
    }

    /// Fills in the header of the ring slot of `self.seq` and stamps it
    /// complete.
    #[inline(always)]
    fn seal(&self, hdr: *const SlotHeader, len: usize, tag: u64, ts: u64) {
        // SAFETY: `hdr` came from `begin` and points into the region, which
        // outlives this call.
        let hdr = unsafe { &*hdr };
        hdr.len.store(len as u32, Ordering::Relaxed);
        hdr.tag.store(tag, Ordering::Relaxed);
        hdr.timestamp.store(ts, Ordering::Relaxed);
        // Release: publishes the payload and the fields above; pairs with
        // the Acquire stamp load in Consumer::peek.
        hdr.stamp.store(stamp_done(self.seq), Ordering::Release);
    }

    /// Completes message `self.seq` (its ring slot payload is written):
    /// latest slot, mailboxes and ring slot in the order the module docs
    /// give, then `head`, then wakes sleepers.
    #[inline(always)]
    fn finish(&mut self, hdr: *const SlotHeader, payload: *const u8, len: usize, tag: u64) -> u64 {
        self.seal_loaned(hdr, payload, len, tag);
        self.complete()
    }

    /// [`Producer::finish`] up to the message's seal (as [`Producer::put`]
    /// is to [`Producer::write`]).
    #[inline(always)]
    fn seal_loaned(&mut self, hdr: *const SlotHeader, payload: *const u8, len: usize, tag: u64) {
        // SAFETY: `payload` is this message's ring slot payload (`len` bytes
        // written by the loan); each destination holds `latest_inline >=
        // len` bytes (the only case `write_inline_copies` fills); only the
        // publisher writes either.
        let copy = |dst: *mut u8, from: usize, n: usize| unsafe {
            copy_area(payload.add(payload_bytes(from)), dst, n)
        };
        match self.write_inline_copies(len, tag, copy) {
            Some(ts) => self.seal(hdr, len, tag, ts),
            None => self.seal_ring(hdr, len, tag),
        }
    }

    /// Stamps the clock into the ring slot of `self.seq` and seals it; a
    /// latest slot in use and every mailbox get the message's header ("read
    /// the ring": only messages too long to inline come here while either
    /// is in use).
    #[inline(always)]
    fn seal_ring(&mut self, hdr: *const SlotHeader, len: usize, tag: u64) {
        let ts = self.timestamp();
        self.seal(hdr, len, tag, ts);
        let seq = self.seq;
        if self.lead_on {
            // SAFETY: as in `write_inline_copies`; nothing is copied.
            unsafe { announce(&self.lead, seq, len, tag, ts) };
        }
        for slot in &self.extra {
            // SAFETY: as in `write_inline_copies`; nothing is copied.
            unsafe { announce(slot, seq, len, tag, ts) };
        }
    }

    /// Moves on after message `self.seq` is in both slots.
    #[inline(always)]
    fn complete(&mut self) -> u64 {
        let seq = self.seq;
        self.seq = seq.wrapping_add(1);
        self.settle();
        seq
    }

    /// After every message below `self.seq` is sealed: moves `head` there,
    /// wakes sleepers, and takes port changes and requests. Once per
    /// message, or once per batch (see [`Producer::publish_batch`]).
    #[inline(always)]
    fn settle(&mut self) {
        // Release: pairs with the Acquire in RingRegion::head (late joiners
        // and lag recovery start from it).
        // SAFETY: `head` lies in the ring header of `region`, which `self`
        // keeps mapped.
        unsafe { &*self.head }.store(self.seq, Ordering::Release);
        if self.wake_on {
            notify_ports(&self.wakers);
        }
        // After the message, not before its copies, so that a reader
        // waiting for it does not wait for these too: a change to the
        // ports, or the shared slot turning on, takes effect from the next
        // message, each announcing this one as "in the ring".
        let g = self.generation();
        if g != self.gen_seen {
            self.sync_ports(g);
        }
        // Relaxed: a hint; the requests themselves are read with Acquire.
        // SAFETY: `bell` lies in the lobby of `region`, which `self` keeps
        // mapped.
        let bell = unsafe { &*self.bell }.load(Ordering::Relaxed);
        if bell != self.bell_seen {
            self.hear_bell(bell);
        }
        // Last, off the message's way: its readers see it already.
        if self.write_ahead != 0 {
            self.write_ahead_streaming();
        }
    }

    /// Writes ahead after every message, whatever the ring's size and the
    /// pace (tests: the hint must never change what readers get).
    #[cfg(test)]
    pub(super) fn force_write_ahead(&mut self) {
        self.write_ahead = super::write_ahead::WRITE_AHEAD_MAX_LINES;
        self.write_ahead_min_len = 0;
        self.write_ahead_gap = u64::MAX;
    }

    /// Asks for the next slot's lines for writing if this message came
    /// hard on the heels of the one before (see `write_ahead.rs`).
    #[inline(always)]
    fn write_ahead_streaming(&mut self) {
        // SAFETY: a slot starts with an initialised SlotHeader; this one,
        // the last message's, only this publisher writes.
        let last = unsafe { &*(self.slot(self.seq.wrapping_sub(1)) as *const SlotHeader) };
        // Relaxed: our own store, read back as a guess at the next
        // message's length.
        let len = last.len.load(Ordering::Relaxed) as usize;
        if len < self.write_ahead_min_len {
            return;
        }
        let now = rdtsc();
        let streaming = now.wrapping_sub(self.last_out) < self.write_ahead_gap;
        self.last_out = now;
        if streaming {
            self.write_ahead(self.seq, len);
        }
    }

    /// Asks for the lines of `seq`'s slot that a message of `len` bytes
    /// takes, for writing, on a ring where that pays (see
    /// `write_ahead.rs`): all but the one holding its stamp, which a
    /// reader at the publisher's heels polls; taking it from under that
    /// reader would cost it one more transfer of the line (streams of
    /// 1 KiB ran as fast either way). `len` is a guess (the message
    /// before's), so a ring whose slots hold far more than its messages
    /// take is not asked for lines nobody writes.
    #[inline(always)]
    fn write_ahead(&self, seq: u64, len: usize) {
        if self.write_ahead != 0 && len >= self.write_ahead_min_len {
            let slot = self.slot(seq);
            let past_stamp = CACHE_LINE - (slot as usize % CACHE_LINE);
            let used = std::mem::size_of::<SlotHeader>().saturating_add(len);
            let lines = used.saturating_sub(past_stamp).div_ceil(CACHE_LINE);
            prefetch_for_write(slot.wrapping_add(past_stamp), lines.min(self.write_ahead));
        }
    }

    /// Starts writing the latest-message slot with every message. The last
    /// message published so far is announced there first (as "read the
    /// ring slot"), so a subscriber that switches to the latest slot is
    /// sent to the ring for everything older instead of waiting there.
    #[cold]
    fn enable_latest(&mut self) {
        if let Some(last) = self.seq.checked_sub(1) {
            // SAFETY: the latest slot, which only the publisher writes;
            // nothing is copied.
            unsafe { announce(&self.latest, last, u32::MAX as usize, 0, 0) };
        }
        self.latest_on = true;
        self.retarget();
        // Release: the announcement is visible to a subscriber that sees
        // the ack; pairs with the Acquire in Consumer::latest_acked.
        self.region.header().latest_ack.store(1, Ordering::Release);
    }

    /// Copies `data` in and publishes it. The timestamp is read once the
    /// payload is in place, right before the header stores: read first,
    /// `rdtsc`'s latency held back every store of the message, and a
    /// spinning reader saw it up to ~30 % later (DESIGN.md, "Where the
    /// ping-pong nanoseconds go").
    #[inline(always)]
    fn write(&mut self, data: &[u8], tag: u64) -> u64 {
        self.put(data, tag);
        self.complete()
    }

    /// [`Producer::write`] up to the message's seal: message `self.seq` is
    /// readable, but `seq`, `head` and the sleepers are left to the caller.
    #[inline(always)]
    fn put(&mut self, data: &[u8], tag: u64) {
        let len = data.len();
        if self.ring_only {
            // No latest slot, no mailbox, no clock: the ring slot alone,
            // stamped 0, none of the flags below looked at. Written out
            // apart: folded into the general path (a `Some(0)` timestamp)
            // the compiler's code for both paths was slower, the mailbox
            // path slower than with no split at all
            // (`docs/notes/2026-12-08-publish-path.md`).
            let (hdr, payload) = self.begin();
            // SAFETY: as for the ring slot's copy below.
            unsafe { copy_in_short(payload, data) };
            self.seal(hdr, len, tag, 0);
            return;
        }
        // A caught-up subscriber reads an inline message from the latest
        // slot or its mailbox, so it goes there first (and takes the
        // timestamp there).
        // SAFETY: `write_inline_copies` fills only areas of `latest_inline
        // >= len` bytes, which only the publisher writes, with parts of
        // `data` (`from + n <= len`).
        let inline_ts = self.write_inline_copies(len, tag, |dst, from, n| unsafe {
            copy_in_short(dst, data.get_unchecked(from..from + n))
        });
        let (hdr, payload) = self.begin();
        // SAFETY: `data.len() <= max` (checked by the caller) and the payload
        // area holds `max` bytes; the slot is ours while its stamp is odd.
        // Short copies inline, as into a mailbox: a `memcpy` call is most
        // of a small message's publish.
        unsafe { copy_in_short(payload, data) };
        match inline_ts {
            Some(ts) => self.seal(hdr, len, tag, ts),
            None => self.seal_ring(hdr, len, tag),
        }
    }

    /// Publishes `msgs` in order; `wait`: for room, as `publish` does, or
    /// not at all (stop at the first message that does not fit). Messages
    /// go in runs of up to [`SEAL_RUN`] that fit the ring: each run's slots
    /// are stamped odd and filled one by one, then sealed one after
    /// another, as a [`LoanMany`] is (unless every message is at most
    /// [`SEAL_EACH_UP_TO`] bytes: then each is sealed once written).
    /// `head`, the wake-up of sleepers and the look at
    /// port changes come once, after the last message, and before any
    /// wait for room (a subscriber asleep on a message already written
    /// would never make that room).
    fn publish_many<M: AsRef<[u8]>>(
        &mut self,
        msgs: &[M],
        tag: u64,
        wait: bool,
    ) -> Result<std::ops::Range<u64>, PublishError> {
        // All or nothing: a bad length is found before any is published.
        let mut longest = 0;
        for m in msgs {
            let len = m.as_ref().len();
            self.check_len(len)?;
            longest = longest.max(len);
        }
        let first = self.seq;
        let mut settled = first;
        let mut rest = msgs;
        while !rest.is_empty() {
            if self.backpressure && self.seq >= self.cached_limit {
                // Ports may change while the limit is refreshed: settle
                // first, so that happens between settled messages as it
                // does for `publish`.
                if self.seq != settled {
                    self.settle();
                    settled = self.seq;
                }
                if !self.has_room() {
                    if !wait {
                        break;
                    }
                    self.wait_for_room(None)?;
                }
            }
            // `has_room` left `seq < cached_limit` on a back-pressure ring.
            let room = match self.backpressure {
                true => self.cached_limit.wrapping_sub(self.seq),
                false => u64::MAX,
            };
            let n = (rest.len() as u64)
                .min(room)
                .min(SEAL_RUN)
                .min(self.capacity) as usize;
            let (run, tail) = rest.split_at(n);
            if longest <= SEAL_EACH_UP_TO {
                for m in run {
                    self.put(m.as_ref(), tag);
                    self.seq = self.seq.wrapping_add(1);
                }
            } else {
                self.put_run(run, tag);
            }
            rest = tail;
        }
        if self.seq != settled {
            self.settle();
        }
        if self.seq == first && !msgs.is_empty() {
            return Err(PublishError::Full);
        }
        Ok(first..self.seq)
    }

    /// Writes and seals `msgs` (lengths checked, `msgs.len()` slots free,
    /// at most the capacity) as messages `self.seq..`, leaving the settle
    /// to the caller. The seals come after every copy, as a
    /// [`LoanMany`]'s commit does them: sealing each message as it is
    /// written stalled the publisher's stores at 256 B and up (see
    /// [`SEAL_RUN`]).
    #[inline(always)]
    fn put_run<M: AsRef<[u8]>>(&mut self, msgs: &[M], tag: u64) {
        for (i, m) in msgs.iter().enumerate() {
            // Stamped right before its copy, as a loan stamps a slot when
            // it lends it: one pass fewer over the run's slots.
            self.stamp_odd_range(i, i + 1);
            self.write_ahead(self.seq.wrapping_add(i as u64 + 1), m.as_ref().len());
            let payload = self.payload_of(self.seq.wrapping_add(i as u64));
            // SAFETY: the slot's payload area holds `max >= m.len()` bytes
            // (checked by the caller), and the slot is ours while its stamp
            // is odd.
            unsafe { copy_in(payload, m.as_ref()) };
        }
        for m in msgs {
            let p = self.slot(self.seq);
            let payload = self.payload_of(self.seq);
            self.seal_loaned(p as *const SlotHeader, payload, m.as_ref().len(), tag);
            self.seq = self.seq.wrapping_add(1);
        }
    }

    /// The payload area of `seq`'s ring slot.
    #[inline(always)]
    fn payload_of(&self, seq: u64) -> *mut u8 {
        // SAFETY: the payload follows the header inside the slot.
        unsafe { self.slot(seq).add(std::mem::size_of::<SlotHeader>()) }
    }

    /// Stamps the slots of `self.seq + from .. self.seq + to` as being
    /// written (as [`Producer::begin`] does one).
    #[inline(always)]
    fn stamp_odd_range(&self, from: usize, to: usize) {
        for i in from as u64..to as u64 {
            let seq = self.seq.wrapping_add(i);
            // SAFETY: a slot starts with an initialised SlotHeader, 32-byte
            // aligned.
            let hdr = unsafe { &*(self.slot(seq) as *const SlotHeader) };
            hdr.stamp.store(stamp_writing(seq), Ordering::Relaxed);
        }
        // Release: orders the odd stamps before the payload stores that
        // follow; pairs with the Acquire fence in Consumer::finish_copy, as
        // in `begin`.
        fence(Ordering::Release);
    }

    /// Lends the slots of `self.seq .. self.seq + n`; each is marked as
    /// being written (as [`Producer::begin`] does one) when first lent
    /// writable ([`LoanMany::stamp_through`]).
    fn begin_many(&mut self, n: usize, len: usize) -> LoanMany<'_> {
        LoanMany {
            producer: self,
            n,
            len,
            stamped: Cell::new(0),
            _not_send: PhantomData,
        }
    }

    fn begin_loan(&mut self, len: usize) -> Loan<'_> {
        let (hdr, payload) = self.begin();
        Loan {
            producer: self,
            hdr,
            payload,
            len,
            _not_send: PhantomData,
        }
    }
}

/// Writes inline message `seq` (`len <= latest_inline` bytes) into a
/// latest-style slot (the shared latest slot or a mailbox's) as
/// `latest.rs` lays out: a tail behind its check word first, then line 0
/// in one burst (odd stamp, head, header, done stamp). `fill(dst, from,
/// n)` copies message bytes `from..from + n` to `dst`. `ts` is the
/// timestamp to carry, or `None` to read `clock` once the payload is in;
/// returns the timestamp written.
///
/// # Safety
/// `slot` must be the parts of an initialised latest-style slot with at
/// least `len` inline bytes, which only this publisher writes.
#[inline(always)]
unsafe fn write_slot(
    slot: &LatestSlot,
    seq: u64,
    len: usize,
    tag: u64,
    ts: Option<u64>,
    clock: &mut Option<Clock>,
    fill: &impl Fn(*mut u8, usize, usize),
) -> u64 {
    // SAFETY: the caller's guarantee.
    let (l, check) = unsafe { (&*slot.hdr, &*slot.check) };
    if len > LATEST_HEAD {
        check.store(stamp_writing(seq), Ordering::Relaxed);
        // Release: orders the check word before the tail stores; pairs with
        // the Acquire fence in Consumer::try_latest (a reader that saw any
        // byte of this tail sees this check word, or a later one).
        fence(Ordering::Release);
        fill(slot.tail, LATEST_HEAD, len - LATEST_HEAD);
    }
    // Release: every ring slot sealed before (all messages below `seq`) is
    // visible to a reader that sees this stamp; pairs with the Acquire stamp
    // load in Consumer::try_latest, which sends the reader to those slots
    // (without it the reader could find one not yet sealed and report a
    // spurious `Empty`).
    l.stamp.store(stamp_writing(seq), Ordering::Release);
    // Release: orders the odd stamp before the head and header stores;
    // pairs with the Acquire fence in Consumer::try_latest.
    fence(Ordering::Release);
    fill(slot.head, 0, len.min(LATEST_HEAD));
    let ts = ts.unwrap_or_else(|| clock.as_mut().map_or(0, Clock::now));
    l.len.store(len as u32, Ordering::Relaxed);
    l.tag.store(tag, Ordering::Relaxed);
    l.timestamp.store(ts, Ordering::Relaxed);
    // Release: publishes the payload (tail included) and fields above; pairs
    // with the Acquire stamp load in Consumer::try_latest.
    l.stamp.store(stamp_done(seq), Ordering::Release);
    ts
}

/// Announces message `seq` in a latest-style slot by header only: a
/// message too long to inline (its ring slot sealed first), or, with a
/// `len` above any inline size, "everything up to `seq` is in the ring".
/// Line 0 only: the tail and its check word stay as they are.
///
/// # Safety
/// As for [`write_slot`].
#[inline(always)]
unsafe fn announce(slot: &LatestSlot, seq: u64, len: usize, tag: u64, ts: u64) {
    // SAFETY: the caller's guarantee.
    let l = unsafe { &*slot.hdr };
    // Release: as the odd stamp in `write_slot` (ring slots below `seq`,
    // and a long message's own slot, are sealed before it).
    l.stamp.store(stamp_writing(seq), Ordering::Release);
    fence(Ordering::Release);
    l.len.store(len as u32, Ordering::Relaxed);
    l.tag.store(tag, Ordering::Relaxed);
    l.timestamp.store(ts, Ordering::Relaxed);
    // Release: pairs with the Acquire stamp load in Consumer::try_latest.
    l.stamp.store(stamp_done(seq), Ordering::Release);
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("region", &self.region)
            .field("next_seq", &self.seq)
            .finish()
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // Subscribers drain what is left, then see end of stream; any of
        // them asleep is woken to see it.
        let _ = self.region.close();
        for e in &self.ports {
            wake_port(e.port.header());
        }
    }
}

/// A slot's payload area lent to the publisher; publish it with
/// [`Loan::commit`]. Dropping a loan publishes nothing (the next loan or
/// publish reuses the slot).
pub struct Loan<'a> {
    producer: &'a mut Producer,
    hdr: *const SlotHeader,
    payload: *mut u8,
    len: usize,
    _not_send: PhantomData<*mut u8>,
}

impl Loan<'_> {
    /// Publishes the loaned bytes with `tag`; returns the sequence number.
    #[inline]
    pub fn commit(self, tag: u64) -> u64 {
        let len = self.len;
        self.commit_len(len, tag)
    }

    /// The ring the loan is in. Holding it keeps the loaned memory mapped
    /// after the loan ends (see [`MessageRef::region`](super::MessageRef::region)).
    pub fn region(&self) -> &Arc<RingRegion> {
        &self.producer.region
    }

    /// Publishes only the first `len` bytes (clamped to the loan's length).
    #[inline]
    pub fn commit_len(self, len: usize, tag: u64) -> u64 {
        let len = len.min(self.len);
        self.producer.finish(self.hdr, self.payload, len, tag)
    }
}

/// The payload areas of several consecutive slots lent to the publisher
/// ([`Producer::loan_many`]); index it (`loans[i]`) or iterate over it to
/// fill them, then [`LoanMany::commit`]. Dropping it publishes nothing (the
/// next publish reuses the slots).
pub struct LoanMany<'a> {
    producer: &'a mut Producer,
    n: usize,
    len: usize,
    /// How many of the first slots are stamped as being written: each is
    /// stamped when first lent out writable (or at the commit), so that
    /// filling a slot follows its stamp at once instead of after a pass
    /// over every slot of the loan.
    stamped: Cell<usize>,
    _not_send: PhantomData<*mut u8>,
}

impl LoanMany<'_> {
    /// How many slots are lent.
    pub fn count(&self) -> usize {
        self.n
    }

    /// Bytes lent in each slot.
    pub fn slot_len(&self) -> usize {
        self.len
    }

    /// The ring the loan is in (see [`Loan::region`]).
    pub fn region(&self) -> &Arc<RingRegion> {
        &self.producer.region
    }

    /// The sequence number the first slot is published as.
    pub fn first_seq(&self) -> u64 {
        self.producer.seq
    }

    /// Slot `i`'s payload area.
    #[inline(always)]
    fn payload(&self, i: usize) -> *mut u8 {
        assert!(i < self.n, "slot {i} of a loan of {}", self.n);
        let p = self.producer.slot(self.producer.seq.wrapping_add(i as u64));
        // SAFETY: the payload follows the header inside the slot.
        unsafe { p.add(std::mem::size_of::<SlotHeader>()) }
    }

    /// Stamps the first `end` slots as being written, those not yet.
    #[inline(always)]
    fn stamp_through(&self, end: usize) {
        let done = self.stamped.get();
        if end > done {
            self.producer.stamp_odd_range(done, end);
            self.stamped.set(end);
        }
    }

    /// Slot `i`'s payload area, stamped as being written.
    #[inline(always)]
    fn writable(&self, i: usize) -> *mut u8 {
        let p = self.payload(i);
        self.stamp_through(i + 1);
        p
    }

    /// The lent areas in order, each writable.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut [u8]> + '_ {
        let (n, len) = (self.n, self.len);
        let this = &*self;
        (0..n).map(move |i| {
            // SAFETY: slot `i`'s payload area holds `max >= len` bytes (checked
            // by `loan_many`); `n <= capacity`, so the `n` areas are distinct
            // slots and the slices do not overlap; `writable` stamped the
            // slot odd (no reader keeps what it reads) before the slice
            // exists, and only this loan, which borrows the producer
            // mutably and itself mutably for the iterator's life, writes it.
            unsafe { std::slice::from_raw_parts_mut(this.writable(i), len) }
        })
    }

    /// Publishes every lent slot, in order, with its whole `slot_len` and
    /// `tag`; returns their sequence numbers.
    pub fn commit(self, tag: u64) -> std::ops::Range<u64> {
        let (n, len) = (self.n, self.len);
        self.commit_with(n, |_| (len, tag))
    }

    /// Publishes the first `count` lent slots (clamped to the loan's
    /// count), in order, slot `i` with the length and tag `f(i)` gives
    /// (the length clamped to `slot_len`); returns their sequence numbers.
    /// The slots after them are not published.
    pub fn commit_with(
        self,
        count: usize,
        mut f: impl FnMut(usize) -> (usize, u64),
    ) -> std::ops::Range<u64> {
        let count = count.min(self.n);
        // A slot never lent out writable is stamped before its seal: a
        // lapped reader of its last message must not take the new header.
        self.stamp_through(count);
        let first = self.producer.seq;
        for i in 0..count {
            let (len, tag) = f(i);
            let len = len.min(self.len);
            // Slot `i` is the producer's next: `seq` moves on with each.
            let p = &mut *self.producer;
            let (hdr, payload) = (p.slot(p.seq) as *const SlotHeader, p.payload_of(p.seq));
            p.seal_loaned(hdr, payload, len, tag);
            p.seq = p.seq.wrapping_add(1);
        }
        if count > 0 {
            self.producer.settle();
        }
        first..self.producer.seq
    }
}

impl std::ops::Index<usize> for LoanMany<'_> {
    type Output = [u8];
    /// Slot `i`'s lent bytes.
    ///
    /// # Panics
    /// If `i >= count()`.
    fn index(&self, i: usize) -> &[u8] {
        // SAFETY: as in `iter_mut`; shared for the borrow of `self`.
        unsafe { std::slice::from_raw_parts(self.payload(i), self.len) }
    }
}

impl std::ops::IndexMut<usize> for LoanMany<'_> {
    /// # Panics
    /// If `i >= count()`.
    fn index_mut(&mut self, i: usize) -> &mut [u8] {
        // SAFETY: as in `iter_mut`; exclusive for the borrow of `self`.
        unsafe { std::slice::from_raw_parts_mut(self.writable(i), self.len) }
    }
}

impl std::fmt::Debug for LoanMany<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoanMany")
            .field("first_seq", &self.producer.seq)
            .field("count", &self.n)
            .field("slot_len", &self.len)
            .finish()
    }
}

impl std::ops::Deref for Loan<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len <= max`, inside the slot's payload area; the slot is
        // stamped odd, so no reader keeps what it reads from it, and only
        // this loan (borrowing the producer mutably) writes it.
        unsafe { std::slice::from_raw_parts(self.payload, self.len) }
    }
}

impl std::ops::DerefMut for Loan<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; the loan is the slot's only writer.
        unsafe { std::slice::from_raw_parts_mut(self.payload, self.len) }
    }
}
