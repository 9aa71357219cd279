//! `ringbus top`: the `--once` snapshot's counts and rates against what
//! was published, and the live view in a real terminal (tmux, 80x24).

mod common;

use std::process::{Command, Output, Stdio};

use common::*;
use ringbus::client::{Client, Mode, Publisher, TopicConfig};
use ringbus::ring::RecvError;
use serde_json::Value;

fn config() -> TopicConfig {
    TopicConfig {
        mode: Mode::Backpressure,
        capacity: 2048,
        max_message_size: 256,
        ..TopicConfig::default()
    }
}

/// Publishes `n` messages of 100 bytes, tagged `i % 4`.
fn publish(p: &mut Publisher, n: u64) {
    for i in 0..n {
        p.publish(&[b'x'; 100], i % 4).unwrap();
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().expect("run ringbus");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn once_json(socket: &std::path::Path, interval: &str) -> Value {
    let out = run(ringbus(socket).args(["top", "--once", "--json", "--interval", interval]));
    serde_json::from_slice(&out.stdout).expect("top --once --json prints JSON")
}

fn topic<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["topic"] == name)
        .unwrap_or_else(|| panic!("{name} missing from {report}"))
}

#[test]
fn once_reports_what_was_published() {
    let dir = TestDir::new("top-once");
    let broker = BrokerProc::start(&dir, None);
    let client = Client::connect(&broker.socket).unwrap();
    // One subscriber keeps every fourth message (tag 0) and reads all;
    // another reads nothing (its lag is everything).
    let mut reader = subscribe(&client, "md.top");
    reader.filter_tag_set(&[0]).unwrap();
    let _idle = subscribe(&client, "md.top");
    let mut publisher = client.publisher("md.top", config()).unwrap();
    publish(&mut publisher, 1000);
    let mut buf = [0u8; 256];
    let mut delivered = 0;
    // Subscribers publish their counts every few dozen receives.
    eventually("the reader's counts to be published", || {
        match reader.try_recv(&mut buf) {
            Ok(_) => delivered += 1,
            Err(RecvError::Empty) => {}
            Err(e) => panic!("{e}"),
        }
        let t = client.topics().unwrap();
        let filtered: u64 = t[0].rings[0].ports.iter().map(|p| p.filtered).sum();
        (filtered == 750).then_some(())
    });
    assert_eq!(delivered, 250);

    let report = once_json(&broker.socket, "0.2");
    assert!(report["interval_s"].as_f64().unwrap() >= 0.2);
    let t = topic(&report, "md.top");
    assert_eq!(t["publishers"], 1);
    assert_eq!(t["subscribers"], 2);
    assert_eq!(t["messages_per_s"], 0.0, "nothing was published meanwhile");
    assert_eq!(t["bytes_per_s"], 0.0);
    assert_eq!(t["lag"], 1000);
    assert_eq!(t["drops"], 0);
    assert_eq!(t["filtered"], 750);
    let rings = t["rings"].as_array().unwrap();
    assert_eq!(rings.len(), 1);
    let r = &rings[0];
    assert_eq!(r["messages"], 1000);
    assert_eq!(r["messages_before"], 1000);
    assert_eq!(r["mean_message_size"], 100.0);
    assert_eq!(r["subscribers"], 2);
    assert_eq!(r["publisher_pid"], std::process::id());
    assert_eq!(r["ended"], false);

    // The plain table says the same.
    let out = run(ringbus(&broker.socket).args(["top", "--once", "--interval", "0.1"]));
    let text = String::from_utf8(out.stdout).unwrap();
    let row: Vec<&str> = text
        .lines()
        .find(|l| l.starts_with("md.top "))
        .unwrap_or_else(|| panic!("no md.top row in:\n{text}"))
        .split_whitespace()
        .collect();
    assert_eq!(row, ["md.top", "0.0", "0.0", "2", "1000", "0", "750"]);
    let ring = format!(
        "  {:x} pid {}",
        r["ring"].as_u64().unwrap(),
        std::process::id()
    );
    assert!(text.contains(&ring), "no {ring:?} in:\n{text}");
}

/// Frames the broker received from others than `client` since `base`
/// (each `stats` call counts itself).
struct FrameWatch {
    base: u64,
    calls: u64,
}

impl FrameWatch {
    fn new(client: &Client) -> FrameWatch {
        FrameWatch {
            base: client.stats().unwrap().frames_received,
            calls: 0,
        }
    }

    fn others(&mut self, client: &Client) -> u64 {
        self.calls += 1;
        client.stats().unwrap().frames_received - self.base - self.calls
    }
}

