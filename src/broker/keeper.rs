//! The keeper: a small process that holds the descriptors of a broker's
//! rings and ports, so that a broker that restarts (after a crash or a
//! clean stop) takes them back and goes on serving them.
//!
//! Why a process: every segment a client maps is a memfd, which exists
//! only as long as someone holds a descriptor of it, and the data segment
//! is sealed against writers after its publisher has mapped it. A ring
//! file on disk would outlive the broker but could be truncated by any
//! client holding a writable descriptor; a memfd cannot be, but dies with
//! its last holder. The keeper is that holder for the broker's side: it
//! keeps one descriptor of each segment (and of the broker's end of each
//! publisher's channel, and a pidfd of each owner), and hands them all to
//! the next broker that connects. It never maps or reads a segment.
//!
//! It listens on `keeper.sock` in the broker's data directory (mode 0700,
//! checked by the broker) and serves only its own uid. It exits once no
//! broker is connected and every process that owned something it holds
//! has exited (nothing is left to hand over), or its socket is gone (the
//! data directory removed: nobody can reach it).
//!
//! Its protocol is private to the broker of the same build: frames of
//! `op`, a key, opaque metadata, and descriptors.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};

use super::dirs::Dir;
use crate::control::socket;

/// The keeper's socket in the data directory.
pub const SOCKET: &str = "keeper.sock";
const LOCK: &str = ".keeper.lock";
/// Largest keeper frame: a key, metadata and a few descriptors.
const MAX_FRAME: usize = 4096;
/// Most descriptors one entry holds.
const MAX_FDS: usize = 8;

const OP_PUT: u8 = 1;
const OP_DROP: u8 = 2;
const OP_LIST: u8 = 3;
const OP_ENTRY: u8 = 4;
const OP_END: u8 = 5;

/// One thing the keeper holds for the broker.
#[derive(Debug)]
pub struct Entry {
    /// The broker's name for it.
    pub key: Vec<u8>,
    /// The broker's description of it (opaque to the keeper).
    pub meta: Vec<u8>,
    /// Its descriptors, in the order they were put.
    pub fds: Vec<OwnedFd>,
}

struct Held {
    meta: Vec<u8>,
    fds: Vec<OwnedFd>,
    /// Index in `fds` of a pidfd of the process that owns the entry, if any.
    owner: Option<usize>,
}

fn encode(op: u8, key: &[u8], meta: &[u8], owner: Option<usize>) -> io::Result<Vec<u8>> {
    let mut b = Vec::with_capacity(10 + key.len() + meta.len());
    b.push(op);
    b.push(owner.map_or(u8::MAX, |i| i as u8));
    b.extend_from_slice(&(key.len() as u32).to_le_bytes());
    b.extend_from_slice(key);
    b.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    b.extend_from_slice(meta);
    if b.len() > MAX_FRAME {
        return Err(io::Error::other("keeper frame too large"));
    }
    Ok(b)
}

/// `(op, owner, key, meta)` of a frame.
type Frame<'a> = (u8, Option<usize>, &'a [u8], &'a [u8]);

/// A frame's parts; `None` if it is malformed.
fn decode(b: &[u8]) -> Option<Frame<'_>> {
    let (&op, rest) = b.split_first()?;
    let (&owner, rest) = rest.split_first()?;
    fn take(r: &[u8]) -> Option<(usize, &[u8])> {
        let n = u32::from_le_bytes(r.get(..4)?.try_into().ok()?) as usize;
        Some((n, r.get(4..)?))
    }
    let (n, rest) = take(rest)?;
    let key = rest.get(..n)?;
    let (m, rest) = take(rest.get(n..)?)?;
    let meta = rest.get(..m)?;
    (rest.len() == m).then_some((op, (owner != u8::MAX).then_some(owner as usize), key, meta))
}

/// Whether a pidfd says its process has exited.
pub(super) fn exited(pidfd: BorrowedFd<'_>) -> bool {
    let mut fds = [PollFd::new(&pidfd, PollFlags::IN)];
    let zero = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0)
}

