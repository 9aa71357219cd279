//! One journal record on disk, and the scan that finds every good record in
//! a segment's bytes, cuts a torn tail and steps over damage in the middle.
//!
//! A record is 8-byte aligned:
//!
//! ```text
//!  0  u32 magic       RECORD_MAGIC
//!  4  u32 len         payload bytes
//!  8  u32 crc         CRC32C of bytes 4..8, 12..48 and the payload
//! 12  u32 flags       0 (reserved)
//! 16  u64 seq         the message's sequence number in its ring
//! 24  u64 tag         the publisher's tag
//! 32  u64 timestamp   the publisher's timestamp (CLOCK_MONOTONIC ns, or 0)
//! 40  u64 recorded    CLOCK_REALTIME ns when the recorder appended it
//! 48  payload, then zeros up to the next multiple of 8
//! ```
//!
//! All integers are little-endian. The CRC covers everything but the magic
//! and itself, and the padding must be zeros, so a record is either whole
//! and as written or reported.

/// The first word of every record.
pub const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"RBJr");
/// Bytes before a record's payload.
pub const RECORD_HEADER: usize = 48;
/// Records start at multiples of this.
pub const RECORD_ALIGN: usize = 8;

/// Bytes a record of `len` payload bytes takes on disk, padding included.
pub const fn record_size(len: usize) -> usize {
    (RECORD_HEADER + len + RECORD_ALIGN - 1) & !(RECORD_ALIGN - 1)
}

/// A record's fields, payload aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RecordMeta {
    /// Sequence number within its ring.
    pub seq: u64,
    /// The publisher's tag.
    pub tag: u64,
    /// The publisher's timestamp (CLOCK_MONOTONIC ns), 0 when it sent none.
    pub timestamp_ns: u64,
    /// CLOCK_REALTIME ns at which the recorder appended the record: what
    /// retention by age and a start at a wall-clock time go by.
    pub recorded_ns: u64,
}

/// A good record, borrowed from the bytes it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its fields.
    pub meta: RecordMeta,
    /// Its payload.
    pub payload: &'a [u8],
}

/// Why the bytes at some offset are not a good record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Fewer bytes are left than the header or the record needs.
    Short,
    /// The first word is not [`RECORD_MAGIC`].
    Magic,
    /// The length is larger than the journal's largest record.
    Length(u32),
    /// The reserved flags are not 0.
    Flags(u32),
    /// The checksum does not match.
    Crc,
    /// The padding after the payload is not zeros.
    Padding,
}

