//! `ringbus journal`: what a durable topic's journal holds, and a range of
//! it exported to MCAP. Both only read the journal (never repair it: that
//! is the broker's recorder's job), so they are safe while it records.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, Subcommand};
use serde::Serialize;

use ringbus::broker::Config;
use ringbus::control::{paths, validate_topic_name};
use ringbus::journal::{parse_duration, realtime_ns, JournalReader, RecordMeta};

use crate::record::{FRAMED, FRAME_HEADER, META_MAX_SIZE, META_MODE, META_RING, META_TOPIC};

/// `ringbus journal`.
#[derive(Debug, Args)]
pub struct JournalArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: JournalCommand,
}

/// Where the journals are: a flag, the broker's config file, the default.
#[derive(Debug, Args)]
pub struct Where {
    /// The journals' directory [default: the config's server.journal_dir,
    /// else /var/lib/ringbus for root, else $XDG_STATE_HOME/ringbus]
    #[arg(long, value_name = "DIR")]
    pub journal_dir: Option<PathBuf>,
    /// The broker's config file (for its journal_dir and the topic's
    /// largest message).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `ringbus journal` subcommands.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Per ring: records, sequence and time range, damage skipped.
    Info {
        /// A durable topic.
        topic: String,
        #[command(flatten)]
        place: Where,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a range of a journal to an MCAP file (one channel per ring,
    /// framed as `ringbus record` frames: sequence, tag, payload; log time
    /// is when the record was journaled).
    Export {
        /// A durable topic.
        topic: String,
        #[command(flatten)]
        place: Where,
        /// The MCAP file to write (replaced if it exists).
        #[arg(short, long, value_name = "FILE.mcap")]
        output: PathBuf,
        /// From this sequence number (per ring).
        #[arg(long, value_name = "N")]
        from_seq: Option<u64>,
        /// Up to and including this sequence number (per ring).
        #[arg(long, value_name = "N")]
        to_seq: Option<u64>,
        /// Only what was journaled in the last DURATION (`10m`, `2h`, `7d`).
        #[arg(long, value_name = "DURATION", value_parser = parse_since)]
        since: Option<u64>,
    },
}

/// `--since DURATION` as the CLOCK_REALTIME ns it starts at.
fn parse_since(s: &str) -> Result<u64, String> {
    let d = parse_duration(s)?;
    Ok(realtime_ns().saturating_sub(d.as_nanos().min(u128::from(u64::MAX)) as u64))
}

/// The topic's ring journals, oldest ring first, and its largest message.
fn rings(topic: &str, place: &Where) -> Result<(Vec<(u64, PathBuf)>, u32)> {
    validate_topic_name(topic).map_err(|e| anyhow::anyhow!("bad topic {topic:?}: {e}"))?;
    let config = match &place.config {
        Some(p) => Some(Config::load(p)?),
        None => None,
    };
    let dir = place
        .journal_dir
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.server.journal_dir.clone()))
        .unwrap_or_else(paths::default_journal_dir);
    // Without the config, a bound that only guards against a garbage
    // length (the scan checks every record against the bytes there).
    let max_record = config
        .as_ref()
        .and_then(|c| c.topics.iter().find(|t| t.name == topic))
        .map_or(1 << 30, |t| t.max_message_size);
    let topic_dir = dir.join(topic);
    let entries = match std::fs::read_dir(&topic_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "no journal of topic {topic:?} in {} (is it durable = true, and is this the broker's journal_dir?)",
                dir.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", topic_dir.display())),
    };
    let mut rings = Vec::new();
    for e in entries {
        let e = e.with_context(|| format!("reading {}", topic_dir.display()))?;
        if let Some(id) = e.file_name().to_str().and_then(|n| n.parse::<u64>().ok()) {
            rings.push((id, e.path()));
        }
    }
    rings.sort();
    Ok((rings, max_record))
}

#[derive(Debug, Default, Serialize)]
struct RingSummary {
    ring: u64,
    records: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    first_recorded_ns: Option<u64>,
    last_recorded_ns: Option<u64>,
    payload_bytes: u64,
    corrupt_skipped: u64,
    damaged_segments: usize,
}

/// Runs `ringbus journal`.
pub fn run(a: &JournalArgs) -> Result<ExitCode> {
    match &a.command {
        JournalCommand::Info { topic, place, json } => info(topic, place, *json),
        JournalCommand::Export {
            topic,
            place,
            output,
            from_seq,
            to_seq,
            since,
        } => export(topic, place, output, *from_seq, *to_seq, *since),
    }
}

fn open(dir: &Path, max_record: u32) -> Result<JournalReader> {
    JournalReader::open(dir, max_record).with_context(|| format!("reading {}", dir.display()))
}

