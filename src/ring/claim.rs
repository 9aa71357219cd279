//! Consumer groups: members of one group share a ring's messages, each
//! message going to one member (DESIGN.md, "Consumer groups").
//!
//! * **The claim counter.** Each (group, ring) pair has one word, on a
//!   line of its own, in a **claim table** (a segment the broker creates
//!   per topic and group and maps to every member, read-write): the next
//!   sequence nobody has claimed. A member claims a batch of consecutive
//!   published sequences `[c, c + n)` with one compare-and-swap, reads
//!   them in order, and acknowledges them.
//! * **Gating.** A member's port cursor (the word the publisher gates on,
//!   [`crate::layout::PortHeader`]'s `pos`) holds its oldest
//!   unacknowledged sequence, or, when it holds nothing, a value it read
//!   from the claim counter (clamped to the ring's head). The counter only
//!   grows, so every member's cursor is at or below every sequence it
//!   holds and below every sequence nobody has claimed yet: the
//!   publisher's gating on the slowest cursor covers the group unchanged,
//!   and nothing claimed but unacknowledged, or unclaimed, is overwritten.
//! * **Untrusted words.** Every member can write the table. A counter
//!   beyond the ring's head claims nothing (the member sees no message,
//!   its cursor stays at the head); a batch is never more than a ring's
//!   capacity; a line left half-initialised by a member that died makes
//!   the others give up on that ring after a bounded wait with an error.
//!   A hostile member can keep the group from its messages (as it could by
//!   claiming and never acknowledging), never make another member panic
//!   or spin without end.

use super::consumer::{Consumer, MessageInfo, RecvError};
use super::port::Port;
use crate::sync::{AtomicU64, Ordering};
use std::collections::{BTreeSet, VecDeque};
use std::ptr::NonNull;
use std::sync::Arc;

/// Identity of a claim table segment (`"RBGROUP1"` little-endian).
pub const CLAIM_MAGIC: u64 = u64::from_le_bytes(*b"RBGROUP1");
/// Lines in a claim table: one per ring of the topic the group has met
/// (a table does not reuse the lines of rings that ended).
pub const CLAIM_LINES: usize = 255;
/// Bytes of a claim table: a header line and [`CLAIM_LINES`] lines.
pub const CLAIM_TABLE_LEN: usize = (CLAIM_LINES + 1) * LINE;
const LINE: usize = 128;
/// Set in a line's `ring` word while its claim counter is being set.
const INITIALISING: u64 = 1 << 63;
/// How many times a member looks at a line another member is
/// initialising before it gives up on it (a few under Miri, which runs
/// the test of it).
const INIT_PATIENCE: u32 = if cfg!(miri) { 16 } else { 1 << 16 };
/// The highest sequence whose slot stamps (`2 * seq + 2`) do not wrap: a
/// counter beyond it is garbage.
const MAX_SEQ: u64 = (u64::MAX - 2) / 2;
/// Largest batch a member claims by default.
pub const DEFAULT_BATCH: u32 = 64;

/// One line of the table: which ring it counts for (`ring_id + 1`; 0 free),
/// its claim counter, and where the counter started (for `ringbus
/// topics`: claimed = counter - start). The header line's words are the
/// magic, the orphan generation and the dead letters members sent.
#[repr(C, align(128))]
struct ClaimLine {
    ring: AtomicU64,
    claim: AtomicU64,
    start: AtomicU64,
}

#[cfg(not(loom))]
const _: () = assert!(std::mem::size_of::<ClaimLine>() == LINE);

enum Backing {
    /// From `Box::into_raw`, freed on drop (a pointer, not a box: the
    /// lines are reached through pointers derived from it, and moving a
    /// box would assert a uniqueness those pointers break).
    Heap(*mut [ClaimLine]),
    #[allow(dead_code)]
    External(Box<dyn std::any::Any + Send + Sync>),
}

/// A group's claim table (see the module docs).
pub struct ClaimTable {
    /// The header line: `ring` holds [`CLAIM_MAGIC`], `claim` the orphan
    /// generation (bumped by the broker when a member died holding
    /// messages).
    header: NonNull<ClaimLine>,
    lines: NonNull<ClaimLine>,
    _backing: Backing,
}

// SAFETY: all shared access goes through atomics; the memory is owned by
// `_backing` (a heap box or a mapping), which is Send + Sync.
unsafe impl Send for ClaimTable {}
// SAFETY: see `Send`.
unsafe impl Sync for ClaimTable {}

