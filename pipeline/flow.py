"""The Prefect flows: the DVC DAG, one task per DVC stage; and sweeps, one task per point.

The DAG is defined once, in dvc.yaml. This flow asks DVC for the stage graph and runs each
stage with `dvc repro --single-item`, in dependency order, so DVC's cache and dvc.lock stay
the single truth: a stage that is up to date is skipped by DVC, not by us. Stages run one at a
time because `dvc repro` holds the repository lock. Fetch stages talk to the network and
retry with backoff; deterministic stages do not. Each task streams DVC's output into its log.

After the stages, the run leaves a markdown artifact (`cadenza-metrics`): the metrics of the
stages it ran and their diff against the last commit. With `experiment=True` it also records
the workspace as a DVC experiment named after the flow run, `repro-<UTC date-time>`
(`dvc exp save`: what `dvc exp run`
does after its repro), so scheduled runs line up in `dvc exp show`.

On a GPU machine, training stages and sweep points carry the `gpu` tag, and the flow makes
sure a concurrency limit of one slot on that tag exists (stages train on `cuda:0`), so runs
that overlap, say a scheduled run and a sweep, never put two trainings on one GPU.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import networkx as nx
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

GPU_COMMANDS = ("cadenza train", "cadenza benchmark")  # the stages that want the GPU
GPU_TAG = "gpu"


@dataclass(frozen=True)
class Stage:
    name: str  # DVC's address, e.g. train@chord_lstm
    cmd: str
    metrics: tuple[str, ...]  # metrics files it writes, relative to the project


def stage_order(project: str, targets: list[str]) -> list[Stage]:
    """Stages of the top dvc.yaml (or of `targets`), with their upstream, upstream first.
    Other pipelines of the repo (benchmarks/) run only when named, as with DVC."""
    from dvc.repo import Repo

    with Repo(project) as repo:
        wanted = set()
        for target in targets or ["dvc.yaml"]:
            wanted.update(repo.stage.collect(target, with_deps=True))
        # edges point from a stage to the stages it depends on
        graph = repo.index.graph.subgraph(wanted)
        ordered = reversed(list(nx.lexicographical_topological_sort(
            graph, key=lambda s: s.addressing)))
        root = Path(repo.root_dir)
        return [Stage(stage.addressing, " ".join(stage.cmd) if isinstance(stage.cmd, list)
                      else str(stage.cmd),
                      tuple(str(Path(out.fs_path).relative_to(root))
                            for out in stage.outs if out.metric))
                for stage in ordered]


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


def gpu_tags() -> list[str]:
    """`["gpu"]` on a CUDA machine, after making sure the `gpu` limit exists; else `[]`."""
    import torch

    if not torch.cuda.is_available():
        return []
    ensure_concurrency_limit(GPU_TAG, 1)  # every stage trains on cuda:0
    return [GPU_TAG]


def ensure_concurrency_limit(tag: str, slots: int) -> None:
    """Create the task concurrency limit on `tag` unless the user already set one."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_concurrency_limit_by_tag(tag)
        except ObjectNotFound:
            client.create_concurrency_limit(tag=tag, concurrency_limit=slots)


@task(task_run_name="dvc repro {stage}")
def repro_stage(project: str, stage: str) -> str:
    """Run one stage through DVC."""
    _dvc_streamed(project, "repro", "--single-item", stage)
    return stage


@task(task_run_name="dvc exp save {name}")
def save_experiment(project: str, name: str) -> str:
    """Record the workspace as a DVC experiment, so runs compare with `dvc exp show`."""
    _dvc_streamed(project, "exp", "save", "--name", name)
    return name


def _run_name() -> str:
    """`repro-20261123-030000`: the UTC start time, so experiments sort and read by date."""
    return datetime.now(UTC).strftime("repro-%Y%m%d-%H%M%S")


@flow(name="cadenza-repro", flow_run_name=_run_name, log_prints=True)
def reproduce(project: str = ".", targets: list[str] | None = None,
              experiment: bool = False) -> list[str]:
    """Reproduce `targets` (default: the whole DAG) of the DVC project at `project`."""
    from pipeline.summary import run_summary

    stages = stage_order(project, targets or [])
    # torch and the limit only when a stage trains (not for, e.g., --target fetch)
    tags = gpu_tags() if any(s.cmd.startswith(GPU_COMMANDS) for s in stages) else []
    done = []
    for stage in stages:
        runner = repro_stage
        if stage.name.startswith("fetch"):
            runner = repro_stage.with_options(retries=3, retry_delay_seconds=[5, 30, 120])
        elif stage.cmd.startswith(GPU_COMMANDS):
            runner = repro_stage.with_options(tags=tags)
        done.append(runner(project, stage.name))
    metrics = [path for stage in stages for path in stage.metrics]
    create_markdown_artifact(key="cadenza-metrics", markdown=run_summary(project, done, metrics),
                             description="metrics of this run and their diff against HEAD")
    if experiment:
        save_experiment(project, _experiment_name())
    return done


def _experiment_name() -> str:
    """The flow run's name (see `_run_name`), made ref-safe as DVC requires."""
    name = flow_run.get_name() or _run_name()
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)


@task(task_run_name="sweep point {point}")
def sweep_point(project: str, target: str, point: dict[str, Any]) -> dict[str, Any]:
    """One grid point as a DVC experiment, run in a temporary copy of the workspace."""
    overrides = [arg for key, value in point.items() for arg in ("-S", f"{key}={value}")]
    _dvc_streamed(project, "exp", "run", "--temp", *overrides, target)
    return point


@flow(name="cadenza-sweep", log_prints=True)
def sweep(project: str = ".", name: str = "seed002_optimizer") -> str:
    """Run sweep `name` of `sweeps.yaml`; points already done are not run again."""
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
    tags = gpu_tags()
    for point in points:
        if find(records, point) is None:
            sweep_point.with_options(tags=tags)(project, spec.target, point)
    out = Path(project) / "reports" / "sweeps" / name
    write_outputs(name, spec, results_table(spec, points, experiments(Path(project))), out)
    return str(out)
