//! `Publisher`, `Loan` and `LoanMany`.

use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyMemoryView, PyRange, PyTuple};

use ringbus::client::{Publisher as RustPublisher, TopicConfig};
use ringbus::ring::{Loan as RustLoan, LoanMany as RustLoanMany, PublishError, RingRegion};

use crate::buffer::{Payload, RingMemory};
use crate::errors::{publish_error, Kind};
use crate::wait::{lock, Deadline};

/// The Rust publisher, boxed and owned through a raw pointer: a loan
/// borrows it (`Loan<'static>`), so no `&mut` to it may be made while one
/// is out, which a `Box` field would do on every move.
struct OwnedPub(NonNull<RustPublisher>);

// SAFETY: it owns a `RustPublisher`, which is Send.
unsafe impl Send for OwnedPub {}

impl OwnedPub {
    fn new(p: RustPublisher) -> OwnedPub {
        OwnedPub(NonNull::from(Box::leak(Box::new(p))))
    }
}

impl Drop for OwnedPub {
    fn drop(&mut self) {
        // SAFETY: from Box::leak in `new`, freed once, here. `PubState`
        // drops any loan (the only borrow) before this.
        drop(unsafe { Box::from_raw(self.0.as_ptr()) });
    }
}

/// A loan as the publisher keeps it.
struct HeldLoan {
    loan: SendLoan,
    /// The `Loan` or `LoanMany` object it belongs to.
    id: u64,
    /// Each lent slot's exporter and the memoryview handed out of it.
    views: Vec<(Py<RingMemory>, Py<PyMemoryView>)>,
}

