"""The paper-reproduction table: which published figure each model reproduces
(`bench/papers/papers.yaml`, read into `Papers`), and each figure over its seeds beside ours,
with a verdict on the gap. Pure: no torch, so the table stage reruns in a second."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cadenza.papers import Figure, Papers


def lookup(result: dict, metric: str) -> float:
    """`metric` ("valid.accuracy") of one run's JSON; NaN where the run has no such figure."""
    value: Any = result
    for key in metric.split("."):
        if not isinstance(value, dict) or key not in value:
            return math.nan
        value = value[key]
    return float(value)


@dataclass(frozen=True)
class Cell:
    """A figure over its seeds: what one row of the table says."""

    figure: Figure
    values: list[float]  # one per seed that has run

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        """The sample standard deviation over seeds (ddof = 1): run-to-run noise."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else math.nan

    @property
    def noise(self) -> float:
        """Run-to-run noise: 2 standard deviations over the seeds, at least 0.001 (a tenth
        of a percent point, the papers' precision)."""
        return max(2 * self.std if len(self.values) > 1 else 0.0, 1e-3)

    @property
    def verdict(self) -> str:
        """Whether the published figure lies within `noise` of our mean; else by how much we
        are above or below it; "not run" where no seed has run."""
        p = self.figure.published
        if p is None:
            return "-"
        if not self.values:
            return "not run"
        gap = self.mean - p
        if abs(gap) <= self.noise:
            return "within noise"
        return f"{'above' if gap > 0 else 'below'} by {_fmt(self.figure.metric, abs(gap))}"


def cells(papers: Papers, runs: list[dict]) -> list[Cell]:
    """Every figure with its values over the runs (seeds) of its model."""
    return [
        Cell(f, [lookup(r, f.metric) for r in runs if r["model"] == f.model])
        for f in papers.figures
    ]


def _fmt(metric: str, value: float) -> str:
    if math.isnan(value):
        return "-"
    if metric.endswith("accuracy"):
        return f"{100 * value:.1f} %"
    if metric == "run.epochs":
        return f"{value:.1f}"
    return f"{value:.3f}"


HEADER = (
    "| paper | experiment | setting | metric | paper's figure | Cadenza (mean ± std) | seeds | "
    "epochs | time / seed | hardware | verdict | why |\n"
    "|---|---|---|---|---:|---:|---:|---:|---:|---|---|---|"
)
PUBLISHED = "## Figures the papers publish"
ADDED = "## Figures the papers do not publish"
CUDA = "## The same seeds on CUDA"
CUDA_HEADER = (
    "| paper | setting | metric | seed | CPU | CUDA | CPU time | CUDA time | GPU |\n"
    "|---|---|---|---:|---:|---:|---:|---:|---|"
)


def table(papers: Papers, runs: list[dict], command: str, cuda: list[dict] | None = None) -> str:
    """Markdown: the figures the papers publish (ours beside each, mean ± std over the
    seeds that ran, with the verdict), then the ones they do not, then any `cuda` reruns of
    CPU runs (`cuda_rows`), then how to rerun each model. `command` is the reproduce
    command, with MODEL where a model's name goes."""
    rows: dict[bool, list[str]] = {True: [], False: []}
    for cell in cells(papers, runs):
        rows[cell.figure.published is not None].append(_row(cell, runs))
    lines = [PUBLISHED, "", HEADER, *rows[True], "", ADDED, "", HEADER, *rows[False], ""]
    if cuda:
        lines += [CUDA, "", CUDA_HEADER, *cuda_rows(papers, runs, cuda), ""]
    lines += ["Reproduce a model's rows (every seed):", ""]
    lines += [
        f"- `{f.model}`: `{command.replace('MODEL', f.model)}`"
        for f in _first(papers)
        if f.model in papers.run
    ]
    return "\n".join(lines) + "\n"


def _row(cell: Cell, runs: list[dict]) -> str:
    f = cell.figure
    own = [r for r in runs if r["model"] == f.model]
    ours = (
        f"{_fmt(f.metric, cell.mean)} ± {_fmt(f.metric, cell.std)}"
        if len(cell.values) > 1
        else _fmt(f.metric, cell.mean)
    )
    epochs = f"{np.mean([r['run']['epochs'] for r in own]):.0f}" if own else "-"
    seconds = f"{np.mean([r['run']['seconds'] for r in own]):.0f} s" if own else "-"
    devices = ", ".join(sorted({r["run"]["device"] for r in own})) or "-"
    published = "-" if f.published is None else _fmt(f.metric, f.published)
    return (
        f"| {f.paper} | {f.experiment} | {f.setting} | `{f.metric}` | {published} | {ours} | "
        f"{len(cell.values)} | {epochs} | {seconds} | {devices} | {cell.verdict} | {f.note} |"
    )


def cuda_rows(papers: Papers, runs: list[dict], cuda: list[dict]) -> list[str]:
    """One row per figure of each CUDA rerun: the same model and seed on the CPU beside it,
    with both times. A CUDA seed does not repeat a CPU seed digit for digit (other kernels,
    bf16 autocast), so the two agree within the seeds' noise, not exactly."""
    cpu = {(r["model"], r["seed"]): r for r in runs}
    out = []
    for f in papers.figures:
        for gpu in (r for r in cuda if r["model"] == f.model):
            base = cpu.get((f.model, gpu["seed"]))
            if base is None:
                continue
            cpu_value, gpu_value = (_fmt(f.metric, lookup(r, f.metric)) for r in (base, gpu))
            out.append(
                f"| {f.paper} | {f.setting} ({f.model}) | `{f.metric}` | {gpu['seed']} | "
                f"{cpu_value} | {gpu_value} | {base['run']['seconds']:.0f} s | "
                f"{gpu['run']['seconds']:.0f} s | {gpu['run']['device']} |"
            )
    return out


def _first(papers: Papers) -> list[Figure]:
    """The first figure of each model, in table order."""
    seen: dict[str, Figure] = {}
    for f in papers.figures:
        seen.setdefault(f.model, f)
    return list(seen.values())
