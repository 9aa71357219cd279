//! The client API against a broker: publish/subscribe, several publishers
//! per topic, late rings, config checks, read-only data for subscribers,
//! and garbage frames thrown at a live broker.

mod common;

use std::os::fd::AsFd;
use std::time::Duration;

use common::*;
use ringbus::broker::Config;
use ringbus::client::{Client, ClientError, Mode, SubscribeOptions, TopicConfig};
use ringbus::control::codec::{encode_request, HEADER_LEN, MAX_REQUEST};
use ringbus::control::frame::{ErrorCode, Reply, Request, PROTOCOL_VERSION};
use ringbus::control::{socket, Connection, ConnectionError};
use ringbus::ring::{RecvError, Start};

fn cfg(mode: Mode) -> TopicConfig {
    TopicConfig {
        max_message_size: 64,
        capacity: 64,
        mode,
        max_subscribers: 4,
    }
}

fn recv(sub: &mut ringbus::client::Subscriber, buf: &mut [u8]) -> (u64, Vec<u8>) {
    let d = sub.recv_timeout(buf, PATIENCE).expect("a message");
    (d.ring_id, buf[..d.info.len].to_vec())
}

#[test]
fn publish_subscribe_and_rings_that_join_later() {
    let dir = TestDir::new("api-pubsub");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut sub = client
        .subscriber(
            "md.x",
            SubscribeOptions {
                start: Start::Earliest,
                ..Default::default()
            },
        )
        .unwrap();
    // The topic exists, without a config, before any publisher.
    assert_eq!(sub.config(), None);

    let mut p1 = client.publisher("md.x", cfg(Mode::Backpressure)).unwrap();
    p1.publish(b"one", 1).unwrap();
    let mut buf = [0u8; 64];
    let (r1, m) = recv(&mut sub, &mut buf);
    assert_eq!(m, b"one");
    assert_eq!(r1, p1.ring_id());

    // A second publisher on another connection: a second ring, found
    // through the generation counter and read from its first message.
    let other = Client::connect(dir.socket()).unwrap();
    let mut p2 = other.publisher_existing("md.x").unwrap();
    assert_ne!(p2.ring_id(), p1.ring_id());
    p2.publish(b"two", 2).unwrap();
    p2.publish(b"three", 3).unwrap();
    // Order is per publisher: p2's messages arrive in its order.
    assert_eq!(recv(&mut sub, &mut buf), (p2.ring_id(), b"two".to_vec()));
    assert_eq!(recv(&mut sub, &mut buf), (p2.ring_id(), b"three".to_vec()));
    assert_eq!(sub.rings().len(), 2);

    // Topics list shows both rings and the subscriber's cursors. A
    // subscriber releases what it read in batches, and all of it once it
    // finds nothing more: poll once, as a caught-up subscriber does.
    assert!(matches!(sub.try_recv(&mut buf), Err(RecvError::Empty)));
    let topics = client.topics().unwrap();
    let t = topics.iter().find(|t| t.name == "md.x").unwrap();
    assert_eq!(t.rings.len(), 2);
    assert_eq!(t.publishers, 2);
    assert_eq!(t.subscribers, 1);
    assert!(t.rings.iter().all(|r| r.cursors == 1 && r.lag() == Some(0)));

    // A publisher leaving ends its ring: drained first, then end of stream.
    p2.publish(b"last", 4).unwrap();
    let id2 = p2.ring_id();
    drop(p2);
    assert_eq!(recv(&mut sub, &mut buf), (id2, b"last".to_vec()));
    assert_eq!(
        sub.recv_timeout(&mut buf, PATIENCE),
        Err(RecvError::EndOfStream)
    );
    assert_eq!(sub.last_ring_id(), id2);
    assert_eq!(sub.rings().len(), 1);
    // The other ring goes on.
    p1.publish(b"again", 5).unwrap();
    assert_eq!(recv(&mut sub, &mut buf), (r1, b"again".to_vec()));

    let stats = client.stats().unwrap();
    assert_eq!(stats.publishers, 1);
    assert_eq!(stats.subscribers, 1);
}

