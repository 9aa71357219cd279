//! [`Publisher`]: one publisher of a topic, writing its own ring.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use super::{unexpected, Client, ClientError, Pod};
use crate::control::frame::{Reply, Request};
use crate::ring::{Loan, Mailbox, MailboxSource, Producer, PublishError, TopicConfig};
use crate::shm::Access;

/// A publisher of one topic: its own ring, written with
/// [`publish`](Publisher::publish), [`try_publish`](Publisher::try_publish),
/// [`publish_timeout`](Publisher::publish_timeout) or, without a copy,
/// [`loan`](Publisher::loan) and [`Loan::commit`]. Dropping it ends the
/// stream for subscribers (they drain the ring first) and frees its place
/// on the topic.
pub struct Publisher {
    producer: Producer,
    topic: String,
    lease: u64,
    ring_id: u64,
    config: TopicConfig,
    client: Client,
}

impl Publisher {
    /// Asks the broker for a ring of `topic` (with `config`, or the
    /// topic's) and maps it.
    pub(super) fn attach(
        client: &Client,
        topic: &str,
        config: Option<TopicConfig>,
    ) -> Result<Publisher, ClientError> {
        let (reply, fds) = client.call(&Request::AttachPublisher {
            topic: topic.to_owned(),
            config,
        })?;
        let Reply::PublisherAttached {
            lease,
            ring_id,
            config,
        } = reply
        else {
            return Err(unexpected(&reply));
        };
        let mut fds = fds.into_iter();
        let (Some(data), Some(ctrl)) = (fds.next(), fds.next()) else {
            return Err(unexpected(&reply));
        };
        let made = (|| {
            let region = crate::shm::map_ring(
                &File::from(data),
                &File::from(ctrl),
                Access::ReadWrite,
                Some(&config),
            )
            .map_err(|source| ClientError::Shm {
                topic: topic.to_owned(),
                source,
            })?;
            let mut producer = Producer::new(region).map_err(|source| ClientError::Attach {
                topic: topic.to_owned(),
                source,
            })?;
            producer.set_mailbox_source(Box::new(BrokerMailboxes {
                client: client.clone(),
                lease,
                ring_id,
                config,
                mapped: Vec::new(),
            }));
            Ok(producer)
        })();
        match made {
            Ok(producer) => Ok(Publisher {
                producer,
                topic: topic.to_owned(),
                lease,
                ring_id,
                config,
                client: client.clone(),
            }),
            Err(e) => {
                let _ = client.call(&Request::Detach { lease });
                Err(e)
            }
        }
    }

    /// Copies `data` into the ring as one message with `tag`; returns its
    /// sequence number. On a back-pressure topic, waits (without bound)
    /// until the slowest subscriber has made room.
    ///
    /// # Errors
    /// [`PublishError::TooLarge`] if `data` exceeds the topic's
    /// `max_message_size`.
    #[inline(always)]
    pub fn publish(&mut self, data: &[u8], tag: u64) -> Result<u64, PublishError> {
        self.producer.publish(data, tag)
    }

    /// As [`Publisher::publish`], but never waits.
    ///
    /// # Errors
    /// [`PublishError::Full`] on a back-pressure topic whose ring has no
    /// free slot; [`PublishError::TooLarge`].
    #[inline(always)]
    pub fn try_publish(&mut self, data: &[u8], tag: u64) -> Result<u64, PublishError> {
        self.producer.try_publish(data, tag)
    }

    /// As [`Publisher::publish`], waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`PublishError::Timeout`]; [`PublishError::TooLarge`].
    #[inline(always)]
    pub fn publish_timeout(
        &mut self,
        data: &[u8],
        tag: u64,
        timeout: Duration,
    ) -> Result<u64, PublishError> {
        self.producer.publish_timeout(data, tag, timeout)
    }

    /// Publishes a plain-old-data value as the message's bytes (see
    /// [`Pod`]).
    ///
    /// ```no_run
    /// # use ringbus::client::{Client, TopicConfig};
    /// # let client = Client::connect_default()?;
    /// let mut publisher = client.publisher("prices", TopicConfig::default())?;
    /// let prices: [u64; 8] = [101, 102, 103, 104, 105, 106, 107, 108];
    /// publisher.publish_value(&prices, 0)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`Publisher::publish`].
    #[inline(always)]
    pub fn publish_value<T: Pod>(&mut self, value: &T, tag: u64) -> Result<u64, PublishError> {
        self.producer.publish(super::bytes_of(value), tag)
    }

