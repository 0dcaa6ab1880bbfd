"""Each metric against a value computed by hand from its published definition."""

import math

import numpy as np
import pytest

from cadenza.config import EvaluateParams
from cadenza.evaluate import on_grid, piece_metrics
from cadenza.meter import COMMON_TIME
from cadenza.metrics import musegan, muspy_set, yang_lerch
from cadenza.metrics.likelihood import frame_accuracy, frame_nll, summarise, token_sums


def roll_of(steps: list[list[int]]) -> np.ndarray:
    roll = np.zeros((len(steps), 128), dtype=bool)
    for t, pitches in enumerate(steps):
        roll[t, pitches] = True
    return roll


def musegan_reference_to_chroma(roll84: np.ndarray) -> np.ndarray:
    """MuseGAN v1's `to_chroma`, copied to show its bug: it reshapes (T, 12, -1), so each
    'pitch class' is a run of 7 neighbouring semitones instead of an octave fold."""
    return roll84.reshape(roll84.shape[0], 12, -1).sum(axis=2)


def every(n: int, roll: np.ndarray) -> np.ndarray:
    """Bar lines every `n` steps over a roll (a constant meter)."""
    return np.arange(0, len(roll), n)


def test_empty_bar_ratio_counts_empty_bars():
    # 3 bars of 4 steps; the middle one is silent
    roll = roll_of([[60], [], [], []] + [[]] * 4 + [[], [], [64], []])
    active = musegan.bar_activity(roll, every(4, roll))
    assert musegan.empty_bar_ratio(active) == pytest.approx(1 / 3)
    # MuseGAN src/ and pypianoroll return the NON-empty fraction: 2/3 here, which is wrong
    assert 1 - musegan.empty_bar_ratio(active) == pytest.approx(2 / 3)


def test_partial_last_bar_counts():
    roll = roll_of([[60]] * 5)
    assert musegan.bar_activity(roll, every(4, roll)).shape == (2, 128)


def test_used_pitch_classes_folds_octaves():
    # bar 1: C4, E4, C5, G3 -> {C, E, G} = 3; bar 2: C1 + C2 only -> {C} = 1; bar 3 empty
    roll = roll_of([[60, 64], [72], [55], []] + [[24], [36], [], []] + [[]] * 4)
    active = musegan.bar_activity(roll, every(4, roll))
    assert musegan.used_pitch_classes(active) == pytest.approx((3 + 1) / 2)  # empty skipped


def test_musegan_chroma_bug_gives_a_different_answer():
    """C1 and C2 are one pitch class. MuseGAN's reshape puts them in two bins."""
    roll = roll_of([[24, 36]])
    roll84 = roll[:, 24:108]  # MuseGAN's 84 pitches, C1..B7
    assert (musegan.chroma(roll)[0] > 0).sum() == 1  # ours: UPC = 1
    assert (musegan_reference_to_chroma(roll84)[0] > 0).sum() == 2  # reference code: 2
    assert musegan.used_pitch_classes(musegan.bar_activity(roll, every(1, roll))) == 1


def test_qualified_note_ratio():
    # 3 steps at 24 per beat is a 32nd note: 1 and 2 steps are too short
    assert musegan.qualified_note_ratio(np.array([1, 2, 3, 24]), 3) == 0.5
    assert math.isnan(musegan.qualified_note_ratio(np.array([]), 3))


@pytest.mark.parametrize("start", [0.0, 0.5, 1.5, 2.5, 7.25])
def test_a_note_keeps_its_length_on_the_grid_wherever_it_starts(start):
    # a 32nd (3 steps at 24 per beat) is qualified at any start; with halves rounded to even a
    # start of 1.5 steps gave 2..4 (2 steps, unqualified) and 0.5 or 2.5 gave 4 steps
    grid = on_grid((np.array([start / 24]), np.array([3 / 24]), np.array([60])), COMMON_TIME, 24)
    assert (grid.end - grid.start).tolist() == [3]
    assert musegan.qualified_note_ratio(grid.end - grid.start, 3) == 1.0


def test_tonal_centroid_of_c_is_harte_vector():
    (centroid,) = musegan.tonal_centroids(roll_of([[60]]), np.array([0]))
    np.testing.assert_allclose(centroid, [0, 1, 0, 1, 0, 0.5], atol=1e-12)