#[test]
fn config_mismatch_bad_names_and_limits_are_refused() {
    let dir = TestDir::new("api-refusals");
    let config = Config::parse("[limits]\nmax_publishers_per_topic = 1\nmax_topics = 2").unwrap();
    let _b = BrokerThread::start(&dir, config);
    let client = Client::connect(dir.socket()).unwrap();
    let _p = client.publisher("a", cfg(Mode::Overwrite)).unwrap();

    let e = client.publisher("a", cfg(Mode::Backpressure)).unwrap_err();
    assert!(matches!(e, ClientError::ConfigMismatch(_)), "{e}");
    assert!(e.to_string().contains("mode=overwrite"), "{e}");
    assert!(e.to_string().contains("mode=backpressure"), "{e}");

    let e = client.publisher_existing("a").unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::LimitExceeded), "{e}");
    assert!(e.to_string().contains("max_publishers_per_topic"), "{e}");

    let bad = TopicConfig {
        capacity: 3,
        ..cfg(Mode::Overwrite)
    };
    let e = client.publisher("b", bad).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::InvalidConfig), "{e}");
    assert!(e.to_string().contains("power of two"), "{e}");

    let e = client
        .subscriber("../etc", SubscribeOptions::default())
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::BadTopicName), "{e}");

    let e = client.publisher_existing("nope").unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound), "{e}");

    let _s = client.subscriber("b", SubscribeOptions::default()).unwrap();
    let e = client
        .subscriber("c", SubscribeOptions::default())
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::LimitExceeded), "{e}");

    // The connection is still good after all these refusals.
    assert!(client.open_topic("b", cfg(Mode::Overwrite)).is_ok());
}

#[test]
fn opened_topics_are_kept_and_unused_ones_are_not() {
    let dir = TestDir::new("api-open");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    assert!(client.open_topic("kept", cfg(Mode::Backpressure)).unwrap());
    assert!(!client.open_topic("kept", cfg(Mode::Backpressure)).unwrap());
    let e = client.open_topic("kept", cfg(Mode::Overwrite)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::ConfigMismatch));
    // A topic only a subscriber asked for goes away with it (detaching
    // runs the broker's clean-up).
    drop(
        client
            .subscriber("fleeting", SubscribeOptions::default())
            .unwrap(),
    );
    let names: Vec<String> = client
        .topics()
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, vec!["kept".to_string()]);
    // Its publisher takes the opened config.
    let p = client.publisher_existing("kept").unwrap();
    assert_eq!(p.config(), cfg(Mode::Backpressure));
}

#[test]
fn subscribers_get_read_only_ring_data() {
    let dir = TestDir::new("api-readonly");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut p = client.publisher("ro", cfg(Mode::Backpressure)).unwrap();
    p.publish(b"x", 0).unwrap();

    // Speak the protocol directly to look at the descriptors themselves.
    let mut conn = Connection::connect(&dir.socket(), "ro-test").unwrap();
    let (reply, fds) = conn
        .call(&Request::Subscribe {
            topic: "ro".into(),
            start: Start::Earliest,
            held: vec![],
        })
        .unwrap();
    let Reply::Subscribed { rings, .. } = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(rings.len(), 1);
    let port_ref = rings[0].port.expect("a port");
    assert!(port_ref.mailbox, "a read-only subscriber gets a mailbox");
    assert_eq!(fds.len(), 4);
    let (segment, data, lobby, port) = (&fds[0], &fds[1], &fds[2], &fds[3]);
    use rustix::fs::{OFlags, SealFlags};
    let mode = |fd| rustix::fs::fcntl_getfl(fd).unwrap() & OFlags::RWMODE;
    let seals = |fd| rustix::fs::fcntl_get_seals(fd).unwrap();
    // The topic segment: nobody but the broker can ever write it.
    assert!(seals(segment.as_fd()).contains(SealFlags::FUTURE_WRITE | SealFlags::SHRINK));
    assert_eq!(mode(data.as_fd()), OFlags::RDONLY);
    // The lobby (hints only) and the port (this subscriber's own state)
    // are writable, but sealed: their size cannot change under the
    // publisher's mapping.
    for fd in [lobby, port] {
        assert_eq!(mode(fd.as_fd()), OFlags::RDWR);
        assert!(seals(fd.as_fd()).contains(SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL));
    }

    let data = std::fs::File::from(data.try_clone().unwrap());
    let ctrl = std::fs::File::from(lobby.try_clone().unwrap());
    let port = std::fs::File::from(port.try_clone().unwrap());
    // Writing through the descriptor fails...
    use std::os::unix::fs::FileExt;
    assert!(data.write_at(b"evil", 0).is_err());
    // ... a writable shared mapping is refused ...
    // SAFETY: the mapping is never created (the call must fail).
    let rw = unsafe { memmap2::MmapOptions::new().map_mut(&data) };
    assert_eq!(rw.unwrap_err().kind(), std::io::ErrorKind::PermissionDenied);
    assert!(
        ringbus::shm::map_ring(&data, &ctrl, None, ringbus::shm::Access::ReadWrite, None).is_err()
    );
    // ... and the subscriber's read-only mapping cannot be made writable.
    // SAFETY: read-only shared mapping, only inspected.
    let ro = unsafe { memmap2::MmapOptions::new().map(&data) }.unwrap();
    // SAFETY: mprotect on a mapping we own; it must fail, leaving it as is.
    let r = unsafe {
        rustix::mm::mprotect(
            ro.as_ptr() as *mut _,
            ro.len(),
            rustix::mm::MprotectFlags::READ | rustix::mm::MprotectFlags::WRITE,
        )
    };
    assert_eq!(r, Err(rustix::io::Errno::ACCESS));
    // The subscriber API maps exactly this way and still reads the stream.
    assert_eq!(
        ringbus::shm::subscriber_access(&data),
        ringbus::shm::Access::Subscriber
    );
    let region =
        ringbus::shm::map_ring(&data, &ctrl, None, ringbus::shm::Access::Subscriber, None).unwrap();
    assert!(!region.data_writable());
    // Read-only pages: the subscriber polls its ring slots, not the
    // latest-message slot.
    assert!(!region.polls_latest());
    let config = *region.config();
    let port = ringbus::shm::map_port(&port, &config, rings[0].ring_id).unwrap();
    let mut c = ringbus::ring::Consumer::with_port(region, port, Start::Earliest, true).unwrap();
    let mut buf = [0u8; 64];
    let info = c.try_recv(&mut buf).unwrap();
    assert_eq!(&buf[..info.len], b"x");
    // Nor can a subscriber ask for a read-write mapping of its descriptor.
    assert!(ringbus::shm::map_ring(
        &data,
        &ctrl,
        None,
        ringbus::shm::Access::TrustedSubscriber,
        None
    )
    .is_err());
}

