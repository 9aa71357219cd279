//! [`Client`]: a connection to a broker, shared by the publishers and
//! subscribers made from it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{refine, unexpected, ClientError, Publisher, SubscribeOptions, Subscriber};
use crate::control::frame::{Reply, Request};
use crate::control::{paths, BrokerStats, Connection, TopicInfo};
use crate::ring::TopicConfig;

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// A connection to a broker. Cheap to clone (clones share the connection);
/// publishers and subscribers keep it alive, since the broker ends their
/// leases when it closes.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// How this process introduces itself: `program[pid]`.
fn client_name() -> String {
    let exe = std::env::args()
        .next()
        .map(|a| {
            Path::new(&a)
                .file_name()
                .map_or(a.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    format!("{exe}[{}]", std::process::id())
}

impl Client {
    /// Connects to the broker listening at `path`.
    ///
    /// # Errors
    /// [`ConnectionError::NoBroker`](crate::control::ConnectionError::NoBroker)
    /// (inside [`ClientError::Control`]) when none listens there.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref().to_owned();
        let conn = Connection::connect(&path, &client_name()).map_err(refine)?;
        Ok(Client {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new(conn),
            }),
        })
    }

    /// A client over `sock`, connected to the broker of `path` by the
    /// broker itself (its recorders').
    pub(crate) fn over(sock: std::os::fd::OwnedFd, path: &Path) -> Result<Client, ClientError> {
        let conn = Connection::over(sock, &client_name()).map_err(refine)?;
        Ok(Client {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                conn: Mutex::new(conn),
            }),
        })
    }

    /// Connects to the default socket ([`paths::default_socket_path`]:
    /// `RINGBUS_SOCKET`, else the runtime directory).
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub fn connect_default() -> Result<Client, ClientError> {
        Client::connect(paths::default_socket_path())
    }

    /// The socket path this client connected to.
    pub fn socket_path(&self) -> &Path {
        &self.inner.path
    }

    /// The broker's process id.
    pub fn broker_pid(&self) -> u32 {
        self.conn().broker_pid()
    }

    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a Connection in a
        // state worse than a failed request, so poisoning is ignored.
        self.inner.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn call(&self, req: &Request) -> Result<(Reply, Vec<OwnedFd>), ClientError> {
        self.conn().call(req).map_err(refine)
    }

    /// Replaces a dead connection with a fresh one to the same path.
    pub(super) fn reconnect(&self) -> Result<(), ClientError> {
        let fresh = Connection::connect(&self.inner.path, &client_name()).map_err(refine)?;
        *self.conn() = fresh;
        Ok(())
    }

    /// Creates `topic` with `config`, or checks that it exists with it.
    /// Returns whether it was created.
    ///
    /// # Errors
    /// [`ClientError::ConfigMismatch`], [`ClientError::PermissionDenied`],
    /// or a refusal (bad name, invalid config, limit).
    pub fn open_topic(&self, topic: &str, config: TopicConfig) -> Result<bool, ClientError> {
        match self.call(&Request::OpenTopic {
            topic: topic.to_owned(),
            config,
        })? {
            (Reply::TopicOpened { created, .. }, _) => Ok(created),
            (other, _) => Err(unexpected(&other)),
        }
    }

    /// Becomes a publisher of `topic` (created with `config` if new; an
    /// existing topic must have the same config). The publisher writes its
    /// own ring.
    ///
    /// # Errors
    /// [`ClientError::ConfigMismatch`], [`ClientError::PermissionDenied`],
    /// a refusal (limit of publishers...), or a mapping failure.
    pub fn publisher(&self, topic: &str, config: TopicConfig) -> Result<Publisher, ClientError> {
        Publisher::attach(self, topic, Some(config))
    }

    /// Becomes a publisher of an existing topic, with its config.
    ///
    /// # Errors
    /// As [`Client::publisher`]; `NotFound` if the topic has no config yet.
    pub fn publisher_existing(&self, topic: &str) -> Result<Publisher, ClientError> {
        Publisher::attach(self, topic, None)
    }

    /// Subscribes to `topic` (which need not exist yet): reads every ring
    /// of the topic, including those of publishers that join later (from
    /// their first message; see [`crate::ring::Start`] and the crate's
    /// delivery guarantees).
    ///
    /// # Errors
    /// [`ClientError::PermissionDenied`], a refusal, or a mapping failure
    /// (e.g. every back-pressure cursor of a ring is taken).
    pub fn subscriber(
        &self,
        topic: &str,
        options: SubscribeOptions,
    ) -> Result<Subscriber, ClientError> {
        Subscriber::subscribe(self, topic, options)
    }

    /// Every topic this user may see, with its rings and counters.
    ///
    /// # Errors
    /// The broker cannot be reached.
    pub fn topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        let mut all = Vec::new();
        loop {
            let offset = all.len() as u32;
            match self.call(&Request::ListTopics { offset })? {
                (Reply::Topics { total, topics, .. }, _) => {
                    let empty = topics.is_empty();
                    all.extend(topics);
                    if empty || all.len() >= total as usize {
                        return Ok(all);
                    }
                }
                (other, _) => return Err(unexpected(&other)),
            }
        }
    }

    /// The broker's counters.
    ///
    /// # Errors
    /// The broker cannot be reached.
    pub fn stats(&self) -> Result<BrokerStats, ClientError> {
        match self.call(&Request::Stats)? {
            (Reply::Stats(s), _) => Ok(s),
            (other, _) => Err(unexpected(&other)),
        }
    }
}
