//! What the bench measures, as plain data: the [`Scenario`]s a plan expands
//! to ([`list`]), what each one's figure means ([`Metric`]), its names, and
//! which floor each ringbus figure is compared with. Nothing here runs a
//! measurement (`measure.rs` does).

use serde::{Deserialize, Serialize};

use super::args::{Plan, ScenarioArg, MAX_SIZE, MIN_SIZE};
use super::params::Params;
use ringbus::ring::Mode;
use ringbus::wait::WaitStrategy;

/// One measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Scenario {
    /// Floor: 64-byte cache-line ping-pong.
    LinePingPong,
    /// Baseline: seqlock slot ping-pong with `size`-byte payloads.
    SeqlockPingPong {
        /// Payload bytes.
        size: usize,
    },
    /// Floor for blocking waits: futex ping-pong.
    FutexPingPong,
    /// Baseline: Unix `SOCK_SEQPACKET` ping-pong.
    UnixPingPong {
        /// Payload bytes.
        size: usize,
    },
    /// Floor for streaming: SPSC copy ring with slots of exactly the
    /// message size and copies of a compile-time length, flat out.
    FixedRingThroughput {
        /// Payload bytes.
        size: usize,
    },
    /// The fixed-size copy ring at a fixed rate: publish-to-receive
    /// latency.
    FixedRingLatency {
        /// Payload bytes.
        size: usize,
    },
    /// Baseline: SPSC copy ring with copies of a run-time length (the
    /// streaming floor before the fixed-size one), flat out.
    CopyRingThroughput {
        /// Payload bytes.
        size: usize,
    },
    /// The run-time-length copy ring at a fixed rate: publish-to-receive
    /// latency.
    CopyRingLatency {
        /// Payload bytes.
        size: usize,
    },
    /// Baseline: the fixed-size copy ring with its reader reading the
    /// slots through a read-only mapping, as a subscriber that is not
    /// trusted reads a ring, flat out.
    ReadOnlyRingThroughput {
        /// Payload bytes.
        size: usize,
    },
    /// ringbus ping-pong over two rings.
    RingPingPong {
        /// Payload bytes.
        size: usize,
        /// Receive wait strategy (both sides).
        wait: WaitStrategy,
        /// Ring mode.
        mode: Mode,
    },
    /// ringbus streaming, flat out, 1 → `subscribers`.
    RingThroughput {
        /// Payload bytes.
        size: usize,
        /// Subscribers' wait strategy.
        wait: WaitStrategy,
        /// Ring mode.
        mode: Mode,
        /// Subscriber processes.
        subscribers: u32,
    },
    /// ringbus streaming at a fixed rate: publish-to-receive latency.
    RingLatency {
        /// Payload bytes.
        size: usize,
        /// Subscribers' wait strategy.
        wait: WaitStrategy,
        /// Ring mode.
        mode: Mode,
        /// Subscriber processes.
        subscribers: u32,
    },
    /// The spin ping-pong with the echo side subscribed through a pattern
    /// (`bench.mN.a.>`, matching its one topic): compared with the
    /// exact-topic ping-pong.
    PatternPingPong {
        /// Payload bytes.
        size: usize,
        /// Ring mode.
        mode: Mode,
    },
    /// The block ping-pong with the echo side subscribed to a topic of
    /// [`MANY_RINGS`] publishers, one active (the others idle): its wait
    /// sleeps on all their rings at once. Compared with the raw futex
    /// ping-pong, as the one-ring block ping-pong is.
    ManyRingsPingPong {
        /// Payload bytes.
        size: usize,
        /// Ring mode.
        mode: Mode,
    },
    /// The spin stream, flat out, tags `0..16` in turn, to a subscriber
    /// whose tag filter keeps 1 message in [`FILTER_KEEPS_ONE_IN`]: its
    /// rate counts every message it got through (delivered and filtered),
    /// compared with the unfiltered stream's.
    FilteredThroughput {
        /// Payload bytes.
        size: usize,
        /// Ring mode.
        mode: Mode,
    },
    /// The spin stream, flat out, in batches: the publisher sends
    /// [`BATCH`] messages per `try_publish_batch`, the subscriber takes up
    /// to [`BATCH`] per `try_recv_batch`; compared with the stream of one
    /// message per call.
    BatchedThroughput {
        /// Payload bytes.
        size: usize,
        /// Ring mode.
        mode: Mode,
    },
    /// As `BatchedThroughput`, with each batch written in place: the
    /// publisher borrows [`BATCH`] slots with `loan_many`, fills them and
    /// commits them at once.
    LoanedThroughput {
        /// Payload bytes.
        size: usize,
        /// Ring mode.
        mode: Mode,
    },
}

