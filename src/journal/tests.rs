use super::*;
use std::os::unix::fs::PermissionsExt;

/// A directory of its own under the temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("ringbus-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn meta(seq: u64) -> RecordMeta {
    RecordMeta {
        seq,
        tag: seq ^ 0x5a,
        timestamp_ns: seq * 10,
        recorded_ns: 1_000_000 + seq * 1_000,
    }
}

fn payload(seq: u64) -> Vec<u8> {
    (0..(seq % 37) as usize)
        .map(|i| (seq as usize + i) as u8)
        .collect()
}

fn small(fsync: Fsync) -> JournalOptions {
    JournalOptions {
        segment_bytes: 4096,
        max_record: 64,
        fsync,
        ..JournalOptions::default()
    }
}

fn write(dir: &Path, seqs: std::ops::Range<u64>, options: JournalOptions) -> Journal {
    let mut j = Journal::open(dir, options).unwrap();
    for seq in seqs {
        j.append(&meta(seq), &payload(seq)).unwrap();
    }
    j.flush().unwrap();
    j
}

/// Every record a reader gets from `from`, checked against what was
/// written; returns their sequence numbers.
fn read_all(dir: &Path, from: u64) -> (Vec<u64>, u64) {
    let mut r = JournalReader::open(dir, 64).unwrap();
    r.seek_seq(from).unwrap();
    let mut seqs = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        assert_eq!(rec.meta, meta(rec.meta.seq));
        assert_eq!(rec.payload, &payload(rec.meta.seq)[..]);
        seqs.push(rec.meta.seq);
    }
    (seqs, r.corrupt_skipped())
}

#[test]
fn records_read_back_across_segments_and_reopens() {
    let s = Scratch::new("roundtrip");
    let j = write(&s.0, 0..2000, small(Fsync::None));
    assert!(j.segments().len() > 10, "{} segments", j.segments().len());
    assert!(j.segments().iter().all(|g| g.bytes <= 4096));
    drop(j);
    let (seqs, corrupt) = read_all(&s.0, 0);
    assert_eq!(seqs, (0..2000).collect::<Vec<_>>());
    assert_eq!(corrupt, 0);
    // From the middle, through the index.
    let (seqs, _) = read_all(&s.0, 1234);
    assert_eq!(seqs, (1234..2000).collect::<Vec<_>>());
    // Reopened, it appends after the last record.
    let mut j = Journal::open(&s.0, small(Fsync::None)).unwrap();
    assert_eq!(j.last_seq(), Some(1999));
    assert_eq!(*j.recovery(), Recovery::default());
    let err = j.append(&meta(1999), &payload(1999)).unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::OutOfOrder {
                seq: 1999,
                last: 1999,
                ..
            }
        ),
        "{err}"
    );
    for seq in 2000..2100 {
        j.append(&meta(seq), &payload(seq)).unwrap();
    }
    drop(j);
    assert_eq!(read_all(&s.0, 0).0, (0..2100).collect::<Vec<_>>());
}

#[test]
fn payloads_after_a_peek_or_without_one_are_the_records() {
    let s = Scratch::new("payloads");
    drop(write(&s.0, 0..600, small(Fsync::None)));
    let mut r = JournalReader::open(&s.0, 64).unwrap();
    for seq in 0..600u64 {
        // Every other record peeked first: either way the same bytes, in
        // order, across segments.
        if seq % 2 == 0 {
            let (m, len) = r.peek().unwrap().unwrap();
            assert_eq!((m, len), (meta(seq), payload(seq).len()));
        }
        assert_eq!(r.next_payload().unwrap(), Some(&payload(seq)[..]));
    }
    assert_eq!(r.next_payload().unwrap(), None);
    assert_eq!(r.peek().unwrap(), None);
}

#[test]
fn a_reader_starts_at_a_time() {
    let s = Scratch::new("time");
    drop(write(&s.0, 0..1000, small(Fsync::None)));
    let mut r = JournalReader::open(&s.0, 64).unwrap();
    r.seek_time(meta(700).recorded_ns).unwrap();
    assert_eq!(r.next_record().unwrap().unwrap().meta.seq, 700);
    r.seek_time(meta(700).recorded_ns - 1).unwrap();
    assert_eq!(r.next_record().unwrap().unwrap().meta.seq, 700);
    r.seek_time(u64::MAX).unwrap();
    assert!(r.next_record().unwrap().is_none());
}

