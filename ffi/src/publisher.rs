//! `ringbus_publisher`: one publisher of a topic (its own ring), with
//! copying publish and zero-copy loan + commit.
//!
//! The hot path is the Rust producer's: the wrappers add a magic check and
//! no allocation, lock or syscall.

use std::ffi::{c_char, c_int, c_void};
use std::time::Duration;

use ringbus::client::{Publisher, TopicConfig};
use ringbus::ring::{Loan, LoanMany};

use crate::client::{client_ref, ringbus_client};
use crate::handle::{self, check, out_arg, str_arg, Handle};
use crate::status::ringbus_status::{RINGBUS_ERR_BAD_STATE, RINGBUS_ERR_INVALID_ARGUMENT};
use crate::status::{client_error, fail, fail_static, guard, null, publish_error, Failed, Outcome};
use crate::types::ringbus_topic_config;

/// A publisher of one topic (opaque). Use it from one thread at a time.
pub struct ringbus_publisher {
    _opaque: [u8; 0],
}

#[repr(C)]
pub(crate) struct PublisherHandle {
    magic: u64,
    /// The outstanding loan. It borrows `publisher` mutably: while it is
    /// `Some`, `publisher` is not touched (calls other than commit, abandon
    /// and close fail with `RINGBUS_ERR_BAD_STATE`), and it is dropped
    /// before `publisher` (field order, and explicitly in close).
    loan: Option<Lent>,
    publisher: Publisher,
}

/// What a handle lends: one slot, or several (`ringbus_publisher_loan_many`).
pub(crate) enum Lent {
    One(Loan<'static>),
    Many(LoanMany<'static>),
}

// SAFETY: `#[repr(C)]`, magic first.
unsafe impl Handle for PublisherHandle {
    const MAGIC: u64 = 0x7262_7075_626c_6973; // "rbpublis"
    const NAME: &'static str = "ringbus_publisher";
}

/// The publisher of a live handle with no loan outstanding.
///
/// # Safety
/// As [`handle::check`]; the handle is not used by another thread during
/// the returned borrow.
#[inline]
unsafe fn idle_publisher<'a>(p: *mut ringbus_publisher) -> Result<&'a mut Publisher, Failed> {
    // SAFETY: forwarded contract.
    let h = unsafe { check(p.cast::<PublisherHandle>())? };
    // SAFETY: a live handle; the loan field is read through the raw pointer
    // without creating a reference to the publisher.
    if unsafe { (*h).loan.is_some() } {
        return Err(fail_static(
            RINGBUS_ERR_BAD_STATE,
            c"a loan is outstanding: commit it (ringbus_publisher_commit, or _commit_many for a loan of many) or abandon it first",
        ));
    }
    // SAFETY: no loan borrows the publisher; the caller has the handle to
    // itself for the duration of the borrow.
    Ok(unsafe { &mut (*h).publisher })
}

/// A payload argument as a slice (NULL allowed when `len` is 0).
///
/// # Safety
/// `data` is NULL or readable for `len` bytes.
#[inline]
unsafe fn payload<'a>(data: *const c_void, len: usize) -> Result<&'a [u8], Failed> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(null("data (with len > 0)"));
    }
    // SAFETY: non-NULL and readable for `len` bytes per the contract.
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) })
}

#[inline]
fn write_seq(out: *mut u64, seq: u64) {
    if !out.is_null() {
        // SAFETY: a non-NULL `sequence` out-parameter is writable (every
        // publishing function's contract).
        unsafe { out.write(seq) };
    }
}

