"""The Prefect flow that reproduces the DVC DAG, one task per DVC stage.

The DAG is defined once, in dvc.yaml. This flow asks DVC for the stage graph and runs each
stage with `dvc repro --single-item`, in dependency order, so DVC's cache and dvc.lock stay
the single truth: a stage that is up to date is skipped by DVC, not by us. Stages run one at a
time because `dvc repro` holds the repository lock. Fetch stages talk to the network and
retry with backoff; deterministic stages do not.
"""

from __future__ import annotations

import subprocess
import sys

import networkx as nx
from prefect import flow, get_run_logger, task


def stage_order(project: str, targets: list[str]) -> list[str]:
    """Stage names of dvc.yaml (or of `targets` and their upstream), upstream first."""
    from dvc.repo import Repo

    with Repo(project) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        if targets:
            wanted = set()
            for target in targets:
                for stage in repo.stage.collect(target, with_deps=True):
                    wanted.add(stage)
            graph = graph.subgraph(wanted)
        ordered = reversed(list(nx.lexicographical_topological_sort(
            graph, key=lambda s: s.addressing)))
        return [stage.addressing for stage in ordered]


@task(task_run_name="dvc repro {stage}")
def repro_stage(project: str, stage: str) -> str:
    """Run one stage through DVC and stream its output into the task log."""
    logger = get_run_logger()
    cmd = [sys.executable, "-m", "dvc", "repro", "--single-item", stage]
    proc = subprocess.Popen(cmd, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip():
            logger.info(line.rstrip())
    if proc.wait() != 0:
        raise RuntimeError(f"dvc repro {stage} failed with exit code {proc.returncode}")
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
