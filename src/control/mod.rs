//! The Unix-socket control plane: frames, their byte codec, topic names,
//! `SOCK_SEQPACKET` helpers (descriptor passing, peer credentials), default
//! paths and the client's side of a connection.
//!
//! The broker never touches a message: the control plane only admits
//! clients, creates rings and hands out their descriptors.

pub mod codec;
pub mod frame;
pub mod name;
pub mod paths;
pub mod segment;
pub mod socket;

mod connection;

pub use codec::{decode_reply, decode_request, encode_reply, encode_request, DecodeError};
pub use connection::{Connection, ConnectionError};
pub use frame::{
    BrokerStats, ErrorCode, JournalCounters, Reply, Request, RingInfo, RingRef, TopicConfig,
    TopicInfo, PROTOCOL_VERSION,
};
pub use name::{
    is_pattern, pattern_matches, validate_pattern, validate_topic_name, PatternError,
    TopicNameError, MAX_PATTERN_LEN, MAX_TOPIC_NAME_LEN,
};
pub use socket::PeerCred;
