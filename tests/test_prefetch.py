"""parallel.prefetched: a batch read ahead in a thread changes nothing but the time."""

import threading
import time

import pytest

from cachesim.parallel import prefetched


def test_items_come_in_order_at_any_depth():
    for depth in (0, 1, 3):
        assert list(prefetched(iter(range(50)), depth)) == list(range(50))


def test_an_error_comes_after_the_items_before_it():
    def items():
        yield 1
        yield 2
        raise ValueError("line 3 is bad")

    got = []
    with pytest.raises(ValueError, match="line 3 is bad"):
        for x in prefetched(items()):
            got.append(x)
    assert got == [1, 2]


def test_closing_early_stops_the_producer():
    produced = []

    def items():
        for i in range(10_000):
            produced.append(i)
            yield i

    stream = prefetched(items(), depth=1)
    assert next(stream) == 0
    stream.close()
    time.sleep(0.3)
    assert len(produced) <= 4   # the one handed out, the one queued, at most one waiting to be queued
    assert not [t for t in threading.enumerate() if t.name == "cachesim-prefetch"]


def test_the_producer_runs_ahead_while_the_consumer_works():
    started = []

    def items():
        for i in range(3):
            started.append(time.monotonic())
            yield i

    stream = prefetched(items(), depth=1)
    next(stream)
    time.sleep(0.2)    # the consumer "serves" item 0; item 1 is read meanwhile
    assert len(started) >= 2
    assert list(stream) == [1, 2]
