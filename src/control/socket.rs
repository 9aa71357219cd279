//! `SOCK_SEQPACKET` Unix sockets: listen, connect, send and receive one
//! frame with descriptors (`SCM_RIGHTS`), and the peer's credentials
//! (`SO_PEERCRED`).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::net::{
    self, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags,
    SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType,
};

use super::frame::MAX_FDS;

/// Credentials of the process at the other end of a connection, as the
/// kernel recorded them when it connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id (in the broker's pid namespace).
    pub pid: u32,
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
}

/// One received frame.
#[derive(Debug)]
pub struct Received {
    /// Bytes of the frame that fit in the buffer.
    pub len: usize,
    /// The frame was larger than the buffer (its tail is lost).
    pub truncated: bool,
    /// Descriptors that came with it (closed when dropped).
    pub fds: Vec<OwnedFd>,
    /// More descriptors came than the buffer holds (the rest were closed by
    /// the kernel).
    pub fds_truncated: bool,
}

/// Creates a listening `SOCK_SEQPACKET` socket bound to `path`
/// (non-blocking, close-on-exec).
///
/// # Errors
/// The socket cannot be created or bound (e.g. the path exists).
pub fn listen(path: &Path, backlog: i32) -> io::Result<OwnedFd> {
    let fd = net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    net::bind(&fd, &addr)?;
    net::listen(&fd, backlog)?;
    Ok(fd)
}

/// Accepts one connection (non-blocking, close-on-exec).
///
/// # Errors
/// `WouldBlock` when none is pending, or the accept error.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    Ok(net::accept_with(
        listener,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
    )?)
}

/// Connects to the broker socket at `path` (blocking, close-on-exec).
///
/// # Errors
/// `NotFound` / `ConnectionRefused` when no broker listens there.
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let fd = net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    net::connect(&fd, &addr)?;
    Ok(fd)
}

/// Bounds how long a blocking receive or send on `fd` waits.
///
/// # Errors
/// The socket option cannot be set.
pub fn set_timeouts(fd: BorrowedFd<'_>, timeout: Option<Duration>) -> io::Result<()> {
    net::sockopt::set_socket_timeout(fd, net::sockopt::Timeout::Recv, timeout)?;
    net::sockopt::set_socket_timeout(fd, net::sockopt::Timeout::Send, timeout)?;
    Ok(())
}

/// The credentials of the peer of a connected socket.
///
/// # Errors
/// The socket is not a connected Unix socket.
pub fn peer_cred(fd: BorrowedFd<'_>) -> io::Result<PeerCred> {
    let c = net::sockopt::socket_peercred(fd)?;
    Ok(PeerCred {
        pid: c.pid.as_raw_nonzero().get() as u32,
        uid: c.uid.as_raw(),
        gid: c.gid.as_raw(),
    })
}

/// Sends one frame with `fds` attached. Never raises `SIGPIPE`.
///
/// # Errors
/// The send error (`WouldBlock` on a full non-blocking socket, `BrokenPipe`
/// when the peer is gone), or `InvalidInput` for more than
/// [`MAX_FDS`] descriptors.
pub fn send_frame(sock: BorrowedFd<'_>, frame: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors for one frame",
        ));
    }
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("ancillary buffer too small"));
    }
    let sent = net::sendmsg(
        sock,
        &[IoSlice::new(frame)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    if sent != frame.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "frame only partly sent",
        ));
    }
    Ok(())
}

/// Receives one frame into `buf`. `Ok(None)` means the peer closed the
/// connection. Received descriptors are close-on-exec.
///
/// # Errors
/// The receive error (`WouldBlock` on an empty non-blocking socket).
pub fn recv_frame(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<Received>> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = net::recvmsg(
        sock,
        &mut [IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = m {
            fds.extend(rights);
        }
    }
    // A SEQPACKET read of 0 bytes without descriptors is end-of-file (an
    // empty frame cannot be a valid frame anyway).
    if msg.bytes == 0 && fds.is_empty() && !msg.flags.contains(ReturnFlags::TRUNC) {
        return Ok(None);
    }
    Ok(Some(Received {
        len: msg.bytes.min(buf.len()),
        truncated: msg.flags.contains(ReturnFlags::TRUNC) || msg.bytes > buf.len(),
        fds,
        fds_truncated: msg.flags.contains(ReturnFlags::CTRUNC),
    }))
}

/// A connected pair, for tests.
///
/// # Errors
/// `socketpair` fails.
pub fn pair() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Borrows a list of owned descriptors.
pub fn borrow_all(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(AsFd::as_fd).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[test]
    fn frames_and_fds_cross() {
        let (a, b) = pair().unwrap();
        let mut f = tempfile_in_tmp();
        f.write_all(b"hello").unwrap();
        send_frame(a.as_fd(), b"frame", &[f.as_fd()]).unwrap();
        let mut buf = [0u8; 64];
        let r = recv_frame(b.as_fd(), &mut buf).unwrap().unwrap();
        assert_eq!(&buf[..r.len], b"frame");
        assert!(!r.truncated);
        assert_eq!(r.fds.len(), 1);
        let mut g = std::fs::File::from(r.fds.into_iter().next().unwrap());
        g.rewind().unwrap();
        let mut s = String::new();
        g.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");

        // Oversized frame is reported, not silently cut.
        send_frame(a.as_fd(), &[1u8; 100], &[]).unwrap();
        let mut small = [0u8; 10];
        let r = recv_frame(b.as_fd(), &mut small).unwrap().unwrap();
        assert!(r.truncated);

        let cred = peer_cred(b.as_fd()).unwrap();
        assert_eq!(cred.pid, std::process::id());
        assert_eq!(cred.uid, rustix::process::getuid().as_raw());

        drop(a);
        assert!(recv_frame(b.as_fd(), &mut buf).unwrap().is_none());
    }

    fn tempfile_in_tmp() -> std::fs::File {
        let path = std::env::temp_dir().join(format!(
            "ringbus-socket-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }
}
