//! The broker daemon: one thread, one `poll` loop over the listening
//! socket, the clients' sockets and a pidfd per client process.
//!
//! The broker admits clients (`SO_PEERCRED` against the ACL), creates each
//! publisher's ring (sealed memfds) and each subscriber's port on it and
//! passes their descriptors (`SCM_RIGHTS`), tracks leases, and reclaims
//! what a dead process held: its rings are closed (subscribers drain them,
//! then see end of stream) and its ports removed (so they stop gating
//! publishers). Its [`keeper`] holds every ring's descriptors, so that a
//! broker that crashes or restarts takes them back. It never touches a
//! message. Nothing a client sends can make
//! it panic or block: sockets are non-blocking, every frame is decoded with
//! checked lengths, and a client that does not read its replies is dropped.

pub mod config;
pub mod dirs;
mod embedded;
pub mod keeper;
pub mod recorder;
mod signals;
mod state;

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};

use crate::control::codec::{self, DecodeError, MAX_REQUEST};
use crate::control::frame::{ErrorCode, Reply, Request};
use crate::control::{paths, socket, PeerCred};

pub use config::{Action, Config, ConfigError};
use dirs::Dir;
pub use embedded::EmbeddedBroker;
pub use signals::install_stop_handlers;
use state::State;

/// How often the loop wakes without events to sweep for rings closed by
/// their publisher and pids without a pidfd.
const TICK: Duration = Duration::from_millis(200);
/// Frames handled per client per wake-up, so one chatty client cannot
/// starve the others.
const FRAMES_PER_WAKE: usize = 16;

/// Why the broker could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Another live broker owns the socket.
    #[error("another broker is already running on {}{}", path.display(), pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    AlreadyRunning {
        /// The socket path.
        path: PathBuf,
        /// The other broker's pid, if its lock file says.
        pid: Option<u32>,
    },
    /// Another live broker uses the data directory (under another socket).
    #[error("data directory {} is in use by another broker{}: give this one its own --data-dir", path.display(), pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    DataDirInUse {
        /// The data directory.
        path: PathBuf,
        /// The other broker's pid, if its lock file says.
        pid: Option<u32>,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BrokerError {
    let what = what.into();
    move |source| BrokerError::Io { what, source }
}

/// Where the broker listens and keeps its rings, and its configuration.
#[derive(Clone, Debug)]
pub struct BrokerOptions {
    /// Socket path.
    pub socket: PathBuf,
    /// The data directory: the broker's lock and its keeper's socket.
    pub data_dir: PathBuf,
    /// Limits, topics, ACL.
    pub config: Config,
    /// The executable to start the keeper with (`EXE __keeper DATA_DIR`):
    /// a process that holds the rings' descriptors so that they outlive
    /// this broker and a restarted one takes them back (see
    /// [`keeper`]). `None`: no keeper is started (one already running for
    /// the data directory is still used); rings end with the broker.
    pub keeper: Option<PathBuf>,
}

/// The hidden subcommand of the `ringbus` binary that runs a keeper.
pub const KEEPER_SUBCOMMAND: &str = "__keeper";

impl BrokerOptions {
    /// Resolves paths: a flag wins, then `RINGBUS_SOCKET` (socket only),
    /// then the config file, then the defaults of [`paths`].
    pub fn resolve(socket: Option<PathBuf>, data_dir: Option<PathBuf>, config: Config) -> Self {
        let socket = socket
            .or_else(|| {
                std::env::var_os(paths::SOCKET_ENV)
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
            })
            .or_else(|| config.server.socket.clone())
            .unwrap_or_else(paths::default_socket_path);
        let data_dir = data_dir
            .or_else(|| config.server.data_dir.clone())
            .unwrap_or_else(paths::default_data_dir);
        BrokerOptions {
            socket,
            data_dir,
            config,
            keeper: None,
        }
    }
}

struct Client {
    sock: OwnedFd,
    cred: PeerCred,
    welcomed: bool,
    /// When it connected (see `limits.hello_timeout_ms`).
    since: Instant,
}

