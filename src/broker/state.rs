//! The broker's bookkeeping: topics, their rings and the subscribers'
//! ports on them, leases; and the handling of each (already decoded and
//! authenticated) request.
//!
//! Every segment the broker hands out is a sealed memfd it created and
//! mapped itself; it maps nothing a client could resize. Each ring has a
//! channel (a socket pair) to its publisher: the broker queues a port
//! there (`PortAdded`, with its descriptor) before it bumps the ring's
//! generation, so the publisher finds every port it must respect without
//! asking, and without the broker if it dies meanwhile.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::codec::encode_reply;
use crate::control::frame::{
    BrokerStats, ErrorCode, PortInfo, PortRef, Reply, Request, RingInfo, RingRef, TopicInfo,
    MAX_PORTS_LISTED, MAX_RINGS_PER_TOPIC, MAX_TOPICS_PER_PAGE,
};
use crate::control::segment::TopicSegment;
use crate::control::{socket, PeerCred};
use crate::ring::{Mode, Port, PortFlags, RingRegion, Start, TopicConfig, MAX_MAILBOXES};
use crate::shm::ShmError;

use super::config::{Action, Config};
use super::keeper;
use super::BrokerError;

mod group;
mod journal;
mod kept;
mod pattern;
mod restore;
mod sample;

pub(super) use kept::Kept;
use kept::Rec;

/// How long a restarted broker keeps a port made for a subscriber that
/// has not taken it over (the ring appeared while that subscriber was
/// not looking, or before it re-joined) before it gives up on it, and
/// waits for a subscription of the last broker to re-join (a [`Ghost`]):
/// the subscriber re-joins within moments if it lives.
const ORPHAN_GRACE: Duration = Duration::from_secs(10);

/// An error reply in the making.
type Refusal = (ErrorCode, String);

/// A subscriber's port on a ring, as the broker keeps it.
pub(super) struct PortRec {
    pub id: u64,
    /// The subscription it belongs to; `None` once that ended with its
    /// connection while the process lives (it may still be reading).
    pub lease: Option<u64>,
    /// Its subscriber's process, as the socket said (`SO_PEERCRED`).
    pub pid: u32,
    pub file: File,
    /// The broker's mapping (the memfd is sealed: it cannot shrink).
    pub port: Arc<Port>,
    pub flags: PortFlags,
    /// Handed to the subscriber (a port made for a ring that appeared after
    /// the subscription waits until the subscriber fetches the ring).
    pub delivered: bool,
    /// A pidfd of its subscriber, for the keeper.
    pub pidfd: Option<OwnedFd>,
    /// Since when nobody holds it: a broker restarted before its
    /// subscriber took it over (see [`ORPHAN_GRACE`]).
    pub orphaned_at: Option<Instant>,
}

impl PortRec {
    /// Whether its subscriber has it: handed over (`delivered`) and mapped
    /// (a consumer sets `adopted` when it takes a port). A broker killed
    /// between marking a port delivered (and telling its keeper) and
    /// sending the reply leaves one delivered that nobody took over: the
    /// next broker must hand it over again, not let it gate a
    /// back-pressure publisher from 0 while the subscriber reads through
    /// another port.
    pub fn taken_over(&self) -> bool {
        // Relaxed: the store in Consumer::with_port needs no partner; the
        // subscriber makes it before its next request, which we read
        // before asking (the socket orders them).
        self.delivered && self.port.adopted()
    }
}

pub(super) struct Ring {
    /// The broker's own mapping of the data segment, lobby and desk; the
    /// data writable only in the broker that created the ring (it stays
    /// writable after `seal_data`; a restarted broker maps it read-only).
    pub region: Arc<RingRegion>,
    pub topic: String,
    /// The data segment, read-write (the publisher's).
    pub data: File,
    pub lobby: File,
    /// The desk (the publisher's and the broker's only).
    pub desk: File,
    /// The data segment as subscribers get it (read-only, or read-write
    /// with `trusted_subscribers`); `None` until the publisher said it has
    /// mapped the ring (`RingReady`): only then is the ring listed.
    pub data_sub: Option<File>,
    /// The broker's end of the publisher's channel (non-blocking).
    pub channel: OwnedFd,
    pub publisher_pid: u32,
    /// The publisher's uid, whose limits the ring counts against.
    pub uid: u32,
    /// The publisher's lease; `None` once it ended.
    pub lease: Option<u64>,
    pub closed: bool,
    pub ports: Vec<PortRec>,
    pub next_port: u64,
    /// Port removals the channel had no room for: sent again each tick.
    pub pending_removals: Vec<u64>,
    /// Whether the publisher has said it mapped the ring (`RingReady`).
    pub ready: bool,
    /// A pidfd of its publisher, for the keeper.
    pub pidfd: Option<OwnedFd>,
    pub kept: Arc<Kept>,
}

/// A subscription of the last broker, taken back from the keeper, whose
/// subscriber has not re-joined yet. Rings that appear meanwhile get a
/// port at 0 for it, kept as an orphan for its process (as a port made
/// before the restart): without one, a back-pressure publisher would
/// not wait for it, and a ring that ended before it re-joined would be
/// gone, its messages lost without a word.
pub(super) struct Ghost {
    /// Its record in the keeper (`s/LEASE`, the last broker's lease).
    pub key: String,
    pub pid: u32,
    /// When this broker took it back (see [`ORPHAN_GRACE`]).
    pub since: Instant,
}

pub(super) struct Topic {
    pub config: Option<TopicConfig>,
    /// Declared in the config file or opened explicitly: kept even when
    /// unused.
    pub declared: bool,
    /// The uid of the client that created it (`None`: the config file, or
    /// a broker restarted since), which it counts against.
    pub creator: Option<u32>,
    pub segment: TopicSegment,
    /// The topic segment's descriptor (sealed: nobody else can write it).
    pub segment_fd: File,
    pub rings: BTreeMap<u64, Ring>,
    pub subscribers: u32,
    pub publisher_leases: u32,
    /// Subscriptions of the last broker not re-joined yet.
    pub ghosts: Vec<Ghost>,
}

impl Topic {
    /// Gives up the ghost subscriptions of process `pid`, and their
    /// records in the keeper.
    fn drop_ghosts_of(&mut self, pid: u32, kept: &Kept) {
        self.ghosts.retain(|g| {
            if g.pid == pid {
                kept.forget(&g.key);
            }
            g.pid != pid
        });
    }
}

