//! The `ringbus` command line: a thin layer over [`ringbus::broker`] and
//! [`ringbus::client`].

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use ringbus::broker::{install_stop_handlers, Broker, BrokerOptions, Config};
use ringbus::client::{Client, ClientError, Mode, SubscribeOptions, TopicConfig};
use ringbus::control::{is_pattern, paths, ErrorCode, TopicInfo};
use ringbus::ring::{PublishError, RecvError, Start};
use ringbus::wait::WaitStrategy;

/// A shared-memory message broker for processes on one host.
#[derive(Debug, Parser)]
#[command(name = "ringbus", version, about, propagate_version = true)]
pub struct Cli {
    /// Broker socket [default: $RINGBUS_SOCKET, else
    /// $XDG_RUNTIME_DIR/ringbus.sock, else /tmp/ringbus-$UID/ringbus.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Publish lines from stdin (one message each), or generated messages.
    Pub(PubArgs),
    /// Print the messages of a topic.
    Sub(SubArgs),
    /// List topics with their rings, publishers, subscribers and lag.
    Topics(JsonArg),
    /// Show the broker's counters.
    Stats(JsonArg),
    /// Record topics (a pattern: those that appear too) into an MCAP file.
    Record(crate::record::RecordArgs),
    /// Publish an MCAP file's messages back, at their recorded pace.
    Replay(crate::record::ReplayArgs),
    /// A durable topic's journal: what it holds, a range of it to MCAP.
    Journal(crate::journal::JournalArgs),
    /// Topics and rings by message rate (msg/s, bytes/s, subscribers,
    /// lag, drops, filtered), refreshed in place; q quits.
    Top(crate::top::TopArgs),
    /// Measure latency and throughput against the hardware floor (starts
    /// its own broker and processes; needs two CPUs).
    Bench(Box<ringbus_bench::BenchArgs>),
    /// Internal: one side of a `ringbus bench` measurement.
    #[command(name = "__bench-child", hide = true)]
    BenchChild {
        /// The measurement's spec (JSON, written by `ringbus bench`).
        spec: String,
    },
    /// Internal: the keeper of a broker's rings (started by `serve`).
    #[command(name = "__keeper", hide = true)]
    Keeper {
        /// The broker's data directory.
        dir: PathBuf,
    },
}

/// `ringbus serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Data directory: the broker's lock and its keeper's socket
    /// [default: /dev/shm/ringbus-$UID]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML config: topics, ACL rules, limits.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (an IP address and
    /// port, e.g. 127.0.0.1:9464) [default: off]
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
}

/// Topic config flags; a topic that exists keeps its config when none is
/// given.
#[derive(Debug, Args)]
pub struct TopicFlags {
    /// Largest message in bytes [default: 1024, or the topic's]
    #[arg(long, value_name = "BYTES")]
    pub max_size: Option<u32>,
    /// Slots per ring, a power of two [default: 1024, or the topic's]
    #[arg(long, value_name = "N")]
    pub capacity: Option<u32>,
    /// What a full ring does: overwrite (the publisher never waits; slow
    /// subscribers lose messages, and are told) or backpressure (nothing is
    /// lost; the publisher waits for the slowest subscriber) [default:
    /// overwrite, or the topic's]
    #[arg(long, value_name = "MODE")]
    pub mode: Option<Mode>,
    /// Back-pressure cursors per ring [default: 16, or the topic's]
    #[arg(long, value_name = "N")]
    pub max_subscribers: Option<u32>,
}

/// `ringbus pub`.
#[derive(Debug, Args)]
pub struct PubArgs {
    /// Topic name.
    pub topic: String,
    /// Publish N generated messages instead of reading stdin.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Size of generated messages in bytes (at least 8: they start with
    /// their sequence number, little-endian).
    #[arg(long, value_name = "BYTES", default_value_t = 64, requires = "count")]
    pub size: usize,
    /// Messages per second for generated messages [default: as fast as
    /// possible]
    #[arg(long, value_name = "R", requires = "count")]
    pub rate: Option<f64>,
    /// Tag attached to every message.
    #[arg(long, default_value_t = 0)]
    pub tag: u64,
    /// Topic config.
    #[command(flatten)]
    pub topic_flags: TopicFlags,
}

