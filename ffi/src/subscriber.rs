//! `ringbus_subscriber`: a subscription to a topic or a pattern (all of
//! their rings), with copying receives, a zero-copy receive for
//! back-pressure topics, and filters (tags, a C predicate).

use std::ffi::{c_char, c_int, c_void};
use std::time::Duration;

use ringbus::client::{Delivery, GroupError, GroupSubscriber, Subscriber};
use ringbus::control::is_pattern;
use ringbus::ring::{FilterError, MessageRef, RecvError};

use crate::client::{client_ref, ringbus_client};
use crate::handle::{self, check, out_arg, str_arg, Handle};
use crate::status::ringbus_status::{
    RINGBUS_ERR_BAD_STATE, RINGBUS_ERR_BUFFER_TOO_SMALL, RINGBUS_ERR_INVALID_ARGUMENT,
    RINGBUS_ERR_NOT_FOUND, RINGBUS_ERR_NULL_POINTER, RINGBUS_ERR_UNSUPPORTED,
};
use crate::status::{
    client_error, fail, fail_static, filter_error, guard, null, recv_error, Failed,
};
use crate::types::{
    ringbus_message_info, ringbus_message_view, ringbus_subscribe_options, ringbus_topic_config,
    RINGBUS_MAX_FILTER_TAGS, RINGBUS_TOPIC_UNKNOWN,
};

/// A subscription to one topic, or to the topics a pattern matches
/// (opaque): reads every publisher's ring, including those of publishers
/// (and matching topics) that appear later. Use it from one thread
/// at a time.
pub struct ringbus_subscriber {
    _opaque: [u8; 0],
}

#[repr(C)]
pub(crate) struct SubscriberHandle {
    magic: u64,
    /// The message held by a zero-copy receive. It borrows `sub` mutably:
    /// while it is `Some`, `sub` is not touched (calls other than release
    /// and close fail with `RINGBUS_ERR_BAD_STATE`), and it is dropped
    /// before `sub` (field order, and explicitly in close).
    view: Option<MessageRef<'static>>,
    /// Ring id to topic id, for the zero-copy receives of a pattern
    /// subscription (a zero-copy receive returns the ring only, and the
    /// subscriber cannot be asked while the message borrows it).
    ring_topics: Vec<(u64, u32)>,
    sub: Reader,
}

/// What a subscriber handle reads with. The plain subscriber is inline
/// (the receive path reaches it without another pointer; the handle is
/// one allocation either way), the member boxed.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Reader {
    Plain(Subscriber),
    /// A consumer group member (`options.group`): copying receives and
    /// acknowledgements; no zero-copy receive (so never a view), no
    /// filters.
    Group(Box<GroupSubscriber>),
}

impl Reader {
    /// The subscription underneath (topics, rings, counters).
    fn subscription(&self) -> &Subscriber {
        match self {
            Reader::Plain(s) => s,
            Reader::Group(g) => g.subscriber(),
        }
    }
}

// SAFETY: `#[repr(C)]`, magic first.
unsafe impl Handle for SubscriberHandle {
    const MAGIC: u64 = 0x7262_7375_6273_6372; // "rbsubscr"
    const NAME: &'static str = "ringbus_subscriber";
}

/// The subscriber of a live handle holding no zero-copy message.
///
/// # Safety
/// As [`handle::check`]; the handle is not used by another thread during
/// the returned borrow.
#[inline]
unsafe fn idle_subscriber<'a>(s: *mut ringbus_subscriber) -> Result<&'a mut Subscriber, Failed> {
    // SAFETY: forwarded contract.
    match unsafe { idle_reader(s)? } {
        Reader::Plain(sub) => Ok(sub),
        Reader::Group(_) => Err(fail_static(
            RINGBUS_ERR_UNSUPPORTED,
            c"a consumer group member (options.group) has no zero-copy receive and no filters",
        )),
    }
}

/// The group member of a live handle.
///
/// # Safety
/// As [`idle_subscriber`].
unsafe fn member<'a>(s: *mut ringbus_subscriber) -> Result<&'a mut GroupSubscriber, Failed> {
    // SAFETY: forwarded contract.
    match unsafe { idle_reader(s)? } {
        Reader::Group(g) => Ok(g),
        Reader::Plain(_) => Err(fail_static(
            RINGBUS_ERR_BAD_STATE,
            c"not a consumer group member: acknowledgements are for subscribers opened with options.group",
        )),
    }
}

