"""Across processes: Python <-> Python, Python <-> Rust (the `ringbus`
CLI), Python <-> C (examples/c), 100 000 messages in order, and Ctrl-C
in a blocked call."""

from __future__ import annotations

import json
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

import ringbus
from conftest import (
    PATIENCE,
    REPO,
    c_payload,
    child_env,
    finish,
    python_child,
    wait_ready,
)

COUNT = 100_000


def test_python_publisher_to_python_subscriber_100k_in_order(client, broker):
    sub = client.subscriber("stream", start="earliest")
    pub = python_child(
        broker,
        """
        import struct, sys, ringbus
        pub = ringbus.Client().publisher("stream", mode="backpressure",
                                         capacity=1024, max_message_size=64)
        n = int(sys.argv[1])
        for i in range(n):
            if i % 2:
                pub.publish(struct.pack("<Q", i) * 4, tag=i)
            else:
                with pub.loan(8 + i % 9, tag=i) as buf:
                    buf[:8] = struct.pack("<Q", i)
        pub.close()
        print("published", n)
        """,
        str(COUNT),
    )
    for i in range(COUNT):
        m = sub.recv(timeout=PATIENCE)
        assert (m.seq, m.tag) == (i, i), f"message {i}"
        data = m.data
        if i % 2:
            assert data == struct.pack("<Q", i) * 4, f"message {i}"
        else:
            assert len(data) == 8 + i % 9 and data[:8] == struct.pack("<Q", i)
    assert f"published {COUNT}" in finish(pub, "Python publisher")
    with pytest.raises(ringbus.EndOfStream):
        sub.recv(timeout=PATIENCE)


def test_python_subscriber_in_a_child_process(client, broker):
    child = python_child(
        broker,
        """
        import ringbus
        sub = ringbus.Client().subscriber("tochild", start="earliest")
        print("ready", flush=True)
        got = [next(sub).data for _ in range(1000)]
        assert got == [b"m%d" % i for i in range(1000)], got[:5]
        print("ok")
        """,
    )
    wait_ready(child)
    pub = client.publisher("tochild", mode="backpressure", capacity=64)
    for i in range(1000):
        pub.publish(b"m%d" % i)
    assert "ok" in finish(child, "Python subscriber")


