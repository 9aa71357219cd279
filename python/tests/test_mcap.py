"""`ringbus record` writes MCAP files that the Python `mcap` package (what
Foxglove's and ROS 2's Python tooling read with) opens: one channel per
topic and ring, with the topic's metadata, and every message framed as
sequence number, tag and payload, in order."""

from __future__ import annotations

import struct
import subprocess

from mcap.reader import make_reader

from conftest import PATIENCE, child_env


def payload(topic: str, i: int) -> bytes:
    return topic.encode() + b":" + struct.pack("<Q", i) * 3


def test_ringbus_record_writes_mcap_the_python_mcap_package_reads(
    client, broker, native, tmp_path
):
    n = 500
    topics = ["mc.alpha", "mc.beta", "mc.gamma"]
    # Kept open while recording: the rings hold every message (capacity
    # above n), and `--from earliest` records them from the first.
    pubs = [
        client.publisher(t, mode="overwrite", capacity=1024, max_message_size=64)
        for t in topics
    ]
    for k, pub in enumerate(pubs):
        for i in range(n):
            pub.publish(payload(topics[k], i), tag=1000 * k + i)
    out = tmp_path / "rec.mcap"
    rec = subprocess.run(
        [str(native.ringbus), "record", "mc.>", "--from", "earliest",
         "--count", str(3 * n), "-o", str(out)],
        env=child_env(broker),
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert rec.returncode == 0, rec.stderr
    for pub in pubs:
        pub.close()

    with open(out, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None
        channels = summary.channels
        assert sorted(c.topic for c in channels.values()) == topics
        for c in channels.values():
            assert c.message_encoding == "ringbus.framed"
            assert c.metadata["ringbus.topic"] == c.topic
            assert int(c.metadata["ringbus.ring"]) > 0
            assert c.metadata["ringbus.mode"] == "overwrite"
            assert c.metadata["ringbus.max_message_size"] == "64"
        assert summary.statistics.message_count == 3 * n
        seen = {t: [] for t in topics}
        for _schema, channel, message in reader.iter_messages(log_time_order=False):
            seq, tag = struct.unpack_from("<QQ", message.data)
            k = topics.index(channel.topic)
            assert tag == 1000 * k + seq
            assert message.data[16:] == payload(channel.topic, seq)
            assert message.sequence == seq
            assert message.log_time > 0 and message.publish_time == message.log_time
            seen[channel.topic].append(seq)
    assert seen == {t: list(range(n)) for t in topics}
