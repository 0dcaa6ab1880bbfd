"""The product, small: the whole DAG on real corpora in their official layouts.

Built from ../shared/datasets inside the test: a MAESTRO v2 zip of 9 performances plus a
corrupt file and an LPD-cleansed tarball of 30 npz (both downloaded from a real HTTP server
on 127.0.0.1), and a piano-midi.de folder of 12 pieces as published (`midis/` +
`metadata.csv`). Then `dvc repro` runs fetch -> prepare -> every model of params.yaml ->
reference -> report, with tiny caps, and the test checks what a researcher reads: every
model's metrics, the reference rows per source, the per-source likelihoods, the rejects, the
fallback of a model whose preferred corpus is absent, and the corpora named in the report.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import symusic
import yaml

from cadenza.config import ModelParams, from_dict
from cadenza.generate import counts_in_seconds
from cadenza.meter import main_meter, parse_meter
from cadenza.testing import archives
from cadenza.testing.checkout import SHARED
from cadenza.testing.loopback import Site, serve

from .test_pipeline import MODELS, make_project, run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (SHARED / "datasets").is_dir(),
        reason=f"needs the real corpora in {SHARED / 'datasets'} (absent)",
    ),
]
SOURCES = ("maestro_v2", "lpd_cleansed", "piano_midi_de")
TINY_CAPS = {
    "max_epochs": 1,
    "max_batches": 2,
    "max_valid_units": 2000,
    "max_test_units": 3000,
    "max_generate_length": 32,
}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> object:
    root = tmp_path_factory.mktemp("real")
    project = make_project(root / "project")
    pmd, _ = archives.piano_midi_de_folder(root / "piano-midi.de", n=10)
    site = Site()
    site.files["/maestro-v2.0.0-midi.zip"] = archives.maestro_zip(per_split=3)
    site.files["/lpd_cleansed.tar.gz"] = archives.lpd_tar(30)
    with serve(site):
        params = yaml.safe_load((project / "params.yaml").read_text())
        params["sources"] = {
            "maestro_v2": {"url": site.url("/maestro-v2.0.0-midi.zip")},
            "lpd_cleansed": {"url": site.url("/lpd_cleansed.tar.gz")},
            "piano_midi_de": {"url": str(pmd)},
        }
        params["profiles"]["quick"] = TINY_CAPS
        (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(["dvc", "repro"], project)
    return project


def _metrics(project, name: str) -> dict:
    return json.loads((project / "reports" / "metrics" / f"{name}.json").read_text())


def test_every_source_is_prepared_with_its_rejects(mixed):
    pieces = pd.read_parquet(mixed / "data" / "prepared" / "pieces.parquet")
    counts = pieces.groupby("source").size().to_dict()
    assert counts["maestro_v2"] == 9 and counts["piano_midi_de"] == 12
    assert 15 <= counts["lpd_cleansed"] <= 30  # the files with a piano track
    assert set(pieces[pieces.source == "maestro_v2"].split) == {"train", "valid", "test"}
    rejects = pd.read_parquet(mixed / "data" / "prepared" / "rejects.parquet")
    assert "maestro_v2/2004/corrupt" in set(rejects.piece_id)
    titles = set(pieces[pieces.source == "piano_midi_de"].title)
    assert titles and not any(t.startswith(("alb_", "bach_")) for t in titles)  # metadata


def test_reference_rows_per_source_and_pooled(mixed):
    reference = _metrics(mixed, "reference")
    by_source = reference["by_source"]
    assert set(by_source) == set(SOURCES)
    test_total = sum(by_source[s]["test"]["n_pieces"] for s in SOURCES)
    assert test_total == reference["test"]["n_pieces"]
    for source in SOURCES:
        assert by_source[source]["train"]["n_pieces"] >= 1, source
        assert math.isfinite(by_source[source]["train"]["used_pitch_classes"]), source


def test_every_model_is_trained_and_evaluated_per_source(mixed):
    test_sources = {
        s
        for s, rows in _metrics(mixed, "reference")["by_source"].items()
        if rows["test"]["n_pieces"]
    }
    for model, entry in MODELS.items():
        metrics = _metrics(mixed, model)
        if "tokens" in entry:
            assert math.isfinite(metrics["nll"]) and 0 <= metrics["accuracy"] <= 1, model
        if entry["family"] == "roll_lstm":
            assert math.isfinite(metrics["frame_nll"]), model
        if entry.get("prefer_sources"):  # folk_lstm prefers Essen, which is absent here
            assert metrics["prefer_fallback"] == 1, model
            continue
        assert set(metrics["trained_on"].split(", ")) == set(SOURCES), model
        assert set(metrics["by_source"]) == test_sources, model
        if "tokens" in entry:
            for source, row in metrics["by_source"].items():
                assert math.isfinite(row["nll"]), (model, source)
        samples = list((mixed / "data" / "generated" / model).glob("*.mid"))
        assert len(samples) == 2, model


def test_samples_are_written_in_their_prompt_pieces_meter(mixed):
    """Bars of a sample are as long as its prompt piece's (piano-midi.de has 3/4, 6/8, ...);
    models that count in seconds have no bars and write 4/4."""
    pieces = pd.read_parquet(mixed / "data" / "prepared" / "pieces.parquet")
    pieces = pieces.set_index("piece_id")
    for model, entry in MODELS.items():
        in_seconds = counts_in_seconds(from_dict(ModelParams, entry, f"models.{model}"))
        folder = mixed / "data" / "generated" / model
        for row in pd.read_csv(folder / "samples.csv").itertuples():
            piece = pieces.loc[row.prompt_piece]
            num, den = (
                (4, 4)
                if in_seconds
                else main_meter(parse_meter(piece.time_signatures), piece.duration_beats)
            )
            assert row.time_signature == f"{num}/{den}", (model, row.file)
            written = symusic.Score(folder / row.file).time_signatures  # an empty one too
            assert [(t.time, t.numerator, t.denominator) for t in written] == [(0, num, den)]


def test_report_names_its_corpora_and_the_fallback(mixed):
    for name in ("report.md", "index.html"):
        text = (mixed / "reports" / name).read_text()
        top = text[: len(text) // 3]
        for corpus in ("MAESTRO", "Lakh Pianoroll Dataset", "piano-midi.de"):
            assert corpus in top, (name, corpus)
        assert "none of its preferred sources (essen)" in text, name
    logs = pd.read_csv(mixed / "reports" / "train" / "melody_rnn.csv")
    assert len(logs) == 1 and logs.units_per_s.iloc[0] > 0