enum PidWatch {
    /// Readable once the process has exited.
    Fd(OwnedFd),
    /// No pidfd (old kernel): checked with `kill(pid, 0)` on each tick.
    Poll,
}

/// A bound broker, ready to [`run`](Broker::run).
pub struct Broker {
    listener: OwnedFd,
    socket_path: PathBuf,
    /// The socket's directory, and the socket's name in it.
    socket_dir: Dir,
    socket_name: String,
    /// `flock`s on the socket's lock file and the data directory's.
    _locks: [File; 2],
    clients: HashMap<u64, Client>,
    next_client: u64,
    pids: HashMap<u32, PidWatch>,
    state: State,
    buf: Box<[u8]>,
    /// Durable topics and how each is journaled, under `journal_dir`.
    durable: Vec<(String, crate::journal::JournalOptions)>,
    journal_dir: PathBuf,
    /// The keeper's pid, if one holds the rings: the recorders' ports are
    /// made in its name, so that they outlive this broker (see
    /// `recorder`).
    keeper_pid: Option<u32>,
}

impl Broker {
    /// Takes the socket (refusing if a live broker owns it, removing a
    /// stale one), prepares the data directory and re-adopts the rings
    /// found there.
    ///
    /// # Errors
    /// [`BrokerError::AlreadyRunning`], or an I/O error saying what failed.
    pub fn bind(opts: BrokerOptions) -> Result<Broker, BrokerError> {
        let BrokerOptions {
            socket: socket_path,
            data_dir,
            config,
            keeper,
        } = opts;
        // A config built in code has not been through `Config::parse`.
        config.validate()?;
        let mut durable = Vec::new();
        for t in &config.topics {
            if let Some(options) = t.journal()? {
                durable.push((t.name.clone(), options));
            }
        }
        let journal_dir = config
            .server
            .journal_dir
            .clone()
            .unwrap_or_else(paths::default_journal_dir);
        if !durable.is_empty() {
            // Refuse to start rather than run durable topics unrecorded.
            Dir::open(&journal_dir, Some(0o700)).map_err(io_err("the journal directory"))?;
            // One that exists but that we may not write (a read-only
            // mount, another's mode bits) would hold every durable
            // publisher back from its first ring's worth on.
            rustix::fs::access(
                &journal_dir,
                rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
            )
            .map_err(|e| {
                io_err(format!(
                    "the journal directory {} is not writable",
                    journal_dir.display()
                ))(e.into())
            })?;
        }
        let dir_of = |p: &Path| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let socket_name = socket_path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| BrokerError::Io {
                what: format!("socket path {}", socket_path.display()),
                source: io::Error::other("it names no file (or not in UTF-8)"),
            })?
            .to_owned();
        let socket_dir = Dir::open(&dir_of(&socket_path), Some(config.server.socket_dir_mode))
            .map_err(io_err("the socket's directory"))?;
        let lock_name = format!("{socket_name}.lock");
        let lock = take_lock(&socket_dir, &lock_name, |pid| BrokerError::AlreadyRunning {
            path: socket_path.clone(),
            pid,
        })?;
        if socket_dir.contains(&socket_name) {
            match socket::connect(&socket_dir.via_fd(&socket_name)) {
                Ok(_) => {
                    return Err(BrokerError::AlreadyRunning {
                        path: socket_path,
                        pid: None,
                    })
                }
                // Nobody listens: a dead broker's leftover.
                Err(_) => socket_dir.remove(&socket_name).map_err(io_err(format!(
                    "removing stale socket {}",
                    socket_path.display()
                )))?,
            }
        }
        let data = Dir::open(&data_dir, Some(0o700)).map_err(io_err("the data directory"))?;
        // Two brokers taking back the same keeper's rings would fight over
        // them.
        let data_lock = take_lock(&data, ".broker.lock", |pid| BrokerError::DataDirInUse {
            path: data_dir.clone(),
            pid,
        })?;
        raise_fd_limit();

