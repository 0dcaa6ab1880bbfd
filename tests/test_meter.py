"""True bar lines (issue #17): every time-signature change, exact bar lengths on the grid.

Values are computed by hand in the comments; the real-data test checks the bar lines of
piano-midi.de files, many with meter changes and compound meters, against pretty_midi's
`get_downbeats`, an independent implementation.
"""

from __future__ import annotations

import numpy as np
import pytest

from cadenza.config import EvaluateParams
from cadenza.evaluate import on_grid, piece_metrics
from cadenza.meter import (
    COMMON_TIME,
    bar_lines,
    beat_windows,
    format_meter,
    main_meter,
    parse_meter,
)
from cadenza.metrics import musegan, muspy_set, yang_lerch
from cadenza.testing.checkout import SHARED

SPB = 24  # the metric grid


@pytest.mark.parametrize(
    ("num", "den", "steps"),
    [(3, 8, 36), (6, 8, 72), (9, 8, 108), (5, 4, 120), (4, 4, 96), (7, 16, 42)],
)
def test_bar_length_is_exact(num, den, steps):
    # n/d lasts n * 4 / d quarters: 3/8 = 1.5 beats = 36 steps (old rounding: 2 beats)
    starts = bar_lines(((0.0, num, den),), SPB, 3 * steps)
    assert starts.tolist() == [0, steps, 2 * steps]


def test_meter_changes_move_the_bar_lines():
    # 4/4 for one bar (96), 3/4 from beat 4 for one bar (72), 6/8 from beat 7 (72 each)
    meter = ((0.0, 4, 4), (4.0, 3, 4), (7.0, 6, 8))
    assert bar_lines(meter, SPB, 300).tolist() == [0, 96, 168, 240]


def test_a_change_inside_a_bar_starts_a_new_bar():
    # 4/4 at 0, 3/4 at beat 2: the first bar is cut to 2 beats (48 steps)
    assert bar_lines(((0.0, 4, 4), (2.0, 3, 4)), SPB, 200).tolist() == [0, 48, 120, 192]


def test_a_late_change_adds_no_empty_bars_and_a_missing_meter_is_common_time():
    # notes end at step 100: three 2/4 bars (48 steps) cover them; the 3/4 at beat 100 adds none
    assert bar_lines(((0.0, 2, 4), (100.0, 3, 4)), SPB, 100).tolist() == [0, 48, 96]
    assert bar_lines(((4.0, 3, 4),), SPB, 200).tolist() == [0, 96, 168]  # 4/4 until beat 4
    assert bar_lines(COMMON_TIME, SPB, 0).tolist() == [0]


def test_meter_text_round_trips():
    meter = ((0.0, 4, 4), (12.5, 3, 8))
    assert format_meter(meter) == "4/4@0 3/8@12.5"
    assert parse_meter(format_meter(meter)) == meter
    assert parse_meter("") == COMMON_TIME


def test_a_late_change_keeps_its_bar_lines_through_the_text():
    # six significant digits wrote 10000.25 as 10000.2: every later bar line a step early
    meter = ((0.0, 4, 4), (10000.25, 3, 4), (20000.0625, 4, 4))
    assert format_meter(meter) == "4/4@0 3/4@10000.25 4/4@20000.0625"
    n = 20010 * SPB
    assert np.array_equal(
        bar_lines(parse_meter(format_meter(meter)), SPB, n), bar_lines(meter, SPB, n)
    )
    # a float32 tick time keeps its short form (prepared pieces written before stay the same)
    assert format_meter(((0.0, 4, 4), (0.0052083334885537624, 3, 4))) == "4/4@0 3/4@0.00520833"


def test_beats_restart_at_each_bar_line():
    # 3/8 bars of 36 steps: one beat of 24 and a half-beat of 12 in each
    windows, bars = beat_windows(np.array([0, 36, 72]), 108, SPB)
    assert windows.tolist() == [0, 24, 36, 60, 72, 96]
    assert bars.tolist() == [0, 0, 1, 1, 2, 2]


def test_eb_and_upc_in_three_eight():
    # 3/8: bar 1 holds C E G as three 8th notes (12 steps each),
    # bar 2 is silent, bar 3 holds one dotted quarter D. EB = 1/3, UPC = (3 + 1) / 2 = 2.
    # With bars rounded to 2 quarters (48 steps) it would be EB 0 and UPC (3 + 1 + 1) / 3.
    onset = np.array([0.0, 0.5, 1.0, 3.0])
    duration = np.array([0.5, 0.5, 0.5, 1.5])
    pitch = np.array([60, 64, 67, 62])
    p = on_grid((onset, duration, pitch), ((0.0, 3, 8),), SPB)
    assert p.bar_starts.tolist() == [0, 36, 72]
    m = piece_metrics(p, EvaluateParams())
    assert m["empty_bar_ratio"] == pytest.approx(1 / 3)
    assert m["used_pitch_classes"] == pytest.approx(2.0)


def test_tonal_distance_averages_per_true_bar():
    # one 3/8 bar at 2 steps per beat is 3 steps: a beat [0, 2) and a half-beat [2, 3).
    # Beat 1: C against C (0); half-beat 2: C against G (d). TD = (0 + d) / 2.
    d = np.sqrt(3 + (1 - np.sqrt(3) / 2) ** 2)
    a = np.zeros((3, 128), bool)
    b = np.zeros((3, 128), bool)
    a[:, 60] = True
    b[:2, 48] = True
    b[2, 55] = True
    starts = bar_lines(((0.0, 3, 8),), 2, 3)
    assert musegan.tonal_distance(a, b, 2, starts) == pytest.approx(d / 2)


