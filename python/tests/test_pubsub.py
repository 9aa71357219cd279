"""Publishing and receiving in one process: payload kinds, loans, waits,
iteration, losses and ends of streams."""

from __future__ import annotations

import array
import threading
import time

import numpy as np
import pytest

import ringbus


def test_round_trip_carries_payload_tag_sequence_and_origin(client):
    pub = client.publisher("rt", timestamps=True)
    sub = client.subscriber("rt")
    assert pub.publish(b"hello", tag=7) == 0
    assert pub.publish(b"world", 8) == 1
    m = sub.recv(timeout=10)
    assert (m.data, m.tag, m.seq, m.topic, m.ring_id) == (b"hello", 7, 0, "rt", pub.ring_id)
    assert 0 < m.timestamp <= ringbus.now_ns()
    assert len(m) == 5 and bytes(m.view()) == b"hello"
    assert sub.recv(timeout=10).data == b"world"
    assert sub.try_recv() is None


@pytest.mark.parametrize("mode", ["overwrite", "backpressure"])
def test_publish_takes_any_contiguous_buffer(client, mode):
    pub = client.publisher("buf", mode=mode, max_message_size=64)
    sub = client.subscriber("buf")
    floats = np.arange(4, dtype=np.float64)
    payloads = [
        b"bytes",
        bytearray(b"bytearray"),
        memoryview(b"..memoryview..")[2:-2],
        floats,
        array.array("i", [1, 2, 3]),
        np.arange(6, dtype=np.uint8).reshape(2, 3),
        b"",
    ]
    for p in payloads:
        pub.publish(p)
    for p in payloads:
        got = sub.recv(timeout=10).data
        assert got == bytes(memoryview(p).cast("B")) if not isinstance(p, bytes) else got == p
    back = np.frombuffer(bytes(memoryview(floats).cast("B")), dtype=np.float64)
    assert (back == floats).all()


def test_non_contiguous_and_non_buffer_payloads_raise(client):
    pub = client.publisher("nc")
    with pytest.raises((BufferError, ValueError), match="contiguous"):
        pub.publish(np.arange(10, dtype=np.uint8)[::2])
    with pytest.raises(TypeError, match="not str"):
        pub.publish("text")
    with pytest.raises(TypeError):
        pub.publish(12)
    with pytest.raises(TypeError):
        pub.publish(None)


def test_loan_commits_on_normal_exit_and_publishes_nothing_on_exception(client):
    pub = client.publisher("loan", mode="backpressure", max_message_size=16)
    sub = client.subscriber("loan")
    loan = pub.loan(4, tag=9)
    with loan as buf:
        assert isinstance(buf, memoryview) and not buf.readonly and len(buf) == 4
        buf[:] = b"abcd"
    assert loan.seq == 0
    with pytest.raises(ValueError):  # the view is released with the loan
        buf[0] = 1
    with pytest.raises(RuntimeError):
        with pub.loan(3) as buf:
            buf[:] = b"xyz"
            raise RuntimeError("abandon")
    with pub.loan(2) as buf:
        np.frombuffer(buf, dtype=np.uint8)[:] = [1, 2]
    m = sub.recv(timeout=10)
    assert (m.data, m.tag, m.seq) == (b"abcd", 9, 0)
    m = sub.recv(timeout=10)
    assert (m.data, m.seq) == (b"\x01\x02", 1)  # the abandoned loan published nothing
    assert sub.try_recv() is None
    with pytest.raises(ringbus.TooLarge):
        with pub.loan(17):
            pass


def test_loan_many_publishes_every_slot_in_order_or_none(client):
    pub = client.publisher("loans", mode="backpressure", capacity=8, max_message_size=16)
    sub = client.subscriber("loans")
    loans = pub.loan_many(3, 4, tag=5)
    with loans as bufs:
        assert [len(b) for b in bufs] == [4, 4, 4]
        assert all(isinstance(b, memoryview) and not b.readonly for b in bufs)
        for i, b in enumerate(bufs):
            b[:] = bytes([i]) * 4
        with pytest.raises(ringbus.BadState, match="loan is outstanding"):
            pub.publish(b"x")
    assert loans.seqs == range(0, 3)
    with pytest.raises(ValueError):  # the views are released with the loan
        bufs[1][0] = 9
    abandoned = pub.loan_many(2, 4)
    with pytest.raises(RuntimeError):
        with abandoned as bufs:
            bufs[0][:] = b"lost"
            raise RuntimeError("abandon")
    assert abandoned.seqs is None
    with pub.loan_many(1, 2) as bufs:
        np.frombuffer(bufs[0], dtype=np.uint8)[:] = [7, 8]
    got = [sub.recv(timeout=10) for _ in range(4)]
    assert [(m.data, m.tag, m.seq) for m in got[:3]] == [
        (b"\x00" * 4, 5, 0),
        (b"\x01" * 4, 5, 1),
        (b"\x02" * 4, 5, 2),
    ]
    assert (got[3].data, got[3].seq) == (b"\x07\x08", 3)  # nothing of the abandoned loan
    assert sub.try_recv() is None


