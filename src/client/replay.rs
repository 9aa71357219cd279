//! Replay that merges into live: a subscriber of a durable topic starting
//! at a sequence number or a time its rings no longer hold reads the
//! topic's journal first, then switches to the live rings with no gap and
//! no duplicate (Aeron's ReplayMerge).
//!
//! Two phases, both driven from the subscriber's cold receive path:
//!
//! 1. **Journal.** The subscriber holds no cursor yet (so it holds back no
//!    publisher however long the replay takes): it reads each ring's
//!    journal, through read-only descriptors of its segment files from the
//!    broker, oldest record first across rings (by the time each was
//!    journaled). At the end of what it sees it looks again (the journal
//!    grows while it reads); once a look finds nothing new it joins the
//!    live rings, each at the oldest message the ring still holds.
//! 2. **Merge.** Per ring, the journal and the ring overlap or the ring
//!    starts later: a ring joined at or before the journal's next record
//!    skips what the journal already delivered; a ring that starts later
//!    (what was journaled after the last look) has the gap read from the
//!    journal first. Every sequence number below the ring's oldest message
//!    is in the journal, since the recorder's cursor held the ring until
//!    it had appended it; one not yet visible in the file (buffered in the
//!    recorder) is waited for. The subscriber's cursor holds the ring
//!    meanwhile: at most one ring's worth, briefly. A gap the journal
//!    never fills (lost before it was journaled: the recorder counted it)
//!    is reported as `Lagged`, never skipped silently.

use std::fs::File;
use std::time::{Duration, Instant};

use super::{unexpected, Client, ClientError};
use crate::control::frame::{ErrorCode, Reply, Request};
use crate::control::ConnectionError;
use crate::journal::{JournalReader, RecordMeta};
use crate::ring::{Filter, MessageInfo, RecvError, Start, TopicConfig};

/// How long the merge waits for the journal to show a gap's records
/// before it reports them lost (the recorder flushes within its idle
/// interval; this is for a recorder that is gone).
const MERGE_PATIENCE: Duration = Duration::from_secs(2);
/// How often a merge waiting for the journal looks at it again (each look
/// asks the broker for new segments).
const MERGE_LOOK_EVERY: Duration = Duration::from_micros(200);
/// How long the merge goes on looking at the journal of a ring that ended
/// and was drained before the subscriber joined: the recorder writes what
/// it took from a ring out within its idle interval (a few ms).
const FINAL_LOOK: Duration = Duration::from_millis(100);
/// The largest record accepted while the topic's config is unknown (a
/// journal kept from an earlier config): its segments bound it.
const UNKNOWN_MAX_RECORD: u32 = u32::MAX;

/// One ring's journal being read.
struct RingJournal {
    ring_id: u64,
    reader: JournalReader,
    /// The next sequence number to deliver (unknown for a start at a time
    /// until the first record).
    next: Option<u64>,
    /// The next record's fields and payload length, if one is visible.
    head: Option<(RecordMeta, usize)>,
    /// Merge: where the live ring was joined; the journal delivers below it.
    live_at: Option<u64>,
    /// Where the ring ends, if its publisher has left and the broker still
    /// holds it (its rest is journaled soon: the merge waits for it).
    end: Option<u64>,
    /// Merge, for a ring neither live nor held: until when to look at its
    /// journal again (for what was journaled after the last look).
    final_look: Option<Instant>,
    /// The reader failed (an I/O error): what it did not deliver is
    /// reported lost at the merge.
    failed: bool,
}

/// What the journal has next.
pub(super) enum Step {
    /// A message of ring `ring_id`, in the caller's buffer (its
    /// delivery is made by the caller: its topic is the
    /// subscription's).
    Message(u64, MessageInfo),
    /// An error to return (a loss, a too small buffer, a predicate's panic),
    /// with the ring it concerns.
    Error(u64, RecvError),
    /// Nothing visible now; the replay goes on.
    Wait,
    /// Every ring's journal is read to its end (journal phase), or every
    /// gap filled (merge).
    Done,
}

/// A subscriber's replay (see the module doc).
pub(super) struct Replay {
    topic: String,
    start: Start,
    /// The topic's config, once known.
    pub config: Option<TopicConfig>,
    max_record: u32,
    rings: Vec<RingJournal>,
    max_ring_id: u64,
    /// The rings journaled when the subscription was made are known
    /// (later ones are read from their first message).
    listed: bool,
    /// The live rings are joined: only their gaps are read.
    pub merging: bool,
    /// Messages reported lost by the replay.
    pub lagged: u64,
    /// Messages the subscription's filters turned down during the replay.
    pub filtered: u64,
    /// Since when the merge has found nothing to deliver.
    waiting_since: Option<Instant>,
    /// When the merge last looked at the journal.
    looked_at: Option<Instant>,
}