#[test]
fn trusted_subscribers_map_data_read_write_and_poll_the_latest_slot() {
    let dir = TestDir::new("api-trusted");
    let mut config = Config::default();
    config.server.trusted_subscribers = true;
    let _b = BrokerThread::start(&dir, config);
    let client = Client::connect(dir.socket()).unwrap();
    let mut sub = client
        .subscriber("fast", SubscribeOptions::default())
        .unwrap();
    let mut p = client.publisher("fast", cfg(Mode::Overwrite)).unwrap();
    let mut buf = [0u8; 64];
    // Short messages (inline in the latest slot) and ones of the full 64
    // bytes, one at a time (caught up) and in a burst (a backlog).
    for n in 0..20u8 {
        let msg = vec![n; 1 + usize::from(n) * 3 % 64];
        p.publish(&msg, u64::from(n)).unwrap();
        assert_eq!(recv(&mut sub, &mut buf).1, msg);
    }
    for n in 0..10u8 {
        p.publish(&[n; 64], 0).unwrap();
    }
    for n in 0..10u8 {
        assert_eq!(recv(&mut sub, &mut buf).1, [n; 64]);
    }
    let ring = sub.rings()[0];
    assert!(ring.polls_latest && !ring.mailbox, "{ring:?}");

    // The descriptor handed out is read-write.
    let mut conn = Connection::connect(&dir.socket(), "trusted-test").unwrap();
    let (reply, fds) = conn
        .call(&Request::Subscribe {
            topic: "fast".into(),
            start: Start::Latest,
            held: vec![],
        })
        .unwrap();
    assert!(matches!(reply, Reply::Subscribed { .. }), "{reply:?}");
    let data = std::fs::File::from(fds[1].try_clone().unwrap());
    assert_eq!(
        ringbus::shm::subscriber_access(&data),
        ringbus::shm::Access::TrustedSubscriber
    );
}

/// Sends one raw frame on a fresh connection and returns the broker's
/// answer (`None`: it hung up without one).
fn raw_exchange(path: &std::path::Path, frames: &[Vec<u8>]) -> Vec<Option<Reply>> {
    let sock = socket::connect(path).unwrap();
    socket::set_timeouts(sock.as_fd(), Some(PATIENCE)).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    for f in frames {
        if socket::send_frame(sock.as_fd(), f, &[]).is_err() {
            out.push(None);
            continue;
        }
        match socket::recv_frame(sock.as_fd(), &mut buf) {
            Ok(Some(r)) => out.push(ringbus::control::decode_reply(&buf[..r.len]).ok()),
            _ => out.push(None),
        }
    }
    out
}

fn hello() -> Vec<u8> {
    encode_request(&Request::Hello {
        min_version: PROTOCOL_VERSION,
        max_version: PROTOCOL_VERSION,
        name: "garbage".into(),
    })
    .unwrap()
}

fn code_of(r: &Option<Reply>) -> ErrorCode {
    match r {
        Some(Reply::Error { code, message }) => {
            assert!(!message.is_empty());
            *code
        }
        other => panic!("expected an error reply, got {other:?}"),
    }
}

