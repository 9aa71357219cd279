//! [`GroupSubscriber`]: a member of a consumer group. Members that share a
//! group name on a topic (or pattern) share its messages: each message
//! goes to one member (DESIGN.md, "Consumer groups"; the protocol is
//! `ring::claim`).

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::subscriber::GENERATION_CHECK_EVERY;
use super::{unexpected, Client, ClientError, Delivery, SubscribeOptions, Subscriber};
use crate::control::frame::{Reply, Request};
use crate::control::name::validate_group_name;
use crate::control::ConnectionError;
use crate::control::ErrorCode;
use crate::ring::claim::{ClaimError, ClaimTable, GroupCursor, DEFAULT_BATCH};
use crate::ring::{RecvError, Start};
use crate::wait::WaitStrategy;

/// Deliveries of one message before it goes to the dead-letter topic, by
/// default.
pub const DEFAULT_MAX_DELIVERIES: u32 = 5;

/// How a group member starts, claims, acknowledges and waits.
#[derive(Clone, Copy, Debug)]
pub struct GroupOptions {
    /// Where the group starts on the rings that exist when its first
    /// member joins (later members take the group's position).
    pub start: Start,
    /// How `recv` waits.
    pub wait: WaitStrategy,
    /// Most messages claimed at once (at least 1; at most a ring's
    /// capacity).
    pub batch: u32,
    /// Acknowledge the last message delivered when asking for the next
    /// (the default). Off: every message must be acknowledged with
    /// [`GroupSubscriber::ack`] or [`GroupSubscriber::ack_through`].
    pub auto_ack: bool,
    /// Deliveries of one message before it is dead-lettered; every member
    /// of a group must ask for the same.
    pub max_deliveries: u32,
}

impl Default for GroupOptions {
    fn default() -> GroupOptions {
        GroupOptions {
            start: Start::Latest,
            wait: WaitStrategy::default(),
            batch: DEFAULT_BATCH,
            auto_ack: true,
            max_deliveries: DEFAULT_MAX_DELIVERIES,
        }
    }
}

/// A message delivered to a group member.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupDelivery {
    /// Ring, topic and message metadata, as a plain subscriber gets them.
    pub delivery: Delivery,
    /// Delivered before, to a member that did not acknowledge it.
    pub redelivered: bool,
    /// How many times it has been delivered, this time included.
    pub deliveries: u32,
    /// Internal: delivered `max_deliveries` times already; goes to the
    /// dead-letter topic instead of the caller.
    dead_letter: bool,
}

/// Why an acknowledgement or a group operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// The message is not held by this member.
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// No ring of this subscription has that id.
    #[error("ring {0} is not read by this member")]
    UnknownRing(u64),
}

/// One ring's group state, matched to the subscriber's ring by id.
struct Member {
    ring_id: u64,
    cursor: GroupCursor,
}

/// A dead member's range this member took over: read through the dead
/// member's port, with a consumer of its own.
struct Taken {
    ring_id: u64,
    topic: u32,
    consumer: crate::ring::Consumer,
    cursor: GroupCursor,
}

/// The last message delivered (for the implicit acknowledgement).
#[derive(Clone, Copy)]
struct Last {
    /// In `taken` (else in `members`).
    taken: bool,
    /// Index there (checked against the ring id).
    i: usize,
    ring_id: u64,
    seq: u64,
}

/// A member of a consumer group (see the module docs).
pub struct GroupSubscriber {
    sub: Subscriber,
    client: Client,
    group: String,
    options: GroupOptions,
    /// Claim tables by topic id (of the subscription).
    tables: HashMap<u32, Arc<ClaimTable>>,
    /// In the order of the subscriber's rings.
    members: Vec<Member>,
    /// Round-robin position.
    next: usize,
    /// The last message delivered, for the implicit acknowledgement.
    last: Option<Last>,
    since_check: u32,
    /// Dead members' ranges taken over, read before new claims.
    taken: Vec<Taken>,
    /// The orphan generation last seen, by topic id.
    orphans_seen: HashMap<u32, u64>,
    /// Where dead letters go (`None`: `<topic>.dlq`).
    dead_letter_topic: Option<String>,
    /// Publishers to the dead-letter topics, made on first use.
    dlq: HashMap<String, super::Publisher>,
    dead_lettered: u64,
}

