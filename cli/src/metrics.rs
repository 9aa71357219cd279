//! `ringbus serve --metrics ADDR`: the broker's counters over HTTP, in the
//! Prometheus (OpenMetrics) text format.
//!
//! The exporter is a thread of `ringbus serve` that talks to the broker
//! as an ordinary client over its socket (one `ListTopics` and one
//! `Stats` per scrape), so nothing an HTTP client does reaches the
//! broker's poll loop; HTTP clients are served by [`crate::http`], each on
//! a thread of its own, with deadlines and size limits.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use ringbus::client::Client;
use ringbus::control::{BrokerStats, TopicInfo};

use crate::http::{Request, Response};

/// Where scrapes go.
const METRICS_PATH: &str = "/metrics";

/// The content type of [`prometheus_client::encoding::text::encode`]'s
/// output.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A bound metrics endpoint, not yet serving.
pub struct Exporter {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Exporter {
    /// Binds `addr` (before the broker starts, so a bad address fails
    /// `serve` at once).
    ///
    /// # Errors
    /// The address cannot be bound (in use, not local, no permission).
    pub fn bind(addr: SocketAddr) -> Result<Exporter> {
        let what = || format!("cannot serve metrics on {addr}");
        let listener = TcpListener::bind(addr).with_context(what)?;
        let addr = listener.local_addr().with_context(what)?;
        Ok(Exporter { listener, addr })
    }

    /// The bound address (with the port chosen when `:0` was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves scrapes on threads of their own, gathering from the broker
    /// at `socket`; they end with the process.
    ///
    /// # Errors
    /// The thread cannot be started.
    pub fn spawn(self, socket: PathBuf) -> Result<()> {
        // One connection to the broker, shared by the scrapes (which take
        // their turn on it; the answer is written after).
        let broker = Mutex::new(None::<Client>);
        let handler = move |r: &Request<'_>| {
            if r.path != METRICS_PATH {
                return Response::text(404, "not found: metrics are at /metrics\n");
            }
            let mut broker = broker.lock().unwrap_or_else(|p| p.into_inner());
            scrape(&mut broker, &socket)
        };
        let listener = self.listener;
        std::thread::Builder::new()
            .name("ringbus-metrics".into())
            .spawn(move || crate::http::serve(listener, handler))
            .context("starting the metrics thread")?;
        Ok(())
    }
}

/// One scrape: asks the broker (connecting again if the connection
/// broke) and encodes the answer.
fn scrape(broker: &mut Option<Client>, socket: &Path) -> Response {
    let gather = |broker: &mut Option<Client>| -> Result<String> {
        let client = match broker {
            Some(c) => c,
            None => broker.insert(Client::connect(socket)?),
        };
        let topics = client.topics()?;
        let stats = client.stats()?;
        encode(&topics, &stats, resident_bytes())
    };
    // A broken connection gets one fresh try.
    let result = gather(broker).or_else(|_| {
        *broker = None;
        gather(broker)
    });
    match result {
        Ok(body) => Response::text(200, body).with_content_type(CONTENT_TYPE),
        Err(e) => {
            *broker = None;
            Response::text(503, format!("cannot reach the broker: {e:#}\n"))
        }
    }
}

/// The process's resident memory, from `/proc/self/statm` (`None` where
/// it cannot be read).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * rustix::param::page_size() as u64)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TopicLabels {
    topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    topic: String,
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RingLabels {
    topic: String,
    ring: String,
}

