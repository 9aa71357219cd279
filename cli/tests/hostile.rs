//! Hostile local users. The broker runs as root; the attacker is a process
//! of uid 65534 that the ACL allows only to subscribe (or, where a test
//! says, to publish) on `shared.>`. For each attack: the victims (a
//! back-pressure publisher, and subscribers reading by copy and zero-copy
//! in another process) lose nothing, see no view rewritten, are neither
//! killed nor stalled, and the broker stays up and answers.
//!
//! The attacker is this test binary run again as uid 65534 with
//! [`ROLE`] set (`harness = false`: `main` dispatches on it). It prints
//! what it managed (`BREACH ...`) and what it was refused (`REFUSED ...`)
//! on stdout, one line each. Tests that need another uid need root: they
//! fail with a message saying so otherwise (CI runs as root).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use libtest_mimic::{Arguments, Trial};
use ringbus::client::{Client, Mode, SubscribeOptions, TopicConfig};
use ringbus::control::frame::{Reply, Request};
use ringbus::control::{Connection, ConnectionError, ErrorCode};
use ringbus::ring::{RecvError, Start};

/// The attack a child runs (this binary, run as uid 65534).
const ROLE: &str = "RINGBUS_HOSTILE_ROLE";
/// The broker's socket, for the child.
const SOCKET: &str = "RINGBUS_HOSTILE_SOCKET";
const NOBODY: u32 = 65534;

fn need_root() {
    assert!(
        is_root(),
        "this test runs an attacker as uid 65534 and so needs root: run the tests as root (CI does)"
    );
}

fn bp(capacity: u32) -> TopicConfig {
    TopicConfig {
        max_message_size: 64,
        capacity,
        mode: Mode::Backpressure,
        max_subscribers: 8,
    }
}

/// A directory every user can reach, holding a copy of this test binary
/// the attacker runs (the checkout and `target/` may sit under a 0700
/// directory).
struct Arena {
    dir: TestDir,
    bin: PathBuf,
}

impl Arena {
    fn new(name: &str, config: &str) -> (Arena, BrokerProc) {
        use std::os::unix::fs::PermissionsExt;
        let base = ["/tmp", "/dev/shm", "/var/tmp"]
            .into_iter()
            .map(Path::new)
            .find(|b| {
                b.ancestors().all(|a| {
                    std::fs::metadata(a)
                        .is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
                })
            })
            .expect("no directory that every user may enter");
        let dir = TestDir::new_in(base, name);
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.path("hostile-test");
        std::fs::copy(std::env::current_exe().unwrap(), &bin).unwrap();
        let conf = dir.path("broker.toml");
        std::fs::write(&conf, config).unwrap();
        let broker = BrokerProc::start(&dir, Some(&conf));
        (Arena { dir, bin }, broker)
    }

    /// The attacker running `role` as uid 65534, its stdout piped.
    fn attacker(&self, role: &str, env: &[(&str, String)]) -> std::process::Child {
        let mut c = Command::new(&self.bin);
        c.env(ROLE, role)
            .env(SOCKET, self.dir.socket())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .uid(NOBODY)
            .gid(NOBODY);
        c.spawn().unwrap()
    }
}

/// The lines an attacker printed, once it exited successfully.
fn report(child: std::process::Child) -> Vec<String> {
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "attacker failed: {}\n{text}",
        out.status
    );
    text.lines().map(str::to_owned).collect()
}

fn breaches(lines: &[String]) -> Vec<&String> {
    lines.iter().filter(|l| l.starts_with("BREACH")).collect()
}

