import numpy as np
import pytest

from cadenza.config import TokenParams
from cadenza.representations.rolls import (
    notes_to_roll,
    roll_runs,
    roll_to_notes,
    sounding_counts,
    steps_to_roll,
)
from cadenza.representations.tokens import (
    EOS,
    NEXT,
    REST,
    UNK,
    build_vocab,
    decode,
    encode,
    to_ids,
)

# (onset, duration, pitch) in beats; on an eighth-note grid; no pitch re-struck without a gap
NOTES = (
    np.array([0.0, 0.0, 0.0, 1.0, 1.5, 2.0, 4.0]),
    np.array([1.0, 2.0, 1.0, 0.5, 0.5, 1.0, 0.5]),
    np.array([60, 48, 64, 62, 64, 67, 72]),
)


def piece(notes, velocity=80) -> dict:
    """The prepared columns of one piece at 120 bpm (half a second per beat)."""
    onset, duration, pitch = notes
    return {
        "onset_beats": onset,
        "duration_beats": duration,
        "pitch": pitch,
        "onset_s": onset / 2,
        "duration_s": duration / 2,
        "velocity": np.full(len(pitch), velocity),
    }


def _sorted(notes):
    onset, dur, pitch = (np.asarray(a, dtype=float) for a in notes)
    order = np.lexsort((pitch, onset))
    return onset[order], dur[order], pitch[order]


def test_roll_round_trip_is_exact_on_the_grid():
    roll = notes_to_roll(*NOTES, steps_per_beat=2)
    assert roll.shape == (9, 128)
    assert roll[0, [48, 60, 64]].all() and not roll[2, 60] and roll[3, 48]
    pitch, start, end = roll_runs(*NOTES, steps_per_beat=2)
    assert (steps_to_roll(start, end, pitch, len(roll)) == roll).all()
    for a, b in zip(_sorted(roll_to_notes(roll, 2)), _sorted(NOTES), strict=True):
        np.testing.assert_array_equal(a, b)


def test_short_note_keeps_one_step():
    roll = notes_to_roll(np.array([0.0]), np.array([0.01]), np.array([60]), 4)
    assert roll.sum() == 1


def test_chord_tokens_round_trip():
    params = TokenParams(scheme="chord", steps_per_beat=2)
    tokens = encode(piece(NOTES), params)
    assert tokens[:4] == ["48-60-64", "48-60-64", "48-62", "48-64"]
    assert tokens[6] == REST
    for a, b in zip(_sorted(decode(tokens, params)), _sorted(NOTES), strict=True):
        np.testing.assert_array_equal(a, b)


def test_chord_tokens_cap_polyphony_like_paper_003():
    notes = (np.zeros(6), np.ones(6), np.array([48, 52, 55, 60, 64, 67]))
    params = TokenParams(scheme="chord", steps_per_beat=1, max_polyphony=4)
    (token,) = encode(piece(notes), params, seed=1)
    kept = [int(p) for p in token.split("-")]
    assert len(kept) == 3 and set(kept) <= {48, 52, 55, 60, 64, 67}
    assert encode(piece(notes), params, seed=1) == [token]  # reproducible


def test_pitch_next_round_trip_onsets_and_pitches():
    params = TokenParams(scheme="pitch_next", steps_per_beat=2)
    tokens = encode(piece(NOTES), params)
    assert tokens[:5] == ["48", "60", "64", NEXT, NEXT]
    assert tokens.count(NEXT) == 9  # one per step up to the last onset (step 8)
    onset, dur, pitch = _sorted(decode(tokens, params))
    ref_onset, _, ref_pitch = _sorted(NOTES)
    np.testing.assert_array_equal(onset, ref_onset)
    np.testing.assert_array_equal(pitch, ref_pitch)
    # legato durations: until the next onset step, one beat for the last
    np.testing.assert_array_equal(dur[:3], [1.0, 1.0, 1.0])
    assert dur[-1] == 1.0


def test_decode_skips_garbage_and_stops_at_eos():
    params = TokenParams(scheme="chord", steps_per_beat=1)
    onset, _, pitch = decode(["60", UNK, "x-61", "200", "62", EOS, "64"], params)
    assert list(pitch) == [60, 61, 62]
    assert list(onset) == [0.0, 2.0, 4.0]


