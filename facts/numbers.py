"""Comment numbers for the `<Record>` action's reply, taken from the database in blocks.

The caller hears the comment's reference number at once, but with write-behind its row is
written after the reply. So each web process takes numbers from the database's counter a
block at a time (`facts.writer.take_numbers`: one short transaction per block, instead of
one per comment) and gives them out; the action's fact carries its number, and the writer
stores it as the recording's (facts/writer.py).

The same process gives a `RecordingSid` the same number again (Twilio retrying the action,
or its Fallback URL): it remembers the last few thousand it gave. A retry that reaches
another process gets another number; the first stored stays the comment's, and the writer
keeps the other as an alias, so that both find the comment. Numbers a process took and did
not give out (it stopped) are never used: references have gaps, which they may.

A process that gives numbers takes its next block ahead of need: once fewer than half a block
is left (`running_low`), the write-behind writer takes one in its own thread (facts/journal.py)
and adds it (`add`), so a caller's `<Record>` action waits for the database only when a block
runs out faster than the writer can refill it, and for the process's first block.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable

BLOCK = 100  # numbers per block: one transaction per hundred comments
REMEMBERED = 4096  # RecordingSids whose numbers a process remembers


class Numbers:
    def __init__(self, block: int = BLOCK, remembered: int = REMEMBERED) -> None:
        self.block, self.remembered = block, remembered
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._free: collections.deque[int] = collections.deque()
        self._given: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._gives = False  # this process has taken a block: it records comments

    def _forked(self) -> None:
        """A forked process must not give its parent's numbers (call with the lock held)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._free.clear()
            self._given.clear()
            self._gives = False

    def running_low(self) -> bool:
        """Whether this process gives numbers and has less than half a block left to give."""
        return self._gives and self._pid == os.getpid() and len(self._free) < self.block // 2

    def add(self, numbers: list[int]) -> None:
        """Numbers taken ahead of need (in a transaction that committed), given after those
        already here."""
        with self._lock:
            self._forked()
            self._free.extend(numbers)

    def for_recording(self, recording_sid: str, take: Callable[[int], list[int] | None]) -> int | None:
        """The number to read back for this recording: the one this process gave it before,
        else the next of its block, else (the block used up) one of a new block from
        `take(count)`; None when there is none to give (the database is away)."""
        with self._lock:
            self._forked()
            number = self._given.get(recording_sid)
            if number is not None:
                self._given.move_to_end(recording_sid)
                return number
            if not self._free:
                self._free.extend(take(self.block) or ())
                if not self._free:
                    return None
                self._gives = True
            number = self._given[recording_sid] = self._free.popleft()
            if len(self._given) > self.remembered:
                self._given.popitem(last=False)
            return number


__all__ = ["Numbers", "BLOCK"]
