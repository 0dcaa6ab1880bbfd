"""Each metric against a value computed by hand from its published definition."""

import math

import numpy as np
import pytest

from cadenza.config import EvaluateParams
from cadenza.evaluate import piece_metrics
from cadenza.metrics import musegan, muspy_set
from cadenza.metrics.likelihood import summarise, token_sums


def roll_of(steps: list[list[int]]) -> np.ndarray:
    roll = np.zeros((len(steps), 128), dtype=bool)
    for t, pitches in enumerate(steps):
        roll[t, pitches] = True
    return roll


def musegan_reference_to_chroma(roll84: np.ndarray) -> np.ndarray:
    """MuseGAN v1's `to_chroma`, copied to show its bug: it reshapes (T, 12, -1), so each
    'pitch class' is a run of 7 neighbouring semitones instead of an octave fold."""
    return roll84.reshape(roll84.shape[0], 12, -1).sum(axis=2)


def test_empty_bar_ratio_counts_empty_bars():
    # 3 bars of 4 steps; the middle one is silent
    roll = roll_of([[60], [], [], []] + [[]] * 4 + [[], [], [64], []])
    bars = musegan.to_bars(roll, 4)
    assert musegan.empty_bar_ratio(bars) == pytest.approx(1 / 3)
    # MuseGAN src/ and pypianoroll return the NON-empty fraction: 2/3 here, which is wrong
    assert 1 - musegan.empty_bar_ratio(bars) == pytest.approx(2 / 3)


def test_partial_last_bar_is_padded():
    bars = musegan.to_bars(roll_of([[60]] * 5), 4)
    assert bars.shape == (2, 4, 128)


def test_used_pitch_classes_folds_octaves():
    # bar 1: C4, E4, C5, G3 -> {C, E, G} = 3; bar 2: C1 + C2 only -> {C} = 1; bar 3 empty
    roll = roll_of([[60, 64], [72], [55], []] + [[24], [36], [], []] + [[]] * 4)
    bars = musegan.to_bars(roll, 4)
    assert musegan.used_pitch_classes(bars) == pytest.approx((3 + 1) / 2)  # empty bar skipped


def test_musegan_chroma_bug_gives_a_different_answer():
    """C1 and C2 are one pitch class. MuseGAN's reshape puts them in two bins."""
    roll = roll_of([[24, 36]])
    roll84 = roll[:, 24:108]  # MuseGAN's 84 pitches, C1..B7
    assert (musegan.chroma(roll)[0] > 0).sum() == 1  # ours: UPC = 1
    assert (musegan_reference_to_chroma(roll84)[0] > 0).sum() == 2  # reference code: 2
    assert musegan.used_pitch_classes(musegan.to_bars(roll, 1)) == 1


def test_qualified_note_ratio():
    # 3 steps at 24 per beat is a 32nd note: 1 and 2 steps are too short
    assert musegan.qualified_note_ratio(np.array([1, 2, 3, 24]), 3) == 0.5
    assert math.isnan(musegan.qualified_note_ratio(np.array([]), 3))


def test_tonal_centroid_of_c_is_harte_vector():
    (centroid,) = musegan.tonal_centroids(roll_of([[60]]), 1)
    np.testing.assert_allclose(centroid, [0, 1, 0, 1, 0, 0.5], atol=1e-12)


def test_tonal_distance_by_hand():
    # one bar of 4 beats (1 step per beat): track A holds C, track B holds G.
    # phi(C) = (0, 1, 0, 1, 0, .5); phi(G) = (1/2, sqrt3/2, 1, 0, sqrt3/4, -1/4)
    # |phi(C) - phi(G)|^2 = 1/4 + (1 - sqrt3/2)^2 + 1 + 1 + 3/16 + 9/16 = 3 + (1 - sqrt3/2)^2
    expected = math.sqrt(3 + (1 - math.sqrt(3) / 2) ** 2)
    a, b = roll_of([[60]] * 4), roll_of([[55]] * 4)
    assert musegan.tonal_distance(a, b, 1, 4) == pytest.approx(expected)
    assert musegan.tonal_distance(a, roll_of([[48]] * 4), 1, 4) == pytest.approx(0.0)


def test_tonal_distance_averages_beats_then_bars_and_skips_silence():
    # bar 1: beats C/C, C/G -> mean d/2; bar 2: B silent on all beats -> skipped
    d = math.sqrt(3 + (1 - math.sqrt(3) / 2) ** 2)
    a = roll_of([[60], [60], [60], [60]])
    b = roll_of([[48], [55], [], []])
    assert musegan.tonal_distance(a, b, 1, 2) == pytest.approx(d / 2)


def test_split_top_voice():
    top, rest = musegan.split_top_voice(roll_of([[60, 64, 67], [], [48]]))
    assert np.flatnonzero(top[0]).tolist() == [67] and np.flatnonzero(rest[0]).tolist() == [60, 64]
    assert np.flatnonzero(top[2]).tolist() == [48] and not rest[2].any()


def test_polyphony_and_pitch_range():
    roll = roll_of([[60], [60, 64, 67], [], [60, 64]])
    assert muspy_set.polyphony(roll) == pytest.approx(2.0)  # (1 + 3 + 2) / 3 sounding steps
    assert muspy_set.pitch_range(np.array([60, 48, 79])) == 31


def test_token_likelihood_by_hand():
    log_probs = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]))
    nll, correct, count = token_sums(log_probs, np.array([0, 2, 0]), ignore=-1)
    assert nll == pytest.approx(-(math.log(0.5) + math.log(0.1) + math.log(0.2)))
    assert (correct, count) == (1, 3)
    out = summarise(nll, correct, count)
    assert out["perplexity"] == pytest.approx(math.exp(nll / 3))
    assert out["accuracy"] == pytest.approx(1 / 3)


def test_piece_metrics_on_a_hand_built_piece():
    # one 4/4 bar of quarter-note C major triads, then an empty bar, then one C
    onset = np.array([0, 0, 0, 1, 1, 1, 8.0])
    dur = np.array([1, 1, 1, 1, 1, 1, 0.5])
    pitch = np.array([60, 64, 67, 60, 64, 67, 60])
    m = piece_metrics((onset, dur, pitch), 4.0, EvaluateParams())
    assert m["empty_bar_ratio"] == pytest.approx(1 / 3)
    assert m["used_pitch_classes"] == pytest.approx((3 + 1) / 2)
    assert m["qualified_note_ratio"] == 1.0
    assert m["polyphony"] == pytest.approx((3 * 48 + 12) / (48 + 12))
    assert m["pitch_range"] == 7