/// The reader of a live handle holding no zero-copy message.
///
/// # Safety
/// As [`idle_subscriber`].
#[inline]
unsafe fn idle_reader<'a>(s: *mut ringbus_subscriber) -> Result<&'a mut Reader, Failed> {
    // SAFETY: forwarded contract.
    let h = unsafe { check(s.cast::<SubscriberHandle>())? };
    // SAFETY: a live handle; the view field is read through the raw pointer
    // without creating a reference to the subscriber.
    if unsafe { (*h).view.is_some() } {
        return Err(fail_static(
            RINGBUS_ERR_BAD_STATE,
            c"a zero-copy message is held: release it first (ringbus_subscriber_release)",
        ));
    }
    // SAFETY: no view borrows the subscriber; the caller has the handle to
    // itself for the duration of the borrow.
    Ok(unsafe { &mut (*h).sub })
}

/// Opens a subscription to `topic` (which need not exist yet) with
/// `options` (NULL: the defaults of `ringbus_subscribe_options_init()`).
/// Close it with `ringbus_subscriber_close()`.
///
/// `topic` may be a pattern: `*` matches one segment, a final `>` one or
/// more (`md.*.AAPL`, `md.>`). A pattern subscription reads every topic the
/// pattern matches, including topics created later; `info.topic` tells the
/// topics apart (`ringbus_subscriber_topic_name()`). The pattern may be
/// given in `options->pattern` instead, `topic` then being NULL. With
/// `options->tag_mask` set, the tag filter of
/// `ringbus_subscriber_filter_tags()` applies from the first receive.
/// With `options->group` set, the subscriber is a member of that consumer
/// group (see `ringbus_subscribe_options.group`).
///
/// Errors: `RINGBUS_ERR_INVALID_ARGUMENT` (topic not UTF-8 or not a valid
/// name, a bad pattern (the message says what is wrong, at which byte),
/// both `topic` and `options->pattern` set, `options->tag_value` with bits
/// outside `options->tag_mask`, bad option value, an empty or invalid
/// group name, group options without a group, a group started in a
/// durable topic's journal), `RINGBUS_ERR_CONFIG_MISMATCH` (the group's
/// members asked for another `group_max_deliveries`),
/// `RINGBUS_ERR_UNSUPPORTED` (a reserved option set, a group member with a
/// tag filter),
/// `RINGBUS_ERR_PERMISSION_DENIED`, `RINGBUS_ERR_LIMIT` (every back-pressure
/// cursor taken), `RINGBUS_ERR_BROKER`, `RINGBUS_ERR_SYSTEM`.
///
/// # Safety
/// `client` is NULL or a client handle; `topic` is NULL or a
/// NUL-terminated string; `options` is NULL or points to a
/// `ringbus_subscribe_options` whose `pattern` and `group` are NULL or
/// NUL-terminated strings; `subscriber` is NULL or points to writable memory for a
/// pointer.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_open(
    client: *mut ringbus_client,
    topic: *const c_char,
    options: *const ringbus_subscribe_options,
    subscriber: *mut *mut ringbus_subscriber,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let c = unsafe { client_ref(client)? };
        let out = out_arg(subscriber, "subscriber")?;
        let c_options = if options.is_null() {
            ringbus_subscribe_options::default()
        } else {
            // SAFETY: non-NULL, points to options per the contract.
            unsafe { options.read() }
        };
        let name = match (c_options.pattern.is_null(), topic.is_null()) {
            // SAFETY: forwarded contract.
            (true, _) => unsafe { str_arg(topic, "topic")? },
            // SAFETY: non-NULL; a NUL-terminated string per the contract.
            (false, true) => unsafe { str_arg(c_options.pattern, "options.pattern")? },
            (false, false) => {
                return Err(fail_static(
                    RINGBUS_ERR_INVALID_ARGUMENT,
                    c"both topic and options.pattern are set: pass the pattern in one of them and NULL in the other",
                ))
            }
        };
        let options = c_options.to_rust()?;
        let sub = if c_options.group.is_null() {
            let mut sub = c.subscriber(name, options).map_err(|e| client_error(&e))?;
            if c_options.tag_mask != 0 {
                sub.filter_tags(c_options.tag_mask, c_options.tag_value)
                    .map_err(|e| filter_error(&e))?;
            }
            Reader::Plain(sub)
        } else {
            if c_options.tag_mask != 0 {
                return Err(fail_static(
                    RINGBUS_ERR_UNSUPPORTED,
                    c"a consumer group member (options.group) has no filters: options.tag_mask must be 0",
                ));
            }
            // SAFETY: non-NULL; a NUL-terminated string per the contract.
            let group = unsafe { str_arg(c_options.group, "options.group")? };
            let m = c
                .subscriber_in_group(name, group, c_options.to_group(options))
                .map_err(|e| client_error(&e))?;
            Reader::Group(Box::new(m))
        };
        let h = SubscriberHandle {
            magic: SubscriberHandle::MAGIC,
            view: None,
            ring_topics: Vec::new(),
            sub,
        }
        .into_raw();
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out.write(h.cast()) };
        Ok(())
    })
}