#[test]
fn a_reader_sees_what_was_appended_after_a_refresh() {
    let s = Scratch::new("refresh");
    let mut j = write(&s.0, 0..10, small(Fsync::None));
    let mut r = JournalReader::open(&s.0, 64).unwrap();
    let mut got = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        got.push(rec.meta.seq);
    }
    for seq in 10..500 {
        j.append(&meta(seq), &payload(seq)).unwrap();
    }
    j.flush().unwrap();
    r.refresh().unwrap();
    while let Some(rec) = r.next_record().unwrap() {
        got.push(rec.meta.seq);
    }
    assert_eq!(got, (0..500).collect::<Vec<_>>());
}

/// The segment files of the journal in `dir`, opened, as a broker hands
/// them to a subscriber.
fn open_segments(dir: &Path) -> Vec<(u64, File)> {
    list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|b| (b, File::open(dir.join(segment_name(b))).unwrap()))
        .collect()
}

#[test]
fn a_reader_of_descriptors_follows_new_records_and_segments() {
    let s = Scratch::new("fds");
    let mut j = write(&s.0, 0..100, small(Fsync::None));
    let mut r = JournalReader::from_segments(open_segments(&s.0), 64);
    // Handed again, as a broker re-lists: nothing read twice.
    r.add_segments(open_segments(&s.0));
    let mut got = Vec::new();
    let mut take = |r: &mut JournalReader| {
        while let Some(rec) = r.next_record().unwrap() {
            assert_eq!(rec.payload, &payload(rec.meta.seq)[..]);
            got.push(rec.meta.seq);
        }
    };
    take(&mut r);
    assert_eq!(r.peek().unwrap(), None);
    // Half a record at the end of the current segment (a write under way)
    // is not read, and is read once it is whole.
    let last = *list_segments(&s.0).unwrap().last().unwrap();
    let path = s.0.join(segment_name(last));
    for seq in 100..300 {
        j.append(&meta(seq), &payload(seq)).unwrap();
    }
    j.flush().unwrap();
    let whole = std::fs::read(&path).unwrap();
    let appended_to_last = whole.len();
    r.refresh().unwrap();
    r.add_segments(open_segments(&s.0));
    take(&mut r);
    let next = *got.last().unwrap() + 1;
    j.append(&meta(next), &[7u8; 60]).unwrap();
    j.flush().unwrap();
    let last_now = *list_segments(&s.0).unwrap().last().unwrap();
    let path = s.0.join(segment_name(last_now));
    let full = std::fs::read(&path).unwrap();
    let cut = if last_now == last {
        appended_to_last + 20
    } else {
        SEGMENT_HEADER + 20
    };
    std::fs::write(&path, &full[..cut]).unwrap();
    r.refresh().unwrap();
    r.add_segments(open_segments(&s.0));
    assert_eq!(r.peek().unwrap(), None, "a torn record is not handed out");
    std::fs::write(&path, &full).unwrap();
    r.refresh().unwrap();
    let rec = r.next_record().unwrap().expect("the record, once whole");
    assert_eq!((rec.meta.seq, rec.payload), (next, &[7u8; 60][..]));
    assert_eq!(got, (0..300).collect::<Vec<_>>());
    assert_eq!(r.corrupt_skipped(), 0);
}

