"""The ``ringbus.Error`` hierarchy. Every error carries the library's message
(what was wrong and what to do); some also derive from the built-in
exception they resemble, so ``except TimeoutError`` works too."""

from __future__ import annotations

__all__ = [
    "Error",
    "NoBroker",
    "PermissionDenied",
    "ConfigMismatch",
    "InvalidArgument",
    "LimitExceeded",
    "NotFound",
    "BrokerError",
    "SharedMemoryError",
    "Full",
    "Timeout",
    "TooLarge",
    "Lagged",
    "EndOfStream",
    "Corrupt",
    "ZeroCopyUnsupported",
    "Closed",
    "BadState",
]


class Error(Exception):
    """Base class of every ringbus error."""


class NoBroker(Error, ConnectionError):
    """No broker listens at the socket: start one with ``ringbus serve``."""


class PermissionDenied(Error, PermissionError):
    """The broker's ACL (or the socket's permissions) refuse this user."""


class ConfigMismatch(Error):
    """The topic exists with another config; the message shows both."""


class InvalidArgument(Error, ValueError):
    """A bad topic name, topic config or option value."""


class LimitExceeded(Error):
    """A broker limit is reached (topics, clients, publishers per topic, or
    every back-pressure cursor of a ring is taken)."""


class NotFound(Error, LookupError):
    """No such topic."""


class BrokerError(Error):
    """Talking to the broker failed (connection lost, bad reply, broker
    error)."""


class SharedMemoryError(Error, OSError):
    """A ring handed out by the broker could not be mapped or joined."""


class Full(Error):
    """Back-pressure: the ring has no room (``try_publish``)."""


class Timeout(Error, TimeoutError):
    """Nothing happened before the timeout expired."""


class TooLarge(Error, ValueError):
    """The message exceeds the topic's ``max_message_size``, or a
    ``loan_many`` asks for more slots than the ring holds."""


class Lagged(Error):
    """Messages were overwritten before this subscriber read them
    (overwrite topics). Raised once per loss; receiving goes on with the
    oldest message the ring still holds.

    Attributes: ``missed`` (how many were lost), ``ring_id``."""

    def __init__(self, message: str, missed: int = 0, ring_id: int = 0) -> None:
        super().__init__(message)
        self.missed = missed
        self.ring_id = ring_id


class EndOfStream(Error):
    """A publisher of the topic left and its ring is drained. Not the end of
    the subscription: other publishers' rings (and later ones) go on.

    Attribute: ``ring_id``."""

    def __init__(self, message: str, ring_id: int = 0) -> None:
        super().__init__(message)
        self.ring_id = ring_id


class Corrupt(Error):
    """A slot held an impossible length (a faulty publisher); the message
    was skipped."""


class ZeroCopyUnsupported(Error):
    """Zero-copy receive needs a back-pressure topic."""


class Closed(Error):
    """The publisher or subscriber is closed, or the message released."""


class BadState(Error):
    """The call does not fit the object's state (e.g. a loan is
    outstanding)."""
