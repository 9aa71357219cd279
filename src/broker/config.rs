//! The broker's TOML configuration: server paths, limits, predeclared
//! topics and access rules.
//!
//! ```toml
//! [server]
//! socket = "/run/ringbus/ringbus.sock"   # flag and RINGBUS_SOCKET win
//! data_dir = "/dev/shm/ringbus"
//! socket_mode = 0o666        # the ACL below is what admits clients
//! socket_dir_mode = 0o700    # used when the broker creates the directory
//! journal_dir = "/var/lib/ringbus"  # durable topics' journals (not tmpfs)
//!
//! [limits]                   # the defaults
//! max_topics = 1024
//! max_clients = 1024
//! max_publishers_per_topic = 16
//! max_clients_per_uid = 256
//! hello_timeout_ms = 2000
//! max_topics_per_uid = 256
//! max_rings_per_uid = 256
//! max_ring_bytes_per_uid = 4294967296
//! max_leases_per_client = 1024
//!
//! [[topic]]
//! name = "md.AAPL"
//! max_message_size = 256
//! capacity = 4096
//! mode = "backpressure"
//! max_subscribers = 8
//!
//! [[topic]]
//! name = "orders"
//! mode = "backpressure"
//! durable = true             # journaled to disk by the broker's recorder
//! fsync = "interval:10ms"    # or "none", "always"
//! retain_bytes = 10737418240 # per ring; and/or
//! retain_age = "7d"
//!
//! [[acl]]
//! topic = "md.>"              # exact name, `*` = one segment, `>` = the rest
//! publish = { uids = [1000] }
//! subscribe = { uids = [1001], gids = [100], anyone = false }
//! ```
//!
//! Access: the first `[[acl]]` rule whose pattern matches the topic
//! decides; the broker's own uid is always allowed; without a matching rule
//! only the broker's uid is. Group checks use the peer's primary gid (the
//! one `SO_PEERCRED` reports).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::control::frame::MAX_RINGS_PER_TOPIC;
use crate::control::{validate_topic_name, PeerCred};
use crate::journal::{parse_duration, Fsync, JournalOptions};
use crate::ring::{Mode, TopicConfig};

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, or unknown / mistyped keys.
    #[error("invalid config {}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's explanation (with line and column).
        message: String,
    },
    /// Parsed, but a value is out of range.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// The whole configuration file. Every section is optional.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Paths and permissions.
    #[serde(default)]
    pub server: ServerConfig,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Predeclared topics.
    #[serde(default, rename = "topic")]
    pub topics: Vec<TopicDecl>,
    /// Access rules, first match wins.
    #[serde(default)]
    pub acl: Vec<AclRule>,
}

/// `[server]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Socket path (a `--socket` flag or `RINGBUS_SOCKET` wins).
    pub socket: Option<PathBuf>,
    /// Data directory: the broker's lock and its keeper's socket (a
    /// `--data-dir` flag wins).
    pub data_dir: Option<PathBuf>,
    /// Permission bits of the socket file. Default `0o666`: the socket
    /// admits anyone who can reach it and the ACL decides.
    pub socket_mode: u32,
    /// Permission bits of the socket's directory when the broker creates
    /// it. Default `0o700`.
    pub socket_dir_mode: u32,
    /// Hand subscribers read-write data descriptors, so they can map the
    /// data segment writable and poll the latest-message slot (about 25–40
    /// ns less per hop on the machines measured). Default `false`: data is
    /// read-only for subscribers and none can corrupt the stream for the
    /// others. Turn it on only when every process that may subscribe is
    /// trusted (one application on its own host).
    pub trusted_subscribers: bool,
    /// Where durable topics' journals go (default: see
    /// [`default_journal_dir`](crate::control::paths::default_journal_dir);
    /// a real filesystem, not tmpfs, or they do not survive a reboot).
    pub journal_dir: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            socket: None,
            data_dir: None,
            socket_mode: 0o666,
            socket_dir_mode: 0o700,
            trusted_subscribers: false,
            journal_dir: None,
        }
    }
}

