"""Prepare on a real Dask cluster started elsewhere, and a failed prepare under real DVC.

Why: a `dask scheduler` and a `dask worker` started outside the project folder got relative
paths (`data/raw/...`) that the worker could not open, every file became a reject, the
rejects were logged after the error, and DVC had already deleted `data/prepared`. Here the
worker runs in another folder, so only absolute paths reach the files; the shards must still
be byte-identical to a serial run's. The second test runs the real prepare stage of dvc.yaml
on a corpus of broken files and checks that the previous output survives.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cadenza.config import PrepareParams, RunnerParams
from cadenza.parallel import map_ordered
from cadenza.prepare.stage import prepare
from cadenza.testing.checkout import ROOT
from cadenza.testing.corpora import snapshot, write_corpus

from .test_pipeline import run

DASK = Path(sys.executable).with_name("dask")
START_TIMEOUT_S = 30.0


def _wait_for_file(path: Path, proc: subprocess.Popen, timeout: float) -> None:
    """Wait until `path` holds JSON (the scheduler file), failing early if `proc` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            json.loads(path.read_text())
            return
        except (FileNotFoundError, json.JSONDecodeError):
            time.sleep(0.1)
    raise TimeoutError(f"no scheduler file {path} after {timeout} s")


def _stop(procs: list[subprocess.Popen]) -> None:
    """End the processes this test started, politely first, all at once (quicker)."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def dask_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `dask scheduler` on 127.0.0.1 and one `dask worker` whose working directory is
    an empty folder of its own: the address of the scheduler."""
    from distributed import Client

    base = tmp_path_factory.mktemp("cluster")
    (base / "scheduler").mkdir()
    (base / "worker").mkdir()
    scheduler_file = base / "scheduler.json"
    logs = (base / "scheduler.log").open("w"), (base / "worker.log").open("w")
    scheduler = subprocess.Popen(
        [
            str(DASK),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        ],
        cwd=base / "scheduler",
        stdout=logs[0],
        stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        _wait_for_file(scheduler_file, scheduler, START_TIMEOUT_S)
        worker = subprocess.Popen(
            [
                str(DASK),
                "worker",
                "--scheduler-file",
                str(scheduler_file),
                "--no-nanny",
                "--nthreads",
                "1",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
            ],
            cwd=base / "worker",
            stdout=logs[1],
            stderr=subprocess.STDOUT,
        )
        address = json.loads(scheduler_file.read_text())["address"]
        with Client(address, timeout=START_TIMEOUT_S) as client:
            client.wait_for_workers(1, timeout=START_TIMEOUT_S)
            assert set(client.run(os.getcwd).values()) == {str(base / "worker")}
        yield address
    finally:
        _stop([proc for proc in (worker, scheduler) if proc is not None])
        for log in logs:
            log.close()


def test_prepare_on_a_worker_started_elsewhere_matches_serial(dask_address, tmp_path, monkeypatch):
    """The corpus is named by a relative path, as dvc.yaml names it; the worker's working
    directory is elsewhere. A file missing from the corpus is a reject whose reason names it
    as the user did (relative), so the shards do not depend on where the clone lives."""
    raw = write_corpus(tmp_path)
    (raw / "toy" / "midi" / "p29.mid").unlink()
    monkeypatch.chdir(tmp_path)
    prepare(Path("raw"), ["toy"], Path("serial"), PrepareParams(), RunnerParams(kind="serial"))
    prepare(
        Path("raw"),
        ["toy"],
        Path("dask"),
        PrepareParams(),
        RunnerParams(kind="dask", dask_address=dask_address),
    )
    expected, got = snapshot(tmp_path / "serial"), snapshot(tmp_path / "dask")
    assert got.keys() == expected.keys()
    assert [f for f in got if got[f] != expected[f]] == []
    rejects = pd.read_parquet(tmp_path / "dask" / "rejects.parquet").set_index("piece_id")
    assert set(rejects.index) == {"toy/corrupt", "toy/empty", "toy/truncated", "toy/p29", "bwv277"}
    missing = rejects.loc["toy/p29", "reason"]
    assert "FileNotFoundError" in missing and "'raw/toy/midi/p29.mid'" in missing
    assert str(tmp_path) not in "".join(rejects.reason)


def test_a_worker_that_cannot_see_the_corpus_stops_the_map(dask_address, tmp_path):
    """A worker without the shared filesystem would reject every file it got, so a cluster
    with one such worker of ten would prepare 90% of the corpus without a word: refused."""
    absent = tmp_path / "not-mounted"
    with pytest.raises(RuntimeError, match=r"1 of 1 Dask workers cannot see .*not-mounted"):
        list(
            map_ordered(
                abs,
                [1, -2],
                RunnerParams(kind="dask", dask_address=dask_address),
                must_see=[absent],
            )
        )


def _prepare_project(dest: Path) -> Path:
    """This project's dvc.yaml, code and params in `dest`, a DVC repo without git, with the
    serial runner (no pool to start: what is tested is DVC's handling of the output)."""
    from dvc.repo import Repo

    dest.mkdir(parents=True)
    shutil.copy(ROOT / "dvc.yaml", dest / "dvc.yaml")
    shutil.copytree(ROOT / "src", dest / "src", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["runner"]["kind"] = "serial"
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    Repo.init(dest, no_scm=True).close()
    return dest


def test_failed_prepare_under_dvc_keeps_the_previous_output_and_logs_rejects_first(tmp_path):
    """Every file broken: the stage fails, naming the commonest reason, after logging each
    reject; the `data/prepared` of the previous run is still there, byte for byte."""
    project = _prepare_project(tmp_path / "project")
    raw = project / "data" / "raw"
    shutil.move(write_corpus(tmp_path / "corpus") / "toy", raw / "bach_chorales")
    prepare(raw, ["bach_chorales"], project / "data" / "prepared", PrepareParams())
    before = snapshot(project / "data" / "prepared")
    for i, midi in enumerate((raw / "bach_chorales" / "midi").glob("*.mid")):
        midi.write_bytes(b"MThd" + bytes(i % 5))  # truncated headers of 4 to 8 bytes
    proc = run(["dvc", "repro", "--single-item", "prepare"], project, check=False)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert snapshot(project / "data" / "prepared") == before
    error = proc.stderr.find("no usable piece in ['bach_chorales']")
    assert error >= 0, proc.stderr[-3000:]
    assert 0 <= proc.stderr.find("rejected bach_chorales/p00 (prepare)") < error
    message = proc.stderr[error:].splitlines()[0]
    assert "33 of 33 files rejected, 0 filtered out" in message, message
    # the commonest reason, with its count, its numbers blanked so that all 33 count as one
    assert "reasons: 33 x prepare: unreadable MIDI: truncated MIDI header: # bytes" in message
