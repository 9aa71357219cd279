//! The client's side of a control connection: hello, then one request and
//! its reply at a time.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::codec::{self, DecodeError, EncodeError, MAX_FRAME};
use super::frame::{ErrorCode, Reply, Request, PROTOCOL_VERSION};
use super::socket;

/// How long a client waits for the broker to answer one request.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// Nothing listens at the socket path.
    #[error("no broker at {}: start one with `ringbus serve`", path.display())]
    NoBroker {
        /// The socket path tried.
        path: PathBuf,
        /// The connect error.
        #[source]
        source: io::Error,
    },
    /// The socket exists but this user may not connect to it.
    #[error("permission denied connecting to {}: the broker's socket or its directory does not admit this user", path.display())]
    SocketPermission {
        /// The socket path tried.
        path: PathBuf,
    },
    /// The broker at the default socket path is not to be trusted: that
    /// path is this user's own, and something about it is not.
    #[error("not talking to the broker at {}: {problem}", path.display())]
    Untrusted {
        /// The socket path tried.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Sending or receiving failed (the broker died, or timed out).
    #[error("control connection to the broker failed: {0}")]
    Io(#[from] io::Error),
    /// The broker closed the connection.
    #[error("the broker closed the connection")]
    Closed,
    /// The broker's reply could not be decoded.
    #[error("bad reply from the broker: {0}")]
    Decode(#[from] DecodeError),
    /// The request could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The broker answered with an error.
    #[error("{message}")]
    Refused {
        /// What kind of error.
        code: ErrorCode,
        /// The broker's explanation.
        message: String,
    },
    /// The broker answered with a frame that does not answer the request,
    /// or with the wrong number of descriptors.
    #[error("unexpected reply from the broker: {0}")]
    Unexpected(String),
}

/// A connection to the broker, past the hello.
#[derive(Debug)]
pub struct Connection {
    sock: OwnedFd,
    buf: Box<[u8]>,
    broker_pid: u32,
    client_id: u64,
    /// A request failed half-way (e.g. timed out): a late reply could be
    /// taken for the next request's, so the connection is not used again.
    broken: bool,
}

/// The default socket path is named for this user (`$XDG_RUNTIME_DIR`,
/// else `/tmp/ringbus-$UID`): the broker there must run as this user or
/// root, in a directory of this user's (or root's) that nobody else can
/// write. Otherwise another user could have planted a directory and a
/// broker of their own there, and be sent everything.
fn check_default_broker(path: &Path, sock: BorrowedFd<'_>) -> Result<(), ConnectionError> {
    let me = rustix::process::getuid().as_raw();
    let untrusted = |problem: String| ConnectionError::Untrusted {
        path: path.to_owned(),
        problem,
    };
    let dir = path.parent().unwrap_or(Path::new("/"));
    let st = rustix::fs::lstat(dir).map_err(|e| untrusted(format!("{}: {e}", dir.display())))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
        return Err(untrusted(format!("{} is not a directory", dir.display())));
    }
    if st.st_uid != me && st.st_uid != 0 {
        return Err(untrusted(format!(
            "its directory {} belongs to uid {}, not to you (uid {me}): another user may have planted it; remove it",
            dir.display(),
            st.st_uid
        )));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(untrusted(format!(
            "others may write its directory {} (mode {:o}): chmod go-w it",
            dir.display(),
            st.st_mode & 0o7777
        )));
    }
    let peer = socket::peer_cred(sock)?;
    if peer.uid != me && peer.uid != 0 {
        return Err(untrusted(format!(
            "the broker there runs as uid {}, not as you (uid {me}) or root",
            peer.uid
        )));
    }
    Ok(())
}

impl Connection {
    /// Connects to `path` and says hello.
    ///
    /// # Errors
    /// [`ConnectionError::NoBroker`] when no broker listens there; a
    /// version mismatch comes back as [`ConnectionError::Refused`].
    pub fn connect(path: &Path, name: &str) -> Result<Connection, ConnectionError> {
        let sock = socket::connect(path).map_err(|source| match source.kind() {
            io::ErrorKind::PermissionDenied => ConnectionError::SocketPermission {
                path: path.to_owned(),
            },
            _ => ConnectionError::NoBroker {
                path: path.to_owned(),
                source,
            },
        })?;
        if super::paths::is_default_socket(path) {
            check_default_broker(path, sock.as_fd())?;
        }
        Connection::over(sock, name)
    }

    /// Says hello over `sock`, a socket already connected to a broker
    /// (one end of a pair the broker serves the other end of).
    ///
    /// # Errors
    /// As [`Connection::connect`], but for the connecting.
    pub(crate) fn over(sock: OwnedFd, name: &str) -> Result<Connection, ConnectionError> {
        socket::set_timeouts(sock.as_fd(), Some(REPLY_TIMEOUT))?;
        let mut c = Connection {
            sock,
            buf: vec![0u8; MAX_FRAME].into_boxed_slice(),
            broker_pid: 0,
            client_id: 0,
            broken: false,
        };
        let mut name = name.to_owned();
        while name.len() > super::frame::MAX_CLIENT_NAME_LEN {
            name.pop();
        }
        let hello = Request::Hello {
            min_version: PROTOCOL_VERSION,
            max_version: PROTOCOL_VERSION,
            name,
        };
        match c.call(&hello)? {
            (
                Reply::Welcome {
                    broker_pid,
                    client_id,
                    ..
                },
                _,
            ) => {
                c.broker_pid = broker_pid;
                c.client_id = client_id;
                Ok(c)
            }
            (other, _) => Err(ConnectionError::Unexpected(format!("{other:?}"))),
        }
    }

    /// The broker's process id, as it said in its welcome.
    pub fn broker_pid(&self) -> u32 {
        self.broker_pid
    }

    /// The id the broker gave this connection.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// Whether the broker has closed this connection (it died or
    /// restarted). Never blocks. (A connection broken by a timeout while
    /// the broker lives is not "gone": replacing it would end the leases of
    /// every publisher sharing it.)
    pub fn broker_gone(&self) -> bool {
        use rustix::event::{poll, PollFd, PollFlags, Timespec};
        let mut fds = [PollFd::new(&self.sock, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        match poll(&mut fds, Some(&zero)) {
            // The broker never sends unsolicited frames: readable means EOF.
            Ok(_) => fds[0]
                .revents()
                .intersects(PollFlags::IN | PollFlags::HUP | PollFlags::ERR),
            Err(_) => false,
        }
    }

    /// Sends `req` and waits for its reply, returning it with its
    /// descriptors (checked to be as many as the reply announces). An
    /// error reply becomes [`ConnectionError::Refused`].
    ///
    /// # Errors
    /// See [`ConnectionError`].
    pub fn call(&mut self, req: &Request) -> Result<(Reply, Vec<OwnedFd>), ConnectionError> {
        if self.broken {
            return Err(ConnectionError::Closed);
        }
        let frame = codec::encode_request(req)?;
        let r = self.exchange(&frame);
        if matches!(
            r,
            Err(ConnectionError::Io(_) | ConnectionError::Closed | ConnectionError::Decode(_))
        ) {
            self.broken = true;
        }
        r
    }

    fn exchange(&mut self, frame: &[u8]) -> Result<(Reply, Vec<OwnedFd>), ConnectionError> {
        // A signal that interrupts a call (a process with a SIGCHLD
        // handler, a profiler, Python's own) is not the broker's failure:
        // the call is made again. A seqpacket send is whole or not at all.
        let sock = self.sock.as_fd();
        let got = loop {
            match socket::send_frame(sock, frame, &[]) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        got?;
        let got = loop {
            match socket::recv_frame(sock, &mut self.buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        let got = got?.ok_or(ConnectionError::Closed)?;
        if got.truncated {
            return Err(DecodeError::Oversized {
                len: got.len,
                max: MAX_FRAME,
            }
            .into());
        }
        let reply = codec::decode_reply(&self.buf[..got.len])?;
        if let Reply::Error { code, message } = reply {
            return Err(ConnectionError::Refused { code, message });
        }
        if got.fds_truncated || got.fds.len() != reply.fd_count() {
            return Err(ConnectionError::Unexpected(format!(
                "{} descriptors with a reply that needs {}",
                got.fds.len(),
                reply.fd_count()
            )));
        }
        Ok((reply, got.fds))
    }
}
