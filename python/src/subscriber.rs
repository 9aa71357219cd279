//! `Subscriber` and `Message`.
//!
//! On overwrite topics a message is copied out of the ring (the publisher
//! may rewrite a slot while it is read, so only a checked copy is safe).
//! On back-pressure topics it is read in place: the `Message` holds its
//! slot (the publisher cannot reuse it) until it is released: by
//! `msg.release()`, the end of a `with msg:` block, the message being
//! garbage collected, or the subscriber's next receive. Meanwhile
//! `msg.view()` is a read-only `memoryview` of the slot, and `msg.data`
//! copies it once into `bytes`. A message released by the next receive
//! while still referenced, its data not read yet, gets a copy first, so
//! `msg.data` keeps working for code that collects messages; one released
//! explicitly has given its payload back (`msg.data` then works only if it
//! was read before).

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError, Weak};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyMemoryView, PyString};

use ringbus::client::{Delivery, Mode, Subscriber as RustSubscriber};
use ringbus::ring::{MessageInfo, MessageRef, RecvError, RingRegion};

use crate::buffer::RingMemory;
use crate::errors::{is_end_of_stream, recv_error, Kind};
use crate::filter::{filter_error, judging, tag_list, RaisedSlot};
use crate::publisher::config_dict;
use crate::wait::{lock, Deadline, RingPtr};

/// The Rust subscriber, boxed and owned through a raw pointer: a held
/// message borrows it (`MessageRef<'static>`), so no `&mut` to it may be
/// made while one is held, which a `Box` field would do on every move.
struct OwnedSub(NonNull<RustSubscriber>);

// SAFETY: it owns a `RustSubscriber`, which is Send.
unsafe impl Send for OwnedSub {}

impl OwnedSub {
    fn new(s: RustSubscriber) -> OwnedSub {
        OwnedSub(NonNull::from(Box::leak(Box::new(s))))
    }
}

