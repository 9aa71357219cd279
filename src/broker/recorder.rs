//! The recorder of durable topics: a thread of the broker process per
//! durable topic, subscribed to it like any client (from the earliest
//! message, on back-pressure rings), that appends every message to its
//! ring's [journal](crate::journal).
//!
//! A thread of the broker rather than a process of its own: it needs no
//! supervision protocol (it lives and dies with the broker, and a restarted
//! broker resumes every journal where it ends), and it is still only a
//! client on the data path, so a slow disk holds back the durable topic's
//! publishers by at most one ring (its cursor) and never the broker's poll
//! loop or any other topic.
//!
//! Layout: `JOURNAL_DIR/TOPIC/RING_ID/` per ring (ring ids never repeat,
//! also across brokers, so a ring's journal is never confused with an
//! earlier one's). On restart the recorder subscribes from the earliest
//! message each ring still holds and skips what its journal already has;
//! a message the ring no longer holds and the journal never got (a crash
//! of the broker between receiving it and writing it out, and the
//! publisher a ring ahead since) is counted as lost, never silently.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::{Client, SubscribeOptions};
use crate::journal::record::record_size;
use crate::journal::{realtime_ns, Journal, JournalError, JournalOptions, RecordMeta};
use crate::ring::{MessageInfo, RecvError, Start};
use crate::wait::WaitStrategy;

/// How often a recorder with nothing to write checks for stop and forces
/// out records per its fsync interval.
const IDLE: Duration = Duration::from_millis(5);
/// The longest a stopping recorder goes on draining its rings (the
/// broker waits 5 s for it).
const DRAIN: Duration = Duration::from_secs(1);
/// How often an idle recorder applies its journals' age limits.
const RETAIN_EVERY: Duration = Duration::from_secs(1);

/// What a recorder counted (shared with the broker, for `topics`).
#[derive(Debug, Default)]
pub struct RecorderCounters {
    /// Messages appended.
    pub recorded: AtomicU64,
    /// Messages the journal will never have (see the module doc).
    pub lost: AtomicU64,
    /// Failed writes (a full disk, a directory it may not write): each
    /// batch is retried until written or the broker stops.
    pub errors: AtomicU64,
    /// Bytes of every journal of the topic (segment files, headers
    /// included), as of the last batch written.
    pub bytes: AtomicU64,
    /// Segment files of every journal of the topic.
    pub segments: AtomicU64,
    /// Damaged stretches in the middle of segments that recovery found
    /// (readers step over them).
    pub corrupt: AtomicU64,
    /// Segment files that recovery set aside (`NAME.damaged`): a header
    /// that is not one of ours.
    pub damaged_segments: AtomicU64,
}

impl RecorderCounters {
    /// Their values now, as `ListTopics` reports them.
    pub fn snapshot(&self) -> crate::control::JournalCounters {
        // Relaxed: independent counters, read for display.
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        crate::control::JournalCounters {
            recorded: get(&self.recorded),
            lost: get(&self.lost),
            errors: get(&self.errors),
            bytes: get(&self.bytes),
            segments: get(&self.segments),
            corrupt: get(&self.corrupt),
            damaged_segments: get(&self.damaged_segments),
        }
    }
}

/// A running recorder.
pub struct Recorder {
    topic: String,
    stop: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
    counters: Arc<RecorderCounters>,
    thread: Option<JoinHandle<()>>,
}

impl Recorder {
    /// Starts recording `topic` into `dir/TOPIC/`, as a client of the
    /// broker at `socket` over `sock` (the broker serves the other end of
    /// the pair, so the recorder is its first client on the topic).
    /// `hand_over`: on stop, leave the subscription's ports to the next
    /// broker's recorder instead of giving them up (there is a keeper to
    /// hold them).
    pub fn start(
        sock: OwnedFd,
        socket: PathBuf,
        topic: String,
        dir: PathBuf,
        options: JournalOptions,
        hand_over: bool,
    ) -> std::io::Result<Recorder> {
        let stop = Arc::new(AtomicBool::new(false));
        let ready = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(RecorderCounters::default());
        let thread = {
            let (stop, ready, counters, topic) =
                (stop.clone(), ready.clone(), counters.clone(), topic.clone());
            std::thread::Builder::new()
                .name(format!("ringbus-rec-{topic}"))
                .spawn(move || {
                    let mut r = Run {
                        topic,
                        dir,
                        options,
                        journals: Vec::new(),
                        counters,
                        hand_over,
                        last_retain: Instant::now(),
                    };
                    r.run(sock, &socket, &ready, &stop);
                })?
        };
        Ok(Recorder {
            topic,
            stop,
            ready,
            counters,
            thread: Some(thread),
        })
    }