#[test]
fn garbage_frames_then_a_good_client() {
    let dir = TestDir::new("api-garbage");
    let _b = BrokerThread::start(&dir, Config::default());
    let path = dir.socket();

    let stats = encode_request(&Request::Stats).unwrap();
    let mut wrong_version = stats.clone();
    wrong_version[2] = 0x7f;
    let mut unknown = stats.clone();
    unknown[4] = 0x42;
    let mut bad_len = stats.clone();
    bad_len[8] = 9;
    let mut truncated = encode_request(&Request::Subscribe {
        topic: "abc".into(),
        start: Start::Latest,
        held: vec![],
    })
    .unwrap();
    truncated.truncate(truncated.len() - 1);
    let n = (truncated.len() - HEADER_LEN) as u32;
    truncated[8..12].copy_from_slice(&n.to_le_bytes());
    let mut bad_name = encode_request(&Request::Subscribe {
        topic: "abc".into(),
        start: Start::Latest,
        held: vec![],
    })
    .unwrap();
    bad_name[HEADER_LEN + 2] = b'/';
    let oversized = vec![0x52u8; MAX_REQUEST + 100];

    // (frames sent on one connection, expected error code per frame)
    type Case = (Vec<Vec<u8>>, Vec<Option<ErrorCode>>);
    let cases: Vec<Case> = vec![
        (vec![b"RB".to_vec()], vec![Some(ErrorCode::Malformed)]),
        (
            vec![b"hello broker".to_vec()],
            vec![Some(ErrorCode::Malformed)],
        ),
        (vec![oversized], vec![Some(ErrorCode::Malformed)]),
        (
            vec![wrong_version],
            vec![Some(ErrorCode::UnsupportedVersion)],
        ),
        (vec![stats.clone()], vec![Some(ErrorCode::HelloRequired)]),
        (
            vec![hello(), bad_len],
            vec![None, Some(ErrorCode::Malformed)],
        ),
        (
            vec![hello(), truncated],
            vec![None, Some(ErrorCode::Malformed)],
        ),
        // Well-framed but wrong: answered, and the connection survives.
        (
            vec![hello(), unknown, bad_name, stats.clone()],
            vec![
                None,
                Some(ErrorCode::UnknownRequest),
                Some(ErrorCode::BadTopicName),
                None,
            ],
        ),
        (
            vec![encode_request(&Request::Hello {
                min_version: 7,
                max_version: 9,
                name: String::new(),
            })
            .unwrap()],
            vec![Some(ErrorCode::UnsupportedVersion)],
        ),
        (
            vec![
                hello(),
                encode_request(&Request::Detach { lease: 12345 }).unwrap(),
            ],
            vec![None, Some(ErrorCode::NotFound)],
        ),
    ];
    for (frames, want) in cases {
        let got = raw_exchange(&path, &frames);
        for (g, w) in got.iter().zip(&want) {
            match w {
                Some(code) => assert_eq!(code_of(g), *code, "frames {frames:02x?}"),
                None => assert!(
                    !matches!(g, Some(Reply::Error { .. }) | None),
                    "expected success, got {g:?}"
                ),
            }
        }
    }

    // Descriptors sent by a client are ignored (and closed), not used.
    let sock = socket::connect(&path).unwrap();
    let f = std::fs::File::open("/dev/null").unwrap();
    socket::send_frame(sock.as_fd(), &hello(), &[f.as_fd()]).unwrap();
    let mut buf = vec![0u8; 4096];
    let r = socket::recv_frame(sock.as_fd(), &mut buf).unwrap().unwrap();
    assert!(matches!(
        ringbus::control::decode_reply(&buf[..r.len]),
        Ok(Reply::Welcome { .. })
    ));
    // A client that floods requests without reading replies is dropped,
    // not allowed to stall the broker.
    let flood = socket::connect(&path).unwrap();
    let mut sent = 0;
    while sent < 100_000 {
        let frame = if sent == 0 { hello() } else { stats.clone() };
        if socket::send_frame(flood.as_fd(), &frame, &[]).is_err() {
            break;
        }
        sent += 1;
    }
    assert!(sent < 100_000, "a client that never reads was not dropped");

    // Random bytes of every length up to a few hundred.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in 0..300usize {
        let s = socket::connect(&path).unwrap();
        let mut frame = Vec::with_capacity(len);
        for _ in 0..len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            frame.push(x as u8);
        }
        if len >= 2 {
            frame[..2].copy_from_slice(b"RB");
        }
        let _ = socket::send_frame(s.as_fd(), &frame, &[]);
    }

    // The broker is alive and serves a good client.
    let client = Client::connect(&path).unwrap();
    let mut p = client
        .publisher("after.garbage", cfg(Mode::Overwrite))
        .unwrap();
    let mut s = client
        .subscriber(
            "after.garbage",
            SubscribeOptions {
                start: Start::Earliest,
                ..Default::default()
            },
        )
        .unwrap();
    p.publish(b"fine", 0).unwrap();
    let mut buf = [0u8; 64];
    let d = s.recv_timeout(&mut buf, PATIENCE).unwrap();
    assert_eq!(&buf[..d.info.len], b"fine");
    let stats = client.stats().unwrap();
    assert!(stats.frames_rejected >= 10, "{stats:?}");
}

