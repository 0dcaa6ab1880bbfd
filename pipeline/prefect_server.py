"""The Prefect API a flow run talks to: PREFECT_API_URL's server if set, else a temporary
one of our own.

Why our own rather than Prefect's ephemeral server: Prefect's shares the terminal's process
group, so Ctrl-C killed it at once and Prefect, recording the crash, then retried the dead
API for minutes. Ours runs in a process group of its own, so that a terminal's Ctrl-C
reaches the flow but not the server that records its crash.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from pipeline.process_group import Grace, stop_process_group

# the temporary server holds nothing to save once the run has flushed its logs, and uvicorn's
# graceful shutdown waits for idle keep-alive connections: a short SIGTERM, then SIGKILL
SERVER_GRACE_S: Grace = ((signal.SIGTERM, 3.0),)


@contextlib.contextmanager
def prefect_api() -> Iterator[None]:
    """Run the body against PREFECT_API_URL's server if set, else against a temporary one
    (API only: no UI, no services), stopped at interpreter exit, after Prefect has flushed
    its logs and events to it."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    url = start_temporary_server(Path(PREFECT_HOME.value()) / "server.log")
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def start_temporary_server(log: Path) -> str:
    """Start `prefect server start` on a free loopback port; return its API URL once healthy.

    A run that is interrupted while the server starts still stops it: the stop is registered
    before the wait.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, PREFECT_UI_ENABLED="false", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-services",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    # atexit runs after Prefect's own exit hooks (threading's), which flush logs and events
    atexit.register(stop_process_group, proc, SERVER_GRACE_S)
    url = f"http://127.0.0.1:{port}/api"
    timeout_s = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 120))
    deadline = time.monotonic() + timeout_s
    while not _healthy(url):
        if proc.poll() is not None:
            raise RuntimeError(
                f"the temporary Prefect server exited with code "
                f"{proc.returncode} before it was ready; see {log}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the temporary Prefect server at {url} was not ready after "
                f"{timeout_s:.0f} s; see {log}"
            )
        time.sleep(0.2)
    return url


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False