/// Messages per call in [`Scenario::BatchedThroughput`].
pub const BATCH: usize = 32;

/// A [`Scenario::FilteredThroughput`] subscriber keeps one message in this
/// many (a power of two: the tags cycle through `0..FILTER_KEEPS_ONE_IN`
/// and the filter keeps tag 0).
pub const FILTER_KEEPS_ONE_IN: u64 = 16;

/// Publishers (rings) of topic A in [`Scenario::ManyRingsPingPong`].
pub const MANY_RINGS: usize = 8;

/// The message size [`Scenario::ManyRingsPingPong`] is measured at.
pub const MANY_RINGS_SIZE: usize = 64;

/// How a ringbus scenario's subscriber reaches its topic (the child's
/// spec carries it in its link).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Route {
    /// It subscribes to the topic by name and takes every message.
    #[default]
    Exact,
    /// As `Exact`, with messages published and received in batches.
    Batched,
    /// As `Batched`, each batch written in place in loaned slots.
    Loaned,
    /// It subscribes through a pattern that matches the topic.
    Pattern,
    /// It subscribes by name with a tag filter keeping one message in
    /// [`FILTER_KEEPS_ONE_IN`]; the publisher tags them in turn.
    Filtered,
    /// It subscribes by name to a topic that [`MANY_RINGS`] publishers
    /// hold, one of which publishes.
    ManyRings,
}

/// What a scenario's figures mean.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Round trips; reported as RTT and one-way = RTT / 2.
    PingPong,
    /// Messages per second (plus loss).
    Throughput,
    /// Publish timestamp to receipt, ns.
    Latency,
}

impl Metric {
    /// What is measured, in words: `ping-pong`, `streaming throughput`,
    /// `streaming latency`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::PingPong => "ping-pong",
            Metric::Throughput => "streaming throughput",
            Metric::Latency => "streaming latency",
        }
    }
}

impl Scenario {
    /// The kind of figure.
    pub fn metric(self) -> Metric {
        match self {
            Scenario::LinePingPong
            | Scenario::SeqlockPingPong { .. }
            | Scenario::FutexPingPong
            | Scenario::UnixPingPong { .. }
            | Scenario::RingPingPong { .. }
            | Scenario::PatternPingPong { .. }
            | Scenario::ManyRingsPingPong { .. } => Metric::PingPong,
            Scenario::FixedRingThroughput { .. }
            | Scenario::CopyRingThroughput { .. }
            | Scenario::ReadOnlyRingThroughput { .. }
            | Scenario::RingThroughput { .. }
            | Scenario::FilteredThroughput { .. }
            | Scenario::BatchedThroughput { .. }
            | Scenario::LoanedThroughput { .. } => Metric::Throughput,
            Scenario::FixedRingLatency { .. }
            | Scenario::CopyRingLatency { .. }
            | Scenario::RingLatency { .. } => Metric::Latency,
        }
    }

    /// Message size, if the scenario has one.
    pub fn size(self) -> Option<usize> {
        match self {
            Scenario::LinePingPong | Scenario::FutexPingPong => None,
            Scenario::SeqlockPingPong { size }
            | Scenario::UnixPingPong { size }
            | Scenario::FixedRingThroughput { size }
            | Scenario::FixedRingLatency { size }
            | Scenario::CopyRingThroughput { size }
            | Scenario::CopyRingLatency { size }
            | Scenario::ReadOnlyRingThroughput { size }
            | Scenario::RingPingPong { size, .. }
            | Scenario::RingThroughput { size, .. }
            | Scenario::RingLatency { size, .. }
            | Scenario::PatternPingPong { size, .. }
            | Scenario::ManyRingsPingPong { size, .. }
            | Scenario::FilteredThroughput { size, .. }
            | Scenario::BatchedThroughput { size, .. }
            | Scenario::LoanedThroughput { size, .. } => Some(size),
        }
    }

    /// How a ringbus scenario's subscriber reaches its topic.
    pub fn route(self) -> Route {
        match self {
            Scenario::PatternPingPong { .. } => Route::Pattern,
            Scenario::FilteredThroughput { .. } => Route::Filtered,
            Scenario::BatchedThroughput { .. } => Route::Batched,
            Scenario::LoanedThroughput { .. } => Route::Loaned,
            Scenario::ManyRingsPingPong { .. } => Route::ManyRings,
            _ => Route::Exact,
        }
    }

