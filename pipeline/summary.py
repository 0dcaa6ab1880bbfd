"""The markdown a flow run leaves behind: which stages ran, and the metrics that changed.

The diff comes from DVC (`metrics diff` against HEAD) and is judged by `cadenza.compare`
(direction, verdict, equality at 4 significant digits), so the artifact agrees with
`cadenza compare HEAD` in a terminal. Only the metrics files of stages that ran are compared:
a file this run did not write cannot have changed in it. A plain function of the project
folder; the flow attaches its result as a Prefect artifact.
"""

from __future__ import annotations

from pathlib import Path

from cadenza.compare import collect
from cadenza.compare.rows import COLUMNS, metric_rows
from cadenza.compare.values import changed, fmt
from pipeline.stages import RAN, RESTORED, UP_TO_DATE


def run_summary(project: str, status: dict[str, str], files: list[str]) -> str:
    """Markdown: the stages by what DVC did with them, then the metrics of `files` that
    changed against HEAD (old, new, change, better direction, verdict)."""
    parts = ["# Cadenza run\n", "## Stages\n"]
    for what in (RAN, RESTORED, UP_TO_DATE):
        names = [name for name, done in status.items() if done == what]
        if names:
            parts.append(f"- {what} ({len(names)}): {', '.join(names)}")
    parts.append("\n## Metrics changed since HEAD\n")
    if not files:
        parts.append("No stage that writes metrics ran, so no metric changed.")
        return "\n".join(parts) + "\n"
    try:
        rows = changed_rows(project, files)
    except Exception as err:  # noqa: BLE001 - no git repo, or no such commit: say so
        parts.append(f"No diff: {type(err).__name__}: {err}")
    else:
        parts.append(markdown_table(rows) if rows else "No metric changed since HEAD.")
    return "\n".join(parts) + "\n"


def changed_rows(project: str, files: list[str]) -> list[dict]:
    """compare's rows of `files` (relative to `project`) against HEAD, those that changed only
    (a metric new in this run, absent at HEAD, counts as changed)."""
    # absolute: DVC resolves relative targets against the process's folder, not `project`
    targets = [str(Path(project).resolve() / path) for path in files]
    rows = metric_rows(collect(project, "HEAD", None, targets).diff)
    return sorted(
        (row for row in rows if changed(row["old"], row["new"])),
        key=lambda row: (row["file"], row["metric"]),
    )


def markdown_table(rows: list[dict]) -> str:
    """The rows as a markdown table, numbers as `cadenza compare` writes them."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [
            fmt(row[col]) if col in ("old", "new", "change") else str(row[col] or "-")
            for col in COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
