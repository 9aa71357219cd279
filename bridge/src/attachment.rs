//! The Zenoh attachment of a bridged message: what ringbus knows about
//! it besides the payload.
//!
//! Layout, version 1 (44 bytes, integers little-endian):
//!
//! | bytes  | field                                           |
//! |--------|-------------------------------------------------|
//! | 0..2   | magic `RB`                                      |
//! | 2      | version (1)                                     |
//! | 3      | flags (0; unknown bits are ignored)             |
//! | 4..12  | tag                                             |
//! | 12..20 | sequence number in its ring                     |
//! | 20..28 | ring id (in the exporting broker)               |
//! | 28..36 | publish timestamp (CLOCK_MONOTONIC ns of the exporting host, 0 if unstamped) |
//! | 36..44 | id of the exporting bridge                      |
//!
//! Parsing is defensive: an attachment that is missing, of another
//! length, magic or version is not an error. The sample is then a
//! foreign one (a plain Zenoh publisher): it is delivered with tag 0 and
//! counted as `foreign`, and takes no part in gap detection.

/// Length of a version-1 attachment.
pub const LEN: usize = 44;
const MAGIC: [u8; 2] = *b"RB";
const VERSION: u8 = 1;

/// The fields of an attachment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// The publisher's tag.
    pub tag: u64,
    /// Sequence number in the origin ring.
    pub seq: u64,
    /// The origin ring's id.
    pub ring_id: u64,
    /// Publish timestamp on the origin host (monotonic ns, 0 if none).
    pub timestamp: u64,
    /// The exporting bridge's id.
    pub bridge_id: u64,
}

impl Meta {
    /// The attachment's bytes.
    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0..2].copy_from_slice(&MAGIC);
        b[2] = VERSION;
        b[3] = 0;
        b[4..12].copy_from_slice(&self.tag.to_le_bytes());
        b[12..20].copy_from_slice(&self.seq.to_le_bytes());
        b[20..28].copy_from_slice(&self.ring_id.to_le_bytes());
        b[28..36].copy_from_slice(&self.timestamp.to_le_bytes());
        b[36..44].copy_from_slice(&self.bridge_id.to_le_bytes());
        b
    }

    /// Parses an attachment; `None` if it is not a version-1 ringbus one.
    pub fn decode(b: &[u8]) -> Option<Meta> {
        if b.len() != LEN || b[0..2] != MAGIC || b[2] != VERSION {
            return None;
        }
        let u = |r: std::ops::Range<usize>| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[r]);
            u64::from_le_bytes(w)
        };
        Some(Meta {
            tag: u(4..12),
            seq: u(12..20),
            ring_id: u(20..28),
            timestamp: u(28..36),
            bridge_id: u(36..44),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let m = Meta {
            tag: u64::MAX,
            seq: 1,
            ring_id: 0x0102_0304_0506_0708,
            timestamp: 42,
            bridge_id: 7,
        };
        let b = m.encode();
        assert_eq!(&b[..3], b"RB\x01");
        assert_eq!(Meta::decode(&b), Some(m));
    }

    #[test]
    fn foreign_bytes_are_not_meta() {
        let good = Meta {
            tag: 1,
            seq: 2,
            ring_id: 3,
            timestamp: 4,
            bridge_id: 5,
        }
        .encode();
        assert_eq!(Meta::decode(&[]), None);
        assert_eq!(Meta::decode(&good[..LEN - 1]), None);
        let mut longer = good.to_vec();
        longer.push(0);
        assert_eq!(Meta::decode(&longer), None);
        let mut v2 = good;
        v2[2] = 2;
        assert_eq!(Meta::decode(&v2), None);
        let mut magic = good;
        magic[0] = b'X';
        assert_eq!(Meta::decode(&magic), None);
        // Every length up to two attachments, any bytes: no panic.
        for n in 0..2 * LEN {
            let junk: Vec<u8> = (0..n).map(|i| (i * 37) as u8).collect();
            let _ = Meta::decode(&junk);
        }
    }
}
