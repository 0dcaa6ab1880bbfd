"""Every real source, fetched from a loopback HTTP server in its official layout, prepared.

The archives are built from the real corpora in ../shared/datasets; these tests skip where
that folder is absent (a user's clone).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from cadenza.config import PrepareParams, SourceParams
from cadenza.meter import parse_meter
from cadenza.prepare.shards import read_pieces, read_table
from cadenza.prepare.stage import prepare
from cadenza.sources.download import USER_AGENT, ChecksumError
from cadenza.sources.fetch import fetch_source
from cadenza.testing import archives
from cadenza.testing.checkout import SHARED
from cadenza.testing.loopback import Site, serve

from .test_pipeline import make_project, run

pytestmark = pytest.mark.skipif(
    not (SHARED / "datasets").is_dir(), reason="needs ../shared/datasets (real corpora)"
)


@pytest.fixture(scope="module")
def site():
    site = Site()
    with serve(site):
        params = archives.serve_all(site)
        yield site, params


@pytest.fixture(scope="module")
def repro(site, tmp_path_factory):
    """`dvc repro prepare` over every source at once, in a temporary project."""
    _, sources = site
    project = make_project(tmp_path_factory.mktemp("sources") / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["sources"] = sources
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro", "prepare"], project)
    return project


def _pieces(project, source):
    pieces = read_pieces(project / "data" / "prepared")
    return pieces[pieces.source == source]


def test_every_source_fetches_and_prepares_through_dvc(repro, site):
    _, sources = site
    meta = json.loads((repro / "data" / "prepared" / "_meta.json").read_text())
    assert set(meta["sources"]) == set(sources)
    for name in sources:
        assert len(_pieces(repro, name)) > 0, name
        manifest = pd.read_csv(repro / "data" / "raw" / name / "manifest.csv")
        assert (manifest.status == "ok").any(), name


def test_maestro_keeps_official_split_and_metadata(repro):
    pieces = _pieces(repro, "maestro_v2")
    assert sorted(pieces.split.value_counts().items()) == [("test", 2), ("train", 2), ("valid", 2)]
    notes = read_table(repro / "data" / "prepared", "notes", "train")
    notes = notes[notes.source == "maestro_v2"]
    assert notes.composer.notna().all() and (notes.year.astype(str).astype(int) >= 2004).all()
    assert notes.title.nunique() == 2


def test_corrupt_midi_inside_the_archive_is_quarantined(repro):
    rejects = pd.read_parquet(repro / "data" / "prepared" / "rejects.parquet")
    row = rejects[rejects.piece_id == "maestro_v2/2004/corrupt"].iloc[0]
    assert row.stage == "prepare" and "unreadable MIDI" in row.reason


def test_lpd_keeps_piano_tracks_and_counts_songs_without_piano(repro):
    pieces = _pieces(repro, "lpd_cleansed")
    rejects = pd.read_parquet(repro / "data" / "prepared" / "rejects.parquet")
    no_piano = rejects[(rejects.source == "lpd_cleansed") & (rejects.stage == "filter")]
    assert len(pieces) + len(no_piano) == 6
    meta = json.loads((repro / "data" / "prepared" / "_meta.json").read_text())
    assert meta["counts"]["filtered_out"] == len(no_piano)
    assert pieces.key_method.eq("krumhansl").all()  # no key signature in LPD


def test_piano_midi_de_composer_from_path(repro):
    pieces = _pieces(repro, "piano_midi_de")
    assert len(pieces) == 4 and pieces.composer.nunique() == 2
    manifest = pd.read_csv(repro / "data" / "raw" / "piano_midi_de" / "manifest.csv")
    assert manifest.sha256.str.len().eq(64).all() and (manifest["size"] > 0).all()


def test_essen_subset_is_erk_with_key_and_meter(repro):
    pieces = _pieces(repro, "essen")
    assert len(pieces) == 4
    assert pieces.piece_id.str.startswith("essen/europa/deutschl/erk/").all()
    assert pieces.key_method.eq("key_signature").all()
    assert pieces.time_signatures.map(parse_meter).map(len).gt(0).all()


def test_bl_pickles_keep_their_fixed_splits(repro):
    jsb = _pieces(repro, "bl_jsb")
    assert jsb.split.value_counts().to_dict() == {"train": 229, "valid": 76, "test": 77}
    assert jsb.key_shift.eq(0).all()  # already transposed by the publisher
    nottingham = _pieces(repro, "bl_nottingham")
    assert nottingham.split.value_counts().to_dict() == {"train": 694, "valid": 173, "test": 170}


def test_changing_the_source_list_reruns_only_prepare(repro):
    params = yaml.safe_load((repro / "params.yaml").read_text())
    del params["sources"]["bl_musedata"]
    (repro / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = run(["dvc", "repro", "prepare"], repro)
    ran = {line.split("'")[1] for line in proc.stdout.splitlines() if "Running stage" in line}
    assert ran == {"prepare"}
    assert _pieces(repro, "bl_musedata").empty


def test_checksum_mismatch_stops_fetch(site, tmp_path):
    s, _ = site
    # `maestro` is v3 and its registry checksum is the publisher's: our zip is not that file
    with pytest.raises(ChecksumError, match="expected 58416533"):  # size, then sha256
        fetch_source(
            "maestro",
            tmp_path / "raw",
            tmp_path / "cache",
            SourceParams(url=s.url("/maestro/maestro-v2.0.0-midi.zip")),
        )
    assert not (tmp_path / "raw").exists()
    assert not any((tmp_path / "cache").rglob("*.zip*"))


def test_lpd_without_a_location_says_what_to_do(tmp_path):
    with pytest.raises(RuntimeError, match="set sources.lpd_cleansed.url"):
        fetch_source("lpd_cleansed", tmp_path / "raw", tmp_path / "cache", SourceParams())


def test_lpd_from_a_local_archive(tmp_path):
    archive = tmp_path / "lpd_cleansed.tar.gz"
    archive.write_bytes(archives.lpd_tar(3))
    fetch_source(
        "lpd_cleansed",
        tmp_path / "raw" / "lpd_cleansed",
        tmp_path / "cache",
        SourceParams(url=str(archive)),
    )
    prepare(tmp_path / "raw", ["lpd_cleansed"], tmp_path / "prepared", PrepareParams())
    assert (tmp_path / "prepared" / "pieces.parquet").exists()


def test_crawler_is_polite_and_caches(site, tmp_path):
    s, sources = site
    before = len(s.requests)
    for _ in range(2):
        fetch_source(
            "piano_midi_de",
            tmp_path / "raw",
            tmp_path / "cache",
            SourceParams(url=sources["piano_midi_de"]["url"], delay_s=0.01),
        )
    requests = s.requests[before:]
    assert len(requests) == 1 + 2 + 4  # index, 2 composer pages, 4 files; second run: none
    assert all(not path.startswith("http://elsewhere") for path, _ in requests)
    manifest = pd.read_csv(tmp_path / "raw" / "manifest.csv")
    assert set(manifest.composer) == {"albeniz", "bach"}
    assert USER_AGENT.startswith("cadenza/")


def test_essen_offline_falls_back_to_music21_abc(tmp_path, monkeypatch):
    from cadenza.sources import layouts
    from cadenza.sources.registry import SOURCES

    def unreachable(*args, **kwargs):
        raise RuntimeError("network unreachable")

    monkeypatch.setattr(layouts, "fetch_file", unreachable)  # the network is what's absent
    rows = layouts.essen_kern(
        SOURCES["essen"], SourceParams(limit=3, workers=1), tmp_path / "cache", tmp_path / "out"
    )
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    assert rows[0]["piece_id"].startswith("essenFolksong/")