impl Client {
    /// Joins consumer group `group` of `topic_or_pattern`: the members of
    /// one group share its messages, each message going to one member;
    /// other groups and plain subscribers still get every message.
    ///
    /// # Errors
    /// An empty or invalid group name (`ErrorCode::BadTopicName`); a group
    /// whose members asked for another `max_deliveries`
    /// ([`ClientError::ConfigMismatch`]); as [`Client::subscriber`].
    pub fn subscriber_in_group(
        &self,
        topic_or_pattern: &str,
        group: &str,
        options: GroupOptions,
    ) -> Result<GroupSubscriber, ClientError> {
        if let Err(message) = validate_group_name(group) {
            return Err(ClientError::Control(ConnectionError::Refused {
                code: ErrorCode::BadTopicName,
                message,
            }));
        }
        if options.max_deliveries == 0 {
            return Err(ClientError::Control(ConnectionError::Refused {
                code: ErrorCode::InvalidConfig,
                message: "max_deliveries must be at least 1".into(),
            }));
        }
        let sub = self.subscriber(
            topic_or_pattern,
            SubscribeOptions {
                start: options.start,
                wait: options.wait,
            },
        )?;
        if sub.replaying() {
            // A journal replay reads every message for this subscriber
            // alone: it cannot be shared out through the claim table.
            return Err(ClientError::Control(ConnectionError::Refused {
                code: ErrorCode::InvalidConfig,
                message: format!(
                    "a group member cannot start in the journal of durable topic {topic_or_pattern:?}: \
                     start the group at Earliest or Latest, or replay with a plain subscriber"
                ),
            }));
        }
        let mut g = GroupSubscriber {
            sub,
            client: self.clone(),
            group: group.to_owned(),
            options,
            tables: HashMap::new(),
            members: Vec::new(),
            next: 0,
            last: None,
            since_check: 0,
            taken: Vec::new(),
            orphans_seen: HashMap::new(),
            dead_letter_topic: None,
            dlq: HashMap::new(),
            dead_lettered: 0,
        };
        // A plain topic: join its group now, so that a mismatch is an
        // error here and not at the first receive.
        if !crate::control::is_pattern(topic_or_pattern) {
            g.table(0)?;
        }
        g.sync()?;
        g.take_orphans();
        Ok(g)
    }
}

impl GroupSubscriber {
    /// The group's claim table for topic `topic` of the subscription.
    fn table(&mut self, topic: u32) -> Result<Arc<ClaimTable>, ClientError> {
        if let Some(t) = self.tables.get(&topic) {
            return Ok(t.clone());
        }
        let name = self
            .sub
            .topic_name(topic)
            .unwrap_or(self.sub.topic())
            .to_owned();
        let (reply, fds) = self.client.call(&Request::OpenGroup {
            topic: name.clone(),
            group: self.group.clone(),
            max_deliveries: self.options.max_deliveries,
            lease: self.sub.lease(),
        })?;
        let Reply::GroupOpened { .. } = reply else {
            return Err(unexpected(&reply));
        };
        let fd = fds.into_iter().next().ok_or_else(|| unexpected(&reply))?;
        let table =
            crate::shm::map_claim_table(&File::from(fd)).map_err(|source| ClientError::Shm {
                topic: name,
                source,
            })?;
        self.tables.insert(topic, table.clone());
        Ok(table)
    }

