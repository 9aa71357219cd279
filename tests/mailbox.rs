//! Mailboxes over real memfd mappings: a read-only subscriber reads its
//! mailbox (mapped read-write) and the ring (mapped read-only); a mailbox
//! descriptor that could be resized under the publisher, or that belongs
//! to another ring, is refused.

use std::fs::File;

use ringbus::ring::{Consumer, Mode, Producer, RecvError, Start, TopicConfig};
use ringbus::shm::{create_mailbox_memfd, create_ring_memfd, map_mailbox, map_ring, Access};

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
    let (data, ctrl) = create_ring_memfd("mailbox-test", &cfg, 9, std::process::id()).unwrap();
    let mut producer =
        Producer::new(map_ring(&data, &ctrl, Access::ReadWrite, None).unwrap()).unwrap();
    let ro = map_ring(&data, &ctrl, Access::Subscriber, Some(&cfg)).unwrap();
    assert!(
        !ro.polls_latest(),
        "a read-only mapping never polls the shared slot"
    );
    let mut consumer = Consumer::new(ro, Start::Earliest).unwrap();
    let mb = create_mailbox_memfd(&cfg, 9).unwrap();
    consumer
        .attach_mailbox(map_mailbox(&mb, &cfg, 9).unwrap())
        .unwrap();
    for n in 0..5 {
        producer.publish(&message(n), n).unwrap();
    }
    producer
        .add_mailbox(map_mailbox(&mb, &cfg, 9).unwrap())
        .unwrap();
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
fn a_mailbox_cannot_be_resized_once_handed_out() {
    let cfg = config();
    let mb = create_mailbox_memfd(&cfg, 1).unwrap();
    let len = mb.metadata().unwrap().len();
    assert!(
        mb.set_len(0).is_err(),
        "shrinking would SIGBUS the other side"
    );
    assert!(mb.set_len(len * 2).is_err());
    assert_eq!(mb.metadata().unwrap().len(), len);
}

#[test]
fn unsealed_foreign_or_short_mailboxes_are_refused() {
    let cfg = config();
    // A plain memfd of the right size, not sealed: its creator could
    // truncate it and kill the publisher.
    let fd = rustix::fs::memfd_create("unsealed", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
    let unsealed = File::from(fd);
    unsealed.set_len(4096).unwrap();
    let e = map_mailbox(&unsealed, &cfg, 1).unwrap_err().to_string();
    assert!(e.contains("sealed"), "{e}");
    // A regular file cannot be sealed at all.
    let dir = std::env::temp_dir().join(format!("ringbus-mailbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = File::create(dir.join("plain")).unwrap();
    plain.set_len(4096).unwrap();
    assert!(map_mailbox(&plain, &cfg, 1).is_err());
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
    rustix::fs::fcntl_add_seals(&garbage, rustix::fs::SealFlags::SHRINK).unwrap();
    let e = map_mailbox(&garbage, &cfg, 1).unwrap_err().to_string();
    assert!(e.contains("magic"), "{e}");
    // Another ring's mailbox, or one made for a smaller max message size
    // (too short, fewer inline bytes).
    let other = create_mailbox_memfd(&cfg, 2).unwrap();
    let e = map_mailbox(&other, &cfg, 1).unwrap_err().to_string();
    assert!(e.contains("ring 2"), "{e}");
    let small = TopicConfig {
        max_message_size: 8,
        ..cfg
    };
    let short = create_mailbox_memfd(&small, 1).unwrap();
    let e = map_mailbox(&short, &cfg, 1).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
}
