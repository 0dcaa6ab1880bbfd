"""The papers' own token variants (issue #17): paper 002's `<next>` after each note or chord
event, paper 003's MIDI-message tokens and paper 001's filter of unacceptable durations. Every
expected token list is written out by hand."""

import logging

import numpy as np
import pytest

from cadenza.config import ParamsError, TokenParams, from_dict, load_params
from cadenza.representations.tokens import (
    NEXT,
    decode,
    drop_unacceptable,
    encode,
    unacceptable_durations,
)
from cadenza.testing.checkout import ROOT

PAPER_001 = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0]


def piece(onset, duration, pitch, track=None) -> dict:
    """The prepared columns of one piece at 120 bpm (half a second per beat)."""
    onset, duration = np.asarray(onset, dtype=float), np.asarray(duration, dtype=float)
    out = {
        "onset_beats": onset,
        "duration_beats": duration,
        "pitch": np.asarray(pitch),
        "onset_s": onset / 2,
        "duration_s": duration / 2,
        "velocity": np.full(len(onset), 80),
    }
    if track is not None:
        out["track"] = np.asarray(track)
    return out


def _sorted(notes):
    onset, dur, pitch = (np.asarray(a, dtype=float) for a in notes)
    order = np.lexsort((pitch, onset))
    return onset[order], dur[order], pitch[order]


# (onset, duration, pitch) in beats, on an eighth-note grid
NOTES = piece([0, 0, 0, 1, 1.5, 2, 4], [1, 2, 1, 0.5, 0.5, 1, 0.5], [60, 48, 64, 62, 64, 67, 72])


# --------------------------------------------------------------------------- paper 002


def test_pitch_next_event_puts_next_after_each_note_or_chord_like_paper_002():
    params = TokenParams(scheme="pitch_next", steps_per_beat=2, next_after="event")
    tokens = encode(NOTES, params)
    # 60 and 64 share onset and end: one chord; 48 starts with them but ends later: its own
    # element, as music21 parses it; the silent steps 6-7 give no token
    assert tokens == ["60", "64", NEXT, "48", NEXT, "62", NEXT, "64", NEXT, "67", NEXT, "72", NEXT]
    # decoded one event per step (an 8th here), legato; the last note lasts a beat
    onset, dur, pitch = _sorted(decode(tokens, params))
    assert list(onset) == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    assert list(pitch) == [60, 64, 48, 62, 64, 67, 72]
    assert list(dur) == [0.5] * 6 + [1.0]


def test_pitch_next_step_keeps_a_next_per_grid_step():
    params = TokenParams(scheme="pitch_next", steps_per_beat=2)  # the default: next_after step
    assert encode(NOTES, params) == [
        "48",
        "60",
        "64",
        NEXT,
        NEXT,
        "62",
        NEXT,
        "64",
        NEXT,
        "67",
        NEXT,
        NEXT,
        NEXT,
        NEXT,
        "72",
        NEXT,
    ]


def test_pitch_next_event_chords_one_track_at_a_time():
    params = TokenParams(scheme="pitch_next", steps_per_beat=4, next_after="event")
    two_tracks = piece([0, 0, 0, 1], [1, 1, 1, 1], [60, 64, 48, 62], track=[0, 0, 1, 0])
    assert encode(two_tracks, params) == ["60", "64", NEXT, "48", NEXT, "62", NEXT]
    del two_tracks["track"]  # without the column all notes are one track
    assert encode(two_tracks, params) == ["48", "60", "64", NEXT, "62", NEXT]


# --------------------------------------------------------------------------- paper 003


def test_midi_message_tokens_are_the_papers_example():
    params = TokenParams(scheme="midi_message")
    assert encode(piece([0], [1], [60]), params) == ["note-on-60-0", "note-off-60-480"]


def test_midi_message_round_trip_with_tick_deltas_and_waits():
    params = TokenParams(scheme="midi_message", ticks_per_beat=480, max_delta_ticks=1920)
    notes = piece([0, 0, 1, 6.5], [1, 0.5, 0.25, 1], [60, 64, 62, 67])
    tokens = encode(notes, params)
    assert tokens == [
        "note-on-60-0",
        "note-on-64-0",
        "note-off-64-240",
        "note-off-60-240",
        "note-on-62-0",
        "note-off-62-120",
        "wait-1920",
        "note-on-67-600",  # 2,520 ticks: 1,920 + 600
        "note-off-67-480",
    ]
    for a, b in zip(
        _sorted(decode(tokens, params)),
        _sorted((notes["onset_beats"], notes["duration_beats"], notes["pitch"])),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)


