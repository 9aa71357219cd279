//! What the broker tells its keeper (see [`super::super::keeper`]): the
//! keeper handle as the state uses it, and the records it keeps.

use std::os::fd::BorrowedFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::broker::keeper::Keeper;
use crate::ring::{Mode, TopicConfig};

/// The keeper, shared by the state and its rings (see [`keeper`]). A
/// keeper that stops answering is given up: the broker goes on, and its
/// rings no longer outlive it.
pub(in crate::broker) struct Kept {
    keeper: Option<Keeper>,
    broken: AtomicBool,
}

impl Kept {
    pub fn new(keeper: Option<Keeper>) -> Arc<Kept> {
        Arc::new(Kept {
            keeper,
            broken: AtomicBool::new(false),
        })
    }

    pub fn live(&self) -> Option<&Keeper> {
        use std::sync::atomic::Ordering::Relaxed;
        self.keeper.as_ref().filter(|_| !self.broken.load(Relaxed))
    }

    fn failed(&self, e: std::io::Error) {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.broken.swap(true, Relaxed) {
            eprintln!(
                "ringbus: warning: the keeper stopped answering ({e}): rings will not outlive this broker"
            );
        }
    }

    pub fn put(&self, key: &str, meta: &[u8], fds: &[BorrowedFd<'_>], owner: Option<usize>) {
        if let Some(k) = self.live() {
            if let Err(e) = k.put(key.as_bytes(), meta, fds, owner) {
                self.failed(e);
            }
        }
    }

    pub fn forget(&self, key: &str) {
        if let Some(k) = self.live() {
            if let Err(e) = k.forget(key.as_bytes()) {
                self.failed(e);
            }
        }
    }
}

/// Bytes of a kept record (little-endian), and their reader.
#[derive(Default)]
pub(super) struct Rec(pub Vec<u8>);

impl Rec {
    pub fn u8(mut self, v: u8) -> Rec {
        self.0.push(v);
        self
    }
    pub fn u32(mut self, v: u32) -> Rec {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(mut self, v: u64) -> Rec {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn str(mut self, s: &str) -> Rec {
        self = self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    pub fn config(self, c: &TopicConfig) -> Rec {
        self.u32(c.max_message_size)
            .u32(c.capacity)
            .u32(c.mode.as_u32())
            .u32(c.max_subscribers)
    }
}

pub(super) struct RecReader<'a>(pub &'a [u8]);

impl RecReader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (a, b) = self.0.split_at_checked(N)?;
        self.0 = b;
        a.try_into().ok()
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    pub fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        let (a, b) = self.0.split_at_checked(n)?;
        self.0 = b;
        String::from_utf8(a.to_vec()).ok()
    }
    pub fn config(&mut self) -> Option<TopicConfig> {
        Some(TopicConfig {
            max_message_size: self.u32()?,
            capacity: self.u32()?,
            mode: Mode::from_u32(self.u32()?)?,
            max_subscribers: self.u32()?,
        })
    }
}
