"""Prepare's per-file map over a process pool and over Dask gives the serial run's shards,
byte for byte, rejects included (the toy corpus holds a corrupt, an empty and a truncated
file); a worker process that dies takes only its own item with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import dask
import pandas as pd
import pytest

from cadenza.config import PrepareParams, RunnerParams
from cadenza.parallel import WorkerDied, map_ordered
from cadenza.prepare.shards import REJECT_COLUMNS
from cadenza.prepare.stage import (
    FileJob,
    Rejected,
    SourceTally,
    file_outcome,
    prepare,
    reject_row,
)
from cadenza.testing.checkout import ROOT
from cadenza.testing.corpora import snapshot, write_corpus
from cadenza.testing.crashing import EXIT_ON, SEGFAULT_ON, die_or_raise, square_or_die

RUNNERS = {
    "process": RunnerParams(kind="process", workers=2),
    "dask-threads": RunnerParams(kind="dask", workers=2, dask_processes=False),
    "dask-processes": RunnerParams(kind="dask", workers=2, dask_processes=True),
}


@pytest.fixture(scope="module")
def serial_shards(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("runner")
    raw = write_corpus(root)
    prepare(raw, ["toy"], root / "serial", PrepareParams(), RunnerParams(kind="serial"))
    return raw, snapshot(root / "serial")


@pytest.mark.parametrize("name", list(RUNNERS))
def test_runner_shards_are_byte_identical_to_serial(name, serial_shards, tmp_path):
    raw, expected = serial_shards
    prepare(raw, ["toy"], tmp_path / name, PrepareParams(), RUNNERS[name])
    got = snapshot(tmp_path / name)
    assert got.keys() == expected.keys()
    assert [f for f in got if got[f] != expected[f]] == []
    rejects = pd.read_parquet(tmp_path / name / "rejects.parquet")
    assert set(rejects.piece_id) >= {"toy/corrupt", "toy/empty", "toy/truncated"}


def test_process_map_survives_a_dying_worker_and_names_the_item_that_killed_it():
    """Two items kill their worker (SIGSEGV, os._exit): each becomes WorkerDied with the exit
    code, every other item comes back, squared, in input order."""
    items = list(range(40))
    results = list(map_ordered(square_or_die, items, RunnerParams(kind="process", workers=2)))
    assert len(results) == len(items)
    for n, result in zip(items, results, strict=True):
        if n == SEGFAULT_ON:
            assert result == WorkerDied(-11)
            assert result.how == "exit code -11 / signal SIGSEGV"
        elif n == EXIT_ON:
            assert result == WorkerDied(3)
            assert result.how == "exit code 3"
        else:
            assert result == n * n


def test_an_exception_still_propagates_after_a_worker_died():
    """Only a dead worker becomes a result: a bug that raises still stops the map."""
    with pytest.raises(ValueError, match="item 6 is bad"):
        list(map_ordered(die_or_raise, list(range(12)), RunnerParams(kind="process", workers=2)))


def test_a_dead_worker_becomes_a_reject_row_of_prepare():
    """prepare's consumption of a map result: WorkerDied -> a `worker` reject, counted as
    rejected (not kept, not filtered) and written as a rejects-table row."""
    job = FileJob(
        Path("raw/toy"),
        "toy",
        SimpleNamespace(piece_id="bwv1", path="bwv1.mid"),
        {},
        PrepareParams(),
    )
    reason = (
        "the worker process died while preparing this file (exit code -9 / "
        "signal SIGKILL, e.g. the out-of-memory killer)"
    )
    outcome = file_outcome(WorkerDied(-9))
    assert outcome == Rejected("worker", reason)
    tally = SourceTally("toy", 1)
    tally.add(outcome)
    assert (tally.kept, tally.rejected, tally.filtered.total()) == (0, 1, 0)
    row = dict(zip(REJECT_COLUMNS, reject_row("toy", job, outcome), strict=True))
    assert row == {
        "source": "toy",
        "piece_id": "toy/bwv1",
        "file": "bwv1.mid",
        "stage": "worker",
        "reason": reason,
    }
    assert file_outcome(Rejected("parse", "bad header")) == Rejected("parse", "bad header")


def test_dask_map_redoes_a_killed_task_alone_and_names_the_culprit():
    """Dask gives up on every task its dying worker held (allowed-failures 0 here, to be
    quick): redone alone, the innocent ones come back and only the culprit is WorkerDied."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        results = list(
            map_ordered(
                square_or_die,
                list(range(12)),
                RunnerParams(kind="dask", workers=1, dask_processes=True),
            )
        )
    assert results == [WorkerDied(-11) if n == SEGFAULT_ON else n * n for n in range(12)]


# a stage whose pool is busy when the stage itself is SIGKILLed
KILLED_STAGE = """
import sys
from cadenza.config import RunnerParams
from cadenza.parallel import map_ordered
from cadenza.testing.crashing import note_pid_and_hang
list(map_ordered(note_pid_and_hang, [sys.argv[1]] * 2, RunnerParams(kind="process", workers=2)))
"""


def _alive(pid: int) -> bool:
    """Running, not a zombie (an orphan's reaper may be slow to collect it)."""
    try:
        return "\tZ" not in Path(f"/proc/{pid}/status").read_text().split("State:")[1][:4]
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_pool_workers_exit_when_their_stage_is_killed(tmp_path):
    stage = subprocess.Popen(
        [sys.executable, "-c", KILLED_STAGE, str(tmp_path)],
        env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
    )
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("*.pid"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = [int(p.stem) for p in tmp_path.glob("*.pid")]
    assert len(workers) == 2 and all(_alive(pid) for pid in workers)
    stage.send_signal(signal.SIGKILL)
    stage.wait(timeout=30)
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers), "orphaned pool workers still running"
