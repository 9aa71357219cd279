"""Errors: each maps to a class of the ringbus.Error hierarchy and carries
the library's message; nothing a caller passes crashes the process."""

from __future__ import annotations

import pytest

import ringbus


def test_no_broker(tmp_path):
    with pytest.raises(ringbus.NoBroker, match="start one with `ringbus serve`") as e:
        ringbus.Client(tmp_path / "nobody.sock")
    assert isinstance(e.value, ringbus.Error) and isinstance(e.value, ConnectionError)


def test_default_socket_honours_ringbus_socket(broker, monkeypatch):
    monkeypatch.setenv("RINGBUS_SOCKET", broker.socket)
    assert ringbus.default_socket() == broker.socket
    assert ringbus.Client().socket == broker.socket


@pytest.mark.parametrize("name", ["bad name", "", "a..b", ".a", "x" * 300, "é"])
def test_bad_topic_names(client, name):
    with pytest.raises(ringbus.InvalidArgument) as e:
        client.publisher(name)
    assert "topic" in str(e.value)
    assert isinstance(e.value, ValueError)
    with pytest.raises(ringbus.InvalidArgument):
        client.subscriber(name)


def test_too_large(client):
    pub = client.publisher("big", max_message_size=8)
    with pytest.raises(ringbus.TooLarge, match="exceeds the ring's max message size of 8"):
        pub.publish(b"123456789")
    with pytest.raises(ringbus.TooLarge):
        pub.try_publish(bytearray(9))
    assert pub.publish(b"12345678") == 0


def test_config_mismatch_shows_both_configs(client):
    first = client.publisher("cfg", capacity=8)  # noqa: F841 (kept open)
    with pytest.raises(ringbus.ConfigMismatch) as e:
        client.publisher("cfg", capacity=16)
    assert "capacity=8" in str(e.value) and "capacity=16" in str(e.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"capacity": 3},
        {"capacity": 0},
        {"max_message_size": 0},
        {"max_subscribers": 0},
    ],
)
def test_invalid_configs(client, kwargs):
    with pytest.raises(ringbus.InvalidArgument):
        client.publisher("inv", **kwargs)


def test_invalid_options_and_types(client):
    with pytest.raises(ringbus.InvalidArgument, match="overwrite"):
        client.publisher("opt", mode="sometimes")
    with pytest.raises(ringbus.InvalidArgument, match="wait strategy"):
        client.subscriber("opt", wait="nap")
    with pytest.raises(ringbus.InvalidArgument, match="earliest"):
        client.subscriber("opt", start="middle")
    with pytest.raises((TypeError, OverflowError)):
        client.subscriber("opt", start=-1)
    with pytest.raises((TypeError, OverflowError)):
        client.publisher("opt", capacity=-1)
    with pytest.raises(TypeError):
        client.publisher(b"bytes-topic")
    sub = client.subscriber("opt")
    for bad in (-1.0, float("nan")):
        with pytest.raises(ringbus.InvalidArgument, match="timeout"):
            sub.recv(timeout=bad)
    with pytest.raises(TypeError):
        sub.recv(timeout="soon")
    pub = client.publisher("opt")
    with pytest.raises((TypeError, OverflowError)):
        pub.publish(b"x", tag=-1)
    with pytest.raises(OverflowError):
        pub.publish(b"x", tag=1 << 64)
    assert pub.publish(b"x", tag=(1 << 64) - 1) == 0
    with pytest.raises((TypeError, OverflowError)):
        pub.loan(-5)


def test_closed_objects_raise_closed(client):
    pub = client.publisher("closed")
    sub = client.subscriber("closed")
    pub.close()
    sub.close()
    for call in (
        lambda: pub.publish(b"x"),
        lambda: pub.try_publish(b"x"),
        lambda: pub.loan(1).__enter__(),
        lambda: pub.next_seq,
        lambda: sub.recv(timeout=0),
        lambda: sub.try_recv(),
        lambda: next(sub),
    ):
        with pytest.raises(ringbus.Closed):
            call()


def test_closing_the_publisher_inside_a_loan(client):
    pub = client.publisher("loanclose")
    with pytest.raises(ringbus.Closed, match="nothing was published"):
        with pub.loan(4) as buf:
            pub.close()
    with pytest.raises(ValueError):
        buf[0] = 1


def test_zero_copy_is_refused_where_unsafe_by_copying(client):
    # Overwrite topics never hand out ring memory: their views are copies.
    pub = client.publisher("ow")
    sub = client.subscriber("ow")
    pub.publish(b"abc")
    assert not sub.recv(timeout=10).in_place


def test_every_error_class_is_exported_and_documented():
    for name in ringbus._errors.__all__:
        cls = getattr(ringbus, name)
        assert issubclass(cls, ringbus.Error) and cls.__doc__
        assert cls.__module__ == "ringbus"
    lag = ringbus.Lagged("lost", missed=3, ring_id=9)
    assert (str(lag), lag.missed, lag.ring_id) == ("lost", 3, 9)