/// Opens a publisher of `topic`, creating the topic with `config` (NULL:
/// the defaults of `ringbus_topic_config_init()`) or checking that the
/// existing topic has the same config. The publisher writes its own ring;
/// close it with `ringbus_publisher_close()`, which ends its stream for
/// subscribers.
///
/// Errors: `RINGBUS_ERR_INVALID_ARGUMENT` (topic not UTF-8 or not a valid
/// name, bad config), `RINGBUS_ERR_CONFIG_MISMATCH`,
/// `RINGBUS_ERR_PERMISSION_DENIED`, `RINGBUS_ERR_LIMIT`,
/// `RINGBUS_ERR_BROKER`, `RINGBUS_ERR_SYSTEM`.
///
/// # Safety
/// `client` is NULL or a client handle; `topic` is NULL or a
/// NUL-terminated string; `config` is NULL or points to a
/// `ringbus_topic_config`; `publisher` is NULL or points to writable memory
/// for a pointer.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_open(
    client: *mut ringbus_client,
    topic: *const c_char,
    config: *const ringbus_topic_config,
    publisher: *mut *mut ringbus_publisher,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let c = unsafe { client_ref(client)? };
        // SAFETY: forwarded contract.
        let topic = unsafe { str_arg(topic, "topic")? };
        let out = out_arg(publisher, "publisher")?;
        let config = if config.is_null() {
            TopicConfig::default()
        } else {
            // SAFETY: non-NULL, points to a config per the contract.
            unsafe { config.read() }.to_rust()?
        };
        let p = c.publisher(topic, config).map_err(|e| client_error(&e))?;
        hand_out(p, out);
        Ok(())
    })
}

/// Boxes `publisher` into a handle and stores it in `*out` (checked
/// non-NULL by `out_arg`).
fn hand_out(publisher: Publisher, out: *mut *mut ringbus_publisher) {
    let h = PublisherHandle {
        magic: PublisherHandle::MAGIC,
        loan: None,
        publisher,
    }
    .into_raw();
    // SAFETY: `out` is non-NULL (out_arg) and writable per the caller's
    // contract.
    unsafe { out.write(h.cast()) };
}

/// Opens a publisher of an existing topic with the topic's own config
/// (e.g. a topic predeclared in the broker's configuration), so the caller
/// need not repeat it; `ringbus_publisher_config()` tells what it is.
///
/// Errors: `RINGBUS_ERR_NOT_FOUND` (the topic has no config yet); as
/// `ringbus_publisher_open()`.
///
/// # Safety
/// `client` is NULL or a client handle; `topic` is NULL or a
/// NUL-terminated string; `publisher` is NULL or points to writable memory
/// for a pointer.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_open_existing(
    client: *mut ringbus_client,
    topic: *const c_char,
    publisher: *mut *mut ringbus_publisher,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let c = unsafe { client_ref(client)? };
        // SAFETY: forwarded contract.
        let topic = unsafe { str_arg(topic, "topic")? };
        let out = out_arg(publisher, "publisher")?;
        let p = c.publisher_existing(topic).map_err(|e| client_error(&e))?;
        hand_out(p, out);
        Ok(())
    })
}

/// Closes a publisher (abandoning an outstanding loan): subscribers read
/// what is left in its ring, then get `RINGBUS_ERR_END_OF_STREAM`.
///
/// # Safety
/// `publisher` is NULL or a publisher handle, not used by another thread
/// during the call, and not used again after a success.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_close(publisher: *mut ringbus_publisher) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract; the loan is dropped before the
        // publisher it borrows.
        unsafe {
            handle::close(publisher.cast::<PublisherHandle>(), |h| {
                (*h).loan = None;
            })
        }
    })
}

/// Writes the topic's config to `*config` (e.g. to learn
/// `max_message_size`).
///
/// # Safety
/// `publisher` is NULL or a publisher handle; `config` is NULL or points to
/// writable memory for a `ringbus_topic_config`.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_config(
    publisher: *mut ringbus_publisher,
    config: *mut ringbus_topic_config,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let p = unsafe { idle_publisher(publisher)? };
        let out = out_arg(config, "config")?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out.write(p.config().into()) };
        Ok(())
    })
}

/// Turns the per-message CLOCK_MONOTONIC timestamp on (`on` != 0) or off
/// (`on` == 0, the default: messages carry 0). On, every publish reads the
/// clock, which costs a spin ping-pong a few to tens of ns per hop.
///
/// # Safety
/// `publisher` is NULL or a publisher handle.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_set_timestamps(
    publisher: *mut ringbus_publisher,
    on: c_int,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let p = unsafe { idle_publisher(publisher)? };
        p.set_timestamps(on != 0);
        Ok(())
    })
}