def test_loan_many_refuses_bad_counts_and_sizes_and_waits_for_room(client):
    pub = client.publisher("loans2", mode="backpressure", capacity=4, max_message_size=16)
    sub = client.subscriber("loans2")
    with pytest.raises(ringbus.InvalidArgument):
        pub.loan_many(0, 4)
    with pytest.raises(ringbus.TooLarge):  # more slots than the ring holds
        with pub.loan_many(5, 4):
            pass
    with pytest.raises(ringbus.TooLarge):
        with pub.loan_many(2, 17):
            pass
    pub.publish_batch([b"a", b"b", b"c"])
    with pytest.raises(ringbus.Timeout):  # two slots, one free
        with pub.loan_many(2, 1, timeout=0.05):
            pass
    assert sub.recv(timeout=10).data == b"a"
    sub.recv(timeout=10).release()  # the ring now has room for two
    with pub.loan_many(2, 1) as bufs:
        bufs[0][:] = b"d"
        bufs[1][:] = b"e"
    assert [sub.recv(timeout=10).data for _ in range(3)] == [b"c", b"d", b"e"]


def test_publisher_is_busy_while_a_loan_is_out(client):
    pub = client.publisher("busy")
    with pub.loan(1) as buf:
        buf[0] = 1
        with pytest.raises(ringbus.BadState, match="loan is outstanding"):
            pub.publish(b"x")
    assert pub.publish(b"y") == 1


def test_full_backpressure_ring_raises_full_or_times_out(client):
    pub = client.publisher("full", mode="backpressure", capacity=2)
    sub = client.subscriber("full")
    pub.try_publish(b"1")
    pub.publish(b"2", timeout=0)
    with pytest.raises(ringbus.Full):
        pub.try_publish(b"3")
    t = time.monotonic()
    with pytest.raises(ringbus.Timeout):
        pub.publish(b"3", timeout=0.2)
    with pytest.raises(TimeoutError):  # a Timeout is a TimeoutError too
        with pub.loan(1, timeout=0.05):
            pass
    assert time.monotonic() - t >= 0.2
    assert sub.recv(timeout=10).data == b"1"
    sub.recv(timeout=10).release()
    assert pub.try_publish(b"3") == 2


def test_publish_waits_for_room_released_from_another_thread(client):
    pub = client.publisher("wait", mode="backpressure", capacity=1)
    sub = client.subscriber("wait")
    pub.publish(b"first")
    got = []

    def drain():
        time.sleep(0.2)
        got.append(sub.recv(timeout=10).data)
        got.append(sub.recv(timeout=10).data)

    t = threading.Thread(target=drain)
    t.start()
    assert pub.publish(b"second", timeout=30) == 1  # waits, interpreter released
    t.join()
    assert got == [b"first", b"second"]


def test_publish_batch_is_in_order_all_or_nothing_and_waits(client):
    pub = client.publisher("batch", mode="backpressure", capacity=4, max_message_size=16)
    sub = client.subscriber("batch")
    assert pub.publish_batch([b"a", bytearray(b"bc"), memoryview(b"def")], tag=3) == range(0, 3)
    assert [(m.data, m.tag, m.seq) for m in (sub.recv(timeout=10) for _ in range(3))] == [
        (b"a", 3, 0),
        (b"bc", 3, 1),
        (b"def", 3, 2),
    ]
    with pytest.raises(ringbus.TooLarge):
        pub.publish_batch([b"fits", b"x" * 17])
    with pytest.raises(TypeError):
        pub.publish_batch([b"fits", 5])
    assert pub.publish_batch([]) == range(3, 3)
    assert sub.try_recv() is None
    # Longer than the ring: waits for room, the interpreter released.
    got = []

    def drain():
        for _ in range(10):
            got.append(sub.recv(timeout=10).data)

    t = threading.Thread(target=drain)
    t.start()
    msgs = [bytearray([i]) for i in range(10)]
    assert pub.publish_batch(msgs, timeout=30) == range(3, 13)
    t.join()
    assert got == [bytes([i]) for i in range(10)]
    # Nobody reading: the wait times out after what fitted.
    with pytest.raises(ringbus.Timeout):
        pub.publish_batch([b"1", b"2", b"3", b"4", b"5"], timeout=0.1)
    assert pub.next_seq == 17


