"""Per source: the reference rows of each corpus, and each multi-source model's figures per
corpus, since MAESTRO and LPD differ more from each other than a model differs from either."""

from __future__ import annotations

import pandas as pd

from cadenza.metrics.registry import MUSIC, REFERENCE_ROWS
from cadenza.report.document import Section, num
from cadenza.report.leaderboard import ACCURACY, NLL, OA, UNIT, likelihood
from cadenza.report.tables import N_PIECES, column_groups


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
    columns = [c for c in [N_PIECES, *MUSIC] if c in frame.columns]
    return frame[columns].apply(pd.to_numeric, errors="coerce")


def model_source_table(values: dict) -> pd.DataFrame:
    """One model per corpus: its test pieces, its test NLL and accuracy on them, and the
    Yang & Lerch overlap of its samples with that corpus's test pieces."""
    by_source = values.get("by_source") or {}
    pooled = {
        **values,
        "n_test_pieces": sum(num(m.get("n_test_pieces")) for m in by_source.values()),
        "yl_mean_oa": ((values.get("yang_lerch") or {}).get("mean") or {}).get("oa"),
    }
    rows = {}
    for source, m in {"all sources": pooled, **by_source}.items():
        nll, acc, unit = likelihood(m)
        rows[source] = {
            "test pieces": num(m.get("n_test_pieces")),
            NLL: nll,
            UNIT: unit,
            ACCURACY: acc,
            OA: num(m.get("yl_mean_oa")),
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
