"""Publishes COUNT messages to TOPIC (back-pressure: none is lost), half
with a copying publish of a numpy array, half written in place in the ring
slot (zero-copy loan). Each message starts with its index (little-endian).

    python examples/python/publisher.py TOPIC [COUNT]

The broker's socket is $RINGBUS_SOCKET or the default path (start one with
`ringbus serve`)."""

import struct
import sys

import ringbus


def main() -> None:
    topic = sys.argv[1] if len(sys.argv) > 1 else "demo"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    client = ringbus.Client()
    with client.publisher(
        topic, mode="backpressure", max_message_size=64, capacity=256, timestamps=True
    ) as pub:
        for i in range(count):
            if i % 2:
                # Any buffer: bytes, bytearray, memoryview, numpy arrays...
                pub.publish(struct.pack("<Qd", i, i * 0.5), tag=i)
            else:
                with pub.loan(16, tag=i) as slot:  # a writable view of the ring slot
                    struct.pack_into("<Qd", slot, 0, i, i * 0.5)
        print(f"published {count} messages to {topic}")
    # Leaving the block closes the publisher: subscribers drain its ring,
    # then see its end of stream.


if __name__ == "__main__":
    main()
