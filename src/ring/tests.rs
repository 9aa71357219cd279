//! Unit tests of the ring over heap memory (these run under Miri too).

use super::consumer::{read_ahead_distance, read_ahead_lines, STREAM_HOLD};
use super::*;
use crate::layout::SlotHeader;
use crate::sync::Ordering;
use crate::wait::WaitStrategy;
use std::mem::size_of;
use std::sync::Arc;
use std::time::Duration;

fn cfg(capacity: u32, max: u32, mode: Mode) -> TopicConfig {
    TopicConfig {
        max_message_size: max,
        capacity,
        mode,
        max_subscribers: 4,
    }
}

fn ring(capacity: u32, max: u32, mode: Mode) -> (Producer, Arc<RingRegion>) {
    let region = RingRegion::heap(&cfg(capacity, max, mode)).unwrap();
    (Producer::new(region.clone()).unwrap(), region)
}

/// A reader of `region` with a port whose mailbox the producer writes
/// once it adds the port (`p.add_port(port, MAILBOX)`).
fn mailbox_reader(region: &Arc<RingRegion>, id: u64, start: Start) -> (Consumer, Arc<Port>) {
    let port = Port::heap(region.config(), region.ring_id(), id, 0).unwrap();
    let c = Consumer::with_port(region.clone(), port.clone(), start, true).unwrap();
    (c, port)
}

const MAILBOX: PortFlags = PortFlags {
    mailbox: true,
    trusted: false,
};

/// A reader of `c` that blocks (`WaitStrategy::Block`) for each of the
/// next `n` messages and returns their first bytes and sequence numbers.
/// Before it starts, `c` has timed out once asleep (asking for wake-ups)
/// and `p` has answered that (within `BELL_EVERY` messages, which `c`
/// read): from here a message `p` settles wakes it.
fn sleeping_reader(
    p: &mut Producer,
    mut c: Consumer,
    n: usize,
) -> std::thread::JoinHandle<Vec<(u8, u64)>> {
    let mut buf = [0u8; 8];
    let wait = WaitStrategy::Block;
    assert_eq!(
        c.recv_timeout(&mut buf, wait, Duration::from_millis(1)),
        Err(RecvError::Timeout)
    );
    for _ in 0..=crate::layout::BELL_EVERY {
        let seq = p.publish(b"w", 0).unwrap();
        assert_eq!(recv_vec(&mut c).unwrap().1.seq, seq);
    }
    std::thread::spawn(move || {
        let mut got = Vec::new();
        while got.len() < n {
            let i = c
                .recv_timeout(&mut buf, wait, Duration::from_secs(30))
                .unwrap();
            got.push((buf[0], i.seq));
        }
        got
    })
}

fn recv_vec(c: &mut Consumer) -> Result<(Vec<u8>, MessageInfo), RecvError> {
    let mut buf = vec![0u8; c.config().max_message_size as usize];
    let info = c.try_recv(&mut buf)?;
    buf.truncate(info.len);
    Ok((buf, info))
}

#[test]
fn round_trip_carries_payload_tag_and_sequence() {
    let (mut p, r) = ring(8, 64, Mode::Overwrite);
    let mut c = Consumer::new(r, Start::Latest).unwrap();
    assert_eq!(p.publish(b"abc", 42), Ok(0));
    assert_eq!(p.publish(b"defgh", 43), Ok(1));
    let (m, i) = recv_vec(&mut c).unwrap();
    assert_eq!((m.as_slice(), i.seq, i.tag, i.len), (&b"abc"[..], 0, 42, 3));
    let (m, i) = recv_vec(&mut c).unwrap();
    assert_eq!((m.as_slice(), i.seq, i.tag), (&b"defgh"[..], 1, 43));
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
}

/// An overwrite ring's reader starts where the broker placed its port when
/// it made the subscription, not where `Start::Latest` would be by the time
/// the subscriber maps the ring: what was published in between is
/// delivered, and what was overwritten meanwhile is reported.
#[test]
fn an_overwrite_port_starts_where_the_broker_placed_it() {
    let (mut p, r) = ring(4, 8, Mode::Overwrite);
    let port = Port::heap(r.config(), r.ring_id(), 1, 0).unwrap();
    for i in 0..3u8 {
        p.publish(&[i], 0).unwrap();
    }
    let mut c = Consumer::with_port(r.clone(), port, Start::Latest, false).unwrap();
    for i in 0..3u8 {
        let (m, info) = recv_vec(&mut c).unwrap();
        assert_eq!((m, info.seq), (vec![i], u64::from(i)));
    }
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));

    // Placed at 3, mapped after six more messages on a ring of four:
    // messages 3 and 4 were overwritten.
    let late = Port::heap(r.config(), r.ring_id(), 2, 3).unwrap();
    for i in 3..9u8 {
        p.publish(&[i], 0).unwrap();
    }
    let mut c = Consumer::with_port(r, late, Start::Latest, false).unwrap();
    assert_eq!(recv_vec(&mut c), Err(RecvError::Lagged { missed: 2 }));
    let (m, info) = recv_vec(&mut c).unwrap();
    assert_eq!((m, info.seq), (vec![5], 5));
}

#[test]
fn zero_length_and_exact_max_size() {
    let (mut p, r) = ring(4, 16, Mode::Overwrite);
    let mut c = Consumer::new(r, Start::Latest).unwrap();
    p.publish(&[], 1).unwrap();
    p.publish(&[7u8; 16], 2).unwrap();
    assert_eq!(
        p.publish(&[0u8; 17], 3),
        Err(PublishError::TooLarge { len: 17, max: 16 })
    );
    assert!(matches!(
        p.loan(17),
        Err(PublishError::TooLarge { len: 17, max: 16 })
    ));
    let (m, i) = recv_vec(&mut c).unwrap();
    assert_eq!((m.len(), i.tag), (0, 1));
    let (m, i) = recv_vec(&mut c).unwrap();
    assert_eq!((m, i.tag), (vec![7u8; 16], 2));
    // The rejected message consumed no sequence number.
    assert_eq!(p.next_seq(), 2);
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
}

#[test]
fn wraps_around_many_times() {
    let (mut p, r) = ring(4, 8, Mode::Overwrite);
    let mut c = Consumer::new(r, Start::Latest).unwrap();
    for i in 0u64..(if cfg!(miri) { 20 } else { 1000 }) {
        p.publish(&i.to_le_bytes(), i).unwrap();
        let (m, info) = recv_vec(&mut c).unwrap();
        assert_eq!(
            (u64::from_le_bytes(m.try_into().unwrap()), info.seq),
            (i, i)
        );
    }
}

#[test]
fn exact_capacity_is_held_and_one_more_laps() {
    let (mut p, r) = ring(4, 8, Mode::Overwrite);
    let mut c = Consumer::new(r.clone(), Start::Earliest).unwrap();
    for i in 0u64..4 {
        p.publish(&[i as u8], i).unwrap();
    }
    let mut late = Consumer::new(r, Start::Earliest).unwrap();
    for i in 0u64..4 {
        assert_eq!(recv_vec(&mut c).unwrap().1.seq, i);
    }
    for i in 4u64..5 {
        p.publish(&[i as u8], i).unwrap();
    }
    // `late` wanted message 0, which message 4 overwrote.
    assert_eq!(recv_vec(&mut late), Err(RecvError::Lagged { missed: 1 }));
    assert_eq!(late.lagged_total(), 1);
    for i in 1u64..5 {
        assert_eq!(recv_vec(&mut late).unwrap().1.seq, i);
    }
    assert_eq!(recv_vec(&mut late), Err(RecvError::Empty));
}

#[test]
fn lag_reports_missed_count_and_resumes_at_oldest() {
    let (mut p, r) = ring(4, 8, Mode::Overwrite);
    let mut c = Consumer::new(r, Start::Latest).unwrap();
    for i in 0u64..10 {
        p.publish(&[i as u8], i).unwrap();
    }
    assert_eq!(recv_vec(&mut c), Err(RecvError::Lagged { missed: 6 }));
    for i in 6u64..10 {
        let (m, info) = recv_vec(&mut c).unwrap();
        assert_eq!((m[0] as u64, info.seq), (i, i));
    }
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
}

#[test]
fn lapped_again_soon_resumes_half_a_ring_behind_the_publisher() {
    let (mut p, r) = ring(8, 8, Mode::Overwrite);
    let mut c = Consumer::new(r, Start::Latest).unwrap();
    let publish = |p: &mut Producer, range: std::ops::Range<u64>| {
        for i in range {
            p.publish(&[i as u8], i).unwrap();
        }
    };
    let expect = |c: &mut Consumer, range: std::ops::Range<u64>| {
        for i in range {
            let (m, info) = recv_vec(c).unwrap();
            assert_eq!((m[0] as u64, info.seq), (i, i));
        }
    };
    // A first lap resumes at the oldest message held (20 - 8).
    publish(&mut p, 0..20);
    assert_eq!(recv_vec(&mut c), Err(RecvError::Lagged { missed: 12 }));
    expect(&mut c, 12..13);
    // Lapped again one message later (a publisher streaming past a slower
    // reader): half a ring behind the head (40 - 4), not the oldest (32),
    // which the publisher would overwrite next.
    publish(&mut p, 20..40);
    assert_eq!(recv_vec(&mut c), Err(RecvError::Lagged { missed: 36 - 13 }));
    expect(&mut c, 36..40);
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
    // A ring's worth of messages later a lap is isolated again: the oldest.
    publish(&mut p, 40..44);
    expect(&mut c, 40..44);
    publish(&mut p, 44..70);
    assert_eq!(recv_vec(&mut c), Err(RecvError::Lagged { missed: 62 - 44 }));
    expect(&mut c, 62..70);
    assert_eq!(c.lagged_total(), 12 + 23 + 18);
}