/// Why a group member cannot read a ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Every line of the group's table is taken.
    #[error("the group's claim table is full ({CLAIM_LINES} rings)")]
    TableFull,
    /// Another member began setting the ring's line up and never finished
    /// (it died, or wrote garbage).
    #[error("ring {0}'s claim line was left half set up by another member")]
    Stuck(u64),
    /// The segment is not a claim table.
    #[error("not a claim table: {0}")]
    Corrupt(String),
    /// A sequence acknowledged is not one this member holds.
    #[error("message {seq} of ring {ring_id} is not held by this member (never delivered to it, or already acknowledged)")]
    NotHeld {
        /// The ring.
        ring_id: u64,
        /// The sequence.
        seq: u64,
    },
}

impl Drop for ClaimTable {
    fn drop(&mut self) {
        if let Backing::Heap(raw) = self._backing {
            // SAFETY: from `Box::into_raw` in `heap`; last owner.
            drop(unsafe { Box::from_raw(raw) });
        }
    }
}

impl ClaimTable {
    /// A table on the heap (tests, loom).
    pub fn heap() -> Arc<ClaimTable> {
        let lines: Box<[ClaimLine]> = (0..=CLAIM_LINES)
            .map(|_| ClaimLine {
                ring: AtomicU64::new(0),
                claim: AtomicU64::new(0),
                start: AtomicU64::new(0),
            })
            .collect();
        let raw = Box::into_raw(lines);
        // SAFETY: `raw` is a live allocation of CLAIM_LINES + 1 lines (a
        // header and the lines), not null.
        let (header, ptr) = unsafe {
            let first = NonNull::new_unchecked(raw as *mut ClaimLine);
            (first, first.add(1))
        };
        Arc::new(ClaimTable {
            header,
            lines: ptr,
            _backing: Backing::Heap(raw),
        })
    }

    /// Writes a new table's header into `base` (the rest stays zero).
    ///
    /// # Safety
    /// `base` must be valid for writes of [`CLAIM_TABLE_LEN`] zeroed bytes,
    /// 128-byte aligned, not yet visible to another process.
    pub(crate) unsafe fn init(base: *mut u8) {
        // SAFETY: the header line is in bounds and aligned per the caller.
        unsafe { (base as *mut u64).write(CLAIM_MAGIC) };
    }

    /// Attaches to a mapped table of `len` bytes owned by `backing`.
    ///
    /// # Safety
    /// `base` must be valid for reads and writes of `len` bytes, 128-byte
    /// aligned, for as long as `backing` lives, and must not shrink (a
    /// sealed memfd). Its contents may be anything.
    pub unsafe fn attach(
        base: NonNull<u8>,
        len: usize,
        backing: Box<dyn std::any::Any + Send + Sync>,
    ) -> Result<ClaimTable, ClaimError> {
        if len < CLAIM_TABLE_LEN {
            return Err(ClaimError::Corrupt(format!(
                "{len} bytes, need {CLAIM_TABLE_LEN}"
            )));
        }
        // SAFETY: in bounds (len >= one line), aligned; volatile, once:
        // any member may scribble on it.
        let magic = unsafe { (base.as_ptr() as *const u64).read_volatile() };
        if magic != CLAIM_MAGIC {
            return Err(ClaimError::Corrupt(format!("magic {magic:#x}")));
        }
        // SAFETY: the lines follow the header line, inside `len`; a line
        // is two atomics, valid for any bit pattern.
        let lines = unsafe { NonNull::new_unchecked(base.as_ptr().add(LINE) as *mut ClaimLine) };
        Ok(ClaimTable {
            header: base.cast(),
            lines,
            _backing: Backing::External(backing),
        })
    }

    fn line(&self, i: usize) -> &ClaimLine {
        debug_assert!(i < CLAIM_LINES);
        // SAFETY: `i < CLAIM_LINES` (callers index from `line_for`), and
        // the table holds that many lines for as long as `self` lives.
        unsafe { &*self.lines.as_ptr().add(i) }
    }