/// Closes a subscription (releasing a held zero-copy message); its
/// back-pressure cursors stop holding publishers back.
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle, not used by another thread
/// during the call, and not used again after a success.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_close(subscriber: *mut ringbus_subscriber) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract; the view is dropped before the
        // subscriber it borrows.
        unsafe {
            handle::close(subscriber.cast::<SubscriberHandle>(), |h| {
                drop((*h).view.take());
            })
        }
    })
}

/// The caller's buffer as a slice (NULL allowed when `capacity` is 0).
///
/// # Safety
/// `buf` is NULL or writable for `capacity` bytes.
#[inline]
unsafe fn buffer<'a>(buf: *mut c_void, capacity: usize) -> Result<&'a mut [u8], Failed> {
    if capacity == 0 {
        return Ok(&mut []);
    }
    if buf.is_null() {
        return Err(null("buf (with capacity > 0)"));
    }
    // SAFETY: non-NULL and writable for `capacity` bytes per the contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), capacity) })
}

/// The topic id of ring `ring_id`: 0 on a topic subscription; on a pattern
/// subscription, looked up in the subscriber's ring list (an allocation:
/// for the error paths and zero-copy receives only).
fn ring_topic(sub: &Subscriber, ring_id: u64) -> u32 {
    if !is_pattern(sub.topic()) {
        return 0;
    }
    sub.rings()
        .iter()
        .find(|r| r.ring_id == ring_id)
        .map_or(RINGBUS_TOPIC_UNKNOWN, |r| r.topic)
}

/// Writes a receive's outcome to `*info` and converts it to a status.
#[inline]
fn deliver(
    r: Result<Delivery, RecvError>,
    sub: &Subscriber,
    info: *mut ringbus_message_info,
) -> Result<(), Failed> {
    let i = match r {
        Ok(d) => ringbus_message_info::of(d.ring_id, d.topic, d.info),
        Err(e) => {
            let ring_id = sub.last_ring_id();
            let mut i = ringbus_message_info {
                ring_id,
                topic: ring_topic(sub, ring_id),
                ..Default::default()
            };
            match e {
                RecvError::BufferTooSmall { needed } => i.len = needed,
                RecvError::Lagged { missed } => i.missed = missed,
                RecvError::Corrupt { seq, .. } | RecvError::FilterPanicked { seq } => {
                    i.sequence = seq
                }
                // The frequent outcomes of polling leave `*info` alone.
                _ => return Err(recv_error(e)),
            }
            // SAFETY: `info` was checked non-NULL; writable per the contract.
            unsafe { info.write(i) };
            return Err(recv_error(e));
        }
    };
    // SAFETY: as above.
    unsafe { info.write(i) };
    Ok(())
}

/// Copies the next message of any of the topic's rings into `buf` (of
/// `capacity` bytes) without waiting, and its metadata into `*info`.
/// `*info` is written on success and on `RINGBUS_ERR_BUFFER_TOO_SMALL`,
/// `RINGBUS_ERR_LAGGED`, `RINGBUS_ERR_CORRUPT` and
/// `RINGBUS_ERR_FILTER_FAILED`; other errors leave it unchanged. Messages
/// the subscriber's filters turn down are skipped (and counted by
/// `ringbus_subscriber_filtered_total()`).
///
/// Errors: `RINGBUS_ERR_EMPTY` (nothing new), `RINGBUS_ERR_BUFFER_TOO_SMALL`
/// (`info->len` is the size needed; the message stays unread, so retry with
/// a bigger buffer), `RINGBUS_ERR_LAGGED` (`info->missed` messages lost;
/// reading goes on), `RINGBUS_ERR_END_OF_STREAM` (a publisher left and its
/// ring is drained; reading goes on with the others), `RINGBUS_ERR_CORRUPT`,
/// `RINGBUS_ERR_FILTER_FAILED` (a filter predicate failed on message
/// `info->sequence`, which is skipped), `RINGBUS_ERR_BAD_STATE` (a
/// zero-copy message is held).
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle; `buf` is writable for
/// `capacity` bytes (may be NULL when `capacity` is 0); `info` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_try_recv(
    subscriber: *mut ringbus_subscriber,
    buf: *mut c_void,
    capacity: usize,
    info: *mut ringbus_message_info,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let (s, buf) = unsafe { (idle_reader(subscriber)?, buffer(buf, capacity)?) };
        let info = out_arg(info, "info")?;
        let s = match s {
            Reader::Plain(s) => s,
            Reader::Group(g) => return deliver_member(g.try_recv(buf), g, info),
        };
        let r = s.try_recv(buf);
        deliver(r, s, info)
    })
}