    /// Borrows the next slot's payload area (`len` bytes) to be filled in
    /// place; [`Loan::commit`] publishes it (no copy). Waits for room like
    /// [`Publisher::publish`]. Dropping the loan publishes nothing.
    ///
    /// # Errors
    /// [`PublishError::TooLarge`].
    #[inline(always)]
    pub fn loan(&mut self, len: usize) -> Result<Loan<'_>, PublishError> {
        self.producer.loan(len)
    }

    /// As [`Publisher::loan`], waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`PublishError::Timeout`]; [`PublishError::TooLarge`].
    #[inline(always)]
    pub fn loan_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<Loan<'_>, PublishError> {
        self.producer.loan_timeout(len, timeout)
    }

    /// As [`Publisher::loan`], but never waits.
    ///
    /// # Errors
    /// [`PublishError::Full`]; [`PublishError::TooLarge`].
    #[inline(always)]
    pub fn try_loan(&mut self, len: usize) -> Result<Loan<'_>, PublishError> {
        self.producer.try_loan(len)
    }

    /// Whether messages carry a publish timestamp (CLOCK_MONOTONIC ns).
    /// Off by default: reading the clock costs a few nanoseconds on every
    /// message's critical path.
    pub fn set_timestamps(&mut self, on: bool) {
        self.producer.set_timestamps(on);
    }

    /// How many subscribers' mailboxes each message is also written to
    /// (read-only subscribers that poll one; see DESIGN.md, "Mailboxes").
    pub fn mailboxes(&self) -> usize {
        self.producer.mailboxes()
    }

    /// The sequence number the next message will get.
    pub fn next_seq(&self) -> u64 {
        self.producer.next_seq()
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The id of this publisher's ring.
    pub fn ring_id(&self) -> u64 {
        self.ring_id
    }

    /// The topic's config.
    pub fn config(&self) -> TopicConfig {
        self.config
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        // Best effort: the broker also ends the lease when the connection
        // closes or the process dies. The producer closes the ring when it
        // is dropped right after this.
        let _ = self.client.call(&Request::Detach { lease: self.lease });
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .field("ring_id", &self.ring_id)
            .field("next_seq", &self.producer.next_seq())
            .finish()
    }
}

/// How long a publisher waits for its mailbox list. The fetch runs inside
/// a publish: a hung broker must not hold the publisher for the connection's
/// usual 30 s. A broker that takes longer breaks the connection; the
/// publisher goes on publishing, and new subscribers read the ring slots.
const MAILBOX_FETCH_TIMEOUT: Duration = Duration::from_millis(100);

/// A publisher's [`MailboxSource`]: asks the broker for the mailboxes of its
/// ring and maps those it does not have yet.
struct BrokerMailboxes {
    client: Client,
    lease: u64,
    ring_id: u64,
    config: TopicConfig,
    /// Mailboxes mapped so far, by broker id.
    mapped: Vec<(u64, Arc<Mailbox>)>,
}

impl MailboxSource for BrokerMailboxes {
    fn mailboxes(&mut self) -> Option<Vec<Arc<Mailbox>>> {
        let (reply, fds) = self
            .client
            .call_within(
                &Request::FetchMailboxes { lease: self.lease },
                MAILBOX_FETCH_TIMEOUT,
            )
            .ok()?;
        let Reply::Mailboxes { ids } = reply else {
            return None;
        };
        let mut now = Vec::with_capacity(ids.len());
        for (id, fd) in ids.into_iter().zip(fds) {
            let known = self.mapped.iter().find(|(i, _)| *i == id);
            let mailbox = match known {
                Some((_, m)) => m.clone(),
                // One that cannot be mapped is left out: its subscriber
                // reads the ring instead.
                None => {
                    match crate::shm::map_mailbox(&File::from(fd), &self.config, self.ring_id) {
                        Ok(m) => m,
                        Err(_) => continue,
                    }
                }
            };
            now.push((id, mailbox));
        }
        self.mapped = now;
        Some(self.mapped.iter().map(|(_, m)| m.clone()).collect())
    }
}
