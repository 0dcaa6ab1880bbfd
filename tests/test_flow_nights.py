"""What an unattended night needs from the flow, without a Prefect server: DVC's lock waited
for (bounded), a hung stage stopped by its timeout, stages that find `cadenza` with a bare
PATH, and a metrics artifact that shows only what changed.

Real DVC on toy projects under tmp_path; the flow's helpers run outside a flow run
(they log to the module's logger there). The server-side parts (a worker, the webhook, the
deployment's concurrency limit) are in tests/test_flow.py, which starts the server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dvc.lock import LockError, make_lock

from cadenza.cli import app
from cadenza.config import STAGE_COMMANDS
from cadenza.testing.checkout import ROOT
from pipeline.dvc_run import LockHeld, StageTimeout, dvc_streamed, waiting_for_lock
from pipeline.flow import save_experiment
from pipeline.stages import RAN, STAGE_KINDS, UP_TO_DATE, command_of, stage_order, stage_status
from pipeline.summary import run_summary

from .test_pipeline import _env, run

pytestmark = pytest.mark.slow

PY = "python -c"
HOLD = f"{PY} \"import time; open('holding', 'w').close(); time.sleep(4)\" && echo > held.txt"
HANG = f"{PY} \"import os, time; open('hang.pid', 'w').write(str(os.getpid())); time.sleep(300)\""


def dvc_project(path: Path, stages: dict[str, dict], scm: bool = False) -> Path:
    """A DVC project at `path` with `stages` in its dvc.yaml (and a git repo when `scm`)."""
    path.mkdir(parents=True)
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    if scm:
        for cmd in (
            ["git", "init", "-q"],
            ["git", "config", "user.email", "t@t"],
            ["git", "config", "user.name", "t"],
        ):
            subprocess.run(cmd, cwd=path, check=True)
    run(["dvc", "init", "-q", *([] if scm else ["--no-scm"])], path)
    return path


def lock_is_free(project: Path) -> bool:
    """Whether DVC's repository lock can be taken now (and it is released again at once)."""
    tmp = project / ".dvc" / "tmp"
    lock = make_lock(str(tmp / "lock"), tmp_dir=str(tmp))
    try:
        lock.lock()
    except LockError:
        return False
    lock.unlock()
    return True


def test_a_stage_waits_for_dvcs_lock_then_fails_clearly_and_finds_cadenza_on_a_bare_path(
    tmp_path, monkeypatch
):
    """While another `dvc repro` writes a dependency of the stage (DVC's rwlock), a bounded
    wait that is too short fails naming the lock, and a longer one runs the stage after the
    holder finishes. The stage's command
    is a bare `cadenza`, with PATH lacking the virtualenv, as in a worker."""
    project = dvc_project(
        tmp_path / "p",
        {
            "hold": {"cmd": HOLD, "outs": ["held.txt"]},
            "uses_cli": {
                "cmd": "cadenza --help > cli.txt",
                "deps": ["held.txt"],
                "outs": ["cli.txt"],
            },
        },
    )
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env = _env(project)
    holder = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "hold"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (project / "holding").exists():
            assert time.monotonic() < deadline and holder.poll() is None, "the holder died"
            time.sleep(0.1)
        attempt = lambda: dvc_streamed(str(project), "repro", "--single-item", "uses_cli")  # noqa: E731
        with pytest.raises(RuntimeError, match=r"DVC's lock was still held .* after 0.5 s"):
            waiting_for_lock("stage uses_cli", attempt, 0.5, print)
        assert holder.poll() is None  # the failure came while the lock was really held
        lines = waiting_for_lock("stage uses_cli", attempt, 60, print)
    finally:
        holder.wait(60)
    assert holder.returncode == 0
    assert stage_status(lines) == RAN
    assert "Usage: cadenza" in (project / "cli.txt").read_text()  # found on the bare PATH
    assert (
        stage_status(dvc_streamed(str(project), "repro", "--single-item", "uses_cli")) == UP_TO_DATE
    )


def test_a_hung_stage_is_stopped_at_its_timeout_and_leaves_the_lock_free(tmp_path):
    project = dvc_project(tmp_path / "p", {"hang": {"cmd": HANG, "outs": ["never.txt"]}})
    started = time.monotonic()
    with pytest.raises(StageTimeout, match=r"timeout of 3 s"):
        dvc_streamed(str(project), "repro", "--single-item", "hang", timeout_s=3)
    assert time.monotonic() - started < 20
    pid = int((project / "hang.pid").read_text())
    assert (
        not Path(f"/proc/{pid}").exists()
        or "Z" in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    ), "the stage's process outlived its timeout"
    assert lock_is_free(project)
    assert not isinstance(StageTimeout("x"), LockHeld)  # a timeout is never waited out


