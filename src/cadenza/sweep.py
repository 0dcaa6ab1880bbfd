"""`cadenza sweep <name>`: a hyper-parameter sweep from `sweeps.yaml`, run as DVC experiments.

Every point of the grid is a real DVC experiment (`dvc exp run --queue -S ...`, then
`dvc queue start -j N`), so it is cached, reproducible (fixed seeds) and comparable with
`dvc exp show`. Points that already have a successful experiment on the current commit are
not queued again. The result comes out three ways, in `reports/sweeps/<name>/`: the table
(`table.md`, from `dvc exp show --json`, cut to the swept params and the metrics), a plot of
the metrics against the first param (`plot.png`), and `summary.md` naming the best point.
A sweep never waits for ever: queued points with no live queue worker get workers again, and
points with no live worker and no progress for `STALL_S` fail it, named.

A sweep chooses on the valid split, as the papers do: `metric` is a file the train stage
writes (`reports/valid/<model>.json`), and `test_metric`, the evaluator's test value of the
same quantity, is only reported beside the chosen point, never used to choose it.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import yaml

from cadenza.config import from_dict, load_yaml
from cadenza.dvc_cli import run_dvc, run_dvc_spawning
from cadenza.io import atomic_path, flatten
from cadenza.plotting import plt, save_png
from cadenza.validation import check

log = logging.getLogger(__name__)
# points waiting (queued, or running on a worker that died) with no live queue worker and no
# progress for this long fail the sweep: a sweep either runs its points or names the ones it
# could not; queued points with no worker get their workers started again after RESTART_S
STALL_S = 300.0
RESTART_S = 20.0
WORKER_PIDS = Path(".dvc", "tmp", "exps", "celery")  # dvc-exp-worker-<n>.pid / .json / .out


@dataclass(frozen=True)
class Sweep:
    about: str  # what the sweep reproduces, and from which seed
    target: str  # the stage to reproduce (with its upstream), e.g. evaluate@chord_lstm
    grid: dict[str, list[Any]]  # dotted param -> the values to try
    metric: str  # chosen on, valid split: "<file>:<dotted key>", reports/valid/m.json:accuracy
    goal: Literal["min", "max"] = "max"
    test_metric: str = ""  # reported beside, test split: reports/metrics/m.json:accuracy

    def __post_init__(self) -> None:
        check(
            not self.test_metric or self.test_metric.split(":")[0] != self.metric.split(":")[0],
            "test_metric",
            f"read from the same file as metric ({self.metric.split(':')[0]}): choose on the "
            "valid split's file and report the test split's",
        )


def load_sweeps(path: Path) -> dict[str, Sweep]:
    """The sweeps of a sweeps.yaml, by name, validated."""
    raw: dict[str, Any] = load_yaml(Path(path)) or {}
    return {name: from_dict(Sweep, spec, name) for name, spec in raw.items()}


def grid_points(sweep: Sweep) -> list[dict[str, Any]]:
    """Every combination of the grid's values, the first param varying slowest."""
    keys = list(sweep.grid)
    return [
        dict(zip(keys, values, strict=True)) for values in itertools.product(*sweep.grid.values())
    ]


def overrides(point: dict[str, Any]) -> list[str]:
    """A grid point as `dvc exp run` param overrides: `-S key=value`, each value in YAML
    (`true`, `[1, 2]`, `0.001`), which is how DVC parses it back into params.yaml."""
    return [arg for key, value in point.items() for arg in ("-S", f"{key}={_yaml(value)}")]


def points_to_run(project: Path, sweep: Sweep) -> list[dict[str, Any]]:
    """The grid points with no successful experiment on the current commit yet."""
    records = experiments(project)
    return [point for point in grid_points(sweep) if find(records, point) is None]


def experiments(project: Path) -> list[dict]:
    """Every experiment of the current commit from `dvc exp show --json`: its name, flat
    params and flat metrics ("file:key")."""
    shown = json.loads(run_dvc(project, "exp", "show", "--json"))
    records = []
    for baseline in shown:
        if baseline.get("rev") == "workspace":
            continue
        for exp in baseline.get("experiments") or []:
            for rev in exp.get("revs") or []:
                data = rev.get("data") or {}
                records.append(
                    {
                        "name": rev.get("name"),
                        # a failed experiment still shows its baseline's metrics: not a result
                        "failed": bool(rev.get("error")),
                        "params": _by_file(data.get("params") or {}),
                        "metrics": _by_file(data.get("metrics") or {}),
                    }
                )
    return records


