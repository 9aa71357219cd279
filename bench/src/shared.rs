//! Memory shared by the bench's processes: one memfd, created and
//! pre-faulted by the parent, inherited by each child (its descriptor number
//! travels in the child's spec), mapped at the same length by all.
//!
//! The mapping starts with a [`Control`] block (start barrier, abort flag,
//! end-of-stream count); each scenario lays its own `#[repr(C)]` structures
//! out after [`CONTROL_SIZE`].

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use memmap2::{MmapOptions, MmapRaw};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// Bytes reserved for [`Control`] at the start of every region.
pub const CONTROL_SIZE: usize = 256;

/// How long a side waits for its peer without progress before it gives up.
pub const STALL: Duration = Duration::from_secs(10);

/// A value on its own 128-byte line pair (x86_64's adjacent-line prefetcher
/// pulls 64-byte lines in pairs, hence 128 as in crossbeam's `CachePadded`).
#[repr(C, align(128))]
pub struct Padded<T>(pub T);

/// Start barrier and coordination flags, touched only outside the timed
/// loops (or on their slow paths).
#[repr(C, align(128))]
pub struct Control {
    /// Children that are pinned, mapped and ready to start.
    pub ready: AtomicU32,
    /// Set to 1 by the parent when every child is ready.
    pub go: AtomicU32,
    /// Set to 1 by any side that fails (or by the parent's watchdog when a
    /// child dies); every wait loop checks it on its slow path.
    pub abort: AtomicU32,
    /// Reserved, zero.
    pub _reserved: AtomicU32,
    /// Copy-ring floor: 1 + the number of messages published, once the
    /// publisher is done (0 while it runs). (Ping-pongs stop with a
    /// sentinel in their own words; ringbus rings end with end of stream.)
    pub stop: AtomicU64,
}

/// Types that may be viewed in the shared mapping: `#[repr(C)]`, made only
/// of atomics and integers (every bit pattern valid, all-zero a valid
/// initial state), no `Drop`, and `Sync`.
///
/// # Safety
///
/// Implement only for types that satisfy the above.
pub unsafe trait SharedPlain: Sync {}

// SAFETY: all fields are atomics; repr(C); zero is a valid state.
unsafe impl SharedPlain for Control {}
// SAFETY: a padded atomic is an atomic plus padding.
unsafe impl SharedPlain for Padded<AtomicU64> {}
// SAFETY: as above.
unsafe impl SharedPlain for Padded<AtomicU32> {}

const _: () = assert!(std::mem::size_of::<Control>() <= CONTROL_SIZE);
const _: () = assert!(CONTROL_SIZE % 128 == 0);

/// One shared mapping.
pub struct Region {
    map: MmapRaw,
    fd: OwnedFd,
}

impl Region {
    /// Creates a zeroed, pre-faulted region of `len` bytes.
    pub fn create(len: usize) -> Result<Region> {
        ensure!(len >= CONTROL_SIZE, "region of {len} bytes is too small");
        let fd = rustix::fs::memfd_create("ringbus-bench", rustix::fs::MemfdFlags::CLOEXEC)
            .context("memfd_create for the bench's shared memory")?;
        rustix::fs::ftruncate(&fd, len as u64)
            .with_context(|| format!("sizing the bench's shared memory to {len} bytes"))?;
        let map = MmapOptions::new()
            .len(len)
            .populate()
            .map_raw(&fd)
            .context("mapping the bench's shared memory")?;
        // Touch every page with a write so shmem allocates it now, not
        // inside a timed loop (a read fault could map the zero page).
        let page = 4096;
        let mut off = 0;
        while off < len {
            // SAFETY: `off < len`, the mapping is `len` bytes and writable,
            // and no other process has it yet.
            unsafe { map.as_mut_ptr().add(off).write_volatile(0) };
            off += page;
        }
        Ok(Region { map, fd })
    }

    /// Maps the region a parent created, from the inherited descriptor.
    pub fn open(raw_fd: RawFd, len: usize) -> Result<Region> {
        ensure!(raw_fd >= 0, "bad shared-memory descriptor {raw_fd}");
        // Check the descriptor is open before taking ownership of it.
        // SAFETY: borrowing a raw fd for the duration of one fcntl call;
        // fcntl on a closed fd returns EBADF and touches nothing.
        let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(raw_fd) };
        rustix::io::fcntl_getfd(borrowed)
            .with_context(|| format!("descriptor {raw_fd} from the parent is not open"))?;
        // SAFETY: the parent passed this descriptor to this process only for
        // this region; nothing else in the child owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw_fd) };
        let file = File::from(fd);
        let actual = file.metadata().context("fstat of the shared memory")?.len();
        ensure!(
            actual == len as u64,
            "shared memory is {actual} bytes, the spec says {len}"
        );
        let map = MmapOptions::new()
            .len(len)
            .populate()
            .map_raw(&file)
            .context("mapping the parent's shared memory")?;
        Ok(Region {
            map,
            fd: OwnedFd::from(file),
        })
    }

    /// The descriptor, to hand to a child.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// The descriptor, borrowed.
    pub fn borrowed_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The control block.
    pub fn control(&self) -> &Control {
        self.at(0).expect("control block is always in range")
    }

    /// A shared structure at `offset`.
    pub fn at<T: SharedPlain>(&self, offset: usize) -> Result<&T> {
        let size = std::mem::size_of::<T>();
        ensure!(
            offset % std::mem::align_of::<T>() == 0
                && offset
                    .checked_add(size)
                    .is_some_and(|end| end <= self.len()),
            "shared structure at {offset} (+{size}) does not fit the {}-byte region",
            self.len()
        );
        // SAFETY: in bounds and aligned (checked above; the mapping is page
        // aligned); `T: SharedPlain` is valid for any bytes and only mutated
        // through atomics; the mapping lives as long as `self`.
        Ok(unsafe { &*(self.map.as_mut_ptr().add(offset) as *const T) })
    }

    /// A second, read-only mapping of the same memory: what a ringbus
    /// subscriber that is not trusted gets of its rings' data.
    pub fn read_only_view(&self) -> Result<ReadOnlyView> {
        // SAFETY: a shared mapping of the bench's own memfd, which nobody
        // truncates while the region lives; read-only, so this mapping
        // changes nothing, and what it reads is read as the scenario's
        // protocol says (the copy ring's head hands slots over).
        let map = unsafe {
            MmapOptions::new()
                .len(self.len())
                .populate()
                .map(self.fd.as_raw_fd())
        }
        .context("mapping the bench's shared memory read-only")?;
        Ok(ReadOnlyView { map })
    }

    /// Raw pointer to `len` bytes at `offset`, for payload copies.
    pub fn bytes(&self, offset: usize, len: usize) -> Result<*mut u8> {
        check_span(offset, len, self.len(), "region")?;
        // SAFETY: `offset + len <= self.len()`, checked above.
        Ok(unsafe { self.map.as_mut_ptr().add(offset) })
    }
}

