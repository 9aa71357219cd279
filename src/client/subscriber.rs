//! [`Subscriber`]: a subscription to a topic: its rings, the ones that
//! appear later, and the receives.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use super::fan_in::{FanIn, SubRing};
use super::replay::{Replay, Step};
use super::{unexpected, Client, ClientError};
use crate::control::frame::{MatchedTopic, RefusedTopic, Reply, Request, RingRef};
use crate::control::segment::TopicSegment;
use crate::control::ConnectionError;
use crate::ring::{
    wait_any_limit, AttachError, Consumer, Filter, FilterError, MessageInfo, RecvError, Start,
    TopicConfig,
};
use crate::wait::{Limit, WaitStrategy};

/// How a subscriber starts and waits.
#[derive(Clone, Copy, Debug, Default)]
pub struct SubscribeOptions {
    /// Where to start in the rings that exist when subscribing (rings that
    /// appear later are read from their first message). On a durable
    /// topic, a [`Start::Sequence`] older than what the rings hold, or a
    /// [`Start::Time`], reads the topic's journal first and then goes on
    /// with the live rings, with no gap and no duplicate (topic
    /// subscriptions, copying receives).
    pub start: Start,
    /// How `recv` waits.
    pub wait: WaitStrategy,
}

/// A received message: which topic and ring it came from and its metadata
/// (the payload is in the caller's buffer, `info.len` bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The ring (publisher) it came from.
    pub ring_id: u64,
    /// The topic it came from, as an id of this subscription
    /// ([`Subscriber::topic_name`]): 0 for a topic subscription, one per
    /// matched topic for a pattern.
    pub topic: u32,
    /// Sequence number (per ring), tag, timestamp, length.
    pub info: MessageInfo,
}

/// One ring of a subscription, as [`Subscriber::rings`] shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingState {
    /// The ring's id.
    pub ring_id: u64,
    /// Its topic's id in this subscription ([`Subscriber::topic_name`]).
    pub topic: u32,
    /// Its publisher's process id.
    pub publisher_pid: u32,
    /// The sequence number of the next message to read from it.
    pub next_seq: u64,
    /// Messages published on it and not read yet.
    pub backlog: u64,
    /// Messages lost on it (see [`Subscriber::lagged_total`]).
    pub lagged: u64,
    /// Whether a caught-up receive polls the ring's shared latest-message
    /// slot (trusted subscribers, whose data mapping is writable).
    pub polls_latest: bool,
    /// Whether the publisher writes this subscriber a private mailbox.
    pub mailbox: bool,
}

/// Checks the topic's generation counter every this many receives while
/// messages keep coming (and whenever the rings run dry: for a spinning
/// receive on one ring, once its spin has run out).
pub(super) const GENERATION_CHECK_EVERY: u32 = 64;
/// How often to check that the broker still answers (a restarted broker
/// is re-joined), idle or not: at most one `poll` per this interval.
const HEALTH_CHECK: Duration = Duration::from_millis(250);

/// State of one blocking receive between its idle steps.
pub(super) struct Idle {
    /// The next nap of a subscription without rings.
    nap: Duration,
}

impl Idle {
    fn new() -> Idle {
        Idle {
            nap: Duration::from_micros(10),
        }
    }
}

/// One topic of a subscription (a pattern subscription has one per
/// matched topic).
struct TopicSub {
    name: String,
    /// The subscription to this topic (for a pattern, the child lease the
    /// broker made).
    lease: u64,
    segment: TopicSegment,
    seen_generation: u64,
    /// The highest ring id seen: rings at or below it that are not held
    /// have ended and are not attached again.
    max_ring_id: u64,
    config: Option<TopicConfig>,
    /// Where its rings that are listed at the first fetch start: the
    /// subscription's start for the topics that existed when it was made,
    /// their first message for the others.
    first_start: Option<Start>,
}

/// A pattern subscription's own state: the broker's directory, whose
/// generation moves when a topic is created or a ring becomes readable.
struct Watch {
    lease: u64,
    directory: TopicSegment,
    seen: u64,
}

