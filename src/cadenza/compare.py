"""`cadenza compare A B`: what changed between two commits or experiments, short enough to read.

DVC computes the diffs (`Repo.metrics.diff`, `Repo.params.diff`); this module decides what a
reader needs from them:

- only metrics that changed at 4 significant digits (float noise is no change), one section
  per metrics file (a model, the reference data, a benchmark run), `--all` for the rest;
- which way is better: lower for losses and divergences, higher for accuracy and overlap,
  and, for the music metrics (EB, UPC, polyphony, ...), closer to the test data's value, since
  a model should sound like the music it learned from, not maximise the pitch classes it uses;
- config is not a metric: strings (`dataset: jsb`, `trained_on`) and a benchmark's recorded
  `params.*` are shown as settings when they differ, never as rows with a `nan` change;
- a header that warns when the two revisions did not measure the same thing: other corpora,
  prepare params, training profile or seed, since then a metric's change is not the model's.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pandas as pd
from dvc.repo import Repo

from cadenza.evaluate import MUSIC_METRICS

LOWER = {"nll", "perplexity", "frame_nll", "valid_loss", "kl", "yl_mean_kl", "empty_samples"}
HIGHER = {"accuracy", "frame_accuracy", "oa", "yl_mean_oa"}
REFERENCE_FILE = "reference.json"
TEST_ROW = "test"
PARAMS_FILE = "params.yaml"
SIGNIFICANT = 4
# below this a value counts as 0 when deciding what changed: an overlap of 1e-61 and one of
# 1e-52 both say "none", and 4 significant digits alone would call that a change
TINY = 1e-9
# one-sided rows (a corpus or a feature added) are one line per parent key from this many
COLLAPSE = 3
# numbers that describe a run's set-up rather than measure it (a benchmark file records
# its `params`, its `seed`); strings and booleans are config whatever their key
CONFIG_PREFIXES = ("params.",)
CONFIG_KEYS = {"seed", "prefer_fallback"}
# params.yaml sections whose change means the two revisions measured different things
HEADER_PARAMS = {
    "sources": "corpora",
    "prepare": "prepare params",
    "profile": "training profile",
    "seed": "seed",
}
WIDTH = 100  # header warnings wrap here
COLUMNS = ["file", "metric", "old", "new", "change", "better", "verdict"]

Values = dict[str, Any]


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


@dataclass
class Comparison:
    """Everything `cadenza compare` prints, read from DVC once."""

    a_rev: str
    b_rev: str
    diff: dict[str, dict[str, dict]]
    params: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # flat key: (old, new)
    # file: {"missing" or "unreadable": [revisions]}
    errors: dict[str, dict[str, list[str]]] = field(default_factory=dict)


def metrics_diff(
    project: str, a_rev: str, b_rev: str | None, files: list[str] | None = None
) -> dict[str, dict[str, dict]]:
    """{file: {metric: {"old", "new", "diff"}}} from DVC, every metric included;
    `b_rev` None means the workspace; `files` None means every metrics file."""
    with Repo(project) as repo:
        return repo.metrics.diff(
            a_rev=a_rev, b_rev=b_rev or "workspace", targets=files, all=True
        ).get("diff", {})


def collect(project: str, a_rev: str, b_rev: str | None) -> Comparison:
    """The metrics diff, the params.yaml values of both revisions and the metrics files DVC
    could not read, in one Repo session (DVC resolves experiment names as well as commits)."""
    b_rev = b_rev or "workspace"
    with Repo(project) as repo:
        metrics = repo.metrics.diff(a_rev=a_rev, b_rev=b_rev, all=True)
        params = repo.params.diff(a_rev=a_rev, b_rev=b_rev, all=True).get("diff", {})
    errors: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for rev, failed in (metrics.get("errors") or {}).items():
        for path, err in (failed if isinstance(failed, dict) else {}).items():
            why = "missing" if isinstance(err, FileNotFoundError) else "unreadable"
            errors[path][why].append(rev)
    values = {
        key: (v.get("old"), v.get("new")) for key, v in (params.get(PARAMS_FILE) or {}).items()
    }
    return Comparison(
        a_rev,
        b_rev,
        metrics.get("diff", {}),
        values,
        {path: dict(why) for path, why in errors.items()},
    )


# ------------------------------------------------------------------ values


def is_number(value: Any) -> bool:
    """A metric value: int or float, NaN included (a loss a model has not got), not bool."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def rounded(value: Any) -> Any:
    """`value` at 4 significant digits, so that float noise compares equal; non-numbers,
    ints and NaN as they are."""
    if not is_number(value) or isinstance(value, int) or not math.isfinite(value):
        return value
    return float(f"{value:.{SIGNIFICANT}g}")


