//! The ringbus scenarios, over the real ring: rings created as memfds with
//! [`crate::shm::create_ring_memfd`] by the parent, inherited by the children
//! and mapped with [`crate::shm::map_ring`] (the broker hands clients the
//! same kind of descriptors), read and written only through
//! [`Producer`] / [`Consumer`].
//!
//! * ping-pong: ring A carries parent → child, ring B child → parent; the
//!   child echoes each message with `recv` + `publish`;
//! * streaming: the parent publishes on one ring, every child subscribes.
//!
//! Waits use the library's own `recv` with the chosen [`WaitStrategy`]; the
//! deadline passed to it is refreshed outside the timed window, so a dead
//! peer ends a run with an error instead of a hang and no clock read is
//! added to a measured message.

use std::fs::File;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context, Result};
use hdrhistogram::Histogram;

use super::args::{ModeArg, WaitArg};
use super::child::{Params, SideResult};
use super::clock::Ticks;
use super::driver::{drive_pingpong, Budget, Pacer, Receipts};
use super::shared::{Patience, Region, STALL};
use crate::ring::{
    Consumer, Mode, Producer, PublishError, RecvError, RingConfig, RingRegion, Start,
};
use crate::shm::{create_ring_memfd, map_ring, Access};
use crate::wait::WaitStrategy;

/// Refresh the receive deadline every this many messages.
const DEADLINE_EVERY: u64 = 256;

impl WaitArg {
    /// The library's strategy (`adaptive` with its default spin budget).
    pub fn strategy(self) -> WaitStrategy {
        match self {
            WaitArg::Spin => WaitStrategy::Spin,
            WaitArg::Adaptive => WaitStrategy::default(),
            WaitArg::Block => WaitStrategy::Block,
        }
    }
}

impl ModeArg {
    /// The ring's mode.
    pub fn ring_mode(self) -> Mode {
        match self {
            ModeArg::Overwrite => Mode::Overwrite,
            ModeArg::Backpressure => Mode::Backpressure,
        }
    }
}

/// A ring's two memfds, created by the parent.
pub struct RingFiles {
    /// Data segment.
    pub data: File,
    /// Control segment.
    pub ctrl: File,
}

/// The configuration of the bench's rings for `p` and `mode`.
pub fn config(p: &Params, mode: ModeArg, subscribers: u32) -> Result<RingConfig> {
    let c = RingConfig {
        max_message_size: u32::try_from(p.size).context("message size")?,
        capacity: p.capacity,
        mode: mode.ring_mode(),
        max_subscribers: subscribers.max(1),
    };
    c.validate().context("ring configuration for the bench")?;
    Ok(c)
}

impl RingFiles {
    /// Creates a ring (pre-faulted memfds).
    pub fn create(cfg: &RingConfig, id: u64) -> Result<RingFiles> {
        let (data, ctrl) = create_ring_memfd("bench", cfg, id, std::process::id())
            .context("creating a ring for the bench")?;
        Ok(RingFiles { data, ctrl })
    }

    /// The two descriptors, to inherit.
    pub fn fds(&self) -> [BorrowedFd<'_>; 2] {
        use std::os::fd::AsFd;
        [self.data.as_fd(), self.ctrl.as_fd()]
    }

    /// The raw descriptor numbers, for the child's spec.
    pub fn raw(&self) -> [i32; 2] {
        use std::os::fd::AsRawFd;
        [self.data.as_raw_fd(), self.ctrl.as_raw_fd()]
    }

    /// Adopts descriptors a parent passed (child side).
    pub fn adopt(raw: [i32; 2]) -> Result<RingFiles> {
        let own = |fd: i32| -> Result<File> {
            ensure!(fd >= 0, "bad ring descriptor {fd}");
            // SAFETY: borrowed for one fcntl, which fails with EBADF
            // (touching nothing) if the descriptor is not open.
            let b = unsafe { BorrowedFd::borrow_raw(fd) };
            rustix::io::fcntl_getfd(b)
                .with_context(|| format!("ring descriptor {fd} from the parent is not open"))?;
            // SAFETY: open (checked above) and passed to this process for
            // this ring only; nothing else here owns it.
            Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
        };
        Ok(RingFiles {
            data: own(raw[0])?,
            ctrl: own(raw[1])?,
        })
    }

    /// Maps the ring.
    pub fn map(&self, access: Access, cfg: &RingConfig) -> Result<Arc<RingRegion>> {
        map_ring(&self.data, &self.ctrl, access, Some(cfg)).context("mapping a bench ring")
    }
}

/// A receive deadline refreshed every [`DEADLINE_EVERY`] messages, outside
/// timed windows.
struct Deadline {
    at: Instant,
    n: u64,
}

impl Deadline {
    fn new() -> Deadline {
        Deadline {
            at: Instant::now() + STALL,
            n: 0,
        }
    }

    #[inline(always)]
    fn tick(&mut self) {
        self.n += 1;
        if self.n % DEADLINE_EVERY == 0 {
            self.at = Instant::now() + STALL;
        }
    }
}

fn payload_seq(buf: &[u8]) -> u64 {
    u64::from_le_bytes(buf[..8].try_into().expect("messages are at least 8 bytes"))
}

/// Publishes `msg`, waiting for room (back-pressure) with the library's own
/// `publish` wait, bounded by [`STALL`]. The fast path reads no clock.
#[inline(always)]
fn publish(producer: &mut Producer, msg: &[u8]) -> Result<u64> {
    match producer.try_publish(msg, 0) {
        Ok(seq) => Ok(seq),
        Err(PublishError::Full) => producer
            .publish_timeout(msg, 0, STALL)
            .map_err(|e| anyhow!("publishing: {e} (is the subscriber alive?)")),
        Err(e) => Err(anyhow!("publishing: {e}")),
    }
}

