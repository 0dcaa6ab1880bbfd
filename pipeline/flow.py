"""The Prefect flows: the DVC DAG, one task per DVC stage; and sweeps, one task per point.

The DAG is defined once, in dvc.yaml. This flow asks DVC for the stage graph and runs each
stage with `dvc repro --single-item`, in dependency order, so DVC's cache and dvc.lock stay
the single truth: a stage that is up to date is skipped by DVC, not by us. Stages run one at a
time because `dvc repro` holds the repository lock. Each task streams DVC's output into its
log. How a stage is run depends on its kind (`pipeline/stages.py`: the `cadenza` sub-command
it runs): fetch stages talk to the network and retry with backoff, never after a timeout;
deterministic stages do not retry; training stages want the GPU.

After the stages, the run leaves a markdown artifact (`cadenza-metrics`): the metrics of the
stages it ran and their diff against the last commit. With `experiment=True` it also records
the workspace as a DVC experiment named after the flow run, `repro-<UTC date-time>`
(`dvc exp save`: what `dvc exp run` does after its repro), so scheduled runs line up in
`dvc exp show`.

Ctrl-C (issue #18): each `dvc` command runs in a process group of its own with the stage it
starts, and an interrupt stops that whole group before the KeyboardInterrupt goes on up
(`pipeline/process_group.py`); the run's temporary Prefect server is ours, in a group of its
own too (`pipeline/prefect_server.py`). The `cadenza flow run` command turns the interrupt
into exit code 130.

On a GPU machine, training stages and sweep points carry the `gpu` tag, and the flow makes
sure a concurrency limit of one slot on that tag exists (stages train on `cuda:0`), so runs
that overlap, say a scheduled run and a sweep, never put two trainings on one GPU.

Nights unattended (issue #19), set in params.yaml's `flow:` section (`FlowParams`): each stage
has a timeout by kind, after which its process group is stopped and the run fails; a stage
that finds DVC's lock held by another DVC process waits for it up to `flow.lock_wait_s`
(`pipeline/dvc_run.py`). A failed or crashed run posts to `flow.notify_url`
(`pipeline/alerts.py`). Deployments allow one run at a time; a run of a deployment that finds
a later run of the same deployment already due (missed runs caught up after a restart) skips
itself as superseded, so only the latest one runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import State
from prefect.runtime import flow_run
from prefect.states import Cancelled

from cadenza import paths
from cadenza.config import FlowParams
from pipeline.alerts import notify_failure
from pipeline.dvc_run import (
    LOCK_ERRORS,
    LockHeld,
    StageTimeout,
    dvc_streamed,
    run_logger,
    waiting_for_lock,
)
from pipeline.flow_settings import flow_settings
from pipeline.stages import UP_TO_DATE, Stage, stage_order, stage_status

GPU_TAG = "gpu"
FETCH_RETRY_DELAYS_S = (5.0, 30.0, 120.0, 300.0, 600.0)  # then the last one again


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
        lambda: dvc_streamed(project, "repro", "--single-item", stage, timeout_s=timeout_s),
        lock_wait_s,
        run_logger().warning,
    )
    return stage_status(lines)


@task(task_run_name="dvc exp save {name}")
def save_experiment(project: str, name: str, stages: list[str], lock_wait_s: float = 0.0) -> str:
    """Record the workspace as a DVC experiment, so runs compare with `dvc exp show`.

    Only the run's `stages` are committed: without targets DVC commits every stage of every
    dvc.yaml in the repo and fails on any output that this run did not make (the stages
    left out by `--target`, a benchmark never run).
    """
    waiting_for_lock(
        f"experiment {name}",
        lambda: dvc_streamed(project, "exp", "save", "--name", name, *stages),
        lock_wait_s,
        run_logger().warning,
    )
    return name


def _run_name() -> str:
    """`repro-20261123-030000`: the UTC start time, so experiments sort and read by date."""
    return datetime.now(UTC).strftime("repro-%Y%m%d-%H%M%S")


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
    """`repro_stage` with the options of this stage's kind: stages that talk to the network
    retry with backoff (flow.fetch_retries), those that train carry the `gpu` tags (a stage
    that needs both gets both)."""
    options: dict[str, Any] = {}
    if stage.needs.network and settings.fetch_retries:
        delays: list[float] = list(FETCH_RETRY_DELAYS_S[: settings.fetch_retries])
        delays += delays[-1:] * (settings.fetch_retries - len(delays))
        options.update(
            retries=settings.fetch_retries,
            retry_delay_seconds=delays,
            retry_condition_fn=_no_retry_after_timeout,
        )
    if stage.needs.gpu:
        options.update(tags=gpu)
    return repro_stage.with_options(**options) if options else repro_stage


@flow(
    name="cadenza-repro",
    flow_run_name=_run_name,
    log_prints=True,
    on_failure=[notify_failure],
    on_crashed=[notify_failure],
)
def reproduce(
    project: str = ".", targets: list[str] | None = None, experiment: bool = False
) -> list[str] | State[Any]:
    """Reproduce `targets` (default: the whole DAG) of the DVC project at `project`; return
    the stages, or a Cancelled state when a later run of the deployment is due."""
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
    tags = gpu_tags() if any(s.needs.gpu for s in stages) else []
    status = {}
    for stage in stages:
        status[stage.name] = stage_runner(stage, settings, tags)(
            project, stage.name, settings.timeout_for(stage.kind), settings.lock_wait_s
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

    run_id = flow_run.get_id()
    if not run_id:
        return None
    with get_client(sync_client=True) as client:
        mine = client.read_flow_run(UUID(run_id))
        if mine.expected_start_time is None:
            return None
        # validated from plain values: pydantic turns the datetimes into Prefect's DateTime
        window = FlowRunFilterExpectedStartTime.model_validate(
            {"after_": mine.expected_start_time, "before_": datetime.now(UTC)}
        )
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[UUID(deployment)])),
            flow_run_filter=FlowRunFilter(expected_start_time=window),
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
    """One grid point as a DVC experiment, run in a temporary copy of the workspace, with
    the same `-S` overrides as `cadenza sweep` queues."""
    from cadenza.sweep import overrides

    dvc_streamed(project, "exp", "run", "--temp", *overrides(point), target)
    return point


@flow(name="cadenza-sweep", log_prints=True)
def sweep(project: str = ".", name: str = "paper002_optimizer") -> str:
    """Run sweep `name` of `sweeps.yaml`, one task per point (`cadenza sweep` queues them
    instead); points already done are not run again."""
    from cadenza.sweep import (
        experiments,
        grid_points,
        load_sweeps,
        points_to_run,
        results_table,
        write_outputs,
    )

    root = Path(project)
    spec = load_sweeps(root / paths.SWEEPS)[name]
    tags = gpu_tags()
    for point in points_to_run(root, spec):
        sweep_point.with_options(tags=tags)(project, spec.target, point)
    out = root / paths.sweep_reports(name)
    write_outputs(name, spec, results_table(spec, grid_points(spec), experiments(root)), out)
    return str(out)