#[test]
fn start_positions() {
    let (mut p, r) = ring(4, 8, Mode::Overwrite);
    for i in 0u64..6 {
        p.publish(&[i as u8], i).unwrap();
    }
    let mut latest = Consumer::new(r.clone(), Start::Latest).unwrap();
    let mut earliest = Consumer::new(r.clone(), Start::Earliest).unwrap();
    let mut at3 = Consumer::new(r.clone(), Start::Sequence(3)).unwrap();
    let mut at0 = Consumer::new(r.clone(), Start::Sequence(0)).unwrap();
    let mut future = Consumer::new(r, Start::Sequence(7)).unwrap();
    assert_eq!(recv_vec(&mut latest), Err(RecvError::Empty));
    assert_eq!(recv_vec(&mut earliest).unwrap().1.seq, 2);
    assert_eq!(recv_vec(&mut at3).unwrap().1.seq, 3);
    assert_eq!(recv_vec(&mut at0), Err(RecvError::Lagged { missed: 2 }));
    assert_eq!(recv_vec(&mut at0).unwrap().1.seq, 2);
    assert_eq!(recv_vec(&mut future), Err(RecvError::Empty));
    p.publish(b"6", 6).unwrap();
    assert_eq!(recv_vec(&mut latest).unwrap().1.seq, 6);
    assert_eq!(recv_vec(&mut future), Err(RecvError::Empty));
    p.publish(b"7", 7).unwrap();
    assert_eq!(recv_vec(&mut future).unwrap().1.seq, 7);
}

#[test]
fn small_buffer_reports_needed_size_and_keeps_message() {
    let (mut p, r) = ring(4, 32, Mode::Overwrite);
    let mut c = Consumer::new(r, Start::Latest).unwrap();
    p.publish(&[9u8; 20], 5).unwrap();
    let mut small = [0u8; 10];
    assert_eq!(
        c.try_recv(&mut small),
        Err(RecvError::BufferTooSmall { needed: 20 })
    );
    let mut big = [0u8; 20];
    let info = c.try_recv(&mut big).unwrap();
    assert_eq!((info.len, info.tag, big), (20, 5, [9u8; 20]));
}

#[test]
fn end_of_stream_after_drain() {
    let (mut p, r) = ring(4, 8, Mode::Overwrite);
    let mut c = Consumer::new(r.clone(), Start::Latest).unwrap();
    p.publish(b"last", 0).unwrap();
    assert!(!r.is_closed());
    drop(p);
    assert!(r.is_closed());
    assert_eq!(recv_vec(&mut c).unwrap().0, b"last");
    assert_eq!(recv_vec(&mut c), Err(RecvError::EndOfStream));
    let mut buf = [0u8; 8];
    assert_eq!(
        c.recv(&mut buf, WaitStrategy::Spin),
        Err(RecvError::EndOfStream)
    );
}

#[test]
fn publisher_dying_mid_write_is_end_of_stream_not_a_torn_message() {
    let (mut p, r) = ring(4, 8, Mode::Overwrite);
    let mut c = Consumer::new(r.clone(), Start::Latest).unwrap();
    p.publish(b"whole", 0).unwrap();
    // A crash mid-write: the slot stays stamped odd, then the ring is closed
    // (by the broker for a dead process; here by the producer's drop).
    p.loan(8).unwrap().copy_from_slice(b"half-wri");
    drop(p);
    assert_eq!(recv_vec(&mut c).unwrap().0, b"whole");
    assert_eq!(recv_vec(&mut c), Err(RecvError::EndOfStream));
}

/// A message of `n`: its length cycles through inline sizes and, every
/// third message, the ring's maximum (too long to inline).
fn mixed(n: u64, max: u32) -> Vec<u8> {
    let len = if n % 3 == 0 {
        max as usize
    } else {
        (n as usize * 37) % (LATEST_INLINE_MAX as usize + 1)
    };
    (0..len)
        .map(|i| (n as u8).wrapping_mul(31) ^ i as u8)
        .collect()
}

#[test]
fn latest_slot_mixed_sizes_caught_up_and_behind() {
    let max = LATEST_INLINE_MAX + 40;
    let (mut p, r) = ring(8, max, Mode::Overwrite);
    let mut c = Consumer::new(r, Start::Latest).unwrap();
    // Caught up: one message at a time.
    for n in 0..12 {
        assert!(!c.is_ready());
        p.publish(&mixed(n, max), n).unwrap();
        assert!(c.is_ready());
        let (m, i) = recv_vec(&mut c).unwrap();
        assert_eq!((i.seq, i.tag, m), (n, n, mixed(n, max)));
        assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
    }
    // Behind by a backlog, then caught up again.
    for n in 12..18 {
        p.publish(&mixed(n, max), n).unwrap();
    }
    for n in 12..18 {
        let (m, i) = recv_vec(&mut c).unwrap();
        assert_eq!((i.seq, m), (n, mixed(n, max)));
    }
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
    p.publish(&mixed(19, max), 19).unwrap();
    assert_eq!(recv_vec(&mut c).unwrap().0, mixed(19, max));
}

#[test]
fn every_inline_length_arrives_whole_through_the_latest_slot() {
    // Each length goes through the publisher's short copies into the slot's
    // head and tail and the reader's copies out (one or two moves of each
    // width, or `memcpy` above 32 bytes): every byte must land, and the
    // bytes after the message in the caller's buffer must stay untouched.
    let max = LATEST_INLINE_MAX;
    let (mut p, r) = ring(8, max, Mode::Overwrite);
    let mut c = Consumer::new(r, Start::Latest).unwrap();
    let lens: Vec<usize> = if cfg!(miri) {
        vec![0, 1, 7, 8, 31, 32, 33, 64, 65, max as usize]
    } else {
        (0..=max as usize).collect()
    };
    for (n, &len) in lens.iter().enumerate() {
        let msg: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(7) ^ n as u8)
            .collect();
        p.publish(&msg, n as u64).unwrap();
        let mut buf = vec![0xEEu8; max as usize + 8];
        let info = c.try_recv(&mut buf).unwrap();
        assert_eq!((info.seq, info.len), (n as u64, len));
        assert_eq!(&buf[..len], &msg[..], "length {len}");
        assert!(
            buf[len..].iter().all(|&b| b == 0xEE),
            "length {len} wrote past its end"
        );
    }
}

#[test]
fn a_caught_up_reader_gets_each_slot_of_a_loan_of_many() {
    // The commit copies each short message into the mailboxes (and the
    // latest slot, if in use) from its own ring slot. A reader moved up to
    // the last message of each commit before it reads takes it from its
    // mailbox: the ring slot's copy is scribbled over to show it.
    // So does a batch of 200-byte messages (each sealed once written).
    let region = RingRegion::heap(&cfg(8, 256, Mode::Overwrite)).unwrap();
    let region = Arc::new(Arc::try_unwrap(region).unwrap().poll_latest(false));
    let mut p = Producer::new(region.clone()).unwrap();
    let stride = region.sizes().slot_stride as usize;
    for round in 0..6u8 {
        let (mut c, port) = mailbox_reader(&region, u64::from(round), Start::Latest);
        p.add_port(port, MAILBOX).unwrap();
        let len = if round % 2 == 0 { 4 } else { 200 };
        let byte = |i: usize| b'a' + round * 3 + i as u8;
        let seqs = if round % 2 == 0 {
            let mut loans = p.loan_many(3, len).unwrap();
            for (i, slot) in loans.iter_mut().enumerate() {
                slot.fill(byte(i));
            }
            loans.commit(7)
        } else {
            let msgs: Vec<Vec<u8>> = (0..3).map(|i| vec![byte(i); len]).collect();
            p.publish_batch(&msgs, 7).unwrap()
        };
        let last = seqs.end - 1;
        // SAFETY: the last message's payload area (`len` of its 256
        // bytes) in a live heap ring, which no one else writes now.
        unsafe {
            let at = region.slots().add((last % 8) as usize * stride);
            std::ptr::write_bytes(at.add(size_of::<SlotHeader>()), b'X', len);
        }
        assert_eq!(c.skip_to(last), last);
        let (m, info) = recv_vec(&mut c).unwrap();
        assert_eq!((m, info.seq, info.tag), (vec![byte(2); len], last, 7));
    }
}

