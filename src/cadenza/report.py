"""`report`: provenance, leaderboard, metrics, charts and samples -> `reports/report.md` and
`reports/index.html`.

The report is for people, so it opens with what it was made from and what won. Both files
hold the same sections:

1. Provenance: the git commit, the corpora (description, license, citation, files, as the
   prepare stage recorded them in `_meta.json`), the pieces per source and split, what
   prepare rejected or filtered out, the prepare params and the training profile's caps.
2. The leaderboard: one row per model, sorted by the mean rank over the sample columns that
   every model has (Yang & Lerch OA; EB, UPC, QN and TD as distances from the test data,
   since for music metrics "better" means closer to real music, as in `cadenza compare`).
   NLL and accuracy are shown but not ranked: a token NLL depends on the tokenisation.
3. Per source: the reference rows of each corpus, and each multi-source model's figures
   per corpus; models that fell back to every source say so in the leaderboard.
4. The full metric tables (models as rows, the reference rows first), Yang & Lerch per
   feature, horizontal bar charts (models named on the y axis, reference rows as lines),
   one loss panel per model, t-SNE maps, the listening test, and a piano roll of every
   sample and real excerpt linked to its MIDI file and audio clip (or one line saying why
   there is no audio).

The HTML references only local files (the PNGs, audio and MIDI beside it), so it opens offline.
`reports/metrics.csv` keeps one row per reference row and model (index column `column`):
`dvc plots` charts it.
"""

from __future__ import annotations

import dataclasses
import html
import logging
import math
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from cadenza.audio import INSTALL_HINT, read_status
from cadenza.config import Params
from cadenza.evaluate import MUSIC_METRICS, REFERENCE_ROWS
from cadenza.io import atomic_path, read_json
from cadenza.listening import REAL, power_analysis, power_text, results_table
from cadenza.metrics.yang_lerch import FEATURES
from cadenza.plotting import plt
from cadenza.prepare.parse import RejectedPiece, parse_midi
from cadenza.prepare.shards import SPLITS, read_pieces
from cadenza.representations.rolls import notes_to_roll

log = logging.getLogger(__name__)