    /// Matches the group state to the subscriber's rings: joins new rings,
    /// forgets those that are gone.
    fn sync(&mut self) -> Result<(), ClientError> {
        let rings = &self.sub.fan_in.rings;
        let same = rings.len() == self.members.len()
            && rings
                .iter()
                .zip(&self.members)
                .all(|(r, m)| r.ring_id == m.ring_id);
        if same {
            return Ok(());
        }
        self.implicit_ack();
        let rings = &self.sub.fan_in.rings;
        let mut old: HashMap<u64, Member> =
            self.members.drain(..).map(|m| (m.ring_id, m)).collect();
        let ids: Vec<(u64, u32)> = rings.iter().map(|r| (r.ring_id, r.topic)).collect();
        let mut members = Vec::with_capacity(ids.len());
        let mut keep = Vec::with_capacity(ids.len());
        for (i, (ring_id, topic)) in ids.into_iter().enumerate() {
            if let Some(m) = old.remove(&ring_id) {
                members.push(m);
                keep.push(true);
                continue;
            }
            let table = self.table(topic)?;
            let consumer = &mut self.sub.fan_in.rings[i].consumer;
            match GroupCursor::join(table, ring_id, consumer, self.options.batch) {
                Ok(mut cursor) => {
                    cursor.set_max_deliveries(self.options.max_deliveries);
                    members.push(Member { ring_id, cursor });
                    keep.push(true);
                }
                Err(e) => {
                    eprintln!(
                        "ringbus: warning: group {:?} goes without ring {ring_id}: {e}",
                        self.group
                    );
                    keep.push(false);
                }
            }
        }
        // Rings that cannot be joined are not read at all (reading them
        // outside the group would deliver their messages twice).
        let mut k = keep.into_iter();
        self.sub.fan_in.rings.retain(|_| k.next().unwrap_or(false));
        self.members = members;
        self.next = 0;
        Ok(())
    }

    /// The cold part of a receive: new rings, a restarted broker, losses
    /// to report.
    #[cold]
    #[inline(never)]
    fn look_around(&mut self) -> Option<RecvError> {
        self.since_check = 0;
        // A member never replays (see `Client::subscriber_in_group`), so
        // the subscriber's cold path returns only losses, no message.
        let e = self.sub.look_around(&mut []).and_then(Result::err);
        if let Err(err) = self.sync() {
            eprintln!("ringbus: warning: group {:?}: {err}", self.group);
        }
        self.take_orphans();
        e
    }