impl Drop for OwnedSub {
    fn drop(&mut self) {
        // SAFETY: from Box::leak in `new`, freed once, here. `SubState`
        // drops any held message (the only borrow) before this.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// A message read in place, as the subscriber holds it.
struct HeldRef(MessageRef<'static>);

// SAFETY: a MessageRef is a `&mut Consumer` (Consumer is Send) and a
// pointer into the consumer's mapping, valid from any thread; it is used
// only under the subscriber's lock.
unsafe impl Send for HeldRef {}

struct Held {
    msg: HeldRef,
    hold: Arc<Hold>,
}

/// What the subscriber and a held message share.
struct Hold {
    /// The payload in the ring (valid while not `released`).
    ptr: RingPtr,
    len: usize,
    region: Arc<RingRegion>,
    inner: Mutex<HoldState>,
}

#[derive(Default)]
struct HoldState {
    released: bool,
    data: Option<Py<PyBytes>>,
    view: Option<(Py<RingMemory>, Py<PyMemoryView>)>,
}

struct SubState {
    /// The message held in place, if any. Declared before `sub`, which it
    /// borrows, so that it is dropped first.
    held: Option<Held>,
    sub: Option<OwnedSub>,
    /// Where copying receives land.
    buf: Vec<u8>,
    names: TopicNames,
}

/// The topic names of a subscription as Python strings, made once per
/// topic id (`Delivery::topic`); for a pattern read in place, which gives
/// no topic id, the topic of each ring.
#[derive(Default)]
struct TopicNames {
    names: Vec<Option<Py<PyString>>>,
    /// A ring's topic id, with the ring's region: ring ids are the
    /// broker's, and a restarted broker may hand one out again; the weak
    /// reference keeps the old region's address from being reused.
    rings: HashMap<u64, (Weak<RingRegion>, u32)>,
}

impl TopicNames {
    /// The name of topic `id` of `sub`.
    fn name(&mut self, py: Python<'_>, sub: &RustSubscriber, id: u32) -> Option<Py<PyString>> {
        let i = id as usize;
        if let Some(Some(n)) = self.names.get(i) {
            return Some(n.clone_ref(py));
        }
        let n = PyString::new(py, sub.topic_name(id)?).unbind();
        if self.names.len() <= i {
            self.names.resize_with(i + 1, || None);
        }
        self.names[i] = Some(n.clone_ref(py));
        Some(n)
    }

    /// The topic id of ring `ring_id` (mapped at `region`), if known.
    fn ring_topic(&self, ring_id: u64, region: &Arc<RingRegion>) -> Option<u32> {
        match self.rings.get(&ring_id) {
            Some((r, id)) if std::ptr::eq(r.as_ptr(), Arc::as_ptr(region)) => Some(*id),
            _ => None,
        }
    }

    /// Looks up ring `ring_id`'s topic among `sub`'s rings and keeps it.
    fn learn_ring(
        &mut self,
        sub: &RustSubscriber,
        ring_id: u64,
        region: Weak<RingRegion>,
    ) -> Option<u32> {
        self.rings.retain(|_, (r, _)| r.strong_count() > 0);
        let id = sub.rings().iter().find(|r| r.ring_id == ring_id)?.topic;
        self.rings.insert(ring_id, (region, id));
        Some(id)
    }
}

impl SubState {
    /// The subscriber, when open and holding no message.
    fn sub(&mut self) -> PyResult<&mut RustSubscriber> {
        self.parts().map(|(s, _, _)| s)
    }

    /// The subscriber, the receive buffer and the topic names.
    fn parts(&mut self) -> PyResult<(&mut RustSubscriber, &mut Vec<u8>, &mut TopicNames)> {
        if self.held.is_some() {
            return Err(Kind::BadState.err("a message is held (internal error: please report it)"));
        }
        match &self.sub {
            // SAFETY: no held message borrows the subscriber (checked
            // above), and the state is locked: this is the only reference.
            Some(s) => Ok((
                unsafe { &mut *s.0.as_ptr() },
                &mut self.buf,
                &mut self.names,
            )),
            None => Err(Kind::Closed.err("the subscriber is closed")),
        }
    }

    /// Releases the held message's slot. With `keep_data`, a message still
    /// referenced from Python whose data was not read gets a copy first.
    fn release_held(&mut self, py: Python<'_>, keep_data: bool) {
        let Some(Held { msg, hold }) = self.held.take() else {
            return;
        };
        {
            let mut h = lock(py, &hold.inner);
            h.released = true;
            // One count here, one in the Message if it is still alive.
            if keep_data && h.data.is_none() && Arc::strong_count(&hold) > 1 {
                h.data = Some(PyBytes::new(py, &msg.0).unbind());
            }
            if let Some((exporter, view)) = h.view.take() {
                exporter.get().revoke(view.bind(py));
            }
        }
        drop(msg);
    }
}

/// A subscription to one topic, or to every topic a pattern matches:
/// reads every publisher's ring, including those of publishers (and, for a
/// pattern, topics) that appear later.
#[pyclass(frozen, module = "ringbus", name = "Subscriber")]
pub(crate) struct Subscriber {
    state: Mutex<SubState>,
    /// Set by `close()` so that a receive waiting in another thread gives
    /// up at its next slice.
    closing: AtomicBool,
    /// The topic or pattern subscribed to.
    topic: Py<PyString>,
    pattern: bool,
    /// The exception a filter's predicate raised, for its receive to
    /// raise (see `filter.rs`).
    raised: RaisedSlot,
}

impl Subscriber {
    pub(crate) fn new(py: Python<'_>, sub: RustSubscriber) -> Subscriber {
        let topic = PyString::new(py, sub.topic()).unbind();
        Subscriber {
            pattern: ringbus::control::is_pattern(sub.topic()),
            state: Mutex::new(SubState {
                held: None,
                sub: Some(OwnedSub::new(sub)),
                buf: Vec::new(),
                names: TopicNames::default(),
            }),
            closing: AtomicBool::new(false),
            topic,
            raised: RaisedSlot::default(),
        }
    }

    /// A failed receive as the exception to raise: the one a predicate
    /// raised, if that is why.
    fn recv_failed(&self, e: RecvError, ring_id: u64) -> PyErr {
        if let RecvError::FilterPanicked { .. } = e {
            if let Some(err) = self.raised.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return err;
            }
        }
        recv_error(e, ring_id)
    }

    /// Locks the state. A filter's predicate runs while its receive holds
    /// the lock: if it uses the subscriber, waiting would never end.
    fn state(&self, py: Python<'_>) -> PyResult<MutexGuard<'_, SubState>> {
        self.check_not_judging()?;
        Ok(lock(py, &self.state))
    }

    fn check_not_judging(&self) -> PyResult<()> {
        if judging() && matches!(self.state.try_lock(), Err(TryLockError::WouldBlock)) {
            return Err(Kind::BadState.err(
                "a filter's predicate cannot use the subscriber it filters \
                 (its receive is under way)",
            ));
        }
        Ok(())
    }

    /// Runs `f` on the open subscriber (no message held).
    fn with_sub<T>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut RustSubscriber) -> PyResult<T>,
    ) -> PyResult<T> {
        let mut st = self.state(py)?;
        st.release_held(py, true);
        f(st.sub()?)
    }

    fn check_open(&self) -> PyResult<()> {
        // Relaxed: a hint for waiters; the state itself is under the lock.
        if self.closing.load(Ordering::Relaxed) {
            return Err(Kind::Closed.err("the subscriber is closed"));
        }
        Ok(())
    }

    /// The receive behind `recv`, `try_recv` and iteration: `None` when
    /// `deadline` is `None` and nothing is there.
    fn receive(slf: &Bound<'_, Self>, deadline: Option<Deadline>) -> PyResult<Option<Message>> {
        let py = slf.py();
        let me = slf.get();
        let mut guard = me.state(py)?;
        let st = &mut *guard;
        me.check_open()?;
        st.release_held(py, true);
        let (sub, buf, names) = st.parts()?;
        // Until a publisher has set the topic's config, try in place: an
        // overwrite ring refuses (ZeroCopyUnsupported) without consuming.
        let mut in_place = sub.config().is_none_or(|c| c.mode == Mode::Backpressure);
        loop {
            // First look with the interpreter held: a message that is
            // there costs no release and re-acquire of it.
            let got = if in_place {
                take_ref(sub.try_recv_ref())
            } else {
                take_copy(sub, buf, |s, b| s.try_recv(b))
            };
            let got = match got {
                Err(RecvError::Empty) => {
                    let Some(deadline) = deadline else {
                        return Ok(None);
                    };
                    let Some(slice) = deadline.slice() else {
                        return Err(recv_error(RecvError::Timeout, 0));
                    };
                    let r = py.detach(|| {
                        if in_place {
                            take_ref(sub.recv_ref_timeout(slice))
                        } else {
                            take_copy(sub, buf, |s, b| s.recv_timeout(b, slice))
                        }
                    });
                    match r {
                        Err(RecvError::Timeout) => {
                            py.check_signals()?;
                            me.check_open()?;
                            continue;
                        }
                        r => r,
                    }
                }
                r => r,
            };
            if in_place && got.as_ref().err() == Some(&RecvError::ZeroCopyUnsupported) {
                in_place = false;
                continue;
            }
            return match got {
                Ok(Got::Copied(d)) => {
                    let data = PyBytes::new(py, &buf[..d.info.len]).unbind();
                    let topic = match me.pattern {
                        true => names.name(py, sub, d.topic),
                        false => None,
                    };
                    let topic = topic.unwrap_or_else(|| me.topic.clone_ref(py));
                    Ok(Some(Message::new(
                        d.ring_id,
                        d.info,
                        topic,
                        Payload::Copied(data),
                    )))
                }
                Ok(Got::InPlace(ring_id, msg)) => {
                    let info = msg.0.info();
                    let topic_id = match me.pattern {
                        true => names.ring_topic(ring_id, msg.0.region()),
                        false => Some(0),
                    };
                    let Some(topic_id) = topic_id else {
                        // A pattern's ring not seen yet: its topic is
                        // found among the subscriber's rings, which the
                        // held message borrows, so this one is copied and
                        // let go first.
                        let data = PyBytes::new(py, &msg.0).unbind();
                        let region = Arc::downgrade(msg.0.region());
                        drop(msg);
                        let topic = names
                            .learn_ring(sub, ring_id, region)
                            .and_then(|id| names.name(py, sub, id))
                            .unwrap_or_else(|| me.topic.clone_ref(py));
                        return Ok(Some(Message::new(
                            ring_id,
                            info,
                            topic,
                            Payload::Copied(data),
                        )));
                    };
                    let topic = match me.pattern {
                        true => names.names.get(topic_id as usize).and_then(|n| n.as_ref()),
                        false => None,
                    };
                    let topic = topic.unwrap_or(&me.topic).clone_ref(py);
                    let hold = Arc::new(Hold {
                        ptr: RingPtr(msg.0.as_ptr().cast_mut()),
                        len: info.len,
                        region: Arc::clone(msg.0.region()),
                        inner: Mutex::new(HoldState::default()),
                    });
                    st.held = Some(Held {
                        msg,
                        hold: Arc::clone(&hold),
                    });
                    let payload = Payload::InPlace {
                        hold,
                        subscriber: slf.clone().unbind(),
                    };
                    Ok(Some(Message::new(ring_id, info, topic, payload)))
                }
                Err(e) => Err(me.recv_failed(e, sub.last_ring_id())),
            };
        }
    }

    /// Releases `hold`'s slot if it is still the one held.
    fn release(&self, py: Python<'_>, hold: &Arc<Hold>) -> PyResult<()> {
        let mut st = self.state(py)?;
        if st.held.as_ref().is_some_and(|h| Arc::ptr_eq(&h.hold, hold)) {
            st.release_held(py, false);
        }
        Ok(())
    }
}

/// A receive's outcome before it becomes a `Message`.
enum Got {
    Copied(Delivery),
    InPlace(u64, HeldRef),
}

fn take_ref(r: Result<(u64, MessageRef<'_>), RecvError>) -> Result<Got, RecvError> {
    r.map(|(ring_id, m)| {
        // SAFETY: the view borrows the subscriber owned by `SubState` (a
        // stable heap address); `SubState` keeps it in `held`, touches the
        // subscriber only when nothing is held, and drops it first.
        let m = unsafe { std::mem::transmute::<MessageRef<'_>, MessageRef<'static>>(m) };
        Got::InPlace(ring_id, HeldRef(m))
    })
}

/// A copying receive into `buf`, grown to the message's size when it is
/// too small (the message stays unread until then).
fn take_copy(
    sub: &mut RustSubscriber,
    buf: &mut Vec<u8>,
    mut recv: impl FnMut(&mut RustSubscriber, &mut [u8]) -> Result<Delivery, RecvError>,
) -> Result<Got, RecvError> {
    loop {
        match recv(sub, buf) {
            Err(RecvError::BufferTooSmall { needed }) => {
                let max = sub.config().map_or(0, |c| c.max_message_size as usize);
                buf.resize(needed.max(max), 0);
            }
            r => return r.map(Got::Copied),
        }
    }
}

#[pymethods]
impl Subscriber {
    /// Waits for the next message, at most `timeout` seconds (None: no
    /// limit); raises `Timeout`, `Lagged` (messages were lost; reading goes
    /// on), `EndOfStream` (a publisher left and its ring is drained; the
    /// subscription goes on with the others).
    #[pyo3(signature = (timeout=None))]
    fn recv(slf: &Bound<'_, Self>, timeout: Option<f64>) -> PyResult<Message> {
        let deadline = Deadline::after(timeout)?;
        match Subscriber::receive(slf, Some(deadline))? {
            Some(m) => Ok(m),
            None => Err(recv_error(RecvError::Timeout, 0)),
        }
    }

    /// The next message if one is there, else None; raises as `recv`.
    fn try_recv(slf: &Bound<'_, Self>) -> PyResult<Option<Message>> {
        Subscriber::receive(slf, None)
    }

    /// Up to `max` messages that are ready now, in order, as a list
    /// (empty when none is): one call, copies of each. Raises as
    /// `try_recv` when the first one fails; what ends a batch early (a
    /// loss, a ring's end) is the next receive's answer, so nothing goes
    /// unreported.
    #[pyo3(signature = (max=64))]
    fn try_recv_batch(slf: &Bound<'_, Self>, max: usize) -> PyResult<Vec<Message>> {
        let py = slf.py();
        let me = slf.get();
        let mut guard = me.state(py)?;
        let st = &mut *guard;
        me.check_open()?;
        st.release_held(py, true);
        let (sub, buf, names) = st.parts()?;
        let mut got = Vec::new();
        loop {
            let r = sub.try_recv_batch(buf, max, |bytes, d| {
                got.push((*d, PyBytes::new(py, bytes).unbind()));
            });
            match r {
                Ok(_) | Err(RecvError::Empty) => break,
                // The first message is larger than the buffer: it stays
                // unread until the buffer grows.
                Err(RecvError::BufferTooSmall { needed }) => {
                    let max_size = sub.config().map_or(0, |c| c.max_message_size as usize);
                    buf.resize(needed.max(max_size), 0);
                }
                Err(e) => return Err(me.recv_failed(e, sub.last_ring_id())),
            }
        }
        Ok(got
            .into_iter()
            .map(|(d, data)| {
                let topic = match me.pattern {
                    true => names.name(py, sub, d.topic),
                    false => None,
                };
                let topic = topic.unwrap_or_else(|| me.topic.clone_ref(py));
                Message::new(d.ring_id, d.info, topic, Payload::Copied(data))
            })
            .collect())
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Iteration waits for each message without limit. The end of one
    /// publisher's ring is not the end of the subscription: it is skipped.
    /// Lost messages raise `Lagged` once; iterating again goes on.
    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Message> {
        loop {
            match Subscriber::recv(slf, None) {
                Err(e) if is_end_of_stream(slf.py(), &e) => continue,
                r => return r,
            }
        }
    }

    /// Ends the subscription (releasing a held message); a receive waiting
    /// in another thread raises `Closed` within a fraction of a second.
    /// Closing twice is harmless.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.check_not_judging()?;
        // Relaxed: see check_open.
        self.closing.store(true, Ordering::Relaxed);
        let mut st = lock(py, &self.state);
        st.release_held(py, true);
        if let Some(sub) = st.sub.take() {
            // Dropping tells the broker (a round trip).
            py.detach(move || drop(sub));
        }
        Ok(())
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    /// The topic.
    #[getter]
    fn topic(&self, py: Python<'_>) -> Py<PyString> {
        self.topic.clone_ref(py)
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// The topic's config as a dict, once a publisher has set it (else None).
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let config = self.with_sub(py, |s| Ok(s.config()))?;
        config.map(|c| config_dict(py, &c)).transpose()
    }

    /// Messages lost so far (overwritten before they were read), over all
    /// rings.
    #[getter]
    fn lagged_total(&self, py: Python<'_>) -> PyResult<u64> {
        self.with_sub(py, |s| Ok(s.lagged_total()))
    }

    /// How far behind its publishers this subscriber is: messages
    /// published but not yet read, over its rings (on an overwrite topic
    /// it can exceed the capacity: those are overwritten).
    #[getter]
    fn backlog(&self, py: Python<'_>) -> PyResult<u64> {
        self.with_sub(py, |s| Ok(s.backlog()))
    }

    /// The topics read so far: the topic itself, or those the pattern
    /// matched (a pattern follows topics created later).
    #[getter]
    fn topics(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with_sub(py, |s| Ok(s.topics().map(str::to_owned).collect()))
    }

    /// Delivers only the messages whose `tag & mask == value` (and that
    /// the other filters keep); the others are skipped before their
    /// payload is copied, count as read, and in `filtered_total`. `mask`
    /// 0 drops this condition. Raises `InvalidArgument` when `value` has
    /// bits outside `mask`.
    fn filter_tags(&self, py: Python<'_>, mask: u64, value: u64) -> PyResult<()> {
        self.with_sub(py, |s| s.filter_tags(mask, value).map_err(filter_error))
    }

    /// Delivers only the messages whose tag is in `tags` (an iterable of at
    /// most 64 ints; empty drops this condition), as `filter_tags` does.
    fn filter_tag_set(&self, py: Python<'_>, tags: &Bound<'_, PyAny>) -> PyResult<()> {
        let tags = tag_list(tags)?;
        self.with_sub(py, |s| s.filter_tag_set(&tags).map_err(filter_error))
    }

    /// Delivers only the messages `predicate(info, data)` finds true: it is
    /// called, after the tag filters, with a `MessageInfo` and the payload
    /// as bytes, before the message is copied out (it replaces an earlier
    /// predicate). An exception it raises costs that message (counted in
    /// `filtered_total`) and is raised by the receive that called it; the
    /// subscription goes on. It must not use this subscriber.
    fn filter(&self, py: Python<'_>, predicate: Bound<'_, PyAny>) -> PyResult<()> {
        if !predicate.is_callable() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "filter() takes a callable: predicate(info, data) -> bool",
            ));
        }
        let p = crate::filter::predicate(predicate.unbind(), Arc::clone(&self.raised));
        self.with_sub(py, |s| {
            s.filter(p);
            Ok(())
        })
    }

