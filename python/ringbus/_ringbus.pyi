"""Type stubs of the extension module (re-exported by ``ringbus``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Literal, Optional, TypedDict, Union

from typing_extensions import Buffer, Self

__version__: str

Mode = Literal["overwrite", "backpressure"]
WaitStrategy = Literal["adaptive", "spin", "spin-yield", "block"]

class TopicConfig(TypedDict):
    max_message_size: int
    capacity: int
    mode: Mode
    max_subscribers: int

def now_ns() -> int:
    """CLOCK_MONOTONIC nanoseconds, as in ``Message.timestamp``."""

def default_socket() -> str:
    """The socket a ``Client()`` without argument connects to."""

class Client:
    """A connection to a broker, shared by the publishers and subscribers
    made from it."""

    def __init__(self, socket: Optional[Union[str, os.PathLike[str]]] = None) -> None:
        """Connects to the broker at ``socket``; None: ``$RINGBUS_SOCKET``,
        else the default path. Raises ``NoBroker`` when none listens."""
    def publisher(
        self,
        topic: str,
        *,
        max_message_size: Optional[int] = None,
        capacity: Optional[int] = None,
        mode: Optional[Mode] = None,
        max_subscribers: Optional[int] = None,
        timestamps: bool = False,
    ) -> Publisher:
        """Becomes a publisher of ``topic``. No config argument: joins the
        topic with its config, or creates it with the defaults (1024-byte
        messages, 1024 slots, overwrite, 16 subscribers). With any, missing
        ones take the defaults, and an existing topic must match
        (``ConfigMismatch``)."""
    def subscriber(
        self,
        topic: str,
        *,
        start: Union[Literal["latest", "earliest"], int, None] = None,
        wait: WaitStrategy = "adaptive",
        tag: Optional[int] = None,
        tag_mask: Optional[int] = None,
        tag_value: Optional[int] = None,
        tags: Optional[Iterable[int]] = None,
        since: Optional[float] = None,
    ) -> Subscriber:
        """Subscribes to ``topic`` (which need not exist yet), starting at
        ``start`` ("latest" by default) in the rings that exist now; rings
        of later publishers are read from their first message. On a durable
        topic, a sequence ``start`` older than the rings hold, or ``since``
        (seconds since the epoch, as ``time.time()``), reads the journal
        first, then the live rings: no gap, no duplicate. ``topic``
        may be a pattern (``*`` one segment, a final ``>`` the rest), which
        follows topics created later. Filters: ``tag`` (one exact tag),
        ``tag_mask`` with ``tag_value`` (``tag & tag_mask == tag_value``),
        ``tags`` (one of at most 64); bad ones raise ``InvalidArgument``."""
    @property
    def socket(self) -> str: ...
    @property
    def broker_pid(self) -> int: ...

class Publisher:
    """A publisher of one topic, writing its own ring."""

    def publish(self, data: Buffer, tag: int = 0, *, timeout: Optional[float] = None) -> int:
        """Copies ``data`` (bytes or any C-contiguous buffer) into the ring;
        returns its sequence number. A full back-pressure ring is waited on
        at most ``timeout`` seconds (None: no limit), then ``Timeout``."""
    def try_publish(self, data: Buffer, tag: int = 0) -> int:
        """As ``publish``, but raises ``Full`` instead of waiting."""
    def publish_batch(
        self, messages: Sequence[Buffer], tag: int = 0, *, timeout: Optional[float] = None
    ) -> range:
        """Publishes the messages in order with ``tag``, the ring's head and
        the wake-up of sleeping subscribers once per batch; returns their
        sequence numbers. Waits for room like ``publish`` (``timeout`` in
        all); a message too large raises ``TooLarge`` before any is
        published."""
    def loan(self, size: int, tag: int = 0, *, timeout: Optional[float] = None) -> Loan:
        """``with pub.loan(n) as buf:`` lends the next slot as a writable
        memoryview; published when the block ends normally, dropped if it
        raises."""
    def loan_many(
        self, count: int, size: int, tag: int = 0, *, timeout: Optional[float] = None
    ) -> LoanMany:
        """``with pub.loan_many(count, n) as bufs:`` lends the next ``count``
        slots as a list of writable memoryviews; all published in order when
        the block ends normally (one head update and wake-up for the lot),
        none if it raises."""
    def close(self) -> None:
        """Ends the publisher (its subscribers drain the ring, then see its
        end of stream)."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
    @property
    def topic(self) -> str: ...
    @property
    def ring_id(self) -> int: ...
    @property
    def config(self) -> TopicConfig: ...
    @property
    def next_seq(self) -> int: ...
    @property
    def closed(self) -> bool: ...

