//! The ringbus scenarios over the real thing. Two ways to reach the rings:
//!
//! * through the **embedded broker** (the default, what applications do):
//!   the parent and each child connect with [`Client`], the publisher is a
//!   [`Publisher`] and the subscriber a [`Subscriber`];
//! * **direct** (`--direct`): the parent creates the rings as memfds with
//!   [`ringbus::shm::create_ring_memfd`], the children inherit and map them
//!   with [`ringbus::shm::map_ring`], and both sides use the bare
//!   [`Producer`] / [`Consumer`] — the ring's own cost, without the client
//!   layer.
//!
//! Ping-pong uses two rings (A: parent → child, B: child → parent) and the
//! child echoes with receive + publish; streaming has the parent publish and
//! every child subscribe. Waits are the library's own; the deadline handed
//! to them is refreshed every few hundred messages, on the timing side
//! right after a send (while the message is in flight), so a dead peer
//! ends a run with an error instead of a hang and no clock read lands on a
//! measured message's path.

use std::fs::File;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::clock::Ticks;
use super::driver::{drive_pingpong, Budget, Pacer, Receipts};
use super::params::{Params, SideResult};
use super::scenario::{Route, BATCH, FILTER_KEEPS_ONE_IN, MANY_RINGS};
use super::shared::{Patience, Region, STALL};
use ringbus::client::{Client, Publisher, SubscribeOptions, Subscriber, TopicConfig};
use ringbus::ring::{
    Consumer, MessageInfo, Mode, PortFlags, Producer, PublishError, RecvError, RingRegion, Start,
};
use ringbus::shm::{create_port, create_ring, map_port, map_ring, Access};
use ringbus::wait::WaitStrategy;

/// Refresh the receive deadline every this many messages: rarely, since
/// each refresh is a clock read near a measured message (every 256 put one
/// on 0.4 % of round trips, inside the p99.9). A deadline that goes stale
/// (a slow run: 2^16 blocking round trips can outlast `STALL`) only makes
/// a receive time out once, which re-checks the peer and renews it.
const DEADLINE_EVERY: u64 = 1 << 16;

/// How the processes of one measurement reach its rings (in the child's
/// spec).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Link {
    /// Inherited memfds, per ring: data, lobby, desk, one port per reader.
    Direct {
        /// Descriptor numbers, per ring.
        fds: Vec<Vec<i32>>,
    },
    /// Through the embedded broker.
    Broker {
        /// Its socket.
        socket: String,
        /// The measurement's topics (ping-pong: A then B).
        topics: Vec<String>,
        /// How the child subscribes to A.
        route: Route,
    },
}

/// The ring configuration of the bench's rings for `p` and `mode`.
pub fn config(p: &Params, mode: Mode, subscribers: u32) -> Result<TopicConfig> {
    let c = TopicConfig {
        max_message_size: u32::try_from(p.size).context("message size")?,
        capacity: p.capacity,
        mode,
        max_subscribers: subscribers.max(1),
    };
    c.validate().context("ring configuration for the bench")?;
    Ok(c)
}

fn topic_config(c: &TopicConfig) -> TopicConfig {
    TopicConfig {
        max_message_size: c.max_message_size,
        capacity: c.capacity,
        mode: c.mode,
        max_subscribers: c.max_subscribers,
    }
}

/// A ring's memfds, created by the parent (direct link): data, lobby,
/// desk, and one port per reader.
pub struct RingFiles {
    data: File,
    lobby: File,
    desk: File,
    ports: Vec<File>,
    /// The creator's own mapping (the parent's side).
    region: Option<Arc<RingRegion>>,
}

impl RingFiles {
    /// Creates a ring (pre-faulted, sealed memfds) with a port for each of
    /// `readers`, their cursors at 0.
    pub fn create(cfg: &TopicConfig, id: u64, readers: u32) -> Result<RingFiles> {
        let seg =
            create_ring(cfg, id, std::process::id()).context("creating a ring for the bench")?;
        let ports = (0..readers)
            .map(|i| {
                create_port(cfg, id, u64::from(i) + 1, 0)
                    .map(|(f, _)| f)
                    .context("creating a port")
            })
            .collect::<Result<_>>()?;
        Ok(RingFiles {
            data: seg.data,
            lobby: seg.lobby,
            desk: seg.desk,
            ports,
            region: Some(seg.region),
        })
    }