    /// The line of ring `ring_id`: found, or taken and set to `start` (the
    /// first member to meet the ring). Members race for the lowest free
    /// line, so two that meet a ring at once agree on one.
    ///
    /// # Errors
    /// [`ClaimError::TableFull`], [`ClaimError::Stuck`].
    pub fn line_for(&self, ring_id: u64, start: u64) -> Result<usize, ClaimError> {
        let want = ring_id.wrapping_add(1) & !INITIALISING;
        let mut patience = INIT_PATIENCE;
        loop {
            let mut free = None;
            let mut busy = false;
            for i in 0..CLAIM_LINES {
                // Acquire: pairs with the Release store of `ring` below: a
                // member that finds the line sees its counter set.
                let w = self.line(i).ring.load(Ordering::Acquire);
                if w == want {
                    return Ok(i);
                }
                if w == want | INITIALISING {
                    busy = true;
                } else if w == 0 && free.is_none() {
                    free = Some(i);
                }
            }
            if busy {
                patience -= 1;
                if patience == 0 {
                    return Err(ClaimError::Stuck(ring_id));
                }
                crate::sync::spin_hint();
                #[cfg(not(loom))]
                std::thread::yield_now();
                continue;
            }
            let Some(i) = free else {
                return Err(ClaimError::TableFull);
            };
            let l = self.line(i);
            // Relaxed: the line is published by the Release store below;
            // a loser of this race rescans.
            if l.ring
                .compare_exchange(0, want | INITIALISING, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                l.claim.store(start, Ordering::Relaxed);
                l.start.store(start, Ordering::Relaxed);
                // Release: pairs with the Acquire load in the scan above.
                l.ring.store(want, Ordering::Release);
                return Ok(i);
            }
        }
    }

    /// The orphan generation: moves when a member died holding messages
    /// (the broker bumps it; members then ask for the orphans).
    pub fn orphan_generation(&self) -> u64 {
        // SAFETY: the header line lives as long as `self`.
        let h = unsafe { self.header.as_ref() };
        // Relaxed: a hint to ask the broker, which answers over the socket.
        h.claim.load(Ordering::Relaxed)
    }

    /// Moves the orphan generation (the broker, when a member died
    /// holding messages).
    pub fn bump_orphans(&self) {
        // SAFETY: the header line lives as long as `self`.
        let h = unsafe { self.header.as_ref() };
        // Relaxed: see `orphan_generation`.
        h.claim.fetch_add(1, Ordering::Relaxed);
    }

    /// A member sent a dead letter (counted for `ringbus topics`).
    pub fn count_dead_letter(&self) {
        // SAFETY: the header line lives as long as `self`.
        let h = unsafe { self.header.as_ref() };
        // Relaxed: a count for reports.
        h.start.fetch_add(1, Ordering::Relaxed);
    }

    /// What the members of this group have done, by the table's words
    /// (any member can write them: a report, never a decision): for each
    /// line in use, `(ring_id, claim counter, where it started)`, and the
    /// dead letters sent.
    pub fn report(&self) -> (Vec<(u64, u64, u64)>, u64) {
        let mut lines = Vec::new();
        for i in 0..CLAIM_LINES {
            let l = self.line(i);
            // Acquire: pairs with the Release store in `line_for`: the
            // counter and start of a line found set are its own.
            let w = l.ring.load(Ordering::Acquire);
            if w == 0 || w & INITIALISING != 0 {
                continue;
            }
            // Relaxed: values for a report.
            let (claim, start) = (
                l.claim.load(Ordering::Relaxed),
                l.start.load(Ordering::Relaxed),
            );
            lines.push((w - 1, claim, start));
        }
        // SAFETY: the header line lives as long as `self`.
        let h = unsafe { self.header.as_ref() };
        // Relaxed: a count for reports.
        (lines, h.start.load(Ordering::Relaxed))
    }

    /// The claim counter of line `i` (the next unclaimed sequence).
    pub fn counter(&self, i: usize) -> u64 {
        // Relaxed: a report (`ringbus topics`), or a value only clamped
        // and compared by its reader.
        self.line(i).claim.load(Ordering::Relaxed)
    }

    /// Claims up to `max` consecutive sequences of line `i` below `head`
    /// (what the publisher has completed): `Some((from, to))`, or `None`
    /// when nothing unclaimed is published, with the counter seen.
    pub fn claim(&self, i: usize, head: u64, max: u64) -> Result<(u64, u64), u64> {
        self.claim_with(i, head, max, None, |_, _| {})
    }

    /// [`ClaimTable::claim`], calling `intent(from, to)` before each
    /// attempt: a member publishes the range it is about to claim, so
    /// that the broker can hand it on if the member dies right after.
    /// With `only_from`, claims only a range that starts there (a member
    /// that still holds messages extends its range, never opens a second).
    pub fn claim_with(
        &self,
        i: usize,
        head: u64,
        max: u64,
        only_from: Option<u64>,
        mut intent: impl FnMut(u64, u64),
    ) -> Result<(u64, u64), u64> {
        let l = &self.line(i).claim;
        // Relaxed (load and CAS): the counter hands out numbers only; the
        // messages themselves are published by their slots' stamps, which
        // the reader checks (Acquire) as any reader does, and the gating
        // needs no ordering with it (the claimer's cursor is already at or
        // below the counter it read, see the module docs).
        let mut c = l.load(Ordering::Relaxed);
        loop {
            if c >= head || only_from.is_some_and(|f| f != c) {
                return Err(c);
            }
            let n = (head - c).min(max.max(1));
            intent(c, c + n);
            match l.compare_exchange_weak(c, c + n, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok((c, c + n)),
                Err(v) => {
                    c = v;
                    crate::sync::spin_hint();
                }
            }
        }
    }
}

