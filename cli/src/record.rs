//! `ringbus record` and `ringbus replay`: topics to and from MCAP files,
//! the log format robotics tools open (Foxglove, ROS 2's `ros2 bag`).
//!
//! A recording has one MCAP channel per topic and ring (publisher). The
//! channel's metadata carries the topic's name and config and the ring's
//! id, so a replay recreates the topics as they were. A message's log and
//! publish times are its publish timestamp moved to the realtime clock (or,
//! for a publisher that does not stamp, the moment it was recorded). The
//! `framed` layout (the default) keeps each message's full sequence number
//! and tag: its data is `sequence (u64 LE) | tag (u64 LE) | payload`. The
//! `raw` layout stores the payload alone, under the encoding `--encoding`
//! names (`json`, `cdr`, `protobuf`, ...), for tools that decode it; the
//! tag is then not kept, and the sequence only in MCAP's 32 bits.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use clap::{Args, ValueEnum};

use ringbus::client::{Client, Mode, Publisher, SubscribeOptions, TopicConfig};
use ringbus::control::{pattern_matches, validate_pattern, validate_topic_name};
use ringbus::ring::{RecvError, Start};
use ringbus::wait::WaitStrategy;

/// The message encoding of a framed channel.
pub(crate) const FRAMED: &str = "ringbus.framed";
/// Bytes before the payload in a framed message.
pub(crate) const FRAME_HEADER: usize = 16;
/// Channel metadata keys.
pub(crate) const META_TOPIC: &str = "ringbus.topic";
pub(crate) const META_RING: &str = "ringbus.ring";
pub(crate) const META_MODE: &str = "ringbus.mode";
const META_CAPACITY: &str = "ringbus.capacity";
pub(crate) const META_MAX_SIZE: &str = "ringbus.max_message_size";
const META_MAX_SUBSCRIBERS: &str = "ringbus.max_subscribers";

/// How messages are laid out in a recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Layout {
    /// Sequence number and tag, then the payload (nothing lost).
    Framed,
    /// The payload alone (tools decode it; tags are not kept).
    Raw,
}

/// `ringbus record`.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Topic or pattern (`'md.>'`): topics that appear while recording
    /// are recorded too.
    pub topic: String,
    /// The MCAP file to write (replaced if it exists).
    #[arg(short, long, value_name = "FILE.mcap")]
    pub output: PathBuf,
    /// Stop after this many seconds (else at SIGINT / SIGTERM).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
    /// Stop after N messages.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Where to start in the rings that exist now (latest, earliest or a
    /// sequence number); rings that appear later are recorded whole.
    #[arg(long, value_name = "WHERE", default_value = "latest")]
    pub from: Start,
    /// How messages are stored.
    #[arg(long, value_enum, default_value = "framed")]
    pub layout: Layout,
    /// With `--layout raw`: the payloads' encoding as MCAP names it
    /// (`json`, `cdr`, `protobuf`, `ros1`, `flatbuffer`, ...).
    #[arg(long, value_name = "NAME")]
    pub encoding: Option<String>,
}

/// `ringbus replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// An MCAP file written by `ringbus record` (or any MCAP file: each
    /// channel's topic becomes a ringbus topic, `/` turned into `.`).
    pub input: PathBuf,
    /// Replay at this multiple of the recorded pace.
    #[arg(long, value_name = "X", default_value_t = 1.0, conflicts_with = "max")]
    pub rate: f64,
    /// Replay as fast as the subscribers take it.
    #[arg(long)]
    pub max: bool,
    /// Replay only the topics this pattern matches (their recorded names).
    #[arg(long, value_name = "PATTERN")]
    pub topics: Option<String>,
    /// Prepend this to every topic's name (`replay.` turns `md.x` into
    /// `replay.md.x`).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub prefix: String,
}

/// CLOCK_REALTIME minus CLOCK_MONOTONIC, ns: moves publish timestamps
/// (monotonic) to the wall clock MCAP tools expect.
fn realtime_offset() -> i128 {
    let now = |c| {
        let t = rustix::time::clock_gettime(c);
        i128::from(t.tv_sec) * 1_000_000_000 + i128::from(t.tv_nsec)
    };
    now(rustix::time::ClockId::Realtime) - now(rustix::time::ClockId::Monotonic)
}

fn realtime_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Realtime);
    (t.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(t.tv_nsec as u64)
}

fn config_metadata(config: Option<TopicConfig>, meta: &mut BTreeMap<String, String>) {
    if let Some(c) = config {
        meta.insert(META_MODE.into(), c.mode.to_string());
        meta.insert(META_CAPACITY.into(), c.capacity.to_string());
        meta.insert(META_MAX_SIZE.into(), c.max_message_size.to_string());
        meta.insert(META_MAX_SUBSCRIBERS.into(), c.max_subscribers.to_string());
    }
}