/// One slot lent, or several.
enum Lent {
    One(RustLoan<'static>),
    Many(RustLoanMany<'static>),
}

struct SendLoan(Lent);

impl SendLoan {
    fn one(loan: RustLoan<'_>) -> SendLoan {
        // SAFETY: the loan borrows the publisher owned by `PubState` (a
        // stable heap address); `PubState` keeps it in `loan`, touches the
        // publisher only when no loan is out, and drops it first.
        SendLoan(Lent::One(unsafe {
            std::mem::transmute::<RustLoan<'_>, RustLoan<'static>>(loan)
        }))
    }

    fn many(loan: RustLoanMany<'_>) -> SendLoan {
        // SAFETY: as for `one`.
        SendLoan(Lent::Many(unsafe {
            std::mem::transmute::<RustLoanMany<'_>, RustLoanMany<'static>>(loan)
        }))
    }

    fn region(&self) -> &Arc<RingRegion> {
        match &self.0 {
            Lent::One(l) => l.region(),
            Lent::Many(l) => l.region(),
        }
    }

    /// Each lent slot's area: where it starts and its length.
    fn areas(&mut self) -> Vec<(*mut u8, usize)> {
        match &mut self.0 {
            Lent::One(l) => vec![(l.as_mut_ptr(), l.len())],
            Lent::Many(l) => l.iter_mut().map(|a| (a.as_mut_ptr(), a.len())).collect(),
        }
    }

    /// Publishes every slot lent, in order, with `tag`: their sequence
    /// numbers.
    fn commit(self, tag: u64) -> Range<u64> {
        match self.0 {
            Lent::One(l) => {
                let seq = l.commit(tag);
                seq..seq + 1
            }
            Lent::Many(l) => l.commit(tag),
        }
    }
}

// SAFETY: a Loan or LoanMany is a `&mut Producer` (Producer is Send) and
// pointers into the producer's mapping, valid from any thread; it is used
// only under the publisher's lock.
unsafe impl Send for SendLoan {}

struct PubState {
    /// The outstanding loan, if any. Declared before `publisher`, which it
    /// borrows, so that it is dropped first.
    loan: Option<HeldLoan>,
    publisher: Option<OwnedPub>,
    /// A copy of a mutable payload that must wait for room with the
    /// interpreter released (another thread could write the original).
    scratch: Vec<u8>,
}

impl PubState {
    /// The publisher, when open and lending nothing.
    fn publisher(&mut self) -> PyResult<&mut RustPublisher> {
        self.parts().map(|(p, _)| p)
    }

    fn parts(&mut self) -> PyResult<(&mut RustPublisher, &mut Vec<u8>)> {
        if self.loan.is_some() {
            return Err(Kind::BadState
                .err("a loan is outstanding: finish its `with` block before using the publisher"));
        }
        match &self.publisher {
            // SAFETY: no loan borrows the publisher (checked above), and the
            // state is locked: this is the only reference.
            Some(p) => Ok((unsafe { &mut *p.0.as_ptr() }, &mut self.scratch)),
            None => Err(Kind::Closed.err("the publisher is closed")),
        }
    }

    /// Ends the loan: commits it (`Some(tag)`: the sequence numbers
    /// published) or drops it; its memoryviews are released either way.
    fn end_loan(&mut self, py: Python<'_>, commit: Option<u64>) -> Option<Range<u64>> {
        let held = self.loan.take()?;
        for (exporter, view) in &held.views {
            exporter.get().revoke(view.bind(py));
        }
        commit.map(|tag| held.loan.commit(tag))
    }
}

/// A publisher of one topic, writing its own ring.
#[pyclass(frozen, module = "ringbus", name = "Publisher")]
pub(crate) struct Publisher {
    state: Mutex<PubState>,
    closing: AtomicBool,
    topic: String,
    ring_id: u64,
    config: TopicConfig,
}

impl Publisher {
    pub(crate) fn new(p: RustPublisher, timestamps: bool) -> Publisher {
        let mut p = p;
        p.set_timestamps(timestamps);
        Publisher {
            topic: p.topic().to_owned(),
            ring_id: p.ring_id(),
            config: p.config(),
            state: Mutex::new(PubState {
                loan: None,
                publisher: Some(OwnedPub::new(p)),
                scratch: Vec::new(),
            }),
            closing: AtomicBool::new(false),
        }
    }

    fn check_open(&self) -> PyResult<()> {
        // Relaxed: a hint for waiters; the state itself is under the lock.
        if self.closing.load(Ordering::Relaxed) {
            return Err(Kind::Closed.err("the publisher is closed"));
        }
        Ok(())
    }

    /// Takes a loan by `take` (which waits for room at most the slice of
    /// time it is given; called in slices until `timeout`, with the
    /// interpreter released) and hands out a writable memoryview of each
    /// lent slot; the loan is kept as `id`'s.
    fn lend<'py>(
        &self,
        py: Python<'py>,
        id: u64,
        timeout: Option<f64>,
        take: impl Fn(&mut RustPublisher, Duration) -> Result<SendLoan, PublishError> + Sync,
    ) -> PyResult<Vec<Bound<'py, PyMemoryView>>> {
        let deadline = Deadline::after(timeout)?;
        let mut st = lock(py, &self.state);
        self.check_open()?;
        let p = st.publisher()?;
        let mut loan = loop {
            let Some(slice) = deadline.slice() else {
                return Err(publish_error(PublishError::Timeout));
            };
            let (p, take) = (&mut *p, &take);
            match py.detach(move || take(p, slice)) {
                Err(PublishError::Timeout) => {
                    py.check_signals()?;
                    self.check_open()?;
                }
                r => break r.map_err(publish_error)?,
            }
        };
        let mut views: Vec<(Py<RingMemory>, Py<PyMemoryView>)> = Vec::new();
        let mut out = Vec::new();
        for (ptr, len) in loan.areas() {
            let region = Arc::clone(loan.region());
            // SAFETY: the slot's `len` bytes at `ptr` are in the
            // publisher's writable mapping, kept alive by `region`.
            match unsafe { RingMemory::view(py, region, ptr, len, true) } {
                Ok((exporter, view)) => {
                    views.push((exporter.unbind(), view.clone().unbind()));
                    out.push(view);
                }
                Err(e) => {
                    // Nothing is published: the views made so far are
                    // released and the loan dropped.
                    for (exporter, view) in &views {
                        exporter.get().revoke(view.bind(py));
                    }
                    return Err(e);
                }
            }
        }
        st.loan = Some(HeldLoan { loan, id, views });
        Ok(out)
    }