/// As `ringbus_subscriber_try_recv()`, waiting as the subscription's wait
/// strategy says: at most `timeout_ns` nanoseconds (0: do not wait;
/// negative, e.g. `RINGBUS_WAIT_FOREVER`: no limit).
///
/// Errors: `RINGBUS_ERR_TIMEOUT`; as `ringbus_subscriber_try_recv()`.
///
/// # Safety
/// As `ringbus_subscriber_try_recv()`.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_recv(
    subscriber: *mut ringbus_subscriber,
    buf: *mut c_void,
    capacity: usize,
    timeout_ns: i64,
    info: *mut ringbus_message_info,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let (s, buf) = unsafe { (idle_reader(subscriber)?, buffer(buf, capacity)?) };
        let info = out_arg(info, "info")?;
        let s = match s {
            Reader::Plain(s) => s,
            Reader::Group(g) => {
                let r = match timeout_ns {
                    t if t < 0 => g.recv(buf),
                    0 => g.try_recv(buf),
                    t => g.recv_timeout(buf, Duration::from_nanos(t as u64)),
                };
                return deliver_member(r, g, info);
            }
        };
        let r = match timeout_ns {
            t if t < 0 => s.recv(buf),
            0 => s.try_recv(buf),
            t => s.recv_timeout(buf, Duration::from_nanos(t as u64)),
        };
        deliver(r, s, info)
    })
}

/// Called by `ringbus_subscriber_try_recv_batch()` with each message of a
/// batch: its info, its payload (`len` bytes, valid only during the call),
/// and the `user` pointer given. Returns nonzero for the next message, 0
/// to end the batch after this one (the rest stay unread). It must not
/// call functions on the subscriber it receives for.
pub type ringbus_message_fn = Option<
    unsafe extern "C" fn(
        info: *const ringbus_message_info,
        data: *const u8,
        len: usize,
        user: *mut c_void,
    ) -> c_int,
>;

/// Receives, without waiting, up to `max` messages that are ready, in
/// order, each copied into `buf` (of `capacity` bytes) and handed to
/// `on_message` before the next is copied, until it returns 0; `*count`
/// (if not NULL) is how many it was given. One call per batch, with the subscription's per-receive checks
/// made once per batch where they can be.
///
/// What would end a run of `ringbus_subscriber_try_recv()` calls ends the
/// batch after the messages before it and is the next receive's answer,
/// so nothing goes unreported: `RINGBUS_ERR_LAGGED`,
/// `RINGBUS_ERR_END_OF_STREAM`, `RINGBUS_ERR_CORRUPT`,
/// `RINGBUS_ERR_FILTER_FAILED`; a message larger than `capacity` is left
/// unread.
///
/// Errors: as `ringbus_subscriber_try_recv()` for the first message, with
/// `*info_out` (if not NULL) written as that function writes `*info`:
/// `RINGBUS_ERR_EMPTY` when none is ready (or `max` is 0);
/// `RINGBUS_ERR_NULL_POINTER` (`on_message` NULL);
/// `RINGBUS_ERR_UNSUPPORTED` on a consumer-group member (receive one at a
/// time: each needs its acknowledgement).
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle; `buf` is writable for
/// `capacity` bytes (may be NULL when `capacity` is 0); `on_message` is
/// NULL or a function that may be called with `user` on this thread, and
/// does not unwind; `count` and `info_out` are NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_try_recv_batch(
    subscriber: *mut ringbus_subscriber,
    buf: *mut c_void,
    capacity: usize,
    max: usize,
    on_message: ringbus_message_fn,
    user: *mut c_void,
    count: *mut usize,
    info_out: *mut ringbus_message_info,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let (s, buf) = unsafe { (idle_reader(subscriber)?, buffer(buf, capacity)?) };
        let Some(on_message) = on_message else {
            return Err(null("on_message"));
        };
        let s = match s {
            Reader::Plain(s) => s,
            Reader::Group(_) => return Err(fail_static(
                RINGBUS_ERR_UNSUPPORTED,
                c"a consumer-group member receives one message at a time (each is acknowledged)",
            )),
        };
        let r = s.try_recv_batch_while(buf, max, |data, d| {
            let info = ringbus_message_info::of(d.ring_id, d.topic, d.info);
            // SAFETY: the caller promised `on_message` may be called with
            // `user` on this thread; `info` and `data` outlive the call.
            unsafe { on_message(&info, data.as_ptr(), data.len(), user) != 0 }
        });
        let n = match r {
            Ok(n) => n,
            Err(e) => {
                if info_out.is_null() {
                    return Err(recv_error(e));
                }
                return deliver(Err(e), s, info_out);
            }
        };
        if !count.is_null() {
            // SAFETY: non-NULL, writable per the contract.
            unsafe { count.write(n) };
        }
        Ok(())
    })
}

