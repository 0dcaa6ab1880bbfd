"""Prepare's per-file map over a process pool and over Dask gives the serial run's shards,
byte for byte, rejects included (the toy corpus holds a corrupt, an empty and a truncated
file)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from cadenza.config import PrepareParams, RunnerParams
from cadenza.prepare.run import prepare

from .conftest import snapshot, write_corpus

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
