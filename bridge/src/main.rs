//! `ringbus-zenoh`: the bridge's command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use ringbus::client::Mode;
use ringbus_zenoh::{stats, Bridge, Congestion, Settings};

/// Bridges ringbus topics to and from a Zenoh network.
///
/// Topic `a.b.c` is key `PREFIX/a/b/c`; pattern `md.>` is `PREFIX/md/**`.
#[derive(Debug, Parser)]
#[command(name = "ringbus-zenoh", version)]
struct Args {
    /// A TOML file with the same settings (flags add to its lists and
    /// override its values).
    #[arg(long, value_name = "FILE.toml")]
    file: Option<PathBuf>,
    /// The local broker's socket.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Put local topics matching PATTERN on Zenoh (repeatable).
    #[arg(long, value_name = "PATTERN")]
    export: Vec<String>,
    /// Publish Zenoh samples matching PATTERN on local topics (repeatable).
    #[arg(long, value_name = "PATTERN")]
    import: Vec<String>,
    /// The first key chunks (default `ringbus`).
    #[arg(long)]
    prefix: Option<String>,
    /// A Zenoh config file (JSON5: transports, TLS, ACL, scouting).
    #[arg(long, value_name = "FILE.json5")]
    config: Option<PathBuf>,
    /// A Zenoh endpoint to connect to (`tcp/HOST:PORT`; repeatable).
    #[arg(long, value_name = "ENDPOINT")]
    connect: Vec<String>,
    /// A Zenoh endpoint to listen on (repeatable).
    #[arg(long, value_name = "ENDPOINT")]
    listen: Vec<String>,
    /// The stats file: written every second while running; with
    /// `--stats`, read and printed.
    #[arg(long, value_name = "FILE.json")]
    stats_file: Option<PathBuf>,
    /// Print the counters of the bridge writing `--stats-file` and exit.
    #[arg(long)]
    stats: bool,
    /// Mode of the topics an import creates.
    #[arg(long, value_name = "MODE")]
    import_mode: Option<Mode>,
    /// Slots per ring of the topics an import creates.
    #[arg(long, value_name = "N")]
    import_capacity: Option<u32>,
    /// Largest message of the topics an import creates.
    #[arg(long, value_name = "BYTES")]
    import_max_message_size: Option<u32>,
    /// Wait at most this long for room in a full back-pressure ring.
    #[arg(long, value_name = "MS")]
    import_wait_ms: Option<u64>,
    /// Samples an import queues for its thread while they stream in
    /// (default 8192).
    #[arg(long, value_name = "N")]
    import_queue: Option<usize>,
    /// Congestion control of exports: block or drop.
    #[arg(long, value_name = "block|drop")]
    congestion: Option<String>,
    /// This bridge's id in attachments (default random).
    #[arg(long, value_name = "ID")]
    bridge_id: Option<u64>,
    /// A file where the import keeps each ring's next sequence number, so
    /// that a restarted bridge reports the gap it left.
    #[arg(long, value_name = "FILE")]
    state_file: Option<PathBuf>,
}

fn settings(a: Args) -> Result<Settings> {
    let mut s = match &a.file {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            toml::from_str::<Settings>(&text).with_context(|| format!("{}", p.display()))?
        }
        None => Settings::default(),
    };
    s.export.extend(a.export);
    s.import.extend(a.import);
    s.connect.extend(a.connect);
    s.listen.extend(a.listen);
    macro_rules! set {
        ($($flag:ident => $($field:ident).+),*) => {
            $(if let Some(v) = a.$flag { s.$($field).+ = v.into(); })*
        };
    }
    set!(prefix => prefix, import_mode => import_topic.mode,
         import_capacity => import_topic.capacity,
         import_max_message_size => import_topic.max_message_size,
         import_wait_ms => import_wait_ms, import_queue => import_queue);
    if a.socket.is_some() {
        s.socket = a.socket;
    }
    if a.config.is_some() {
        s.zenoh_config = a.config;
    }
    if a.stats_file.is_some() {
        s.stats_file = a.stats_file;
    }
    if a.state_file.is_some() {
        s.state_file = a.state_file;
    }
    if a.bridge_id.is_some() {
        s.bridge_id = a.bridge_id;
    }
    if let Some(c) = a.congestion {
        s.congestion = match c.as_str() {
            "block" => Congestion::Block,
            "drop" => Congestion::Drop,
            other => anyhow::bail!("--congestion is block or drop, not {other:?}"),
        };
    }
    Ok(s)
}

fn run(a: Args) -> Result<()> {
    if a.stats {
        let path = a
            .stats_file
            .as_ref()
            .context("--stats reads the file a running bridge writes: give --stats-file")?;
        let snap = stats::read_file(path)?;
        println!("{}", serde_json::to_string_pretty(&snap)?);
        return Ok(());
    }
    let s = settings(a)?;
    let zconfig = s.zenoh_config()?;
    let stop = ringbus::broker::install_stop_handlers()
        .context("installing the SIGINT / SIGTERM handlers")?;
    let bridge = Bridge::start(s, zconfig)?;
    eprintln!("ringbus-zenoh: bridge {:x} running", bridge.id());
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    bridge.stop();
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringbus-zenoh: {e:#}");
            ExitCode::FAILURE
        }
    }
}
