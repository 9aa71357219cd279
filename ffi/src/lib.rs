//! C ABI for ringbus: `libringbus.so` / `libringbus.a` and
//! `include/ringbus.h` (generated from this crate by cbindgen).
//!
//! Conventions: every function is prefixed `ringbus_`; handles are opaque
//! pointers (`ringbus_client`, `ringbus_publisher`, `ringbus_subscriber`);
//! functions return an `int` status (`RINGBUS_OK` = 0, a negative
//! `ringbus_status` on failure, with a message from `ringbus_last_error()`)
//! and write results through out-parameters. NULL pointers, closed or
//! foreign handles (see below), too-small buffers and strings that are not
//! UTF-8 yield error codes, never a crash; no Rust panic crosses the
//! boundary (each entry point catches it and returns `RINGBUS_ERR_PANIC`).
//!
//! Handles carry a magic word checked on every call and poisoned when the
//! handle is closed, so a double close or a call on a closed handle is
//! reported as long as the memory has not been reused for a new handle of
//! the same kind (detection of use-after-free is best effort, as in any C
//! library). A client handle may be shared between threads; a publisher or
//! subscriber handle must be used by one thread at a time.
//!
//! The wrappers add no allocation, lock or syscall to publishing or
//! receiving: error messages go to a fixed thread-local buffer. (One
//! exception: a zero-copy receive on a pattern subscription reads the
//! ring-to-topic table first, one allocation, to fill `info.topic`.) Filters run inside the Rust receive: a C predicate is
//! called through a closure that holds its `user` pointer.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![deny(clippy::missing_safety_doc)]
// The exported types are named as C sees them.
#![allow(non_camel_case_types)]

mod client;
mod handle;
mod publisher;
mod status;
mod subscriber;
mod system;
mod types;

pub use client::*;
pub use publisher::*;
pub use status::ringbus_status;
pub use subscriber::*;
pub use system::*;
pub use types::*;
