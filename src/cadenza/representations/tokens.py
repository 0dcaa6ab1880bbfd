"""Token schemes for language models over music, each with an exact decode.

Two schemes from the founding papers, both on a beat grid (`steps_per_beat`):

* `chord` (seed 003, Huang & Wu): one token per grid step naming the sounding pitches,
  e.g. "60-64-67"; an empty step is "rest". When more than `max_polyphony` pitches sound, the
  paper keeps 3 of them chosen at random; we keep `max_polyphony - 1`, chosen by a seeded RNG
  so that the encoding is reproducible.
* `pitch_next` (seed 002): the pitches whose notes *start* at a step, lowest first, then a
  `<next>` separator that advances time by one step. The paper drops durations; we decode a
  note as lasting until the next onset (legato), which is exact for onsets and pitches.

Decoding gives notes as (onset_beats, duration_beats, pitch) arrays. `chord` round-trips a
quantised piece exactly, up to merging a pitch that is re-struck with no gap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import numpy as np

from cadenza.config import TokenParams
from cadenza.representations.rolls import note_steps, notes_to_roll, roll_to_notes

PAD, UNK, EOS, NEXT, REST = "<pad>", "<unk>", "<eos>", "<next>", "rest"
SPECIALS = [PAD, UNK, EOS]

Notes = tuple[np.ndarray, np.ndarray, np.ndarray]  # onset_beats, duration_beats, pitch


def encode(notes: Notes, params: TokenParams, seed: int = 0) -> list[str]:
    onset, duration, pitch = notes
    if params.scheme == "chord":
        return _encode_chord(onset, duration, pitch, params, seed)
    return _encode_pitch_next(onset, pitch, params)


def decode(tokens: Iterable[str], params: TokenParams) -> Notes:
    """Tokens -> notes; special and malformed tokens are skipped, `<eos>` ends the piece."""
    tokens = list(_until_eos(tokens))
    if params.scheme == "chord":
        return _decode_chord(tokens, params)
    return _decode_pitch_next(tokens, params)


def _encode_chord(onset, duration, pitch, params: TokenParams, seed: int) -> list[str]:
    roll = notes_to_roll(onset, duration, pitch, params.steps_per_beat)
    rng = np.random.default_rng(seed)
    tokens = []
    for frame in roll:
        active = np.flatnonzero(frame)
        if len(active) > params.max_polyphony:
            keep = max(params.max_polyphony - 1, 1)
            active = np.sort(rng.choice(active, size=keep, replace=False))
        tokens.append("-".join(map(str, active)) if len(active) else REST)
    return tokens


def _decode_chord(tokens: list[str], params: TokenParams) -> Notes:
    roll = np.zeros((len(tokens), 128), dtype=bool)
    for t, token in enumerate(tokens):
        for p in _pitches(token.split("-")):  # "rest" has no pitch
            roll[t, p] = True
    return roll_to_notes(roll, params.steps_per_beat)


def _encode_pitch_next(onset, pitch, params: TokenParams) -> list[str]:
    start, _ = note_steps(onset, np.zeros_like(onset), params.steps_per_beat)
    if len(start) == 0:
        return []
    tokens = []
    by_step = {}
    for s, p in sorted(zip(start.tolist(), np.asarray(pitch).tolist(), strict=True)):
        by_step.setdefault(s, []).append(p)
    for step in range(int(start.max()) + 1):
        tokens.extend(str(p) for p in dict.fromkeys(by_step.get(step, [])))
        tokens.append(NEXT)
    return tokens


def _decode_pitch_next(tokens: list[str], params: TokenParams) -> Notes:
    step, onsets, pitches = 0, [], []
    for token in tokens:
        if token == NEXT:
            step += 1
        else:
            for p in _pitches([token]):
                onsets.append(step)
                pitches.append(p)
    onsets_arr = np.asarray(onsets, dtype=np.int64)
    onset_steps = np.unique(onsets_arr)
    # legato: a note lasts until the next step that has an onset (one beat for the last one)
    nxt = np.searchsorted(onset_steps, onsets_arr, side="right")
    last = onset_steps[-1] + params.steps_per_beat if len(onset_steps) else 0
    ends = np.where(nxt < len(onset_steps), onset_steps[np.minimum(nxt, len(onset_steps) - 1)],
                    last)
    spb = params.steps_per_beat
    return onsets_arr / spb, (ends - onsets_arr) / spb, np.asarray(pitches, dtype=np.int64)


def _pitches(parts: list[str]) -> list[int]:
    out = []
    for part in parts:
        if part.isdigit() and int(part) < 128:
            out.append(int(part))
    return out


def _until_eos(tokens: Iterable[str]) -> Iterable[str]:
    for token in tokens:
        if token == EOS:
            return
        yield token


# --------------------------------------------------------------------------- vocabulary


def build_vocab(sequences: Iterable[list[str]], min_count: int) -> list[str]:
    """Specials first, then tokens seen >= min_count times, most frequent first (ties by name)."""
    counts = Counter(t for seq in sequences for t in seq)
    kept = sorted((t for t, c in counts.items() if c >= min_count and t not in SPECIALS),
                  key=lambda t: (-counts[t], t))
    return SPECIALS + kept


def to_ids(sequences: Iterable[list[str]], vocab: list[str]) -> np.ndarray:
    """One stream of ids: each piece, then `<eos>`; unknown tokens become `<unk>`."""
    index = {t: i for i, t in enumerate(vocab)}
    unk, eos = index[UNK], index[EOS]
    ids: list[int] = []
    for seq in sequences:
        ids.extend(index.get(t, unk) for t in seq)
        ids.append(eos)
    return np.asarray(ids, dtype=np.int64)
