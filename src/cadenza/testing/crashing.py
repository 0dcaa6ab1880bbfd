"""Functions for the process-pool tests that kill their own worker process on some items.

A module of their own, light to import: each worker that a test's pool spawns imports it.
"""

from __future__ import annotations

import os
import signal
import time

SEGFAULT_ON = 5  # this item's worker dies as a segfaulting parser's would
EXIT_ON = 30  # this one's calls os._exit(3), as a C library's abort path could
RAISE_ON = 6  # a plain exception: propagates, as from any pool


def square_or_die(n: int) -> int:
    """n * n, except that the worker dies on `SEGFAULT_ON` and `EXIT_ON`."""
    if n == SEGFAULT_ON:
        os.kill(os.getpid(), signal.SIGSEGV)
    if n == EXIT_ON:
        os._exit(3)
    return n * n


def die_or_raise(n: int) -> int:
    """Like `square_or_die`, and `RAISE_ON` raises ValueError."""
    if n == RAISE_ON:
        raise ValueError(f"item {n} is bad")
    return square_or_die(n)


def note_pid_and_hang(folder: str) -> None:
    """Write this worker's pid into `folder`, then hang: the pool of a stage about to be
    killed."""
    with open(os.path.join(folder, f"{os.getpid()}.pid"), "w") as fh:
        fh.write("busy")
    time.sleep(120)