#[test]
fn no_broker_error_says_what_to_do() {
    let dir = TestDir::new("api-nobroker");
    let e = Client::connect(dir.socket()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, ClientError::Control(ConnectionError::NoBroker { .. })),
        "{e:?}"
    );
    assert!(
        msg.contains("no broker at") && msg.contains("ringbus serve"),
        "{msg}"
    );
}

#[test]
fn subscriber_wait_unblocks_on_new_ring() {
    let dir = TestDir::new("api-wait");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut sub = client
        .subscriber(
            "w",
            SubscribeOptions {
                start: Start::Latest,
                wait: ringbus::wait::WaitStrategy::Block,
            },
        )
        .unwrap();
    let path = dir.socket();
    let t = std::thread::spawn(move || {
        let c = Client::connect(&path).unwrap();
        let mut p = c.publisher("w", cfg(Mode::Overwrite)).unwrap();
        p.publish(b"late", 9).unwrap();
        // Keep the ring alive until the subscriber has read it.
        std::thread::sleep(Duration::from_millis(200));
    });
    let mut buf = [0u8; 64];
    let d = sub.recv_timeout(&mut buf, PATIENCE).unwrap();
    assert_eq!(&buf[..d.info.len], b"late");
    assert_eq!(d.info.tag, 9);
    t.join().unwrap();
}

#[test]
fn a_busy_ring_does_not_hide_a_new_one() {
    // A subscriber whose one ring always has a message ready never finds
    // it empty; it still looks for new rings every 64 messages, for each
    // wait strategy's receive.
    for wait in [
        ringbus::wait::WaitStrategy::Spin,
        ringbus::wait::WaitStrategy::Block,
    ] {
        let dir = TestDir::new("api-busy");
        let _b = BrokerThread::start(&dir, Config::default());
        let client = Client::connect(dir.socket()).unwrap();
        let opts = SubscribeOptions {
            start: Start::Earliest,
            wait,
        };
        let mut sub = client.subscriber("busy", opts).unwrap();
        let busy = TopicConfig {
            capacity: 1024,
            ..cfg(Mode::Backpressure)
        };
        let mut p1 = client.publisher("busy", busy).unwrap();
        for i in 0..1000u32 {
            p1.publish(&i.to_le_bytes(), 1).unwrap();
        }
        let mut buf = [0u8; 64];
        assert_eq!(recv(&mut sub, &mut buf).0, p1.ring_id());
        let other = Client::connect(dir.socket()).unwrap();
        let mut p2 = other.publisher_existing("busy").unwrap();
        p2.publish(b"new", 2).unwrap();
        let mut seen = None;
        for n in 1..1000 {
            let (ring, _) = recv(&mut sub, &mut buf);
            if ring == p2.ring_id() {
                seen = Some(n);
                break;
            }
        }
        let n = seen.expect("the new ring's message");
        assert!(
            n <= 66,
            "found after {n} messages of the busy ring ({wait:?})"
        );
    }
}

#[test]
fn a_ring_whose_publisher_left_before_mapping_it_hides_no_later_ring() {
    let dir = TestDir::new("api-unmapped");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut sub = client
        .subscriber("half", SubscribeOptions::default())
        .unwrap();
    // A publisher that gets its ring and goes before saying it mapped it
    // (killed in the middle of its attach).
    let mut half = Connection::connect(&dir.socket(), "half-publisher").unwrap();
    let (reply, _fds) = half
        .call(&Request::AttachPublisher {
            topic: "half".into(),
            config: Some(cfg(Mode::Backpressure)),
        })
        .unwrap();
    assert!(
        matches!(reply, Reply::PublisherAttached { .. }),
        "{reply:?}"
    );
    // A ring after it, listed at once; the subscriber looks while the
    // first one is still being attached, and is told to wait for it.
    let mut p = client.publisher_existing("half").unwrap();
    p.publish(b"after", 1).unwrap();
    let mut buf = [0u8; 64];
    let _ = sub.recv_timeout(&mut buf, Duration::from_millis(50));
    drop(half);
    // The first ring will never be listed: the second one is.
    assert_eq!(recv(&mut sub, &mut buf), (p.ring_id(), b"after".to_vec()));
}

