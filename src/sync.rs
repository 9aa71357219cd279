//! The atomics the ring uses, swapped for loom's under `cfg(loom)` so the
//! same protocol code is model-checked (the crossbeam / tokio pattern).

#[cfg(loom)]
#[allow(unused_imports)]
pub(crate) use loom::sync::{
    atomic::{fence, AtomicU32, AtomicU64, Ordering},
    Mutex,
};

#[cfg(not(loom))]
#[allow(unused_imports)]
pub(crate) use std::sync::{
    atomic::{fence, AtomicU32, AtomicU64, Ordering},
    Mutex,
};

/// Spin-loop hint; under loom a yield so the model explores other threads.
#[inline(always)]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    std::hint::spin_loop();
}
