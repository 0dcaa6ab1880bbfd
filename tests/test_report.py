"""The report opens with what it was made from and what won: provenance, leaderboard,
per-source rows. The inputs are small hand-made files whose every figure is known, so each
assertion below pins an exact value (a distance, a rank, a count) that a wrong join,
sort or sign would change."""

from __future__ import annotations

import contextlib
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from cadenza.config import Params, from_dict
from cadenza.io import write_json
from cadenza.metrics.registry import MUSIC
from cadenza.report import build_report
from cadenza.report.leaderboard import own_test_row, training_note
from cadenza.report.provenance import git_commit

# every music metric of the test reference is 1.0 but these, so distances are easy by hand
TEST_ROW = {
    **dict.fromkeys(MUSIC, 1.0),
    "empty_bar_ratio": 0.0,
    "used_pitch_classes": 7.0,
    "qualified_note_ratio": 1.0,
    "tonal_distance": 1.4,
    "n_pieces": 3,
}
CORPORA = {
    "bach_chorales": {
        "name": "bach_chorales",
        "layout": "music21_chorales",
        "description": "Bach's 371 four-part chorales (music21 corpus v9)",
        "license": "BSD-3-Clause (music21)",
        "citation": "Cuthbert & Ariza 2010",
        "files": [],
    },
    "essen": {
        "name": "essen",
        "layout": "essen_kern",
        "description": "Essen Folksong Collection (Humdrum kern, 2011 edition)",
        "license": "research use",
        "citation": "Schaffrath 1995",
        "files": [
            {
                "url": "https://example.org/essen.zip",
                "name": "essen.zip",
                "sha256": "ab" * 32,
                "size": 123,
            }
        ],
    },
}


def _metrics(folder: Path) -> None:
    """Reference rows (pooled and per source) and three models: a token model tested on two
    sources, a frame model, and a token model that fell back to every source."""
    write_json(
        folder / "reference.json",
        {
            "train": {**TEST_ROW, "used_pitch_classes": 6.9, "n_pieces": 5},
            "test": TEST_ROW,
            "test_shuffled_bars": {**TEST_ROW, "tonal_distance": 1.5},
            "by_source": {
                "bach_chorales": {
                    "train": {**TEST_ROW, "used_pitch_classes": 7.7, "n_pieces": 3},
                    "test": {**TEST_ROW, "used_pitch_classes": 7.2, "n_pieces": 2},
                },
                "essen": {
                    "train": {**TEST_ROW, "used_pitch_classes": 5.1, "n_pieces": 2},
                    "test": {**TEST_ROW, "used_pitch_classes": 5.0, "n_pieces": 1},
                },
            },
        },
    )
    write_json(
        folder / "a.json",
        {
            **TEST_ROW,
            "empty_bar_ratio": 0.05,
            "used_pitch_classes": 8.0,
            "qualified_note_ratio": 0.98,
            "tonal_distance": 1.3,
            "n_pieces": 4,
            "nll": 1.5,
            "accuracy": 0.6,
            "yang_lerch": {"mean": {"oa": 0.7, "kl": 0.5}},
            "trained_on": "bach_chorales, essen",
            "by_source": {
                "bach_chorales": {
                    "n_test_pieces": 2,
                    "nll": 1.4,
                    "accuracy": 0.62,
                    "yl_mean_oa": 0.75,
                },
                "essen": {"n_test_pieces": 1, "nll": 1.7, "accuracy": 0.55, "yl_mean_oa": 0.6},
            },
        },
    )
    write_json(
        folder / "b.json",
        {
            **TEST_ROW,
            "empty_bar_ratio": 0.0,
            "used_pitch_classes": 10.0,
            "qualified_note_ratio": 1.0,
            "tonal_distance": 0.8,
            "n_pieces": 4,
            "frame_nll": 10.0,
            "frame_accuracy": 0.1,
            "yang_lerch": {"mean": {"oa": 0.5}},
        },
    )
    folk = {
        **TEST_ROW,
        "empty_bar_ratio": 0.2,
        "used_pitch_classes": 6.5,
        "qualified_note_ratio": 0.95,
        "n_pieces": 4,
        "nll": 2.0,
        "accuracy": 0.5,
        "yang_lerch": {"mean": {"oa": 0.4}},
        "trained_on": "bach_chorales, essen",
        "prefer_fallback": 1,
    }
    del folk["tonal_distance"]  # a melody has no accompaniment: TD is undefined
    write_json(folder / "folk_lstm.json", folk)