    /// The descriptors, to inherit.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        let mut fds = vec![self.data.as_fd(), self.lobby.as_fd(), self.desk.as_fd()];
        fds.extend(self.ports.iter().map(|f| f.as_fd()));
        fds
    }

    /// The raw descriptor numbers, for the child's spec: data, lobby, desk,
    /// then the ports.
    pub fn raw(&self) -> Vec<i32> {
        use std::os::fd::AsRawFd;
        let mut raw = vec![
            self.data.as_raw_fd(),
            self.lobby.as_raw_fd(),
            self.desk.as_raw_fd(),
        ];
        raw.extend(self.ports.iter().map(AsRawFd::as_raw_fd));
        raw
    }

    /// Adopts descriptors a parent passed (child side).
    fn adopt(raw: &[i32]) -> Result<RingFiles> {
        let own = |fd: i32| -> Result<File> {
            ensure!(fd >= 0, "bad ring descriptor {fd}");
            // SAFETY: borrowed for one fcntl, which fails with EBADF
            // (touching nothing) if the descriptor is not open.
            let b = unsafe { BorrowedFd::borrow_raw(fd) };
            rustix::io::fcntl_getfd(b)
                .with_context(|| format!("ring descriptor {fd} from the parent is not open"))?;
            // SAFETY: open (checked above) and passed to this process for
            // this ring only; nothing else here owns it.
            Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
        };
        ensure!(raw.len() >= 3, "a ring needs at least three descriptors");
        Ok(RingFiles {
            data: own(raw[0])?,
            lobby: own(raw[1])?,
            desk: own(raw[2])?,
            ports: raw[3..].iter().map(|&fd| own(fd)).collect::<Result<_>>()?,
            region: None,
        })
    }

    fn map(&self, access: Access, cfg: &TopicConfig) -> Result<Arc<RingRegion>> {
        let desk = (access == Access::ReadWrite).then_some(&self.desk);
        map_ring(&self.data, &self.lobby, desk, access, Some(cfg)).context("mapping a bench ring")
    }

    fn sender(&self, cfg: &TopicConfig, p: &Params) -> Result<Sender> {
        let region = match &self.region {
            Some(r) => r.clone(),
            None => self.map(Access::ReadWrite, cfg)?,
        };
        let id = region.ring_id();
        let mut producer = Producer::new(region).context("bench publisher")?;
        producer.set_timestamps(p.timestamps);
        let flags = PortFlags {
            mailbox: p.mailboxes && !p.trusted,
            trusted: p.trusted,
        };
        for f in &self.ports {
            let port = map_port(f, cfg, id).context("mapping a reader's port")?;
            producer
                .add_port(port, flags)
                .context("adding a reader's port")?;
        }
        Ok(Sender::Direct(producer))
    }

    /// The receiving end of reader `reader` (its own port).
    fn receiver(
        &self,
        cfg: &TopicConfig,
        wait: WaitStrategy,
        p: &Params,
        reader: usize,
    ) -> Result<Receiver> {
        let access = if p.trusted {
            Access::TrustedSubscriber
        } else {
            Access::Subscriber
        };
        let region = self.map(access, cfg)?;
        let id = region.ring_id();
        let file = self
            .ports
            .get(reader)
            .with_context(|| format!("no port for reader {reader}"))?;
        let port = map_port(file, cfg, id).context("mapping the reader's port")?;
        let mailbox = p.mailboxes && !p.trusted;
        let consumer = Consumer::with_port(region, port, Start::Sequence(0), mailbox)
            .context("bench subscriber")?;
        Ok(Receiver::Direct(consumer, wait))
    }
}

/// The publishing end of a ring.
pub enum Sender {
    /// A bare producer.
    Direct(Producer),
    /// A broker client's publisher.
    Broker(Publisher),
}

/// What a [`Sender`] publishes through: the bare ring's producer or the
/// client's publisher, whose publishing methods have the same shape.
trait Publishes {
    fn try_publish(&mut self, msg: &[u8], tag: u64) -> Result<u64, PublishError>;
    fn publish_timeout(&mut self, msg: &[u8], tag: u64, t: Duration) -> Result<u64, PublishError>;
}

