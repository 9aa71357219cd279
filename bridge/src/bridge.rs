//! The bridge itself: exporters (local subscription -> Zenoh puts), each
//! on its own thread with the blocking side of both APIs (ringbus
//! receives block; Zenoh's `Wait` resolves on Zenoh's own runtime), and
//! importers (Zenoh subscription -> local publishers), whose subscriber
//! callbacks publish a sample after a quiet spell on Zenoh's receiving
//! thread and queue a stream for the import's thread ([`Router`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ringbus::client::{Client, ClientError, Mode, Publisher, SubscribeOptions, TopicConfig};
use ringbus::control::pattern_matches;
use ringbus::ring::{PublishError, RecvError, Start};
use ringbus::wait::WaitStrategy;
use zenoh::handlers::{FifoChannel, FifoChannelHandler, IntoHandler};
use zenoh::qos::CongestionControl;
use zenoh::sample::{Locality, Sample};
use zenoh::{Session, Wait};

use crate::attachment::Meta;
use crate::map::{key_to_topic, pattern_to_key_expr, topic_to_key, validate_prefix};
use crate::state::{Gaps, Seen};
use crate::stats::{RateLog, Stats};

/// How a full Zenoh queue treats an export: wait (loss shows as a lapped
/// local subscriber, counted) or drop (loss shows as a gap at import).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Congestion {
    /// Wait for room (Zenoh's `CongestionControl::Block`).
    #[default]
    Block,
    /// Drop the put (Zenoh's `CongestionControl::Drop`).
    Drop,
}

/// The config of the topics an importer creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportTopic {
    /// Largest payload, bytes.
    pub max_message_size: u32,
    /// Slots per ring.
    pub capacity: u32,
    /// Overwrite or back-pressure.
    pub mode: Mode,
    /// Most back-pressure subscribers.
    pub max_subscribers: u32,
}

impl Default for ImportTopic {
    /// 64 KiB messages, 1024 slots, overwrite, 16 subscribers.
    fn default() -> Self {
        ImportTopic {
            max_message_size: 64 << 10,
            capacity: 1024,
            mode: Mode::Overwrite,
            max_subscribers: 16,
        }
    }
}

impl From<ImportTopic> for TopicConfig {
    fn from(t: ImportTopic) -> TopicConfig {
        TopicConfig {
            max_message_size: t.max_message_size,
            capacity: t.capacity,
            mode: t.mode,
            max_subscribers: t.max_subscribers,
        }
    }
}

/// The default of [`Settings::import_queue`]: while samples stream in,
/// Zenoh's receiving thread hands them to the import's thread through a
/// queue of this many (see [`Router`]).
pub const DEFAULT_IMPORT_QUEUE: usize = 8192;
/// The largest [`Settings::import_queue`] accepted.
pub const MAX_IMPORT_QUEUE: usize = 1 << 20;

/// What a bridge does (the command line and the TOML file both fill it).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The local broker's socket (`None`: ringbus's default).
    pub socket: Option<PathBuf>,
    /// Local topic patterns put on Zenoh.
    pub export: Vec<String>,
    /// Topic patterns taken from Zenoh and published locally.
    pub import: Vec<String>,
    /// The first key chunks of every key.
    pub prefix: String,
    /// A Zenoh config file (JSON5): transports, TLS, ACL, scouting.
    pub zenoh_config: Option<PathBuf>,
    /// Endpoints to connect to (`tcp/HOST:PORT`, `tls/HOST:PORT`).
    pub connect: Vec<String>,
    /// Endpoints to listen on.
    pub listen: Vec<String>,
    /// Where the counters are written (JSON), every `stats_interval_ms`.
    pub stats_file: Option<PathBuf>,
    /// How often the stats file is rewritten.
    pub stats_interval_ms: u64,
    /// Topics an importer creates.
    pub import_topic: ImportTopic,
    /// How long an import waits for room in a full back-pressure ring
    /// before dropping the sample (counted).
    pub import_wait_ms: u64,
    /// Samples an import queues for its thread while they stream in,
    /// before Zenoh's receiving thread waits for room (and with it the TCP
    /// window and the exporter): at most this many messages of up to
    /// `import_topic.max_message_size` bytes sit in memory.
    pub import_queue: usize,
    /// Zenoh congestion control of exports.
    pub congestion: Congestion,
    /// This bridge's id in attachments (`None`: random).
    pub bridge_id: Option<u64>,
    /// Where the first import pattern keeps, per exported ring, the next
    /// sequence number expected, so that a restarted bridge reports what
    /// it missed while down (see `state`).
    pub state_file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            socket: None,
            export: Vec::new(),
            import: Vec::new(),
            prefix: "ringbus".into(),
            zenoh_config: None,
            connect: Vec::new(),
            listen: Vec::new(),
            stats_file: None,
            stats_interval_ms: 1000,
            import_topic: ImportTopic::default(),
            import_wait_ms: 1000,
            import_queue: DEFAULT_IMPORT_QUEUE,
            congestion: Congestion::Block,
            bridge_id: None,
            state_file: None,
        }
    }
}

