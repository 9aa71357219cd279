//! `ringbus top`: topics and rings by message rate, refreshed in place.
//!
//! Rates come from the rings' heads (sequence numbers) in two listings an
//! interval apart, and byte rates from the mean size of the latest
//! messages the broker samples when it lists (the data path counts
//! nothing for it). The live view is plain ANSI over a raw-mode terminal
//! (rustix's termios and poll): a table needs no widget library, and the
//! same escape sequences work in any terminal an ssh session reaches.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use ringbus::client::Client;
use ringbus::control::TopicInfo;

/// `ringbus top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Print one snapshot (rates over one interval) to stdout and exit.
    #[arg(long)]
    pub once: bool,
    /// With --once: print the snapshot as JSON.
    #[arg(long, requires = "once")]
    pub json: bool,
    /// Seconds between refreshes (the interval rates are measured over),
    /// from 0.05 to 3600.
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_interval)]
    pub interval: Duration,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.05..=3600.0).contains(&secs) {
        return Err(format!("{s} is outside 0.05..=3600 seconds"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// One ring over one interval.
#[derive(Clone, Debug, Serialize)]
pub struct RingRow {
    /// The ring's id.
    pub ring: u64,
    /// Its publisher's process.
    pub publisher_pid: u32,
    /// The publisher is gone.
    pub ended: bool,
    /// Messages published into the ring, at the start of the interval.
    pub messages_before: u64,
    /// ... and at its end.
    pub messages: u64,
    /// `(messages - messages_before) / interval`.
    pub messages_per_s: f64,
    /// `messages_per_s * mean_message_size` (`None` before a message).
    pub bytes_per_s: Option<f64>,
    /// Mean payload size of the latest messages.
    pub mean_message_size: Option<f64>,
    /// Subscribers holding a cursor on it.
    pub subscribers: u32,
    /// Messages the slowest cursor has still to consume.
    pub lag: Option<u64>,
    /// Messages its subscribers lost to overwrites.
    pub drops: u64,
    /// Messages its subscribers' filters turned down.
    pub filtered: u64,
}

/// One topic over one interval: its rings' sums.
#[derive(Clone, Debug, Serialize)]
pub struct TopicRow {
    /// Topic name.
    pub topic: String,
    /// Attached publishers.
    pub publishers: u32,
    /// Attached subscribers.
    pub subscribers: u32,
    /// Sum over the rings.
    pub messages_per_s: f64,
    /// Sum over the rings that have messages.
    pub bytes_per_s: f64,
    /// The largest lag of its rings.
    pub lag: Option<u64>,
    /// Sum over the rings.
    pub drops: u64,
    /// Sum over the rings.
    pub filtered: u64,
    /// Its rings, fastest first.
    pub rings: Vec<RingRow>,
}

/// A snapshot as `--once --json` prints it.
#[derive(Debug, Serialize)]
struct Report<'a> {
    interval_s: f64,
    topics: &'a [TopicRow],
}

/// Rates between two listings `secs` apart; rings absent from `before`
/// are new, counted from 0. Sorted by rate, fastest first.
pub fn measure(before: &[TopicInfo], after: &[TopicInfo], secs: f64) -> Vec<TopicRow> {
    let head_before = |topic: &str, ring: u64| {
        before
            .iter()
            .find(|t| t.name == topic)
            .and_then(|t| t.rings.iter().find(|r| r.ring_id == ring))
            .map_or(0, |r| r.next_seq)
    };
    let mut rows: Vec<TopicRow> = after
        .iter()
        .map(|t| {
            let mut rings: Vec<RingRow> = t
                .rings
                .iter()
                .map(|r| {
                    let start = head_before(&t.name, r.ring_id).min(r.next_seq);
                    let per_s = (r.next_seq - start) as f64 / secs;
                    let mean = r.mean_message_size();
                    RingRow {
                        ring: r.ring_id,
                        publisher_pid: r.publisher_pid,
                        ended: r.closed,
                        messages_before: start,
                        messages: r.next_seq,
                        messages_per_s: per_s,
                        bytes_per_s: mean.map(|m| per_s * m),
                        mean_message_size: mean,
                        subscribers: r.cursors,
                        lag: r.lag(),
                        drops: r.dropped,
                        filtered: r.ports.iter().map(|p| p.filtered).sum(),
                    }
                })
                .collect();
            rings.sort_by(|a, b| {
                b.messages_per_s
                    .total_cmp(&a.messages_per_s)
                    .then(a.ring.cmp(&b.ring))
            });
            TopicRow {
                topic: t.name.clone(),
                publishers: t.publishers,
                subscribers: t.subscribers,
                messages_per_s: rings.iter().map(|r| r.messages_per_s).sum(),
                bytes_per_s: rings.iter().filter_map(|r| r.bytes_per_s).sum(),
                lag: rings.iter().filter_map(|r| r.lag).max(),
                drops: rings.iter().map(|r| r.drops).fold(0, u64::saturating_add),
                filtered: rings
                    .iter()
                    .map(|r| r.filtered)
                    .fold(0, u64::saturating_add),
                rings,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.messages_per_s
            .total_cmp(&a.messages_per_s)
            .then_with(|| a.topic.cmp(&b.topic))
    });
    rows
}

/// Runs `ringbus top` against the broker at `socket`.
///
/// # Errors
/// The broker cannot be reached (at start), the terminal cannot be set
/// up, or stdout is closed.
pub fn run(socket: &Path, a: &TopArgs) -> Result<ExitCode> {
    let client = Client::connect(socket)?;
    if a.once {
        return once(&client, a);
    }
    live(socket, client, a.interval)
}

fn once(client: &Client, a: &TopArgs) -> Result<ExitCode> {
    let before = client.topics()?;
    let start = Instant::now();
    std::thread::sleep(a.interval);
    let after = client.topics()?;
    let secs = start.elapsed().as_secs_f64();
    let rows = measure(&before, &after, secs);
    let mut out = std::io::stdout().lock();
    if a.json {
        serde_json::to_writer(
            &mut out,
            &Report {
                interval_s: secs,
                topics: &rows,
            },
        )?;
        writeln!(out)?;
    } else {
        let width = rows
            .iter()
            .flat_map(|t| {
                std::iter::once(t.topic.len()).chain(t.rings.iter().map(|r| ring_label(r).len()))
            })
            .max()
            .unwrap_or(0)
            .max(NAME_MIN);
        writeln!(out, "interval {secs:.3} s, {} topics", rows.len())?;
        for line in table(&rows, width, Numbers::Exact) {
            writeln!(out, "{line}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Narrowest name column.
const NAME_MIN: usize = 16;
/// Width of the columns after the name, separators included.
const NUMBERS_WIDTH: usize = 55;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Numbers {
    /// One decimal for rates, as `--once` prints them.
    Exact,
    /// Short, with k/M/G suffixes, for the live view.
    Short,
}

fn rate(v: f64, n: Numbers) -> String {
    match n {
        Numbers::Exact => format!("{v:.1}"),
        Numbers::Short => short(v),
    }
}

fn count(v: u64, n: Numbers) -> String {
    match n {
        Numbers::Exact => v.to_string(),
        Numbers::Short => short(v as f64),
    }
}

/// `1234567.0` as `1.23M`: at most 6 characters below 1000 T.
fn short(v: f64) -> String {
    const UNITS: [&str; 5] = ["", "k", "M", "G", "T"];
    let mut v = v;
    let mut u = 0;
    while v >= 999.5 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0}")
    } else if v < 9.995 {
        format!("{v:.2}{}", UNITS[u])
    } else if v < 99.95 {
        format!("{v:.1}{}", UNITS[u])
    } else {
        format!("{v:.0}{}", UNITS[u])
    }
}

/// `name` cut to `width` characters in the middle (the ends of a topic
/// name say most: `md.equities~.AAPL`). Names are ASCII.
fn fit(name: &str, width: usize) -> String {
    if name.len() <= width || width < 3 {
        return name.chars().take(width).collect();
    }
    let keep = width - 1;
    let head = keep / 2;
    let tail = keep - head;
    format!("{}~{}", &name[..head], &name[name.len() - tail..])
}

/// A ring's name column: its id in hex (as `ringbus topics` shows it)
/// and its publisher.
fn ring_label(r: &RingRow) -> String {
    if r.ended {
        format!("  {:x} ended", r.ring)
    } else {
        format!("  {:x} pid {}", r.ring, r.publisher_pid)
    }
}

/// The table's lines: a header, then each topic and its rings.
fn table(rows: &[TopicRow], name_width: usize, n: Numbers) -> Vec<String> {
    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| count(v, n));
    let line = |name: &str, c: [String; 6]| {
        format!(
            "{:<w$} {:>10} {:>10} {:>5} {:>8} {:>8} {:>8}",
            fit(name, name_width),
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            w = name_width
        )
    };
    let mut out = vec![line(
        "TOPIC / RING",
        ["MSG/S", "BYTES/S", "SUBS", "LAG", "DROPS", "FILTERED"].map(String::from),
    )];
    for t in rows {
        out.push(line(
            &t.topic,
            [
                rate(t.messages_per_s, n),
                rate(t.bytes_per_s, n),
                t.subscribers.to_string(),
                opt(t.lag),
                count(t.drops, n),
                count(t.filtered, n),
            ],
        ));
        for r in &t.rings {
            out.push(line(
                &ring_label(r),
                [
                    rate(r.messages_per_s, n),
                    r.bytes_per_s.map_or("-".into(), |b| rate(b, n)),
                    r.subscribers.to_string(),
                    opt(r.lag),
                    count(r.drops, n),
                    count(r.filtered, n),
                ],
            ));
        }
    }
    out
}

/// The terminal in raw mode on the alternate screen, given back as it was
/// when dropped (also on a panic).
struct Screen {
    saved: rustix::termios::Termios,
}

impl Screen {
    fn enter() -> Result<Screen> {
        let stdin = std::io::stdin();
        if !rustix::termios::isatty(&stdin) || !rustix::termios::isatty(std::io::stdout()) {
            bail!("ringbus top needs a terminal; use --once (and --json) for a snapshot");
        }
        let saved = rustix::termios::tcgetattr(&stdin).context("reading the terminal's mode")?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw)
            .context("setting the terminal to raw mode")?;
        let screen = Screen { saved };
        // Alternate screen, cursor hidden.
        let mut out = std::io::stdout().lock();
        write!(out, "\x1b[?1049h\x1b[?25l")?;
        out.flush()?;
        Ok(screen)
    }

    /// Terminal size as (columns, rows), 80x24 when unknown.
    fn size() -> (usize, usize) {
        match rustix::termios::tcgetwinsize(std::io::stdout()) {
            Ok(w) if w.ws_col > 0 && w.ws_row > 0 => (usize::from(w.ws_col), usize::from(w.ws_row)),
            _ => (80, 24),
        }
    }

    fn draw(&self, lines: &[String]) -> Result<()> {
        let (cols, rows) = Screen::size();
        let mut lines = lines.to_vec();
        if lines.len() > rows && rows > 0 {
            let hidden = lines.len() - (rows - 1);
            lines.truncate(rows - 1);
            lines.push(format!("({hidden} more lines: enlarge the terminal)"));
        }
        let mut frame = String::from("\x1b[H");
        for (i, l) in lines.iter().enumerate() {
            if i > 0 {
                frame.push_str("\r\n");
            }
            frame.extend(l.chars().take(cols));
            frame.push_str("\x1b[K");
        }
        frame.push_str("\x1b[J");
        let mut out = std::io::stdout().lock();
        out.write_all(frame.as_bytes())?;
        out.flush()?;
        Ok(())
    }

    /// Waits until `deadline` for a key; `true` when it asks to quit
    /// (`q`, `Q`, Ctrl-C, Ctrl-D, or a closed terminal).
    fn wait_quit(&self, deadline: Instant, stop: &std::sync::atomic::AtomicBool) -> bool {
        use rustix::event::{poll, PollFd, PollFlags};
        let stdin = std::io::stdin();
        loop {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            // At most 100 ms at a time, to see SIGTERM's flag.
            let slice = left.min(Duration::from_millis(100));
            let ts = rustix::time::Timespec {
                tv_sec: slice.as_secs() as i64,
                tv_nsec: i64::from(slice.subsec_nanos()),
            };
            let mut fds = [PollFd::new(&stdin, PollFlags::IN)];
            match poll(&mut fds, Some(&ts)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(_) => return true,
            }
            let mut buf = [0u8; 64];
            match rustix::io::read(&stdin, &mut buf) {
                Ok(0) => return true, // the terminal is gone
                Ok(n) => {
                    if buf[..n].iter().any(|b| matches!(b, b'q' | b'Q' | 3 | 4)) {
                        return true;
                    }
                }
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(_) => return true,
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let mut out = std::io::stdout().lock();
        let _ = write!(out, "\x1b[?25h\x1b[?1049l");
        let _ = out.flush();
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}

fn live(socket: &Path, client: Client, interval: Duration) -> Result<ExitCode> {
    let stop = ringbus::broker::install_stop_handlers().context("installing signal handlers")?;
    let screen = Screen::enter()?;
    let mut client = Some(client);
    let mut before: Option<(Instant, Vec<TopicInfo>)> = None;
    loop {
        let listing = match &client {
            Some(c) => c.topics(),
            None => Client::connect(socket).and_then(|c| {
                let l = c.topics();
                client = Some(c);
                l
            }),
        };
        let now = Instant::now();
        let (cols, _) = Screen::size();
        let name_width = cols.saturating_sub(NUMBERS_WIDTH).max(NAME_MIN);
        let mut lines = Vec::new();
        match listing {
            Ok(after) => {
                let rows = match &before {
                    Some((t, b)) => measure(b, &after, now.duration_since(*t).as_secs_f64()),
                    // The first screen, before any interval: counts only.
                    None => measure(&after, &after, 1.0),
                };
                let rings: usize = rows.iter().map(|t| t.rings.len()).sum();
                lines.push(format!(
                    "ringbus top: {} topics, {} rings, {} (q quits)",
                    rows.len(),
                    rings,
                    if before.is_some() {
                        format!("every {:.1} s", interval.as_secs_f64())
                    } else {
                        "measuring rates".to_owned()
                    }
                ));
                lines.extend(table(&rows, name_width, Numbers::Short));
                before = Some((now, after));
            }
            Err(e) => {
                client = None;
                before = None;
                lines.push("ringbus top (q quits)".to_owned());
                lines.push(format!("cannot reach the broker: {e}"));
            }
        }
        screen.draw(&lines)?;
        if screen.wait_quit(now + interval, stop) {
            break;
        }
    }
    drop(screen);
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_in_the_middle() {
        assert_eq!(fit("md.AAPL", 16), "md.AAPL");
        assert_eq!(fit("market.equities.AAPL", 10), "mark~.AAPL");
        assert_eq!(fit("market.equities.AAPL", 10).len(), 10);
    }

    #[test]
    fn short_numbers_fit() {
        assert_eq!(short(0.0), "0");
        assert_eq!(short(999.0), "999");
        assert_eq!(short(2000.0), "2.00k");
        assert_eq!(short(12_345_678.0), "12.3M");
        assert!(short(f64::MAX).len() > 6); // only absurd values spill
    }

    #[test]
    fn rows_fit_80_columns() {
        let name_width = 80 - NUMBERS_WIDTH;
        let line = table(&[], name_width, Numbers::Short).remove(0);
        assert!(line.len() <= 80, "{line:?}");
    }

    #[test]
    fn intervals_are_checked() {
        assert_eq!(parse_interval("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_interval("0").is_err());
        assert!(parse_interval("nan").is_err());
        assert!(parse_interval("-1").is_err());
        assert!(parse_interval("1e9").is_err());
        assert!(parse_interval("x").is_err());
    }
}