def test_tonal_distance_by_hand():
    # one bar of 4 beats (1 step per beat): track A holds C, track B holds G.
    # phi(C) = (0, 1, 0, 1, 0, .5); phi(G) = (1/2, sqrt3/2, 1, 0, sqrt3/4, -1/4)
    # |phi(C) - phi(G)|^2 = 1/4 + (1 - sqrt3/2)^2 + 1 + 1 + 3/16 + 9/16 = 3 + (1 - sqrt3/2)^2
    expected = math.sqrt(3 + (1 - math.sqrt(3) / 2) ** 2)
    a, b = roll_of([[60]] * 4), roll_of([[55]] * 4)
    assert musegan.tonal_distance(a, b, 1, every(4, a)) == pytest.approx(expected)
    assert musegan.tonal_distance(a, roll_of([[48]] * 4), 1, every(4, a)) == pytest.approx(0.0)


def test_tonal_distance_averages_beats_then_bars_and_skips_silence():
    # bar 1: beats C/C, C/G -> mean d/2; bar 2: B silent on all beats -> skipped
    d = math.sqrt(3 + (1 - math.sqrt(3) / 2) ** 2)
    a = roll_of([[60], [60], [60], [60]])
    b = roll_of([[48], [55], [], []])
    assert musegan.tonal_distance(a, b, 1, every(2, a)) == pytest.approx(d / 2)


def test_split_top_voice():
    top, rest = musegan.split_top_voice(roll_of([[60, 64, 67], [], [48]]))
    assert np.flatnonzero(top[0]).tolist() == [67] and np.flatnonzero(rest[0]).tolist() == [60, 64]
    assert np.flatnonzero(top[2]).tolist() == [48] and not rest[2].any()


def test_polyphony_and_pitch_range():
    roll = roll_of([[60], [60, 64, 67], [], [60, 64]])
    assert muspy_set.polyphony(roll.sum(axis=1)) == pytest.approx(2.0)  # (1 + 3 + 2) / 3
    assert muspy_set.pitch_range(np.array([60, 48, 79])) == 31


def test_token_likelihood_by_hand():
    log_probs = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]]))
    sums = token_sums(log_probs, np.array([0, 2, 0]))
    nll = -(math.log(0.5) + math.log(0.1) + math.log(0.2))
    assert sums.tolist() == pytest.approx([nll, 3, 1, 3, 0])
    out = summarise(*sums)
    assert out["perplexity"] == pytest.approx(math.exp(nll / 3))
    assert out["accuracy"] == pytest.approx(1 / 3) and out["unk_share"] == 0


def test_unk_targets_are_errors_and_left_out_of_the_nll():
    # ids: 0 <pad>, 1 <unk>, 2, 3. Targets: <pad> (ignored), <unk> predicted as <unk> (an
    # error all the same, and not in the NLL), 2 predicted as 2 (right), 3 predicted as 2.
    log_probs = np.log(
        np.array(
            [[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.1, 0.6, 0.2], [0.1, 0.1, 0.5, 0.3]]
        )
    )
    sums = token_sums(log_probs, np.array([0, 1, 2, 3]), ignore=0, unk=1)
    out = summarise(*sums)
    assert out["accuracy"] == pytest.approx(1 / 3)  # not 2 / 3
    assert out["nll"] == pytest.approx(-(math.log(0.6) + math.log(0.3)) / 2)
    assert out["unk_share"] == pytest.approx(1 / 3)


def test_piece_metrics_on_a_hand_built_piece():
    # one 4/4 bar of quarter-note C major triads, then an empty bar, then one C
    onset = np.array([0, 0, 0, 1, 1, 1, 8.0])
    dur = np.array([1, 1, 1, 1, 1, 1, 0.5])
    pitch = np.array([60, 64, 67, 60, 64, 67, 60])
    m = piece_metrics(on_grid((onset, dur, pitch), COMMON_TIME, 24), EvaluateParams())
    assert m["empty_bar_ratio"] == pytest.approx(1 / 3)
    assert m["used_pitch_classes"] == pytest.approx((3 + 1) / 2)
    assert m["qualified_note_ratio"] == 1.0
    assert m["polyphony"] == pytest.approx((3 * 48 + 12) / (48 + 12))
    assert m["pitch_range"] == 7
    assert m["n_pitches_used"] == 3 and m["n_pitch_classes_used"] == 3
    assert m["polyphony_rate"] == pytest.approx(48 / 204)  # 48 of 8.5 beats * 24 steps
    assert m["pitch_in_scale_rate"] == 1.0 and m["scale_consistency"] == 1.0
    # histogram C:3, E:2, G:2 of 7 notes
    h = -(3 / 7 * math.log2(3 / 7) + 2 * 2 / 7 * math.log2(2 / 7))
    assert m["pitch_entropy"] == pytest.approx(h) and m["pitch_class_entropy"] == pytest.approx(h)
    # 9 beats (the last half-filled): beats 0, 1, 8 sound
    assert m["empty_beat_rate"] == pytest.approx(6 / 9)
    # onset grids: bar 1 {0, 24}, bar 2 {}, bar 3 {0}: distances 2 and 1 over 2 x 96 steps
    assert m["groove_consistency"] == pytest.approx(1 - 3 / (96 * 2))


