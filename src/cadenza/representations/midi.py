"""Notes -> a MIDI file, through symusic (pretty_midi would do, 100x slower)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from symusic import core

from cadenza.io import atomic_path
from cadenza.representations.tokens import Notes

TICKS_PER_QUARTER = 480


def write_midi(
    notes: Notes,
    path: Path,
    bpm: float,
    velocity: int = 80,
    program: int = 0,
    time_signature: tuple[int, int] = (4, 4),
) -> None:
    """Write one piano track at `bpm` in `time_signature`; onsets and durations in beats."""
    onset, duration, pitch = notes
    # symusic's tick-time classes, which its `Score`, `Tempo`, ... factories build: typed
    score = core.ScoreTick(TICKS_PER_QUARTER)
    score.tempos.append(core.TempoTick(0, float(bpm)))
    score.time_signatures.append(core.TimeSignatureTick(0, *time_signature))
    track = core.TrackTick("piano", program)
    starts = np.rint(np.asarray(onset) * TICKS_PER_QUARTER).astype(int)
    lengths = np.maximum(np.rint(np.asarray(duration) * TICKS_PER_QUARTER).astype(int), 1)
    for t, d, p in zip(starts.tolist(), lengths.tolist(), np.asarray(pitch).tolist(), strict=True):
        track.notes.append(core.NoteTick(t, d, int(p), velocity))
    score.tracks.append(track)
    with atomic_path(path) as tmp:
        score.dump_midi(str(tmp))