def find(records: list[dict], point: dict[str, Any]) -> dict | None:
    """The experiment whose params match the point and that ran to its metrics."""
    for record in records:
        params = record["params"]
        matches = all(params.get(f"params.yaml:{k}") == v for k, v in point.items())
        if matches and record["metrics"] and not record["failed"]:
            return record
    return None


def run_sweep(
    project: Path, name: str, sweep: Sweep, jobs: int, out_dir: Path, stall_s: float = STALL_S
) -> pd.DataFrame:
    """Queue the points not yet done, run the queue, and write the three outputs."""
    points = grid_points(sweep)
    todo = points_to_run(project, sweep)
    log.info(
        "sweep %s: %d points, %d already done, %d to run",
        name,
        len(points),
        len(points) - len(todo),
        len(todo),
    )
    for point in todo:
        run_dvc(project, "exp", "run", "--queue", *overrides(point), sweep.target)
    if todo:
        start_workers(project, jobs)
        wait_for_queue(project, jobs, stall_s)
    table = results_table(sweep, points, experiments(project))
    write_outputs(name, sweep, table, out_dir)
    return table


def results_table(sweep: Sweep, points: list[dict], records: list[dict]) -> pd.DataFrame:
    """One row per point: the params, the experiment, the chosen-on metric and the test one."""
    columns = {label(sweep.metric, "valid"): sweep.metric}
    if sweep.test_metric:
        columns[label(sweep.test_metric, "test")] = sweep.test_metric
    rows = []
    for point in points:
        record = find(records, point)
        rows.append(
            {
                **point,
                "experiment": record["name"] if record else None,
                **{
                    name: record["metrics"].get(key) if record else None
                    for name, key in columns.items()
                },
            }
        )
    return pd.DataFrame(rows)


def label(metric: str, split: str) -> str:
    """'reports/valid/m.json:accuracy' -> 'valid accuracy'."""
    return f"{split} {metric.rsplit(':', 1)[-1]}"


