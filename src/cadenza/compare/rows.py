"""One row per (metrics file, numeric metric): old, new, change, the better direction (from
`cadenza.metrics.registry`) and a verdict. Music metrics are judged by the distance to each
revision's own test data, and a model trained on some corpora only against those corpora's
test rows, as the report does."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pandas as pd

from cadenza.compare.values import Values, changed, finite, is_config, is_number, one_side
from cadenza.metrics.registry import CLOSER, MUSIC, REFERENCE, TEST_ROW
from cadenza.metrics.registry import direction as registry_direction

REFERENCE_FILE = f"{REFERENCE}.json"
COLUMNS = ["file", "metric", "old", "new", "change", "better", "verdict"]


def direction(metric: str) -> str:
    """'lower', 'higher', 'closer to test' or '' (no preferred direction, e.g. counts), from
    the registry entry of the flattened key's leaf (`yang_lerch.pitch_range.oa` -> `oa`)."""
    return registry_direction(metric.rsplit(".", 1)[-1])


def compare_table(diff: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """One row per (file, numeric metric): old, new, change, the better direction and a
    verdict; config rows (strings, a benchmark's recorded params) are left out."""
    table = pd.DataFrame(metric_rows(diff), columns=COLUMNS)
    return table.sort_values(["file", "metric"], ignore_index=True)


def metric_rows(diff: dict[str, dict[str, dict]]) -> list[Values]:
    """compare_table's rows as dicts, where a side without the metric stays None (a frame
    would make it NaN, which is also what a model without a loss records)."""
    reference = reference_diff(diff)
    rows = []
    for path, metrics in diff.items():
        trained_on = metrics.get("trained_on") or {}
        tests = [
            reference_for(one_side(reference, side), trained_on.get(side))
            for side in ("old", "new")
        ]
        for metric, values in metrics.items():
            old, new = values.get("old"), values.get("new")
            if is_config(metric, old, new):
                continue
            # real data has no better direction: it is what the models are judged against
            better = "" if path.endswith(REFERENCE_FILE) else direction(metric)
            rows.append(
                {
                    "file": path,
                    "metric": metric,
                    "old": old,
                    "new": new,
                    "change": new - old if is_number(old) and is_number(new) else None,
                    "better": better,
                    "verdict": verdict(
                        old, new, better, tests[0].get(metric), tests[1].get(metric)
                    ),
                }
            )
    return rows


def config_changes(diff: dict[str, dict[str, dict]]) -> dict[str, list[tuple[str, Any, Any]]]:
    """{file: [(key, old, new)]}: the config rows that differ between the revisions."""
    out: dict[str, list[tuple[str, Any, Any]]] = {}
    for path, metrics in diff.items():
        rows = [
            (key, v.get("old"), v.get("new"))
            for key, v in sorted(metrics.items())
            if is_config(key, v.get("old"), v.get("new")) and v.get("old") != v.get("new")
        ]
        if rows:
            out[path] = rows
    return out


def verdict(old, new, better: str, test_old=None, test_new=None) -> str:
    """'better', 'worse', 'same' (equal at 4 significant digits) or '' where it cannot be
    judged; for 'closer to test', by the distance to each revision's own test value."""
    if finite(old) and finite(new) and not changed(old, new):
        return "same"
    if not finite(old) or not finite(new) or not better:
        return ""
    if better == CLOSER:
        if not finite(test_old) or not finite(test_new):
            return ""
        old, new = abs(old - test_old), abs(new - test_new)
        better = "lower"
    if not changed(old, new):
        return "same"
    return "better" if (new < old) == (better == "lower") else "worse"


def reference_diff(diff: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """The reference data's part of a metrics diff ({} when the diff has none)."""
    return next((values for path, values in diff.items() if path.endswith(REFERENCE_FILE)), {})


def reference_for(reference: Values, trained_on: Any) -> Values:
    """The test values a model is judged against (as the report does): the pooled test row,
    or, for a model trained on some of the corpora only (`prefer_sources`), those corpora's
    test rows weighted by their test pieces, so a folk model is not judged against MAESTRO."""
    pooled = {
        key.removeprefix(f"{TEST_ROW}."): v
        for key, v in reference.items()
        if key.startswith(f"{TEST_ROW}.")
    }
    corpora = {key.split(".")[1] for key in reference if key.startswith("by_source.")}
    trained = [s for s in str(trained_on or "").split(", ") if s]
    if not trained or set(trained) >= corpora:
        return pooled
    rows = [
        {
            key.removeprefix(f"by_source.{s}.{TEST_ROW}."): v
            for key, v in reference.items()
            if key.startswith(f"by_source.{s}.{TEST_ROW}.")
        }
        for s in trained
    ]
    rows = [r for r in rows if finite(r.get("n_pieces")) and r["n_pieces"] > 0]
    if not rows:
        return pooled
    total = sum(r["n_pieces"] for r in rows)
    return {
        m: sum(r[m] * r["n_pieces"] for r in rows) / total
        for m in MUSIC
        if all(finite(r.get(m)) for r in rows)
    }


def section_name(path: str) -> str:
    """A model's name (its metrics file), 'reference' or a benchmark run's name."""
    return PurePosixPath(path).stem