/// `ringbus sub`.
#[derive(Debug, Args)]
pub struct SubArgs {
    /// Topic name, or a pattern of topics: `*` matches one segment, a final
    /// `>` the rest (`'md.>'`, `'md.*.AAPL'`; quote it for the shell).
    /// Topics created later that match are read too.
    pub topic: String,
    /// Exit after N messages.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Where to start in the rings that exist now: latest (the next
    /// message published), earliest (the oldest still held) or a sequence
    /// number. Rings that appear later are read from their first message.
    #[arg(long, value_name = "WHERE", default_value = "latest")]
    pub from: Start,
    /// Start at sequence number N: on a durable topic, what the rings no
    /// longer hold is read from the journal first (then the live rings,
    /// with no gap and no duplicate).
    #[arg(long, value_name = "N", conflicts_with_all = ["from", "since"])]
    pub from_seq: Option<u64>,
    /// Start with what a durable topic journaled this long ago or later
    /// (`10m`, `90s`, `2h`, `1d`), or since a time given as `@SECONDS`
    /// since the Unix epoch; then the live rings.
    #[arg(long, value_name = "AGE", value_parser = parse_since, conflicts_with = "from")]
    pub since: Option<u64>,
    /// One JSON object per line (messages and events).
    #[arg(long)]
    pub json: bool,
    /// Exit once every ring seen has ended (its publisher left) and none
    /// is left.
    #[arg(long)]
    pub until_end: bool,
    /// How to wait for messages: spin, spin-yield, block (futex) or
    /// adaptive (spin briefly, then block).
    #[arg(long, value_name = "WAIT", default_value = "adaptive")]
    pub wait: WaitStrategy,
    /// Print only messages with this tag (repeat for a set of up to 64
    /// tags). Decimal or 0x-hex.
    #[arg(long, value_name = "TAG", value_parser = parse_u64, conflicts_with_all = ["tag_mask", "tag_value"])]
    pub tag: Vec<u64>,
    /// Print only messages whose `tag & MASK == VALUE` (with --tag-value).
    #[arg(long, value_name = "MASK", value_parser = parse_u64, requires = "tag_value")]
    pub tag_mask: Option<u64>,
    /// The value for --tag-mask.
    #[arg(long, value_name = "VALUE", value_parser = parse_u64, requires = "tag_mask")]
    pub tag_value: Option<u64>,
    /// Join consumer group NAME: the group's members share the messages,
    /// each going to one member (acknowledged when the next is asked
    /// for). --from applies when the group is new.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["tag", "tag_mask", "tag_value", "from_seq", "since"])]
    pub group: Option<String>,
    /// With --group: deliveries of a message before it goes to the
    /// dead-letter topic (TOPIC.dlq); every member must agree.
    #[arg(long, value_name = "N", default_value_t = ringbus::client::DEFAULT_MAX_DELIVERIES, requires = "group")]
    pub max_deliveries: u32,
}

/// `--since`: an age (`10m`) before now, or `@SECONDS` since the epoch,
/// as CLOCK_REALTIME ns.
fn parse_since(s: &str) -> Result<u64, String> {
    if let Some(secs) = s.strip_prefix('@') {
        let secs: f64 = secs
            .parse()
            .map_err(|_| format!("{s:?}: expected @SECONDS since the Unix epoch"))?;
        if !(0.0..=1.8e10).contains(&secs) {
            return Err(format!("{s:?}: not a time this side of the year 2500"));
        }
        return Ok((secs * 1e9) as u64);
    }
    let age = ringbus::journal::parse_duration(s)?;
    let now = ringbus::journal::realtime_ns();
    let age = u64::try_from(age.as_nanos()).unwrap_or(u64::MAX);
    Ok(now.saturating_sub(age))
}

/// A `u64` in decimal or `0x` hexadecimal.
fn parse_u64(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let r = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(&h.replace('_', ""), 16),
        None => t.replace('_', "").parse(),
    };
    r.map_err(|e| format!("{s:?} is not a 64-bit unsigned number (decimal or 0x-hex): {e}"))
}

