"""The header of `cadenza compare`: warnings that the two revisions did not measure the same
thing (other corpora, prepare params, training profile or seed, other test data, models
trained on other corpora), since then a metric's change is not the model's; and the metrics
files DVC could not read."""

from __future__ import annotations

import textwrap
from collections import defaultdict
from pathlib import PurePosixPath
from typing import Any

from cadenza.compare.read import Comparison
from cadenza.compare.rows import reference_diff, section_name
from cadenza.compare.values import Values, changed, finite, fmt, one_side
from cadenza.metrics.registry import TEST_ROW

# params.yaml sections whose change means the two revisions measured different things
HEADER_PARAMS = {
    "sources": "corpora",
    "prepare": "prepare params",
    "profile": "training profile",
    "seed": "seed",
}
WIDTH = 100  # header warnings wrap here


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
    old, new = (_corpora(one_side(reference, side)) for side in ("old", "new"))
    if old and new and old != new:
        lines.append(
            f"the prepared data's corpora differ: {', '.join(sorted(old))} -> "
            f"{', '.join(sorted(new))}"
        )
    pieces = reference.get(f"{TEST_ROW}.n_pieces") or {}
    if (
        finite(pieces.get("old"))
        and finite(pieces.get("new"))
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
