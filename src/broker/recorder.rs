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

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::{Client, SubscribeOptions};
use crate::journal::{realtime_ns, Journal, JournalOptions, RecordMeta};
use crate::ring::{RecvError, Start};
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
    /// Failed appends (a full disk): each message is retried until
    /// written or the broker stops.
    pub errors: AtomicU64,
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
                        journals: HashMap::new(),
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
    pub fn counters(&self) -> &RecorderCounters {
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

struct Run {
    topic: String,
    dir: PathBuf,
    options: JournalOptions,
    journals: HashMap<u64, Journal>,
    counters: Arc<RecorderCounters>,
    hand_over: bool,
    last_retain: Instant,
}

fn warn(topic: &str, what: impl std::fmt::Display) {
    eprintln!("ringbus: journal of topic {topic:?}: {what}");
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
        let mut buf = Vec::with_capacity(self.options.max_record as usize);
        // Once asked to stop, it drains what its rings hold (for at most
        // DRAIN): a broker stopped after its publishers finished leaves a
        // whole journal.
        let mut stopping: Option<Instant> = None;
        loop {
            if stop.load(Ordering::Relaxed) {
                let since = *stopping.get_or_insert_with(Instant::now);
                if since.elapsed() >= DRAIN {
                    break;
                }
            }
            // In place: the slot stays held, so the cursor does not pass
            // the message (and its publisher cannot reuse the slot) until
            // it is appended: a broker killed meanwhile leaves it in the
            // ring for the next recorder.
            match subscriber.recv_ref_timeout(IDLE) {
                Ok((ring_id, msg)) => {
                    let info = msg.info();
                    let meta = RecordMeta {
                        seq: info.seq,
                        tag: info.tag,
                        timestamp_ns: info.timestamp,
                        recorded_ns: realtime_ns(),
                    };
                    // One read of the shared bytes: the checksum and the
                    // file get the same ones.
                    buf.clear();
                    buf.extend_from_slice(&msg);
                    self.append(ring_id, &meta, &buf, stop);
                    drop(msg);
                }
                Err(RecvError::Timeout | RecvError::Empty) if stopping.is_some() => break,
                Err(RecvError::Timeout | RecvError::Empty | RecvError::EndOfStream) => {
                    self.tick();
                }
                Err(RecvError::Lagged { missed }) => {
                    self.counters.lost.fetch_add(missed, Ordering::Relaxed);
                    warn(
                        &self.topic,
                        format_args!("{missed} messages lost before they were recorded"),
                    );
                }
                Err(RecvError::ZeroCopyUnsupported) => {
                    // Rings made under another config before the topic was
                    // declared durable (the broker keeps a live config).
                    warn(
                        &self.topic,
                        "its rings are overwrite rings (made before it was declared durable): not recorded",
                    );
                    break;
                }
                Err(e) => {
                    self.counters.lost.fetch_add(1, Ordering::Relaxed);
                    warn(&self.topic, e);
                }
            }
        }
        for j in self.journals.values_mut() {
            if let Err(e) = j.sync() {
                warn(&self.topic, e);
            }
        }
        if self.hand_over {
            // Not detached: the ports stay with the keeper, holding back
            // the publishers, until the next broker's recorder takes them
            // (their mappings go with this process).
            std::mem::forget(subscriber);
            std::mem::forget(client);
        }
    }

    fn tick(&mut self) {
        let retain = self.last_retain.elapsed() >= RETAIN_EVERY;
        if retain {
            self.last_retain = Instant::now();
        }
        let now = realtime_ns();
        for j in self.journals.values_mut() {
            let mut done = j.flush().and_then(|()| j.tick());
            if retain {
                // Age limits also while no new segment begins.
                done = done.and_then(|()| j.retain(now).map(drop));
            }
            if let Err(e) = done {
                warn(&self.topic, e);
            }
        }
    }

    /// Appends, retrying a failed write (a full disk) until it succeeds or
    /// the broker stops: the ring holds the publisher back meanwhile.
    fn append(&mut self, ring_id: u64, meta: &RecordMeta, payload: &[u8], stop: &AtomicBool) {
        let journal = match self.journals.entry(ring_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let dir = self.dir.join(&self.topic).join(format!("{ring_id:020}"));
                match Journal::open(&dir, self.options) {
                    Ok(j) => {
                        let r = j.recovery();
                        if r.torn_bytes > 0
                            || !r.corrupt.is_empty()
                            || !r.damaged_segments.is_empty()
                        {
                            warn(
                                &self.topic,
                                format_args!("recovered {}: {r:?}", dir.display()),
                            );
                        }
                        v.insert(j)
                    }
                    Err(e) => {
                        self.counters.lost.fetch_add(1, Ordering::Relaxed);
                        warn(&self.topic, e);
                        return;
                    }
                }
            }
        };
        match journal.last_seq() {
            // Already journaled before a restart.
            Some(last) if meta.seq <= last => return,
            Some(last) if meta.seq > last + 1 => {
                self.counters
                    .lost
                    .fetch_add(meta.seq - last - 1, Ordering::Relaxed);
                warn(
                    &self.topic,
                    format_args!(
                        "ring {ring_id}: messages {} to {} were never recorded",
                        last + 1,
                        meta.seq - 1
                    ),
                );
            }
            _ => {}
        }
        loop {
            match journal.append(meta, payload) {
                Ok(()) => {
                    self.counters.recorded.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    warn(&self.topic, format_args!("{e}; retrying"));
                    if stop.load(Ordering::Relaxed) {
                        self.counters.lost.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}
