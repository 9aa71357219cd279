//! Rings over real shared memory: creation, sealing, validation of hostile
//! segments, read-only subscribers, and a publisher and subscriber in two
//! processes.
//!
//! The other process of a two-process test is this test binary run again
//! with [`CHILD_ROLE`] set (`harness = false`: `main` dispatches on it), so
//! a child's entry point is not a test that passes by returning. Children
//! inherit the segments' descriptors; their numbers come in
//! [`CHILD_FDS`].

use ringbus::ring::{
    AttachError, Consumer, Mode, PortFlags, Producer, RecvError, Start, TopicConfig,
};
use ringbus::shm::{
    create_port, create_ring, map_port, map_ring, reopen_read_only, seal_data, Access, ShmError,
};
use ringbus::wait::WaitStrategy;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::time::Duration;

use libtest_mimic::{Arguments, Trial};

fn config(mode: Mode) -> TopicConfig {
    TopicConfig {
        max_message_size: 64,
        capacity: 16,
        mode,
        max_subscribers: 4,
    }
}

const NO_FLAGS: PortFlags = PortFlags {
    mailbox: false,
    trusted: false,
};

/// A memfd holding `bytes`, sealed against resizing or not.
fn memfd(bytes: &[u8], sealed: bool) -> File {
    use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
    let mut f = File::from(memfd_create("test", MemfdFlags::ALLOW_SEALING).unwrap());
    f.write_all(bytes).unwrap();
    if sealed {
        fcntl_add_seals(&f, SealFlags::SHRINK | SealFlags::GROW).unwrap();
    }
    f
}

fn create_map_publish_receive() {
    let seg = create_ring(&config(Mode::Overwrite), 7, 1).unwrap();
    assert_eq!(seg.region.ring_id(), 7);
    let sub_region = map_ring(
        &reopen_read_only(&seg.data).unwrap(),
        &seg.lobby,
        None,
        Access::Subscriber,
        None,
    )
    .unwrap();
    let mut p = Producer::new(seg.region.clone()).unwrap();
    let mut s = Consumer::new(sub_region.clone(), Start::Latest).unwrap();
    p.publish(b"over the mapping", 3).unwrap();
    let mut buf = [0u8; 64];
    let i = s.try_recv(&mut buf).unwrap();
    assert_eq!((&buf[..i.len], i.tag), (&b"over the mapping"[..], 3));
    assert_eq!(i.timestamp, 0, "publish timestamps are off by default");
    p.set_timestamps(true);
    p.publish(b"stamped", 4).unwrap();
    let i = s.try_recv(&mut buf).unwrap();
    assert_eq!((&buf[..i.len], i.tag), (&b"stamped"[..], 4));
    assert!(i.timestamp > 0, "set_timestamps(true) stamps messages");
    // A read-only mapping cannot make a publisher, nor close the ring, nor
    // add ports to it; nor can a writable one without the ring's desk.
    assert!(Producer::new(sub_region.clone()).is_err());
    assert!(sub_region.close().is_err());
    let no_desk = map_ring(&seg.data, &seg.lobby, None, Access::ReadWrite, None).unwrap();
    assert!(Producer::new(no_desk).is_err());
    let (_, port) = create_port(&config(Mode::Overwrite), 7, 1, 0).unwrap();
    assert!(sub_region.admit_port(&port).is_err());
}

