"""`cadenza compare`: the better direction, what counts as a change, and the printed view, on
a real git + DVC repository of three commits (no DVC mocks)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cadenza.cli import app
from cadenza.compare.header import error_lines
from cadenza.compare.render import collapse
from cadenza.compare.rows import compare_table, config_changes, direction, reference_for
from cadenza.compare.values import changed, fmt, is_config

PARAMS = {
    "seed": 0,
    "sources": {"bach_chorales": {"limit": 0}},
    "prepare": {"steps_per_beat": 4, "transpose": True},
    "profile": "quick",
    "profiles": {"quick": {"max_batches": 40}, "full": {"max_batches": 0}},
}
MODEL = {
    "nll": 2.0,
    "accuracy": 0.5,
    "tonal_distance": 1.5,
    "n_pieces": 4,
    "trained_on": "bach_chorales",
    "yang_lerch": {"mean": {"oa": 0.4, "kl": 2.0}},
}
OTHER = {
    "nll": 3.123456789,
    "accuracy": 0.25,
    "tonal_distance": 1.2,
    "n_pieces": 4,
    "trained_on": "bach_chorales",
}
REFERENCE = {
    "test": {"tonal_distance": 1.0, "n_pieces": 36},
    "by_source": {"bach_chorales": {"test": {"tonal_distance": 1.0, "n_pieces": 36}}},
}
BENCH = {
    "dataset": "jsb",
    "model": "roll_lstm",
    "device": "CPU",
    "seed": 0,
    "epochs": 10,
    "params": {"family": "roll_lstm", "train": {"lr": 0.001}},
    "test_nll": 8.1955,
    "history": [{"epoch": 1, "valid_nll": 9.0}],
}


# ------------------------------------------------------------------ rules


def test_compare_marks_the_better_direction():
    assert direction("nll") == "lower" and direction("yang_lerch.mean.oa") == "higher"
    assert direction("test.tonal_distance") == "closer to test" and direction("n_pieces") == ""
    diff = {
        "reports/metrics/reference.json": {"test.tonal_distance": {"old": 1.0, "new": 1.0}},
        "reports/metrics/m.json": {
            "nll": {"old": 2.0, "new": 1.5, "diff": -0.5},
            "accuracy": {"old": 0.5, "new": 0.4, "diff": -0.1},
            "tonal_distance": {"old": 1.5, "new": 1.1, "diff": -0.4},  # closer to 1.0
            "n_pieces": {"old": 4, "new": 5, "diff": 1},
            "polyphony": {"old": 3.0, "new": 3.0000001},  # float noise
            "trained_on": {"old": "a", "new": "a"},
        },
    }
    table = compare_table(diff).set_index("metric")
    assert table.loc["nll", "verdict"] == "better"
    assert table.loc["accuracy", "verdict"] == "worse"
    assert table.loc["tonal_distance", "verdict"] == "better"
    assert table.loc["n_pieces", "verdict"] == ""  # a count has no better direction
    assert table.loc["polyphony", "verdict"] == "same"
    assert "trained_on" not in table.index  # a string is config, not a metric


def test_a_change_is_at_four_significant_digits():
    assert not changed(3.123456789, 3.1234567891) and not changed(math.nan, math.nan)
    assert changed(3.123, 3.124) and changed(1.0, None) and changed(None, 0.0)
    assert not changed(1.8e-19, 9.0e-35)  # both "no overlap"
    assert changed(4, 5) and not changed(4, 4.0)
    assert fmt(0.23406546080964685) == "0.2341" and fmt(206.07686406647124) == "206.1"
    assert fmt(12345.6) == "12350" and fmt(None) == "-" and fmt(4725) == "4725"


def test_config_rows_are_not_metrics():
    assert is_config("dataset", "jsb", "jsb") and is_config("trained_on", None, "a")
    assert is_config("params.train.lr", 0.001, 0.002) and is_config("seed", 0, 0)
    assert not is_config("test_nll", 8.2, None) and not is_config("valid_loss", math.nan, 1.0)
    diff = {
        "b.json": {
            "dataset": {"old": "jsb", "new": "jsb"},
            "model": {"old": "roll_lstm", "new": "roll_nade"},
            "test_nll": {"old": 8.0, "new": 7.0, "diff": -1.0},
        }
    }
    assert list(compare_table(diff).metric) == ["test_nll"]
    assert config_changes(diff) == {"b.json": [("model", "roll_lstm", "roll_nade")]}


def test_a_model_of_some_corpora_is_judged_against_their_test_rows():
    reference = {
        "test.polyphony": 3.0,
        "test.n_pieces": 30,
        "by_source.essen.test.polyphony": 1.0,
        "by_source.essen.test.n_pieces": 10,
        "by_source.maestro.test.polyphony": 4.0,
        "by_source.maestro.test.n_pieces": 20,
    }
    assert reference_for(reference, "essen")["polyphony"] == 1.0
    assert reference_for(reference, "essen, maestro")["polyphony"] == 3.0  # all corpora: pooled
    assert reference_for(reference, None)["polyphony"] == 3.0


# ------------------------------------------------------------------ on a real repository


def _write(root: Path, files: dict[str, dict]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(content) if name.endswith(".yaml") else json.dumps(content)
        path.write_text(text)


def _commit(root: Path, message: str) -> None:
    for cmd in (
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message],
    ):
        subprocess.run(cmd, cwd=root, check=True, capture_output=True)


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    """Three commits: v1; v2 where only chord_lstm's metrics moved (melody_rnn by float
    noise); v3 with another corpus, prepare params and profile, and a benchmark on another
    dataset."""
    from dvc.repo import Repo

    root = tmp_path_factory.mktemp("history")
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    Repo.init(str(root)).close()
    (root / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "params": ["params.yaml"],
                "metrics": ["reports/metrics", "bench/bl/results/jsb_roll_lstm.json"],
            }
        )
    )
    files = {
        "params.yaml": PARAMS,
        "reports/metrics/chord_lstm.json": MODEL,
        "reports/metrics/melody_rnn.json": OTHER,
        "reports/metrics/reference.json": REFERENCE,
        "bench/bl/results/jsb_roll_lstm.json": BENCH,
    }
    _write(root, files)
    _commit(root, "v1")
    _write(
        root,
        {
            "reports/metrics/chord_lstm.json": MODEL
            | {"nll": 1.5, "accuracy": 0.4, "tonal_distance": 1.1},
            "reports/metrics/melody_rnn.json": OTHER | {"nll": 3.1234567891},
        },
    )
    _commit(root, "v2")
    params = PARAMS | {
        "sources": PARAMS["sources"] | {"maestro": {"limit": 50}},
        "prepare": PARAMS["prepare"] | {"steps_per_beat": 2},
        "profile": "full",
    }
    reference = REFERENCE | {
        "by_source": REFERENCE["by_source"]
        | {"maestro": {"test": {"tonal_distance": 2.0, "n_pieces": 5}}}
    }
    _write(
        root,
        {
            "params.yaml": params,
            "reports/metrics/reference.json": reference,
            "reports/metrics/melody_rnn.json": OTHER | {"trained_on": "bach_chorales, maestro"},
            "bench/bl/results/jsb_roll_lstm.json": BENCH | {"dataset": "nottingham"},
        },
    )
    _commit(root, "v3")
    return root


def _compare(root: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["compare", *args, "--project", str(root)])
    assert result.exit_code == 0, result.output
    return result.output


def test_only_the_model_that_changed_is_shown(history):
    out = _compare(history, "HEAD~2", "HEAD~1")
    lines = out.strip().splitlines()
    assert lines[0] == "compare HEAD~2 -> HEAD~1"
    assert "same corpora, prepare params, profile and seed in both" in out
    assert "chord_lstm (reports/metrics/chord_lstm.json): 3 of 6 changed, 2 better, 1 worse" in out
    assert "melody_rnn" not in out and "jsb_roll_lstm" not in out and "reference" not in out
    assert "WARNING" not in out and "nan" not in out
    assert len(lines) <= 9, out
    rows = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert set(rows) == {"nll", "accuracy", "tonal_distance"}
    assert rows["nll"].endswith("2 -> 1.5  (-0.5, lower, better)")
    assert rows["accuracy"].endswith("(-0.1, higher, worse)")
    assert rows["tonal_distance"].endswith("(-0.4, closer to test, better)")
    assert lines[-1] == "3 of 16 metrics changed: 2 better, 1 worse; 13 unchanged hidden (--all)"


def test_all_shows_every_metric_but_no_config(history):
    out = _compare(history, "HEAD~2", "HEAD~1", "--all")
    assert "melody_rnn (reports/metrics/melody_rnn.json): 0 of 4 changed" in out
    assert "3.123 -> 3.123" in out and "test_nll" in out and "yang_lerch.mean.oa" in out
    shown = {line.split()[0] for line in out.splitlines() if line.startswith("  ")}
    assert not shown & {"dataset", "model", "device", "params.train.lr", "seed", "trained_on"}
    assert "nan" not in out and "epochs 10 -> 10 (unchanged)" in " ".join(out.split())


def test_header_warns_of_other_corpora_prepare_and_profile(history):
    out = _compare(history, "HEAD~1", "HEAD")
    assert "WARNING: the revisions differ in corpora: maestro added (limit=50)" in out
    assert "WARNING: the revisions differ in prepare params: prepare.steps_per_beat 4 -> 2" in out
    assert "WARNING: the revisions differ in training profile: profile quick -> full" in out
    assert (
        "WARNING: the prepared data's corpora differ: bach_chorales -> bach_chorales, maestro"
    ) in out
    assert (
        "WARNING: models trained on other corpora: melody_rnn: bach_chorales -> "
        "bach_chorales, maestro"
    ) in out
    # the benchmark's dataset is a setting of its section, not a metric row with a nan change
    assert "jsb_roll_lstm (bench/bl/results/jsb_roll_lstm.json): 0 of 2 changed" in out
    assert "  dataset  jsb -> nottingham  (setting)" in out
    assert "by_source.maestro.test.n_pieces" in out and "nan" not in out


def test_many_rows_of_a_new_corpus_are_one_line():
    rows = [
        {"metric": f"by_source.maestro.test.{m}", "old": None, "new": 1.0}
        for m in ("polyphony", "pitch_range", "n_pieces")
    ]
    rows.append({"metric": "by_source.essen.test.polyphony", "old": None, "new": 2.0})
    collapsed = collapse(rows)
    assert [r["metric"] for r in collapsed] == [
        "by_source.maestro.test.*",
        "by_source.essen.test.polyphony",
    ]
    assert collapsed[0]["count"] == 3


def test_missing_metrics_files_are_counted_per_folder():
    errors = {f"reports/valid/m{i}.json": {"missing": ["workspace"]} for i in range(5)}
    errors["b/x.json"] = {"missing": ["HEAD", "workspace"]}
    assert error_lines(errors) == [
        "no metrics (missing in HEAD, workspace): b/x.json",
        "no metrics (missing in workspace): reports/valid/*.json (5 files)",
    ]


def test_an_unknown_revision_is_one_line_and_exit_2(history):
    result = CliRunner().invoke(app, ["compare", "nosuch", "HEAD", "--project", str(history)])
    assert result.exit_code == 2
    assert "error: unknown Git revision 'nosuch'" in result.output
