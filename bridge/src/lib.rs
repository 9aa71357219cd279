//! `ringbus-zenoh`: a bridge between the topics of a ringbus broker and a
//! Zenoh network.
//!
//! An export subscribes to a local pattern and puts each message on Zenoh
//! under `PREFIX/a/b/c` (topic `a.b.c`), with an [`attachment`] carrying
//! its tag, sequence number, ring id, publish timestamp and the bridge's
//! id. An import subscribes to the key expression of a pattern and
//! publishes each sample on the local topic of its key. A bridge never
//! exports what it imported (it knows its own rings) and never imports
//! what it exported (its Zenoh subscribers take remote samples only, and
//! it drops samples carrying its own id). See the crate's README section
//! in the repository's README.md.

pub mod attachment;
pub mod bridge;
pub mod map;
pub mod state;
pub mod stats;

pub use bridge::{Bridge, Congestion, ImportTopic, Settings};
