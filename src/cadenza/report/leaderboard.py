"""The leaderboard: one row per model, sorted by the mean rank over the sample columns that
every model has (Yang & Lerch OA; the registry's headline music metrics, EB, UPC, QN and TD,
as distances from the test data, since for music metrics "better" means closer to real
music, as in `cadenza compare`). NLL and accuracy are shown but not ranked: a token NLL
depends on the tokenisation. The other music metrics follow as distances too."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cadenza.config import Params
from cadenza.metrics.registry import MUSIC, TEST_ROW, direction, headline
from cadenza.report.document import Section, num

HEADLINE = headline()  # the music metrics in the leaderboard, by their abbreviation
NLL, UNIT, ACCURACY, OA, RANK, NOTE = (
    "test NLL (nats)",
    "unit",
    "accuracy",
    "Y&L OA",
    "mean rank",
    "note",
)


LEADERBOARD_TEXT = (
    "One row per model, best first. `Δ EB`, `Δ UPC`, `Δ QN` and `Δ TD` are the "
    "absolute distances of the samples' empty-bar ratio, used pitch classes per bar, "
    "qualified-note ratio and tonal distance from the test data's (lower is better: a model "
    "should sound like the music it learned from); `Y&L OA` is the mean Yang & Lerch overlap "
    "with the test set (higher is better). `mean rank` averages the model's rank (1 = best, "
    "ties share the best rank, a missing value ranks last) over those five columns, which "
    "every model has. Test NLL (per token or per frame, see `unit`) and accuracy are not in "
    "the rank: an NLL depends on the tokenisation, so it compares models only within one "
    "scheme. {mark} marks the best value of each column (NLL and accuracy: among models of "
    "the same unit)."
)


def likelihood(values: dict) -> tuple[float, float, str]:
    """(NLL, accuracy, unit): token models report `nll`/`accuracy`, piano-roll models
    `frame_nll`/`frame_accuracy`; one column each keeps the leaderboard narrow."""
    if "nll" in values or "accuracy" in values:
        return num(values.get("nll")), num(values.get("accuracy")), "token"
    if "frame_nll" in values or "frame_accuracy" in values:
        return num(values.get("frame_nll")), num(values.get("frame_accuracy")), "frame"
    return math.nan, math.nan, ""


def own_test_row(values: dict, reference: dict) -> dict:
    """The test reference a model is read against: the pooled test row, or, for a model
    that trained on some sources only (`prefer_sources`), the test row of those sources
    (their per-source rows averaged, weighted by test pieces), so that a folk model is
    compared with folk songs, not with MAESTRO."""
    pooled = reference.get(TEST_ROW) or {}
    by_source = reference.get("by_source") or {}
    trained_on = [s for s in str(values.get("trained_on", "")).split(", ") if s]
    if not trained_on or set(trained_on) >= set(by_source):
        return pooled
    rows = [(by_source.get(s) or {}).get(TEST_ROW) or {} for s in trained_on]
    rows = [r for r in rows if num(r.get("n_pieces")) > 0]
    if not rows:
        return pooled
    weights = np.array([num(r["n_pieces"]) for r in rows])
    return {m: float(np.average([num(r.get(m)) for r in rows], weights=weights)) for m in MUSIC} | {
        "n_pieces": float(weights.sum())
    }


def distance(values: dict, test: dict, metric: str) -> float:
    """|model - test reference|: for music metrics, closer to real music is better."""
    return abs(num(values.get(metric)) - num(test.get(metric)))


def training_note(name: str, values: dict, params: Params | None) -> str:
    """Says when a model did not train on what it asked for (no preferred source present),
    so its row is not read as a model of its preferred corpus."""
    if values.get("prefer_fallback"):
        wanted = params.models[name].prefer_sources if params and name in params.models else []
        which = f" ({', '.join(wanted)})" if wanted else ""
        return f"trained on all sources: none of its preferred sources{which} present"
    wanted = params.models[name].prefer_sources if params and name in params.models else []
    if wanted and values.get("trained_on"):  # read against those sources' test data
        return f"trained on its preferred sources only: {values['trained_on']}"
    return ""


def leaderboard(
    models: dict[str, dict], reference: dict, params: Params | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Models as rows, sorted by mean rank (best first); and the mask of best cells."""
    rows = {}
    for name, values in models.items():
        nll, acc, unit = likelihood(values)
        oa = ((values.get("yang_lerch") or {}).get("mean") or {}).get("oa")
        test = own_test_row(values, reference)
        rows[name] = {
            NLL: nll,
            UNIT: unit,
            ACCURACY: acc,
            OA: num(oa),
            **{_delta(abbr): distance(values, test, metric) for metric, abbr in HEADLINE.items()},
            NOTE: training_note(name, values, params),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    ranked = {OA: _lower("yl_mean_oa"), **{_delta(a): True for a in HEADLINE.values()}}
    ranks = pd.DataFrame(
        {
            c: table[c].rank(method="min", ascending=lower, na_option="bottom")
            for c, lower in ranked.items()
        }
    )
    table.insert(len(table.columns) - 1, RANK, ranks.mean(axis=1))
    table = table.sort_index().sort_values(RANK, kind="stable").rename_axis("model")
    best = pd.DataFrame(False, index=table.index, columns=table.columns)
    for column, lower in {**ranked, RANK: True}.items():
        best[column] = best_cells(table[column], lower)
    for column, lower in ((NLL, _lower("nll")), (ACCURACY, _lower("accuracy"))):
        for _, group in table.groupby(UNIT):
            best.loc[group.index, column] = best_cells(group[column], lower)
    if not table[NOTE].astype(bool).any():
        table, best = table.drop(columns=NOTE), best.drop(columns=NOTE)
    return table, best


def distance_table(
    models: dict[str, dict], reference: dict, order: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The other music metrics as |model - test| (models in leaderboard order), best marked."""
    metrics = [m for m in MUSIC if m not in HEADLINE]
    table = pd.DataFrame(
        {
            m: [distance(models[n], own_test_row(models[n], reference), m) for n in order]
            for m in metrics
        },
        index=order,
        dtype=float,
    )
    best = pd.DataFrame({m: best_cells(table[m], lower=True) for m in metrics})
    return table, best


def best_cells(values: pd.Series, lower: bool) -> pd.Series:
    """True at the best value (ties all marked); none marked where fewer than two distinct
    values exist, since "best" of one, or of all-equal values, says nothing."""
    finite = pd.to_numeric(values, errors="coerce").dropna()
    if finite.nunique() < 2:
        return pd.Series(False, index=values.index)
    target = finite.min() if lower else finite.max()
    return values.index.to_series().map(
        lambda i: i in finite.index and math.isclose(finite[i], target, abs_tol=1e-12)
    )


def leaderboard_sections(
    models: dict[str, dict], reference: dict, params: Params | None
) -> list[Section]:
    if not models:
        return [Section("Leaderboard", "No model metrics yet.")]
    text = LEADERBOARD_TEXT.format(mark="`**bold**` (in the HTML, ★)")
    if TEST_ROW not in reference:
        text += " No reference metrics (`reference.json`): no distances, ranks from OA only."
    table, best = leaderboard(models, reference, params)
    detail, detail_best = distance_table(models, reference, list(table.index))
    return [
        Section("Leaderboard", text, table, best=best),
        Section(
            "The other music metrics: distance from the test data",
            "The absolute difference model - test per metric, models in leaderboard "
            "order; lower is closer.",
            detail,
            best=detail_best,
            level=3,
        ),
    ]


def _delta(abbr: str) -> str:
    return f"Δ {abbr}"  # no "|": it would split a markdown table's cell


def _lower(metric: str) -> bool:
    """True where the registry says lower is better (a rank's `ascending`)."""
    return direction(metric) == "lower"
