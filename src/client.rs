//! The Rust client: connect to a broker, publish to and subscribe to
//! topics. The broker is only on the setup path; messages go through the
//! rings in shared memory ([`crate::ring`]) at the ring's own speed.
//!
//! ```no_run
//! use ringbus::client::{Client, SubscribeOptions, TopicConfig};
//!
//! let client = Client::connect_default()?;
//! let mut publisher = client.publisher("md.AAPL", TopicConfig::default())?;
//! let mut subscriber = client.subscriber("md.AAPL", SubscribeOptions::default())?;
//! publisher.publish(b"hello", 0)?;
//! let mut buf = [0u8; 1024];
//! let got = subscriber.recv(&mut buf)?;
//! assert_eq!(&buf[..got.info.len], b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::File;
use std::ops::{Deref, DerefMut};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::control::frame::{ErrorCode, Reply, Request, RingRef};
use crate::control::segment::{SegmentError, TopicSegment};
use crate::control::{paths, BrokerStats, Connection, ConnectionError, TopicInfo};
use crate::ring::{
    AttachError, Consumer, Mailbox, MailboxSource, MessageInfo, Producer, RecvError, Start,
};
use crate::shm::{Access, ShmError};
use crate::wait::{Limit, WaitStrategy};

pub use crate::ring::{Mode, TopicConfig};

mod zero_copy;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The ACL refuses this user the action on the topic; the message names
    /// both.
    #[error("{0}")]
    PermissionDenied(String),
    /// The topic exists with another config; the message shows both.
    #[error("{0}")]
    ConfigMismatch(String),
    /// Talking to the broker failed, or it refused the request.
    #[error(transparent)]
    Control(#[from] ConnectionError),
    /// A ring handed out by the broker could not be mapped.
    #[error("cannot map a ring of topic {topic:?}: {source}")]
    Shm {
        /// The topic.
        topic: String,
        /// What failed.
        #[source]
        source: ShmError,
    },
    /// A ring could not be joined (e.g. every back-pressure cursor is taken).
    #[error("cannot attach to a ring of topic {topic:?}: {source}")]
    Attach {
        /// The topic.
        topic: String,
        /// What failed.
        #[source]
        source: AttachError,
    },
    /// The topic segment handed out by the broker is unusable.
    #[error(transparent)]
    Segment(#[from] SegmentError),
}

impl ClientError {
    /// The broker's error code, when the broker refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::PermissionDenied(_) => Some(ErrorCode::PermissionDenied),
            ClientError::ConfigMismatch(_) => Some(ErrorCode::ConfigMismatch),
            ClientError::Control(ConnectionError::Refused { code, .. }) => Some(*code),
            _ => None,
        }
    }
}