    /// Ends loan `id` as its `with` block ended: published with `tag`
    /// (the sequence numbers) when `exc_type` is None, dropped otherwise.
    fn finish_loan(
        &self,
        py: Python<'_>,
        id: u64,
        exc_type: Option<&Bound<'_, PyAny>>,
        tag: u64,
    ) -> PyResult<Option<Range<u64>>> {
        let ended_normally = exc_type.is_none_or(|t| t.is_none());
        let mut st = lock(py, &self.state);
        if st.loan.as_ref().is_none_or(|l| l.id != id) {
            // Closed meanwhile (the loan was dropped with it).
            if ended_normally {
                return Err(Kind::Closed
                    .err("the publisher was closed during the loan: nothing was published"));
            }
            return Ok(None);
        }
        Ok(st.end_loan(py, ended_normally.then_some(tag)))
    }

    /// Publishes `data`, waiting for room until `deadline` (`None`: not
    /// at all) in slices, with the interpreter released.
    fn send(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        tag: u64,
        deadline: Option<Deadline>,
    ) -> PyResult<u64> {
        let payload = Payload::get(data)?;
        let mut st = lock(py, &self.state);
        self.check_open()?;
        let (p, scratch) = st.parts()?;
        match p.try_publish(payload.as_slice(), tag) {
            Err(PublishError::Full) => {}
            r => return r.map_err(publish_error),
        }
        let Some(deadline) = deadline else {
            return Err(publish_error(PublishError::Full));
        };
        self.publish_waiting(py, p, scratch, &payload, tag, deadline)
    }

    /// Publishes `payload` on a full back-pressure ring: waits for room
    /// until `deadline` in slices, with the interpreter released (a
    /// mutable payload is copied to `scratch` first: another thread could
    /// write the original meanwhile).
    fn publish_waiting(
        &self,
        py: Python<'_>,
        p: &mut RustPublisher,
        scratch: &mut Vec<u8>,
        payload: &Payload<'_>,
        tag: u64,
        deadline: Deadline,
    ) -> PyResult<u64> {
        let bytes: &[u8] = if payload.is_immutable() {
            payload.as_slice()
        } else {
            scratch.clear();
            scratch.extend_from_slice(payload.as_slice());
            scratch
        };
        loop {
            let Some(slice) = deadline.slice() else {
                return Err(publish_error(PublishError::Timeout));
            };
            match py.detach(|| p.publish_timeout(bytes, tag, slice)) {
                Err(PublishError::Timeout) => {
                    py.check_signals()?;
                    self.check_open()?;
                }
                r => return r.map_err(publish_error),
            }
        }
    }
}

/// The topic config as the dict Python sees.
pub(crate) fn config_dict<'py>(py: Python<'py>, c: &TopicConfig) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("max_message_size", c.max_message_size)?;
    d.set_item("capacity", c.capacity)?;
    d.set_item("mode", c.mode.name())?;
    d.set_item("max_subscribers", c.max_subscribers)?;
    Ok(d)
}

#[pymethods]
impl Publisher {
    /// Copies `data` (bytes or any C-contiguous buffer) into the ring as one
    /// message with `tag`; returns its sequence number. On a back-pressure
    /// topic whose ring is full, waits for room at most `timeout` seconds
    /// (None: no limit), then raises `Timeout`.
    #[pyo3(signature = (data, tag=0, *, timeout=None))]
    fn publish(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        tag: u64,
        timeout: Option<f64>,
    ) -> PyResult<u64> {
        let deadline = Deadline::after(timeout)?;
        self.send(py, data, tag, Some(deadline))
    }

    /// Publishes every message of `messages` (bytes or C-contiguous
    /// buffers) in order with `tag`, as batches: the ring's head and the
    /// wake-up of sleeping subscribers come once per batch, not once per
    /// message. Returns their sequence numbers as a `range`. On a full
    /// back-pressure ring, waits for room as `publish` does, `timeout`
    /// seconds at most in all (then raises `Timeout`, the messages before
    /// the one that waited being published). A message too large raises
    /// `TooLarge` before any is published.
    #[pyo3(signature = (messages, tag=0, *, timeout=None))]
    fn publish_batch<'py>(
        &self,
        py: Python<'py>,
        messages: Vec<Bound<'py, PyAny>>,
        tag: u64,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyRange>> {
        let deadline = Deadline::after(timeout)?;
        let payloads = messages
            .iter()
            .map(Payload::get)
            .collect::<PyResult<Vec<_>>>()?;
        let slices: Vec<&[u8]> = payloads.iter().map(Payload::as_slice).collect();
        // Held throughout: the batch's sequence numbers stay one range.
        let mut st = lock(py, &self.state);
        self.check_open()?;
        let (p, scratch) = st.parts()?;
        let first = p.next_seq();
        let mut done = 0;
        while done < slices.len() {
            match p.try_publish_batch(&slices[done..], tag) {
                Ok(seqs) => done += (seqs.end - seqs.start) as usize,
                Err(PublishError::Full) => {
                    self.publish_waiting(py, p, scratch, &payloads[done], tag, deadline)?;
                    done += 1;
                }
                Err(e) => return Err(publish_error(e)),
            }
        }
        seq_range(py, first..first + done as u64)
    }

