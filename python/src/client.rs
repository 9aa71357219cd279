//! `Client` (a connection to a broker) and `EmbeddedBroker`.

use std::path::PathBuf;
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use ringbus::broker::EmbeddedBroker as RustBroker;
use ringbus::client::{Client as RustClient, ClientError, Mode, SubscribeOptions, TopicConfig};
use ringbus::control::frame::ErrorCode;
use ringbus::control::ConnectionError;
use ringbus::ring::Start;
use ringbus::wait::WaitStrategy;

use crate::errors::{client_error, Kind};
use crate::filter::TagFilters;
use crate::publisher::Publisher;
use crate::subscriber::Subscriber;
use crate::wait::lock;

/// Where a subscriber starts: "latest", "earliest" or a sequence number.
#[derive(FromPyObject)]
enum StartArg {
    Sequence(u64),
    Name(String),
}

/// A connection to a broker, shared by the publishers and subscribers made
/// from it.
#[pyclass(frozen, module = "ringbus", name = "Client")]
pub(crate) struct Client {
    client: RustClient,
}

impl Client {
    fn connect(py: Python<'_>, socket: Option<PathBuf>) -> PyResult<Client> {
        let client = py
            .detach(|| match socket {
                Some(path) => RustClient::connect(path),
                None => RustClient::connect_default(),
            })
            .map_err(|e| client_error(&e))?;
        Ok(Client { client })
    }
}

#[pymethods]
impl Client {
    /// Connects to the broker at `socket`; None: the default socket
    /// (`$RINGBUS_SOCKET`, else `$XDG_RUNTIME_DIR/ringbus.sock`, else
    /// `/tmp/ringbus-$UID/ringbus.sock`). Raises `NoBroker` when none
    /// listens there.
    #[new]
    #[pyo3(signature = (socket=None))]
    fn new(py: Python<'_>, socket: Option<PathBuf>) -> PyResult<Client> {
        Client::connect(py, socket)
    }

    /// Becomes a publisher of `topic`, writing a ring of its own. With no
    /// config argument it joins the topic with its config, or creates it
    /// with the defaults (1024-byte messages, 1024 slots, overwrite, 16
    /// subscribers); with any, missing ones take the defaults and an
    /// existing topic must have the same config (else `ConfigMismatch`).
    /// `mode`: "overwrite" (never waits; slow subscribers lose messages and
    /// are told) or "backpressure" (nothing lost; the publisher waits for
    /// the slowest subscriber). `timestamps`: stamp each message with
    /// CLOCK_MONOTONIC ns (costs a few ns per message).
    #[pyo3(signature = (topic, *, max_message_size=None, capacity=None, mode=None,
                        max_subscribers=None, timestamps=false))]
    #[allow(clippy::too_many_arguments)]
    fn publisher(
        &self,
        py: Python<'_>,
        topic: &str,
        max_message_size: Option<u32>,
        capacity: Option<u32>,
        mode: Option<&str>,
        max_subscribers: Option<u32>,
        timestamps: bool,
    ) -> PyResult<Publisher> {
        let mode = mode.map(|m| m.parse::<Mode>()).transpose().map_err(|e| {
            Kind::InvalidArgument.err(format!("{e}: expected \"overwrite\" or \"backpressure\""))
        })?;
        let given = max_message_size.is_some()
            || capacity.is_some()
            || mode.is_some()
            || max_subscribers.is_some();
        let d = TopicConfig::default();
        let config = TopicConfig {
            max_message_size: max_message_size.unwrap_or(d.max_message_size),
            capacity: capacity.unwrap_or(d.capacity),
            mode: mode.unwrap_or(d.mode),
            max_subscribers: max_subscribers.unwrap_or(d.max_subscribers),
        };
        let client = &self.client;
        let p = py
            .detach(|| {
                if given {
                    return client.publisher(topic, config);
                }
                match client.publisher_existing(topic) {
                    Err(ClientError::Control(ConnectionError::Refused {
                        code: ErrorCode::NotFound,
                        ..
                    })) => client.publisher(topic, config),
                    r => r,
                }
            })
            .map_err(|e| client_error(&e))?;
        Ok(Publisher::new(p, timestamps))
    }

    /// Subscribes to `topic` (which need not exist yet). `start`: where to
    /// begin in the rings that exist now: "latest" (the next message),
    /// "earliest" (the oldest still held) or a sequence number; rings of
    /// publishers that join later are read from their first message.
    /// `wait`: how blocking receives wait: "adaptive" (spin briefly, then
    /// sleep), "spin", "spin-yield" or "block".
    ///
    /// On a durable topic, a sequence `start` older than what the rings
    /// hold, or `since` (seconds since the Unix epoch, as `time.time()`
    /// gives), reads the topic's journal first and then the live rings,
    /// with no gap and no duplicate.
    ///
    /// `topic` may be a pattern: `*` matches one segment, a final `>` one
    /// or more (`sensors.*.temp`, `logs.>`); it reads every topic it
    /// matches, those created later too (from their first message).
    ///
    /// Filters (see `Subscriber.filter_tags`): `tag` keeps one exact tag;
    /// `tag_mask` with `tag_value` keeps `tag & tag_mask == tag_value`;
    /// `tags` keeps the tags of an iterable (at most 64).
    #[pyo3(signature = (topic, *, start=None, wait="adaptive", tag=None, tag_mask=None,
                        tag_value=None, tags=None, since=None))]
    #[allow(clippy::too_many_arguments)]
    fn subscriber(
        &self,
        py: Python<'_>,
        topic: &str,
        start: Option<StartArg>,
        wait: &str,
        tag: Option<u64>,
        tag_mask: Option<u64>,
        tag_value: Option<u64>,
        tags: Option<&Bound<'_, PyAny>>,
        since: Option<f64>,
    ) -> PyResult<Subscriber> {
        if ringbus::control::is_pattern(topic) {
            ringbus::control::validate_pattern(topic).map_err(|e| {
                Kind::InvalidArgument.err(format!("cannot subscribe to {topic:?}: {e}"))
            })?;
        }
        let filters = TagFilters::new(tag, tag_mask, tag_value, tags)?;
        let start = match (start, since) {
            (Some(_), Some(_)) => {
                return Err(Kind::InvalidArgument.err("give start or since, not both"))
            }
            (None, Some(t)) if !(0.0..=1.8e10).contains(&t) => {
                return Err(Kind::InvalidArgument.err(format!(
                    "since={t}: expected seconds since the Unix epoch (as time.time() gives)"
                )))
            }
            (None, Some(t)) => Start::Time((t * 1e9) as u64),
            (start, None) => match start {
                None => Start::Latest,
                Some(StartArg::Sequence(n)) => Start::Sequence(n),
                Some(StartArg::Name(s)) => match s.as_str() {
                    "latest" => Start::Latest,
                    "earliest" => Start::Earliest,
                    _ => {
                        return Err(Kind::InvalidArgument.err(format!(
                    "unknown start {s:?}: expected \"latest\", \"earliest\" or a sequence number"
                )))
                    }
                },
            },
        };
        let wait: WaitStrategy = wait
            .parse()
            .map_err(|e: String| Kind::InvalidArgument.err(e))?;
        let client = &self.client;
        let mut s = py
            .detach(|| client.subscriber(topic, SubscribeOptions { start, wait }))
            .map_err(|e| client_error(&e))?;
        filters.apply(&mut s)?;
        Ok(Subscriber::new(py, s))
    }

    /// The socket path this client connected to.
    #[getter]
    fn socket(&self) -> String {
        self.client.socket_path().to_string_lossy().into_owned()
    }

    /// The broker's process id.
    #[getter]
    fn broker_pid(&self) -> u32 {
        self.client.broker_pid()
    }

    fn __repr__(&self) -> String {
        format!("<ringbus.Client socket={:?}>", self.client.socket_path())
    }
}