def test_midi_message_round_trip_is_exact_within_a_tick():
    params = TokenParams(scheme="midi_message", ticks_per_beat=480)
    # a triplet, a note 0.4 tick off the grid, a re-struck pitch after a gap
    onset = np.array([0, 1 / 3, 2 / 3, 1.0008, 3.0, 4.0])
    dur = np.array([1 / 3, 1 / 3, 1 / 3, 0.5, 0.5, 1.0])
    pitch = np.array([60, 62, 64, 65, 60, 60])
    tokens = encode(piece(onset, dur, pitch), params)
    assert tokens[:4] == ["note-on-60-0", "note-off-60-160", "note-on-62-0", "note-off-62-160"]
    got = _sorted(decode(tokens, params))
    for a, b in zip(got, _sorted((onset, dur, pitch)), strict=True):
        np.testing.assert_allclose(a, b, atol=0.5 / 480)


def test_midi_message_vocabulary_is_bounded_by_the_delta_cap():
    params = TokenParams(scheme="midi_message", ticks_per_beat=4, max_delta_ticks=3)
    tokens = encode(piece([0, 3], [0.25, 0.25], [60, 61]), params)
    # off at tick 1; on at tick 12 = 11 ticks later = 3 + 3 + 3 + 2
    assert tokens == [
        "note-on-60-0",
        "note-off-60-1",
        "wait-3",
        "wait-3",
        "wait-3",
        "note-on-61-2",
        "note-off-61-1",
    ]
    assert list(decode(tokens, params)[0]) == [0.0, 3.0]


def test_midi_message_concatenates_tracks_like_paper_003():
    params = TokenParams(scheme="midi_message", midi_tracks="concat")
    two_tracks = piece([0, 0], [1, 1], [60, 48], track=[0, 1])
    tokens = encode(two_tracks, params)
    assert tokens == ["note-on-60-0", "note-off-60-480", "note-on-48-0", "note-off-48-480"]
    onset, dur, pitch = decode(tokens, params)  # the tracks play one after the other
    assert list(onset) == [0.0, 1.0] and list(dur) == [1.0, 1.0] and list(pitch) == [60, 48]
    del two_tracks["track"]
    with pytest.raises(ValueError, match="midi_tracks: concat needs the prepared `track`"):
        encode(two_tracks, params)


def test_midi_message_decode_skips_malformed_tokens():
    params = TokenParams(scheme="midi_message")
    tokens = [
        "note-on-60-0",
        "note-on-200-5",
        "note-on-x-1",
        "wait-y",
        "shift_10",
        "note-off-60-480",
        "<eos>",
        "note-on-61-0",
    ]
    onset, dur, pitch = decode(tokens, params)
    assert list(onset) == [0.0] and list(dur) == [1.0] and list(pitch) == [60]


# --------------------------------------------------------------------------- paper 001

# 1 + 0.5 + 2.5 (tied notes: no written note lasts 2.5 beats), a rest of 0.5, then 1.5
GOOD = piece([0, 1, 1.5, 4.5], [1, 0.5, 2.5, 1.5], [60, 62, 64, 65])
# a double-dotted quarter (1.75), a triplet (1/3), a dotted whole (6) and a rest of 1/6 beat
BAD = piece([0, 1.75, 1.75 + 1 / 3, 2.5], [1.75, 1 / 3, 0.25, 6], [60, 62, 64, 65])


def test_durations_filter_counts_notes_and_rests_like_paper_001():
    assert unacceptable_durations(GOOD, PAPER_001) == 0
    assert unacceptable_durations(BAD, PAPER_001) == 4
    assert unacceptable_durations(BAD, []) == 0
    eighths = piece([0, 0.5, 1.25], [0.5, 0.5, 0.5], [60, 62, 64])  # a 16th rest at 1.0
    assert unacceptable_durations(eighths, [0.5, 1.0]) == 1  # not a multiple of 0.5