/// `[limits]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Most topics at once (1024).
    pub max_topics: u32,
    /// Most connected clients at once (1024).
    pub max_clients: u32,
    /// Most live publishers (rings) per topic, at most 64 (16).
    pub max_publishers_per_topic: u32,
    /// Most connections of one uid at once (256): one user cannot take
    /// every connection.
    pub max_clients_per_uid: u32,
    /// Milliseconds a new connection has to say hello before it is dropped
    /// (2000): idle connections do not pile up.
    pub hello_timeout_ms: u32,
    /// Most topics one uid has created (by publishing or subscribing; the
    /// config file's and the broker's own uid's do not count) that exist
    /// at once (256): one user cannot take every topic.
    pub max_topics_per_uid: u32,
    /// Most live rings (publishers) of one uid at once (256).
    pub max_rings_per_uid: u32,
    /// Most bytes of shared memory the live rings of one uid take, their
    /// subscribers' ports included (4 GiB).
    pub max_ring_bytes_per_uid: u64,
    /// Most leases (publishers and subscriptions) of one connection at
    /// once (1024).
    pub max_leases_per_client: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_topics: 1024,
            max_clients: 1024,
            max_publishers_per_topic: 16,
            max_clients_per_uid: 256,
            hello_timeout_ms: 2000,
            max_topics_per_uid: 256,
            max_rings_per_uid: 256,
            max_ring_bytes_per_uid: 4 << 30,
            max_leases_per_client: 1024,
        }
    }
}

/// `[[topic]]`: a topic that exists from the start with a fixed config.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDecl {
    /// Topic name.
    pub name: String,
    /// Largest payload in bytes (default 1024).
    #[serde(default = "default_max_message_size")]
    pub max_message_size: u32,
    /// Slots per ring, a power of two (default 1024).
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// `"overwrite"` (default) or `"backpressure"`.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// Back-pressure cursors per ring (default 16).
    #[serde(default = "default_max_subscribers")]
    pub max_subscribers: u32,
    /// Journal every message to disk (a back-pressure topic only: the
    /// recorder's cursor is what keeps a message in the ring until it is
    /// written).
    #[serde(default)]
    pub durable: bool,
    /// When journaled messages are forced to disk: `"none"`, `"always"`
    /// or `"interval:10ms"` (the default).
    #[serde(default)]
    pub fsync: Option<String>,
    /// Bytes of journal kept per ring, oldest segments removed first
    /// (default: no limit).
    #[serde(default)]
    pub retain_bytes: Option<u64>,
    /// How long journaled messages are kept (`"7d"`, `"12h"`; default: no
    /// limit).
    #[serde(default)]
    pub retain_age: Option<String>,
    /// Size of a journal segment file (default 64 MiB).
    #[serde(default)]
    pub segment_bytes: Option<u64>,
}

fn default_max_message_size() -> u32 {
    TopicConfig::default().max_message_size
}
fn default_capacity() -> u32 {
    TopicConfig::default().capacity
}
fn default_mode() -> String {
    "overwrite".into()
}
fn default_max_subscribers() -> u32 {
    TopicConfig::default().max_subscribers
}

impl TopicDecl {
    /// The declared config, checked.
    ///
    /// # Errors
    /// Unknown mode or invalid sizes.
    pub fn config(&self) -> Result<TopicConfig, ConfigError> {
        let mode: Mode = self
            .mode
            .parse()
            .map_err(|e| ConfigError::Invalid(format!("topic {:?}: {e}", self.name)))?;
        let c = TopicConfig {
            max_message_size: self.max_message_size,
            capacity: self.capacity,
            mode,
            max_subscribers: self.max_subscribers,
        };
        c.validate()
            .map_err(|e| ConfigError::Invalid(format!("topic {:?}: {e}", self.name)))?;
        Ok(c)
    }

