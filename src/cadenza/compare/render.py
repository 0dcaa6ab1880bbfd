"""The printed view of `cadenza compare`: the header, a section per metrics file that has
changes (a whole new subtree collapsed to one line), and one summary line."""

from __future__ import annotations

from collections import defaultdict
from pathlib import PurePosixPath
from typing import Any

from cadenza.compare.header import header
from cadenza.compare.read import Comparison
from cadenza.compare.rows import REFERENCE_FILE, config_changes, metric_rows, section_name
from cadenza.compare.values import SIGNIFICANT, Values, changed, finite, fmt, rounded

# one-sided rows (a corpus or a feature added) are one line per parent key from this many
COLLAPSE = 3


def render(comparison: Comparison, show_all: bool = False) -> str:
    """The header, then a section per metrics file that has changes (every file with
    `show_all`), then one summary line."""
    by_file: dict[str, list[Values]] = defaultdict(list)
    for row in metric_rows(comparison.diff):
        by_file[row["file"]].append(row)
    config = config_changes(comparison.diff)
    lines = header(comparison)
    counts: dict[str, int] = defaultdict(int)
    for path in sorted(comparison.diff, key=_section_order):
        rows = sorted(by_file[path], key=lambda r: _metric_order(r["metric"]))
        moved = [r for r in rows if changed(r["old"], r["new"])]
        counts["metrics"] += len(rows)
        counts["changed"] += len(moved)
        for row in moved:
            counts[row["verdict"] or "not judged"] += 1
        section = render_section(path, rows, moved, config.get(path, []), comparison, show_all)
        if section:
            lines += ["", *section]
    lines += ["", summary(counts, show_all)]
    return "\n".join(lines)


def render_section(
    path: str,
    rows: list[Values],
    moved: list[Values],
    config: list[tuple[str, Any, Any]],
    comparison: Comparison,
    show_all: bool,
) -> list[str]:
    """`name (path): N of M changed, B better, W worse` and a line per metric that changed
    (every metric with `show_all`); a file present in one revision only is one line unless
    `show_all`; [] when nothing in it changed."""
    if not show_all and not moved and not config:
        return []
    title = f"{section_name(path)} ({path})"
    only = _only_in(rows, comparison)
    if only and not show_all:
        return [f"{title}: only in {only}, {len(rows)} metrics (--all lists them)"]
    verdicts = [r["verdict"] for r in moved]
    judged = "".join(f", {verdicts.count(v)} {v}" for v in ("better", "worse") if v in verdicts)
    lines = [f"{title}: {len(moved)} of {len(rows)} changed{judged}"]
    shown = rows if show_all else collapse(moved)
    width = max([len(r["metric"]) for r in shown] + [len(k) for k, _, _ in config] + [0])
    old_width = max([len(fmt(r["old"])) for r in shown] + [len(fmt(o)) for _, o, _ in config] + [0])
    new_width = max([len(fmt(r["new"])) for r in shown] + [0])
    for key, old, new in config:
        lines.append(f"  {key:<{width}}  {fmt(old):>{old_width}} -> {fmt(new)}  (setting)")
    for row in shown:
        if "count" in row:  # a collapsed group of one-sided rows
            lines.append(
                f"  {row['metric']:<{width}}  {row['count']} {_note(row)} (--all lists them)"
            )
            continue
        lines.append(
            f"  {row['metric']:<{width}}  {fmt(row['old']):>{old_width}} -> "
            f"{fmt(row['new']):<{new_width}}  ({_note(row)})"
        )
    return lines


def collapse(rows: list[Values]) -> list[Values]:
    """Rows present on one side only, COLLAPSE or more under one parent key (a corpus's
    `by_source.maestro.test.*` added), as one row `parent.*` with a count; others as they
    are. A whole new subtree is one fact, not sixteen."""
    groups: dict[tuple[str, str], list[Values]] = defaultdict(list)
    for row in rows:
        side = "new" if row["old"] is None else "gone" if row["new"] is None else ""
        if side and "." in row["metric"]:
            groups[(row["metric"].rsplit(".", 1)[0], side)].append(row)
    big = {id(r): key for key, group in groups.items() if len(group) >= COLLAPSE for r in group}
    out, done = [], set()
    for row in rows:
        key = big.get(id(row))
        if key is None:
            out.append(row)
        elif key not in done:
            done.add(key)
            parent, side = key
            out.append(
                {
                    "metric": f"{parent}.*",
                    "count": len(groups[key]),
                    "old": None if side == "new" else 0,
                    "new": None,
                }
            )
    return out


def summary(counts: dict[str, int], show_all: bool) -> str:
    """One line: how many metrics changed, and which way; what the default view hid."""
    if not counts["changed"]:
        line = (
            f"no metric changed at {SIGNIFICANT} significant digits ({counts['metrics']} compared)"
        )
    else:
        parts = [f"{counts[v]} {v}" for v in ("better", "worse", "same", "not judged") if counts[v]]
        line = f"{counts['changed']} of {counts['metrics']} metrics changed: {', '.join(parts)}"
    hidden = counts["metrics"] - counts["changed"]
    return line if show_all or not hidden else f"{line}; {hidden} unchanged hidden (--all)"


def _note(row: Values) -> str:
    """'change, direction, verdict' as far as each is known; 'new' / 'gone' for one side."""
    if row["old"] is None:
        return "new"
    if row["new"] is None:
        return "gone"
    if not changed(row["old"], row["new"]):
        return "unchanged"
    change = row["change"]  # NaN when one side is NaN (a model without a loss): not shown
    parts = [f"{rounded(change):+.{SIGNIFICANT}g}"] if finite(change) else []
    parts += [part for part in (row["better"], row["verdict"]) if part]
    return ", ".join(parts) or "changed"


def _only_in(rows: list[Values], comparison: Comparison) -> str:
    """The revision a metrics file exists in when it is absent from the other, else ''."""
    if rows and all(r["old"] is None for r in rows):
        return comparison.b_rev
    if rows and all(r["new"] is None for r in rows):
        return comparison.a_rev
    return ""


def _section_order(path: str) -> tuple[int, str]:
    """Models first, then the reference data, then anything else (benchmarks)."""
    if path.endswith(REFERENCE_FILE):
        return 1, path
    return (0 if PurePosixPath(path).parent.name == "metrics" else 2), path


def _metric_order(metric: str) -> tuple[int, str]:
    """Top-level metrics (nll, accuracy) before nested ones (by_source.*, yang_lerch.*)."""
    return metric.count("."), metric
