//! The journal of a durable topic's ring: segment files of checksummed
//! records on a real filesystem, that survive a crash of anyone and the
//! loss of `/dev/shm`.
//!
//! One directory holds one ring's journal: segment files named by the
//! sequence number of their first record (`00000000000000000042.rbj`), each
//! a 32-byte header then [records](record) back to back. A [`Journal`]
//! appends (one writer per directory: the broker's recorder); a
//! [`JournalReader`] reads from a sequence number or a wall-clock time.
//!
//! Recovery needs no separate index or manifest: opening a journal scans
//! its segments. A torn tail (a crash in the middle of an append) is cut at
//! the last whole record; damage in the middle of a segment (a flipped bit
//! on disk) is reported and stepped over, never a panic, and the records
//! before and after it still read.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::broker::dirs::Dir;

pub mod record;

use record::{record_size, scan, Scan, Staged};
pub use record::{Corrupt, Damage, IndexEntry, Record, RecordMeta};

/// When appended records are forced to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Fsync {
    /// Never by the journal: the kernel writes them back in its own time
    /// (a crash of the process loses nothing, a crash of the host may).
    None,
    /// At most this long after a record is appended (`interval:10ms`).
    Interval(Duration),
    /// Before [`Journal::append`] returns.
    #[default]
    Always,
}

impl FromStr for Fsync {
    type Err = String;

    /// `none`, `always`, or `interval:N` with a unit (`ns`, `us`, `ms`,
    /// `s`), e.g. `interval:10ms`.
    fn from_str(s: &str) -> Result<Fsync, String> {
        match s {
            "none" => return Ok(Fsync::None),
            "always" => return Ok(Fsync::Always),
            _ => {}
        }
        let Some(interval) = s.strip_prefix("interval:") else {
            return Err(format!(
                "fsync {s:?}: expected \"none\", \"always\" or \"interval:DURATION\" (e.g. interval:10ms)"
            ));
        };
        let d = parse_duration(interval).map_err(|e| format!("fsync {s:?}: {e}"))?;
        if d.is_zero() {
            return Err(format!("fsync {s:?}: a zero interval is \"always\""));
        }
        Ok(Fsync::Interval(d))
    }
}

/// Parses a whole number and a unit: `ns`, `us`, `ms`, `s`, `m`, `h`, `d`
/// (`10ms`, `7d`).
///
/// # Errors
/// Says what is wrong.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("duration {s:?} must start with a whole number"))?;
    let secs = |k: u64| {
        n.checked_mul(k)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("duration {s:?} is too long"))
    };
    match unit {
        "ns" => Ok(Duration::from_nanos(n)),
        "us" => Ok(Duration::from_micros(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => Err(format!(
            "duration {s:?} needs a unit: ns, us, ms, s, m, h or d"
        )),
    }
}

/// How a journal is written and how much of it is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JournalOptions {
    /// A segment is closed and a new one begun once it would grow past this
    /// (a single larger record still gets a segment of its own).
    pub segment_bytes: u64,
    /// The largest payload (the topic's `max_message_size`): a record that
    /// claims more is damage.
    pub max_record: u32,
    /// When records are forced to disk.
    pub fsync: Fsync,
    /// Closed segments are removed, oldest first, while the journal holds
    /// more than this.
    pub retain_bytes: Option<u64>,
    /// Closed segments whose last record was appended longer ago than this
    /// are removed.
    pub retain_age: Option<Duration>,
}

impl Default for JournalOptions {
    fn default() -> JournalOptions {
        JournalOptions {
            segment_bytes: 64 << 20,
            max_record: 1 << 20,
            fsync: Fsync::default(),
            retain_bytes: None,
            retain_age: None,
        }
    }
}

