"""Notes <-> piano rolls on a beat grid.

A roll is a boolean (T, 128) array: roll[t, p] is True while pitch p sounds at step t.
Stored sparsely as runs (pitch, start, end): a 16th-note roll is >95 % empty, and a run per
sounding stretch is smaller still than one row per active cell.
Onsets and offsets are rounded to the nearest step; a note always keeps at least one step, so
no note vanishes on a coarse grid.
"""

from __future__ import annotations

import numpy as np


def note_steps(
    onset: np.ndarray, duration: np.ndarray, steps_per_beat: int
) -> tuple[np.ndarray, np.ndarray]:
    """Quantise onsets/durations in beats to (start, end) steps, end exclusive, end > start."""
    start = np.rint(np.asarray(onset, dtype=np.float64) * steps_per_beat).astype(np.int64)
    end = np.rint((np.asarray(onset) + np.asarray(duration)) * steps_per_beat).astype(np.int64)
    return start, np.maximum(end, start + 1)


def notes_to_roll(
    onset: np.ndarray,
    duration: np.ndarray,
    pitch: np.ndarray,
    steps_per_beat: int,
    n_steps: int | None = None,
) -> np.ndarray:
    """Dense boolean roll (T, 128); T covers the last offset unless `n_steps` is given."""
    start, end = note_steps(onset, duration, steps_per_beat)
    return steps_to_roll(start, end, pitch, n_steps)


def steps_to_roll(
    start: np.ndarray, end: np.ndarray, pitch: np.ndarray, n_steps: int | None = None
) -> np.ndarray:
    """Dense boolean roll (T, 128) of notes, or of runs, given in steps (`end` exclusive).

    Only the sounding cells are touched (a few per step), never all T x 128 of them.
    """
    start = np.asarray(start, dtype=np.int64)
    lengths = np.maximum(np.asarray(end, dtype=np.int64) - start, 0)
    total = int((start + lengths).max()) if len(start) else 0
    roll = np.zeros((total if n_steps is None else max(n_steps, total), 128), dtype=bool)
    first_cell = np.cumsum(lengths) - lengths
    steps = np.repeat(start - first_cell, lengths) + np.arange(int(lengths.sum()))
    roll[steps, np.repeat(np.asarray(pitch, dtype=np.int64), lengths)] = True
    return roll if n_steps is None else roll[:n_steps]


def roll_runs(
    onset: np.ndarray, duration: np.ndarray, pitch: np.ndarray, steps_per_beat: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The roll of these notes as runs (pitch, start, end), without building the dense roll."""
    start, end = note_steps(onset, duration, steps_per_beat)
    return merge_runs(start, end, pitch)


def merge_runs(
    start: np.ndarray, end: np.ndarray, pitch: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Notes in steps -> runs (pitch, start, end), sorted by (pitch, start).

    Notes of one pitch that overlap or touch merge into one run, exactly as the dense roll
    would show them.
    """
    pitch = np.asarray(pitch, dtype=np.int64)
    if len(pitch) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    order = np.lexsort((start, pitch))
    p, s, e = pitch[order], np.asarray(start)[order], np.asarray(end)[order]
    # running max of `end` within each pitch: offsetting by pitch keeps groups apart
    offset = p * (int(e.max()) + 1)
    reach = np.maximum.accumulate(e + offset) - offset
    new = np.ones(len(p), dtype=bool)
    new[1:] = (p[1:] != p[:-1]) | (s[1:] > reach[:-1])
    first = np.flatnonzero(new)
    last = np.r_[first[1:] - 1, len(p) - 1]
    return p[first], s[first], reach[last]


def sounding_counts(
    start: np.ndarray, end: np.ndarray, pitch: np.ndarray, n_steps: int | None = None
) -> np.ndarray:
    """How many distinct pitches sound at each step: the row sums of the roll, in O(notes + T)
    without building it."""
    _, run_start, run_end = merge_runs(start, end, pitch)
    n_steps = int(run_end.max(initial=0)) if n_steps is None else n_steps
    diff = (
        np.bincount(run_start, minlength=n_steps + 1)[: n_steps + 1]
        - np.bincount(run_end, minlength=n_steps + 1)[: n_steps + 1]
    )
    return np.cumsum(diff[:n_steps])


def roll_to_notes(
    roll: np.ndarray, steps_per_beat: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Runs of active steps become notes: (onset_beats, duration_beats, pitch), sorted."""
    padded = np.zeros((roll.shape[0] + 2, roll.shape[1]), dtype=np.int8)
    padded[1:-1] = roll
    change = np.diff(padded, axis=0)
    on_t, on_p = np.nonzero(change == 1)
    off_t, off_p = np.nonzero(change == -1)
    # np.nonzero is row-major: reorder both by (pitch, time) so the k-th onset of a pitch
    # pairs with the k-th offset of that pitch.
    on = np.lexsort((on_t, on_p))
    off = np.lexsort((off_t, off_p))
    onset, pitch, end = on_t[on], on_p[on], off_t[off]
    order = np.lexsort((pitch, onset))
    return (onset[order] / steps_per_beat, (end - onset)[order] / steps_per_beat, pitch[order])