/// A victim subscriber in a process of its own (`ringbus sub --json`), so
/// that an attack that could kill processes mapping a ring would show.
struct VictimSub {
    child: KillOnDrop,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl VictimSub {
    fn start(socket: &Path, topic: &str) -> VictimSub {
        let mut child = ringbus(socket)
            .args(["sub", topic, "--from", "earliest", "--json", "--until-end"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        VictimSub {
            child: KillOnDrop(child),
            lines,
        }
    }

    /// Reads `n` messages and checks each is the generated message of its
    /// sequence number, contiguous from 0.
    fn expect(&mut self, n: u64) {
        for i in 0..n {
            let line = self
                .lines
                .next()
                .unwrap_or_else(|| panic!("victim subscriber died after {i} messages"))
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(v["seq"], i, "victim lost or misread a message: {line}");
            // Payloads are printed as text when they are UTF-8, else hex.
            let want = generated(i, 64);
            let ok = match (v["text"].as_str(), v["hex"].as_str()) {
                (Some(t), _) => t.as_bytes() == want,
                (_, Some(h)) => h == hex(&want),
                _ => false,
            };
            assert!(ok, "victim misread message {i}: {line}");
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The victims' side of an attack on `topic`: a back-pressure publisher
/// (here), a subscriber by copy in its own process and a zero-copy one
/// here, which checks that no view it holds changes. Publishes `n`
/// messages while `attack` runs, then checks everything arrived intact.
fn victims_survive(socket: &Path, topic: &str, n: u64, attack: impl FnOnce()) {
    let client = Client::connect(socket).unwrap();
    let mut publisher = client.publisher(topic, bp(64)).unwrap();
    let mut copy = VictimSub::start(socket, topic);
    let mut zc = client
        .subscriber(
            topic,
            SubscribeOptions {
                start: Start::Earliest,
                ..SubscribeOptions::default()
            },
        )
        .unwrap();
    eventually("the victim subscriber's port", || {
        let t = client.topics().ok()?;
        (t.iter().find(|t| t.name == topic)?.rings[0].cursors >= 2).then_some(())
    });
    attack();
    // Read as it comes: a subscriber blocked on a full pipe would hold the
    // publisher back.
    let reader = std::thread::spawn(move || {
        copy.expect(n);
        copy
    });
    let writer = std::thread::spawn(move || {
        for i in 0..n {
            publisher
                .publish_timeout(&generated(i, 64), i, PATIENCE)
                .unwrap_or_else(|e| panic!("victim publisher stalled at message {i}: {e}"));
        }
        publisher
    });
    for i in 0..n {
        let (_, m) = zc
            .recv_ref_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("zero-copy victim stopped at {i}: {e}"));
        let seen = m.to_vec();
        assert_eq!(seen, generated(i, 64), "zero-copy victim misread {i}");
        assert_eq!(m.info().seq, i);
        // Held a moment: nobody may rewrite it meanwhile.
        std::hint::black_box(&seen);
        assert_eq!(&m[..], &seen[..], "a view was rewritten while held");
    }
    let mut copy = reader.join().unwrap();
    drop(writer.join().unwrap());
    assert_eq!(
        zc.recv_ref_timeout(PATIENCE).err(),
        Some(RecvError::EndOfStream)
    );
    // The copy victim saw the ring end and exited by itself, cleanly, with
    // no message after the last one published.
    for line in copy.lines.by_ref() {
        let line = line.unwrap();
        assert!(!line.contains("\"seq\""), "a message past the last: {line}");
    }
    let status = copy.child.0.wait().unwrap();
    assert!(status.success(), "the copy victim exited with {status}");
}

/// The broker is up and answers a good client.
fn broker_answers(broker: &mut BrokerProc, socket: &Path) {
    assert!(
        broker.child.try_wait().unwrap().is_none(),
        "the broker died"
    );
    let c = Client::connect(socket).unwrap();
    c.topics().unwrap();
}

// ---------------------------------------------------------------------------
// The attacker's side.

fn connect() -> Connection {
    let socket = std::env::var_os(SOCKET).expect("socket");
    Connection::connect(Path::new(&socket), "attacker").unwrap()
}

fn subscribe(c: &mut Connection, topic: &str, held: Vec<(u64, u64)>) -> (Reply, Vec<OwnedFd>) {
    c.call(&Request::Subscribe {
        topic: topic.into(),
        start: Start::Earliest,
        held,
    })
    .unwrap()
}

/// Tries to resize, write and map writable every descriptor a subscription
/// hands out, and to reopen each writable through `/proc/self/fd`.
fn attack_segments() {
    use std::os::unix::fs::FileExt;
    let mut c = connect();
    let (reply, fds) = subscribe(&mut c, "shared.feed", vec![]);
    let Reply::Subscribed { rings, .. } = &reply else {
        panic!("{reply:?}")
    };
    assert_eq!(rings.len(), 1, "{reply:?}");
    // Topic segment, data, lobby, port.
    assert_eq!(fds.len(), 4);
    let names = ["topic segment", "data", "lobby", "port"];
    for (fd, name) in fds.iter().zip(names) {
        let f = std::fs::File::from(fd.try_clone().unwrap());
        for len in [0, 1 << 30] {
            match f.set_len(len) {
                Ok(()) => println!("BREACH {name}: resized to {len}"),
                Err(_) => println!("REFUSED {name}: resize"),
            }
        }
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(w) if name == "data" || name == "topic segment" => {
                match w.write_at(b"scribble", 4096) {
                    Ok(_) => println!("BREACH {name}: written through a reopened descriptor"),
                    Err(_) => println!("REFUSED {name}: write"),
                }
            }
            Ok(_) => {}
            Err(_) => println!("REFUSED {name}: reopen"),
        }
        if name == "data" || name == "topic segment" {
            let len = f.metadata().unwrap().len() as usize;
            // SAFETY (of the test): a fresh mapping nobody else uses; only
            // whether the kernel grants it matters.
            let m = unsafe {
                rustix::mm::mmap(
                    std::ptr::null_mut(),
                    len,
                    rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
                    rustix::mm::MapFlags::SHARED,
                    fd.as_fd(),
                    0,
                )
            };
            match m {
                Ok(_) => println!("BREACH {name}: mapped writable"),
                Err(_) => println!("REFUSED {name}: writable mapping"),
            }
        }
    }
    // Its own port is its to scribble: cursor far ahead, free, garbage;
    // sleeping, requests and acknowledgements set at random. This can
    // mislead the publisher only about this subscriber.
    let port = &fds[3];
    let len = std::fs::File::from(port.try_clone().unwrap())
        .metadata()
        .unwrap()
        .len() as usize;
    // SAFETY (of the test): the port is ours, mapped shared as the broker
    // meant; we write words the publisher reads atomically.
    let p = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::SHARED,
            port.as_fd(),
            0,
        )
    }
    .unwrap()
    .cast::<std::sync::atomic::AtomicU64>();
    let words = 512 / 8;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let until = std::time::Instant::now()
        + Duration::from_millis(
            std::env::var("RINGBUS_HOSTILE_MS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(1500),
        );
    while std::time::Instant::now() < until {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Past the identity line; the cursor (first word of line 1) gets
        // values ahead of anything the publisher wrote, or "free".
        let i = 16 + (x % (words - 16));
        let v = if i == 16 {
            [u64::MAX, u64::MAX / 2, 1 << 62][(x >> 8) as usize % 3]
        } else {
            x
        };
        // SAFETY (of the test): in the mapping, 8-byte aligned.
        unsafe { (*p.add(i as usize)).store(v, std::sync::atomic::Ordering::Relaxed) };
    }
    println!("DONE");
}

/// Opens connections without a hello, subscribes to new topics and takes
/// leases, until refused.
fn attack_quotas() {
    use ringbus::control::socket as sock;
    let socket = PathBuf::from(std::env::var_os(SOCKET).unwrap());
    // The error code of the frame waiting on `s`, if one comes within
    // `wait`; `Some(None)` for a connection closed without one.
    let code = |s: &OwnedFd, wait: Duration| -> Option<Option<ErrorCode>> {
        sock::set_timeouts(s.as_fd(), Some(wait)).unwrap();
        let mut buf = [0u8; 512];
        match sock::recv_frame(s.as_fd(), &mut buf) {
            Ok(Some(g)) => match ringbus::control::codec::decode_reply(&buf[..g.len]) {
                Ok(Reply::Error { code, .. }) => Some(Some(code)),
                other => panic!("{other:?}"),
            },
            Ok(None) => Some(None),
            Err(_) => None,
        }
    };
    let all: Vec<OwnedFd> = (0..20).map(|_| sock::connect(&socket).unwrap()).collect();
    let mut silent = Vec::new();
    let mut refused = 0;
    for s in all {
        // A refused connection gets its error at once, and is closed.
        match code(&s, Duration::from_millis(100)) {
            Some(Some(ErrorCode::LimitExceeded)) => refused += 1,
            _ => silent.push(s),
        }
    }
    println!("CONNECTIONS kept {} refused {refused}", silent.len());
    // Silent connections are closed after the hello timeout.
    let closed = silent
        .iter()
        .filter(|s| code(s, PATIENCE) == Some(Some(ErrorCode::HelloRequired)))
        .count();
    drop(silent);
    println!("CLOSED {closed}");

    let mut c = connect();
    let mut made = 0;
    let mut why = String::new();
    for i in 0..10 {
        match c.call(&Request::Subscribe {
            topic: format!("shared.t{i}"),
            start: Start::Latest,
            held: vec![],
        }) {
            Ok(_) => made += 1,
            Err(ConnectionError::Refused { code, message }) => {
                assert_eq!(code, ErrorCode::LimitExceeded, "{message}");
                why = message;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    println!("TOPICS {made} {why}");
    // Leases on one connection, on topics that exist.
    let mut leases = 0;
    let mut why = String::new();
    for _ in 0..40 {
        match c.call(&Request::Subscribe {
            topic: "shared.t0".into(),
            start: Start::Latest,
            held: vec![],
        }) {
            Ok(_) => leases += 1,
            Err(ConnectionError::Refused { code, message }) => {
                assert_eq!(code, ErrorCode::LimitExceeded, "{message}");
                why = message;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    println!("LEASES {leases} {why}");
}

/// Publishes rings until refused: too many, then too large.
fn attack_rings() {
    let socket = PathBuf::from(std::env::var_os(SOCKET).unwrap());
    let client = Client::connect(&socket).unwrap();
    let mut held = Vec::new();
    let mut why = String::new();
    for i in 0..10 {
        match client.publisher(&format!("shared.r{i}"), bp(64)) {
            Ok(p) => held.push(p),
            Err(e) => {
                why = e.to_string();
                break;
            }
        }
    }
    println!("RINGS {} {why}", held.len());
    drop(held);
    let big = TopicConfig {
        max_message_size: 1 << 20,
        capacity: 64,
        mode: Mode::Overwrite,
        max_subscribers: 4,
    };
    match client.publisher("shared.big", big) {
        Ok(_) => println!("BREACH a 64 MiB ring"),
        Err(e) => println!("REFUSED big ring: {e}"),
    }
}

/// Claims the port a victim holds, by guessing ids, then leaves.
fn attack_ports() {
    let ring: u64 = std::env::var("RINGBUS_HOSTILE_RING")
        .unwrap()
        .parse()
        .unwrap();
    let mut c = connect();
    let held = (0..16).map(|p| (ring, p)).collect();
    let (reply, fds) = subscribe(&mut c, "shared.feed", held);
    let Reply::Subscribed { rings, .. } = &reply else {
        panic!("{reply:?}")
    };
    // The ring it claimed to hold is not handed to it, nor anyone's port.
    println!(
        "LISTED {} DESCRIPTORS {}",
        rings.len(),
        fds.len().saturating_sub(1)
    );
    let Reply::Subscribed { lease, .. } = reply else {
        unreachable!()
    };
    c.call(&Request::Detach { lease }).unwrap();
    println!("DONE");
}

// ---------------------------------------------------------------------------
// The tests.

fn acl(extra: &str) -> String {
    format!("[[acl]]\ntopic = \"shared.>\"\nsubscribe = {{ uids = [{NOBODY}] }}\n{extra}")
}

fn a_subscriber_cannot_resize_write_or_map_writable_what_it_is_handed() {
    need_root();
    let (arena, mut broker) = Arena::new("hostile-seg", &acl(""));
    let socket = arena.dir.socket();
    let mut lines = Vec::new();
    victims_survive(&socket, "shared.feed", 20_000, || {
        let child = arena.attacker("segments", &[]);
        lines = report(child);
    });
    assert!(breaches(&lines).is_empty(), "{lines:#?}");
    assert!(lines.iter().any(|l| l == "DONE"), "{lines:#?}");
    assert!(
        lines.iter().filter(|l| l.starts_with("REFUSED")).count() >= 12,
        "{lines:#?}"
    );
    broker_answers(&mut broker, &socket);
}

fn a_subscriber_scribbling_its_port_harms_nobody_else() {
    need_root();
    let (arena, mut broker) = Arena::new("hostile-port", &acl(""));
    let socket = arena.dir.socket();
    // The attack runs while the victims publish and read.
    let mut child = None;
    victims_survive(&socket, "shared.feed", 50_000, || {
        child = Some(arena.attacker("segments", &[("RINGBUS_HOSTILE_MS", "4000".into())]));
    });
    let lines = report(child.unwrap());
    assert!(breaches(&lines).is_empty(), "{lines:#?}");
    broker_answers(&mut broker, &socket);
}

fn a_subscriber_cannot_take_another_subscribers_port() {
    need_root();
    let (arena, mut broker) = Arena::new("hostile-claim", &acl(""));
    let socket = arena.dir.socket();
    let client = Client::connect(&socket).unwrap();
    let mut lines = Vec::new();
    victims_survive(&socket, "shared.feed", 5_000, || {
        let ring = client.topics().unwrap()[0].rings[0].ring_id;
        let child = arena.attacker("ports", &[("RINGBUS_HOSTILE_RING", ring.to_string())]);
        lines = report(child);
    });
    assert!(
        lines.iter().any(|l| l == "LISTED 0 DESCRIPTORS 0"),
        "{lines:#?}"
    );
    broker_answers(&mut broker, &socket);
}

fn one_uid_cannot_take_every_connection_topic_or_lease() {
    need_root();
    let config = format!(
        "[limits]\nmax_clients_per_uid = 8\nhello_timeout_ms = 1000\nmax_topics_per_uid = 4\nmax_leases_per_client = 16\n{}",
        acl("")
    );
    let (arena, mut broker) = Arena::new("hostile-quota", &config);
    let socket = arena.dir.socket();
    let lines = report(arena.attacker("quotas", &[]));
    let find = |p: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(p))
            .unwrap_or_else(|| panic!("no {p} in {lines:#?}"))
            .clone()
    };
    assert_eq!(find("CONNECTIONS"), "CONNECTIONS kept 8 refused 12");
    assert_eq!(find("CLOSED"), "CLOSED 8");
    let topics = find("TOPICS");
    assert!(topics.starts_with("TOPICS 4 "), "{topics}");
    assert!(topics.contains("limits.max_topics_per_uid"), "{topics}");
    let leases = find("LEASES");
    assert!(leases.starts_with("LEASES 12 "), "4 + 12 = 16: {leases}");
    assert!(leases.contains("limits.max_leases_per_client"), "{leases}");
    // Others are not limited by what uid 65534 took.
    let c = Client::connect(&socket).unwrap();
    for i in 0..10 {
        c.publisher(&format!("mine.{i}"), bp(64)).unwrap();
    }
    broker_answers(&mut broker, &socket);
}

fn one_uid_cannot_take_every_ring_or_all_memory() {
    need_root();
    let config = format!(
        "[limits]\nmax_rings_per_uid = 3\nmax_ring_bytes_per_uid = 16777216\n[[acl]]\ntopic = \"shared.>\"\npublish = {{ uids = [{NOBODY}] }}\n"
    );
    let (arena, mut broker) = Arena::new("hostile-rings", &config);
    let socket = arena.dir.socket();
    let lines = report(arena.attacker("rings", &[]));
    let rings = lines.iter().find(|l| l.starts_with("RINGS")).unwrap();
    assert!(rings.starts_with("RINGS 3 "), "{lines:#?}");
    assert!(rings.contains("limits.max_rings_per_uid"), "{rings}");
    assert!(breaches(&lines).is_empty(), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("REFUSED big ring") && l.contains("max_ring_bytes_per_uid")),
        "{lines:#?}"
    );
    broker_answers(&mut broker, &socket);
}

/// A directory of uid 65534 (or open to everyone) where the broker's go.
fn planted(dir: &TestDir, name: &str, mode: u32, owner: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.path(name);
    std::fs::create_dir(&p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    std::os::unix::fs::chown(&p, Some(owner), Some(owner)).unwrap();
    p
}

fn serve(socket: &Path, data: &Path) -> std::process::Output {
    Command::new(BIN)
        .arg("serve")
        .arg("--socket")
        .arg(socket)
        .arg("--data-dir")
        .arg(data)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn planted_directories_and_links_are_refused() {
    need_root();
    let dir = TestDir::new("hostile-dirs");
    let victim = dir.path("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let good_data = dir.path("data");
    let check = |socket: &Path, data: &Path, what: &str| {
        let out = serve(socket, data);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "the broker started with {what}: {err}"
        );
        assert!(err.contains("refusing"), "{what}: {err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "{what}");
        err.into_owned()
    };

    // Another user's socket directory, with the lock file a link to ours.
    let theirs = planted(&dir, "theirs", 0o777, NOBODY);
    std::os::unix::fs::symlink(&victim, theirs.join("ringbus.sock.lock")).unwrap();
    let err = check(
        &theirs.join("ringbus.sock"),
        &good_data,
        "another user's directory",
    );
    assert!(err.contains("belongs to uid 65534"), "{err}");

    // Our own, but everyone may write it.
    let open = planted(&dir, "open", 0o777, 0);
    let err = check(
        &open.join("ringbus.sock"),
        &good_data,
        "a world-writable directory",
    );
    assert!(err.contains("lets others write it"), "{err}");

    // Ours, private, but the lock file is a link.
    let linked = planted(&dir, "linked", 0o700, 0);
    std::os::unix::fs::symlink(&victim, linked.join("ringbus.sock.lock")).unwrap();
    let err = check(
        &linked.join("ringbus.sock"),
        &good_data,
        "a linked lock file",
    );
    assert!(err.contains("symbolic link"), "{err}");

    // The data directory: another user's, then a link to ours.
    let sock_dir = planted(&dir, "sock", 0o700, 0);
    let their_data = planted(&dir, "their-data", 0o777, NOBODY);
    std::os::unix::fs::symlink(&victim, their_data.join(".broker.lock")).unwrap();
    check(
        &sock_dir.join("s.sock"),
        &their_data,
        "another user's data directory",
    );
    let link = dir.path("data-link");
    std::fs::create_dir(&good_data).unwrap();
    std::os::unix::fs::symlink(&good_data, &link).unwrap();
    let err = check(&sock_dir.join("s.sock"), &link, "a linked data directory");
    assert!(err.contains("symbolic link"), "{err}");

    // The default socket path is this user's: a client does not talk to a
    // broker someone else planted there.
    let runtime = planted(&dir, "runtime", 0o755, NOBODY);
    let listener = ringbus::control::socket::listen(&runtime.join("ringbus.sock"), 4).unwrap();
    let out = Command::new(BIN)
        .arg("stats")
        .env_remove("RINGBUS_SOCKET")
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("not talking to the broker"), "{err}");
    assert!(err.contains("belongs to uid 65534"), "{err}");
    // It hung up without saying anything.
    let s = ringbus::control::socket::accept(listener.as_fd()).unwrap();
    ringbus::control::socket::set_timeouts(s.as_fd(), Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 256];
    assert!(matches!(
        ringbus::control::socket::recv_frame(s.as_fd(), &mut buf),
        Ok(None)
    ));

    // And the good directories work.
    let _b = BrokerProc::start(&dir, None);
    let _ = std::io::stdout().flush();
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        match role.as_str() {
            "segments" => attack_segments(),
            "quotas" => attack_quotas(),
            "rings" => attack_rings(),
            "ports" => attack_ports(),
            other => panic!("unknown role {other}"),
        }
        return;
    }
    let args = Arguments::from_args();
    let tests: Vec<(&str, fn())> = vec![
        (
            "a_subscriber_cannot_resize_write_or_map_writable_what_it_is_handed",
            a_subscriber_cannot_resize_write_or_map_writable_what_it_is_handed,
        ),
        (
            "a_subscriber_scribbling_its_port_harms_nobody_else",
            a_subscriber_scribbling_its_port_harms_nobody_else,
        ),
        (
            "a_subscriber_cannot_take_another_subscribers_port",
            a_subscriber_cannot_take_another_subscribers_port,
        ),
        (
            "one_uid_cannot_take_every_connection_topic_or_lease",
            one_uid_cannot_take_every_connection_topic_or_lease,
        ),
        (
            "one_uid_cannot_take_every_ring_or_all_memory",
            one_uid_cannot_take_every_ring_or_all_memory,
        ),
        (
            "planted_directories_and_links_are_refused",
            planted_directories_and_links_are_refused,
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, f)| {
            Trial::test(name, move || {
                std::panic::catch_unwind(f).map_err(|e| {
                    e.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                        .unwrap_or_default()
                        .into()
                })
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
