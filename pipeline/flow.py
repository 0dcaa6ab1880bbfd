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

Nights unattended (issue #19), set in params.yaml's `flow:` section (`FlowParams`): each stage
has a timeout by kind (the name before `@`: fetch, prepare, train, ...), after which its
process group is stopped and the run fails; only fetch stages, which talk to the network,
are retried, and never after a timeout. A stage that finds DVC's lock held by another DVC
process (a `dvc exp run` in the same folder) waits for it, polling, up to
`flow.lock_wait_s`, then fails saying so. A failed or crashed run posts to
`flow.notify_url` (`pipeline/alerts.py`). Deployments allow one run at a time; a run of a
deployment that finds a later run of the same deployment already due (missed runs caught up
after a restart) skips itself as superseded, so only the latest one runs. DVC runs with this
interpreter's folder first on PATH, so stage commands (`cadenza ...`) resolve in a worker
started without the virtualenv activated.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import networkx as nx
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Cancelled

from cadenza.config import FlowParams, from_dict, load_yaml
from pipeline.alerts import notify_failure

GPU_COMMANDS = ("cadenza train", "cadenza benchmark")  # the stages that want the GPU
GPU_TAG = "gpu"


@dataclass(frozen=True)
class Stage:
    name: str  # DVC's address, e.g. train@chord_lstm
    cmd: str
    metrics: tuple[str, ...]  # metrics files it writes, relative to the project


def stage_order(project: str, targets: list[str]) -> list[Stage]:
    """Stages of the top dvc.yaml (or of `targets`), with their upstream, upstream first.
    Other pipelines of the repo (bench/bl) run only when named, as with DVC."""
    from dvc.repo import Repo

    with Repo(project) as repo:
        wanted = set()
        for target in targets or ["dvc.yaml"]:
            wanted.update(repo.stage.collect(target, with_deps=True))
        # edges point from a stage to the stages it depends on
        graph = repo.index.graph.subgraph(wanted)
        ordered = reversed(
            list(nx.lexicographical_topological_sort(graph, key=lambda s: s.addressing))
        )
        root = Path(repo.root_dir)
        return [
            Stage(
                stage.addressing,
                " ".join(stage.cmd) if isinstance(stage.cmd, list) else str(stage.cmd),
                tuple(str(Path(out.fs_path).relative_to(root)) for out in stage.outs if out.metric),
            )
            for stage in ordered
        ]


# another DVC process holds the repository lock, a path of the stage (`.dvc/tmp/rwlock`: DVC
# frees the repository lock while a stage command runs), or is writing dvc.lock
LOCK_ERRORS = ("Unable to acquire lock", "is busy, it is being blocked by", "validation failed")
LOCK_POLL_S = 2.0
RAN, RESTORED, UP_TO_DATE = "ran", "restored from the run cache", "up to date"


class LockHeld(RuntimeError):
    """DVC's repository lock is held by another process (for now)."""


class StageTimeout(RuntimeError):
    """A stage ran past its timeout and was stopped; never retried."""


def flow_settings(project: str) -> FlowParams:
    """The `flow:` section of the project's params.yaml, validated (defaults if absent)."""
    path = Path(project) / "params.yaml"
    raw = (load_yaml(path) or {}) if path.exists() else {}
    return from_dict(FlowParams, raw.get("flow") or {}, "flow")


def dvc_env() -> dict[str, str]:
    """The environment for DVC: this interpreter's folder first on PATH, because stage
    commands are bare `cadenza ...` and a worker may run without the venv activated."""
    bin_dir = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=os.pathsep.join([bin_dir, os.environ.get("PATH", "")]))


