"""The markdown a flow run leaves behind: its metrics, and what changed since the last commit.

Both come from DVC (`metrics show`, `metrics diff`), so the artifact says exactly what
`dvc metrics show` / `cadenza compare` would say in a terminal. Plain functions of the
project folder: the flow attaches the result as a Prefect artifact; tests read it directly.
"""

from __future__ import annotations

import pandas as pd
from dvc.repo import Repo

from cadenza.compare import compare_table, metrics_diff


def metrics_frame(project: str, files: list[str]) -> pd.DataFrame:
    """The numeric metrics of `files` in the workspace: a row per metric, a column per file."""
    if not files:
        return pd.DataFrame()
    with Repo(project) as repo:
        shown = repo.metrics.show(targets=files).get("", {}).get("data", {})
    columns = {path.rsplit("/", 1)[-1].removesuffix(".json"): _flatten(entry.get("data", {}))
               for path, entry in sorted(shown.items())}
    return pd.DataFrame(columns).rename_axis("metric")


def run_summary(project: str, stages: list[str], files: list[str],
                baseline: str = "HEAD") -> str:
    """Markdown: the stages run, the metrics of `files`, and their diff against `baseline`."""
    parts = [f"# Cadenza run\n\nStages reproduced or up to date: {', '.join(stages)}.\n"]
    table = metrics_frame(project, files)
    parts.append("## Metrics\n")
    parts.append(table.to_markdown(floatfmt=".4g") if not table.empty else "No metrics yet.")
    parts.append(f"\n## Change against {baseline}\n")
    try:
        diff = compare_table(metrics_diff(project, baseline, None, files))
    except Exception as err:  # noqa: BLE001 - no git repo, or no such commit: say so
        parts.append(f"No diff: {type(err).__name__}: {err}")
    else:
        changed = diff[diff.verdict != "same"]
        parts.append(changed.to_markdown(index=False, floatfmt=".4g") if not changed.empty
                     else f"No metric changed since {baseline}.")
    return "\n".join(parts) + "\n"


def _flatten(data: dict, prefix: str = "") -> dict[str, object]:
    """{"test": {"nll": 1.0}} -> {"test.nll": 1.0}: one row per numeric leaf."""
    flat: dict[str, object] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[name] = value
    return flat
