"""One DVC command of the flow: streamed into the task log, stopped at its timeout, and
waited for while another DVC process holds DVC's lock.

A `dvc exp run` or `dvc repro` in the same folder holds the repository lock (or the rwlock of
a stage's paths, or is writing dvc.lock); a night's run waits for it, polling, up to
`flow.lock_wait_s`, then fails saying who to look for, rather than failing at once or
waiting for ever.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from prefect import get_run_logger

from cadenza.dvc_cli import DvcError, dvc_argv, dvc_env
from pipeline.process_group import run_streamed

# another DVC process holds the repository lock, a path of the stage (`.dvc/tmp/rwlock`: DVC
# frees the repository lock while a stage command runs), or is writing dvc.lock
LOCK_ERRORS = ("Unable to acquire lock", "is busy, it is being blocked by", "validation failed")
LOCK_POLL_S = 2.0
ERROR_TAIL_LINES = 10  # of a failed command's output, kept in its error (the whole is logged)


class LockHeld(RuntimeError):
    """DVC's repository lock is held by another process (for now)."""


class StageTimeout(RuntimeError):
    """A stage ran past its timeout and was stopped; never retried."""


def run_logger() -> Any:
    """The run's logger in a flow or task run; this module's logger outside one."""
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def dvc_streamed(project: str, *args: str, timeout_s: float | None = None) -> list[str]:
    """Run `dvc ARGS` as a process group of its own, streaming its output into the task log;
    return its output lines. Raises StageTimeout past `timeout_s`, LockHeld when DVC could
    not take its lock, DvcError (a RuntimeError) naming the command and holding the last lines
    of its output on any other failure."""
    done = run_streamed(dvc_argv(*args), project, dvc_env(), run_logger().info, timeout_s)
    command = f"dvc {' '.join(args)}"
    if done.timed_out and done.returncode != 0:
        raise StageTimeout(
            f"{command} ran past its timeout of {timeout_s:g} s and was "
            f"stopped (flow.timeout_s in params.yaml)"
        )
    if done.returncode != 0:
        tail = done.lines[-ERROR_TAIL_LINES:]
        held = [line for line in tail if any(err in line for err in LOCK_ERRORS)]
        if held:
            raise LockHeld(held[-1])
        raise DvcError(args, done.returncode, "\n".join(tail))
    return done.lines


def waiting_for_lock(
    what: str, attempt: Callable[[], Any], wait_s: float, log: Callable[[str], None]
) -> Any:
    """`attempt()`, retried every LOCK_POLL_S while it raises LockHeld, for at most `wait_s`;
    then a RuntimeError that says who to look for."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return attempt()
        except LockHeld as err:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(
                    f"{what}: DVC's lock was still held by another DVC process after "
                    f"{wait_s:g} s (flow.lock_wait_s); is a `dvc repro` or `dvc exp run` "
                    f"running in this project? ({err})"
                ) from None
            log(
                f"{what}: DVC's lock is held by another DVC process; retrying "
                f"(waiting at most {left:.0f} s more)"
            )
            time.sleep(min(LOCK_POLL_S, left))
