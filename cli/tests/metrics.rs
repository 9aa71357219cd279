//! `ringbus serve --metrics`: scrapes over real HTTP against what was
//! published, hostile HTTP clients that must not stall the broker, and
//! bad addresses.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use ringbus::client::{Client, Mode, TopicConfig};

/// `ringbus serve --metrics 127.0.0.1:0` and the address it bound.
struct Served {
    child: Child,
    socket: std::path::PathBuf,
    metrics: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        kill9(&mut self.child);
    }
}

fn serve(dir: &TestDir) -> Served {
    let mut child = Command::new(BIN)
        .env_remove("RINGBUS_SOCKET")
        .args(["serve", "--metrics", "127.0.0.1:0", "--socket"])
        .arg(dir.socket())
        .arg("--data-dir")
        .arg(dir.data())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The broker says where it serves metrics; the rest of its stderr is
    // passed on (a closed pipe would fail its later messages).
    let (tx, rx) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("{line}");
            if let Some(rest) = line.strip_prefix("ringbus: metrics at http://") {
                let _ = tx.send(rest.trim_end_matches("/metrics").to_owned());
            }
        }
    });
    let metrics = rx
        .recv_timeout(PATIENCE)
        .expect("serve to print its metrics address")
        .parse()
        .unwrap();
    let socket = dir.socket();
    eventually("the broker to accept clients", || {
        Client::connect(&socket).ok()
    });
    Served {
        child,
        socket,
        metrics,
    }
}

/// A response: status code, headers (lower-case names) and body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

