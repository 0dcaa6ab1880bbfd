"""The one parallel map: `map(fn, items)` in this process, a local process pool, or Dask.

Why one: every stage whose work is independent per item (prepare's parse + encode per file,
fetch's music21 conversion per score) needs the same things from a pool: results in input
order, spawned workers, and a run that survives a worker's death. A process pool uses the
cores of one machine; a Dask cluster (`runner.kind: dask` in params.yaml) spreads the items
over many machines (the results still meet in this process). Results always come back in
input order and everything after the map runs in the caller's process, so what a stage
writes is byte-identical whichever runner made it (tests/test_parallel.py checks prepare's).

The runner params are not a param of any stage in dvc.yaml: they change where the work runs,
never what it produces, so switching them does not re-run anything.

A worker that dies (a parser's segfault, `os._exit`, the OOM killer) breaks a process pool:
every pending future raises BrokenProcessPool. The map survives it (issue #18): the items
that were in flight are redone one at a time in a worker of their own, so the item that
kills its worker is known and comes back as `WorkerDied` (the caller decides what that
means: prepare makes it a reject); the rest go on, in a fresh pool, results still in input
order. On Dask, a task whose workers kept dying raises KilledWorker; it is redone here the
same way, alone.

On a Dask cluster of your own (`dask_address`), the workers may run in any folder of any
machine: the caller sends absolute paths, and `must_see` names the folders every worker must
see (a shared filesystem); a worker that cannot stops the map before it starts.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

from cadenza.config import RunnerParams

log = logging.getLogger(__name__)

T = TypeVar("T")  # an item
R = TypeVar("R")  # its result


@dataclass(frozen=True)
class WorkerDied:
    """The result of an item whose worker process died while running it."""

    exitcode: int | None  # the process's; negative: the signal that killed it

    @property
    def how(self) -> str:
        """How the worker ended, e.g. 'exit code -11 / signal SIGSEGV'. A negative exit code
        is the signal that killed it; SIGKILL is what the out-of-memory killer sends."""
        how = f"exit code {self.exitcode}"
        if self.exitcode is not None and self.exitcode < 0:
            with contextlib.suppress(ValueError):
                how += f" / signal {signal.Signals(-self.exitcode).name}"
            if self.exitcode == -signal.SIGKILL:
                how += ", e.g. the out-of-memory killer"
        return how


def map_ordered(
    fn: Callable[[T], R], items: list[T], runner: RunnerParams, must_see: Sequence[Path] = ()
) -> Iterator[R | WorkerDied]:
    """`map(fn, items)` on the chosen runner, lazily, results in input order.

    On the process and Dask runners an item whose worker dies gives `WorkerDied` as its result
    (see the module docstring); an exception `fn` raises still propagates. On a Dask cluster
    at `dask_address`, a worker that cannot see every folder of `must_see` is a RuntimeError.
    """
    if runner.kind == "serial" or len(items) <= 1:
        yield from map(fn, items)
        return
    workers = runner.workers or os.cpu_count() or 1
    if runner.kind == "process":
        yield from _process_map(fn, items, workers)
        return
    with _dask_client(runner, workers) as client:
        if runner.dask_address:
            check_workers_see(client, must_see)
        yield from _dask_map(client, fn, items)


def check_workers_see(client: Any, folders: Sequence[Path]) -> None:
    """Refuse to map when a worker of the cluster cannot see one of `folders`.

    Why: such a worker fails every item it gets (in prepare, a FileNotFoundError reject per
    file), and with one such worker of ten a stage would succeed on 90% of its input, silently.
    """
    if not folders:
        return
    missing = client.run(missing_folders, [str(f) for f in folders])
    blind = {worker: gone for worker, gone in missing.items() if gone}
    if blind:
        named = "; ".join(f"{worker} lacks {', '.join(gone)}" for worker, gone in blind.items())
        raise RuntimeError(
            f"{len(blind)} of {len(missing)} Dask workers cannot see the folders this map "
            f"reads ({named}); start them where these paths exist, e.g. on a shared filesystem"
        )


def missing_folders(folders: list[str]) -> list[str]:
    """Those of `folders` that are not folders here (run on each Dask worker)."""
    return [f for f in folders if not os.path.isdir(f)]


MAX_CHUNK = 16


def chunk_size(n_items: int, workers: int) -> int:
    """Items per task sent to a pool worker: a few chunks per worker, at most `MAX_CHUNK`.

    Why the cap: results come back a whole chunk at a time, in order, so a chunk of
    `n / (workers * 8)` items (over 1,000 files on LPD's 21k) left the progress bar still for
    minutes. 16 items still amortise the pickling of a task (~1 ms) over tens of ms of work.
    """
    return max(1, min(MAX_CHUNK, n_items // (workers * 8)))


# spawn, not fork: the parent may hold Arrow / OpenMP thread pools that fork breaks
SPAWN = multiprocessing.get_context("spawn")


def _process_map(fn: Callable, items: list, workers: int) -> Iterator[Any]:
    """A process pool's ordered map that survives the death of a worker.

    When the pool breaks, the items not yet returned are redone: the first `(workers + 1)`
    chunks of them (those the pool can have had in flight) one at a time in a worker of
    their own, the rest in a fresh pool. Why not all of them one at a time: after an early
    crash on a 21k-file corpus that would run the rest on one core. If a crash is not
    reproducible (an OOM kill caused by the other workers' load), the isolated items just
    succeed. Each round moves on by at least one item, so the loop ends.
    """
    done = 0
    while done < len(items):
        rest = items[done:]
        chunk = chunk_size(len(rest), workers)
        try:
            with ProcessPoolExecutor(
                workers, mp_context=SPAWN, initializer=exit_with_parent, initargs=(os.getpid(),)
            ) as pool:
                for result in pool.map(fn, rest, chunksize=chunk):
                    yield result
                    done += 1
            return
        except BrokenProcessPool:
            suspects = items[done : done + (workers + 1) * chunk]
            log.warning(
                "a worker process died; redoing %d items one at a time to find the one "
                "that killed it",
                len(suspects),
            )
            for result in _isolated_map(fn, suspects):
                yield result
                done += 1


def exit_with_parent(parent: int) -> None:
    """A pool worker's initializer: exit once the process that started it is gone.

    Why: a SIGKILLed stage cannot shut its pool down, and its idle workers (hundreds of MB
    each, with a parser's imports) would live on under PID 1 forever. A daemon thread polls
    the parent id once a second; the worker's own work never waits for it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _isolated_map(fn: Callable, items: list) -> Iterator[Any]:
    """`map(fn, items)` in a single worker process, one item at a time; when the worker dies,
    the item it had gets `WorkerDied` and a new worker takes the next."""
    worker: SoloWorker | None = None
    try:
        for item in items:
            worker = worker or SoloWorker(fn)
            result = worker.run(item)
            if isinstance(result, WorkerDied):
                log.warning("a worker process died on an item (%s)", result.how)
                worker.close()
                worker = None
            yield result
    finally:
        if worker is not None:
            worker.close()


class SoloWorker:
    """One spawned process that runs `fn` on the items sent to it, one at a time.

    Why not a ProcessPoolExecutor of one: when its process dies the executor only says
    "terminated abruptly"; owning the process gives its exit code for the reject's reason.
    """

    def __init__(self, fn: Callable) -> None:
        self._conn, child = SPAWN.Pipe()
        self._proc = SPAWN.Process(target=_solo_loop, args=(fn, child), daemon=True)
        self._proc.start()
        child.close()

    def run(self, item: Any) -> Any:
        """`fn(item)` in the worker; `WorkerDied` if the worker died doing it."""
        try:
            self._conn.send(item)
            ok, value = self._conn.recv()
        except (EOFError, OSError):  # the pipe closed: the process is gone
            self._proc.join()
            return WorkerDied(self._proc.exitcode)
        if not ok:
            raise value
        return value

    def close(self) -> None:
        self._conn.close()  # the worker's recv() ends and it exits
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()


def _solo_loop(fn: Callable, conn: Connection) -> None:
    """A `SoloWorker`'s process: run `fn` on each item received, send back (ok, value)."""
    while True:
        try:
            item = conn.recv()
        except EOFError:
            return
        try:
            conn.send((True, fn(item)))
        except Exception as err:  # raised again in the parent, as a pool's worker does
            try:
                conn.send((False, err))
            except Exception:  # an exception that does not pickle
                conn.send((False, RuntimeError(f"{type(err).__name__}: {err}")))


def _dask_map(client: Any, fn: Callable, items: list) -> Iterable[Any]:
    """One Dask task per item. A task that Dask gives up on (KilledWorker) is redone here,
    alone in a worker process of its own: Dask blames every task a dying worker held, the
    innocent ones queued behind the culprit too, so only the isolated run tells them apart."""
    from distributed import KilledWorker

    for item, future in zip(items, client.map(fn, items, pure=False), strict=True):
        try:
            yield future.result()
        except KilledWorker:
            yield from _isolated_map(fn, [item])


@contextlib.contextmanager
def _dask_client(runner: RunnerParams, workers: int) -> Iterator[Any]:
    from distributed import Client, LocalCluster

    if runner.dask_address:
        log.info("mapping over the Dask cluster at %s", runner.dask_address)
        with Client(runner.dask_address) as client:
            yield client
        return
    log.info(
        "mapping over a local Dask cluster (%d workers, processes=%s)",
        workers,
        runner.dask_processes,
    )
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=runner.dask_processes,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
