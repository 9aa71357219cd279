//! Rings over real mapped files: creation, validation of hostile files,
//! read-only subscribers, and a publisher and subscriber in two processes.
//!
//! The other process of a two-process test is this test binary run again
//! with [`CHILD_ROLE`] set (`harness = false`: `main` dispatches on it), so
//! a child's entry point is not a test that passes by returning.

use ringbus::ring::{AttachError, Consumer, Mode, Producer, RecvError, Start, TopicConfig};
use ringbus::shm::{create_ring_files, create_ring_memfd, map_ring, ring_paths, Access, ShmError};
use ringbus::wait::WaitStrategy;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use libtest_mimic::{Arguments, Trial};

/// A fresh directory under /dev/shm (tmpfs), removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            "/dev/shm"
        } else {
            "/tmp"
        };
        let p = PathBuf::from(format!(
            "{base}/ringbus-test-{}-{tag}-{n}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(mode: Mode) -> TopicConfig {
    TopicConfig {
        max_message_size: 64,
        capacity: 16,
        mode,
        max_subscribers: 4,
    }
}

fn open_ro(p: &std::path::Path) -> File {
    File::open(p).unwrap()
}

fn create_map_publish_receive() {
    let dir = TempDir::new("basic");
    let (d, c) = create_ring_files(&dir.0, "r", &config(Mode::Overwrite), 7, 1).unwrap();
    let pub_region = map_ring(&d, &c, Access::ReadWrite, Some(&config(Mode::Overwrite))).unwrap();
    assert_eq!(pub_region.ring_id(), 7);
    let (dp, cp) = ring_paths(&dir.0, "r");
    let sub_region = map_ring(
        &open_ro(&dp),
        &File::options().read(true).write(true).open(&cp).unwrap(),
        Access::Subscriber,
        None,
    )
    .unwrap();
    let mut p = Producer::new(pub_region).unwrap();
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
    // A read-only mapping cannot make a publisher, nor close the ring.
    assert!(Producer::new(sub_region.clone()).is_err());
    assert!(sub_region.close().is_err());
}

fn existing_files_are_not_overwritten() {
    let dir = TempDir::new("exists");
    create_ring_files(&dir.0, "r", &config(Mode::Overwrite), 1, 1).unwrap();
    let e = create_ring_files(&dir.0, "r", &config(Mode::Overwrite), 1, 1).unwrap_err();
    assert!(matches!(e, ShmError::Io { .. }), "{e}");
}

fn read_only_descriptor_cannot_be_mapped_writable() {
    let dir = TempDir::new("ro");
    let (_d, c) = create_ring_files(&dir.0, "r", &config(Mode::Overwrite), 1, 1).unwrap();
    let (dp, _) = ring_paths(&dir.0, "r");
    let e = map_ring(&open_ro(&dp), &c, Access::ReadWrite, None).unwrap_err();
    assert!(matches!(e, ShmError::Io { .. }), "{e}");
}

fn config_mismatch_is_reported() {
    let (d, c) = create_ring_memfd("mismatch", &config(Mode::Overwrite), 1, 1).unwrap();
    let want = TopicConfig {
        capacity: 32,
        ..config(Mode::Overwrite)
    };
    match map_ring(&d, &c, Access::ReadWrite, Some(&want)) {
        Err(ShmError::Attach(AttachError::ConfigMismatch {
            field: "capacity", ..
        })) => {}
        other => panic!("{:?}", other.err()),
    }
    let want = config(Mode::Backpressure);
    assert!(matches!(
        map_ring(&d, &c, Access::ReadWrite, Some(&want)),
        Err(ShmError::Attach(AttachError::ConfigMismatch {
            field: "mode",
            ..
        }))
    ));
}

fn corrupt(offset: u64, bytes: &[u8]) -> Result<(), ShmError> {
    let (mut d, c) = create_ring_memfd("corrupt", &config(Mode::Overwrite), 1, 1).unwrap();
    d.seek(SeekFrom::Start(offset)).unwrap();
    d.write_all(bytes).unwrap();
    map_ring(&d, &c, Access::ReadWrite, None).map(drop)
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
    // capacity 2^20: valid alone, but the file is far too short for it
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
    // max subscribers that disagrees with the control segment
    assert!(matches!(
        corrupt(36, &2u32.to_le_bytes()),
        Err(ShmError::Attach(AttachError::Corrupt(_)))
    ));
    // ring id that disagrees with the control segment
    assert!(matches!(
        corrupt(40, &99u64.to_le_bytes()),
        Err(ShmError::Attach(AttachError::Corrupt(_)))
    ));
}

fn truncated_swapped_and_empty_segments_are_typed_errors() {
    let (d, c) = create_ring_memfd("trunc", &config(Mode::Overwrite), 1, 1).unwrap();
    // Data and control swapped.
    assert!(matches!(
        map_ring(&c, &d, Access::ReadWrite, None),
        Err(ShmError::Attach(AttachError::Kind { .. }))
    ));
    d.set_len(1000).unwrap();
    assert!(matches!(
        map_ring(&d, &c, Access::ReadWrite, None),
        Err(ShmError::Attach(AttachError::Truncated {
            segment: "data",
            ..
        }))
    ));
    d.set_len(100).unwrap();
    assert!(matches!(
        map_ring(&d, &c, Access::ReadWrite, None),
        Err(ShmError::Attach(AttachError::Truncated { .. }))
    ));
    d.set_len(0).unwrap();
    assert!(matches!(
        map_ring(&d, &c, Access::ReadWrite, None),
        Err(ShmError::Attach(AttachError::Truncated { .. }))
    ));
    let dir = TempDir::new("garbage");
    let p = dir.0.join("junk");
    std::fs::write(&p, vec![0xA5u8; 8192]).unwrap();
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    assert!(matches!(
        map_ring(&f, &f, Access::ReadWrite, None),
        Err(ShmError::Attach(AttachError::BadMagic { .. }))
    ));
}

fn invalid_config_is_refused_at_creation() {
    let dir = TempDir::new("badcfg");
    let bad = TopicConfig {
        capacity: 6,
        ..config(Mode::Overwrite)
    };
    assert!(matches!(
        create_ring_files(&dir.0, "r", &bad, 1, 1),
        Err(ShmError::Config(_))
    ));
    assert!(!ring_paths(&dir.0, "r").0.exists(), "no file left behind");
}

/// Set in a child process to the role it plays; its directory is in
/// [`CHILD_DIR`].
const CHILD_ROLE: &str = "RINGBUS_TEST_CHILD_ROLE";
const CHILD_DIR: &str = "RINGBUS_TEST_CHILD_DIR";
const MESSAGES: u64 = 200_000;

/// This test binary as a child playing `role` in `dir`.
fn child(role: &str, dir: &std::path::Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.env(CHILD_ROLE, role).env(CHILD_DIR, dir);
    c
}

/// The subscriber side of `two_processes_over_a_mapped_file`, in its own
/// process, with the data mapped read-only.
fn child_subscriber(dir: &str) {
    let (dp, cp) = ring_paths(std::path::Path::new(&dir), "xproc");
    let ctrl = OpenOptions::new().read(true).write(true).open(&cp).unwrap();
    let region = map_ring(
        &open_ro(&dp),
        &ctrl,
        Access::Subscriber,
        Some(&config(Mode::Backpressure)),
    )
    .unwrap();
    let mut c = Consumer::new(region, Start::Earliest).unwrap();
    std::fs::write(format!("{dir}/ready"), b"1").unwrap();
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
    std::fs::write(format!("{dir}/count"), n.to_string()).unwrap();
}

fn two_processes_over_a_mapped_file() {
    let dir = TempDir::new("xproc");
    let (d, c) = create_ring_files(
        &dir.0,
        "xproc",
        &config(Mode::Backpressure),
        1,
        std::process::id(),
    )
    .unwrap();
    let region = map_ring(&d, &c, Access::ReadWrite, None).unwrap();
    let mut child = child("subscriber", &dir.0).spawn().unwrap();
    // Wait for the child's cursor so back-pressure holds every message for it.
    let ready = dir.0.join("ready");
    for _ in 0..6000 {
        if ready.exists() || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(ready.exists(), "child never attached");
    let mut p = Producer::new(region).unwrap();
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
    let count: u64 = std::fs::read_to_string(dir.0.join("count"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        count, MESSAGES,
        "back-pressure: every message crosses, none lost"
    );
}

/// The child of `subscriber_cannot_write_message_data`: writes to its
/// read-only mapping of the message data, which must kill it (SIGSEGV)
/// instead of corrupting the stream.
fn child_writes_read_only_mapping(dir: &str) {
    let (dp, cp) = ring_paths(std::path::Path::new(&dir), "ro");
    let ctrl = OpenOptions::new().read(true).write(true).open(&cp).unwrap();
    let region = map_ring(&open_ro(&dp), &ctrl, Access::Subscriber, None).unwrap();
    let p = region.data_ptr() as *mut u8;
    // SAFETY: not sound by design: this process maps the data read-only,
    // and the point of the test is that the kernel refuses the write.
    unsafe { p.add(200).write_volatile(0xFF) };
    unreachable!("the write above must fault");
}

fn subscriber_cannot_write_message_data() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TempDir::new("ro");
    create_ring_files(&dir.0, "ro", &config(Mode::Overwrite), 1, 1).unwrap();
    let out = child("write-read-only", &dir.0).output().unwrap();
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
        let dir = std::env::var(CHILD_DIR).expect("a child's directory");
        match role.as_str() {
            "subscriber" => child_subscriber(&dir),
            "write-read-only" => child_writes_read_only_mapping(&dir),
            other => panic!("unknown child role {other:?}"),
        }
        return std::process::ExitCode::SUCCESS;
    }
    let args = Arguments::from_args();
    let tests = vec![
        trial("create_map_publish_receive", create_map_publish_receive),
        trial(
            "existing_files_are_not_overwritten",
            existing_files_are_not_overwritten,
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
            "two_processes_over_a_mapped_file",
            two_processes_over_a_mapped_file,
        ),
        trial(
            "subscriber_cannot_write_message_data",
            subscriber_cannot_write_message_data,
        ),
    ];
    libtest_mimic::run(&args, tests).exit_code()
}