#[test]
fn a_torn_tail_is_cut_at_every_byte_of_the_last_three_records() {
    let s = Scratch::new("torn");
    let original = s.0.join("original");
    let j = write(&original, 0..40, small(Fsync::None));
    assert_eq!(j.segments().len(), 1, "one segment for this test");
    drop(j);
    let name = segment_name(0);
    let bytes = std::fs::read(original.join(&name)).unwrap();
    // The offsets at which records 37, 38 and 39 start.
    let mut offsets = vec![SEGMENT_HEADER];
    for seq in 0..40 {
        offsets.push(offsets[seq as usize] + record_size(payload(seq).len()));
    }
    assert_eq!(offsets[40], bytes.len());
    for cut in offsets[37]..bytes.len() {
        let dir = s.0.join(format!("cut-{cut}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::write(dir.join(&name), &bytes[..cut]).unwrap();
        let whole = offsets.iter().filter(|&&o| o <= cut).count() as u64 - 1;
        let mut j = Journal::open(&dir, small(Fsync::Always)).unwrap();
        assert_eq!(j.last_seq(), Some(whole - 1), "cut at {cut}");
        let cut_to = offsets[whole as usize];
        assert_eq!(
            j.recovery().torn_bytes,
            (cut - cut_to) as u64,
            "cut at {cut}"
        );
        assert!(j.recovery().corrupt.is_empty());
        assert_eq!(
            std::fs::metadata(dir.join(&name)).unwrap().len(),
            cut_to as u64
        );
        // Appending goes on from the last whole record.
        for seq in whole..45 {
            j.append(&meta(seq), &payload(seq)).unwrap();
        }
        drop(j);
        assert_eq!(
            read_all(&dir, 0),
            ((0..45).collect::<Vec<_>>(), 0),
            "cut at {cut}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn a_damaged_record_in_the_middle_is_skipped_and_counted() {
    let s = Scratch::new("flip");
    drop(write(&s.0, 0..40, small(Fsync::None)));
    let path = s.0.join(segment_name(0));
    let mut bytes = std::fs::read(&path).unwrap();
    let mut at = SEGMENT_HEADER;
    for seq in 0..20 {
        at += record_size(payload(seq).len());
    }
    bytes[at + 20] ^= 0x01; // record 20's sequence number
    std::fs::write(&path, &bytes).unwrap();
    let (seqs, corrupt) = read_all(&s.0, 0);
    let mut want: Vec<u64> = (0..40).collect();
    want.remove(20);
    assert_eq!((seqs, corrupt), (want, 1));
    // The writer reports it, leaves it, and appends after the last record.
    let mut j = Journal::open(&s.0, small(Fsync::None)).unwrap();
    assert_eq!(j.recovery().corrupt.len(), 1);
    assert_eq!(j.recovery().corrupt[0].1.offset, at);
    assert_eq!(j.recovery().torn_bytes, 0);
    assert_eq!(j.last_seq(), Some(39));
    j.append(&meta(40), &payload(40)).unwrap();
    drop(j);
    assert_eq!(read_all(&s.0, 0).0.len(), 40);
}

#[test]
fn a_segment_that_is_not_ours_is_set_aside() {
    let s = Scratch::new("alien");
    drop(write(&s.0, 0..100, small(Fsync::None)));
    let alien = s.0.join(segment_name(5000));
    std::fs::write(&alien, b"not a journal segment at all, just text").unwrap();
    let mut r = JournalReader::open(&s.0, 64).unwrap();
    let mut n = 0;
    while r.next_record().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 100);
    assert_eq!(r.damaged_segments().len(), 1);
    let j = Journal::open(&s.0, small(Fsync::None)).unwrap();
    assert_eq!(j.recovery().damaged_segments.len(), 1);
    assert!(!alien.exists());
    assert!(s.0.join(format!("{}.damaged", segment_name(5000))).exists());
    assert_eq!(j.last_seq(), Some(99));
}

#[test]
fn retention_removes_the_oldest_closed_segments() {
    let s = Scratch::new("retain");
    let options = JournalOptions {
        retain_bytes: Some(20_000),
        ..small(Fsync::None)
    };
    let j = write(&s.0, 0..5000, options);
    assert!(j.bytes() <= 20_000 + 4096, "{} bytes kept", j.bytes());
    let first = j.segments()[0].base_seq;
    assert!(first > 0);
    drop(j);
    let (seqs, _) = read_all(&s.0, 0);
    assert_eq!(seqs, (first..5000).collect::<Vec<_>>());

    let s = Scratch::new("retain-age");
    let mut j = write(&s.0, 0..1000, small(Fsync::None));
    // Set after writing: the records' times are made up, far in the past.
    j.options.retain_age = Some(Duration::from_micros(100));
    let before = j.segments().len();
    // Records 0..1000 were appended at 1 ms + seq us (see `meta`): at
    // 1.5 ms, segments that end before 1.4 ms are too old.
    let removed = j.retain(1_500_000).unwrap();
    assert!(removed > 0 && j.segments().len() == before - removed);
    let oldest_end = j.segments()[0].last.unwrap().recorded_ns;
    assert!(oldest_end >= 1_400_000, "{oldest_end}");
}

#[test]
fn bad_input_is_refused_clearly() {
    let s = Scratch::new("bad");
    let mut j = Journal::open(&s.0, small(Fsync::Interval(Duration::from_millis(5)))).unwrap();
    let err = j.append(&meta(0), &[0u8; 65]).unwrap_err();
    assert!(
        matches!(
            err,
            JournalError::TooLarge {
                len: 65,
                max: 64,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(j.last_seq(), None);
    j.append(&meta(3), b"x").unwrap();
    j.tick().unwrap();
    drop(j);

    // A directory others may write is not trusted.
    std::fs::set_permissions(&s.0, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Journal::open(&s.0, small(Fsync::None)).unwrap_err();
    assert!(err.to_string().contains("lets others write it"), "{err}");

    for (text, want) in [
        ("none", Ok(Fsync::None)),
        ("always", Ok(Fsync::Always)),
        (
            "interval:10ms",
            Ok(Fsync::Interval(Duration::from_millis(10))),
        ),
        (
            "interval:250us",
            Ok(Fsync::Interval(Duration::from_micros(250))),
        ),
        ("interval:2s", Ok(Fsync::Interval(Duration::from_secs(2)))),
    ] {
        assert_eq!(text.parse::<Fsync>(), want);
    }
    for bad in [
        "",
        "sometimes",
        "interval:",
        "interval:10",
        "interval:ms",
        "interval:0ms",
        "interval:5y",
    ] {
        let err = bad.parse::<Fsync>().unwrap_err();
        assert!(err.contains(&format!("{bad:?}")), "{err}");
    }
}

#[test]
fn a_full_disk_loses_nothing_already_journaled() {
    // /dev/full fails every write with ENOSPC: a segment file whose writes
    // fail as on a full disk, without needing a filesystem of our own.
    let s = Scratch::new("full");
    let mut j = write(&s.0, 0..10, small(Fsync::Always));
    // Swap the active segment's file for one that fails every write.
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    j.active.as_mut().unwrap().file = full;
    let err = j.append(&meta(10), &payload(10)).unwrap_err();
    assert!(matches!(err, JournalError::Io { .. }), "{err}");
    // The next call finds out what is on disk and goes on after it.
    j.append(&meta(10), &payload(10)).unwrap();
    assert_eq!(j.last_seq(), Some(10));
    drop(j);
    assert_eq!(read_all(&s.0, 0), ((0..11).collect::<Vec<_>>(), 0));
}

/// What one scan of a whole segment file finds good: the sequence
/// numbers, and the damaged stretches stepped over.
fn whole_scan(bytes: &[u8], max_record: u32) -> (Vec<u64>, u64) {
    let s = scan(bytes, SEGMENT_HEADER, max_record);
    let mut seqs = Vec::new();
    let mut at = SEGMENT_HEADER;
    let mut corrupt = s.corrupt.iter().peekable();
    while at < s.end {
        if let Some(c) = corrupt.next_if(|c| c.offset == at) {
            at += c.len;
            continue;
        }
        let (meta, _, size) = record::parse_scanned(&bytes[at..]).unwrap();
        seqs.push(meta.seq);
        at += size;
    }
    (seqs, s.corrupt.len() as u64)
}

#[test]
fn reading_a_stretch_at_a_time_finds_what_one_scan_of_the_whole_finds() {
    let s = Scratch::new("stretches");
    let options = JournalOptions {
        segment_bytes: 1 << 20,
        max_record: 512,
        ..small(Fsync::None)
    };
    let mut j = Journal::open(&s.0, options).unwrap();
    let mut offsets = Vec::new();
    let mut at = SEGMENT_HEADER;
    for seq in 0..400u64 {
        // A third of the payloads are themselves good records (of another
        // sequence number): a reader that took one cut off by the end of a
        // stretch for damage would look for the next record inside it.
        let body = if seq % 3 == 0 {
            let inner = payload(seq + 10_000);
            let mut b = record::encode_header(&meta(seq + 10_000), &inner).to_vec();
            b.extend_from_slice(&inner);
            b.resize(record_size(inner.len()) + 100, 0x33);
            b
        } else {
            (0..(seq * 7 % 300) as usize)
                .map(|i| (i as u64 ^ seq) as u8)
                .collect()
        };
        offsets.push(at);
        at += record_size(body.len());
        j.append(&meta(seq), &body).unwrap();
    }
    drop(j);
    let path = s.0.join(segment_name(0));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offsets[10] + 9] ^= 0x40; // a checksum
    bytes[offsets[99] + 4] ^= 0x01; // a length: the record runs on
    bytes[offsets[150]..offsets[190] + 3].fill(0); // a long stretch
    bytes[offsets[300] + 60] ^= 0x08; // a payload holding a good record
    bytes.truncate(offsets[399] + 30); // a torn tail
    std::fs::write(&path, &bytes).unwrap();
    let want = whole_scan(&bytes, 512);
    assert!(want.1 >= 3 && want.0.len() > 300, "{want:?}");
    // Stretches end at every few bytes of the records (the first record
    // past the end of one is read whole: at least 560 bytes on).
    let stretches = (1..2000).step_by(3).chain([4096, READ_AHEAD]);
    for read_ahead in stretches {
        let mut r = JournalReader::open(&s.0, 512).unwrap();
        r.read_ahead = read_ahead;
        let mut seqs = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            assert_eq!(rec.meta, meta(rec.meta.seq));
            seqs.push(rec.meta.seq);
        }
        assert_eq!((seqs, r.corrupt_skipped()), want, "read ahead {read_ahead}");
    }
}
