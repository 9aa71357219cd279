"""Zero-copy receive on back-pressure topics: a message holds its ring slot
until released, its view is the ring's memory, and nothing done with a
released view crashes."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import ringbus


@pytest.fixture
def one_slot(client):
    """A back-pressure topic of one slot: the publisher has room again only
    once the subscriber gave the slot back."""
    pub = client.publisher("zc", mode="backpressure", capacity=1, max_message_size=64)
    sub = client.subscriber("zc")
    return pub, sub


def test_a_message_holds_its_slot_until_released(one_slot):
    pub, sub = one_slot
    pub.publish(b"in place", tag=3)
    m = sub.recv(timeout=10)
    assert m.in_place and m.tag == 3
    with pytest.raises(ringbus.Full):  # the slot is still ours
        pub.try_publish(b"next")
    view = m.view()
    assert view.readonly and bytes(view) == b"in place"
    assert m.view() is view
    with pytest.raises(TypeError):
        view[0] = 0  # read-only
    m.release()
    assert not m.in_place
    assert pub.try_publish(b"next") == 1
    with pytest.raises(ValueError):  # the view was released with the message
        bytes(view)
    with pytest.raises(ringbus.Closed):
        m.view()
    with pytest.raises(ringbus.Closed):  # its data was never read
        m.data
    m.release()  # twice is harmless


def test_with_block_releases_and_data_read_inside_survives(one_slot):
    pub, sub = one_slot
    pub.publish(b"abc")
    with sub.recv(timeout=10) as m:
        assert m.data == b"abc"
        arr = np.frombuffer(m.view(), dtype=np.uint8)
        assert arr.tolist() == [97, 98, 99]
    assert not m.in_place
    assert m.data == b"abc"
    # The numpy array still points into the ring: reading it is safe (the
    # mapping lives as long as it does), its bytes are the ring's again.
    pub.publish(b"xyz")
    assert arr.shape == (3,)
    _ = arr.sum()


def test_next_receive_releases_the_previous_message_keeping_its_data(one_slot):
    pub, sub = one_slot
    pub.publish(b"one")
    first = sub.recv(timeout=10)
    view = first.view()
    assert first.in_place
    # The next receive gives the slot back (the publisher can write) and
    # copies the unread payload into the message first.
    assert sub.try_recv() is None
    assert not first.in_place
    pub.publish(b"two")
    second = sub.recv(timeout=10)
    assert (first.data, second.data) == (b"one", b"two")
    with pytest.raises(ValueError):
        view.tobytes()


def test_collected_messages_keep_their_data(client):
    pub = client.publisher("collect", mode="backpressure", capacity=4)
    sub = client.subscriber("collect")
    msgs = []
    for i in range(20):
        pub.publish(bytes([i]) * 3, timeout=10)
        msgs.append(sub.recv(timeout=10))  # never read: copied when released
    assert [m.data for m in msgs] == [bytes([i]) * 3 for i in range(20)]


def test_dropping_a_message_gives_its_slot_back(one_slot):
    pub, sub = one_slot
    pub.publish(b"dropped")
    m = sub.recv(timeout=10)
    assert m.data == b"dropped"
    with pytest.raises(ringbus.Full):
        pub.try_publish(b"x")
    del m
    gc.collect()
    assert pub.try_publish(b"x") == 1


def test_closing_the_subscriber_releases_a_held_message(one_slot):
    pub, sub = one_slot
    pub.publish(b"held")
    m = sub.recv(timeout=10)
    v = m.view()
    sub.close()
    assert not m.in_place and m.data == b"held"
    with pytest.raises(ValueError):
        v[0]
    assert pub.try_publish(b"free") == 1


def test_views_outlive_everything_without_crashing(client):
    pub = client.publisher("outlive", mode="backpressure", capacity=2)
    sub = client.subscriber("outlive")
    pub.publish(b"\x01\x02\x03\x04")
    m = sub.recv(timeout=10)
    arr = np.frombuffer(m.view(), dtype=np.uint8)  # exports the view
    sub.close()
    pub.close()
    del m, sub, pub
    gc.collect()
    assert arr.shape == (4,)  # still mapped
    assert int(arr.sum()) >= 0
    # The exporter refuses new buffers once revoked.
    with pytest.raises(BufferError):
        memoryview(arr.base.obj)


def test_loan_views_are_revoked_at_commit(client):
    pub = client.publisher("loanzc", mode="backpressure", capacity=2)
    sub = client.subscriber("loanzc")
    with pub.loan(4) as buf:
        arr = np.frombuffer(buf, dtype=np.uint8)
        arr[:] = [1, 2, 3, 4]
    with pytest.raises(ValueError):
        buf[0] = 9
    with pytest.raises(BufferError):  # numpy's view of the exporter
        memoryview(arr.base.obj)
    pub.close()
    del pub
    gc.collect()
    arr[0] = 7  # a stale numpy view writes into a still-mapped slot: no crash
    assert sub.recv(timeout=10).data in (b"\x01\x02\x03\x04", b"\x07\x02\x03\x04")


def test_overwrite_topics_copy(client):
    pub = client.publisher("copied")
    sub = client.subscriber("copied")
    pub.publish(b"copy")
    m = sub.recv(timeout=10)
    assert not m.in_place
    v = m.view()
    m.release()  # nothing to give back
    assert bytes(v) == b"copy" == m.data
