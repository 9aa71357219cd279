//! The publisher's write-ahead: asking for the next slot's lines for
//! writing once a message is out, so that their transfer overlaps the
//! caller's next steps instead of stalling the next copy's stores.
//!
//! Only while the publisher streams: a message out less than
//! [`WRITE_AHEAD_GAP_NS`] after the one before (one `rdtsc` per message
//! tells). A publisher that waits between messages (a ping-pong's) would
//! gain nothing, and the lines it asked for moved while its reader was
//! fetching the message just written: 1 KiB ping-pong p50 went from
//! 1.0x to 1.1-1.2x the seqlock copy.
//!
//! Only on rings at least twice the core's L2 cache, where a slot's lines
//! have presumably left both cores' private caches by the time the
//! publisher comes round to them again, so that each store of a copy
//! waits for its line from the shared cache. On a ring that fits (or
//! nearly fits) the L2 the same hint slowed the stream instead, up to four
//! times (1 KiB messages in a 1 MiB ring), for reasons not known.
//!
//! Only on Intel's CPUs. On an AMD EPYC (Zen 5) host the same hint, on
//! the same 4 MiB ring, slowed 1 KiB batches by a seventh and halved a
//! 2 KiB stream, and gained nothing for single 1 KiB messages.
//! DESIGN.md, "Where the streaming nanoseconds go", has the figures.

use crate::clock::cpuinfo;
use crate::layout::CACHE_LINE;
use std::sync::OnceLock;

/// Most lines asked for per slot (8 KiB). Longer messages gain nothing
/// measurable from it: 64 KiB streamed the same with the whole slot asked
/// for, with 32 lines, and without the hint.
pub(super) const WRITE_AHEAD_MAX_LINES: usize = 128;

/// Messages shorter than this are not written ahead of (the guess at
/// the next one's length is the last one's), as slots this short are not
/// read ahead: 768-byte and longer messages gained from it, 512-byte ones
/// did not, and short messages in big rings are the bridge's imports
/// (64 KiB slots), whose 64-byte stream showed no gain to keep it for
/// (2026-12-07 notes).
pub(super) const WRITE_AHEAD_MIN_LEN: usize = 512;

/// A message published less than this long after the one before is
/// streamed: it writes ahead. Streams of up to 2 KiB messages run well
/// under it (1 KiB: 60-100 ns a message); ping-pongs, even of small
/// messages, run above it (a 64-byte round trip takes 300-400 ns).
pub(super) const WRITE_AHEAD_GAP_NS: u64 = 200;

/// The gap of [`WRITE_AHEAD_GAP_NS`] in TSC ticks, given the TSC's
/// ticks per microsecond (`None`: no TSC to tell time by, then no
/// write-ahead).
pub(super) fn write_ahead_gap_ticks(ticks_per_us: Option<u64>) -> Option<u64> {
    ticks_per_us
        .map(|t| t.saturating_mul(WRITE_AHEAD_GAP_NS) / 1000)
        .filter(|&g| g > 0)
}

/// How many lines of the next slot a publisher asks for after each
/// message (0: none) on a ring of `capacity` slots of `stride` bytes, on
/// a core whose L2 holds `l2` bytes (`None`: unknown, then none).
pub(super) fn write_ahead_lines(stride: usize, capacity: u64, l2: Option<u64>) -> usize {
    let ring = (stride as u64).saturating_mul(capacity);
    match l2 {
        Some(l2) if l2 > 0 && ring >= l2.saturating_mul(2) => {
            stride.div_ceil(CACHE_LINE).min(WRITE_AHEAD_MAX_LINES)
        }
        _ => 0,
    }
}