/// [`deliver`] for a group member: `info.deliveries` too.
fn deliver_member(
    r: Result<ringbus::client::GroupDelivery, RecvError>,
    g: &GroupSubscriber,
    info: *mut ringbus_message_info,
) -> Result<(), Failed> {
    let deliveries = r.as_ref().map_or(0, |d| d.deliveries);
    deliver(r.map(|d| d.delivery), g.subscriber(), info)?;
    // SAFETY: `info` was checked non-NULL and written by `deliver`;
    // writable per the caller's contract.
    unsafe { (*info).deliveries = deliveries };
    Ok(())
}

/// An acknowledgement's failure as a status.
fn group_error(e: &GroupError) -> Failed {
    fail(RINGBUS_ERR_INVALID_ARGUMENT, format_args!("{e}"))
}

/// The ring and sequence of a delivered message's info.
///
/// # Safety
/// `info` is NULL or points to a readable `ringbus_message_info`.
unsafe fn acked(info: *const ringbus_message_info) -> Result<(u64, u64), Failed> {
    if info.is_null() {
        return Err(null("info"));
    }
    // SAFETY: non-NULL, readable per the contract.
    let i = unsafe { info.read() };
    Ok((i.ring_id, i.sequence))
}

/// Acknowledges one message a group member received (`info` as the
/// receive filled it: its `ring_id` and `sequence` are read): it will not
/// be delivered again. Under `RINGBUS_GROUP_MANUAL_ACK` messages may be
/// acknowledged in any order; by default asking for the next message
/// acknowledges the last one, and this is needed only to acknowledge
/// early.
///
/// Errors: `RINGBUS_ERR_INVALID_ARGUMENT` (not delivered to this member,
/// acknowledged already, or a ring it does not read),
/// `RINGBUS_ERR_BAD_STATE` (not a group member), `RINGBUS_ERR_NULL_POINTER`.
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle; `info` is NULL or points
/// to a readable `ringbus_message_info`.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_ack(
    subscriber: *mut ringbus_subscriber,
    info: *const ringbus_message_info,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let (g, (ring, seq)) = unsafe { (member(subscriber)?, acked(info)?) };
        g.ack_seq(ring, seq).map_err(|e| group_error(&e))
    })
}

/// Acknowledges every message of `info->ring_id` delivered to this group
/// member up to and including `info->sequence`.
///
/// Errors: as `ringbus_subscriber_ack()`.
///
/// # Safety
/// As `ringbus_subscriber_ack()`.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_ack_through(
    subscriber: *mut ringbus_subscriber,
    info: *const ringbus_message_info,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let (g, (ring, seq)) = unsafe { (member(subscriber)?, acked(info)?) };
        g.ack_through_seq(ring, seq).map_err(|e| group_error(&e))
    })
}

/// Hands a message a group member received back: the next receive
/// delivers it again (its `deliveries` one higher), until it has been
/// delivered `group_max_deliveries` times; it then goes to the
/// dead-letter topic (`<topic>.dlq`) and the group moves on.
///
/// Errors: as `ringbus_subscriber_ack()`.
///
/// # Safety
/// As `ringbus_subscriber_ack()`.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_nack(
    subscriber: *mut ringbus_subscriber,
    info: *const ringbus_message_info,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let (g, (ring, seq)) = unsafe { (member(subscriber)?, acked(info)?) };
        g.nack_seq(ring, seq).map_err(|e| group_error(&e))
    })
}