fn a_mapped_backpressure_ring_needs_a_port() {
    let seg = create_ring(&config(Mode::Backpressure), 1, 1).unwrap();
    let sub = map_ring(&seg.data, &seg.lobby, None, Access::Subscriber, None).unwrap();
    assert!(matches!(
        Consumer::new(sub.clone(), Start::Latest),
        Err(AttachError::NoPort)
    ));
    // With one, made by the ring's creator, queued for the producer and
    // admitted, nothing is overwritten before it is read.
    let mut p = Producer::new(seg.region.clone()).unwrap();
    let (file, port) = create_port(&config(Mode::Backpressure), 1, 9, 0).unwrap();
    p.add_port(port, NO_FLAGS).unwrap();
    let mine = map_port(&file, &config(Mode::Backpressure), 1).unwrap();
    let mut c = Consumer::with_port(sub, mine, Start::Earliest, false).unwrap();
    for i in 0..16u64 {
        p.try_publish(&i.to_le_bytes(), i).unwrap();
    }
    assert!(
        p.try_publish(b"x", 0).is_err(),
        "full: the port holds it back"
    );
    // The subscriber releases what it read in batches, and all of it once
    // it finds the ring empty: then the whole ring is the publisher's.
    let mut buf = [0u8; 64];
    for i in 0..16u64 {
        assert_eq!(c.try_recv(&mut buf).unwrap().seq, i);
    }
    assert!(matches!(c.try_recv(&mut buf), Err(RecvError::Empty)));
    for i in 16..32u64 {
        assert_eq!(p.try_publish(&i.to_le_bytes(), i).unwrap(), i);
    }
    assert!(p.try_publish(b"x", 0).is_err(), "full again");
}

fn segments_are_sealed_and_only_sealed_ones_are_mapped() {
    use rustix::fs::{fcntl_get_seals, SealFlags};
    let cfg = config(Mode::Overwrite);
    let seg = create_ring(&cfg, 1, 1).unwrap();
    let (port, _) = create_port(&cfg, 1, 1, 0).unwrap();
    for f in [&seg.data, &seg.lobby, &seg.desk, &port] {
        let seals = fcntl_get_seals(f).unwrap();
        assert!(seals.contains(SealFlags::SHRINK | SealFlags::GROW));
        assert!(f.set_len(0).is_err() && f.set_len(1 << 30).is_err());
    }
    // Once its publisher has mapped it, nobody can write the data through
    // any new mapping or write(), whatever descriptor they hold.
    let publisher = map_ring(
        &seg.data,
        &seg.lobby,
        Some(&seg.desk),
        Access::ReadWrite,
        None,
    )
    .unwrap();
    seal_data(&seg.data).unwrap();
    assert!(map_ring(&seg.data, &seg.lobby, None, Access::ReadWrite, None).is_err());
    let mut d = seg.data.try_clone().unwrap();
    assert!(d.write_all(b"scribble").is_err());
    // The mappings made before still write.
    let mut p = Producer::new(publisher).unwrap();
    p.publish(b"still", 1).unwrap();
    // An unsealed segment is refused, whatever it holds.
    let mut copy = vec![0u8; seg.region.sizes().data_len as usize];
    rustix::io::pread(&seg.data, &mut copy, 0).unwrap();
    let unsealed = memfd(&copy, false);
    let e = map_ring(&unsealed, &seg.lobby, None, Access::Subscriber, None).unwrap_err();
    assert!(e.to_string().contains("not sealed"), "{e}");
    let e = map_port(&memfd(&[0u8; 4096], false), &cfg, 1).unwrap_err();
    assert!(e.to_string().contains("not sealed"), "{e}");
}

fn read_only_descriptor_cannot_be_mapped_writable() {
    let seg = create_ring(&config(Mode::Overwrite), 1, 1).unwrap();
    let ro = reopen_read_only(&seg.data).unwrap();
    let e = map_ring(&ro, &seg.lobby, None, Access::ReadWrite, None).unwrap_err();
    assert!(matches!(e, ShmError::Io { .. }), "{e}");
}

fn config_mismatch_is_reported() {
    let seg = create_ring(&config(Mode::Overwrite), 1, 1).unwrap();
    let want = TopicConfig {
        capacity: 32,
        ..config(Mode::Overwrite)
    };
    match map_ring(&seg.data, &seg.lobby, None, Access::ReadWrite, Some(&want)) {
        Err(ShmError::Attach(AttachError::ConfigMismatch {
            field: "capacity", ..
        })) => {}
        other => panic!("{:?}", other.err()),
    }
    let want = config(Mode::Backpressure);
    assert!(matches!(
        map_ring(&seg.data, &seg.lobby, None, Access::ReadWrite, Some(&want)),
        Err(ShmError::Attach(AttachError::ConfigMismatch {
            field: "mode",
            ..
        }))
    ));
}