/// A subscriber of a topic, or of every topic a pattern matches (`*` one
/// segment, a final `>` the rest): reads all of their rings, one message
/// at a time in turn. Rings of publishers that join later, and topics
/// created later that the pattern matches, are attached when a generation
/// counter in shared memory moves: no syscall on the receive path.
pub struct Subscriber {
    client: Client,
    /// The topic or pattern subscribed to.
    name: String,
    topics: Vec<TopicSub>,
    watch: Option<Watch>,
    pub(super) fan_in: FanIn,
    /// Receives since the last look at the generation; set past
    /// [`GENERATION_CHECK_EVERY`] to send the next receive down its cold
    /// path (a loss to report, see `FanIn::pending`).
    pub(super) since_check: u32,
    /// When the broker was last checked (see [`HEALTH_CHECK`]).
    checked_at: Instant,
    options: SubscribeOptions,
    /// Topics a pattern matched that the broker could not subscribe to,
    /// with why.
    refused: Vec<(String, String)>,
    /// After a failed refresh, no new attempt before this instant (keeps a
    /// dead broker from costing a syscall on every empty poll).
    retry_at: Option<Instant>,
    /// The journal being replayed before the live rings (see
    /// `client::replay`); every receive takes the cold path meanwhile.
    replay: Option<Box<Replay>>,
    /// Losses and filtered messages of a replay that has ended.
    replay_lagged: u64,
    replay_filtered: u64,
    /// What ended a batch after its first message (see
    /// [`Subscriber::try_recv_batch`]): the next receive's answer.
    held: Option<RecvError>,
}

impl Subscriber {
    /// Subscribes to `name` (a topic, or a pattern) through `client`.
    pub(super) fn subscribe(
        client: &Client,
        name: &str,
        options: SubscribeOptions,
    ) -> Result<Subscriber, ClientError> {
        let mut s = Subscriber {
            client: client.clone(),
            name: name.to_owned(),
            topics: Vec::new(),
            watch: None,
            fan_in: FanIn::default(),
            since_check: 0,
            checked_at: Instant::now(),
            options,
            refused: Vec::new(),
            retry_at: None,
            replay: None,
            replay_lagged: 0,
            replay_filtered: 0,
            held: None,
        };
        let pattern = crate::control::is_pattern(name);
        let replay = match options.start {
            Start::Sequence(_) | Start::Time(_) if !pattern => {
                Replay::open(client, name, options.start)?
            }
            Start::Time(_) => {
                return Err(ClientError::Attach {
                    topic: name.to_owned(),
                    source: AttachError::TimeStart,
                })
            }
            _ => None,
        };
        match replay {
            Some(r) => {
                // Joined once the journal is read (see `client::replay`).
                s.replay = Some(Box::new(r));
                s.since_check = GENERATION_CHECK_EVERY;
            }
            None => s.join(options.start)?,
        }
        Ok(s)
    }

    /// The replay's next step, while one is under way: a message or error
    /// to return, or `None` once it has ended (the live rings go on).
    #[inline(always)]
    fn replay_step(&mut self, buf: &mut [u8]) -> Option<Result<Delivery, RecvError>> {
        // Every receive comes here until the replay ends.
        self.since_check = GENERATION_CHECK_EVERY;
        let replay = self.replay.as_mut()?;
        let filter = self.fan_in.filtering.then_some(&mut self.fan_in.filter);
        match replay.step(&self.client, buf, filter) {
            // The delivery made here, in place: made in the step and
            // copied, its 4-byte topic was read back as 8 bytes, a load
            // that waits for the store to retire.
            Ok(Step::Message(ring_id, info)) => {
                self.fan_in.set_last_ring(ring_id);
                Some(Ok(Delivery {
                    ring_id,
                    topic: 0,
                    info,
                }))
            }
            Ok(Step::Error(ring_id, e)) => {
                self.fan_in.set_last_ring(ring_id);
                Some(Err(e))
            }
            Ok(Step::Wait) => Some(Err(RecvError::Empty)),
            Ok(Step::Done) if !replay.merging => {
                if self.join_live().is_err() {
                    // The broker is restarting: look again shortly.
                    self.check_broker(Instant::now());
                }
                Some(Err(RecvError::Empty))
            }
            Ok(Step::Done) => {
                self.replay_lagged += replay.lagged;
                self.replay_filtered += replay.filtered;
                self.replay = None;
                self.since_check = 0;
                None
            }
            Err(_) => {
                self.check_broker(Instant::now());
                Some(Err(RecvError::Empty))
            }
        }
    }

    /// Joins the live rings once the journal is read: each at the oldest
    /// message it holds, then moved to where the journal left off, or left
    /// where it is with the gap below read from the journal (the merge).
    fn join_live(&mut self) -> Result<(), ClientError> {
        self.join(Start::Earliest)?;
        let Some(replay) = self.replay.as_mut() else {
            return Ok(());
        };
        for ring in &mut self.fan_in.rings {
            let at = ring.consumer.next_seq();
            // The journal is ahead of the ring's oldest message: skip what
            // it delivered. Else it fills the gap below `at`. A ring with
            // nothing journaled yet has all of it in the ring (the
            // recorder's cursor held it), from its first message on.
            if let Some(next) = replay.journal_next(&self.client, ring.ring_id)? {
                let live = if next > at {
                    ring.consumer.skip_to(next)
                } else {
                    at
                };
                replay.set_live(ring.ring_id, live);
            }
        }
        let live: Vec<u64> = self.fan_in.rings.iter().map(|r| r.ring_id).collect();
        replay.start_merge(&self.client, &live)
    }