def test_try_recv_batch_takes_what_is_ready_and_reports_a_loss_next(client):
    pub = client.publisher("rbatch", mode="overwrite", capacity=8, max_message_size=16)
    sub = client.subscriber("rbatch")
    assert sub.try_recv_batch() == []
    pub.publish_batch([b"a", b"bb", b"ccc"], tag=2)
    got = sub.try_recv_batch(2)
    assert [(m.data, m.seq, m.tag, m.topic) for m in got] == [(b"a", 0, 2, "rbatch"), (b"bb", 1, 2, "rbatch")]
    assert [m.data for m in sub.try_recv_batch(10)] == [b"ccc"]
    assert sub.try_recv_batch(0) == []
    # Lapped: the first receive of the next batch raises, reading goes on.
    for i in range(20):
        pub.publish(bytes([i]))
    with pytest.raises(ringbus.Lagged):
        sub.try_recv_batch(100)
    rest = sub.try_recv_batch(100)
    assert rest and [m.seq for m in rest] == list(range(rest[0].seq, 23))
    with pytest.raises(TypeError):
        sub.try_recv_batch("many")


def test_recv_times_out_and_try_recv_returns_none(client):
    sub = client.subscriber("quiet", wait="block")
    assert sub.try_recv() is None
    t = time.monotonic()
    with pytest.raises(ringbus.Timeout):
        sub.recv(timeout=0.2)
    assert time.monotonic() - t >= 0.2
    with pytest.raises(ringbus.Timeout):
        sub.recv(timeout=0)


@pytest.mark.parametrize("wait", ["adaptive", "spin", "spin-yield", "block"])
def test_every_wait_strategy_receives_from_another_thread(client, wait):
    pub = client.publisher("waits")
    sub = client.subscriber("waits", wait=wait)
    t = threading.Timer(0.1, lambda: pub.publish(b"late"))
    t.start()
    assert sub.recv(timeout=30).data == b"late"
    t.join()


def test_start_positions(client):
    pub = client.publisher("start", capacity=16)
    for i in range(5):
        pub.publish(bytes([i]))
    assert client.subscriber("start", start="earliest").recv(timeout=10).data == b"\x00"
    assert client.subscriber("start", start=3).recv(timeout=10).seq == 3
    latest = client.subscriber("start")
    assert latest.try_recv() is None
    pub.publish(b"\x05")
    assert latest.recv(timeout=10).seq == 5


def test_iteration_skips_ends_of_streams_and_raises_lagged_once(client):
    pub = client.publisher("iter", capacity=4)
    sub = client.subscriber("iter")
    for i in range(10):  # laps the subscriber: 6 lost
        pub.publish(bytes([i]))
    with pytest.raises(ringbus.Lagged) as lag:
        next(iter(sub))
    assert lag.value.missed == 6 and lag.value.ring_id == pub.ring_id
    assert sub.lagged_total == 6
    assert sub.backlog == 4
    assert [next(sub).data for _ in range(4)] == [bytes([i]) for i in range(6, 10)]
    assert sub.backlog == 0
    # A second publisher, then the first leaves: iteration goes on past
    # the end of its ring (recv reports it).
    other = client.publisher("iter")
    other.publish(b"other")
    pub.close()
    assert next(sub).data == b"other"
    assert sub.try_recv() is None
    late = client.publisher("iter")
    late.publish(b"late")
    received = []
    for m in sub:
        received.append(m.data)
        break
    assert received == [b"late"]


def test_recv_reports_the_end_of_a_publishers_stream(client):
    pub = client.publisher("eos")
    sub = client.subscriber("eos")
    pub.publish(b"last")
    pub.close()
    assert sub.recv(timeout=10).data == b"last"
    with pytest.raises(ringbus.EndOfStream) as end:
        sub.recv(timeout=10)
    assert end.value.ring_id == pub.ring_id


def test_close_from_another_thread_stops_a_waiting_recv(client):
    sub = client.subscriber("closing", wait="block")
    errors = []

    def wait():
        try:
            sub.recv()
        except ringbus.Error as e:
            errors.append(e)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(0.2)
    sub.close()
    t.join(timeout=30)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ringbus.Closed)
    with pytest.raises(ringbus.Closed):
        sub.try_recv()
    sub.close()  # twice is harmless
    assert sub.closed


def test_context_managers_close(client):
    with client.publisher("ctx") as pub, client.subscriber("ctx") as sub:
        pub.publish(b"x")
        assert sub.recv(timeout=10).data == b"x"
    assert pub.closed and sub.closed
    with pytest.raises(ringbus.Closed):
        pub.publish(b"y")


def test_publisher_without_config_joins_the_topic(client):
    first = client.publisher("join", max_message_size=32, mode="backpressure")
    second = client.publisher("join")
    assert second.config == first.config == {
        "max_message_size": 32,
        "capacity": 1024,
        "mode": "backpressure",
        "max_subscribers": 16,
    }
    assert client.publisher("fresh").config["mode"] == "overwrite"
    sub = client.subscriber("join")
    assert sub.config == first.config
    assert client.subscriber("nobody-yet").config is None


def test_embedded_broker_serves_clients_until_stopped():
    b = ringbus.EmbeddedBroker()
    c = ringbus.Client(b.socket)
    assert c.socket == b.socket and c.broker_pid > 0
    b.stop()
    b.stop()
    with pytest.raises(ringbus.Closed):
        b.client()
    with pytest.raises(ringbus.NoBroker):
        ringbus.Client(b.socket)