fn corrupt(offset: u64, bytes: &[u8]) -> Result<(), ShmError> {
    let seg = create_ring(&config(Mode::Overwrite), 1, 1).unwrap();
    let mut d = seg.data.try_clone().unwrap();
    d.seek(SeekFrom::Start(offset)).unwrap();
    d.write_all(bytes).unwrap();
    map_ring(&seg.data, &seg.lobby, None, Access::ReadWrite, None).map(drop)
}

fn hostile_headers_are_typed_errors() {
    assert!(matches!(
        corrupt(0, b"NOTARING"),
        Err(ShmError::Attach(AttachError::BadMagic {
            segment: "data",
            ..
        }))
    ));
    assert!(matches!(
        corrupt(8, &9u32.to_le_bytes()),
        Err(ShmError::Attach(AttachError::Version { found: 9, .. }))
    ));
    assert!(matches!(
        corrupt(12, &2u32.to_le_bytes()),
        Err(ShmError::Attach(AttachError::Kind { .. }))
    ));
    // capacity 3: not a power of two
    assert!(matches!(
        corrupt(24, &3u32.to_le_bytes()),
        Err(ShmError::Attach(AttachError::Corrupt(_)))
    ));
    // capacity 2^20: valid alone, but the segment is far too short for it
    assert!(matches!(
        corrupt(24, &(1u32 << 20).to_le_bytes()),
        Err(ShmError::Attach(AttachError::Truncated { .. }))
    ));
    // mode 7
    assert!(matches!(
        corrupt(28, &7u32.to_le_bytes()),
        Err(ShmError::Attach(AttachError::Corrupt(_)))
    ));
    // slot stride that disagrees with the config
    assert!(matches!(
        corrupt(32, &4096u32.to_le_bytes()),
        Err(ShmError::Attach(AttachError::Corrupt(_)))
    ));
    // Any subscriber may write the lobby: scribbling over all of it locks
    // nobody out of the ring.
    let seg = create_ring(&config(Mode::Overwrite), 1, 1).unwrap();
    let mut l = seg.lobby.try_clone().unwrap();
    l.write_all(&[0xa5; 256]).unwrap();
    map_ring(
        &reopen_read_only(&seg.data).unwrap(),
        &seg.lobby,
        None,
        Access::Subscriber,
        None,
    )
    .unwrap();
}

fn truncated_swapped_and_empty_segments_are_typed_errors() {
    let seg = create_ring(&config(Mode::Overwrite), 1, 1).unwrap();
    // Data and lobby swapped.
    assert!(matches!(
        map_ring(&seg.lobby, &seg.data, None, Access::ReadWrite, None),
        Err(ShmError::Attach(_))
    ));
    // A copy of the data segment cut short (sealed, so it is looked at).
    let mut copy = vec![0u8; seg.region.sizes().data_len as usize];
    rustix::io::pread(&seg.data, &mut copy, 0).unwrap();
    for len in [1000, 100, 0] {
        let cut = memfd(&copy[..len], true);
        assert!(
            matches!(
                map_ring(&cut, &seg.lobby, None, Access::ReadWrite, None),
                Err(ShmError::Attach(AttachError::Truncated { .. }))
            ),
            "{len} bytes"
        );
    }
    let junk = memfd(&[0xA5u8; 8192], true);
    assert!(matches!(
        map_ring(&junk, &junk, None, Access::ReadWrite, None),
        Err(ShmError::Attach(AttachError::BadMagic { .. }))
    ));
    assert!(matches!(
        map_port(&junk, &config(Mode::Overwrite), 1),
        Err(ShmError::Attach(AttachError::BadMagic { .. }))
    ));
    assert!(matches!(
        map_port(&memfd(&[0u8; 100], true), &config(Mode::Overwrite), 1),
        Err(ShmError::Attach(AttachError::Truncated { .. }))
    ));
    // A port of another ring.
    let (other, _) = create_port(&config(Mode::Overwrite), 2, 1, 0).unwrap();
    assert!(matches!(
        map_port(&other, &config(Mode::Overwrite), 1),
        Err(ShmError::Attach(AttachError::Corrupt(_)))
    ));
}