    /// (Re-)subscribes on the current connection and attaches the rings
    /// not held yet, those that exist now at `start`.
    fn join(&mut self, start: Start) -> Result<(), ClientError> {
        let held = self.fan_in.held_ports();
        if crate::control::is_pattern(&self.name) {
            let (reply, fds) = self.client.call(&Request::SubscribePattern {
                pattern: self.name.clone(),
                start,
                held,
            })?;
            let Reply::PatternSubscribed {
                lease,
                topics,
                refused,
                more,
            } = reply
            else {
                return Err(unexpected(&reply));
            };
            let mut fds = fds.into_iter();
            let dir = fds
                .next()
                .ok_or_else(|| unexpected(&Reply::Detached { lease }))?;
            self.watch = Some(Watch {
                lease,
                directory: TopicSegment::open(&File::from(dir))?,
                // Unknown until the first check: forces one look.
                seen: u64::MAX,
            });
            self.take_matches(topics, refused, fds, Some(start))?;
            if more {
                self.fetch_matches()?;
            }
            return self.fetch_all();
        }
        let (reply, fds) = self.client.call(&Request::Subscribe {
            topic: self.name.clone(),
            start,
            held,
        })?;
        let Reply::Subscribed {
            lease,
            config,
            rings,
        } = reply
        else {
            return Err(unexpected(&reply));
        };
        let mut fds = fds.into_iter();
        let seg = fds
            .next()
            .ok_or_else(|| unexpected(&Reply::Detached { lease }))?;
        let i = self.topic_slot(&self.name.clone(), lease, seg, config, None)?;
        self.attach(i, &rings, fds, start)
    }

    /// The slot of topic `name`, made or (after a re-join) updated with its
    /// new lease and segment.
    fn topic_slot(
        &mut self,
        name: &str,
        lease: u64,
        segment: OwnedFd,
        config: Option<TopicConfig>,
        first_start: Option<Start>,
    ) -> Result<usize, ClientError> {
        let segment = TopicSegment::open(&File::from(segment))?;
        // Unknown until the first check: forces one fetch, closing the
        // window between the broker's reply and our first look.
        let seen_generation = u64::MAX;
        if let Some(i) = self.topics.iter().position(|t| t.name == name) {
            let t = &mut self.topics[i];
            t.lease = lease;
            t.segment = segment;
            t.seen_generation = seen_generation;
            t.config = t.config.or(config);
            return Ok(i);
        }
        self.topics.push(TopicSub {
            name: name.to_owned(),
            lease,
            segment,
            seen_generation,
            max_ring_id: 0,
            config,
            first_start,
        });
        Ok(self.topics.len() - 1)
    }

    /// Takes up the topics a pattern matched (their segments in `fds`);
    /// those that existed when the pattern was subscribed (`start` given)
    /// start there, the others at their first message.
    fn take_matches(
        &mut self,
        topics: Vec<MatchedTopic>,
        refused: Vec<RefusedTopic>,
        fds: impl Iterator<Item = OwnedFd>,
        start: Option<Start>,
    ) -> Result<(), ClientError> {
        let mut fds = fds;
        for t in topics {
            let seg = fds.next().ok_or_else(|| {
                ClientError::Control(ConnectionError::Unexpected(
                    "missing topic segment descriptor".into(),
                ))
            })?;
            let first = Some(start.unwrap_or(Start::Sequence(0)));
            self.topic_slot(&t.name, t.lease, seg, t.config, first)?;
        }
        self.refused
            .extend(refused.into_iter().map(|r| (r.name, r.reason)));
        Ok(())
    }

    /// Asks for the topics a pattern matched since the last answer, until
    /// none is left.
    fn fetch_matches(&mut self) -> Result<(), ClientError> {
        let Some(w) = &self.watch else {
            return Ok(());
        };
        let lease = w.lease;
        loop {
            let (reply, fds) = self.client.call(&Request::FetchMatches { lease })?;
            let Reply::Matches {
                topics,
                refused,
                more,
            } = reply
            else {
                return Err(unexpected(&reply));
            };
            self.take_matches(topics, refused, fds.into_iter(), None)?;
            if !more {
                return Ok(());
            }
        }
    }

