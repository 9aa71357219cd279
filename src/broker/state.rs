//! The broker's bookkeeping: topics, their rings, leases; and the handling
//! of each (already decoded and authenticated) request.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::control::frame::{
    BrokerStats, ErrorCode, Reply, Request, RingInfo, RingRef, TopicInfo, MAX_MAILBOXES_PER_RING,
    MAX_RINGS_PER_TOPIC, MAX_TOPICS_PER_PAGE,
};
use crate::control::segment::TopicSegment;
use crate::control::PeerCred;
use crate::ring::TopicConfig;

use super::config::{Action, Config};
use super::ringfile::RingFile;
use super::BrokerError;

/// An error reply in the making.
type Refusal = (ErrorCode, String);

pub(super) struct Ring {
    /// File stem in the data directory: `TOPIC@RINGID`.
    pub name: String,
    /// Its files (read-write), accessed with pread/pwrite only.
    pub file: RingFile,
    /// The data file as subscribers get it: opened read-only, or
    /// read-write with `trusted_subscribers`.
    pub data_sub: File,
    /// The publisher's lease; `None` for a ring re-adopted after a restart.
    pub lease: Option<u64>,
    pub closed: bool,
    /// Read-only subscribers' mailboxes (sealed memfds): id, the
    /// subscription's lease, the file.
    pub mailboxes: Vec<(u64, u64, File)>,
}

pub(super) struct Topic {
    pub config: Option<TopicConfig>,
    /// Declared in the config file or opened explicitly: kept even when
    /// unused.
    pub declared: bool,
    pub segment: TopicSegment,
    pub segment_ro: File,
    pub rings: BTreeMap<u64, Ring>,
    pub subscribers: u32,
    pub publisher_leases: u32,
}

enum LeaseKind {
    Publisher {
        ring_id: u64,
    },
    /// `delivered`: highest ring id the subscriber has been told about;
    /// `pid`: its process; `reserved`: cursors claimed for it on
    /// back-pressure rings it has not fetched yet, as (ring id, slot).
    Subscriber {
        delivered: u64,
        pid: u32,
        reserved: Vec<(u64, u32)>,
    },
}

struct Lease {
    client: u64,
    topic: String,
    kind: LeaseKind,
}

#[derive(Default)]
pub(super) struct Counters {
    pub frames_received: u64,
    pub frames_rejected: u64,
    pub permission_denied: u64,
    pub clients_reaped: u64,
}

pub(super) struct State {
    pub data_dir: PathBuf,
    pub config: Config,
    broker_uid: u32,
    started: Instant,
    pub topics: BTreeMap<String, Topic>,
    leases: HashMap<u64, Lease>,
    next_lease: u64,
    pub next_ring_id: u64,
    next_mailbox: u64,
    pub stats: Counters,
}

fn dup(f: &File) -> Option<OwnedFd> {
    f.try_clone().ok().map(OwnedFd::from)
}

