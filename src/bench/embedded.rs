//! The broker `ringbus bench` starts for itself: a temporary socket and data
//! directory (on `/dev/shm` when it exists), served by a thread of the
//! bench's parent process, stopped and removed when the run ends.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Context, Result};

use crate::broker::{Broker, BrokerError, BrokerOptions, Config};

/// Removes the directories of earlier bench runs whose process is gone
/// (killed before it could clean up, e.g. by Ctrl-C).
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("ringbus-bench-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A broker serving the bench, on its own thread.
pub struct EmbeddedBroker {
    dir: PathBuf,
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), BrokerError>>>,
}

impl EmbeddedBroker {
    /// Binds a broker in a fresh temporary directory and starts serving.
    /// Call before pinning the calling thread, so the broker's thread may
    /// run on any CPU.
    /// `trusted`: hand subscribers read-write data descriptors
    /// (`server.trusted_subscribers`).
    pub fn start(trusted: bool) -> Result<EmbeddedBroker> {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        remove_stale(&base);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!("ringbus-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir)
            .with_context(|| format!("creating the bench's broker directory {}", dir.display()))?;
        let socket = dir.join("broker.sock");
        let opts = BrokerOptions {
            socket: socket.clone(),
            data_dir: dir.join("data"),
            config: {
                let mut c = Config::default();
                c.server.trusted_subscribers = trusted;
                // Every measurement opens topics of its own, and opened
                // topics are kept for the broker's life, which is this
                // run's: a full `--runs 3` opens ~1 400 (each paired block
                // is a measurement), past the default limit of 1 024.
                c.limits.max_topics = u32::MAX;
                c
            },
        };
        let mut broker = match Broker::bind(opts) {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e).context("starting the bench's embedded broker");
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("bench-broker".into())
            .spawn(move || broker.run(&flag))
            .context("starting the broker thread")?;
        Ok(EmbeddedBroker {
            dir,
            socket,
            stop,
            thread: Some(thread),
        })
    }

    /// The broker's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Stops the broker and removes its directory, reporting a broker
    /// failure.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<()> {
        // Relaxed: a stop flag polled by the broker's loop (see its docs).
        self.stop.store(true, Ordering::Relaxed);
        let result = match self.thread.take() {
            Some(t) => t
                .join()
                .map_err(|_| anyhow!("the embedded broker panicked"))?
                .context("the embedded broker failed"),
            None => Ok(()),
        };
        let _ = std::fs::remove_dir_all(&self.dir);
        result
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