macro_rules! publishes {
    ($t:ty) => {
        impl Publishes for $t {
            #[inline(always)]
            fn try_publish(&mut self, msg: &[u8], tag: u64) -> Result<u64, PublishError> {
                <$t>::try_publish(self, msg, tag)
            }
            fn publish_timeout(
                &mut self,
                msg: &[u8],
                tag: u64,
                t: Duration,
            ) -> Result<u64, PublishError> {
                <$t>::publish_timeout(self, msg, tag, t)
            }
        }
    };
}
publishes!(Producer);
publishes!(Publisher);

/// Publishes `msg` with `tag`, waiting for room (back-pressure) with the
/// library's own `publish` wait, bounded by [`STALL`]. The fast path reads
/// no clock.
#[inline(always)]
fn publish_on(p: &mut impl Publishes, msg: &[u8], tag: u64) -> Result<u64> {
    match p.try_publish(msg, tag) {
        Ok(seq) => Ok(seq),
        Err(PublishError::Full) => p
            .publish_timeout(msg, tag, STALL)
            .map_err(|e| anyhow!("publishing: {e} (is the subscriber alive?)")),
        Err(e) => Err(anyhow!("publishing: {e}")),
    }
}

impl Sender {
    /// Publishes `msg` (see [`publish_on`]).
    #[inline(always)]
    fn publish(&mut self, msg: &[u8]) -> Result<u64> {
        self.publish_tagged(msg, 0)
    }

    /// Publishes `msg` with `tag` (see [`publish_on`]).
    #[inline(always)]
    fn publish_tagged(&mut self, msg: &[u8], tag: u64) -> Result<u64> {
        match self {
            Sender::Direct(p) => publish_on(p, msg, tag),
            Sender::Broker(p) => publish_on(p, msg, tag),
        }
    }

    /// Publishes `msgs` in order with one `try_publish_batch` while they
    /// fit, one bounded `publish` (see [`publish_on`]) when none does.
    fn publish_batch(&mut self, msgs: &[Vec<u8>]) -> Result<()> {
        let mut rest = msgs;
        while let Some(first) = rest.first() {
            let done = match self {
                Sender::Direct(p) => p.try_publish_batch(rest, 0),
                Sender::Broker(p) => p.try_publish_batch(rest, 0),
            };
            rest = match done {
                Ok(seqs) => &rest[(seqs.end - seqs.start) as usize..],
                Err(PublishError::Full) => {
                    self.publish(first)?;
                    &rest[1..]
                }
                Err(e) => bail!("publishing a batch: {e}"),
            };
        }
        Ok(())
    }

    /// Writes `k` messages of `size` bytes in place, in one loan of `k`
    /// slots (`loan_many`: no copy from a buffer of the caller's), message
    /// `i` carrying `first + i` in its first 8 bytes; commits them with one
    /// head update. The wait for room is bounded by [`STALL`] (its clock
    /// read is once per batch).
    fn publish_loaned(&mut self, k: usize, size: usize, first: u64) -> Result<()> {
        let loans = match self {
            Sender::Direct(p) => p.loan_many_timeout(k, size, STALL),
            Sender::Broker(p) => p.loan_many_timeout(k, size, STALL),
        };
        let mut loans =
            loans.map_err(|e| anyhow!("loaning {k} slots: {e} (is the subscriber alive?)"))?;
        for (n, slot) in (first..).zip(loans.iter_mut()) {
            slot[..8].copy_from_slice(&n.to_le_bytes());
            slot[8..].fill(0x3C);
        }
        loans.commit(0);
        Ok(())
    }
}

/// The receiving end of a ring.
// The bare consumer stays inline: boxed, every measured receive would go
// through one more pointer than an application's does.
#[allow(clippy::large_enum_variant)]
pub enum Receiver {
    /// A bare consumer and its wait strategy.
    Direct(Consumer, WaitStrategy),
    /// A broker client's subscriber (its options hold the wait strategy).
    Broker(Box<Subscriber>),
}

impl Receiver {
    /// Messages published and not yet read.
    fn backlog(&self) -> u64 {
        match self {
            Receiver::Direct(c, _) => c.backlog(),
            Receiver::Broker(s) => s.backlog(),
        }
    }

    /// Messages the subscriber's filter turned down.
    fn filtered_total(&self) -> u64 {
        match self {
            Receiver::Direct(..) => 0,
            Receiver::Broker(s) => s.filtered_total(),
        }
    }

