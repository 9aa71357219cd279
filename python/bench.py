"""Python next to Rust, in the same run: 64-byte ping-pong between two
processes (one-way latency p50, round trip / 2) and streaming from one
process to another (messages per second), through a broker of our own.
The Rust figures come from `ringbus bench` (built with cargo --release) on
the same sizes and settings. Prints a small table; figures vary with the
machine's load, so compare rows of one run.

    python python/bench.py [--iters N] [--stream N] [--no-rust]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Run as `python python/bench.py`, the source tree's ringbus/ (which lacks
# the compiled module) would shadow the installed package.
HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE]

import ringbus  # noqa: E402

REPO = HERE.parent
SIZE = 64
STOP = (1 << 64) - 1
CPUS = os.sched_getaffinity(0)


def pin(index: int) -> None:
    """Pins this process to the index-th CPU it may use, when there are two."""
    cpus = sorted(CPUS)
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[index]})


def pong(ping: str, back: str) -> None:
    """Child: echoes every ping until the stop tag."""
    pin(1)
    client = ringbus.Client()
    sub = client.subscriber(ping, wait="spin")
    pub = client.publisher(back, max_message_size=SIZE, capacity=64)
    print("ready", flush=True)
    while True:
        m = sub.recv()
        if m.tag == STOP:
            return
        pub.publish(m.data, m.tag)


def ping_pong(iters: int) -> float:
    """One-way latency p50 in ns, Python to Python."""
    ping, back = f"bench.ping.{os.getpid()}", f"bench.pong.{os.getpid()}"
    child = subprocess.Popen(
        [sys.executable, __file__, "--role", "pong", ping, back],
        stdout=subprocess.PIPE, text=True,
    )
    assert child.stdout.readline().strip() == "ready"
    pin(0)
    client = ringbus.Client()
    sub = client.subscriber(back, wait="spin")
    pub = client.publisher(ping, max_message_size=SIZE, capacity=64)
    payload = bytes(SIZE)
    # Until the child has seen our ring, pings are lost: retry.
    while True:
        pub.publish(payload, 0)
        try:
            sub.recv(timeout=0.01)
            break
        except ringbus.Timeout:
            pass
    while sub.try_recv() is not None or _drain(sub):
        pass
    samples = []
    clock = time.perf_counter_ns
    for i in range(1, iters + 1):
        t0 = clock()
        pub.publish(payload, i)
        m = sub.recv()
        samples.append(clock() - t0)
        assert m.tag == i, (m.tag, i)
    pub.publish(b"", STOP)
    child.wait(timeout=60)
    return statistics.median(samples) / 2


def _drain(sub) -> bool:
    """Waits briefly for late answers to the warm-up pings."""
    try:
        sub.recv(timeout=0.05)
        return True
    except ringbus.Timeout:
        return False


def stream_publisher(topic: str, count: int) -> None:
    """Child: publishes `count` 64-byte messages as fast as it can."""
    pin(1)
    pub = ringbus.Client().publisher(
        topic, mode="backpressure", max_message_size=SIZE, capacity=4096
    )
    print("ready", flush=True)
    input()  # go
    payload = bytes(SIZE)
    publish = pub.publish
    for i in range(count):
        publish(payload, i)
    pub.close()


def streaming(count: int) -> float:
    """Messages per second, Python publisher to Python subscriber."""
    topic = f"bench.stream.{os.getpid()}"
    pin(0)
    sub = ringbus.Client().subscriber(topic, wait="spin")
    child = subprocess.Popen(
        [sys.executable, __file__, "--role", "stream", topic, str(count)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert child.stdout.readline().strip() == "ready"
    child.stdin.write("\n")
    child.stdin.flush()
    recv = sub.recv
    first = recv()
    t0 = time.perf_counter()
    for _ in range(count - 1):
        recv().data
    elapsed = time.perf_counter() - t0
    child.wait(timeout=60)
    assert first.seq == 0
    return (count - 1) / elapsed


def rust(iters: int) -> tuple[float, float]:
    """`ringbus bench`'s ping-pong p50 (one-way ns) and streaming msgs/s
    for 64-byte back-pressure messages with a spinning subscriber."""
    out = subprocess.run(
        ["cargo", "run", "--release", "--quiet", "-p", "ringbus-cli", "--", "bench",
         "--sizes", str(SIZE), "--wait", "spin", "--mode", "backpressure",
         "--scenarios", "ping-pong,streaming", "--iters", str(iters), "--json"],
        cwd=REPO, capture_output=True, text=True,
        # The bench starts a broker of its own.
        env={k: v for k, v in os.environ.items() if k != "RINGBUS_SOCKET"},
    )
    if out.returncode != 0:
        sys.exit(f"ringbus bench failed:\n{out.stderr}")
    rows = json.loads(out.stdout)["rows"]
    kind = lambda r: r["scenario"]["kind"]  # noqa: E731
    p50 = next(r["latency"]["p50"] for r in rows if kind(r) == "ring-ping-pong")
    rate = next(r["msgs_per_s"] for r in rows if kind(r) == "ring-throughput")
    return p50, rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=20_000, help="ping-pong round trips")
    ap.add_argument("--stream", type=int, default=500_000, help="streamed messages")
    ap.add_argument("--no-rust", action="store_true", help="skip the Rust figures")
    ap.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role:
        role, *args = a.role
        if role == "pong":
            pong(*args)
        else:
            stream_publisher(args[0], int(args[1]))
        return

    rows = []
    with ringbus.EmbeddedBroker() as broker:
        os.environ["RINGBUS_SOCKET"] = broker.socket  # for the children
        p50 = ping_pong(a.iters)
        rate = streaming(a.stream)
        rows.append(("Python -> Python", p50, rate))
    del os.environ["RINGBUS_SOCKET"]
    os.sched_setaffinity(0, CPUS)  # the Rust bench pins its own processes
    if not a.no_rust:
        print("building and running `ringbus bench` (cargo --release)...", file=sys.stderr)
        p50, rate = rust(a.iters)
        rows.append(("Rust (ringbus bench)", p50, rate))
    print(f"\n{SIZE}-byte messages, back-pressure topic, spinning subscriber")
    print(f"{'':<22} {'ping-pong p50 (one-way)':>24} {'streaming':>16}")
    for name, p50, rate in rows:
        print(f"{name:<22} {p50 / 1000:>21.2f} us {rate / 1e6:>10.2f} M msg/s")


if __name__ == "__main__":
    main()
