"""The metrics files as tables: `metrics_table` (the reference rows, then one row per model;
also `reports/metrics.csv`, which `dvc plots` charts), cut into the registry's column groups,
and Yang & Lerch per feature. Columns and their order come from `cadenza.metrics.registry`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cadenza.io import read_json
from cadenza.metrics.registry import REFERENCE, REFERENCE_ROWS, TABLES, table_columns
from cadenza.metrics.yang_lerch import FEATURES
from cadenza.report.document import Section

N_PIECES = "n_pieces"
INTRO = (
    "Music metrics are means over pieces, on a 24-steps-per-beat grid (definitions and "
    "citations in docs/metrics.md). The reference rows are the training data, the test "
    "data, and the test data with the accompaniment's bars shuffled against the melody "
    "(MuseGAN's check: tonal distance must rise). Likelihood metrics are teacher-forced on "
    "the test split. `yl_mean_oa` / `yl_mean_kl` are the mean Yang & Lerch overlap area "
    "(1 = as close to the test set as it is to itself) and KL divergence over 11 "
    "features."
)


def metric_groups() -> list[tuple[str, list[str]]]:
    """The column groups of the full tables (each fits a page), the registry's tables in
    order; the piece count opens the first, since it says what the means are over."""
    groups = [(title, table_columns(title)) for title in TABLES]
    return [(groups[0][0], [N_PIECES, *groups[0][1]]), *groups[1:]]


def read_reference(metrics_dir: Path) -> dict:
    path = metrics_dir / f"{REFERENCE}.json"
    return read_json(path) if path.exists() else {}


def read_models(metrics_dir: Path) -> dict[str, dict]:
    """Every model's metrics JSON by model name, sorted by name."""
    return {p.stem: read_json(p) for p in sorted(metrics_dir.glob("*.json")) if p.stem != REFERENCE}


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
    columns = [c for c in [*table_columns(), N_PIECES] if c in table.columns]
    return table.reindex(columns=columns).apply(pd.to_numeric, errors="coerce")


def column_groups(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """The table cut into metric_groups()' column groups (all-empty columns dropped), so that
    each part fits the page's width."""
    listed = {c for _, columns in metric_groups() for c in columns}
    groups = [*metric_groups(), ("other", [c for c in table.columns if c not in listed])]
    parts = []
    for title, columns in groups:
        part = table[[c for c in columns if c in table.columns]].dropna(axis=1, how="all")
        if len(part.columns) and len(part):
            parts.append((title, part))
    return parts


def metric_sections(table: pd.DataFrame) -> list[Section]:
    """What the metrics mean, then the full table in its column groups."""
    return [
        Section("Metrics", INTRO),
        *(
            Section(f"Metrics: {title}", table=part, level=3)
            for title, part in column_groups(table)
        ),
    ]


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