    /// Receives into `buf` and hands the message's info to `f` by
    /// reference. Copying a received `MessageInfo` whole measured ~30 ns
    /// later per hop than reading the fields needed (DESIGN.md, "Where the
    /// ping-pong nanoseconds go"), so the loops take what they need here.
    #[inline(always)]
    fn recv<R>(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
        f: impl FnOnce(&MessageInfo) -> R,
    ) -> Result<R, RecvError> {
        match self {
            Receiver::Direct(c, wait) => c.recv_deadline(buf, *wait, Some(deadline)).map(|i| f(&i)),
            Receiver::Broker(s) => s.recv_deadline(buf, Some(deadline)).map(|d| f(&d.info)),
        }
    }
}

/// The parent's ends of a measurement.
// Made once per measurement and unpacked by value before the timed loop, so
// the size difference costs nothing, where a box would be one more step.
#[allow(clippy::large_enum_variant)]
pub enum ParentEnds {
    /// Ping-pong: publish on A, receive on B; with the publishers on A
    /// that never publish ([`Route::ManyRings`]), kept to the end.
    PingPong(Sender, Receiver, Vec<Sender>),
    /// Streaming: publish.
    Stream(Sender),
}

/// Topic names of measurement `n` (unique within the embedded broker); a
/// pattern's topic A is one level deeper, the one topic under `bench.mN.a`.
pub fn topics(n: u64, pingpong: bool, route: Route) -> Vec<String> {
    let mut t = vec![match route {
        Route::Pattern => format!("bench.m{n}.a.one"),
        _ => format!("bench.m{n}.a"),
    }];
    if pingpong {
        t.push(format!("bench.m{n}.b"));
    }
    t
}

fn subscribe(client: &Client, topic: &str, wait: WaitStrategy, route: Route) -> Result<Receiver> {
    let options = SubscribeOptions {
        start: Start::Earliest,
        wait,
    };
    // `bench.mN.a.>`, which matches topic `bench.mN.a.one` alone.
    let pattern;
    let name = match route {
        Route::Pattern => {
            let (prefix, _) = topic
                .rsplit_once('.')
                .context("a bench topic has segments")?;
            pattern = format!("{prefix}.>");
            pattern.as_str()
        }
        _ => topic,
    };
    let mut s = client
        .subscriber(name, options)
        .with_context(|| format!("subscribing to {name}"))?;
    if route == Route::Filtered {
        s.filter_tags(FILTER_KEEPS_ONE_IN - 1, 0)
            .context("setting the bench's tag filter")?;
    }
    Ok(Receiver::Broker(Box::new(s)))
}

fn advertise(client: &Client, topic: &str, cfg: &TopicConfig, p: &Params) -> Result<Sender> {
    let mut publisher = client
        .publisher(topic, topic_config(cfg))
        .with_context(|| format!("publishing on {topic}"))?;
    publisher.set_timestamps(p.timestamps);
    Ok(Sender::Broker(publisher))
}

/// Parent, before the children start: creates the rings or topics and the
/// parent's ends; returns them with the link for the children's specs and
/// the ring files they must inherit (direct link).
pub fn parent_setup(
    broker: Option<&Client>,
    measurement: u64,
    cfg: &TopicConfig,
    wait: WaitStrategy,
    pingpong: bool,
    route: Route,
    p: &Params,
) -> Result<(ParentEnds, Link, Vec<RingFiles>)> {
    ensure!(
        broker.is_some() || route == Route::Exact,
        "patterns and filters are measured through the broker, not --direct"
    );
    match broker {
        Some(client) => {
            let names = topics(measurement, pingpong, route);
            for t in &names {
                client
                    .open_topic(t, topic_config(cfg))
                    .with_context(|| format!("creating topic {t}"))?;
            }
            let sender = advertise(client, &names[0], cfg, p)?;
            // The other rings of a many-rings topic: made before the
            // child subscribes, so it holds them all from the start.
            let idle = match route {
                Route::ManyRings => (1..MANY_RINGS)
                    .map(|_| advertise(client, &names[0], cfg, p))
                    .collect::<Result<_>>()?,
                _ => Vec::new(),
            };
            let ends = if pingpong {
                let rx = subscribe(client, &names[1], wait, Route::Exact)?;
                ParentEnds::PingPong(sender, rx, idle)
            } else {
                ParentEnds::Stream(sender)
            };
            let socket = client.socket_path().to_string_lossy().into_owned();
            Ok((
                ends,
                Link::Broker {
                    socket,
                    topics: names,
                    route,
                },
                Vec::new(),
            ))
        }
        None => {
            // Ring A: a port per child reader; ring B: the parent's.
            let a = RingFiles::create(cfg, 1, cfg.max_subscribers)?;
            let mut files = vec![];
            let ends = if pingpong {
                let b = RingFiles::create(cfg, 2, 1)?;
                let ends = ParentEnds::PingPong(
                    a.sender(cfg, p)?,
                    b.receiver(cfg, wait, p, 0)?,
                    Vec::new(),
                );
                files.push(a);
                files.push(b);
                ends
            } else {
                let ends = ParentEnds::Stream(a.sender(cfg, p)?);
                files.push(a);
                ends
            };
            let fds = files.iter().map(RingFiles::raw).collect();
            Ok((ends, Link::Direct { fds }, files))
        }
    }
}