    /// Takes the ranges dead members left, for every topic whose orphan
    /// generation moved.
    fn take_orphans(&mut self) {
        let moved: Vec<(u32, u64)> = self
            .tables
            .iter()
            .map(|(&topic, t)| (topic, t.orphan_generation()))
            .filter(|(topic, g)| self.orphans_seen.get(topic) != Some(g))
            .collect();
        for (topic, g) in moved {
            self.orphans_seen.insert(topic, g);
            loop {
                match self.take_orphan(topic) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => {
                        eprintln!("ringbus: warning: group {:?}: {e}", self.group);
                        break;
                    }
                }
            }
        }
    }

    /// Asks the broker for one orphaned range of topic `topic`; whether
    /// there was one.
    fn take_orphan(&mut self, topic: u32) -> Result<bool, ClientError> {
        let name = self
            .sub
            .topic_name(topic)
            .unwrap_or(self.sub.topic())
            .to_owned();
        let (reply, fds) = self.client.call(&Request::TakeOrphan {
            topic: name.clone(),
            group: self.group.clone(),
            lease: self.sub.lease(),
        })?;
        let Reply::Orphan { orphan } = reply else {
            return Err(unexpected(&reply));
        };
        let Some(o) = orphan else {
            return Ok(false);
        };
        let fd = fds.into_iter().next().ok_or_else(|| unexpected(&reply))?;
        let Some(ring) = self
            .sub
            .fan_in
            .rings
            .iter()
            .find(|r| r.ring_id == o.ring_id)
        else {
            eprintln!(
                "ringbus: warning: group {:?}: an orphaned range of ring {} this member does not read is left",
                self.group, o.ring_id
            );
            return Ok(true);
        };
        let region = ring.consumer.region().clone();
        let config = *region.config();
        let attach = |source| ClientError::Attach {
            topic: name.clone(),
            source,
        };
        let port = crate::shm::map_port(&File::from(fd), &config, o.ring_id).map_err(|source| {
            ClientError::Shm {
                topic: name.clone(),
                source,
            }
        })?;
        let mut consumer =
            crate::ring::Consumer::with_port(region, port, Start::Latest, false).map_err(attach)?;
        let table = self.table(topic)?;
        let mut cursor = GroupCursor::orphan(table, o.ring_id, &mut consumer, o.to);
        cursor.set_base_deliveries(o.deliveries);
        cursor.set_max_deliveries(self.options.max_deliveries);
        self.taken.push(Taken {
            ring_id: o.ring_id,
            topic,
            consumer,
            cursor,
        });
        Ok(true)
    }

    /// The next message of a range taken over, if any.
    #[cold]
    #[inline(never)]
    fn try_taken(&mut self, buf: &mut [u8]) -> Option<Result<GroupDelivery, RecvError>> {
        let mut i = 0;
        while i < self.taken.len() {
            let t = &mut self.taken[i];
            let (ring_id, topic) = (t.ring_id, t.topic);
            let wrap = |info| Delivery {
                ring_id,
                topic,
                info,
            };
            match t.cursor.try_recv_map(&mut t.consumer, buf, wrap) {
                Ok(c) => {
                    self.last = Some(Last {
                        taken: true,
                        i,
                        ring_id,
                        seq: c.seq,
                    });
                    return Some(Ok(GroupDelivery {
                        delivery: c.value,
                        redelivered: true,
                        deliveries: c.deliveries,
                        dead_letter: c.dead_letter,
                    }));
                }
                Err(RecvError::EndOfStream) => {
                    // Read and acknowledged: its port goes back (the
                    // consumer's drop frees the cursor; the broker sweeps).
                    self.taken.remove(i);
                }
                Err(RecvError::Empty) => i += 1,
                Err(e) => return Some(Err(e)),
            }
        }
        None
    }

    /// Receives the next message for this member into `buf`, without
    /// waiting. With `auto_ack`, first acknowledges the last one.
    ///
    /// # Errors
    /// As [`Subscriber::try_recv`].
    #[inline]
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<GroupDelivery, RecvError> {
        loop {
            let d = self.try_recv_any(buf)?;
            if !d.dead_letter {
                return Ok(d);
            }
            self.dead_letter(&d, buf);
        }
    }

    /// A message delivered `max_deliveries` times: published to the
    /// dead-letter topic (with its origin), then acknowledged. A
    /// dead-letter topic that cannot be published to is reported, and
    /// the message acknowledged all the same (the group moves on).
    #[cold]
    #[inline(never)]
    fn dead_letter(&mut self, d: &GroupDelivery, buf: &[u8]) {
        let topic = self
            .sub
            .topic_name(d.delivery.topic)
            .unwrap_or(self.sub.topic())
            .to_owned();
        let payload = &buf[..d.delivery.info.len.min(buf.len())];
        let record = DeadLetter {
            topic: topic.clone(),
            ring_id: d.delivery.ring_id,
            seq: d.delivery.info.seq,
            tag: d.delivery.info.tag,
            deliveries: d.deliveries - 1,
            payload: payload.to_vec(),
        }
        .encode();
        let dlq = self
            .dead_letter_topic
            .clone()
            .unwrap_or_else(|| format!("{topic}.dlq"));
        let r = match self.dlq.get_mut(&dlq) {
            Some(p) => p
                .publish(&record, d.delivery.info.tag)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            None => {
                let max = self
                    .sub
                    .topic_config(d.delivery.topic)
                    .map_or(record.len() as u32, |c| c.max_message_size)
                    .saturating_add(DeadLetter::HEADER as u32 + 256);
                let config = crate::ring::TopicConfig {
                    max_message_size: max.max(record.len() as u32),
                    capacity: 256,
                    mode: crate::ring::Mode::Backpressure,
                    max_subscribers: 16,
                };
                // A dead-letter topic that exists keeps its config.
                let made = self
                    .client
                    .publisher_existing(&dlq)
                    .or_else(|_| self.client.publisher(&dlq, config));
                match made {
                    Ok(mut p) => {
                        let r = p
                            .publish(&record, d.delivery.info.tag)
                            .map(|_| ())
                            .map_err(|e| e.to_string());
                        self.dlq.insert(dlq.clone(), p);
                        r
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        if let Err(e) = r {
            eprintln!(
                "ringbus: warning: group {:?}: message {} of ring {} could not be dead-lettered to {dlq:?}: {e}",
                self.group, d.delivery.info.seq, d.delivery.ring_id
            );
        }
        self.dead_lettered += 1;
        if let Some(t) = self.tables.get(&d.delivery.topic) {
            t.count_dead_letter();
        }
        self.last = None;
        let _ = self.ack(d);
    }

    /// Any message for this member, dead letters included.
    #[inline(always)]
    fn try_recv_any(&mut self, buf: &mut [u8]) -> Result<GroupDelivery, RecvError> {
        self.implicit_ack();
        self.since_check += 1;
        if self.since_check >= GENERATION_CHECK_EVERY {
            if let Some(e) = self.look_around() {
                return Err(e);
            }
        }
        if !self.taken.is_empty() {
            if let Some(r) = self.try_taken(buf) {
                return r;
            }
        }
        let n = self.members.len();
        let mut i = self.next;
        let mut ended = None;
        for _ in 0..n {
            if i >= n {
                i = 0;
            }
            let ring = &mut self.sub.fan_in.rings[i];
            let (ring_id, topic) = (ring.ring_id, ring.topic);
            let wrap = |info| Delivery {
                ring_id,
                topic,
                info,
            };
            match self.members[i]
                .cursor
                .try_recv_map(&mut ring.consumer, buf, wrap)
            {
                Ok(c) => {
                    self.next = i + 1;
                    self.last = Some(Last {
                        taken: false,
                        i,
                        ring_id,
                        seq: c.seq,
                    });
                    return Ok(GroupDelivery {
                        delivery: c.value,
                        redelivered: c.deliveries > 1,
                        deliveries: c.deliveries,
                        dead_letter: c.dead_letter,
                    });
                }
                Err(RecvError::Empty) => i += 1,
                Err(RecvError::EndOfStream) => {
                    ended = Some(i);
                    break;
                }
                Err(e) => {
                    self.next = i;
                    return Err(e);
                }
            }
        }
        if let Some(i) = ended {
            // A member that died holding messages of this ring may have
            // left them: they come first (the ring stays until they are
            // read, their port needs its data).
            self.take_orphans();
            if let Some(r) = self.try_taken(buf) {
                return r;
            }
            if self
                .taken
                .iter()
                .any(|t| t.ring_id == self.members[i].ring_id)
            {
                return Err(RecvError::Empty);
            }
            self.sub.fan_in.rings.remove(i);
            self.members.remove(i);
            self.next = 0;
            return Err(RecvError::EndOfStream);
        }
        Err(RecvError::Empty)
    }

    /// Waits for the next message (as the options' wait strategy says, up
    /// to `timeout`), then receives it into `buf`.
    ///
    /// # Errors
    /// [`RecvError::Timeout`]; as [`GroupSubscriber::try_recv`].
    pub fn recv_timeout(
        &mut self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> Result<GroupDelivery, RecvError> {
        self.recv_deadline(buf, Some(Instant::now() + timeout))
    }

    /// Waits for the next message (as the options' wait strategy says),
    /// then receives it into `buf`.
    ///
    /// # Errors
    /// As [`GroupSubscriber::try_recv`], never `Empty`.
    pub fn recv(&mut self, buf: &mut [u8]) -> Result<GroupDelivery, RecvError> {
        self.recv_deadline(buf, None)
    }

    /// Waits until `deadline` (`None`: for ever).
    ///
    /// A member waits by polling its claims: spinning first (spinning
    /// strategies), then yielding, then naps growing to 1 ms (a member
    /// does not sleep on its port's futex: the message it waits for may
    /// be claimed by another member).
    pub fn recv_deadline(
        &mut self,
        buf: &mut [u8],
        deadline: Option<Instant>,
    ) -> Result<GroupDelivery, RecvError> {
        let spin = match self.options.wait {
            WaitStrategy::Spin => u32::MAX,
            WaitStrategy::SpinYield | WaitStrategy::Block => 64,
            WaitStrategy::Adaptive { .. } => 4096,
        };
        let mut polls = 0u32;
        let mut nap = Duration::from_micros(20);
        loop {
            match self.try_recv(buf) {
                Err(RecvError::Empty) => {}
                r => return r,
            }
            polls = polls.saturating_add(1);
            if polls < spin {
                std::hint::spin_loop();
                if polls % 1024 != 0 {
                    continue;
                }
            } else if polls < spin.saturating_add(64) {
                std::thread::yield_now();
            } else {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(1));
                if let Some(e) = self.look_around() {
                    return Err(e);
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvError::Timeout);
            }
        }
    }

    /// With `auto_ack`, acknowledges the last message delivered.
    #[inline(always)]
    fn implicit_ack(&mut self) {
        let Some(l) = self.last.take() else {
            return;
        };
        if !self.options.auto_ack {
            return;
        }
        if l.taken {
            if let Some(t) = self
                .taken
                .iter_mut()
                .find(|t| t.ring_id == l.ring_id && t.cursor.holds(l.seq))
            {
                let _ = t.cursor.ack(l.seq);
            }
            return;
        }
        let m = match self.members.get_mut(l.i) {
            Some(m) if m.ring_id == l.ring_id => m,
            _ => match self.members.iter_mut().find(|m| m.ring_id == l.ring_id) {
                Some(m) => m,
                None => return,
            },
        };
        // Held by construction (delivered, not acknowledged since); only
        // this one: a message handed back before it stays unacknowledged.
        let _ = m.cursor.ack(l.seq);
    }

    /// The member state of ring `ring_id` that holds `seq` (a range
    /// taken over, or the member's own claims).
    fn member(&mut self, ring_id: u64, seq: u64) -> Result<&mut GroupCursor, GroupError> {
        if let Some(i) = self
            .taken
            .iter()
            .position(|t| t.ring_id == ring_id && t.cursor.holds(seq))
        {
            return Ok(&mut self.taken[i].cursor);
        }
        self.members
            .iter_mut()
            .find(|m| m.ring_id == ring_id)
            .map(|m| &mut m.cursor)
            .ok_or(GroupError::UnknownRing(ring_id))
    }

    /// Hands a delivered message back: it is delivered again, first, by
    /// the next receive (`redelivered`, with its delivery count), until it
    /// has been delivered `max_deliveries` times; it then goes to the
    /// dead-letter topic and the group moves on.
    ///
    /// # Errors
    /// As [`GroupSubscriber::ack`].
    pub fn nack(&mut self, d: &GroupDelivery) -> Result<(), GroupError> {
        self.nack_seq(d.delivery.ring_id, d.delivery.info.seq)
    }

    /// [`GroupSubscriber::nack`] by ring and sequence.
    ///
    /// # Errors
    /// As [`GroupSubscriber::ack`].
    pub fn nack_seq(&mut self, ring_id: u64, seq: u64) -> Result<(), GroupError> {
        self.forget_last(ring_id, seq, false);
        self.member(ring_id, seq)?.nack(seq)?;
        Ok(())
    }

    /// Sends dead letters to `topic` instead of `<topic>.dlq`.
    pub fn set_dead_letter_topic(&mut self, topic: &str) {
        self.dead_letter_topic = Some(topic.to_owned());
    }

    /// Messages this member sent to the dead-letter topic.
    pub fn dead_lettered(&self) -> u64 {
        self.dead_lettered
    }

    /// Acknowledges one delivered message (only it; with `auto_ack` off,
    /// messages may be acknowledged in any order).
    ///
    /// # Errors
    /// [`GroupError`]: not delivered to this member, or acknowledged
    /// already.
    pub fn ack(&mut self, d: &GroupDelivery) -> Result<(), GroupError> {
        self.ack_seq(d.delivery.ring_id, d.delivery.info.seq)
    }

    /// [`GroupSubscriber::ack`] by ring and sequence.
    ///
    /// # Errors
    /// As [`GroupSubscriber::ack`].
    pub fn ack_seq(&mut self, ring_id: u64, seq: u64) -> Result<(), GroupError> {
        self.forget_last(ring_id, seq, false);
        self.member(ring_id, seq)?.ack(seq)?;
        Ok(())
    }

    /// Acknowledges every message of `d`'s ring delivered to this member
    /// up to and including `d`.
    ///
    /// # Errors
    /// As [`GroupSubscriber::ack`].
    pub fn ack_through(&mut self, d: &GroupDelivery) -> Result<(), GroupError> {
        self.ack_through_seq(d.delivery.ring_id, d.delivery.info.seq)
    }

    /// [`GroupSubscriber::ack_through`] by ring and sequence.
    ///
    /// # Errors
    /// As [`GroupSubscriber::ack`].
    pub fn ack_through_seq(&mut self, ring_id: u64, seq: u64) -> Result<(), GroupError> {
        self.forget_last(ring_id, seq, true);
        self.member(ring_id, seq)?.ack_through(seq)?;
        Ok(())
    }

    /// An explicit acknowledgement covers the pending implicit one.
    fn forget_last(&mut self, ring_id: u64, seq: u64, through: bool) {
        if let Some(l) = self.last {
            let covers = if through { l.seq <= seq } else { l.seq == seq };
            if l.ring_id == ring_id && covers {
                self.last = None;
            }
        }
    }

    /// The group's name.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The plain subscription underneath (its topics, rings, counters).
    pub fn subscriber(&self) -> &Subscriber {
        &self.sub
    }

    /// Messages this member claimed, and acknowledged, over its rings.
    pub fn counts(&self) -> (u64, u64) {
        self.members.iter().fold((0, 0), |(c, a), m| {
            (c + m.cursor.claimed_total(), a + m.cursor.acked_total())
        })
    }
}

impl Drop for GroupSubscriber {
    /// A member that leaves holding messages (claimed and not read, or
    /// read and not acknowledged) hands them to the other members: its
    /// ports keep their cursors, and the broker hands the ranges on when
    /// the subscription's lease ends (`sub`'s drop, after this). Under
    /// the implicit acknowledgement, leaving acknowledges the last
    /// message delivered, as a next receive would (Kafka's close commits
    /// what was polled) — unless the thread is panicking: a member
    /// unwinding out of its handler did not finish that message.
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.implicit_ack();
        }
        for m in &self.members {
            if !m.cursor.holds_any() {
                continue;
            }
            if let Some(r) = self
                .sub
                .fan_in
                .rings
                .iter_mut()
                .find(|r| r.ring_id == m.ring_id)
            {
                r.consumer.keep_cursor();
            }
        }
        for t in &mut self.taken {
            if t.cursor.holds_any() {
                t.consumer.keep_cursor();
            }
        }
    }
}

impl std::fmt::Debug for GroupSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupSubscriber")
            .field("topic", &self.sub.topic())
            .field("group", &self.group)
            .finish()
    }
}