def test_scale_metrics_by_hand():
    pitch = np.array([60, 61, 62, 64])  # C C# D E: 3 of 4 in C major
    assert muspy_set.pitch_in_scale_rate(pitch) == 0.75
    assert muspy_set.pitch_in_scale_rate(pitch, root=2, mode="major") == 0.75  # D major: C#DE
    assert muspy_set.scale_consistency(pitch) == 0.75
    assert muspy_set.scale_consistency(np.array([57, 60, 64])) == 1.0
    assert math.isnan(muspy_set.scale_consistency(np.array([], dtype=int)))


def test_polyphony_rate_counts_more_than_threshold():
    roll = roll_of([[60], [60, 64], [60, 64, 67], []])
    assert muspy_set.polyphony_rate(roll.sum(axis=1), 2) == 0.25  # only the triad has > 2
    assert muspy_set.polyphony_rate(roll.sum(axis=1), 1) == 0.5


def test_entropy_is_log2_of_uniform_choices():
    assert muspy_set.pitch_class_entropy(np.arange(60, 72)) == pytest.approx(math.log2(12))
    one_pitch = muspy_set.pitch_entropy(np.array([60, 60]))
    assert one_pitch == 0.0 and math.copysign(1, one_pitch) == 1  # 0.0, not -0.0 in the JSON


def test_drum_pattern_by_hand():
    # 16th grid every 6 steps at 24 per beat: onsets at 0, 6 (on), 7 (one off), 9 (off grid)
    assert musegan.drum_pattern(np.array([0, 6, 7, 9]), 24) == pytest.approx((1 + 1 + 0.3) / 4)
    # all shifted by 3 steps: the best circular shift finds the grid again
    assert musegan.drum_pattern(np.array([3, 9, 15]), 24) == 1.0


def test_frame_nll_and_accuracy_by_hand():
    probs = np.array([[0.9, 0.2], [0.5, 0.5]])
    y = np.array([[1, 0], [0, 1]])
    expected = -(math.log(0.9) + math.log(0.8) + math.log(0.5) + math.log(0.5)) / 2
    assert frame_nll(probs, y) == pytest.approx(expected)
    # predictions p > .5 -> [[1, 0], [0, 0]]: TP 1, FP 0, FN 1 -> 1 / 2
    assert frame_accuracy(probs > 0.5, y) == 0.5


# ------------------------------------------------------------------ Yang & Lerch (mgeval)


def test_yang_lerch_features_by_hand():
    # quarter C, quarter E, half G in one 4/4 bar at 4 steps per beat
    p = yang_lerch.PieceNotes(
        start=np.array([0, 4, 8]),
        end=np.array([4, 8, 16]),
        pitch=np.array([60, 64, 67]),
        steps_per_beat=4,
        bar_starts=np.array([0]),
    )
    f = yang_lerch.piece_features(p)
    assert f["total_used_pitch"][0] == 3 and f["pitch_range"][0] == 7
    assert f["avg_pitch_interval"][0] == pytest.approx((4 + 3) / 2)
    assert f["avg_ioi"][0] == 1.0 and f["notes_per_bar"][0] == 3
    assert f["note_length_histogram"][2] == pytest.approx(2 / 3)  # quarters
    assert f["note_length_histogram"][1] == pytest.approx(1 / 3)  # half
    transitions = f["pitch_class_transition"].reshape(12, 12)
    assert transitions[0, 4] == transitions[4, 7] == 0.5


def test_identical_sets_overlap_fully_and_shifted_sets_do_not():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 400)
    grid = yang_lerch.shared_grid(a, a)
    p = yang_lerch.density(a, grid)
    assert yang_lerch.overlap_area(p, p, grid) == pytest.approx(1.0, abs=1e-3)
    assert yang_lerch.kl_divergence(p, p, grid) == pytest.approx(0.0, abs=1e-9)
    b = a + 10
    grid = yang_lerch.shared_grid(a, b)
    p, q = yang_lerch.density(a, grid), yang_lerch.density(b, grid)
    assert yang_lerch.overlap_area(p, q, grid) < 0.01
    assert yang_lerch.kl_divergence(p, q, grid) > 5


def test_kde_of_two_gaussians_matches_closed_form_overlap():
    # OA of N(0,1) and N(1,1) is 2 * Phi(-1/2) = 0.617; the KDE of large samples gets close
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 5000), rng.normal(1, 1, 5000)
    grid = yang_lerch.shared_grid(a, b)
    oa = yang_lerch.overlap_area(yang_lerch.density(a, grid), yang_lerch.density(b, grid), grid)
    assert oa == pytest.approx(2 * 0.5 * math.erfc(0.5 / math.sqrt(2)), abs=0.03)