    /// As `publish`, but never waits: raises `Full` when a back-pressure
    /// ring has no room.
    #[pyo3(signature = (data, tag=0))]
    fn try_publish(&self, py: Python<'_>, data: &Bound<'_, PyAny>, tag: u64) -> PyResult<u64> {
        self.send(py, data, tag, None)
    }

    /// Lends the next slot's `size` bytes to be filled in place:
    /// `with pub.loan(n) as buf:` gives a writable memoryview; the message
    /// is published when the block ends normally (with `tag`), and nothing
    /// is published if it raises. Waits for room like `publish`.
    #[pyo3(signature = (size, tag=0, *, timeout=None))]
    fn loan(slf: &Bound<'_, Self>, size: usize, tag: u64, timeout: Option<f64>) -> PyResult<Loan> {
        Ok(Loan {
            ticket: Ticket::new(slf, tag, timeout),
            size,
        })
    }

    /// Lends the next `count` slots, `size` bytes each, to be filled in
    /// place: `with pub.loan_many(count, n) as bufs:` gives a list of
    /// writable memoryviews; when the block ends normally every slot is
    /// published, in order, with `tag`, the ring's head and the wake-up of
    /// sleeping subscribers once for the lot (`publish_batch` without the
    /// copy); nothing is published if it raises. Waits until all `count`
    /// slots are free, like `publish`; `count` above the ring's capacity
    /// raises `TooLarge`.
    #[pyo3(signature = (count, size, tag=0, *, timeout=None))]
    fn loan_many(
        slf: &Bound<'_, Self>,
        count: usize,
        size: usize,
        tag: u64,
        timeout: Option<f64>,
    ) -> PyResult<LoanMany> {
        if count == 0 {
            return Err(Kind::InvalidArgument.err("loan_many lends at least one slot"));
        }
        Ok(LoanMany {
            ticket: Ticket::new(slf, tag, timeout),
            count,
            size,
        })
    }

    /// Ends the publisher: its subscribers drain its ring, then see its end
    /// of stream. An outstanding loan is dropped. Closing twice is
    /// harmless.
    fn close(&self, py: Python<'_>) {
        // Relaxed: see check_open.
        self.closing.store(true, Ordering::Relaxed);
        let mut st = lock(py, &self.state);
        st.end_loan(py, None);
        if let Some(p) = st.publisher.take() {
            // Dropping tells the broker (a round trip).
            py.detach(move || drop(p));
        }
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> bool {
        self.close(py);
        false
    }

    /// The topic.
    #[getter]
    fn topic(&self) -> &str {
        &self.topic
    }

    /// The id of this publisher's ring.
    #[getter]
    fn ring_id(&self) -> u64 {
        self.ring_id
    }

    /// The topic's config as a dict.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        config_dict(py, &self.config)
    }