    /// Fetches the new rings of every topic whose generation moved.
    fn fetch_all(&mut self) -> Result<(), ClientError> {
        let mut r = Ok(());
        for i in 0..self.topics.len() {
            let g = self.topics[i].segment.generation();
            if g != self.topics[i].seen_generation {
                if let Err(e) = self.fetch_topic(i, g) {
                    r = Err(e);
                }
            }
        }
        r
    }

    /// Maps and joins the rings of topic `i` in `rings` (descriptors in
    /// `fds`) that are new to this subscription, at `start`.
    fn attach(
        &mut self,
        i: usize,
        rings: &[RingRef],
        fds: impl Iterator<Item = OwnedFd>,
        start: Start,
    ) -> Result<(), ClientError> {
        let mut fds = fds;
        let topic = self.topics[i].name.clone();
        let shm_err = |source| ClientError::Shm {
            topic: topic.clone(),
            source,
        };
        let attach_err = |source| ClientError::Attach {
            topic: topic.clone(),
            source,
        };
        let missing = |what: &str| {
            ClientError::Control(ConnectionError::Unexpected(format!(
                "missing {what} descriptor"
            )))
        };
        let t = &mut self.topics[i];
        for r in rings {
            let (Some(data), Some(lobby)) = (fds.next(), fds.next()) else {
                return Err(missing("ring"));
            };
            let port = match r.port {
                Some(p) => Some((p, fds.next().ok_or_else(|| missing("port"))?)),
                None => None,
            };
            // A ring at or below the highest id seen that is not held has
            // ended (and been drained): a restarted broker may list it.
            let seen = r.ring_id <= t.max_ring_id;
            t.max_ring_id = t.max_ring_id.max(r.ring_id);
            if seen || self.fan_in.holds(r.ring_id) {
                continue;
            }
            let data = File::from(data);
            let region = crate::shm::map_ring(
                &data,
                &File::from(lobby),
                None,
                crate::shm::subscriber_access(&data),
                t.config.as_ref(),
            )
            .map_err(shm_err)?;
            if t.config.is_none() {
                t.config = Some(*region.config());
            }
            let config = *region.config();
            let consumer = match port {
                // Our port, made by the broker: our cursor on a back-pressure
                // ring (placed where `start` says, or at 0 for a ring that
                // appeared after we subscribed), our wake word, and our
                // mailbox if the publisher writes one for us.
                Some((p, fd)) => {
                    let port = crate::shm::map_port(&File::from(fd), &config, r.ring_id)
                        .map_err(shm_err)?;
                    Consumer::with_port(region, port, start, p.mailbox)
                }
                None => Consumer::new(region, start),
            }
            .map_err(attach_err)?;
            // A back-pressure ring joined past `start` (its publisher was
            // further than a cursor can hold back): the loss is reported
            // before its first message.
            let missed = consumer.lagged_total();
            if missed > 0 {
                self.fan_in.defer_lag(r.ring_id, missed);
                self.since_check = GENERATION_CHECK_EVERY;
            }
            self.fan_in.rings.push(SubRing {
                ring_id: r.ring_id,
                topic: i as u32,
                publisher_pid: r.publisher_pid,
                consumer,
            });
        }
        Ok(())
    }

    /// Attaches rings (and, for a pattern, topics) that appeared since the
    /// last look. Returns whether any did. Errors are kept for the next
    /// look (the broker may be restarting); the rings held meanwhile keep
    /// working. The look itself (one load of a generation counter: the
    /// topic's, or for a pattern the broker's directory) is inlined; the
    /// fetch is not.
    #[inline(always)]
    pub(super) fn refresh(&mut self) -> bool {
        let (g, seen) = match (&self.watch, self.topics.first()) {
            (Some(w), _) => (w.directory.generation(), w.seen),
            (None, Some(t)) => (t.segment.generation(), t.seen_generation),
            (None, None) => return false,
        };
        if g == seen {
            return false;
        }
        self.fetch(g)
    }

    /// [`Subscriber::refresh`] once the watched generation moved to `g`.
    #[cold]
    #[inline(never)]
    fn fetch(&mut self, g: u64) -> bool {
        if let Some(t) = self.retry_at {
            if Instant::now() < t {
                return false;
            }
            self.retry_at = None;
        }
        let before = self.fan_in.rings.len();
        let r = match self.watch {
            Some(_) => self.fetch_matches().and_then(|()| self.fetch_all()),
            None => self.fetch_topic(0, g),
        };
        match r {
            Ok(()) => {
                if let Some(w) = &mut self.watch {
                    w.seen = g;
                }
            }
            Err(ClientError::Control(ConnectionError::Io(_) | ConnectionError::Closed)) => {
                // The broker died (and may have restarted): re-join it.
                if self.rejoin() {
                    return self.fan_in.rings.len() > before;
                }
                self.retry_at = Some(Instant::now() + HEALTH_CHECK);
            }
            Err(_) => self.retry_at = Some(Instant::now() + HEALTH_CHECK),
        }
        self.fan_in.rings.len() > before || self.fan_in.has_pending()
    }

