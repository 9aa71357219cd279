"""ringbus: a shared-memory message broker for processes on one Linux host.

    import ringbus

    client = ringbus.Client()                      # $RINGBUS_SOCKET or the default
    pub = client.publisher("demo", mode="backpressure")
    sub = client.subscriber("demo")
    pub.publish(b"hello", tag=7)
    msg = sub.recv(timeout=1.0)
    assert msg.data == b"hello" and msg.tag == 7

See python/README.md for the semantics (zero-copy, errors, threads).
"""

from ._errors import *  # noqa: F401,F403
from ._errors import __all__ as _errors_all
from ._ringbus import (
    Client,
    EmbeddedBroker,
    Loan,
    LoanMany,
    Message,
    MessageInfo,
    Publisher,
    Subscriber,
    __version__,
    default_socket,
    now_ns,
)

# Shown as ringbus.Timeout etc., where users catch them.
for _name in _errors_all:
    globals()[_name].__module__ = __name__
del _name

__all__ = [
    "Client",
    "EmbeddedBroker",
    "Loan",
    "LoanMany",
    "Message",
    "MessageInfo",
    "Publisher",
    "Subscriber",
    "default_socket",
    "now_ns",
    "__version__",
    *_errors_all,
]
