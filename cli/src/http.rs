//! A minimal HTTP/1.1 server for `GET` endpoints (the metrics exporter's),
//! on plain threads.
//!
//! Written here rather than taken from a crate because what it must
//! survive is the whole of it: every request is untrusted, so reading one
//! has a deadline ([`HEAD_DEADLINE`]) and a size limit ([`MAX_HEAD`]),
//! writing an answer has a timeout, at most [`MAX_CONNECTIONS`] are served
//! at once (more are closed at once), and a failed `accept` (no
//! descriptors left...) is waited out, never the end of the server.
//! Every answer closes its connection.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a client has to send its request line and headers.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// How long writing an answer may block on a client that does not read.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request line and headers accepted.
pub const MAX_HEAD: usize = 8 * 1024;
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;

/// What the handler gets of a `GET` or `HEAD` request.
#[derive(Debug)]
pub struct Request<'a> {
    /// The target without its query string.
    pub path: &'a str,
}

/// What the handler answers.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type` of `body`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
    /// An answer to `HEAD`: the body's length is sent, not the body.
    omit_body: bool,
}

impl Response {
    /// A plain-text answer.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            omit_body: false,
        }
    }

    /// An answer of another content type.
    pub fn with_content_type(self, content_type: &'static str) -> Response {
        Response {
            content_type,
            ..self
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Accepts connections on `listener` for ever, each on a thread of its
/// own, answering with `handler`.
pub fn serve<H>(listener: TcpListener, handler: H)
where
    H: Fn(&Request<'_>) -> Response + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                // Out of descriptors or memory, or an aborted handshake:
                // wait a little for it to pass.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        // Relaxed: a count of threads, no data hangs on it.
        if live.fetch_add(1, Ordering::Relaxed) >= MAX_CONNECTIONS {
            live.fetch_sub(1, Ordering::Relaxed);
            continue; // dropped: closed
        }
        let (handler, live2) = (Arc::clone(&handler), Arc::clone(&live));
        let spawned = std::thread::Builder::new()
            .name("ringbus-http".into())
            .spawn(move || {
                connection(stream, &*handler);
                live2.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Reads the request head (up to the blank line), answers, closes.
fn connection(mut s: TcpStream, handler: &dyn Fn(&Request<'_>) -> Response) {
    if s.set_write_timeout(Some(WRITE_TIMEOUT)).is_err() {
        return;
    }
    let response = match read_head(&mut s) {
        Ok(head) => answer(&head, handler),
        Err(Some(r)) => r,
        Err(None) => return, // the client left
    };
    let _ = write_response(&mut s, &response);
    let _ = s.shutdown(Shutdown::Write);
    // Read what the client still sends (a body, more requests) for a
    // moment: closing with unread data would reset the connection and
    // could lose the answer on its way.
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    while left > 0 {
        match s.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// The request line and headers, or the answer to give instead (`None`:
/// the client closed before a request).
fn read_head(s: &mut TcpStream) -> Result<Vec<u8>, Option<Response>> {
    let deadline = Instant::now() + HEAD_DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = find_blank_line(&buf) {
            buf.truncate(end);
            return Ok(buf);
        }
        if buf.len() >= MAX_HEAD {
            return Err(Some(Response::text(431, "request head too large\n")));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || s.set_read_timeout(Some(left)).is_err() {
            return Err(Some(Response::text(408, "request took too long\n")));
        }
        let room = (MAX_HEAD - buf.len()).min(chunk.len());
        match s.read(&mut chunk[..room]) {
            Ok(0) if buf.is_empty() => return Err(None),
            Ok(0) => return Err(Some(Response::text(400, "incomplete request\n"))),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(Some(Response::text(408, "request took too long\n")));
            }
            Err(_) => return Err(None),
        }
    }
}

/// Where the head ends: at the first blank line (CRLF CRLF, or bare LFs).
fn find_blank_line(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n");
    let lf = buf.windows(2).position(|w| w == b"\n\n");
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn answer(head: &[u8], handler: &dyn Fn(&Request<'_>) -> Response) -> Response {
    let bad = || Response::text(400, "malformed request\n");
    let Ok(head) = std::str::from_utf8(head) else {
        return bad();
    };
    let line = head.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return bad();
    };
    let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic());
    if !token(method) || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return bad();
    }
    let path = target.split('?').next().unwrap_or_default();
    if method != "GET" && method != "HEAD" {
        return Response::text(405, "only GET and HEAD are served\n");
    }
    let mut r = handler(&Request { path });
    r.omit_body = method == "HEAD";
    r
}

fn write_response(s: &mut TcpStream, r: &Response) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    s.write_all(head.as_bytes())?;
    if !r.omit_body {
        s.write_all(r.body.as_bytes())?;
    }
    s.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: &Request<'_>) -> Response {
        Response::text(200, "hi")
    }

    #[test]
    fn request_lines_are_checked() {
        assert_eq!(answer(b"GET /metrics HTTP/1.1\r\nHost: x", &ok).status, 200);
        assert_eq!(answer(b"GET /m?x=1 HTTP/1.0", &ok).status, 200);
        assert!(answer(b"HEAD / HTTP/1.1", &ok).omit_body);
        assert_eq!(answer(b"POST / HTTP/1.1", &ok).status, 405);
        for bad in [
            &b""[..],
            b"GARBAGE",
            b"GET /",
            b"GET / HTTP/1.1 extra",
            b"GET metrics HTTP/1.1",
            b"GET / HTTP/2",
            b"G\xffT / HTTP/1.1",
            b"G-T / HTTP/1.1",
        ] {
            assert_eq!(answer(bad, &ok).status, 400, "{bad:?}");
        }
    }

    #[test]
    fn heads_end_at_a_blank_line() {
        assert_eq!(find_blank_line(b"GET / HTTP/1.1\r\n\r\nbody"), Some(14));
        assert_eq!(find_blank_line(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(find_blank_line(b"GET / HTTP/1.1\r\n"), None);
    }
}