    /// The sequence number the next message gets.
    #[getter]
    fn next_seq(&self, py: Python<'_>) -> PyResult<u64> {
        Ok(lock(py, &self.state).publisher()?.next_seq())
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    fn __repr__(&self) -> String {
        format!(
            "<ringbus.Publisher topic={:?} ring_id={}{}>",
            self.topic,
            self.ring_id,
            if self.closed() { " closed" } else { "" }
        )
    }
}

/// Sequence numbers as a Python `range`.
fn seq_range(py: Python<'_>, seqs: Range<u64>) -> PyResult<Bound<'_, PyRange>> {
    let index =
        |n: u64| isize::try_from(n).map_err(|_| Kind::InvalidArgument.err("sequence beyond isize"));
    PyRange::new(py, index(seqs.start)?, index(seqs.end)?)
}

/// Numbers that tell loans apart (which one the publisher holds).
static LOAN_IDS: AtomicU64 = AtomicU64::new(1);

/// What a `Loan` and a `LoanMany` share: whose loan it is, how it
/// publishes, and what it published.
struct Ticket {
    publisher: Py<Publisher>,
    id: u64,
    tag: u64,
    timeout: Option<f64>,
    seqs: Mutex<Option<Range<u64>>>,
}

impl Ticket {
    fn new(publisher: &Bound<'_, Publisher>, tag: u64, timeout: Option<f64>) -> Ticket {
        Ticket {
            publisher: publisher.clone().unbind(),
            // Relaxed: a unique number, nothing else.
            id: LOAN_IDS.fetch_add(1, Ordering::Relaxed),
            tag,
            timeout,
            seqs: Mutex::new(None),
        }
    }

    /// The `with` block begins: the slots `take` lends, as memoryviews.
    fn enter<'py>(
        &self,
        py: Python<'py>,
        take: impl Fn(&mut RustPublisher, Duration) -> Result<SendLoan, PublishError> + Sync,
    ) -> PyResult<Vec<Bound<'py, PyMemoryView>>> {
        self.publisher.get().lend(py, self.id, self.timeout, take)
    }

    /// The `with` block ended (`exc_type` None: normally): publishes or
    /// drops the slots and notes their sequence numbers.
    fn exit(&self, py: Python<'_>, exc_type: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let seqs = self
            .publisher
            .get()
            .finish_loan(py, self.id, exc_type, self.tag)?;
        *lock(py, &self.seqs) = seqs;
        Ok(false)
    }

    fn seqs(&self, py: Python<'_>) -> Option<Range<u64>> {
        lock(py, &self.seqs).clone()
    }
}

/// A loan of a ring slot: a context manager (see `Publisher.loan`).
#[pyclass(frozen, module = "ringbus", name = "Loan")]
pub(crate) struct Loan {
    ticket: Ticket,
    size: usize,
}

#[pymethods]
impl Loan {
    /// Takes the slot (waiting for room as `publish` does) and returns a
    /// writable memoryview of `size` bytes.
    fn __enter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyMemoryView>> {
        let size = self.size;
        let views = self.ticket.enter(py, |p, slice| {
            p.loan_timeout(size, slice).map(SendLoan::one)
        })?;
        Ok(views.into_iter().next().expect("a loan lends one slot"))
    }

    /// Publishes the slot when the block ended normally, drops it when it
    /// raised. The memoryview is released either way.
    #[pyo3(signature = (exc_type, *_rest))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _rest: &Bound<'_, PyTuple>,
    ) -> PyResult<bool> {
        self.ticket.exit(py, exc_type)
    }

    /// The published message's sequence number, once the block has ended
    /// normally (else None).
    #[getter]
    fn seq(&self, py: Python<'_>) -> Option<u64> {
        self.ticket.seqs(py).map(|s| s.start)
    }
}

/// A loan of several ring slots: a context manager (see
/// `Publisher.loan_many`).
#[pyclass(frozen, module = "ringbus", name = "LoanMany")]
pub(crate) struct LoanMany {
    ticket: Ticket,
    count: usize,
    size: usize,
}

#[pymethods]
impl LoanMany {
    /// Takes the slots (waiting for room as `publish` does) and returns a
    /// list of `count` writable memoryviews of `size` bytes.
    fn __enter__<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyMemoryView>>> {
        let (count, size) = (self.count, self.size);
        self.ticket.enter(py, |p, slice| {
            p.loan_many_timeout(count, size, slice).map(SendLoan::many)
        })
    }

    /// Publishes the slots when the block ended normally, drops them when
    /// it raised. The memoryviews are released either way.
    #[pyo3(signature = (exc_type, *_rest))]
    fn __exit__(
        &self,
        py: Python<'_>,
        exc_type: Option<&Bound<'_, PyAny>>,
        _rest: &Bound<'_, PyTuple>,
    ) -> PyResult<bool> {
        self.ticket.exit(py, exc_type)
    }

    /// The published messages' sequence numbers as a `range`, once the
    /// block has ended normally (else None).
    #[getter]
    fn seqs<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyRange>>> {
        self.ticket.seqs(py).map(|s| seq_range(py, s)).transpose()
    }
}