def _prepared(folder: Path) -> None:
    """pieces, rejects and _meta.json as prepare writes them (lpd_cleansed: all filtered)."""
    folder.mkdir(parents=True)
    splits = {
        "bach_chorales": ["train"] * 3 + ["valid"] + ["test"] * 2,
        "essen": ["train", "train", "test"],
    }
    pd.DataFrame(
        [
            {"piece_id": f"{s}/{i}", "source": s, "split": split}
            for s, values in splits.items()
            for i, split in enumerate(values)
        ]
    ).to_parquet(folder / "pieces.parquet")
    pd.DataFrame(
        [
            ("bach_chorales", "bach_chorales/9", "x.mid", "parse", "bad"),
            ("essen", "essen/7", "y.krn", "filter", "no notes"),
            ("essen", "essen/8", "z.krn", "filter", "no notes"),
            ("lpd_cleansed", "lpd_cleansed/1", "w.npz", "filter", "no piano"),
        ],
        columns=["source", "piece_id", "file", "stage", "reason"],
    ).to_parquet(folder / "rejects.parquet")
    write_json(
        folder / "_meta.json",
        {
            "schema_version": 1,
            "sources": ["bach_chorales", "essen", "lpd_cleansed"],
            "corpora": CORPORA,
            "encoder": {
                "steps_per_beat": 4,
                "valid_fraction": 0.1,
                "test_fraction": 0.1,
                "transpose": True,
                "min_notes": 8,
            },
            "libraries": {"symusic": "0.5.0"},
            "counts": {
                "train": {"pieces": 5, "notes": 500},
                "valid": {"pieces": 1, "notes": 90},
                "test": {"pieces": 3, "notes": 280},
                "rejected": 1,
                "filtered_out": 3,
            },
        },
    )


def _params() -> Params:
    return from_dict(
        Params,
        {
            "seed": 0,
            "sources": {"bach_chorales": {}},
            "models": {
                "folk_lstm": {
                    "family": "token_lm",
                    "tokens": {"scheme": "melody", "steps_per_beat": 4},
                    "prefer_sources": ["essen"],
                }
            },
            "profile": "quick",
            "profiles": {"quick": {"max_epochs": 6, "max_batches": 40}},
        },
        "",
    )


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """The report built once over the fake inputs; returns its folder."""
    root = tmp_path_factory.mktemp("report")
    _metrics(root / "metrics")
    _prepared(root / "prepared")
    (root / "train").mkdir()
    for model in ("a", "b"):
        pd.DataFrame({"epoch": [1, 2], "train_loss": [2.0, 1.5], "valid_loss": [2.1, 1.7]}).to_csv(
            root / "train" / f"{model}.csv", index=False
        )
    (root / "gen").mkdir()
    out = root / "reports"
    with contextlib.chdir(root):  # a stage runs at its project's root; this one has no git
        build_report(
            root / "metrics",
            root / "train",
            root / "gen",
            out / "report.md",
            out / "index.html",
            out / "metrics.csv",
            out / "plots",
            prepared=root / "prepared",
            params=_params(),
        )
    return out


def _section(md: str, title: str) -> str:
    return md.split(f" {title}\n")[1].split("\n## ")[0].split("\n### ")[0]


def _rows(section: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    """A markdown table's header and rows by their first cell, in order."""
    header, _, *lines = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|")
    ]
    return header, {cells[0]: dict(zip(header[1:], cells[1:], strict=True)) for cells in lines}