def test_rust_publisher_to_python_subscriber(client, broker, native):
    sub = client.subscriber("fromrust")
    n = 20_000
    cli = subprocess.Popen(
        [str(native.ringbus), "pub", "fromrust", "--count", str(n), "--size", "64",
         "--mode", "backpressure", "--capacity", "256", "--tag", "5"],
        env=child_env(broker),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for i in range(n):
        m = sub.recv(timeout=PATIENCE)
        assert (m.seq, m.tag) == (i, 5)
        # `ringbus pub --count`: the sequence number, then a letter.
        assert m.data == struct.pack("<Q", i) + bytes([ord("a") + i % 26]) * 56
        assert m.timestamp > 0  # the CLI stamps its messages
    finish(cli, "ringbus pub")


def test_python_publisher_to_rust_subscriber(client, broker, native):
    n = 1000
    pub = client.publisher("torust", mode="backpressure", capacity=1024)
    for i in range(n):
        pub.publish(b"text %d" % i, tag=i)
    # Subscribing from the oldest message held reads them all.
    out = subprocess.run(
        [str(native.ringbus), "sub", "torust", "--from", "earliest",
         "--count", str(n), "--json"],
        env=child_env(broker),
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(d["seq"], d["tag"], d["text"]) for d in lines] == [
        (i, i, f"text {i}") for i in range(n)
    ]


def test_c_publisher_to_python_subscriber(client, broker, native):
    sub = client.subscriber("fromc", start="earliest")
    n = 20_000
    c = subprocess.Popen(
        [str(native.c_publisher), "fromc", str(n)],
        env=child_env(broker),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for i in range(n):
        with sub.recv(timeout=PATIENCE) as m:  # zero-copy: back-pressure
            assert m.in_place
            assert (m.seq, m.tag) == (i, i)
            assert m.view() == c_payload(i), f"message {i}"
    assert f"published {n}" in finish(c, "C publisher")


@pytest.mark.parametrize("zero_copy", [False, True])
def test_python_publisher_to_c_subscriber(client, broker, native, zero_copy):
    topic = f"toc{int(zero_copy)}"
    n = 20_000
    args = [str(native.c_subscriber)] + (["-z"] if zero_copy else []) + [topic, str(n)]
    c = subprocess.Popen(args, env=child_env(broker), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    wait_ready(c)
    # The C examples' topic config.
    pub = client.publisher(topic, mode="backpressure", capacity=256, max_message_size=1024)
    for i in range(n):
        data = c_payload(i)
        if i % 2:
            pub.publish(data, tag=i, timeout=PATIENCE)
        else:
            with pub.loan(len(data), tag=i, timeout=PATIENCE) as buf:
                buf[:] = data
    out = finish(c, "C subscriber")
    assert f"received {n} messages" in out and "all intact" in out


BLOCKED = {
    "recv": """
        sub = client.subscriber("sig", wait=WAIT)
        print("ready", flush=True)
        sub.recv()
        """,
    "iteration": """
        sub = client.subscriber("sig", wait=WAIT)
        print("ready", flush=True)
        for m in sub:
            pass
        """,
    "publish": """
        pub = client.publisher("sig", mode="backpressure", capacity=1)
        sub = client.subscriber("sig")
        pub.publish(b"fills the ring")
        print("ready", flush=True)
        pub.publish(b"waits for room")
        """,
    "loan": """
        pub = client.publisher("sig", mode="backpressure", capacity=1)
        sub = client.subscriber("sig")
        pub.publish(b"fills the ring")
        print("ready", flush=True)
        with pub.loan(4):
            pass
        """,
}


@pytest.mark.parametrize(
    "call,wait",
    [("recv", "adaptive"), ("recv", "block"), ("recv", "spin"), ("iteration", "adaptive"),
     ("publish", None), ("loan", None)],
)
def test_ctrl_c_interrupts_a_blocked_call(broker, call, wait):
    body = textwrap.dedent(BLOCKED[call])
    script = (
        "import ringbus\n"
        f"WAIT = {wait!r}\n"
        "client = ringbus.Client()\n"
        "try:\n"
        + textwrap.indent(body, "    ")
        + "except KeyboardInterrupt:\n"
        "    print('KeyboardInterrupt', flush=True)\n"
    )
    child = python_child(broker, script)
    wait_ready(child)
    time.sleep(0.3)  # well into the blocking call
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    out = finish(child, f"child blocked in {call}")
    elapsed = time.monotonic() - sent
    assert "KeyboardInterrupt" in out
    # Bounded, not tight: the wait checks for signals every 50 ms.
    assert elapsed < 20, elapsed


def test_bench_runs():
    """python/bench.py works (tiny counts, Python rows only; no figures checked)."""
    out = subprocess.run(
        [sys.executable, str(REPO / "python" / "bench.py"), "--iters", "200",
         "--stream", "2000", "--no-rust"],
        capture_output=True, text=True, timeout=PATIENCE,
    )
    assert out.returncode == 0, out.stderr
    assert "Python -> Python" in out.stdout and "M msg/s" in out.stdout


def test_a_durable_topic_replays_its_journal_then_goes_live(tmp_path, native):
    """A broker with a durable topic (`ringbus serve --config`): a Python
    subscriber from sequence 0, and one from a time, read what the
    16-message ring no longer holds from the journal, then live ones."""
    import time

    config = tmp_path / "ringbus.toml"
    config.write_text(
        f'[server]\njournal_dir = "{tmp_path / "journal"}"\n\n'
        '[[topic]]\nname = "py.durable"\nmode = "backpressure"\ncapacity = 16\n'
        'max_message_size = 64\ndurable = true\nfsync = "interval:1ms"\n'
    )
    socket = tmp_path / "ringbus.sock"
    server = subprocess.Popen(
        [str(native.ringbus), "--socket", str(socket), "serve",
         "--data-dir", str(tmp_path / "data"), "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + PATIENCE
        while True:
            try:
                client = ringbus.Client(str(socket))
                break
            except ringbus.Error:
                assert server.poll() is None, server.stderr.read()
                assert time.monotonic() < deadline, "the broker did not come up"
                time.sleep(0.01)
        before = time.time() - 1
        pub = client.publisher("py.durable")
        for i in range(500):
            pub.publish(i.to_bytes(8, "little"))
        subs = [
            client.subscriber("py.durable", start=0),
            client.subscriber("py.durable", since=before),
        ]
        for sub in subs:
            for i in range(500):
                msg = sub.recv(timeout=PATIENCE)
                assert (msg.seq, int.from_bytes(msg.data, "little")) == (i, i)
        for i in range(500, 510):
            pub.publish(i.to_bytes(8, "little"))
        for sub in subs:
            for i in range(500, 510):
                msg = sub.recv(timeout=PATIENCE)
                assert (msg.seq, int.from_bytes(msg.data, "little")) == (i, i)
        with pytest.raises(ringbus.InvalidArgument):
            client.subscriber("py.durable", start=0, since=before)
    finally:
        server.terminate()
        server.wait(timeout=PATIENCE)
        # The recorder's ports are the keeper's own (they outlive the
        # broker, for the next one): it leaves once its socket is gone.
        shutil.rmtree(tmp_path / "data", ignore_errors=True)
