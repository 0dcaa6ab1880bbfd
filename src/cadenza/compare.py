"""`cadenza compare A B`: DVC's metrics diff between two commits or experiments, as one table
that says, for every metric, which way is better and whether the change went that way.

DVC computes the diff (`Repo.metrics.diff`); this module only knows what "better" means:
lower for losses and divergences, higher for accuracy and overlap, and, for the music metrics
(EB, UPC, polyphony, ...), closer to the test data's value, since a model should sound like
the music it learned from, not maximise the number of pitch classes it uses.
"""

from __future__ import annotations

import math

import pandas as pd
from dvc.repo import Repo

from cadenza.evaluate import MUSIC_METRICS

LOWER = {"nll", "perplexity", "frame_nll", "valid_loss", "kl", "yl_mean_kl", "empty_samples"}
HIGHER = {"accuracy", "frame_accuracy", "oa", "yl_mean_oa"}
REFERENCE_FILE = "reference.json"
TEST_ROW = "test"


def direction(metric: str) -> str:
    """'lower', 'higher', 'closer to test' or '' (no preferred direction, e.g. counts)."""
    leaf = metric.rsplit(".", 1)[-1]
    if leaf in LOWER:
        return "lower"
    if leaf in HIGHER:
        return "higher"
    if leaf in MUSIC_METRICS:
        return "closer to test"
    return ""


def metrics_diff(project: str, a_rev: str, b_rev: str | None,
                 files: list[str] | None = None) -> dict[str, dict[str, dict]]:
    """{file: {metric: {"old", "new", "diff"}}} from DVC, every metric included;
    `b_rev` None means the workspace; `files` None means every metrics file."""
    with Repo(project) as repo:
        return repo.metrics.diff(a_rev=a_rev, b_rev=b_rev or "workspace", targets=files,
                                 all=True).get("diff", {})


def compare_table(diff: dict[str, dict[str, dict]]) -> pd.DataFrame:
    """One row per (file, metric): old, new, change, the better direction and a verdict."""
    test_values = next((values for path, values in diff.items()
                        if path.endswith(REFERENCE_FILE)), {})
    rows = []
    for path, metrics in diff.items():
        for metric, values in metrics.items():
            old, new = values.get("old"), values.get("new")
            # real data has no better direction: it is what the models are judged against
            better = "" if path.endswith(REFERENCE_FILE) else direction(metric)
            reference = test_values.get(f"{TEST_ROW}.{metric}", {})
            rows.append({
                "file": path, "metric": metric, "old": old, "new": new,
                "change": values.get("diff"), "better": better,
                "verdict": verdict(old, new, better, reference.get("old"),
                                   reference.get("new")),
            })
    table = pd.DataFrame(rows, columns=["file", "metric", "old", "new", "change", "better",
                                        "verdict"])
    return table.sort_values(["file", "metric"], ignore_index=True)


def verdict(old, new, better: str, test_old=None, test_new=None) -> str:
    """'better', 'worse', 'same' or '' where it cannot be judged."""
    if not _number(old) or not _number(new) or not better:
        return ""
    if better == "closer to test":
        if not _number(test_old) or not _number(test_new):
            return ""
        old, new = abs(old - test_old), abs(new - test_new)
        better = "lower"
    if math.isclose(old, new, rel_tol=1e-9, abs_tol=1e-12):
        return "same"
    return "better" if (new < old) == (better == "lower") else "worse"


def _number(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
