"""Kill-and-rerun trials of the real commands, for the fault tests and `bench/robustness.py`.

Real processes, really killed: a `cadenza` command runs as a subprocess in a tiny DVC project
and its whole process group (pool workers included) gets SIGKILL, at the first moment it
writes an output or after a seeded random delay. After every kill no partial file may be
visible under `data/` or `reports/`; then a re-run finishes, and the caller compares its
outputs with an uninterrupted run's.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from cadenza.dvc_cli import dvc_argv, dvc_env
from cadenza.io import TEMP_SUBDIR
from cadenza.testing.checkout import ROOT
from cadenza.testing.corpora import write_corpus

CLI = [sys.executable, "-m", "cadenza.cli"]
KILLS = 2  # kill/re-run trials per stage in CI (one mid-write); bench/robustness.py runs more
LOG_COLUMNS = ["epoch", "step", "train_loss", "valid_loss", "lr"]  # not the timings
PREPARE = ["prepare", "--raw", "data/raw", "--out", "data/prepared"]
TRAIN = [
    "train",
    "chord_lstm",
    "--prepared",
    "data/prepared",
    "--ckpt",
    "data/models/chord_lstm/ckpt.pt",
    "--log",
    "reports/train/chord_lstm.csv",
    "--metrics",
    "reports/valid/chord_lstm.json",
]


def env() -> dict[str, str]:
    """DVC's environment (this venv's `cadenza` first on PATH), with one thread: on a small
    shared CPU, torch's thread pool thrashes against the other runs."""
    return {**dvc_env(), "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def make_project(dest: Path, sources: dict) -> Path:
    """A DVC project (no git) with this project's params, a tiny chord_lstm, `sources`."""
    dest.mkdir(parents=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["sources"] = sources
    params["prepare"].update(valid_fraction=0.2, test_fraction=0.2)
    params["profiles"]["quick"] = {"max_epochs": 3, "max_batches": 8}
    params["models"]["chord_lstm"]["net"].update(hidden=24, embedding=8)
    params["models"]["chord_lstm"]["train"].update(batch_size=4, seq_len=16, patience=9)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(dvc_argv("init", "--no-scm", "-q"), cwd=dest, env=env(), check=True)
    return dest


def run_cli(args: list[str], project: Path) -> float:
    """`cadenza ARGS` in `project`, uninterrupted; its wall time, within which kills land."""
    start = time.perf_counter()
    proc = subprocess.run(
        CLI + args, cwd=project, env=env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return time.perf_counter() - start


def partial_files(project: Path) -> list[str]:
    """Anything under data/ or reports/ that looks like an unfinished write."""
    bad = []
    for top in ("data", "reports"):
        for p in (project / top).rglob("*"):
            if p.name.startswith(".") or p.suffix in (".tmp", ".part"):
                bad.append(str(p.relative_to(project)))
    return bad


def writing(project: Path) -> bool:
    """True while an atomic write is under way: a temp exists (in the project's temp
    folder, or, were temps kept beside their targets, under data/ or reports/)."""
    for folder in (TEMP_SUBDIR, "data", "data/raw", "data/models/chord_lstm", "reports/train"):
        with contextlib.suppress(FileNotFoundError), os.scandir(project / folder) as entries:
            if any(e.name.endswith(".tmp") for e in entries):
                return True
    return False


def kill_at_random(args: list[str], project: Path, delay_s: float | None) -> bool:
    """Start the command; SIGKILL its process group after `delay_s`, or (None) at the first
    moment it is writing an output; True if it was killed before it finished."""
    proc = subprocess.Popen(
        CLI + args,
        cwd=project,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + (delay_s if delay_s is not None else 600)
    while proc.poll() is None and time.monotonic() < deadline:
        if delay_s is None and writing(project):
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        return False
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def kill_and_rerun(
    args: list[str],
    project: Path,
    delay_s: float | None,
    after_kill: Callable[[], None],
    after_rerun: Callable[[], None],
) -> bool:
    """One trial: kill (see `kill_at_random`), check, re-run, check; True if the kill landed."""
    killed = kill_at_random(args, project, delay_s)
    assert partial_files(project) == [], "partial file visible after the kill"
    after_kill()
    run_cli(args, project)
    assert partial_files(project) == []
    after_rerun()
    return killed


def kill_trials(
    args: list[str],
    project: Path,
    full_s: float,
    rng: random.Random,
    after_kill: Callable[[], None],
    after_rerun: Callable[[], None],
    before: Callable[[], None] = lambda: None,
    trials: int = KILLS,
) -> int:
    """Kill, check, re-run, compare; return how many kills landed before the end.

    The first trial kills in the middle of an atomic write (the moment a temp appears), the
    worst moment for a partial file; the others at seeded random points of the run."""
    killed = 0
    for trial in range(trials):
        before()
        delay = None if trial == 0 else rng.uniform(0.15, 1.0) * full_s
        killed += kill_and_rerun(args, project, delay, after_kill, after_rerun)
    return killed


def make_toy_project(root: Path) -> Path:
    """A project under `root` whose data/raw/bach_chorales holds the toy corpus of
    cadenza.testing.corpora.write_corpus (30 good files and 3 broken ones)."""
    project = make_project(root / "p", {"bach_chorales": {"limit": 0}})
    shutil.move(write_corpus(root) / "toy", project / "data" / "raw" / "bach_chorales")
    return project