class Loan:
    """A loan of a ring slot, as a context manager (``Publisher.loan``)."""

    def __enter__(self) -> memoryview: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException] = None,
        tb: Optional[TracebackType] = None,
    ) -> bool: ...
    @property
    def seq(self) -> Optional[int]:
        """The message's sequence number once published."""

class LoanMany:
    """A loan of several ring slots, as a context manager
    (``Publisher.loan_many``)."""

    def __enter__(self) -> list[memoryview]: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException] = None,
        tb: Optional[TracebackType] = None,
    ) -> bool: ...
    @property
    def seqs(self) -> Optional[range]:
        """The messages' sequence numbers once published."""

class MessageInfo:
    """What a filter's predicate is shown of a message besides its payload."""

    @property
    def seq(self) -> int: ...
    @property
    def tag(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def len(self) -> int: ...
    def __len__(self) -> int: ...

class Subscriber:
    """A subscription to one topic, or to every topic a pattern matches
    (every publisher's ring)."""

    def recv(self, timeout: Optional[float] = None) -> Message:
        """Waits for the next message (``timeout`` seconds, None: no limit).
        Raises ``Timeout``, ``Lagged`` (messages lost; reading goes on) or
        ``EndOfStream`` (a publisher left; the subscription goes on)."""
    def try_recv(self) -> Optional[Message]:
        """The next message if one is there, else None; raises as ``recv``."""
    def try_recv_batch(self, max: int = 64) -> list[Message]:
        """Up to ``max`` messages that are ready now, in order (empty when
        none is); raises as ``try_recv`` when the first one fails. What
        ends a batch early (a loss, a ring's end) is the next receive's
        answer."""
    def __iter__(self) -> Iterator[Message]: ...
    def __next__(self) -> Message:
        """Waits without limit; skips ends of streams, raises ``Lagged``
        once per loss (iterating again goes on)."""
    def close(self) -> None:
        """Ends the subscription; a receive waiting in another thread
        raises ``Closed``."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
    @property
    def topic(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    @property
    def config(self) -> Optional[TopicConfig]: ...
    @property
    def lagged_total(self) -> int: ...
    @property
    def backlog(self) -> int:
        """Messages published but not yet read, over its rings."""
    @property
    def topics(self) -> list[str]:
        """The topics read so far (for a pattern, those it matched)."""
    def filter_tags(self, mask: int, value: int) -> None:
        """Keeps only messages whose ``tag & mask == value`` (mask 0: drops
        this condition); the others are skipped before being copied."""
    def filter_tag_set(self, tags: Iterable[int]) -> None:
        """Keeps only messages whose tag is in ``tags`` (at most 64; empty:
        drops this condition)."""
    def filter(self, predicate: Callable[[MessageInfo, bytes], object]) -> None:
        """Keeps only messages ``predicate(info, data)`` finds true, called
        after the tag filters, before the copy. An exception it raises skips
        that message and is raised by the receive; the subscription goes
        on. It must not use this subscriber (``BadState``)."""
    def clear_filters(self) -> None:
        """Drops every filter."""
    @property
    def filtered_total(self) -> int:
        """Messages the filters turned down, over all rings."""

class Message:
    """A received message. On back-pressure topics it is read in place and
    holds its slot until released (``release()``, ``with msg:``, garbage
    collection, or the subscriber's next receive)."""

    @property
    def data(self) -> bytes:
        """The payload as bytes."""
    def view(self) -> memoryview:
        """A read-only memoryview of the payload; for a message read in
        place, the ring's memory itself, valid until release."""
    def release(self) -> None:
        """Gives the slot back to the publisher; the view is released."""
    @property
    def in_place(self) -> bool:
        """Whether the payload is still held in the ring."""
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
    def __len__(self) -> int: ...
    @property
    def seq(self) -> int: ...
    @property
    def tag(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def ring_id(self) -> int: ...
    @property
    def topic(self) -> str:
        """The message's topic (for a pattern subscription, the one it
        matched)."""

class EmbeddedBroker:
    """A broker served by a thread of this process, in a private temporary
    directory; ``stop()`` (or leaving ``with``) stops and removes it."""

    def __init__(self) -> None: ...
    @property
    def socket(self) -> str: ...
    def client(self) -> Client: ...
    def stop(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