def waiting_for_lock(
    what: str, attempt: Callable[[], Any], wait_s: float, log: Callable[[str], None]
) -> Any:
    """`attempt()`, retried every LOCK_POLL_S while it raises LockHeld, for at most `wait_s`;
    then a RuntimeError that says who to look for."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return attempt()
        except LockHeld as err:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(
                    f"{what}: DVC's lock was still held by another DVC process after "
                    f"{wait_s:g} s (flow.lock_wait_s); is a `dvc repro` or `dvc exp run` "
                    f"running in this project? ({err})"
                ) from None
            log(
                f"{what}: DVC's lock is held by another DVC process; retrying "
                f"(waiting at most {left:.0f} s more)"
            )
            time.sleep(min(LOCK_POLL_S, left))


def _dvc_streamed(project: str, *args: str, timeout_s: float | None = None) -> list[str]:
    """Run a DVC command, streaming its output into the task log; return its output lines.

    Its own process group (and no terminal stdin, which a background group may not read):
    an interrupt here stops DVC and the stage it runs as one (`stop_process_group`), and so
    does `timeout_s`. Raises LockHeld when DVC could not take its lock.
    """
    logger = _logger()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", *args],
        cwd=project,
        env=dvc_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        process_group=0,
    )
    assert proc.stdout is not None
    timed_out = threading.Event()
    watchdog = threading.Timer(timeout_s or 0, _time_out, (proc.pid, timed_out))
    watchdog.daemon = True
    if timeout_s:
        watchdog.start()
    lines = []
    try:
        with _ctrl_c_stops(proc) as interrupted:
            for line in proc.stdout:
                if line.strip():
                    logger.info(line.rstrip())
                    lines.append(line.rstrip())
            watchdog.cancel()
            if timeout_s:
                watchdog.join()  # a firing watchdog signals the group: reap only after it
            proc.wait()
        if interrupted.is_set():
            raise KeyboardInterrupt
    except BaseException:  # Ctrl-C (KeyboardInterrupt), or the flow being torn down
        watchdog.cancel()
        proc.stdout.close()  # a DVC blocked writing to a full pipe could not stop
        stop_process_group(proc)
        raise
    command = f"dvc {' '.join(args)}"
    if timed_out.is_set() and proc.returncode != 0:
        raise StageTimeout(
            f"{command} ran past its timeout of {timeout_s:g} s and was "
            f"stopped (flow.timeout_s in params.yaml)"
        )
    if proc.returncode != 0:
        held = [line for line in lines[-10:] if any(err in line for err in LOCK_ERRORS)]
        if held:
            raise LockHeld(held[-1])
        raise RuntimeError(f"{command} failed with exit code {proc.returncode}")
    return lines


@contextlib.contextmanager
def _ctrl_c_stops(proc: subprocess.Popen) -> Iterator[threading.Event]:
    """While DVC runs, Ctrl-C is passed on to its process group instead of raising
    KeyboardInterrupt wherever the flow happens to be.

    Why: a KeyboardInterrupt raised inside Prefect's logging or API client (which hold locks
    and worker threads) could hang the flow's exit; here the stage gets the SIGINT, its output
    ends, and the caller raises KeyboardInterrupt at one known point. A second Ctrl-C kills the
    group. Off the main thread (where no handler can be installed) Python's default applies.
    """
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        _signal_group(proc.pid, signal.SIGKILL if interrupted.is_set() else signal.SIGINT)
        interrupted.set()

    if threading.current_thread() is not threading.main_thread():
        yield interrupted
        return
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield interrupted
    finally:
        signal.signal(signal.SIGINT, previous)


def _logger() -> Any:
    """The run's logger in a flow or task run; this module's logger outside one."""
    from prefect.exceptions import MissingContextError

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def _time_out(pgid: int, timed_out: threading.Event) -> None:
    """The stage watchdog: mark the timeout, then stop the command's whole process group
    (the leader is reaped by `_dvc_streamed` once the group's output ends)."""
    timed_out.set()
    _stop_group(pgid)
    _signal_group(pgid, signal.SIGKILL)  # stragglers that outlived DVC


STOP_GRACE_S = ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0))
# the temporary server holds nothing to save once the run has flushed its logs, and uvicorn's
# graceful shutdown waits for idle keep-alive connections: a short SIGTERM, then SIGKILL
SERVER_GRACE_S = ((signal.SIGTERM, 3.0),)