impl Replay {
    /// The replay of `topic` from `start` (a sequence number or a time),
    /// or `None` for a sequence start on a topic without a journal (read
    /// from its rings as usual).
    ///
    /// # Errors
    /// A start at a time on a topic without a journal; the broker's
    /// refusals (the right to subscribe).
    pub fn open(client: &Client, topic: &str, start: Start) -> Result<Option<Replay>, ClientError> {
        let mut r = Replay {
            topic: topic.to_owned(),
            start,
            config: None,
            max_record: UNKNOWN_MAX_RECORD,
            rings: Vec::new(),
            max_ring_id: 0,
            listed: false,
            merging: false,
            lagged: 0,
            filtered: 0,
            waiting_since: None,
            looked_at: None,
        };
        match r.add_rings(client) {
            Ok(_) => Ok(Some(r)),
            Err(ClientError::Control(ConnectionError::Refused {
                code: ErrorCode::NotFound,
                ..
            })) if matches!(start, Start::Sequence(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Takes up the rings whose journals appeared since the last look.
    /// Returns whether there were any.
    fn add_rings(&mut self, client: &Client) -> Result<bool, ClientError> {
        self.list_rings(client, self.max_ring_id, &[])
    }

    /// Lists the journaled rings above `after`: takes up those new to it,
    /// notes where those whose publisher left end. Returns whether any
    /// was new.
    fn list_rings(
        &mut self,
        client: &Client,
        after: u64,
        live: &[u64],
    ) -> Result<bool, ClientError> {
        let mut added = false;
        let mut after = after;
        loop {
            let (reply, _) = client.call(&Request::JournalRings {
                topic: self.topic.clone(),
                after,
            })?;
            let Reply::JournalRings {
                config,
                rings,
                more,
            } = reply
            else {
                return Err(unexpected(&reply));
            };
            if let Some(c) = config {
                self.config = Some(c);
                self.max_record = c.max_message_size;
            }
            for (ring_id, end) in rings {
                if live.contains(&ring_id) {
                    continue;
                }
                if let Some(r) = self.rings.iter_mut().find(|r| r.ring_id == ring_id) {
                    r.end = end;
                    continue;
                }
                self.max_ring_id = self.max_ring_id.max(ring_id);
                let mut ring = self.open_ring(client, ring_id, !self.listed)?;
                ring.end = end;
                self.rings.push(ring);
                added = true;
            }
            match more {
                true => after = self.rings.iter().map(|r| r.ring_id).max().unwrap_or(after),
                false => {
                    self.listed = true;
                    return Ok(added);
                }
            }
        }
    }

    /// Opens ring `ring_id`'s journal where the start says if the ring
    /// `existed` when the subscription was made, else from its first
    /// message (as a ring that appears later is read live).
    fn open_ring(
        &self,
        client: &Client,
        ring_id: u64,
        existed: bool,
    ) -> Result<RingJournal, ClientError> {
        let from = match self.start {
            Start::Sequence(s) if existed => s,
            _ => 0,
        };
        let segments = match segments(client, &self.topic, ring_id, from) {
            Ok(s) => s,
            // An ended ring the broker still holds and nothing of which
            // is journaled yet: its journal comes.
            Err(ClientError::Control(ConnectionError::Refused {
                code: ErrorCode::NotFound,
                ..
            })) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut reader = JournalReader::from_segments(segments, self.max_record);
        let seek = match self.start {
            Start::Time(ns) => reader.seek_time(ns),
            _ => reader.seek_seq(from),
        };
        let mut r = RingJournal {
            ring_id,
            reader,
            next: match self.start {
                Start::Sequence(_) => Some(from),
                _ => None,
            },
            head: None,
            live_at: None,
            end: None,
            final_look: None,
            failed: false,
        };
        if let Err(e) = seek {
            r.fail(&self.topic, &e);
        }
        r.peek(&self.topic);
        Ok(r)
    }

    /// Looks again at every ring's journal (records appended, segments
    /// added, rings whose journals appeared). Returns whether anything
    /// new is visible.
    fn top_up(&mut self, client: &Client) -> Result<bool, ClientError> {
        for r in &mut self.rings {
            if r.failed || r.head.is_some() || (self.merging && !r.gap_left()) {
                continue;
            }
            if let Err(e) = r.reader.refresh() {
                r.fail(&self.topic, &e);
                continue;
            }
            let from = r.reader.last_base().unwrap_or(0).saturating_add(1);
            match segments(client, &self.topic, r.ring_id, from) {
                Ok(more) => r.reader.add_segments(more),
                // Its journal is gone (retention of a whole ring: never
                // while it is recorded).
                Err(ClientError::Control(ConnectionError::Refused {
                    code: ErrorCode::NotFound,
                    ..
                })) => {}
                Err(e) => return Err(e),
            }
            r.peek(&self.topic);
        }
        let added = if self.merging {
            false
        } else {
            self.add_rings(client)?
        };
        Ok(added || self.rings.iter().any(|r| r.head.is_some()))
    }

    /// The next step of the replay: the oldest visible record (by
    /// journal time) of any ring, into `buf`. Looks again (`top_up`) when
    /// nothing is visible.
    #[inline(always)]
    pub fn step(
        &mut self,
        client: &Client,
        buf: &mut [u8],
        filter: Option<&mut Filter>,
    ) -> Result<Step, ClientError> {
        let step = self.take(buf, filter);
        if !matches!(step, Step::Done) {
            self.waiting_since = None;
            return Ok(step);
        }
        if self.merging && !self.rings.iter().any(RingJournal::gap_left) {
            return Ok(Step::Done);
        }
        let now = Instant::now();
        if self.merging
            && self
                .looked_at
                .is_some_and(|t| now.duration_since(t) < MERGE_LOOK_EVERY)
        {
            return Ok(Step::Wait);
        }
        self.looked_at = Some(now);
        if self.top_up(client)? {
            return Ok(Step::Wait);
        }
        if !self.merging {
            return Ok(Step::Done);
        }
        // Merge: gaps are left that the journal does not show yet.
        let since = *self.waiting_since.get_or_insert(now);
        if now.duration_since(since) < MERGE_PATIENCE {
            return Ok(Step::Wait);
        }
        Ok(self.give_up_gaps())
    }

    /// Takes the next record of any ring, without looking again.
    #[inline(always)]
    fn take(&mut self, buf: &mut [u8], mut filter: Option<&mut Filter>) -> Step {
        loop {
            // The ring whose next record was journaled first.
            let Some(i) = (0..self.rings.len())
                .filter(|&i| self.rings[i].head.is_some())
                .min_by_key(|&i| self.rings[i].head.map(|(m, _)| (m.recorded_ns, m.seq)))
            else {
                return Step::Done;
            };
            let topic = &self.topic;
            let r = &mut self.rings[i];
            let (meta, len) = r.head.expect("chosen for its head");
            // Merge: the live ring delivers from `live_at` on.
            let live = r.live_at.unwrap_or(u64::MAX);
            match r.next {
                // A sequence start older than the journal (retention), or
                // a hole the recorder counted as lost.
                Some(next) if meta.seq.min(live) > next => {
                    let upto = meta.seq.min(live);
                    r.next = Some(upto);
                    let missed = upto - next;
                    self.lagged += missed;
                    return Step::Error(r.ring_id, RecvError::Lagged { missed });
                }
                _ if meta.seq >= live => {
                    // The live ring has it: this ring's gap is filled.
                    r.head = None;
                    r.next = Some(live);
                    continue;
                }
                // Not after what was delivered (never written so): skip.
                Some(next) if meta.seq < next => {
                    let _ = r.reader.next_record();
                    r.peek(topic);
                    continue;
                }
                _ => {}
            }
            if len > buf.len() {
                return Step::Error(r.ring_id, RecvError::BufferTooSmall { needed: len });
            }
            let info = MessageInfo {
                seq: meta.seq,
                tag: meta.tag,
                timestamp: meta.timestamp_ns,
                len,
            };
            let verdict = match r.reader.next_payload() {
                Ok(Some(payload)) => {
                    buf[..len].copy_from_slice(payload);
                    match filter.as_deref_mut() {
                        Some(f) if !f.keeps_tag(meta.tag) => Some(false),
                        Some(f) => crate::ring::judge(f, &info, &buf[..len]),
                        None => Some(true),
                    }
                }
                // Peeked a moment ago from memory: cannot fail.
                Ok(None) | Err(_) => {
                    r.head = None;
                    continue;
                }
            };
            r.next = Some(meta.seq + 1);
            r.peek(topic);
            let ring_id = r.ring_id;
            match verdict {
                Some(true) => return Step::Message(ring_id, info),
                Some(false) => self.filtered += 1,
                None => return Step::Error(ring_id, RecvError::FilterPanicked { seq: meta.seq }),
            }
        }
    }

    /// Reports the gaps the journal did not fill within
    /// [`MERGE_PATIENCE`] as lost, one ring at a time.
    fn give_up_gaps(&mut self) -> Step {
        for r in &mut self.rings {
            if !r.gap_left() {
                continue;
            }
            let (next, live) = (r.next.unwrap_or(0), r.live_at.unwrap_or(0));
            r.next = r.live_at;
            let missed = live - next;
            self.lagged += missed;
            eprintln!(
                "ringbus: replay of topic {:?}: messages {next} to {} of ring {} are neither in its journal nor in the ring",
                self.topic,
                live - 1,
                r.ring_id
            );
            return Step::Error(r.ring_id, RecvError::Lagged { missed });
        }
        Step::Done
    }

    /// The next sequence number ring `ring_id`'s journal has for this
    /// subscriber (the first the live ring should deliver, unless the
    /// journal fills a gap below it), or `None` if the ring has no journal
    /// (nothing of it was journaled yet). A ring whose journal appeared
    /// since the last look (a newer publisher) is opened. For a start at a
    /// time on a ring nothing was read of yet: its first record at or
    /// after the time, else the one after its last.
    pub fn journal_next(
        &mut self,
        client: &Client,
        ring_id: u64,
    ) -> Result<Option<u64>, ClientError> {
        if !self.rings.iter().any(|r| r.ring_id == ring_id) {
            match self.open_ring(client, ring_id, false) {
                Ok(r) => self.rings.push(r),
                Err(ClientError::Control(ConnectionError::Refused {
                    code: ErrorCode::NotFound,
                    ..
                })) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        let r = self
            .rings
            .iter_mut()
            .find(|r| r.ring_id == ring_id)
            .expect("found or added above");
        if r.next.is_none() {
            r.next = Some(match r.head {
                Some((meta, _)) => meta.seq,
                None => r.reader.last_seen().map_or(0, |s| s + 1),
            });
        }
        Ok(r.next)
    }

    /// The live ring `ring_id` delivers from `live_at` on: the journal
    /// fills what lies below it, from its next sequence number.
    pub fn set_live(&mut self, ring_id: u64, live_at: u64) {
        let topic = self.topic.clone();
        let Some(r) = self.rings.iter_mut().find(|r| r.ring_id == ring_id) else {
            return;
        };
        r.live_at = Some(live_at);
        if r.failed {
            r.head = None;
        } else if r.head.is_none() {
            r.peek(&topic);
        }
    }

    /// Enters the merge, once the live rings are joined (`set_live`):
    /// learns where the rings whose publishers left end. A ring the broker
    /// still holds, but not for new subscribers, is read from the journal
    /// up to its end; one it no longer holds (drained: journaled, or gone
    /// with /dev/shm) gets one more look.
    ///
    /// # Errors
    /// The broker's, listing the rings.
    pub fn start_merge(&mut self, client: &Client, live: &[u64]) -> Result<(), ClientError> {
        self.merging = true;
        self.list_rings(client, 0, live)?;
        self.merging = true;
        for r in &mut self.rings {
            if r.live_at.is_some() {
                continue;
            }
            if r.next.is_none() {
                r.next = Some(match r.head {
                    Some((meta, _)) => meta.seq,
                    None => r.reader.last_seen().map_or(0, |s| s + 1),
                });
            }
            match r.end {
                Some(end) => r.live_at = Some(end),
                None => r.final_look = Some(Instant::now() + FINAL_LOOK),
            }
        }
        Ok(())
    }
}

impl RingJournal {
    /// Looks at the next record.
    fn peek(&mut self, topic: &str) {
        match self.reader.peek() {
            Ok(h) => self.head = h,
            Err(e) => self.fail(topic, &e),
        }
    }

    fn fail(&mut self, topic: &str, e: &dyn std::fmt::Display) {
        eprintln!(
            "ringbus: replay of topic {topic:?}: reading the journal of ring {}: {e}",
            self.ring_id
        );
        self.failed = true;
        self.head = None;
    }

    /// Merge: whether messages below the live ring's start are still to
    /// come from the journal.
    fn gap_left(&self) -> bool {
        if self.final_look.is_some_and(|t| Instant::now() < t) {
            return true;
        }
        match (self.next, self.live_at) {
            (Some(n), Some(l)) => n < l,
            (None, Some(l)) => l > 0,
            _ => false,
        }
    }
}

/// The descriptors of ring `ring_id`'s journal segments from the one that
/// may hold `from` on, every page.
fn segments(
    client: &Client,
    topic: &str,
    ring_id: u64,
    from: u64,
) -> Result<Vec<(u64, File)>, ClientError> {
    let mut out: Vec<(u64, File)> = Vec::new();
    let mut from = from;
    loop {
        let (reply, fds) = client.call(&Request::JournalSegments {
            topic: topic.to_owned(),
            ring_id,
            from_seq: from,
        })?;
        let Reply::JournalSegments { bases, more } = reply else {
            return Err(unexpected(&reply));
        };
        if fds.len() != bases.len() {
            return Err(ClientError::Control(ConnectionError::Unexpected(
                "journal segments without their descriptors".into(),
            )));
        }
        let last = bases.last().copied();
        for (base, fd) in bases.into_iter().zip(fds) {
            if out.last().map_or(true, |(b, _)| base > *b) {
                out.push((base, File::from(fd)));
            }
        }
        match last {
            // Each page starts with the last one's last segment.
            Some(l) if more && l.checked_add(1).is_some_and(|n| n > from) => from = l + 1,
            _ => return Ok(out),
        }
    }
}
