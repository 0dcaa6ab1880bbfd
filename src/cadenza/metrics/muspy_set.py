"""Metrics from the MusPy set (Dong et al., "MusPy: A Toolkit for Symbolic Music Generation",
ISMIR 2020, `muspy.metrics`), on piano rolls and note arrays."""

from __future__ import annotations

import numpy as np


def pitch_range(pitch: np.ndarray) -> float:
    """Highest minus lowest pitch used, in semitones."""
    pitch = np.asarray(pitch)
    return float(pitch.max() - pitch.min()) if len(pitch) else float("nan")


def polyphony(roll: np.ndarray) -> float:
    """Mean number of sounding pitches over the steps where at least one sounds."""
    counts = roll.sum(axis=1)
    sounding = counts > 0
    return float(counts[sounding].mean()) if sounding.any() else float("nan")