def test_provenance_comes_first_with_corpora_counts_and_commit(report):
    md = (report / "report.md").read_text()
    top = md.split("## Leaderboard")[0]
    assert "Commit: `unknown`" in top  # tmp is outside any git work tree
    assert "Training profile `quick`: max_epochs=6, max_batches=40" in top
    assert "Prepare params: min_notes=8, steps_per_beat=4, test_fraction=0.1" in top
    assert (
        "bach_chorales: Bach's 371 four-part chorales (music21 corpus v9). License: "
        "BSD-3-Clause (music21). Cite: Cuthbert & Ariza 2010."
    ) in top
    assert "essen.zip from https://example.org/essen.zip (sha256 abababababab…)" in top
    assert "lpd_cleansed (its registry entry was not recorded" in top
    assert "train 5 pieces / 500 notes" in top
    header, rows = _rows(_section(md, "Pieces per source and split"))
    assert header == ["source", "train", "valid", "test", "total", "rejected", "filtered_out"]
    assert list(rows) == ["bach_chorales", "essen", "lpd_cleansed", "all sources"]
    assert list(rows["bach_chorales"].values()) == ["3", "1", "2", "6", "1", "0"]
    assert list(rows["essen"].values()) == ["2", "0", "1", "3", "0", "2"]
    assert list(rows["lpd_cleansed"].values()) == ["0", "0", "0", "0", "0", "1"]
    assert list(rows["all sources"].values()) == ["5", "1", "3", "9", "1", "3"]

    page = re.sub(r"\s+", "", (report / "index.html").read_text())
    head = page.split("<h2>Leaderboard</h2>")[0]
    assert "Commit:`unknown`" in head and "EssenFolksongCollection" in head
    assert (
        "<th>bach_chorales</th><td>3</td><td>1</td><td>2</td><td>6</td><td>1</td><td>0</td>"
    ) in head


def test_leaderboard_ranks_models_as_rows_and_marks_the_best(report):
    md = (report / "report.md").read_text()
    header, rows = _rows(_section(md, "Leaderboard"))
    assert header == [
        "model",
        "test NLL (nats)",
        "unit",
        "accuracy",
        "Y&L OA",
        "Δ EB",
        "Δ UPC",
        "Δ QN",
        "Δ TD",
        "mean rank",
        "note",
    ]
    # ranks (OA, EB, UPC, QN, TD): a 1,2,2,2,1 -> 1.6; b 2,1,3,1,2 -> 1.8; folk 3,3,1,3,3
    assert list(rows) == ["a", "b", "folk_lstm"]
    assert [rows[m]["mean rank"] for m in rows] == ["**1.600**", "1.800", "2.600"]
    a, b, folk = rows["a"], rows["b"], rows["folk_lstm"]
    assert (a["Δ EB"], a["Δ UPC"], a["Δ QN"], a["Δ TD"]) == ("0.050", "1.000", "0.020", "**0.100**")
    assert (b["Δ EB"], b["Δ UPC"], b["Δ TD"]) == ("**0.000**", "3.000", "0.600")
    assert folk["Δ UPC"] == "**0.500**" and folk["Δ TD"] == "-"
    # NLL and accuracy: best among the same unit; one frame model alone is not marked
    assert (a["test NLL (nats)"], a["unit"], a["accuracy"]) == ("**1.500**", "token", "**0.600**")
    assert (b["test NLL (nats)"], b["unit"], b["accuracy"]) == ("10.000", "frame", "0.100")
    assert folk["test NLL (nats)"] == "2.000" and a["Y&L OA"] == "**0.700**"
    assert folk["note"] == ("trained on all sources: none of its preferred sources (essen) present")
    assert a["note"] == ""
    page = (report / "index.html").read_text()
    assert "1.600 ★" in page and "trained on all sources: none of its preferred" in page


def test_full_tables_put_reference_rows_first_and_csv_keeps_its_shape(report):
    md = (report / "report.md").read_text()
    header, rows = _rows(_section(md, "Metrics: MuseGAN"))
    assert header[1:] == [
        "n_pieces",
        "empty_bar_ratio",
        "used_pitch_classes",
        "qualified_note_ratio",
        "tonal_distance",
    ]
    assert list(rows) == [
        "reference:train",
        "reference:test",
        "reference:test_shuffled_bars",
        "a",
        "b",
        "folk_lstm",
    ]
    assert rows["reference:test_shuffled_bars"]["tonal_distance"] == "1.500"
    _, detail = _rows(_section(md, "The other music metrics: distance from the test data"))
    assert list(detail) == ["a", "b", "folk_lstm"]
    csv = pd.read_csv(report / "metrics.csv")
    assert csv.columns[0] == "column"
    assert list(csv.column) == [
        "reference:train",
        "reference:test",
        "reference:test_shuffled_bars",
        "a",
        "b",
        "folk_lstm",
    ]
    assert csv.set_index("column").at["a", "yl_mean_oa"] == pytest.approx(0.7)
    for png in ("metrics.png", "loss.png"):
        assert (report / "plots" / png).stat().st_size > 0