#[test]
fn once_rate_is_the_head_delta_over_the_interval() {
    let dir = TestDir::new("top-rate");
    let broker = BrokerProc::start(&dir, None);
    let client = Client::connect(&broker.socket).unwrap();
    let mut publisher = client.publisher("md.rate", config()).unwrap();
    publish(&mut publisher, 100);

    let mut watch = FrameWatch::new(&client);
    let top = ringbus(&broker.socket)
        .args(["top", "--once", "--json", "--interval", "3"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    // `top` says hello, then lists (its first snapshot): publish once that
    // listing is answered, so all of these fall into the interval.
    eventually("top's first listing", || {
        (watch.others(&client) >= 2).then_some(())
    });
    publish(&mut publisher, 500);
    // Normally the second listing is seconds away; a machine that stalled
    // past it leaves fewer messages in the interval, which is checked too.
    let in_time = watch.others(&client) == 2;
    let out = top.wait_with_output().unwrap();
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let secs = report["interval_s"].as_f64().unwrap();
    assert!(secs >= 3.0);
    let r = &topic(&report, "md.rate")["rings"][0];
    let (before, after) = (
        r["messages_before"].as_u64().unwrap(),
        r["messages"].as_u64().unwrap(),
    );
    assert_eq!(before, 100, "the first snapshot came before the publishing");
    if in_time {
        assert_eq!(after, 600);
    } else {
        eprintln!("the second snapshot came early: {after} messages");
        assert!((100..=600).contains(&after));
    }
    let rate = r["messages_per_s"].as_f64().unwrap();
    let expected = (after - before) as f64 / secs;
    assert!(
        (rate - expected).abs() <= expected * 1e-9,
        "{rate} vs {expected}"
    );
    let bytes = r["bytes_per_s"].as_f64().unwrap();
    assert!(
        (bytes - 100.0 * expected).abs() <= expected * 1e-6,
        "{bytes}"
    );
    assert_eq!(
        topic(&report, "md.rate")["messages_per_s"],
        r["messages_per_s"]
    );
}

#[test]
fn bad_arguments_are_refused() {
    let dir = TestDir::new("top-args");
    let broker = BrokerProc::start(&dir, None);
    for (args, says) in [
        (&["top", "--interval", "0"][..], "outside"),
        (&["top", "--interval", "soon"][..], "not a number"),
        (&["top", "--json"][..], "--once"),
        // Not a terminal: the live view refuses, and says what to use.
        (&["top"][..], "needs a terminal"),
    ] {
        let out = ringbus(&broker.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let missing = dir.path("no-such.sock");
    let out = ringbus(&missing)
        .args(["top", "--once"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such.sock"));
}

/// A tmux server of the test's own, killed on drop.
struct Tmux {
    name: String,
}

impl Tmux {
    fn new(tag: &str) -> Tmux {
        Tmux {
            name: format!("ringbus-test-{tag}-{}", std::process::id()),
        }
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.env("TERM", "xterm-256color")
            .args(["-L", &self.name, "-f", "/dev/null"]);
        c
    }

    fn run(&self, args: &[&str]) -> String {
        let out =
            self.cmd().args(args).output().unwrap_or_else(|e| {
                panic!("tmux is needed by this test (.ci/run installs it): {e}")
            });
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}

fn live_view_quits_on(key: &str) {
    let dir = TestDir::new(&format!("top-tmux-{key}"));
    let broker = BrokerProc::start(&dir, None);
    let client = Client::connect(&broker.socket).unwrap();
    let long = "market.equities.north-america.nasdaq.AAPL";
    let mut a = client.publisher("md.tmux", config()).unwrap();
    let mut b = client.publisher(long, config()).unwrap();
    publish(&mut a, 10);
    publish(&mut b, 10);

    let exit = dir.path("exit");
    let script = format!(
        "{} --socket {} top --interval 0.2; echo $? > {}; echo top-ended; sleep 600",
        BIN,
        broker.socket.display(),
        exit.display()
    );
    let tmux = Tmux::new(key);
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "80",
        "-y",
        "24",
        "sh",
        "-c",
        &script,
    ]);
    let screen = eventually("the live view to show both topics", || {
        let s = tmux.screen();
        (s.contains("md.tmux") && s.contains(".AAPL")).then_some(s)
    });
    assert!(screen.contains("TOPIC / RING"), "{screen}");
    for line in screen.lines() {
        assert!(line.len() <= 80, "line wider than 80 columns: {line:?}");
    }
    // The long name is cut in the middle to fit, keeping both ends.
    let cut = screen
        .lines()
        .find(|l| l.contains(".AAPL"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    assert!(cut.starts_with("market.") && cut.contains('~'), "{cut:?}");

    tmux.run(&["send-keys", "-t", "top", key]);
    let code = eventually("top to quit", || {
        std::fs::read_to_string(&exit)
            .ok()
            .filter(|s| s.ends_with('\n'))
    });
    assert_eq!(code.trim(), "0");
    // The terminal is back: the shell's line shows on the normal screen,
    // the table is gone with the alternate screen.
    let screen = eventually("the shell's screen", || {
        let s = tmux.screen();
        s.contains("top-ended").then_some(s)
    });
    assert!(!screen.contains("TOPIC / RING"), "{screen}");
}

#[test]
fn live_view_in_80x24_quits_on_q() {
    live_view_quits_on("q");
}

#[test]
fn live_view_quits_on_ctrl_c() {
    live_view_quits_on("C-c");
}
