//! A broker inside the calling process, for tests, benchmarks and
//! applications that want one without running `ringbus serve`: a private
//! temporary directory (socket and data), a thread serving it, and both
//! removed when it stops.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{io_err, Broker, BrokerError, BrokerOptions, Config};
use crate::client::{Client, ClientError};

/// The prefix of an embedded broker's directory; the rest is the owning
/// process id and a counter, so a later start can tell leftovers of a dead
/// process.
const DIR_PREFIX: &str = "ringbus-embedded-";

/// A broker served by a thread of this process, in a temporary directory
/// of its own (under `/dev/shm` when it exists, else the system's temporary
/// directory), stopped and removed when dropped.
///
/// ```
/// use ringbus::broker::EmbeddedBroker;
/// use ringbus::client::{SubscribeOptions, TopicConfig};
///
/// let broker = EmbeddedBroker::start()?;
/// let client = broker.client()?;
/// let mut publisher = client.publisher("demo", TopicConfig::default())?;
/// let mut subscriber = client.subscriber("demo", SubscribeOptions::default())?;
/// publisher.publish(b"hello", 0)?;
/// let mut buf = [0u8; 64];
/// let got = subscriber.recv(&mut buf)?;
/// assert_eq!(&buf[..got.info.len], b"hello");
/// drop((publisher, subscriber, client));
/// broker.stop()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct EmbeddedBroker {
    dir: PathBuf,
    socket: PathBuf,
    data_dir: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), BrokerError>>>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

impl EmbeddedBroker {
    /// Starts a broker with the default configuration (only this user is
    /// admitted).
    ///
    /// # Errors
    /// The directory or the socket cannot be created, or the broker thread
    /// cannot be started.
    pub fn start() -> Result<EmbeddedBroker, BrokerError> {
        EmbeddedBroker::with_config(Config::default())
    }

    /// Starts a broker with `config` (its `server.socket` and
    /// `server.data_dir` are ignored: the broker lives in its own
    /// directory).
    ///
    /// # Errors
    /// As [`EmbeddedBroker::start`]; an invalid `config`.
    pub fn with_config(config: Config) -> Result<EmbeddedBroker, BrokerError> {
        let base = if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        remove_stale(&base);
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = base.join(format!(
            "{DIR_PREFIX}{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        // A leftover of an earlier process with our pid: its broker is gone.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(io_err(format!(
                "creating the embedded broker's directory {}",
                dir.display()
            )))?;
        let socket = dir.join("ringbus.sock");
        let data_dir = dir.join("data");
        let opts = BrokerOptions {
            socket: socket.clone(),
            data_dir: data_dir.clone(),
            config,
            keeper: None,
        };
        let mut broker = match Broker::bind(opts) {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("ringbus-broker".into())
            .spawn(move || broker.run(&flag));
        let thread = match thread {
            Ok(t) => t,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(io_err("starting the embedded broker's thread")(e));
            }
        };
        Ok(EmbeddedBroker {
            dir,
            socket,
            data_dir,
            stop,
            thread: Some(thread),
        })
    }

    /// The broker's socket, for [`Client::connect`] (or `RINGBUS_SOCKET`
    /// of a child process).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The broker's data directory (its lock and its keeper's socket).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A new client of this broker.
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub fn client(&self) -> Result<Client, ClientError> {
        Client::connect(&self.socket)
    }

    /// Stops the broker and removes its directory. Clients still connected
    /// lose their connection; rings they hold stay mapped and usable.
    ///
    /// # Errors
    /// The broker's loop had failed.
    pub fn stop(mut self) -> Result<(), BrokerError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), BrokerError> {
        // Relaxed: a flag the broker's loop polls at least every tick
        // (`Broker::run`); nothing else is published through it.
        self.stop.store(true, Ordering::Relaxed);
        let result = match self.thread.take() {
            Some(t) => t.join().unwrap_or_else(|_| {
                Err(BrokerError::Io {
                    what: "the embedded broker's thread".into(),
                    source: std::io::Error::other("it panicked"),
                })
            }),
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

/// Removes the directories of embedded brokers whose process is gone
/// (killed before it could clean up).
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(DIR_PREFIX)) else {
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