impl Settings {
    /// The Zenoh config: the file's, then `connect` and `listen` on top.
    ///
    /// # Errors
    /// An unreadable or invalid file, a bad endpoint.
    pub fn zenoh_config(&self) -> Result<zenoh::Config> {
        let mut c = match &self.zenoh_config {
            Some(p) => zenoh::Config::from_file(p)
                .map_err(|e| anyhow::anyhow!("Zenoh config {}: {e}", p.display()))?,
            None => zenoh::Config::default(),
        };
        for (key, list) in [
            ("connect/endpoints", &self.connect),
            ("listen/endpoints", &self.listen),
        ] {
            if !list.is_empty() {
                let json = serde_json::to_string(list)?;
                c.insert_json5(key, &json)
                    .map_err(|e| anyhow::anyhow!("{key} {json}: {e}"))?;
            }
        }
        Ok(c)
    }

    /// Checks the names, so that a mistake fails at start, not later.
    ///
    /// # Errors
    /// A bad prefix or pattern, nothing to do.
    pub fn validate(&self) -> Result<()> {
        validate_prefix(&self.prefix)?;
        anyhow::ensure!(
            !self.export.is_empty() || !self.import.is_empty(),
            "nothing to bridge: give --export or --import patterns"
        );
        for p in self.export.iter().chain(&self.import) {
            pattern_to_key_expr(&self.prefix, p)?;
        }
        TopicConfig::from(self.import_topic)
            .validate()
            .map_err(|e| anyhow::anyhow!("import topic config: {e}"))?;
        anyhow::ensure!(
            (1..=MAX_IMPORT_QUEUE).contains(&self.import_queue),
            "import_queue must be between 1 and {MAX_IMPORT_QUEUE} samples, not {}",
            self.import_queue
        );
        Ok(())
    }
}

/// What the threads of one bridge share.
struct Shared {
    settings: Settings,
    bridge_id: u64,
    session: Session,
    stats: Arc<Stats>,
    log: RateLog,
    stop: Arc<AtomicBool>,
    /// Rings this bridge publishes into (imports): never exported.
    own_rings: Mutex<HashSet<u64>>,
}

/// A running bridge: stopped (threads joined, session closed) by
/// [`Bridge::stop`] or on drop.
pub struct Bridge {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    /// The import subscribers (their callbacks publish locally).
    imports: Vec<zenoh::pubsub::Subscriber<()>>,
}

/// A random bridge id (never 0).
fn random_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish().max(1)
}

impl Bridge {
    /// Opens the Zenoh session with `zconfig`, declares one Zenoh
    /// subscriber per import pattern and starts one thread per pattern
    /// (and one for the stats file).
    ///
    /// # Errors
    /// Invalid settings; Zenoh cannot open (e.g. a listen endpoint is
    /// taken). The local broker need not be up: it is retried.
    pub fn start(settings: Settings, zconfig: zenoh::Config) -> Result<Bridge> {
        settings.validate()?;
        let session = zenoh::open(zconfig)
            .wait()
            .map_err(|e| anyhow::anyhow!("opening the Zenoh session: {e}"))?;
        let bridge_id = settings.bridge_id.unwrap_or_else(random_id);
        let shared = Arc::new(Shared {
            settings,
            bridge_id,
            session,
            stats: Arc::new(Stats::default()),
            log: RateLog::default(),
            stop: Arc::new(AtomicBool::new(false)),
            own_rings: Mutex::new(HashSet::new()),
        });
        let mut bridge = Bridge {
            shared: Arc::clone(&shared),
            threads: Vec::new(),
            imports: Vec::new(),
        };
        for p in &shared.settings.import {
            let sub = declare_import(&mut bridge, &shared, p)?;
            bridge.imports.push(sub);
        }
        for p in shared.settings.export.clone() {
            let s = Arc::clone(&shared);
            bridge.spawn(format!("export {p}"), move || export(&s, &p))?;
        }
        if shared.settings.stats_file.is_some() {
            let s = Arc::clone(&shared);
            bridge.spawn("stats".into(), move || write_stats(&s))?;
        }
        Ok(bridge)
    }