/// The header of a record with this payload, its checksum computed.
pub fn encode_header(meta: &RecordMeta, payload: &[u8]) -> [u8; RECORD_HEADER] {
    let mut h = [0u8; RECORD_HEADER];
    fill_header(&mut h, meta, payload.len());
    let crc = checksum(&h, payload);
    h[8..12].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Writes a header's fields into `h` (zeros): all but the CRC (8..12) and
/// the flags (12..16, 0).
fn fill_header(h: &mut [u8; RECORD_HEADER], meta: &RecordMeta, len: usize) {
    let len = u32::try_from(len).expect("a journal record's payload fits in u32");
    h[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
    h[4..8].copy_from_slice(&len.to_le_bytes());
    h[16..24].copy_from_slice(&meta.seq.to_le_bytes());
    h[24..32].copy_from_slice(&meta.tag.to_le_bytes());
    h[32..40].copy_from_slice(&meta.timestamp_ns.to_le_bytes());
    h[40..48].copy_from_slice(&meta.recorded_ns.to_le_bytes());
}

/// Appends the whole record (header, payload, padding) to `out`, its
/// checksum computed over the bytes in place: the same bytes as
/// [`encode_header`], the payload and zeros, one contiguous run to hash
/// and to write.
pub fn encode_into(out: &mut Vec<u8>, meta: &RecordMeta, payload: &[u8]) {
    let start = out.len();
    encode_unsealed(out, meta, payload);
    seal(&mut out[start..]);
}

/// [`encode_into`] without the checksum: its field stays 0 until [`seal`]
/// (or [`Staged`]) computes it.
fn encode_unsealed(out: &mut Vec<u8>, meta: &RecordMeta, payload: &[u8]) {
    let start = out.len();
    // Zeros first (the CRC, the flags, the padding), then each field in
    // its place: one length check, not one per field.
    out.resize(start + record_size(payload.len()), 0);
    let (h, rest) = out[start..].split_at_mut(RECORD_HEADER);
    let h: &mut [u8; RECORD_HEADER] = h.try_into().expect("header bytes");
    fill_header(h, meta, payload.len());
    rest[..payload.len()].copy_from_slice(payload);
}

/// Computes and stores the checksum of the record that `rec` starts with
/// (encoded by [`encode_unsealed`]).
fn seal(rec: &mut [u8]) {
    let len = word32(rec, 4) as usize;
    let (h, payload) = rec.split_at_mut(RECORD_HEADER);
    let h: &mut [u8; RECORD_HEADER] = h.try_into().expect("header bytes");
    let crc = checksum(h, &payload[..len]);
    h[8..12].copy_from_slice(&crc.to_le_bytes());
}

/// How many records [`Staged`] seals at once.
const LANES: usize = 3;

/// Records encoded back to back for one `write`, their checksums computed
/// [`LANES`] records at a time: the `crc32` instruction takes three cycles
/// to give its result and can start one a cycle, so one record's chain of
/// them waits on itself, and three chains interleaved go about three
/// times as fast.
#[derive(Debug, Default)]
pub struct Staged {
    bytes: Vec<u8>,
    /// Where the records not yet sealed start (the first `unsealed`).
    pending: [usize; LANES],
    unsealed: usize,
}

impl Staged {
    /// Appends a record (sealed, at the latest, by [`Staged::sealed`]).
    pub fn push(&mut self, meta: &RecordMeta, payload: &[u8]) {
        self.pending[self.unsealed] = self.bytes.len();
        self.unsealed += 1;
        encode_unsealed(&mut self.bytes, meta, payload);
        if self.unsealed == LANES {
            // While they are still in the cache.
            seal_lanes(&mut self.bytes, self.pending);
            self.unsealed = 0;
        }
    }

    /// Every record staged, sealed.
    pub fn sealed(&mut self) -> &[u8] {
        for &at in &self.pending[..self.unsealed] {
            seal(&mut self.bytes[at..]);
        }
        self.unsealed = 0;
        &self.bytes
    }

    /// Bytes staged.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Nothing staged.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Forgets every record staged.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.unsealed = 0;
    }
}

/// Seals the records at these offsets of `bytes`, in interleaved lanes
/// where the CPU can.
fn seal_lanes(bytes: &mut [u8], at: [usize; LANES]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("sse4.2") {
        let crcs = {
            let recs = at.map(|a| {
                let len = word32(bytes, a + 4) as usize;
                &bytes[a..a + RECORD_HEADER + len]
            });
            // SAFETY: this CPU has SSE4.2 (just checked), all it needs.
            unsafe { checksum_lanes_sse42(recs) }
        };
        for (a, crc) in at.into_iter().zip(crcs) {
            bytes[a + 8..a + 12].copy_from_slice(&crc.to_le_bytes());
        }
        return;
    }
    for a in at {
        seal(&mut bytes[a..]);
    }
}

/// [`checksum_sse42`] of [`LANES`] records at once (each slice a record's
/// header and payload, without padding): the same words in the same order
/// per record, the lanes' instructions interleaved up to the shortest
/// record's words, then each lane's rest alone.
///
/// # Safety
/// The CPU must have SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn checksum_lanes_sse42(recs: [&[u8]; LANES]) -> [u32; LANES] {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    // Bytes 4..8 and 12..16 as words of 4, then everything from 16 on is
    // contiguous: the header's last 32 bytes and the payload.
    let mut c = recs.map(|r| {
        let c = _mm_crc32_u32(!0, word32(r, 4));
        u64::from(_mm_crc32_u32(c, word32(r, 12)))
    });
    let words = recs.map(|r| (r.len() - 16) / 8);
    let common = words.into_iter().min().unwrap_or(0);
    for i in 0..common {
        let at = 16 + 8 * i;
        for (c, r) in c.iter_mut().zip(recs) {
            *c = _mm_crc32_u64(*c, word64(r, at));
        }
    }
    let mut out = [0u32; LANES];
    for ((c, r), (o, n)) in c.into_iter().zip(recs).zip(out.iter_mut().zip(words)) {
        let mut c = c;
        for i in common..n {
            c = _mm_crc32_u64(c, word64(r, 16 + 8 * i));
        }
        // The instruction's result fits in 32 bits.
        let mut c = c as u32;
        for &b in &r[16 + 8 * n..] {
            c = _mm_crc32_u8(c, b);
        }
        *o = !c;
    }
    out
}

/// A record's CRC32C: of its length, then its header from the flags on,
/// then its payload (everything but the magic and the CRC itself).
fn checksum(h: &[u8; RECORD_HEADER], payload: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("sse4.2") {
        // SAFETY: this CPU has SSE4.2 (just checked), all it needs.
        return unsafe { checksum_sse42(h, payload) };
    }
    checksum_portable(h, payload)
}