/// What [`GroupCursor::try_recv_map`] returns for a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claimed<T> {
    /// The caller's wrapping of the message's info.
    pub value: T,
    /// Its sequence.
    pub seq: u64,
    /// How many times it has been delivered, this time included (to this
    /// member, and to a dead one before it for a range taken over).
    pub deliveries: u32,
    /// It has been delivered `max_deliveries` times already
    /// ([`GroupCursor::set_max_deliveries`]): it is not for the caller
    /// to process but to dead-letter (the message is in `buf` all the
    /// same), and then to acknowledge.
    pub dead_letter: bool,
}

/// A group member's state on one ring: the ranges it claimed and has not
/// acknowledged, and its cursor.
pub struct GroupCursor {
    table: Arc<ClaimTable>,
    line: usize,
    ring_id: u64,
    /// The port whose cursor gates the publisher for this member.
    port: Option<Arc<Port>>,
    /// Claimed, not acknowledged, in order; the last one's end is `to`.
    held: VecDeque<(u64, u64)>,
    /// Acknowledged out of order (above the front's start).
    acked: BTreeSet<u64>,
    /// The next sequence to deliver.
    next: u64,
    /// The end of the current claim.
    to: u64,
    /// The cursor while nothing is held.
    idle: u64,
    batch: u64,
    capacity: u64,
    claimed_total: u64,
    acked_total: u64,
    /// Reads a dead member's range through its port (handed over by the
    /// broker), claims nothing.
    orphan: bool,
    /// Deliveries of every message of this cursor before it came here (a
    /// range taken over: the broker's count).
    base: u32,
    /// The last claim attempt found nothing published.
    waited: bool,
    /// Sequences handed back (`nack`), to deliver again first.
    retry: VecDeque<u64>,
    /// Deliveries so far of the sequences handed back.
    counts: std::collections::HashMap<u64, u32>,
    max_deliveries: u32,
}

impl GroupCursor {
    /// Joins ring `ring_id`, read by `consumer` (whose port's cursor from
    /// now on this group cursor stores), in `table`. The first member to
    /// meet the ring sets its counter at the consumer's position.
    ///
    /// # Errors
    /// As [`ClaimTable::line_for`].
    pub fn join(
        table: Arc<ClaimTable>,
        ring_id: u64,
        consumer: &mut Consumer,
        batch: u32,
    ) -> Result<GroupCursor, ClaimError> {
        let start = consumer.next_seq();
        let line = table.line_for(ring_id, start)?;
        let head = consumer.region().head();
        let port = consumer.release_cursor();
        let idle = table.counter(line).min(head);
        let g = GroupCursor {
            table,
            line,
            ring_id,
            port,
            held: VecDeque::new(),
            acked: BTreeSet::new(),
            next: idle,
            to: idle,
            idle,
            batch: u64::from(batch.max(1)),
            capacity: u64::from(consumer.config().capacity),
            claimed_total: 0,
            acked_total: 0,
            orphan: false,
            waited: false,
            base: 0,
            retry: VecDeque::new(),
            counts: Default::default(),
            max_deliveries: u32::MAX,
        };
        // Below the consumer's own start only when other members hold the
        // messages in between, whose cursors gate them: moving ours down
        // to them is conservative (see the module docs).
        g.store_cursor();
        consumer.seek(idle);
        Ok(g)
    }

    /// Takes over a dead member's unacknowledged range of ring `ring_id`:
    /// `consumer` reads through the dead member's port (its cursor at the
    /// oldest unacknowledged message), up to `to`. Claims nothing; done
    /// once everything up to `to` is acknowledged.
    pub fn orphan(
        table: Arc<ClaimTable>,
        ring_id: u64,
        consumer: &mut Consumer,
        to: u64,
    ) -> GroupCursor {
        let from = consumer.next_seq();
        let to = to.max(from);
        let port = consumer.release_cursor();
        let mut held = VecDeque::new();
        if from < to {
            held.push_back((from, to));
        }
        GroupCursor {
            table,
            line: 0,
            ring_id,
            port,
            held,
            acked: BTreeSet::new(),
            next: from,
            to,
            idle: to,
            batch: 1,
            capacity: u64::from(consumer.config().capacity),
            claimed_total: 0,
            acked_total: 0,
            orphan: true,
            waited: false,
            base: 0,
            retry: VecDeque::new(),
            counts: Default::default(),
            max_deliveries: u32::MAX,
        }
    }