    fn spawn(&mut self, name: String, f: impl FnOnce() + Send + 'static) -> Result<()> {
        let t = std::thread::Builder::new()
            .name(name.clone())
            .spawn(f)
            .with_context(|| format!("starting thread {name}"))?;
        self.threads.push(t);
        Ok(())
    }

    /// The counters.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.shared.stats)
    }

    /// This bridge's id (in the attachments it writes).
    pub fn id(&self) -> u64 {
        self.shared.bridge_id
    }

    /// The flag that stops it (set by a signal handler, say).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.shared.stop)
    }

    /// Stops every thread and closes the session.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Undeclared, an import's callback (and with it its `Arc<Shared>`)
        // is dropped.
        for sub in self.imports.drain(..) {
            let _ = sub.undeclare().wait();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = self.shared.session.close().wait();
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Connects to the local broker, retrying with backoff (100 ms doubling
/// to 5 s) until it answers or the bridge stops.
fn connect_local(s: &Shared, what: &str) -> Option<Client> {
    let mut backoff = Duration::from_millis(100);
    loop {
        if s.stop.load(Ordering::Relaxed) {
            return None;
        }
        let r = match &s.settings.socket {
            Some(p) => Client::connect(p),
            None => Client::connect_default(),
        };
        match r {
            Ok(c) => return Some(c),
            Err(e) => {
                s.log.log("local-connect", || {
                    format!(
                        "{what}: cannot reach the local broker ({e}); retrying every {backoff:?}"
                    )
                });
            }
        }
        sleep_unless_stopped(s, backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn sleep_unless_stopped(s: &Shared, d: Duration) {
    let end = Instant::now() + d;
    while !s.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// Local subscription to `pattern` -> Zenoh puts.
fn export(s: &Shared, pattern: &str) {
    let Some(client) = connect_local(s, pattern) else {
        return;
    };
    let mut sub = loop {
        // Adaptive: a spin of a few tens of microseconds before sleeping
        // spares the publisher a futex wake-up per burst, which blocking
        // at once paid on the bridge's latency and its stream of larger
        // messages (DESIGN.md, "The Zenoh bridge").
        let opts = SubscribeOptions {
            start: Start::Latest,
            wait: WaitStrategy::default(),
        };
        match client.subscriber(pattern, opts) {
            Ok(sub) => break sub,
            Err(e) => {
                s.log.log("export-subscribe", || {
                    format!("export {pattern}: cannot subscribe ({e}); retrying")
                });
                sleep_unless_stopped(s, Duration::from_secs(1));
                if s.stop.load(Ordering::Relaxed) {
                    return;
                }
            }
        }
    };
    let cc = match s.settings.congestion {
        Congestion::Block => CongestionControl::Block,
        Congestion::Drop => CongestionControl::Drop,
    };
    let mut publishers: HashMap<u32, zenoh::pubsub::Publisher<'static>> = HashMap::new();
    // Whether each ring seen is one of this bridge's imports.
    let mut own: HashMap<u64, bool> = HashMap::new();
    let mut buf = vec![0u8; 64 << 10];
    while !s.stop.load(Ordering::Relaxed) {
        let d = match sub.recv_timeout(&mut buf, Duration::from_millis(100)) {
            Ok(d) => d,
            Err(RecvError::Timeout | RecvError::Empty | RecvError::EndOfStream) => continue,
            Err(RecvError::Lagged { missed }) => {
                s.stats.export_lagged.fetch_add(missed, Ordering::Relaxed);
                let ring = sub.last_ring_id();
                s.log.log("export-lagged", || {
                    format!("export {pattern}: ring {ring}: {missed} messages overwritten before they were exported")
                });
                continue;
            }
            Err(RecvError::BufferTooSmall { needed }) => {
                buf.resize(needed, 0);
                continue;
            }
            Err(e) => {
                s.log
                    .log("export-recv", || format!("export {pattern}: {e}"));
                continue;
            }
        };
        // A ring is listed to a subscriber only once its publisher has
        // published into it, which an importer does only after recording
        // the ring as its own: the first look is the final one.
        let is_own = *own.entry(d.ring_id).or_insert_with(|| {
            s.own_rings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&d.ring_id)
        });
        if is_own {
            s.stats.export_skipped_own.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let publisher = match publishers.entry(d.topic) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let Some(name) = sub.topic_name(d.topic) else {
                    continue;
                };
                let key = topic_to_key(&s.settings.prefix, name);
                match s
                    .session
                    .declare_publisher(key)
                    .congestion_control(cc)
                    .wait()
                {
                    Ok(p) => v.insert(p),
                    Err(e) => {
                        s.stats.export_errors.fetch_add(1, Ordering::Relaxed);
                        s.log.log("export-declare", || {
                            format!("export {pattern}: cannot declare a Zenoh publisher: {e}")
                        });
                        continue;
                    }
                }
            }
        };
        let meta = Meta {
            tag: d.info.tag,
            seq: d.info.seq,
            ring_id: d.ring_id,
            timestamp: d.info.timestamp,
            bridge_id: s.bridge_id,
        };
        match publisher
            .put(&buf[..d.info.len])
            .attachment(meta.encode().to_vec())
            .wait()
        {
            Ok(()) => {
                s.stats.exported.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                s.stats.export_errors.fetch_add(1, Ordering::Relaxed);
                s.log.log("export-put", || {
                    format!("export {pattern}: put failed: {e}")
                });
            }
        }
    }
}

/// Samples that arrive within this long of the one before stream: they
/// go through the import's queue to its thread, so that Zenoh's receiving
/// thread decodes the next while the import publishes this one. A sample
/// after a quiet spell is published at once, on the receiving thread,
/// sparing it the import thread's wake-up.
const STREAM_GAP_NS: u64 = 50_000;

/// The most queued samples the import's thread takes at once (published
/// as one batch where they allow it: [`Importer::take_run`]).
const MAX_RUN: usize = 64;

/// Where an import's samples go: published by the subscriber's callback
/// on Zenoh's receiving thread, or queued for the import's thread.
struct Router {
    importer: Mutex<Importer>,
    /// Samples queued and not yet published. The callback publishes a
    /// sample itself only when none is: one queued earlier would then
    /// come after it.
    queued: AtomicU64,
    /// When the last sample arrived, CLOCK_MONOTONIC ns.
    last: AtomicU64,
}

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Router {
    /// The subscriber's callback: `queue` hands a sample to the import's
    /// thread ([`Router::drain`]).
    fn route(&self, sample: Sample, queue: &zenoh::handlers::Callback<Sample>) {
        let now = monotonic_ns();
        // Relaxed: a hint only (which way a sample goes, not its order).
        let streaming = now.saturating_sub(self.last.swap(now, Ordering::Relaxed)) < STREAM_GAP_NS;
        // Acquire: pairs with the Release decrement in `drain`: every
        // sample queued before this one is published.
        if !streaming && self.queued.load(Ordering::Acquire) == 0 {
            self.importer
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(&sample);
        } else {
            self.queued.fetch_add(1, Ordering::Relaxed);
            // Waits while the queue is full (back-pressure to the peer).
            queue.call(sample);
        }
    }

    /// The import's thread: publishes what the callback queued, in order,
    /// until the bridge stops or the session closes.
    fn drain(&self, s: &Shared, queue: &FifoChannelHandler<Sample>) {
        let mut run = Vec::with_capacity(MAX_RUN);
        while !s.stop.load(Ordering::Relaxed) {
            let first = match queue.recv_timeout(Duration::from_millis(100)) {
                Ok(Some(sample)) => sample,
                Ok(None) => continue,
                Err(_) => return, // the session is closed
            };
            let mut importer = self.importer.lock().unwrap_or_else(|p| p.into_inner());
            run.push(first);
            let mut taken = 0;
            // Until the queue is found empty, up to MAX_RUN samples at a time.
            while !run.is_empty() {
                while run.len() < MAX_RUN {
                    match queue.try_recv() {
                        Ok(Some(sample)) => run.push(sample),
                        _ => break,
                    }
                }
                importer.take_run(&run);
                taken += run.len() as u64;
                run.clear();
                run.extend(queue.try_recv().ok().flatten());
            }
            // Once per run of samples, not per sample: the callback writes
            // this line too. Release: pairs with the Acquire load in
            // `route` (every sample counted here is published).
            self.queued.fetch_sub(taken, Ordering::Release);
            s.stats.import_queued.fetch_add(taken, Ordering::Relaxed);
        }
    }
}

/// Declares the Zenoh subscriber of an import (remote samples only: this
/// session's own puts are never delivered back to it) and starts its
/// thread.
fn declare_import(
    bridge: &mut Bridge,
    s: &Arc<Shared>,
    pattern: &str,
) -> Result<zenoh::pubsub::Subscriber<()>> {
    let key = pattern_to_key_expr(&s.settings.prefix, pattern)?;
    let router = Arc::new(Router {
        importer: Mutex::new(Importer::new(Arc::clone(s), pattern)),
        queued: AtomicU64::new(0),
        last: AtomicU64::new(0),
    });
    let (queue, queued) = FifoChannel::new(s.settings.import_queue).into_handler();
    let r = Arc::clone(&router);
    let sub = s
        .session
        .declare_subscriber(key.clone())
        .allowed_origin(Locality::Remote)
        .callback(move |sample| r.route(sample, &queue))
        .wait()
        .map_err(|e| anyhow::anyhow!("declaring the Zenoh subscriber of {key}: {e}"))?;
    let shared = Arc::clone(s);
    bridge.spawn(format!("import {pattern}"), move || {
        router.drain(&shared, &queued)
    })?;
    Ok(sub)
}

/// The local side of an importer: a client and one publisher per topic.
struct Local {
    client: Client,
    publishers: HashMap<String, Publisher>,
    /// When the broker last answered (the coarse clock).
    checked: Duration,
}

/// How often an importer checks that its broker still answers.
const LOCAL_CHECK: Duration = Duration::from_secs(1);

/// `CLOCK_MONOTONIC_COARSE`: a few nanoseconds a read (the tick's
/// resolution, a few milliseconds, is plenty for [`LOCAL_CHECK`]), so
/// that every sample may look at it.
fn coarse_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// An importer's local broker: connected (waiting for it, with backoff,
/// until it answers or the bridge stops: the wait holds the thread that
/// publishes, and through the import's queue Zenoh's receiving thread,
/// the TCP window and the exporter, as a full ring does), and checked now
/// and then (a publisher of a dead broker would publish into the void).
/// `None`: the bridge stops.
fn local_broker<'a>(
    s: &Shared,
    pattern: &str,
    local: &'a mut Option<Local>,
) -> Option<&'a mut Local> {
    let now = coarse_now();
    if let Some(l) = local {
        if now.saturating_sub(l.checked) >= LOCAL_CHECK {
            if l.client.stats().is_ok() {
                l.checked = now;
            } else {
                s.log.log("import-local-lost", || {
                    format!("import {pattern}: the local broker is gone; reconnecting")
                });
                *local = None;
            }
        }
    }
    if local.is_none() {
        let client = connect_local(s, pattern)?;
        s.stats.local_reconnects.fetch_add(1, Ordering::Relaxed);
        *local = Some(Local {
            client,
            publishers: HashMap::new(),
            checked: coarse_now(),
        });
    }
    local.as_mut()
}

/// What [`Importer::take_batch`] did with a run.
enum Batch {
    /// Published the first `n` samples.
    Published(usize),
    /// The first `n` samples qualified, but the ring had no room for all
    /// of them: nothing done.
    Full(usize),
    /// Nothing done: fewer than two samples qualified.
    No,
}

/// The last key an importer mapped to a local topic that its pattern
/// matches: a stream of one key (the usual case) maps it once.
#[derive(Default)]
struct LastKey {
    key: String,
    topic: String,
}

/// One import pattern: Zenoh samples -> local publishers, called by the
/// subscriber's callback or the import's thread (see [`Router`]), one
/// sample at a time: it sits in a mutex.
struct Importer {
    s: Arc<Shared>,
    pattern: String,
    local: Option<Local>,
    gaps: Gaps,
    last: LastKey,
    config: TopicConfig,
    wait: Duration,
}

impl Importer {
    fn new(s: Arc<Shared>, pattern: &str) -> Importer {
        let gaps = match &s.settings.state_file {
            // One importer per file: a second pattern keeps its table in memory.
            Some(p) if s.settings.import.first().map(String::as_str) == Some(pattern) => {
                match Gaps::with_file(p) {
                    Ok(g) => g,
                    Err(e) => {
                        s.log.log("state-file", || {
                            format!("{e:#}; gaps are tracked in memory only")
                        });
                        Gaps::default()
                    }
                }
            }
            _ => Gaps::default(),
        };
        Importer {
            wait: Duration::from_millis(s.settings.import_wait_ms),
            config: TopicConfig::from(s.settings.import_topic),
            s,
            pattern: pattern.to_owned(),
            local: None,
            gaps,
            last: LastKey::default(),
        }
    }

    /// Maps the sample's key to a local topic of this pattern (`false`:
    /// dropped, counted).
    fn map_key(&mut self, key: &str) -> bool {
        if key == self.last.key {
            return true;
        }
        let s = &self.s;
        let topic = match key_to_topic(&s.settings.prefix, key) {
            Ok(t) => t,
            Err(e) => {
                s.stats.import_bad_key.fetch_add(1, Ordering::Relaxed);
                let pattern = &self.pattern;
                s.log.log("import-bad-key", || {
                    format!("import {pattern}: dropped: {e}")
                });
                return false;
            }
        };
        if !pattern_matches(&self.pattern, &topic) {
            s.stats.import_unmatched.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.last = LastKey {
            key: key.to_owned(),
            topic,
        };
        true
    }

    /// Publishes a run of samples locally. Each key's samples keep their
    /// order; keys need none between them (each is a ring of its own
    /// here, and a subscriber on several rings has no order across
    /// them), so a key's samples are taken together, keys in the order
    /// they first appear: each stretch that [`Importer::take_batch`] can
    /// publish in one go is, any other sample alone ([`Importer::take`]).
    fn take_run(&mut self, run: &[Sample]) {
        let mut rest: Vec<&Sample> = run.iter().collect();
        let mut group = Vec::with_capacity(rest.len());
        while let Some(first) = rest.first() {
            let key = first.key_expr().as_str().to_owned();
            // This key's samples to `group`, in order; the others stay.
            rest.retain(|x| {
                let mine = x.key_expr().as_str() == key;
                if mine {
                    group.push(*x);
                }
                !mine
            });
            self.take_group(&group);
            group.clear();
        }
    }

    /// Publishes samples of one key, in order (see [`Importer::take_run`]).
    fn take_group(&mut self, group: &[&Sample]) {
        let mut i = 0;
        while i < group.len() {
            let batch = if group.len() - i > 1 {
                self.take_batch(&group[i..])
            } else {
                Batch::No
            };
            match batch {
                Batch::Published(k) => i += k,
                // Taken one at a time, each waiting for room as it must.
                Batch::Full(k) => {
                    for sample in &group[i..i + k] {
                        self.take(sample);
                    }
                    i += k;
                }
                Batch::No => {
                    self.take(group[i]);
                    i += 1;
                }
            }
        }
    }

    /// Publishes the longest prefix of `run` (samples of one key) that
    /// needs nothing but publishing, in one loan of slots: one head
    /// update and one wake-up of the subscribers for the lot, where
    /// [`Importer::take`] pays both per sample. The key is the one last
    /// mapped, its topic has a publisher, and each sample of the prefix
    /// comes from another bridge, one ring, in sequence after the last
    /// seen of that ring, and fits the topic; the ring has room for all
    /// now. Nothing is done when fewer than two qualify, or when the ring
    /// has no room for them all (then it says how many qualified).
    fn take_batch(&mut self, run: &[&Sample]) -> Batch {
        // A key not mapped yet goes through `take`, which maps it (and
        // counts it once if it must be dropped).
        if run[0].key_expr().as_str() != self.last.key {
            return Batch::No;
        }
        let Importer {
            s,
            pattern,
            local,
            gaps,
            last,
            ..
        } = self;
        // A topic not yet published to goes through `take`, which opens
        // it; so does a sample after the local broker is lost.
        let Some(publisher) =
            local_broker(s, pattern, local).and_then(|l| l.publishers.get_mut(&last.topic))
        else {
            return Batch::No;
        };
        let config = publisher.config();
        let max = config.max_message_size as usize;
        // A loan never spans more than the ring.
        let run = &run[..run.len().min(config.capacity as usize)];
        let mut metas = Vec::with_capacity(run.len());
        let mut payloads = Vec::with_capacity(run.len());
        for sample in run {
            let Some(m) = sample
                .attachment()
                .and_then(|a| Meta::decode(&a.to_bytes()))
            else {
                break;
            };
            let expected = match metas.last() {
                None => gaps.expects(m.bridge_id, m.ring_id),
                Some(&Meta {
                    bridge_id,
                    ring_id,
                    seq,
                    ..
                }) if bridge_id == m.bridge_id && ring_id == m.ring_id => seq.checked_add(1),
                Some(_) => None,
            };
            let payload = sample.payload().to_bytes();
            if m.bridge_id == s.bridge_id || expected != Some(m.seq) || payload.len() > max {
                break;
            }
            metas.push(m);
            payloads.push(payload);
        }
        let n = metas.len();
        if n < 2 {
            return Batch::No;
        }
        let len = payloads.iter().map(|p| p.len()).max().unwrap_or(0);
        let Ok(mut loans) = publisher.try_loan_many(n, len) else {
            return Batch::Full(n);
        };
        for (slot, p) in loans.iter_mut().zip(&payloads) {
            slot[..p.len()].copy_from_slice(p);
        }
        loans.commit_with(n, |i| (payloads[i].len(), metas[i].tag));
        for m in &metas {
            gaps.see(m.bridge_id, m.ring_id, m.seq);
        }
        s.stats.imported.fetch_add(n as u64, Ordering::Relaxed);
        s.stats
            .import_batched
            .fetch_add(n as u64, Ordering::Relaxed);
        Batch::Published(n)
    }

    /// Publishes one sample locally.
    fn take(&mut self, sample: &Sample) {
        if !self.map_key(sample.key_expr().as_str()) {
            return;
        }
        let Importer {
            s,
            pattern,
            local,
            gaps,
            last,
            config,
            wait,
        } = self;
        let topic = &last.topic;
        let meta = sample
            .attachment()
            .and_then(|a| Meta::decode(&a.to_bytes()));
        // Lost before this sample: counted in the local ring too
        // (`ringbus topics`), once its publisher is at hand.
        let mut gap = 0;
        let tag = match &meta {
            Some(m) if m.bridge_id == s.bridge_id => {
                s.stats.import_skipped_own.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Some(m) => {
                match gaps.see(m.bridge_id, m.ring_id, m.seq) {
                    Seen::InOrder => {}
                    Seen::Gap(missed) => {
                        gap = missed;
                        s.stats.import_gap.fetch_add(missed, Ordering::Relaxed);
                        s.log.log("import-gap", || {
                            format!(
                                "import {topic}: {missed} messages of ring {:x}/{} missing before sequence {}",
                                m.bridge_id, m.ring_id, m.seq
                            )
                        });
                    }
                    Seen::Reordered => {
                        s.stats.import_reordered.fetch_add(1, Ordering::Relaxed);
                    }
                }
                m.tag
            }
            None => {
                s.stats.import_foreign.fetch_add(1, Ordering::Relaxed);
                0
            }
        };
        let (config, wait) = (*config, *wait);
        let Some(l) = local_broker(s, pattern, local) else {
            return; // the bridge stops
        };
        let publisher = match l.publishers.get_mut(topic) {
            Some(p) => p,
            None => match open_publisher(&l.client, topic, config) {
                Ok(mut p) => {
                    // The origin's timestamp is of another host's clock
                    // (it travels in the attachment); locally the message
                    // is stamped when the bridge publishes it.
                    p.set_timestamps(true);
                    s.own_rings
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(p.ring_id());
                    l.publishers.entry(topic.clone()).or_insert(p)
                }
                Err(e) => {
                    s.stats.import_errors.fetch_add(1, Ordering::Relaxed);
                    s.log.log("import-publisher", || {
                        format!("import {topic}: cannot publish locally: {e}")
                    });
                    return;
                }
            },
        };
        if gap > 0 {
            publisher.report_lost(gap);
        }
        let payload = sample.payload().to_bytes();
        // The clock is read only when the ring is full.
        let published = match publisher.try_publish(&payload, tag) {
            Err(PublishError::Full) => publisher.publish_timeout(&payload, tag, wait),
            r => r,
        };
        match published {
            Ok(_) => {
                s.stats.imported.fetch_add(1, Ordering::Relaxed);
            }
            Err(PublishError::TooLarge { len, max }) => {
                publisher.report_lost(1);
                s.stats.import_too_large.fetch_add(1, Ordering::Relaxed);
                s.log.log("import-too-large", || {
                    format!(
                        "import {topic}: dropped a {len}-byte message (the topic's limit is {max})"
                    )
                });
            }
            Err(PublishError::Full | PublishError::Timeout) => {
                publisher.report_lost(1);
                s.stats.import_full.fetch_add(1, Ordering::Relaxed);
                s.log.log("import-full", || {
                    format!("import {topic}: dropped a message: the local ring stayed full for {wait:?}")
                });
            }
            // Only a loan of many slots can be refused as too many; a
            // single publish never is. Counted as lost all the same.
            Err(e @ PublishError::TooMany { .. }) => {
                publisher.report_lost(1);
                s.log.log("import-refused", || {
                    format!("import {topic}: dropped a message: {e}")
                });
            }
        }
    }
}

/// A publisher of `topic`: with the import config, or the topic's own if
/// it exists with another.
fn open_publisher(
    client: &Client,
    topic: &str,
    config: TopicConfig,
) -> Result<Publisher, ClientError> {
    match client.publisher(topic, config) {
        Err(ClientError::ConfigMismatch(_)) => client.publisher_existing(topic),
        r => r,
    }
}

fn write_stats(s: &Shared) {
    let Some(path) = &s.settings.stats_file else {
        return;
    };
    let every = Duration::from_millis(s.settings.stats_interval_ms.max(10));
    loop {
        if let Err(e) = crate::stats::write_file(path, &s.stats.snapshot()) {
            s.log.log("stats-file", || {
                format!("cannot write the stats file {}: {e}", path.display())
            });
        }
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        sleep_unless_stopped(s, every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_from_toml() {
        let s: Settings = toml::from_str(
            r#"
            socket = "/run/ringbus/ringbus.sock"
            export = ["md.>"]
            import = ["cmd.>", "cfg.*"]
            prefix = "site/ringbus"
            connect = ["tcp/10.0.0.2:7447"]
            congestion = "drop"
            state_file = "/var/lib/ringbus-zenoh/state"
            import_queue = 1024
            [import_topic]
            mode = "backpressure"
            capacity = 64
            "#,
        )
        .unwrap();
        assert_eq!(s.import, ["cmd.>", "cfg.*"]);
        assert_eq!(s.congestion, Congestion::Drop);
        assert_eq!(s.import_topic.mode, Mode::Backpressure);
        assert_eq!(s.import_topic.capacity, 64);
        assert_eq!(s.import_topic.max_message_size, 64 << 10);
        assert_eq!(s.import_queue, 1024);
        assert_eq!(Settings::default().import_queue, DEFAULT_IMPORT_QUEUE);
        s.validate().unwrap();
        let z = s.zenoh_config().unwrap();
        assert!(format!("{z}").contains("10.0.0.2:7447"));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(toml::from_str::<Settings>("exprot = [\"a\"]").is_err());
        assert!(toml::from_str::<Settings>("congestion = \"maybe\"").is_err());
        let mut s = Settings::default();
        assert!(s.validate().is_err(), "nothing to bridge");
        s.export = vec!["a.>.b".into()];
        assert!(s.validate().is_err());
        s.export = vec!["a.>".into()];
        s.prefix = "a/*".into();
        assert!(s.validate().is_err());
        s.prefix = "ringbus".into();
        s.import_topic.capacity = 3;
        assert!(s.validate().is_err(), "capacity must be a power of two");
        s.import_topic.capacity = 4;
        s.validate().unwrap();
        for bad in [0, MAX_IMPORT_QUEUE + 1] {
            s.import_queue = bad;
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains("import_queue"), "{e}");
        }
        s.import_queue = MAX_IMPORT_QUEUE;
        s.validate().unwrap();
        s.connect = vec!["nonsense".into()];
        assert!(s.zenoh_config().is_err());
    }
}