fn gauge(v: u64) -> Gauge<u64, std::sync::atomic::AtomicU64> {
    let g = Gauge::<u64, std::sync::atomic::AtomicU64>::default();
    g.set(v);
    g
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

type U64Gauges<L> = Family<L, Gauge<u64, std::sync::atomic::AtomicU64>>;

/// The exposition of one scrape. Counters that can fall (sums over the
/// subscribers of the moment) are gauges.
///
/// # Errors
/// Formatting failed (it does not, into a `String`).
pub fn encode(topics: &[TopicInfo], stats: &BrokerStats, resident: Option<u64>) -> Result<String> {
    let mut reg = Registry::with_prefix("ringbus");

    let publishers = U64Gauges::<TopicLabels>::default();
    let subscribers = U64Gauges::<TopicLabels>::default();
    let messages = Family::<RingLabels, Counter>::default();
    let mean_size = Family::<RingLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
    let memory = U64Gauges::<RingLabels>::default();
    let ring_subs = U64Gauges::<RingLabels>::default();
    let lag = U64Gauges::<RingLabels>::default();
    let dropped = U64Gauges::<RingLabels>::default();
    let filtered = U64Gauges::<RingLabels>::default();
    let delivered = U64Gauges::<RingLabels>::default();
    let ended = U64Gauges::<RingLabels>::default();
    let upstream_lost = Family::<RingLabels, Counter>::default();
    let journal_recorded = Family::<TopicLabels, Counter>::default();
    let journal_lost = Family::<TopicLabels, Counter>::default();
    let journal_errors = Family::<TopicLabels, Counter>::default();
    let journal_bytes = U64Gauges::<TopicLabels>::default();
    let journal_segments = U64Gauges::<TopicLabels>::default();
    let journal_corrupt = U64Gauges::<TopicLabels>::default();
    let journal_damaged = U64Gauges::<TopicLabels>::default();
    // Gauges: a group's counts start again when it is made anew.
    let group_members = U64Gauges::<GroupLabels>::default();
    let group_claimed = U64Gauges::<GroupLabels>::default();
    let group_acked = U64Gauges::<GroupLabels>::default();
    let group_backlog = U64Gauges::<GroupLabels>::default();
    let group_redelivered = U64Gauges::<GroupLabels>::default();
    let group_dead = U64Gauges::<GroupLabels>::default();
    for t in topics {
        let tl = TopicLabels {
            topic: t.name.clone(),
        };
        for g in &t.groups {
            let l = GroupLabels {
                topic: t.name.clone(),
                group: g.name.clone(),
            };
            group_members.get_or_create(&l).set(u64::from(g.members));
            group_claimed.get_or_create(&l).set(g.claimed);
            group_acked.get_or_create(&l).set(g.acknowledged);
            group_backlog.get_or_create(&l).set(g.backlog);
            group_redelivered.get_or_create(&l).set(g.redelivered);
            group_dead.get_or_create(&l).set(g.dead_lettered);
        }
        if let Some(j) = &t.journal {
            journal_recorded.get_or_create(&tl).inc_by(j.recorded);
            journal_lost.get_or_create(&tl).inc_by(j.lost);
            journal_errors.get_or_create(&tl).inc_by(j.errors);
            journal_bytes.get_or_create(&tl).set(j.bytes);
            journal_segments.get_or_create(&tl).set(j.segments);
            journal_corrupt.get_or_create(&tl).set(j.corrupt);
            journal_damaged.get_or_create(&tl).set(j.damaged_segments);
        }
        publishers.get_or_create(&tl).set(u64::from(t.publishers));
        subscribers.get_or_create(&tl).set(u64::from(t.subscribers));
        for r in &t.rings {
            let l = RingLabels {
                topic: t.name.clone(),
                ring: format!("{:x}", r.ring_id),
            };
            messages.get_or_create(&l).inc_by(r.next_seq);
            if let Some(m) = r.mean_message_size() {
                mean_size.get_or_create(&l).set(m);
            }
            memory.get_or_create(&l).set(r.bytes);
            ring_subs.get_or_create(&l).set(u64::from(r.cursors));
            if let Some(v) = r.lag() {
                lag.get_or_create(&l).set(v);
            }
            dropped.get_or_create(&l).set(r.dropped);
            let sum = |f: fn(&ringbus::control::frame::PortInfo) -> u64| {
                r.ports.iter().map(f).fold(0u64, u64::saturating_add)
            };
            filtered.get_or_create(&l).set(sum(|p| p.filtered));
            delivered.get_or_create(&l).set(sum(|p| p.delivered));
            ended.get_or_create(&l).set(u64::from(r.closed));
            upstream_lost.get_or_create(&l).inc_by(r.upstream_lost);
        }
    }
    reg.register(
        "topic_publishers",
        "Publishers attached to the topic",
        publishers,
    );
    reg.register("topic_subscribers", "Subscribers of the topic", subscribers);
    reg.register(
        "ring_messages",
        "Messages published into the ring (its head sequence)",
        messages,
    );
    reg.register_with_unit(
        "ring_message_size",
        "Mean payload size of the ring's latest messages (at most 64 sampled)",
        Unit::Bytes,
        mean_size,
    );
    reg.register_with_unit(
        "ring_memory",
        "Shared memory the ring uses: data, lobby and ports",
        Unit::Bytes,
        memory,
    );
    reg.register(
        "ring_subscribers",
        "Subscribers holding a cursor on the ring",
        ring_subs,
    );
    reg.register(
        "ring_lag_messages",
        "Messages published but not yet consumed by the slowest cursor",
        lag,
    );
    reg.register(
        "ring_dropped_messages",
        "Messages the ring's current subscribers lost to overwrites",
        dropped,
    );
    reg.register(
        "ring_filtered_messages",
        "Messages the filters of the ring's (first 16) subscribers turned down",
        filtered,
    );
    reg.register(
        "ring_delivered_messages",
        "Messages delivered to the ring's (first 16) subscribers",
        delivered,
    );
    reg.register("ring_ended", "1 once the ring's publisher is gone", ended);
    reg.register(
        "ring_upstream_lost_messages",
        "Messages the ring's publisher reports lost before they reached it (a bridge's import)",
        upstream_lost,
    );
    reg.register(
        "journal_recorded_messages",
        "Messages the durable topic's recorder appended to its journals",
        journal_recorded,
    );
    reg.register(
        "journal_lost_messages",
        "Messages the durable topic's journals will never have",
        journal_lost,
    );
    reg.register(
        "journal_write_errors",
        "Failed journal writes (each retried, the publishers held back meanwhile)",
        journal_errors,
    );
    reg.register_with_unit(
        "journal_size",
        "Bytes of the durable topic's journal segment files",
        Unit::Bytes,
        journal_bytes,
    );
    reg.register(
        "journal_segments",
        "Segment files of the durable topic's journals",
        journal_segments,
    );
    reg.register(
        "journal_corrupt_records",
        "Damaged stretches in the journals found at recovery (readers skip them)",
        journal_corrupt,
    );
    reg.register(
        "journal_damaged_segments",
        "Segment files set aside at recovery",
        journal_damaged,
    );
    reg.register(
        "group_members",
        "Member subscriptions of the consumer group",
        group_members,
    );
    reg.register(
        "group_claimed_messages",
        "Messages the group's members claimed",
        group_claimed,
    );
    reg.register(
        "group_acknowledged_messages",
        "Messages the group's members claimed and no longer hold",
        group_acked,
    );
    reg.register(
        "group_backlog_messages",
        "Messages published and not yet claimed by the group",
        group_backlog,
    );
    reg.register(
        "group_redelivered_messages",
        "Messages handed on by members that died or left holding them",
        group_redelivered,
    );
    reg.register(
        "group_dead_lettered_messages",
        "Messages the group's members sent to the dead-letter topic",
        group_dead,
    );

    reg.register(
        "clients",
        "Connected clients",
        gauge(u64::from(stats.clients)),
    );
    reg.register("topics", "Known topics", gauge(u64::from(stats.topics)));
    reg.register(
        "rings",
        "Rings of all topics",
        gauge(u64::from(stats.rings)),
    );
    reg.register(
        "publishers",
        "Publisher leases",
        gauge(u64::from(stats.publishers)),
    );
    reg.register(
        "subscribers",
        "Subscriber leases",
        gauge(u64::from(stats.subscribers)),
    );
    reg.register(
        "frames_received",
        "Control frames received",
        counter(stats.frames_received),
    );
    reg.register(
        "frames_rejected",
        "Control frames answered with an error",
        counter(stats.frames_rejected),
    );
    reg.register(
        "permission_denied",
        "Requests refused by the ACL",
        counter(stats.permission_denied),
    );
    reg.register(
        "clients_reaped",
        "Dead processes whose rings or cursors were reclaimed",
        counter(stats.clients_reaped),
    );
    reg.register_with_unit(
        "shared_memory",
        "Shared memory in rings",
        Unit::Bytes,
        gauge(stats.ring_bytes),
    );
    reg.register_with_unit(
        "uptime",
        "Time since the broker started",
        Unit::Seconds,
        gauge(stats.uptime_ms / 1000),
    );
    if let Some(rss) = resident {
        reg.register_with_unit(
            "process_resident_memory",
            "Resident memory of the broker process",
            Unit::Bytes,
            gauge(rss),
        );
    }
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}