/// What went wrong with a journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The filesystem said no (a directory that is not writable, a full
    /// disk, a directory of someone else's).
    #[error("journal {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// Records are appended in sequence order.
    #[error("journal {}: record {seq} is not after the last one, {last}", path.display())]
    OutOfOrder {
        /// The journal's directory.
        path: PathBuf,
        /// The record refused.
        seq: u64,
        /// The journal's last record.
        last: u64,
    },
    /// A payload larger than [`JournalOptions::max_record`].
    #[error("journal {}: a {len}-byte record is larger than its largest, {max}", path.display())]
    TooLarge {
        /// The journal's directory.
        path: PathBuf,
        /// The payload's length.
        len: usize,
        /// The largest allowed.
        max: u32,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The first bytes of every segment file.
const SEGMENT_MAGIC: [u8; 8] = *b"RBJSEG\0\x01";
/// Bytes before a segment's first record.
pub const SEGMENT_HEADER: usize = 32;
const SEGMENT_SUFFIX: &str = ".rbj";

pub(crate) fn segment_name(base_seq: u64) -> String {
    format!("{base_seq:020}{SEGMENT_SUFFIX}")
}

/// The base sequence number a segment file's name gives, if it is one.
fn segment_base(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn segment_header(base_seq: u64) -> [u8; SEGMENT_HEADER] {
    let mut h = [0u8; SEGMENT_HEADER];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..16].copy_from_slice(&base_seq.to_le_bytes());
    h[16..20].copy_from_slice(&1u32.to_le_bytes());
    let crc = crc32c::crc32c(&h[..20]);
    h[20..24].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Why a segment's header is not one this journal wrote for its name.
fn check_segment_header(bytes: &[u8], base_seq: u64) -> Result<(), String> {
    if bytes.len() < SEGMENT_HEADER {
        return Err(format!(
            "{} bytes, shorter than a segment header",
            bytes.len()
        ));
    }
    if bytes[..SEGMENT_HEADER] != segment_header(base_seq) {
        return Err(format!(
            "its header is not that of a ringbus journal segment starting at {base_seq}"
        ));
    }
    Ok(())
}

/// The sequence numbers in a journal's directory's segment files, in order.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        if let Some(base) = name.to_str().and_then(segment_base) {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// What is known of one segment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The sequence number in its name.
    pub base_seq: u64,
    /// Its size in bytes, header included.
    pub bytes: u64,
    /// Its good records.
    pub records: u64,
    /// Its first good record's fields.
    pub first: Option<RecordMeta>,
    /// Its last good record's fields.
    pub last: Option<RecordMeta>,
    /// Damage stepped over.
    pub corrupt: Vec<Corrupt>,
    /// One record in [`record::INDEX_EVERY`]: sequence and time to offset.
    pub index: Vec<IndexEntry>,
}

impl SegmentInfo {
    fn new(base_seq: u64, bytes: u64, s: Scan) -> SegmentInfo {
        SegmentInfo {
            base_seq,
            bytes,
            records: s.records,
            first: s.first,
            last: s.last,
            corrupt: s.corrupt,
            index: s.index,
        }
    }
}

/// What opening a journal found and repaired.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from the end of the last segment: a record that a crash
    /// left half-written.
    pub torn_bytes: u64,
    /// Damaged stretches stepped over (still on disk; readers skip them).
    pub corrupt: Vec<(u64, Corrupt)>,
    /// Segment files whose header is not one of ours, renamed to
    /// `NAME.damaged` and left out, with why.
    pub damaged_segments: Vec<(PathBuf, String)>,
}

struct Active {
    base_seq: u64,
    file: File,
    /// Its length once the staged records are written.
    len: u64,
}