@pytest.mark.parametrize("scheme", ["chord", "pitch_next"])
def test_vocab_and_ids(scheme):
    params = TokenParams(scheme=scheme, steps_per_beat=2)
    seq = encode(piece(NOTES), params)
    vocab = build_vocab([seq], min_count=1)
    assert vocab[:3] == ["<pad>", UNK, EOS]
    ids = to_ids([seq, ["never-seen"]], vocab)
    assert [vocab[i] for i in ids[: len(seq)]] == seq
    assert [vocab[i] for i in ids[len(seq) :]] == [EOS, UNK, EOS]


def test_roll_runs_merge_overlaps_like_the_dense_roll():
    rng = np.random.default_rng(3)
    onset = rng.integers(0, 64, 300) / 4
    duration = rng.integers(1, 12, 300) / 4
    pitch = rng.integers(40, 50, 300)  # few pitches: many overlapping and touching notes
    pitch_r, start, end = roll_runs(onset, duration, pitch, 4)
    dense = notes_to_roll(onset, duration, pitch, 4)
    assert (steps_to_roll(start, end, pitch_r, len(dense)) == dense).all()
    # runs are maximal: two runs of one pitch never touch
    same = pitch_r[1:] == pitch_r[:-1]
    assert (start[1:][same] > end[:-1][same]).all()


def test_sounding_counts_are_the_row_sums_of_the_roll():
    rng = np.random.default_rng(3)
    start = rng.integers(0, 50, 200)
    end = start + rng.integers(1, 10, 200)
    pitch = rng.integers(40, 50, 200)  # many overlaps of one pitch
    roll = steps_to_roll(start, end, pitch)
    assert (sounding_counts(start, end, pitch) == roll.sum(axis=1)).all()


def test_melody_tokens_follow_the_top_voice_like_paper_001():
    params = TokenParams(scheme="melody", steps_per_beat=2)
    tokens = encode(piece(NOTES), params)
    # step 0: 64 starts (the highest of the chord), held to step 1; 62 at step 2; ...
    assert tokens[:6] == ["64", "_", "62", "64", "67", "_"]
    assert tokens[6:] == ["r", "r", "72"]
    onset, dur, pitch = decode(tokens, params)
    assert list(pitch) == [64, 62, 64, 67, 72]
    assert list(onset) == [0.0, 1.0, 1.5, 2.0, 4.0] and list(dur) == [1.0, 0.5, 0.5, 1.0, 0.5]


def test_lowest_tokens_keep_the_lowest_sounding_note_like_paper_000():
    params = TokenParams(scheme="lowest", steps_per_beat=2)
    tokens = encode(piece(NOTES), params)
    assert tokens == ["48"] * 4 + ["67", "67", REST, REST, "72"]
    onset, dur, pitch = decode(tokens, params)
    assert list(pitch) == [48, 67, 72] and list(dur) == [2.0, 1.0, 0.5]


def test_event_tokens_round_trip_performance_rnn_style():
    params = TokenParams(scheme="event", velocity_bins=32)
    tokens = encode(piece(NOTES, velocity=100), params)
    assert tokens[:4] == ["vel_25", "on_48", "on_60", "on_64"]  # 100 * 32 // 128 = 25
    assert "shift_50" in tokens and all(
        int(t.split("_")[1]) <= 100 for t in tokens if t.startswith("shift_")
    )
    # seconds at 120 bpm come back as beats: exact on a 10 ms grid
    for a, b in zip(_sorted(decode(tokens, params)), _sorted(NOTES), strict=True):
        np.testing.assert_allclose(a, b)


def test_vocab_keeps_the_most_frequent_tokens_up_to_max_size():
    seqs = [["c", "a", "b", "a", "c", "a", "d"]]
    assert build_vocab(seqs, 1) == ["<pad>", "<unk>", "<eos>", "a", "c", "b", "d"]
    assert build_vocab(seqs, 1, max_size=5) == ["<pad>", "<unk>", "<eos>", "a", "c"]
    assert build_vocab(seqs, 2, max_size=50) == ["<pad>", "<unk>", "<eos>", "a", "c"]