#[test]
fn caught_up_reader_takes_inline_messages_from_the_latest_slot() {
    let (mut p, r) = ring(4, 16, Mode::Overwrite);
    let mut caught_up = Consumer::new(r.clone(), Start::Latest).unwrap();
    p.publish(b"first", 0).unwrap();
    assert_eq!(recv_vec(&mut caught_up).unwrap().0, b"first");
    p.publish(b"second", 1).unwrap();
    let mut behind = Consumer::new(r.clone(), Start::Earliest).unwrap();
    // Scribble over message 1's ring slot payload, stamps untouched: the
    // caught-up reader still gets it whole (it reads the latest slot) ...
    // SAFETY: a live heap ring; slot 1's payload area has 16 bytes and no
    // one else writes it now.
    unsafe {
        let payload = r
            .slots()
            .add(r.sizes().slot_stride as usize + size_of::<SlotHeader>());
        std::ptr::write_bytes(payload, b'X', 6);
    }
    assert_eq!(recv_vec(&mut caught_up).unwrap().0, b"second");
    // ... while a reader with a backlog reads the ring slots, until it has
    // caught up too.
    p.publish(b"third", 2).unwrap();
    assert_eq!(recv_vec(&mut behind).unwrap().0, b"first");
    assert_eq!(recv_vec(&mut behind).unwrap().0, b"XXXXXX");
    assert_eq!(recv_vec(&mut behind).unwrap().0, b"third");
    assert_eq!(recv_vec(&mut caught_up).unwrap().0, b"third");
}

#[test]
fn a_message_written_to_its_ring_slot_alone_is_whole_and_stamped_while_the_clock_is_on() {
    // No reader yet, so no latest slot or mailbox: each message is its
    // ring slot alone (`Producer::put`'s short path), short copies inline.
    // The clock goes on and off between messages; a message carries a
    // timestamp exactly while it is on.
    let max = 48;
    let (mut p, r) = ring(64, max, Mode::Overwrite);
    let mut sent = Vec::new();
    for len in 0..=max as usize {
        let on = len % 4 >= 2;
        p.set_timestamps(on);
        let msg: Vec<u8> = (0..len).map(|i| (len * 7 + i) as u8 | 1).collect();
        p.publish(&msg, len as u64 * 3).unwrap();
        sent.push((msg, on));
    }
    let mut c = Consumer::new(r, Start::Earliest).unwrap();
    for (n, (msg, on)) in sent.into_iter().enumerate() {
        let (m, i) = recv_vec(&mut c).unwrap();
        assert_eq!(
            (i.seq, i.tag, m),
            (n as u64, n as u64 * 3, msg),
            "message {n}"
        );
        if !on {
            assert_eq!(i.timestamp, 0, "message {n} was sent with the clock off");
        } else if !cfg!(any(miri, loom)) {
            assert!(i.timestamp > 0, "message {n} was sent with the clock on");
        }
    }
}

#[test]
fn latest_slot_and_ring_slot_carry_the_same_timestamp() {
    // The clock is read after the payload copy, inside the latest-slot
    // write for inline messages and at the ring seal otherwise: both
    // copies of a message must carry one value, whichever path wrote it.
    let max = LATEST_INLINE_MAX + 40;
    let (mut p, r) = ring(32, max, Mode::Overwrite);
    p.set_timestamps(true);
    let mut caught_up = Consumer::new(r.clone(), Start::Latest).unwrap();
    let mut behind = Consumer::new(r, Start::Earliest).unwrap();
    let mut from_latest = Vec::new();
    for n in 0..12u64 {
        let msg = mixed(n, max);
        // Loans (odd n) and copies, inline and too long to inline (n % 3 == 0).
        if n % 2 == 1 {
            let mut loan = p.loan(msg.len()).unwrap();
            loan.copy_from_slice(&msg);
            loan.commit(n);
        } else {
            p.publish(&msg, n).unwrap();
        }
        let (m, i) = recv_vec(&mut caught_up).unwrap();
        assert_eq!((i.seq, m), (n, msg));
        from_latest.push(i.timestamp);
    }
    let mut prev = 0;
    for (n, ts) in from_latest.into_iter().enumerate() {
        let (_, i) = recv_vec(&mut behind).unwrap();
        assert_eq!((i.seq, i.timestamp), (n as u64, ts), "message {n}");
        assert!(ts >= prev, "timestamps went backwards at {n}");
        if !cfg!(any(miri, loom)) {
            assert!(ts > 0, "message {n} carries no timestamp");
        }
        prev = ts;
    }
}

#[test]
fn garbage_in_the_latest_slot_only_sends_readers_to_the_ring() {
    let (mut p, r) = ring(4, 8, Mode::Overwrite);
    let mut c = Consumer::new(r.clone(), Start::Latest).unwrap();
    // SAFETY: the latest slot of a live heap ring; written through atomics.
    let latest = unsafe { &*(r.latest() as *const SlotHeader) };
    p.publish(b"one", 1).unwrap();
    // A length beyond the inline area: read the ring slot instead.
    latest.len.store(u32::MAX, Ordering::Relaxed);
    assert_eq!(recv_vec(&mut c).unwrap().0, b"one");
    // A stamp from far in the future: the ring decides what is there.
    p.publish(b"two", 2).unwrap();
    latest.stamp.store(u64::MAX - 1, Ordering::Relaxed);
    assert_eq!(recv_vec(&mut c).unwrap().0, b"two");
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
    p.publish(b"three", 3).unwrap();
    assert_eq!(recv_vec(&mut c).unwrap().0, b"three");
}

#[test]
fn mailbox_takes_over_from_the_ring_and_hands_back() {
    let max = LATEST_INLINE_MAX + 40;
    let config = cfg(8, max, Mode::Overwrite);
    let region = RingRegion::heap(&config).unwrap();
    let mut p = Producer::new(region.clone()).unwrap();
    let (mut c, port) = mailbox_reader(&region, 100, Start::Earliest);
    // Not added by the publisher yet: everything comes from the ring.
    for n in 0..3 {
        p.publish(&mixed(n, max), n).unwrap();
    }
    p.add_port(port.clone(), MAILBOX).unwrap();
    p.add_port(port.clone(), MAILBOX).unwrap();
    assert_eq!(p.mailboxes(), 1, "adding twice adds once");
    for n in 3..5 {
        p.publish(&mixed(n, max), n).unwrap();
    }
    // A backlog across the hand-over, then caught up, inline and long.
    for n in 0..5 {
        let (m, i) = recv_vec(&mut c).unwrap();
        assert_eq!((i.seq, i.tag, m), (n, n, mixed(n, max)));
    }
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
    for n in 5..14 {
        assert!(!c.is_ready());
        p.publish(&mixed(n, max), n).unwrap();
        assert!(c.is_ready());
        let (m, i) = recv_vec(&mut c).unwrap();
        assert_eq!((i.seq, m), (n, mixed(n, max)));
        assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
    }
    // Removed: the reader goes back to the ring and misses nothing.
    assert!(p.remove_port(100));
    assert!(!p.remove_port(100));
    assert_eq!(p.mailboxes(), 0);
    for n in 14..18 {
        p.publish(&mixed(n, max), n).unwrap();
        assert!(c.is_ready());
        let (m, i) = recv_vec(&mut c).unwrap();
        assert_eq!((i.seq, m), (n, mixed(n, max)));
    }
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
}

#[test]
fn every_mailbox_gets_every_message_as_mailboxes_come_and_go() {
    let config = cfg(8, 64, Mode::Overwrite);
    // Subscribers that do not poll the shared latest slot: the publisher
    // writes mailboxes only, the first of them as its lead copy.
    let region = RingRegion::heap(&config).unwrap();
    let region = Arc::new(Arc::try_unwrap(region).unwrap().poll_latest(false));
    let mut p = Producer::new(region.clone()).unwrap();
    let mut readers = Vec::new();
    for id in 0..3 {
        let (c, port) = mailbox_reader(&region, id, Start::Latest);
        p.add_port(port.clone(), MAILBOX).unwrap();
        readers.push((c, port, true));
    }
    type Reader = (Consumer, Arc<Port>, bool);
    // Publishes message `seq`, scribbles over its ring slot's copy, and
    // checks what each reader gets: the message whole from a live mailbox
    // (so it read the mailbox), the scribble from the ring otherwise.
    fn round(p: &mut Producer, region: &RingRegion, seq: u64, readers: &mut [Reader]) {
        let msg = seq.to_le_bytes();
        p.publish(&msg, seq).unwrap();
        let stride = region.sizes().slot_stride as usize;
        // SAFETY: slot `seq`'s payload area (8 of its 64 bytes) in a live
        // heap ring, which no one else writes now.
        unsafe {
            let at = region.slots().add((seq % 8) as usize * stride);
            std::ptr::write_bytes(at.add(size_of::<SlotHeader>()), b'X', 8);
        }
        for (i, (c, mb, live)) in readers.iter_mut().enumerate() {
            if !*live {
                // SAFETY: the slot header of a live heap mailbox.
                let stamp = unsafe { &*mb.slot().hdr }.stamp.load(Ordering::Relaxed);
                assert_eq!(stamp, u64::MAX, "removed mailbox {i} was written");
            }
            let (m, info) = recv_vec(c).unwrap();
            let want = if *live { msg } else { *b"XXXXXXXX" };
            assert_eq!((info.seq, m.as_slice()), (seq, &want[..]), "reader {i}");
            assert_eq!(recv_vec(c), Err(RecvError::Empty), "reader {i}");
        }
    }
    round(&mut p, &region, 0, &mut readers);
    // The lead goes: the next mailbox takes its place, the last stays.
    assert!(p.remove_port(0));
    readers[0].2 = false;
    round(&mut p, &region, 1, &mut readers);
    // The last goes: one mailbox left, written as the lead.
    assert!(p.remove_port(2));
    readers[2].2 = false;
    round(&mut p, &region, 2, &mut readers);
    assert_eq!(p.mailboxes(), 1);
    // And the last one: every reader is back on the ring.
    assert!(p.remove_port(1));
    readers[1].2 = false;
    round(&mut p, &region, 3, &mut readers);
}