/// Copies `len` bytes from `data` into the ring as one message with `tag`;
/// its sequence number goes to `*sequence` (unless NULL). On a
/// back-pressure topic, waits as long as a subscriber keeps the ring full.
///
/// Errors: `RINGBUS_ERR_TOO_LARGE`, `RINGBUS_ERR_BAD_STATE` (a loan is
/// outstanding).
///
/// # Safety
/// `publisher` is NULL or a publisher handle; `data` is readable for `len`
/// bytes (may be NULL when `len` is 0); `sequence` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_publish(
    publisher: *mut ringbus_publisher,
    data: *const c_void,
    len: usize,
    tag: u64,
    sequence: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let (p, data) = unsafe { (idle_publisher(publisher)?, payload(data, len)?) };
        let seq = p.publish(data, tag).map_err(publish_error)?;
        write_seq(sequence, seq);
        Ok(())
    })
}

/// As `ringbus_publisher_publish()`, but never waits: on a full
/// back-pressure ring returns `RINGBUS_ERR_FULL`.
///
/// # Safety
/// As `ringbus_publisher_publish()`.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_try_publish(
    publisher: *mut ringbus_publisher,
    data: *const c_void,
    len: usize,
    tag: u64,
    sequence: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let (p, data) = unsafe { (idle_publisher(publisher)?, payload(data, len)?) };
        let seq = p.try_publish(data, tag).map_err(publish_error)?;
        write_seq(sequence, seq);
        Ok(())
    })
}

/// One message of a batch: `len` bytes at `data` (`data` may be NULL when
/// `len` is 0).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ringbus_bytes {
    /// The message's bytes.
    pub data: *const c_void,
    /// How many.
    pub len: usize,
}

/// The messages of a batch as slices, each checked as `payload` checks
/// one.
///
/// # Safety
/// `msgs` is NULL or readable for `count` entries, each of whose `data`
/// is readable for its `len` bytes.
unsafe fn batch<'a>(msgs: *const ringbus_bytes, count: usize) -> Result<Vec<&'a [u8]>, Failed> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if msgs.is_null() {
        return Err(null("msgs (with count > 0)"));
    }
    // SAFETY: non-NULL and readable for `count` entries per the contract.
    let msgs = unsafe { std::slice::from_raw_parts(msgs, count) };
    msgs.iter()
        .enumerate()
        .map(|(i, m)| {
            // SAFETY: forwarded contract.
            unsafe { payload(m.data, m.len) }.map_err(|_| {
                fail(
                    crate::status::ringbus_status::RINGBUS_ERR_NULL_POINTER,
                    format_args!("msgs[{i}].data is NULL with len {} > 0", m.len),
                )
            })
        })
        .collect()
}

/// Publishes the `count` messages at `msgs` in order, each with `tag`, as
/// one batch: each is readable once written, and the ring's head, the
/// wake-up of sleeping subscribers and the look for new ones come once
/// per batch (and before any wait for room), not once per message. The
/// first one's sequence number goes to `*first_sequence` (unless NULL);
/// the others follow it. On a back-pressure topic, waits for room as
/// `ringbus_publisher_publish()` does, so a batch may be longer than the
/// ring.
///
/// Errors: `RINGBUS_ERR_TOO_LARGE` (a message exceeds the topic's
/// `max_message_size`: none is published), `RINGBUS_ERR_NULL_POINTER`
/// (`msgs`, or a message's `data` with `len > 0`: none is published),
/// `RINGBUS_ERR_BAD_STATE` (a loan is outstanding).
///
/// # Safety
/// `publisher` is NULL or a publisher handle; `msgs` is readable for
/// `count` entries (may be NULL when `count` is 0), each of whose `data`
/// is readable for its `len` bytes; `first_sequence` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_publish_batch(
    publisher: *mut ringbus_publisher,
    msgs: *const ringbus_bytes,
    count: usize,
    tag: u64,
    first_sequence: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let (p, msgs) = unsafe { (idle_publisher(publisher)?, batch(msgs, count)?) };
        let seqs = p.publish_batch(&msgs, tag).map_err(publish_error)?;
        write_seq(first_sequence, seqs.start);
        Ok(())
    })
}

