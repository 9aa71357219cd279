//! What the fuzz targets run, kept out of `fuzz_targets/` so that unit
//! tests can replay the committed corpus without libFuzzer and the seed
//! generator writes exactly the input format the targets read.
//!
//! - [`frames::check`]: the `frame_decoder` target.
//! - [`script`]: the input format of the `broker_session` target.
//! - [`session::Harness`]: drives one such input against a live broker.
//! - [`seeds`]: the committed seed corpora, as code.

#![deny(missing_docs)]

pub mod frames;
pub mod script;
pub mod seeds;
pub mod session;