    /// Deliveries before this cursor for each of its messages (a range
    /// taken over from a dead member: the broker's count).
    pub fn set_base_deliveries(&mut self, base: u32) {
        self.base = base;
    }

    /// After this many deliveries a message is handed back as
    /// [`Claimed::dead_letter`] instead of delivered again.
    pub fn set_max_deliveries(&mut self, max: u32) {
        self.max_deliveries = max.max(1);
    }

    /// Hands message `seq` back: delivered again (first) by the next
    /// receive, or dead-lettered once delivered `max_deliveries` times.
    ///
    /// # Errors
    /// [`ClaimError::NotHeld`]: not delivered to this member, or
    /// acknowledged, or handed back already.
    pub fn nack(&mut self, seq: u64) -> Result<(), ClaimError> {
        if !self.holds(seq) || self.retry.contains(&seq) {
            return Err(self.not_held(seq));
        }
        *self.counts.entry(seq).or_insert(0) += 1;
        self.retry.push_back(seq);
        Ok(())
    }

    /// Deliveries of `seq` so far.
    fn delivered_times(&self, seq: u64) -> u32 {
        self.base
            .saturating_add(self.counts.get(&seq).copied().unwrap_or(0))
    }

    /// A message handed back, read again.
    #[cold]
    fn retry_one<T>(
        &mut self,
        consumer: &mut Consumer,
        buf: &mut [u8],
        wrap: impl FnOnce(MessageInfo) -> T,
    ) -> Option<Result<Claimed<T>, RecvError>> {
        let seq = self.retry.pop_front()?;
        consumer.seek(seq);
        let r = consumer.try_recv_map(buf, wrap);
        consumer.seek(self.next);
        Some(match r {
            Ok(value) => {
                let before = self.delivered_times(seq);
                Ok(Claimed {
                    value,
                    seq,
                    deliveries: before.saturating_add(1),
                    dead_letter: before >= self.max_deliveries,
                })
            }
            Err(e) => {
                self.retry.push_front(seq);
                Err(e)
            }
        })
    }

    /// The port whose cursor this member's state is stored in (what the
    /// broker reads when the member dies: its cursor and `group_to`).
    pub fn port(&self) -> Option<&Arc<Port>> {
        self.port.as_ref()
    }

    /// Whether this reads a dead member's range ([`GroupCursor::orphan`]).
    pub fn is_orphan(&self) -> bool {
        self.orphan
    }

    /// The ring.
    pub fn ring_id(&self) -> u64 {
        self.ring_id
    }

    /// Messages this member claimed on this ring.
    pub fn claimed_total(&self) -> u64 {
        self.claimed_total
    }

    /// Messages this member acknowledged on this ring.
    pub fn acked_total(&self) -> u64 {
        self.acked_total
    }

    /// Whether this member holds messages here (claimed, not all
    /// acknowledged): a member that leaves then hands them on
    /// ([`Consumer::keep_cursor`]).
    pub fn holds_any(&self) -> bool {
        !self.held.is_empty()
    }

    /// Claimed and not acknowledged (delivered or not).
    pub fn unacked(&self) -> u64 {
        self.held.iter().map(|(a, b)| b - a).sum::<u64>() - self.acked.len() as u64
    }

    /// The cursor: the oldest unacknowledged sequence, or the idle point.
    fn floor(&self) -> u64 {
        self.held.front().map_or(self.idle, |r| r.0)
    }

    #[inline(always)]
    fn store_cursor(&self) {
        if let Some(p) = &self.port {
            // Release: our reads of every acknowledged slot happen before
            // the publisher overwrites it; pairs with the Acquire in
            // Producer::slowest_cursor.
            p.header().pos.store(self.floor(), Ordering::Release);
        }
    }

