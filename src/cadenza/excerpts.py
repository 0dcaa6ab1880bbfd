"""`excerpts`: a few real test-set pieces, cut to the samples' clip length, as MIDI.

Why: a listener (or a reader of the report) can only judge a sample beside real music heard
the same way: the same synthesizer, tempo and length. These excerpts are the "real" clips of
the report and of the blind listening test. Pieces are drawn with a seeded RNG, so the same
params give the same excerpts.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cadenza.data import piece_notes
from cadenza.io import atomic_dir
from cadenza.representations.midi import write_midi

log = logging.getLogger(__name__)


def write_excerpts(
    prepared: Path, out: Path, n: int, seconds: float, bpm: float, seed: int
) -> pd.DataFrame:
    """The first `seconds` (at `bpm`) of `n` test pieces -> `out/excerpt_<i>.mid`, plus
    `out/excerpts.csv` naming the piece each came from."""
    pieces = piece_notes(prepared, "test")
    if not pieces:
        raise RuntimeError(f"{prepared}: the test split is empty; no excerpts to cut")
    ids = sorted(pieces)
    rng = np.random.default_rng(seed)
    chosen = [ids[i] for i in rng.choice(len(ids), size=min(n, len(ids)), replace=False)]
    end_beats = seconds * bpm / 60.0
    rows = []
    with atomic_dir(out) as tmp:
        for i, piece_id in enumerate(chosen):
            onset, duration, pitch = pieces[piece_id]
            keep = onset < end_beats
            onset, pitch = onset[keep], pitch[keep]
            duration = np.minimum(duration[keep], end_beats - onset)
            name = f"excerpt_{i:03d}.mid"
            write_midi((onset, duration, pitch), tmp / name, bpm)
            rows.append({"file": name, "piece_id": piece_id, "n_notes": int(keep.sum())})
        table = pd.DataFrame(rows)
        table.to_csv(tmp / "excerpts.csv", index=False)
    log.info("wrote %d test excerpts of %.0f s -> %s", len(rows), seconds, out)
    return table
