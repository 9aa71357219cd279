//! The broker's view of a ring: its two files, read and written with
//! `pread` / `pwrite`, never through a mapping.
//!
//! Clients hold writable descriptors of these files (the publisher both,
//! each subscriber the control file), so any of them can `ftruncate` one.
//! A process that touches a mapping past the new end of file gets
//! `SIGBUS`; a system call that reads or writes past it just comes up
//! short. The broker therefore never dereferences ring memory: a hostile
//! client can make it see garbage numbers, never crash it. (The one
//! mapping it keeps is the control header's page, used only as the address
//! for `FUTEX_WAKE`, which the kernel resolves without faulting us.)
//!
//! Values read this way may be torn while a client writes them; the broker
//! uses them for statistics and decisions that tolerate that (see each
//! method). Ring creation and the cursor reservations made before a ring is
//! handed out have no concurrent writer.

use std::fs::File;
use std::mem::{offset_of, size_of};
use std::os::unix::fs::FileExt;

use crate::layout::{
    CtrlHeader, CursorSlot, RingHeader, CURSOR_FREE, KIND_CTRL, KIND_DATA, LAYOUT_VERSION, MAGIC,
};
use crate::ring::{Mode, Sizes, TopicConfig};

/// A ring as the broker sees it.
pub(super) struct RingFile {
    data: File,
    ctrl: File,
    config: TopicConfig,
    sizes: Sizes,
    ring_id: u64,
    publisher_pid: u32,
    /// The control header's first page, mapped read-only and never read:
    /// only its address is given to `FUTEX_WAKE`.
    futex_page: Option<memmap2::Mmap>,
}

fn rd<const N: usize>(f: &File, off: u64) -> Option<[u8; N]> {
    let mut b = [0u8; N];
    f.read_exact_at(&mut b, off).ok()?;
    Some(b)
}

fn rd_u32(f: &File, off: usize) -> Option<u32> {
    rd::<4>(f, off as u64).map(u32::from_ne_bytes)
}

fn rd_u64(f: &File, off: usize) -> Option<u64> {
    rd::<8>(f, off as u64).map(u64::from_ne_bytes)
}

fn wr_u32(f: &File, off: usize, v: u32) -> bool {
    f.write_all_at(&v.to_ne_bytes(), off as u64).is_ok()
}

fn wr_u64(f: &File, off: usize, v: u64) -> bool {
    f.write_all_at(&v.to_ne_bytes(), off as u64).is_ok()
}

fn cursor_off(i: u32) -> usize {
    size_of::<CtrlHeader>() + i as usize * size_of::<CursorSlot>()
}

impl RingFile {
    /// Reads and checks both headers (magic, version, kind, config, sizes,
    /// ring ids) and that both files are fully allocated (a ring whose
    /// creation was cut short may be sparse).
    ///
    /// # Errors
    /// A description of what is wrong.
    pub fn open(data: File, ctrl: File) -> Result<RingFile, String> {
        use std::os::unix::fs::MetadataExt;
        let bad = |what: &str| format!("not a valid ring: {what}");
        let ident = |f: &File, kind: u32, what: &str| -> Result<(), String> {
            let magic = rd_u64(f, 0).ok_or_else(|| bad(&format!("{what} segment truncated")))?;
            let version = rd_u32(f, 8).ok_or_else(|| bad("truncated"))?;
            let k = rd_u32(f, 12).ok_or_else(|| bad("truncated"))?;
            if magic != MAGIC || version != LAYOUT_VERSION || k != kind {
                return Err(bad(&format!("{what} segment has a foreign header")));
            }
            Ok(())
        };
        ident(&data, KIND_DATA, "data")?;
        ident(&ctrl, KIND_CTRL, "control")?;
        let field = |off: usize| rd_u32(&data, off).ok_or_else(|| bad("truncated"));
        let mode_raw = field(offset_of!(RingHeader, mode))?;
        let config = TopicConfig {
            max_message_size: field(offset_of!(RingHeader, max_message_size))?,
            capacity: field(offset_of!(RingHeader, capacity))?,
            mode: Mode::from_u32(mode_raw).ok_or_else(|| bad("unknown mode"))?,
            max_subscribers: field(offset_of!(RingHeader, max_subscribers))?,
        };
        let sizes = config.validate().map_err(|e| bad(&e.to_string()))?;
        let ring_id =
            rd_u64(&data, offset_of!(RingHeader, ring_id)).ok_or_else(|| bad("truncated"))?;
        let ctrl_id =
            rd_u64(&ctrl, offset_of!(CtrlHeader, ring_id)).ok_or_else(|| bad("truncated"))?;
        let ctrl_subs = rd_u32(&ctrl, offset_of!(CtrlHeader, max_subscribers))
            .ok_or_else(|| bad("truncated"))?;
        if ring_id != ctrl_id || ctrl_subs != config.max_subscribers {
            return Err(bad("data and control segments do not belong together"));
        }
        let publisher_pid = field(offset_of!(RingHeader, publisher_pid))?;
        for (f, len, what) in [
            (&data, sizes.data_len, "data"),
            (&ctrl, sizes.ctrl_len, "control"),
        ] {
            let m = f.metadata().map_err(|e| bad(&e.to_string()))?;
            if m.len() != len {
                return Err(bad(&format!(
                    "{what} segment is {} bytes, expected {len}",
                    m.len()
                )));
            }
            if m.blocks().saturating_mul(512) < len {
                return Err(bad(&format!("{what} segment is not fully allocated")));
            }
        }
        // SAFETY: a read-only shared mapping that this process never reads
        // or writes; only its address is passed to the kernel (FUTEX_WAKE),
        // which reports a missing page as an error instead of a signal.
        let futex_page = unsafe {
            memmap2::MmapOptions::new()
                .len(size_of::<CtrlHeader>())
                .map(&ctrl)
        }
        .ok();
        Ok(RingFile {
            data,
            ctrl,
            config,
            sizes,
            ring_id,
            publisher_pid,
            futex_page,
        })
    }

