"""Token schemes for language models over music, each with an exact decode where it can be.

* `chord` (seed 003, Huang & Wu): one token per grid step naming the sounding pitches,
  e.g. "60-64-67"; an empty step is "rest". When more than `max_polyphony` pitches sound, the
  paper keeps 3 of them chosen at random; we keep `max_polyphony - 1`, chosen by a seeded RNG
  so that the encoding is reproducible.
* `pitch_next` (seed 002): the pitches whose notes *start* at a step, lowest first, then a
  `<next>` separator that advances time by one step. The paper drops durations; we decode a
  note as lasting until the next onset (legato), which is exact for onsets and pitches.
* `melody` (seed 001, the time-series encoding): one token per 16th step of the top voice:
  the MIDI pitch where a note starts, `_` while it is held, `r` for silence.
* `lowest` (seed 000): one token per step, the lowest sounding pitch or `rest`.
* `event` (Performance RNN, seed 003's event model): `on_<p>`, `off_<p>`, `shift_<k>` (k x 10
  ms, k <= 100) and `vel_<b>` (32 velocity bins), timed in seconds. Decoding reads seconds as
  beats at 120 bpm (`SECONDS_TO_BEATS`), the convention of every seconds-based model here.

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
HOLD, SILENT = "_", "r"
SPECIALS = [PAD, UNK, EOS]
SHIFT_S, MAX_SHIFT = 0.01, 100  # Performance RNN: time shifts of 10 ms, up to 1 s
SECONDS_TO_BEATS = 2.0  # seconds-based schemes decode at 120 bpm

Notes = tuple[np.ndarray, np.ndarray, np.ndarray]  # onset_beats, duration_beats, pitch
Piece = dict[str, np.ndarray]  # the prepared note columns of one piece (NOTE_ARRAYS)


def encode(piece: Piece, params: TokenParams, seed: int = 0) -> list[str]:
    onset, duration, pitch = piece["onset_beats"], piece["duration_beats"], piece["pitch"]
    if params.scheme == "chord":
        return _encode_chord(onset, duration, pitch, params, seed)
    if params.scheme == "pitch_next":
        return _encode_pitch_next(onset, pitch, params)
    if params.scheme == "melody":
        return _encode_melody(onset, duration, pitch, params)
    if params.scheme == "lowest":
        return _encode_lowest(onset, duration, pitch, params)
    return _encode_events(piece, params)


def decode(tokens: Iterable[str], params: TokenParams) -> Notes:
    """Tokens -> notes; special and malformed tokens are skipped, `<eos>` ends the piece."""
    tokens = list(_until_eos(tokens))
    decoders = {"chord": _decode_chord, "pitch_next": _decode_pitch_next,
                "melody": _decode_melody, "lowest": _decode_lowest, "event": _decode_events}
    return decoders[params.scheme](tokens, params)


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


def _encode_melody(onset, duration, pitch, params: TokenParams) -> list[str]:
    start, end = note_steps(onset, duration, params.steps_per_beat)
    if len(start) == 0:
        return []
    order = np.lexsort((-np.asarray(pitch), start))  # per onset step, highest pitch first
    start, end, pitch = start[order], end[order], np.asarray(pitch)[order]
    first = np.r_[True, start[1:] != start[:-1]]  # the top voice: one note per onset step
    start, end, pitch = start[first], end[first], pitch[first]
    tokens = [SILENT] * int(end.max())
    next_start = np.r_[start[1:], np.iinfo(np.int64).max]
    for s, e, p in zip(start.tolist(), np.minimum(end, next_start).tolist(), pitch.tolist(),
                       strict=True):
        tokens[s] = str(p)
        tokens[s + 1 : e] = [HOLD] * (e - s - 1)
    return tokens


def _decode_melody(tokens: list[str], params: TokenParams) -> Notes:
    notes: list[list[int]] = []  # [start, end, pitch]
    held = False
    for t, token in enumerate(tokens):
        if token == HOLD and held:
            notes[-1][1] = t + 1
        elif token.isdigit() and int(token) < 128:
            notes.append([t, t + 1, int(token)])
            held = True
        else:
            held = False
    return _steps_to_notes(notes, params.steps_per_beat)


def _encode_lowest(onset, duration, pitch, params: TokenParams) -> list[str]:
    roll = notes_to_roll(onset, duration, pitch, params.steps_per_beat)
    lowest = np.argmax(roll, axis=1)
    return [str(p) if any_ else REST for p, any_ in zip(lowest.tolist(), roll.any(axis=1),
                                                        strict=True)]


def _decode_lowest(tokens: list[str], params: TokenParams) -> Notes:
    notes: list[list[int]] = []
    for t, token in enumerate(tokens):
        if token.isdigit() and int(token) < 128:
            if notes and notes[-1][1] == t and notes[-1][2] == int(token):
                notes[-1][1] = t + 1  # the same pitch goes on: one held note
            else:
                notes.append([t, t + 1, int(token)])
    return _steps_to_notes(notes, params.steps_per_beat)


def _encode_events(piece: Piece, params: TokenParams) -> list[str]:
    onset = np.rint(np.asarray(piece["onset_s"]) / SHIFT_S).astype(np.int64)
    end = np.maximum(np.rint((piece["onset_s"] + piece["duration_s"]) / SHIFT_S), onset + 1)
    velocity_bin = np.asarray(piece["velocity"], dtype=np.int64) * params.velocity_bins // 128
    # (time, order, kind, value): at one instant, note-offs come before note-ons
    events = sorted([(int(t), 0, "off", int(p)) for t, p in zip(end, piece["pitch"],
                                                                strict=True)]
                    + [(int(t), 1, "on", (int(p), int(v))) for t, p, v in
                       zip(onset, piece["pitch"], velocity_bin, strict=True)])
    tokens, now, velocity = [], 0, -1
    for time, _, kind, value in events:
        while time > now:
            shift = min(time - now, MAX_SHIFT)
            tokens.append(f"shift_{shift}")
            now += shift
        if kind == "off":
            tokens.append(f"off_{value}")
            continue
        pitch, vbin = value
        if vbin != velocity:
            tokens.append(f"vel_{vbin}")
            velocity = vbin
        tokens.append(f"on_{pitch}")
    return tokens


def _decode_events(tokens: list[str], params: TokenParams) -> Notes:
    now, sounding, notes = 0, {}, []
    for token in tokens:
        kind, _, value = token.partition("_")
        if not value.isdigit():
            continue
        if kind == "shift":
            now += int(value)
        elif kind in ("on", "off") and int(value) < 128:
            pitch = int(value)
            if pitch in sounding:  # an off, or a re-strike, ends the sounding note
                notes.append([sounding.pop(pitch), now, pitch])
            if kind == "on":
                sounding[pitch] = now
    notes += [[start, max(now, start + 1), p] for p, start in sounding.items()]
    notes = [n for n in notes if n[1] > n[0]]
    onset, end, pitch = (np.array([n[i] for n in notes], dtype=np.float64) for i in range(3))
    order = np.lexsort((pitch, onset))
    beats = SHIFT_S * SECONDS_TO_BEATS
    return onset[order] * beats, (end - onset)[order] * beats, pitch[order].astype(np.int64)


def _steps_to_notes(notes: list[list[int]], steps_per_beat: int) -> Notes:
    arr = np.array(notes, dtype=np.int64).reshape(-1, 3)
    return (arr[:, 0] / steps_per_beat, (arr[:, 1] - arr[:, 0]) / steps_per_beat, arr[:, 2])


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


def build_vocab(sequences: Iterable[list[str]], min_count: int, max_size: int = 0
                ) -> list[str]:
    """Specials first, then tokens seen >= min_count times, most frequent first (ties by name),
    at most `max_size` in all (0 = no limit): on MAESTRO, chord tokens seen twice number
    80,000, and a softmax that wide costs 3.6 s a batch on a CPU."""
    counts = Counter(t for seq in sequences for t in seq)
    kept = sorted((t for t, c in counts.items() if c >= min_count and t not in SPECIALS),
                  key=lambda t: (-counts[t], t))
    vocab = SPECIALS + kept
    return vocab[:max_size] if max_size else vocab


def to_ids(sequences: Iterable[list[str]], vocab: list[str]) -> np.ndarray:
    """One stream of ids: each piece, then `<eos>`; unknown tokens become `<unk>`."""
    index = {t: i for i, t in enumerate(vocab)}
    unk, eos = index[UNK], index[EOS]
    ids: list[int] = []
    for seq in sequences:
        ids.extend(index.get(t, unk) for t in seq)
        ids.append(eos)
    return np.asarray(ids, dtype=np.int64)
