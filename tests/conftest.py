"""Shared fixtures over the harness's toy corpora (`cadenza.testing`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cadenza.testing.corpora import write_corpus


@pytest.fixture
def raw_corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path)


@pytest.fixture(scope="session")
def chorale_pieces(tmp_path_factory: pytest.TempPathFactory) -> list:
    """Ten real Bach chorales from music21's corpus, as notes on the 24-step metric grid."""
    from music21 import corpus

    from cadenza.evaluate import on_grid
    from cadenza.prepare.parse import parse_midi
    from cadenza.sources.music21_convert import convert_all

    out = tmp_path_factory.mktemp("chorales")
    names = sorted({str(p) for p in corpus.getComposer("bach") if p.suffix == ".mxl"})[:10]
    rows = convert_all([(Path(n).stem, n) for n in names], out, 1, "test chorales")
    pieces = []
    for row in rows:
        parsed = parse_midi(out / row["path"], "all")
        n = parsed.notes
        pieces.append(
            on_grid((n["onset_beats"], n["duration_beats"], n["pitch"]), parsed.time_signatures, 24)
        )
    return pieces
