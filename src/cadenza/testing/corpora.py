"""Tiny real MIDI corpora, written with symusic: a toy source of good and broken files.

Real files, not mocks: prepare parses them with the same C++ parser as a downloaded corpus,
and the broken ones (corrupt, empty, truncated) are rejected the way a real corpus's are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from symusic import core

from cadenza.sources.fetch import write_manifest
from cadenza.sources.registry import Source

TOY_SOURCE = Source(
    name="toy", layout="music21_chorales", description="toy", license="", citation=""
)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by relative path: outputs compared byte for byte."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def write_score(
    path: Path,
    voices: list[list[tuple[float, float, int]]],
    key_sig: tuple[int, int] | None = None,
    tpq: int = 480,
) -> Path:
    """A real MIDI file: one track per voice; notes are (onset_beats, dur_beats, pitch)."""
    # symusic.core's classes: the factories (symusic.Score, ...) build the same, but their
    # results are typed as generic
    score = core.ScoreTick(tpq)
    score.tempos.append(core.TempoTick(0, 120.0))
    score.time_signatures.append(core.TimeSignatureTick(0, 4, 4))
    if key_sig is not None:
        score.key_signatures.append(core.KeySignatureTick(0, key_sig[0], key_sig[1]))
    for i, voice in enumerate(voices):
        track = core.TrackTick(f"voice{i}", 0, False)
        for onset, dur, pitch in voice:
            track.notes.append(core.NoteTick(int(onset * tpq), int(dur * tpq), pitch, 80))
        score.tracks.append(track)
    path.parent.mkdir(parents=True, exist_ok=True)
    score.dump_midi(str(path))
    return path


def chorale_like(rng: np.random.Generator, n_beats: int = 32) -> list[list[tuple]]:
    """Four voices in quarter notes over random I / IV / V / vi chords of C major."""
    chords = [(72, 67, 64, 48), (72, 69, 65, 53), (71, 67, 62, 55), (72, 69, 64, 57)]
    picks = rng.integers(0, len(chords), size=n_beats)
    return [[(float(b), 1.0, chords[c][v]) for b, c in enumerate(picks)] for v in range(4)]


def write_corpus(root: Path) -> Path:
    """root/raw/toy/ with 30 good pieces, plus a corrupt, an empty and a truncated file;
    returns root/raw."""
    rng = np.random.default_rng(0)
    folder = root / "raw" / "toy"
    files = []
    for i in range(30):
        path = write_score(folder / "midi" / f"p{i:02d}.mid", chorale_like(rng), key_sig=(0, 0))
        files.append((f"p{i:02d}", path))
    (folder / "midi" / "corrupt.mid").write_bytes(b"MThd\x00\x00\x00\x06garbage")
    (folder / "midi" / "empty.mid").write_bytes(b"")
    good = (folder / "midi" / "p00.mid").read_bytes()
    (folder / "midi" / "truncated.mid").write_bytes(good[: len(good) // 2])
    for name in ("corrupt", "empty", "truncated"):
        files.append((name, folder / "midi" / f"{name}.mid"))
    rows: list[dict[str, str]] = [
        {
            "piece_id": pid,
            "title": pid,
            "source_path": str(path),
            "format": "midi",
            "path": f"midi/{path.name}",
            "status": "ok",
        }
        for pid, path in files
    ]
    rows.append(
        {
            "piece_id": "bwv277",
            "status": "rejected",
            "reason": "ExpanderException: badly formed repeats",
        }
    )
    write_manifest(folder, rows, TOY_SOURCE)
    return root / "raw"