/// [`checksum`] by the `crc32c` crate (which uses the same instruction
/// where there is one, but through three calls, each splitting its bytes
/// by alignment: a third of the time it takes to read a journal back).
fn checksum_portable(h: &[u8; RECORD_HEADER], payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&h[4..8]);
    let crc = crc32c::crc32c_append(crc, &h[12..RECORD_HEADER]);
    crc32c::crc32c_append(crc, payload)
}

/// [`checksum`] inline with SSE4.2's `crc32` instruction (CRC32C: the
/// same polynomial, reflected, as the crate; its `!` before and after
/// are the standard's initial and final XOR): the header's words at fixed
/// places, the payload a word at a time and its last bytes one by one.
///
/// # Safety
/// The CPU must have SSE4.2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn checksum_sse42(h: &[u8; RECORD_HEADER], payload: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    let c = _mm_crc32_u32(!0, word32(h, 4));
    let mut c = u64::from(_mm_crc32_u32(c, word32(h, 12)));
    for at in (16..RECORD_HEADER).step_by(8) {
        c = _mm_crc32_u64(c, word64(h, at));
    }
    let mut words = payload.chunks_exact(8);
    for w in &mut words {
        c = _mm_crc32_u64(c, u64::from_le_bytes(w.try_into().expect("8 bytes")));
    }
    // The instruction's result fits in 32 bits.
    let mut c = c as u32;
    for &b in words.remainder() {
        c = _mm_crc32_u8(c, b);
    }
    !c
}

fn word32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn word64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Parses the record at the start of `bytes`; on success also returns the
/// bytes it takes, padding included.
///
/// # Errors
/// [`Damage`] says why these bytes are not a good record. Never panics,
/// whatever the bytes.
pub fn parse(bytes: &[u8], max_len: u32) -> Result<(Record<'_>, usize), Damage> {
    if bytes.len() < RECORD_HEADER {
        return Err(Damage::Short);
    }
    if word32(bytes, 0) != RECORD_MAGIC {
        return Err(Damage::Magic);
    }
    let len = word32(bytes, 4);
    if len > max_len {
        return Err(Damage::Length(len));
    }
    let flags = word32(bytes, 12);
    if flags != 0 {
        return Err(Damage::Flags(flags));
    }
    // The padding too: the writer writes a record whole, so a record
    // without it is torn, and every record boundary stays aligned.
    let size = record_size(len as usize);
    if bytes.len() < size {
        return Err(Damage::Short);
    }
    let end = RECORD_HEADER + len as usize;
    let header: &[u8; RECORD_HEADER] = bytes[..RECORD_HEADER].try_into().expect("header bytes");
    let payload = &bytes[RECORD_HEADER..end];
    if checksum(header, payload) != word32(bytes, 8) {
        return Err(Damage::Crc);
    }
    if bytes[end..size].iter().any(|&b| b != 0) {
        return Err(Damage::Padding);
    }
    let meta = RecordMeta {
        seq: word64(bytes, 16),
        tag: word64(bytes, 24),
        timestamp_ns: word64(bytes, 32),
        recorded_ns: word64(bytes, 40),
    };
    Ok((Record { meta, payload }, size))
}

/// The fields, payload length and size of the record at the start of
/// `bytes`, which [`scan`] found good: its checksum is not computed again.
/// `None` if the bytes cannot even hold the record they announce (never a
/// panic, whatever the bytes).
pub fn parse_scanned(bytes: &[u8]) -> Option<(RecordMeta, usize, usize)> {
    if bytes.len() < RECORD_HEADER || word32(bytes, 0) != RECORD_MAGIC {
        return None;
    }
    let len = word32(bytes, 4) as usize;
    let size = record_size(len);
    if bytes.len() < size {
        return None;
    }
    let meta = RecordMeta {
        seq: word64(bytes, 16),
        tag: word64(bytes, 24),
        timestamp_ns: word64(bytes, 32),
        recorded_ns: word64(bytes, 40),
    };
    Some((meta, len, size))
}

/// Bytes of damage found between good records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt {
    /// Offset of the first damaged byte (a record boundary).
    pub offset: usize,
    /// Bytes skipped, up to the next good record.
    pub len: usize,
    /// What was wrong with the first record there.
    pub damage: Damage,
}

/// A sparse index entry: where a record starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The record's sequence number.
    pub seq: u64,
    /// The record's [`RecordMeta::recorded_ns`].
    pub recorded_ns: u64,
    /// The record's offset in its segment.
    pub offset: usize,
}

/// The index keeps one record in this many (the first always).
pub const INDEX_EVERY: u64 = 256;

