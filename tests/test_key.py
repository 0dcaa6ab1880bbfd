import numpy as np
import pytest

from cadenza.prepare.key import (
    Key,
    estimate_key,
    key_from_signature,
    krumhansl_schmuckler,
    shift_to_c,
)
from cadenza.prepare.parse import parse_midi
from cadenza.testing.corpora import write_score


@pytest.mark.parametrize(
    ("sharps", "tonality", "name"),
    [
        (0, 0, "C major"),
        (1, 0, "G major"),
        (-3, 0, "Eb major"),
        (3, 1, "F# minor"),
        (-1, 1, "D minor"),
        (0, 1, "A minor"),
    ],
)
def test_key_from_signature(sharps, tonality, name):
    assert key_from_signature(sharps, tonality).name == name


def _scale(tonic: int, steps: list[int], weights: list[float] | None = None):
    pitches = np.array([60 + tonic + s for s in steps])
    return pitches, np.array(weights if weights else [1.0] * len(steps))


def test_krumhansl_finds_d_major():
    pitch, dur = _scale(2, [0, 2, 4, 5, 7, 9, 11, 12, 7, 4, 0], [4, 1, 2, 1, 3, 1, 1, 4, 3, 2, 4])
    assert krumhansl_schmuckler(pitch, dur).name == "D major"


def test_krumhansl_finds_a_minor():
    # A harmonic minor with weight on A, C, E and the leading tone G#
    pitch, dur = _scale(9, [0, 2, 3, 5, 7, 8, 11, 12, 7, 3, 0], [4, 1, 3, 1, 3, 1, 2, 4, 3, 2, 4])
    assert krumhansl_schmuckler(pitch, dur).name == "A minor"


@pytest.mark.parametrize(
    ("key", "shift"),
    [
        (Key(7, "major", "x"), 5),
        (Key(2, "major", "x"), -2),
        (Key(0, "major", "x"), 0),
        (Key(4, "minor", "x"), 5),
        (Key(2, "minor", "x"), -5),
        (Key(9, "minor", "x"), 0),
        (Key(6, "major", "x"), -6),
    ],
)
def test_shift_takes_key_to_c_major_or_a_minor(key, shift):
    assert shift_to_c(key) == shift
    target = 0 if key.mode == "major" else 9
    assert (key.tonic + shift) % 12 == target
    assert -6 <= shift <= 5


def test_signature_wins_over_estimate(tmp_path):
    # notes of D major, but the file declares G major: the declared key is used
    path = write_score(
        tmp_path / "x.mid",
        [[(i, 1, 62 + s) for i, s in enumerate([0, 2, 4, 5, 7, 9, 11, 12])]],
        key_sig=(1, 0),
    )
    parsed = parse_midi(path, "all")
    key = estimate_key(parsed.notes["pitch"], parsed.notes["duration_beats"], parsed.key_signature)
    assert (key.name, key.method) == ("G major", "key_signature")


def test_real_chorale_key_and_transposition(tmp_path):
    """bwv269 is in G major: its key signature has one sharp; transposed, it is in C."""
    from music21 import corpus, midi

    score = corpus.parse("bach/bwv269")
    mf = midi.translate.music21ObjectToMidiFile(score)
    path = tmp_path / "bwv269.mid"
    mf.open(str(path), "wb")
    mf.write()
    mf.close()
    parsed = parse_midi(path, "all")
    key = estimate_key(parsed.notes["pitch"], parsed.notes["duration_beats"], parsed.key_signature)
    assert key.name == "G major"
    # the estimate from the notes alone agrees with the signature
    assert (
        krumhansl_schmuckler(parsed.notes["pitch"], parsed.notes["duration_beats"]).name
        == "G major"
    )
    shifted = parsed.notes["pitch"] + shift_to_c(key)
    assert krumhansl_schmuckler(shifted, parsed.notes["duration_beats"]).name == "C major"
    assert parsed.time_signatures[0][1:] == (3, 4)  # bwv269 is in 3/4