enum LeaseKind {
    Publisher {
        ring_id: u64,
    },
    /// A subscription to one topic.
    Subscriber {
        /// Highest ring id the subscriber has been told about.
        delivered: u64,
        /// Its process.
        pid: u32,
        /// The pattern subscription that made it, if one did.
        parent: Option<u64>,
        /// Rings it holds with a port this broker does not know (a
        /// re-join): never listed to it.
        skip: Vec<u64>,
    },
    /// A pattern subscription (the lease's `topic` is the pattern).
    Pattern(pattern::PatternLease),
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
    pub next_lease: u64,
    pub next_ring_id: u64,
    pub stats: Counters,
    /// The pid the recorders of durable topics subscribe in (the
    /// keeper's; see `broker::recorder`): their ports are handed on from
    /// one broker's recorder to the next's.
    pub recorder_pid: Option<u32>,
    /// The counters of each durable topic's recorder, by topic (listed
    /// by `ListTopics`).
    pub recorders: HashMap<String, Arc<super::recorder::RecorderCounters>>,
    /// The recorders' connections (client ids).
    pub recorder_clients: Vec<u64>,
    kept: Arc<Kept>,
    /// The directory segment: its generation moves whenever a topic is
    /// created or a ring becomes readable (what pattern subscribers
    /// watch), and its descriptor (sealed: read-only to everyone else).
    directory: (File, TopicSegment),
    /// Consumer groups and their claim tables.
    groups: group::Groups,
}

fn dup(f: &File) -> Option<OwnedFd> {
    f.try_clone().ok().map(OwnedFd::from)
}

fn internal(what: impl std::fmt::Display) -> Refusal {
    (ErrorCode::Internal, what.to_string())
}

impl Ring {
    /// A new ring for a publisher of `pid`, its segments and channel made;
    /// returns it with the publisher's end of the channel.
    fn create(
        topic: &str,
        config: &TopicConfig,
        ring_id: u64,
        publisher: PeerCred,
        kept: Arc<Kept>,
    ) -> Result<(Ring, OwnedFd), ShmError> {
        let pid = publisher.pid;
        let seg = crate::shm::create_ring(config, ring_id, pid)?;
        let io = |what: &str| {
            let what = what.to_owned();
            move |source: std::io::Error| ShmError::Io { what, source }
        };
        let (mine, theirs) = socket::pair().map_err(io("creating the publisher's channel"))?;
        rustix::io::ioctl_fionbio(&mine, true)
            .map_err(|e| io("making the channel non-blocking")(e.into()))?;
        Ok((
            Ring {
                region: seg.region,
                topic: topic.to_owned(),
                data: seg.data,
                lobby: seg.lobby,
                desk: seg.desk,
                data_sub: None,
                channel: mine,
                publisher_pid: pid,
                uid: publisher.uid,
                lease: None,
                closed: false,
                ports: Vec::new(),
                next_port: 1,
                pending_removals: Vec::new(),
                ready: false,
                pidfd: keeper::pidfd(pid),
                kept,
            },
            theirs,
        ))
    }

    fn key(&self) -> String {
        format!("r/{}", self.ring_id())
    }

    fn port_key(&self, id: u64) -> String {
        format!("p/{}/{id}", self.ring_id())
    }

    /// Tells the keeper what this ring is now, with its descriptors.
    fn keep(&self) {
        let meta = Rec::default()
            .str(&self.topic)
            .u64(self.ring_id())
            .u32(self.publisher_pid)
            .u8(u8::from(self.ready))
            .u8(u8::from(self.closed))
            .u64(self.next_port)
            .config(self.region.config())
            .u32(self.uid);
        let mut fds = vec![
            self.data.as_fd(),
            self.lobby.as_fd(),
            self.desk.as_fd(),
            self.channel.as_fd(),
        ];
        let owner = self.pidfd.as_ref().map(|p| {
            fds.push(p.as_fd());
            fds.len() - 1
        });
        self.kept.put(&self.key(), &meta.0, &fds, owner);
    }

    /// Tells the keeper what port `p` is now.
    fn keep_port(&self, p: &PortRec) {
        let meta = Rec::default()
            .u64(self.ring_id())
            .u64(p.id)
            .u32(p.pid)
            .u8(u8::from(p.flags.mailbox))
            .u8(u8::from(p.flags.trusted))
            .u8(u8::from(p.delivered));
        let mut fds = vec![p.file.as_fd()];
        let owner = p.pidfd.as_ref().map(|f| {
            fds.push(f.as_fd());
            1
        });
        self.kept.put(&self.port_key(p.id), &meta.0, &fds, owner);
    }

    /// Hands port `id` to subscription `lease`: it is delivered now.
    fn deliver(&mut self, id: u64, lease: u64) -> Option<PortRef> {
        let i = self.ports.iter().position(|p| p.id == id)?;
        let p = &mut self.ports[i];
        p.lease = Some(lease);
        p.orphaned_at = None;
        let changed = !p.delivered;
        p.delivered = true;
        let r = PortRef {
            port_id: p.id,
            mailbox: p.flags.mailbox,
        };
        if changed {
            self.keep_port(&self.ports[i]);
        }
        Some(r)
    }

    /// A port of process `pid` nobody holds and nobody took over (made
    /// for it before a broker restart, or handed over in a reply that
    /// broker died before sending), to hand to a subscription of that
    /// process.
    fn orphan_of(&self, pid: u32) -> Option<u64> {
        self.ports
            .iter()
            .find(|p| p.pid == pid && p.lease.is_none() && !p.taken_over())
            .map(|p| p.id)
    }

    /// A port of a durable topic's recorder (made in the keeper's name,
    /// `pid`) that nobody holds: one that a dead broker's recorder had
    /// taken over, to hand to this broker's, cursor and all.
    fn recorder_orphan(&self, pid: u32) -> Option<u64> {
        self.ports
            .iter()
            .find(|p| p.pid == pid && p.lease.is_none())
            .map(|p| p.id)
    }

    /// Gives port `id` to subscription `lease` without handing it over
    /// yet (its ring is not listed yet).
    fn claim(&mut self, id: u64, lease: u64) {
        if let Some(p) = self.ports.iter_mut().find(|p| p.id == id) {
            p.lease = Some(lease);
            p.orphaned_at = None;
        }
    }

    /// Lets the keeper go of this ring and its ports: the broker has
    /// forgotten it.
    fn forget(&self) {
        for p in &self.ports {
            self.kept.forget(&self.port_key(p.id));
        }
        self.kept.forget(&self.key());
    }