/// Asks the kernel to start writing `len` bytes of `file` from `at` to
/// the disk, without waiting for them: by the next `fdatasync` most of
/// them are there, so that it waits for the last write only. Without this
/// the pages of an interval all go out in its `fdatasync`, which blocks
/// the recorder for that long while its ring fills and then holds the
/// publishers back. A hint: its failure is ignored (the `fdatasync` that
/// follows reports a disk's errors).
fn start_writeback(file: &File, at: u64, len: usize) {
    use std::os::fd::AsRawFd;
    let (Ok(at), Ok(len)) = (i64::try_from(at), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range reads no memory of ours; the descriptor is
    // open (borrowed from `file` for the call).
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), at, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

/// Staged records are written out once this many bytes wait.
const WRITE_AT: usize = 1 << 20;

/// The writing end of one ring's journal.
pub struct Journal {
    dir: Dir,
    options: JournalOptions,
    segments: Vec<SegmentInfo>,
    active: Option<Active>,
    last_seq: Option<u64>,
    /// When the oldest record not yet forced to disk was appended.
    unsynced_since: Option<Instant>,
    recovery: Recovery,
    /// A write failed: what is on disk is known only after a new scan.
    lost_track: bool,
    /// Whole records staged for the active segment, not yet written.
    staged: Staged,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir.path())
            .field("segments", &self.segments.len())
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Opens the journal in `dir`, creating the directory (mode 0700) if
    /// it is missing, and recovers it: every segment is scanned, a torn
    /// tail cut, damage reported in [`Journal::recovery`]. Appending goes
    /// on after the last good record.
    ///
    /// # Errors
    /// [`JournalError::Io`]: the directory cannot be made or read, is not
    /// this user's or others can write it, or a segment cannot be read or
    /// repaired.
    pub fn open(dir: &Path, options: JournalOptions) -> Result<Journal, JournalError> {
        let checked = Dir::open(dir, Some(0o700)).map_err(io_error(dir))?;
        let mut journal = Journal {
            dir: checked,
            options,
            segments: Vec::new(),
            active: None,
            last_seq: None,
            unsynced_since: None,
            recovery: Recovery::default(),
            lost_track: false,
            staged: Staged::default(),
        };
        journal.recover()?;
        Ok(journal)
    }

    fn recover(&mut self) -> Result<(), JournalError> {
        self.segments.clear();
        self.active = None;
        self.last_seq = None;
        self.unsynced_since = None;
        self.recovery = Recovery::default();
        self.staged.clear();
        let listed = self.dir.via_fd("");
        let mut bases = list_segments(&listed).map_err(io_error(self.dir.path()))?;
        // Segments whose header is not ours first, so that the last good
        // one is known (it is where appending resumes).
        let mut good = Vec::with_capacity(bases.len());
        for base in bases.drain(..) {
            let name = segment_name(base);
            let path = self.dir.path().join(&name);
            let mut header = Vec::with_capacity(SEGMENT_HEADER);
            self.dir
                .open_file(&name)
                .and_then(|f| f.take(SEGMENT_HEADER as u64).read_to_end(&mut header))
                .map_err(io_error(&path))?;
            match check_segment_header(&header, base) {
                Ok(()) => good.push(base),
                Err(why) => {
                    let aside = format!("{name}.damaged");
                    std::fs::rename(self.dir.via_fd(&name), self.dir.via_fd(&aside))
                        .map_err(io_error(&path))?;
                    self.recovery.damaged_segments.push((path, why));
                }
            }
        }
        let count = good.len();
        for (i, base) in good.into_iter().enumerate() {
            let name = segment_name(base);
            let path = self.dir.path().join(&name);
            let mut file = self.dir.open_file(&name).map_err(io_error(&path))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).map_err(io_error(&path))?;
            let s = scan(&bytes, SEGMENT_HEADER, self.options.max_record);
            for c in &s.corrupt {
                self.recovery.corrupt.push((base, *c));
            }
            let last = i + 1 == count;
            let end = s.end as u64;
            if s.torn > 0 && last {
                // A crash mid-append: cut the half-written record so that
                // appending goes on from a record boundary.
                file.set_len(end).map_err(io_error(&path))?;
                file.sync_data().map_err(io_error(&path))?;
                self.recovery.torn_bytes = s.torn as u64;
            } else if s.torn > 0 {
                // Not the tail: report it as damage readers step over.
                self.recovery.corrupt.push((
                    base,
                    Corrupt {
                        offset: s.end,
                        len: s.torn,
                        damage: Damage::Short,
                    },
                ));
            }
            if let Some(l) = s.last {
                self.last_seq = Some(self.last_seq.map_or(l.seq, |p| p.max(l.seq)));
            }
            let bytes_kept = if last { end } else { bytes.len() as u64 };
            self.segments.push(SegmentInfo::new(base, bytes_kept, s));
            if last {
                use std::io::Seek;
                file.seek(io::SeekFrom::Start(end))
                    .map_err(io_error(&path))?;
                self.active = Some(Active {
                    base_seq: base,
                    file,
                    len: end,
                });
            }
        }
        Ok(())
    }

    /// What opening found and repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The last record's sequence number (`None` while empty), staged
    /// records included. After a failed write it is not known until
    /// [`Journal::find_track`] (or any other call) rescans.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// The segments, oldest first.
    pub fn segments(&self) -> &[SegmentInfo] {
        &self.segments
    }

    /// The bytes of every segment.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Appends a record. With [`Fsync::Always`] it is on disk when this
    /// returns; with an interval, at most that long after (counting the
    /// next append or [`Journal::tick`]); with [`Fsync::None`], written to
    /// the file (what a crash of this process leaves intact).
    ///
    /// # Errors
    /// As [`Journal::stage`] and [`Journal::commit`].
    pub fn append(&mut self, meta: &RecordMeta, payload: &[u8]) -> Result<(), JournalError> {
        self.stage(meta, payload)?;
        self.commit()
    }

    /// Adds a record to those the next [`Journal::commit`] writes (or
    /// sooner, once a megabyte waits): many records, one `write`. A staged
    /// record counts ([`Journal::last_seq`], the segments) but is in the
    /// file only once written.
    ///
    /// # Errors
    /// [`JournalError::OutOfOrder`] for a sequence number not after the
    /// last, [`JournalError::TooLarge`], or [`JournalError::Io`] (a full
    /// disk: records staged since the last commit may be lost, and nothing
    /// already in the journal is harmed; the journal rescans on its next
    /// call, cutting whatever part of a record reached the disk, and
    /// [`Journal::last_seq`] then says where appending resumes).
    pub fn stage(&mut self, meta: &RecordMeta, payload: &[u8]) -> Result<(), JournalError> {
        self.find_track()?;
        if let Some(last) = self.last_seq.filter(|&l| meta.seq <= l) {
            return Err(JournalError::OutOfOrder {
                path: self.path().to_owned(),
                seq: meta.seq,
                last,
            });
        }
        if payload.len() > self.options.max_record as usize {
            return Err(JournalError::TooLarge {
                path: self.path().to_owned(),
                len: payload.len(),
                max: self.options.max_record,
            });
        }
        let size = record_size(payload.len()) as u64;
        let full = self.active.as_ref().is_some_and(|a| {
            a.len > SEGMENT_HEADER as u64 && a.len + size > self.options.segment_bytes
        });
        if full || self.active.is_none() {
            self.roll(meta.seq)?;
        }
        if self.staged.len() >= WRITE_AT {
            self.flush()?;
        }
        let active = self.active.as_mut().expect("a segment to append to");
        let segment = self.segments.last_mut().expect("the active segment's info");
        let offset = active.len as usize;
        self.staged.push(meta, payload);
        active.len += size;
        if segment.records % record::INDEX_EVERY == 0 {
            segment.index.push(IndexEntry {
                seq: meta.seq,
                recorded_ns: meta.recorded_ns,
                offset,
            });
        }
        segment.first.get_or_insert(*meta);
        segment.last = Some(*meta);
        segment.records += 1;
        segment.bytes = active.len;
        self.last_seq = Some(meta.seq);
        if self.unsynced_since.is_none() {
            self.unsynced_since = Some(Instant::now());
        }
        Ok(())
    }

    /// Writes the staged records to the file (a crash of this process
    /// leaves them there), and forces them to disk as the fsync policy
    /// says: now with [`Fsync::Always`], once the interval has passed with
    /// [`Fsync::Interval`].
    ///
    /// # Errors
    /// [`JournalError::Io`] from `write` or `fsync` (see
    /// [`Journal::stage`]).
    pub fn commit(&mut self) -> Result<(), JournalError> {
        match self.options.fsync {
            Fsync::Always => self.sync(),
            Fsync::Interval(_) => self.flush().and_then(|()| self.tick()),
            Fsync::None => self.flush(),
        }
    }

    /// The journal's state after a failed write (a full disk): part of a
    /// record, or buffered records, may or may not have reached the file.
    /// Recovery finds out on the next call, cutting a partial record;
    /// [`Journal::last_seq`] then says where appending resumes.
    fn lose_track(&mut self, path: &Path, e: io::Error) -> JournalError {
        self.active = None;
        self.staged.clear();
        self.lost_track = true;
        io_error(path)(e)
    }

    /// After a failed write, finds out what the files hold (a rescan), so
    /// that [`Journal::last_seq`] says where appending resumes; otherwise
    /// nothing. Every other call does this first; a caller that decides by
    /// `last_seq` what to append next calls it before.
    ///
    /// # Errors
    /// [`JournalError::Io`]: the rescan failed (see [`Journal::open`]).
    pub fn find_track(&mut self) -> Result<(), JournalError> {
        if self.lost_track {
            self.recover()?;
            self.lost_track = false;
        }
        Ok(())
    }

    /// Forces records appended longer ago than the fsync interval to disk;
    /// a recorder calls it when it has nothing to append, so that the last
    /// records of a burst do not wait for the next one.
    ///
    /// # Errors
    /// [`JournalError::Io`] from `fsync`.
    pub fn tick(&mut self) -> Result<(), JournalError> {
        if let (Fsync::Interval(every), Some(since)) = (self.options.fsync, self.unsynced_since) {
            if since.elapsed() >= every {
                return self.sync();
            }
        }
        Ok(())
    }

    /// Writes staged records to the file, without forcing them to disk
    /// (readers see them from now).
    ///
    /// # Errors
    /// [`JournalError::Io`] from `write`.
    pub fn flush(&mut self) -> Result<(), JournalError> {
        self.find_track()?;
        if self.staged.is_empty() {
            return Ok(());
        }
        if let Some(active) = &mut self.active {
            let at = active.len - self.staged.len() as u64;
            let written = active.file.write_all(self.staged.sealed());
            if written.is_ok() && matches!(self.options.fsync, Fsync::Interval(_)) {
                start_writeback(&active.file, at, self.staged.len());
            }
            self.staged.clear();
            if let Err(e) = written {
                let path = self.dir.path().join(segment_name(active.base_seq));
                return Err(self.lose_track(&path, e));
            }
        }
        Ok(())
    }

    /// Writes and forces every appended record to disk.
    ///
    /// # Errors
    /// [`JournalError::Io`] from `write` or `fsync`.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.flush()?;
        if let Some(active) = &mut self.active {
            if let Err(e) = active.file.sync_data() {
                let path = self.dir.path().join(segment_name(active.base_seq));
                return Err(self.lose_track(&path, e));
            }
        }
        self.unsynced_since = None;
        Ok(())
    }

    /// Closes the active segment and begins one whose first record is
    /// `base_seq`.
    fn roll(&mut self, base_seq: u64) -> Result<(), JournalError> {
        if self.active.is_some() {
            if self.options.fsync == Fsync::None {
                self.flush()?;
            } else {
                self.sync()?;
            }
        }
        self.active = None;
        let name = segment_name(base_seq);
        let path = self.dir.path().join(&name);
        if self.dir.contains(&name) {
            // Left by an append that failed before its record was whole:
            // it holds nothing (recovery would have made it the active
            // segment otherwise); begin it anew.
            self.dir.remove(&name).map_err(io_error(&path))?;
            self.segments.retain(|s| s.base_seq != base_seq);
        }
        let mut file = self.dir.open_file(&name).map_err(io_error(&path))?;
        file.write_all(&segment_header(base_seq))
            .map_err(io_error(&path))?;
        // The new name must survive a crash, or its records would be lost
        // with it although each was synced.
        if self.options.fsync != Fsync::None {
            file.sync_all().map_err(io_error(&path))?;
            File::open(self.dir.via_fd("."))
                .and_then(|d| d.sync_all())
                .map_err(io_error(self.dir.path()))?;
        }
        self.segments.push(SegmentInfo::new(
            base_seq,
            SEGMENT_HEADER as u64,
            Scan::default(),
        ));
        self.active = Some(Active {
            base_seq,
            file,
            len: SEGMENT_HEADER as u64,
        });
        self.retain(realtime_ns())?;
        Ok(())
    }

    /// Removes closed segments past the retention limits (the active one
    /// is always kept), oldest first; returns how many went. Called on
    /// every new segment; `now_ns` is CLOCK_REALTIME.
    ///
    /// # Errors
    /// [`JournalError::Io`] from `unlink`.
    pub fn retain(&mut self, now_ns: u64) -> Result<usize, JournalError> {
        let mut removed = 0;
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let too_big = self
                .options
                .retain_bytes
                .is_some_and(|max| self.bytes() > max);
            let too_old = self.options.retain_age.is_some_and(|age| {
                let last = oldest.last.map_or(0, |l| l.recorded_ns);
                now_ns.saturating_sub(last) > age.as_nanos().min(u64::MAX as u128) as u64
            });
            if !too_big && !too_old {
                break;
            }
            let name = segment_name(oldest.base_seq);
            self.dir
                .remove(&name)
                .map_err(io_error(&self.dir.path().join(&name)))?;
            self.segments.remove(0);
            removed += 1;
        }
        Ok(removed)
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        // Best effort: what the policy promised is already on disk.
        let _ = self.flush();
    }
}

