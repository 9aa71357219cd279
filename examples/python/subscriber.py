"""Receives messages from TOPIC and prints a line per message (or, with a
COUNT, stops after COUNT and checks they came in order). Ctrl-C stops it.

    python examples/python/subscriber.py TOPIC [COUNT]

The broker's socket is $RINGBUS_SOCKET or the default path."""

import struct
import sys

import ringbus


def main() -> None:
    topic = sys.argv[1] if len(sys.argv) > 1 else "demo"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else None
    client = ringbus.Client()
    sub = client.subscriber(topic, start="earliest")
    print(f"subscribed to {topic}", flush=True)
    received = 0
    try:
        while count is None or received < count:
            try:
                for msg in sub:  # waits; skips the end of a publisher's ring
                    # On back-pressure topics the message is read in place:
                    # `with msg` gives its slot back as soon as we are done.
                    with msg:
                        index, value = struct.unpack_from("<Qd", msg.view())
                    age_us = (ringbus.now_ns() - msg.timestamp) / 1e3 if msg.timestamp else 0
                    if count is None:
                        print(f"ring {msg.ring_id} seq {msg.seq} tag {msg.tag}: "
                              f"{index} {value} ({age_us:.1f} us old)")
                    elif msg.seq != index or msg.tag != index:
                        sys.exit(f"message {received} out of order: seq {msg.seq}, index {index}")
                    received += 1
                    if count is not None and received == count:
                        break
            except ringbus.Lagged as lag:  # overwrite topics: reported once, then go on
                print(f"lost {lag.missed} messages", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    print(f"received {received} messages")


if __name__ == "__main__":
    main()