    /// Fetches the rings of topic `i` above those seen, its generation
    /// being `g`.
    fn fetch_topic(&mut self, i: usize, g: u64) -> Result<(), ClientError> {
        let t = &self.topics[i];
        let (reply, fds) = self.client.call(&Request::FetchRings {
            lease: t.lease,
            after: t.max_ring_id,
        })?;
        let Reply::Rings { config, rings } = reply else {
            return Err(unexpected(&reply));
        };
        let t = &mut self.topics[i];
        t.config = t.config.or(config);
        // Rings that appear after subscribing are read from their first
        // message: a subscriber that was there misses nothing
        // (back-pressure: the broker made it a port at 0) or is told what
        // it missed (overwrite: `Lagged`). A pattern's topics that existed
        // when it was subscribed start where it asked, the first time.
        let start = t.first_start.take().unwrap_or(Start::Sequence(0));
        self.attach(i, &rings, fds.into_iter(), start)?;
        self.topics[i].seen_generation = g;
        Ok(())
    }

    /// Re-joins a restarted broker if one [`HEALTH_CHECK`] has passed
    /// since the last check and the connection died.
    fn check_broker(&mut self, now: Instant) {
        if now.duration_since(self.checked_at) >= HEALTH_CHECK {
            self.checked_at = now;
            self.rejoin();
        }
    }

    /// Re-joins a restarted broker if the connection died; returns whether
    /// it did. Every ring the new broker lists that is new to us appeared
    /// after we subscribed: read from its first message.
    fn rejoin(&mut self) -> bool {
        if !self.client.conn().broker_gone() || self.client.reconnect().is_err() {
            return false;
        }
        // Not joined yet: the replay joins once the journal is read.
        if self.replay.as_ref().is_some_and(|r| !r.merging) {
            return true;
        }
        self.join(Start::Sequence(0)).is_ok()
    }

    /// The cold part of a receive: every [`GENERATION_CHECK_EVERY`]
    /// receives, and whenever a loss waits to be reported. Looks for new
    /// rings (and, every [`HEALTH_CHECK`], whether the broker still
    /// answers: a busy subscriber may never idle, and a restarted broker
    /// lists new rings on a topic segment of its own); returns the loss to
    /// report first, if any.
    ///
    /// While a replay is under way, this is where its messages come from
    /// (into `buf`).
    #[cold]
    #[inline(never)]
    pub(super) fn look_around(&mut self, buf: &mut [u8]) -> Option<Result<Delivery, RecvError>> {
        if let Some(e) = self.held.take() {
            // The ring that answered it is still `last_ring`: nothing was
            // received since.
            return Some(Err(e));
        }
        if self.replay.is_some() {
            if let Some(r) = self.replay_step(buf) {
                return Some(r);
            }
        }
        self.since_check = 0;
        self.fan_in.report_counts();
        self.check_broker(Instant::now());
        self.refresh();
        self.fan_in.take_pending().map(Err)
    }

    /// Receives the next message of any ring into `buf`, without waiting.
    ///
    /// # Errors
    /// * [`RecvError::Empty`]: nothing new on any ring;
    /// * [`RecvError::Lagged`]: a ring (see [`Subscriber::last_ring_id`])
    ///   was overwritten past this subscriber; reading continues;
    /// * [`RecvError::EndOfStream`]: a ring's publisher left and the ring
    ///   is drained; the ring is dropped and the subscription goes on;
    /// * [`RecvError::BufferTooSmall`], [`RecvError::Corrupt`]: as for
    ///   [`Consumer::try_recv`].
    #[inline(always)]
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<Delivery, RecvError> {
        self.since_check += 1;
        if self.since_check >= GENERATION_CHECK_EVERY {
            if let Some(r) = self.look_around(buf) {
                return r;
            }
        }
        match self.fan_in.take(buf) {
            Err(RecvError::Empty) if self.refresh() => match self.fan_in.take_pending() {
                Some(e) => Err(e),
                None => self.fan_in.take(buf),
            },
            r => r,
        }
    }

