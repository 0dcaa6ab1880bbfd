"""`cadenza sweep`: a 1 x 2 sweep as real DVC experiments in a tiny git project."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cadenza.cli import app
from cadenza.config import ParamsError
from cadenza.sweep import (
    Sweep,
    experiments,
    find,
    grid_points,
    load_sweeps,
    overrides,
    queue_tasks,
    start_workers,
    wait_for_queue,
)

from .test_pipeline import ROOT, _env, make_project, run

TINY_SWEEP = {
    "tiny": {
        "about": "one learning rate x two widths of the chord LSTM",
        "target": "evaluate@chord_lstm",
        # two points, the fewest that make a table, a plot line and a choice (grid_points' product
        # is tested above); each costs a real train + generate + evaluate
        "grid": {"models.chord_lstm.train.lr": [0.01], "models.chord_lstm.net.hidden": [16, 32]},
        "metric": "reports/valid/chord_lstm.json:accuracy",
        "goal": "max",
        "test_metric": "reports/metrics/chord_lstm.json:accuracy",
    }
}
# one point already done by `tiny`, one new: the Prefect flow must run only the new one
TINY_SWEEP["wider"] = {
    **TINY_SWEEP["tiny"],
    "grid": {"models.chord_lstm.train.lr": [0.01], "models.chord_lstm.net.hidden": [32, 48]},
}


def test_grid_points_are_the_product():
    sweep = Sweep(about="", target="t", grid={"a": [1, 2], "b": ["x", "y", "z"]}, metric="m:k")
    points = grid_points(sweep)
    assert len(points) == 6 and points[0] == {"a": 1, "b": "x"} and points[-1] == {"a": 2, "b": "z"}


def test_a_point_becomes_yaml_overrides_as_dvc_parses_them_back():
    """One formatting for `cadenza sweep` and the flow's sweep: each value written as YAML,
    the language DVC parses it back in, not as Python's `str` (`True`, `['a']`)."""
    point = {"m.train.lr": 0.001, "m.train.ok": True, "m.net.sizes": [1, 2], "m.opt": "adam"}
    assert overrides(point) == [
        *("-S", "m.train.lr=0.001"),
        *("-S", "m.train.ok=true"),
        *("-S", "m.net.sizes=[1, 2]"),
        *("-S", "m.opt=adam"),
    ]


def _outputs(stage: dict) -> list[str]:
    """The metrics files a foreach stage declares, `${key}` unexpanded."""
    return [next(iter(m)) if isinstance(m, dict) else m for m in stage["do"].get("metrics", [])]