#[test]
fn loans_reach_the_mailbox_too() {
    let config = cfg(4, 64, Mode::Overwrite);
    let region = RingRegion::heap(&config).unwrap();
    let mut p = Producer::new(region.clone()).unwrap();
    let (mut c, port) = mailbox_reader(&region, 1, Start::Latest);
    p.add_port(port, MAILBOX).unwrap();
    let mut loan = p.loan(4).unwrap();
    loan.copy_from_slice(b"loan");
    loan.commit(3);
    // Scribble over the ring slot and the shared latest slot: the reader
    // still gets the message whole, so it read its mailbox.
    // SAFETY: a live heap ring; slot 0's and the latest slot's payload
    // areas have 64 bytes each and no one else writes them now.
    unsafe {
        let hdr = size_of::<SlotHeader>();
        std::ptr::write_bytes(region.slots().add(hdr), b'X', 4);
        std::ptr::write_bytes(region.latest().add(hdr), b'X', 4);
    }
    let (m, i) = recv_vec(&mut c).unwrap();
    assert_eq!((m.as_slice(), i.tag), (&b"loan"[..], 3));
}

#[test]
fn a_mailbox_misleads_only_its_own_reader() {
    let config = cfg(4, 16, Mode::Overwrite);
    let region = RingRegion::heap(&config).unwrap();
    let mut p = Producer::new(region.clone()).unwrap();
    let (mut mine, mb) = mailbox_reader(&region, 1, Start::Latest);
    let mut other = Consumer::new(region, Start::Latest).unwrap();
    p.add_port(mb.clone(), MAILBOX).unwrap();
    p.publish(b"one", 1).unwrap();
    assert_eq!(recv_vec(&mut mine).unwrap().0, b"one");
    assert_eq!(recv_vec(&mut other).unwrap().0, b"one");
    // The mailbox's owner forges message 1 in it ...
    // SAFETY: the slot of a live heap mailbox, written through atomics
    // (its payload's first word is 8-byte aligned, right after the header).
    unsafe {
        let slot = &*mb.slot().hdr;
        let word = &*(mb.slot().head as *const crate::sync::AtomicU64);
        word.store(u64::from_le_bytes(*b"fake\0\0\0\0"), Ordering::Relaxed);
        slot.len.store(4, Ordering::Relaxed);
        slot.stamp.store(stamp_done(1), Ordering::Release);
    }
    // ... and fools itself, but no one else: the other reader and the
    // publisher go on as if nothing happened.
    assert_eq!(recv_vec(&mut mine).unwrap().0, b"fake");
    assert_eq!(recv_vec(&mut other), Err(RecvError::Empty));
    p.publish(b"two", 2).unwrap();
    assert_eq!(recv_vec(&mut other).unwrap().0, b"two");
    p.publish(b"three", 3).unwrap();
    assert_eq!(recv_vec(&mut mine).unwrap().0, b"three");
    assert_eq!(recv_vec(&mut other).unwrap().0, b"three");
}

#[test]
fn a_streaming_reader_reads_the_ring_until_the_stream_pauses() {
    let config = cfg(8, 8, Mode::Overwrite);
    let region = RingRegion::heap(&config).unwrap();
    let mut p = Producer::new(region.clone()).unwrap();
    let (mut c, mb) = mailbox_reader(&region, 1, Start::Latest);
    p.add_port(mb.clone(), MAILBOX).unwrap();
    // Overwrites the mailbox's copy of the last message, stamp untouched:
    // a reader that takes it from there gets the forgery.
    let forge = || {
        // SAFETY: the payload's first word of a live heap mailbox, 8-byte
        // aligned, written through an atomic.
        let word = unsafe { &*(mb.slot().head as *const crate::sync::AtomicU64) };
        word.store(u64::from_le_bytes(*b"FORGED!!"), Ordering::Relaxed);
    };
    // Idle between messages: the reader takes them from its mailbox.
    p.publish(b"message0", 0).unwrap();
    forge();
    assert_eq!(recv_vec(&mut c).unwrap().0, b"FORGED!!");
    // The publisher gets ahead: a stream. The reader drains the ring ...
    p.publish(b"message1", 1).unwrap();
    p.publish(b"message2", 2).unwrap();
    assert_eq!(recv_vec(&mut c).unwrap().0, b"message1");
    assert_eq!(recv_vec(&mut c).unwrap().0, b"message2");
    // ... and, caught up, keeps reading the ring while the spell lasts.
    for n in 3..3 + u64::from(STREAM_HOLD) - 1 {
        p.publish(&n.to_le_bytes(), n).unwrap();
        forge();
        assert!(c.is_ready());
        assert_eq!(recv_vec(&mut c).unwrap().0, n.to_le_bytes(), "message {n}");
    }
    // STREAM_HOLD messages without the publisher ahead: back to the mailbox.
    p.publish(b"messageZ", 9).unwrap();
    forge();
    assert_eq!(recv_vec(&mut c).unwrap().0, b"FORGED!!");
}

#[test]
fn a_port_of_another_ring_is_refused() {
    let config = cfg(4, 16, Mode::Overwrite);
    let region = RingRegion::heap(&config).unwrap();
    let mut p = Producer::new(region.clone()).unwrap();
    for wrong in [
        Port::heap(&config, 7, 1, 0).unwrap(),
        Port::heap(&cfg(4, 8, Mode::Overwrite), 0, 1, 0).unwrap(),
    ] {
        assert!(matches!(
            p.add_port(wrong.clone(), MAILBOX),
            Err(AttachError::Corrupt(_))
        ));
        assert!(matches!(
            Consumer::with_port(region.clone(), wrong, Start::Latest, true),
            Err(AttachError::Corrupt(_))
        ));
    }
    assert_eq!(p.mailboxes(), 0);
}

#[test]
fn publisher_dying_before_announcing_a_long_message_loses_nothing() {
    let max = LATEST_INLINE_MAX + 8;
    let (mut p, r) = ring(4, max, Mode::Overwrite);
    let mut c = Consumer::new(r.clone(), Start::Latest).unwrap();
    let long = vec![5u8; max as usize];
    p.publish(&long, 0).unwrap();
    // As if the publisher died after sealing the ring slot, mid-way through
    // announcing it in the latest slot (stamped odd for message 0).
    // SAFETY: the latest slot of a live heap ring; written through atomics.
    let latest = unsafe { &*(r.latest() as *const SlotHeader) };
    latest.stamp.store(1, Ordering::Relaxed);
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
    drop(p);
    assert_eq!(recv_vec(&mut c).unwrap().0, long);
    assert_eq!(recv_vec(&mut c), Err(RecvError::EndOfStream));
}

#[test]
fn loan_commit_and_abandoned_loan() {
    let (mut p, r) = ring(4, 16, Mode::Overwrite);
    let mut c = Consumer::new(r, Start::Latest).unwrap();
    {
        let mut l = p.loan(5).unwrap();
        l.copy_from_slice(b"hello");
        assert_eq!(l.commit(11), 0);
    }
    {
        let mut l = p.loan(3).unwrap();
        l.copy_from_slice(b"xyz");
        // dropped: nothing published
    }
    assert_eq!(recv_vec(&mut c).unwrap().0, b"hello");
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
    let mut l = p.try_loan(16).unwrap();
    l[..2].copy_from_slice(b"ok");
    assert_eq!(l.commit_len(2, 12), 1);
    let (m, i) = recv_vec(&mut c).unwrap();
    assert_eq!((m.as_slice(), i.tag, i.seq), (&b"ok"[..], 12, 1));
}