    /// The exact-topic row a routed row ([`Scenario::route`]) is compared
    /// with: its floor.
    pub fn unrouted(self) -> Option<Scenario> {
        match self {
            Scenario::PatternPingPong { size, mode } => Some(Scenario::RingPingPong {
                size,
                wait: WaitStrategy::Spin,
                mode,
            }),
            Scenario::FilteredThroughput { size, mode }
            | Scenario::BatchedThroughput { size, mode }
            | Scenario::LoanedThroughput { size, mode } => Some(Scenario::RingThroughput {
                size,
                wait: WaitStrategy::Spin,
                mode,
                subscribers: 1,
            }),
            _ => None,
        }
    }

    /// Wait strategy and mode of a ringbus scenario.
    pub fn ring(self) -> Option<(WaitStrategy, Mode)> {
        match self {
            Scenario::RingPingPong { wait, mode, .. }
            | Scenario::RingThroughput { wait, mode, .. }
            | Scenario::RingLatency { wait, mode, .. } => Some((wait, mode)),
            Scenario::PatternPingPong { mode, .. }
            | Scenario::FilteredThroughput { mode, .. }
            | Scenario::BatchedThroughput { mode, .. }
            | Scenario::LoanedThroughput { mode, .. } => Some((WaitStrategy::Spin, mode)),
            Scenario::ManyRingsPingPong { mode, .. } => Some((WaitStrategy::Block, mode)),
            _ => None,
        }
    }

    /// Whether this is a baseline (no ringbus code).
    pub fn is_floor(self) -> bool {
        self.ring().is_none()
    }

    /// Human name for tables and legends.
    pub fn label(self) -> String {
        match self {
            Scenario::LinePingPong => "floor: cache line".into(),
            Scenario::SeqlockPingPong { .. } => "base: seqlock copy".into(),
            Scenario::FutexPingPong => "floor: futex".into(),
            Scenario::UnixPingPong { .. } => "base: unix seqpacket".into(),
            Scenario::FixedRingThroughput { size } | Scenario::FixedRingLatency { size } => {
                if fixed_copy_is_compiled(size) {
                    "floor: copy ring (fixed size)".into()
                } else {
                    "floor: copy ring (exact slots)".into()
                }
            }
            Scenario::CopyRingThroughput { .. } | Scenario::CopyRingLatency { .. } => {
                "base: copy ring (run-time length)".into()
            }
            Scenario::ReadOnlyRingThroughput { .. } => "base: copy ring (read-only reader)".into(),
            Scenario::RingPingPong { wait, mode, .. } => {
                format!("ringbus {}/{}", wait.name(), mode.name())
            }
            Scenario::RingThroughput {
                wait,
                mode,
                subscribers,
                ..
            }
            | Scenario::RingLatency {
                wait,
                mode,
                subscribers,
                ..
            } => {
                let fan = if subscribers > 1 {
                    format!(" 1→{subscribers}")
                } else {
                    String::new()
                };
                format!("ringbus{fan} {}/{}", wait.name(), mode.name())
            }
            Scenario::PatternPingPong { mode, .. } => {
                format!("ringbus pattern spin/{}", mode.name())
            }
            Scenario::FilteredThroughput { mode, .. } => {
                format!(
                    "ringbus tag filter 1/{FILTER_KEEPS_ONE_IN} spin/{}",
                    mode.name()
                )
            }
            Scenario::ManyRingsPingPong { mode, .. } => {
                format!("ringbus block/{} {MANY_RINGS} rings", mode.name())
            }
            Scenario::BatchedThroughput { mode, .. } => {
                format!("ringbus batches of {BATCH} spin/{}", mode.name())
            }
            Scenario::LoanedThroughput { mode, .. } => {
                format!("ringbus loans of {BATCH} spin/{}", mode.name())
            }
        }
    }