#[test]
fn a_subscriber_is_never_listed_a_ring_past_one_not_yet_mapped() {
    let dir = TestDir::new("api-gap");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    // Ring 1: its publisher has it, and has not said it mapped it yet.
    let mut first = Connection::connect(&dir.socket(), "slow-publisher").unwrap();
    let (reply, _fds) = first
        .call(&Request::AttachPublisher {
            topic: "gap".into(),
            config: Some(cfg(Mode::Backpressure)),
        })
        .unwrap();
    let Reply::PublisherAttached {
        lease: first_lease,
        ring_id: first_ring,
        ..
    } = reply
    else {
        panic!("{reply:?}")
    };
    // Ring 2, after it, mapped and written.
    let mut second = client.publisher_existing("gap").unwrap();
    second.publish(b"two", 2).unwrap();
    assert!(first_ring < second.ring_id());
    // A subscriber arrives in between.
    let mut conn = Connection::connect(&dir.socket(), "gap-subscriber").unwrap();
    let (reply, _fds) = conn
        .call(&Request::Subscribe {
            topic: "gap".into(),
            start: Start::Earliest,
            held: vec![],
        })
        .unwrap();
    let Reply::Subscribed { lease, rings, .. } = reply else {
        panic!("{reply:?}")
    };
    let mut told: Vec<u64> = rings.iter().map(|r| r.ring_id).collect();
    // Ring 1 is mapped; the subscriber asks for the rings after the last
    // it holds, as the client does.
    first
        .call(&Request::RingReady { lease: first_lease })
        .unwrap();
    let (reply, _fds) = conn
        .call(&Request::FetchRings {
            lease,
            after: told.last().copied().unwrap_or(0),
        })
        .unwrap();
    let Reply::Rings { rings, .. } = reply else {
        panic!("{reply:?}")
    };
    told.extend(rings.iter().map(|r| r.ring_id));
    // Both rings, in order, each once: ring 1 is not hidden behind ring 2
    // (where its port, at 0, would hold its publisher back for good).
    assert_eq!(told, vec![first_ring, second.ring_id()]);
    assert!(rings.iter().all(|r| r.port.is_some()), "{rings:?}");
}