    /// How the topic is journaled: `None` unless it is durable.
    ///
    /// # Errors
    /// A durable overwrite topic, a bad fsync policy, duration or size.
    pub fn journal(&self) -> Result<Option<JournalOptions>, ConfigError> {
        let invalid = |e: String| ConfigError::Invalid(format!("topic {:?}: {e}", self.name));
        let config = self.config()?;
        let journal_only = self.fsync.is_some()
            || self.retain_bytes.is_some()
            || self.retain_age.is_some()
            || self.segment_bytes.is_some();
        if !self.durable {
            if journal_only {
                return Err(invalid(
                    "fsync, retain_bytes, retain_age and segment_bytes apply to a durable topic: add durable = true".into(),
                ));
            }
            return Ok(None);
        }
        if config.mode != Mode::Backpressure {
            return Err(invalid(
                "a durable topic must be mode = \"backpressure\": in overwrite mode a publisher may overwrite a message before it is journaled".into(),
            ));
        }
        let fsync = match &self.fsync {
            Some(f) => f.parse().map_err(invalid)?,
            None => Fsync::Interval(Duration::from_millis(10)),
        };
        let retain_age = self
            .retain_age
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| invalid(format!("retain_age: {e}")))?;
        let defaults = JournalOptions::default();
        let segment_bytes = self.segment_bytes.unwrap_or(defaults.segment_bytes);
        if segment_bytes < 4096 {
            return Err(invalid(format!(
                "segment_bytes = {segment_bytes}: at least 4096"
            )));
        }
        Ok(Some(JournalOptions {
            segment_bytes,
            max_record: config.max_message_size,
            fsync,
            retain_bytes: self.retain_bytes,
            retain_age,
        }))
    }
}

/// `[[acl]]`: who may publish and subscribe to the topics matching
/// `topic`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    /// Exact name or pattern (`*` one segment, final `>` the rest).
    pub topic: String,
    /// Who may publish (and create the topic).
    #[serde(default)]
    pub publish: Principals,
    /// Who may subscribe.
    #[serde(default)]
    pub subscribe: Principals,
}

/// A set of users and groups.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Principals {
    /// User ids.
    #[serde(default)]
    pub uids: Vec<u32>,
    /// Group ids (compared with the peer's primary gid).
    #[serde(default)]
    pub gids: Vec<u32>,
    /// Every user.
    #[serde(default)]
    pub anyone: bool,
}

impl Principals {
    fn admits(&self, cred: &PeerCred) -> bool {
        self.anyone || self.uids.contains(&cred.uid) || self.gids.contains(&cred.gid)
    }
}

/// What a client wants to do with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Attach a publisher or create the topic.
    Publish,
    /// Subscribe.
    Subscribe,
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Action::Publish => "publish to",
            Action::Subscribe => "subscribe to",
        })
    }
}

