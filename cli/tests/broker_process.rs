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
fn a_client_truncating_ring_files_cannot_crash_the_broker() {
    let dir = TestDir::new("api-truncate");
    let mut broker = BrokerProc::start(&dir, None);
    let client = Client::connect(dir.socket()).unwrap();
    // The publisher runs in its own process: a truncated control segment
    // is that process's problem, not ours.
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
    eventually("the publisher's ring", || {
        let t = client.topics().ok()?;
        (t.iter().find(|t| t.name == "trunc")?.rings.len() == 1).then_some(())
    });
    let mut conn = Connection::connect(&dir.socket(), "hostile").unwrap();
    let (_, fds) = conn
        .call(&Request::Subscribe {
            topic: "trunc".into(),
        })
        .unwrap();
    let data = std::fs::File::from(fds[1].try_clone().unwrap());
    let ctrl = std::fs::File::from(fds[2].try_clone().unwrap());
    // The data descriptor is read-only: it cannot even be truncated.
    assert!(data.set_len(0).is_err());
    // The control descriptor is writable (cursors): truncate it.
    ctrl.set_len(0).unwrap();
    for _ in 0..3 {
        // (The publisher may already have died of SIGBUS and its ring be
        // gone: either way the broker answers.)
        let t = client.topics().unwrap();
        let t = t.iter().find(|t| t.name == "trunc").unwrap();
        assert!(t.rings.iter().all(|r| r.cursors == 0), "{t:?}");
        client.stats().unwrap();
    }
    // The publisher dies (by SIGBUS or by us): the broker closes its
    // truncated ring without touching its memory.
    let _ = publisher.kill();
    let _ = publisher.wait();
    eventually("the ring to be closed", || {
        let t = client.topics().ok()?;
        t.iter()
            .find(|t| t.name == "trunc")
            .map_or(true, |t| t.rings.iter().all(|r| r.closed))
            .then_some(())
    });
    drop(conn);
    assert!(broker.child.try_wait().unwrap().is_none(), "broker died");
    let mut p = client.publisher("after", cfg(Mode::Overwrite)).unwrap();
    p.publish(b"ok", 0).unwrap();
}