/// Sends `request` as is and reads the answer until the server closes.
fn http(addr: SocketAddr, request: &[u8]) -> Response {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn get(addr: SocketAddr, path: &str) -> Response {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The value of the sample `name{labels}` (or `name` without labels).
fn sample(body: &str, series: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
        .parse()
        .unwrap()
}

fn config() -> TopicConfig {
    TopicConfig {
        mode: Mode::Backpressure,
        capacity: 2048,
        max_message_size: 256,
        ..TopicConfig::default()
    }
}

#[test]
fn scrape_counts_what_was_published() {
    let dir = TestDir::new("metrics-scrape");
    let served = serve(&dir);
    let client = Client::connect(&served.socket).unwrap();
    let mut sub = subscribe(&client, "md.metrics");
    let mut publisher = client.publisher("md.metrics", config()).unwrap();
    for i in 0..1234u64 {
        publisher.publish(&[b'm'; 100], i).unwrap();
    }
    let mut buf = [0u8; 256];
    for _ in 0..234 {
        sub.recv(&mut buf).unwrap();
    }
    let ring = format!(
        "{{topic=\"md.metrics\",ring=\"{:x}\"}}",
        client.topics().unwrap()[0].rings[0].ring_id
    );

    let r = get(served.metrics, "/metrics");
    assert_eq!(r.status, 200);
    let ct = r.headers.iter().find(|(k, _)| k == "content-type").unwrap();
    assert!(ct.1.starts_with("application/openmetrics-text"), "{}", ct.1);
    let body = &r.body;
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert_eq!(
        sample(body, &format!("ringbus_ring_messages_total{ring}")),
        1234.0
    );
    assert_eq!(
        sample(body, &format!("ringbus_ring_message_size_bytes{ring}")),
        100.0
    );
    // Lag is what the subscriber has not released: the 1000 it has not
    // read, and up to a batch of those it read (a subscriber moves its
    // cursor every 64 messages at most, and whenever it catches up).
    let lag = sample(body, &format!("ringbus_ring_lag_messages{ring}"));
    assert!((1000.0..1064.0).contains(&lag), "lag {lag}");
    assert_eq!(
        sample(body, &format!("ringbus_ring_subscribers{ring}")),
        1.0
    );
    assert_eq!(
        sample(body, &format!("ringbus_ring_dropped_messages{ring}")),
        0.0
    );
    assert_eq!(
        sample(body, &format!("ringbus_ring_filtered_messages{ring}")),
        0.0
    );
    assert_eq!(sample(body, &format!("ringbus_ring_ended{ring}")), 0.0);
    assert!(sample(body, &format!("ringbus_ring_memory_bytes{ring}")) > 2048.0 * 100.0);
    let topic = "{topic=\"md.metrics\"}";
    assert_eq!(
        sample(body, &format!("ringbus_topic_publishers{topic}")),
        1.0
    );
    assert_eq!(
        sample(body, &format!("ringbus_topic_subscribers{topic}")),
        1.0
    );
    assert_eq!(sample(body, "ringbus_topics"), 1.0);
    assert_eq!(sample(body, "ringbus_rings"), 1.0);
    assert_eq!(sample(body, "ringbus_publishers"), 1.0);
    assert_eq!(sample(body, "ringbus_subscribers"), 1.0);
    // This test's connection and the exporter's own.
    assert_eq!(sample(body, "ringbus_clients"), 2.0);
    assert_eq!(sample(body, "ringbus_frames_rejected_total"), 0.0);
    assert_eq!(sample(body, "ringbus_permission_denied_total"), 0.0);
    assert!(sample(body, "ringbus_process_resident_memory_bytes") > 0.0);

    // A refused request counts; more messages count.
    assert!(client.open_topic("bad name", config()).is_err());
    for i in 0..66u64 {
        publisher.publish(&[b'm'; 100], i).unwrap();
    }
    let body = get(served.metrics, "/metrics?x=1").body;
    assert_eq!(sample(&body, "ringbus_frames_rejected_total"), 1.0);
    assert_eq!(
        sample(&body, &format!("ringbus_ring_messages_total{ring}")),
        1300.0
    );
    assert_eq!(
        sample(&body, &format!("ringbus_ring_lag_messages{ring}")),
        lag + 66.0
    );
}

#[test]
fn other_paths_and_methods_are_refused() {
    let dir = TestDir::new("metrics-paths");
    let served = serve(&dir);
    assert_eq!(get(served.metrics, "/").status, 404);
    assert_eq!(get(served.metrics, "/metrics/x").status, 404);
    let post =
        b"POST /metrics HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    assert_eq!(http(served.metrics, post).status, 405);
    assert_eq!(http(served.metrics, b"GARBAGE\r\n\r\n").status, 400);
    assert_eq!(get(served.metrics, "/metrics").status, 200);
}

/// A publish-subscribe round trip through the broker (new topic, new
/// rings: the broker must answer).
fn round_trip(socket: &std::path::Path, topic: &str) {
    let client = Client::connect(socket).unwrap();
    let mut sub = subscribe(&client, topic);
    let mut publisher = client.publisher(topic, config()).unwrap();
    publisher.publish(b"ping", 7).unwrap();
    let mut buf = [0u8; 256];
    let got = sub.recv_timeout(&mut buf, PATIENCE).unwrap();
    assert_eq!(&buf[..got.info.len], b"ping");
}

#[test]
fn hostile_http_clients_do_not_stall_the_broker() {
    let dir = TestDir::new("metrics-hostile");
    let served = serve(&dir);
    // Says nothing; says half a request; sends a line without end.
    let silent = TcpStream::connect(served.metrics).unwrap();
    let mut half = TcpStream::connect(served.metrics).unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut endless = TcpStream::connect(served.metrics).unwrap();
    endless.write_all(&[b'A'; 64 * 1024]).unwrap();
    // Asks and never reads.
    let mut deaf = TcpStream::connect(served.metrics).unwrap();
    deaf.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();

    // Meanwhile the broker serves clients, and the exporter scrapes.
    round_trip(&served.socket, "md.hostile.a");
    let scrape = get(served.metrics, "/metrics");
    assert_eq!(scrape.status, 200, "{}", scrape.body);
    round_trip(&served.socket, "md.hostile.b");

    // Each hanging client is answered (408, 400, 431) or closed in the end.
    for (what, mut s) in [("silent", silent), ("half", half), ("endless", endless)] {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut got = Vec::new();
        let r = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(
            r.is_ok() || matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::ConnectionReset),
            "{what}: the connection stayed open ({r:?})"
        );
        assert!(
            text.is_empty()
                || ["408", "400", "431"]
                    .iter()
                    .any(|c| text.starts_with(&format!("HTTP/1.1 {c}"))),
            "{what}: {text:?}"
        );
    }
    drop(deaf);
    round_trip(&served.socket, "md.hostile.c");
    // The exporter outlives its clients, and idle time.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(get(served.metrics, "/metrics").status, 200);

    // A crowd of silent clients: those past the limit of connections
    // served at once are closed at once; the broker does not notice.
    let crowd: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(served.metrics).unwrap())
        .collect();
    round_trip(&served.socket, "md.hostile.d");
    let mut unanswered = 0;
    for mut s in crowd {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text:?}"
        );
        unanswered += usize::from(text.is_empty());
    }
    assert!(unanswered >= 4, "{unanswered} closed without an answer");
}

#[test]
fn bad_addresses_are_clear_errors() {
    let dir = TestDir::new("metrics-bad");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().map(|a| (a, taken)).unwrap();
    for (addr, says) in [
        ("nonsense".to_owned(), "--metrics"),
        ("localhost".to_owned(), "--metrics"),
        ("127.0.0.1:99999".to_owned(), "--metrics"),
        (taken.0.to_string(), "cannot serve metrics on"),
        // Not an address of this host.
        ("192.0.2.1:9464".to_owned(), "cannot serve metrics on"),
    ] {
        let out = Command::new(BIN)
            .env_remove("RINGBUS_SOCKET")
            .args(["serve", "--metrics", &addr, "--socket"])
            .arg(dir.socket())
            .arg("--data-dir")
            .arg(dir.data())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{addr}: serve started");
        assert!(err.contains(says), "{addr}: {err}");
        assert!(
            !dir.socket().exists(),
            "{addr}: the broker bound its socket"
        );
    }
    drop(taken);
}
