//! Python bindings for ringbus: the extension module `ringbus._ringbus`,
//! wrapped by the `ringbus` package (`python/ringbus/`), which adds the
//! exception classes and type stubs. Built with maturin:
//! `pip install ./python`.
//!
//! It links the Rust `ringbus` crate directly (not the C ABI): the client,
//! its errors and its zero-copy types are used as they are.
//!
//! Why this crate is not a member of the repository's workspace: an
//! extension module does not link libpython (the interpreter provides its
//! symbols when it loads the module), so test binaries of this crate could
//! not link, and `cargo test --workspace` would fail; its build script also
//! needs a Python interpreter, and PyO3 needs a newer Rust than the
//! library's minimum. So it is a workspace of its own, built by maturin
//! (and checked by `.ci/python.sh`: fmt, clippy, then the pytest suite).
//!
//! Threads: every blocking call (connecting, opening, a receive or a
//! back-pressure publish that waits) releases the interpreter, and waits
//! in slices of [`wait::SLICE`], checking for signals in between, so
//! Ctrl-C raises KeyboardInterrupt promptly. Objects may be shared between
//! threads; a publisher or subscriber serves one call at a time (others
//! wait, with the interpreter released).
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

mod buffer;
mod client;
mod errors;
mod filter;
mod publisher;
mod subscriber;
mod wait;

use pyo3::prelude::*;

/// CLOCK_MONOTONIC nanoseconds, as in `Message.timestamp`.
#[pyfunction]
fn now_ns() -> u64 {
    ringbus::ring::monotonic_ns()
}

/// The socket a `Client()` without argument connects to.
#[pyfunction]
fn default_socket() -> String {
    ringbus::control::paths::default_socket_path()
        .to_string_lossy()
        .into_owned()
}

#[pymodule]
fn _ringbus(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<client::Client>()?;
    m.add_class::<client::EmbeddedBroker>()?;
    m.add_class::<publisher::Publisher>()?;
    m.add_class::<publisher::Loan>()?;
    m.add_class::<publisher::LoanMany>()?;
    m.add_class::<subscriber::Subscriber>()?;
    m.add_class::<subscriber::Message>()?;
    m.add_class::<filter::MessageInfo>()?;
    m.add_class::<buffer::RingMemory>()?;
    m.add_function(wrap_pyfunction!(now_ns, m)?)?;
    m.add_function(wrap_pyfunction!(default_socket, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
