//! Gap detection at import, and the optional state file that lets it
//! survive a restart of the bridge (even a kill -9).
//!
//! For every exported ring seen (by exporting bridge id and ring id) the
//! importer keeps the next sequence number it expects. With a state file
//! the table also lives in a shared file mapping: each update is one
//! store into the page cache, which outlives the process, so a restarted
//! bridge knows where each ring stopped and reports the messages that
//! went by while it was down as a gap. The update is made just before
//! the message is published locally: a kill between the two makes the
//! reported gap one message short.
//!
//! File layout: `SLOTS` records of three little-endian u64s (bridge id,
//! ring id, next sequence); a record with bridge id 0 is free. A file of
//! another size, or records that repeat a key, are not trusted: the
//! table starts empty (and says so).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};

/// Records in a state file.
pub const SLOTS: usize = 4096;
const RECORD: usize = 24;

/// What [`Gaps::see`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// The next message, or the first of a ring never seen.
    InOrder,
    /// This many messages are missing before it.
    Gap(u64),
    /// Its sequence number is below the next one expected.
    Reordered,
}

/// Most rings tracked without a state file; past it the table restarts
/// (a ring seen again is then taken as new: a gap may be missed, none is
/// invented).
const MAX_TRACKED_RINGS: usize = 1 << 16;

/// Per exported ring, the next sequence number expected.
#[derive(Default)]
pub struct Gaps {
    next: HashMap<(u64, u64), (u64, Option<usize>)>,
    file: Option<memmap2::MmapMut>,
    used: usize,
}

impl Gaps {
    /// A table kept in `path` (created if missing).
    ///
    /// # Errors
    /// The file cannot be opened or mapped.
    pub fn with_file(path: &Path) -> Result<Gaps> {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot open the state file {}", path.display()))?;
        let len = f.metadata()?.len();
        let fresh = len != (SLOTS * RECORD) as u64;
        if fresh {
            if len != 0 {
                eprintln!(
                    "ringbus-zenoh: state file {} has an unexpected size ({len} bytes): starting afresh",
                    path.display()
                );
            }
            f.set_len(0)?;
            f.set_len((SLOTS * RECORD) as u64)?;
        }
        // SAFETY: the mapping is of a regular file this bridge owns; it is
        // only read and written through this MmapMut, as plain bytes (no
        // references into it are handed out), so another writer can at
        // worst make the table wrong, which `load` checks.
        let map = unsafe { memmap2::MmapMut::map_mut(&f) }
            .with_context(|| format!("cannot map the state file {}", path.display()))?;
        let mut g = Gaps {
            next: HashMap::new(),
            file: Some(map),
            used: 0,
        };
        g.load();
        Ok(g)
    }

    fn load(&mut self) {
        let Some(map) = &mut self.file else { return };
        let word = |m: &[u8], at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&m[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let mut next = HashMap::new();
        let mut used = 0;
        for slot in 0..SLOTS {
            let at = slot * RECORD;
            let bridge = word(map, at);
            if bridge == 0 {
                break;
            }
            let ring = word(map, at + 8);
            let seq = word(map, at + 16);
            if next.insert((bridge, ring), (seq, Some(slot))).is_some() {
                eprintln!("ringbus-zenoh: the state file repeats a ring: starting afresh");
                map.fill(0);
                next.clear();
                used = 0;
                break;
            }
            used = slot + 1;
        }
        self.next = next;
        self.used = used;
    }

    /// The sequence expected next of ring (`bridge_id`, `ring_id`)
    /// (`None`: a ring not seen yet).
    pub fn expects(&self, bridge_id: u64, ring_id: u64) -> Option<u64> {
        self.next.get(&(bridge_id, ring_id)).map(|&(next, _)| next)
    }

    /// Records message `seq` of ring (`bridge_id`, `ring_id`).
    pub fn see(&mut self, bridge_id: u64, ring_id: u64, seq: u64) -> Seen {
        if self.file.is_none() && self.next.len() >= MAX_TRACKED_RINGS {
            self.next.clear();
        }
        let key = (bridge_id, ring_id);
        let (seen, slot) = match self.next.get_mut(&key) {
            Some((next, slot)) => {
                let seen = if seq < *next {
                    return Seen::Reordered;
                } else if seq == *next {
                    Seen::InOrder
                } else {
                    Seen::Gap(seq - *next)
                };
                *next = seq.saturating_add(1);
                (seen, *slot)
            }
            None => {
                let slot =
                    (self.file.is_some() && self.used < SLOTS && bridge_id != 0).then(|| {
                        self.used += 1;
                        self.used - 1
                    });
                self.next.insert(key, (seq.saturating_add(1), slot));
                (Seen::InOrder, slot)
            }
        };
        if let (Some(map), Some(slot)) = (&mut self.file, slot) {
            let at = slot * RECORD;
            map[at + 8..at + 16].copy_from_slice(&ring_id.to_le_bytes());
            map[at + 16..at + 24].copy_from_slice(&seq.saturating_add(1).to_le_bytes());
            // The key's bridge id last: a record is in use once it is set.
            map[at..at + 8].copy_from_slice(&bridge_id.to_le_bytes());
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_and_reorders() {
        let mut g = Gaps::default();
        assert_eq!(g.see(1, 1, 5), Seen::InOrder);
        assert_eq!(g.see(1, 1, 6), Seen::InOrder);
        assert_eq!(g.see(1, 1, 10), Seen::Gap(3));
        assert_eq!(g.see(1, 1, 7), Seen::Reordered);
        assert_eq!(g.expects(1, 1), Some(11));
        assert_eq!(g.expects(1, 2), None);
        assert_eq!(g.see(1, 1, 11), Seen::InOrder);
        assert_eq!(g.see(2, 1, 0), Seen::InOrder);
    }

    #[test]
    fn the_file_carries_over() {
        let dir = std::env::temp_dir().join(format!("ringbus-zenoh-state-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state");
        let _ = std::fs::remove_file(&p);
        {
            let mut g = Gaps::with_file(&p).unwrap();
            for s in 0..10 {
                g.see(7, 3, s);
            }
            g.see(8, 1, 0);
        }
        let mut g = Gaps::with_file(&p).unwrap();
        assert_eq!(g.see(7, 3, 15), Seen::Gap(5));
        assert_eq!(g.see(8, 1, 1), Seen::InOrder);
        drop(g);
        // A file of another size is not trusted.
        std::fs::write(&p, b"junk").unwrap();
        let mut g = Gaps::with_file(&p).unwrap();
        assert_eq!(g.see(7, 3, 20), Seen::InOrder);
        drop(g);
        // Repeated keys are not trusted either.
        let mut bytes = vec![0u8; SLOTS * RECORD];
        for slot in 0..2 {
            bytes[slot * RECORD..slot * RECORD + 8].copy_from_slice(&1u64.to_le_bytes());
        }
        std::fs::write(&p, &bytes).unwrap();
        let mut g = Gaps::with_file(&p).unwrap();
        assert_eq!(g.see(1, 0, 100), Seen::InOrder);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