    /// A file-name-safe identifier.
    pub fn slug(self) -> String {
        let size = self.size().map(|s| format!("-{s}B")).unwrap_or_default();
        let base = match self {
            Scenario::LinePingPong => "floor-line-pingpong",
            Scenario::SeqlockPingPong { .. } => "base-seqlock-pingpong",
            Scenario::FutexPingPong => "floor-futex-pingpong",
            Scenario::UnixPingPong { .. } => "base-unix-pingpong",
            Scenario::FixedRingThroughput { .. } => "floor-fixedring-throughput",
            Scenario::FixedRingLatency { .. } => "floor-fixedring-latency",
            // Named when this ring was the streaming floor; kept so that
            // files and scripts that name it still find it.
            Scenario::CopyRingThroughput { .. } => "floor-copyring-throughput",
            Scenario::CopyRingLatency { .. } => "floor-copyring-latency",
            Scenario::ReadOnlyRingThroughput { .. } => "base-readonlyring-throughput",
            Scenario::RingPingPong { wait, mode, .. } => {
                return format!("ringbus-pingpong-{}-{}{size}", wait.name(), mode.name());
            }
            Scenario::RingThroughput {
                wait,
                mode,
                subscribers,
                ..
            } => {
                return format!(
                    "ringbus-throughput-1to{subscribers}-{}-{}{size}",
                    wait.name(),
                    mode.name()
                );
            }
            Scenario::RingLatency {
                wait,
                mode,
                subscribers,
                ..
            } => {
                return format!(
                    "ringbus-latency-1to{subscribers}-{}-{}{size}",
                    wait.name(),
                    mode.name()
                );
            }
            Scenario::PatternPingPong { mode, .. } => {
                return format!("ringbus-pattern-pingpong-spin-{}{size}", mode.name());
            }
            Scenario::FilteredThroughput { mode, .. } => {
                return format!(
                    "ringbus-filtered-1in{FILTER_KEEPS_ONE_IN}-throughput-spin-{}{size}",
                    mode.name()
                );
            }
            Scenario::ManyRingsPingPong { mode, .. } => {
                return format!(
                    "ringbus-{MANY_RINGS}rings-pingpong-block-{}{size}",
                    mode.name()
                );
            }
            Scenario::BatchedThroughput { mode, .. } => {
                return format!("ringbus-batch{BATCH}-throughput-spin-{}{size}", mode.name());
            }
            Scenario::LoanedThroughput { mode, .. } => {
                return format!("ringbus-loan{BATCH}-throughput-spin-{}{size}", mode.name());
            }
        };
        format!("{base}{size}")
    }

    /// The baseline each block of this ringbus row is also followed by, for
    /// a second ratio beside the one to its [`Scenario::floor`]:
    ///
    /// * spin and adaptive ping-pongs: the seqlock ping-pong of their size,
    ///   a stamp and the whole payload per message as a ring slot carries,
    ///   with no ringbus code (the "seqlock floor"; the cache-line
    ///   floor carries a sequence word only, so it is the stricter of the
    ///   two);
    /// * flat-out streams: the fixed-size copy ring read through a
    ///   read-only mapping, as subscribers that are not trusted read their
    ///   rings, so that what the page protection costs on the host and what
    ///   ringbus's own code costs show apart, from the same blocks.
    pub fn base(self) -> Option<Scenario> {
        match self {
            Scenario::RingPingPong { size, wait, .. } if wait != WaitStrategy::Block => {
                Some(Scenario::SeqlockPingPong { size })
            }
            Scenario::RingThroughput { size, .. } => {
                Some(Scenario::ReadOnlyRingThroughput { size })
            }
            _ => None,
        }
    }

    /// The floor this figure is shown against (ratio = this / floor).
    ///
    /// Spin and adaptive waits are compared with the cache-line ping-pong
    /// (ping-pong) or the fixed-size copy ring (streaming); blocking waits
    /// with the futex ping-pong's one-way figure, the cost of one wake-up,
    /// but for their flat-out rate (the fixed-size copy ring too). The
    /// baselines are shown against the floor of their kind. A routed row
    /// is shown against the same row through an exact topic
    /// ([`Scenario::unrouted`]): what the pattern or the filter costs.
    pub fn floor(self) -> Option<Scenario> {
        if let Some(exact) = self.unrouted() {
            return Some(exact);
        }
        match self {
            Scenario::SeqlockPingPong { .. } | Scenario::UnixPingPong { .. } => {
                Some(Scenario::LinePingPong)
            }
            Scenario::RingPingPong { wait, .. } => Some(match wait {
                WaitStrategy::Block => Scenario::FutexPingPong,
                _ => Scenario::LinePingPong,
            }),
            Scenario::ManyRingsPingPong { .. } => Some(Scenario::FutexPingPong),
            Scenario::RingThroughput { size, .. }
            | Scenario::CopyRingThroughput { size }
            | Scenario::ReadOnlyRingThroughput { size } => {
                Some(Scenario::FixedRingThroughput { size })
            }
            Scenario::CopyRingLatency { size } => Some(Scenario::FixedRingLatency { size }),
            Scenario::RingLatency { size, wait, .. } => Some(match wait {
                WaitStrategy::Block => Scenario::FutexPingPong,
                _ => Scenario::FixedRingLatency { size },
            }),
            _ => None,
        }
    }

    /// Number of child processes.
    pub fn children(self) -> u32 {
        match self {
            Scenario::RingThroughput { subscribers, .. }
            | Scenario::RingLatency { subscribers, .. } => subscribers,
            _ => 1,
        }
    }
}