/// Zero-copy receive (back-pressure topics only): the next message, read in
/// place. `view->data` points into the ring and stays valid until
/// `ringbus_subscriber_release()`; meanwhile the publisher cannot reuse the
/// slot, and other calls on this subscriber fail with
/// `RINGBUS_ERR_BAD_STATE`. Waits at most `timeout_ns` nanoseconds (0: do
/// not wait; negative: no limit).
///
/// Errors: `RINGBUS_ERR_ZERO_COPY_UNSUPPORTED` (overwrite topic),
/// `RINGBUS_ERR_EMPTY` (with `timeout_ns` 0), `RINGBUS_ERR_TIMEOUT`,
/// `RINGBUS_ERR_END_OF_STREAM`, `RINGBUS_ERR_LAGGED` (`view->info.missed`
/// messages lost, `view->data` NULL: a start the ring no longer held),
/// `RINGBUS_ERR_CORRUPT`, `RINGBUS_ERR_BAD_STATE` (a message is held
/// already).
///
/// On a pattern subscription, `view->info.topic` is
/// `RINGBUS_TOPIC_UNKNOWN` for a message of a ring that appeared during
/// this very call (the next calls know it). Zero-copy receives skip
/// filtered messages as the copying ones do.
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle; `view` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_recv_ref(
    subscriber: *mut ringbus_subscriber,
    timeout_ns: i64,
    view: *mut ringbus_message_view,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let s = unsafe { idle_subscriber(subscriber)? };
        let out = out_arg(view, "view")?;
        let h = subscriber.cast::<SubscriberHandle>();
        // The message borrows the subscriber: its ring's topic is looked up
        // in a table taken before. A ring attached during the receive is
        // not in it (RINGBUS_TOPIC_UNKNOWN); the next receive's table has
        // it.
        let pattern = is_pattern(s.topic());
        if pattern {
            // SAFETY: a live handle (checked above); only the table field
            // is touched, no view is held.
            let table = unsafe { &mut (*h).ring_topics };
            table.clear();
            table.extend(s.rings().iter().map(|r| (r.ring_id, r.topic)));
        }
        let r = match timeout_ns {
            t if t < 0 => s.recv_ref_deadline(None),
            0 => s.try_recv_ref(),
            t => s.recv_ref_timeout(Duration::from_nanos(t as u64)),
        };
        let r = r.map(|(id, m)| {
            // SAFETY: the view borrows the subscriber inside the boxed
            // handle, which stays put until close; the handle keeps the view
            // only while nothing else touches the subscriber (see
            // `SubscriberHandle::view`) and drops it first, so extending the
            // borrow to 'static never lets it dangle.
            let m = unsafe { std::mem::transmute::<MessageRef<'_>, MessageRef<'static>>(m) };
            (id, m)
        });
        let (ring_id, m) = match r {
            Ok(x) => x,
            Err(e) => {
                if let RecvError::Lagged { missed } = e {
                    let ring_id = s.last_ring_id();
                    let info = ringbus_message_info {
                        ring_id,
                        topic: ring_topic(s, ring_id),
                        missed,
                        ..Default::default()
                    };
                    let v = ringbus_message_view {
                        data: std::ptr::null(),
                        info,
                    };
                    // SAFETY: non-NULL and writable per the contract.
                    unsafe { out.write(v) };
                }
                return Err(recv_error(e));
            }
        };
        let topic = if pattern {
            // SAFETY: a live handle; only the table field is read.
            let table = unsafe { &(*h).ring_topics };
            table
                .iter()
                .find(|&&(r, _)| r == ring_id)
                .map_or(RINGBUS_TOPIC_UNKNOWN, |&(_, t)| t)
        } else {
            0
        };
        let v = ringbus_message_view {
            data: m.as_ptr().cast(),
            info: ringbus_message_info::of(ring_id, topic, m.info()),
        };
        // SAFETY: a live handle (checked above); only the view field is
        // written.
        unsafe { (*h).view = Some(m) };
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out.write(v) };
        Ok(())
    })
}

/// Releases the message held by `ringbus_subscriber_recv_ref()`: its slot
/// may be reused by the publisher, and the view's `data` is no longer
/// valid.
///
/// Errors: `RINGBUS_ERR_BAD_STATE` (no message held).
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_release(subscriber: *mut ringbus_subscriber) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let h = unsafe { check(subscriber.cast::<SubscriberHandle>())? };
        // SAFETY: a live handle; only the view field is touched.
        match unsafe { (*h).view.take() } {
            Some(v) => {
                drop(v);
                Ok(())
            }
            None => Err(fail_static(
                RINGBUS_ERR_BAD_STATE,
                c"no zero-copy message is held: call ringbus_subscriber_recv_ref first",
            )),
        }
    })
}

/// Writes the topic's config to `*config` (e.g. `max_message_size`, to
/// size receive buffers), once a publisher has set it.
///
/// Errors: `RINGBUS_ERR_NOT_FOUND` (no publisher has set the config yet),
/// `RINGBUS_ERR_BAD_STATE` (a zero-copy message is held).
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle; `config` is NULL or points
/// to writable memory for a `ringbus_topic_config`.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_config(
    subscriber: *mut ringbus_subscriber,
    config: *mut ringbus_topic_config,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let s = unsafe { idle_reader(subscriber)?.subscription() };
        let out = out_arg(config, "config")?;
        let c = s.config().ok_or_else(|| {
            fail_static(
                RINGBUS_ERR_NOT_FOUND,
                c"the topic has no config yet: no publisher has created it",
            )
        })?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out.write(c.into()) };
        Ok(())
    })
}