#[test]
fn backpressure_never_overwrites_unread_messages() {
    let (mut p, r) = ring(4, 8, Mode::Backpressure);
    let mut c = Consumer::new(r, Start::Latest).unwrap();
    for i in 0u64..4 {
        p.try_publish(&[i as u8], i).unwrap();
    }
    assert_eq!(p.try_publish(b"x", 9), Err(PublishError::Full));
    assert!(matches!(p.try_loan(1), Err(PublishError::Full)));
    assert!(matches!(
        p.loan_timeout(1, Duration::from_millis(5)),
        Err(PublishError::Timeout)
    ));
    assert_eq!(
        p.publish_timeout(b"x", 9, Duration::from_millis(5)),
        Err(PublishError::Timeout)
    );
    assert_eq!(recv_vec(&mut c).unwrap().1.seq, 0);
    assert_eq!(p.try_publish(&[4], 4), Ok(4));
    assert_eq!(p.try_publish(b"x", 9), Err(PublishError::Full));
    for i in 1u64..5 {
        let (m, info) = recv_vec(&mut c).unwrap();
        assert_eq!((m[0] as u64, info.seq), (i, i));
    }
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
}

#[test]
fn a_batch_is_published_in_order_all_or_nothing() {
    let (mut p, r) = ring(8, 8, Mode::Overwrite);
    let mut c = Consumer::new(r.clone(), Start::Latest).unwrap();
    let three: [&[u8]; 3] = [b"a", b"bc", b"def"];
    assert_eq!(p.publish_batch(&three, 7), Ok(0..3));
    assert_eq!(r.head(), 3);
    assert_eq!(p.publish_batch(&three[..0], 7), Ok(3..3));
    assert_eq!(p.publish(b"g", 8), Ok(3));
    for (seq, (want, tag)) in [(&b"a"[..], 7), (b"bc", 7), (b"def", 7), (b"g", 8)]
        .into_iter()
        .enumerate()
    {
        let (m, i) = recv_vec(&mut c).unwrap();
        assert_eq!((m.as_slice(), i.tag, i.seq), (want, tag, seq as u64));
    }
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
    // One message too long: none of the batch is published.
    assert_eq!(
        p.publish_batch(&[&b"ok"[..], b"nine byte"], 0),
        Err(PublishError::TooLarge { len: 9, max: 8 })
    );
    assert_eq!((p.next_seq(), r.head()), (4, 4));
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
}

#[test]
fn a_batch_of_long_messages_is_sealed_in_runs_in_order() {
    // Longer than SEAL_EACH_UP_TO: written in runs, each sealed after its
    // copies. A batch of 20 on a ring of 8: runs end at the ring's end and
    // at the reader's cursor.
    let (mut p, r) = ring(8, 320, Mode::Backpressure);
    let mut c = Consumer::new(r.clone(), Start::Latest).unwrap();
    let msgs: Vec<Vec<u8>> = (0..20u8)
        .map(|i| vec![i; 257 + usize::from(i) * 3])
        .collect();
    assert_eq!(p.try_publish_batch(&msgs, 4), Ok(0..8));
    assert_eq!(r.head(), 8);
    for (seq, want) in msgs[..8].iter().enumerate() {
        let (m, i) = recv_vec(&mut c).unwrap();
        assert_eq!((&m, i.tag, i.seq), (want, 4, seq as u64));
    }
    // The ring found empty (the cursor released): the next batch takes
    // eight of its twelve.
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
    assert_eq!(p.try_publish_batch(&msgs[8..], 5), Ok(8..16));
    for (k, want) in msgs[8..16].iter().enumerate() {
        let (m, i) = recv_vec(&mut c).unwrap();
        assert_eq!((&m, i.tag, i.seq), (want, 5, 8 + k as u64));
    }
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
    // Overwrite: a batch longer than the ring leaves its last 8 messages,
    // and a reader that fell behind is told what it lost.
    let (mut p, r) = ring(8, 320, Mode::Overwrite);
    let mut c = Consumer::new(r.clone(), Start::Earliest).unwrap();
    assert_eq!(p.publish_batch(&msgs, 6), Ok(0..20));
    assert_eq!(r.head(), 20);
    assert!(matches!(recv_vec(&mut c), Err(RecvError::Lagged { .. })));
    let mut seqs = Vec::new();
    while let Ok((m, i)) = recv_vec(&mut c) {
        assert_eq!(&m, &msgs[i.seq as usize]);
        seqs.push(i.seq);
    }
    assert_eq!(seqs, (12..20).collect::<Vec<_>>());
}

#[test]
fn a_batch_that_does_not_fit_publishes_what_fits_or_waits() {
    let (mut p, r) = ring(4, 8, Mode::Backpressure);
    let mut c = Consumer::new(r.clone(), Start::Latest).unwrap();
    let six: [&[u8]; 6] = [b"0", b"1", b"2", b"3", b"4", b"5"];
    // Without waiting: the prefix that fits, then `Full` when none does.
    assert_eq!(p.try_publish_batch(&six, 1), Ok(0..4));
    assert_eq!(r.head(), 4);
    assert_eq!(p.try_publish_batch(&six[4..], 1), Err(PublishError::Full));
    for seq in 0..4u64 {
        assert_eq!(recv_vec(&mut c).unwrap().1.seq, seq);
    }
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
    // Waiting: a batch longer than the ring, read by a subscriber asleep
    // on the empty ring when it starts. The wake-up comes before each wait
    // for room: the publisher waits for the sleeper, which would otherwise
    // sleep until its timeout.
    let reader = sleeping_reader(&mut p, c, 6);
    let first = p.next_seq();
    // Most likely asleep by now (if not, it finds the messages awake).
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(p.publish_batch(&six, 1), Ok(first..first + 6));
    let got = reader.join().unwrap();
    let want: Vec<(u8, u64)> = (0..6u8).map(|i| (b'0' + i, first + u64::from(i))).collect();
    assert_eq!(got, want);
    assert_eq!(r.head(), first + 6);
}

#[test]
fn a_loan_of_many_publishes_its_slots_in_order_at_commit() {
    let (mut p, r) = ring(8, 8, Mode::Overwrite);
    let mut c = Consumer::new(r.clone(), Start::Latest).unwrap();
    let mut loans = p.loan_many(3, 4).unwrap();
    assert_eq!(
        (loans.count(), loans.slot_len(), loans.first_seq()),
        (3, 4, 0)
    );
    assert!(Arc::ptr_eq(loans.region(), &r));
    for (i, slot) in loans.iter_mut().enumerate() {
        slot.copy_from_slice(&[b'a' + i as u8; 4]);
    }
    loans[1][0] = b'B';
    assert_eq!(&loans[1], b"Bbbb");
    // Nothing is readable, and the head has not moved, before the commit.
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
    assert_eq!(r.head(), 0);
    assert_eq!(loans.commit(6), 0..3);
    assert_eq!(r.head(), 3);
    for (seq, want) in [&b"aaaa"[..], b"Bbbb", b"cccc"].into_iter().enumerate() {
        let (m, i) = recv_vec(&mut c).unwrap();
        assert_eq!((m.as_slice(), i.tag, i.seq), (want, 6, seq as u64));
    }
    // Per-slot lengths (clamped to the loan) and tags; the slots after
    // `count` are not published, and the next publish reuses them.
    let mut loans = p.loan_many(4, 3).unwrap();
    for slot in loans.iter_mut() {
        slot.copy_from_slice(b"xyz");
    }
    assert_eq!(loans.commit_with(2, |i| ([1, 9][i], 10 + i as u64)), 3..5);
    assert_eq!(p.publish(b"after", 1), Ok(5));
    for (want, tag, seq) in [(&b"x"[..], 10, 3), (b"xyz", 11, 4), (b"after", 1, 5)] {
        let (m, i) = recv_vec(&mut c).unwrap();
        assert_eq!((m.as_slice(), i.tag, i.seq), (want, tag, seq));
    }
    // Dropped, or committed with none: nothing published, head unmoved.
    let _ = p.loan_many(2, 8).unwrap();
    assert_eq!(p.loan_many(2, 8).unwrap().commit_with(0, |_| (8, 0)), 6..6);
    assert_eq!(r.head(), 6);
    assert_eq!(recv_vec(&mut c), Err(RecvError::Empty));
    assert_eq!(p.publish(b"g", 2), Ok(6));
    assert_eq!(recv_vec(&mut c).unwrap().0, b"g");
    // Bad sizes are refused before anything is lent.
    assert!(matches!(
        p.loan_many(2, 9),
        Err(PublishError::TooLarge { len: 9, max: 8 })
    ));
    assert!(matches!(
        p.loan_many(9, 1),
        Err(PublishError::TooMany { n: 9, capacity: 8 })
    ));
    assert_eq!(p.loan_many(8, 1).unwrap().commit(0), 7..15);
}

