"""The MusPy metric set (Dong, Chen, Dong & Yang, "MusPy: A Toolkit for Symbolic Music
Generation", ISMIR 2020, `muspy.metrics`), vectorised over note arrays and piano rolls.

Inputs are the notes of one piece as integer steps (`start`, `end` exclusive, `pitch`) on a
grid of `steps_per_beat`, or `counts`, the number of distinct pitches sounding at each step
(the row sums of the piece's boolean roll; `rolls.sounding_counts` gets them without the
roll). Every function is pure and returns NaN where the metric is undefined (no notes; fewer
than two measures for groove consistency).

Where muspy's code and its own docstring disagree we follow the docstring:
* `empty_beat_rate` / `empty_measure_rate`: muspy marks beats `start // r .. end // r` as
  played, with `end` exclusive, so a note ending exactly on a beat also "plays" the next beat,
  and it counts `length // r + 1` beats, one too many when the piece ends on a beat. Here a
  beat is played when a note sounds during one of its steps, and there are ceil(T / r) beats.
* `groove_consistency`: muspy counts `length // r + 1` measures, adding a silent measure
  (and its Hamming distance) when the piece ends on a bar line. Here: ceil(T / r) measures.
`tests/test_metrics.py` shows both differences on hand-built pieces and agreement with muspy
everywhere else.
"""

from __future__ import annotations

import numpy as np

from cadenza.meter import bar_index

MAJOR_SCALE = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)
MINOR_SCALE = np.array([1, 0, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0], dtype=bool)  # natural minor
# (24, 12): the major scales on C..B, then the minor scales on C..B
ALL_SCALES = np.array(
    [np.roll(scale, root) for scale in (MAJOR_SCALE, MINOR_SCALE) for root in range(12)]
)


def pitch_range(pitch: np.ndarray) -> float:
    """Highest minus lowest pitch used, in semitones."""
    return float(np.ptp(pitch)) if len(pitch) else float("nan")


def n_pitches_used(pitch: np.ndarray) -> float:
    """Number of distinct MIDI pitches."""
    return float(len(np.unique(pitch))) if len(pitch) else float("nan")


def n_pitch_classes_used(pitch: np.ndarray) -> float:
    """Number of distinct pitch classes (0-12)."""
    return float(len(np.unique(np.asarray(pitch) % 12))) if len(pitch) else float("nan")


def polyphony(counts: np.ndarray) -> float:
    """Mean number of sounding pitches over the steps where at least one sounds."""
    sounding = counts > 0
    return float(counts[sounding].mean()) if sounding.any() else float("nan")


def polyphony_rate(counts: np.ndarray, threshold: int = 2) -> float:
    """Share of all steps with MORE than `threshold` sounding pitches (muspy's default: 2)."""
    if len(counts) == 0:
        return float("nan")
    return float(np.mean(counts > threshold))


def pitch_in_scale_rate(pitch: np.ndarray, root: int = 0, mode: str = "major") -> float:
    """Share of notes whose pitch class is in the scale. Cadenza transposes every piece to
    C major / A minor, which share one scale, so the default (C major) is the one to read."""
    if len(pitch) == 0:
        return float("nan")
    scale = np.roll(MAJOR_SCALE if mode == "major" else MINOR_SCALE, root)
    return float(np.mean(scale[np.asarray(pitch) % 12]))


def scale_consistency(pitch: np.ndarray) -> float:
    """The largest pitch-in-scale rate over the 24 major and minor scales."""
    if len(pitch) == 0:
        return float("nan")
    hist = np.bincount(np.asarray(pitch) % 12, minlength=12)
    return float((ALL_SCALES @ hist).max() / len(pitch))


def entropy_bits(counts: np.ndarray) -> float:
    """Shannon entropy, in bits, of a histogram; NaN for an empty one."""
    total = counts.sum()
    if total == 0:
        return float("nan")
    p = counts[counts > 0] / total
    return float((p * np.log2(1 / p)).sum())  # not -(p log p): one bin would give -0.0


def pitch_entropy(pitch: np.ndarray) -> float:
    """Entropy (bits) of the 128-bin histogram of note pitches."""
    return entropy_bits(np.bincount(np.asarray(pitch), minlength=128))


def pitch_class_entropy(pitch: np.ndarray) -> float:
    """Entropy (bits) of the 12-bin histogram of note pitch classes."""
    return entropy_bits(np.bincount(np.asarray(pitch) % 12, minlength=12))


def empty_rate(counts: np.ndarray, steps_per_unit: int) -> float:
    """Share of beats (or measures) in which no note sounds: `empty_beat_rate` with
    steps_per_unit = steps per beat, `empty_measure_rate` with steps per measure."""
    if len(counts) == 0:
        return float("nan")
    sounding = counts > 0
    n_units = -(-len(sounding) // steps_per_unit)
    padded = np.zeros(n_units * steps_per_unit, dtype=bool)
    padded[: len(sounding)] = sounding
    return float(np.mean(~padded.reshape(n_units, steps_per_unit).any(axis=1)))


def groove_consistency(start: np.ndarray, bar_starts: np.ndarray, n_steps: int) -> float:
    """1 - mean Hamming distance between consecutive measures' binary onset grids, divided by
    the measure length (Wu & Yang 2020; muspy). NaN with fewer than two measures.

    Measures follow the true bar lines; two consecutive measures of different lengths are
    compared over the longer one (positions past the shorter one's end are silent), which is
    muspy's definition whenever the meter is constant.
    """
    if len(bar_starts) < 2:
        return float("nan")
    lengths = np.diff(np.append(bar_starts, max(n_steps, int(bar_starts[-1]) + 1)))
    start = np.asarray(start)
    bar = bar_index(start, bar_starts)
    grid = np.zeros((len(bar_starts), int(lengths.max())), dtype=bool)
    grid[bar, start - bar_starts[bar]] = True
    distance = np.count_nonzero(grid[1:] != grid[:-1])
    return float(1 - distance / np.maximum(lengths[1:], lengths[:-1]).sum())
