//! Multi-process tests with the real binary: kill -9 of a publisher, of a
//! back-pressure subscriber and of the broker, each followed by checks
//! that the survivors saw no torn, duplicated or lost message; the ACL
//! with a client running as another uid; stale sockets; the CLI.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ringbus::client::{Client, Mode, TopicConfig};
use ringbus::control::ErrorCode;
use ringbus::ring::PublishError;

#[test]
fn kill9_publisher_ends_its_ring_and_frees_its_place() {
    let dir = TestDir::new("mp-killpub");
    let conf = dir.path("broker.toml");
    std::fs::write(&conf, "[limits]\nmax_publishers_per_topic = 1\n").unwrap();
    let _broker = BrokerProc::start(&dir, Some(&conf));
    let client = Client::connect(dir.socket()).unwrap();
    let mut sub = subscribe(&client, "kp");

    let mut publisher = KillOnDrop(
        ringbus(&dir.socket())
            .args(["pub", "kp", "--count", "1000000000", "--size", "64"])
            .args([
                "--mode",
                "backpressure",
                "--capacity",
                "256",
                "--max-size",
                "64",
            ])
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut check = Checker::new();
    check.until(&mut sub, "2000 messages", |c| c.received >= 2000);
    // While it lives, the topic's only publisher slot is taken.
    let e = client.publisher_existing("kp").unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::LimitExceeded), "{e}");

    kill9(&mut publisher.0);
    // Everything it committed is delivered intact, then end of stream.
    check.until(&mut sub, "end of stream", |c| c.ended == 1);
    assert!(check.received >= 2000);

    // The broker reclaimed the slot: a new publisher is accepted and heard.
    let mut p2 = eventually("the dead publisher's slot to be freed", || {
        client.publisher_existing("kp").ok()
    });
    p2.publish(&generated(0, 64), 0).unwrap();
    check.until(&mut sub, "the new publisher's message", |c| {
        c.next.len() == 2
    });
}