impl Config {
    /// Reads and checks a config file.
    ///
    /// # Errors
    /// [`ConfigError`] says what and where.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            e => e,
        })
    }

    /// Parses and checks config text.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`].
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let c: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        for (name, v) in [
            ("max_topics", u64::from(l.max_topics)),
            ("max_clients", u64::from(l.max_clients)),
            ("max_clients_per_uid", u64::from(l.max_clients_per_uid)),
            ("hello_timeout_ms", u64::from(l.hello_timeout_ms)),
            ("max_topics_per_uid", u64::from(l.max_topics_per_uid)),
            ("max_rings_per_uid", u64::from(l.max_rings_per_uid)),
            ("max_ring_bytes_per_uid", l.max_ring_bytes_per_uid),
            ("max_leases_per_client", u64::from(l.max_leases_per_client)),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid(format!(
                    "limits.{name} must be at least 1"
                )));
            }
        }
        if l.max_publishers_per_topic == 0
            || l.max_publishers_per_topic as usize > MAX_RINGS_PER_TOPIC
        {
            return Err(ConfigError::Invalid(format!(
                "limits.max_publishers_per_topic must be between 1 and {MAX_RINGS_PER_TOPIC}"
            )));
        }
        if self.server.socket_mode > 0o777 || self.server.socket_dir_mode > 0o777 {
            return Err(ConfigError::Invalid(
                "server.socket_mode and server.socket_dir_mode are permission bits (at most 0o777)"
                    .into(),
            ));
        }
        if self.server.socket_dir_mode & 0o022 != 0 {
            return Err(ConfigError::Invalid(format!(
                "server.socket_dir_mode = 0o{:o} lets others write the socket's directory (they could plant a socket of their own there): drop the group and other write bits",
                self.server.socket_dir_mode
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for t in &self.topics {
            validate_topic_name(&t.name)
                .map_err(|e| ConfigError::Invalid(format!("topic {:?}: {e}", t.name)))?;
            t.journal()?;
            if !seen.insert(&t.name) {
                return Err(ConfigError::Invalid(format!(
                    "topic {:?} is declared twice",
                    t.name
                )));
            }
            t.config()?;
        }
        if self.topics.len() > l.max_topics as usize {
            return Err(ConfigError::Invalid(format!(
                "{} topics declared but limits.max_topics is {}",
                self.topics.len(),
                l.max_topics
            )));
        }
        for r in &self.acl {
            crate::control::validate_pattern(&r.topic)
                .map_err(|m| ConfigError::Invalid(format!("acl rule for {:?}: {m}", r.topic)))?;
        }
        Ok(())
    }

    /// Whether `cred` may do `action` on `topic` (see the module docs).
    pub fn allows(&self, topic: &str, action: Action, cred: &PeerCred, broker_uid: u32) -> bool {
        if cred.uid == broker_uid {
            return true;
        }
        match self
            .acl
            .iter()
            .find(|r| crate::control::pattern_matches(&r.topic, topic))
        {
            Some(rule) => match action {
                Action::Publish => rule.publish.admits(cred),
                Action::Subscribe => rule.subscribe.admits(cred),
            },
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[server]
socket_mode = 0o660

[limits]
max_topics = 10
max_publishers_per_topic = 2

[[topic]]
name = "md.AAPL"
capacity = 64
mode = "backpressure"

[[acl]]
topic = "md.>"
publish = { uids = [1000] }
subscribe = { gids = [100], uids = [65534] }

[[acl]]
topic = "public.*"
subscribe = { anyone = true }
"#;

    fn cred(uid: u32, gid: u32) -> PeerCred {
        PeerCred { pid: 1, uid, gid }
    }

    #[test]
    fn parses_and_decides() {
        let c = Config::parse(SAMPLE).unwrap();
        assert_eq!(c.server.socket_mode, 0o660);
        assert!(!c.server.trusted_subscribers, "read-only data by default");
        let trusted = Config::parse("[server]\ntrusted_subscribers = true\n").unwrap();
        assert!(trusted.server.trusted_subscribers);
        assert!(Config::parse("[server]\ntrusted_subscribers = \"yes\"\n").is_err());
        assert_eq!(c.limits.max_topics, 10);
        assert_eq!(c.limits.max_clients, 1024);
        let t = c.topics[0].config().unwrap();
        assert_eq!(t.capacity, 64);
        assert_eq!(t.mode, Mode::Backpressure);
        assert_eq!(t.max_message_size, 1024);

        let owner = 0;
        assert!(c.allows("anything", Action::Publish, &cred(0, 0), owner));
        assert!(c.allows("md.AAPL", Action::Publish, &cred(1000, 5), owner));
        assert!(!c.allows("md.AAPL", Action::Subscribe, &cred(1000, 5), owner));
        assert!(c.allows("md.AAPL", Action::Subscribe, &cred(7, 100), owner));
        assert!(c.allows("md.AAPL", Action::Subscribe, &cred(65534, 65534), owner));
        assert!(!c.allows("md.AAPL", Action::Publish, &cred(65534, 65534), owner));
        assert!(c.allows("public.x", Action::Subscribe, &cred(9, 9), owner));
        assert!(!c.allows("public.x", Action::Publish, &cred(9, 9), owner));
        assert!(!c.allows("other", Action::Subscribe, &cred(1000, 100), owner));
    }

    #[test]
    fn default_is_owner_only() {
        let c = Config::default();
        assert!(c.allows("t", Action::Publish, &cred(42, 42), 42));
        assert!(!c.allows("t", Action::Subscribe, &cred(43, 42), 42));
    }

    #[test]
    fn rejects_bad_configs() {
        for bad in [
            "[limits]\nmax_publishers_per_topic = 65",
            "[[topic]]\nname = \"a/b\"",
            "[[topic]]\nname = \"a\"\ncapacity = 3",
            "[[topic]]\nname = \"a\"\nmode = \"lossy\"",
            "[[topic]]\nname = \"a\"\n[[topic]]\nname = \"a\"",
            "[[acl]]\ntopic = \"a.>.b\"",
            "[[acl]]\ntopic = \"a\"\nwho = 1",
            "unknown = 1",
            "[server]\nsocket_mode = 0o1777",
        ] {
            assert!(Config::parse(bad).is_err(), "{bad}");
        }
    }
}