/// Writes to `*missed` how many messages this subscriber lost to
/// overwriting (overwrite topics), over all rings.
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle; `missed` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_lagged_total(
    subscriber: *mut ringbus_subscriber,
    missed: *mut u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { write_count(subscriber, missed, "missed", |s| s.lagged_total()) }
}

/// Writes `count(subscription)` to `*out` (the argument `name`).
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle; `out` is NULL or writable.
unsafe fn write_count(
    subscriber: *mut ringbus_subscriber,
    out: *mut u64,
    name: &'static str,
    count: impl FnOnce(&Subscriber) -> u64,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let s = unsafe { idle_reader(subscriber)?.subscription() };
        let out = out_arg(out, name)?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out.write(count(s)) };
        Ok(())
    })
}

/// Writes to `*messages` how far behind its publishers this subscriber
/// is: messages published but not yet read, over the rings it holds (on
/// an overwrite topic it can exceed the capacity: those are overwritten).
/// Reads each ring's head, a line its publisher writes: call it now and
/// then, not once per message.
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle; `messages` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_backlog(
    subscriber: *mut ringbus_subscriber,
    messages: *mut u64,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { write_count(subscriber, messages, "messages", |s| s.backlog()) }
}

/// Copies the name of topic `topic` of this subscription (an id from
/// `ringbus_message_info.topic`: the topic itself, or one a pattern
/// matched) into `buf` (of `capacity` bytes) with a terminating NUL, and
/// writes its length without the NUL to `*len`. A buffer of
/// `RINGBUS_TOPIC_NAME_CAPACITY` bytes holds any name.
///
/// Errors: `RINGBUS_ERR_NOT_FOUND` (no topic with this id),
/// `RINGBUS_ERR_BUFFER_TOO_SMALL` (`*len` + 1 bytes are needed; nothing is
/// written to `buf`), `RINGBUS_ERR_BAD_STATE` (a zero-copy message is
/// held).
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle; `buf` is writable for
/// `capacity` bytes (may be NULL when `capacity` is 0); `len` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_topic_name(
    subscriber: *mut ringbus_subscriber,
    topic: u32,
    buf: *mut c_char,
    capacity: usize,
    len: *mut usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let (s, buf) = unsafe {
            (
                idle_reader(subscriber)?.subscription(),
                buffer(buf.cast(), capacity)?,
            )
        };
        let len = out_arg(len, "len")?;
        let name = s.topic_name(topic).ok_or_else(|| {
            fail(
                RINGBUS_ERR_NOT_FOUND,
                format_args!(
                    "this subscription has no topic {topic} (it has {})",
                    s.topics().count()
                ),
            )
        })?;
        let n = name.len();
        // SAFETY: non-NULL and writable per the contract.
        unsafe { len.write(n) };
        if n >= buf.len() {
            return Err(fail(
                RINGBUS_ERR_BUFFER_TOO_SMALL,
                format_args!(
                    "topic name needs {} bytes with its NUL, the buffer has {}",
                    n + 1,
                    buf.len()
                ),
            ));
        }
        buf[..n].copy_from_slice(name.as_bytes());
        buf[n] = 0;
        Ok(())
    })
}

/// Delivers only the messages whose tag satisfies `(tag & mask) == value`
/// (and the other filters), skipping the others before their payload is
/// copied. A skipped message counts as read (a back-pressure publisher
/// does not wait for it) and in `ringbus_subscriber_filtered_total()`.
/// `mask` 0 (with `value` 0) drops this condition. Replaces an earlier
/// tag mask.
///
/// Errors: `RINGBUS_ERR_INVALID_ARGUMENT` (`value` has bits outside
/// `mask`: no tag could match), `RINGBUS_ERR_BAD_STATE` (a zero-copy
/// message is held).
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_filter_tags(
    subscriber: *mut ringbus_subscriber,
    mask: u64,
    value: u64,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let s = unsafe { idle_subscriber(subscriber)? };
        s.filter_tags(mask, value).map_err(|e| filter_error(&e))
    })
}

