"""Pattern subscriptions (each message's topic) and the filters: tag masks,
tag sets and Python predicates, checked against a reference in Python."""

from __future__ import annotations

import random
import threading
import time

import pytest

import ringbus

MODES = ["overwrite", "backpressure"]
N = 3000


def recv_all(sub, count: int) -> list:
    """`count` messages, then no more."""
    got = [sub.recv(timeout=10) for _ in range(count)]
    with pytest.raises(ringbus.Timeout):
        sub.recv(timeout=0.2)
    return got


@pytest.mark.parametrize("mode", MODES)
def test_pattern_reads_topics_made_before_and_after_it(client, mode):
    before = client.publisher("sensors.a.temp", mode=mode)
    sub = client.subscriber("sensors.*.temp")
    after = client.publisher("sensors.b.temp", mode=mode)
    other = client.publisher("sensors.a.humidity", mode=mode)
    second = client.publisher("sensors.a.temp")  # a second ring of a topic
    for i in range(10):
        before.publish(b"a%d" % i)
        after.publish(b"b%d" % i)
        other.publish(b"h%d" % i)
        second.publish(b"s%d" % i)
    got = {}
    copied = 0
    for _ in range(30):
        m = sub.recv(timeout=10)
        copied += not m.in_place
        got.setdefault((m.topic, m.ring_id), []).append(m.data)
    assert sub.try_recv() is None
    assert got == {
        ("sensors.a.temp", before.ring_id): [b"a%d" % i for i in range(10)],
        ("sensors.a.temp", second.ring_id): [b"s%d" % i for i in range(10)],
        ("sensors.b.temp", after.ring_id): [b"b%d" % i for i in range(10)],
    }
    if mode == "backpressure":
        # Read in place, but for the first message of each ring (copied
        # while its topic is looked up).
        assert copied <= 3
    assert sorted(sub.topics) == ["sensors.a.temp", "sensors.b.temp"]
    assert sub.topic == "sensors.*.temp"

    # A topic created while a receive waits.
    def later():
        time.sleep(0.2)
        client.publisher("sensors.c.temp", mode=mode).publish(b"c")

    t = threading.Thread(target=later)
    t.start()
    m = sub.recv(timeout=10)
    t.join()
    assert (m.topic, m.data) == ("sensors.c.temp", b"c")


def test_greater_than_matches_the_rest(client):
    sub = client.subscriber("logs.>")
    pubs = [client.publisher(n) for n in ("logs.app", "logs.app.db", "logsx", "other.logs")]
    for p in pubs:
        p.publish(p.topic.encode())
    assert sorted(m.topic for m in recv_all(sub, 2)) == ["logs.app", "logs.app.db"]


def test_a_plain_subscription_reports_its_topic(client):
    pub = client.publisher("plain")
    sub = client.subscriber("plain")
    pub.publish(b"x")
    assert sub.recv(timeout=10).topic == "plain"
    assert sub.topics == ["plain"]


@pytest.mark.parametrize(
    "pattern, where",
    [("a.>.b", "'>' at byte 2"), ("a.b*", "inside a segment at byte 3"), ("a..*", "byte 2")],
)
def test_bad_patterns_name_the_position(client, pattern, where):
    with pytest.raises(ringbus.InvalidArgument, match=where) as e:
        client.subscriber(pattern)
    assert pattern in str(e.value)
    assert isinstance(e.value, ValueError)


def tagged_messages(pub, n: int = N) -> list[int]:
    """Publishes message i (its payload i) with a pseudo-random tag;
    returns the tags."""
    rng = random.Random(7)
    tags = [rng.randrange(16) | (rng.randrange(4) << 8) for _ in range(n)]
    for i, t in enumerate(tags):
        pub.publish(i.to_bytes(4, "little"), tag=t)
    return tags


