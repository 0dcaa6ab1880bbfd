"""The DVC stages as the flow sees them: their order, their kind, and what DVC did with them.

A stage's kind is the `cadenza` sub-command its `cmd` runs (`cadenza train ...` -> train),
declared here once with what it needs from the flow: the GPU (training stages carry the
`gpu` concurrency tag), retries (only stages that talk to the network meet transient
errors). The kind is also the key of its timeout in params.yaml's `flow.timeout_s`; a
command that is not `cadenza` (a toy project's) has the kind "" and the default timeout.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

PROGRAM = "cadenza"  # the console script the stages of dvc.yaml run


@dataclass(frozen=True)
class StageKind:
    """What the flow does differently for the stages of one kind."""

    gpu: bool = False  # trains on cuda:0: runs under the `gpu` tag's one slot
    network: bool = False  # talks to the network: retried with backoff (flow.fetch_retries)


STAGE_KINDS: dict[str, StageKind] = {
    "fetch": StageKind(network=True),
    "train": StageKind(gpu=True),
    "benchmark": StageKind(gpu=True),
}
PLAIN = StageKind()  # every other kind: runs once, on the CPU or wherever it likes


@dataclass(frozen=True)
class Stage:
    """One stage of the DAG, as DVC expands it (a foreach item is a stage of its own)."""

    name: str  # DVC's address, e.g. train@chord_lstm
    cmd: str
    metrics: tuple[str, ...]  # metrics files it writes, relative to the project

    @property
    def kind(self) -> str:
        """The `cadenza` sub-command the stage runs (`train`), "" for any other command."""
        return command_of(self.cmd)

    @property
    def needs(self) -> StageKind:
        """What the flow must do for it: its kind's entry of STAGE_KINDS."""
        return STAGE_KINDS.get(self.kind, PLAIN)


def command_of(cmd: str) -> str:
    """`cadenza train x --ckpt ...` -> `train`; `cadenza -v benchmark bl` -> `benchmark`;
    "" when the command is not `cadenza` (or has no sub-command)."""
    words = shlex.split(cmd)
    if not words or Path(words[0]).name != PROGRAM:
        return ""
    return next((word for word in words[1:] if not word.startswith("-")), "")


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


RAN, RESTORED, UP_TO_DATE = "ran", "restored from the run cache", "up to date"


def stage_status(lines: list[str]) -> str:
    """What `dvc repro --single-item` did, read from its output: ran the command, restored
    the outputs from the run cache, or nothing (the stage was up to date)."""
    if any(line.startswith("Running stage") for line in lines):
        return RAN
    if any("skipping run, checking out outputs" in line for line in lines):
        return RESTORED
    return UP_TO_DATE