#[test]
fn a_loan_of_many_marks_a_slot_as_being_written_only_once_lent_writable() {
    let (mut p, r) = ring(4, 8, Mode::Overwrite);
    assert_eq!(p.publish_batch(&[b"0", b"1", b"2", b"3"], 0), Ok(0..4));
    // The loan's slots hold messages 0 and 1: a look at one and a loan
    // dropped untouched leave both readable.
    assert_eq!(&p.loan_many(2, 1).unwrap()[0], b"0");
    let mut c = Consumer::new(r.clone(), Start::Earliest).unwrap();
    assert_eq!(recv_vec(&mut c).unwrap().0, b"0");
    // Lending the first slot writable marks it (message 0's, which a
    // reader from the start now finds overwritten), not the second.
    p.loan_many(2, 1).unwrap().iter_mut().next().unwrap()[0] = b'x';
    let mut late = Consumer::new(r.clone(), Start::Earliest).unwrap();
    assert!(matches!(recv_vec(&mut late), Err(RecvError::Lagged { .. })));
    assert_eq!(recv_vec(&mut c).unwrap().0, b"1");
    // A commit publishes untouched slots too, marked before they are
    // sealed; what was written goes out.
    let mut loans = p.loan_many(2, 1).unwrap();
    loans[1][0] = b'y';
    assert_eq!(loans.commit(3), 4..6);
    let got: Vec<_> = (0..4).map(|_| recv_vec(&mut c).unwrap()).collect();
    let seqs: Vec<_> = got.iter().map(|(_, i)| i.seq).collect();
    assert_eq!(seqs, [2, 3, 4, 5]);
    assert_eq!((got[3].0.as_slice(), got[3].1.tag), (&b"y"[..], 3));
}

#[test]
#[should_panic(expected = "slot 2 of a loan of 2")]
fn a_loan_of_many_is_indexed_within_its_slots() {
    let (mut p, _r) = ring(4, 8, Mode::Overwrite);
    let loans = p.loan_many(2, 8).unwrap();
    let _ = &loans[2];
}

#[test]
fn a_loan_of_many_waits_for_all_its_slots() {
    let (mut p, r) = ring(4, 8, Mode::Backpressure);
    let mut c = Consumer::new(r.clone(), Start::Latest).unwrap();
    assert_eq!(p.try_publish_batch(&[b"0", b"1"], 0), Ok(0..2));
    // Two of four slots are free: a loan of three is not.
    assert!(matches!(p.try_loan_many(3, 1), Err(PublishError::Full)));
    assert!(matches!(
        p.loan_many_timeout(3, 1, Duration::from_millis(5)),
        Err(PublishError::Timeout)
    ));
    assert_eq!(p.try_loan_many(2, 1).unwrap().commit(0), 2..4);
    assert!(matches!(p.try_loan_many(1, 1), Err(PublishError::Full)));
    // A reader asleep on an empty ring is woken by the commit.
    for seq in 0..4 {
        assert_eq!(recv_vec(&mut c).unwrap().1.seq, seq);
    }
    let reader = sleeping_reader(&mut p, c, 8);
    let first = p.next_seq();
    std::thread::sleep(Duration::from_millis(20));
    // Two loans of a whole ring: the second waits for the reader.
    for round in 0..2u8 {
        let mut loans = p.loan_many(4, 1).unwrap();
        for (i, slot) in loans.iter_mut().enumerate() {
            slot[0] = round * 4 + i as u8;
        }
        loans.commit(0);
    }
    let got = reader.join().unwrap();
    let want: Vec<(u8, u64)> = (0..8u8).map(|i| (i, first + u64::from(i))).collect();
    assert_eq!(got, want);
}

#[test]
fn zero_copy_views_and_loans_name_their_ring() {
    let (mut p, r) = ring(2, 8, Mode::Backpressure);
    let mut c = Consumer::new(r.clone(), Start::Latest).unwrap();
    let mut loan = p.loan_timeout(2, Duration::from_millis(5)).unwrap();
    assert!(Arc::ptr_eq(loan.region(), &r));
    loan.copy_from_slice(b"hi");
    assert_eq!(loan.commit(5), 0);
    let m = c.try_recv_ref().unwrap();
    assert!(Arc::ptr_eq(m.region(), &r));
    assert_eq!((&*m, m.info().tag), (&b"hi"[..], 5));
}

#[test]
fn backpressure_without_subscribers_does_not_block() {
    let (mut p, _r) = ring(2, 8, Mode::Backpressure);
    for i in 0u64..10 {
        assert_eq!(p.try_publish(b"x", i), Ok(i));
    }
}

#[test]
fn dropped_subscriber_stops_gating() {
    let (mut p, r) = ring(2, 8, Mode::Backpressure);
    let slow = Consumer::new(r.clone(), Start::Latest).unwrap();
    p.try_publish(b"a", 0).unwrap();
    p.try_publish(b"b", 0).unwrap();
    assert_eq!(p.try_publish(b"c", 0), Err(PublishError::Full));
    drop(slow);
    assert_eq!(p.try_publish(b"c", 0), Ok(2));
}

#[test]
fn a_removed_port_stops_gating() {
    let (mut p, r) = ring(2, 8, Mode::Backpressure);
    // A subscriber that died without a word: its port, cursor at 0, has
    // no consumer to free it (a leaked consumer would do, but Miri reports
    // the leak), so only its removal (what the broker sends the publisher
    // for a dead process) frees the publisher.
    let dead = r.local_port(0).unwrap().unwrap();
    p.try_publish(b"a", 0).unwrap();
    p.try_publish(b"b", 0).unwrap();
    assert_eq!(p.try_publish(b"c", 0), Err(PublishError::Full));
    assert_eq!(p.ports(), 1);
    assert!(p.remove_port(dead.port_id()));
    assert_eq!(p.try_publish(b"c", 0), Ok(2));
}

#[test]
fn a_port_removed_through_the_queue_stops_gating_at_once() {
    // The broker's way out for a subscriber that died: the removal is
    // queued and the generation bumped; the publisher's next look at its
    // bound takes it, and finds the room the dead cursor held.
    let (mut p, r) = ring(2, 8, Mode::Backpressure);
    let dead = r.local_port(0).unwrap().unwrap();
    p.try_publish(b"a", 0).unwrap();
    p.try_publish(b"b", 0).unwrap();
    assert_eq!(p.try_publish(b"c", 0), Err(PublishError::Full));
    r.local_port_gone(dead.port_id());
    assert_eq!(p.try_publish(b"c", 0), Ok(2));
    assert_eq!(p.ports(), 0);
}

#[test]
fn a_reader_with_a_port_from_elsewhere_leaves_the_rings_own_ports_alone() {
    // A heap ring hands out up to `max_subscribers` ports of its own
    // (`Consumer::new`); a reader given a port made elsewhere
    // (`Consumer::with_port`) neither takes one of them nor, dropped, gives
    // one back or has the producer drop a port of the same id.
    let region = RingRegion::heap(&TopicConfig {
        max_subscribers: 1,
        ..cfg(2, 8, Mode::Backpressure)
    })
    .unwrap();
    let mut p = Producer::new(region.clone()).unwrap();
    let own = Consumer::new(region.clone(), Start::Latest).unwrap();
    let id = own.port_id().unwrap();
    let port = Port::heap(region.config(), region.ring_id(), id, 0).unwrap();
    drop(Consumer::with_port(region.clone(), port, Start::Earliest, false).unwrap());
    p.try_publish(b"a", 0).unwrap();
    p.try_publish(b"b", 1).unwrap();
    assert_eq!(
        p.try_publish(b"c", 2),
        Err(PublishError::Full),
        "the ring's own reader still gates"
    );
    assert!(matches!(
        Consumer::new(region.clone(), Start::Latest),
        Err(AttachError::NoCursor { max: 1 })
    ));
    drop(own);
    assert!(Consumer::new(region, Start::Latest).is_ok());
}

#[test]
fn a_port_added_while_the_publisher_runs_loses_nothing() {
    // The broker's way in: the port is made, queued, admitted (which moves
    // its cursor up to what the publisher may already write), then the
    // publisher takes it before it extends its bound.
    let (mut p, r) = ring(4, 8, Mode::Backpressure);
    for i in 0..10u64 {
        p.try_publish(&i.to_le_bytes(), i).unwrap();
    }
    let port = r.local_port(0).unwrap().unwrap();
    let pos = port.pos();
    assert!(
        pos >= 10 - 4,
        "cursor {pos} moved up to what may be overwritten"
    );
    let mut c = Consumer::with_port(r.clone(), port, Start::Sequence(0), false).unwrap();
    assert_eq!(c.lagged_total(), pos, "what it skipped is counted");
    for i in 10..20u64 {
        // The publisher never overwrites what the new port has not read.
        while p.try_publish(&i.to_le_bytes(), i) == Err(PublishError::Full) {
            let (m, info) = recv_vec(&mut c).unwrap();
            assert_eq!(m, info.seq.to_le_bytes());
        }
    }
    let mut last = None;
    while let Ok((m, info)) = recv_vec(&mut c) {
        assert_eq!(m, info.seq.to_le_bytes());
        assert!(last.is_none_or(|l| info.seq == l + 1), "no gap");
        last = Some(info.seq);
    }
    assert_eq!(last, Some(19));
}

#[test]
fn backpressure_cursor_limit() {
    let region = RingRegion::heap(&TopicConfig {
        max_subscribers: 1,
        ..cfg(4, 8, Mode::Backpressure)
    })
    .unwrap();
    let a = Consumer::new(region.clone(), Start::Latest).unwrap();
    assert!(matches!(
        Consumer::new(region.clone(), Start::Latest),
        Err(AttachError::NoCursor { max: 1 })
    ));
    drop(a);
    assert!(Consumer::new(region, Start::Latest).is_ok());
}