/// What [`scan`] found in a segment's bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Offset just past the last good record: where appending resumes.
    pub end: usize,
    /// Good records.
    pub records: u64,
    /// The first and last good records' fields.
    pub first: Option<RecordMeta>,
    /// See `first`.
    pub last: Option<RecordMeta>,
    /// Damage between good records, in order.
    pub corrupt: Vec<Corrupt>,
    /// Bytes after `end` that hold no good record (a crash mid-append):
    /// the writer cuts them.
    pub torn: usize,
    /// One good record in [`INDEX_EVERY`], and the first.
    pub index: Vec<IndexEntry>,
}

/// Scans `bytes[start..]` record by record. A damaged record followed by a
/// good one further on is recorded in [`Scan::corrupt`] and stepped over;
/// damage with no good record after it is a torn tail ([`Scan::torn`]). A
/// damaged *last* record is therefore cut like a torn one: nothing after it
/// tells the two apart.
pub fn scan(bytes: &[u8], start: usize, max_len: u32) -> Scan {
    scan_window(bytes, start, max_len, true)
}

/// As [`scan`], over `bytes` that may be only the start of what follows
/// (`whole` false): a record they cut short ends the scan there, undecided
/// (not damage, and no search past it for the next good record), so that
/// reading on and scanning again from [`Scan::end`] finds what one scan of
/// everything would.
pub fn scan_window(bytes: &[u8], start: usize, max_len: u32, whole: bool) -> Scan {
    let mut s = Scan {
        end: start.min(bytes.len()),
        ..Scan::default()
    };
    let mut pos = s.end;
    while pos < bytes.len() {
        match parse(&bytes[pos..], max_len) {
            Ok((record, size)) => {
                if s.records % INDEX_EVERY == 0 {
                    s.index.push(IndexEntry {
                        seq: record.meta.seq,
                        recorded_ns: record.meta.recorded_ns,
                        offset: pos,
                    });
                }
                s.first.get_or_insert(record.meta);
                s.last = Some(record.meta);
                s.records += 1;
                pos += size;
                s.end = pos;
            }
            Err(Damage::Short) if !whole => break,
            Err(damage) => match resync(bytes, pos, max_len, whole) {
                Some(next) => {
                    s.corrupt.push(Corrupt {
                        offset: pos,
                        len: next - pos,
                        damage,
                    });
                    pos = next;
                }
                None => break,
            },
        }
    }
    s.torn = bytes.len() - s.end;
    s
}