/// CLOCK_REALTIME in nanoseconds: what [`RecordMeta::recorded_ns`] holds.
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u64::MAX as u128) as u64)
}

/// Where a [`JournalReader`] finds its segments: the journal's directory,
/// or descriptors of its segment files (a broker's answer to a subscriber
/// that may not open them by name).
#[derive(Debug)]
enum Source {
    Dir(PathBuf),
    Files(Vec<(u64, File)>),
}

/// Reads a journal from a sequence number or a time, stepping over damage
/// (counted in [`JournalReader::corrupt_skipped`]). It sees what was
/// flushed when it reached each segment; [`JournalReader::refresh`] looks
/// again.
///
/// Each segment is read into memory a stretch at a time and each record
/// checked once (its CRC, by the scan that also finds damage) before it
/// is handed out from that private copy, so a writer that changes the
/// file meanwhile changes nothing already read.
#[derive(Debug)]
pub struct JournalReader {
    source: Source,
    max_record: u32,
    bases: Vec<u64>,
    /// Index in `bases` of the segment in `data`, if one is loaded.
    seg: Option<usize>,
    data: Window,
    /// The loaded segment's scan so far (offsets in the segment): those
    /// up to `scanned.end` are checked.
    scanned: Scan,
    /// The segment offset of `data[0]`: `data` holds the loaded segment's
    /// bytes from there on, as far as they were read (what was handed out
    /// is dropped, so that the same few pages are read into again and
    /// again, and stay in cache).
    win: usize,
    /// Whether `data` holds the loaded segment to its end (as of the last
    /// read).
    ended: bool,
    /// The loaded segment's file, open (a reader of a directory).
    file: Option<(u64, File)>,
    /// Bytes read at a time ahead of the scan.
    read_ahead: usize,
    /// The record `advance` found last: its offset, fields, payload length
    /// and size.
    ahead: Option<(usize, RecordMeta, usize, usize)>,
    pos: usize,
    /// Records before this sequence number are skipped.
    from_seq: u64,
    /// Records appended before this time are skipped.
    from_ns: u64,
    corrupt_skipped: u64,
    damaged_segments: Vec<(u64, String)>,
    /// The sequence number of the last record passed (read, or skipped as
    /// before the start).
    last_seen: Option<u64>,
}

