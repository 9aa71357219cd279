//! Subscriber filters from Python: the `tag=`, `tag_mask=`/`tag_value=`
//! and `tags=` arguments of `Client.subscriber`, and the predicate of
//! `Subscriber.filter`.
//!
//! A predicate is a Python callable run by the Rust receive, before the
//! message is copied out. Receives release the interpreter while they
//! wait, so the closure attaches to it for each call. An exception it
//! raises cannot cross the library's receive: the closure stores it and
//! unwinds (`resume_unwind`, which prints nothing), the library skips the
//! message and returns `RecvError::FilterPanicked`, and the subscriber
//! raises the stored exception to the caller of the receive
//! (`Subscriber::recv_failed`). The subscription goes on.

use std::cell::Cell;
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use ringbus::client::Subscriber as RustSubscriber;
use ringbus::ring::{Filter, FilterError, MessageInfo as RustInfo};

use crate::errors::Kind;

/// What a filter's predicate is shown of a message besides its payload.
#[pyclass(frozen, module = "ringbus", name = "MessageInfo")]
pub(crate) struct MessageInfo(RustInfo);

#[pymethods]
impl MessageInfo {
    /// The sequence number in its ring.
    #[getter]
    fn seq(&self) -> u64 {
        self.0.seq
    }

    /// The publisher's tag.
    #[getter]
    fn tag(&self) -> u64 {
        self.0.tag
    }

    /// CLOCK_MONOTONIC nanoseconds at publish, or 0.
    #[getter]
    fn timestamp(&self) -> u64 {
        self.0.timestamp
    }

    /// The payload's length in bytes.
    #[getter]
    fn len(&self) -> usize {
        self.0.len
    }

    fn __len__(&self) -> usize {
        self.0.len
    }

    fn __repr__(&self) -> String {
        format!(
            "<ringbus.MessageInfo seq={} tag={} len={}>",
            self.0.seq, self.0.tag, self.0.len
        )
    }
}

/// Where a predicate leaves the exception it raised, for the receive that
/// called it to raise.
pub(crate) type RaisedSlot = Arc<Mutex<Option<PyErr>>>;

thread_local! {
    /// Whether this thread is running a predicate (see `judging`).
    static JUDGING: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is inside a predicate: its receive holds the
/// subscriber's lock, so the subscriber refuses to be used rather than
/// wait forever for it.
pub(crate) fn judging() -> bool {
    JUDGING.with(Cell::get)
}

/// The unwind payload of a predicate that raised (its exception is in the
/// slot).
struct PredicateRaised;

/// `callable(info, data)` as the library's predicate: true keeps the
/// message.
pub(crate) fn predicate(
    callable: Py<PyAny>,
    raised: RaisedSlot,
) -> impl FnMut(&RustInfo, &[u8]) -> bool + Send + 'static {
    move |info, data| {
        let verdict = Python::attach(|py| {
            let info = Bound::new(py, MessageInfo(*info))?;
            let data = PyBytes::new(py, data);
            let was = JUDGING.with(|j| j.replace(true));
            let keep = callable
                .bind(py)
                .call1((info, data))
                .and_then(|k| k.is_truthy());
            JUDGING.with(|j| j.set(was));
            keep
        });
        match verdict {
            Ok(keep) => keep,
            Err(e) => {
                *raised.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                // Into the library's catch_unwind, without the panic
                // hook's message: see the module's comment.
                std::panic::resume_unwind(Box::new(PredicateRaised))
            }
        }
    }
}

/// An iterable of tags as a list (at most `MAX_FILTER_TAGS`, checked by
/// the library).
pub(crate) fn tag_list(tags: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    tags.try_iter()?.map(|t| t?.extract::<u64>()).collect()
}

/// A refused filter as `InvalidArgument`.
pub(crate) fn filter_error(e: FilterError) -> PyErr {
    Kind::InvalidArgument.err(e.to_string())
}

/// The tag filters asked of `Client.subscriber`, checked before
/// subscribing.
#[derive(Default)]
pub(crate) struct TagFilters {
    mask: Option<(u64, u64)>,
    tags: Option<Vec<u64>>,
}

impl TagFilters {
    /// From the keyword arguments: `tag` (exactly this tag) or
    /// `tag_mask` with `tag_value` (`tag & tag_mask == tag_value`), and
    /// `tags` (one of these).
    pub(crate) fn new(
        tag: Option<u64>,
        tag_mask: Option<u64>,
        tag_value: Option<u64>,
        tags: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<TagFilters> {
        let mask = match (tag, tag_mask, tag_value) {
            (None, None, None) => None,
            (Some(t), None, None) => Some((u64::MAX, t)),
            (None, Some(m), Some(v)) => Some((m, v)),
            (Some(_), _, _) => {
                return Err(Kind::InvalidArgument
                    .err("give either tag= (an exact tag) or tag_mask= with tag_value=, not both"))
            }
            (None, Some(_), None) | (None, None, Some(_)) => {
                return Err(Kind::InvalidArgument.err(
                    "tag_mask= and tag_value= go together (keeps tag & tag_mask == tag_value); \
                     for one exact tag, give tag=",
                ))
            }
        };
        let tags = tags.map(tag_list).transpose()?;
        // The library's own checks, before anything is asked of the broker.
        let mut check = Filter::default();
        if let Some((m, v)) = mask {
            check.set_tag_mask(m, v).map_err(filter_error)?;
        }
        if let Some(t) = &tags {
            check.set_tags(t).map_err(filter_error)?;
        }
        Ok(TagFilters { mask, tags })
    }

    /// Sets them on `sub`.
    pub(crate) fn apply(&self, sub: &mut RustSubscriber) -> PyResult<()> {
        if let Some((m, v)) = self.mask {
            sub.filter_tags(m, v).map_err(filter_error)?;
        }
        if let Some(t) = &self.tags {
            sub.filter_tag_set(t).map_err(filter_error)?;
        }
        Ok(())
    }
}
