"""Atomic writes under SIGKILL: no partial file is ever visible beside a target (issue #8)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cadenza.io import TEMP_SUBDIR, atomic_dir, atomic_path, current_umask
from cadenza.testing.checkout import ROOT

# a writer that starts an atomic file write and an atomic folder write, then hangs mid-write
HANG_MID_WRITE = """
import sys, time
from pathlib import Path
from cadenza.io import atomic_dir, atomic_path
target = Path(sys.argv[1])
with atomic_dir(target / "folder") as tmp:
    (tmp / "part.bin").write_bytes(b"half")
    with atomic_path(target / "file.txt") as f:
        f.write_text("half a file")
        print("writing", flush=True)
        time.sleep(60)
"""


def _kill_mid_write(target: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-c", HANG_MID_WRITE, str(target)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "writing\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_kill_in_a_dvc_project_leaves_nothing_under_the_outputs(tmp_path):
    (tmp_path / ".dvc").mkdir()
    data = tmp_path / "data"
    (data / "folder").mkdir(parents=True)
    (data / "folder" / "old.bin").write_bytes(b"old, complete")
    _kill_mid_write(data)
    assert _all_files(data) == ["folder", "folder/old.bin"]  # no temp, the old folder whole
    stale = _all_files(tmp_path / TEMP_SUBDIR)
    assert len(stale) >= 2  # the killed writer's temps, outside data/
    with atomic_path(data / "file.txt") as f:
        f.write_text("whole")
    with atomic_dir(data / "folder") as tmp:
        (tmp / "new.bin").write_bytes(b"new")
    assert _all_files(data) == ["file.txt", "folder", "folder/new.bin"]
    assert (data / "file.txt").read_text() == "whole"
    assert _all_files(tmp_path / TEMP_SUBDIR) == []  # the next writes swept the stale temps


def test_kill_outside_a_project_is_cleaned_by_the_next_write(tmp_path):
    """Without a `.dvc/` above it, the temp is a hidden sibling; the next write of the same
    target removes it, and leaves other targets' temps alone."""
    _kill_mid_write(tmp_path)
    hidden = [n for n in os.listdir(tmp_path) if n.startswith(".")]
    assert any(n.startswith(".file.txt.") for n in hidden)
    assert any(n.startswith(".folder.") for n in hidden)
    with atomic_path(tmp_path / "file.txt") as f:
        f.write_text("whole")
    left = [n for n in os.listdir(tmp_path) if n.startswith(".")]
    assert not any(n.startswith(".file.txt.") for n in left)
    assert any(n.startswith(".folder.") for n in left)  # not this write's target
    with atomic_dir(tmp_path / "folder") as tmp:
        (tmp / "x").write_text("x")
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []


def test_temp_names_of_similar_targets_do_not_collide(tmp_path):
    """`raw` and `raw.csv`: sweeping one target's stale temps must not touch the other's."""
    (tmp_path / ".dvc").mkdir()
    with atomic_path(tmp_path / "data" / "raw.csv") as keep:
        with atomic_dir(tmp_path / "data" / "raw") as tmp:
            (tmp / "x").write_text("x")
        assert keep.exists()
        keep.write_text("a,b\n")
    assert (tmp_path / "data" / "raw.csv").read_text() == "a,b\n"


# a writer killed between atomic_dir's two renames: the old folder is away, the new not in
HANG_IN_SWAP = """
import os, sys, time
from pathlib import Path
from cadenza.io import atomic_dir
real = os.replace
def replace(src, dst):
    real(src, dst)
    if Path(src).name == "folder":
        print("swapping", flush=True)
        time.sleep(60)
os.replace = replace
with atomic_dir(Path(sys.argv[1]) / "folder") as tmp:
    (tmp / "new.bin").write_bytes(b"new")
"""


def test_a_kill_inside_the_swap_loses_nothing(tmp_path):
    (tmp_path / ".dvc").mkdir()
    data = tmp_path / "data"
    (data / "folder").mkdir(parents=True)
    (data / "folder" / "old.bin").write_bytes(b"old, complete")
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-c", HANG_IN_SWAP, str(data)], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "swapping\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not (data / "folder").exists()  # the old one sits under its temporary name
    # the next write puts it back first: even when that write fails too, nothing is lost
    with pytest.raises(RuntimeError), atomic_dir(data / "folder"):
        raise RuntimeError("killed again")
    assert _all_files(data) == ["folder", "folder/old.bin"]
    assert (data / "folder" / "old.bin").read_bytes() == b"old, complete"
    assert _all_files(tmp_path / TEMP_SUBDIR) == []


def test_failed_write_keeps_the_old_target(tmp_path):
    (tmp_path / "f.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("new, half")
        raise RuntimeError("disk full")
    assert (tmp_path / "f.txt").read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def test_atomic_write_is_fast_enough(tmp_path):
    """The project-root lookup costs a few stats per write, not a scan."""
    (tmp_path / ".dvc").mkdir()
    start = time.perf_counter()
    for i in range(200):
        with atomic_path(tmp_path / "data" / "a" / "b" / f"{i}.txt") as f:
            f.write_text("x")
    assert time.perf_counter() - start < 5


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o027, 0o640, 0o750)]
)
def test_atomic_outputs_get_the_modes_of_the_umask(tmp_path, umask, file_mode, dir_mode):
    """Not mkstemp's 0600 / mkdtemp's 0700: a shard, report or checkpoint is as readable as
    a file the user's shell would have made (issue #18), in a DVC project or not."""
    (tmp_path / "project" / ".dvc").mkdir(parents=True)
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        for root in (tmp_path, tmp_path / "project"):
            with atomic_path(root / "report.json") as f:
                f.write_text("{}")
            with atomic_dir(root / "shards") as tmp:
                (tmp / "part.bin").write_bytes(b"x")
            assert stat.S_IMODE((root / "report.json").stat().st_mode) == file_mode
            assert stat.S_IMODE((root / "shards").stat().st_mode) == dir_mode
            assert stat.S_IMODE((root / "shards" / "part.bin").stat().st_mode) == file_mode
    finally:
        os.umask(old)