    /// A listing of this ring for subscription `lease` with port `port`
    /// (handed over now), and its descriptors.
    fn listing(&mut self, port: Option<u64>, lease: u64) -> (RingRef, Vec<OwnedFd>) {
        let port = port.and_then(|id| self.deliver(id, lease));
        let rec = port.and_then(|p| self.ports.iter().find(|x| x.id == p.port_id));
        let fds = self.sub_fds(rec);
        (
            RingRef {
                ring_id: self.ring_id(),
                publisher_pid: self.publisher_pid,
                port,
            },
            fds,
        )
    }

    fn ring_id(&self) -> u64 {
        self.region.ring_id()
    }

    /// Sends `notice` (with `fd`) to the publisher without waiting.
    fn notify(&self, notice: &Reply, fd: Option<&File>) -> std::io::Result<()> {
        let frame = encode_reply(notice).map_err(std::io::Error::other)?;
        let fds: Vec<_> = fd.iter().map(|f| f.as_fd()).collect();
        socket::send_frame(self.channel.as_fd(), &frame, &fds)
    }

    /// A port for subscription `lease` (process `pid`; `None`: a ghost's,
    /// see [`Ring::add_ghost_port`]) with its cursor at `pos`: made,
    /// queued for the publisher, admitted (which may move the cursor
    /// forward, see [`RingRegion::admit_port`]).
    fn add_port(
        &mut self,
        lease: Option<u64>,
        pid: u32,
        pos: u64,
        trusted: bool,
    ) -> Result<&PortRec, Refusal> {
        let c = *self.region.config();
        if self.ports.len() >= c.max_subscribers as usize {
            return Err((
                ErrorCode::LimitExceeded,
                format!(
                    "all {} subscriber ports of ring {} are taken (the topic's max_subscribers)",
                    c.max_subscribers,
                    self.ring_id()
                ),
            ));
        }
        let id = self.next_port;
        self.next_port += 1;
        let (file, port) = crate::shm::create_port(&c, self.ring_id(), id, pos)
            .map_err(|e| internal(format!("cannot create a port: {e}")))?;
        let mailboxes = self.ports.iter().filter(|p| p.flags.mailbox).count();
        let flags = PortFlags {
            mailbox: !trusted && mailboxes < MAX_MAILBOXES,
            trusted,
        };
        let notice = Reply::PortAdded {
            port_id: id,
            mailbox: flags.mailbox,
            trusted,
        };
        self.notify(&notice, Some(&file)).map_err(|e| {
            internal(format!(
                "the publisher of ring {} does not take its subscribers' ports ({e}); try again",
                self.ring_id()
            ))
        })?;
        self.region
            .admit_port(&port)
            .map_err(|e| internal(format!("cannot admit a port: {e}")))?;
        self.ports.push(PortRec {
            id,
            lease,
            pid,
            file,
            port,
            flags,
            delivered: false,
            pidfd: keeper::pidfd(pid),
            orphaned_at: None,
        });
        let p = self.ports.last().expect("pushed above");
        self.keep_port(p);
        if id == 1 || self.next_port % 64 == 0 {
            // The next id, so that a restarted broker never reuses one.
            self.keep();
        }
        Ok(p)
    }

    /// A port at 0 for `ghost`, kept for its process as an orphan until
    /// it re-joins (or [`ORPHAN_GRACE`] after the ghost was taken back).
    fn add_ghost_port(&mut self, ghost: &Ghost, trusted: bool) -> Result<(), Refusal> {
        let id = self.add_port(None, ghost.pid, 0, trusted)?.id;
        if let Some(p) = self.ports.iter_mut().find(|p| p.id == id) {
            p.orphaned_at = Some(ghost.since);
        }
        Ok(())
    }

    /// Removes the ports `gone` selects: the publisher is told (or will be,
    /// once its channel has room), and the subscribers asleep on them woken.
    fn remove_ports(&mut self, gone: impl Fn(&PortRec) -> bool) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.ports.len() {
            if !gone(&self.ports[i]) {
                i += 1;
                continue;
            }
            let p = self.ports.swap_remove(i);
            crate::wait::wake_port(p.port.header());
            self.kept.forget(&self.port_key(p.id));
            self.pending_removals.push(p.id);
            n += 1;
        }
        if n > 0 {
            self.flush_removals();
        }
        n
    }

    /// Sends the port removals not sent yet.
    fn flush_removals(&mut self) {
        if self.pending_removals.is_empty() || self.closed {
            self.pending_removals.clear();
            return;
        }
        let mut sent = 0;
        for &id in &self.pending_removals {
            match self.notify(&Reply::PortRemoved { port_id: id }, None) {
                Ok(()) => sent += 1,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                // The publisher is gone: nobody to tell.
                Err(_) => {
                    sent = self.pending_removals.len();
                    break;
                }
            }
        }
        self.pending_removals.drain(..sent);
        if sent > 0 {
            // The publisher takes queued changes when the generation moves.
            let _ = self.region.bump_generation();
        }
    }

    /// The publisher is gone: subscribers drain the ring, then see end of
    /// stream; those asleep are woken to see it.
    fn close(&mut self) {
        if self.closed {
            return;
        }
        // The data segment's `closed` while our own mapping of it is
        // writable (a broker restarted after the seal has none), and each
        // subscriber's port's in any case.
        let _ = self.region.close();
        for p in &self.ports {
            p.port.close();
        }
        self.closed = true;
        self.pending_removals.clear();
        self.keep();
    }

    fn info(&self) -> RingInfo {
        let cursors: Vec<u64> = self
            .ports
            .iter()
            .map(|p| p.port.pos())
            .filter(|&p| p != crate::layout::CURSOR_FREE)
            .collect();
        let s = self.region.sizes();
        let (sampled, sampled_bytes) = sample::latest_sizes(&self.region);
        RingInfo {
            ring_id: self.ring_id(),
            publisher_pid: self.publisher_pid,
            closed: self.closed || self.region.is_closed(),
            next_seq: self.region.head(),
            cursors: cursors.len() as u32,
            min_cursor: cursors.iter().copied().min(),
            dropped: self.ports.iter().map(|p| p.port.dropped()).sum(),
            upstream_lost: self.region.upstream_lost(),
            bytes: s.data_len + s.lobby_len + self.ports.len() as u64 * s.port_len,
            sampled,
            sampled_bytes,
            ports: self
                .ports
                .iter()
                .take(MAX_PORTS_LISTED)
                .map(|p| {
                    let h = p.port.header();
                    let pos = p.port.pos();
                    // Relaxed: counts for display, published by the
                    // subscriber now and then.
                    PortInfo {
                        pid: p.pid,
                        pos: (pos != crate::layout::CURSOR_FREE).then_some(pos),
                        delivered: h.delivered.load(std::sync::atomic::Ordering::Relaxed),
                        filtered: h.filtered.load(std::sync::atomic::Ordering::Relaxed),
                        dropped: p.port.dropped(),
                    }
                })
                .collect(),
        }
    }

    /// Where a subscriber starting at `start` begins in this ring now.
    fn start_at(&self, start: Start) -> u64 {
        let head = self.region.head();
        match start {
            // Refused before (see `State::handle`).
            Start::Latest | Start::Time(_) => head,
            Start::Earliest => head.saturating_sub(u64::from(self.region.config().capacity)),
            Start::Sequence(s) => s,
        }
    }

    /// The descriptors of this ring and `port` as a subscriber gets them.
    fn sub_fds(&self, port: Option<&PortRec>) -> Vec<OwnedFd> {
        let mut fds = Vec::with_capacity(3);
        fds.extend(self.data_sub.as_ref().and_then(dup));
        fds.extend(dup(&self.lobby));
        fds.extend(port.and_then(|p| dup(&p.file)));
        fds
    }
}