/// The offset of the next good record after a damaged one at `pos`. Of
/// bytes that may not be `whole`, only offsets at which the largest record
/// would fit are tried: a good record cut short there must not let a later
/// one be taken first.
fn resync(bytes: &[u8], pos: usize, max_len: u32, whole: bool) -> Option<usize> {
    let magic = RECORD_MAGIC.to_le_bytes();
    let reach = if whole {
        RECORD_HEADER
    } else {
        record_size(max_len as usize)
    };
    let mut at = pos + RECORD_ALIGN;
    while at + reach <= bytes.len() {
        if bytes[at..at + 4] == magic && parse(&bytes[at..], max_len).is_ok() {
            return Some(at);
        }
        at += RECORD_ALIGN;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64) -> RecordMeta {
        RecordMeta {
            seq,
            tag: seq * 3,
            timestamp_ns: seq + 100,
            recorded_ns: 1_000 + seq,
        }
    }

    fn log(n: u64) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = Vec::new();
        let mut offsets = Vec::new();
        for seq in 0..n {
            let payload = vec![seq as u8; (seq % 13) as usize];
            offsets.push(bytes.len());
            bytes.extend_from_slice(&encode_header(&meta(seq), &payload));
            bytes.extend_from_slice(&payload);
            bytes.resize(offsets[seq as usize] + record_size(payload.len()), 0);
        }
        (bytes, offsets)
    }

    #[test]
    fn the_inline_checksum_is_the_crates() {
        let mut h = [0u8; RECORD_HEADER];
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        };
        for len in 0..300 {
            h.iter_mut().for_each(|b| *b = next());
            let payload: Vec<u8> = (0..len).map(|_| next()).collect();
            assert_eq!(
                checksum(&h, &payload),
                checksum_portable(&h, &payload),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let payload = b"hello journal";
        let mut bytes = encode_header(&meta(7), payload).to_vec();
        bytes.extend_from_slice(payload);
        bytes.resize(record_size(payload.len()), 0);
        let (record, size) = parse(&bytes, 1024).unwrap();
        assert_eq!(record.meta, meta(7));
        assert_eq!(record.payload, payload);
        assert_eq!(size, 64);
        assert_eq!(size % RECORD_ALIGN, 0);
    }

    #[test]
    fn encode_into_writes_the_same_bytes_as_the_header_and_payload() {
        let (bytes, _) = log(40);
        let mut out = vec![0xee; 3];
        out.clear();
        for seq in 0..40u64 {
            encode_into(&mut out, &meta(seq), &vec![seq as u8; (seq % 13) as usize]);
        }
        assert_eq!(out, bytes);
    }

    #[test]
    fn staged_records_are_sealed_as_one_at_a_time() {
        // Lengths around every word and lane boundary, in every order.
        let mut one = Vec::new();
        let mut staged = Staged::default();
        for seq in 0..200u64 {
            let len = ((seq * 7) % 41) as usize;
            let payload: Vec<u8> = (0..len).map(|i| (i as u64 * 31 + seq) as u8).collect();
            encode_into(&mut one, &meta(seq), &payload);
            staged.push(&meta(seq), &payload);
            if seq % 17 == 5 {
                // A part-filled set of lanes, sealed by `sealed`.
                assert_eq!(staged.sealed(), &one[..]);
            }
        }
        assert_eq!(staged.len(), one.len());
        assert_eq!(staged.sealed(), &one[..]);
        staged.clear();
        assert!(staged.is_empty());
        staged.push(&meta(1), b"x");
        let mut first = Vec::new();
        encode_into(&mut first, &meta(1), b"x");
        assert_eq!(staged.sealed(), &first[..]);
    }

    #[test]
    fn every_field_is_checked() {
        let payload = [1u8, 2, 3];
        let mut bytes = encode_header(&meta(1), &payload).to_vec();
        bytes.extend_from_slice(&payload);
        bytes.resize(record_size(payload.len()), 0);
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            let got = parse(&bad, 1024);
            assert!(
                got.is_err(),
                "a flipped bit at {at} went unnoticed: {got:?}"
            );
        }
        assert_eq!(parse(&bytes, 2), Err(Damage::Length(3)));
        assert_eq!(parse(&bytes[..RECORD_HEADER + 2], 1024), Err(Damage::Short));
        // Payload whole, padding missing: torn.
        assert_eq!(parse(&bytes[..RECORD_HEADER + 3], 1024), Err(Damage::Short));
    }

    #[test]
    fn a_scan_finds_every_record_and_indexes_some() {
        let (bytes, _) = log(1000);
        let s = scan(&bytes, 0, 64);
        assert_eq!((s.records, s.end, s.torn), (1000, bytes.len(), 0));
        assert!(s.corrupt.is_empty());
        assert_eq!(s.first.unwrap().seq, 0);
        assert_eq!(s.last.unwrap().seq, 999);
        let seqs: Vec<u64> = s.index.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![0, 256, 512, 768]);
    }

    #[test]
    fn a_torn_tail_is_cut_at_the_last_whole_record() {
        let (bytes, offsets) = log(20);
        // Every cut inside the last three records keeps exactly the whole
        // records before it.
        for cut in offsets[17]..bytes.len() {
            let s = scan(&bytes[..cut], 0, 64);
            let complete = (0..20)
                .filter(|&i| offsets[i] + record_size(i % 13) <= cut)
                .count() as u64;
            assert_eq!(s.records, complete, "cut at {cut}");
            assert_eq!(s.end + s.torn, cut);
            assert!(s.corrupt.is_empty(), "cut at {cut}: {:?}", s.corrupt);
        }
    }

    #[test]
    fn damage_in_the_middle_is_stepped_over_and_reported() {
        let (bytes, offsets) = log(50);
        for at in offsets[20]..offsets[21] {
            let mut bad = bytes.clone();
            bad[at] ^= 0xff;
            let s = scan(&bad, 0, 64);
            assert_eq!(s.records, 49, "flip at {at}");
            assert_eq!(s.corrupt.len(), 1, "flip at {at}");
            assert_eq!(s.corrupt[0].offset, offsets[20]);
            assert_eq!(s.corrupt[0].len, offsets[21] - offsets[20]);
            assert_eq!((s.end, s.torn), (bytes.len(), 0));
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..200 {
            let mut bytes = vec![0u8; round * 7];
            for b in &mut bytes {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            // Plant magic words so that resync has work to do.
            for at in (0..bytes.len().saturating_sub(4)).step_by(40) {
                bytes[at..at + 4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
            }
            let s = scan(&bytes, 0, u32::MAX);
            assert_eq!(s.end + s.torn, bytes.len());
            let s = scan(&bytes, bytes.len() + 5, 16);
            assert_eq!(s.records, 0);
        }
    }
}
