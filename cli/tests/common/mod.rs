//! Helpers of the tests that run the real `ringbus` binary: those shared
//! with the library's tests, plus a broker process.

#![allow(dead_code)]

#[path = "../../../tests/common/mod.rs"]
mod shared;
pub use shared::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringbus::client::{Client, SubscribeOptions, Subscriber};
use ringbus::ring::{RecvError, Start};
use ringbus::wait::WaitStrategy;

pub const BIN: &str = env!("CARGO_BIN_EXE_ringbus");

/// A `ringbus serve` process, killed on drop.
pub struct BrokerProc {
    pub child: Child,
    pub socket: PathBuf,
}

impl BrokerProc {
    pub fn start(dir: &TestDir, config: Option<&Path>) -> BrokerProc {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--socket")
            .arg(dir.socket())
            .arg("--data-dir")
            .arg(dir.data())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let mut child = cmd.spawn().expect("spawn ringbus serve");
        let socket = dir.socket();
        eventually("the broker to accept clients", || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("broker exited early: {status}");
            }
            Client::connect(&socket).ok()
        });
        BrokerProc { child, socket }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BrokerProc {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn ringbus(socket: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("RINGBUS_SOCKET").arg("--socket").arg(socket);
    c
}

pub fn subscribe(client: &Client, topic: &str) -> Subscriber {
    client
        .subscriber(
            topic,
            SubscribeOptions {
                start: Start::Earliest,
                wait: WaitStrategy::Block,
            },
        )
        .unwrap()
}

/// Reads generated messages, checking each is intact and that the
/// sequence numbers of each ring are contiguous (no loss, no duplicate).
pub struct Checker {
    pub next: std::collections::HashMap<u64, u64>,
    pub received: u64,
    pub ended: u64,
    buf: Vec<u8>,
}

impl Checker {
    pub fn new() -> Checker {
        Checker {
            next: Default::default(),
            received: 0,
            ended: 0,
            buf: vec![0u8; 4096],
        }
    }

    /// One step: `Some(true)` a message, `Some(false)` a ring ended,
    /// `None` nothing within the timeout.
    pub fn step(&mut self, sub: &mut Subscriber, timeout: Duration) -> Option<bool> {
        match sub.recv_timeout(&mut self.buf, timeout) {
            Ok(d) => {
                let seq = check_generated(&self.buf[..d.info.len]);
                assert_eq!(seq, d.info.seq, "payload and ring sequence disagree");
                let next = self.next.entry(d.ring_id).or_insert(seq);
                assert_eq!(seq, *next, "ring {}: lost or duplicated message", d.ring_id);
                *next += 1;
                self.received += 1;
                Some(true)
            }
            Err(RecvError::EndOfStream) => {
                self.ended += 1;
                Some(false)
            }
            Err(RecvError::Timeout) => None,
            Err(e) => panic!("unexpected receive error: {e}"),
        }
    }

    pub fn until(
        &mut self,
        sub: &mut Subscriber,
        what: &str,
        mut done: impl FnMut(&Checker) -> bool,
    ) {
        let end = Instant::now() + PATIENCE;
        while !done(self) {
            assert!(Instant::now() < end, "timed out waiting for {what}");
            self.step(sub, Duration::from_millis(50));
        }
    }
}

pub fn kill9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A directory every user can reach, for what a process of another uid
/// must open: the checkout, `target/` and `$TMPDIR` may sit under a 0700
/// directory (a clone in `/root` or under `mktemp -d`).
pub fn world_reachable_dir(name: &str) -> TestDir {
    use std::os::unix::fs::PermissionsExt;
    let base = ["/tmp", "/dev/shm", "/var/tmp"]
        .into_iter()
        .map(std::path::Path::new)
        .find(|b| {
            // Every directory from the root down is searchable by others.
            b.ancestors().all(|a| {
                std::fs::metadata(a)
                    .is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
            })
        })
        .expect("no directory that every user may enter (/tmp, /dev/shm or /var/tmp with o+x)");
    let dir = TestDir::new_in(base, name);
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

pub struct KillOnDrop(pub Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill9(&mut self.0);
    }
}

/// The pid of the keeper serving `data_dir` (`ringbus __keeper DATA_DIR`),
/// from `/proc`.
pub fn keeper_of(data_dir: &Path) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()? {
        let entry = entry.ok()?;
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.iter().any(|a| *a == b"__keeper")
            && args
                .iter()
                .any(|a| Path::new(std::str::from_utf8(a).unwrap_or("")) == data_dir)
        {
            return Some(pid);
        }
    }
    None
}
