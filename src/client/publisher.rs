//! [`Publisher`]: one publisher of a topic, writing its own ring.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use super::{unexpected, Client, ClientError, Pod};
use crate::control::codec::decode_reply;
use crate::control::frame::{Reply, Request};
use crate::control::socket;
use crate::ring::{
    Loan, LoanMany, PortChange, PortFlags, PortSource, Producer, PublishError, TopicConfig,
};
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
        let (Some(data), Some(lobby), Some(desk), Some(channel)) =
            (fds.next(), fds.next(), fds.next(), fds.next())
        else {
            return Err(unexpected(&reply));
        };
        let made = (|| {
            let data = File::from(data);
            let shm_err = |source| ClientError::Shm {
                topic: topic.to_owned(),
                source,
            };
            crate::shm::allocate_data(&data).map_err(shm_err)?;
            let region = crate::shm::map_ring(
                &data,
                &File::from(lobby),
                Some(&File::from(desk)),
                Access::ReadWrite,
                Some(&config),
            )
            .map_err(shm_err)?;
            let mut producer = Producer::new(region).map_err(|source| ClientError::Attach {
                topic: topic.to_owned(),
                source,
            })?;
            producer.set_port_source(Box::new(Channel::new(channel, config, ring_id)?));
            // Mapped: the broker may now seal the data against every other
            // writer and hand the ring to subscribers.
            match client.call(&Request::RingReady { lease })? {
                (Reply::Ready { .. }, _) => Ok(producer),
                (other, _) => Err(unexpected(&other)),
            }
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

    /// Publishes every message of `msgs` in order, each with `tag`;
    /// returns their sequence numbers. Each is readable once written; the
    /// ring's head, the wake-up of sleeping subscribers and the look for
    /// new ones come once per batch (see [`Producer::publish_batch`]). On
    /// a back-pressure topic, waits for room as
    /// [`publish`](Publisher::publish) does.
    ///
    /// # Errors
    /// [`PublishError::TooLarge`] if any message exceeds the topic's
    /// `max_message_size`: then none is published.
    pub fn publish_batch<M: AsRef<[u8]>>(
        &mut self,
        msgs: &[M],
        tag: u64,
    ) -> Result<std::ops::Range<u64>, PublishError> {
        self.producer.publish_batch(msgs, tag)
    }

    /// As [`Publisher::publish_batch`], but never waits: publishes the
    /// longest prefix of `msgs` that fits now and returns its sequence
    /// numbers.
    ///
    /// # Errors
    /// [`PublishError::Full`] when not even the first message fits;
    /// [`PublishError::TooLarge`] (none published).
    pub fn try_publish_batch<M: AsRef<[u8]>>(
        &mut self,
        msgs: &[M],
        tag: u64,
    ) -> Result<std::ops::Range<u64>, PublishError> {
        self.producer.try_publish_batch(msgs, tag)
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

    /// Borrows the next `n` slots' payload areas (`len` bytes each) to be
    /// filled in place; [`LoanMany::commit`] publishes them in order with
    /// one update of the ring's head and one wake-up for the lot (see
    /// [`Producer::loan_many`]). Waits until all `n` are free. Dropping it
    /// publishes nothing.
    ///
    /// ```no_run
    /// # use ringbus::client::{Client, TopicConfig};
    /// # let client = Client::connect_default()?;
    /// let mut publisher = client.publisher("ticks", TopicConfig::default())?;
    /// let mut loans = publisher.loan_many(16, 8)?;
    /// for (i, slot) in loans.iter_mut().enumerate() {
    ///     slot.copy_from_slice(&(i as u64).to_le_bytes());
    /// }
    /// let seqs = loans.commit(0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`PublishError::TooLarge`]; [`PublishError::TooMany`] when `n`
    /// exceeds the topic's capacity.
    #[inline(always)]
    pub fn loan_many(&mut self, n: usize, len: usize) -> Result<LoanMany<'_>, PublishError> {
        self.producer.loan_many(n, len)
    }

    /// As [`Publisher::loan_many`], waiting at most `timeout` for room.
    ///
    /// # Errors
    /// [`PublishError::Timeout`]; as `loan_many`.
    pub fn loan_many_timeout(
        &mut self,
        n: usize,
        len: usize,
        timeout: Duration,
    ) -> Result<LoanMany<'_>, PublishError> {
        self.producer.loan_many_timeout(n, len, timeout)
    }

    /// As [`Publisher::loan_many`], but never waits.
    ///
    /// # Errors
    /// [`PublishError::Full`] when fewer than `n` slots are free; as
    /// `loan_many`.
    pub fn try_loan_many(&mut self, n: usize, len: usize) -> Result<LoanMany<'_>, PublishError> {
        self.producer.try_loan_many(n, len)
    }

    /// Whether messages carry a publish timestamp (CLOCK_MONOTONIC ns).
    /// Off by default: reading the clock costs a few nanoseconds on every
    /// message's critical path.
    pub fn set_timestamps(&mut self, on: bool) {
        self.producer.set_timestamps(on);
    }

    /// Counts `n` messages lost before they reached this publisher's ring
    /// (a bridge importing from another host: a gap in the far side's
    /// sequence, a message dropped because the ring stayed full).
    /// `ringbus topics` shows the count per ring; subscribers are not
    /// told.
    pub fn report_lost(&mut self, n: u64) {
        self.producer.report_lost(n);
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

/// The publisher's end of its ring's channel: the broker queues each new
/// port there (with its descriptor) and each port that went away, then
/// bumps the ring's generation; the producer drains it without waiting
/// whenever the generation moved (see [`PortSource`]).
struct Channel {
    sock: OwnedFd,
    config: TopicConfig,
    ring_id: u64,
    /// The broker closed its end: no port will come any more.
    closed: bool,
}

impl Channel {
    fn new(sock: OwnedFd, config: TopicConfig, ring_id: u64) -> Result<Channel, ClientError> {
        rustix::io::ioctl_fionbio(&sock, true)
            .map_err(|e| ClientError::Control(crate::control::ConnectionError::Io(e.into())))?;
        Ok(Channel {
            sock,
            config,
            ring_id,
            closed: false,
        })
    }
}

impl PortSource for Channel {
    fn take(&mut self) -> Option<Vec<PortChange>> {
        if self.closed {
            return None;
        }
        let mut changes = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            let got = match socket::recv_frame(self.sock.as_fd(), &mut buf) {
                Ok(Some(got)) => got,
                Ok(None) => {
                    self.closed = true;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.closed = true;
                    break;
                }
            };
            // Anything else than a port notice (or a port that cannot be
            // mapped) is skipped: its subscriber then reads without the
            // publisher knowing it, as if the ring had no room for it.
            let notice = if got.truncated {
                continue;
            } else {
                decode_reply(&buf[..got.len])
            };
            match (notice, got.fds.into_iter().next()) {
                (
                    Ok(Reply::PortAdded {
                        port_id,
                        mailbox,
                        trusted,
                    }),
                    Some(fd),
                ) => {
                    let file = File::from(fd);
                    if let Ok(port) = crate::shm::map_port(&file, &self.config, self.ring_id) {
                        if port.port_id() == port_id {
                            changes.push(PortChange::Add {
                                port,
                                flags: PortFlags { mailbox, trusted },
                            });
                        }
                    }
                }
                (Ok(Reply::PortRemoved { port_id }), _) => {
                    changes.push(PortChange::Remove { port_id });
                }
                _ => {}
            }
        }
        if self.closed && changes.is_empty() {
            return None;
        }
        Some(changes)
    }
}