    /// Claims the next batch; `false` if nothing unclaimed is published.
    fn claim(&mut self, consumer: &mut Consumer) -> bool {
        if self.orphan {
            return false;
        }
        // Poll the line a receive of the next unclaimed message reads
        // (its slot, or the mailbox when caught up), not the ring's head:
        // a waiting member then sees a message with one line transfer,
        // as a plain subscriber does.
        let c = self.table.counter(self.line);
        if !self.held.is_empty() && c != self.to {
            // Others claimed past our range: a second range would leave
            // theirs inside what the broker hands on if this member dies
            // (its port says one range: cursor to `group_to`). A member
            // holds one range (a prefetch limit of `batch`) until it
            // acknowledges; the implicit acknowledgement has, by now.
            return false;
        }
        if c > MAX_SEQ - self.capacity {
            // Garbage (a member wrote it): stamps of sequences this high
            // wrap, so a slot could look ready with an older message.
            return false;
        }
        consumer.seek(c);
        let ended = consumer.ended();
        if !consumer.is_ready() {
            self.waited = true;
            if self.held.is_empty() && c > self.idle {
                // Nothing at or above the counter is published yet.
                self.idle = c;
                self.store_cursor();
                if let Some(p) = &self.port {
                    // Relaxed: as in the intent below; nothing held.
                    p.header().group_to.store(self.idle, Ordering::Relaxed);
                }
            }
            return false;
        }
        // Message `c` is published. After a wait, claim it alone (a
        // ping-pong's message: touching the next slot, which the publisher
        // writes next, would cost it a line transfer); in a stream, the
        // run of complete slots from `c` sizes the batch (the ring's head
        // is a line the publisher writes with every message: reading it
        // per claim slows both). An ended ring's head is final.
        let max = self.batch.min(self.capacity);
        let head = if ended {
            consumer.region().head()
        } else if self.waited {
            c.saturating_add(1)
        } else {
            // Saturating: `c` comes from memory any member can write.
            c.saturating_add(consumer.ready_run(c, max).max(1))
        };
        self.waited = false;
        let (port, idle) = (self.port.as_deref(), self.held.is_empty());
        let mut tried = false;
        // Before the claim, the port says what it is about to hold: with
        // nothing held, its cursor moves up to the claim's start (every
        // sequence below the counter is claimed: by others, who gate it),
        // and `group_to` to its end. A member killed right after the
        // claim leaves the range for the broker to hand on.
        let intent = |from: u64, to: u64| {
            tried = true;
            if let Some(p) = port {
                let h = p.header();
                if idle {
                    // Release: as in `store_cursor`.
                    h.pos.store(from, Ordering::Release);
                }
                // Relaxed: read by the broker once this process is dead.
                h.group_to.store(to, Ordering::Relaxed);
            }
        };
        let only_from = (!idle).then_some(self.to);
        match self
            .table
            .claim_with(self.line, head, max, only_from, intent)
        {
            Ok((from, to)) => {
                let was_empty = self.held.is_empty();
                self.held.push_back((from, to));
                self.next = from;
                self.to = to;
                self.claimed_total += to - from;
                consumer.seek(from);
                if was_empty {
                    self.store_cursor();
                }
                true
            }
            Err(counter) => {
                if !self.held.is_empty() && tried {
                    if let Some(p) = &self.port {
                        // Relaxed: as in the intent; it said more than
                        // this member got.
                        p.header().group_to.store(self.to, Ordering::Relaxed);
                    }
                }
                // Every sequence below min(counter, head) is claimed (by
                // others, who gate it) or not published. The port is
                // written only when that moved, or an attempt wrote it: an
                // idle member's polls write nothing.
                let idle_now = self.idle.max(counter.min(head));
                if self.held.is_empty() && (idle_now != self.idle || tried) {
                    self.idle = idle_now;
                    self.store_cursor();
                    if let Some(p) = &self.port {
                        // Relaxed: as in the intent above; nothing held.
                        p.header().group_to.store(self.idle, Ordering::Relaxed);
                    }
                }
                false
            }
        }
    }

    /// Whether this ring is done for this member: it ended, every message
    /// is claimed, and this member holds none.
    pub fn drained(&self, consumer: &Consumer) -> bool {
        if self.orphan {
            return self.held.is_empty() && self.next >= self.to;
        }
        self.next == self.to
            && self.held.is_empty()
            && consumer.ended()
            && self.table.counter(self.line) >= consumer.region().head()
    }

