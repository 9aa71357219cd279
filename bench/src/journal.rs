//! `--scenarios journal`: a durable topic's journal against the disk it
//! writes to, and reading a journal back against streaming live.
//!
//! Three figures per message size, each the median of the plan's runs:
//!
//! * **disk**: the floor. A plain buffered write loop (64 KiB writes, one
//!   `fdatasync` every 10 ms, as the journal's default `interval:10ms`)
//!   of the same number of bytes the journal puts on disk, to a file in
//!   the same directory. Beside it, labelled, the same loop asking the
//!   kernel to start writing each 256 KiB to the disk once written
//!   (`sync_file_range`, as the journal does): the disk's bandwidth when
//!   its `fdatasync`s overlap the writing.
//! * **journaled**: a publisher streaming into a durable back-pressure
//!   topic of an embedded broker (so through the ring and the broker's
//!   recorder, which holds the publisher back by its cursor), timed until
//!   the recorder's counters say the last message is written, and its
//!   segment files synced. Compared with the disk both by
//!   the bytes the journal writes (records: 48-byte header, payload,
//!   padding) and by payload bytes alone.
//! * **replay**: [`JournalReader`] reading that journal from its first
//!   record (the page cache holds it, as it would a journal just written),
//!   in messages/s, to compare with live streaming of the same size; and a
//!   subscriber from sequence 0 reading it through the client API
//!   (`Start::Sequence(0)`, replay-merge) from a broker started again on
//!   the journal with its ring gone, over the **neighbour** row's live
//!   streaming alone of the same run.
//! * **neighbour**: a non-durable back-pressure topic streaming (one
//!   publisher, one subscriber) in a broker with no durable topic, then
//!   in one with a durable topic next to it whose recorder runs (its
//!   publisher connected, idle after a first burst): the second's msgs/s
//!   over the first's. On two CPUs a durable topic that streams at the
//!   same time would share them with the plain one; this measures what
//!   the recorder costs a topic that does not use it.
//!
//! Ratios are taken within a run (disk and journal, plain and beside a
//! durable topic, measured one after the other) and the median of the
//! runs' ratios is reported.
//!
//! The directory is a fresh one under `$TMPDIR` (a real filesystem unless
//! `$TMPDIR` is tmpfs: the report says which filesystem it measured).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use ringbus::broker::{Config, EmbeddedBroker};
use ringbus::client::SubscribeOptions;
use ringbus::journal::record::record_size;
use ringbus::journal::JournalReader;
use ringbus::ring::Start;
use ringbus::wait::WaitStrategy;

/// The figures at one message size.
#[derive(Clone, Debug, Serialize)]
pub struct JournalRow {
    /// Payload bytes per message.
    pub size: usize,
    /// Messages per run.
    pub messages: u64,
    /// The plain write loop, bytes/s.
    pub disk_bytes_per_s: f64,
    /// The write loop starting each write's writeback at once, bytes/s.
    pub disk_early_bytes_per_s: f64,
    /// Median over runs of that run's journal bytes/s over its early
    /// writeback loop's.
    pub early_ratio: f64,
    /// The journaled topic, bytes the journal wrote per second.
    pub journal_bytes_per_s: f64,
    /// The journaled topic, payload bytes per second.
    pub payload_bytes_per_s: f64,
    /// Reading the journal back, messages/s.
    pub replay_msgs_per_s: f64,
    /// A subscriber from sequence 0 replaying it, messages/s.
    pub subscriber_replay_msgs_per_s: f64,
    /// Median over runs of that over the same run's live streaming alone.
    pub replay_ratio: f64,
    /// Median over runs of that run's journal bytes/s over its disk's.
    pub same_run_ratio: f64,
    /// A non-durable topic streaming alone, msgs/s.
    pub plain_msgs_per_s: f64,
    /// The same beside a durable topic, msgs/s.
    pub beside_durable_msgs_per_s: f64,
    /// Median over runs of beside-durable over alone.
    pub neighbour_ratio: f64,
}