def changed(old: Any, new: Any) -> bool:
    """Differ at 4 significant digits, or present on one side only (NaN equals NaN;
    magnitudes below TINY equal 0)."""
    old, new = (0.0 if _finite(v) and abs(v) < TINY else rounded(v) for v in (old, new))
    if _nan(old) and _nan(new):
        return False
    return old != new


def is_config(metric: str, old: Any, new: Any) -> bool:
    """A setting recorded next to the metrics, not a measurement: a non-number on either
    side (`dataset: jsb`, `trained_on`), or a key that names the run's set-up."""
    if any(v is not None and not is_number(v) for v in (old, new)):
        return True
    return metric in CONFIG_KEYS or metric.startswith(CONFIG_PREFIXES)


def fmt(value: Any) -> str:
    """4 significant digits, without the `1.234e+04` form for whole numbers below 10^15."""
    if value is None:
        return "-"
    if not is_number(value):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    value = rounded(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.{SIGNIFICANT}g}"


# ------------------------------------------------------------------ table


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
            reference_for(_side(reference, side), trained_on.get(side)) for side in ("old", "new")
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
    if _finite(old) and _finite(new) and not changed(old, new):
        return "same"
    if not _finite(old) or not _finite(new) or not better:
        return ""
    if better == "closer to test":
        if not _finite(test_old) or not _finite(test_new):
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
    rows = [r for r in rows if _finite(r.get("n_pieces")) and r["n_pieces"] > 0]
    if not rows:
        return pooled
    total = sum(r["n_pieces"] for r in rows)
    return {
        m: sum(r[m] * r["n_pieces"] for r in rows) / total
        for m in MUSIC_METRICS
        if all(_finite(r.get(m)) for r in rows)
    }


# ------------------------------------------------------------------ header


def header(comparison: Comparison) -> list[str]:
    """Warnings that the revisions measured different things: params.yaml's corpora, prepare
    params, profile or seed, the prepared data's corpora and test pieces (reference.json),
    the corpora each model says it trained on; and metrics files DVC could not read."""
    lines = [f"compare {comparison.a_rev} -> {comparison.b_rev}"]
    warnings = params_warnings(comparison.params) + data_warnings(comparison.diff)
    lines += [
        textwrap.fill(f"WARNING: {w}", WIDTH, subsequent_indent="  ", break_on_hyphens=False)
        for w in warnings
    ]
    if not warnings:
        lines.append("same corpora, prepare params, profile and seed in both")
    return lines + error_lines(comparison.errors)