    /// Receives the next message of this member's claims (claiming a new
    /// batch when the current one is delivered) into `buf`.
    ///
    /// # Errors
    /// As [`Consumer::try_recv`]; [`RecvError::EndOfStream`] once
    /// [`GroupCursor::drained`].
    #[inline]
    pub fn try_recv_map<T>(
        &mut self,
        consumer: &mut Consumer,
        buf: &mut [u8],
        wrap: impl FnOnce(MessageInfo) -> T,
    ) -> Result<Claimed<T>, RecvError> {
        if !self.retry.is_empty() {
            if let Some(r) = self.retry_one(consumer, buf, wrap) {
                return r;
            }
            unreachable!("retry is not empty");
        }
        if self.next == self.to && !self.claim(consumer) {
            if self.drained(consumer) {
                return Err(RecvError::EndOfStream);
            }
            return Err(RecvError::Empty);
        }
        let seq = self.next;
        match consumer.try_recv_map(buf, wrap) {
            Ok(value) => {
                self.next = seq + 1;
                let before = self.base;
                Ok(Claimed {
                    value,
                    seq,
                    deliveries: before.saturating_add(1),
                    dead_letter: before >= self.max_deliveries,
                })
            }
            Err(RecvError::Empty) => Err(RecvError::Empty),
            Err(e @ RecvError::BufferTooSmall { .. }) => Err(e),
            Err(e) => {
                // Lapped (an overwrite ring, or messages nobody gated) or
                // a corrupt slot: the consumer moved on; what it skipped of
                // our claim is gone.
                self.resync(consumer.next_seq());
                Err(e)
            }
        }
    }

    /// The consumer skipped to `to_seq`: the skipped part of the claims is
    /// dropped as if acknowledged (it is lost, and reported as such).
    #[cold]
    fn resync(&mut self, to_seq: u64) {
        let upto = to_seq.min(self.to);
        while let Some(&(a, b)) = self.held.front() {
            if b <= upto {
                self.held.pop_front();
            } else {
                if a < upto {
                    self.held[0].0 = upto;
                }
                break;
            }
        }
        self.acked = self.acked.split_off(&upto);
        self.next = upto.max(self.next).min(self.to);
        if self.held.is_empty() {
            self.idle = self.idle.max(upto);
        }
        self.store_cursor();
    }

    /// Whether `seq` was delivered to this member and not acknowledged.
    pub fn holds(&self, seq: u64) -> bool {
        seq < self.next
            && self.held.iter().any(|&(a, b)| a <= seq && seq < b)
            && !self.acked.contains(&seq)
    }

    /// Acknowledges every message of this ring delivered to this member up
    /// to and including `seq`.
    ///
    /// # Errors
    /// [`ClaimError::NotHeld`]: `seq` was not delivered to this member, or
    /// is acknowledged already.
    #[inline]
    pub fn ack_through(&mut self, seq: u64) -> Result<(), ClaimError> {
        if let Some(&(a, b)) = self.held.front() {
            // The common case: the implicit acknowledgement of the last
            // message delivered, in the one range held.
            if a <= seq
                && seq < b
                && seq < self.next
                && self.acked.is_empty()
                && self.counts.is_empty()
            {
                self.acked_total += seq + 1 - a;
                if seq + 1 == b {
                    self.held.pop_front();
                    if self.held.is_empty() {
                        self.idle = self.idle.max(b);
                    }
                } else {
                    self.held[0].0 = seq + 1;
                }
                self.store_cursor();
                return Ok(());
            }
        }
        if !self.holds(seq) {
            return Err(self.not_held(seq));
        }
        let mut last_end = 0;
        while let Some(&(a, b)) = self.held.front() {
            if a > seq {
                break;
            }
            let upto = b.min(seq + 1);
            let done = self.acked.range(a..upto).count() as u64;
            self.acked_total += upto - a - done;
            if upto == b {
                self.held.pop_front();
                last_end = b;
            } else {
                self.held[0].0 = upto;
                break;
            }
        }
        self.acked = self.acked.split_off(&(seq + 1));
        self.retry.retain(|&r| r > seq);
        self.counts.retain(|&k, _| k > seq);
        if self.held.is_empty() {
            self.idle = self.idle.max(last_end);
        }
        self.settle();
        self.store_cursor();
        Ok(())
    }

    /// Acknowledges message `seq` of this ring alone.
    ///
    /// # Errors
    /// As [`GroupCursor::ack_through`].
    pub fn ack(&mut self, seq: u64) -> Result<(), ClaimError> {
        if self.retry.is_empty()
            && self.acked.is_empty()
            && self.held.front().is_some_and(|r| r.0 == seq)
        {
            return self.ack_through(seq);
        }
        if !self.holds(seq) || self.retry.contains(&seq) {
            return Err(self.not_held(seq));
        }
        self.counts.remove(&seq);
        self.acked.insert(seq);
        self.acked_total += 1;
        self.settle();
        self.store_cursor();
        Ok(())
    }

    /// Moves the front of the held ranges past what is acknowledged.
    fn settle(&mut self) {
        while let Some(&(a, b)) = self.held.front() {
            if !self.acked.remove(&a) {
                break;
            }
            if a + 1 == b {
                self.held.pop_front();
                if self.held.is_empty() {
                    self.idle = self.idle.max(b);
                }
            } else {
                self.held[0].0 = a + 1;
            }
        }
    }