/// Whether the fixed-size copy ring for `size`-byte messages copies with
/// a length known at compile time: it is instantiated for every power of
/// two the bench accepts (`copy_ring` holds the list; a test checks it
/// against this). Other sizes get slots of exactly their size copied with
/// a run-time length, and say so in their label (`exact slots`).
pub fn fixed_copy_is_compiled(size: usize) -> bool {
    size.is_power_of_two() && (MIN_SIZE..=MAX_SIZE).contains(&size)
}

/// The scenarios `plan` asks for, each ringbus figure after its floors,
/// each with its counts.
pub fn list(plan: &Plan) -> Vec<(Scenario, Params)> {
    let mut out = Vec::new();
    let base = |size: usize| Params {
        size,
        iters: plan.iters,
        warmup: plan.warmup,
        rate: 0,
        capacity: plan.capacity_for(size),
        duration_ns: plan
            .duration
            .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64),
        timestamps: plan.timestamps,
        trusted: plan.trusted,
        mailboxes: plan.mailboxes && !plan.trusted,
    };
    let thr = |size: usize| Params {
        iters: plan.throughput_msgs(size),
        warmup: plan.warmup.max(1),
        ..base(size)
    };
    // Latency is measured from the publish stamp: always stamped.
    let lat = |size: usize| Params {
        rate: plan.latency_rate(size),
        iters: plan.latency_msgs(size),
        timestamps: true,
        ..base(size)
    };
    let pp = plan.scenarios.contains(&ScenarioArg::PingPong);
    let st = plan.scenarios.contains(&ScenarioArg::Streaming);
    let fan = plan.fan_out();
    // The floors every ratio needs: always measured.
    out.push((Scenario::LinePingPong, base(64)));
    out.push((Scenario::FutexPingPong, base(64)));
    for &size in &plan.sizes {
        if pp {
            out.push((Scenario::SeqlockPingPong { size }, base(size)));
            out.push((Scenario::UnixPingPong { size }, base(size)));
            for &mode in &plan.modes {
                for &wait in &plan.waits {
                    out.push((Scenario::RingPingPong { size, wait, mode }, base(size)));
                }
            }
        }
        if st || fan {
            out.push((Scenario::FixedRingThroughput { size }, thr(size)));
            out.push((Scenario::CopyRingThroughput { size }, thr(size)));
            out.push((Scenario::ReadOnlyRingThroughput { size }, thr(size)));
            out.push((Scenario::FixedRingLatency { size }, lat(size)));
            out.push((Scenario::CopyRingLatency { size }, lat(size)));
        }
        let mut fans = Vec::new();
        if st {
            fans.push(1);
        }
        if fan {
            fans.push(plan.cpus.len() as u32 - 1);
        }
        for subscribers in fans {
            for &mode in &plan.modes {
                for &wait in &plan.waits {
                    out.push((
                        Scenario::RingThroughput {
                            size,
                            wait,
                            mode,
                            subscribers,
                        },
                        thr(size),
                    ));
                    out.push((
                        Scenario::RingLatency {
                            size,
                            wait,
                            mode,
                            subscribers,
                        },
                        lat(size),
                    ));
                }
            }
        }
        // Patterns and filters are the broker's: each beside its
        // exact-topic row, when that row is measured.
        if !plan.direct {
            for &mode in &plan.modes {
                // A filtered stream's rate counts what it got through, so it
                // is measured where nothing is lost: back-pressure.
                let filtered = (mode == Mode::Backpressure)
                    .then_some((Scenario::FilteredThroughput { size, mode }, thr(size)));
                let pattern = Some((Scenario::PatternPingPong { size, mode }, base(size)));
                let batched = Some((Scenario::BatchedThroughput { size, mode }, thr(size)));
                let loaned = Some((Scenario::LoanedThroughput { size, mode }, thr(size)));
                for (routed, params) in [pattern, filtered, batched, loaned].into_iter().flatten() {
                    let exact = routed.unrouted().expect("a routed scenario");
                    if out.iter().any(|(s, _)| *s == exact) {
                        out.push((routed, params));
                    }
                }
                // A blocking subscriber on many rings, beside the one-ring
                // block ping-pong, at one size.
                let block = Scenario::RingPingPong {
                    size,
                    wait: WaitStrategy::Block,
                    mode,
                };
                if size == MANY_RINGS_SIZE && out.iter().any(|(s, _)| *s == block) {
                    out.push((Scenario::ManyRingsPingPong { size, mode }, base(size)));
                }
            }
        }
    }
    out
}
