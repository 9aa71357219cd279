//! Ports over real memfd mappings: a read-only subscriber reads its port's
//! mailbox (mapped read-write) and the ring (mapped read-only); a port
//! descriptor that could be resized under the publisher, or that belongs
//! to another ring, is refused.

use std::fs::File;

use ringbus::ring::{Consumer, Mode, PortFlags, Producer, RecvError, Start, TopicConfig};
use ringbus::shm::{create_port, create_ring, map_port, map_ring, Access};

fn config() -> TopicConfig {
    TopicConfig {
        max_message_size: 512,
        capacity: 16,
        mode: Mode::Overwrite,
        max_subscribers: 4,
    }
}

fn message(n: u64) -> Vec<u8> {
    // Every fourth message is too long to inline (announced only).
    let len = if n % 4 == 0 {
        512
    } else {
        8 + (n as usize * 13) % 200
    };
    let mut m: Vec<u8> = (0..len).map(|i| (n as u8) ^ (i as u8)).collect();
    m[..8].copy_from_slice(&n.to_le_bytes());
    m
}

#[test]
fn read_only_subscriber_receives_everything_through_its_mailbox() {
    let cfg = config();
    let seg = create_ring(&cfg, 9, std::process::id()).unwrap();
    let mut producer = Producer::new(seg.region.clone()).unwrap();
    let ro = map_ring(&seg.data, &seg.lobby, None, Access::Subscriber, Some(&cfg)).unwrap();
    assert!(
        !ro.polls_latest(),
        "a read-only mapping never polls the shared slot"
    );
    let (file, mine) = create_port(&cfg, 9, 1, 0).unwrap();
    let mut consumer = Consumer::with_port(ro, mine, Start::Earliest, true).unwrap();
    for n in 0..5 {
        producer.publish(&message(n), n).unwrap();
    }
    let flags = PortFlags {
        mailbox: true,
        trusted: false,
    };
    producer
        .add_port(map_port(&file, &cfg, 9).unwrap(), flags)
        .unwrap();
    assert_eq!(producer.mailboxes(), 1);
    let mut buf = vec![0u8; 512];
    for n in 0..40 {
        if n >= 5 {
            producer.publish(&message(n), n).unwrap();
        }
        // The first five are a backlog across the hand-over.
        if n >= 4 {
            while let Ok(info) = consumer.try_recv(&mut buf) {
                let want = info.seq;
                assert_eq!(buf[..info.len], message(want)[..], "message {want}");
                assert_eq!(info.tag, want);
                if want == n {
                    break;
                }
            }
            assert_eq!(consumer.next_seq(), n + 1, "message {n} was not delivered");
        }
    }
    assert_eq!(consumer.try_recv(&mut buf), Err(RecvError::Empty));
    drop(producer);
    assert_eq!(consumer.try_recv(&mut buf), Err(RecvError::EndOfStream));
}

#[test]
fn unsealed_foreign_or_short_ports_are_refused() {
    let cfg = config();
    // A plain memfd of the right size, not sealed: its creator could
    // truncate it and kill the publisher.
    let fd = rustix::fs::memfd_create("unsealed", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let unsealed = File::from(fd);
    unsealed.set_len(4096).unwrap();
    let e = map_port(&unsealed, &cfg, 1).unwrap_err().to_string();
    assert!(e.contains("sealed"), "{e}");
    // A regular file cannot be sealed at all.
    let dir = std::env::temp_dir().join(format!("ringbus-port-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = File::create(dir.join("plain")).unwrap();
    plain.set_len(4096).unwrap();
    assert!(map_port(&plain, &cfg, 1).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
    // A sealed memfd of the right size that is not a mailbox at all.
    let fd = rustix::fs::memfd_create(
        "garbage",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .unwrap();
    let garbage = File::from(fd);
    garbage.set_len(4096).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&garbage, &[0xEE; 64], 0).unwrap();
    rustix::fs::fcntl_add_seals(
        &garbage,
        rustix::fs::SealFlags::SHRINK | rustix::fs::SealFlags::GROW,
    )
    .unwrap();
    let e = map_port(&garbage, &cfg, 1).unwrap_err().to_string();
    assert!(e.contains("magic"), "{e}");
    // Another ring's port, or one made for a smaller max message size
    // (too short, fewer inline bytes).
    let (other, _) = create_port(&cfg, 2, 1, 0).unwrap();
    let e = map_port(&other, &cfg, 1).unwrap_err().to_string();
    assert!(e.contains("ring 2"), "{e}");
    let small = TopicConfig {
        max_message_size: 8,
        ..cfg
    };
    let (short, _) = create_port(&small, 1, 1, 0).unwrap();
    let e = map_port(&short, &cfg, 1).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
}
