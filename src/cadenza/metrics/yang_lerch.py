"""How close are generated pieces to real music? Yang & Lerch, "On the evaluation of generative
models in music", Neural Computing and Applications 32, 2020 (the `mgeval` method).

Per feature:
1. compute the feature for every piece of a generated set G and a reference set R;
2. intra-set distances: Euclidean distances between the pieces of R (every pair);
3. inter-set distances: every piece of G against every piece of R;
4. smooth both distance samples into densities with a Gaussian KDE (Scott's bandwidth),
   evaluated on ONE shared grid (the reference code evaluates the two on different grids,
   which makes its KL meaningless);
5. report KL(intra_R || inter) and the overlapping area OA = integral of min(p, q).
   OA = 1 and KL = 0: G is, for this feature, as close to R as R is to itself. (A copy of
   R scores a little below: its inter-set distances include each piece against itself, 0,
   which the leave-one-out intra-set ones leave out; mgeval does the same.)

Features are the paper's, computed from notes on the beat grid. Two choices, since pieces
differ in length: "per bar" features are averaged over bars (the paper's fixed-length
per-bar vectors assume equal lengths), and histograms and transition matrices are normalised
to sum to 1. The inter-onset interval is between distinct onsets (a chord is one onset).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.distance import cdist, pdist
from scipy.stats import gaussian_kde

from cadenza.meter import bar_index

# the paper's 12 note-length classes, in beats: full, half, quarter, 8th, 16th; dotted half,
# quarter, 8th, 16th; half, quarter and 8th triplets
NOTE_LENGTH_CLASSES = np.array([4, 2, 1, 1 / 2, 1 / 4, 3, 3 / 2, 3 / 4, 3 / 8, 4 / 3, 2 / 3, 1 / 3])
FEATURES = [
    "total_used_pitch",
    "used_pitch_per_bar",
    "pitch_class_histogram",
    "pitch_class_transition",
    "pitch_range",
    "avg_pitch_interval",
    "total_used_note",
    "notes_per_bar",
    "avg_ioi",
    "note_length_histogram",
    "note_length_transition",
]
GRID_POINTS = 1000


@dataclass(frozen=True)
class PieceNotes:
    """Notes of one piece on a step grid, sorted by (start, pitch)."""

    start: np.ndarray  # steps
    end: np.ndarray  # steps, exclusive
    pitch: np.ndarray
    steps_per_beat: int
    bar_starts: np.ndarray  # the step of every bar line (`cadenza.meter.bar_lines`)


def piece_features(p: PieceNotes) -> dict[str, np.ndarray]:
    """The paper's 11 features of one piece; each a 1-D vector (scalars have length 1)."""
    n = len(p.pitch)
    n_bars = max(len(p.bar_starts), 1)
    bar = bar_index(p.start, p.bar_starts)
    pitch_per_bar = len(np.unique(bar * 128 + p.pitch)) / n_bars
    pc = p.pitch % 12
    length_class = np.abs(
        (p.end - p.start)[:, None] / p.steps_per_beat - NOTE_LENGTH_CLASSES[None, :]
    ).argmin(axis=1)
    onsets = np.unique(p.start) / p.steps_per_beat
    return {
        "total_used_pitch": np.array([len(np.unique(p.pitch))], float),
        "used_pitch_per_bar": np.array([pitch_per_bar]),
        "pitch_class_histogram": _normalised(np.bincount(pc, minlength=12)),
        "pitch_class_transition": _transitions(pc, 12),
        "pitch_range": np.array([np.ptp(p.pitch) if n else 0], float),
        "avg_pitch_interval": np.array([np.abs(np.diff(p.pitch)).mean() if n > 1 else 0.0]),
        "total_used_note": np.array([n], float),
        "notes_per_bar": np.array([n / n_bars]),
        "avg_ioi": np.array([np.diff(onsets).mean() if len(onsets) > 1 else 0.0]),
        "note_length_histogram": _normalised(np.bincount(length_class, minlength=12)),
        "note_length_transition": _transitions(length_class, 12),
    }


def feature_matrix(pieces: list[PieceNotes]) -> dict[str, np.ndarray]:
    """Feature name -> (n_pieces, dim) matrix."""
    per_piece = [piece_features(p) for p in pieces]
    return {name: np.stack([f[name] for f in per_piece]) for name in FEATURES}


def intra_set_distances(x: np.ndarray) -> np.ndarray:
    """Distances between every pair of pieces of one set."""
    return pdist(x.astype(float))


def inter_set_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Distances from every piece of one set to every piece of the other."""
    return cdist(x.astype(float), y.astype(float)).ravel()


def density(samples: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian KDE (Scott's rule) of `samples`, evaluated on `grid` and normalised there.

    All-equal samples have no spread for the KDE to scale: they become a narrow Gaussian of
    width 1 % of the grid's span, a smoothed point mass.
    """
    if np.ptp(samples) > 0:
        pdf = gaussian_kde(samples)(grid)
    else:
        width = 0.01 * (grid[-1] - grid[0])
        pdf = np.exp(-0.5 * ((grid - samples[0]) / width) ** 2)
    area = np.trapezoid(pdf, grid)
    return pdf / area if area > 0 else pdf


def shared_grid(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One grid covering both samples plus three standard deviations either side."""
    both = np.concatenate([a, b])
    pad = 3 * max(both.std(), 1e-3 * max(np.abs(both).max(), 1.0))
    return np.linspace(both.min() - pad, both.max() + pad, GRID_POINTS)


def overlap_area(p: np.ndarray, q: np.ndarray, grid: np.ndarray) -> float:
    """OA = integral of min(p, q): 1 for identical densities, 0 for disjoint ones."""
    return float(np.trapezoid(np.minimum(p, q), grid))


def kl_divergence(p: np.ndarray, q: np.ndarray, grid: np.ndarray, floor: float = 1e-10) -> float:
    """KL(p || q) in nats on the grid; densities are floored at `floor` so that a tail that
    underflows to 0 gives a large, finite value instead of infinity."""
    p, q = np.maximum(p, floor), np.maximum(q, floor)
    return float(np.trapezoid(p * np.log(p / q), grid))


def compare_sets(
    generated: list[PieceNotes], reference: list[PieceNotes]
) -> dict[str, dict[str, float]]:
    """Per feature, KL(intra-reference || inter-set) and OA; NaN with under 2 pieces."""
    if len(generated) < 1 or len(reference) < 2:
        return {name: {"kl": float("nan"), "oa": float("nan")} for name in FEATURES}
    gen, ref = feature_matrix(generated), feature_matrix(reference)
    out = {}
    for name in FEATURES:
        intra = intra_set_distances(ref[name])
        inter = inter_set_distances(gen[name], ref[name])
        grid = shared_grid(intra, inter)
        p, q = density(intra, grid), density(inter, grid)
        out[name] = {"kl": kl_divergence(p, q, grid), "oa": overlap_area(p, q, grid)}
    return out


def _normalised(counts: np.ndarray) -> np.ndarray:
    total = counts.sum()
    return counts / total if total else counts.astype(float)


def _transitions(classes: np.ndarray, k: int) -> np.ndarray:
    """Normalised k x k counts of consecutive (class_i, class_i+1) pairs, flattened."""
    counts = (
        np.bincount(classes[:-1] * k + classes[1:], minlength=k * k)
        if len(classes) > 1
        else np.zeros(k * k)
    )
    return _normalised(counts)