/// A message a group gave up on, as published to its dead-letter topic:
/// a header (`RBDLQ001`, ring id, sequence, tag, deliveries, topic
/// length; little-endian), the original topic's name, then the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The topic it was published on.
    pub topic: String,
    /// Its ring.
    pub ring_id: u64,
    /// Its sequence in that ring.
    pub seq: u64,
    /// Its tag.
    pub tag: u64,
    /// How many times it was delivered.
    pub deliveries: u32,
    /// Its payload.
    pub payload: Vec<u8>,
}

impl DeadLetter {
    const MAGIC: [u8; 8] = *b"RBDLQ001";
    /// Bytes before the topic name.
    pub const HEADER: usize = 40;

    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(Self::HEADER + self.topic.len() + self.payload.len());
        v.extend_from_slice(&Self::MAGIC);
        v.extend_from_slice(&self.ring_id.to_le_bytes());
        v.extend_from_slice(&self.seq.to_le_bytes());
        v.extend_from_slice(&self.tag.to_le_bytes());
        v.extend_from_slice(&self.deliveries.to_le_bytes());
        v.extend_from_slice(&(self.topic.len() as u32).to_le_bytes());
        v.extend_from_slice(self.topic.as_bytes());
        v.extend_from_slice(&self.payload);
        v
    }

    /// Parses a dead-letter record (`None`: not one).
    pub fn parse(b: &[u8]) -> Option<DeadLetter> {
        if b.len() < Self::HEADER || b[..8] != Self::MAGIC {
            return None;
        }
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or_default());
        let topic_len = u32_at(36) as usize;
        let end = Self::HEADER.checked_add(topic_len)?;
        let topic = std::str::from_utf8(b.get(Self::HEADER..end)?)
            .ok()?
            .to_owned();
        Some(DeadLetter {
            topic,
            ring_id: u64_at(8),
            seq: u64_at(16),
            tag: u64_at(24),
            deliveries: u32_at(32),
            payload: b[end..].to_vec(),
        })
    }
}
