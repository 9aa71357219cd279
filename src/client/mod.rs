//! The Rust client: connect to a broker, publish to and subscribe to
//! topics. The broker is only on the setup path; messages go through the
//! rings in shared memory ([`crate::ring`]) at the ring's own speed.
//!
//! ```no_run
//! use ringbus::client::{Client, SubscribeOptions, TopicConfig};
//!
//! let client = Client::connect_default()?;
//! let mut publisher = client.publisher("md.AAPL", TopicConfig::default())?;
//! let mut subscriber = client.subscriber("md.AAPL", SubscribeOptions::default())?;
//! publisher.publish(b"hello", 0)?;
//! let mut buf = [0u8; 1024];
//! let got = subscriber.recv(&mut buf)?;
//! assert_eq!(&buf[..got.info.len], b"hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The files: [`Client`] (the connection to the broker), [`Publisher`],
//! [`Subscriber`] (subscribing, following new rings, receiving), the fan-in
//! over a subscription's rings, zero-copy receive, and [`Pod`] payloads.

mod connection;
mod fan_in;
mod group;
mod pod;
mod publisher;
mod replay;
mod subscriber;
mod zero_copy;

pub use connection::Client;
pub use group::{
    DeadLetter, GroupDelivery, GroupError, GroupOptions, GroupSubscriber, DEFAULT_MAX_DELIVERIES,
};
pub use pod::{bytes_of, from_bytes, Pod};
pub use publisher::Publisher;
pub use subscriber::{Delivery, RingState, SubscribeOptions, Subscriber};

pub use crate::ring::{Mode, TopicConfig};

use crate::control::frame::{ErrorCode, Reply};
use crate::control::segment::SegmentError;
use crate::control::ConnectionError;
use crate::ring::AttachError;
use crate::shm::ShmError;

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The ACL refuses this user the action on the topic; the message names
    /// both.
    #[error("{0}")]
    PermissionDenied(String),
    /// The topic exists with another config; the message shows both.
    #[error("{0}")]
    ConfigMismatch(String),
    /// Talking to the broker failed, or it refused the request.
    #[error(transparent)]
    Control(#[from] ConnectionError),
    /// A ring handed out by the broker could not be mapped.
    #[error("cannot map a ring of topic {topic:?}: {source}")]
    Shm {
        /// The topic.
        topic: String,
        /// What failed.
        #[source]
        source: ShmError,
    },
    /// A ring could not be joined (e.g. every back-pressure cursor is taken).
    #[error("cannot attach to a ring of topic {topic:?}: {source}")]
    Attach {
        /// The topic.
        topic: String,
        /// What failed.
        #[source]
        source: AttachError,
    },
    /// The topic segment handed out by the broker is unusable.
    #[error(transparent)]
    Segment(#[from] SegmentError),
}

impl ClientError {
    /// The broker's error code, when the broker refused the request.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::PermissionDenied(_) => Some(ErrorCode::PermissionDenied),
            ClientError::ConfigMismatch(_) => Some(ErrorCode::ConfigMismatch),
            ClientError::Control(ConnectionError::Refused { code, .. }) => Some(*code),
            _ => None,
        }
    }
}

/// A broker's refusal as the [`ClientError`] that names it.
fn refine(e: ConnectionError) -> ClientError {
    match e {
        ConnectionError::Refused {
            code: ErrorCode::PermissionDenied,
            message,
        } => ClientError::PermissionDenied(message),
        ConnectionError::Refused {
            code: ErrorCode::ConfigMismatch,
            message,
        } => ClientError::ConfigMismatch(message),
        e => ClientError::Control(e),
    }
}

/// A reply the request does not call for (or one missing its descriptors).
fn unexpected(reply: &Reply) -> ClientError {
    ClientError::Control(ConnectionError::Unexpected(format!("{reply:?}")))
}

const _: () = {
    const fn is_send<T: Send>() {}
    is_send::<Publisher>();
    is_send::<Subscriber>();
    is_send::<Client>();
};