        let listener = socket::listen(&socket_dir.via_fd(&socket_name), 128)
            .map_err(io_err(format!("listening on {}", socket_path.display())))?;
        socket_dir
            .chmod(&socket_name, config.server.socket_mode)
            .map_err(io_err(format!(
                "setting the mode of {}",
                socket_path.display()
            )))?;

        // The keeper holds what the last broker of this data directory
        // served: take it back before serving anyone.
        let kept = state::Kept::new(keeper::Keeper::attach(&data, keeper.as_deref()));
        let keeper_pid = kept.live().and_then(keeper::Keeper::pid);
        let mut state = State::new(data_dir, config, kept.clone())?;
        if !durable.is_empty() {
            state.recorder_pid = keeper_pid;
        }
        let owners = match kept.live().map(keeper::Keeper::list) {
            Some(Ok(entries)) => state.restore(entries),
            Some(Err(e)) => {
                eprintln!("ringbus: warning: the keeper did not list what it holds: {e}");
                Vec::new()
            }
            None => Vec::new(),
        };
        if let Some(pid) = keeper_pid {
            let names: Vec<String> = durable.iter().map(|(n, _)| n.clone()).collect();
            state.release_recorders(pid, &names);
        }
        let mut broker = Broker {
            listener,
            socket_path,
            socket_dir,
            socket_name,
            _locks: [lock, data_lock],
            clients: HashMap::new(),
            next_client: 1,
            pids: HashMap::new(),
            state,
            buf: vec![0u8; MAX_REQUEST].into_boxed_slice(),
            durable,
            journal_dir,
            keeper_pid,
        };
        for (pid, fd) in owners {
            match fd {
                Some(fd) => {
                    broker.pids.insert(pid, PidWatch::Fd(fd));
                }
                None => broker.watch_pid(pid),
            }
        }
        broker.state.declare_topics()?;
        Ok(broker)
    }

    /// The socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.state.data_dir()
    }

    /// Serves until `stop` becomes true (e.g. set by
    /// [`install_stop_handlers`]).
    ///
    /// # Errors
    /// Only if `poll` itself fails; client errors never stop the broker.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<(), BrokerError> {
        // Dropped (stopped, their journals synced) when serving ends.
        let mut recorders = Vec::with_capacity(self.durable.len());
        for (topic, options) in self.durable.clone() {
            let what = format!("starting the recorder of {topic:?}");
            let (ours, theirs) = socket::pair().map_err(io_err(what.clone()))?;
            rustix::fs::fcntl_setfl(&ours, rustix::fs::OFlags::NONBLOCK)
                .map_err(|e| io_err(what.clone())(e.into()))?;
            let mut cred = socket::peer_cred(ours.as_fd()).map_err(io_err(what.clone()))?;
            // In the keeper's name: a port of a process that lives on, so
            // that a broker that dies leaves it holding back the topic's
            // publishers, and the next broker hands it to its recorder
            // (an orphan of that pid) with the cursor where it was.
            if let Some(pid) = self.keeper_pid {
                cred.pid = pid;
            }
            let id = self.admit(ours, cred);
            self.state.recorder_clients.push(id);
            let dir = self.journal_dir.clone();
            let hand_over = self.keeper_pid.is_some();
            let r = recorder::Recorder::start(
                theirs,
                self.socket_path.clone(),
                topic.clone(),
                dir,
                options,
                hand_over,
            )
            .map_err(io_err(what))?;
            // Listed with the topic by `ListTopics`.
            self.state.recorders.insert(topic, r.counters().clone());
            recorders.push(r);
        }
        // Until every recorder holds its cursors (or a few seconds went by:
        // one that cannot subscribe says why on stderr), nobody else is
        // admitted: a publisher of a durable topic must not write what its
        // recorder would never see.
        let admitting_from = Instant::now() + Duration::from_secs(5);
        let mut last_tick = Instant::now();
        let mut ids: Vec<u64> = Vec::new();
        let mut pids: Vec<u32> = Vec::new();
        let mut ready_clients: Vec<(u64, PollFlags)> = Vec::new();
        let mut dead_pids: Vec<u32> = Vec::new();
        let timeout = Timespec {
            tv_sec: 0,
            tv_nsec: TICK.as_nanos() as _,
        };
        let mut stopping: Option<Instant> = None;
        loop {
            // Relaxed: a stop flag, see signals.rs.
            if stop.load(Ordering::Relaxed) {
                // The recorders end first (their last requests are
                // answered), bounded: a stuck disk does not keep the
                // broker up.
                let since = *stopping.get_or_insert_with(|| {
                    recorders.iter().for_each(recorder::Recorder::signal_stop);
                    Instant::now()
                });
                if recorders.iter().all(recorder::Recorder::is_finished)
                    || since.elapsed() > Duration::from_secs(5)
                {
                    break;
                }
            }
            ids.clear();
            pids.clear();
            ready_clients.clear();
            dead_pids.clear();
            let listen_ready;
            {
                let admitting = Instant::now() >= admitting_from
                    || recorders.iter().all(|r| r.is_ready() || r.is_finished());
                let mut fds = Vec::with_capacity(1 + self.clients.len() + self.pids.len());
                let listen = if admitting {
                    PollFlags::IN
                } else {
                    PollFlags::empty()
                };
                fds.push(PollFd::new(&self.listener, listen));
                for (id, c) in &self.clients {
                    ids.push(*id);
                    fds.push(PollFd::new(&c.sock, PollFlags::IN));
                }
                for (pid, w) in &self.pids {
                    if let PidWatch::Fd(fd) = w {
                        pids.push(*pid);
                        fds.push(PollFd::new(fd, PollFlags::IN));
                    }
                }
                match rustix::event::poll(&mut fds, Some(&timeout)) {
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(e) => {
                        return Err(BrokerError::Io {
                            what: "poll".into(),
                            source: e.into(),
                        })
                    }
                }
                listen_ready = !fds[0].revents().is_empty();
                for (i, id) in ids.iter().enumerate() {
                    let r = fds[1 + i].revents();
                    if !r.is_empty() {
                        ready_clients.push((*id, r));
                    }
                }
                for (i, pid) in pids.iter().enumerate() {
                    if !fds[1 + ids.len() + i].revents().is_empty() {
                        dead_pids.push(*pid);
                    }
                }
            }
            if listen_ready {
                self.accept_all();
            }
            for &(id, flags) in &ready_clients {
                self.serve_client(id, flags);
            }
            for &pid in &dead_pids {
                self.pids.remove(&pid);
                self.state.reap_pid(pid);
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                self.tick();
            }
        }
        Ok(())
    }

    fn tick(&mut self) {
        let polled: Vec<u32> = self
            .pids
            .iter()
            .filter(|(_, w)| matches!(w, PidWatch::Poll))
            .map(|(p, _)| *p)
            .collect();
        for pid in polled {
            if !pid_alive(pid) {
                self.pids.remove(&pid);
                self.state.reap_pid(pid);
            }
        }
        // Connections that never said hello.
        let patience =
            Duration::from_millis(u64::from(self.state.config().limits.hello_timeout_ms));
        let silent: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| !c.welcomed && c.since.elapsed() >= patience)
            .map(|(id, _)| *id)
            .collect();
        for id in silent {
            if let Some(c) = self.clients.get(&id) {
                let reply = Reply::error(
                    ErrorCode::HelloRequired,
                    "no hello within limits.hello_timeout_ms: closing",
                );
                send_reply(c.sock.as_fd(), &reply, &[]).ok();
            }
            self.disconnect(id);
        }
        self.state.sweep();
    }

    /// Watches `pid` so its death is noticed; a pid already dead is reaped
    /// at once.
    fn watch_pid(&mut self, pid: u32) {
        if pid == 0 || self.pids.contains_key(&pid) {
            return;
        }
        let Some(p) = rustix::process::Pid::from_raw(pid as i32) else {
            return;
        };
        match rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
            Ok(fd) => {
                self.pids.insert(pid, PidWatch::Fd(fd));
            }
            Err(rustix::io::Errno::SRCH) => self.state.reap_pid(pid),
            Err(_) => {
                self.pids.insert(pid, PidWatch::Poll);
            }
        }
    }

    fn accept_all(&mut self) {
        let broker_uid = rustix::process::geteuid().as_raw();
        loop {
            let sock = match socket::accept(self.listener.as_fd()) {
                Ok(s) => s,
                // WouldBlock: done; anything else (EMFILE...): try next wake.
                Err(_) => return,
            };
            let cred = match socket::peer_cred(sock.as_fd()) {
                Ok(c) => c,
                Err(_) => continue,
            };
            let limits = &self.state.config().limits;
            let of_uid = self
                .clients
                .values()
                .filter(|c| c.cred.uid == cred.uid)
                .count();
            let full = if self.clients.len() >= limits.max_clients as usize {
                Some(format!(
                    "the broker already serves {} clients (limits.max_clients)",
                    self.clients.len()
                ))
            } else if of_uid >= limits.max_clients_per_uid as usize && cred.uid != broker_uid {
                Some(format!(
                    "uid {} already has {of_uid} connections (limits.max_clients_per_uid)",
                    cred.uid
                ))
            } else {
                None
            };
            if let Some(why) = full {
                self.state.stats.frames_rejected += 1;
                send_reply(
                    sock.as_fd(),
                    &Reply::error(ErrorCode::LimitExceeded, why),
                    &[],
                )
                .ok();
                continue;
            }
            self.admit(sock, cred);
        }
    }

    /// Serves `sock` (non-blocking), a client with `cred`; returns its id.
    fn admit(&mut self, sock: OwnedFd, cred: PeerCred) -> u64 {
        let id = self.next_client;
        self.next_client += 1;
        self.watch_pid(cred.pid);
        self.clients.insert(
            id,
            Client {
                sock,
                cred,
                welcomed: false,
                since: Instant::now(),
            },
        );
        id
    }

    fn serve_client(&mut self, id: u64, flags: PollFlags) {
        for _ in 0..FRAMES_PER_WAKE {
            let Some(client) = self.clients.get_mut(&id) else {
                return;
            };
            let got = match socket::recv_frame(client.sock.as_fd(), &mut self.buf) {
                Ok(Some(got)) => got,
                Ok(None) => return self.disconnect(id),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if flags.intersects(PollFlags::HUP | PollFlags::ERR) {
                        self.disconnect(id);
                    }
                    return;
                }
                Err(_) => return self.disconnect(id),
            };
            // Descriptors from a client are never used: `got.fds` closes
            // them when dropped.
            let parsed = if got.truncated {
                Err(DecodeError::Oversized {
                    len: got.len + 1,
                    max: MAX_REQUEST,
                })
            } else {
                codec::decode_request(&self.buf[..got.len])
            };
            drop(got);
            self.state.stats.frames_received += 1;
            let (reply, fds, close) = match parsed {
                Err(e) => {
                    // A frame we cannot parse leaves us unsure what the peer
                    // speaks: say why, then hang up. Unknown types and bad
                    // names are well-framed, so the connection survives them.
                    let close = !matches!(
                        e,
                        DecodeError::UnknownKind(_)
                            | DecodeError::BadTopicName(_)
                            | DecodeError::BadPattern(_)
                    );
                    (Reply::error(e.code(), e.to_string()), Vec::new(), close)
                }
                Ok(req) => self.handle(id, req),
            };
            if matches!(reply, Reply::Error { .. }) {
                self.state.stats.frames_rejected += 1;
            }
            let Some(client) = self.clients.get_mut(&id) else {
                return;
            };
            let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
            if send_reply(client.sock.as_fd(), &reply, &borrowed).is_err() || close {
                // A client that does not read its replies, or that sent
                // garbage, is dropped rather than allowed to stall us.
                drop(borrowed);
                return self.disconnect(id);
            }
        }
    }

    /// Handles one decoded request; returns the reply, its descriptors and
    /// whether to hang up afterwards.
    fn handle(&mut self, id: u64, req: Request) -> (Reply, Vec<OwnedFd>, bool) {
        let Some(client) = self.clients.get_mut(&id) else {
            return (
                Reply::error(ErrorCode::Internal, "no such client"),
                vec![],
                true,
            );
        };
        let cred = client.cred;
        match req {
            Request::Hello {
                min_version,
                max_version,
                ..
            } => {
                let v = crate::control::PROTOCOL_VERSION;
                if !(min_version..=max_version).contains(&v) {
                    let msg = format!(
                        "client speaks protocol versions {min_version}..={max_version}, this broker speaks {v}: upgrade the older side"
                    );
                    return (
                        Reply::error(ErrorCode::UnsupportedVersion, msg),
                        vec![],
                        true,
                    );
                }
                client.welcomed = true;
                (
                    Reply::Welcome {
                        version: v,
                        broker_pid: std::process::id(),
                        client_id: id,
                    },
                    vec![],
                    false,
                )
            }
            _ if !client.welcomed => (
                Reply::error(
                    ErrorCode::HelloRequired,
                    "the first frame on a connection must be Hello",
                ),
                vec![],
                true,
            ),
            req => {
                let clients = self.clients.len() as u32;
                let (reply, fds) = self.state.handle(id, cred, req, clients);
                (reply, fds, false)
            }
        }
    }

    fn disconnect(&mut self, id: u64) {
        if self.clients.remove(&id).is_some() {
            self.state.client_gone(id);
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Leave live rings for a restarted broker; remove the socket so the
        // next start finds no stale one, and the lock last.
        let _ = self.socket_dir.remove(&self.socket_name);
        let _ = self
            .socket_dir
            .remove(&format!("{}.lock", self.socket_name));
    }
}