impl JournalReader {
    /// Opens the journal in `dir` for reading from its first record;
    /// `max_record` is the topic's largest message.
    ///
    /// # Errors
    /// [`JournalError::Io`] if the directory cannot be read.
    pub fn open(dir: &Path, max_record: u32) -> Result<JournalReader, JournalError> {
        let bases = list_segments(dir).map_err(io_error(dir))?;
        Ok(JournalReader::with_source(
            Source::Dir(dir.to_owned()),
            bases,
            max_record,
        ))
    }

    /// A reader of the segment files `segments` (each with the base
    /// sequence number of its name), for reading from its first record;
    /// more may be added with [`JournalReader::add_segments`].
    pub fn from_segments(segments: Vec<(u64, File)>, max_record: u32) -> JournalReader {
        let mut r = JournalReader::with_source(Source::Files(Vec::new()), Vec::new(), max_record);
        r.add_segments(segments);
        r
    }

    fn with_source(source: Source, bases: Vec<u64>, max_record: u32) -> JournalReader {
        JournalReader {
            source,
            max_record,
            bases,
            seg: None,
            data: Window::default(),
            scanned: Scan::default(),
            win: 0,
            ended: true,
            file: None,
            read_ahead: READ_AHEAD,
            ahead: None,
            pos: 0,
            from_seq: 0,
            from_ns: 0,
            corrupt_skipped: 0,
            damaged_segments: Vec::new(),
            last_seen: None,
        }
    }

    /// The sequence number of the last record read, or stepped over as
    /// before the start asked for: the journal's last, once it is read to
    /// its end.
    pub fn last_seen(&self) -> Option<u64> {
        self.last_seen
    }

    /// Adds segment files to a reader made by
    /// [`JournalReader::from_segments`]; those it holds already (by base
    /// sequence number) are ignored. For a reader of a directory this does
    /// nothing ([`JournalReader::refresh`] lists it again).
    pub fn add_segments(&mut self, segments: Vec<(u64, File)>) {
        let Source::Files(files) = &mut self.source else {
            return;
        };
        let current = self.seg.and_then(|i| self.bases.get(i).copied());
        for (base, file) in segments {
            if let Err(at) = files.binary_search_by_key(&base, |(b, _)| *b) {
                files.insert(at, (base, file));
            }
        }
        self.bases = files.iter().map(|(b, _)| *b).collect();
        if let Some(base) = current {
            self.seg = self.bases.binary_search(&base).ok();
        }
    }

    /// The base sequence number of the last segment known.
    pub fn last_base(&self) -> Option<u64> {
        self.bases.last().copied()
    }