def error_lines(errors: dict[str, dict[str, list[str]]]) -> list[str]:
    """Declared metrics files DVC found no data in, one line per reason, a folder's files
    counted rather than listed (a new stage's 13 outputs not yet produced are one fact)."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for path, why in sorted(errors.items()):
        reason = "; ".join(f"{kind} in {', '.join(revs)}" for kind, revs in why.items())
        by_reason[reason].append(path)
    return [f"no metrics ({reason}): {_paths(paths)}" for reason, paths in by_reason.items()]


def params_warnings(params: dict[str, tuple[Any, Any]]) -> list[str]:
    """One line per params.yaml section in HEADER_PARAMS that differs; for profiles, only the
    caps of the profile in use (`profiles.full` may change while `quick` runs)."""
    in_use = {v for v in params.get("profile", (None, None)) if v}
    groups: dict[str, list[str]] = defaultdict(list)
    changes = {key: pair for key, pair in sorted(params.items()) if pair[0] != pair[1]}
    groups["sources"] = corpus_changes(
        {
            key.removeprefix("sources."): pair
            for key, pair in changes.items()
            if key.startswith("sources.")
        }
    )
    for key, (old, new) in changes.items():
        top = key.split(".")[0]
        if top == "profiles" and key.split(".")[1:2] and key.split(".")[1] in in_use:
            top = "profile"
        if top in HEADER_PARAMS and top != "sources":
            groups[top].append(_param_change(key, old, new))
    return [
        f"the revisions differ in {HEADER_PARAMS[top]}: {'; '.join(groups[top])}"
        for top in HEADER_PARAMS
        if groups.get(top)
    ]


def corpus_changes(changes: dict[str, tuple[Any, Any]]) -> list[str]:
    """`sources` changes per corpus: 'maestro added (limit=0)', 'essen removed', or the
    setting that changed ('bach_chorales.limit 0 -> 50'); keys are 'corpus.setting'."""
    by_corpus: dict[str, dict[str, tuple[Any, Any]]] = defaultdict(dict)
    for key, pair in changes.items():
        corpus, _, setting = key.partition(".")
        by_corpus[corpus][setting] = pair
    out = []
    for corpus, settings in by_corpus.items():
        if all(old is None for old, _ in settings.values()):
            out.append(f"{corpus} added ({_settings(settings, 1)})")
        elif all(new is None for _, new in settings.values()):
            out.append(f"{corpus} removed (was {_settings(settings, 0)})")
        else:
            out += [_param_change(f"{corpus}.{s}", *pair) for s, pair in settings.items()]
    return out


def data_warnings(diff: dict[str, dict[str, dict]]) -> list[str]:
    """What the metrics files themselves record about the data: the prepared corpora and
    test pieces (reference.json), and each model's `trained_on`, grouped by change."""
    lines = []
    reference = reference_diff(diff)
    old, new = (_corpora(_side(reference, side)) for side in ("old", "new"))
    if old and new and old != new:
        lines.append(
            f"the prepared data's corpora differ: {', '.join(sorted(old))} -> "
            f"{', '.join(sorted(new))}"
        )
    pieces = reference.get(f"{TEST_ROW}.n_pieces") or {}
    if (
        _finite(pieces.get("old"))
        and _finite(pieces.get("new"))
        and changed(pieces["old"], pieces["new"])
    ):
        lines.append(
            f"the test data differ: {fmt(pieces['old'])} -> {fmt(pieces['new'])} test pieces"
        )
    moves: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path, metrics in sorted(diff.items()):
        trained = metrics.get("trained_on") or {}
        if trained.get("old") and trained.get("new") and trained["old"] != trained["new"]:
            moves[(trained["old"], trained["new"])].append(section_name(path))
    for (was, now), models in moves.items():
        lines.append(f"models trained on other corpora: {', '.join(models)}: {was} -> {now}")
    return lines


# ------------------------------------------------------------------ rendering


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


def section_name(path: str) -> str:
    """A model's name (its metrics file), 'reference' or a benchmark run's name."""
    return PurePosixPath(path).stem


def _note(row: Values) -> str:
    """'change, direction, verdict' as far as each is known; 'new' / 'gone' for one side."""
    if row["old"] is None:
        return "new"
    if row["new"] is None:
        return "gone"
    if not changed(row["old"], row["new"]):
        return "unchanged"
    change = row["change"]  # NaN when one side is NaN (a model without a loss): not shown
    parts = [f"{rounded(change):+.{SIGNIFICANT}g}"] if _finite(change) else []
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


def _param_change(key: str, old: Any, new: Any) -> str:
    if old is None:
        return f"{key} added ({new})"
    if new is None:
        return f"{key} removed (was {old})"
    return f"{key} {old} -> {new}"


def _paths(paths: list[str]) -> str:
    """Paths listed, or 'folder/*.json (N files)' for a folder holding more than two."""
    by_folder: dict[str, list[str]] = defaultdict(list)
    for path in paths:
        by_folder[str(PurePosixPath(path).parent)].append(path)
    return ", ".join(
        f"{folder}/*{PurePosixPath(group[0]).suffix} ({len(group)} files)"
        if len(group) > 2
        else ", ".join(group)
        for folder, group in by_folder.items()
    )


def _settings(settings: dict[str, tuple[Any, Any]], side: int) -> str:
    return ", ".join(
        f"{key}={pair[side]}" if key else str(pair[side]) for key, pair in settings.items()
    )


def _corpora(reference: Values) -> set[str]:
    return {
        key.split(".")[1]
        for key, v in reference.items()
        if key.startswith("by_source.") and v is not None
    }


def _side(metrics: dict[str, dict], side: str) -> Values:
    return {key: v.get(side) for key, v in metrics.items()}


def _finite(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


def _nan(value: Any) -> bool:
    return is_number(value) and math.isnan(value)