/// `--json` for listing commands.
#[derive(Debug, Args)]
pub struct JsonArg {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl Cli {
    fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(paths::default_socket_path)
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Serve(a) => serve(&cli, a),
        Command::Pub(a) => publish(&connect(&cli)?, a),
        Command::Sub(a) => subscribe(&connect(&cli)?, a),
        Command::Topics(a) => topics(&connect(&cli)?, a.json),
        Command::Stats(a) => stats(&connect(&cli)?, a.json),
        Command::Record(a) => crate::record::record(&connect(&cli)?, a),
        Command::Replay(a) => crate::record::replay(&connect(&cli)?, a),
        Command::Journal(a) => crate::journal::run(a),
        Command::Top(a) => crate::top::run(&cli.socket_path(), a),
        Command::Bench(a) => ringbus_bench::run(a).map(|()| ExitCode::SUCCESS),
        Command::BenchChild { spec } => ringbus_bench::child_main(spec).map(|()| ExitCode::SUCCESS),
        Command::Keeper { dir } => ringbus::broker::keeper::run(dir)
            .with_context(|| format!("keeper of {}", dir.display()))
            .map(|()| ExitCode::SUCCESS),
    }
}

fn connect(cli: &Cli) -> Result<Client> {
    Ok(Client::connect(cli.socket_path())?)
}

fn serve(cli: &Cli, a: &ServeArgs) -> Result<ExitCode> {
    let config = match &a.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    let mut opts = BrokerOptions::resolve(cli.socket.clone(), a.data_dir.clone(), config);
    // Rings outlive a broker that crashes or restarts: a keeper process
    // (this binary, `__keeper`) holds their descriptors meanwhile.
    opts.keeper = std::env::current_exe().ok();
    let stop = install_stop_handlers().context("installing signal handlers")?;
    let metrics = a.metrics.map(crate::metrics::Exporter::bind).transpose()?;
    let mut broker = Broker::bind(opts)?;
    if let Some(m) = metrics {
        eprintln!("ringbus: metrics at http://{}/metrics", m.local_addr());
        m.spawn(broker.socket_path().to_owned())?;
    }
    eprintln!(
        "ringbus: broker pid {} listening on {} (data dir {})",
        std::process::id(),
        broker.socket_path().display(),
        broker.data_dir().display()
    );
    broker.run(stop)?;
    eprintln!("ringbus: shutting down");
    Ok(ExitCode::SUCCESS)
}

fn topic_config(client: &Client, topic: &str, f: &TopicFlags) -> Result<Option<TopicConfig>> {
    let given = f.max_size.is_some()
        || f.capacity.is_some()
        || f.mode.is_some()
        || f.max_subscribers.is_some();
    let existing = client
        .topics()?
        .into_iter()
        .find(|t| t.name == topic)
        .and_then(|t| t.config);
    if existing.is_some() && !given {
        return Ok(None);
    }
    let base = existing.unwrap_or_default();
    Ok(Some(TopicConfig {
        max_message_size: f.max_size.unwrap_or(base.max_message_size),
        capacity: f.capacity.unwrap_or(base.capacity),
        mode: f.mode.unwrap_or(base.mode),
        max_subscribers: f.max_subscribers.unwrap_or(base.max_subscribers),
    }))
}