/// Child, before the start barrier: its ends (ping-pong: receive on A,
/// publish on B; streaming: receive).
fn child_ends(
    link: &Link,
    cfg: &TopicConfig,
    wait: WaitStrategy,
    pingpong: bool,
    p: &Params,
    reader: usize,
) -> Result<(Receiver, Option<Sender>)> {
    let want = if pingpong { 2 } else { 1 };
    match link {
        Link::Direct { fds } => {
            ensure!(
                fds.len() == want,
                "expected {want} rings, got {}",
                fds.len()
            );
            let files: Vec<RingFiles> = fds
                .iter()
                .map(|raw| RingFiles::adopt(raw))
                .collect::<Result<_>>()?;
            let rx = files[0].receiver(cfg, wait, p, reader)?;
            let tx = match files.get(1) {
                Some(b) => Some(b.sender(cfg, p)?),
                None => None,
            };
            Ok((rx, tx))
        }
        Link::Broker {
            socket,
            topics,
            route,
        } => {
            ensure!(
                topics.len() == want,
                "expected {want} topics, got {}",
                topics.len()
            );
            let client = Client::connect(socket)
                .with_context(|| format!("connecting to the bench's broker at {socket}"))?;
            let rx = subscribe(&client, &topics[0], wait, *route)?;
            let tx = match topics.get(1) {
                Some(b) => Some(advertise(&client, b, cfg, p)?),
                None => None,
            };
            Ok((rx, tx))
        }
    }
}

/// A receive deadline refreshed every [`DEADLINE_EVERY`] messages (by the
/// timing side right after a send, while the message is in flight).
struct Deadline {
    at: Instant,
    n: u64,
}

impl Deadline {
    fn new() -> Deadline {
        Deadline {
            at: Instant::now() + STALL,
            n: 0,
        }
    }

    #[inline(always)]
    fn tick(&mut self) {
        self.n += 1;
        if self.n % DEADLINE_EVERY == 0 {
            self.at = Instant::now() + STALL;
        }
    }
}

fn payload_seq(buf: &[u8]) -> u64 {
    u64::from_le_bytes(buf[..8].try_into().expect("messages are at least 8 bytes"))
}

// ------------------------------------------------------------------ ping-pong

/// Parent side of a ping-pong: publish on A, receive the echo on B; timed.
pub fn pingpong_parent(
    region: &Region,
    mut tx: Sender,
    mut rx: Receiver,
    p: &Params,
    ticks: Ticks,
) -> Result<Histogram<u64>> {
    let ctl = region.control();
    let mut out = vec![0xA5u8; p.size];
    let mut back = vec![0u8; p.size];
    let mut deadline = Deadline::new();
    let h = drive_pingpong(p, ticks, |n, lap| {
        out[..8].copy_from_slice(&n.to_le_bytes());
        tx.publish(&out)?;
        lap.sent();
        // While the message is in flight.
        deadline.tick();
        loop {
            match rx.recv(&mut back, deadline.at, |info| info.len) {
                Ok(len) => {
                    ensure!(
                        len == p.size && payload_seq(&back) == n,
                        "bad echo: {len} bytes carrying {} for {n}",
                        payload_seq(&back)
                    );
                    break;
                }
                Err(RecvError::Timeout) => {
                    Patience::new(ctl).check("the ringbus echo")?;
                    deadline = Deadline::new();
                }
                Err(e) => bail!("receiving the echo: {e}"),
            }
        }
        Ok(())
    })?;
    drop(tx); // closes ring A: the echo side sees end of stream
    Ok(h)
}