/// A broker served by a thread of this process, in a private temporary
/// directory, stopped and removed by `stop()` (or leaving its `with`
/// block). Handy for tests: `socket` is its path, for `Client(socket)` or
/// a child process's `RINGBUS_SOCKET`.
#[pyclass(frozen, module = "ringbus", name = "EmbeddedBroker")]
pub(crate) struct EmbeddedBroker {
    broker: Mutex<Option<RustBroker>>,
    socket: PathBuf,
}

#[pymethods]
impl EmbeddedBroker {
    /// Starts the broker (only this user is admitted).
    #[new]
    fn new(py: Python<'_>) -> PyResult<EmbeddedBroker> {
        let b = py
            .detach(RustBroker::start)
            .map_err(|e| Kind::BrokerError.err(format!("cannot start an embedded broker: {e}")))?;
        Ok(EmbeddedBroker {
            socket: b.socket().to_owned(),
            broker: Mutex::new(Some(b)),
        })
    }

    /// The broker's socket path.
    #[getter]
    fn socket(&self) -> String {
        self.socket.to_string_lossy().into_owned()
    }

    /// A new client of this broker.
    fn client(&self, py: Python<'_>) -> PyResult<Client> {
        if lock(py, &self.broker).is_none() {
            return Err(Kind::Closed.err("the embedded broker is stopped"));
        }
        Client::connect(py, Some(self.socket.clone()))
    }

    /// Stops the broker and removes its directory. Clients lose their
    /// connection; rings they hold stay usable. Stopping twice is harmless.
    fn stop(&self, py: Python<'_>) -> PyResult<()> {
        let b = lock(py, &self.broker).take();
        match b {
            Some(b) => py
                .detach(move || b.stop())
                .map_err(|e| Kind::BrokerError.err(format!("the embedded broker failed: {e}"))),
            None => Ok(()),
        }
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.stop(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        format!("<ringbus.EmbeddedBroker socket={:?}>", self.socket)
    }
}