    pub fn data(&self) -> &File {
        &self.data
    }

    pub fn ctrl(&self) -> &File {
        &self.ctrl
    }

    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    pub fn ring_id(&self) -> u64 {
        self.ring_id
    }

    pub fn publisher_pid(&self) -> u32 {
        self.publisher_pid
    }

    /// Bytes of shared memory: data plus control segment.
    pub fn bytes(&self) -> u64 {
        self.sizes.data_len + self.sizes.ctrl_len
    }

    /// Sequence of the next message (statistics only).
    pub fn head(&self) -> u64 {
        rd_u64(&self.data, offset_of!(RingHeader, head)).unwrap_or(0)
    }

    /// Whether the ring has ended. A truncated file counts as ended.
    pub fn is_closed(&self) -> bool {
        rd_u32(&self.data, offset_of!(RingHeader, closed)) != Some(0)
    }

    /// Ends the ring (its publisher is gone) and wakes every sleeper.
    /// Called when no publisher writes the ring any more, so the futex word
    /// has no concurrent writer: the read-modify-write below cannot lose an
    /// update, and a subscriber about to sleep either sees `closed` or sees
    /// the word move and does not sleep.
    pub fn close(&self) {
        wr_u32(&self.data, offset_of!(RingHeader, closed), 1);
        let off = offset_of!(CtrlHeader, futex);
        if let Some(v) = rd_u32(&self.ctrl, off) {
            wr_u32(&self.ctrl, off, v.wrapping_add(1));
        }
        if let Some(page) = &self.futex_page {
            // SAFETY: `futex` lies inside the mapped page; the raw futex
            // call only passes the address to the kernel, never dereferences
            // it here.
            unsafe {
                let addr = page.as_ptr().add(off);
                libc::syscall(libc::SYS_futex, addr, libc::FUTEX_WAKE, i32::MAX, 0, 0, 0);
            }
        }
    }

    /// Live back-pressure cursors: (position, owner pid). Statistics and
    /// adoption only; a value torn by a concurrent write is harmless there.
    pub fn cursors(&self) -> Vec<(u64, u32)> {
        (0..self.config.max_subscribers)
            .filter_map(|i| {
                let pos = rd_u64(&self.ctrl, cursor_off(i))?;
                let owner = rd_u32(
                    &self.ctrl,
                    cursor_off(i) + offset_of!(CursorSlot, owner_pid),
                )?;
                (pos != CURSOR_FREE).then_some((pos, owner))
            })
            .collect()
    }

    /// Messages lost to overwrites, summed over the live cursors.
    pub fn dropped(&self) -> u64 {
        (0..self.config.max_subscribers)
            .filter(|&i| rd_u64(&self.ctrl, cursor_off(i)).is_some_and(|p| p != CURSOR_FREE))
            .filter_map(|i| rd_u64(&self.ctrl, cursor_off(i) + offset_of!(CursorSlot, dropped)))
            .fold(0u64, u64::saturating_add)
    }