    /// Damaged stretches stepped over so far.
    pub fn corrupt_skipped(&self) -> u64 {
        self.corrupt_skipped
    }

    /// Segment files left out because their header is not ours, with why.
    pub fn damaged_segments(&self) -> &[(u64, String)] {
        &self.damaged_segments
    }

    /// The first record's sequence number the journal still holds, if any
    /// (from its segments' names: the oldest may hold damage first).
    pub fn first_seq(&self) -> Option<u64> {
        self.bases.first().copied()
    }

    /// Reads from the first record whose sequence number is `seq` or more.
    ///
    /// # Errors
    /// [`JournalError::Io`] if a segment cannot be read.
    pub fn seek_seq(&mut self, seq: u64) -> Result<(), JournalError> {
        self.from_seq = seq;
        self.from_ns = 0;
        // The last segment whose first record is at or before `seq`; the
        // records before `seq` in it are stepped over as they are checked
        // (they are checked either way: no record is trusted unread).
        let i = self.bases.partition_point(|&b| b <= seq).saturating_sub(1);
        self.load(i)
    }

    /// Reads from the first record appended at CLOCK_REALTIME `ns` or
    /// later.
    ///
    /// # Errors
    /// [`JournalError::Io`] if a segment cannot be read.
    pub fn seek_time(&mut self, ns: u64) -> Result<(), JournalError> {
        self.from_seq = 0;
        self.from_ns = ns;
        // Segments are in time order: a segment whose successor's first
        // record was appended before `ns` holds nothing from `ns` on. Each such look reads one record, not the segment.
        let mut i = 0;
        while i + 1 < self.bases.len() {
            self.load(i + 1)?;
            self.scan_more()?;
            match self.scan_first() {
                Some(first) if first.recorded_ns < ns => i += 1,
                _ => break,
            }
        }
        self.load(i)
    }

    /// The fields of the loaded segment's first good record, once scanned.
    fn scan_first(&self) -> Option<RecordMeta> {
        let at = match self.scanned.corrupt.first() {
            Some(c) if c.offset == SEGMENT_HEADER => SEGMENT_HEADER + c.len,
            _ => SEGMENT_HEADER,
        };
        if at >= self.scanned.end || at < self.win {
            return None;
        }
        record::parse_scanned(&self.data.bytes()[at - self.win..]).map(|(meta, _, _)| meta)
    }

    /// Reads more of segment `base` into `self.data`, until it holds `upto`
    /// bytes; returns whether the file ended first. A segment removed (by retention) since it was listed
    /// reads as ended.
    fn fill(&mut self, base: u64, upto: usize) -> Result<bool, JournalError> {
        match &self.source {
            Source::Dir(dir) => {
                let path = dir.join(segment_name(base));
                let read = match &self.file {
                    Some((b, f)) if *b == base => self.data.read_more(f, self.win, upto),
                    _ => File::open(&path).and_then(|f| {
                        let read = self.data.read_more(&f, self.win, upto);
                        self.file = Some((base, f));
                        read
                    }),
                };
                match read {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
                    other => other.map_err(io_error(&path)),
                }
            }
            Source::Files(files) => {
                let Ok(i) = files.binary_search_by_key(&base, |(b, _)| *b) else {
                    return Ok(true);
                };
                self.data
                    .read_more(&files[i].1, self.win, upto)
                    .map_err(|e| JournalError::Io {
                        path: PathBuf::from(segment_name(base)),
                        source: e,
                    })
            }
        }
    }

    /// Loads segment `i` (of `bases`), reads from its first record. Only
    /// its header and the first stretch of records are read now; the rest
    /// as the reader gets there ([`JournalReader::scan_more`]). A segment
    /// that cannot be read as ours is reported and left empty.
    fn load(&mut self, i: usize) -> Result<(), JournalError> {
        self.seg = Some(i);
        self.data.clear();
        self.win = 0;
        self.scanned = Scan::default();
        self.pos = SEGMENT_HEADER;
        self.ahead = None;
        self.file = None;
        self.ended = true;
        let Some(&base) = self.bases.get(i) else {
            return Ok(());
        };
        self.ended = self.fill(base, SEGMENT_HEADER + self.read_ahead)?;
        if let Err(why) = check_segment_header(self.data.bytes(), base) {
            if !self.data.is_empty() {
                self.damaged_segments.push((base, why));
            }
            self.data.clear();
            self.ended = true;
            return Ok(());
        }
        self.scanned.end = SEGMENT_HEADER;
        Ok(())
    }