/// As `ringbus_publisher_publish_batch()`, but never waits: publishes the
/// longest prefix of `msgs` that fits now; how many goes to `*published`
/// (unless NULL), the first one's sequence number to `*first_sequence`.
///
/// Errors: `RINGBUS_ERR_FULL` (not even the first message fits; `count`
/// > 0); as `ringbus_publisher_publish_batch()`.
///
/// # Safety
/// As `ringbus_publisher_publish_batch()`; `published` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_try_publish_batch(
    publisher: *mut ringbus_publisher,
    msgs: *const ringbus_bytes,
    count: usize,
    tag: u64,
    published: *mut usize,
    first_sequence: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let (p, msgs) = unsafe { (idle_publisher(publisher)?, batch(msgs, count)?) };
        let seqs = p.try_publish_batch(&msgs, tag).map_err(publish_error)?;
        if !published.is_null() {
            // SAFETY: a non-NULL `published` is writable (the contract).
            unsafe { published.write((seqs.end - seqs.start) as usize) };
        }
        write_seq(first_sequence, seqs.start);
        Ok(())
    })
}

/// As `ringbus_publisher_publish()`, waiting at most `timeout_ns`
/// nanoseconds for room (`RINGBUS_ERR_TIMEOUT` after that).
///
/// # Safety
/// As `ringbus_publisher_publish()`.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_publish_timeout(
    publisher: *mut ringbus_publisher,
    data: *const c_void,
    len: usize,
    tag: u64,
    timeout_ns: u64,
    sequence: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let (p, data) = unsafe { (idle_publisher(publisher)?, payload(data, len)?) };
        let seq = p
            .publish_timeout(data, tag, Duration::from_nanos(timeout_ns))
            .map_err(publish_error)?;
        write_seq(sequence, seq);
        Ok(())
    })
}

/// Zero-copy publish, step 1: lends the next slot's payload area, `len`
/// bytes at `*buf`, to be filled in place; `ringbus_publisher_commit()`
/// publishes it, `ringbus_publisher_abandon()` drops it. Waits for room
/// like `ringbus_publisher_publish()`. One loan at a time; while it is
/// outstanding, other calls on the publisher fail with
/// `RINGBUS_ERR_BAD_STATE`.
///
/// Errors: `RINGBUS_ERR_TOO_LARGE`, `RINGBUS_ERR_BAD_STATE`.
///
/// # Safety
/// `publisher` is NULL or a publisher handle; `buf` is NULL or points to
/// writable memory for a pointer. The loaned area is valid until the loan
/// is committed or abandoned, or the publisher closed.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_loan(
    publisher: *mut ringbus_publisher,
    len: usize,
    buf: *mut *mut c_void,
) -> c_int {
    // SAFETY: forwarded contract.
    guard(|| unsafe { loan(publisher, len, buf, true) })
}

/// As `ringbus_publisher_loan()`, but never waits: on a full back-pressure
/// ring returns `RINGBUS_ERR_FULL`.
///
/// # Safety
/// As `ringbus_publisher_loan()`.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_try_loan(
    publisher: *mut ringbus_publisher,
    len: usize,
    buf: *mut *mut c_void,
) -> c_int {
    // SAFETY: forwarded contract.
    guard(|| unsafe { loan(publisher, len, buf, false) })
}

/// # Safety
/// As `ringbus_publisher_loan()`.
#[inline]
unsafe fn loan(
    publisher: *mut ringbus_publisher,
    len: usize,
    buf: *mut *mut c_void,
    wait: bool,
) -> Outcome {
    // SAFETY: forwarded contract.
    let p = unsafe { idle_publisher(publisher)? };
    let out = out_arg(buf, "buf")?;
    let mut l = if wait { p.loan(len) } else { p.try_loan(len) }.map_err(publish_error)?;
    let ptr = l.as_mut_ptr();
    // SAFETY: the loan borrows the publisher inside the boxed handle, which
    // stays put until close; the handle keeps the loan only while nothing
    // else touches the publisher (see `PublisherHandle::loan`) and drops it
    // first, so extending the borrow to 'static never lets it dangle.
    let l: Loan<'static> = unsafe { std::mem::transmute::<Loan<'_>, Loan<'static>>(l) };
    let h = publisher.cast::<PublisherHandle>();
    // SAFETY: a live handle (checked above); only the loan field is written.
    unsafe { (*h).loan = Some(Lent::One(l)) };
    // SAFETY: non-NULL and writable per the contract.
    unsafe { out.write(ptr.cast()) };
    Ok(())
}

