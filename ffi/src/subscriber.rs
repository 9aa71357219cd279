//! `ringbus_subscriber`: a subscription to a topic (all of its rings),
//! with copying receives and a zero-copy receive for back-pressure topics.

use std::ffi::{c_char, c_int, c_void};
use std::time::Duration;

use ringbus::client::{Delivery, Subscriber};
use ringbus::ring::{MessageRef, RecvError};

use crate::client::{client_ref, ringbus_client};
use crate::handle::{self, check, out_arg, str_arg, Handle};
use crate::status::ringbus_status::{RINGBUS_ERR_BAD_STATE, RINGBUS_ERR_NOT_FOUND};
use crate::status::{client_error, fail_static, guard, null, recv_error, Failed};
use crate::types::{
    ringbus_message_info, ringbus_message_view, ringbus_subscribe_options, ringbus_topic_config,
};

/// A subscription to one topic (opaque): reads every publisher's ring,
/// including those of publishers that join later. Use it from one thread
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
    sub: Subscriber,
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
/// Errors: `RINGBUS_ERR_INVALID_ARGUMENT` (topic not UTF-8 or not a valid
/// name, bad option value), `RINGBUS_ERR_UNSUPPORTED` (a reserved option
/// set), `RINGBUS_ERR_PERMISSION_DENIED`, `RINGBUS_ERR_LIMIT` (every
/// back-pressure cursor taken), `RINGBUS_ERR_BROKER`, `RINGBUS_ERR_SYSTEM`.
///
/// # Safety
/// `client` is NULL or a client handle; `topic` is NULL or a
/// NUL-terminated string; `options` is NULL or points to a
/// `ringbus_subscribe_options`; `subscriber` is NULL or points to writable
/// memory for a pointer.
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
        // SAFETY: forwarded contract.
        let topic = unsafe { str_arg(topic, "topic")? };
        let out = out_arg(subscriber, "subscriber")?;
        let options = if options.is_null() {
            ringbus_subscribe_options::default()
        } else {
            // SAFETY: non-NULL, points to options per the contract.
            unsafe { options.read() }
        }
        .to_rust()?;
        let sub = c.subscriber(topic, options).map_err(|e| client_error(&e))?;
        let h = SubscriberHandle {
            magic: SubscriberHandle::MAGIC,
            view: None,
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

/// Writes a receive's outcome to `*info` and converts it to a status.
#[inline]
fn deliver(
    r: Result<Delivery, RecvError>,
    sub: &Subscriber,
    info: *mut ringbus_message_info,
) -> Result<(), Failed> {
    let i = match r {
        Ok(d) => ringbus_message_info::of(d.ring_id, d.info),
        Err(e) => {
            let mut i = ringbus_message_info {
                ring_id: sub.last_ring_id(),
                ..Default::default()
            };
            match e {
                RecvError::BufferTooSmall { needed } => i.len = needed,
                RecvError::Lagged { missed } => i.missed = missed,
                RecvError::Corrupt { seq, .. } => i.sequence = seq,
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
/// `RINGBUS_ERR_LAGGED` and `RINGBUS_ERR_CORRUPT`; other errors leave it
/// unchanged.
///
/// Errors: `RINGBUS_ERR_EMPTY` (nothing new), `RINGBUS_ERR_BUFFER_TOO_SMALL`
/// (`info->len` is the size needed; the message stays unread, so retry with
/// a bigger buffer), `RINGBUS_ERR_LAGGED` (`info->missed` messages lost;
/// reading goes on), `RINGBUS_ERR_END_OF_STREAM` (a publisher left and its
/// ring is drained; reading goes on with the others), `RINGBUS_ERR_CORRUPT`,
/// `RINGBUS_ERR_BAD_STATE` (a zero-copy message is held).
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
        let (s, buf) = unsafe { (idle_subscriber(subscriber)?, buffer(buf, capacity)?) };
        let info = out_arg(info, "info")?;
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
        let (s, buf) = unsafe { (idle_subscriber(subscriber)?, buffer(buf, capacity)?) };
        let info = out_arg(info, "info")?;
        let r = match timeout_ns {
            t if t < 0 => s.recv(buf),
            0 => s.try_recv(buf),
            t => s.recv_timeout(buf, Duration::from_nanos(t as u64)),
        };
        deliver(r, s, info)
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
                    let info = ringbus_message_info {
                        ring_id: s.last_ring_id(),
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
        let v = ringbus_message_view {
            data: m.as_ptr().cast(),
            info: ringbus_message_info::of(ring_id, m.info()),
        };
        let h = subscriber.cast::<SubscriberHandle>();
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
        let s = unsafe { idle_subscriber(subscriber)? };
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
    guard(|| {
        // SAFETY: forwarded contract.
        let s = unsafe { idle_subscriber(subscriber)? };
        let out = out_arg(missed, "missed")?;
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out.write(s.lagged_total()) };
        Ok(())
    })
}