#[test]
fn backpressure_ring_that_appears_later_misses_nothing() {
    let dir = TestDir::new("api-reserve");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut sub = client
        .subscriber(
            "bp",
            SubscribeOptions {
                start: Start::Latest,
                ..Default::default()
            },
        )
        .unwrap();
    let other = Client::connect(dir.socket()).unwrap();
    let mut p = other.publisher("bp", cfg(Mode::Backpressure)).unwrap();
    // The subscriber has not even looked at the new ring, yet the broker
    // holds a cursor for it: the publisher can fill the ring, no more.
    let mut n = 0u64;
    loop {
        match p.try_publish(&n.to_le_bytes(), n) {
            Ok(_) => n += 1,
            Err(ringbus::ring::PublishError::Full) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(
            n <= 64,
            "the publisher was not gated by the reserved cursor"
        );
    }
    assert_eq!(n, 64);
    let mut buf = [0u8; 64];
    for i in 0..n {
        let d = sub.recv_timeout(&mut buf, PATIENCE).unwrap();
        assert_eq!(d.info.seq, i);
        assert_eq!(&buf[..8], &i.to_le_bytes());
    }
    p.try_publish(b"more", 0).unwrap();

    // A subscriber that leaves before fetching a reserved ring does not
    // keep gating it.
    let quitter = client
        .subscriber("bp2", SubscribeOptions::default())
        .unwrap();
    let mut p2 = other.publisher("bp2", cfg(Mode::Backpressure)).unwrap();
    assert_eq!(
        other
            .topics()
            .unwrap()
            .iter()
            .find(|t| t.name == "bp2")
            .unwrap()
            .rings[0]
            .cursors,
        1
    );
    drop(quitter);
    for i in 0..200u64 {
        p2.publish_timeout(&i.to_le_bytes(), i, PATIENCE).unwrap();
    }
}

#[test]
fn topics_report_lag_and_drops_of_overwrite_subscribers() {
    let dir = TestDir::new("api-drops");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let small = TopicConfig {
        capacity: 4,
        ..cfg(Mode::Overwrite)
    };
    let mut p = client.publisher("md.drops", small).unwrap();
    let mut sub = client
        .subscriber("md.drops", SubscribeOptions::default())
        .unwrap();
    for i in 0..20u64 {
        p.publish(b"m", i).unwrap();
    }
    let ring = |client: &Client| {
        client
            .topics()
            .unwrap()
            .into_iter()
            .find(|t| t.name == "md.drops")
            .unwrap()
            .rings[0]
            .clone()
    };
    let before = ring(&client);
    assert_eq!(
        (before.cursors, before.lag(), before.dropped),
        (1, Some(20), 0)
    );
    let mut buf = [0u8; 64];
    assert_eq!(
        sub.try_recv(&mut buf).unwrap_err(),
        RecvError::Lagged { missed: 16 }
    );
    assert_eq!(sub.try_recv(&mut buf).unwrap().info.seq, 16);
    let after = ring(&client);
    assert_eq!((after.lag(), after.dropped), (Some(3), 16));
}

/// Publishes until `cond` holds (the publisher picks up mailbox changes at
/// its next publish, at most once a millisecond), for at most 5 s.
fn publish_until(
    p: &mut ringbus::client::Publisher,
    mut cond: impl FnMut(&ringbus::client::Publisher) -> bool,
) -> bool {
    for i in 0..5000u64 {
        if cond(p) {
            return true;
        }
        p.publish(&i.to_le_bytes(), 0).unwrap();
        std::thread::sleep(Duration::from_millis(1));
    }
    cond(p)
}

#[test]
fn read_only_subscribers_get_mailboxes_their_publisher_writes() {
    let dir = TestDir::new("api-mailbox");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let mut p = client.publisher("mb", cfg(Mode::Overwrite)).unwrap();
    assert_eq!(p.mailboxes(), 0);
    let other = Client::connect(dir.socket()).unwrap();
    let mut s1 = other.subscriber("mb", SubscribeOptions::default()).unwrap();
    let mut s2 = other.subscriber("mb", SubscribeOptions::default()).unwrap();
    assert!(
        publish_until(&mut p, |p| p.mailboxes() == 2),
        "publisher never took the mailboxes"
    );
    // Both read every message from here on (whatever path each takes).
    let mut buf = [0u8; 64];
    for s in [&mut s1, &mut s2] {
        while s.try_recv(&mut buf).is_ok() {}
    }
    for n in 0..100u64 {
        p.publish(&n.to_le_bytes(), n).unwrap();
        for s in [&mut s1, &mut s2] {
            let d = s.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap();
            assert_eq!((d.info.tag, &buf[..8]), (n, &n.to_le_bytes()[..]));
        }
    }
    // A subscriber that leaves takes its mailbox with it.
    drop(s1);
    assert!(
        publish_until(&mut p, |p| p.mailboxes() == 1),
        "mailbox of a gone subscriber kept"
    );
    while s2.try_recv(&mut buf).is_ok() {}
    p.publish(b"last", 7).unwrap();
    let d = s2.recv_timeout(&mut buf, Duration::from_secs(5)).unwrap();
    assert_eq!(&buf[..d.info.len], b"last");

    // Only a publisher lease has a ring to declare ready.
    let mut conn = Connection::connect(&dir.socket(), "mb-test").unwrap();
    let (reply, _) = conn
        .call(&Request::Subscribe {
            topic: "mb".into(),
            start: Start::Latest,
            held: vec![],
        })
        .unwrap();
    let Reply::Subscribed { lease, .. } = reply else {
        panic!("{reply:?}")
    };
    match conn.call(&Request::RingReady { lease }) {
        Err(ConnectionError::Refused { code, message }) => {
            assert_eq!(code, ErrorCode::NotFound);
            assert!(message.contains("not a publisher lease"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    match conn.call(&Request::RingReady { lease: 999_999 }) {
        Err(ConnectionError::Refused { code, .. }) => assert_eq!(code, ErrorCode::NotFound),
        other => panic!("{other:?}"),
    }
}

#[test]
fn trusted_subscribers_get_no_mailbox() {
    let dir = TestDir::new("api-mailbox-trusted");
    let mut config = Config::default();
    config.server.trusted_subscribers = true;
    let _b = BrokerThread::start(&dir, config);
    let client = Client::connect(dir.socket()).unwrap();
    let mut p = client.publisher("t", cfg(Mode::Overwrite)).unwrap();
    let mut conn = Connection::connect(&dir.socket(), "trusted-test").unwrap();
    let (reply, fds) = conn
        .call(&Request::Subscribe {
            topic: "t".into(),
            start: Start::Latest,
            held: vec![],
        })
        .unwrap();
    let Reply::Subscribed { rings, .. } = reply else {
        panic!("{reply:?}")
    };
    assert!(!rings[0].port.unwrap().mailbox);
    assert_eq!(fds.len(), 4, "segment, data, lobby, port");
    p.publish(b"x", 0).unwrap();
    assert_eq!(p.mailboxes(), 0);
}

#[test]
fn the_longest_topic_name_works_and_a_longer_one_is_refused() {
    let dir = TestDir::new("api-longname");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    let longest = "n".repeat(ringbus::control::MAX_TOPIC_NAME_LEN);
    let mut sub = client
        .subscriber(
            &longest,
            SubscribeOptions {
                start: Start::Earliest,
                ..Default::default()
            },
        )
        .unwrap();
    let mut p = client.publisher(&longest, cfg(Mode::Overwrite)).unwrap();
    p.publish(b"long", 1).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(recv(&mut sub, &mut buf).1, b"long");
    let longer = format!("{longest}n");
    let e = client
        .publisher(&longer, cfg(Mode::Overwrite))
        .unwrap_err()
        .to_string();
    assert!(e.contains("limit is 233"), "{e}");
    let e = client
        .subscriber(&longer, SubscribeOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("limit is 233"), "{e}");
}

/// Found by the `broker_session` fuzz target: closed rings are kept until
/// every subscriber of the topic has been told about them, and publishers
/// that came and went while a subscriber never fetched piled up past the 64
/// rings a reply carries; then no client could list topics (every
/// ListTopics answered "cannot encode frame") and the subscriber's
/// FetchRings failed the same way.
#[test]
fn rings_kept_for_a_subscriber_that_never_fetches_stay_within_a_reply() {
    use ringbus::control::frame::MAX_RINGS_PER_TOPIC;
    let dir = TestDir::new("api-kept-rings");
    let _b = BrokerThread::start(&dir, Config::default());
    let mut sub = Connection::connect(&dir.socket(), "lagging").unwrap();
    let topic = "kept".to_owned();
    let Reply::Subscribed {
        lease: sub_lease, ..
    } = sub
        .call(&Request::Subscribe {
            topic: topic.clone(),
            start: ringbus::ring::Start::Latest,
            held: vec![],
        })
        .unwrap()
        .0
    else {
        panic!("Subscribe not answered with Subscribed");
    };
    let mut churn = Connection::connect(&dir.socket(), "churn").unwrap();
    let attach = Request::AttachPublisher {
        topic: topic.clone(),
        config: Some(cfg(Mode::Overwrite)),
    };
    // Rings never mapped by their publisher carry nothing: they go at once.
    for _ in 0..2 * MAX_RINGS_PER_TOPIC {
        let Reply::PublisherAttached { lease, .. } = churn.call(&attach).unwrap().0 else {
            panic!("AttachPublisher not answered with PublisherAttached");
        };
        churn.call(&Request::Detach { lease }).unwrap();
    }
    // Rings that were: kept until the subscriber has been told.
    for _ in 0..MAX_RINGS_PER_TOPIC {
        let Reply::PublisherAttached { lease, .. } = churn.call(&attach).unwrap().0 else {
            panic!("AttachPublisher not answered with PublisherAttached");
        };
        churn.call(&Request::RingReady { lease }).unwrap();
        churn.call(&Request::Detach { lease }).unwrap();
    }
    // The topic holds as many rings as a reply carries: one more is
    // refused, saying why...
    match churn.call(&attach) {
        Err(ConnectionError::Refused {
            code: ErrorCode::LimitExceeded,
            message,
        }) => assert!(message.contains("not fetched"), "{message}"),
        other => panic!("a 65th ring: {other:?}"),
    }
    // ...and every reply about the topic still encodes.
    match churn.call(&Request::ListTopics { offset: 0 }).unwrap().0 {
        Reply::Topics { topics, .. } => {
            assert_eq!(topics[0].rings.len(), MAX_RINGS_PER_TOPIC);
        }
        other => panic!("ListTopics answered with {other:?}"),
    }
    let (reply, fds) = sub
        .call(&Request::FetchRings {
            lease: sub_lease,
            after: 0,
        })
        .unwrap();
    let Reply::Rings { rings, .. } = reply else {
        panic!("FetchRings answered with {reply:?}");
    };
    assert_eq!(rings.len(), MAX_RINGS_PER_TOPIC);
    // Data, lobby and the subscriber's port (made when the ring appeared).
    assert_eq!(fds.len(), 3 * MAX_RINGS_PER_TOPIC);
    // Told about them, the subscriber no longer holds them: the closed
    // rings go and a publisher is admitted again.
    assert!(matches!(
        churn.call(&attach).unwrap().0,
        Reply::PublisherAttached { .. }
    ));
}

/// A process with signal handlers (SIGCHLD, a profiler, Python's) gets
/// its blocking calls interrupted: its control connection must survive.
#[test]
fn a_signal_does_not_break_a_control_connection() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    extern "C" fn nothing(_: libc::c_int) {}
    let dir = TestDir::new("api-eintr");
    let _b = BrokerThread::start(&dir, Config::default());
    let client = Client::connect(dir.socket()).unwrap();
    // SAFETY: installs a handler that does nothing, without SA_RESTART, so
    // that a blocking call the signal interrupts fails with EINTR.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = nothing as extern "C" fn(libc::c_int) as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut()), 0);
    }
    // SAFETY: plain FFI call with no arguments.
    let me = unsafe { libc::pthread_self() };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let pester = std::thread::spawn(move || {
        let mut sent = 0u64;
        while !flag.load(Ordering::Relaxed) {
            // SAFETY: `me` is the test's thread, alive until `stop` is set
            // and this thread joined.
            unsafe { libc::pthread_kill(me, libc::SIGUSR1) };
            sent += 1;
            std::thread::sleep(Duration::from_micros(20));
        }
        sent
    });
    for i in 0..3000 {
        client
            .topics()
            .unwrap_or_else(|e| panic!("call {i} failed under signals: {e}"));
    }
    stop.store(true, Ordering::Relaxed);
    assert!(pester.join().unwrap() > 0);
}