def test_compare_sets_prefers_the_closer_set():
    rng = np.random.default_rng(2)

    def pieces(spread: int, n: int) -> list:
        out = []
        for _ in range(n):
            start = np.sort(rng.integers(0, 64, 24))
            pitch = 60 + rng.integers(-spread, spread + 1, 24)
            out.append(
                yang_lerch.PieceNotes(
                    start=start,
                    end=start + 2,
                    pitch=pitch,
                    steps_per_beat=4,
                    bar_starts=np.arange(0, 66, 16),
                )
            )
        return out

    reference, close, far = pieces(5, 30), pieces(5, 20), pieces(30, 20)
    near_oa = yang_lerch.compare_sets(close, reference)["pitch_range"]["oa"]
    far_oa = yang_lerch.compare_sets(far, reference)["pitch_range"]["oa"]
    assert near_oa > 0.5 > far_oa


# ------------------------------------------------------------------ cross-checks with muspy


def _muspy_music(p: yang_lerch.PieceNotes):
    import muspy

    notes = [
        muspy.Note(time=int(s), pitch=int(q), duration=int(e - s), velocity=64)
        for s, e, q in zip(p.start, p.end, p.pitch, strict=True)
    ]
    return muspy.Music(resolution=p.steps_per_beat, tracks=[muspy.Track(notes=notes)])


def test_agrees_with_muspy_where_the_definitions_match(chorale_pieces):
    import muspy

    for p in chorale_pieces:
        m, music = piece_metrics(p, EvaluateParams()), _muspy_music(p)
        assert m["pitch_range"] == muspy.pitch_range(music)
        assert m["n_pitches_used"] == muspy.n_pitches_used(music)
        assert m["n_pitch_classes_used"] == muspy.n_pitch_classes_used(music)
        assert m["polyphony"] == pytest.approx(muspy.polyphony(music))
        assert m["polyphony_rate"] == pytest.approx(muspy.polyphony_rate(music))
        assert m["pitch_in_scale_rate"] == pytest.approx(
            muspy.pitch_in_scale_rate(music, 0, "major")
        )
        assert m["scale_consistency"] == pytest.approx(muspy.scale_consistency(music))
        assert m["pitch_entropy"] == pytest.approx(muspy.pitch_entropy(music))
        assert m["pitch_class_entropy"] == pytest.approx(muspy.pitch_class_entropy(music))


def test_muspy_empty_beat_and_groove_off_by_one():
    """muspy marks beats start // r .. end // r as played, though `end` is exclusive, and
    counts length // r + 1 beats or bars. So a note ending on a beat "plays" the next one, and
    a piece ending on a bar line gains a silent bar. We count the steps where notes sound."""
    import muspy

    # quarter notes on beats 0 and 2 at 4 steps per beat; beat 1 is silent
    p = yang_lerch.PieceNotes(
        start=np.array([0, 8]),
        end=np.array([4, 12]),
        pitch=np.array([60, 60]),
        steps_per_beat=4,
        bar_starts=np.array([0, 8]),
    )
    roll = np.zeros((12, 128), dtype=bool)
    roll[0:4, 60] = roll[8:12, 60] = True
    assert muspy_set.empty_rate(roll.sum(axis=1), 4) == pytest.approx(1 / 3)
    assert muspy.empty_beat_rate(_muspy_music(p)) == 0.0  # 4 "beats", all "played"
    # two identical bars of 8 steps: a perfectly consistent groove
    two_bars = yang_lerch.PieceNotes(
        start=np.array([0, 8]),
        end=np.array([8, 16]),
        pitch=np.array([60, 60]),
        steps_per_beat=4,
        bar_starts=np.array([0, 8]),
    )
    assert muspy_set.groove_consistency(two_bars.start, two_bars.bar_starts, 16) == 1.0
    # muspy adds a third, empty bar: one onset differs from bar 2 to bar 3
    assert muspy.groove_consistency(_muspy_music(two_bars), 8) == pytest.approx(1 - 1 / 16)


def test_shuffled_bars_raise_tonal_distance(chorale_pieces):
    """MuseGAN's sanity check: shuffling the accompaniment's bars against the melody must make
    melody and harmony fit worse, so TD rises."""
    params = EvaluateParams()
    rng = np.random.default_rng(0)
    td = np.nanmean([piece_metrics(p, params)["tonal_distance"] for p in chorale_pieces])
    shuffled = np.nanmean([piece_metrics(p, params, rng)["tonal_distance"] for p in chorale_pieces])
    assert shuffled > td * 1.05