#[test]
fn kill9_backpressure_subscriber_stops_gating_the_publisher() {
    let dir = TestDir::new("mp-killsub");
    let _broker = BrokerProc::start(&dir, None);
    let client = Client::connect(dir.socket()).unwrap();
    let config = TopicConfig {
        max_message_size: 64,
        capacity: 64,
        mode: Mode::Backpressure,
        max_subscribers: 4,
    };
    let mut publisher = client.publisher("ks", config).unwrap();
    let mut survivor = subscribe(&client, "ks");
    let mut victim = KillOnDrop(
        ringbus(&dir.socket())
            .args(["sub", "ks", "--from", "earliest"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eventually("the victim's cursor", || {
        let t = client.topics().ok()?;
        (t.iter().find(|t| t.name == "ks")?.rings[0].cursors == 2).then_some(())
    });
    // Freeze the victim: its cursor stops moving.
    let pid = rustix::process::Pid::from_raw(victim.0.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();

    const N: u64 = 1000;
    let mut check = Checker::new();
    let (mut gated, mut killed) = (false, false);
    let end = Instant::now() + PATIENCE;
    for i in 0..N {
        loop {
            assert!(Instant::now() < end, "publisher stuck at message {i}");
            match publisher.try_publish(&generated(i, 64), i) {
                Ok(seq) => {
                    assert_eq!(seq, i);
                    break;
                }
                Err(PublishError::Full) => {
                    let before = check.received;
                    while check.step(&mut survivor, Duration::ZERO).is_some() {}
                    if check.received == before {
                        // Full although the survivor is drained: the frozen
                        // victim gates the publisher. Kill it.
                        gated = true;
                        if !killed {
                            kill9(&mut victim.0);
                            killed = true;
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(gated, "the frozen subscriber never gated the publisher");
    assert!(killed);
    check.until(&mut survivor, "all messages", |c| c.received == N);
    assert_eq!(check.next.values().copied().collect::<Vec<_>>(), vec![N]);
    // The broker noticed the death: only the survivor's cursor is left.
    let t = client.topics().unwrap();
    assert_eq!(
        t.iter().find(|t| t.name == "ks").unwrap().rings[0].cursors,
        1
    );
    assert!(client.stats().unwrap().clients_reaped >= 1);
}

/// A directory every user can reach, for what a process of another uid
/// must open: the checkout, `target/` and `$TMPDIR` may sit under a 0700
/// directory (a clone in `/root` or under `mktemp -d`).
fn world_reachable_dir(name: &str) -> TestDir {
    use std::os::unix::fs::PermissionsExt;
    let base = ["/tmp", "/dev/shm", "/var/tmp"]
        .into_iter()
        .map(std::path::Path::new)
        .find(|b| {
            // Every directory from the root down is searchable by others.
            b.ancestors().all(|a| {
                std::fs::metadata(a)
                    .is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
            })
        })
        .expect("no directory that every user may enter (/tmp, /dev/shm or /var/tmp with o+x)");
    let dir = TestDir::new_in(base, name);
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn acl_applies_to_a_client_running_as_another_uid() {
    assert!(
        is_root(),
        "this test runs a client as uid 65534 and so needs root: run the tests as root \
         (CI does), or leave it out with `-- --skip acl_applies_to_a_client_running_as_another_uid`"
    );
    // The client runs as uid 65534: its binary, the broker's socket and
    // everything on the way to them must be reachable by that user.
    let dir = world_reachable_dir("mp-acl");
    let bin = dir.path("ringbus");
    std::fs::copy(BIN, &bin).unwrap();
    let conf = dir.path("broker.toml");
    std::fs::write(
        &conf,
        "[[acl]]\ntopic = \"shared.>\"\nsubscribe = { uids = [65534] }\n",
    )
    .unwrap();
    let _broker = BrokerProc::start(&dir, Some(&conf));
    let client = Client::connect(dir.socket()).unwrap();
    let mut p = client
        .publisher(
            "shared.feed",
            TopicConfig {
                max_message_size: 64,
                capacity: 64,
                mode: Mode::Overwrite,
                max_subscribers: 4,
            },
        )
        .unwrap();
    p.publish(b"m0", 0).unwrap();
    p.publish(b"m1", 1).unwrap();
    let nobody = |args: &[&str]| {
        let mut c = Command::new(&bin);
        c.env_remove("RINGBUS_SOCKET")
            .arg("--socket")
            .arg(dir.socket())
            .args(args)
            .current_dir("/")
            .uid(65534)
            .gid(65534);
        c
    };

    // Publishing is not granted to uid 65534.
    let mut child = nobody(&["pub", "shared.feed"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"evil\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    assert!(err.contains("uid 65534"), "{err}");
    assert!(err.contains("publish to topic \"shared.feed\""), "{err}");

    // No rule for this topic: owner only.
    let out = nobody(&["sub", "secret", "--count", "1"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{err}");
    assert!(err.contains("subscribe to topic \"secret\""), "{err}");

    // Subscribing is granted: uid 65534 reads what root published.
    let out = nobody(&["sub", "shared.feed", "--count", "2", "--from", "earliest"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "m0\nm1\n");
    assert!(client.stats().unwrap().permission_denied >= 2);
}

#[test]
fn stale_socket_is_replaced_and_a_live_broker_is_not() {
    let dir = TestDir::new("mp-stale");
    let mut b1 = BrokerProc::start(&dir, None);
    // A second `serve` on `socket` over the same data directory must fail;
    // returns its stderr.
    let refused = |socket: &std::path::Path| {
        let out = ringbus(socket)
            .args(["serve", "--data-dir"])
            .arg(dir.data())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused(&dir.socket());
    assert!(err.contains("already running"), "{err}");

    // Nor can another broker share its data directory.
    let err = refused(&dir.path("other.sock"));
    assert!(err.contains("is in use by another broker"), "{err}");

    b1.kill9();
    assert!(dir.socket().exists(), "kill -9 leaves the socket behind");
    let mut b2 = BrokerProc::start(&dir, None);
    // Clean shutdown on SIGTERM removes the socket.
    let pid = rustix::process::Pid::from_raw(b2.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = b2.child.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(!dir.socket().exists());
}

#[test]
fn cli_pub_sub_topics_stats() {
    let dir = TestDir::new("mp-cli");
    let _broker = BrokerProc::start(&dir, None);
    let client = Client::connect(dir.socket()).unwrap();
    let sub = KillOnDrop(
        ringbus(&dir.socket())
            .args(["sub", "cli.t", "--count", "3", "--json"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    eventually("the CLI subscriber", || {
        let t = client.topics().ok()?;
        (t.iter().find(|t| t.name == "cli.t")?.subscribers == 1).then_some(())
    });
    let mut pubr = ringbus(&dir.socket())
        .args(["pub", "cli.t"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    pubr.stdin
        .take()
        .unwrap()
        .write_all(b"hello\nsay \"hi\"\n\xff\xfe\n")
        .unwrap();
    assert!(pubr.wait().unwrap().success());
    let mut sub = sub;
    let lines: Vec<String> = BufReader::new(sub.0.stdout.take().unwrap())
        .lines()
        .map(Result::unwrap)
        .collect();
    assert!(sub.0.wait().unwrap().success());
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].contains("\"seq\":0") && lines[0].ends_with("\"text\":\"hello\"}"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].ends_with("\"text\":\"say \\\"hi\\\"\"}"),
        "{}",
        lines[1]
    );
    assert!(lines[2].ends_with("\"hex\":\"fffe\"}"), "{}", lines[2]);

    let _p = client.publisher("cli.t", TopicConfig::default()).unwrap();
    let out = ringbus(&dir.socket())
        .args(["topics", "--json"])
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(json.contains("\"name\":\"cli.t\""), "{json}");
    assert!(json.contains("\"publishers\":1"), "{json}");
    let out = ringbus(&dir.socket()).args(["topics"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("cli.t"));
    let out = ringbus(&dir.socket())
        .args(["stats", "--json"])
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(
        json.contains("\"topics\":1") && json.contains("\"publishers\":1"),
        "{json}"
    );

    // No broker: a clear error, non-zero exit.
    let out = ringbus(&dir.path("nowhere.sock"))
        .arg("stats")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no broker at") && err.contains("ringbus serve"),
        "{err}"
    );
}
