"""MuseGAN's objective metrics (Dong et al., "MuseGAN: Multi-track Sequential Generative
Adversarial Networks for Symbolic Music Generation and Accompaniment", AAAI 2018), implemented
from the paper's definitions, not from its reference code (see `metrics.md`):

* the reference `to_chroma` reshapes (T, 12, -1) and so sums runs of 7 neighbouring semitones;
  here octaves are folded (pitch p -> p mod 12), so C1 and C2 share a bin;
* the reference `empty_bar_rate` returns the NON-empty fraction; here EB is the empty fraction.

Inputs are boolean piano rolls (T, 128) on a grid of `steps_per_beat` steps, cut into bars at
the piece's true bar lines (`cadenza.meter`: every time-signature change, exact lengths).
As in the reference code, every metric except EB averages over non-empty bars only.
"""

from __future__ import annotations

import numpy as np

from cadenza.meter import beat_windows

# Harte, Sandler & Gasser (2006) tonal-centroid projection: rows are r*sin / r*cos of
# l*7pi/6 (fifths), l*3pi/2 (minor thirds), l*2pi/3 (major thirds), r = 1, 1, 0.5.
_L = np.arange(12)
TONAL_MATRIX = np.stack(
    [
        np.sin(_L * 7 * np.pi / 6),
        np.cos(_L * 7 * np.pi / 6),
        np.sin(_L * 3 * np.pi / 2),
        np.cos(_L * 3 * np.pi / 2),
        0.5 * np.sin(_L * 2 * np.pi / 3),
        0.5 * np.cos(_L * 2 * np.pi / 3),
    ]
)  # (6, 12)


def bar_activity(roll: np.ndarray, bar_starts: np.ndarray) -> np.ndarray:
    """(T, P) -> (n_bars, P): whether each pitch sounds anywhere in each bar.

    Bars may differ in length (meter changes, `cadenza.meter.bar_lines`); every bar-level
    metric here needs only this.
    """
    if len(roll) == 0:
        return np.zeros((len(bar_starts), roll.shape[1]), dtype=bool)
    return np.logical_or.reduceat(roll.astype(bool), bar_starts, axis=0)


def chroma(roll: np.ndarray) -> np.ndarray:
    """Fold a (..., 128) roll onto the 12 pitch classes by summing octaves: (..., 12)."""
    pad = (-roll.shape[-1]) % 12
    widths = [(0, 0)] * (roll.ndim - 1) + [(0, pad)]
    folded = np.pad(roll.astype(np.float64), widths)
    return folded.reshape(*roll.shape[:-1], -1, 12).sum(axis=-2)


def empty_bar_ratio(active: np.ndarray) -> float:
    """EB: fraction of bars with no active note; `bar_activity` (n_bars, P) -> [0, 1]."""
    if len(active) == 0:
        return float("nan")
    return float(np.mean(~active.any(axis=1)))


def used_pitch_classes(active: np.ndarray) -> float:
    """UPC: mean over non-empty bars of the number of pitch classes used in the bar (0-12)."""
    per_bar = (chroma(active) > 0).sum(axis=-1)  # (n_bars,)
    nonempty = active.any(axis=1)
    return float(per_bar[nonempty].mean()) if nonempty.any() else float("nan")


def qualified_note_ratio(duration_steps: np.ndarray, min_steps: int = 3) -> float:
    """QN: notes lasting >= `min_steps` steps / all notes; 3 steps at 24 per beat = a 32nd.

    The reference code counts >= 2 active steps because LPD's rolls leave a one-step gap after
    a note, so that a pitch struck again reads as two notes. We count the definition's 3 steps
    on the lengths as read, so on LPD pieces a note that lost its last step to the gap counts
    one step short: a repeated 32nd is unqualified (over the 241 piano pieces of the shared
    LPD sample, QN 0.983 with 3 steps, 0.996 with 2). A gap cannot be told from a one-step
    rest, so no step is put back.
    """
    duration_steps = np.asarray(duration_steps)
    return float(np.mean(duration_steps >= min_steps)) if len(duration_steps) else float("nan")


def tonal_centroids(roll: np.ndarray, window_starts: np.ndarray) -> np.ndarray:
    """Per window (a beat): chroma summed over it, L1-normalised, projected to 6-D.
    (n_windows, 6); a window with no note has no centroid (NaN row)."""
    # chroma of the beat = active (step, pitch) cells summed over the beat, as in the paper
    beat_chroma = chroma(np.add.reduceat(roll.astype(np.int64), window_starts, axis=0))
    total = beat_chroma.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normed = np.where(total > 0, beat_chroma / total, np.nan)
    return normed @ TONAL_MATRIX.T


def tonal_distance(
    roll_a: np.ndarray, roll_b: np.ndarray, steps_per_beat: int, bar_starts: np.ndarray
) -> float:
    """TD: Euclidean distance of two tracks' tonal centroids per beat, averaged per bar, then
    over bars. Beats restart at each bar line (`cadenza.meter.beat_windows`); beats where
    either track is silent are skipped. Smaller = more harmonious."""
    n = max(len(roll_a), len(roll_b))
    if n == 0:
        return float("nan")
    windows, bar = beat_windows(bar_starts, n, steps_per_beat)
    a, b = _pad_to(roll_a, n), _pad_to(roll_b, n)
    dist = np.linalg.norm(tonal_centroids(a, windows) - tonal_centroids(b, windows), axis=1)
    seen = ~np.isnan(dist)
    counts = np.bincount(bar[seen], minlength=len(bar_starts))
    sums = np.bincount(bar[seen], weights=dist[seen], minlength=len(bar_starts))
    valid = counts > 0
    if not valid.any():
        return float("nan")
    return float((sums[valid] / counts[valid]).mean())


def drum_pattern(
    onset_steps: np.ndarray, steps_per_beat: int = 24, tolerance: float = 0.3
) -> float:
    """DP, for drum tracks only: the share of drum onsets on the 16th-note grid (which holds
    the 8th-note grid), an onset one step off the grid counting `tolerance`; the grid is
    shifted circularly by 0 .. grid-1 steps and the best shift is kept.

    `onset_steps` are the drum onsets in steps at `steps_per_beat` (24 in MuseGAN, so the
    16th grid is every 6 steps).
    """
    onset_steps = np.asarray(onset_steps)
    if len(onset_steps) == 0:
        return float("nan")
    grid = max(steps_per_beat // 4, 1)
    weight = np.zeros(grid)
    weight[0] = 1.0
    if grid > 2:
        weight[1] = weight[-1] = tolerance
    phase = onset_steps % grid  # (N,)
    scores = [weight[(phase - shift) % grid].sum() for shift in range(grid)]
    return float(max(scores) / len(onset_steps))


def split_top_voice(roll: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split one track in two for TD: the highest sounding pitch at each step vs the rest.

    Our choice for single-track data (chorales, piano): melody against accompaniment is the
    relation whose harmony TD is meant to measure; a fixed pitch boundary would cut voices
    that cross it.
    """
    top = np.zeros_like(roll)
    steps = np.flatnonzero(roll.any(axis=1))
    highest = roll.shape[1] - 1 - np.argmax(roll[steps, ::-1], axis=1)
    top[steps, highest] = True
    return top, roll & ~top


def _pad_to(roll: np.ndarray, n: int) -> np.ndarray:
    if len(roll) == n:
        return roll
    out = np.zeros((n, roll.shape[1]), dtype=roll.dtype)
    out[: len(roll)] = roll
    return out