/// Delivers only the messages whose tag is one of the `count` tags at
/// `tags` (at most `RINGBUS_MAX_FILTER_TAGS`; `count` 0 drops this
/// condition), skipping the others as `ringbus_subscriber_filter_tags()`
/// does; both conditions apply when both are set. The tags are copied.
/// Replaces an earlier tag set.
///
/// Errors: `RINGBUS_ERR_INVALID_ARGUMENT` (more than
/// `RINGBUS_MAX_FILTER_TAGS` tags), `RINGBUS_ERR_NULL_POINTER` (`tags`
/// NULL with `count` > 0), `RINGBUS_ERR_BAD_STATE` (a zero-copy message is
/// held).
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle; `tags` is NULL or readable
/// for `count` values.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_filter_tag_set(
    subscriber: *mut ringbus_subscriber,
    tags: *const u64,
    count: usize,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let s = unsafe { idle_subscriber(subscriber)? };
        // Checked before `tags` is read: a huge count is refused, not read.
        if count > RINGBUS_MAX_FILTER_TAGS {
            return Err(filter_error(&FilterError::TooManyTags(count)));
        }
        let tags: &[u64] = match count {
            0 => &[],
            _ if tags.is_null() => return Err(null("tags (with count > 0)")),
            // SAFETY: non-NULL and readable for `count` (at most 64)
            // values per the contract; copied by the call below.
            _ => unsafe { std::slice::from_raw_parts(tags, count) },
        };
        s.filter_tag_set(tags).map_err(|e| filter_error(&e))
    })
}

/// A filter predicate: returns nonzero to deliver the message, 0 to skip
/// it. `info` has the message's sequence, tag, timestamp and length
/// (`ring_id` and `topic` are 0); `data` points to its `len` payload bytes
/// (valid during the call only; in place on a back-pressure ring, a
/// checked copy on an overwrite ring). `user` is the pointer given to
/// `ringbus_subscriber_filter()`. It must not call functions on the
/// subscriber it filters for.
pub type ringbus_filter_fn = Option<
    unsafe extern "C" fn(
        info: *const ringbus_message_info,
        data: *const u8,
        len: usize,
        user: *mut c_void,
    ) -> c_int,
>;

/// The user pointer of a C predicate, moved into the Rust closure.
struct UserData(*mut c_void);

// SAFETY: the predicate runs on whichever thread receives on the
// subscriber; `ringbus_subscriber_filter`'s contract makes the caller
// promise that `user` may be used from that thread (the subscriber, and so
// the closure, may move between threads).
unsafe impl Send for UserData {}

/// Delivers only the messages `predicate` accepts (nonzero), called with
/// each message's info and payload before it is copied out, after the tag
/// filters (a message they turn down never reaches it). A skipped message
/// counts as read and in `ringbus_subscriber_filtered_total()`. Replaces
/// an earlier predicate; `ringbus_subscriber_clear_filters()` removes it.
///
/// Errors: `RINGBUS_ERR_NULL_POINTER` (`predicate` NULL: use
/// `ringbus_subscriber_clear_filters()` to remove a predicate),
/// `RINGBUS_ERR_BAD_STATE` (a zero-copy message is held).
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle; `predicate` is NULL or a
/// function that may be called with `user` during every receive on this
/// subscriber, from the thread that receives, until the predicate is
/// replaced or cleared or the subscriber is closed; it must not unwind.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_filter(
    subscriber: *mut ringbus_subscriber,
    predicate: ringbus_filter_fn,
    user: *mut c_void,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let s = unsafe { idle_subscriber(subscriber)? };
        let Some(predicate) = predicate else {
            return Err(fail_static(
                RINGBUS_ERR_NULL_POINTER,
                c"predicate must not be NULL: ringbus_subscriber_clear_filters() removes filters",
            ));
        };
        let user = UserData(user);
        s.filter(move |m, data| {
            // Names the whole wrapper: the closure then captures it (and
            // its Send), not its raw pointer field alone.
            let user = &user;
            let info = ringbus_message_info::of(0, 0, *m);
            // SAFETY: the caller promised `predicate` may be called with
            // `user` on this thread; `info` and `data` outlive the call.
            unsafe { predicate(&info, data.as_ptr(), data.len(), user.0) != 0 }
        });
        Ok(())
    })
}

/// Drops every filter (tag mask, tag set, predicate): all messages are
/// delivered again. Filtered counts are kept.
///
/// Errors: `RINGBUS_ERR_BAD_STATE` (a zero-copy message is held).
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_clear_filters(
    subscriber: *mut ringbus_subscriber,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let s = unsafe { idle_subscriber(subscriber)? };
        s.clear_filters();
        Ok(())
    })
}

/// Writes to `*filtered` how many messages this subscriber's filters
/// turned down, over all rings.
///
/// Errors: `RINGBUS_ERR_BAD_STATE` (a zero-copy message is held).
///
/// # Safety
/// `subscriber` is NULL or a subscriber handle; `filtered` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn ringbus_subscriber_filtered_total(
    subscriber: *mut ringbus_subscriber,
    filtered: *mut u64,
) -> c_int {
    guard(|| {
        // SAFETY: forwarded contract.
        let s = unsafe { idle_subscriber(subscriber)? };
        let out = out_arg(filtered, "filtered")?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out.write(s.filtered_total()) };
        Ok(())
    })
}