fn invalid_config_is_refused_at_creation() {
    let bad = TopicConfig {
        capacity: 6,
        ..config(Mode::Overwrite)
    };
    assert!(matches!(create_ring(&bad, 1, 1), Err(ShmError::Config(_))));
    assert!(matches!(
        create_port(&bad, 1, 1, 0),
        Err(ShmError::Config(_))
    ));
}

/// Set in a child process to the role it plays.
const CHILD_ROLE: &str = "RINGBUS_TEST_CHILD_ROLE";
/// The descriptors a child inherits, as numbers: data, lobby, port.
const CHILD_FDS: &str = "RINGBUS_TEST_CHILD_FDS";
const MESSAGES: u64 = 200_000;

/// This test binary as a child playing `role`, inheriting `fds`.
fn child(role: &str, fds: &[&File]) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    for f in fds {
        // Inherited across exec: the child closes them when it is done.
        rustix::io::fcntl_setfd(f.as_fd(), rustix::io::FdFlags::empty()).unwrap();
    }
    let nums: Vec<String> = fds.iter().map(|f| f.as_raw_fd().to_string()).collect();
    c.env(CHILD_ROLE, role).env(CHILD_FDS, nums.join(","));
    c
}

/// The descriptors the parent passed.
fn inherited() -> Vec<File> {
    std::env::var(CHILD_FDS)
        .expect("a child's descriptors")
        .split(',')
        .map(|n| {
            let fd: i32 = n.parse().unwrap();
            // SAFETY: the parent cleared close-on-exec on these descriptors
            // for this child; nothing else in this process owns them.
            File::from(unsafe { OwnedFd::from_raw_fd(fd) })
        })
        .collect()
}

/// The subscriber side of `two_processes_over_a_mapped_ring`, in its own
/// process, with the data mapped read-only and its own port.
fn child_subscriber() {
    let fds = inherited();
    let cfg = config(Mode::Backpressure);
    let region = map_ring(&fds[0], &fds[1], None, Access::Subscriber, Some(&cfg)).unwrap();
    let port = map_port(&fds[2], &cfg, 1).unwrap();
    let mut c = Consumer::with_port(region, port, Start::Earliest, true).unwrap();
    let mut buf = [0u8; 64];
    let mut n = 0u64;
    loop {
        match c.recv_timeout(&mut buf, WaitStrategy::default(), Duration::from_secs(60)) {
            Ok(i) => {
                assert_eq!(i.seq, n);
                // The publisher's clock (another process, TSC-based) agrees
                // with ours: a message is never stamped in our future.
                assert!(
                    i.timestamp > 0 && i.timestamp <= ringbus::ring::monotonic_ns() + 1_000_000
                );
                let len = 8 + (n % 57) as usize;
                assert_eq!(i.len, len);
                assert_eq!(&buf[..8], &n.to_le_bytes());
                assert!(
                    buf[8..len].iter().all(|&b| b == n as u8),
                    "torn message {n}"
                );
                n += 1;
            }
            Err(RecvError::EndOfStream) => break,
            Err(e) => panic!("child: {e}"),
        }
    }
    assert_eq!(
        n, MESSAGES,
        "back-pressure: every message crosses, none lost"
    );
}

