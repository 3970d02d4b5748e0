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

Blocks are sized to the process's pace (`next_block`): each new block holds about
`BLOCK_SECONDS` of the numbers given since the last one was asked for, in sizes doubling from
`BLOCK` up to `MAX_BLOCK`. The writer refills once per batch (every `WRITE_BEHIND_GATHER_MS`
and the batch's write); a fixed hundred lasted less than that at a hundred comments a second,
and then each `<Record>` action of the process waited, one behind the other, for the thread
that took a block while the writer held the database. A process that stops leaves at most
its last block and a half unused: the gaps grow with the pace, never beyond `MAX_BLOCK` and a
half.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable

BLOCK = 100  # the smallest block: one transaction per hundred comments
MAX_BLOCK = 6400  # the largest: a minute of a hundred comments a second
BLOCK_SECONDS = 10.0  # a block holds about this long of the process's pace
REMEMBERED = 4096  # RecordingSids whose numbers a process remembers


class Numbers:
    def __init__(
        self,
        block: int = BLOCK,
        remembered: int = REMEMBERED,
        *,
        max_block: int = MAX_BLOCK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.block, self.remembered = block, remembered  # `block`: the size of the next block
        self.smallest, self.largest = block, max(block, max_block)
        self._clock = clock
        self._asked_at: float | None = None  # when a block was last asked for
        self._given_since = 0  # numbers given since then
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._free: collections.deque[int] = collections.deque()
        self._given: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._gives = False  # this process has taken a block: it records comments

    def _forked(self) -> None:
        """A forked process must not give its parent's numbers (call with the lock held)."""
        if self._pid != os.getpid():
            self._free.clear()
            self._given.clear()
            self._gives = False
            self.block, self._asked_at, self._given_since = self.smallest, None, 0
            self._pid = os.getpid()  # last: the lock-free path trusts what it sees only then

    def _size_next(self) -> int:
        """The size of the block to ask for now (call with the lock held): the smallest that
        holds `BLOCK_SECONDS` of the numbers given since the last was asked for (over a
        second at least, so that two asks close together do not make a pace of one number),
        doubling from the smallest, at most the largest."""
        now = self._clock()
        if self._asked_at is not None:
            elapsed = max(now - self._asked_at, 1.0)
            wanted = self._given_since / elapsed * BLOCK_SECONDS
            size = self.smallest
            while size < wanted and size < self.largest:
                size *= 2
            self.block = min(size, self.largest)
        self._asked_at, self._given_since = now, 0
        return self.block

    def next_block(self) -> int:
        """The size of the block to take ahead of need now; 0 when the process is no longer
        running low (a request thread that ran out took one meanwhile)."""
        with self._lock:
            self._forked()
            return self._size_next() if self.running_low() else 0

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
        `take(count)`; None when there is none to give (the database is away).

        While the block lasts, no lock is taken: a thread that holds one can be made to wait
        for the GIL (up to `sys.getswitchinterval()`, 5 ms) with the lock held, and then every
        other thread's `<Record>` action queues behind it. Each step here is one operation
        of a C-implemented deque or OrderedDict with str keys, which the GIL makes atomic;
        two threads giving the same recording a number at once both answer with the first
        given (`setdefault`), and the other number goes back to the front of the block."""
        if self._pid == os.getpid():
            number = self._given.get(recording_sid)
            if number is not None:
                self._keep(recording_sid)
                return number
            try:
                number = self._free.popleft()
            except IndexError:
                return self._from_new_block(recording_sid, take)
            return self._give(recording_sid, number)
        return self._from_new_block(recording_sid, take)

    def _keep(self, recording_sid: str) -> None:
        """Remember a recording asked for again the longest (Twilio retrying its action)."""
        try:
            self._given.move_to_end(recording_sid)
        except KeyError:  # forgotten meanwhile: it was the oldest
            pass

    def _give(self, recording_sid: str, number: int) -> int:
        """The recording's number: `number`, taken from the block by this thread, unless
        another thread gave the recording one first (then `number` goes back to the front
        of the block)."""
        given = self._given.setdefault(recording_sid, number)
        if given != number:
            self._free.appendleft(number)
            return given
        self._given_since += 1  # a pace, for the next block's size: a lost count is harmless
        while len(self._given) > self.remembered:
            try:
                self._given.popitem(last=False)
            except KeyError:  # another thread emptied it meanwhile
                break
        return number

    def _from_new_block(self, recording_sid: str, take: Callable[[int], list[int] | None]) -> int | None:
        """The block is used up (or this process was forked): take a new one, one thread
        at a time, and give its first number."""
        with self._lock:
            self._forked()
            while True:
                number = self._given.get(recording_sid)
                if number is not None:
                    self._keep(recording_sid)
                    return number
                asked = not self._free
                block = take(self._size_next()) if asked else None
                if block:
                    self._free.extend(block)
                    self._gives = True
                try:  # a number of this block, or one another thread gave back
                    return self._give(recording_sid, self._free.popleft())
                except IndexError:
                    if asked and not block:
                        return None  # the database is away
                    # threads that take no lock gave the whole block meanwhile: take another


__all__ = ["BLOCK", "BLOCK_SECONDS", "MAX_BLOCK", "Numbers"]