    /// Receives, without waiting, up to `max` messages that are ready, in
    /// order: each is copied into `buf` and handed to `f` with its
    /// delivery. Returns how many. What would end a run of `try_recv`s (a
    /// loss, a ring's end, a corrupt slot, a message larger than `buf`)
    /// ends the batch after the messages before it, and is the next
    /// receive's answer, so nothing goes unreported.
    ///
    /// ```no_run
    /// # use ringbus::client::{Client, SubscribeOptions};
    /// # let client = Client::connect_default()?;
    /// let mut sub = client.subscriber("ticks", SubscribeOptions::default())?;
    /// let mut buf = [0u8; 256];
    /// let mut total = 0;
    /// match sub.try_recv_batch(&mut buf, 64, |bytes, _| total += bytes.len()) {
    ///     Ok(n) => println!("{n} messages, {total} bytes"),
    ///     Err(e) => println!("nothing: {e}"),
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Subscriber::try_recv`], for the first message: `Empty` when
    /// none is ready (or `max` is 0).
    pub fn try_recv_batch(
        &mut self,
        buf: &mut [u8],
        max: usize,
        mut f: impl FnMut(&[u8], &Delivery),
    ) -> Result<usize, RecvError> {
        self.try_recv_batch_while(buf, max, |bytes, d| {
            f(bytes, d);
            true
        })
    }

    /// As [`Subscriber::try_recv_batch`], ending the batch after a message
    /// for which `f` returns `false` (those after it stay unread): for a
    /// caller that may have to stop mid-batch (a C callback, an error of
    /// its own).
    ///
    /// # Errors
    /// As [`Subscriber::try_recv_batch`].
    pub fn try_recv_batch_while(
        &mut self,
        buf: &mut [u8],
        max: usize,
        mut f: impl FnMut(&[u8], &Delivery) -> bool,
    ) -> Result<usize, RecvError> {
        if max == 0 {
            return Err(RecvError::Empty);
        }
        let mut n = 0;
        while n < max {
            match self.try_recv(buf) {
                Ok(d) => {
                    n += 1;
                    if !f(&buf[..d.info.len], &d) {
                        break;
                    }
                }
                Err(e) if n == 0 => return Err(e),
                // Nothing taken: the next receive finds the same again.
                Err(RecvError::Empty | RecvError::BufferTooSmall { .. }) => break,
                Err(e) => {
                    self.held = Some(e);
                    self.since_check = GENERATION_CHECK_EVERY;
                    break;
                }
            }
        }
        Ok(n)
    }

    /// Waits for the next message as the subscription's wait strategy says.
    ///
    /// # Errors
    /// As [`Subscriber::try_recv`], never `Empty`.
    #[inline(always)]
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<Delivery, RecvError> {
        self.recv_limit(buf, Limit::default())
    }

    /// As [`Subscriber::recv`], giving up after `timeout`: counted from the
    /// wait's first clock read, which a spinning wait on one ring makes a
    /// few microseconds in (so a message that comes sooner costs no clock
    /// read).
    ///
    /// # Errors
    /// [`RecvError::Timeout`]; as [`Subscriber::try_recv`].
    #[inline(always)]
    pub fn recv_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<Delivery, RecvError> {
        let limit = Limit {
            by: None,
            within: Some(timeout),
        };
        self.recv_limit(buf, limit)
    }

    /// As [`Subscriber::recv`], giving up at `deadline` (`None`: never).
    ///
    /// # Errors
    /// [`RecvError::Timeout`]; as [`Subscriber::try_recv`].
    #[inline(always)]
    pub fn recv_deadline(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<Delivery, RecvError> {
        self.recv_limit(buf, Limit::by(deadline))
    }

    /// The receives' wait, until `limit`. Inlined into the caller, with
    /// the one-ring spin, for the reason given in `Consumer::recv_deadline`:
    /// a `Delivery` returned from a call goes through memory. `idle` is
    /// created at the first idle step, after the spin: a message that is
    /// waiting, or comes within the spin, costs no clock read.
    #[inline(always)]
    fn recv_limit(&mut self, buf: &mut [u8], mut limit: Limit) -> Result<Delivery, RecvError> {
        match self.recv_one_ring(buf) {
            Err(RecvError::Empty) => {}
            r => return r,
        }
        let mut idle = None;
        loop {
            match self.try_recv(buf) {
                Err(RecvError::Empty) => {}
                r => return r,
            }
            if let [ring] = self.fan_in.rings.as_slice() {
                if ring.consumer.spin_ready(self.options.wait) {
                    continue;
                }
            }
            self.idle(&mut idle, &mut limit)?;
        }
    }

    /// The receive of a subscription with one ring, while it is not due a
    /// look for new rings: [`FanIn::take_spinning`]. `Empty` once the
    /// spin has run out or a look is due: the caller's loop then looks for
    /// new rings and idles. Going through `try_recv` each time (its count and
    /// the look at the topic's generation whenever the ring was empty)
    /// slows a spinning ping-pong (DESIGN.md, "Where the ping-pong
    /// nanoseconds go").
    #[inline(always)]
    fn recv_one_ring(&mut self, buf: &mut [u8]) -> Result<Delivery, RecvError> {
        if self.since_check + 1 >= GENERATION_CHECK_EVERY || self.fan_in.rings.len() != 1 {
            return Err(RecvError::Empty);
        }
        self.since_check += 1;
        self.fan_in.take_spinning(buf, self.options.wait)
    }

    /// One idle step of a blocking receive that found nothing: waits a
    /// slice as the wait strategy says (at most [`HEALTH_CHECK`]), checking
    /// the broker now and then. The first step fixes `limit` to the
    /// deadline it means.
    ///
    /// # Errors
    /// [`RecvError::Timeout`] once the limit has passed.
    pub(super) fn idle(
        &mut self,
        idle: &mut Option<Idle>,
        limit: &mut Limit,
    ) -> Result<(), RecvError> {
        let now = Instant::now();
        let idle = idle.get_or_insert_with(Idle::new);
        *limit = Limit::by(limit.resolve(now));
        let deadline = limit.by;
        if deadline.is_some_and(|d| now >= d) {
            return Err(RecvError::Timeout);
        }
        self.check_broker(now);
        if self.replay.is_some() {
            // Waiting for the journal (what the recorder has not flushed
            // yet): its writes wake nobody, so a short nap.
            let nap = Duration::from_micros(100);
            std::thread::sleep(deadline.map_or(nap, |d| nap.min(d.saturating_duration_since(now))));
            return Ok(());
        }
        // Wake at least this often to look for new rings.
        let slice = deadline.map_or(now + HEALTH_CHECK, |d| d.min(now + HEALTH_CHECK));
        match self.fan_in.rings.as_mut_slice() {
            // No ring yet (a pattern that matched nothing, a topic without
            // publishers): nothing to sleep on, so one nap (growing to
            // 1 ms over the receive's steps); the caller's next receive
            // looks for rings.
            [] => match self.options.wait {
                WaitStrategy::Spin => std::hint::spin_loop(),
                WaitStrategy::SpinYield => std::thread::yield_now(),
                WaitStrategy::Block | WaitStrategy::Adaptive { .. } => {
                    std::thread::sleep(idle.nap.min(slice.saturating_duration_since(now)));
                    idle.nap = (idle.nap * 2).min(Duration::from_millis(1));
                }
            },
            // One ring: its own wait (futex when the strategy blocks).
            [ring] => {
                ring.consumer
                    .wait_ready_limit(self.options.wait, &mut Limit::by(Some(slice)));
            }
            // Several: one sleep on all their ports' futex words, woken by
            // any publisher (`wait::sleep_all`). Rings that appear while it
            // sleeps are found when the slice ends, as for one ring.
            rings => {
                wait_any_limit(rings, self.options.wait, &mut Limit::by(Some(slice)));
            }
        }
        Ok(())
    }

    /// The topic (or pattern) subscribed to.
    pub fn topic(&self) -> &str {
        &self.name
    }

    /// The name of topic `id` of this subscription (see
    /// [`Delivery::topic`]): the topic itself, or one a pattern matched.
    pub fn topic_name(&self, id: u32) -> Option<&str> {
        match self.topics.get(id as usize) {
            Some(t) => Some(t.name.as_str()),
            // Replaying the journal before joining the topic.
            None if id == 0 && self.replay.is_some() => Some(&self.name),
            None => None,
        }
    }

    /// The config of topic `id` ([`Delivery::topic`]), once a publisher
    /// has set it.
    pub fn topic_config(&self, id: u32) -> Option<TopicConfig> {
        match self.topics.get(id as usize) {
            Some(t) => t.config,
            None if id == 0 => self.replay.as_ref().and_then(|r| r.config),
            None => None,
        }
    }

    /// The topics read, in the order of their ids ([`Delivery::topic`]).
    pub fn topics(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(|t| t.name.as_str())
    }

    /// Topics a pattern matched that the broker could not subscribe this
    /// subscriber to (e.g. every back-pressure port taken), with why.
    pub fn refused_topics(&self) -> &[(String, String)] {
        &self.refused
    }

    /// The topic's config, once a publisher has set it; for a pattern, the
    /// config of its first topic that has one.
    pub fn config(&self) -> Option<TopicConfig> {
        self.topics
            .iter()
            .find_map(|t| t.config)
            .or_else(|| self.replay.as_ref().and_then(|r| r.config))
    }

    /// Whether the subscription is still reading its topic's journal
    /// before (or while joining) the live rings.
    pub fn replaying(&self) -> bool {
        self.replay.is_some()
    }

    /// The ring of the last message or error returned.
    pub fn last_ring_id(&self) -> u64 {
        self.fan_in.last_ring()
    }

    /// The rings being read, one per publisher.
    pub fn rings(&self) -> Vec<RingState> {
        self.fan_in
            .rings
            .iter()
            .map(|r| {
                let c = &r.consumer;
                RingState {
                    ring_id: r.ring_id,
                    topic: r.topic,
                    publisher_pid: r.publisher_pid,
                    next_seq: c.next_seq(),
                    backlog: c.backlog(),
                    lagged: c.lagged_total(),
                    polls_latest: c.region().polls_latest(),
                    mailbox: c.has_mailbox(),
                }
            })
            .collect()
    }

    /// Delivers only the messages whose tag satisfies `tag & mask ==
    /// value` (and the other filters), skipping the rest before their
    /// payload is copied; a skipped message counts as read (a back-pressure
    /// publisher does not wait for it) and in [`Subscriber::filtered_total`].
    /// `mask` 0 drops this condition.
    ///
    /// # Errors
    /// [`FilterError::ValueOutsideMask`]: no tag could match.
    pub fn filter_tags(&mut self, mask: u64, value: u64) -> Result<(), FilterError> {
        self.fan_in.filter.set_tag_mask(mask, value)?;
        self.fan_in.filtering = !self.fan_in.filter.keeps_all();
        Ok(())
    }

