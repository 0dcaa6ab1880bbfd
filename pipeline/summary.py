"""The markdown a flow run leaves behind: its metrics, and what changed since the last commit.

Both come from DVC (`metrics show`, `metrics diff`), so the artifact says exactly what
`dvc metrics show` / `cadenza compare HEAD` would say in a terminal. A plain function of the
project folder; the flow attaches its result as a Prefect artifact.
"""

from __future__ import annotations

import pandas as pd
from dvc.repo import Repo

from cadenza.compare import compare_table, metrics_diff
from cadenza.io import flatten


def metrics_frame(project: str, files: list[str]) -> pd.DataFrame:
    """The numeric metrics of `files` in the workspace: a row per metric, a column per file."""
    if not files:
        return pd.DataFrame()
    with Repo(project) as repo:
        shown = repo.metrics.show(targets=files).get("", {}).get("data", {})
    columns = {path.rsplit("/", 1)[-1].removesuffix(".json"): _numbers(entry.get("data", {}))
               for path, entry in sorted(shown.items())}
    return pd.DataFrame(columns).rename_axis("metric")


def run_summary(project: str, stages: list[str], files: list[str]) -> str:
    """Markdown: the stages run, the metrics of `files`, and their diff against HEAD."""
    parts = [f"# Cadenza run\n\nStages reproduced or up to date: {', '.join(stages)}.\n"]
    table = metrics_frame(project, files)
    parts.append("## Metrics\n")
    parts.append(table.to_markdown(floatfmt=".4g") if not table.empty else "No metrics yet.")
    parts.append("\n## Change against HEAD\n")
    try:
        diff = compare_table(metrics_diff(project, "HEAD", None, files))
    except Exception as err:  # noqa: BLE001 - no git repo, or no such commit: say so
        parts.append(f"No diff: {type(err).__name__}: {err}")
    else:
        changed = diff[diff.verdict != "same"]
        parts.append(changed.to_markdown(index=False, floatfmt=".4g") if not changed.empty
                     else "No metric changed since HEAD.")
    return "\n".join(parts) + "\n"


def _numbers(data: dict) -> dict[str, float]:
    """The numeric leaves of a metrics file, one row each (`test.nll`)."""
    return {key: value for key, value in flatten(data).items()
            if isinstance(value, int | float) and not isinstance(value, bool)}