impl State {
    pub fn new(data_dir: PathBuf, config: Config, kept: Arc<Kept>) -> Result<State, BrokerError> {
        let directory = TopicSegment::create().map_err(|e| BrokerError::Io {
            what: "creating the directory segment".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(State {
            directory,
            recorder_pid: None,
            recorders: HashMap::new(),
            recorder_clients: Vec::new(),
            kept,
            data_dir,
            config,
            broker_uid: rustix::process::geteuid().as_raw(),
            started: Instant::now(),
            topics: BTreeMap::new(),
            leases: HashMap::new(),
            next_lease: 1,
            // Ring ids never repeat across brokers, even one started
            // without the last one's records: a subscriber that lived
            // through both takes a ring id it has seen for one that ended.
            next_ring_id: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| (d.as_millis() as u64) << 8)
                .max(1),
            stats: Counters::default(),
            groups: group::Groups::default(),
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Creates the topics of the config file.
    pub fn declare_topics(&mut self) -> Result<(), BrokerError> {
        for decl in self.config.topics.clone() {
            let want = decl.config()?;
            let t = self
                .topic_entry(&decl.name, None)
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
            self.keep_topic(&decl.name);
        }
        Ok(())
    }

    /// The topic, created (without a config) if needed: by a client of
    /// uid `creator` (within the limits), or by the broker itself (`None`).
    fn topic_entry(&mut self, name: &str, creator: Option<u32>) -> Result<&mut Topic, Refusal> {
        if !self.topics.contains_key(name) {
            if let Some(uid) = creator {
                let limits = &self.config.limits;
                if self.topics.len() >= limits.max_topics as usize {
                    return Err((
                        ErrorCode::LimitExceeded,
                        format!(
                            "cannot create topic {name:?}: the broker already has {} topics (limits.max_topics)",
                            self.topics.len()
                        ),
                    ));
                }
                let mine = self
                    .topics
                    .values()
                    .filter(|t| t.creator == Some(uid))
                    .count();
                if uid != self.broker_uid && mine >= limits.max_topics_per_uid as usize {
                    return Err((
                        ErrorCode::LimitExceeded,
                        format!(
                            "cannot create topic {name:?}: uid {uid} created {mine} topics that exist (limits.max_topics_per_uid)"
                        ),
                    ));
                }
            }
            let (segment_fd, segment) = TopicSegment::create()
                .map_err(|e| internal(format!("cannot create topic {name:?}: {e}")))?;
            self.topics.insert(
                name.to_owned(),
                Topic {
                    config: None,
                    declared: false,
                    creator,
                    segment,
                    segment_fd,
                    rings: BTreeMap::new(),
                    subscribers: 0,
                    publisher_leases: 0,
                    ghosts: Vec::new(),
                },
            );
            // Pattern subscriptions that match take it up now, before any
            // publisher can write to it.
            self.on_new_topic(name);
        }
        Ok(self.topics.get_mut(name).expect("inserted above"))
    }

    /// Tells the keeper what topic `name` is now (its config, whether it
    /// is kept when unused).
    fn keep_topic(&self, name: &str) {
        let Some(t) = self.topics.get(name) else {
            return;
        };
        let mut rec = Rec::default().u8(u8::from(t.declared));
        rec = match &t.config {
            Some(c) => rec.u8(1).config(c),
            None => rec.u8(0),
        };
        self.kept.put(&format!("t/{name}"), &rec.0, &[], None);
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
    fn settle_config(&mut self, topic: &str, want: TopicConfig, uid: u32) -> Result<bool, Refusal> {
        want.validate().map_err(|e| {
            (
                ErrorCode::InvalidConfig,
                format!("invalid config for topic {topic:?}: {e}"),
            )
        })?;
        let existed = self.topics.contains_key(topic);
        let t = self.topic_entry(topic, Some(uid))?;
        match t.config {
            None => {
                t.config = Some(want);
                self.keep_topic(topic);
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
            Request::Hello { .. } => Err(internal("hello handled elsewhere")),
            Request::OpenTopic { topic, config } => self
                .check_acl(&topic, Action::Publish, &cred)
                .and_then(|_| self.lease_room(client))
                .and_then(|_| self.settle_config(&topic, config, cred.uid))
                .map(|created| {
                    // Created on purpose: kept when unused, like a declared one.
                    if let Some(t) = self.topics.get_mut(&topic) {
                        t.declared = true;
                    }
                    self.keep_topic(&topic);
                    (Reply::TopicOpened { config, created }, vec![])
                }),
            Request::AttachPublisher { topic, config } => {
                self.attach_publisher(client, &cred, &topic, config)
            }
            Request::RingReady { lease } => self.ring_ready(client, lease),
            Request::Subscribe {
                start: Start::Time(_),
                ..
            }
            | Request::SubscribePattern {
                start: Start::Time(_),
                ..
            } => Err((
                ErrorCode::InvalidConfig,
                "a start at a time is read from a durable topic's journal by the client \
                 (the broker places cursors by sequence number)"
                    .into(),
            )),
            Request::Subscribe { topic, start, held } => {
                self.subscribe(client, &cred, &topic, start, &held)
            }
            Request::FetchRings { lease, after } => self.fetch_rings(client, lease, after),
            Request::SubscribePattern {
                pattern,
                start,
                held,
            } => self.subscribe_pattern(client, &cred, &pattern, start, &held),
            Request::FetchMatches { lease } => self.fetch_matches(client, lease),
            Request::Detach { lease } => self.detach(client, lease),
            Request::ListTopics { offset } => Ok((self.list_topics(&cred, offset), vec![])),
            Request::Stats => Ok((Reply::Stats(self.broker_stats(clients)), vec![])),
            Request::JournalRings { topic, after } => self
                .check_acl(&topic, Action::Subscribe, &cred)
                .and_then(|()| self.journal_rings(&topic, after)),
            Request::JournalSegments {
                topic,
                ring_id,
                from_seq,
            } => self
                .check_acl(&topic, Action::Subscribe, &cred)
                .and_then(|()| self.journal_segments(&topic, ring_id, from_seq)),
            Request::OpenGroup {
                topic,
                group,
                max_deliveries,
                lease,
            } => self.open_group(client, &cred, &topic, &group, max_deliveries, lease),
            Request::TakeOrphan {
                topic,
                group,
                lease,
            } => self.take_orphan(client, &cred, &topic, &group, lease),
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
        self.lease_room(client)?;
        let config = match config {
            Some(c) => {
                self.settle_config(topic, c, cred.uid)?;
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
        let t = &self.topics[topic];
        let live = t.rings.values().filter(|r| !r.closed).count();
        if live >= max {
            return Err((
                ErrorCode::LimitExceeded,
                format!(
                    "topic {topic:?} already has {live} publishers (limits.max_publishers_per_topic = {max})"
                ),
            ));
        }
        // Closed rings stay until every subscriber has been told about
        // them (and a durable topic's until its recorder has them all); a
        // topic's rings must still fit in one reply (Rings, Topics).
        let kept = self.topics[topic].rings.len();
        if kept >= MAX_RINGS_PER_TOPIC {
            return Err((
                ErrorCode::LimitExceeded,
                format!(
                    "topic {topic:?} already has {kept} rings, the most it can hold: closed rings stay until every subscriber has fetched them (and a durable topic's recorder journaled them), and a subscriber has not fetched them yet (or the recorder not journaled them); retry when it has caught up or left"
                ),
            ));
        }
        self.ring_room(cred.uid, &config)?;
        let ring_id = self.next_ring_id;
        self.next_ring_id += 1;
        self.kept
            .put("n", &Rec::default().u64(self.next_ring_id).0, &[], None);
        let (mut ring, channel) =
            Ring::create(topic, &config, ring_id, *cred, self.kept.clone())
                .map_err(|e| internal(format!("cannot create a ring for topic {topic:?}: {e}")))?;
        // Every current subscriber gets a port at 0 before the publisher
        // can write: it misses nothing of the new ring, however fast the
        // publisher and however late the subscriber looks.
        let trusted = self.config.server.trusted_subscribers;
        let subscribers: Vec<(u64, u32)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.topic == topic)
            .filter_map(|(id, l)| match l.kind {
                LeaseKind::Subscriber { pid, .. } => Some((*id, pid)),
                LeaseKind::Publisher { .. } | LeaseKind::Pattern(_) => None,
            })
            .collect();
        for (lease, pid) in subscribers {
            if let Err((_, e)) = ring.add_port(Some(lease), pid, 0, trusted) {
                // Overwrite rings are read without a port if need be; a
                // back-pressure subscriber finds out when it fetches.
                eprintln!("ringbus: warning: no port on new ring {ring_id} for a subscriber: {e}");
            }
        }
        // And so does every subscriber of the last broker that has not
        // re-joined yet: its port waits for it.
        for g in self.topics.get(topic).map_or(&[][..], |t| &t.ghosts) {
            if let Err((_, e)) = ring.add_ghost_port(g, trusted) {
                eprintln!(
                    "ringbus: warning: no port on new ring {ring_id} for a subscriber yet to re-join: {e}"
                );
            }
        }
        let fds: Vec<OwnedFd> = [dup(&ring.data), dup(&ring.lobby), dup(&ring.desk)]
            .into_iter()
            .flatten()
            .chain(std::iter::once(channel))
            .collect();
        let lease = self.new_lease(client, topic, LeaseKind::Publisher { ring_id });
        ring.lease = Some(lease);
        ring.keep();
        let Some(t) = self.topics.get_mut(topic) else {
            return Err(internal(format!("topic {topic:?} vanished")));
        };
        t.rings.insert(ring_id, ring);
        t.publisher_leases += 1;
        Ok((
            Reply::PublisherAttached {
                lease,
                ring_id,
                config,
            },
            fds,
        ))
    }

    /// The publisher has mapped its ring: seal the data against every
    /// other writer, and list the ring to subscribers.
    fn ring_ready(&mut self, client: u64, lease: u64) -> Result<(Reply, Vec<OwnedFd>), Refusal> {
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
        let trusted = self.config.server.trusted_subscribers;
        let Some(t) = self.topics.get_mut(&l.topic) else {
            return Err(internal(format!("topic {:?} vanished", l.topic)));
        };
        let Some(r) = t.rings.get_mut(&ring_id) else {
            return Err(internal(format!("ring {ring_id} vanished")));
        };
        if r.data_sub.is_none() {
            let sub = if trusted {
                r.data.try_clone().map_err(|e| internal(e.to_string()))
            } else {
                crate::shm::seal_data(&r.data)
                    .and_then(|_| crate::shm::reopen_read_only(&r.data))
                    .map_err(|e| internal(format!("cannot seal ring {ring_id}: {e}")))
            }?;
            r.data_sub = Some(sub);
            r.ready = true;
            r.keep();
            // Subscribers see the new generation and fetch the ring;
            // pattern subscribers watch the directory.
            t.segment.bump();
            self.directory.1.bump();
        }
        Ok((Reply::Ready { lease }, vec![]))
    }

    fn subscribe(
        &mut self,
        client: u64,
        cred: &PeerCred,
        topic: &str,
        start: Start,
        held: &[(u64, u64)],
    ) -> Result<(Reply, Vec<OwnedFd>), Refusal> {
        self.check_acl(topic, Action::Subscribe, cred)?;
        self.lease_room(client)?;
        self.topic_entry(topic, Some(cred.uid))?;
        let (lease, rings, ring_fds) =
            self.open_subscription(client, cred, topic, start, held, None, true)?;
        let t = &self.topics[topic];
        let fds = dup(&t.segment_fd).into_iter().chain(ring_fds).collect();
        Ok((
            Reply::Subscribed {
                lease,
                config: t.config,
                rings,
            },
            fds,
        ))
    }

    /// Subscribes `client` to `topic` (which exists; access and the lease
    /// limit already checked): a lease (a child of pattern lease `parent`,
    /// if given), and a port on each ring: at `start` on the rings
    /// readable now, at 0 on those not listed yet. With `list`, the
    /// readable rings are returned with their descriptors and their ports
    /// handed over; without, they wait for `FetchRings`. `held`: the rings
    /// a re-joining subscriber reads already (see `Request::Subscribe`).
    #[allow(clippy::too_many_arguments)]
    fn open_subscription(
        &mut self,
        client: u64,
        cred: &PeerCred,
        topic: &str,
        start: Start,
        held: &[(u64, u64)],
        parent: Option<u64>,
        list: bool,
    ) -> Result<(u64, Vec<RingRef>, Vec<OwnedFd>), Refusal> {
        let Some(t) = self.topics.get_mut(topic) else {
            return Err(internal(format!("topic {topic:?} vanished")));
        };
        // A subscription of the last broker re-joins: the ports made for
        // it meanwhile are its process's orphans, handed over below.
        let ghost = t
            .ghosts
            .iter()
            .position(|g| g.pid == cred.pid && g.pid != 0)
            .map(|i| t.ghosts.swap_remove(i));
        let kind = LeaseKind::Subscriber {
            delivered: 0,
            pid: cred.pid,
            parent,
            skip: Vec::new(),
        };
        let lease = self.new_lease(client, topic, kind);
        if let Some(g) = ghost {
            self.kept.forget(&g.key);
        }
        self.keep_subscription(lease, topic, cred.pid);
        let trusted = self.config.server.trusted_subscribers;
        let recorder = self.recorder_pid.is_some_and(|p| p == cred.pid);
        let Some(t) = self.topics.get_mut(topic) else {
            return Err(internal(format!("topic {topic:?} vanished")));
        };
        t.subscribers += 1;
        let mut fds = Vec::new();
        let mut rings = Vec::new();
        let mut failed = None;
        let mut skip = Vec::new();
        // Rings are listed in id order, as `fetch_rings` lists them, and
        // the subscriber then asks for those after the last it holds: a
        // ring listed here past one whose publisher has not mapped it yet
        // would hide that one from it for good, while the port made for it
        // there held its publisher back. So from the first such ring on,
        // rings get their ports now and are listed by the next fetch.
        let mut listing = list;
        // The highest ring id the subscriber has been told about.
        let mut told = 0;
        for (id, r) in t.rings.iter_mut() {
            if let Some(&(_, port_id)) = held.iter().find(|(ring, _)| ring == id) {
                // A re-join: the subscriber reads this ring already. Its
                // port, if this broker knows it as its process's, is its
                // again; the ring is not listed.
                let own = r.ports.iter().any(|p| {
                    p.id == port_id
                        && p.pid == cred.pid
                        && p.pid != 0
                        && p.lease.is_none()
                        && p.delivered
                });
                if own {
                    r.deliver(port_id, lease);
                } else {
                    skip.push(*id);
                }
                if listing {
                    told = *id;
                }
                continue;
            }
            // A port made for this process before a broker restart, for a
            // ring it had not been told about: it reads the ring from there
            // (even a closed one: it drains it).
            let orphan = match recorder {
                true => r.recorder_orphan(cred.pid),
                false => r.orphan_of(cred.pid),
            };
            if r.closed && orphan.is_none() {
                if listing {
                    told = *id;
                }
                continue;
            }
            if r.data_sub.is_none() {
                // Its publisher has not mapped it yet, let alone written:
                // a port at 0 now, handed over when the ring is listed,
                // misses nothing of it.
                match orphan {
                    Some(p) => r.claim(p, lease),
                    None => {
                        if let Err((_, e)) = r.add_port(Some(lease), cred.pid, 0, trusted) {
                            eprintln!(
                                "ringbus: warning: no port on new ring {id} for a subscriber: {e}"
                            );
                        }
                    }
                }
                listing = false;
                continue;
            }
            let backpressure = r.region.config().mode == Mode::Backpressure;
            let port = match orphan {
                Some(p) => Some(p),
                None => match r.add_port(Some(lease), cred.pid, r.start_at(start), trusted) {
                    Ok(p) => Some(p.id),
                    // Every port of a back-pressure ring is taken: this
                    // subscriber cannot be served without losing messages.
                    Err((code, why)) if backpressure && code == ErrorCode::LimitExceeded => {
                        failed = Some((code, format!("topic {topic:?}: {why}")));
                        break;
                    }
                    // Its publisher takes no new port (it closed or stopped
                    // reading its channel): the ring is left out, not the
                    // subscription.
                    Err((_, why)) if backpressure => {
                        eprintln!("ringbus: warning: a subscriber of {topic:?} goes without ring {id}: {why}");
                        continue;
                    }
                    // An overwrite ring is read without a port.
                    Err(_) => None,
                },
            };
            if listing {
                let (listed, ring_fds) = r.listing(port, lease);
                rings.push(listed);
                fds.extend(ring_fds);
                told = *id;
            } else if let Some(p) = port {
                r.claim(p, lease);
            }
        }
        if let Some(LeaseKind::Subscriber {
            skip: s, delivered, ..
        }) = self.leases.get_mut(&lease).map(|l| &mut l.kind)
        {
            *s = skip;
            *delivered = told;
        }
        if let Some(e) = failed {
            self.end_lease(lease, true);
            return Err(e);
        }
        Ok((lease, rings, fds))
    }

    fn fetch_rings(
        &mut self,
        client: u64,
        lease: u64,
        after: u64,
    ) -> Result<(Reply, Vec<OwnedFd>), Refusal> {
        let trusted = self.config.server.trusted_subscribers;
        let l = self
            .leases
            .get_mut(&lease)
            .filter(|l| l.client == client)
            .ok_or_else(|| no_lease(lease))?;
        let LeaseKind::Subscriber {
            delivered,
            pid,
            skip,
            ..
        } = &mut l.kind
        else {
            return Err((
                ErrorCode::NotFound,
                format!("lease {lease} is not a topic subscription"),
            ));
        };
        let pid = *pid;
        let skip = skip.clone();
        let Some(t) = self.topics.get_mut(&l.topic) else {
            return Err(internal(format!("topic {:?} vanished", l.topic)));
        };
        let mut rings = Vec::new();
        let mut fds = Vec::new();
        for (id, r) in t.rings.range_mut(after.saturating_add(1)..) {
            if r.data_sub.is_none() {
                // Not mapped by its publisher yet: listed once it is.
                break;
            }
            if skip.contains(id) {
                // Held by the subscriber already, with a port this broker
                // does not know (see `open_subscription`).
                continue;
            }
            // The port made for us when the ring appeared (or for our
            // process before a broker restart), or, for a ring that
            // appeared before we subscribed but was listed after, a new one
            // from its first message (a publisher that wrote past what it
            // may overwrite costs a reported loss, never a silent one).
            let mine = r
                .ports
                .iter()
                .find(|p| p.lease == Some(lease))
                .map(|p| p.id);
            let port_id = match mine.or_else(|| r.orphan_of(pid)) {
                Some(id) => Some(id),
                None if !r.closed => r.add_port(Some(lease), pid, 0, trusted).ok().map(|p| p.id),
                None => None,
            };
            if port_id.is_none() && r.region.config().mode == Mode::Backpressure {
                // Not readable without a port (all taken, its publisher
                // takes no more, or it ended before this subscriber could
                // have one): left out, and tried again at the next fetch.
                continue;
            }
            let (listed, ring_fds) = r.listing(port_id, lease);
            rings.push(listed);
            fds.extend(ring_fds);
            if rings.len() == MAX_RINGS_PER_TOPIC {
                break;
            }
        }
        *delivered = (*delivered)
            .max(after)
            .max(rings.last().map_or(0, |r| r.ring_id));
        let config = t.config;
        self.collect_garbage();
        Ok((Reply::Rings { config, rings }, fds))
    }

    fn detach(&mut self, client: u64, lease: u64) -> Result<(Reply, Vec<OwnedFd>), Refusal> {
        if !self.leases.get(&lease).is_some_and(|l| l.client == client) {
            return Err(no_lease(lease));
        }
        self.end_lease(lease, true);
        self.collect_garbage();
        Ok((Reply::Detached { lease }, vec![]))
    }

    /// Refuses a new lease for a connection that holds as many as it may.
    fn lease_room(&self, client: u64) -> Result<(), Refusal> {
        let max = self.config.limits.max_leases_per_client;
        let held = self.leases.values().filter(|l| l.client == client).count();
        if held >= max as usize {
            return Err((
                ErrorCode::LimitExceeded,
                format!("this connection holds {held} leases (limits.max_leases_per_client): detach some first"),
            ));
        }
        Ok(())
    }

    /// Refuses a new ring of `config` to uid `uid` if it would exceed the
    /// uid's limits (the broker's own uid has none).
    fn ring_room(&self, uid: u32, config: &TopicConfig) -> Result<(), Refusal> {
        if uid == self.broker_uid {
            return Ok(());
        }
        let limits = &self.config.limits;
        let cost = |c: &TopicConfig| {
            let s = c.sizes();
            s.data_len + s.lobby_len + s.desk_len + u64::from(c.max_subscribers) * s.port_len
        };
        let (rings, bytes) = self
            .topics
            .values()
            .flat_map(|t| t.rings.values())
            .filter(|r| r.uid == uid && !r.closed)
            .fold((0u64, 0u64), |(n, b), r| {
                (n + 1, b + cost(r.region.config()))
            });
        if rings >= u64::from(limits.max_rings_per_uid) {
            return Err((
                ErrorCode::LimitExceeded,
                format!("uid {uid} publishes {rings} rings (limits.max_rings_per_uid)"),
            ));
        }
        let want = cost(config);
        if bytes.saturating_add(want) > limits.max_ring_bytes_per_uid {
            return Err((
                ErrorCode::LimitExceeded,
                format!(
                    "a ring of {want} bytes would take uid {uid}'s rings past limits.max_ring_bytes_per_uid ({} bytes, {bytes} in use)",
                    limits.max_ring_bytes_per_uid
                ),
            ));
        }
        Ok(())
    }

    /// Tells the keeper of subscription `lease` (process `pid`), so that a
    /// restarted broker makes ports for it until it re-joins (a [`Ghost`]).
    fn keep_subscription(&self, lease: u64, topic: &str, pid: u32) {
        let meta = Rec::default().str(topic).u32(pid);
        let pidfd = keeper::pidfd(pid);
        let fds: Vec<_> = pidfd.iter().map(|f| f.as_fd()).collect();
        let owner = pidfd.as_ref().map(|_| 0);
        self.kept.put(&format!("s/{lease}"), &meta.0, &fds, owner);
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

    /// Ends `lease`. A subscription given back (`detached`) takes all its
    /// ports with it; one whose connection merely ended keeps the ports its
    /// process took over, which may still read through them, until that
    /// process dies (`reap_pid`).
    fn end_lease(&mut self, lease: u64, detached: bool) {
        let Some(l) = self.leases.remove(&lease) else {
            return;
        };
        if let LeaseKind::Pattern(_) = l.kind {
            // With every subscription it made.
            let children: Vec<u64> = self
                .leases
                .iter()
                .filter(|(_, c)| {
                    matches!(c.kind, LeaseKind::Subscriber { parent: Some(p), .. } if p == lease)
                })
                .map(|(id, _)| *id)
                .collect();
            for c in children {
                self.end_lease(c, detached);
            }
            self.forget_group_lease(lease);
            return;
        }
        if let LeaseKind::Subscriber { parent, .. } = l.kind {
            // A member that left (its process lives on: one that died is
            // seen by `reap_pid`, one whose connection ended keeps its
            // ports until then).
            if detached {
                self.hand_on_lease(&l.topic, lease, parent);
            }
            self.forget_group_lease(lease);
        }
        if let LeaseKind::Subscriber { .. } = l.kind {
            self.kept.forget(&format!("s/{lease}"));
        }
        let Some(t) = self.topics.get_mut(&l.topic) else {
            return;
        };
        match l.kind {
            LeaseKind::Pattern(_) => {}
            LeaseKind::Publisher { ring_id } => {
                t.publisher_leases = t.publisher_leases.saturating_sub(1);
                if let Some(r) = t.rings.get_mut(&ring_id) {
                    // The publisher left (or its connection died with it).
                    r.close();
                    r.lease = None;
                }
            }
            LeaseKind::Subscriber { .. } => {
                t.subscribers = t.subscribers.saturating_sub(1);
                for r in t.rings.values_mut() {
                    // Ports it never took over would gate for nothing.
                    r.remove_ports(|p| p.lease == Some(lease) && (detached || !p.delivered));
                    for p in r.ports.iter_mut().filter(|p| p.lease == Some(lease)) {
                        p.lease = None;
                    }
                }
            }
        }
    }

    /// A client connection ended: end all its leases.
    pub fn client_gone(&mut self, client: u64) {
        let mine: Vec<(u64, bool)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.client == client)
            .map(|(id, l)| {
                // A process in another pid namespace shows as pid 0: its
                // death cannot be watched, so its connection's end is
                // taken for it.
                let unseen = matches!(l.kind, LeaseKind::Subscriber { pid: 0, .. })
                    || matches!(&l.kind, LeaseKind::Pattern(p) if p.pid() == 0);
                (*id, unseen)
            })
            .collect();
        for (lease, unseen) in mine {
            self.end_lease(lease, unseen);
        }
        self.groups.client_gone(client);
        self.collect_garbage();
    }

    /// Process `pid` has exited: close the rings it published and remove
    /// its ports everywhere, and its subscriptions yet to re-join.
    pub fn reap_pid(&mut self, pid: u32) {
        self.orphan_group_ports(pid);
        let mut reclaimed = 0;
        for (name, t) in &mut self.topics {
            t.drop_ghosts_of(pid, &self.kept);
            for (id, r) in t.rings.iter_mut() {
                if r.publisher_pid == pid && !r.closed {
                    r.close();
                    reclaimed += 1;
                    eprintln!(
                        "ringbus: publisher pid {pid} is gone: ring {id} of topic {name:?} closed"
                    );
                }
                let n = r.remove_ports(|p| p.pid == pid);
                if n > 0 {
                    reclaimed += n;
                    eprintln!(
                        "ringbus: subscriber pid {pid} is gone: removed {n} port(s) of ring {id} of topic {name:?}"
                    );
                }
            }
        }
        if reclaimed > 0 {
            self.stats.clients_reaped += 1;
        }
        self.collect_garbage();
    }

    /// Lets go of what the recorders of the last broker held (in the
    /// keeper's name, `pid`) on topics that are no longer durable: their
    /// ports would hold back the publishers forever.
    pub fn release_recorders(&mut self, pid: u32, durable: &[String]) {
        for (name, t) in &mut self.topics {
            if durable.contains(name) {
                continue;
            }
            t.drop_ghosts_of(pid, &self.kept);
            for (id, r) in t.rings.iter_mut() {
                let n = r.remove_ports(|p| p.pid == pid);
                if n > 0 {
                    eprintln!(
                        "ringbus: topic {name:?} is no longer durable: its recorder's port on ring {id} is let go"
                    );
                }
            }
        }
        self.collect_garbage();
    }

    /// Periodic pass: notice rings their publisher closed by itself; send
    /// port removals that found the channel full; remove ports nobody
    /// holds whose subscriber let go of them (a subscriber that left while
    /// the broker was down) or never took them over; give up on ghosts
    /// that did not re-join.
    pub fn sweep(&mut self) {
        self.sweep_groups();
        for t in self.topics.values_mut() {
            let kept = &self.kept;
            t.ghosts.retain(|g| {
                let waiting = g.since.elapsed() < ORPHAN_GRACE;
                if !waiting {
                    kept.forget(&g.key);
                }
                waiting
            });
            for r in t.rings.values_mut() {
                if !r.closed && r.region.is_closed() {
                    r.close();
                }
                r.remove_ports(|p| {
                    p.lease.is_none()
                        && (p.port.pos() == crate::layout::CURSOR_FREE
                            || p.orphaned_at.is_some_and(|t| t.elapsed() >= ORPHAN_GRACE))
                });
                r.flush_removals();
            }
        }
        self.collect_garbage();
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
        let recorder_pid = self.recorder_pid;
        let recorder_leases: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, l)| self.recorder_clients.contains(&l.client))
            .map(|(id, _)| *id)
            .collect();
        for (name, t) in &mut self.topics {
            let horizon = min_delivered
                .get(name.as_str())
                .copied()
                .unwrap_or(u64::MAX);
            // Mapped rings live on in the processes that map them. A ring
            // with a port its subscriber has yet to take over (a restarted
            // broker's) waits for it. A ring whose publisher left before
            // mapping it was never listed and never will be: nobody waits
            // for it, and subscribers whose fetch stopped at it (rings are
            // listed in order) look again (the bump below).
            //
            // A durable topic's ring stays until its recorder has taken
            // all of it: until then its journal may not exist yet, and a
            // subscriber replaying the topic learns of the ring (and where
            // it ends, to wait for the journal) only from this table
            // (`JournalRings`): it joins the live rings too late to be
            // given one whose publisher left.
            let mut unlisted = false;
            t.rings.retain(|id, r| {
                let gone = r.closed && r.lease.is_none();
                let never = gone && r.data_sub.is_none();
                let head = r.region.head();
                let unrecorded = r.ports.iter().any(|p| {
                    // A recorder's, or one a dead broker's recorder held.
                    let recorders = match p.lease {
                        Some(l) => recorder_leases.contains(&l),
                        None => recorder_pid == Some(p.pid),
                    };
                    let at = p.port.pos();
                    recorders && at != crate::layout::CURSOR_FREE && at < head
                });
                let keep = !never
                    && (!(gone && *id <= horizon)
                        || unrecorded
                        || r.ports.iter().any(|p| p.orphaned_at.is_some()));
                if !keep {
                    r.forget();
                }
                unlisted |= never;
                keep
            });
            if unlisted {
                t.segment.bump();
            }
            if !t.declared
                && t.rings.is_empty()
                && t.subscribers == 0
                && t.publisher_leases == 0
                && t.ghosts.is_empty()
            {
                dead_topics.push(name.clone());
            }
        }
        for name in dead_topics {
            self.topics.remove(&name);
            self.kept.forget(&format!("t/{name}"));
        }
    }

    fn topic_info(&self, name: &str, t: &Topic) -> TopicInfo {
        let rings = t.rings.values().map(Ring::info).collect::<Vec<_>>();
        TopicInfo {
            name: name.to_owned(),
            config: t.config,
            publishers: rings.iter().filter(|r| !r.closed).count() as u32,
            subscribers: t.subscribers,
            rings,
            journal: self.recorders.get(name).map(|c| c.snapshot()),
            groups: self.group_infos(name, t),
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
        // 280 bytes plus 63 per ring, 36 per port and 112 per group listed.
        let mut budget = crate::control::codec::MAX_FRAME - 64;
        for (name, t) in visible.iter().skip(offset as usize) {
            let ports: usize = t
                .rings
                .values()
                .map(|r| r.ports.len().min(MAX_PORTS_LISTED))
                .sum();
            let groups = self
                .groups
                .by_name
                .keys()
                .filter(|(topic, _)| topic == *name)
                .count()
                .min(crate::control::frame::MAX_GROUPS_LISTED);
            let cost = 340 + 63 * t.rings.len() + 36 * ports + 112 * groups;
            if topics.len() == MAX_TOPICS_PER_PAGE || (cost > budget && !topics.is_empty()) {
                break;
            }
            budget = budget.saturating_sub(cost);
            topics.push(self.topic_info(name, t));
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
                .map(|r| r.info().bytes)
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