FILTERS = [
    ({"tag": 5}, lambda t: t == 5),
    ({"tag_mask": 0xF, "tag_value": 3}, lambda t: t & 0xF == 3),
    ({"tag_mask": 0x300, "tag_value": 0x100}, lambda t: t & 0x300 == 0x100),
    ({"tags": [1, 2, 0x103]}, lambda t: t in (1, 2, 0x103)),
    ({"tags": {0x200, 0x201}, "tag_mask": 0xF00, "tag_value": 0x200}, lambda t: t in (0x200, 0x201)),
    ({"tags": (4, 0x104, 7), "tag": 0x104}, lambda t: t == 0x104),
]


@pytest.mark.parametrize("how", ["arguments", "methods"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kwargs, keep", FILTERS)
def test_tag_filters_match_a_reference(client, mode, how, kwargs, keep):
    pub = client.publisher("tags", mode=mode, capacity=4096, max_message_size=8)
    if how == "arguments":
        sub = client.subscriber("tags", **kwargs)
    else:
        sub = client.subscriber("tags")
        if "tag" in kwargs:
            sub.filter_tags(2**64 - 1, kwargs["tag"])
        if "tag_mask" in kwargs:
            sub.filter_tags(kwargs["tag_mask"], kwargs["tag_value"])
        if "tags" in kwargs:
            sub.filter_tag_set(kwargs["tags"])
    tags = tagged_messages(pub)
    want = [i for i, t in enumerate(tags) if keep(t)]
    assert 0 < len(want) < N
    got = recv_all(sub, len(want))
    assert [int.from_bytes(m.data, "little") for m in got] == want
    assert all(keep(m.tag) and m.seq == int.from_bytes(m.data, "little") for m in got)
    assert sub.filtered_total == N - len(want)


def test_clear_filters_delivers_everything_again(client):
    pub = client.publisher("clear", capacity=64)
    sub = client.subscriber("clear", tags=(t for t in [1, 3]))  # any iterable
    for i in range(10):
        pub.publish(b"%d" % i, tag=i % 4)
    assert [m.data for m in recv_all(sub, 5)] == [b"1", b"3", b"5", b"7", b"9"]
    sub.clear_filters()
    for i in range(4):
        pub.publish(b"%d" % i, tag=i % 2)
    assert [m.data for m in recv_all(sub, 4)] == [b"0", b"1", b"2", b"3"]
    assert sub.filtered_total == 5


def test_bad_filters_raise(client):
    with pytest.raises(ringbus.InvalidArgument, match="not both"):
        client.subscriber("bad", tag=1, tag_mask=1, tag_value=1)
    with pytest.raises(ringbus.InvalidArgument, match="go together"):
        client.subscriber("bad", tag_mask=0xF)
    with pytest.raises(ringbus.InvalidArgument, match="go together"):
        client.subscriber("bad", tag_value=1)
    with pytest.raises(ringbus.InvalidArgument, match="outside mask"):
        client.subscriber("bad", tag_mask=0xF, tag_value=0x10)
    with pytest.raises(ringbus.InvalidArgument, match="at most 64"):
        client.subscriber("bad", tags=range(65))
    with pytest.raises(OverflowError):
        client.subscriber("bad", tag=-1)
    with pytest.raises(TypeError):
        client.subscriber("bad", tags=5)
    sub = client.subscriber("bad", tags=range(64))
    with pytest.raises(ringbus.InvalidArgument, match="outside mask"):
        sub.filter_tags(1, 2)
    with pytest.raises(ringbus.InvalidArgument, match="at most 64"):
        sub.filter_tag_set(list(range(100)))
    with pytest.raises(TypeError, match="callable"):
        sub.filter(5)
    sub.close()
    with pytest.raises(ringbus.Closed):
        sub.filter_tags(0, 0)


@pytest.mark.parametrize("mode", MODES)
def test_predicate_sees_info_and_payload_after_the_tag_filters(client, mode):
    pub = client.publisher("pred", mode=mode, capacity=4096, max_message_size=8)
    sub = client.subscriber("pred", tag_mask=0x1, tag_value=0x1)
    seen = []

    def keep(info, data):
        assert isinstance(info, ringbus.MessageInfo) and isinstance(data, bytes)
        i = int.from_bytes(data, "little")
        seen.append((info.seq, info.tag, info.len, len(info), i))
        return i % 3 == 0

    sub.filter(keep)
    tags = tagged_messages(pub)
    want = [i for i, t in enumerate(tags) if t & 1 and i % 3 == 0]
    got = recv_all(sub, len(want))
    assert [int.from_bytes(m.data, "little") for m in got] == want
    odd = [i for i, t in enumerate(tags) if t & 1]
    assert [s[4] for s in seen] == odd  # each message judged once, in order
    assert all(s == (i, tags[i], 4, 4, i) for s, i in zip(seen, odd))
    assert sub.filtered_total == N - len(want)


@pytest.mark.parametrize("mode", MODES)
def test_a_predicate_that_raises_costs_its_message_and_the_receive_raises_it(client, mode):
    pub = client.publisher("raise", mode=mode, capacity=64)

    class Boom(Exception):
        pass

    def keep(info, data):
        if data == b"bad":
            raise Boom(f"no {info.seq}")
        return data != b"skip"

    sub = client.subscriber("raise")
    sub.filter(keep)
    for p in (b"a", b"skip", b"bad", b"b", b"bad", b"c"):
        pub.publish(p)
    assert sub.recv(timeout=10).data == b"a"
    with pytest.raises(Boom, match="no 2"):
        sub.recv(timeout=10)
    assert sub.recv(timeout=10).data == b"b"
    with pytest.raises(Boom, match="no 4"):
        sub.try_recv()
    assert sub.try_recv().data == b"c"
    assert sub.try_recv() is None
    assert sub.filtered_total == 3

    # While a receive waits (the interpreter released): the same.
    def later():
        time.sleep(0.2)
        pub.publish(b"bad")
        pub.publish(b"d")

    t = threading.Thread(target=later)
    t.start()
    with pytest.raises(Boom, match="no 6"):
        sub.recv(timeout=10)
    t.join()
    assert sub.recv(timeout=10).data == b"d"

    # A truth value that cannot be had raises as well.
    class NoBool:
        def __bool__(self):
            raise Boom("no truth")

    sub.filter(lambda info, data: NoBool())
    pub.publish(b"e")
    with pytest.raises(Boom, match="no truth"):
        sub.recv(timeout=10)
    sub.clear_filters()
    pub.publish(b"f")
    assert sub.recv(timeout=10).data == b"f"


def test_a_predicate_cannot_use_its_subscriber(client):
    pub = client.publisher("self", capacity=16)
    sub = client.subscriber("self")
    sub.filter(lambda info, data: sub.filtered_total >= 0)
    pub.publish(b"x")
    with pytest.raises(ringbus.BadState, match="predicate cannot use the subscriber"):
        sub.recv(timeout=10)
    sub.filter(lambda info, data: sub.close())
    pub.publish(b"y")
    with pytest.raises(ringbus.BadState):
        sub.recv(timeout=10)
    assert not sub.closed
    sub.clear_filters()
    pub.publish(b"z")
    assert sub.recv(timeout=10).data == b"z"


@pytest.mark.parametrize("mode", MODES)
def test_filters_apply_to_every_topic_of_a_pattern(client, mode):
    pubs = [client.publisher(f"multi.{n}", mode=mode, capacity=256) for n in "abc"]
    sub = client.subscriber("multi.*", tag_mask=1, tag_value=1)
    sub.filter(lambda info, data: not data.endswith(b"x"))
    want = {}
    for i in range(100):
        for p in pubs:
            data = b"%d%s" % (i, b"x" if i % 5 == 0 else b"")
            p.publish(data, tag=i)
            if i % 2 and i % 5:
                want.setdefault(p.topic, []).append(data)
    got = {}
    for m in recv_all(sub, sum(map(len, want.values()))):
        got.setdefault(m.topic, []).append(m.data)
    assert got == want
    assert sub.filtered_total == 300 - sum(map(len, want.values()))