    /// The topic recorded.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Its counters.
    pub fn counters(&self) -> &Arc<RecorderCounters> {
        &self.counters
    }

    /// Asks it to stop: it syncs its journals, drops its subscription (a
    /// request the broker must still answer) and ends.
    pub fn signal_stop(&self) {
        // Relaxed: a stop flag; `is_finished` and the join synchronize.
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Whether it holds its cursors: publishers of its topic may go.
    pub fn is_ready(&self) -> bool {
        // Acquire: pairs with the Release store in `Run::run` (nothing
        // else is published through it, but it orders the broker's reads
        // after the subscription's requests were answered).
        self.ready.load(Ordering::Acquire)
    }

    /// Whether it has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().map_or(true, |t| t.is_finished())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Relaxed: a stop flag; the join is the synchronization.
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A batch is cut once its records take this many bytes: large enough that
/// a `write` carries many small messages, small enough that the publisher
/// refills the ring while it is written (the cursor passes a batch only
/// once it is in the file).
const BATCH_BYTES: usize = 256 << 10;
/// A recorder that finds its rings empty right after a batch naps this
/// long, up to [`NAPS`] times, before it blocks (woken by the publisher):
/// a publisher that streams then fills a batch meanwhile, and wakes
/// nobody. At most a tenth of a 4096-message ring of 64-byte messages
/// at 5 M/s arrives in one nap, so the publisher is not held back.
const NAP: Duration = Duration::from_micros(50);
/// See [`NAP`]: a fifth of a millisecond of naps.
const NAPS: u32 = 4;
/// Before its first nap, a recorder that finds its rings empty right after
/// a batch polls them again for this long: a streaming publisher waiting
/// for the room the batch just released refills the ring within
/// microseconds, and a nap (a sleep, 50 µs of timer slack on top) left
/// the recorder, the journal's bottleneck, off its CPU a tenth of the
/// time (DESIGN.md, "Durable topics: the journal and its recorder").
/// Costs a burst of traffic this much CPU after its last message.
const SPIN: Duration = Duration::from_micros(50);
/// How long a recorder waits before retrying a journal that failed (a
/// full disk, a directory it may not write).
const RETRY: Duration = Duration::from_millis(100);

/// One ring's journal.
struct Ring {
    id: u64,
    journal: Journal,
    /// The last record counted in `recorded` (a batch's records count
    /// once it is written, and also those a failed write left whole in
    /// the file, which the retry then skips).
    counted: Option<u64>,
}

struct Run {
    topic: String,
    dir: PathBuf,
    options: JournalOptions,
    /// By ring id (a topic has a few rings: a linear search per batch).
    journals: Vec<Ring>,
    counters: Arc<RecorderCounters>,
    hand_over: bool,
    last_retain: Instant,
}

fn warn(topic: &str, what: impl std::fmt::Display) {
    eprintln!("ringbus: journal of topic {topic:?}: {what}");
}

/// What staging one batch came to.
#[derive(Default)]
struct Staged {
    /// Index in `Run::journals` of the batch's ring's journal.
    journal: Option<usize>,
    /// Records staged.
    records: u64,
    /// Their bytes on disk.
    bytes: usize,
    /// Messages the journal already held (a restart).
    skipped: u64,
    /// Why the batch stopped short: it is given back to the ring.
    failed: Option<JournalError>,
}

impl Run {
    fn run(&mut self, sock: OwnedFd, socket: &Path, ready: &AtomicBool, stop: &AtomicBool) {
        let client = match Client::over(sock, socket) {
            Ok(c) => c,
            Err(e) => return warn(&self.topic, format_args!("connecting: {e}")),
        };
        let mut subscriber = loop {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let opened = client.subscriber(
                &self.topic,
                SubscribeOptions {
                    start: Start::Earliest,
                    wait: WaitStrategy::Block,
                },
            );
            match opened {
                Ok(s) => break s,
                Err(e) => {
                    warn(&self.topic, format_args!("subscribing: {e}; retrying"));
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        // Release: see `Recorder::is_ready`.
        ready.store(true, Ordering::Release);
        // Once asked to stop, it drains what its rings hold (for at most
        // DRAIN): a broker stopped after its publishers finished leaves a
        // whole journal.
        let mut stopping: Option<Instant> = None;
        // Naps taken since the last batch, and when the first poll after
        // it found nothing (the start of the spin before the naps).
        let mut naps = NAPS;
        let mut last_batch: Option<Instant> = None;
        loop {
            if stop.load(Ordering::Relaxed) {
                let since = *stopping.get_or_insert_with(Instant::now);
                if since.elapsed() >= DRAIN {
                    break;
                }
            }
            // One clock read per batch: its records share the time.
            let now_ns = realtime_ns();
            let mut staged = Staged::default();
            // In place: the slots stay held, so the cursor does not pass
            // a message (and its publisher cannot reuse the slot) until it
            // is written (and, with `fsync = "always"`, on disk): a broker
            // killed meanwhile leaves it in the ring for the next
            // recorder.
            // (Received in the match: the batch borrows the subscriber
            // only within it.)
            let idle = match subscriber.try_recv_ref_batch(|ring_id, bytes, info| {
                self.stage(ring_id, bytes, info, now_ns, &mut staged)
            }) {
                Ok((_, batch)) => {
                    let failed = match staged.failed.take() {
                        Some(e) => Some(e),
                        None => staged
                            .journal
                            .and_then(|i| self.journals[i].journal.commit().err()),
                    };
                    let Some(e) = failed else {
                        drop(batch);
                        self.counted(&staged);
                        naps = 0;
                        last_batch = None;
                        continue;
                    };
                    // Nothing of the batch is released: it is retried
                    // from the ring (what the journal holds by then is
                    // skipped), and meanwhile the ring holds the
                    // publisher back.
                    let held = batch.len();
                    batch.rewind();
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    if stopping.is_some() {
                        warn(&self.topic, format_args!("{e}; stopping"));
                        if !self.hand_over {
                            // No keeper holds the ring for the next
                            // broker: the batch is lost (and what follows
                            // it, which the next broker counts).
                            self.counters.lost.fetch_add(held, Ordering::Relaxed);
                        }
                        break;
                    }
                    warn(&self.topic, format_args!("{e}; retrying"));
                    std::thread::sleep(RETRY);
                    false
                }
                Err(RecvError::Empty) if stopping.is_some() => break,
                Err(RecvError::Empty) => true,
                Err(e) => {
                    if self.trouble(e) {
                        break;
                    }
                    false
                }
            };
            if idle {
                self.tick();
                if naps == 0 {
                    // The clock is read once per empty poll.
                    let since = *last_batch.get_or_insert_with(Instant::now);
                    if since.elapsed() < SPIN {
                        std::hint::spin_loop();
                        continue;
                    }
                }
                if naps < NAPS {
                    // Streaming: let messages gather rather than have the
                    // publisher wake us (a futex call) for each few.
                    naps += 1;
                    std::thread::sleep(NAP);
                    continue;
                }
                match subscriber.wait_ready(Some(Instant::now() + IDLE)) {
                    Ok(()) | Err(RecvError::Timeout) => {}
                    Err(e) => {
                        if self.trouble(e) {
                            break;
                        }
                    }
                }
            }
        }
        for r in &mut self.journals {
            if let Err(e) = r.journal.sync() {
                warn(&self.topic, e);
            }
        }
        self.publish_sizes();
        if self.hand_over {
            // Not detached: the ports stay with the keeper, holding back
            // the publishers, until the next broker's recorder takes them
            // (their mappings go with this process).
            std::mem::forget(subscriber);
            std::mem::forget(client);
        }
    }

    /// A receive that found no message: counts and says what happened;
    /// whether the recorder must end.
    fn trouble(&mut self, e: RecvError) -> bool {
        match e {
            RecvError::Timeout | RecvError::Empty | RecvError::EndOfStream => self.tick(),
            RecvError::Lagged { missed } => {
                self.counters.lost.fetch_add(missed, Ordering::Relaxed);
                warn(
                    &self.topic,
                    format_args!("{missed} messages lost before they were recorded"),
                );
            }
            RecvError::ZeroCopyUnsupported => {
                // Rings made under another config before the topic was
                // declared durable (the broker keeps a live config).
                warn(
                    &self.topic,
                    "its rings are overwrite rings (made before it was declared durable): not recorded",
                );
                return true;
            }
            e => {
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                warn(&self.topic, e);
            }
        }
        false
    }

    /// Stages one message of a batch; whether to take another.
    fn stage(
        &mut self,
        ring_id: u64,
        payload: &[u8],
        info: MessageInfo,
        now_ns: u64,
        staged: &mut Staged,
    ) -> bool {
        let i = match staged.journal {
            Some(i) => i,
            // The batch's first message: after a failed write, what the
            // journal holds is known only once it has looked again.
            None => match self
                .journal(ring_id)
                .and_then(|i| self.journals[i].journal.find_track().map(|()| i))
            {
                Ok(i) => *staged.journal.insert(i),
                Err(e) => {
                    staged.failed = Some(e);
                    return false;
                }
            },
        };
        let journal = &mut self.journals[i].journal;
        match journal.last_seq() {
            // Already journaled before a restart.
            Some(last) if info.seq <= last => {
                staged.skipped += 1;
                return true;
            }
            Some(last) if info.seq > last + 1 => {
                self.counters
                    .lost
                    .fetch_add(info.seq - last - 1, Ordering::Relaxed);
                warn(
                    &self.topic,
                    format_args!(
                        "ring {ring_id}: messages {} to {} were never recorded",
                        last + 1,
                        info.seq - 1
                    ),
                );
            }
            _ => {}
        }
        let meta = RecordMeta {
            seq: info.seq,
            tag: info.tag,
            timestamp_ns: info.timestamp,
            recorded_ns: now_ns,
        };
        match journal.stage(&meta, payload) {
            Ok(()) => {
                staged.records += 1;
                staged.bytes += record_size(payload.len());
                staged.bytes < BATCH_BYTES
            }
            Err(e @ JournalError::Io { .. }) => {
                staged.failed = Some(e);
                false
            }
            Err(e) => {
                // Not the disk's fault: retrying would not help.
                self.counters.lost.fetch_add(1, Ordering::Relaxed);
                warn(&self.topic, e);
                true
            }
        }
    }

    /// The index of ring `ring_id`'s journal, opened (and recovered) if it
    /// is not yet.
    fn journal(&mut self, ring_id: u64) -> Result<usize, JournalError> {
        if let Some(i) = self.journals.iter().position(|r| r.id == ring_id) {
            return Ok(i);
        }
        let dir = self.dir.join(&self.topic).join(format!("{ring_id:020}"));
        let j = Journal::open(&dir, self.options)?;
        let r = j.recovery();
        if r.torn_bytes > 0 || !r.corrupt.is_empty() || !r.damaged_segments.is_empty() {
            warn(
                &self.topic,
                format_args!("recovered {}: {r:?}", dir.display()),
            );
        }
        let c = &self.counters;
        c.corrupt
            .fetch_add(r.corrupt.len() as u64, Ordering::Relaxed);
        c.damaged_segments
            .fetch_add(r.damaged_segments.len() as u64, Ordering::Relaxed);
        self.journals.push(Ring {
            id: ring_id,
            counted: j.last_seq(),
            journal: j,
        });
        Ok(self.journals.len() - 1)
    }

    /// Counts a batch written.
    fn counted(&mut self, staged: &Staged) {
        let Some(i) = staged.journal else {
            return;
        };
        let r = &mut self.journals[i];
        let last = r.journal.last_seq();
        let new = match (last, r.counted) {
            (Some(l), Some(c)) => l.saturating_sub(c),
            // A journal this recorder began: all of it.
            (Some(_), None) => r.journal.segments().iter().map(|s| s.records).sum(),
            (None, _) => 0,
        };
        r.counted = last;
        if new > 0 {
            self.counters.recorded.fetch_add(new, Ordering::Relaxed);
            self.publish_sizes();
        }
    }

    /// Publishes the journals' sizes to the counters.
    fn publish_sizes(&self) {
        let (bytes, segments) = self
            .journals
            .iter()
            .fold((0, 0), |(b, s), Ring { journal: j, .. }| {
                (b + j.bytes(), s + j.segments().len() as u64)
            });
        self.counters.bytes.store(bytes, Ordering::Relaxed);
        self.counters.segments.store(segments, Ordering::Relaxed);
    }

    fn tick(&mut self) {
        let retain = self.last_retain.elapsed() >= RETAIN_EVERY;
        if retain {
            self.last_retain = Instant::now();
        }
        let now = realtime_ns();
        let mut failed = false;
        for Ring { journal: j, .. } in &mut self.journals {
            let mut done = j.flush().and_then(|()| j.tick());
            if retain {
                // Age limits also while no new segment begins.
                done = done.and_then(|()| j.retain(now).map(drop));
            }
            if let Err(e) = done {
                failed = true;
                warn(&self.topic, e);
            }
        }
        if failed {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        if retain {
            self.publish_sizes();
        }
    }
}