    /// Drops every filter (tags, tag set, predicate): all messages are
    /// delivered again.
    fn clear_filters(&self, py: Python<'_>) -> PyResult<()> {
        self.with_sub(py, |s| {
            s.clear_filters();
            Ok(())
        })
    }

    /// Messages the filters turned down so far, over all rings.
    #[getter]
    fn filtered_total(&self, py: Python<'_>) -> PyResult<u64> {
        self.with_sub(py, |s| Ok(s.filtered_total()))
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<ringbus.Subscriber topic={:?}{}>",
            self.topic.bind(py).to_string(),
            if self.closed() { " closed" } else { "" }
        )
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        let st = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if st.held.is_some() {
            Python::attach(|py| st.release_held(py, true));
        }
    }
}

/// Where a message's payload is.
enum Payload {
    Copied(Py<PyBytes>),
    InPlace {
        hold: Arc<Hold>,
        subscriber: Py<Subscriber>,
    },
}

/// A received message: `data` (bytes), `view()`, and where it came from.
#[pyclass(frozen, module = "ringbus", name = "Message")]
pub(crate) struct Message {
    ring_id: u64,
    info: MessageInfo,
    topic: Py<PyString>,
    payload: Payload,
}

impl Message {
    fn new(ring_id: u64, info: MessageInfo, topic: Py<PyString>, payload: Payload) -> Message {
        Message {
            ring_id,
            info,
            topic,
            payload,
        }
    }
}