def write_outputs(name: str, sweep: Sweep, table: pd.DataFrame, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    metric, test = label(sweep.metric, "valid"), label(sweep.test_metric, "test")
    with atomic_path(out / "table.md") as tmp:
        tmp.write_text(
            f"# Sweep {name}\n\n{sweep.about}\n\n"
            + table.to_markdown(index=False, floatfmt=".4g")
            + "\n"
        )
    keys = list(sweep.grid)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    groups = table.groupby(keys[1:]) if len(keys) > 1 else [("", table)]
    for values, group in groups:
        x = [str(v) for v in group[keys[0]]]
        series = ", ".join(map(str, values if isinstance(values, tuple) else (values,)))
        ax.plot(x, group[metric].astype(float), marker="o", label=f"{series} valid".strip())
        if test in group:
            ax.plot(
                x,
                group[test].astype(float),
                marker="x",
                linestyle="--",
                label=f"{series} test".strip(),
            )
    ax.set(xlabel=keys[0].rsplit(".", 1)[-1], ylabel=metric.split(" ", 1)[1], title=f"sweep {name}")
    ax.legend(title=", ".join(k.rsplit(".", 1)[-1] for k in keys[1:]) or None, fontsize=8)
    fig.tight_layout()
    save_png(fig, out / "plot.png", dpi=90)
    scored = table.dropna(subset=[metric])
    if scored.empty:
        best_line = "No point produced the metric."
    else:
        best = scored.loc[
            scored[metric].astype(float).idxmax()
            if sweep.goal == "max"
            else scored[metric].astype(float).idxmin()
        ]
        point = ", ".join(f"`{k}={best[k]}`" for k in keys)
        reported = (
            f"; {test} {float(best[test]):.4g} (reported, not chosen on)"
            if test in best and pd.notna(best[test])
            else ""
        )
        best_line = (
            f"Best ({sweep.goal} {metric}): {point} -> {float(best[metric]):.4g}"
            f"{reported} (experiment `{best['experiment']}`; `dvc exp apply "
            f"{best['experiment']}` brings it into the workspace)."
        )
    with atomic_path(out / "summary.md") as tmp:
        tmp.write_text(
            f"# Sweep {name}\n\n{sweep.about}\n\n{best_line}\n\n"
            f"{len(scored)} of {len(table)} points done. Table: `table.md`; plot: "
            "`plot.png`.\n"
        )


def queue_tasks(project: Path) -> dict[str, tuple[str, str]]:
    """DVC's experiment queue as `dvc queue status` shows it: {task: (experiment, status)}.
    Read in-process: the command costs seconds (a start-up and a broadcast to the workers)."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        return {
            entry["rev"][:7]: (entry.get("name") or "", entry["status"])
            for entry in repo.experiments.celery_queue.status()
        }


def live_workers(project: Path) -> int:
    """Queue workers whose process is alive, from the pid files `dvc queue start` writes: it
    does not depend on a busy worker answering `dvc queue status`'s 1 s broadcast."""
    alive = 0
    for pidfile in (project / WORKER_PIDS).glob("dvc-exp-worker-*.pid"):
        try:
            exited = json.loads(pidfile.with_suffix(".json").read_text())["returncode"]
            os.kill(int(pidfile.read_text()), 0)
        except (ValueError, KeyError, OSError):  # unreadable, or no such process
            continue
        alive += exited is None
    return alive


def start_workers(project: Path, jobs: int) -> None:
    """`dvc queue start -j N`, returning when it does (its workers are daemons)."""
    run_dvc_spawning(project, "queue", "start", "-j", str(jobs))


def wait_for_queue(
    project: Path,
    jobs: int,
    stall_s: float = STALL_S,
    poll_s: float = 3.0,
    restart_s: float = RESTART_S,
) -> None:
    """Until no point is queued or running. Points can wait for ever with no worker: the
    workers never started or exited early, or one died (killed, out of memory) and left its
    point `Running`. So queued points with no live worker get workers started again, and once
    nothing progressed for `stall_s` while no worker is alive, the sweep fails, naming the
    waiting points."""
    last_change, last_restart, seen = time.monotonic(), time.monotonic(), None
    while True:
        tasks = queue_tasks(project)
        waiting = {
            task: (name, status)
            for task, (name, status) in tasks.items()
            if status in ("Queued", "Running")
        }
        if not waiting:
            if failed := [name for name, status in tasks.values() if status == "Failed"]:
                log.warning(
                    "sweep points failed: %s (why: `dvc queue logs <name>`)", ", ".join(failed)
                )
            return
        now = time.monotonic()
        if tasks != seen or live_workers(project):
            last_change, seen = now, tasks
        elif now - last_change > stall_s:
            raise RuntimeError(_stalled(waiting, stall_s))
        elif "Queued" in {s for _, s in waiting.values()} and now - last_restart > restart_s:
            log.warning("sweep: points queued and no queue worker alive; starting %d", jobs)
            start_workers(project, jobs)
            last_restart = now
        time.sleep(poll_s)


def _stalled(waiting: dict[str, tuple[str, str]], stall_s: float) -> str:
    points = ", ".join(
        f"{name} ({status.lower()}, task {task})" for task, (name, status) in waiting.items()
    )
    first = next(iter(waiting.values()))[0]
    return (
        f"sweep: {len(waiting)} point(s) waited {stall_s:.0f} s with no queue worker alive "
        f"and no progress: {points}. Why: `dvc queue logs {first}` and "
        f"{WORKER_PIDS}/dvc-exp-worker-*.out; `dvc queue kill <name>` marks a point whose "
        "worker died as failed, `dvc queue start` runs queued ones, then run the sweep again"
    )


def _yaml(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...")


def _by_file(files: dict) -> dict[str, Any]:
    """DVC's {file: {"data": {...}}} -> {"file:dotted.key": value}"""
    return {
        f"{file}:{key}": value
        for file, content in files.items()
        for key, value in flatten(content.get("data") or {}).items()
    }