/// Checks that `len` bytes at `offset` lie within a mapping of `total`.
fn check_span(offset: usize, len: usize, total: usize, what: &str) -> Result<()> {
    ensure!(
        offset.checked_add(len).is_some_and(|end| end <= total),
        "payload area {offset}+{len} does not fit the {total}-byte {what}"
    );
    Ok(())
}

/// A read-only mapping of a [`Region`] ([`Region::read_only_view`]).
pub struct ReadOnlyView {
    map: memmap2::Mmap,
}

impl ReadOnlyView {
    /// Raw pointer to `len` bytes at `offset`, to read through this view.
    pub fn bytes(&self, offset: usize, len: usize) -> Result<*const u8> {
        check_span(offset, len, self.map.len(), "view")?;
        // SAFETY: `offset + len <= self.map.len()`, checked above.
        Ok(unsafe { self.map.as_ptr().add(offset) })
    }
}

/// Rounds `n` up to a multiple of 128 (one padded line pair).
pub const fn pad128(n: usize) -> usize {
    n.next_multiple_of(128)
}

/// The slow path of every wait loop: gives up when the peer failed or made
/// no progress for [`STALL`]. Construct one per wait; it reads the clock only
/// when asked.
pub struct Patience<'a> {
    ctl: &'a Control,
    since: Option<Instant>,
}

impl<'a> Patience<'a> {
    /// A fresh wait.
    #[inline(always)]
    pub fn new(ctl: &'a Control) -> Self {
        Patience { ctl, since: None }
    }

    /// Checks the abort flag and the stall deadline.
    #[cold]
    #[inline(never)]
    pub fn check(&mut self, what: &str) -> Result<()> {
        if self.ctl.abort.load(Ordering::Relaxed) != 0 {
            bail!("bench peer failed while waiting for {what}");
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() > STALL {
            self.ctl.abort.store(1, Ordering::Relaxed);
            bail!("no progress for {STALL:?} while waiting for {what}");
        }
        Ok(())
    }
}

/// Spins until `done()` holds, checking [`Patience`] every 65536 spins.
#[inline(always)]
pub fn spin_until(ctl: &Control, what: &str, mut done: impl FnMut() -> bool) -> Result<()> {
    let mut n: u32 = 0;
    let mut patience = Patience::new(ctl);
    while !done() {
        std::hint::spin_loop();
        n = n.wrapping_add(1);
        if n & 0xFFFF == 0 {
            patience.check(what)?;
        }
    }
    Ok(())
}

/// Child side of the start barrier: report ready, wait for go.
pub fn child_barrier(ctl: &Control) -> Result<()> {
    // Release: publishes this child's setup (its mapping, its pinning are
    // done); pairs with the Acquire load of `ready` in `parent_barrier`.
    ctl.ready.fetch_add(1, Ordering::Release);
    // Acquire: pairs with the Release store of `go` in `parent_barrier`, so
    // the parent's initialisation of the scenario is visible.
    spin_until(ctl, "the start signal", || {
        ctl.go.load(Ordering::Acquire) != 0
    })
}

/// Parent side of the start barrier: wait for `children` ready, then go.
pub fn parent_barrier(ctl: &Control, children: u32) -> Result<()> {
    // Acquire: pairs with the Release `fetch_add` in `child_barrier`.
    spin_until(ctl, "the bench children to start", || {
        ctl.ready.load(Ordering::Acquire) >= children
    })?;
    // Release: pairs with the Acquire load of `go` in `child_barrier`.
    ctl.go.store(1, Ordering::Release);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_is_zeroed_and_bounds_checked() {
        let r = Region::create(8192).unwrap();
        assert_eq!(r.len(), 8192);
        assert_eq!(r.control().go.load(Ordering::Relaxed), 0);
        assert!(r.at::<Padded<AtomicU64>>(8192 - 128).is_ok());
        assert!(r.at::<Padded<AtomicU64>>(8192).is_err());
        assert!(r.at::<Padded<AtomicU64>>(64).is_err(), "misaligned");
        assert!(r.bytes(8000, 193).is_err());
    }

    #[test]
    fn stalled_wait_gives_up_on_abort() {
        let r = Region::create(4096).unwrap();
        r.control().abort.store(1, Ordering::Relaxed);
        let err = spin_until(r.control(), "nothing", || false).unwrap_err();
        assert!(format!("{err}").contains("peer failed"));
    }
}