/// The L2 cache size the write-ahead goes by: CPU 0's (data or
/// unified), from sysfs, read once. `None`, so no write-ahead, where
/// sysfs does not say, on CPUs other than Intel's (`/proc/cpuinfo`'s
/// vendor), and under Miri (which runs isolated from the host's files)
/// and loom (whose models need no hint).
pub(super) fn write_ahead_l2() -> Option<u64> {
    if cfg!(any(miri, loom)) {
        return None;
    }
    static L2: OnceLock<Option<u64>> = OnceLock::new();
    *L2.get_or_init(|| {
        let intel = cpuinfo("vendor_id").as_deref() == Some("GenuineIntel");
        intel.then(read_l2_bytes).flatten()
    })
}

fn read_l2_bytes() -> Option<u64> {
    let dir = std::path::Path::new("/sys/devices/system/cpu/cpu0/cache");
    let read = |index: &std::path::Path, name: &str| {
        std::fs::read_to_string(index.join(name)).map(|s| s.trim().to_string())
    };
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let index = entry.path();
        let level2 = read(&index, "level").is_ok_and(|l| l == "2");
        let data = read(&index, "type").is_ok_and(|t| t == "Data" || t == "Unified");
        if level2 && data {
            return read(&index, "size").ok().and_then(|s| parse_cache_size(&s));
        }
    }
    None
}

/// Parses sysfs's cache size notation: `2048K`, `1M`, `512` (bytes).
pub(super) fn parse_cache_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits.parse().ok()?;
    let unit = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// Asks for `lines` lines from `p` on for writing. A hint only: it never
/// faults, changes no memory, and the lines may be taken back before the
/// stores come.
#[inline(always)]
pub(super) fn prefetch_for_write(p: *const u8, lines: usize) {
    #[cfg(all(target_arch = "x86_64", not(any(miri, loom))))]
    for i in 0..lines {
        // SAFETY: `_mm_prefetch` only hints (it never faults and changes no
        // memory), whatever the address.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
            _mm_prefetch::<_MM_HINT_ET0>(p.wrapping_add(i * CACHE_LINE).cast::<i8>());
        }
    }
    #[cfg(not(all(target_arch = "x86_64", not(any(miri, loom)))))]
    let _ = (p, lines);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_parse_as_sysfs_writes_them() {
        assert_eq!(parse_cache_size("2048K"), Some(2 << 20));
        assert_eq!(parse_cache_size("1M\n"), Some(1 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        for bad in ["", "K", "12Q", "-1K", "1.5M", "99999999999999999999G"] {
            assert_eq!(parse_cache_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_gap_is_in_ticks_of_the_tsc_at_hand() {
        // A 2.3 GHz TSC: 200 ns are 460 ticks.
        assert_eq!(write_ahead_gap_ticks(Some(2300)), Some(460));
        assert_eq!(write_ahead_gap_ticks(None), None);
        // Too slow a counter to time 200 ns: none.
        assert_eq!(write_ahead_gap_ticks(Some(1)), None);
        assert_eq!(write_ahead_gap_ticks(Some(u64::MAX)), Some(u64::MAX / 1000));
    }

    #[test]
    fn only_rings_twice_the_l2_write_ahead() {
        let l2 = Some(2 << 20);
        // 1 KiB messages (1056-byte slots): 4096 of them, 4.1 MiB, on;
        // 1024 and 2048 of them off.
        assert_eq!(write_ahead_lines(1056, 4096, l2), 17);
        assert_eq!(write_ahead_lines(1056, 2048, l2), 0);
        assert_eq!(write_ahead_lines(1056, 1024, l2), 0);
        // Exactly twice the L2 is enough.
        assert_eq!(write_ahead_lines(1024, 4096, l2), 16);
        // Small slots in a big ring: their one or two lines.
        assert_eq!(write_ahead_lines(96, 1 << 16, l2), 2);
        // Huge slots: capped.
        assert_eq!(write_ahead_lines(65568, 64, l2), WRITE_AHEAD_MAX_LINES);
        // Unknown or nonsensical L2: none.
        assert_eq!(write_ahead_lines(1056, 4096, None), 0);
        assert_eq!(write_ahead_lines(1056, 4096, Some(0)), 0);
        assert_eq!(write_ahead_lines(usize::MAX, u64::MAX, l2), 128);
    }
}