def test_every_sweep_chooses_on_the_valid_split():
    """A sweep's `metric` must be a file the train stage writes (valid split), and its
    `test_metric` one the evaluator writes (test split), as dvc.yaml declares them."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, sweep in load_sweeps(ROOT / "sweeps.yaml").items():
        model = sweep.target.split("@")[1]
        valid = [f.replace("${key}", model) for f in _outputs(stages["train"])]
        test = [f.replace("${key}", model) for f in _outputs(stages["evaluate"])]
        assert sweep.metric.split(":")[0] in valid, name
        assert not sweep.test_metric or sweep.test_metric.split(":")[0] in test, name


def test_a_sweep_cannot_choose_on_its_test_file(tmp_path):
    spec = {
        "about": "",
        "target": "t",
        "grid": {},
        "metric": "reports/metrics/m.json:accuracy",
        "test_metric": "reports/metrics/m.json:accuracy",
    }
    (tmp_path / "sweeps.yaml").write_text(yaml.safe_dump({"s": spec}))
    with pytest.raises(ParamsError, match=r"s\.test_metric: read from the same file as metric"):
        load_sweeps(tmp_path / "sweeps.yaml")


def test_a_failed_experiment_is_no_result_of_its_point():
    # `dvc exp show` lists a failed experiment with its baseline's metrics and an error
    point = {"models.m.train.seq_len": -1}
    failed = {
        "name": "x",
        "failed": True,
        "params": {"params.yaml:models.m.train.seq_len": -1},
        "metrics": {"reports/valid/m.json:accuracy": 0.54},
    }
    assert find([failed], point) is None
    assert find([{**failed, "failed": False}], point) is not None


def test_sweep_jobs_must_be_at_least_one():
    result = CliRunner().invoke(
        app, ["sweep", "paper002_seq_len", "-j", "0", "--project", str(ROOT)]
    )
    assert result.exit_code == 2
    assert "--jobs 0: must be at least 1" in result.output


@pytest.mark.slow
def test_sweep_runs_as_experiments_and_reruns_nothing(tmp_path):
    project = make_project(tmp_path / "sweep")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["models"] = {"chord_lstm": params["models"]["chord_lstm"]}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (project / "sweeps.yaml").write_text(yaml.safe_dump(TINY_SWEEP, sort_keys=False))
    run(["dvc", "config", "core.no_scm", "false"], project)
    run(["git", "init", "-q"], project)
    run(["dvc", "repro", "evaluate@chord_lstm"], project)  # the sweep's target, not the DAG
    for cmd in (
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v1"],
    ):
        run(cmd, project)

    def sweep() -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cadenza.cli", "sweep", "tiny", "-j", "2"],
            cwd=project,
            env=_env(project),
            capture_output=True,
            text=True,
            timeout=900,
        )

    first = sweep()
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "2 to run" in first.stderr
    shown = run(["dvc", "exp", "show", "--md", "--no-pager"], project).stdout
    assert shown.count("Success") == 2
    out = project / "reports" / "sweeps" / "tiny"
    table = (out / "table.md").read_text()
    assert len(re.findall(r"\|\s+0\.01\s+\|", table)) == 2
    assert "valid accuracy" in table and "test accuracy" in table
    assert (out / "plot.png").stat().st_size > 1000
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# Sweep tiny\n")
    assert "Best (max valid accuracy)" in summary and "(reported, not chosen on)" in summary

    again = sweep()
    assert again.returncode == 0 and "2 already done, 0 to run" in again.stderr
    assert run(["dvc", "exp", "show", "--md", "--no-pager"], project).stdout.count("Success") == 2

    flow = subprocess.run(
        [sys.executable, "-m", "cadenza.cli", "flow", "sweep", "wider"],
        cwd=project,
        env=_env(project),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert flow.returncode == 0, flow.stdout[-3000:] + flow.stderr[-3000:]
    records = experiments(project)
    for hidden in (32, 48):
        point = {"models.chord_lstm.train.lr": 0.01, "models.chord_lstm.net.hidden": hidden}
        assert find(records, point) is not None, point
    assert len(records) == 3  # the 2 of `tiny`, and only one new
    assert (project / "reports" / "sweeps" / "wider" / "summary.md").exists()


def _kill_queue_processes(project: Path) -> None:
    """SIGKILL the queue's worker and experiment processes (with their children), as the OOM
    killer or a lost machine would; never this test's own process group."""
    for pidfile in (project / ".dvc" / "tmp" / "exps").rglob("*.pid"):
        pid = int(pidfile.read_text())
        try:
            group = os.getpgid(pid)
            if group == os.getpgrp():
                os.kill(pid, signal.SIGKILL)
            else:
                os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_the_sweep_restarts_missing_workers_then_fails_naming_a_dead_workers_point(
    tmp_path, monkeypatch
):
    """Observed: points queued with 0 queue workers, and a sweep waiting for ever. Queued
    points with no worker get workers started again; a point whose worker was killed mid-run
    (left `Running` by DVC for ever) ends the wait within its bound, naming the point."""
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    project = tmp_path / "dead"
    project.mkdir()
    (project / "params.yaml").write_text("secs: 0\n")
    (project / "dvc.yaml").write_text(
        "stages:\n  slow:\n    cmd: sleep ${secs} && echo done > out.txt\n"
        "    params: [secs]\n    outs: [out.txt]\n"
    )
    for cmd in (
        ["git", "init", "-q"],
        ["dvc", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "v1"],
        ["dvc", "exp", "run", "--queue", "--name", "revived"],
    ):
        run(cmd, project)
    # no worker was started (or it shut down): the wait starts them and the point runs
    wait_for_queue(project, jobs=1, stall_s=60, poll_s=0.5, restart_s=0)
    assert list(queue_tasks(project).values()) == [("revived", "Success")]

    run(["dvc", "exp", "run", "--queue", "--name", "doomed", "-S", "secs=300"], project)
    try:
        start = time.monotonic()
        start_workers(project, 1)  # returns at once, though its worker runs a 300 s point
        assert time.monotonic() - start < 30
        deadline = time.monotonic() + 90
        while ("doomed", "Running") not in queue_tasks(project).values():
            assert time.monotonic() < deadline, queue_tasks(project)
            time.sleep(0.5)
    finally:
        _kill_queue_processes(project)
    start = time.monotonic()
    with pytest.raises(
        RuntimeError,
        match=r"1 point\(s\) waited 2 s with no queue worker "
        r"alive and no progress: doomed \(running",
    ) as err:
        wait_for_queue(project, jobs=1, stall_s=2, poll_s=0.5)
    assert "`dvc queue logs doomed`" in str(err.value)
    assert time.monotonic() - start < 30  # bounded: the stall, and a few status reads
