"""Background threads, named for the operating system as well as for Python; this process's id.

Python 3.11 names a thread only for itself: `top -H`, `ps -L`, `/proc/<pid>/task/<tid>/comm`
and the benchmark's per-thread CPU figures (bench/servers.py) see every thread of a web
process under the process's own name. `start_named` sets the kernel's name of the thread too
(Linux, 15 bytes at most), so that an operator can tell the write-behind writer from the
request threads. Where the kernel offers no way to, the thread runs all the same.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Callable

PR_SET_NAME = 15  # <linux/prctl.h>
KERNEL_NAME_BYTES = 15  # the kernel's limit, without the terminating NUL


def _prctl() -> Callable | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def name_this_thread(name: str) -> bool:
    """Give the calling thread `name` (its first 15 bytes) in the kernel's tables; whether
    that could be done."""
    if _PRCTL is None:
        return False
    return _PRCTL(PR_SET_NAME, name.encode()[:KERNEL_NAME_BYTES], 0, 0, 0) == 0


def start_named(target: Callable[[], None], name: str) -> threading.Thread:
    """Start a daemon thread running `target`, named `name` for Python and for the kernel."""

    def run() -> None:
        name_this_thread(name)
        target()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


class This:
    """This process's id, kept current across forks: `os.getpid()` is a system call, and
    a webhook would ask it several times."""

    pid = os.getpid()


os.register_at_fork(after_in_child=lambda: setattr(This, "pid", os.getpid()))