impl JournalRow {
    /// Journaled bytes/s over the disk's (the median of same-run ratios).
    pub fn ratio(&self) -> f64 {
        self.same_run_ratio
    }

    /// Payload bytes/s over the disk's.
    pub fn payload_ratio(&self) -> f64 {
        self.same_run_ratio * self.size as f64 / record_size(self.size) as f64
    }
}

/// What `--scenarios journal` measured.
#[derive(Clone, Debug, Serialize)]
pub struct JournalReport {
    /// The filesystem of the directory measured (from `/proc/mounts`).
    pub filesystem: String,
    /// One row per size.
    pub rows: Vec<JournalRow>,
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Measures every size in `sizes`, `runs` times each, moving about
/// `bytes` per run.
///
/// # Errors
/// The scratch directory, the broker, a publisher or a file fails.
pub fn measure(sizes: &[usize], runs: usize, bytes: u64) -> Result<JournalReport> {
    let base = std::env::temp_dir().join(format!("ringbus-bench-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let scratch = Scratch(base);
    let mut rows = Vec::new();
    for &size in sizes {
        let messages = (bytes / record_size(size) as u64).max(1000);
        let (mut disk, mut journal, mut replay) = (Vec::new(), Vec::new(), Vec::new());
        let (mut sub_replay, mut replay_ratios) = (Vec::new(), Vec::new());
        let (mut ratios, mut plain, mut beside, mut neighbour) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut early, mut early_ratios) = (Vec::new(), Vec::new());
        let on_disk = messages * record_size(size) as u64;
        for run in 0..runs.max(1) {
            let dir = scratch.0.join(format!("{size}-{run}"));
            let d = write_loop(&dir.join("plain"), on_disk, false)?;
            disk.push(d);
            let (secs, journal_dir) = journaled(&dir, size, messages)?;
            journal.push(secs);
            ratios.push(on_disk as f64 / secs / d);
            let e = write_loop(&dir.join("early"), on_disk, true)?;
            early.push(e);
            early_ratios.push(on_disk as f64 / secs / e);
            replay.push(read_back(&journal_dir, size, messages)?);
            let replayed = replayed(&dir, size, messages)?;
            sub_replay.push(replayed);
            let _ = std::fs::remove_dir_all(&dir);
            let alone = streaming(&dir, size, messages, false)?;
            replay_ratios.push(replayed / alone);
            let next_to = streaming(&dir, size, messages, true)?;
            let _ = std::fs::remove_dir_all(&dir);
            plain.push(alone);
            beside.push(next_to);
            neighbour.push(next_to / alone);
        }
        let secs = median(journal);
        rows.push(JournalRow {
            size,
            messages,
            disk_bytes_per_s: median(disk),
            disk_early_bytes_per_s: median(early),
            early_ratio: median(early_ratios),
            journal_bytes_per_s: (messages * record_size(size) as u64) as f64 / secs,
            payload_bytes_per_s: (messages * size as u64) as f64 / secs,
            replay_msgs_per_s: median(replay),
            subscriber_replay_msgs_per_s: median(sub_replay),
            replay_ratio: median(replay_ratios),
            same_run_ratio: median(ratios),
            plain_msgs_per_s: median(plain),
            beside_durable_msgs_per_s: median(beside),
            neighbour_ratio: median(neighbour),
        });
    }
    Ok(JournalReport {
        filesystem: filesystem_of(&scratch.0),
        rows,
    })
}

/// The plain write loop: bytes/s. With `early`, it asks the kernel to
/// start writing each 256 KiB to the disk once written, as the journal
/// does (`sync_file_range`), so that its `fdatasync`s wait less.
fn write_loop(path: &Path, bytes: u64, early: bool) -> Result<f64> {
    std::fs::create_dir_all(path.parent().expect("a parent"))?;
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let chunk = vec![0x5au8; 64 << 10];
    let mut out = std::io::BufWriter::with_capacity(256 << 10, file);
    let start = Instant::now();
    let mut last_sync = start;
    let mut left = bytes;
    // Bytes handed to the kernel, and to its writeback.
    let (mut written, mut started) = (0u64, 0u64);
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        out.write_all(&chunk[..n])?;
        left -= n as u64;
        written += n as u64;
        let on_file = written - out.buffer().len() as u64;
        if early && on_file > started {
            // SAFETY: reads no memory of ours; the descriptor is open.
            unsafe {
                libc::sync_file_range(
                    std::os::fd::AsRawFd::as_raw_fd(out.get_ref()),
                    started as i64,
                    (on_file - started) as i64,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            started = on_file;
        }
        if last_sync.elapsed() >= Duration::from_millis(10) {
            out.flush()?;
            out.get_ref().sync_data()?;
            last_sync = Instant::now();
        }
    }
    out.flush()?;
    out.get_ref().sync_data()?;
    let secs = start.elapsed().as_secs_f64();
    drop(out);
    std::fs::remove_file(path)?;
    Ok(bytes as f64 / secs)
}

/// A publisher streaming `messages` into a durable topic: seconds until
/// the last is journaled, and the ring's journal directory.
fn journaled(dir: &Path, size: usize, messages: u64) -> Result<(f64, PathBuf)> {
    let journal = dir.join("journal");
    let config = Config::parse(&format!(
        "[server]\njournal_dir = \"{}\"\n\n[[topic]]\nname = \"bench.journal\"\nmode = \"backpressure\"\ncapacity = 4096\nmax_message_size = {}\ndurable = true\nfsync = \"interval:10ms\"\n",
        journal.display(),
        size.max(8)
    ))
    .context("the journal bench's config")?;
    let broker = EmbeddedBroker::with_config(config).context("starting a broker")?;
    let client = broker.client()?;
    let mut publisher = client.publisher_existing("bench.journal")?;
    let payload = vec![0xa5u8; size];
    let start = Instant::now();
    for i in 0..messages {
        publisher.publish(&payload, i)?;
    }
    // Until the recorder has written the last message (its counters, as
    // `ringbus topics` lists them), then synced as the write loop's last
    // `fdatasync` (any descriptor of a file syncs its pages). Not until
    // the broker stops: its poll loop notices a stop a tick (200 ms)
    // late, which would count against the journal.
    loop {
        let recorded = client
            .topics()?
            .iter()
            .find(|t| t.name == "bench.journal")
            .and_then(|t| t.journal)
            .map_or(0, |j| j.recorded);
        if recorded >= messages {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let topic = journal.join("bench.journal");
    let ring = std::fs::read_dir(&topic)
        .with_context(|| format!("reading {}", topic.display()))?
        .next()
        .context("no ring journal was written")??
        .path();
    for segment in std::fs::read_dir(&ring)? {
        std::fs::File::open(segment?.path())?.sync_data()?;
    }
    let secs = start.elapsed().as_secs_f64();
    drop(publisher);
    drop(client);
    broker.stop()?;
    Ok((secs, ring))
}

/// A subscriber from sequence 0 of the durable topic journaled in `dir`,
/// in a broker started again on that journal (the ring gone, as after a
/// reboot): every message comes from the journal through the client API.
/// Messages/s.
fn replayed(dir: &Path, size: usize, messages: u64) -> Result<f64> {
    let config = Config::parse(&format!(
        "[server]\njournal_dir = \"{}\"\n\n[[topic]]\nname = \"bench.journal\"\nmode = \"backpressure\"\ncapacity = 4096\nmax_message_size = {}\ndurable = true\n",
        dir.join("journal").display(),
        size.max(8)
    ))
    .context("the replay bench's config")?;
    let broker = EmbeddedBroker::with_config(config).context("starting a broker")?;
    let client = broker.client()?;
    let mut buf = vec![0u8; size.max(8)];
    let start = Instant::now();
    let mut subscriber = client.subscriber(
        "bench.journal",
        SubscribeOptions {
            start: Start::Sequence(0),
            wait: WaitStrategy::default(),
        },
    )?;
    for i in 0..messages {
        let d = subscriber.recv(&mut buf)?;
        anyhow::ensure!(d.info.seq == i, "replayed {} where {i} was due", d.info.seq);
    }
    let secs = start.elapsed().as_secs_f64();
    drop(subscriber);
    drop(client);
    broker.stop()?;
    Ok(messages as f64 / secs)
}

/// A non-durable back-pressure topic streaming `messages` from a publisher
/// to a subscriber (on threads of their own) in an embedded broker that,
/// with `durable`, also records a durable topic whose publisher stays
/// connected (idle after 1 000 messages): messages/s.
fn streaming(dir: &Path, size: usize, messages: u64, durable: bool) -> Result<f64> {
    let mut text = format!(
        "[server]\njournal_dir = \"{}\"\n\n[[topic]]\nname = \"bench.plain\"\nmode = \"backpressure\"\ncapacity = 4096\nmax_message_size = {}\n",
        dir.join("journal").display(),
        size.max(8)
    );
    if durable {
        text.push_str(&format!(
            "\n[[topic]]\nname = \"bench.journal\"\nmode = \"backpressure\"\ncapacity = 4096\nmax_message_size = {}\ndurable = true\nfsync = \"interval:10ms\"\n",
            size.max(8)
        ));
    }
    let config = Config::parse(&text).context("the neighbour bench's config")?;
    let broker = EmbeddedBroker::with_config(config).context("starting a broker")?;
    let client = broker.client()?;
    let payload = vec![0xa5u8; size];
    let mut durable_publisher = None;
    if durable {
        let mut p = client.publisher_existing("bench.journal")?;
        for i in 0..1000 {
            p.publish(&payload, i)?;
        }
        durable_publisher = Some(p);
    }
    let mut subscriber = client.subscriber(
        "bench.plain",
        SubscribeOptions {
            start: Start::Earliest,
            wait: WaitStrategy::default(),
        },
    )?;
    let mut publisher = client.publisher_existing("bench.plain")?;
    let reader = std::thread::spawn(move || -> Result<u64> {
        let mut buf = vec![0u8; size.max(8)];
        let mut n = 0;
        while n < messages {
            subscriber.recv(&mut buf)?;
            n += 1;
        }
        Ok(n)
    });
    let start = Instant::now();
    for i in 0..messages {
        publisher.publish(&payload, i)?;
    }
    let got = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the neighbour bench's subscriber panicked"))??;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(got == messages, "received {got} of {messages}");
    drop(publisher);
    drop(durable_publisher);
    drop(client);
    broker.stop()?;
    Ok(messages as f64 / secs)
}

/// Reads a journal of `messages` records back: messages/s.
fn read_back(dir: &Path, size: usize, messages: u64) -> Result<f64> {
    let mut r = JournalReader::open(dir, size.max(8) as u32)?;
    let start = Instant::now();
    let mut n = 0u64;
    let mut sum = 0u64;
    while let Some(rec) = r.next_record()? {
        n += 1;
        sum = sum.wrapping_add(rec.payload.len() as u64);
    }
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        n == messages && sum == messages * size as u64,
        "the journal holds {n} of {messages} messages"
    );
    Ok(n as f64 / secs)
}

/// The type of the filesystem `path` is on, from `/proc/mounts` (the
/// longest mount point that contains it).
fn filesystem_of(path: &Path) -> String {
    let Ok(mounts) = std::fs::read_to_string("/proc/mounts") else {
        return "unknown".into();
    };
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, kind) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(point)
                .then(|| (point.len(), kind.to_owned()))
        })
        .max()
        .map_or_else(|| "unknown".into(), |(_, k)| k)
}
