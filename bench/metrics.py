"""Benchmark the metric suite on 10,000 bars of real music; prints time and ratio to muspy.

    python bench/metrics.py                    # MAESTRO v2 from ../shared, else the chorales
    python bench/metrics.py --midi-dir DIR     # any folder of .mid / .midi files

It reads files until it has `--bars` bars (at 24 steps per beat, MuseGAN's grid), then times,
in the same process and on the same pieces:
  * `cadenza all`: every music metric of the registry (`cadenza.metrics.registry`: MuseGAN's EB,
    UPC, QN, TD and the MusPy set), by `cadenza.evaluate.piece_metrics`, plus Yang & Lerch's
    11 features;
  * `cadenza muspy-set`: only the metrics muspy also has, from the notes (no dense roll);
  * `muspy`: muspy 0.5's own functions for those same metrics, on muspy Music objects built
    from the same notes (building them is not timed).
The ratio muspy / cadenza is on identical work.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import muspy
import numpy as np

from cadenza.config import EvaluateParams
from cadenza.evaluate import on_grid, piece_metrics
from cadenza.metrics import muspy_set
from cadenza.metrics.yang_lerch import PieceNotes, feature_matrix
from cadenza.prepare.parse import RejectedPiece, parse_midi
from cadenza.representations.rolls import sounding_counts
from cadenza.testing.checkout import DATASETS, ROOT

DEFAULT_DIRS = [
    DATASETS / "maestro-v2.0.0",
    ROOT / "data" / "raw" / "bach_chorales" / "midi",
]
SPB = 24


def load_pieces(folder: Path, n_bars: int) -> list[PieceNotes]:
    pieces, bars = [], 0
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi")):
        try:
            parsed = parse_midi(path, "piano")
        except RejectedPiece:
            continue
        n = parsed.notes
        piece = on_grid(
            (n["onset_beats"], n["duration_beats"], n["pitch"]), parsed.time_signatures, SPB
        )
        pieces.append(piece)
        bars += len(piece.bar_starts)
        if bars >= n_bars:
            break
    return pieces


def ours_muspy_set(p: PieceNotes) -> list[float]:
    counts = sounding_counts(p.start, p.end, p.pitch)
    return [
        muspy_set.pitch_range(p.pitch),
        muspy_set.n_pitches_used(p.pitch),
        muspy_set.n_pitch_classes_used(p.pitch),
        muspy_set.polyphony(counts),
        muspy_set.polyphony_rate(counts),
        muspy_set.pitch_in_scale_rate(p.pitch),
        muspy_set.scale_consistency(p.pitch),
        muspy_set.pitch_entropy(p.pitch),
        muspy_set.pitch_class_entropy(p.pitch),
        muspy_set.empty_rate(counts, SPB),
        muspy_set.groove_consistency(p.start, p.bar_starts, len(counts)),
    ]


def theirs(music: muspy.Music, steps_per_bar: int) -> list[float]:
    return [
        muspy.pitch_range(music),
        muspy.n_pitches_used(music),
        muspy.n_pitch_classes_used(music),
        muspy.polyphony(music),
        muspy.polyphony_rate(music),
        muspy.pitch_in_scale_rate(music, 0, "major"),
        muspy.scale_consistency(music),
        muspy.pitch_entropy(music),
        muspy.pitch_class_entropy(music),
        muspy.empty_beat_rate(music),
        muspy.groove_consistency(music, steps_per_bar),
    ]


def first_bar(p: PieceNotes) -> int:
    """muspy's groove consistency takes one measure length: the first bar's."""
    return int(np.diff(p.bar_starts)[0]) if len(p.bar_starts) > 1 else 4 * SPB


def to_muspy(p: PieceNotes) -> muspy.Music:
    notes = [
        muspy.Note(time=int(s), pitch=int(q), duration=int(e - s), velocity=64)
        for s, e, q in zip(p.start, p.end, p.pitch, strict=True)
    ]
    return muspy.Music(resolution=SPB, tracks=[muspy.Track(notes=notes)])


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--midi-dir", type=Path)
    parser.add_argument("--bars", type=int, default=10_000)
    args = parser.parse_args()
    folder = args.midi_dir or next((d for d in DEFAULT_DIRS if d.exists()), None)
    if folder is None:
        raise SystemExit("no MIDI folder: pass --midi-dir, or run `make run` first")
    pieces = load_pieces(folder, args.bars)
    n_bars = sum(len(p.bar_starts) for p in pieces)
    n_notes = sum(len(p.pitch) for p in pieces)
    params = EvaluateParams()
    musics = [to_muspy(p) for p in pieces]
    print(
        f"{folder}: {len(pieces)} pieces, {n_bars:,} bars, {n_notes:,} notes at {SPB} "
        f"steps per beat"
    )
    t_all = timed(lambda: ([piece_metrics(p, params) for p in pieces], feature_matrix(pieces)))
    t_set = timed(lambda: [ours_muspy_set(p) for p in pieces])
    t_muspy = timed(lambda: [theirs(m, first_bar(p)) for m, p in zip(musics, pieces, strict=True)])
    print(f"cadenza all metrics      : {t_all:7.2f} s  ({n_bars / t_all:,.0f} bars/s)")
    print(f"cadenza muspy-set metrics: {t_set:7.2f} s")
    print(f"muspy 0.5 same metrics   : {t_muspy:7.2f} s")
    print(f"ratio muspy / cadenza    : {t_muspy / t_set:7.1f}x")
    agree = np.isclose(
        [ours_muspy_set(p)[:9] for p in pieces],
        [theirs(m, first_bar(p))[:9] for m, p in zip(musics, pieces, strict=True)],
        equal_nan=True,
    ).all()
    print(f"the 9 shared definitions agree with muspy on every piece: {bool(agree)}")


if __name__ == "__main__":
    main()
