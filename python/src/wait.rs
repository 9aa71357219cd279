//! Waiting without holding up Python: locks taken without blocking other
//! threads' use of the interpreter, and blocking calls cut into slices
//! between which signal handlers run (so Ctrl-C interrupts a wait).

use std::sync::{Mutex, MutexGuard, TryLockError};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use crate::errors::Kind;

/// The longest a blocking call waits, with the interpreter released,
/// before it looks at Python's signal flags again: a KeyboardInterrupt
/// arrives within about this long.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// Locks `m`. A lock held by another thread (one waiting in a receive, with
/// the interpreter released) is waited for with the interpreter released
/// too: waiting for it while attached would deadlock with a holder that
/// needs the interpreter to finish.
pub(crate) fn lock<'a, T>(py: Python<'_>, m: &'a Mutex<T>) -> MutexGuard<'a, T>
where
    T: Send,
{
    loop {
        match m.try_lock() {
            Ok(g) => return g,
            // A panic in the bindings while the lock was held (reported to
            // Python as PanicException) leaves state no worse than a failed
            // call: go on.
            Err(TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                py.detach(|| drop(m.lock()));
            }
        }
    }
}

/// When a blocking call gives up: `None` waits forever.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(Option<Instant>);

impl Deadline {
    /// `timeout` seconds from now (`None`: never).
    ///
    /// # Errors
    /// `InvalidArgument` for a negative or NaN timeout.
    pub(crate) fn after(timeout: Option<f64>) -> PyResult<Deadline> {
        let Some(t) = timeout else {
            return Ok(Deadline(None));
        };
        if t.is_nan() || t < 0.0 {
            return Err(Kind::InvalidArgument.err(format!(
                "timeout must be a number of seconds >= 0, or None to wait forever (got {t})"
            )));
        }
        // Too far to represent: as good as forever.
        Ok(Deadline(
            Duration::try_from_secs_f64(t)
                .ok()
                .and_then(|d| Instant::now().checked_add(d)),
        ))
    }

    /// The next slice to wait, or `None` once the deadline has passed.
    pub(crate) fn slice(self) -> Option<Duration> {
        match self.0 {
            None => Some(SLICE),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(SLICE))
            }
        }
    }
}

/// A raw pointer into a ring's mapping that may cross threads: the
/// structures holding it keep the mapping alive (`Arc<RingRegion>`) and
/// only hand the address to Python's buffer protocol.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingPtr(pub(crate) *mut u8);

// SAFETY: an address into a shared mapping, valid from any thread while
// its region lives; what may be done through it is decided where it is
// dereferenced (the buffer protocol's read-only flag, the loan's rules).
unsafe impl Send for RingPtr {}
// SAFETY: as for Send; `&RingPtr` only gives out the address.
unsafe impl Sync for RingPtr {}
