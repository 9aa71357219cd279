//! The local broker: a bridge started before it retries until it is up,
//! and one whose broker restarts reconnects; the flow resumes.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ringbus::broker::{Broker, BrokerOptions, EmbeddedBroker};
use ringbus::client::{Client, SubscribeOptions, TopicConfig};
use ringbus::ring::Start;

/// A broker on a socket path of our choosing, on its own thread.
struct LocalBroker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LocalBroker {
    fn start(dir: &Path) -> LocalBroker {
        let opts = BrokerOptions {
            socket: dir.join("ringbus.sock"),
            data_dir: dir.join("data"),
            config: ringbus::broker::Config::default(),
            keeper: None,
        };
        let mut broker = Broker::bind(opts).expect("bind");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || broker.run(&flag).expect("broker runs"));
        LocalBroker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for LocalBroker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Publishes on A until `sub` at B gets a message of this round.
fn flows(p: &mut ringbus::client::Publisher, sub: &mut ringbus::client::Subscriber, round: u64) {
    eventually("messages to reach B", || {
        p.publish(&round.to_le_bytes(), round).unwrap();
        recv_for(sub, Duration::from_millis(50))
            .iter()
            .any(|g| g.tag == round)
            .then_some(())
    });
}

#[test]
fn the_importer_waits_for_its_broker_and_survives_its_restart() {
    let dir: PathBuf =
        std::env::temp_dir().join(format!("ringbus-zenoh-local-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("ringbus.sock");
    let a = EmbeddedBroker::start().unwrap();
    let ep = vec![format!("tcp/127.0.0.1:{}", free_port())];
    let _x = start(settings(a.socket(), &["md.>"], &[]), &ep, &[]);
    // B's bridge first, its broker not up yet.
    let y = start(settings(&socket, &[], &["md.>"]), &[], &ep);
    std::thread::sleep(Duration::from_millis(300));
    let ca = a.client().unwrap();
    let mut p = ca.publisher("md.r", TopicConfig::default()).unwrap();
    let opts = SubscribeOptions {
        start: Start::Earliest,
        ..SubscribeOptions::default()
    };
    {
        let _b = LocalBroker::start(&dir);
        let cb = Client::connect(&socket).unwrap();
        let mut sub = cb.subscriber("md.>", opts).unwrap();
        flows(&mut p, &mut sub, 1);
    }
    // The broker stops, and a new one takes its place.
    let _b = LocalBroker::start(&dir);
    let cb = Client::connect(&socket).unwrap();
    let mut sub = cb.subscriber("md.>", opts).unwrap();
    flows(&mut p, &mut sub, 2);
    assert!(y.stats().snapshot().local_reconnects >= 2);
    let _ = std::fs::remove_dir_all(&dir);
}
