"""A command run as a process group of its own: its output streamed line by line, stopped as
a whole at a timeout or on Ctrl-C.

Why a group (issue #18): a `dvc repro` starts the stage command, which starts DataLoader
workers; stopping only the leader would leave the stage running, or holding the GPU, behind
a flow that is gone. The group has no terminal stdin (a background group may not read it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Grace = tuple[tuple[signal.Signals, float], ...]
# SIGINT first, what a terminal's Ctrl-C sends (DVC lets its stage command handle it), then
# SIGTERM, each with its grace period; SIGKILL for whatever is left
STOP_GRACE_S: Grace = ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0))


@dataclass(frozen=True)
class Finished:
    """How a streamed command ended: its exit code, its non-blank output lines, and whether
    its timeout stopped it."""

    returncode: int
    lines: list[str]
    timed_out: bool


def run_streamed(
    argv: list[str],
    cwd: str,
    env: dict[str, str],
    log: Callable[[str], None],
    timeout_s: float | None = None,
) -> Finished:
    """Run `argv` as the leader of a new process group, passing each output line to `log`.

    An interrupt stops the whole group (`stop_process_group`) before KeyboardInterrupt goes
    on up, and so does `timeout_s` (then `Finished.timed_out`).
    """
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        process_group=0,
    )
    assert proc.stdout is not None
    timed_out = threading.Event()
    watchdog = threading.Timer(timeout_s or 0, _time_out, (proc.pid, timed_out))
    watchdog.daemon = True
    if timeout_s:
        watchdog.start()
    lines = []
    try:
        with _ctrl_c_stops(proc) as interrupted:
            for line in proc.stdout:
                if line.strip():
                    log(line.rstrip())
                    lines.append(line.rstrip())
            watchdog.cancel()
            if timeout_s:
                watchdog.join()  # a firing watchdog signals the group: reap only after it
            proc.wait()
        if interrupted.is_set():
            raise KeyboardInterrupt
    except BaseException:  # Ctrl-C (KeyboardInterrupt), or the flow being torn down
        watchdog.cancel()
        proc.stdout.close()  # a command blocked writing to a full pipe could not stop
        stop_process_group(proc)
        raise
    return Finished(proc.returncode, lines, timed_out.is_set())


@contextlib.contextmanager
def _ctrl_c_stops(proc: subprocess.Popen[str]) -> Iterator[threading.Event]:
    """While the command runs, Ctrl-C is passed on to its process group instead of raising
    KeyboardInterrupt wherever the flow happens to be.

    Why: a KeyboardInterrupt raised inside Prefect's logging or API client (which hold locks
    and worker threads) could hang the flow's exit; here the stage gets the SIGINT, its output
    ends, and the caller raises KeyboardInterrupt at one known point. A second Ctrl-C kills the
    group. Off the main thread (where no handler can be installed) Python's default applies.
    """
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        _signal_group(proc.pid, signal.SIGKILL if interrupted.is_set() else signal.SIGINT)
        interrupted.set()

    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _time_out(pgid: int, timed_out: threading.Event) -> None:
    """The watchdog: mark the timeout, then stop the command's whole process group (the
    leader is reaped by `run_streamed` once the group's output ends)."""
    timed_out.set()
    _stop_group(pgid)
    _signal_group(pgid, signal.SIGKILL)  # stragglers that outlived the leader


def stop_process_group(proc: subprocess.Popen[Any], grace: Grace = STOP_GRACE_S) -> None:
    """Stop `proc`, the leader of its own process group, and every process of that group.

    The signals of `grace`, each with its wait, then SIGKILL for whatever is left, stragglers
    that outlived the leader included. The leader is reaped only at the end, so that its
    group id cannot pass to an unrelated process while we signal it.
    """
    try:
        _stop_group(proc.pid, grace)
    finally:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def _stop_group(pgid: int, grace: Grace = STOP_GRACE_S) -> None:
    """The signals of `grace`, each with its wait, to group `pgid` until its leader exits,
    without reaping it (see stop_process_group)."""
    for sig, grace_s in grace:
        _signal_group(pgid, sig)
        deadline = time.monotonic() + grace_s
        while not _exited(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _exited(pgid):
            return


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _exited(pid: int) -> bool:
    """Whether child `pid` has ended, without reaping it (its pid stays reserved)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped
        return True
