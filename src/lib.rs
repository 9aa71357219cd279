//! ringbus: a message broker for processes on one Linux host.
//!
//! Publishers and subscribers exchange messages through lock-free
//! single-producer / multi-consumer rings in shared memory. A broker
//! process (`ringbus serve`, or an [`EmbeddedBroker`](broker::EmbeddedBroker)
//! in your own process) creates the rings and admits clients over a Unix
//! socket; it is never on the path of a message.
//!
//! ```
//! use ringbus::broker::EmbeddedBroker;
//! use ringbus::client::{Mode, SubscribeOptions, TopicConfig};
//! use ringbus::ring::Start;
//!
//! let broker = EmbeddedBroker::start()?; // or Client::connect_default()
//! let client = broker.client()?;
//! let config = TopicConfig { mode: Mode::Backpressure, ..TopicConfig::default() };
//! // Subscribe first, from the earliest message: on a back-pressure topic
//! // this subscriber gets every message of every publisher that follows.
//! let options = SubscribeOptions { start: Start::Earliest, ..Default::default() };
//! let mut subscriber = client.subscriber("md.AAPL", options)?;
//! let mut publisher = client.publisher("md.AAPL", config)?;
//! publisher.publish(b"hello", 7)?;
//! let prices: [u64; 4] = [101, 102, 103, 104];
//! publisher.publish_value(&prices, 8)?; // plain-old-data, no `unsafe`
//!
//! let mut buf = [0u8; 1024];
//! let got = subscriber.recv(&mut buf)?;
//! assert_eq!((&buf[..got.info.len], got.info.tag), (&b"hello"[..], 7));
//! let got = subscriber.recv(&mut buf)?;
//! let back: [u64; 4] = ringbus::client::from_bytes(&buf[..got.info.len]).unwrap();
//! assert_eq!(back, prices);
//! # drop((publisher, subscriber, client));
//! # broker.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Delivery guarantees
//!
//! * **Order**: the messages of one publisher arrive in the order they were
//!   published. A topic with several publishers has one ring each; a
//!   subscriber reads them all, in no defined order between publishers.
//! * **Never torn**: a message arrives whole or not at all. A publisher
//!   killed in the middle of a write exposes nothing of that message.
//! * **Overwrite mode** ([`Mode::Overwrite`](ring::Mode)): the publisher
//!   never waits. A subscriber more than `capacity` messages behind loses
//!   the oldest ones and is told: the next receive returns
//!   [`RecvError::Lagged`](ring::RecvError) with the number missed, then
//!   reading goes on ([`Subscriber::lagged_total`](client::Subscriber)
//!   counts them). No loss is silent.
//! * **Back-pressure mode** ([`Mode::Backpressure`](ring::Mode)): nothing is
//!   lost. The publisher never overwrites a message a live subscriber has
//!   not read; it waits (`publish`), gives up (`publish_timeout`) or says
//!   `Full` (`try_publish`). Zero-copy receive is offered here.
//! * **Where a subscriber starts** ([`Start`](ring::Start)), in the rings
//!   that exist when it subscribes: the next message (`Latest`, the
//!   default), the oldest still held (`Earliest`), or a sequence number
//!   (`Sequence`; one the ring no longer holds is reported as `Lagged`).
//! * **Rings that appear later** (a publisher that joins after the
//!   subscription) are read from their first message, whatever the start.
//!   In back-pressure mode the broker claims a cursor for every existing
//!   subscriber before the new publisher may write, so nothing is lost; in
//!   overwrite mode a publisher that wrote more than `capacity` messages
//!   before the subscriber looked costs a reported `Lagged`.
//! * **A lossless start**, then: subscribe with `Start::Earliest` to a
//!   back-pressure topic before its publishers start (as above); every
//!   message of every publisher arrives, in order per publisher.
//! * **Crashes**: a subscriber that dies stops holding back its publishers
//!   (the broker frees its cursor); a publisher that dies ends its ring,
//!   which its subscribers drain before they see
//!   [`RecvError::EndOfStream`](ring::RecvError) for it. Publishers and
//!   subscribers keep exchanging messages while the broker is down; a
//!   restarted broker re-adopts the rings.
//!
//! # Crate layout
//!
//! [`ring`] is the ring itself (memory-agnostic: heap for tests and model
//! checking, mapped files for real use); [`wait`] the wait strategies;
//! [`shm`] the shared-memory segments; [`control`] the socket protocol;
//! [`journal`] the on-disk log of durable topics;
//! [`broker`] the daemon; [`client`] the API most programs use. See
//! `DESIGN.md` for the architecture.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod broker;
pub mod client;
pub mod clock;
pub mod control;
pub mod journal;
pub mod layout;
pub mod ring;
pub mod shm;
pub(crate) mod sync;
pub mod wait;

/// The README's Rust examples, compiled as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