/// Zero-copy publish, step 2: publishes the first `len` bytes of the
/// outstanding loan (at most the loaned length) with `tag`; the sequence
/// number goes to `*sequence` (unless NULL).
///
/// Errors: `RINGBUS_ERR_BAD_STATE` (no loan), `RINGBUS_ERR_INVALID_ARGUMENT`
/// (`len` larger than the loan; the loan stays outstanding).
///
/// # Safety
/// `publisher` is NULL or a publisher handle; `sequence` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_commit(
    publisher: *mut ringbus_publisher,
    len: usize,
    tag: u64,
    sequence: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let h = unsafe { check(publisher.cast::<PublisherHandle>())? };
        // SAFETY: a live handle; only the loan field is touched.
        let slot = unsafe { &mut (*h).loan };
        let l = match slot.as_ref() {
            Some(Lent::One(l)) => l,
            Some(Lent::Many(_)) => {
                return Err(fail_static(
                    RINGBUS_ERR_BAD_STATE,
                    c"the loan outstanding is a loan of many: commit it with ringbus_publisher_commit_many",
                ))
            }
            None => return Err(no_loan()),
        };
        if len > l.len() {
            return Err(fail(
                RINGBUS_ERR_INVALID_ARGUMENT,
                format_args!(
                    "commit of {len} bytes exceeds the loan of {} bytes",
                    l.len()
                ),
            ));
        }
        let Some(Lent::One(l)) = slot.take() else {
            unreachable!("checked above")
        };
        write_seq(sequence, l.commit_len(len, tag));
        Ok(())
    })
}

/// Zero-copy batch, step 1: lends the next `n` slots' payload areas,
/// `len` bytes each, their addresses written to `bufs[0..n]`, to be filled
/// in place; `ringbus_publisher_commit_many()` publishes them in order with
/// one update of the ring's head and one wake-up of sleeping subscribers
/// for the lot; `ringbus_publisher_abandon()` drops them. Waits until all
/// `n` slots are free. One loan (of one slot or many) at a time.
///
/// Errors: `RINGBUS_ERR_TOO_LARGE`, `RINGBUS_ERR_INVALID_ARGUMENT` (`n`
/// larger than the topic's capacity), `RINGBUS_ERR_BAD_STATE`.
///
/// # Safety
/// `publisher` is NULL or a publisher handle; `bufs` is NULL or writable
/// for `n` pointers (NULL only when `n` is 0). The lent areas are valid
/// until the loan is committed or abandoned, or the publisher closed.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_loan_many(
    publisher: *mut ringbus_publisher,
    n: usize,
    len: usize,
    bufs: *mut *mut c_void,
) -> c_int {
    // SAFETY: forwarded contract.
    guard(|| unsafe { loan_many(publisher, n, len, bufs, true) })
}

/// As `ringbus_publisher_loan_many()`, but never waits: when fewer than
/// `n` slots of a back-pressure ring are free, returns `RINGBUS_ERR_FULL`.
///
/// # Safety
/// As `ringbus_publisher_loan_many()`.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_try_loan_many(
    publisher: *mut ringbus_publisher,
    n: usize,
    len: usize,
    bufs: *mut *mut c_void,
) -> c_int {
    // SAFETY: forwarded contract.
    guard(|| unsafe { loan_many(publisher, n, len, bufs, false) })
}

/// # Safety
/// As `ringbus_publisher_loan_many()`.
unsafe fn loan_many(
    publisher: *mut ringbus_publisher,
    n: usize,
    len: usize,
    bufs: *mut *mut c_void,
    wait: bool,
) -> Outcome {
    // SAFETY: forwarded contract.
    let p = unsafe { idle_publisher(publisher)? };
    // A loan of none needs nowhere to write (C++ passes an empty vector's
    // data, which may be NULL).
    if bufs.is_null() && n > 0 {
        return Err(null("bufs"));
    }
    let mut l = if wait {
        p.loan_many(n, len)
    } else {
        p.try_loan_many(n, len)
    }
    .map_err(publish_error)?;
    for (i, area) in l.iter_mut().enumerate() {
        // SAFETY: non-NULL and writable for `n` pointers per the contract.
        unsafe { bufs.add(i).write(area.as_mut_ptr().cast()) };
    }
    // SAFETY: as in `loan`: the handle keeps the loan only while nothing
    // else touches the publisher and drops it first.
    let l: LoanMany<'static> = unsafe { std::mem::transmute::<LoanMany<'_>, LoanMany<'static>>(l) };
    let h = publisher.cast::<PublisherHandle>();
    // SAFETY: a live handle (checked above); only the loan field is written.
    unsafe { (*h).loan = Some(Lent::Many(l)) };
    Ok(())
}