#[pymethods]
impl Message {
    /// The payload as bytes (a copy, made once, for messages read in place).
    #[getter]
    fn data(&self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        let hold = match &self.payload {
            Payload::Copied(b) => return Ok(b.clone_ref(py)),
            Payload::InPlace { hold, .. } => hold,
        };
        let mut h = lock(py, &hold.inner);
        if let Some(d) = &h.data {
            return Ok(d.clone_ref(py));
        }
        if h.released {
            return Err(Kind::Closed
                .err("the message was released before its data was read: read msg.data first"));
        }
        // SAFETY: not released: the subscriber still holds the slot (it
        // sets `released` under this lock before letting it go), so the
        // publisher does not write these bytes; the region keeps them mapped.
        let bytes = unsafe { std::slice::from_raw_parts(hold.ptr.0, hold.len) };
        let d = PyBytes::new(py, bytes).unbind();
        h.data = Some(d.clone_ref(py));
        Ok(d)
    }

    /// A read-only memoryview of the payload. For a message read in place
    /// (back-pressure topics) it is the ring's memory, without a copy,
    /// valid until the message is released; using it afterwards raises
    /// ValueError. Copy what you keep: buffers made from it (slices, numpy
    /// arrays) cannot be revoked and then show whatever the publisher
    /// writes there next.
    fn view<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyMemoryView>> {
        let hold = match &self.payload {
            Payload::Copied(b) => return PyMemoryView::from(b.bind(py).as_any()),
            Payload::InPlace { hold, .. } => hold,
        };
        let mut h = lock(py, &hold.inner);
        if h.released {
            return Err(Kind::Closed.err(
                "the message was released: its view is gone (use msg.data, read before release)",
            ));
        }
        if let Some((_, v)) = &h.view {
            return Ok(v.bind(py).clone());
        }
        // SAFETY: the payload's bytes lie in `hold.region`'s mapping; the
        // view is read-only.
        let (exporter, view) =
            unsafe { RingMemory::view(py, Arc::clone(&hold.region), hold.ptr.0, hold.len, false)? };
        h.view = Some((exporter.unbind(), view.clone().unbind()));
        Ok(view)
    }

