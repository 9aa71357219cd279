//! The plain data every measuring module shares: the counts and knobs of
//! one measurement ([`Params`]) and what a child process reports back
//! ([`SideResult`]). A leaf: it imports nothing of the bench but
//! [`super::stats`].

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Counts and knobs of one measurement, shared by all its processes.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Params {
    /// Message size in bytes.
    pub size: usize,
    /// Measured round trips or messages (ignored when `duration_ns` is set).
    pub iters: u64,
    /// Unrecorded round trips or messages first.
    pub warmup: u64,
    /// Messages per second for paced (latency) runs; 0 = flat out.
    pub rate: u64,
    /// Ring capacity in messages.
    pub capacity: u32,
    /// Measure for this long instead of `iters`.
    pub duration_ns: Option<u64>,
    /// ringbus publishers stamp each message.
    pub timestamps: bool,
    /// Direct rings: subscribers map the data read-write (`--trusted`).
    pub trusted: bool,
    /// Direct rings with read-only subscribers: each reader gets a mailbox.
    pub mailboxes: bool,
}

/// What one child reports back.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SideResult {
    /// Recorded samples in ns as `[value, count]` pairs (lossless: the
    /// histogram's own bucket values).
    pub hist: Vec<[u64; 2]>,
    /// Measured messages received (after warm-up).
    pub received: u64,
    /// Measured messages the subscriber was told it missed (overwrite mode).
    pub lost: u64,
    /// ns from the end of warm-up to the last message received.
    pub elapsed_ns: u64,
    /// Flat-out streams: how many messages the subscriber was behind its
    /// publisher on average (published, not yet read), looked at every
    /// [`LOOK_BEHIND_EVERY`] messages received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind: Option<f64>,
}

/// A streaming subscriber looks at how far behind it is once per this many
/// messages (a read of the line its publisher writes as it publishes).
pub const LOOK_BEHIND_EVERY: u64 = 1024;

impl SideResult {
    /// Stores `h` in the result.
    pub fn set_hist(&mut self, h: &Histogram<u64>) {
        self.hist = h
            .iter_recorded()
            .map(|v| [v.value_iterated_to(), v.count_at_value()])
            .collect();
    }

    /// Rebuilds the histogram a child sent.
    pub fn hist(&self) -> Histogram<u64> {
        let mut h = super::stats::new_hist();
        for &[value, count] in &self.hist {
            h.saturating_record_n(value, count);
        }
        h
    }
}
