//! The broker as a process of its own, against a client that truncates
//! the ring files it was handed.

mod common;

use common::*;
use ringbus::client::{Client, Mode, TopicConfig};
use ringbus::control::frame::Request;
use ringbus::control::Connection;

fn cfg(mode: Mode) -> TopicConfig {
    TopicConfig {
        max_message_size: 64,
        capacity: 64,
        mode,
        max_subscribers: 4,
    }
}

#[test]
fn no_segment_a_subscriber_holds_can_be_truncated_or_written() {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let dir = TestDir::new("api-truncate");
    let mut broker = BrokerProc::start(&dir, None);
    let client = Client::connect(dir.socket()).unwrap();
    // The publisher runs in its own process: if a segment could be
    // truncated under it, it would die of SIGBUS.
    let mut publisher = std::process::Command::new(BIN)
        .arg("--socket")
        .arg(dir.socket())
        .args(["pub", "trunc", "--count", "1000000000", "--rate", "1000"])
        .args([
            "--mode",
            "backpressure",
            "--capacity",
            "64",
            "--max-size",
            "64",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Written to: its publisher has mapped it, so a subscription lists it
    // (a ring whose publisher has not mapped it yet is handed over later).
    eventually("the publisher's ring, written to", || {
        let t = client.topics().ok()?;
        let rings = &t.iter().find(|t| t.name == "trunc")?.rings;
        (rings.len() == 1 && rings[0].next_seq > 0).then_some(())
    });
    let mut conn = Connection::connect(&dir.socket(), "hostile").unwrap();
    let (_, fds) = conn
        .call(&Request::Subscribe {
            topic: "trunc".into(),
            start: ringbus::ring::Start::Latest,
            held: vec![],
        })
        .unwrap();
    assert_eq!(fds.len(), 4, "topic segment, data, lobby, port");
    for (i, fd) in fds.iter().enumerate() {
        let f = std::fs::File::from(fd.try_clone().unwrap());
        // No segment can be resized: every one is a sealed memfd.
        assert!(f.set_len(0).is_err(), "descriptor {i} could be truncated");
        assert!(f.set_len(1 << 30).is_err(), "descriptor {i} could be grown");
        // Reopened writable (what /proc/self/fd allows a same-uid process),
        // the topic segment and the ring's data still refuse writes.
        let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd));
        if i < 2 {
            let w = std::fs::OpenOptions::new().write(true).open(&path);
            if let Ok(mut w) = w {
                assert!(w.write_all(b"scribble").is_err(), "descriptor {i} writable");
                assert!(
                    w.write_at(b"scribble", 4096).is_err(),
                    "descriptor {i} writable"
                );
            }
        }
    }
    let mut t0 = client.topics().unwrap();
    let before = t0.remove(0).rings[0].next_seq;
    eventually("the publisher to go on publishing", || {
        let t = client.topics().ok()?;
        let r = &t.iter().find(|t| t.name == "trunc")?.rings[0];
        (r.next_seq > before + 5 && !r.closed).then_some(())
    });
    assert!(publisher.try_wait().unwrap().is_none(), "publisher died");
    let _ = publisher.kill();
    let _ = publisher.wait();
    drop(conn);
    assert!(broker.child.try_wait().unwrap().is_none(), "broker died");
    let mut p = client.publisher("after", cfg(Mode::Overwrite)).unwrap();
    p.publish(b"ok", 0).unwrap();
}