    /// Gives the message's slot back to the publisher (back-pressure
    /// topics); its view is released. Harmless on a copied message or
    /// twice.
    fn release(&self, py: Python<'_>) -> PyResult<()> {
        match &self.payload {
            Payload::InPlace { hold, subscriber } => subscriber.get().release(py, hold),
            Payload::Copied(_) => Ok(()),
        }
    }

    /// Whether the payload is still in the ring (held, not released).
    #[getter]
    fn in_place(&self, py: Python<'_>) -> bool {
        match &self.payload {
            Payload::Copied(_) => false,
            Payload::InPlace { hold, .. } => !lock(py, &hold.inner).released,
        }
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<bool> {
        self.release(py)?;
        Ok(false)
    }

    /// The sequence number in its ring (0, 1, 2, ... per publisher).
    #[getter]
    fn seq(&self) -> u64 {
        self.info.seq
    }

    /// The publisher's tag.
    #[getter]
    fn tag(&self) -> u64 {
        self.info.tag
    }

    /// CLOCK_MONOTONIC nanoseconds at publish (compare with
    /// `ringbus.now_ns()`), or 0 when the publisher does not stamp.
    #[getter]
    fn timestamp(&self) -> u64 {
        self.info.timestamp
    }

    /// The ring (one per publisher) the message came from.
    #[getter]
    fn ring_id(&self) -> u64 {
        self.ring_id
    }

    /// The topic.
    #[getter]
    fn topic(&self, py: Python<'_>) -> Py<PyString> {
        self.topic.clone_ref(py)
    }

    fn __len__(&self) -> usize {
        self.info.len
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        format!(
            "<ringbus.Message topic={:?} ring_id={} seq={} tag={} len={}>",
            self.topic.bind(py).to_string(),
            self.ring_id,
            self.info.seq,
            self.info.tag,
            self.info.len
        )
    }
}

impl Drop for Message {
    fn drop(&mut self) {
        let Payload::InPlace { hold, subscriber } = &self.payload else {
            return;
        };
        // Give the slot back now rather than at the next receive. Only if
        // the subscriber's lock is free: a drop can run inside any call
        // (garbage collection), including one holding that lock.
        Python::attach(|py| {
            let sub = subscriber.get();
            if let Ok(mut st) = sub.state.try_lock() {
                if st.held.as_ref().is_some_and(|h| Arc::ptr_eq(&h.hold, hold)) {
                    st.release_held(py, false);
                }
            }
        });
    }
}