// ------------------------------------------------------------------ ping-pong

/// Parent side of a ping-pong, before the start barrier: the publisher on
/// ring A and the subscriber on ring B.
pub fn pingpong_parent_setup(
    a: &RingFiles,
    b: &RingFiles,
    cfg: &RingConfig,
    p: &Params,
) -> Result<(Producer, Consumer)> {
    let mut producer =
        Producer::new(a.map(Access::ReadWrite, cfg)?).context("publisher on ring A")?;
    producer.set_timestamps(p.timestamps);
    let consumer = Consumer::new(b.map(Access::Subscriber, cfg)?, Start::Sequence(0))
        .context("subscriber on ring B")?;
    Ok((producer, consumer))
}

/// Parent side of a ping-pong: publish on A, receive the echo on B; timed.
pub fn pingpong_parent(
    region: &Region,
    mut producer: Producer,
    mut consumer: Consumer,
    wait: WaitArg,
    p: &Params,
    ticks: Ticks,
) -> Result<Histogram<u64>> {
    let ctl = region.control();
    let strategy = wait.strategy();
    let mut tx = vec![0xA5u8; p.size];
    let mut rx = vec![0u8; p.size];
    let mut deadline = Deadline::new();
    let h = drive_pingpong(p, ticks, |n| {
        tx[..8].copy_from_slice(&n.to_le_bytes());
        publish(&mut producer, &tx)?;
        loop {
            match consumer.recv_deadline(&mut rx, strategy, Some(deadline.at)) {
                Ok(info) => {
                    ensure!(
                        info.len == p.size && payload_seq(&rx) == n,
                        "bad echo: {} bytes carrying {} for {n}",
                        info.len,
                        payload_seq(&rx)
                    );
                    break;
                }
                Err(RecvError::Timeout) => {
                    Patience::new(ctl).check("the ringbus echo")?;
                    deadline = Deadline::new();
                }
                Err(e) => bail!("receiving the echo: {e}"),
            }
        }
        deadline.tick();
        Ok(())
    })?;
    drop(producer); // closes ring A: the echo side sees end of stream
    Ok(h)
}

/// Child side of a ping-pong: echo A into B until A ends.
pub fn pingpong_child(
    region: &Region,
    a: &RingFiles,
    b: &RingFiles,
    cfg: &RingConfig,
    wait: WaitArg,
    p: &Params,
) -> Result<SideResult> {
    let mut consumer = Consumer::new(a.map(Access::Subscriber, cfg)?, Start::Sequence(0))
        .context("subscriber on ring A")?;
    let mut producer =
        Producer::new(b.map(Access::ReadWrite, cfg)?).context("publisher on ring B")?;
    super::shared::child_barrier(region.control())?;
    let ctl = region.control();
    let strategy = wait.strategy();
    let mut buf = vec![0u8; p.size];
    let mut deadline = Deadline::new();
    loop {
        match consumer.recv_deadline(&mut buf, strategy, Some(deadline.at)) {
            Ok(info) => {
                publish(&mut producer, &buf[..info.len])?;
                deadline.tick();
            }
            Err(RecvError::EndOfStream) => return Ok(SideResult::default()),
            Err(RecvError::Timeout) => {
                Patience::new(ctl).check("the next ringbus ping")?;
                deadline = Deadline::new();
            }
            Err(e) => bail!("receiving a ping: {e}"),
        }
    }
}

// ------------------------------------------------------------------ streaming

/// Parent side of streaming: publish `warmup + iters` messages (flat out, or
/// paced at `p.rate`), then drop the producer (end of stream).
pub fn stream_parent(mut producer: Producer, p: &Params) -> Result<()> {
    let paced = p.rate > 0;
    let mut pacer = Pacer::new(p.rate);
    let mut budget = Budget::new(p);
    let mut msg = vec![0x3Cu8; p.size];
    let mut n = 0u64;
    loop {
        if paced {
            pacer.wait();
        }
        msg[..8].copy_from_slice(&n.to_le_bytes());
        publish(&mut producer, &msg)?;
        n += 1;
        if !budget.more_after(n) {
            break;
        }
    }
    drop(producer);
    Ok(())
}

/// Child side of streaming: receive until end of stream; check the payload
/// sequence numbers, count losses, record latencies (paced runs).
pub fn stream_child(
    region: &Region,
    ring: &RingFiles,
    cfg: &RingConfig,
    wait: WaitArg,
    p: &Params,
) -> Result<SideResult> {
    let mut consumer = Consumer::new(ring.map(Access::Subscriber, cfg)?, Start::Sequence(0))
        .context("subscriber")?;
    super::shared::child_barrier(region.control())?;
    let ctl = region.control();
    let strategy = wait.strategy();
    let paced = p.rate > 0;
    let mut receipts = Receipts::new(p, paced);
    let mut buf = vec![0u8; p.size];
    let mut deadline = Deadline::new();
    loop {
        match consumer.recv_deadline(&mut buf, strategy, Some(deadline.at)) {
            Ok(info) => {
                let seq = payload_seq(&buf[..info.len]);
                ensure!(
                    seq == info.seq,
                    "message {} carried payload {seq}",
                    info.seq
                );
                receipts.got(info.seq, info.timestamp);
                deadline.tick();
            }
            // Counted at the end from the sequence numbers seen.
            Err(RecvError::Lagged { .. }) => {}
            Err(RecvError::EndOfStream) => return Ok(receipts.finish()),
            Err(RecvError::Timeout) => {
                Patience::new(ctl).check("the next ringbus message")?;
                deadline = Deadline::new();
            }
            Err(e) => bail!("receiving: {e}"),
        }
    }
}