/// Zero-copy batch, step 2: publishes the first `count` slots of the
/// outstanding loan of many (at most the number lent), in order: slot `i`
/// with `lens[i]` bytes (at most the length lent; `lens` NULL: the length
/// lent) and tag `tags[i]` (`tags` NULL: 0). The first one's sequence
/// number goes to `*first_sequence` (unless NULL); the others follow it.
/// The slots after `count` are not published. `count` 0 publishes nothing
/// and ends the loan.
///
/// Errors: `RINGBUS_ERR_BAD_STATE` (no loan of many),
/// `RINGBUS_ERR_INVALID_ARGUMENT` (`count` or a length larger than lent;
/// the loan stays outstanding).
///
/// # Safety
/// `publisher` is NULL or a publisher handle; `lens` and `tags` are NULL
/// or readable for `count` elements; `first_sequence` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_commit_many(
    publisher: *mut ringbus_publisher,
    count: usize,
    lens: *const usize,
    tags: *const u64,
    first_sequence: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let h = unsafe { check(publisher.cast::<PublisherHandle>())? };
        // SAFETY: a live handle; only the loan field is touched.
        let slot = unsafe { &mut (*h).loan };
        let l =
            match slot.as_ref() {
                Some(Lent::Many(l)) => l,
                Some(Lent::One(_)) => return Err(fail_static(
                    RINGBUS_ERR_BAD_STATE,
                    c"the loan outstanding is of one slot: commit it with ringbus_publisher_commit",
                )),
                None => return Err(no_loan()),
            };
        if count > l.count() {
            return Err(fail(
                RINGBUS_ERR_INVALID_ARGUMENT,
                format_args!("commit of {count} slots exceeds the loan of {}", l.count()),
            ));
        }
        let lens: &[usize] = if lens.is_null() || count == 0 {
            &[]
        } else {
            // SAFETY: non-NULL and readable for `count` elements per the
            // contract.
            unsafe { std::slice::from_raw_parts(lens, count) }
        };
        let tags: &[u64] = if tags.is_null() || count == 0 {
            &[]
        } else {
            // SAFETY: as for `lens`.
            unsafe { std::slice::from_raw_parts(tags, count) }
        };
        if let Some((i, &len)) = lens
            .iter()
            .enumerate()
            .find(|&(_, &len)| len > l.slot_len())
        {
            return Err(fail(
                RINGBUS_ERR_INVALID_ARGUMENT,
                format_args!(
                    "lens[{i}] = {len} exceeds the loan's {} bytes per slot",
                    l.slot_len()
                ),
            ));
        }
        let Some(Lent::Many(l)) = slot.take() else {
            unreachable!("checked above")
        };
        let full = l.slot_len();
        let seqs = l.commit_with(count, |i| {
            (
                lens.get(i).copied().unwrap_or(full),
                tags.get(i).copied().unwrap_or(0),
            )
        });
        write_seq(first_sequence, seqs.start);
        Ok(())
    })
}

/// Drops the outstanding loan (of one slot or many) without publishing anything.
///
/// Errors: `RINGBUS_ERR_BAD_STATE` (no loan).
///
/// # Safety
/// `publisher` is NULL or a publisher handle.
#[no_mangle]
pub unsafe extern "C" fn ringbus_publisher_abandon(publisher: *mut ringbus_publisher) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let h = unsafe { check(publisher.cast::<PublisherHandle>())? };
        // A dropped loan publishes nothing: its slot is reused by the next
        // loan or publish.
        // SAFETY: a live handle; only the loan field is touched.
        match unsafe { (*h).loan.take() } {
            Some(_) => Ok(()),
            None => Err(no_loan()),
        }
    })
}

fn no_loan() -> Failed {
    fail_static(
        RINGBUS_ERR_BAD_STATE,
        c"no loan is outstanding: call ringbus_publisher_loan first",
    )
}