fn send_reply(sock: BorrowedFd<'_>, reply: &Reply, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    match codec::encode_reply(reply) {
        Ok(frame) => socket::send_frame(sock, &frame, fds),
        Err(e) => {
            let frame = codec::encode_reply(&Reply::error(ErrorCode::Internal, e.to_string()))
                .map_err(io::Error::other)?;
            socket::send_frame(sock, &frame, &[])
        }
    }
}

/// Takes an exclusive `flock` on `name` in `dir` (written with our pid),
/// or says who holds it.
fn take_lock(
    dir: &Dir,
    name: &str,
    busy: impl FnOnce(Option<u32>) -> BrokerError,
) -> Result<File, BrokerError> {
    use std::io::{Read, Seek, Write};
    let what = || format!("lock file {}", dir.path().join(name).display());
    let mut f = dir.open_file(name).map_err(io_err(what()))?;
    if rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        let mut s = String::new();
        let _ = f.read_to_string(&mut s);
        return Err(busy(s.trim().parse().ok()));
    }
    f.set_len(0)
        .and_then(|_| f.rewind())
        .and_then(|_| writeln!(f, "{}", std::process::id()))
        .map_err(io_err(format!("writing {}", what())))?;
    Ok(f)
}

fn pid_alive(pid: u32) -> bool {
    match rustix::process::Pid::from_raw(pid as i32) {
        Some(p) => !matches!(
            rustix::process::test_kill_process(p),
            Err(rustix::io::Errno::SRCH)
        ),
        None => false,
    }
}

/// Each ring costs the broker three descriptors: raise the soft limit to
/// the hard one.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut l = getrlimit(Resource::Nofile);
    if l.current < l.maximum {
        l.current = l.maximum;
        let _ = setrlimit(Resource::Nofile, l);
    }
}