impl State {
    pub fn new(data_dir: PathBuf, config: Config) -> State {
        State {
            data_dir,
            config,
            broker_uid: rustix::process::geteuid().as_raw(),
            started: Instant::now(),
            topics: BTreeMap::new(),
            leases: HashMap::new(),
            next_lease: 1,
            next_ring_id: 1,
            next_mailbox: 1,
            stats: Counters::default(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn segment_path(&self, topic: &str) -> PathBuf {
        self.data_dir.join(format!("{topic}.topic"))
    }

    /// Creates the topics of the config file (or checks adopted ones).
    pub fn declare_topics(&mut self) -> Result<(), BrokerError> {
        for decl in self.config.topics.clone() {
            let want = decl.config()?;
            let t = self
                .topic_entry(&decl.name, true)
                .map_err(|(_, m)| BrokerError::Io {
                    what: format!("declaring topic {:?}", decl.name),
                    source: std::io::Error::other(m),
                })?;
            t.declared = true;
            match t.config {
                None => t.config = Some(want),
                Some(have) if have != want => eprintln!(
                    "ringbus: warning: topic {:?} has live rings with {have}, the config file declares {want}; keeping the live config",
                    decl.name
                ),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The topic, created (without a config) if needed.
    fn topic_entry(&mut self, name: &str, ignore_limit: bool) -> Result<&mut Topic, Refusal> {
        if !self.topics.contains_key(name) {
            if !ignore_limit && self.topics.len() >= self.config.limits.max_topics as usize {
                return Err((
                    ErrorCode::LimitExceeded,
                    format!(
                        "cannot create topic {name:?}: the broker already has {} topics (limits.max_topics)",
                        self.topics.len()
                    ),
                ));
            }
            let topic = self.create_topic_segment(name).map_err(|e| {
                (
                    ErrorCode::Internal,
                    format!("cannot create topic {name:?}: {e}"),
                )
            })?;
            self.topics.insert(name.to_owned(), topic);
        }
        Ok(self.topics.get_mut(name).expect("inserted above"))
    }

    pub(super) fn create_topic_segment(&self, name: &str) -> std::io::Result<Topic> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.segment_path(name);
        // Never truncate a file someone may still map: unlink, then create.
        let _ = std::fs::remove_file(&path);
        let rw = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let segment = TopicSegment::create(&rw).map_err(std::io::Error::other)?;
        let segment_ro = File::open(&path)?;
        Ok(Topic {
            config: None,
            declared: false,
            segment,
            segment_ro,
            rings: BTreeMap::new(),
            subscribers: 0,
            publisher_leases: 0,
        })
    }

    fn check_acl(&mut self, topic: &str, action: Action, cred: &PeerCred) -> Result<(), Refusal> {
        if self.config.allows(topic, action, cred, self.broker_uid) {
            return Ok(());
        }
        self.stats.permission_denied += 1;
        Err((
            ErrorCode::PermissionDenied,
            format!(
                "permission denied: uid {} (gid {}) may not {action} topic {topic:?}",
                cred.uid, cred.gid
            ),
        ))
    }

    /// Checks `want` and sets or compares the topic's config.
    fn settle_config(&mut self, topic: &str, want: TopicConfig) -> Result<bool, Refusal> {
        want.validate().map_err(|e| {
            (
                ErrorCode::InvalidConfig,
                format!("invalid config for topic {topic:?}: {e}"),
            )
        })?;
        let existed = self.topics.contains_key(topic);
        let t = self.topic_entry(topic, false)?;
        match t.config {
            None => {
                t.config = Some(want);
                Ok(!existed)
            }
            Some(have) if have == want => Ok(false),
            Some(have) => Err((
                ErrorCode::ConfigMismatch,
                format!("topic {topic:?} exists with {have}; the request asked for {want}"),
            )),
        }
    }

    pub fn handle(
        &mut self,
        client: u64,
        cred: PeerCred,
        req: Request,
        clients: u32,
    ) -> (Reply, Vec<OwnedFd>) {
        let r = match req {
            Request::Hello { .. } => Err((ErrorCode::Internal, "hello handled elsewhere".into())),
            Request::OpenTopic { topic, config } => self
                .check_acl(&topic, Action::Publish, &cred)
                .and_then(|_| self.settle_config(&topic, config))
                .map(|created| {
                    // Created on purpose: kept when unused, like a declared one.
                    if let Some(t) = self.topics.get_mut(&topic) {
                        t.declared = true;
                    }
                    (Reply::TopicOpened { config, created }, vec![])
                }),
            Request::AttachPublisher { topic, config } => {
                self.attach_publisher(client, &cred, &topic, config)
            }
            Request::Subscribe { topic } => self.subscribe(client, &cred, &topic),
            Request::FetchRings { lease, after } => self.fetch_rings(client, lease, after),
            Request::FetchMailboxes { lease } => self.fetch_mailboxes(client, lease),
            Request::Detach { lease } => self.detach(client, lease),
            Request::ListTopics { offset } => Ok((self.list_topics(&cred, offset), vec![])),
            Request::Stats => Ok((Reply::Stats(self.broker_stats(clients)), vec![])),
        };
        match r {
            Ok((reply, fds)) if fds.len() == reply.fd_count() => (reply, fds),
            Ok(_) => (
                Reply::error(
                    ErrorCode::Internal,
                    "the broker could not duplicate a ring descriptor (out of descriptors?)",
                ),
                vec![],
            ),
            Err((code, msg)) => (Reply::error(code, msg), vec![]),
        }
    }

    fn attach_publisher(
        &mut self,
        client: u64,
        cred: &PeerCred,
        topic: &str,
        config: Option<TopicConfig>,
    ) -> Result<(Reply, Vec<OwnedFd>), Refusal> {
        self.check_acl(topic, Action::Publish, cred)?;
        let config = match config {
            Some(c) => {
                self.settle_config(topic, c)?;
                c
            }
            None => self
                .topics
                .get(topic)
                .and_then(|t| t.config)
                .ok_or_else(|| {
                    (
                        ErrorCode::NotFound,
                        format!("topic {topic:?} does not exist yet: give a config to create it"),
                    )
                })?,
        };
        let max = self.config.limits.max_publishers_per_topic as usize;
        let live = self.topics[topic]
            .rings
            .values()
            .filter(|r| !r.closed)
            .count();
        if live >= max {
            return Err((
                ErrorCode::LimitExceeded,
                format!(
                    "topic {topic:?} already has {live} publishers (limits.max_publishers_per_topic = {max})"
                ),
            ));
        }
        // Closed rings stay until every subscriber has been told about
        // them; a topic's rings must still fit in one reply (Rings, Topics).
        let kept = self.topics[topic].rings.len();
        if kept >= MAX_RINGS_PER_TOPIC {
            return Err((
                ErrorCode::LimitExceeded,
                format!(
                    "topic {topic:?} already has {kept} rings, the most it can hold: closed rings stay until every subscriber has fetched them, and a subscriber has not fetched them yet; retry when it has caught up or left"
                ),
            ));
        }
        let ring_id = self.next_ring_id;
        self.next_ring_id += 1;
        let name = format!("{topic}@{ring_id:016x}");
        let trusted = self.config.server.trusted_subscribers;
        let ring = create_ring(&self.data_dir, &name, &config, ring_id, cred.pid, trusted)
            .map_err(|e| {
                (
                    ErrorCode::Internal,
                    format!("cannot create a ring for topic {topic:?}: {e}"),
                )
            })?;
        let fds = [dup(ring.file.data()), dup(ring.file.ctrl())]
            .into_iter()
            .flatten()
            .collect();
        if config.mode == crate::ring::Mode::Backpressure {
            // Every current subscriber gets a cursor at 0 before the
            // publisher can write: it misses nothing of the new ring, however
            // fast the publisher and however late the subscriber looks.
            for l in self.leases.values_mut().filter(|l| l.topic == topic) {
                if let LeaseKind::Subscriber { pid, reserved, .. } = &mut l.kind {
                    if let Some(slot) = ring.file.reserve_cursor(*pid, 0) {
                        reserved.push((ring_id, slot));
                    }
                }
            }
        }
        let lease = self.new_lease(client, topic, LeaseKind::Publisher { ring_id });
        let Some(t) = self.topics.get_mut(topic) else {
            return Err((ErrorCode::Internal, format!("topic {topic:?} vanished")));
        };
        t.rings.insert(
            ring_id,
            Ring {
                lease: Some(lease),
                ..ring
            },
        );
        t.publisher_leases += 1;
        // Subscribers see the new generation and fetch the ring.
        t.segment.bump();
        Ok((
            Reply::PublisherAttached {
                lease,
                ring_id,
                config,
            },
            fds,
        ))
    }

    fn subscribe(
        &mut self,
        client: u64,
        cred: &PeerCred,
        topic: &str,
    ) -> Result<(Reply, Vec<OwnedFd>), Refusal> {
        self.check_acl(topic, Action::Subscribe, cred)?;
        let t = self.topic_entry(topic, false)?;
        let delivered = t.rings.keys().next_back().copied().unwrap_or(0);
        let kind = LeaseKind::Subscriber {
            delivered,
            pid: cred.pid,
            reserved: Vec::new(),
        };
        let lease = self.new_lease(client, topic, kind);
        let mailboxes = !self.config.server.trusted_subscribers;
        let Some(t) = self.topics.get_mut(topic) else {
            return Err((ErrorCode::Internal, format!("topic {topic:?} vanished")));
        };
        let mut fds: Vec<OwnedFd> = dup(&t.segment_ro).into_iter().collect();
        let mut rings = Vec::new();
        for (id, r) in t.rings.iter_mut().filter(|(_, r)| !r.closed) {
            let mailbox = mailboxes
                .then(|| new_mailbox(r, lease, &mut self.next_mailbox))
                .flatten();
            rings.push(RingRef {
                ring_id: *id,
                publisher_pid: r.file.publisher_pid(),
                cursor: None,
                mailbox: mailbox.is_some(),
            });
            fds.extend(dup(&r.data_sub));
            fds.extend(dup(r.file.ctrl()));
            fds.extend(mailbox);
        }
        let config = t.config;
        t.subscribers += 1;
        Ok((
            Reply::Subscribed {
                lease,
                config,
                rings,
            },
            fds,
        ))
    }

    fn fetch_rings(
        &mut self,
        client: u64,
        lease: u64,
        after: u64,
    ) -> Result<(Reply, Vec<OwnedFd>), Refusal> {
        let l = self
            .leases
            .get_mut(&lease)
            .filter(|l| l.client == client)
            .ok_or_else(|| no_lease(lease))?;
        let LeaseKind::Subscriber {
            delivered,
            reserved,
            ..
        } = &mut l.kind
        else {
            return Err((
                ErrorCode::NotFound,
                format!("lease {lease} is a publisher lease, not a subscription"),
            ));
        };
        let Some(t) = self.topics.get_mut(&l.topic) else {
            return Err((ErrorCode::Internal, format!("topic {:?} vanished", l.topic)));
        };
        let mailboxes = !self.config.server.trusted_subscribers;
        let mut rings = Vec::new();
        let mut fds = Vec::new();
        for (id, r) in t.rings.range_mut(after.saturating_add(1)..) {
            let mailbox = (mailboxes && !r.closed)
                .then(|| new_mailbox(r, lease, &mut self.next_mailbox))
                .flatten();
            // Hand over the cursor reserved on this ring, if any: from now
            // on the subscriber owns it (and frees it when it drops).
            let cursor = reserved
                .iter()
                .position(|(rid, _)| rid == id)
                .map(|i| reserved.swap_remove(i).1);
            rings.push(RingRef {
                ring_id: *id,
                publisher_pid: r.file.publisher_pid(),
                cursor,
                mailbox: mailbox.is_some(),
            });
            fds.extend(dup(&r.data_sub));
            fds.extend(dup(r.file.ctrl()));
            fds.extend(mailbox);
        }
        *delivered = (*delivered)
            .max(after)
            .max(rings.last().map_or(0, |r| r.ring_id));
        let config = t.config;
        self.collect_garbage();
        Ok((Reply::Rings { config, rings }, fds))
    }

    fn fetch_mailboxes(&self, client: u64, lease: u64) -> Result<(Reply, Vec<OwnedFd>), Refusal> {
        let l = self
            .leases
            .get(&lease)
            .filter(|l| l.client == client)
            .ok_or_else(|| no_lease(lease))?;
        let LeaseKind::Publisher { ring_id } = l.kind else {
            return Err((
                ErrorCode::NotFound,
                format!("lease {lease} is a subscription, not a publisher lease"),
            ));
        };
        let Some(r) = self
            .topics
            .get(&l.topic)
            .and_then(|t| t.rings.get(&ring_id))
        else {
            return Err((ErrorCode::Internal, format!("ring {ring_id} vanished")));
        };
        let ids = r.mailboxes.iter().map(|m| m.0).collect();
        let fds = r.mailboxes.iter().filter_map(|m| dup(&m.2)).collect();
        Ok((Reply::Mailboxes { ids }, fds))
    }

    fn detach(&mut self, client: u64, lease: u64) -> Result<(Reply, Vec<OwnedFd>), Refusal> {
        if !self.leases.get(&lease).is_some_and(|l| l.client == client) {
            return Err(no_lease(lease));
        }
        self.end_lease(lease);
        self.collect_garbage();
        Ok((Reply::Detached { lease }, vec![]))
    }

    fn new_lease(&mut self, client: u64, topic: &str, kind: LeaseKind) -> u64 {
        let id = self.next_lease;
        self.next_lease += 1;
        self.leases.insert(
            id,
            Lease {
                client,
                topic: topic.to_owned(),
                kind,
            },
        );
        id
    }

    fn end_lease(&mut self, lease: u64) {
        let Some(l) = self.leases.remove(&lease) else {
            return;
        };
        let Some(t) = self.topics.get_mut(&l.topic) else {
            return;
        };
        match l.kind {
            LeaseKind::Publisher { ring_id } => {
                t.publisher_leases = t.publisher_leases.saturating_sub(1);
                if let Some(r) = t.rings.get_mut(&ring_id) {
                    // The publisher left (or its connection died with it):
                    // subscribers drain the ring, then see end of stream.
                    r.file.close();
                    r.closed = true;
                    r.lease = None;
                    r.mailboxes.clear();
                }
            }
            LeaseKind::Subscriber { pid, reserved, .. } => {
                t.subscribers = t.subscribers.saturating_sub(1);
                // Reservations never handed over would gate forever.
                for (ring_id, slot) in reserved {
                    if let Some(r) = t.rings.get(&ring_id) {
                        r.file.release_reserved_cursor(slot, pid, 0);
                    }
                }
                // Its publishers stop writing its mailboxes.
                for r in t.rings.values_mut() {
                    let before = r.mailboxes.len();
                    r.mailboxes.retain(|m| m.1 != lease);
                    if r.mailboxes.len() != before {
                        r.file.bump_mailbox_generation();
                    }
                }
            }
        }
    }

    /// A client connection ended: end all its leases.
    pub fn client_gone(&mut self, client: u64) {
        let mine: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, l)| l.client == client)
            .map(|(id, _)| *id)
            .collect();
        for lease in mine {
            self.end_lease(lease);
        }
        self.collect_garbage();
    }

    /// Process `pid` has exited: close the rings it published and free its
    /// back-pressure cursors everywhere.
    pub fn reap_pid(&mut self, pid: u32) {
        let mut reclaimed = 0;
        for (name, t) in &mut self.topics {
            for r in t.rings.values_mut() {
                if r.file.publisher_pid() == pid && !r.closed {
                    r.file.close();
                    r.closed = true;
                    reclaimed += 1;
                    eprintln!(
                        "ringbus: publisher pid {pid} is gone: ring {} of topic {name:?} closed",
                        r.name
                    );
                }
                let n = r.file.release_cursors_of(pid);
                if n > 0 {
                    reclaimed += n;
                    eprintln!(
                        "ringbus: subscriber pid {pid} is gone: freed {n} cursor(s) on ring {}",
                        r.name
                    );
                }
            }
        }
        for l in self.leases.values_mut() {
            if let LeaseKind::Subscriber {
                pid: p, reserved, ..
            } = &mut l.kind
            {
                if *p == pid {
                    reserved.clear(); // freed above by release_cursors_of
                }
            }
        }
        if reclaimed > 0 {
            self.stats.clients_reaped += 1;
        }
        self.collect_garbage();
    }

    /// Periodic pass: notice rings their publisher closed by itself.
    pub fn sweep(&mut self) -> Vec<u32> {
        for t in self.topics.values_mut() {
            for r in t.rings.values_mut() {
                if !r.closed && r.file.is_closed() {
                    r.closed = true;
                }
            }
        }
        self.collect_garbage();
        Vec::new()
    }

    /// Removes closed rings every subscriber has been told about, and
    /// unused undeclared topics.
    fn collect_garbage(&mut self) {
        let mut min_delivered: HashMap<&str, u64> = HashMap::new();
        for l in self.leases.values() {
            if let LeaseKind::Subscriber { delivered, .. } = l.kind {
                let e = min_delivered.entry(l.topic.as_str()).or_insert(u64::MAX);
                *e = (*e).min(delivered);
            }
        }
        let mut dead_topics = Vec::new();
        for (name, t) in &mut self.topics {
            let horizon = min_delivered
                .get(name.as_str())
                .copied()
                .unwrap_or(u64::MAX);
            let gone: Vec<u64> = t
                .rings
                .iter()
                .filter(|(id, r)| r.closed && r.lease.is_none() && **id <= horizon)
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                if let Some(r) = t.rings.remove(&id) {
                    // Mapped rings live on in the processes that map them.
                    let (d, c) = crate::shm::ring_paths(&self.data_dir, &r.name);
                    let _ = std::fs::remove_file(d);
                    let _ = std::fs::remove_file(c);
                }
            }
            if !t.declared && t.rings.is_empty() && t.subscribers == 0 && t.publisher_leases == 0 {
                dead_topics.push(name.clone());
            }
        }
        for name in dead_topics {
            self.topics.remove(&name);
            let _ = std::fs::remove_file(self.segment_path(&name));
        }
    }

    fn topic_info(name: &str, t: &Topic) -> TopicInfo {
        let rings = t
            .rings
            .iter()
            .map(|(id, r)| {
                let cursors = r.file.cursors();
                RingInfo {
                    ring_id: *id,
                    publisher_pid: r.file.publisher_pid(),
                    closed: r.closed || r.file.is_closed(),
                    next_seq: r.file.head(),
                    cursors: cursors.len() as u32,
                    min_cursor: cursors.iter().map(|c| c.0).min(),
                    dropped: r.file.dropped(),
                    bytes: r.file.bytes(),
                }
            })
            .collect::<Vec<_>>();
        TopicInfo {
            name: name.to_owned(),
            config: t.config,
            publishers: rings.iter().filter(|r| !r.closed).count() as u32,
            subscribers: t.subscribers,
            rings,
        }
    }

    fn list_topics(&self, cred: &PeerCred, offset: u32) -> Reply {
        let visible: Vec<(&String, &Topic)> = self
            .topics
            .iter()
            .filter(|(n, _)| {
                self.config
                    .allows(n, Action::Subscribe, cred, self.broker_uid)
                    || self
                        .config
                        .allows(n, Action::Publish, cred, self.broker_uid)
            })
            .collect();
        let mut topics = Vec::new();
        // Keep the page under the frame limit: a topic costs at most about
        // 280 bytes plus 41 per ring.
        let mut budget = crate::control::codec::MAX_FRAME - 64;
        for (name, t) in visible.iter().skip(offset as usize) {
            let cost = 280 + 41 * t.rings.len();
            if topics.len() == MAX_TOPICS_PER_PAGE || (cost > budget && !topics.is_empty()) {
                break;
            }
            budget = budget.saturating_sub(cost);
            topics.push(Self::topic_info(name, t));
        }
        Reply::Topics {
            total: visible.len() as u32,
            offset,
            topics,
        }
    }

    fn broker_stats(&self, clients: u32) -> BrokerStats {
        let rings = self.topics.values().map(|t| t.rings.len() as u32).sum();
        BrokerStats {
            pid: std::process::id(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            clients,
            topics: self.topics.len() as u32,
            rings,
            publishers: self
                .leases
                .values()
                .filter(|l| matches!(l.kind, LeaseKind::Publisher { .. }))
                .count() as u32,
            subscribers: self
                .leases
                .values()
                .filter(|l| matches!(l.kind, LeaseKind::Subscriber { .. }))
                .count() as u32,
            frames_received: self.stats.frames_received,
            frames_rejected: self.stats.frames_rejected,
            permission_denied: self.stats.permission_denied,
            clients_reaped: self.stats.clients_reaped,
            ring_bytes: self
                .topics
                .values()
                .flat_map(|t| t.rings.values())
                .map(|r| r.file.bytes())
                .sum(),
        }
    }
}

/// The refusal for a lease this connection does not hold.
fn no_lease(lease: u64) -> Refusal {
    (
        ErrorCode::NotFound,
        format!("no lease {lease} on this connection"),
    )
}

/// A mailbox of ring `r` for subscription `lease`, recorded on the ring
/// (its publisher is told through the ring's mailbox generation); `None`
/// when the ring has its fill of mailboxes or one cannot be made: that
/// subscriber then polls the ring slots, which is slower but loses nothing.
fn new_mailbox(r: &mut Ring, lease: u64, next: &mut u64) -> Option<OwnedFd> {
    if r.mailboxes.len() >= MAX_MAILBOXES_PER_RING {
        return None;
    }
    let file = match crate::shm::create_mailbox_memfd(r.file.config(), r.file.ring_id()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "ringbus: warning: no mailbox for a subscriber of ring {} (it polls the ring): {e}",
                r.name
            );
            return None;
        }
    };
    let fd = dup(&file)?;
    let id = *next;
    *next += 1;
    r.mailboxes.push((id, lease, file));
    r.file.bump_mailbox_generation();
    Some(fd)
}

/// Opens a ring's data file as it is handed to subscribers: read-only, or
/// read-write for trusted subscribers (`server.trusted_subscribers`).
pub(super) fn open_for_subscribers(path: &Path, trusted: bool) -> Result<File, String> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(trusted)
        .open(path)
        .map_err(|e| {
            let how = if trusted { "read-write" } else { "read-only" };
            format!("opening {} {how}: {e}", path.display())
        })
}

/// Creates a ring's files (removed again if anything fails).
fn create_ring(
    dir: &Path,
    name: &str,
    config: &TopicConfig,
    ring_id: u64,
    pid: u32,
    trusted: bool,
) -> Result<Ring, String> {
    let rc = *config;
    let (data_rw, ctrl) =
        crate::shm::create_ring_files(dir, name, &rc, ring_id, pid).map_err(|e| e.to_string())?;
    let (data_path, ctrl_path) = crate::shm::ring_paths(dir, name);
    let made = open_for_subscribers(&data_path, trusted)
        .and_then(|data_sub| Ok((data_sub, RingFile::open(data_rw, ctrl)?)));
    match made {
        Ok((data_sub, file)) => Ok(Ring {
            name: name.to_owned(),
            file,
            data_sub,
            lease: None,
            closed: false,
            mailboxes: Vec::new(),
        }),
        Err(e) => {
            let _ = std::fs::remove_file(data_path);
            let _ = std::fs::remove_file(ctrl_path);
            Err(e)
        }
    }
}
