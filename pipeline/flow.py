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

Ctrl-C (issue #18): each `dvc` command runs in a process group of its own, with the stage it
starts (training, its DataLoader workers), and an interrupt of the flow stops that whole group
(SIGINT, then SIGTERM, then SIGKILL) before the KeyboardInterrupt goes on up, so that no
stage keeps running, or keeps the GPU, behind a flow that is gone. Without PREFECT_API_URL
the run's temporary Prefect server is ours (`prefect_api`), in a process group of its own too:
Prefect's own shares the terminal's group, so Ctrl-C killed it at once and Prefect, recording
the crash, then retried the dead API for minutes. The `cadenza flow run` command turns the
interrupt into exit code 130.

On a GPU machine, training stages and sweep points carry the `gpu` tag, and the flow makes
sure a concurrency limit of one slot on that tag exists (stages train on `cuda:0`), so runs
that overlap, say a scheduled run and a sweep, never put two trainings on one GPU.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
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
    """Run a DVC command, streaming its output into the task log.

    Its own process group (and no terminal stdin, which a background group may not read):
    an interrupt here stops DVC and the stage it runs as one (`stop_process_group`).
    """
    logger = get_run_logger()
    proc = subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=project,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1, process_group=0)
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            if line.strip():
                logger.info(line.rstrip())
        proc.wait()
    except BaseException:  # Ctrl-C (KeyboardInterrupt), or the flow being torn down
        proc.stdout.close()  # a DVC blocked writing to a full pipe could not stop
        stop_process_group(proc)
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"dvc {' '.join(args)} failed with exit code {proc.returncode}")


STOP_GRACE_S = ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0))


def stop_process_group(proc: subprocess.Popen) -> None:
    """Stop `proc`, the leader of its own process group, and every process of that group.

    SIGINT first, what a terminal's Ctrl-C sends (DVC lets its stage command handle it), then
    SIGTERM, each with a grace period; then SIGKILL for whatever is left, stragglers that
    outlived DVC included. The leader is reaped only at the end, so that its group id cannot
    pass to an unrelated process while we signal it. A second Ctrl-C skips to the SIGKILL.
    """
    try:
        for sig, grace_s in STOP_GRACE_S:
            _signal_group(proc.pid, sig)
            deadline = time.monotonic() + grace_s
            while not _exited(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _exited(proc.pid):
                break
    finally:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _exited(pid: int) -> bool:
    """Whether child `pid` has ended, without reaping it (its pid stays reserved)."""
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


@contextlib.contextmanager
def prefect_api() -> Iterator[None]:
    """Run the body against PREFECT_API_URL's server if set, else against a temporary one.

    The temporary server (API only: no UI, no services) runs in its own process group, so
    that a terminal's Ctrl-C reaches the flow but not the server that records its crash. It is
    stopped at interpreter exit, after Prefect has flushed its logs and events to it.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    if PREFECT_API_URL.value():
        yield
        return
    url = start_temporary_server(Path(PREFECT_HOME.value()) / "server.log")
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield


def start_temporary_server(log: Path) -> str:
    """Start `prefect server start` on a free loopback port; return its API URL once healthy.

    Why its own process group: see `prefect_api`. A run that is interrupted while the server
    starts still stops it: the stop is registered before the wait.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, PREFECT_UI_ENABLED="false", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host",
                                 "127.0.0.1", "--port", str(port), "--no-services"], env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                process_group=0)
    # atexit runs after Prefect's own exit hooks (threading's), which flush logs and events
    atexit.register(stop_process_group, proc)
    url = f"http://127.0.0.1:{port}/api"
    timeout_s = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 120))
    deadline = time.monotonic() + timeout_s
    while not _healthy(url):
        if proc.poll() is not None:
            raise RuntimeError(f"the temporary Prefect server exited with code "
                               f"{proc.returncode} before it was ready; see {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the temporary Prefect server at {url} was not ready after "
                               f"{timeout_s:.0f} s; see {log}")
        time.sleep(0.2)
    return url


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


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