def test_the_artifact_lists_what_ran_and_only_metrics_that_changed(tmp_path):
    """Of a file that ran, only the metric that moved (with its direction and verdict); a
    file outside the run is left out even though it differs from HEAD."""
    metrics = {
        "cmd": "true",
        "metrics": [{"m.json": {"cache": False}}, {"other.json": {"cache": False}}],
    }
    project = dvc_project(tmp_path / "p", {"score": metrics}, scm=True)
    (project / "m.json").write_text(json.dumps({"nll": 2.0, "n_pieces": 3, "accuracy": 0.5}))
    (project / "other.json").write_text(json.dumps({"nll": 9.0}))
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_COMMITTER_NAME="t")
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=project, env=env, check=True)
    (project / "m.json").write_text(json.dumps({"nll": 1.5, "n_pieces": 3, "accuracy": 0.50001}))
    (project / "other.json").write_text(json.dumps({"nll": 1.0}))
    markdown = run_summary(str(project), {"fetch@x": UP_TO_DATE, "score": RAN}, ["m.json"])
    assert "- ran (1): score" in markdown and "- up to date (1): fetch@x" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| m.json")]
    assert rows == ["| m.json | nll | 2 | 1.5 | -0.5 | lower | better |"], markdown
    assert "other.json" not in markdown and "n_pieces" not in markdown
    assert "No stage that writes metrics ran" in run_summary(
        str(project), {"score": UP_TO_DATE}, []
    )


def test_a_target_run_is_saved_as_an_experiment_although_other_outputs_are_missing(tmp_path):
    """`dvc exp save` of the run's stages only: a `--target` run leaves `score`'s output
    unmade and sub/dvc.yaml (like bench/bl) was never run, and the save still succeeds
    (a plain `dvc exp save` fails there with "output ... does not exist")."""
    project = dvc_project(
        tmp_path / "p",
        {
            "data": {"cmd": "echo 1 > data.txt", "outs": ["data.txt"]},
            "score": {
                "cmd": "cat data.txt > score.txt",
                "deps": ["data.txt"],
                "outs": ["score.txt"],
            },
        },
        scm=True,
    )
    (project / "sub").mkdir()
    (project / "sub" / "dvc.yaml").write_text(
        "stages:\n  never:\n    cmd: echo > never.txt\n    outs: [never.txt]\n"
    )
    for cmd in (["git", "add", "-A"], ["git", "commit", "-qm", "init"]):
        subprocess.run(cmd, cwd=project, check=True)
    dvc_streamed(str(project), "repro", "--single-item", "data")
    plain = run(["dvc", "exp", "save", "--name", "plain"], project, check=False)
    assert plain.returncode != 0 and "does not exist" in plain.stdout + plain.stderr
    save_experiment.fn(str(project), "targeted", ["data"])
    exps = run(["dvc", "exp", "list", "--name-only"], project).stdout.split()
    assert exps == ["targeted"]


def test_a_stage_is_routed_by_the_cadenza_command_it_runs():
    """The kind of a stage is its `cadenza` sub-command, not its name: fetch stages retry,
    train and benchmark stages want the GPU, and every stage of the repo's pipelines runs a
    sub-command the flow knows (its timeout key in params.yaml's `flow.timeout_s`)."""
    assert command_of("cadenza train m --prepared data/prepared") == "train"
    assert command_of("cadenza -v benchmark bl --dataset jsb") == "benchmark"
    assert command_of("/venv/bin/cadenza fetch jsb --out x") == "fetch"
    assert command_of(HANG) == command_of("cadenza") == ""
    stages = stage_order(str(ROOT), ["dvc.yaml", "bench/bl/dvc.yaml"])
    kinds = {stage.name: stage.kind for stage in stages}
    assert all(kinds.values()), kinds
    assert {s.name.split("@")[0] for s in stages if s.needs.network} == {"fetch"}
    gpu = {s.name.rsplit(":", 1)[-1].split("@")[0] for s in stages if s.needs.gpu}
    assert gpu == {"train", "bench", "table"}, gpu  # `cadenza benchmark ...`, table included
    assert set(STAGE_KINDS) <= set(kinds.values())
    # params.yaml's timeout keys are checked against the sub-commands a stage can run
    assert set(kinds.values()) <= STAGE_COMMANDS
    cli = {c.name or c.callback.__name__ for c in app.registered_commands}
    assert (cli | {g.name for g in app.registered_groups}) - {"check", "flow"} == STAGE_COMMANDS