    /// Delivers only the messages whose tag is one of `tags` (at most
    /// [`crate::ring::MAX_FILTER_TAGS`]; empty drops this condition), as
    /// [`Subscriber::filter_tags`] does.
    ///
    /// # Errors
    /// [`FilterError::TooManyTags`].
    pub fn filter_tag_set(&mut self, tags: &[u64]) -> Result<(), FilterError> {
        self.fan_in.filter.set_tags(tags)?;
        self.fan_in.filtering = !self.fan_in.filter.keeps_all();
        Ok(())
    }

    /// Delivers only the messages `predicate` accepts, given the message's
    /// info and payload before it is copied out: in place on a
    /// back-pressure ring; on an overwrite ring, the validated copy in the
    /// receive's buffer (a torn read never reaches the predicate's
    /// verdict). It runs after the tag filters. A predicate that panics
    /// costs the message ([`RecvError::FilterPanicked`]), not the process.
    pub fn filter(&mut self, predicate: impl FnMut(&MessageInfo, &[u8]) -> bool + Send + 'static) {
        self.fan_in.filter.set_predicate(Some(Box::new(predicate)));
        self.fan_in.filtering = true;
    }

    /// Drops every filter: all messages are delivered again.
    pub fn clear_filters(&mut self) {
        self.fan_in.filter = Filter::default();
        self.fan_in.filtering = false;
    }