/// Runs a keeper for the broker whose data directory is `dir`, until no
/// broker is connected and no owner of anything held lives, or its socket
/// is gone. Returns at
/// once if another keeper holds the directory.
///
/// # Errors
/// The socket cannot be made.
pub fn run(dir: &Path) -> io::Result<()> {
    // Out of the broker's session: a Ctrl-C meant for the broker's
    // terminal does not take the rings with it.
    let _ = rustix::process::setsid();
    let dir = Dir::open(dir, None)?;
    let lock = dir.open_file(LOCK)?;
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(());
    }
    let _ = dir.remove(SOCKET);
    let listener = socket::listen(&dir.via_fd(SOCKET), 4)?;
    dir.chmod(SOCKET, 0o600)?;
    let me = rustix::process::geteuid().as_raw();
    let mut held: BTreeMap<Vec<u8>, Held> = BTreeMap::new();
    let mut broker: Option<OwnedFd> = None;
    let mut alone_since = Some(Instant::now());
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        let timeout = Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        };
        let (listen_ready, broker_ready) = {
            let mut fds = vec![PollFd::new(&listener, PollFlags::IN)];
            if let Some(b) = &broker {
                fds.push(PollFd::new(b, PollFlags::IN));
            }
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
            (
                !fds[0].revents().is_empty(),
                fds.get(1).is_some_and(|f| !f.revents().is_empty()),
            )
        };
        if listen_ready {
            if let Ok(sock) = socket::accept(listener.as_fd()) {
                // Only a broker of our own uid; the newest one wins.
                if socket::peer_cred(sock.as_fd()).is_ok_and(|c| c.uid == me) {
                    let _ = rustix::io::ioctl_fionbio(&sock, false);
                    broker = Some(sock);
                    alone_since = None;
                }
            }
        }
        if broker_ready {
            let gone = match &broker {
                Some(b) => serve(b.as_fd(), &mut held, &mut buf).is_err(),
                None => false,
            };
            if gone {
                broker = None;
                alone_since = Some(Instant::now());
            }
        }
        if let Some(since) = alone_since {
            // Nothing to hand over once every owner has exited (and not at
            // once: a broker that restarts reconnects within moments), nor
            // to anyone once our socket is gone (the data directory was
            // removed): no broker can reach us again.
            let owners_live = held
                .values()
                .any(|h| h.owner.is_some_and(|i| !exited(h.fds[i].as_fd())));
            let reachable = dir.contains(SOCKET);
            if (!owners_live || !reachable) && since.elapsed() >= Duration::from_secs(1) {
                let _ = dir.remove(SOCKET);
                return Ok(());
            }
        }
    }
}

/// Handles one frame from the broker. `Err` once it is gone.
fn serve(
    broker: BorrowedFd<'_>,
    held: &mut BTreeMap<Vec<u8>, Held>,
    buf: &mut [u8],
) -> io::Result<()> {
    let got = match socket::recv_frame(broker, buf) {
        Ok(Some(g)) => g,
        Ok(None) => return Err(io::ErrorKind::UnexpectedEof.into()),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
        Err(e) => return Err(e),
    };
    let Some((op, owner, key, meta)) = decode(&buf[..got.len]) else {
        return Ok(());
    };
    match op {
        OP_PUT => {
            let owner = owner.filter(|&i| i < got.fds.len());
            held.insert(
                key.to_vec(),
                Held {
                    meta: meta.to_vec(),
                    fds: got.fds,
                    owner,
                },
            );
        }
        OP_DROP => {
            held.remove(key);
        }
        OP_LIST => {
            for (k, h) in held.iter() {
                let frame = encode(OP_ENTRY, k, &h.meta, h.owner)?;
                let fds: Vec<BorrowedFd<'_>> = h.fds.iter().map(AsFd::as_fd).collect();
                socket::send_frame(broker, &frame, &fds)?;
            }
            socket::send_frame(broker, &encode(OP_END, &[], &[], None)?, &[])?;
        }
        _ => {}
    }
    Ok(())
}

/// The broker's side of its keeper.
pub struct Keeper {
    sock: OwnedFd,
}