    /// Frees every cursor owned by `pid`, a dead process. Its owner no
    /// longer writes it; a publisher reading it while it changes sees a
    /// mix of old bytes and 0xff bytes, never less than the old position,
    /// so it never overwrites what a live subscriber has not read.
    pub fn release_cursors_of(&self, pid: u32) -> usize {
        let mut n = 0;
        for i in 0..self.config.max_subscribers {
            let owner = rd_u32(
                &self.ctrl,
                cursor_off(i) + offset_of!(CursorSlot, owner_pid),
            );
            let pos = rd_u64(&self.ctrl, cursor_off(i));
            if owner == Some(pid) && pos.is_some_and(|p| p != CURSOR_FREE) {
                wr_u64(&self.ctrl, cursor_off(i), CURSOR_FREE);
                n += 1;
            }
        }
        if n > 0 {
            self.bump_cursor_generation();
        }
        n
    }

    /// Tells the ring's publisher that its list of mailboxes changed.
    pub fn bump_mailbox_generation(&self) {
        let off = offset_of!(CtrlHeader, mailbox_generation);
        if let Some(g) = rd_u32(&self.ctrl, off) {
            wr_u32(&self.ctrl, off, g.wrapping_add(1));
        }
    }

    fn bump_cursor_generation(&self) {
        let off = offset_of!(CtrlHeader, cursor_generation);
        if let Some(g) = rd_u64(&self.ctrl, off) {
            wr_u64(&self.ctrl, off, g.wrapping_add(1));
        }
    }

    /// Claims a free cursor at `pos` for process `pid`. Only for a ring not
    /// handed out yet (no concurrent claimer), see
    /// [`Consumer::adopt_cursor`](crate::ring::Consumer::adopt_cursor).
    pub fn reserve_cursor(&self, pid: u32, pos: u64) -> Option<u32> {
        let i = (0..self.config.max_subscribers)
            .find(|&i| rd_u64(&self.ctrl, cursor_off(i)) == Some(CURSOR_FREE))?;
        let ok = wr_u32(
            &self.ctrl,
            cursor_off(i) + offset_of!(CursorSlot, owner_pid),
            pid,
        ) && wr_u64(&self.ctrl, cursor_off(i), pos);
        if ok {
            self.bump_cursor_generation();
        }
        ok.then_some(i)
    }

    /// Frees a reservation that was never handed over (so its subscriber
    /// never wrote it) if it is still `pid`'s at `pos`.
    pub fn release_reserved_cursor(&self, index: u32, pid: u32, pos: u64) -> bool {
        if index >= self.config.max_subscribers {
            return false;
        }
        let off = cursor_off(index);
        let owner = rd_u32(&self.ctrl, off + offset_of!(CursorSlot, owner_pid));
        if owner != Some(pid) || rd_u64(&self.ctrl, off) != Some(pos) {
            return false;
        }
        let freed = wr_u64(&self.ctrl, off, CURSOR_FREE);
        if freed {
            self.bump_cursor_generation();
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(dir: &std::path::Path, name: &str) -> RingFile {
        let config = TopicConfig {
            max_message_size: 64,
            capacity: 8,
            mode: Mode::Backpressure,
            max_subscribers: 2,
        };
        let (d, c) = crate::shm::create_ring_files(dir, name, &config, 7, 42).unwrap();
        RingFile::open(d, c).unwrap()
    }

    #[test]
    fn reads_writes_and_survives_truncation() {
        let dir = std::env::temp_dir().join(format!("ringbus-ringfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let r = ring(&dir, "t@1");
        assert_eq!(r.ring_id(), 7);
        assert_eq!(r.publisher_pid(), 42);
        assert_eq!(r.head(), 0);
        assert!(!r.is_closed());
        let slot = r.reserve_cursor(99, 0).unwrap();
        assert_eq!(r.cursors(), vec![(0, 99)]);
        assert!(!r.release_reserved_cursor(slot, 98, 0));
        assert!(r.release_reserved_cursor(slot, 99, 0));
        assert!(r.cursors().is_empty());
        r.reserve_cursor(5, 3).unwrap();
        r.reserve_cursor(5, 4).unwrap();
        assert_eq!(r.reserve_cursor(6, 0), None, "only two cursors");
        assert_eq!(r.release_cursors_of(5), 2);
        r.close();
        assert!(r.is_closed());

        // A hostile client truncates both files: no signal, just answers.
        let r2 = ring(&dir, "t@2");
        r2.data().set_len(0).unwrap();
        r2.ctrl().set_len(0).unwrap();
        assert_eq!(r2.head(), 0);
        assert!(r2.is_closed());
        assert!(r2.cursors().is_empty());
        assert_eq!(r2.release_cursors_of(1), 0);
        r2.close();
        // And such files are refused on (re-)adoption.
        let (dp, cp) = crate::shm::ring_paths(&dir, "t@2");
        let reopen = RingFile::open(File::open(dp).unwrap(), File::open(cp).unwrap());
        assert!(reopen.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
