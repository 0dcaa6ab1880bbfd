"""Samples are written at the tempo they were decoded at (issue #17): a seconds-based
model's notes must last, in the MIDI file, the seconds the model produced."""

from __future__ import annotations

import numpy as np
import pytest

from cadenza.config import ModelParams, TokenParams, from_dict
from cadenza.generate import sample_bpm
from cadenza.prepare.parse import parse_midi
from cadenza.representations.midi import write_midi
from cadenza.representations.tokens import decode, encode


def model(family: str, scheme: str | None) -> ModelParams:
    spec = {"family": family, "train": {"epochs": 1}}
    if scheme:
        spec["tokens"] = {"scheme": scheme}
    return from_dict(ModelParams, spec, "models.m")


def test_event_tokens_round_trip_their_seconds_through_the_written_midi(tmp_path):
    # three notes at 0, 0.5 and 1.25 s lasting 0.5, 0.75 and 0.25 s, at an odd tempo (the
    # beats do not matter: the event scheme reads seconds)
    onset_s, duration_s = np.array([0.0, 0.5, 1.25]), np.array([0.5, 0.75, 0.25])
    piece = {
        "pitch": np.array([60, 64, 67]),
        "velocity": np.array([80, 80, 80]),
        "onset_s": onset_s,
        "duration_s": duration_s,
        "onset_beats": onset_s * 1.7,
        "duration_beats": duration_s * 1.7,
        "track": np.zeros(3, int),
    }
    notes = decode(encode(piece, TokenParams(scheme="event")), TokenParams(scheme="event"))
    bpm = sample_bpm(model("transformer", "event"), 100.0)
    assert bpm == 120.0
    write_midi(notes, tmp_path / "s.mid", bpm)
    back = parse_midi(tmp_path / "s.mid", "all").notes
    np.testing.assert_allclose(back["onset_s"], onset_s, atol=0.011)
    np.testing.assert_allclose(back["duration_s"], duration_s, atol=0.011)
    # written at generate.bpm (100), the old behaviour, every second would last 1.2 s
    write_midi(notes, tmp_path / "slow.mid", 100.0)
    slow = parse_midi(tmp_path / "slow.mid", "all").notes
    assert slow["onset_s"][-1] == pytest.approx(1.25 * 1.2, abs=0.02)


@pytest.mark.parametrize(
    ("family", "scheme", "bpm"),
    [
        ("note_rnn", None, 120.0),
        ("note_gan", None, 120.0),
        ("token_lm", "event", 120.0),
        ("token_lm", "chord", 100.0),
        ("roll_lstm", None, 100.0),
    ],
)
def test_only_seconds_based_models_ignore_generate_bpm(family, scheme, bpm):
    assert sample_bpm(model(family, scheme), 100.0) == bpm
