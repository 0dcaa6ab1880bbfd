"""Faults (issue #8): SIGKILL in mid-run, two `dvc repro` at once, tampered checkpoints.

Real processes, really killed: `cadenza fetch` (from a throttled loopback HTTP server),
`cadenza prepare` and `cadenza train` run as subprocesses in a tiny DVC project and get
SIGKILL (the whole process group, pool workers included) after a seeded random delay. After
every kill: no partial file is visible under `data/` or `reports/`, and each output is either
absent, or complete. Then a re-run finishes, and its outputs must be byte-identical to an
uninterrupted run (fetch, prepare); for training, the weights must be equal with tolerance 0
(`torch.equal`, CPU), and the log equal except its wall-clock columns.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from cadenza.checkpoint import load_checkpoint, seal
from cadenza.testing.checkout import DATASETS, ROOT
from cadenza.testing.corpora import snapshot
from cadenza.testing.faults import (
    CLI,
    LOG_COLUMNS,
    PREPARE,
    TRAIN,
    env,
    kill_trials,
    make_project,
    make_toy_project,
    partial_files,
    run_cli,
)

pytestmark = pytest.mark.slow


# ---------------------------------------------------------------- fetch


@pytest.mark.skipif(
    not (DATASETS / "maestro-v2.0.0").is_dir(),
    reason="needs ../shared/datasets/maestro-v2.0.0",
)
def test_fetch_killed_anywhere_resumes_to_identical_output(tmp_path):
    from cadenza.testing import archives
    from cadenza.testing.loopback import Site, serve

    site = Site()
    data = archives.maestro_zip(per_split=2)
    site.files["/m.zip"] = data
    site.rate["/m.zip"] = len(data) // 2  # a 2 s download, so kills land in it too
    with serve(site):
        project = make_project(
            tmp_path / "p",
            {"maestro_v2": {"url": site.url("/m.zip"), "sha256": hashlib.sha256(data).hexdigest()}},
        )
        args = [
            "fetch",
            "maestro_v2",
            "--out",
            "data/raw/maestro_v2",
            "--cache",
            ".cache/downloads",
        ]
        out, cached = project / "data/raw/maestro_v2", project / ".cache/downloads"
        full_s = run_cli(args, project)
        reference = snapshot(out)
        assert "manifest.csv" in reference

        def complete_or_absent() -> None:
            assert not out.exists() or snapshot(out) == reference

        def identical() -> None:
            assert snapshot(out) == reference

        def fresh_download() -> None:  # keep a .part, so a killed download is resumed
            (cached / "maestro-v2.0.0-midi.zip").unlink(missing_ok=True)
            shutil.rmtree(out, ignore_errors=True)

        assert (
            kill_trials(
                args,
                project,
                full_s,
                random.Random(8),
                complete_or_absent,
                identical,
                fresh_download,
            )
            >= 1
        )
        assert (cached / "maestro-v2.0.0-midi.zip").read_bytes() == data


# ---------------------------------------------------------------- prepare and train


@pytest.fixture(scope="module")
def toy_project(tmp_path_factory) -> Path:
    return make_toy_project(tmp_path_factory.mktemp("faults"))


@pytest.fixture(scope="module")
def prepared_project(toy_project) -> Path:
    """The toy project with data/prepared in place (prepared uninterrupted, unless the
    prepare kill test already left it)."""
    if not (toy_project / "data" / "prepared" / "_meta.json").exists():
        run_cli(PREPARE, toy_project)
    return toy_project


def test_prepare_killed_anywhere_reruns_to_identical_output(toy_project):
    out = toy_project / "data" / "prepared"
    full_s = run_cli(PREPARE, toy_project)
    reference = snapshot(out)
    assert "rejects.parquet" in reference and "_meta.json" in reference

    def complete_or_absent() -> None:
        assert not out.exists() or snapshot(out) == reference

    def identical() -> None:
        assert snapshot(out) == reference

    pick = random.Random(11)

    def start_clean() -> None:  # some trials start with no previous output
        if pick.random() < 0.5:
            shutil.rmtree(out, ignore_errors=True)

    assert (
        kill_trials(
            PREPARE,
            toy_project,
            full_s,
            random.Random(9),
            complete_or_absent,
            identical,
            start_clean,
        )
        >= 1
    )


def test_train_killed_anywhere_resumes_to_the_same_weights(prepared_project):
    project = prepared_project
    ckpt = project / "data/models/chord_lstm/ckpt.pt"
    log = project / "reports/train/chord_lstm.csv"
    full_s = run_cli(TRAIN, project)
    reference = torch.load(ckpt, weights_only=True)
    reference_log = pd.read_csv(log)[LOG_COLUMNS]
    assert reference["epoch"] == 3

    def complete_or_absent() -> None:
        if ckpt.exists():
            load_checkpoint(ckpt)  # a whole checkpoint, from some epoch
        if log.exists():
            rows = pd.read_csv(log)[LOG_COLUMNS]
            pd.testing.assert_frame_equal(rows, reference_log.iloc[: len(rows)])

    def same_weights() -> None:
        got = torch.load(ckpt, weights_only=True)
        assert got["epoch"] == reference["epoch"] and got["step"] == reference["step"]
        assert all(torch.equal(got["state_dict"][k], v) for k, v in reference["state_dict"].items())
        pd.testing.assert_frame_equal(pd.read_csv(log)[LOG_COLUMNS], reference_log)
        assert not ckpt.with_name("ckpt.resume.pt").exists()

    def from_scratch() -> None:  # each trial trains again, so that the kill hits training
        shutil.rmtree(ckpt.parent, ignore_errors=True)
        log.unlink(missing_ok=True)

    assert (
        kill_trials(
            TRAIN,
            project,
            full_s,
            random.Random(10),
            complete_or_absent,
            same_weights,
            from_scratch,
        )
        >= 1
    )


def test_tampered_resume_file_is_refused_with_a_clear_error(prepared_project):
    project = prepared_project
    resume = project / "data/models/chord_lstm/ckpt.resume.pt"
    resume.parent.mkdir(parents=True, exist_ok=True)
    resume.write_bytes(b"PK\x03\x04 not a checkpoint")
    proc = subprocess.run(
        CLI + TRAIN, cwd=project, env=env(), capture_output=True, text=True, timeout=600
    )
    resume.unlink()
    assert proc.returncode != 0
    assert "ckpt.resume.pt: not a loadable resume file" in proc.stderr
    assert "delete it to train from the start" in proc.stderr


# ---------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def checkpoint(prepared_project) -> Path:
    ckpt = prepared_project / "data/models/chord_lstm/ckpt.pt"
    if not ckpt.exists():
        run_cli(TRAIN, prepared_project)
    return ckpt


def _tampered(checkpoint: Path, tmp_path: Path, edit: Callable[[dict], None]) -> Path:
    """An edited checkpoint, resealed (its content sha256 recomputed), as a deliberate
    tamperer would: the checks behind the integrity check must still hold."""
    payload = torch.load(checkpoint, weights_only=True)
    edit(payload)
    path = tmp_path / "tampered.pt"
    torch.save(seal(payload), path)
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda p: p["state_dict"].update({next(iter(p["state_dict"])): torch.zeros(3)}),
            "tampered checkpoint: its weights do not fit its params",
        ),
        (
            lambda p: p["state_dict"].pop(next(iter(p["state_dict"]))),
            "tampered checkpoint: its weights do not fit its params",
        ),
        (lambda p: p.pop("info"), "tampered checkpoint: no info"),
        (lambda p: p["params"].update(family="gpt5"), "params.family: unknown model family"),
        (lambda p: p["params"]["train"].update(lr="fast"), "params.train.lr: expected a number"),
        (
            lambda p: p.update(format="cadenza-checkpoint/1"),
            "a cadenza-checkpoint/1 checkpoint, from an older Cadenza; this one reads "
            "cadenza-checkpoint/3 only",
        ),
    ],
)
def test_tampered_checkpoint_is_refused_with_a_clear_error(checkpoint, tmp_path, edit, message):
    with pytest.raises(ValueError, match=message):
        load_checkpoint(_tampered(checkpoint, tmp_path, edit))


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9, 0.999])
def test_truncated_or_bit_flipped_checkpoint_is_refused(checkpoint, tmp_path, where):
    data = checkpoint.read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: int(len(data) * where)])
    with pytest.raises(ValueError, match="not a loadable checkpoint"):
        load_checkpoint(cut)
    flipped = bytearray(data)
    flipped[int(len(data) * where)] ^= 0xFF
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(flipped))
    try:  # refused, or the flip hit bytes no reader looks at: the content is unchanged
        _, _, got = load_checkpoint(bad)
    except ValueError as err:
        assert str(bad) in str(err)
    else:
        want = torch.load(checkpoint, weights_only=True)
        assert got["sha256"] == want["sha256"]
        assert all(torch.equal(got["state_dict"][k], v) for k, v in want["state_dict"].items())


def test_generate_refuses_a_damaged_checkpoint_in_one_line(checkpoint, prepared_project, tmp_path):
    """The CLI shows the integrity error as one line naming the file, not a traceback."""
    data = bytearray(checkpoint.read_bytes())
    with zipfile.ZipFile(checkpoint) as zf:  # flip bytes inside the largest tensor's record
        info = max(zf.infolist(), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename) + len(info.extra) + 8
    data[start : start + 16] = bytes(b ^ 0xFF for b in data[start : start + 16])
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(data))
    proc = subprocess.run(
        CLI
        + [
            "generate",
            "chord_lstm",
            "--ckpt",
            str(bad),
            "--prepared",
            "data/prepared",
            "--out",
            str(tmp_path / "samples"),
        ],
        cwd=prepared_project,
        env=env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"error: {bad}: checkpoint integrity check failed" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "samples").exists()


def test_loading_never_unpickles_code():
    """Every torch.load in the code base passes weights_only=True."""
    for path in (ROOT / "src").rglob("*.py"):
        for line in path.read_text().splitlines():
            if (
                "torch.load(" in line
                and not line.lstrip().startswith(("#", '"', "`"))
                and "`torch.load" not in line
            ):
                assert "weights_only=True" in line, f"{path}: {line.strip()}"


# ---------------------------------------------------------------- two dvc repro at once


def test_second_concurrent_repro_is_refused_by_dvcs_lock(tmp_path):
    """Two `dvc repro` in one project: the second fails on DVC's lock (DVC 3 holds a read/
    write lock per output path while a stage runs), the first finishes, and its outputs are
    whole and recorded (a third repro has nothing to do)."""
    project = make_toy_project(tmp_path)
    # the real prepare stage, held a few seconds first so that the runs surely overlap
    stage = {
        "stages": {
            "prepare": {
                "cmd": f"{sys.executable} -c 'import time; time.sleep(6)' && cadenza prepare "
                "--raw data/raw --out data/prepared",
                "deps": ["data/raw"],
                "params": ["prepare"],
                "outs": ["data/prepared"],
            }
        }
    }
    (project / "dvc.yaml").write_text(yaml.safe_dump(stage))
    dvc = [sys.executable, "-m", "dvc", "repro"]
    first = subprocess.Popen(
        dvc, cwd=project, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert first.stdout is not None
    while "Running stage" not in (line := first.stdout.readline()):
        assert line, "the first repro ended before running its stage"
    second = subprocess.run(
        dvc, cwd=project, env=env(), capture_output=True, text=True, timeout=300
    )
    rest = first.stdout.read()
    assert first.wait(timeout=300) == 0, rest[-3000:]
    assert second.returncode != 0
    message = second.stdout + second.stderr  # DVC 3 locks each output path (.dvc/tmp/rwlock)
    assert "data/prepared' is busy, it is being blocked by" in message
    assert ".dvc/tmp/rwlock" in message
    assert partial_files(project) == []
    pieces = pd.read_parquet(project / "data/prepared/pieces.parquet")
    assert len(pieces) == 30
    third = subprocess.run(dvc, cwd=project, env=env(), capture_output=True, text=True, timeout=300)
    assert third.returncode == 0 and "Running stage" not in third.stdout