fn refine(e: ConnectionError) -> ClientError {
    match e {
        ConnectionError::Refused {
            code: ErrorCode::PermissionDenied,
            message,
        } => ClientError::PermissionDenied(message),
        ConnectionError::Refused {
            code: ErrorCode::ConfigMismatch,
            message,
        } => ClientError::ConfigMismatch(message),
        e => ClientError::Control(e),
    }
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// A connection to a broker. Cheap to clone (clones share the connection);
/// publishers and subscribers keep it alive, since the broker ends their
/// leases when it closes.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn client_name() -> String {
    let exe = std::env::args()
        .next()
        .map(|a| {
            Path::new(&a)
                .file_name()
                .map_or(a.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    format!("{exe}[{}]", std::process::id())
}

impl Client {
    /// Connects to the broker listening at `path`.
    ///
    /// # Errors
    /// [`ConnectionError::NoBroker`] (inside [`ClientError::Control`]) when
    /// none listens there.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref().to_owned();
        let conn = Connection::connect(&path, &client_name()).map_err(refine)?;
        Ok(Client {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new(conn),
            }),
        })
    }

    /// Connects to the default socket ([`paths::default_socket_path`]:
    /// `RINGBUS_SOCKET`, else the runtime directory).
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub fn connect_default() -> Result<Client, ClientError> {
        Client::connect(paths::default_socket_path())
    }

    /// The socket path this client connected to.
    pub fn socket_path(&self) -> &Path {
        &self.inner.path
    }

    /// The broker's process id.
    pub fn broker_pid(&self) -> u32 {
        self.conn().broker_pid()
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a Connection in a
        // state worse than a failed request, so poisoning is ignored.
        self.inner.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn call(&self, req: &Request) -> Result<(Reply, Vec<OwnedFd>), ClientError> {
        self.conn().call(req).map_err(refine)
    }

    fn call_within(
        &self,
        req: &Request,
        timeout: Duration,
    ) -> Result<(Reply, Vec<OwnedFd>), ClientError> {
        self.conn().call_within(req, timeout).map_err(refine)
    }

    /// Replaces a dead connection with a fresh one to the same path.
    fn reconnect(&self) -> Result<(), ClientError> {
        let fresh = Connection::connect(&self.inner.path, &client_name()).map_err(refine)?;
        *self.conn() = fresh;
        Ok(())
    }

    /// Creates `topic` with `config`, or checks that it exists with it.
    /// Returns whether it was created.
    ///
    /// # Errors
    /// [`ClientError::ConfigMismatch`], [`ClientError::PermissionDenied`],
    /// or a refusal (bad name, invalid config, limit).
    pub fn open_topic(&self, topic: &str, config: TopicConfig) -> Result<bool, ClientError> {
        match self.call(&Request::OpenTopic {
            topic: topic.to_owned(),
            config,
        })? {
            (Reply::TopicOpened { created, .. }, _) => Ok(created),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Becomes a publisher of `topic` (created with `config` if new; an
    /// existing topic must have the same config). The publisher writes its
    /// own ring; it derefs to a [`Producer`].
    ///
    /// # Errors
    /// [`ClientError::ConfigMismatch`], [`ClientError::PermissionDenied`],
    /// a refusal (limit of publishers...), or a mapping failure.
    pub fn publisher(&self, topic: &str, config: TopicConfig) -> Result<Publisher, ClientError> {
        self.attach_publisher(topic, Some(config))
    }

    /// Becomes a publisher of an existing topic, with its config.
    ///
    /// # Errors
    /// As [`Client::publisher`]; `NotFound` if the topic has no config yet.
    pub fn publisher_existing(&self, topic: &str) -> Result<Publisher, ClientError> {
        self.attach_publisher(topic, None)
    }

    fn attach_publisher(
        &self,
        topic: &str,
        config: Option<TopicConfig>,
    ) -> Result<Publisher, ClientError> {
        let (reply, fds) = self.call(&Request::AttachPublisher {
            topic: topic.to_owned(),
            config,
        })?;
        let Reply::PublisherAttached {
            lease,
            ring_id,
            config,
        } = reply
        else {
            return Err(unexpected(&reply));
        };
        let mut fds = fds.into_iter();
        let (Some(data), Some(ctrl)) = (fds.next(), fds.next()) else {
            return Err(unexpected(&reply));
        };
        let made = (|| {
            let region = crate::shm::map_ring(
                &File::from(data),
                &File::from(ctrl),
                Access::ReadWrite,
                Some(&config),
            )
            .map_err(|source| ClientError::Shm {
                topic: topic.to_owned(),
                source,
            })?;
            let ring = *region.config();
            let mut producer = Producer::new(region).map_err(|source| ClientError::Attach {
                topic: topic.to_owned(),
                source,
            })?;
            producer.set_mailbox_source(Box::new(BrokerMailboxes {
                client: self.clone(),
                lease,
                ring_id,
                config: ring,
                mapped: Vec::new(),
            }));
            Ok(producer)
        })();
        match made {
            Ok(producer) => Ok(Publisher {
                producer,
                topic: topic.to_owned(),
                lease,
                ring_id,
                config,
                client: self.clone(),
            }),
            Err(e) => {
                let _ = self.call(&Request::Detach { lease });
                Err(e)
            }
        }
    }

    /// Subscribes to `topic` (which need not exist yet): reads every ring
    /// of the topic, including those of publishers that join later.
    ///
    /// # Errors
    /// [`ClientError::PermissionDenied`], a refusal, or a mapping failure
    /// (e.g. every back-pressure cursor of a ring is taken).
    pub fn subscriber(
        &self,
        topic: &str,
        options: SubscribeOptions,
    ) -> Result<Subscriber, ClientError> {
        let mut s = Subscriber {
            client: self.clone(),
            topic: topic.to_owned(),
            lease: 0,
            segment: None,
            seen_generation: u64::MAX,
            max_ring_id: 0,
            rings: Vec::new(),
            next: 0,
            since_check: 0,
            options,
            last_ring: 0,
            config: None,
            lagged_dropped: 0,
            retry_at: None,
        };
        s.subscribe(options.start)?;
        Ok(s)
    }

    /// Every topic this user may see, with its rings and counters.
    ///
    /// # Errors
    /// The broker cannot be reached.
    pub fn topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        let mut all = Vec::new();
        loop {
            let offset = all.len() as u32;
            match self.call(&Request::ListTopics { offset })? {
                (Reply::Topics { total, topics, .. }, _) => {
                    let empty = topics.is_empty();
                    all.extend(topics);
                    if empty || all.len() >= total as usize {
                        return Ok(all);
                    }
                }
                (other, _) => return Err(unexpected(&other)),
            }
        }
    }

    /// The broker's counters.
    ///
    /// # Errors
    /// The broker cannot be reached.
    pub fn stats(&self) -> Result<BrokerStats, ClientError> {
        match self.call(&Request::Stats)? {
            (Reply::Stats(s), _) => Ok(s),
            (other, _) => Err(unexpected(&other)),
        }
    }
}

fn unexpected(reply: &Reply) -> ClientError {
    ClientError::Control(ConnectionError::Unexpected(format!("{reply:?}")))
}

/// How long a publisher waits for its mailbox list. The fetch runs inside
/// a publish: a hung broker must not hold the publisher for the connection's
/// usual 30 s. A broker that takes longer breaks the connection; the
/// publisher goes on publishing, and new subscribers read the ring slots.
const MAILBOX_FETCH_TIMEOUT: Duration = Duration::from_millis(100);

/// A publisher's [`MailboxSource`]: asks the broker for the mailboxes of its
/// ring and maps those it does not have yet.
struct BrokerMailboxes {
    client: Client,
    lease: u64,
    ring_id: u64,
    config: TopicConfig,
    /// Mailboxes mapped so far, by broker id.
    mapped: Vec<(u64, Arc<Mailbox>)>,
}

impl MailboxSource for BrokerMailboxes {
    fn mailboxes(&mut self) -> Option<Vec<Arc<Mailbox>>> {
        let (reply, fds) = self
            .client
            .call_within(
                &Request::FetchMailboxes { lease: self.lease },
                MAILBOX_FETCH_TIMEOUT,
            )
            .ok()?;
        let Reply::Mailboxes { ids } = reply else {
            return None;
        };
        let mut now = Vec::with_capacity(ids.len());
        for (id, fd) in ids.into_iter().zip(fds) {
            let known = self.mapped.iter().find(|(i, _)| *i == id);
            let mailbox = match known {
                Some((_, m)) => m.clone(),
                // One that cannot be mapped is left out: its subscriber
                // reads the ring instead.
                None => {
                    match crate::shm::map_mailbox(&File::from(fd), &self.config, self.ring_id) {
                        Ok(m) => m,
                        Err(_) => continue,
                    }
                }
            };
            now.push((id, mailbox));
        }
        self.mapped = now;
        Some(self.mapped.iter().map(|(_, m)| m.clone()).collect())
    }
}

/// A publisher of one topic: its own ring, written through the
/// [`Producer`] it derefs to (`publish`, `try_publish`, `loan` ...).
/// Dropping it ends the stream for subscribers (they drain the ring
/// first) and frees its place on the topic.
pub struct Publisher {
    producer: Producer,
    topic: String,
    lease: u64,
    ring_id: u64,
    config: TopicConfig,
    client: Client,
}

impl Publisher {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The id of this publisher's ring.
    pub fn ring_id(&self) -> u64 {
        self.ring_id
    }

    /// The topic's config.
    pub fn config(&self) -> TopicConfig {
        self.config
    }
}

impl Deref for Publisher {
    type Target = Producer;
    fn deref(&self) -> &Producer {
        &self.producer
    }
}

impl DerefMut for Publisher {
    fn deref_mut(&mut self) -> &mut Producer {
        &mut self.producer
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Best effort: the broker also ends the lease when the connection
        // closes or the process dies. The producer closes the ring when it
        // is dropped right after this.
        let _ = self.client.call(&Request::Detach { lease: self.lease });
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .field("ring_id", &self.ring_id)
            .field("next_seq", &self.producer.next_seq())
            .finish()
    }
}

/// How a subscriber starts and waits.
#[derive(Clone, Copy, Debug, Default)]
pub struct SubscribeOptions {
    /// Where to start in the rings that exist when subscribing (rings that
    /// appear later are read from their first message).
    pub start: Start,
    /// How `recv` waits.
    pub wait: WaitStrategy,
}

/// A received message: which ring it came from and its metadata (the
/// payload is in the caller's buffer, `info.len` bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The ring (publisher) it came from.
    pub ring_id: u64,
    /// Sequence number (per ring), tag, timestamp, length.
    pub info: MessageInfo,
}

struct SubRing {
    ring_id: u64,
    publisher_pid: u32,
    consumer: Consumer,
}

/// Checks the topic's generation counter every this many receives while
/// messages keep coming (and whenever the rings run dry: for a spinning
/// receive on one ring, once its spin has run out).
const GENERATION_CHECK_EVERY: u32 = 64;
/// While idle in `recv`, how often to check that the broker still answers
/// (a restarted broker is re-joined).
const HEALTH_CHECK: Duration = Duration::from_millis(250);

/// State of one blocking receive between its idle steps.
struct Idle {
    started: Instant,
    last_health: Instant,
    nap: Duration,
}

impl Idle {
    fn new(now: Instant) -> Idle {
        Idle {
            started: now,
            last_health: now,
            nap: Duration::from_micros(10),
        }
    }
}

/// A subscriber of one topic: reads all of its rings, one message at a
/// time in turn. Rings of publishers that join later are attached when the
/// topic's generation counter (in shared memory) moves: no syscall on the
/// receive path.
pub struct Subscriber {
    client: Client,
    topic: String,
    lease: u64,
    segment: Option<TopicSegment>,
    seen_generation: u64,
    max_ring_id: u64,
    rings: Vec<SubRing>,
    next: usize,
    since_check: u32,
    options: SubscribeOptions,
    last_ring: u64,
    config: Option<TopicConfig>,
    lagged_dropped: u64,
    /// After a failed refresh, no new attempt before this instant (keeps a
    /// dead broker from costing a syscall on every empty poll).
    retry_at: Option<Instant>,
}

impl Subscriber {
    /// (Re-)subscribes on the current connection and attaches the rings
    /// not held yet.
    fn subscribe(&mut self, start: Start) -> Result<(), ClientError> {
        let (reply, fds) = self.client.call(&Request::Subscribe {
            topic: self.topic.clone(),
        })?;
        let Reply::Subscribed {
            lease,
            config,
            rings,
        } = reply
        else {
            return Err(unexpected(&reply));
        };
        self.lease = lease;
        self.config = config.or(self.config);
        let mut fds = fds.into_iter();
        let seg = fds
            .next()
            .ok_or_else(|| unexpected(&Reply::Detached { lease }))?;
        self.segment = Some(TopicSegment::open(&File::from(seg), false)?);
        // Unknown until the first check: forces one fetch, closing the
        // window between the broker's reply and our first look.
        self.seen_generation = u64::MAX;
        self.attach(&rings, fds, start)
    }

    fn attach(
        &mut self,
        rings: &[RingRef],
        fds: impl Iterator<Item = OwnedFd>,
        start: Start,
    ) -> Result<(), ClientError> {
        let mut fds = fds;
        for r in rings {
            let (Some(data), Some(ctrl)) = (fds.next(), fds.next()) else {
                return Err(ClientError::Control(ConnectionError::Unexpected(
                    "missing ring descriptors".into(),
                )));
            };
            let mailbox = match r.mailbox {
                true => Some(fds.next().ok_or_else(|| {
                    ClientError::Control(ConnectionError::Unexpected(
                        "missing mailbox descriptor".into(),
                    ))
                })?),
                false => None,
            };
            self.max_ring_id = self.max_ring_id.max(r.ring_id);
            if self.rings.iter().any(|x| x.ring_id == r.ring_id) {
                continue;
            }
            let data = File::from(data);
            let region = crate::shm::map_ring(
                &data,
                &File::from(ctrl),
                crate::shm::subscriber_access(&data),
                self.config.as_ref(),
            )
            .map_err(|source| ClientError::Shm {
                topic: self.topic.clone(),
                source,
            })?;
            if self.config.is_none() {
                self.config = Some(*region.config());
            }
            let config = *region.config();
            let mut consumer = match r.cursor {
                // The broker claimed this cursor for us before the ring's
                // publisher started: take it over and miss nothing.
                Some(slot) => Consumer::adopt_cursor(region, slot),
                None => Consumer::new(region, start),
            }
            .map_err(|source| ClientError::Attach {
                topic: self.topic.clone(),
                source,
            })?;
            if let Some(fd) = mailbox {
                // Our private latest slot: polled through a writable
                // mapping without write access to the ring itself.
                let mailbox = crate::shm::map_mailbox(&File::from(fd), &config, r.ring_id)
                    .map_err(|source| ClientError::Shm {
                        topic: self.topic.clone(),
                        source,
                    })?;
                consumer
                    .attach_mailbox(mailbox)
                    .map_err(|source| ClientError::Attach {
                        topic: self.topic.clone(),
                        source,
                    })?;
            }
            self.rings.push(SubRing {
                ring_id: r.ring_id,
                publisher_pid: r.publisher_pid,
                consumer,
            });
        }
        Ok(())
    }

    /// Attaches rings that appeared since the last look. Returns whether
    /// any did. Errors are kept for the next look (the broker may be
    /// restarting); the rings held meanwhile keep working. The look itself
    /// (one load of the topic's generation) is inlined; the fetch is not.
    #[inline(always)]
    fn refresh(&mut self) -> bool {
        let Some(seg) = &self.segment else {
            return false;
        };
        let g = seg.generation();
        if g == self.seen_generation {
            return false;
        }
        self.fetch_rings(g)
    }

    /// [`Subscriber::refresh`] once the generation moved to `g`.
    #[cold]
    #[inline(never)]
    fn fetch_rings(&mut self, g: u64) -> bool {
        if let Some(t) = self.retry_at {
            if Instant::now() < t {
                return false;
            }
            self.retry_at = None;
        }
        let before = self.rings.len();
        let r = self.client.call(&Request::FetchRings {
            lease: self.lease,
            after: self.max_ring_id,
        });
        match r {
            Ok((Reply::Rings { config, rings }, fds)) => {
                self.config = self.config.or(config);
                // Rings that appear after subscribing are read from their
                // first message: a subscriber that was there misses nothing.
                if self
                    .attach(&rings, fds.into_iter(), Start::Earliest)
                    .is_ok()
                {
                    self.seen_generation = g;
                }
            }
            Ok(_) => {}
            Err(ClientError::Control(ConnectionError::Io(_) | ConnectionError::Closed)) => {
                // The broker died (and may have restarted): re-join it.
                if self.client.conn().broker_gone()
                    && self.client.reconnect().is_ok()
                    && self.subscribe(Start::Earliest).is_ok()
                {
                    return self.rings.len() > before;
                }
            }
            Err(_) => {}
        }
        if self.seen_generation != g {
            self.retry_at = Some(Instant::now() + HEALTH_CHECK);
        }
        self.rings.len() > before
    }

    /// Re-joins a restarted broker if the connection died (off the hot
    /// path: called from `recv` while idle).
    fn check_broker(&mut self) {
        let gone = self.client.conn().broker_gone();
        if gone && self.client.reconnect().is_ok() {
            let _ = self.subscribe(Start::Earliest);
        }
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
            self.since_check = 0;
            self.refresh();
        }
        match self.poll_rings(buf) {
            Err(RecvError::Empty) if self.refresh() => self.poll_rings(buf),
            r => r,
        }
    }

    /// One look at every ring, from the one after the last that
    /// delivered. A subscription with one ring (one publisher: the common
    /// case, and every ping-pong) reads it inline; as a call, the receive
    /// returned its `Delivery` through memory and spilled the consumer's
    /// state around the call.
    #[inline(always)]
    fn poll_rings(&mut self, buf: &mut [u8]) -> Result<Delivery, RecvError> {
        if let [ring] = self.rings.as_mut_slice() {
            let ring_id = ring.ring_id;
            return match ring
                .consumer
                .try_recv_map(buf, |info| Delivery { ring_id, info })
            {
                Ok(d) => {
                    self.next = 1;
                    self.last_ring = ring_id;
                    Ok(d)
                }
                Err(RecvError::Empty) => Err(RecvError::Empty),
                Err(e) => self.ring_failed(0, e),
            };
        }
        self.poll_each(buf)
    }

    /// [`Subscriber::poll_rings`] over any number of rings.
    #[inline(never)]
    fn poll_each(&mut self, buf: &mut [u8]) -> Result<Delivery, RecvError> {
        let n = self.rings.len();
        let mut i = self.next;
        for _ in 0..n {
            if i >= n {
                i = 0;
            }
            let ring = &mut self.rings[i];
            let ring_id = ring.ring_id;
            match ring
                .consumer
                .try_recv_map(buf, |info| Delivery { ring_id, info })
            {
                Ok(d) => {
                    self.next = i + 1;
                    self.last_ring = ring_id;
                    return Ok(d);
                }
                Err(RecvError::Empty) => i += 1,
                Err(e) => return self.ring_failed(i, e),
            }
        }
        Err(RecvError::Empty)
    }

    /// Ring `i` answered `e` (not `Empty`): notes which ring it was, and
    /// drops a ring that ended.
    #[cold]
    #[inline(never)]
    fn ring_failed(&mut self, i: usize, e: RecvError) -> Result<Delivery, RecvError> {
        let ring = &self.rings[i];
        self.last_ring = ring.ring_id;
        self.next = i;
        if e == RecvError::EndOfStream {
            self.lagged_dropped += ring.consumer.lagged_total();
            self.rings.remove(i);
        }
        Err(e)
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
        if let Some(r) = self.recv_one_ring(buf) {
            return r;
        }
        let mut idle = None;
        loop {
            match self.try_recv(buf) {
                Err(RecvError::Empty) => {}
                r => return r,
            }
            if let [ring] = self.rings.as_slice() {
                if ring.consumer.spin_ready(self.options.wait) {
                    continue;
                }
            }
            self.idle(&mut idle, &mut limit)?;
        }
    }

    /// The receive of a subscription with one ring, while it is not due a
    /// look for new rings: the consumer's own loop (take, else spin on its
    /// one line, take), nothing else. `None` once the spin has run out or
    /// a look is due: the caller's loop then looks for new rings and idles.
    ///
    /// Going through `try_recv` each time (its generation count and the
    /// look at the topic's generation whenever the ring was empty, then
    /// round the loop once more after the spin) measured 0.12–0.18× the
    /// cache-line floor slower per hop in `ringbus bench` than the bare
    /// consumer on the same rings (default path 1.28–1.32×, bare 1.12–1.14×;
    /// DESIGN.md, "Where the ping-pong nanoseconds go").
    #[inline(always)]
    fn recv_one_ring(&mut self, buf: &mut [u8]) -> Option<Result<Delivery, RecvError>> {
        if self.since_check + 1 >= GENERATION_CHECK_EVERY {
            return None;
        }
        let wait = self.options.wait;
        let [ring] = self.rings.as_mut_slice() else {
            return None;
        };
        self.since_check += 1;
        let ring_id = ring.ring_id;
        // The take is written out rather than done by `poll_rings` (same
        // logic): through `poll_rings`, with `rings[0]` looked up again for
        // the spin, the default ping-pong measured 1.47× against 1.21×
        // (6 alternating rounds, `--direct` 1.17×).
        loop {
            match ring
                .consumer
                .try_recv_map(buf, |info| Delivery { ring_id, info })
            {
                Ok(d) => {
                    self.next = 1;
                    self.last_ring = ring_id;
                    return Some(Ok(d));
                }
                Err(RecvError::Empty) => {}
                Err(e) => return Some(self.ring_failed(0, e)),
            }
            if !ring.consumer.spin_ready(wait) {
                return None;
            }
        }
    }

    /// One idle step of a blocking receive that found nothing: waits a
    /// slice as the wait strategy says (at most [`HEALTH_CHECK`]), checking
    /// the broker now and then. The first step fixes `limit` to the
    /// deadline it means.
    ///
    /// # Errors
    /// [`RecvError::Timeout`] once the limit has passed.
    fn idle(&mut self, idle: &mut Option<Idle>, limit: &mut Limit) -> Result<(), RecvError> {
        let now = Instant::now();
        let idle = idle.get_or_insert_with(|| Idle::new(now));
        *limit = Limit::by(limit.resolve(now));
        let deadline = limit.by;
        if deadline.is_some_and(|d| now >= d) {
            return Err(RecvError::Timeout);
        }
        if now.duration_since(idle.last_health) >= HEALTH_CHECK {
            idle.last_health = now;
            self.check_broker();
        }
        // Wake at least this often to look for new rings.
        let slice = deadline.map_or(now + HEALTH_CHECK, |d| d.min(now + HEALTH_CHECK));
        if self.rings.len() == 1 {
            // One ring: its own wait (futex when the strategy blocks).
            self.rings[0]
                .consumer
                .wait_ready_limit(self.options.wait, &mut Limit::by(Some(slice)));
            return Ok(());
        }
        // None or several rings: each has its own futex, so poll them,
        // backing off to naps of at most 1 ms once the spin budget of a
        // blocking strategy is spent.
        match self.options.wait {
            WaitStrategy::Spin => std::hint::spin_loop(),
            WaitStrategy::SpinYield => std::thread::yield_now(),
            WaitStrategy::Block | WaitStrategy::Adaptive { .. } => {
                let budget = match self.options.wait {
                    WaitStrategy::Adaptive { spin } => spin,
                    _ => Duration::ZERO,
                };
                if now.duration_since(idle.started) < budget {
                    std::hint::spin_loop();
                } else {
                    std::thread::sleep(idle.nap.min(slice.saturating_duration_since(now)));
                    idle.nap = (idle.nap * 2).min(Duration::from_millis(1));
                }
            }
        }
        Ok(())
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The topic's config, once a publisher has set it.
    pub fn config(&self) -> Option<TopicConfig> {
        self.config
    }

    /// The ring of the last message or error returned.
    pub fn last_ring_id(&self) -> u64 {
        self.last_ring
    }

    /// Ids and publisher pids of the rings being read.
    pub fn rings(&self) -> Vec<(u64, u32)> {
        self.rings
            .iter()
            .map(|r| (r.ring_id, r.publisher_pid))
            .collect()
    }

    /// Messages lost to overwriting, over all rings (overwrite mode).
    pub fn lagged_total(&self) -> u64 {
        self.lagged_dropped
            + self
                .rings
                .iter()
                .map(|r| r.consumer.lagged_total())
                .sum::<u64>()
    }

    /// Direct access to each ring's [`Consumer`] (zero-copy receive,
    /// per-ring waits), with its ring id.
    pub fn consumers_mut(&mut self) -> impl Iterator<Item = (u64, &mut Consumer)> {
        self.rings.iter_mut().map(|r| (r.ring_id, &mut r.consumer))
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        // The consumers free their cursors when dropped after this.
        let _ = self.client.call(&Request::Detach { lease: self.lease });
    }
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("topic", &self.topic)
            .field("rings", &self.rings())
            .finish()
    }
}

const _: () = {
    const fn is_send<T: Send>() {}
    is_send::<Publisher>();
    is_send::<Subscriber>();
    is_send::<Client>();
};
