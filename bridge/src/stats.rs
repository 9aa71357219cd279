//! The bridge's counters, its rate-limited log, and the stats file that
//! `ringbus-zenoh --stats` reads.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Counters of one bridge (all monotonic, since it started).
        #[derive(Debug, Default)]
        pub struct Stats {
            $($(#[$doc])* pub $name: AtomicU64,)*
        }

        /// A copy of [`Stats`] at one moment.
        #[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub struct Snapshot {
            $($(#[$doc])* #[serde(default)] pub $name: u64,)*
        }

        impl Stats {
            /// Reads every counter (each one atomically, not all at once).
            pub fn snapshot(&self) -> Snapshot {
                Snapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Messages put on Zenoh.
    exported,
    /// Messages lost before export: the local subscriber was lapped
    /// (`RecvError::Lagged`), summed `missed`.
    export_lagged,
    /// Puts Zenoh refused.
    export_errors,
    /// Local messages not exported because this bridge imported them.
    export_skipped_own,
    /// Messages published locally.
    imported,
    /// Samples that streamed in and went through the import's queue to
    /// its thread (the others were taken by the Zenoh subscriber's
    /// callback itself).
    import_queued,
    /// Of the queued samples, those published in batches of a run (one
    /// head update and wake-up for several).
    import_batched,
    /// Samples dropped at import: the local ring stayed full
    /// (back-pressure topic) for the import wait.
    import_full,
    /// Samples dropped at import: larger than the topic's max message size.
    import_too_large,
    /// Samples dropped at import: no local publisher could be made.
    import_errors,
    /// Messages missing in an exported ring's sequence, as seen at import.
    import_gap,
    /// Samples whose sequence number went backwards in their ring.
    import_reordered,
    /// Samples dropped at import: their key is not a ringbus topic.
    import_bad_key,
    /// Samples dropped at import: the topic does not match the pattern
    /// (Zenoh's `**` also matches zero chunks).
    import_unmatched,
    /// Samples delivered without a ringbus attachment (plain Zenoh
    /// publishers): tag 0, no gap detection.
    import_foreign,
    /// Samples this bridge exported, seen again at import and dropped.
    import_skipped_own,
    /// Reconnects to the local broker.
    local_reconnects,
}

/// Writes `snap` to `path` as JSON, whole (a temporary file renamed).
///
/// # Errors
/// The file cannot be written.
pub fn write_file(path: &Path, snap: &Snapshot) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let json = serde_json::to_vec_pretty(snap).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

/// Reads a stats file written by [`write_file`].
///
/// # Errors
/// Missing, unreadable or not a stats file.
pub fn read_file(path: &Path) -> anyhow::Result<Snapshot> {
    use anyhow::Context;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a stats file", path.display()))
}

/// A log that prints at most one line per kind per interval and says how
/// many it held back.
#[derive(Debug)]
pub struct RateLog {
    every: Duration,
    last: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl Default for RateLog {
    fn default() -> Self {
        RateLog::new(Duration::from_secs(1))
    }
}

impl RateLog {
    /// A log printing each kind at most once per `every`.
    pub fn new(every: Duration) -> RateLog {
        RateLog {
            every,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// Logs `msg()` under `kind` unless a line of that kind was printed
    /// less than an interval ago. Returns whether it printed.
    pub fn log(&self, kind: &'static str, msg: impl FnOnce() -> String) -> bool {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let held = match last.get_mut(kind) {
            Some((at, held)) if now.duration_since(*at) < self.every => {
                *held += 1;
                return false;
            }
            Some((_, held)) => std::mem::take(held),
            None => 0,
        };
        last.insert(kind, (now, 0));
        drop(last);
        if held > 0 {
            eprintln!("ringbus-zenoh: {} ({held} more like it not shown)", msg());
        } else {
            eprintln!("ringbus-zenoh: {}", msg());
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_log_holds_back() {
        let log = RateLog::new(Duration::from_secs(3600));
        assert!(log.log("a", || "first".into()));
        assert!(!log.log("a", || unreachable!()));
        assert!(log.log("b", || "other kind".into()));
    }

    #[test]
    fn stats_file_round_trips() {
        let dir = std::env::temp_dir().join(format!("ringbus-zenoh-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s.json");
        let s = Stats::default();
        s.import_gap.store(7, Ordering::Relaxed);
        write_file(&p, &s.snapshot()).unwrap();
        assert_eq!(read_file(&p).unwrap().import_gap, 7);
        std::fs::write(&p, b"{not json").unwrap();
        assert!(read_file(&p).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
