"""Where prepare's per-file work runs: in this process, a local process pool, or Dask.

Why: parsing and encoding are independent per file, so they map over any executor. A process
pool uses the cores of one machine (the default); a Dask cluster (`runner.kind: dask` in
params.yaml) spreads the parsing of a corpus over many machines (the results still meet in
this process, which writes the shards). Results always come back
in input order, and everything after the map runs in this process, so the shards are
byte-identical whichever runner made them (tests/test_runner.py checks it).

The runner is not a dep of the prepare stage in dvc.yaml: it changes where the work runs,
never what it produces, so switching it does not re-run anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from typing import Any

from cadenza.config import RunnerParams

log = logging.getLogger(__name__)


def map_ordered(fn: Callable[[Any], Any], items: list, runner: RunnerParams) -> Iterator[Any]:
    """`map(fn, items)` on the chosen runner, lazily, results in input order."""
    if runner.kind == "serial" or len(items) <= 1:
        yield from map(fn, items)
        return
    with _executor(runner) as (pool, workers):
        yield from _map(pool, fn, items, chunk_size(len(items), workers))


MAX_CHUNK = 16


def chunk_size(n_items: int, workers: int) -> int:
    """Files per task sent to a pool worker: a few chunks per worker, at most `MAX_CHUNK`.

    Why the cap: results come back a whole chunk at a time, in order, so a chunk of
    `n / (workers * 8)` files (over 1,000 on LPD's 21k) left the progress bar still for
    minutes. 16 files still amortise the pickling of a task (~1 ms) over tens of ms of work.
    """
    return max(1, min(MAX_CHUNK, n_items // (workers * 8)))


def _map(pool: Executor | Any, fn: Callable, items: list, chunk: int) -> Iterable[Any]:
    if isinstance(pool, ProcessPoolExecutor):
        return pool.map(fn, items, chunksize=chunk)
    futures = pool.map(fn, items, pure=False)  # a distributed.Client: one task per file
    return (future.result() for future in futures)


@contextlib.contextmanager
def _executor(runner: RunnerParams) -> Iterator[tuple[Any, int]]:
    workers = runner.workers or os.cpu_count() or 1
    if runner.kind == "process":
        import multiprocessing

        # spawn, not fork: the parent may hold Arrow / OpenMP thread pools that fork breaks
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            yield pool, workers
        return
    from distributed import Client, LocalCluster

    if runner.dask_address:
        log.info("prepare: mapping over the Dask cluster at %s", runner.dask_address)
        with Client(runner.dask_address) as client:
            yield client, max(1, len(client.nthreads()))
        return
    log.info("prepare: mapping over a local Dask cluster (%d workers, processes=%s)",
             workers, runner.dask_processes)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=runner.dask_processes,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        yield client, workers