def test_durations_filter_drops_whole_pieces_and_logs_the_counts(caplog):
    params = TokenParams(scheme="melody", steps_per_beat=4, durations=PAPER_001)
    unfiltered = TokenParams(scheme="melody", steps_per_beat=4)
    assert encode(GOOD, params) == encode(GOOD, unfiltered)
    assert encode(GOOD, params)[:7] == ["60", "_", "_", "_", "62", "_", "64"]
    with caplog.at_level(logging.INFO, logger="cadenza.representations.tokens"):
        kept = drop_unacceptable({"a": GOOD, "b": BAD}, params)
    assert list(kept) == ["a"]
    assert "dropped 1 of 2 pieces, 4 of 8 notes (4 notes or rests rejected" in caplog.text
    pieces = {"a": GOOD, "b": BAD}
    assert drop_unacceptable(pieces, unfiltered) is pieces


def test_durations_filter_keeps_a_split_it_would_empty(caplog):
    """Performed MIDI (MAESTRO) fails the notated-durations filter on every piece: the
    split is kept unfiltered, with a warning, rather than leaving the model no data."""
    params = TokenParams(scheme="melody", steps_per_beat=4, durations=PAPER_001)
    with caplog.at_level(logging.WARNING, logger="cadenza.representations.tokens"):
        kept = drop_unacceptable({"b": BAD, "c": BAD}, params)
    assert list(kept) == ["b", "c"]
    assert "would drop all 2 pieces" in caplog.text


# --------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (
            {"scheme": "pitch_next", "next_after": "bar"},
            "m.tokens.next_after: must be one of ['step', 'event'], got str 'bar'",
        ),
        (
            {"scheme": "chord", "next_after": "event"},
            "m.tokens.next_after: applies to the pitch_next scheme only, not chord",
        ),
        ({"scheme": "midi_message", "ticks_per_beat": 0}, "m.tokens.ticks_per_beat: must be >= 1"),
        (
            {"scheme": "midi_message", "max_delta_ticks": 0},
            "m.tokens.max_delta_ticks: must be >= 1",
        ),
        (
            {"scheme": "midi_message", "midi_tracks": "zip"},
            "m.tokens.midi_tracks: must be one of ['merge', 'concat'], got str 'zip'",
        ),
        (
            {"scheme": "event", "midi_tracks": "concat"},
            "m.tokens.midi_tracks: applies to the midi_message scheme only, not event",
        ),
        (  # each field another scheme reads is refused, not silently ignored
            {"scheme": "chord", "velocity_bins": 16},
            "m.tokens.velocity_bins: applies to the event scheme only, not chord",
        ),
        (
            {"scheme": "melody", "max_polyphony": 2},
            "m.tokens.max_polyphony: applies to the chord scheme only, not melody",
        ),
        (
            {"scheme": "event", "steps_per_beat": 4},
            "m.tokens.steps_per_beat: applies to the chord / pitch_next / melody / lowest "
            "schemes only, not event",
        ),
        (
            {"scheme": "pitch_next", "max_delta_ticks": 960},
            "m.tokens.max_delta_ticks: applies to the midi_message scheme only, not pitch_next",
        ),
        (
            {"scheme": "melody", "durations": [0.5, -1]},
            "m.tokens.durations: every duration must be > 0",
        ),
        (
            {"scheme": "melody", "durations": [0.5, 0.5]},
            "m.tokens.durations: must not repeat a duration",
        ),
        ({"scheme": "melody", "durations": 0.5}, "m.tokens.durations: expected a list"),
        ({"scheme": "melody", "durations": ["half"]}, "m.tokens.durations[0]: expected a number"),
        ({"scheme": "midi"}, "m.tokens.scheme: must be one of"),
    ],
)
def test_bad_token_params_name_the_key(tokens, message):
    with pytest.raises(ParamsError) as err:
        from_dict(TokenParams, tokens, "m.tokens")
    assert message in str(err.value)


def test_shipped_models_use_the_papers_variants():
    models = load_params(ROOT / "params.yaml").models
    assert models["pitch_next_lstm"].tokens.next_after == "event"  # paper 002
    assert models["event_lstm"].tokens.scheme == "midi_message"  # paper 003
    assert models["event_lstm"].tokens.ticks_per_beat == 480
    assert models["untrained"].tokens == models["event_lstm"].tokens  # its MIDI baseline
    assert models["untrained"].train.epochs == 0
    assert models["folk_lstm"].tokens.durations == PAPER_001  # paper 001
    assert models["transformer"].tokens.scheme == "event"  # Performance RNN stays


def test_token_params_built_in_code_check_the_new_choices_too():
    with pytest.raises(ValueError, match="must be one of"):
        TokenParams(scheme="pitch_next", next_after="bar")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be one of"):
        TokenParams(scheme="midi_message", midi_tracks="zip")  # type: ignore[arg-type]