    /// Checks the loaded segment's records on from the last one checked,
    /// reading ahead as it goes; returns false once there is nothing more
    /// to check there as of now (its end, or a torn tail a refresh may
    /// find completed).
    ///
    /// Reading a stretch at a time (not the whole segment, then checking
    /// it, then handing it out) keeps the bytes in cache between the
    /// three. A record cut by the end of a stretch is read whole before
    /// it is judged: only at the file's end is a short record damage (else
    /// a payload that happens to hold a good record could be taken for
    /// the next one).
    fn scan_more(&mut self) -> Result<bool, JournalError> {
        let Some(base) = self.seg.and_then(|i| self.bases.get(i).copied()) else {
            return Ok(false);
        };
        if self.scanned.end < SEGMENT_HEADER {
            // Its header was short or not ours.
            return Ok(false);
        }
        let largest = record_size(self.max_record as usize);
        // What was handed out goes (nothing borrows it past the call that
        // handed it out).
        let keep = self.pos.min(self.scanned.end);
        if keep > self.win {
            self.data.drop_front(keep - self.win);
            self.win = keep;
        }
        loop {
            let end = self.scanned.end;
            let want = end - self.win + self.read_ahead.max(largest);
            if self.data.len() < want && !self.ended {
                self.ended = self.fill(base, want)?;
            }
            let more = record::scan_window(
                self.data.bytes(),
                end - self.win,
                self.max_record,
                self.ended,
            );
            if more.end + self.win > end {
                let (win, s) = (self.win, &mut self.scanned);
                s.corrupt.extend(more.corrupt.into_iter().map(|c| Corrupt {
                    offset: c.offset + win,
                    ..c
                }));
                s.end = more.end + win;
                s.torn = more.torn;
                return Ok(true);
            }
            if self.ended {
                self.scanned.torn = more.torn;
                return Ok(false);
            }
            // Damage longer than a stretch: read on to the next good
            // record (or the end) before judging it, twice as far each
            // time (each try searches the damage from its start).
            let unsure = self.data.len() + self.win - end;
            let upto = self.data.len() + unsure.max(self.read_ahead).max(largest);
            self.ended = self.fill(base, upto)?;
        }
    }

    /// Looks again: segments that appeared in the directory (a reader of
    /// descriptors gets new ones through
    /// [`JournalReader::add_segments`]), and records appended to the
    /// current segment since it was read. Only the bytes after its last
    /// good record are read again: those before it are never rewritten
    /// (the writer only ever cuts a torn tail).
    ///
    /// # Errors
    /// [`JournalError::Io`] if the directory or a segment cannot be read.
    pub fn refresh(&mut self) -> Result<(), JournalError> {
        let current = self.seg.and_then(|i| self.bases.get(i).copied());
        if let Source::Dir(dir) = &self.source {
            self.bases = list_segments(dir).map_err(io_error(dir))?;
        }
        let Some(base) = current else {
            return Ok(());
        };
        self.ahead = None;
        match self.bases.binary_search(&base) {
            Ok(i) if self.scanned.end >= SEGMENT_HEADER => {
                self.seg = Some(i);
                // What lies past the last good record may have been a torn
                // tail since cut and written again.
                self.data.truncate(self.scanned.end - self.win);
                self.scanned.torn = 0;
                self.ended = false;
            }
            // Its header was short or damaged: read it whole again.
            Ok(i) => {
                let pos = self.pos;
                self.load(i)?;
                self.pos = pos.max(SEGMENT_HEADER);
            }
            // Removed by retention: go on with the next one.
            Err(i) => {
                self.seg = Some(i.saturating_sub(1));
                self.data.clear();
                self.win = 0;
                self.scanned = Scan::default();
                self.file = None;
                self.ended = true;
                self.pos = 0;
            }
        }
        Ok(())
    }

    /// Finds the next record to hand out (stepping over damage and what
    /// lies before the start), without taking it: its offset, fields,
    /// payload length and size.
    ///
    /// Inline for the common case, a good record checked already and due,
    /// so that its fields stay in registers on their way to the caller
    /// (returned through memory, this tuple was a fifth of a replay's
    /// time).
    #[inline(always)]
    fn advance(&mut self) -> Result<Option<(usize, RecordMeta, usize, usize)>, JournalError> {
        if let Some(a) = self.ahead.filter(|a| a.0 == self.pos) {
            return Ok(Some(a));
        }
        let no_damage_ahead = self
            .scanned
            .corrupt
            .last()
            .map_or(true, |c| c.offset < self.pos);
        if self.pos < self.scanned.end && no_damage_ahead {
            let next = self
                .data
                .bytes()
                .get(self.pos - self.win..)
                .and_then(record::parse_scanned);
            if let Some((meta, len, size)) = next {
                if meta.seq >= self.from_seq && meta.recorded_ns >= self.from_ns {
                    // Returned from the local, not read back from
                    // `self.ahead`: a load of what was just stored, in
                    // other widths, waits for the stores to retire.
                    let found = (self.pos, meta, len, size);
                    self.ahead = Some(found);
                    return Ok(Some(found));
                }
            }
        }
        self.advance_slow()
    }

