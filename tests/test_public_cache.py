"""The public tally's per-process cache: fresh answers within the period, the old copy served
while one thread computes the new one, and the old copy kept when computing fails."""

from __future__ import annotations

import threading

import pytest

from public.cache import StaleWhileRefreshing


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_answer_is_kept_for_the_period_then_computed_again():
    clock = Clock()
    cache = StaleWhileRefreshing(5, clock=clock)
    values = iter([1, 2])
    assert cache.get("k", lambda: next(values)) == 1
    clock.now = 4.9
    assert cache.get("k", lambda: next(values)) == 1
    clock.now = 5.0
    assert cache.get("k", lambda: next(values)) == 2
    assert cache.computed == 2


def test_one_thread_computes_while_the_others_serve_the_old_copy():
    clock = Clock()
    cache = StaleWhileRefreshing(5, clock=clock)
    cache.get("k", lambda: "old")
    clock.now = 10
    entered, release = threading.Event(), threading.Event()

    def slow():
        entered.set()
        release.wait()
        return "new"

    computing = threading.Thread(target=lambda: cache.get("k", slow))
    computing.start()
    entered.wait()
    # Meanwhile every other reader gets the old copy at once, and nothing else computes.
    assert [cache.get("k", lambda: pytest.fail("a second computation")) for _ in range(5)] == ["old"] * 5
    release.set()
    computing.join()
    assert cache.get("k", lambda: pytest.fail("computed again")) == "new"


def test_a_failed_computation_keeps_the_old_copy():
    clock = Clock()
    cache = StaleWhileRefreshing(5, clock=clock)
    cache.get("k", lambda: "old")
    clock.now = 10

    def broken():
        raise RuntimeError("the database is away")

    assert cache.get("k", broken) == "old"
    with pytest.raises(RuntimeError):
        cache.get("never", broken)


def test_at_most_size_keys_are_kept():
    cache = StaleWhileRefreshing(5, size=3)
    for key in range(10):
        cache.get(key, lambda key=key: key)
    assert len(cache._entries) == 3