#[test]
fn zero_copy_receive_on_backpressure_rings() {
    let (mut p, r) = ring(2, 8, Mode::Backpressure);
    let mut c = Consumer::new(r, Start::Latest).unwrap();
    p.publish(b"one", 1).unwrap();
    p.publish(b"two", 2).unwrap();
    {
        let m = c.try_recv_ref().unwrap();
        assert_eq!((&*m, m.info().tag), (&b"one"[..], 1));
        // The view holds slot 0: the ring is still full.
        assert_eq!(p.try_publish(b"three", 3), Err(PublishError::Full));
    }
    assert_eq!(p.try_publish(b"three", 3), Ok(2));
    let got = c.try_recv_with(|m, i| (m.to_vec(), i.seq)).unwrap();
    assert_eq!(got, (b"two".to_vec(), 1));
    let (mut p2, r2) = ring(2, 8, Mode::Overwrite);
    let mut c2 = Consumer::new(r2, Start::Latest).unwrap();
    p2.publish(b"x", 0).unwrap();
    assert!(matches!(
        c2.try_recv_ref(),
        Err(RecvError::ZeroCopyUnsupported)
    ));
    assert_eq!(c2.try_recv_with(|m, _| m.to_vec()), Ok(b"x".to_vec()));
}

#[test]
fn a_zero_copy_batch_holds_every_slot_until_dropped() {
    let (mut p, r) = ring(4, 8, Mode::Backpressure);
    let mut c = Consumer::new(r, Start::Latest).unwrap();
    for (i, m) in [&b"a"[..], b"bb", b"ccc"].into_iter().enumerate() {
        p.publish(m, i as u64).unwrap();
    }
    let mut seen = Vec::new();
    let batch = c
        .try_recv_ref_batch(|m, i| {
            seen.push((m.to_vec(), i.seq, i.tag));
            true
        })
        .unwrap();
    assert_eq!(batch.len(), 3);
    assert_eq!(
        seen,
        [
            (b"a".to_vec(), 0, 0),
            (b"bb".to_vec(), 1, 1),
            (b"ccc".to_vec(), 2, 2)
        ]
    );
    // The batch holds slot 0 onwards: one more fits, then the ring is full.
    assert_eq!(p.try_publish(b"d", 3), Ok(3));
    assert_eq!(p.try_publish(b"e", 4), Err(PublishError::Full));
    // Given back: the same messages come again, still held.
    batch.rewind();
    assert_eq!(p.try_publish(b"e", 4), Err(PublishError::Full));
    let mut again = Vec::new();
    let batch = c
        .try_recv_ref_batch(|m, i| {
            again.push(i.seq);
            // Stops after the second.
            m != b"bb"
        })
        .unwrap();
    assert_eq!((again, batch.len()), (vec![0, 1], 2));
    drop(batch);
    // Released: two slots free, and the rest follows.
    assert_eq!(p.try_publish(b"e", 4), Ok(4));
    assert_eq!(p.try_publish(b"f", 5), Ok(5));
    assert_eq!(p.try_publish(b"g", 6), Err(PublishError::Full));
    let mut rest = Vec::new();
    drop(c.try_recv_ref_batch(|_, i| {
        rest.push(i.seq);
        true
    }));
    assert_eq!(rest, [2, 3, 4, 5]);
    assert!(matches!(
        c.try_recv_ref_batch(|_, _| true),
        Err(RecvError::Empty)
    ));
    let (mut p2, r2) = ring(2, 8, Mode::Overwrite);
    let mut c2 = Consumer::new(r2, Start::Latest).unwrap();
    p2.publish(b"x", 0).unwrap();
    assert!(matches!(
        c2.try_recv_ref_batch(|_, _| true),
        Err(RecvError::ZeroCopyUnsupported)
    ));
}

#[test]
fn corrupt_length_in_slot_is_an_error_not_ub() {
    let (mut p, r) = ring(4, 8, Mode::Overwrite);
    let mut c = Consumer::new(r.clone(), Start::Latest).unwrap();
    p.publish(b"ok", 0).unwrap();
    p.publish(b"ok", 1).unwrap();
    // A hostile publisher writes a length beyond the slot.
    // SAFETY: slot 0 of a live heap ring; we write through its atomics.
    let hdr = unsafe { &*(r.slots() as *const SlotHeader) };
    hdr.len.store(1 << 30, Ordering::Relaxed);
    let mut buf = [0u8; 8];
    assert_eq!(
        c.try_recv(&mut buf),
        Err(RecvError::Corrupt {
            seq: 0,
            len: 1 << 30
        })
    );
    assert_eq!(c.try_recv(&mut buf).unwrap().seq, 1);
}

#[test]
fn recv_timeout_expires() {
    let (_p, r) = ring(4, 8, Mode::Overwrite);
    let mut c = Consumer::new(r, Start::Latest).unwrap();
    let mut buf = [0u8; 8];
    // Zero and short timeouts, for each way of waiting (a spinning wait
    // reads the clock only after its quiet polls).
    let waits = [
        WaitStrategy::Spin,
        WaitStrategy::SpinYield,
        WaitStrategy::default(),
        WaitStrategy::Block,
    ];
    for w in waits {
        for t in [Duration::ZERO, Duration::from_millis(2)] {
            assert_eq!(
                c.recv_timeout(&mut buf, w, t),
                Err(RecvError::Timeout),
                "{w:?}, {t:?}"
            );
        }
    }
}

#[test]
fn config_validation() {
    let ok = TopicConfig::default();
    assert!(ok.validate().is_ok());
    let bad = |c: TopicConfig| c.validate().unwrap_err();
    assert_eq!(
        bad(TopicConfig { capacity: 0, ..ok }),
        TopicConfigError::Capacity(0)
    );
    assert_eq!(
        bad(TopicConfig { capacity: 3, ..ok }),
        TopicConfigError::Capacity(3)
    );
    assert_eq!(
        bad(TopicConfig {
            capacity: 1 << 25,
            ..ok
        }),
        TopicConfigError::Capacity(1 << 25)
    );
    assert_eq!(
        bad(TopicConfig {
            max_message_size: 0,
            ..ok
        }),
        TopicConfigError::MaxMessageSize(0)
    );
    assert_eq!(
        bad(TopicConfig {
            max_message_size: (64 << 20) + 1,
            ..ok
        }),
        TopicConfigError::MaxMessageSize((64 << 20) + 1)
    );
    assert_eq!(
        bad(TopicConfig {
            max_subscribers: 0,
            ..ok
        }),
        TopicConfigError::MaxSubscribers(0)
    );
    assert!(matches!(
        bad(TopicConfig {
            capacity: 1 << 24,
            max_message_size: 64 << 20,
            ..ok
        }),
        TopicConfigError::TooBig(_)
    ));
    assert!(matches!(
        "sideways".parse::<Mode>(),
        Err(TopicConfigError::UnknownMode(_))
    ));
    assert_eq!("backpressure".parse::<Mode>(), Ok(Mode::Backpressure));
}

#[test]
fn ring_memory_is_header_plus_capacity_times_stride() {
    let c = cfg(8, 64, Mode::Overwrite);
    let s = c.validate().unwrap();
    // 32-byte slot header + 64-byte payload, rounded up to half a line.
    assert_eq!(s.slot_stride, 96);
    assert_eq!(s.data_len, s.header_size + 8 * 96);
    assert_eq!(cfg(8, 32, Mode::Overwrite).sizes().slot_stride, 64);
    assert_eq!(cfg(8, 33, Mode::Overwrite).sizes().slot_stride, 96);
    assert_eq!(cfg(8, 1024, Mode::Overwrite).sizes().slot_stride, 1056);
    // The header: 512 bytes, then the latest-message slot in whole 128-byte
    // lines, holding min(max, LATEST_INLINE_MAX) bytes inline.
    assert_eq!((s.latest_offset, s.latest_inline), (512, 64));
    assert_eq!(s.header_size, 512 + 128);
    let big = cfg(8, 4096, Mode::Overwrite).sizes();
    assert_eq!(big.latest_inline, u64::from(LATEST_INLINE_MAX));
    assert_eq!(big.header_size, 512 + 384);
    // A port: four lines of header, then a mailbox slot like the latest
    // slot; the lobby: two lines.
    assert_eq!(s.port_len, 512 + 128);
    assert_eq!(big.port_len, 512 + 384);
    assert_eq!(s.lobby_len, 256);
}