def test_per_source_reference_rows_and_model_table(report):
    md = (report / "report.md").read_text()
    _, refs = _rows(_section(md, "Reference rows per source: MuseGAN"))
    assert list(refs) == [
        "all sources: train",
        "all sources: test",
        "all sources: test_shuffled_bars",
        "bach_chorales: train",
        "bach_chorales: test",
        "essen: train",
        "essen: test",
    ]
    assert refs["essen: test"]["used_pitch_classes"] == "5.000"
    assert refs["bach_chorales: train"]["n_pieces"] == "3"
    header, rows = _rows(_section(md, "Per source: a"))
    assert list(rows) == ["all sources", "bach_chorales", "essen"]
    assert [rows[s]["Y&L OA"] for s in rows] == ["0.700", "0.750", "0.600"]
    assert rows["all sources"]["test pieces"] == "3.000"  # 2 + 1
    assert (rows["essen"]["test pieces"], rows["essen"]["test NLL (nats)"]) == ("1.000", "1.700")
    assert "### Per source: b" not in md  # one source only: no table
    assert "<h3>Per source: a</h3>" in (report / "index.html").read_text()


def test_report_without_prepared_data_says_so(tmp_path):
    write_json(tmp_path / "metrics" / "m.json", {"tonal_distance": 1.0, "n_pieces": 2})
    (tmp_path / "train").mkdir()
    (tmp_path / "gen").mkdir()
    out = tmp_path / "reports"
    build_report(
        tmp_path / "metrics",
        tmp_path / "train",
        tmp_path / "gen",
        out / "report.md",
        out / "index.html",
        out / "m.csv",
        out / "plots",
    )
    md = (out / "report.md").read_text()
    assert "No prepared data was given (`--prepared`)" in md
    assert "Training profile: unknown" in md and "Per source" not in md
    assert "No reference metrics (`reference.json`)" in md


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def test_git_commit_is_short_head_plus_dirty(tmp_path):
    assert git_commit(tmp_path) == "unknown"
    assert git_commit(tmp_path / "missing") == "unknown"
    _git(tmp_path, "init", "-q")
    assert git_commit(tmp_path) == "unknown"  # no commit yet
    for name in ("params.yaml", "reports/report.md"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("1")
        _git(tmp_path, "add", name)
    _git(tmp_path, "commit", "-q", "-m", "one")
    head = _git(tmp_path, "rev-parse", "--short", "HEAD")
    (tmp_path / "untracked.txt").write_text("x")  # as `git describe --dirty`: not dirty
    (tmp_path / "reports/report.md").write_text("2")  # an output the repro rewrites
    assert git_commit(tmp_path) == head
    (tmp_path / "params.yaml").write_text("2")
    assert git_commit(tmp_path) == f"{head}-dirty"


def test_training_note_names_the_sources_a_preferring_model_used():
    params = _params()
    assert training_note("folk_lstm", {"trained_on": "essen"}, params) == (
        "trained on its preferred sources only: essen"
    )
    assert training_note("folk_lstm", {"prefer_fallback": 1}, None) == (
        "trained on all sources: none of its preferred sources present"
    )
    assert training_note("a", {"trained_on": "bach_chorales, essen"}, params) == ""


def test_a_model_of_some_sources_is_read_against_their_test_rows():
    upc = {
        "train": {},
        "test": {"used_pitch_classes": 7.0, "n_pieces": 6},
        "by_source": {
            "a": {"test": {"used_pitch_classes": 8.0, "n_pieces": 1}},
            "b": {"test": {"used_pitch_classes": 4.0, "n_pieces": 3}},
            "c": {"test": {"used_pitch_classes": 9.0, "n_pieces": 2}},
        },
    }
    assert own_test_row({}, upc)["used_pitch_classes"] == 7.0
    assert own_test_row({"trained_on": "a, b, c"}, upc)["used_pitch_classes"] == 7.0
    assert own_test_row({"trained_on": "b"}, upc)["used_pitch_classes"] == 4.0
    # a and b, weighted by their test pieces: (8 * 1 + 4 * 3) / 4
    assert own_test_row({"trained_on": "a, b"}, upc)["used_pitch_classes"] == 5.0
