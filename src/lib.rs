//! ringbus: a message broker for processes on one Linux host.
//!
//! Publishers and subscribers exchange messages through lock-free
//! single-producer / multi-consumer rings in shared memory. See
//! `DESIGN.md` for the architecture.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod broker;
pub mod client;
pub mod clock;
pub mod control;
pub mod layout;
pub mod ring;
pub mod shm;
pub(crate) mod sync;
pub mod wait;