fn publish(client: &Client, a: &PubArgs) -> Result<ExitCode> {
    let mut publisher = match topic_config(client, &a.topic, &a.topic_flags)? {
        Some(c) => client.publisher(&a.topic, c),
        None => client.publisher_existing(&a.topic),
    }
    .with_context(|| format!("cannot publish to {:?}", a.topic))?;
    // A command-line publisher is not latency-critical: stamp its messages
    // so `ringbus sub` can show when they were published.
    publisher.set_timestamps(true);
    let max = publisher.config().max_message_size as usize;
    let mut send = |data: &[u8]| -> Result<()> {
        match publisher.publish(data, a.tag) {
            Ok(_) => Ok(()),
            Err(PublishError::TooLarge { .. }) => bail!(
                "a message of {} bytes exceeds the topic's max message size of {max}",
                data.len()
            ),
            Err(e) => Err(e.into()),
        }
    };
    if let Some(count) = a.count {
        if a.size < 8 {
            bail!(
                "--size must be at least 8 (generated messages start with their sequence number)"
            );
        }
        let mut payload = vec![0u8; a.size];
        let start = Instant::now();
        for i in 0..count {
            if let Some(rate) = a.rate.filter(|r| *r > 0.0) {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
            }
            payload[..8].copy_from_slice(&i.to_le_bytes());
            payload[8..].fill(b'a' + (i % 26) as u8);
            send(&payload)?;
        }
    } else {
        let stdin = std::io::stdin().lock();
        for line in stdin.split(b'\n') {
            let mut line = line.context("reading stdin")?;
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            send(&line)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn subscribe(client: &Client, a: &SubArgs) -> Result<ExitCode> {
    if let Some(group) = &a.group {
        return subscribe_group(client, a, group);
    }
    let start = match (a.from_seq, a.since) {
        (Some(n), _) => Start::Sequence(n),
        (None, Some(ns)) => Start::Time(ns),
        (None, None) => a.from,
    };
    let options = SubscribeOptions {
        start,
        wait: a.wait,
    };
    let mut sub = client
        .subscriber(&a.topic, options)
        .with_context(|| format!("cannot subscribe to {:?}", a.topic))?;
    if let (Some(mask), Some(value)) = (a.tag_mask, a.tag_value) {
        sub.filter_tags(mask, value)
            .context("bad --tag-mask/--tag-value")?;
    }
    if !a.tag.is_empty() {
        sub.filter_tag_set(&a.tag).context("bad --tag")?;
    }
    let mut buf = vec![0u8; 64 << 20];
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut received = 0u64;
    let mut seen_rings = !sub.rings().is_empty() || sub.replaying();
    while a.count.map_or(true, |c| received < c) {
        let r = match sub.try_recv(&mut buf) {
            Err(RecvError::Empty) => {
                if out.flush().is_err() {
                    return Ok(ExitCode::SUCCESS); // stdout closed: done
                }
                if a.until_end && seen_rings && sub.rings().is_empty() && !sub.replaying() {
                    break;
                }
                sub.recv_timeout(&mut buf, Duration::from_millis(100))
            }
            r => r,
        };
        // A replay of the journal counts as a ring seen: a topic whose
        // publishers are all gone ends once it is read.
        seen_rings |= !sub.rings().is_empty() || sub.replaying();
        let ok = match r {
            Ok(d) => {
                received += 1;
                let payload = &buf[..d.info.len];
                if a.json {
                    let (k, v) = match std::str::from_utf8(payload) {
                        Ok(s) => ("text", json_string(s)),
                        Err(_) => ("hex", format!("\"{}\"", hex(payload))),
                    };
                    let topic = sub.topic_name(d.topic).unwrap_or_default();
                    writeln!(
                        out,
                        "{{\"topic\":{},\"ring\":{},\"seq\":{},\"tag\":{},\"timestamp\":{},\"len\":{},\"{k}\":{v}}}",
                        json_string(topic), d.ring_id, d.info.seq, d.info.tag, d.info.timestamp, d.info.len
                    )
                } else {
                    // A pattern's messages say which topic they came from.
                    if is_pattern(&a.topic) {
                        write!(out, "{} ", sub.topic_name(d.topic).unwrap_or_default())?;
                    }
                    match std::str::from_utf8(payload) {
                        Ok(s) => writeln!(out, "{s}"),
                        Err(_) => writeln!(out, "{}", hex(payload)),
                    }
                }
            }
            Err(RecvError::Timeout) | Err(RecvError::Empty) => Ok(()),
            Err(RecvError::Lagged { missed }) => event(
                &mut out,
                a.json,
                "lagged",
                sub.last_ring_id(),
                &format!("{missed} messages were overwritten before they were read"),
                missed,
            ),
            Err(RecvError::EndOfStream) => event(
                &mut out,
                a.json,
                "end",
                sub.last_ring_id(),
                "the publisher left and its ring is drained",
                0,
            ),
            Err(e @ RecvError::Corrupt { .. }) => event(
                &mut out,
                a.json,
                "corrupt",
                sub.last_ring_id(),
                &e.to_string(),
                0,
            ),
            Err(e) => return Err(e.into()),
        };
        if ok.is_err() {
            return Ok(ExitCode::SUCCESS); // stdout closed
        }
    }
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}

/// `ringbus sub --group`: as `subscribe`, each message saying whether it
/// is a redelivery.
fn subscribe_group(client: &Client, a: &SubArgs, group: &str) -> Result<ExitCode> {
    let options = ringbus::client::GroupOptions {
        start: a.from,
        wait: a.wait,
        max_deliveries: a.max_deliveries,
        ..Default::default()
    };
    let mut m = client
        .subscriber_in_group(&a.topic, group, options)
        .with_context(|| format!("cannot join group {group:?} of {:?}", a.topic))?;
    let mut buf = vec![0u8; 64 << 20];
    let out = std::io::stdout();
    let mut out = std::io::BufWriter::new(out.lock());
    let mut received = 0u64;
    let mut seen_rings = !m.subscriber().rings().is_empty();
    while a.count.map_or(true, |c| received < c) {
        let r = match m.try_recv(&mut buf) {
            Err(RecvError::Empty) => {
                if out.flush().is_err() {
                    return Ok(ExitCode::SUCCESS);
                }
                if a.until_end && seen_rings && m.subscriber().rings().is_empty() {
                    break;
                }
                m.recv_timeout(&mut buf, Duration::from_millis(100))
            }
            r => r,
        };
        // Another member may drain a ring and its publisher leave between
        // two looks at the rings: its end counts as a ring seen.
        seen_rings |= !m.subscriber().rings().is_empty() || r == Err(RecvError::EndOfStream);
        let ok = match r {
            Ok(g) => {
                received += 1;
                let d = g.delivery;
                let payload = &buf[..d.info.len];
                let topic = m.subscriber().topic_name(d.topic).unwrap_or_default();
                if a.json {
                    let (k, v) = match std::str::from_utf8(payload) {
                        Ok(s) => ("text", json_string(s)),
                        Err(_) => ("hex", format!("\"{}\"", hex(payload))),
                    };
                    writeln!(
                        out,
                        "{{\"topic\":{},\"ring\":{},\"seq\":{},\"tag\":{},\"timestamp\":{},\"len\":{},\"redelivered\":{},\"deliveries\":{},\"{k}\":{v}}}",
                        json_string(topic), d.ring_id, d.info.seq, d.info.tag, d.info.timestamp, d.info.len, g.redelivered, g.deliveries
                    )
                } else {
                    if is_pattern(&a.topic) {
                        write!(out, "{topic} ")?;
                    }
                    if g.redelivered {
                        write!(out, "(redelivered, delivery {}) ", g.deliveries)?;
                    }
                    match std::str::from_utf8(payload) {
                        Ok(s) => writeln!(out, "{s}"),
                        Err(_) => writeln!(out, "{}", hex(payload)),
                    }
                }
            }
            Err(RecvError::Timeout) | Err(RecvError::Empty) => Ok(()),
            Err(RecvError::Lagged { missed }) => event(
                &mut out,
                a.json,
                "lagged",
                0,
                &format!("{missed} messages claimed by this member were overwritten before they were read"),
                missed,
            ),
            Err(RecvError::EndOfStream) => event(
                &mut out,
                a.json,
                "end",
                0,
                "a publisher left and its ring is drained",
                0,
            ),
            Err(e @ RecvError::Corrupt { .. }) => event(&mut out, a.json, "corrupt", 0, &e.to_string(), 0),
            Err(e) => return Err(e.into()),
        };
        if ok.is_err() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    let _ = out.flush();
    Ok(ExitCode::SUCCESS)
}

fn event(
    out: &mut impl Write,
    json: bool,
    kind: &str,
    ring: u64,
    text: &str,
    count: u64,
) -> std::io::Result<()> {
    if json {
        writeln!(
            out,
            "{{\"event\":\"{kind}\",\"ring\":{ring},\"count\":{count},\"message\":{}}}",
            json_string(text)
        )
    } else {
        out.flush()?;
        eprintln!("ringbus: ring {ring}: {text}");
        Ok(())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn json_string(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn opt_json(v: Option<u64>) -> String {
    v.map_or("null".into(), |v| v.to_string())
}

fn topics(client: &Client, json: bool) -> Result<ExitCode> {
    let list = client.topics()?;
    let mut out = std::io::stdout().lock();
    if json {
        let items: Vec<String> = list.iter().map(topic_json).collect();
        writeln!(out, "[{}]", items.join(","))?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(
        out,
        "{:<24} {:<12} {:>8} {:>9} {:>5} {:>4} {:>4} {:>10} {:>8} {:>8} {:>10}",
        "TOPIC",
        "MODE",
        "CAPACITY",
        "MAX_SIZE",
        "RINGS",
        "PUBS",
        "SUBS",
        "LAST_SEQ",
        "LAG",
        "DROPS",
        "BYTES"
    )?;
    for t in &list {
        let (mode, cap, max) = match t.config {
            Some(c) => (
                c.mode.to_string(),
                c.capacity.to_string(),
                c.max_message_size.to_string(),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let last = t.rings.iter().map(|r| r.next_seq).max();
        let lag = t.rings.iter().filter_map(|r| r.lag()).max();
        let bytes: u64 = t.rings.iter().map(|r| r.bytes).sum();
        let drops: u64 = t
            .rings
            .iter()
            .map(|r| r.dropped)
            .fold(0, u64::saturating_add);
        writeln!(
            out,
            "{:<24} {:<12} {:>8} {:>9} {:>5} {:>4} {:>4} {:>10} {:>8} {:>8} {:>10}",
            t.name,
            mode,
            cap,
            max,
            t.rings.len(),
            t.publishers,
            t.subscribers,
            last.map_or("-".into(), |s| s.saturating_sub(1).to_string()),
            lag.map_or("-".into(), |l| l.to_string()),
            drops,
            bytes
        )?;
        if let Some(j) = &t.journal {
            writeln!(
                out,
                "  journal recorded {} lost {} errors {} bytes {} segments {} corrupt {} damaged_segments {}",
                j.recorded, j.lost, j.errors, j.bytes, j.segments, j.corrupt, j.damaged_segments
            )?;
        }
        for g in &t.groups {
            writeln!(
                out,
                "  group {:<16} members {:<3} claimed {:<10} acknowledged {:<10} backlog {:<8} redelivered {:<8} dead_lettered {}",
                g.name, g.members, g.claimed, g.acknowledged, g.backlog, g.redelivered, g.dead_lettered
            )?;
        }
        for r in &t.rings {
            writeln!(
                out,
                "  ring {:<16x} pid {:<8} {:<7} messages {:<10} cursors {:<3} lag {:<8} drops {}{}",
                r.ring_id,
                r.publisher_pid,
                if r.closed { "ended" } else { "live" },
                r.next_seq,
                r.cursors,
                r.lag().map_or("-".into(), |l| l.to_string()),
                r.dropped,
                if r.upstream_lost > 0 {
                    format!(" lost_upstream {}", r.upstream_lost)
                } else {
                    String::new()
                },
            )?;
            for p in &r.ports {
                writeln!(
                    out,
                    "    subscriber pid {:<8} at {:<10} delivered {:<10} filtered {:<10} drops {}",
                    p.pid,
                    p.pos.map_or("-".into(), |s| s.to_string()),
                    p.delivered,
                    p.filtered,
                    p.dropped,
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn topic_json(t: &TopicInfo) -> String {
    let config = match t.config {
        Some(c) => format!(
            "{{\"max_message_size\":{},\"capacity\":{},\"mode\":\"{}\",\"max_subscribers\":{}}}",
            c.max_message_size, c.capacity, c.mode, c.max_subscribers
        ),
        None => "null".into(),
    };
    let rings: Vec<String> = t
        .rings
        .iter()
        .map(|r| {
            let ports: Vec<String> = r
                .ports
                .iter()
                .map(|p| {
                    format!(
                        "{{\"pid\":{},\"position\":{},\"delivered\":{},\"filtered\":{},\"drops\":{}}}",
                        p.pid,
                        opt_json(p.pos),
                        p.delivered,
                        p.filtered,
                        p.dropped
                    )
                })
                .collect();
            format!(
                "{{\"ring_id\":{},\"publisher_pid\":{},\"closed\":{},\"messages\":{},\"last_seq\":{},\"cursors\":{},\"lag\":{},\"drops\":{},\"upstream_lost\":{},\"bytes\":{},\"subscribers\":[{}]}}",
                r.ring_id,
                r.publisher_pid,
                r.closed,
                r.next_seq,
                opt_json(r.next_seq.checked_sub(1)),
                r.cursors,
                opt_json(r.lag()),
                r.dropped,
                r.upstream_lost,
                r.bytes,
                ports.join(",")
            )
        })
        .collect();
    let journal = match &t.journal {
        Some(j) => format!(
            "{{\"recorded\":{},\"lost\":{},\"errors\":{},\"bytes\":{},\"segments\":{},\"corrupt\":{},\"damaged_segments\":{}}}",
            j.recorded, j.lost, j.errors, j.bytes, j.segments, j.corrupt, j.damaged_segments
        ),
        None => "null".into(),
    };
    let groups: Vec<String> = t
        .groups
        .iter()
        .map(|g| {
            format!(
                "{{\"name\":{},\"members\":{},\"claimed\":{},\"acknowledged\":{},\"backlog\":{},\"redelivered\":{},\"dead_lettered\":{}}}",
                json_string(&g.name),
                g.members,
                g.claimed,
                g.acknowledged,
                g.backlog,
                g.redelivered,
                g.dead_lettered
            )
        })
        .collect();
    format!(
        "{{\"name\":{},\"config\":{config},\"publishers\":{},\"subscribers\":{},\"rings\":[{}],\"journal\":{journal},\"groups\":[{}]}}",
        json_string(&t.name),
        t.publishers,
        t.subscribers,
        rings.join(","),
        groups.join(",")
    )
}

fn stats(client: &Client, json: bool) -> Result<ExitCode> {
    let s = client.stats()?;
    let fields = [
        ("pid", u64::from(s.pid)),
        ("uptime_ms", s.uptime_ms),
        ("clients", u64::from(s.clients)),
        ("topics", u64::from(s.topics)),
        ("rings", u64::from(s.rings)),
        ("publishers", u64::from(s.publishers)),
        ("subscribers", u64::from(s.subscribers)),
        ("frames_received", s.frames_received),
        ("frames_rejected", s.frames_rejected),
        ("permission_denied", s.permission_denied),
        ("clients_reaped", s.clients_reaped),
        ("ring_bytes", s.ring_bytes),
    ];
    let mut out = std::io::stdout().lock();
    if json {
        let items: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        writeln!(out, "{{{}}}", items.join(","))?;
    } else {
        for (k, v) in fields {
            writeln!(out, "{k:<18} {v}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the error is a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The exit code for an error: 77 ("permission denied", as sysexits'
/// EX_NOPERM) when the broker refused on ACL grounds, else 1.
pub fn exit_code(e: &anyhow::Error) -> ExitCode {
    let denied = e.chain().any(|c| {
        c.downcast_ref::<ClientError>()
            .is_some_and(|ce| ce.code() == Some(ErrorCode::PermissionDenied))
    });
    ExitCode::from(if denied { 77 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bench_children_are_routed() {
        // `ringbus bench` re-executes this binary with this subcommand.
        let cmd = Cli::command();
        let child = cmd
            .find_subcommand(ringbus_bench::CHILD_SUBCOMMAND)
            .expect("the bench child subcommand exists");
        assert!(child.is_hide_set());
    }

    #[test]
    fn json_escapes() {
        assert_eq!(json_string("a\"b\\\n\u{1}"), "\"a\\\"b\\\\\\n\\u0001\"");
        assert_eq!(hex(&[0, 255]), "00ff");
    }
}