fn info(topic: &str, place: &Where, json: bool) -> Result<ExitCode> {
    let (rings, max_record) = rings(topic, place)?;
    let mut out = Vec::new();
    for (id, dir) in &rings {
        let mut r = open(dir, max_record)?;
        let mut s = RingSummary {
            ring: *id,
            ..RingSummary::default()
        };
        while let Some(rec) = r.next_record()? {
            let m = rec.meta;
            s.records += 1;
            s.first_seq.get_or_insert(m.seq);
            s.first_recorded_ns.get_or_insert(m.recorded_ns);
            s.last_seq = Some(m.seq);
            s.last_recorded_ns = Some(m.recorded_ns);
            s.payload_bytes += rec.payload.len() as u64;
        }
        s.corrupt_skipped = r.corrupt_skipped();
        s.damaged_segments = r.damaged_segments().len();
        out.push(s);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20} {:>10} {:>12} {:>12} {:>12} {:>8}",
        "RING", "RECORDS", "FIRST SEQ", "LAST SEQ", "BYTES", "DAMAGED"
    );
    let or_dash = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
    for s in &out {
        println!(
            "{:<20} {:>10} {:>12} {:>12} {:>12} {:>8}",
            s.ring,
            s.records,
            or_dash(s.first_seq),
            or_dash(s.last_seq),
            s.payload_bytes,
            s.corrupt_skipped + s.damaged_segments as u64
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn export(
    topic: &str,
    place: &Where,
    output: &Path,
    from_seq: Option<u64>,
    to_seq: Option<u64>,
    since: Option<u64>,
) -> Result<ExitCode> {
    if let (Some(f), Some(t)) = (from_seq, to_seq) {
        ensure!(f <= t, "--from-seq {f} is after --to-seq {t}");
    }
    let (rings, max_record) = rings(topic, place)?;
    let file = std::fs::File::create(output)
        .with_context(|| format!("cannot create {}", output.display()))?;
    let mut out = mcap::WriteOptions::new()
        .compression(None)
        .library(concat!("ringbus ", env!("CARGO_PKG_VERSION")))
        .create(BufWriter::new(file))
        .context("starting the MCAP file")?;
    // One reader per ring, merged by the time each record was journaled.
    struct Head {
        reader: JournalReader,
        channel: u16,
        next: Option<(RecordMeta, Vec<u8>)>,
        done: bool,
    }
    let mut heads: Vec<Head> = Vec::new();
    for (id, dir) in &rings {
        let mut r = open(dir, max_record)?;
        match since {
            Some(ns) => r.seek_time(ns)?,
            None => r.seek_seq(from_seq.unwrap_or(0))?,
        }
        let mut meta = BTreeMap::new();
        meta.insert(META_TOPIC.to_string(), topic.to_string());
        meta.insert(META_RING.to_string(), id.to_string());
        meta.insert(META_MODE.to_string(), "backpressure".to_string());
        if place.config.is_some() {
            meta.insert(META_MAX_SIZE.to_string(), max_record.to_string());
        }
        let channel = out
            .add_channel(0, topic, FRAMED, &meta)
            .context("adding an MCAP channel")?;
        heads.push(Head {
            reader: r,
            channel,
            next: None,
            done: false,
        });
    }
    let wanted = |m: &RecordMeta| {
        from_seq.map_or(true, |f| m.seq >= f) && to_seq.map_or(true, |t| m.seq <= t)
    };
    let mut written = 0u64;
    let mut frame = Vec::new();
    loop {
        for h in heads.iter_mut() {
            while h.next.is_none() && !h.done {
                match h.reader.next_record()? {
                    Some(rec) if wanted(&rec.meta) => {
                        h.next = Some((rec.meta, rec.payload.to_vec()));
                    }
                    Some(rec) => h.done = to_seq.is_some_and(|t| rec.meta.seq > t),
                    None => h.done = true,
                }
            }
        }
        let Some(next) = heads
            .iter_mut()
            .filter(|h| h.next.is_some())
            .min_by_key(|h| h.next.as_ref().map(|(m, _)| m.recorded_ns))
        else {
            break;
        };
        let (meta, payload) = next.next.take().expect("a head");
        frame.clear();
        frame.extend_from_slice(&meta.seq.to_le_bytes());
        frame.extend_from_slice(&meta.tag.to_le_bytes());
        frame.extend_from_slice(&payload);
        debug_assert_eq!(frame.len(), FRAME_HEADER + payload.len());
        let header = mcap::records::MessageHeader {
            channel_id: next.channel,
            sequence: meta.seq as u32,
            log_time: meta.recorded_ns,
            publish_time: meta.recorded_ns,
        };
        out.write_to_known_channel(&header, &frame)
            .context("writing a message to the MCAP file")?;
        written += 1;
    }
    out.finish().context("finishing the MCAP file")?;
    out.into_inner().flush().context("writing the MCAP file")?;
    let skipped: u64 = heads.iter().map(|h| h.reader.corrupt_skipped()).sum();
    eprintln!(
        "ringbus: exported {written} messages of {topic:?} from {} rings into {}{}",
        rings.len(),
        output.display(),
        if skipped > 0 {
            format!(" ({skipped} damaged records skipped)")
        } else {
            String::new()
        }
    );
    Ok(ExitCode::SUCCESS)
}
