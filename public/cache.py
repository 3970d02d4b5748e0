"""A small per-process cache for the public tally's answers: each answer is kept for a few
seconds (PUBLIC_CACHE_SECONDS), and when it is stale one thread computes the new one while the
process's other threads go on serving the old copy.

Per process, keyed by what was asked (the window, the page's language): gunicorn's workers each
keep their own, so a flood of readers costs the database at most one computation per key, per
worker, every few seconds. Nothing is shared between processes (no server this line does not
have), and nothing here holds anything about a person: only counts.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any


@dataclass
class Entry:
    value: Any
    made_at: float


class StaleWhileRefreshing:
    """`get(key, compute)`: the cached value of `key` while it is younger than `seconds`; when
    older, the first caller computes a new one and callers meanwhile get the old copy; only a
    key never computed makes its callers wait (for the one computation). At most `size` keys
    are kept, the least recently used dropped first. When `compute` raises, the old copy is
    served if there is one (the exception is raised only to a key's first callers)."""

    def __init__(self, seconds: float, size: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds, self.size, self.clock = seconds, size, clock
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._computing: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()
        self.computed = 0  # how many times a value was computed (for tests and the benchmark)

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                if self.clock() - entry.made_at < self.seconds:
                    return entry.value
            computing = self._computing.setdefault(key, threading.Lock())
        if entry is not None:
            if not computing.acquire(blocking=False):
                return entry.value  # another thread is computing: serve the old copy
        else:
            computing.acquire()  # nothing to serve yet: wait for the one computation
            with self._lock:
                fresh = self._entries.get(key)
            if fresh is not None and self.clock() - fresh.made_at < self.seconds:
                computing.release()
                return fresh.value
        try:
            try:
                value = compute()
            except Exception:
                if entry is None:
                    raise
                return entry.value  # the database is away, say: the old copy is still true
            with self._lock:
                self.computed += 1
                self._entries[key] = Entry(value, self.clock())
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    dropped, _ = self._entries.popitem(last=False)
                    self._computing.pop(dropped, None)
            return value
        finally:
            computing.release()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