def test_groove_and_notes_per_bar_follow_meter_changes():
    # at 4 steps per beat: a 4/4 bar (16 steps) with onsets 0 4 8 12, then a 3/4 bar
    # (12 steps) with onsets 16 20 24: one position differs (12) over max(16, 12) steps
    start = np.array([0, 4, 8, 12, 16, 20, 24])
    starts = bar_lines(((0.0, 4, 4), (4.0, 3, 4)), 4, 28)
    assert starts.tolist() == [0, 16]
    assert muspy_set.groove_consistency(start, starts, 28) == pytest.approx(1 - 1 / 16)
    p = yang_lerch.PieceNotes(
        start=start, end=start + 4, pitch=np.full(7, 60), steps_per_beat=4, bar_starts=starts
    )
    assert yang_lerch.piece_features(p)["notes_per_bar"][0] == pytest.approx(7 / 2)


def test_shuffled_bars_keep_the_piece_length_with_unequal_bars():
    from cadenza.evaluate import _shuffle_bars

    roll = np.zeros((84, 128), bool)
    roll[np.arange(84), 60 + np.arange(84) % 12] = True
    starts = bar_lines(((0.0, 2, 4), (2.0, 3, 8)), SPB, 84)  # bars of 48 and 36 steps
    out = _shuffle_bars(roll, starts, np.random.default_rng(0))
    assert out.shape == roll.shape and out.sum() == roll.sum()


def test_bar_lines_agree_with_pretty_midi_on_real_files():
    """piano-midi.de: meter changes and 3/8, 6/8, 9/8, 12/8, 5/4 movements. Our bar lines
    (from `parse_midi`'s time signatures) must be pretty_midi's downbeats, bar for bar."""
    import pretty_midi

    from cadenza.prepare.parse import parse_midi

    folder = SHARED / "datasets" / "piano-midi.de" / "midis"
    if not folder.exists():
        pytest.skip(f"{folder} is absent (../shared/datasets not beside the checkout)")
    checked = changing = 0
    for path in sorted(folder.glob("*/*.mid")):
        parsed = parse_midi(path, "piano")
        if len(parsed.time_signatures) < 2 and checked >= 3:
            continue  # every file with a meter change, plus a few with one meter
        n = parsed.notes
        end = int(round(float((n["onset_beats"] + n["duration_beats"]).max()) * SPB))
        ours = bar_lines(parsed.time_signatures, SPB, end) / SPB
        pm = pretty_midi.PrettyMIDI(str(path))
        theirs = np.array([pm.time_to_tick(t) / pm.resolution for t in pm.get_downbeats()])
        theirs = theirs[theirs * SPB < end]
        np.testing.assert_allclose(ours, theirs, atol=1 / SPB, err_msg=path.name)
        checked += 1
        changing += len(parsed.time_signatures) > 1
        if changing >= 12:
            break
    assert changing >= 12, "expected piano-midi.de files with meter changes"


@pytest.mark.parametrize(
    ("score", "meter", "first_bars"),
    [
        # bwv66.6: a quarter-note pickup, then 4/4 bars of 4 beats
        ("music21:bach/bwv66.6", ((0.0, 1, 4), (1.0, 4, 4)), [0, 1, 5, 9]),
        # bwv269: a pickup into 3/4; the expanded repeat plays the pickup bar again at beat 21
        ("music21:bach/bwv269", ((0.0, 1, 4), (1.0, 3, 4), (21.0, 1, 4), (22.0, 3, 4)), [0, 1, 4]),
        # a German folk song of Essen `erk` (**kern): an eighth-note pickup into 2/4
        ("essen/europa/deutschl/erk/deut0567.krn", ((0.0, 1, 8), (0.5, 2, 4)), [0, 0.5, 2.5]),
    ],
)
def test_a_pickup_is_a_short_first_bar(tmp_path, score, meter, first_bars):
    """music21 writes a score's meter at beat 0 and no anacrusis: without the short first
    bar every bar line of a piece that starts with a pickup falls early (bwv66.6's at 4, 8)."""
    from cadenza.prepare.parse import parse_midi
    from cadenza.sources.music21_convert import convert_all

    what = score
    if not score.startswith("music21:"):
        what = str(SHARED / "datasets" / score)
        if not (SHARED / "datasets").exists():
            pytest.skip("../shared/datasets is absent (not beside the checkout)")
    (row,) = convert_all([("piece", what)], tmp_path, 1, "pickup")
    parsed = parse_midi(tmp_path / row["path"], "all")
    assert parsed.time_signatures == meter
    starts = bar_lines(parsed.time_signatures, SPB, 20 * SPB)
    assert (starts[: len(first_bars)] / SPB).tolist() == first_bars
    assert parsed.notes["onset_beats"].min() == 0.0  # the notes did not move


@pytest.mark.parametrize(
    ("meter", "end", "main"),
    [
        (((0.0, 1, 4), (1.0, 3, 4)), 49.0, (3, 4)),  # a pickup loses to the meter after it
        (((0.0, 4, 4), (8.0, 3, 4), (11.0, 4, 4)), 20.0, (4, 4)),  # 8 + 9 beats of 4/4, 3 of 3/4
        (((0.0, 6, 8), (3.0, 2, 4)), 10.0, (2, 4)),  # 3 beats of 6/8, 7 of 2/4
        (((0.0, 3, 4), (6.0, 4, 4)), 12.0, (3, 4)),  # a tie goes to the earlier
        (COMMON_TIME, 0.0, (4, 4)),
    ],
)
def test_main_meter_covers_the_most_beats(meter, end, main):
    """The time signature a sample of the piece is written in (`cadenza.generate`)."""
    assert main_meter(meter, end) == main
