//! Helpers of the tests that run the real `ringbus` binary: those shared
//! with the library's tests, plus a broker process.

#![allow(dead_code)]

#[path = "../../../tests/common/mod.rs"]
mod shared;
pub use shared::*;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use ringbus::client::Client;

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