/// One publisher thread, several readers; every payload encodes its
/// sequence, so a torn or misplaced message fails the check. In overwrite
/// mode gaps must be exactly the reported lag. `loans`: the publisher
/// writes in place, in loans of three (`loan_many`) filled last slot
/// first, instead of one `publish` per message. `write_ahead`: the
/// publisher asks for each next slot's lines for writing after every
/// message, as it does only on large rings (the slots the readers are
/// copying included: a hint must never tear a message).
fn stress(mode: Mode, messages: u64, readers: usize, loans: bool, write_ahead: bool) {
    let region = RingRegion::heap(&cfg(8, 64, mode)).unwrap();
    let consumers: Vec<Consumer> = (0..readers)
        .map(|_| Consumer::new(region.clone(), Start::Earliest).unwrap())
        .collect();
    let mut producer = Producer::new(region).unwrap();
    if write_ahead {
        producer.force_write_ahead();
    }
    let handles: Vec<_> = consumers
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                let (mut got, mut missed, mut expect) = (0u64, 0u64, 0u64);
                let mut buf = [0u8; 64];
                loop {
                    match c.recv(&mut buf, WaitStrategy::SpinYield) {
                        Ok(info) => {
                            assert_eq!(info.seq, expect, "out of order");
                            let n = info.seq;
                            assert_eq!(info.len, 8 + (n % 57) as usize);
                            assert_eq!(&buf[..8], &n.to_le_bytes());
                            assert!(
                                buf[8..info.len].iter().all(|&b| b == n as u8),
                                "torn message {n}"
                            );
                            assert_eq!(info.tag, n ^ 0xABCD);
                            got += 1;
                            expect += 1;
                        }
                        Err(RecvError::Lagged { missed: m }) => {
                            missed += m;
                            expect += m;
                        }
                        Err(RecvError::EndOfStream) => return (got, missed),
                        Err(e) => panic!("unexpected {e:?}"),
                    }
                }
            })
        })
        .collect();
    let len = |n: u64| 8 + (n % 57) as usize;
    let fill = |msg: &mut [u8], n: u64| {
        msg[..8].copy_from_slice(&n.to_le_bytes());
        msg[8..len(n)].fill(n as u8);
    };
    let mut msg = [0u8; 64];
    let mut n = 0;
    while n < messages {
        if loans {
            let k = (messages - n).min(3) as usize;
            let mut loans = producer.loan_many(k, 64).unwrap();
            for i in (0..k).rev() {
                fill(&mut loans[i], n + i as u64);
            }
            let at = |i: usize| n + i as u64;
            let seqs = loans.commit_with(k, |i| (len(at(i)), at(i) ^ 0xABCD));
            assert_eq!(seqs, n..n + k as u64);
            n += k as u64;
        } else {
            fill(&mut msg, n);
            producer.publish(&msg[..len(n)], n ^ 0xABCD).unwrap();
            n += 1;
        }
    }
    drop(producer);
    for h in handles {
        let (got, missed) = h.join().unwrap();
        assert_eq!(got + missed, messages);
        if mode == Mode::Backpressure {
            assert_eq!(missed, 0, "back-pressure must not lose messages");
        }
    }
}

#[test]
fn stress_overwrite() {
    stress(
        Mode::Overwrite,
        if cfg!(miri) { 200 } else { 1_000_000 },
        3,
        false,
        false,
    );
}

#[test]
fn stress_overwrite_writing_ahead() {
    stress(
        Mode::Overwrite,
        if cfg!(miri) { 200 } else { 1_000_000 },
        3,
        false,
        true,
    );
}

#[test]
fn stress_backpressure_writing_ahead() {
    stress(
        Mode::Backpressure,
        if cfg!(miri) { 200 } else { 200_000 },
        3,
        false,
        true,
    );
}

#[test]
fn stress_backpressure() {
    stress(
        Mode::Backpressure,
        if cfg!(miri) { 200 } else { 200_000 },
        3,
        false,
        false,
    );
}

#[test]
// A lapped reader copies a slot that a loan has lent as `&mut [u8]`: the
// seqlock's race, which the ring's own copies run as relaxed atomic words
// under Miri (`ring/copy.rs`), but a caller's slice cannot, so Miri
// reports it. Back-pressure loans, which no reader copies, run under Miri.
#[cfg_attr(miri, ignore = "a loan's slice races a lapped reader's copy by design")]
fn stress_overwrite_in_loans() {
    stress(
        Mode::Overwrite,
        if cfg!(miri) { 200 } else { 1_000_000 },
        3,
        true,
        false,
    );
}

#[test]
fn stress_backpressure_in_loans() {
    stress(
        Mode::Backpressure,
        if cfg!(miri) { 200 } else { 200_000 },
        3,
        true,
        false,
    );
}

#[test]
// Under Miri too: the futex calls go through `libc::syscall`, which Miri
// emulates, and this is the one ring test that sleeps in them.
fn blocking_wait_is_woken_by_publish() {
    // Capacity above the message count: a subscriber descheduled on a busy
    // machine must not lap (this test is about wake-ups, not lag).
    let (mut p, r) = ring(64, 8, Mode::Overwrite);
    let mut c = Consumer::new(r, Start::Latest).unwrap();
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 8];
        let mut got = Vec::new();
        for _ in 0..50 {
            let i = c
                .recv_timeout(&mut buf, WaitStrategy::Block, Duration::from_secs(30))
                .unwrap();
            got.push(i.seq);
        }
        got
    });
    for i in 0..50u64 {
        std::thread::sleep(Duration::from_micros(200));
        p.publish(b"m", i).unwrap();
    }
    assert_eq!(t.join().unwrap(), (0..50).collect::<Vec<_>>());
}

#[test]
#[cfg_attr(miri, ignore = "sched_setaffinity")]
fn pinning_to_a_core_and_to_a_missing_one() {
    let cores = crate::wait::available_cores();
    assert!(!cores.is_empty());
    let first = cores[0];
    std::thread::spawn(move || crate::wait::pin_current_thread(first))
        .join()
        .unwrap()
        .unwrap();
    assert_eq!(
        crate::wait::pin_current_thread(100_000),
        Err(crate::wait::PinError::NoSuchCore(100_000))
    );
    // CPU 1000 is addressable but absent on any machine that runs this.
    assert_eq!(
        std::thread::spawn(|| crate::wait::pin_current_thread(1000))
            .join()
            .unwrap(),
        Err(crate::wait::PinError::Refused(1000))
    );
    // A thread pinned to one CPU can still be moved to another.
    let last = *cores.last().unwrap();
    std::thread::spawn(move || {
        crate::wait::pin_current_thread(first)?;
        crate::wait::pin_current_thread(last)
    })
    .join()
    .unwrap()
    .unwrap();
}

#[test]
fn wait_strategy_names() {
    assert_eq!("spin".parse::<WaitStrategy>(), Ok(WaitStrategy::Spin));
    assert_eq!("block".parse::<WaitStrategy>(), Ok(WaitStrategy::Block));
    assert_eq!(
        "adaptive".parse::<WaitStrategy>(),
        Ok(WaitStrategy::default())
    );
    assert!("sometimes"
        .parse::<WaitStrategy>()
        .unwrap_err()
        .contains("expected spin"));
}

#[test]
fn slots_of_512_bytes_and_up_are_read_ahead_a_page_on() {
    // Under 512 bytes a page holds eight slots or more: no read-ahead.
    assert_eq!(read_ahead_distance(64), 0);
    assert_eq!(read_ahead_distance(448), 0);
    // The first slot at least 4 KiB on, and every line of it up to 2 KiB.
    assert_eq!(read_ahead_distance(512), 8);
    assert_eq!(read_ahead_distance(1056), 4);
    assert_eq!(read_ahead_distance(5000), 1);
    // A 1056-byte slot starting half way into a line touches 17 lines:
    // addresses 0, 64, .. 1024 bytes in, each inside the slot.
    assert_eq!(read_ahead_lines(1056), 17);
    assert_eq!(read_ahead_lines(1024), 16);
    assert_eq!(read_ahead_lines(65600), 32);
}

#[test]
fn a_reader_behind_its_publisher_reads_ahead_and_takes_every_message_whole() {
    // 1 KiB messages (1056-byte slots, read ahead 4 slots on), a ring of
    // 64 (cursor released every 16): the reader starts a ring behind.
    let (mut p, r) = ring(64, 1024, Mode::Backpressure);
    let mut c = Consumer::new(r, Start::Earliest).unwrap();
    let mut buf = vec![0u8; 1024];
    let mut next = 0u64;
    for round in 0..3u8 {
        for _ in 0..64 {
            let len = 1 + (next as usize * 37) % 1024;
            let fill = vec![(next as u8) ^ round; len];
            assert_eq!(p.try_publish(&fill, next).unwrap(), next);
            next += 1;
        }
        for k in 0..64u64 {
            let seq = u64::from(round) * 64 + k;
            let info = c.try_recv(&mut buf).unwrap();
            let len = 1 + (seq as usize * 37) % 1024;
            assert_eq!((info.seq, info.tag, info.len), (seq, seq, len));
            assert!(buf[..len].iter().all(|&b| b == (seq as u8) ^ round));
            if k == 16 {
                // A batch release has looked at the head by now: the
                // whole round is known to be complete.
                assert_eq!(c.ahead_until(), u64::from(round + 1) * 64);
            }
        }
        assert_eq!(c.try_recv(&mut buf), Err(RecvError::Empty));
    }
}
