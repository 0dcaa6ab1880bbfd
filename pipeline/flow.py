"""The Prefect flows: the DVC DAG, one task per DVC stage; and sweeps, one task per point.

The DAG is defined once, in dvc.yaml. This flow asks DVC for the stage graph and runs each
stage with `dvc repro --single-item`, in dependency order, so DVC's cache and dvc.lock stay
the single truth: a stage that is up to date is skipped by DVC, not by us. Stages run one at a
time because `dvc repro` holds the repository lock. Fetch stages talk to the network and
retry with backoff; deterministic stages do not.

A sweep (`sweeps.yaml`) runs each missing grid point as a DVC experiment (`dvc exp run
--temp`, so the workspace is untouched), one task per point. On a GPU machine the tasks carry
the `gpu` tag, so a Prefect concurrency limit on that tag (`prefect concurrency-limit create
gpu 1`) keeps two trainings off one GPU.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import networkx as nx
from prefect import flow, get_run_logger, task


def stage_order(project: str, targets: list[str]) -> list[str]:
    """Stage names of the top dvc.yaml (or of `targets`), with their upstream, upstream
    first. Other pipelines of the repo (benchmarks/) run only when named, as with DVC."""
    from dvc.repo import Repo

    with Repo(project) as repo:
        wanted = set()
        for target in targets or ["dvc.yaml"]:
            wanted.update(repo.stage.collect(target, with_deps=True))
        # edges point from a stage to the stages it depends on
        graph = repo.index.graph.subgraph(wanted)
        ordered = reversed(list(nx.lexicographical_topological_sort(
            graph, key=lambda s: s.addressing)))
        return [stage.addressing for stage in ordered]


def _dvc_streamed(project: str, *args: str) -> None:
    """Run a DVC command, streaming its output into the task log."""
    logger = get_run_logger()
    proc = subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=project,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip():
            logger.info(line.rstrip())
    if proc.wait() != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed with exit code {proc.returncode}")


@task(task_run_name="dvc repro {stage}")
def repro_stage(project: str, stage: str) -> str:
    """Run one stage through DVC."""
    _dvc_streamed(project, "repro", "--single-item", stage)
    return stage


@flow(name="cadenza-repro", log_prints=True)
def reproduce(project: str = ".", targets: list[str] | None = None) -> list[str]:
    """Reproduce `targets` (default: the whole DAG) of the DVC project at `project`."""
    done = []
    for stage in stage_order(project, targets or []):
        runner = repro_stage
        if stage.startswith("fetch"):
            runner = repro_stage.with_options(retries=3, retry_delay_seconds=[5, 30, 120])
        done.append(runner(project, stage))
    return done


@task(task_run_name="sweep point {point}")
def sweep_point(project: str, target: str, point: dict[str, Any]) -> dict[str, Any]:
    """One grid point as a DVC experiment, run in a temporary copy of the workspace."""
    overrides = [arg for key, value in point.items() for arg in ("-S", f"{key}={value}")]
    _dvc_streamed(project, "exp", "run", "--temp", *overrides, target)
    return point


@flow(name="cadenza-sweep", log_prints=True)
def sweep(project: str = ".", name: str = "seed002_optimizer") -> str:
    """Run sweep `name` of `sweeps.yaml`; points already done are not run again."""
    import torch

    from cadenza.sweep import (
        experiments,
        find,
        grid_points,
        load_sweeps,
        results_table,
        write_outputs,
    )

    spec = load_sweeps(Path(project) / "sweeps.yaml")[name]
    points, records = grid_points(spec), experiments(Path(project))
    tags = ["gpu"] if torch.cuda.is_available() else []
    for point in points:
        if find(records, point) is None:
            sweep_point.with_options(tags=tags)(project, spec.target, point)
    out = Path(project) / "reports" / "sweeps" / name
    write_outputs(name, spec, results_table(spec, points, experiments(Path(project))), out)
    return str(out)
