"""One metric registry (`cadenza.metrics.registry`) that evaluate, compare and report all read.

Checked against the real outputs of the pipeline in the repository (`reports/metrics/*.json`,
`reports/valid/*.json`): every metric they hold is registered, every registered metric
appears there unless its entry says when it does not, and no other module keeps its own list
of metric names (the lists that drifted apart before: `yl_mean_*` in compare, read from no
file)."""

from __future__ import annotations

import ast
import math
from typing import Any

import numpy as np
import pytest

from cadenza.compare.rows import direction
from cadenza.compare.values import CONFIG_KEYS
from cadenza.config import EvaluateParams
from cadenza.evaluate import on_grid, piece_metrics
from cadenza.io import read_json
from cadenza.meter import COMMON_TIME
from cadenza.metrics.registry import (
    METRICS,
    MUSIC,
    REFERENCE,
    REFERENCE_ROWS,
    TABLES,
    headline,
    table_columns,
)
from cadenza.report.leaderboard import HEADLINE
from cadenza.report.tables import N_PIECES, metric_groups, metrics_table
from cadenza.testing.checkout import ROOT

METRICS_DIR = ROOT / "reports" / "metrics"
VALID_DIR = ROOT / "reports" / "valid"
SRC = ROOT / "src" / "cadenza"


def leaves(values: dict, prefix: str = "") -> dict[str, Any]:
    """Flattened `a.b.c` keys of a metrics file, as DVC and compare see them."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out |= leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def model_files() -> dict[str, dict[str, Any]]:
    files = {p.stem: read_json(p) for p in sorted(METRICS_DIR.glob("*.json"))}
    files.pop(REFERENCE)
    return {name: leaves(values) for name, values in files.items()}


def written() -> set[str]:
    """Every metric name (a key's last part) the pipeline's outputs hold: models, the
    reference rows and the valid-split metrics; settings (strings, CONFIG_KEYS) left out."""
    files = [read_json(p) for p in [*METRICS_DIR.glob("*.json"), *VALID_DIR.glob("*.json")]]
    return {
        key.rsplit(".", 1)[-1]
        for values in files
        for key, value in leaves(values).items()
        if isinstance(value, int | float) and key.rsplit(".", 1)[-1] not in CONFIG_KEYS
    }


def test_the_outputs_are_there():
    assert len(model_files()) >= 5 and (METRICS_DIR / f"{REFERENCE}.json").exists()


def test_every_written_metric_is_registered():
    assert written() - set(METRICS) == set()


def test_every_unconditional_metric_is_in_every_models_file():
    for name, values in model_files().items():
        names = {key.rsplit(".", 1)[-1] for key in values}
        missing = [m.name for m in METRICS.values() if not m.condition and m.name not in names]
        assert missing == [], name


def test_every_registered_metric_is_written_or_says_when_it_is_not():
    absent = [m.name for m in METRICS.values() if m.name not in written() and not m.condition]
    assert absent == []


def test_the_reference_rows_hold_every_music_metric():
    reference = read_json(METRICS_DIR / f"{REFERENCE}.json")
    for row in REFERENCE_ROWS:
        assert set(MUSIC) | {N_PIECES} == set(reference[row])


def test_entries_are_complete():
    for metric in METRICS.values():
        assert metric.unit and metric.group in ("music", "likelihood", "yang_lerch", "count")
        assert metric.better in ("lower", "higher", "closer to test", "")
        assert (metric.compute is not None) == (metric.group == "music"), metric.name
        if metric.group in ("music", "yang_lerch"):
            assert metric.citation, metric.name
        assert metric.table in ("", *TABLES)
    # music metrics are judged by their distance from the real test data
    assert all(METRICS[m].better == "closer to test" for m in MUSIC)


def test_evaluate_computes_exactly_the_music_metrics():
    onset = np.array([0, 0, 1, 2, 4.0])
    pitch = np.array([60, 64, 62, 67, 60])
    piece = on_grid((onset, np.ones(5), pitch), COMMON_TIME, 24)
    values = piece_metrics(piece, EvaluateParams())
    assert list(values) == MUSIC
    assert all(isinstance(v, float) and not math.isinf(v) for v in values.values())


@pytest.mark.parametrize("name", sorted(METRICS))
def test_compare_judges_by_the_registry(name):
    better = METRICS[name].better
    assert direction(name) == better
    assert direction(f"by_source.bach_chorales.test.{name}") == better
    assert direction(f"yang_lerch.pitch_range.{name}") == better


def test_compare_has_no_direction_for_unregistered_names():
    assert direction("seconds") == "" and direction("test_nll") == ""


def test_report_columns_come_from_the_registry():
    table = metrics_table(METRICS_DIR)
    assert list(table.columns) == [c for c in [*table_columns(), N_PIECES] if c in table.columns]
    grouped = [c for _, columns in metric_groups() for c in columns]
    assert sorted(grouped) == sorted([*table_columns(), N_PIECES])
    assert (
        HEADLINE
        == headline()
        == {
            "empty_bar_ratio": "EB",
            "used_pitch_classes": "UPC",
            "qualified_note_ratio": "QN",
            "tonal_distance": "TD",
        }
    )


def _name_lists(tree: ast.Module) -> list[int]:
    """Lines of module-level constants holding a list/set/tuple literal, or a dict of string
    constants, that names two or more registered metrics: a second registry in the making."""
    constants = [n.value for n in tree.body if isinstance(n, ast.Assign | ast.AnnAssign)]
    lines = []
    for node in (n for value in constants if value is not None for n in ast.walk(value)):
        if isinstance(node, ast.List | ast.Set | ast.Tuple):
            items = node.elts
        elif isinstance(node, ast.Dict) and all(
            isinstance(v, ast.Constant) and isinstance(v.value, str) for v in node.values
        ):
            items = [k for k in node.keys if k is not None]
        else:
            continue
        named = [i for i in items if isinstance(i, ast.Constant) and i.value in METRICS]
        if len(named) >= 2:
            lines.append(node.lineno)
    return lines


def test_no_module_keeps_its_own_list_of_metric_names():
    found = {
        str(path.relative_to(SRC)): lines
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "registry.py" or path.parent.name != "metrics"
        if (lines := _name_lists(ast.parse(path.read_text())))
    }
    assert found == {}


def _doc_rows() -> dict[str, tuple[str, str, str, str]]:
    """The rows of docs/metrics.md's table of registered metrics: {name: (group, unit, better,
    written for)}, in the doc's order."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    section = text.split("## Every registered metric", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0].startswith("`"):
            rows[cells[0].strip("`")] = (cells[1], cells[2], cells[3], cells[4])
    return rows


def test_the_docs_list_every_metric_with_its_unit():
    """docs/metrics.md states each metric's unit, direction and condition: they must be the
    registry's, so the page cannot drift from what evaluate, compare and report read."""
    expected = {
        m.name: (m.group, m.unit, m.better or "-", m.condition or "every evaluated model")
        for m in METRICS.values()
    }
    rows = _doc_rows()
    assert list(rows) == list(expected)
    assert rows == expected