/// Parent side of streaming: publish `warmup + iters` messages (flat out, or
/// paced at `p.rate`), then drop the publisher (end of stream).
///
/// For a filtered route, message `n` carries tag `n % FILTER_KEEPS_ONE_IN`.
pub fn stream_parent(mut tx: Sender, p: &Params, route: Route) -> Result<()> {
    match route {
        Route::Batched => return stream_batches(tx, p),
        Route::Loaned => return stream_loaned(tx, p),
        _ => {}
    }
    let tags = match route {
        Route::Filtered => FILTER_KEEPS_ONE_IN - 1,
        _ => 0,
    };
    let paced = p.rate > 0;
    let mut pacer = Pacer::new(p.rate);
    let mut budget = Budget::new(p);
    let mut msg = vec![0x3Cu8; p.size];
    let mut n = 0u64;
    loop {
        if paced {
            pacer.wait();
        }
        msg[..8].copy_from_slice(&n.to_le_bytes());
        tx.publish_tagged(&msg, n & tags)?;
        n += 1;
        if !budget.more_after(n) {
            break;
        }
    }
    drop(tx);
    Ok(())
}

/// [`stream_parent`] in batches of [`BATCH`] (`publish_batch`).
fn stream_batches(mut tx: Sender, p: &Params) -> Result<()> {
    let mut budget = Budget::new(p);
    let mut msgs = vec![vec![0x3Cu8; p.size]; BATCH];
    let mut n = 0u64;
    let mut more = true;
    while more {
        let mut k = 0;
        while k < BATCH && more {
            msgs[k][..8].copy_from_slice(&n.to_le_bytes());
            n += 1;
            k += 1;
            more = budget.more_after(n);
        }
        tx.publish_batch(&msgs[..k])?;
    }
    drop(tx);
    Ok(())
}

/// [`stream_parent`] in loans of [`BATCH`] slots written in place
/// (`loan_many`).
fn stream_loaned(mut tx: Sender, p: &Params) -> Result<()> {
    let mut budget = Budget::new(p);
    let mut n = 0u64;
    let mut more = true;
    while more {
        let first = n;
        let mut k = 0;
        while k < BATCH && more {
            n += 1;
            k += 1;
            more = budget.more_after(n);
        }
        tx.publish_loaned(k, p.size, first)?;
    }
    drop(tx);
    Ok(())
}

/// Child side of a ringbus scenario: sets up its ends, meets the parent at
/// the start barrier, then echoes (ping-pong) or receives (streaming).
pub fn child(
    region: &Region,
    link: &Link,
    cfg: &TopicConfig,
    wait: WaitStrategy,
    pingpong: bool,
    p: &Params,
    reader: usize,
) -> Result<SideResult> {
    let (mut rx, tx) = child_ends(link, cfg, wait, pingpong, p, reader)?;
    let filtered = matches!(
        link,
        Link::Broker {
            route: Route::Filtered,
            ..
        }
    );
    let batched = matches!(
        link,
        Link::Broker {
            route: Route::Batched | Route::Loaned,
            ..
        }
    );
    super::shared::child_barrier(region.control())?;
    match (tx, &mut rx) {
        (Some(tx), _) => echo(region, rx, tx, p),
        (None, Receiver::Broker(sub)) if batched => receive_batches(region, sub, p),
        (None, _) => receive(region, &mut rx, p, filtered),
    }
}

/// Echoes A into B until A ends.
fn echo(region: &Region, mut rx: Receiver, mut tx: Sender, p: &Params) -> Result<SideResult> {
    let ctl = region.control();
    let mut buf = vec![0u8; p.size];
    let mut deadline = Deadline::new();
    loop {
        match rx.recv(&mut buf, deadline.at, |info| info.len) {
            Ok(len) => {
                tx.publish(&buf[..len])?;
                deadline.tick();
            }
            Err(RecvError::EndOfStream) => return Ok(SideResult::default()),
            Err(RecvError::Timeout) => {
                Patience::new(ctl).check("the next ringbus ping")?;
                deadline = Deadline::new();
            }
            Err(e) => bail!("receiving a ping: {e}"),
        }
    }
}