    /// [`JournalReader::advance`] past damage, records before the start,
    /// and the end of what was checked.
    #[inline(never)]
    fn advance_slow(&mut self) -> Result<Option<(usize, RecordMeta, usize, usize)>, JournalError> {
        loop {
            if self.seg.is_none() {
                self.load(0)?;
            }
            // Only what the scan checked: good records and the damage
            // between them (a torn tail, after `end`, waits for a refresh).
            while self.pos < self.scanned.end {
                let corrupt = &self.scanned.corrupt;
                if let Ok(k) = corrupt.binary_search_by_key(&self.pos, |c| c.offset) {
                    self.pos += corrupt[k].len;
                    self.corrupt_skipped += 1;
                    continue;
                }
                let Some((meta, len, size)) = self
                    .data
                    .bytes()
                    .get(self.pos - self.win..)
                    .and_then(record::parse_scanned)
                else {
                    // Not a record start the scan passed: cannot happen
                    // for offsets reached from a segment's first record,
                    // but never trusted.
                    self.pos = self.scanned.end;
                    break;
                };
                if meta.seq < self.from_seq || meta.recorded_ns < self.from_ns {
                    self.pos += size;
                    self.last_seen = Some(meta.seq);
                    continue;
                }
                self.ahead = Some((self.pos, meta, len, size));
                return Ok(self.ahead);
            }
            if self.scan_more()? {
                continue;
            }
            let next = self.seg.map_or(0, |i| i + 1);
            if next >= self.bases.len() {
                return Ok(None);
            }
            self.load(next)?;
        }
    }
    /// The fields and payload length of the record
    /// [`JournalReader::next_record`] would return, without taking it.
    ///
    /// # Errors
    /// [`JournalError::Io`] if a segment cannot be read.
    #[inline]
    pub fn peek(&mut self) -> Result<Option<(RecordMeta, usize)>, JournalError> {
        Ok(self.advance()?.map(|(_, meta, len, _)| (meta, len)))
    }

    /// The next record, or `None` at the end of what was read.
    ///
    /// # Errors
    /// [`JournalError::Io`] if a segment cannot be read.
    #[inline(always)]
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, JournalError> {
        let Some((at, meta, len, size)) = self.advance()? else {
            return Ok(None);
        };
        self.pos = at + size;
        self.last_seen = Some(meta.seq);
        let at = at - self.win;
        let payload = at + record::RECORD_HEADER..at + record::RECORD_HEADER + len;
        Ok(Some(Record {
            meta,
            payload: &self.data.bytes()[payload],
        }))
    }

    /// The payload of the next record, for a caller that has its header
    /// from [`JournalReader::peek`] already: as `next_record`, but after a
    /// peek it reads back only the fields it needs, one word each. The
    /// whole record found by the peek, read back at once, loaded the words
    /// just stored in other widths, which waits for the stores to retire
    /// (about two fifths of a subscriber's replay, which peeks every
    /// record before it takes it).
    ///
    /// # Errors
    /// As [`JournalReader::next_record`].
    #[inline(always)]
    pub fn next_payload(&mut self) -> Result<Option<&[u8]>, JournalError> {
        let (at, seq, len, size) = match &self.ahead {
            Some((at, meta, len, size)) if *at == self.pos => (*at, meta.seq, *len, *size),
            _ => match self.advance()? {
                Some((at, meta, len, size)) => (at, meta.seq, len, size),
                None => return Ok(None),
            },
        };
        self.pos = at + size;
        self.last_seen = Some(seq);
        let at = at - self.win + record::RECORD_HEADER;
        Ok(Some(&self.data.bytes()[at..at + len]))
    }
}

/// The largest segment a reader takes into memory (a writer rolls its
/// segments far sooner; a larger file is not one it wrote).
const MAX_SEGMENT_READ: u64 = 1 << 32;

/// Bytes a reader reads at a time ahead of where it checks records: small
/// enough that they are still in cache when checked and handed out.
const READ_AHEAD: usize = 128 << 10;

/// A reader's bytes of a segment: the first `len` bytes of `buf`. The
/// buffer only grows (zero-filled once), so a look for a few appended
/// bytes reads them without clearing a whole stretch first (which, in a
/// build without optimisations, took a replaying subscriber longer than
/// the recorder took to append more: it never caught up).
#[derive(Debug, Default)]
struct Window {
    buf: Vec<u8>,
    len: usize,
}

impl Window {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Drops the first `n` bytes.
    fn drop_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Appends, the window holding `file`'s bytes from offset `at` on,
    /// those that follow, until it holds `upto` bytes or the file ends;
    /// returns whether it ended. A file larger than any segment reads as
    /// ended there.
    fn read_more(&mut self, file: &File, at: usize, upto: usize) -> io::Result<bool> {
        let (got, ended) = read_more(file, at, &mut self.buf, self.len, upto)?;
        self.len = got;
        Ok(ended)
    }
}

/// Reads into `buf[start..upto]` (zero-filled first only where `buf` must
/// grow), `buf[..start]` holding `file`'s bytes from offset `at` on;
/// returns how many bytes `buf` holds now and whether the file ended.
fn read_more(
    file: &File,
    at: usize,
    buf: &mut Vec<u8>,
    start: usize,
    upto: usize,
) -> io::Result<(usize, bool)> {
    use std::os::unix::fs::FileExt;
    if at + start == 0 {
        let len = file.metadata()?.len();
        if len > MAX_SEGMENT_READ {
            return Err(io::Error::other(format!(
                "{len} bytes: larger than any segment a journal writes"
            )));
        }
    }
    let upto = upto.min((MAX_SEGMENT_READ as usize).saturating_sub(at));
    if upto <= start {
        return Ok((start, at + start >= MAX_SEGMENT_READ as usize));
    }
    if buf.len() < upto {
        buf.resize(upto, 0);
    }
    let mut got = start;
    let ended = loop {
        if got == upto {
            break false;
        }
        match file.read_at(&mut buf[got..upto], (at + got) as u64) {
            // Cut (a torn tail), or as long as it is.
            Ok(0) => break true,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    };
    Ok((got, ended))
}
#[cfg(test)]
mod tests;