/// Records `a.topic` into `a.output` until a limit or a signal.
pub fn record(client: &Client, a: &RecordArgs) -> Result<ExitCode> {
    if let Some(d) = a.duration {
        ensure!(
            d.is_finite() && d > 0.0,
            "--duration must be a positive number of seconds, not {d}"
        );
    }
    ensure!(
        a.encoding.is_none() || a.layout == Layout::Raw,
        "--encoding names a raw payload's encoding: use it with --layout raw"
    );
    let stop = ringbus::broker::install_stop_handlers()
        .context("installing the SIGINT / SIGTERM handlers")?;
    let options = SubscribeOptions {
        start: a.from,
        wait: WaitStrategy::Block,
    };
    let mut sub = client
        .subscriber(&a.topic, options)
        .with_context(|| format!("cannot subscribe to {:?}", a.topic))?;
    let file = std::fs::File::create(&a.output)
        .with_context(|| format!("cannot create {}", a.output.display()))?;
    let mut out = mcap::WriteOptions::new()
        .compression(None)
        .library(concat!("ringbus ", env!("CARGO_PKG_VERSION")))
        .create(BufWriter::new(file))
        .context("starting the MCAP file")?;
    let encoding = match a.layout {
        Layout::Framed => FRAMED.to_string(),
        Layout::Raw => a.encoding.clone().unwrap_or_default(),
    };
    let offset = realtime_offset();
    let deadline = a
        .duration
        .map(|d| Instant::now() + Duration::from_secs_f64(d));
    let mut channels: HashMap<(u32, u64), u16> = HashMap::new();
    let max = sub
        .config()
        .map_or(64 << 20, |c| c.max_message_size as usize)
        .max(64 << 10);
    let mut buf = vec![0u8; FRAME_HEADER + max];
    let mut recorded = 0u64;
    let mut lost = 0u64;
    while a.count.map_or(true, |c| recorded < c)
        && deadline.map_or(true, |d| Instant::now() < d)
        && !stop.load(std::sync::atomic::Ordering::Relaxed)
    {
        let d = match sub.recv_timeout(&mut buf[FRAME_HEADER..], Duration::from_millis(100)) {
            Ok(d) => d,
            Err(RecvError::Timeout | RecvError::Empty | RecvError::EndOfStream) => continue,
            Err(RecvError::Lagged { missed }) => {
                lost += missed;
                eprintln!(
                    "ringbus: ring {}: {missed} messages were overwritten before they were recorded",
                    sub.last_ring_id()
                );
                continue;
            }
            Err(RecvError::BufferTooSmall { needed }) => {
                buf.resize(FRAME_HEADER + needed, 0);
                continue;
            }
            Err(e) => return Err(e).context("recording"),
        };
        let key = (d.topic, d.ring_id);
        let channel = match channels.get(&key) {
            Some(&c) => c,
            None => {
                let name = sub.topic_name(d.topic).unwrap_or_default().to_string();
                let mut meta = BTreeMap::new();
                meta.insert(META_TOPIC.into(), name.clone());
                meta.insert(META_RING.into(), d.ring_id.to_string());
                config_metadata(sub.topic_config(d.topic), &mut meta);
                let c = out
                    .add_channel(0, &name, &encoding, &meta)
                    .context("adding an MCAP channel")?;
                channels.insert(key, c);
                c
            }
        };
        let time = match d.info.timestamp {
            0 => realtime_ns(),
            t => (i128::from(t) + offset).clamp(0, i128::from(u64::MAX)) as u64,
        };
        let header = mcap::records::MessageHeader {
            channel_id: channel,
            sequence: d.info.seq as u32,
            log_time: time,
            publish_time: time,
        };
        let data = match a.layout {
            Layout::Framed => {
                buf[..8].copy_from_slice(&d.info.seq.to_le_bytes());
                buf[8..16].copy_from_slice(&d.info.tag.to_le_bytes());
                &buf[..FRAME_HEADER + d.info.len]
            }
            Layout::Raw => &buf[FRAME_HEADER..FRAME_HEADER + d.info.len],
        };
        out.write_to_known_channel(&header, data)
            .context("writing a message to the MCAP file")?;
        recorded += 1;
    }
    out.finish().context("finishing the MCAP file")?;
    let mut inner = out.into_inner();
    inner.flush().context("writing the MCAP file")?;
    eprintln!(
        "ringbus: recorded {recorded} messages from {} rings into {}{}",
        channels.len(),
        a.output.display(),
        if lost > 0 {
            format!(" ({lost} lost to overwrites)")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// One recorded message, ready to publish.
struct Replayed {
    topic: usize,
    time: u64,
    tag: u64,
    payload: Vec<u8>,
}

/// What a channel replays into.
struct Target {
    name: String,
    config: TopicConfig,
}

fn parse_meta<T: std::str::FromStr>(
    meta: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<T>> {
    meta.get(key)
        .map(|v| {
            v.parse()
                .map_err(|_| anyhow::anyhow!("bad channel metadata {key} = {v:?}"))
        })
        .transpose()
}

/// Publishes the messages of `a.input` through the broker, paced as
/// recorded (or `--max`).
pub fn replay(client: &Client, a: &ReplayArgs) -> Result<ExitCode> {
    ensure!(
        a.max || (a.rate.is_finite() && a.rate > 0.0),
        "--rate must be a positive number, not {}",
        a.rate
    );
    if let Some(p) = &a.topics {
        validate_pattern(p).map_err(|e| anyhow::anyhow!("bad --topics {p:?}: {e}"))?;
    }
    let bytes =
        std::fs::read(&a.input).with_context(|| format!("cannot read {}", a.input.display()))?;
    let not_mcap = || format!("{} is not a readable MCAP file", a.input.display());
    // First pass: the channels' topics and configs, the largest payload
    // of each, and the messages in the order they were recorded.
    let stream = mcap::MessageStream::new(&bytes).with_context(not_mcap)?;
    let mut targets: Vec<Target> = Vec::new();
    let mut by_channel: HashMap<u16, Option<usize>> = HashMap::new();
    let mut messages: Vec<Replayed> = Vec::new();
    let mut largest: Vec<usize> = Vec::new();
    for m in stream {
        let m = m.with_context(not_mcap)?;
        let slot = match by_channel.get(&m.channel.id) {
            Some(&s) => s,
            None => {
                let meta = &m.channel.metadata;
                let recorded = meta
                    .get(META_TOPIC)
                    .cloned()
                    .unwrap_or_else(|| m.channel.topic.trim_matches('/').replace('/', "."));
                let wanted = a
                    .topics
                    .as_deref()
                    .map_or(true, |p| pattern_matches(p, &recorded));
                let s = if wanted {
                    let name = format!("{}{recorded}", a.prefix);
                    validate_topic_name(&name).map_err(|e| {
                        anyhow::anyhow!(
                            "channel {:?} cannot be a topic as {name:?}: {e}",
                            m.channel.topic
                        )
                    })?;
                    let d = TopicConfig::default();
                    let config = TopicConfig {
                        mode: parse_meta::<Mode>(meta, META_MODE)?.unwrap_or(d.mode),
                        capacity: parse_meta(meta, META_CAPACITY)?.unwrap_or(d.capacity),
                        max_message_size: parse_meta(meta, META_MAX_SIZE)?
                            .unwrap_or(d.max_message_size),
                        max_subscribers: parse_meta(meta, META_MAX_SUBSCRIBERS)?
                            .unwrap_or(d.max_subscribers),
                    };
                    Some(match targets.iter().position(|t| t.name == name) {
                        Some(i) => i,
                        None => {
                            targets.push(Target { name, config });
                            largest.push(0);
                            targets.len() - 1
                        }
                    })
                } else {
                    None
                };
                by_channel.insert(m.channel.id, s);
                s
            }
        };
        let Some(topic) = slot else { continue };
        let (tag, payload) = if m.channel.message_encoding == FRAMED {
            ensure!(
                m.data.len() >= FRAME_HEADER,
                "a framed message of channel {:?} is {} bytes, shorter than its header",
                m.channel.topic,
                m.data.len()
            );
            let tag = u64::from_le_bytes(m.data[8..16].try_into().expect("8 bytes"));
            (tag, FRAME_HEADER)
        } else {
            (0, 0)
        };
        let data = m.data[payload..].to_vec();
        largest[topic] = largest[topic].max(data.len());
        messages.push(Replayed {
            topic,
            time: m.log_time,
            tag,
            payload: data,
        });
    }
    // The publishers: each topic's recorded config, its message size
    // raised to what was recorded if a foreign file exceeds it.
    let mut publishers: Vec<Publisher> = Vec::with_capacity(targets.len());
    for (t, big) in targets.iter().zip(&largest) {
        let mut config = t.config;
        if *big > config.max_message_size as usize {
            config.max_message_size = u32::try_from(*big).context("a message over 4 GiB")?;
        }
        publishers.push(
            client
                .publisher(&t.name, config)
                .with_context(|| format!("cannot publish to {:?}", t.name))?,
        );
    }
    let stop = ringbus::broker::install_stop_handlers()
        .context("installing the SIGINT / SIGTERM handlers")?;
    let start = Instant::now();
    let first = messages.first().map_or(0, |m| m.time);
    let mut sent = 0u64;
    for m in &messages {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        if !a.max {
            let due = Duration::from_secs_f64(m.time.saturating_sub(first) as f64 / 1e9 / a.rate);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        publishers[m.topic]
            .publish(&m.payload, m.tag)
            .with_context(|| format!("publishing to {:?}", targets[m.topic].name))?;
        sent += 1;
    }
    eprintln!(
        "ringbus: replayed {sent} messages into {} topics",
        targets.len()
    );
    Ok(ExitCode::SUCCESS)
}