fn two_processes_over_a_mapped_ring() {
    let cfg = config(Mode::Backpressure);
    let seg = create_ring(&cfg, 1, std::process::id()).unwrap();
    let (port_file, port) = create_port(&cfg, 1, 1, 0).unwrap();
    let mut p = Producer::new(seg.region.clone()).unwrap();
    // The child's port, at 0: back-pressure holds every message for it.
    p.add_port(
        port,
        PortFlags {
            mailbox: true,
            trusted: false,
        },
    )
    .unwrap();
    seal_data(&seg.data).unwrap();
    let ro = reopen_read_only(&seg.data).unwrap();
    let mut child = child("subscriber", &[&ro, &seg.lobby, &port_file])
        .spawn()
        .unwrap();
    p.set_timestamps(true);
    let mut msg = [0u8; 64];
    for n in 0..MESSAGES {
        let len = 8 + (n % 57) as usize;
        msg[..8].copy_from_slice(&n.to_le_bytes());
        msg[8..len].fill(n as u8);
        p.publish_timeout(&msg[..len], n, Duration::from_secs(60))
            .unwrap();
    }
    drop(p);
    let status = child.wait().unwrap();
    assert!(status.success(), "child failed: {status}");
}

/// The child of `subscriber_cannot_write_message_data`: writes to its
/// read-only mapping of the message data, which must kill it (SIGSEGV)
/// instead of corrupting the stream.
fn child_writes_read_only_mapping() {
    let fds = inherited();
    let region = map_ring(&fds[0], &fds[1], None, Access::Subscriber, None).unwrap();
    let p = region.data_ptr() as *mut u8;
    // SAFETY: not sound by design: this process maps the data read-only,
    // and the point of the test is that the kernel refuses the write.
    unsafe { p.add(200).write_volatile(0xFF) };
    unreachable!("the write above must fault");
}

fn subscriber_cannot_write_message_data() {
    use std::os::unix::process::ExitStatusExt;
    let seg = create_ring(&config(Mode::Overwrite), 1, 1).unwrap();
    let out = child("write-read-only", &[&seg.data, &seg.lobby])
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(11),
        "expected SIGSEGV, got {:?}",
        out.status
    );
}

/// A test of this binary: `f` passes unless it panics.
fn trial(name: &str, f: fn()) -> Trial {
    Trial::test(name, move || {
        f();
        Ok(())
    })
}

fn main() -> std::process::ExitCode {
    if let Ok(role) = std::env::var(CHILD_ROLE) {
        match role.as_str() {
            "subscriber" => child_subscriber(),
            "write-read-only" => child_writes_read_only_mapping(),
            other => panic!("unknown child role {other:?}"),
        }
        return std::process::ExitCode::SUCCESS;
    }
    let args = Arguments::from_args();
    let tests = vec![
        trial("create_map_publish_receive", create_map_publish_receive),
        trial(
            "a_mapped_backpressure_ring_needs_a_port",
            a_mapped_backpressure_ring_needs_a_port,
        ),
        trial(
            "segments_are_sealed_and_only_sealed_ones_are_mapped",
            segments_are_sealed_and_only_sealed_ones_are_mapped,
        ),
        trial(
            "read_only_descriptor_cannot_be_mapped_writable",
            read_only_descriptor_cannot_be_mapped_writable,
        ),
        trial("config_mismatch_is_reported", config_mismatch_is_reported),
        trial(
            "hostile_headers_are_typed_errors",
            hostile_headers_are_typed_errors,
        ),
        trial(
            "truncated_swapped_and_empty_segments_are_typed_errors",
            truncated_swapped_and_empty_segments_are_typed_errors,
        ),
        trial(
            "invalid_config_is_refused_at_creation",
            invalid_config_is_refused_at_creation,
        ),
        trial(
            "two_processes_over_a_mapped_ring",
            two_processes_over_a_mapped_ring,
        ),
        trial(
            "subscriber_cannot_write_message_data",
            subscriber_cannot_write_message_data,
        ),
    ];
    libtest_mimic::run(&args, tests).exit_code()
}