impl Keeper {
    /// Connects to the keeper of `dir`, starting one with `exe __keeper
    /// DIR` if none answers and `exe` is given. `None` if there is none to
    /// be had (the broker then runs without: its rings do not outlive it).
    pub fn attach(dir: &Dir, exe: Option<&Path>) -> Option<Keeper> {
        let path = dir.via_fd(SOCKET);
        if let Some(k) = Keeper::connect(&path) {
            return Some(k);
        }
        let exe = exe?;
        let spawned = std::process::Command::new(exe)
            .arg(crate::broker::KEEPER_SUBCOMMAND)
            .arg(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                eprintln!(
                    "ringbus: warning: cannot start the keeper ({}): rings will not outlive this broker: {e}",
                    exe.display()
                );
                return None;
            }
        };
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Some(k) = Keeper::connect(&path) {
                // The keeper outlives us on purpose; reap it in a thread so
                // that it leaves no zombie while we live.
                std::thread::spawn(move || child.wait());
                return Some(k);
            }
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("ringbus: warning: the keeper exited at once ({status})");
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        eprintln!("ringbus: warning: the keeper did not start: rings will not outlive this broker");
        None
    }

    fn connect(path: &Path) -> Option<Keeper> {
        let sock = socket::connect(path).ok()?;
        let me = rustix::process::geteuid().as_raw();
        if !socket::peer_cred(sock.as_fd()).is_ok_and(|c| c.uid == me) {
            return None;
        }
        socket::set_timeouts(sock.as_fd(), Some(Duration::from_secs(5))).ok()?;
        Some(Keeper { sock })
    }

    /// The keeper's process id.
    pub fn pid(&self) -> Option<u32> {
        socket::peer_cred(self.sock.as_fd())
            .ok()
            .map(|c| c.pid)
            .filter(|&p| p != 0)
    }

    /// Everything the keeper holds.
    ///
    /// # Errors
    /// The keeper does not answer.
    pub fn list(&self) -> io::Result<Vec<Entry>> {
        socket::send_frame(self.sock.as_fd(), &encode(OP_LIST, &[], &[], None)?, &[])?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; MAX_FRAME];
        loop {
            let Some(got) = socket::recv_frame(self.sock.as_fd(), &mut buf)? else {
                return Err(io::ErrorKind::UnexpectedEof.into());
            };
            match decode(&buf[..got.len]) {
                Some((OP_ENTRY, _, key, meta)) => out.push(Entry {
                    key: key.to_vec(),
                    meta: meta.to_vec(),
                    fds: got.fds,
                }),
                Some((OP_END, ..)) => return Ok(out),
                _ => return Err(io::Error::other("the keeper sent a malformed frame")),
            }
        }
    }

    /// Keeps `fds` (at most 8) under `key`, with `meta`, replacing what
    /// was there; `owner`: the index of a pidfd of the owning process.
    ///
    /// # Errors
    /// The keeper is gone, or more than 8 descriptors.
    pub fn put(
        &self,
        key: &[u8],
        meta: &[u8],
        fds: &[BorrowedFd<'_>],
        owner: Option<usize>,
    ) -> io::Result<()> {
        if fds.len() > MAX_FDS {
            return Err(io::Error::other(
                "too many descriptors for one keeper entry",
            ));
        }
        socket::send_frame(self.sock.as_fd(), &encode(OP_PUT, key, meta, owner)?, fds)
    }

    /// Lets go of what `key` holds.
    ///
    /// # Errors
    /// The keeper is gone.
    pub fn forget(&self, key: &[u8]) -> io::Result<()> {
        socket::send_frame(self.sock.as_fd(), &encode(OP_DROP, key, &[], None)?, &[])
    }
}

/// A pidfd of `pid`, for the keeper to know when an owner has exited.
pub(super) fn pidfd(pid: u32) -> Option<OwnedFd> {
    let p = rustix::process::Pid::from_raw(pid as i32)?;
    rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let f = encode(OP_PUT, b"r/7", b"meta", Some(2)).unwrap();
        assert_eq!(
            decode(&f),
            Some((OP_PUT, Some(2), &b"r/7"[..], &b"meta"[..]))
        );
        let f = encode(OP_DROP, b"k", &[], None).unwrap();
        assert_eq!(decode(&f), Some((OP_DROP, None, &b"k"[..], &[][..])));
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&[1, 2, 255, 255, 255, 255]), None);
        let mut long = f.clone();
        long.push(0);
        assert_eq!(decode(&long), None, "trailing bytes");
        assert!(encode(OP_PUT, &[0; 5000], &[], None).is_err());
    }
}