    /// How far behind its publishers this subscriber is: messages
    /// published but not yet read, over the rings it holds (a consumer
    /// lag, as Kafka's). On an overwrite ring it can exceed the capacity:
    /// the oldest of them are already overwritten (a receive reports them
    /// as [`RecvError::Lagged`]). A replay from the journal counts only
    /// once it has merged into the live rings. Reads each ring's `head`,
    /// a line its publisher writes: a look now and then, not one per
    /// message.
    pub fn backlog(&self) -> u64 {
        self.fan_in.backlog()
    }

    /// Messages the filters turned down, over all rings.
    pub fn filtered_total(&self) -> u64 {
        self.fan_in.filtered_total()
            + self.replay_filtered
            + self.replay.as_ref().map_or(0, |r| r.filtered)
    }

    /// Messages lost, over all rings: overwritten before they were read
    /// (overwrite mode), or skipped joining a back-pressure ring past the
    /// start asked for. Each loss is also returned once as
    /// [`RecvError::Lagged`].
    pub fn lagged_total(&self) -> u64 {
        self.fan_in.lagged_total()
            + self.replay_lagged
            + self.replay.as_ref().map_or(0, |r| r.lagged)
    }
}

impl Subscriber {
    /// The subscription's lease (a pattern's: its topics' leases are its
    /// children).
    pub(crate) fn lease(&self) -> u64 {
        match &self.watch {
            Some(w) => w.lease,
            None => self.topics.first().map_or(0, |t| t.lease),
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // The consumers free their cursors when dropped after this (a
        // group member's keep those holding messages, see
        // `GroupSubscriber`'s drop). A pattern's lease ends its topics'
        // too.
        let _ = self.client.call(&Request::Detach {
            lease: self.lease(),
        });
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("topic", &self.name)
            .field("rings", &self.rings())
            .finish()
    }
}