def stop_process_group(
    proc: subprocess.Popen, grace: tuple[tuple[signal.Signals, float], ...] = STOP_GRACE_S
) -> None:
    """Stop `proc`, the leader of its own process group, and every process of that group.

    SIGINT first, what a terminal's Ctrl-C sends (DVC lets its stage command handle it), then
    SIGTERM, each with a grace period; then SIGKILL for whatever is left, stragglers that
    outlived DVC included. The leader is reaped only at the end, so that its group id cannot
    pass to an unrelated process while we signal it. A second Ctrl-C skips to the SIGKILL.
    """
    try:
        _stop_group(proc.pid, grace)
    finally:
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()


def _stop_group(pgid: int, grace: tuple[tuple[signal.Signals, float], ...] = STOP_GRACE_S) -> None:
    """The signals of `grace` (SIGINT, SIGTERM), each with its wait, to group `pgid` until its
    leader exits, without reaping it (see stop_process_group)."""
    for sig, grace_s in grace:
        _signal_group(pgid, sig)
        deadline = time.monotonic() + grace_s
        while not _exited(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _exited(pgid):
            return


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _exited(pid: int) -> bool:
    """Whether child `pid` has ended, without reaping it (its pid stays reserved)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped
        return True


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
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-services",
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    # atexit runs after Prefect's own exit hooks (threading's), which flush logs and events
    atexit.register(stop_process_group, proc, SERVER_GRACE_S)
    url = f"http://127.0.0.1:{port}/api"
    timeout_s = float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", 120))
    deadline = time.monotonic() + timeout_s
    while not _healthy(url):
        if proc.poll() is not None:
            raise RuntimeError(
                f"the temporary Prefect server exited with code "
                f"{proc.returncode} before it was ready; see {log}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the temporary Prefect server at {url} was not ready after "
                f"{timeout_s:.0f} s; see {log}"
            )
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
def repro_stage(
    project: str, stage: str, timeout_s: float | None = None, lock_wait_s: float = 0.0
) -> str:
    """Run one stage through DVC; return RAN, RESTORED or UP_TO_DATE, read from DVC's output.
    Waits for DVC's lock (see `waiting_for_lock`); stopped after `timeout_s`."""
    lines = waiting_for_lock(
        f"stage {stage}",
        lambda: _dvc_streamed(project, "repro", "--single-item", stage, timeout_s=timeout_s),
        lock_wait_s,
        _logger().warning,
    )
    return stage_status(lines)


def stage_status(lines: list[str]) -> str:
    """What `dvc repro --single-item` did: ran the command, restored the outputs from the
    run cache, or nothing (the stage was up to date)."""
    if any(line.startswith("Running stage") for line in lines):
        return RAN
    if any("skipping run, checking out outputs" in line for line in lines):
        return RESTORED
    return UP_TO_DATE


@task(task_run_name="dvc exp save {name}")
def save_experiment(project: str, name: str, stages: list[str], lock_wait_s: float = 0.0) -> str:
    """Record the workspace as a DVC experiment, so runs compare with `dvc exp show`.

    Only the run's `stages` are committed: without targets DVC commits every stage of every
    dvc.yaml in the repo and fails on any output that this run did not make (the stages
    left out by `--target`, a benchmark never run).
    """
    waiting_for_lock(
        f"experiment {name}",
        lambda: _dvc_streamed(project, "exp", "save", "--name", name, *stages),
        lock_wait_s,
        _logger().warning,
    )
    return name


def _run_name() -> str:
    """`repro-20261123-030000`: the UTC start time, so experiments sort and read by date."""
    return datetime.now(UTC).strftime("repro-%Y%m%d-%H%M%S")


def stage_kind(stage: str) -> str:
    """`train@chord_lstm` -> `train`; a stage of another dvc.yaml (`bench/bl/dvc.yaml:
    jsb`) -> its name without the file."""
    return stage.rsplit(":", 1)[-1].split("@", 1)[0]


def _no_retry_after_timeout(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect's retry condition: retry transient failures, never a stage that timed out
    (it would only time out again) nor one that waited for DVC's lock in vain."""
    try:
        state.result()
    except StageTimeout:
        return False
    except Exception as err:  # noqa: BLE001 - any other failure of a fetch may be transient
        return "DVC's lock" not in str(err)
    return True


def stage_runner(stage: Stage, settings: FlowParams, gpu: list[str]) -> Any:
    """`repro_stage` with this stage's options: fetch stages retry with backoff, training
    stages carry the `gpu` tags."""
    if stage_kind(stage.name) == "fetch" and settings.fetch_retries:
        delays = [5, 30, 120, 300, 600][: settings.fetch_retries]
        delays += delays[-1:] * (settings.fetch_retries - len(delays))
        return repro_stage.with_options(
            retries=settings.fetch_retries,
            retry_delay_seconds=delays,
            retry_condition_fn=_no_retry_after_timeout,
        )
    if stage.cmd.startswith(GPU_COMMANDS):
        return repro_stage.with_options(tags=gpu)
    return repro_stage


@flow(
    name="cadenza-repro",
    flow_run_name=_run_name,
    log_prints=True,
    on_failure=[notify_failure],
    on_crashed=[notify_failure],
)
def reproduce(
    project: str = ".", targets: list[str] | None = None, experiment: bool = False
) -> Any:
    """Reproduce `targets` (default: the whole DAG) of the DVC project at `project`."""
    from pipeline.summary import run_summary

    settings = flow_settings(project)
    later = later_due_run()
    if later:
        return Cancelled(
            message=f"superseded by {later}: a later run of this deployment is "
            "already due, so only that one reproduces the DAG"
        )
    logger = get_run_logger()

    def order() -> list[Stage]:
        try:
            return stage_order(project, targets or [])
        except Exception as err:
            if any(text in str(err) for text in LOCK_ERRORS):
                raise LockHeld(str(err)) from err
            raise

    stages = waiting_for_lock("the stage graph", order, settings.lock_wait_s, logger.warning)
    # torch and the limit only when a stage trains (not for, e.g., --target fetch)
    tags = gpu_tags() if any(s.cmd.startswith(GPU_COMMANDS) for s in stages) else []
    status = {}
    for stage in stages:
        status[stage.name] = stage_runner(stage, settings, tags)(
            project, stage.name, settings.timeout_for(stage_kind(stage.name)), settings.lock_wait_s
        )
    metrics = [
        path for stage in stages if status[stage.name] != UP_TO_DATE for path in stage.metrics
    ]
    create_markdown_artifact(
        key="cadenza-metrics",
        markdown=run_summary(project, status, metrics),
        description="the stages this run ran, and the metrics that changed since HEAD",
    )
    if experiment:
        save_experiment(project, _experiment_name(), [s.name for s in stages], settings.lock_wait_s)
    return list(status)


def later_due_run() -> str | None:
    """The name of a later run of this run's deployment that is already due, if any.

    Why: after a restart (of `flow serve`, of a worker) every missed scheduled run is due at
    once; the deployment's concurrency limit of one queues them, and each but the latest
    skips itself here, so a week away catches up with one run, not seven. Runs outside a
    deployment (`cadenza flow run`) are never superseded.
    """
    from prefect.runtime import deployment as this_deployment

    deployment = this_deployment.get_id()
    if not deployment:
        return None
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
    )
    from prefect.client.schemas.objects import StateType

    with get_client(sync_client=True) as client:
        mine = client.read_flow_run(flow_run.get_id())
        if mine.expected_start_time is None:
            return None
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment])),
            flow_run_filter=FlowRunFilter(
                expected_start_time=FlowRunFilterExpectedStartTime(
                    after_=mine.expected_start_time, before_=datetime.now(UTC)
                )
            ),
        )
    later = [
        run
        for run in runs
        if run.id != mine.id
        and run.expected_start_time
        and run.expected_start_time > mine.expected_start_time
        and run.state_type not in (StateType.CANCELLED, StateType.CANCELLING)
    ]
    return later[-1].name if later else None


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
def sweep(project: str = ".", name: str = "paper002_optimizer") -> str:
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