    fn not_held(&self, seq: u64) -> ClaimError {
        ClaimError::NotHeld {
            ring_id: self.ring_id,
            seq,
        }
    }
}

impl std::fmt::Debug for GroupCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCursor")
            .field("ring_id", &self.ring_id)
            .field("held", &self.held)
            .field("next", &self.next)
            .field("to", &self.to)
            .finish()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::ring::{Mode, Producer, RingRegion, Start, TopicConfig};

    fn ring(mode: Mode) -> (Arc<RingRegion>, Producer, Consumer) {
        let config = TopicConfig {
            max_message_size: 16,
            capacity: 8,
            mode,
            max_subscribers: 4,
        };
        let region = RingRegion::heap(&config).unwrap();
        let consumer = Consumer::new(region.clone(), Start::Latest).unwrap();
        let producer = Producer::new(region.clone()).unwrap();
        (region, producer, consumer)
    }

    /// What a hostile member can write into the table (any counter, any
    /// line identity) makes other members see nothing, or an error: never
    /// a panic, an overflow or an endless wait.
    #[test]
    fn garbage_in_the_claim_table_is_never_a_panic_or_a_hang() {
        for mode in [Mode::Backpressure, Mode::Overwrite] {
            for garbage in [u64::MAX, u64::MAX - 1, 1 << 63, 1_000_000, 3] {
                let (region, mut p, mut c) = ring(mode);
                let table = ClaimTable::heap();
                let mut g = GroupCursor::join(table.clone(), region.ring_id(), &mut c, 4).unwrap();
                for i in 0..5u64 {
                    p.try_publish(&i.to_le_bytes(), i).unwrap();
                }
                table.line(g.line).claim.store(garbage, Ordering::Relaxed);
                let mut buf = [0u8; 16];
                for _ in 0..20 {
                    match g.try_recv_map(&mut c, &mut buf, |i| i) {
                        Ok(m) => {
                            // Only a counter below the head gives messages,
                            // each one what its slot holds.
                            assert!(garbage < 5, "{garbage}: delivered {}", m.seq);
                            assert_eq!(buf[..8], m.seq.to_le_bytes());
                            g.ack_through(m.seq).unwrap();
                        }
                        Err(RecvError::Empty | RecvError::Lagged { .. }) => {}
                        Err(e) => panic!("{garbage}: {e}"),
                    }
                }
            }
        }
        // A line left half set up: the others give up on it.
        let table = ClaimTable::heap();
        table
            .line(0)
            .ring
            .store(8 | INITIALISING, Ordering::Relaxed);
        assert_eq!(table.line_for(7, 0), Err(ClaimError::Stuck(7)));
        // Every line taken by garbage: a full table, not a hang.
        for i in 0..CLAIM_LINES {
            table
                .line(i)
                .ring
                .store(0xdead_0000 + i as u64, Ordering::Relaxed);
        }
        assert_eq!(table.line_for(1, 0), Err(ClaimError::TableFull));
    }

    /// Acknowledgements in and out of order; what is not held is refused.
    #[test]
    fn acks_move_the_cursor_to_the_oldest_unacknowledged_message() {
        let (region, mut p, mut c) = ring(Mode::Backpressure);
        let table = ClaimTable::heap();
        let mut g = GroupCursor::join(table, region.ring_id(), &mut c, 8).unwrap();
        let port = g.port.clone().unwrap();
        for i in 0..6u64 {
            p.try_publish(&i.to_le_bytes(), i).unwrap();
        }
        let mut buf = [0u8; 16];
        let seqs: Vec<u64> = (0..6)
            .map(|_| g.try_recv_map(&mut c, &mut buf, |i| i).unwrap().seq)
            .collect();
        assert_eq!(seqs, [0, 1, 2, 3, 4, 5]);
        assert_eq!(port.pos(), 0);
        assert_eq!(port.header().group_to.load(Ordering::Relaxed), 6);
        g.ack(2).unwrap();
        g.ack(1).unwrap();
        assert_eq!(port.pos(), 0);
        assert_eq!(
            g.ack(1),
            Err(ClaimError::NotHeld {
                ring_id: region.ring_id(),
                seq: 1
            })
        );
        g.ack(0).unwrap();
        assert_eq!(port.pos(), 3);
        g.nack(4).unwrap();
        assert!(g.nack(4).is_err());
        g.ack_through(5).unwrap();
        assert_eq!(port.pos(), 6);
        assert_eq!(g.unacked(), 0);
        assert!(g.ack(9).is_err());
    }
}