REFERENCE = "reference"
TEST_ROW = "test"
LIKELIHOOD = ["valid_loss", "nll", "perplexity", "accuracy", "frame_nll", "frame_accuracy"]
YANG_LERCH = ["yl_mean_oa", "yl_mean_kl"]
# the music metrics in the leaderboard; the rest of MUSIC_METRICS go to the detail table
HEADLINE = {
    "empty_bar_ratio": "EB",
    "used_pitch_classes": "UPC",
    "qualified_note_ratio": "QN",
    "tonal_distance": "TD",
}
NLL, UNIT, ACCURACY, OA, RANK, NOTE = (
    "test NLL (nats)",
    "unit",
    "accuracy",
    "Y&L OA",
    "mean rank",
    "note",
)
# column groups of the full tables: each fits a page; metrics not listed land in "other"
METRIC_GROUPS = [
    ("MuseGAN", ["n_pieces", *HEADLINE]),
    (
        "pitch (MusPy)",
        [
            "pitch_range",
            "n_pitches_used",
            "n_pitch_classes_used",
            "pitch_in_scale_rate",
            "scale_consistency",
            "pitch_entropy",
            "pitch_class_entropy",
        ],
    ),
    (
        "rhythm and polyphony (MusPy)",
        ["polyphony", "polyphony_rate", "empty_beat_rate", "groove_consistency"],
    ),
    ("likelihood and Yang & Lerch", [*LIKELIHOOD, *YANG_LERCH]),
]
INTRO = (
    "Music metrics are means over pieces, on a 24-steps-per-beat grid (definitions and "
    "citations in the README). The reference rows are the training data, the test "
    "data, and the test data with the accompaniment's bars shuffled against the melody "
    "(MuseGAN's check: tonal distance must rise). Likelihood metrics are teacher-forced on "
    "the test split. `yl_mean_oa` / `yl_mean_kl` are the mean Yang & Lerch overlap area "
    "(1 = as close to the test set as it is to itself) and KL divergence over 11 "
    "features."
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


@dataclass
class Figure:
    png: Path
    caption: str
    link: Path | None = None  # e.g. the sample's MIDI file
    audio: Path | None = None  # the sample's rendered clip


@dataclass
class Section:
    title: str
    text: str = ""
    table: pd.DataFrame | None = None
    figures: list[Figure] = field(default_factory=list)
    items: list[str] = field(default_factory=list)  # a bullet list after the text
    best: pd.DataFrame | None = None  # True where a `table` cell is its column's best
    level: int = 2  # heading level: 3 for the tables under one topic


def build_report(
    metrics_dir: Path,
    train_logs: Path,
    generated: Path,
    out_md: Path,
    out_html: Path,
    out_csv: Path,
    plots: Path,
    *,
    audio: Path | None = None,
    excerpts: Path | None = None,
    embeddings: Path | None = None,
    listening: Path | None = None,
    prepared: Path | None = None,
    params: Params | None = None,
) -> None:
    """All sections. `prepared` (the prepare stage's folder) and `params` give the
    provenance and the preferred sources; they, `audio`, `excerpts`, `embeddings` and
    `listening` are optional (a missing one gives a line saying what is missing)."""
    plots.mkdir(parents=True, exist_ok=True)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    table = metrics_table(metrics_dir)
    with atomic_path(out_csv) as tmp:  # one row per model or reference row: `dvc plots`
        table.rename_axis("column").to_csv(tmp)
    reference = read_reference(metrics_dir)
    model_metrics = read_models(metrics_dir)
    models = list(model_metrics)
    # DVC runs every stage at the project root
    sections = provenance_sections(prepared, params, git_commit(Path.cwd()))
    sections += leaderboard_sections(model_metrics, reference, params)
    sections += source_sections(model_metrics, reference)
    sections.append(Section("Metrics", INTRO))
    sections += [
        Section(f"Metrics: {title}", table=part, level=3) for title, part in column_groups(table)
    ]
    sections += yang_lerch_sections(model_metrics)
    sections.append(
        Section(
            "Metric charts",
            figures=[
                Figure(
                    plot_metric_bars(table, plots / "metrics.png"),
                    "each metric: models as bars, the reference rows as vertical lines",
                )
            ],
        )
    )
    loss_png = plot_losses(train_logs, models, plots / "loss.png")
    if loss_png:
        sections.append(
            Section(
                "Loss curves",
                figures=[
                    Figure(loss_png, "train and validation loss per epoch, one panel per model")
                ],
            )
        )
    if embeddings is not None:
        sections.append(embeddings_section(embeddings))
    sections.append(listening_section(listening))
    if audio is not None:
        sections.append(Section("Audio", audio_note(audio, [*models, REAL])))
    if excerpts is not None:
        sections.append(
            Section(
                "Real test excerpts",
                "Cut to the samples' clip length; hear these beside the samples.",
                figures=_sample_figures(excerpts, REAL, audio, plots),
            )
        )
    for model in models:
        figures = _sample_figures(generated / model, model, audio, plots)
        sections.append(
            Section(f"Samples: {model}", "" if figures else "No samples.", figures=figures)
        )
    _write(out_md, render_markdown(sections, out_md))
    _write(out_html, render_html(sections, out_html))
    log.info("report -> %s, %s, %s", out_md, out_html, out_csv)


# --------------------------------------------------------------------------- provenance


CODE_PATHS = ("src", "pipeline", "dvc.yaml", "params.yaml")


def git_commit(folder: Path) -> str:
    """`git rev-parse --short HEAD`, plus "-dirty" when the project's code or config under
    `folder` differs from it (`src/`, `pipeline/`, `dvc.yaml`, `params.yaml`; not the
    outputs this very `dvc repro` rewrites); "unknown" outside git or without git. Never
    raises: a report must not fail over its own label."""

    def git(*args: str) -> subprocess.CompletedProcess | None:
        try:
            return subprocess.run(
                ["git", "-C", str(folder), *args],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None

    head = git("rev-parse", "--short", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        return "unknown"
    status = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS)
    if status is None or status.returncode != 0:
        return f"{head.stdout.strip()} (work tree state unknown)"
    return head.stdout.strip() + ("-dirty" if status.stdout.strip() else "")


def read_meta(prepared: Path) -> dict:
    """`_meta.json` of the prepared data; {} where there is none (an older or absent run)."""
    path = prepared / "_meta.json"
    return read_json(path) if path.exists() else {}


def provenance_sections(prepared: Path | None, params: Params | None, commit: str) -> list[Section]:
    """What the report was made from: the commit, the corpora, the piece counts and the
    settings that shaped the data and the training."""
    meta = read_meta(prepared) if prepared is not None else {}
    items = [f"Commit: `{commit}`", training_line(params)]
    if meta.get("encoder"):
        items.append("Prepare params: " + _pairs(meta["encoder"]))
    if meta.get("libraries"):
        items.append("Libraries: " + _pairs(meta["libraries"]))
    if prepared is None or not meta:
        text = (
            "No prepared data was given (`--prepared`), so the corpora and piece counts "
            "are unknown."
            if prepared is None
            else f"No `{prepared}/_meta.json`: the corpora and piece counts are unknown."
        )
        return [Section("What this report was made from", text, items=items)]
    sections = [
        Section("What this report was made from", items=items),
        Section("Corpora", items=corpus_lines(meta), level=3),
    ]
    counts = piece_counts(prepared, meta)
    sections.append(Section("Pieces per source and split", counts_text(meta), counts, level=3))
    return sections


def training_line(params: Params | None) -> str:
    """The profile and every cap it sets (all of them: a capped run's figures, e.g. an NLL
    over part of the test split, are not a full run's)."""
    if params is None:
        return "Training profile: unknown (no params file)."
    caps = dataclasses.asdict(params.profiles[params.profile])
    return f"Training profile `{params.profile}`: {_pairs(caps)} (0 = no cap), for every model."


def corpus_lines(meta: dict) -> list[str]:
    """One line per corpus: description (it names the version), license, citation, files.
    Falls back to the bare names where prepare recorded no registry entries."""
    corpora = meta.get("corpora") or {}
    names = list(meta.get("sources") or corpora)
    names += [n for n in corpora if n not in names]
    return [corpus_line(name, corpora.get(name)) for name in names]


def corpus_line(name: str, entry: dict | None) -> str:
    if not entry:
        return (
            f"{name} (its registry entry was not recorded in `_meta.json`; re-run "
            "prepare to get its version, license and citation here)"
        )
    files = ", ".join(_file_label(f) for f in entry.get("files") or []) or "none listed"
    return (
        f"{entry.get('name', name)}: {entry.get('description', '?')}. "
        f"License: {entry.get('license', '?')}. Cite: {entry.get('citation', '?')}. "
        f"Files: {files}."
    )


def _file_label(f: dict) -> str:
    sha = f.get("sha256") or ""
    where = f" from {f['url']}" if f.get("url") else ""
    return f"{f.get('name', '?')}{where}" + (f" (sha256 {sha[:12]}…)" if sha else "")


def piece_counts(prepared: Path, meta: dict) -> pd.DataFrame | None:
    """Pieces kept per source and split, and files rejected or filtered out per source
    (`rejects.parquet`: stage "filter" = filtered out, any other stage = rejected)."""
    if not (prepared / "pieces.parquet").exists():
        return None
    pieces = read_pieces(prepared)
    kept = pieces.groupby(["source", "split"]).size().unstack("split", fill_value=0)
    kept = kept.reindex(columns=list(SPLITS), fill_value=0)
    kept["total"] = kept.sum(axis=1)
    rejects_path = prepared / "rejects.parquet"
    rejects = (
        pd.read_parquet(rejects_path)
        if rejects_path.exists()
        else pd.DataFrame(columns=["source", "stage"])
    )
    kept = kept.reindex(kept.index.union(pd.Index(rejects.source.unique())), fill_value=0)
    filtered = rejects.stage == "filter"
    kept["rejected"] = rejects[~filtered].groupby("source").size()
    kept["filtered_out"] = rejects[filtered].groupby("source").size()
    order = [s for s in meta.get("sources") or [] if s in kept.index]
    kept = kept.reindex([*order, *(s for s in kept.index if s not in order)])
    kept = kept.fillna(0).astype(int)
    kept.loc["all sources"] = kept.sum()
    return kept.rename_axis("source")


def counts_text(meta: dict) -> str:
    """`_meta.json` "counts": the totals prepare logged, notes included."""
    counts = meta.get("counts") or {}
    splits = [
        f"{s} {counts[s]['pieces']} pieces / {counts[s]['notes']} notes"
        for s in SPLITS
        if isinstance(counts.get(s), dict)
    ]
    if not splits:
        return ""
    return (
        f"Prepare kept {'; '.join(splits)}; it rejected {counts.get('rejected', 0)} "
        f"file(s) (unreadable or too short) and filtered out "
        f"{counts.get('filtered_out', 0)} (e.g. no piano track)."
    )


def _pairs(values: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in values.items())


# --------------------------------------------------------------------------- leaderboard


def read_reference(metrics_dir: Path) -> dict:
    path = metrics_dir / f"{REFERENCE}.json"
    return read_json(path) if path.exists() else {}


def read_models(metrics_dir: Path) -> dict[str, dict]:
    """Every model's metrics JSON by model name, sorted by name."""
    return {p.stem: read_json(p) for p in sorted(metrics_dir.glob("*.json")) if p.stem != REFERENCE}


def likelihood(values: dict) -> tuple[float, float, str]:
    """(NLL, accuracy, unit): token models report `nll`/`accuracy`, piano-roll models
    `frame_nll`/`frame_accuracy`; one column each keeps the leaderboard narrow."""
    if "nll" in values or "accuracy" in values:
        return _num(values.get("nll")), _num(values.get("accuracy")), "token"
    if "frame_nll" in values or "frame_accuracy" in values:
        return _num(values.get("frame_nll")), _num(values.get("frame_accuracy")), "frame"
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
    rows = [r for r in rows if _num(r.get("n_pieces")) > 0]
    if not rows:
        return pooled
    weights = np.array([_num(r["n_pieces"]) for r in rows])
    return {
        m: float(np.average([_num(r.get(m)) for r in rows], weights=weights)) for m in MUSIC_METRICS
    } | {"n_pieces": float(weights.sum())}


def distance(values: dict, test: dict, metric: str) -> float:
    """|model - test reference|: for music metrics, closer to real music is better."""
    return abs(_num(values.get(metric)) - _num(test.get(metric)))


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
            OA: _num(oa),
            **{_delta(abbr): distance(values, test, metric) for metric, abbr in HEADLINE.items()},
            NOTE: training_note(name, values, params),
        }
    table = pd.DataFrame.from_dict(rows, orient="index")
    ranked = {OA: False, **{_delta(a): True for a in HEADLINE.values()}}  # True: lower wins
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
    for column, lower in ((NLL, True), (ACCURACY, False)):
        for _, group in table.groupby(UNIT):
            best.loc[group.index, column] = best_cells(group[column], lower)
    if not table[NOTE].astype(bool).any():
        table, best = table.drop(columns=NOTE), best.drop(columns=NOTE)
    return table, best


def distance_table(
    models: dict[str, dict], reference: dict, order: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The other music metrics as |model - test| (models in leaderboard order), best marked."""
    metrics = [m for m in MUSIC_METRICS if m not in HEADLINE]
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


# --------------------------------------------------------------------------- per source


def source_reference_table(reference: dict) -> pd.DataFrame | None:
    """Reference rows pooled and per corpus (`reference.json` "by_source"): each corpus has
    its own style, so a pooled test row can hide that a model matches only one of them."""
    by_source = reference.get("by_source") or {}
    if not by_source:
        return None
    rows = {f"all sources: {r}": reference[r] for r in REFERENCE_ROWS if r in reference}
    for source, split_rows in by_source.items():
        split_rows = split_rows or {}  # JSON keys come sorted: put train before test
        order = [
            *(r for r in REFERENCE_ROWS if r in split_rows),
            *(r for r in split_rows if r not in REFERENCE_ROWS),
        ]
        rows.update({f"{source}: {r}": split_rows[r] for r in order})
    frame = pd.DataFrame.from_dict(rows, orient="index")
    columns = [c for c in ["n_pieces", *MUSIC_METRICS] if c in frame.columns]
    return frame[columns].apply(pd.to_numeric, errors="coerce")


def model_source_table(values: dict) -> pd.DataFrame:
    """One model per corpus: its test pieces, its test NLL and accuracy on them, and the
    Yang & Lerch overlap of its samples with that corpus's test pieces."""
    by_source = values.get("by_source") or {}
    pooled = {
        **values,
        "n_test_pieces": sum(_num(m.get("n_test_pieces")) for m in by_source.values()),
        "yl_mean_oa": ((values.get("yang_lerch") or {}).get("mean") or {}).get("oa"),
    }
    rows = {}
    for source, m in {"all sources": pooled, **by_source}.items():
        nll, acc, unit = likelihood(m)
        rows[source] = {
            "test pieces": _num(m.get("n_test_pieces")),
            NLL: nll,
            UNIT: unit,
            ACCURACY: acc,
            OA: _num(m.get("yl_mean_oa")),
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("source")


def source_sections(models: dict[str, dict], reference: dict) -> list[Section]:
    """Reference rows per corpus, then a table per model that was tested on several."""
    table = source_reference_table(reference)
    multi = [name for name, values in models.items() if values.get("by_source")]
    if table is None and not multi:
        return []
    sections = [
        Section(
            "Per source",
            "The reference rows pooled over all sources and per "
            "source; then, for each model tested on more than one source, its "
            "figures per source (Y&L OA: against that source's test pieces).",
        )
    ]
    if table is not None:
        sections += [
            Section(f"Reference rows per source: {title}", table=part, level=3)
            for title, part in column_groups(table)
        ]
    sections += [
        Section(f"Per source: {name}", table=model_source_table(models[name]), level=3)
        for name in multi
    ]
    return sections


# --------------------------------------------------------------------------- full tables


def metrics_table(metrics_dir: Path) -> pd.DataFrame:
    """Rows `reference:train`, `reference:test`, `reference:test_shuffled_bars`, then one
    per model; metrics as columns (also `reports/metrics.csv`, which `dvc plots` reads)."""
    rows: dict[str, dict] = {}
    reference = read_reference(metrics_dir)
    for row in REFERENCE_ROWS:
        if row in reference:
            rows[f"{REFERENCE}:{row}"] = reference[row]
    for name, values in read_models(metrics_dir).items():
        mean = (values.get("yang_lerch") or {}).get("mean") or {}
        rows[name] = {**values, "yl_mean_oa": mean.get("oa"), "yl_mean_kl": mean.get("kl")}
    table = pd.DataFrame.from_dict(rows, orient="index")
    columns = [
        c for c in MUSIC_METRICS + LIKELIHOOD + YANG_LERCH + ["n_pieces"] if c in table.columns
    ]
    return table.reindex(columns=columns).apply(pd.to_numeric, errors="coerce")


def column_groups(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The table cut into METRIC_GROUPS' column groups (all-empty columns dropped), so that
    each part fits the page's width."""
    listed = {c for _, columns in METRIC_GROUPS for c in columns}
    groups = [*METRIC_GROUPS, ("other", [c for c in table.columns if c not in listed])]
    parts = []
    for title, columns in groups:
        part = table[[c for c in columns if c in table.columns]].dropna(axis=1, how="all")
        if len(part.columns) and len(part):
            parts.append((title, part))
    return parts


def yang_lerch_sections(models: dict[str, dict]) -> list[Section]:
    """Per feature OA and KL, one table each, models as rows."""
    per_model = {m: v.get("yang_lerch") or {} for m, v in models.items()}
    per_model = {m: yl for m, yl in per_model.items() if yl}
    if not per_model:
        return []
    sections = [
        Section(
            "Closeness to real music (Yang & Lerch 2018)",
            "Per feature: overlap area (OA, higher is closer) and KL divergence (lower is "
            "closer) between the test set's intra-set distances and the samples-to-test "
            "distances; test excerpts are cut to the samples' median length.",
        )
    ]
    for stat, name in (("oa", "overlap area (OA)"), ("kl", "KL divergence")):
        table = pd.DataFrame.from_dict(
            {
                m: {f: (yl[f] or {}).get(stat) for f in [*FEATURES, "mean"] if f in yl}
                for m, yl in per_model.items()
            },
            orient="index",
        ).apply(pd.to_numeric, errors="coerce")
        sections.append(Section(f"Yang & Lerch: {name}", table=table, level=3))
    return sections


# --------------------------------------------------------------------------- other sections
def _sample_figures(midi_dir: Path, name: str, audio: Path | None, plots: Path) -> list[Figure]:
    """A piano roll per MIDI file, linked to the MIDI and, where rendered, its audio clip."""
    clips = (
        {
            v["midi"]: audio / name / clip
            for clip, v in read_status(audio / name).get("clips", {}).items()
        }
        if audio is not None
        else {}
    )
    return [
        Figure(png, f"{name}: {midi.name}", midi, clips.get(midi.name))
        for midi in sorted(midi_dir.glob("*.mid"))
        if (png := plot_roll(midi, plots / f"{name}_{midi.stem}.png", f"{name}: {midi.name}"))
    ]


def audio_note(audio: Path, names: list[str]) -> str:
    """One line: how the clips were made, or why there are none (then the MIDI is linked)."""
    statuses = [read_status(audio / n) for n in names]
    missing = [s["unavailable"] for s in statuses if s.get("unavailable")]
    if missing:
        return (
            f"No audio: {missing[0]}. The MIDI files are linked under each piece instead "
            f"(`{INSTALL_HINT}`, then `.venv/bin/dvc repro -f render report`, renders them)."
        )
    done = next((s for s in statuses if s.get("soundfont")), {})
    n = sum(len(s.get("clips", {})) for s in statuses)
    return (
        f"{n} clips: every sample and real excerpt cut (or padded) to "
        f"{done.get('clip_seconds', 0):g} s, rendered with FluidSynth and "
        f"{Path(done.get('soundfont', '?')).name} at {done.get('sample_rate', 0)} Hz; a "
        "player is under each piano roll."
    )


def embeddings_section(folder: Path) -> Section:
    """Paper 003's figs. 6 and 8: t-SNE maps of the learned embeddings."""
    maps = read_json(folder / "maps.json") if (folder / "maps.json").exists() else {}
    figures = [
        Figure(folder / png, f"{model}: t-SNE of the learned embeddings")
        for model, png in maps.items()
        if png.endswith(".png")
    ]
    without = [m for m, png in maps.items() if not png.endswith(".png")]
    text = (
        "Circles are note-on tokens (for grid schemes: pitch or chord tokens), crosses "
        "note-off tokens, coloured by pitch from blue (low) to red (high); grey dots are "
        "rests, time shifts, velocities and special tokens, as in paper 003's figures 6 and "
        "8." + (f" No map (no per-symbol embedding): {', '.join(without)}." if without else "")
    )
    return Section("Embedding maps (t-SNE)", text, figures=figures)


def listening_section(result_path: Path | None) -> Section:
    """The blind listening test's table when one was analysed; the power analysis always."""
    how = (
        "Run one with `.venv/bin/cadenza listening-test make --n 12`, hand out the folder, "
        "then `.venv/bin/cadenza listening-test analyze answers/*.json` and "
        "`.venv/bin/dvc repro report` (README, section Listening)."
    )
    result = read_json(result_path) if result_path is not None and result_path.exists() else {}
    if not result.get("n_answers"):  # absent, or the committed placeholder (a DVC dep)
        return Section(
            "Listening test",
            f"No listening test analysed yet. {how} {power_text(power_analysis())}",
        )
    text = (
        f"{result['n_listeners']} listener(s), {result['n_answers']} rating(s) on seed "
        "003's scale (1 = completely random noise, 5 = musically plausible, 10 = composed "
        "by a novice composer); `yes_*` is the share of yes on paper 004's questions; "
        f"`diff_vs_real` is the mean rating minus that of the real excerpts "
        f"(`{result['real']}`), with two-sided Welch t-test and Mann-Whitney p-values. "
        f"{power_text(result['power'])}"
    )
    return Section("Listening test", text, results_table(result))


# --------------------------------------------------------------------------- charts

REFERENCE_LINES = {
    "train": ("0.45", "--"),
    "test": ("black", "-"),
    "test_shuffled_bars": ("0.45", ":"),
}


def plot_metric_bars(table: pd.DataFrame, out: Path) -> Path:
    """One panel per metric: a horizontal bar per model, named in full on the y axis, and
    the reference rows as vertical lines; panels grow with the number of models so that
    every name stays readable."""
    is_ref = table.index.str.startswith(f"{REFERENCE}:")
    refs, models = table[is_ref], table[~is_ref]
    metrics = [m for m in table.columns if m != "n_pieces" and table[m].notna().any()]
    n_cols = 3
    n_rows = max(-(-len(metrics) // n_cols), 1)
    panel_height = 1.0 + 0.26 * max(len(models), 1)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(5.5 * n_cols, panel_height * n_rows),
        squeeze=False,
        layout="constrained",
    )
    y = np.arange(len(models))
    for ax, metric in zip(axes.flat, metrics, strict=False):
        values = models[metric].to_numpy(dtype=float)
        ax.barh(y, np.nan_to_num(values), color="C0")
        for i in np.flatnonzero(np.isnan(values)):
            ax.text(0, i, " n/a", va="center", fontsize=8, color="0.4")
        for row, value in refs[metric].items():
            color, style = REFERENCE_LINES.get(row.split(":", 1)[1], ("0.6", "-."))
            if np.isfinite(value):
                ax.axvline(value, color=color, linestyle=style, linewidth=1.2)
        ax.set_yticks(y, list(models.index), fontsize=8)
        ax.set_ylim(len(models) - 0.5, -0.5)  # first model at the top
        ax.set_title(metric, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
    for ax in axes.flat[len(metrics) :]:
        ax.axis("off")
    shown = [r.split(":", 1)[1] for r in refs.index]
    if shown:
        handles = [
            Line2D(
                [],
                [],
                color=REFERENCE_LINES.get(r, ("0.6", "-."))[0],
                linestyle=REFERENCE_LINES.get(r, ("0.6", "-."))[1],
                label=f"reference: {r}",
            )
            for r in shown
        ]
        fig.legend(handles=handles, loc="outside upper center", ncol=len(handles), fontsize=9)
    return _save(fig, out)


def plot_losses(train_logs: Path, models: list[str], out: Path) -> Path | None:
    """One small panel per model (28 curves in one axes cannot be told apart), with one
    legend above the grid."""
    logs = {
        m: pd.read_csv(train_logs / f"{m}.csv")
        for m in models
        if (train_logs / f"{m}.csv").exists()
    }
    logs = {m: frame for m, frame in logs.items() if len(frame)}
    if not logs:
        return None
    n_cols = min(4, len(logs))
    n_rows = -(-len(logs) // n_cols)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(3.6 * n_cols, 2.6 * n_rows + 0.4),
        squeeze=False,
        layout="constrained",
    )
    for ax, (model, frame) in zip(axes.flat, logs.items(), strict=False):
        ax.plot(frame.epoch, frame.train_loss, color="C0", marker=".")
        ax.plot(frame.epoch, frame.valid_loss, color="C1", linestyle="--", marker=".")
        ax.set_title(model, fontsize=10)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("epoch", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("loss (nats)", fontsize=8)
    for ax in axes.flat[len(logs) :]:
        ax.axis("off")
    fig.legend(
        handles=[
            Line2D([], [], color="C0", marker=".", label="train"),
            Line2D([], [], color="C1", linestyle="--", marker=".", label="valid"),
        ],
        loc="outside upper center",
        ncol=2,
        fontsize=9,
    )
    return _save(fig, out)


def plot_roll(midi: Path, out: Path, title: str, steps_per_beat: int = 4) -> Path | None:
    try:
        notes = parse_midi(midi, "all").notes
    except RejectedPiece as err:
        log.warning("%s: no piano roll (%s)", midi, err)
        return None
    roll = notes_to_roll(
        notes["onset_beats"], notes["duration_beats"], notes["pitch"], steps_per_beat
    )
    low, high = int(notes["pitch"].min()) - 2, int(notes["pitch"].max()) + 3
    fig, ax = plt.subplots(figsize=(9, 2.6))
    ax.imshow(
        roll[:, low:high].T,
        aspect="auto",
        origin="lower",
        cmap="Greys",
        interpolation="nearest",
        extent=(0, len(roll) / steps_per_beat, low, high),
    )
    ax.set(xlabel="beat", ylabel="MIDI pitch", title=title)
    return _save(fig, out)


# --------------------------------------------------------------------------- rendering


def render_markdown(sections: list[Section], out: Path) -> str:
    lines = ["# Cadenza report", ""]
    for s in sections:
        lines += [f"{'#' * s.level} {s.title}", ""]
        if s.text:
            lines += [s.text, ""]
        if s.items:
            lines += [f"- {item}" for item in s.items] + [""]
        if s.table is not None and s.best is not None:
            cells = _cells(s.table, s.best, lambda text: f"**{text}**")
            lines += [cells.to_markdown(disable_numparse=True, stralign="right"), ""]
        elif s.table is not None:
            shown = s.table.astype(object).where(s.table.notna(), None)  # NaN -> "-"
            lines += [shown.to_markdown(floatfmt=".3f", missingval="-"), ""]
        for f in s.figures:
            lines += [f"![{f.caption}]({_rel(f.png, out)})", ""]
            if f.link:
                lines += [f"MIDI: [{f.link.name}]({_rel(f.link, out)})", ""]
            if f.audio:
                lines += [f"Audio: [{f.audio.name}]({_rel(f.audio, out)})", ""]
    return "\n".join(lines)


def render_html(sections: list[Section], out: Path) -> str:
    body = ["<h1>Cadenza report</h1>"]
    for s in sections:
        body.append(f"<h{s.level}>{html.escape(s.title)}</h{s.level}>")
        if s.text:
            body.append(f"<p>{html.escape(s.text)}</p>")
        if s.items:
            body.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in s.items) + "</ul>")
        if s.table is not None and s.best is not None:
            body.append(_cells(s.table, s.best, lambda text: f"{text} ★").to_html(border=0))
        elif s.table is not None:
            body.append(s.table.to_html(border=0, float_format="{:.3f}".format, na_rep="-"))
        for f in s.figures:
            link = (
                f' <a href="{html.escape(_rel(f.link, out))}">{html.escape(f.link.name)}</a>'
                if f.link
                else ""
            )
            if f.audio:
                link += (
                    f'<br><audio controls preload="none" '
                    f'src="{html.escape(_rel(f.audio, out))}"></audio>'
                )
            body.append(
                f'<figure><img src="{html.escape(_rel(f.png, out))}" '
                f'alt="{html.escape(f.caption)}"><figcaption>'
                f"{html.escape(f.caption)}{link}</figcaption></figure>"
            )
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px}td,th{padding:2px 8px;"
        "text-align:right}tr:nth-child(even){background:#f3f3f3}img{max-width:100%}"
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Cadenza report</title>"
        f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def _cells(table: pd.DataFrame, best: pd.DataFrame, mark: Callable[[str], str]) -> pd.DataFrame:
    """The table as text (3 decimals, "-" for missing), best cells passed through `mark`."""
    text = table.astype(object).map(_fmt)
    marked = best.reindex(index=table.index, columns=table.columns, fill_value=False)
    return text.where(~marked.astype(bool), text.map(mark))


def _fmt(value: object) -> str:
    if isinstance(value, str):
        return value
    number = _num(value)
    return "-" if math.isnan(number) else f"{number:.3f}"


def _num(value: object) -> float:
    """A metric value as float; NaN for None, strings and other non-numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return math.nan
    return float(value)


def _delta(abbr: str) -> str:
    return f"Δ {abbr}"  # no "|": it would split a markdown table's cell


def _save(fig: plt.Figure, out: Path) -> Path:
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out


def _write(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _rel(path: Path, doc: Path) -> str:
    return os.path.relpath(path, doc.parent)
