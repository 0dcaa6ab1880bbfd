"""Running the `dvc` command line as a subprocess: one environment, one error, for every caller.

Why a subprocess at all: `dvc repro`, `dvc exp run` and `dvc queue start` hold DVC's lock,
run stage commands and spawn daemons; inside our process they would share its signal
handlers, logging and working directory. DVC runs as `python -m dvc` of this interpreter,
with this interpreter's folder first on PATH: stage commands are a bare `cadenza ...` and
queue workers a bare `dvc`, and a worker or scheduler may run without the venv activated
(with another `dvc`, or none, on PATH the queue's workers never start). Analytics are off
unless the user set them (each dvc command would otherwise spawn a daemon that dials out).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cadenza.settings import ANALYTICS_OFF, venv_first


class DvcError(RuntimeError):
    """A `dvc` command exited non-zero; the message names the command and holds its output."""

    def __init__(self, args: Sequence[str], returncode: int, output: str = "") -> None:
        self.returncode = returncode
        detail = f":\n{output}" if output.strip() else ""
        super().__init__(f"dvc {' '.join(args)} failed with exit code {returncode}{detail}")


def dvc_argv(*args: str) -> list[str]:
    """The argv of `dvc ARGS`, run by this interpreter."""
    return [sys.executable, "-m", "dvc", *args]


def dvc_env() -> dict[str, str]:
    """This process's environment, with analytics off (a user's setting wins) and this
    interpreter's folder first on PATH."""
    return {**ANALYTICS_OFF, **os.environ, "PATH": venv_first(os.environ.get("PATH", ""))}


def run_dvc(project: Path, *args: str) -> str:
    """`dvc ARGS` in `project`, its output captured; returns stdout, raises DvcError."""
    proc = subprocess.run(
        dvc_argv(*args), cwd=project, env=dvc_env(), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise DvcError(args, proc.returncode, f"{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def run_dvc_shown(project: Path, *args: str) -> None:
    """`dvc ARGS` in `project`, its output on our terminal (DVC says what it did, or why it
    failed); raises DvcError with the exit code."""
    proc = subprocess.run(dvc_argv(*args), cwd=project, env=dvc_env())
    if proc.returncode != 0:
        raise DvcError(args, proc.returncode)


def run_dvc_spawning(project: Path, *args: str) -> None:
    """`dvc ARGS` that starts daemons (`dvc queue start`), returning when it does.

    Its output goes to a file, not a pipe: the daemons inherit it, so a captured (piped)
    output would block until the last of them exits, and for ever with a hung one.
    """
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.run(
            dvc_argv(*args), cwd=project, env=dvc_env(), stdout=out, stderr=out, text=True
        )
        if proc.returncode != 0:
            out.seek(0)
            raise DvcError(args, proc.returncode, out.read())
