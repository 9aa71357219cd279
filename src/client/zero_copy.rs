//! Zero-copy receive on a [`Subscriber`]: a view of the message in its
//! ring, for back-pressure topics (in overwrite mode the publisher may
//! rewrite a slot while it is read, so only copying receives are offered).

use std::time::{Duration, Instant};

use super::subscriber::GENERATION_CHECK_EVERY;
use super::Subscriber;
use crate::ring::{BatchRef, MessageInfo, MessageRef, Mode, RecvError};
use crate::wait::Limit;

impl Subscriber {
    /// Zero-copy receive without waiting: the next message of any ring, read
    /// in place, with the id of its ring. The message's slot is held (the
    /// publisher cannot reuse it) until the view is dropped.
    ///
    /// ```no_run
    /// # use ringbus::client::{Client, SubscribeOptions};
    /// # let client = Client::connect_default()?;
    /// let mut sub = client.subscriber("orders", SubscribeOptions::default())?;
    /// if let Ok((ring_id, msg)) = sub.try_recv_ref() {
    ///     println!("{} bytes from ring {ring_id}, tag {}", msg.len(), msg.info().tag);
    /// } // the slot is released here
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`RecvError::ZeroCopyUnsupported`] on an overwrite topic; otherwise
    /// as [`Subscriber::try_recv`] (never `BufferTooSmall`).
    #[inline]
    pub fn try_recv_ref(&mut self) -> Result<(u64, MessageRef<'_>), RecvError> {
        let i = self.ready_ring()?;
        self.take_ref(i)
    }

    /// As [`Subscriber::try_recv_ref`], waiting as the subscription's wait
    /// strategy says, at most `timeout`.
    ///
    /// # Errors
    /// [`RecvError::Timeout`]; as [`Subscriber::try_recv_ref`].
    pub fn recv_ref_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<(u64, MessageRef<'_>), RecvError> {
        self.recv_ref_deadline(Some(Instant::now() + timeout))
    }

    /// As [`Subscriber::try_recv_ref`], waiting until `deadline` (`None`:
    /// never gives up).
    ///
    /// # Errors
    /// [`RecvError::Timeout`]; as [`Subscriber::try_recv_ref`].
    pub fn recv_ref_deadline(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<(u64, MessageRef<'_>), RecvError> {
        // As in `recv_limit`: created at the first idle step.
        let mut idle = None;
        let mut limit = Limit::by(deadline);
        loop {
            match self.ready_ring() {
                Ok(i) => return self.take_ref(i),
                Err(RecvError::Empty) => {}
                Err(e) => return Err(e),
            }
            self.idle(&mut idle, &mut limit)?;
        }
    }

    /// Zero-copy receive of a batch without waiting: the messages ready
    /// now in one ring, in order, handed to `f` in place (with the ring's
    /// id) while it asks for more; they stay held (the cursor does not
    /// pass them) until the batch is dropped (see
    /// [`crate::ring::Consumer::try_recv_ref_batch`]). Returns the ring's
    /// id and the batch. A filtering subscription gets batches of one.
    ///
    /// # Errors
    /// As [`Subscriber::try_recv_ref`].
    pub fn try_recv_ref_batch(
        &mut self,
        mut f: impl FnMut(u64, &[u8], MessageInfo) -> bool,
    ) -> Result<(u64, BatchRef<'_>), RecvError> {
        let i = self.ready_ring()?;
        // With a filter, `ready_ring` passed over what it turns down up to
        // the first message it keeps, and the messages after it are not
        // judged yet: a batch of one.
        let more = !self.fan_in.filtering;
        let ring = &mut self.fan_in.rings[i];
        let id = ring.ring_id;
        ring.consumer
            .try_recv_ref_batch(|bytes, info| f(id, bytes, info) && more)
            .map(|b| (id, b))
    }

    /// Waits, as the subscription's wait strategy says, until a message is
    /// ready or `deadline` passes, without receiving it: what a caller of
    /// [`Subscriber::try_recv_ref_batch`] does when it finds none.
    ///
    /// # Errors
    /// [`RecvError::Timeout`]; as [`Subscriber::try_recv_ref`].
    pub fn wait_ready(&mut self, deadline: Option<Instant>) -> Result<(), RecvError> {
        let mut idle = None;
        let mut limit = Limit::by(deadline);
        loop {
            match self.ready_ring() {
                Ok(_) => return Ok(()),
                Err(RecvError::Empty) => {}
                Err(e) => return Err(e),
            }
            self.idle(&mut idle, &mut limit)?;
        }
    }

    /// The index of a ring with something to read, looking for new rings
    /// as `try_recv` does.
    fn ready_ring(&mut self) -> Result<usize, RecvError> {
        // A replay's messages are in the journal's memory, not in a slot.
        if self.config().is_some_and(|c| c.mode == Mode::Overwrite) || self.replaying() {
            return Err(RecvError::ZeroCopyUnsupported);
        }
        self.since_check += 1;
        if self.since_check >= GENERATION_CHECK_EVERY {
            if let Some(r) = self.look_around(&mut []) {
                // Without a replay it returns losses only.
                return Err(r.err().unwrap_or(RecvError::Empty));
            }
        }
        match self.fan_in.ready() {
            Err(RecvError::Empty) if self.refresh() => match self.fan_in.take_pending() {
                Some(e) => Err(e),
                None => self.fan_in.ready(),
            },
            r => r,
        }
    }

    fn take_ref(&mut self, i: usize) -> Result<(u64, MessageRef<'_>), RecvError> {
        let ring = &mut self.fan_in.rings[i];
        let id = ring.ring_id;
        ring.consumer.try_recv_ref().map(|m| (id, m))
    }
}
