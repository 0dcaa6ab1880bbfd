"""Key estimation and transposition to C major / A minor.

Transposing every piece to one tonic makes the models' job easier (Boulanger-Lewandowski et
al. 2012 transpose to C; paper 001 to C major / A minor). The key comes from the file's key
signature when it has one; otherwise from the Krumhansl-Schmuckler algorithm: correlate the
duration-weighted pitch-class histogram with the Krumhansl-Kessler profiles rotated to each
of the 24 keys, and take the best.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PITCH_CLASSES = ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"]

# Krumhansl & Kessler (1982) probe-tone profiles, index 0 = tonic.
MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class 0..11
    mode: str  # "major" | "minor"
    method: str  # "key_signature" | "krumhansl"

    @property
    def name(self) -> str:
        return f"{PITCH_CLASSES[self.tonic]} {self.mode}"


def key_from_signature(sharps: int, tonality: int) -> Key:
    """MIDI key signature (sharps > 0, flats < 0; tonality 1 = minor) -> Key."""
    major_tonic = (7 * sharps) % 12
    if tonality == 1:
        return Key((major_tonic + 9) % 12, "minor", "key_signature")
    return Key(major_tonic, "major", "key_signature")


def krumhansl_schmuckler(pitch: np.ndarray, duration: np.ndarray) -> Key:
    """Best of the 24 keys by Pearson correlation with the rotated K-K profiles.

    All 24 correlations are one matrix product over standardised vectors; ties go to the
    first key in (major C..B, minor C..B) order.
    """
    hist = np.bincount(np.asarray(pitch) % 12, weights=np.asarray(duration, float), minlength=12)
    centred = hist - hist.mean()
    norm = np.linalg.norm(centred)
    if norm == 0:  # flat histogram: no evidence, keep C major
        return Key(0, "major", "krumhansl")
    r = _KEY_PROFILES @ (centred / norm)
    best = int(np.argmax(r))
    return Key(best % 12, "major" if best < 12 else "minor", "krumhansl")


def _standardised_profiles() -> np.ndarray:
    """(24, 12): each key's rotated profile, centred and scaled to unit length."""
    rows = [
        np.roll(profile, tonic) for profile in (MAJOR_PROFILE, MINOR_PROFILE) for tonic in range(12)
    ]
    centred = np.array(rows) - np.mean(rows, axis=1, keepdims=True)
    return centred / np.linalg.norm(centred, axis=1, keepdims=True)


_KEY_PROFILES = _standardised_profiles()


def estimate_key(
    pitch: np.ndarray, duration: np.ndarray, key_signature: tuple[int, int] | None
) -> Key:
    if key_signature is not None:
        return key_from_signature(*key_signature)
    return krumhansl_schmuckler(pitch, duration)


def shift_to_c(key: Key) -> int:
    """Semitones (in -6..5, the smallest move) that take `key` to C major or A minor.

    A key signature alone cannot tell a major key from its relative minor, but both go to the
    same place (C major and A minor share no sharps or flats), so the shift is right either way.
    """
    target = 0 if key.mode == "major" else 9
    return (target - key.tonic + 6) % 12 - 6