/// Receives until end of stream; checks the payload sequence numbers and
/// records latencies (paced runs). Losses (overwrite mode) are counted at
/// the end from the sequence numbers seen.
///
/// `filtered`: the subscriber's tag filter keeps one message in
/// [`FILTER_KEEPS_ONE_IN`] (back-pressure, so nothing is lost): each one
/// delivered must be the next one kept, and accounts for the messages
/// filtered before it too (the rate is of every message got through).
/// [`receive`] in batches: a waiting receive of one message, then
/// `try_recv_batch` of up to [`BATCH`] more, checking each.
fn receive_batches(region: &Region, sub: &mut Subscriber, p: &Params) -> Result<SideResult> {
    let ctl = region.control();
    let mut receipts = Receipts::new(p, false);
    let mut buf = vec![0u8; p.size];
    let mut deadline = Deadline::new();
    let mut wrong = None;
    let mut take = |receipts: &mut Receipts, bytes: &[u8], info: &MessageInfo| {
        let carried = payload_seq(bytes);
        if info.seq != carried {
            wrong.get_or_insert((info.seq, carried));
        }
        receipts.got(info.seq, info.timestamp);
    };

    loop {
        match sub.recv_deadline(&mut buf, Some(deadline.at)) {
            Ok(d) => take(&mut receipts, &buf[..d.info.len], &d.info),
            Err(RecvError::Lagged { .. }) => {}
            Err(RecvError::EndOfStream) => break,
            Err(RecvError::Timeout) => {
                Patience::new(ctl).check("the next ringbus message")?;
                deadline = Deadline::new();
                continue;
            }
            Err(e) => bail!("receiving: {e}"),
        }
        match sub.try_recv_batch(&mut buf, BATCH, |bytes, d| {
            take(&mut receipts, bytes, &d.info);
        }) {
            Ok(_) | Err(RecvError::Empty | RecvError::Lagged { .. }) => {}
            Err(RecvError::EndOfStream) => break,
            Err(e) => bail!("receiving a batch: {e}"),
        }
        receipts.look_behind(receipts.next(), || sub.backlog());
        deadline.tick();
    }
    if let Some((seq, carried)) = wrong {
        bail!("message {seq} carried payload {carried}");
    }
    Ok(receipts.finish())
}

fn receive(region: &Region, rx: &mut Receiver, p: &Params, filtered: bool) -> Result<SideResult> {
    let ctl = region.control();
    let paced = p.rate > 0;
    let mut receipts = Receipts::new(p, paced);
    let mut buf = vec![0u8; p.size];
    let mut deadline = Deadline::new();
    let mut delivered = 0u64;
    loop {
        match rx.recv(&mut buf, deadline.at, |i| (i.seq, i.timestamp, i.len)) {
            Ok((seq, timestamp, len)) => {
                let carried = payload_seq(&buf[..len]);
                ensure!(seq == carried, "message {seq} carried payload {carried}");
                if filtered {
                    ensure!(
                        seq == receipts.next().next_multiple_of(FILTER_KEEPS_ONE_IN),
                        "the filter kept message {seq} after {}",
                        receipts.next()
                    );
                    receipts.got_through(seq);
                    delivered += 1;
                } else {
                    receipts.got(seq, timestamp);
                    if !paced {
                        receipts.look_behind(seq, || rx.backlog());
                    }
                }
                deadline.tick();
            }
            Err(RecvError::Lagged { .. }) => {}
            Err(RecvError::EndOfStream) => {
                if filtered {
                    // The messages filtered after the last one kept.
                    let through = delivered + rx.filtered_total();
                    ensure!(
                        through >= receipts.next(),
                        "{through} messages got through, but {} was delivered",
                        receipts.next()
                    );
                    if through > 0 {
                        receipts.got_through(through - 1);
                    }
                }
                return Ok(receipts.finish());
            }
            Err(RecvError::Timeout) => {
                Patience::new(ctl).check("the next ringbus message")?;
                deadline = Deadline::new();
            }
            Err(e) => bail!("receiving: {e}"),
        }
    }
}
