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

#[test]
fn cli_sub_filters_by_tag_and_topics_shows_the_counts() {
    let dir = TestDir::new("mp-tag");
    let _broker = BrokerProc::start(&dir, None);
    let client = Client::connect(dir.socket()).unwrap();
    let sub = |args: &[&str]| {
        KillOnDrop(
            ringbus(&dir.socket())
                .args(["sub", "tag.t", "--json", "--from", "earliest"])
                .args(args)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    };
    // A tag set, a mask and value, and one that keeps reading: it shows
    // its counts in `ringbus topics`.
    let mut set = sub(&["--tag", "3", "--tag", "0x5", "--count", "4"]);
    let mut masked = sub(&["--tag-mask", "0xf0", "--tag-value", "0x10", "--count", "3"]);
    let mut live = sub(&["--tag", "7"]);
    eventually("three subscribers", || {
        let t = client.topics().ok()?;
        (t.iter().find(|t| t.name == "tag.t")?.subscribers == 3).then_some(())
    });
    let mut p = client
        .publisher(
            "tag.t",
            TopicConfig {
                max_message_size: 64,
                capacity: 64,
                mode: Mode::Backpressure,
                max_subscribers: 4,
            },
        )
        .unwrap();
    let tags = [0u64, 3, 0x10, 5, 0x1f, 7, 3, 0x11, 5, 0x20, 0x10];
    for (i, &t) in tags.iter().enumerate() {
        p.publish_timeout(format!("m{i}").as_bytes(), t, PATIENCE)
            .unwrap();
    }
    let read = |c: &mut KillOnDrop| -> Vec<(u64, String)> {
        let lines: Vec<String> = BufReader::new(c.0.stdout.take().unwrap())
            .lines()
            .map(Result::unwrap)
            .collect();
        assert!(c.0.wait().unwrap().success());
        lines
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["tag"].as_u64().unwrap(),
                    v["text"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let got = read(&mut set);
    assert_eq!(
        got,
        [(3, "m1"), (5, "m3"), (3, "m6"), (5, "m8")].map(|(t, m)| (t, m.to_string()))
    );
    let got = read(&mut masked);
    assert_eq!(
        got,
        [(0x10, "m2"), (0x1f, "m4"), (0x11, "m7")].map(|(t, m)| (t, m.to_string()))
    );
    // The live subscriber read all 11: 1 delivered, 10 filtered.
    let ports = eventually("the live subscriber's counts", || {
        let out = ringbus(&dir.socket())
            .args(["topics", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let ports = v[0]["rings"][0]["subscribers"].as_array()?.clone();
        let pid = u64::from(live.0.id());
        let mine = ports.iter().find(|p| p["pid"].as_u64() == Some(pid))?;
        (mine["delivered"] == 1 && mine["filtered"] == 10).then_some(ports)
    });
    assert_eq!(ports.len(), 1, "{ports:?}");
    let out = ringbus(&dir.socket()).args(["topics"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("subscriber pid {:<8}", live.0.id()))
            && text.contains("delivered 1 ")
            && text.contains("filtered 10 "),
        "{text}"
    );
    drop(p);
    kill9(&mut live.0);

    // Bad filters: a clear error, before anything is read.
    for (args, want) in [
        (vec!["--tag", "zz"], "not a 64-bit unsigned number"),
        (vec!["--tag-mask", "0x1"], "--tag-value"),
        (
            vec!["--tag-mask", "0x1", "--tag-value", "0x2"],
            "bits outside mask",
        ),
        (
            vec!["--tag", "1", "--tag-mask", "1", "--tag-value", "1"],
            "cannot be used with",
        ),
    ] {
        let out = ringbus(&dir.socket())
            .args(["sub", "tag.t"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let many: Vec<String> = (0..65)
        .flat_map(|i| ["--tag".into(), i.to_string()])
        .collect();
    let out = ringbus(&dir.socket())
        .args(["sub", "tag.t"])
        .args(&many)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("at most 64 tags"),
        "{err}"
    );
}

#[test]
fn cli_sub_group_members_share_the_messages() {
    const N: u64 = 300;
    let dir = TestDir::new("mp-group");
    let _broker = BrokerProc::start(&dir, None);
    let client = Client::connect(dir.socket()).unwrap();
    let member = || {
        KillOnDrop(
            ringbus(&dir.socket())
                .args(["sub", "grp.t", "--group", "w", "--json", "--until-end"])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    };
    // Each member's output is read while it runs: a member that got most
    // of the messages fills a pipe (64 KiB) before the publisher is done.
    let read = |mut c: KillOnDrop| {
        let out = c.0.stdout.take().unwrap();
        std::thread::spawn(move || {
            let lines: Vec<String> = BufReader::new(out).lines().map(Result::unwrap).collect();
            assert!(c.0.wait().unwrap().success());
            lines
                .iter()
                .filter_map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let seq = v["seq"].as_u64()?;
                    assert_eq!(v["text"].as_str().unwrap(), format!("m{seq}"));
                    assert_eq!(v["redelivered"], false);
                    Some(seq)
                })
                .collect::<Vec<u64>>()
        })
    };
    let (a, b) = (member(), member());
    let pids = [a.0.id(), b.0.id()];
    let (a, b) = (read(a), read(b));
    eventually("two members", || {
        let t = client.topics().ok()?;
        (t.iter().find(|t| t.name == "grp.t")?.subscribers == 2).then_some(())
    });
    let mut p = client
        .publisher(
            "grp.t",
            TopicConfig {
                max_message_size: 64,
                capacity: 16,
                mode: Mode::Backpressure,
                max_subscribers: 4,
            },
        )
        .unwrap();
    for i in 0..N {
        p.publish_timeout(format!("m{i}").as_bytes(), i, PATIENCE)
            .unwrap();
    }
    // `ringbus topics` shows the group: every message published is
    // claimed or waiting to be (at most a ring's worth not yet claimed).
    let out = ringbus(&dir.socket())
        .args(["topics", "--json"])
        .output()
        .unwrap();
    let topics: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = topics
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "grp.t")
        .unwrap();
    let g = &t["groups"][0];
    assert_eq!(g["name"], "w", "{t}");
    assert_eq!(g["members"], 2, "{t}");
    let (claimed, backlog) = (
        g["claimed"].as_u64().unwrap(),
        g["backlog"].as_u64().unwrap(),
    );
    assert_eq!(claimed + backlog, N, "{t}");
    assert!(
        backlog <= 16 && g["acknowledged"].as_u64().unwrap() <= claimed,
        "{t}"
    );
    let text = ringbus(&dir.socket()).arg("topics").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("group w") && text.contains("members 2"),
        "{text}"
    );
    drop(p);
    // Both members end once the ring is drained and gone; one that does
    // not fails the test instead of hanging it.
    let end = std::time::Instant::now() + PATIENCE;
    while !(a.is_finished() && b.is_finished()) {
        if std::time::Instant::now() > end {
            for pid in pids {
                if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            panic!("a member did not end after the publisher left");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let mut all = a.join().unwrap();
    all.extend(b.join().unwrap());
    all.sort_unstable();
    assert_eq!(all, (0..N).collect::<Vec<_>>(), "each message exactly once");

    // A bad group name: a clear error.
    let out = ringbus(&dir.socket())
        .args(["sub", "grp.t", "--group", "a/b"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("group name"), "{err}");
}
