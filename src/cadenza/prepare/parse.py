"""Parse one MIDI file with symusic into note arrays in beats and seconds.

symusic is used because it parses about 100x faster than pretty_midi (see
`../shared/reference/toolchain.md`). Notes stay plain numpy arrays (no per-file DataFrame):
at MAESTRO scale, pandas' per-object overhead would cost more than the parse itself.
A file that symusic refuses, or that has no notes in the kept tracks, raises `RejectedPiece`
with a reason that goes into the rejects table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic

NOTE_ARRAYS = ("track", "pitch", "velocity", "onset_beats", "duration_beats", "onset_s",
               "duration_s")


class RejectedPiece(Exception):
    """The piece cannot be used; `str(err)` is the reason recorded in the rejects table.

    `stage` says why: "prepare" for a broken file, "filter" for a sound file that the
    source's track filter leaves empty (LPD songs with no piano: counted, not errors).
    """

    def __init__(self, reason: str, stage: str = "prepare") -> None:
        super().__init__(reason)
        self.stage = stage


@dataclass(frozen=True)
class ParsedPiece:
    notes: dict[str, np.ndarray]  # NOTE_ARRAYS, all of one length
    key_signature: tuple[int, int] | None  # (sharps, tonality 0=major 1=minor), if present
    beats_per_bar: float  # from the first time signature, 4.0 when there is none


def keep_track(program: int, is_drum: bool, track_filter: str) -> bool:
    """'piano' keeps GM programs 0-7 (the piano family) without drums; 'all' drops only drums."""
    if is_drum:
        return False
    return track_filter == "all" or 0 <= program <= 7


def parse_midi(path: Path | str, track_filter: str) -> ParsedPiece:
    try:
        score = symusic.Score(str(path))
    except Exception as err:  # noqa: BLE001 - symusic raises RuntimeError/ValueError freely
        raise RejectedPiece(f"unreadable MIDI: {err}") from err
    if score.ticks_per_quarter <= 0:
        raise RejectedPiece(f"invalid ticks per quarter: {score.ticks_per_quarter}")
    beats, seconds = score.to("quarter"), score.to("second")
    parts: dict[str, list[np.ndarray]] = {name: [] for name in NOTE_ARRAYS}
    for tb, ts in zip(beats.tracks, seconds.tracks, strict=True):
        if len(tb.notes) == 0 or not keep_track(tb.program, tb.is_drum, track_filter):
            continue
        nb, ns = tb.notes.numpy(), ts.notes.numpy()
        parts["track"].append(np.full(len(nb["pitch"]), len(parts["track"]), dtype=np.int16))
        parts["pitch"].append(nb["pitch"].astype(np.int16))
        parts["velocity"].append(nb["velocity"].astype(np.int16))
        parts["onset_beats"].append(nb["time"].astype(np.float64))
        parts["duration_beats"].append(nb["duration"].astype(np.float64))
        parts["onset_s"].append(ns["time"].astype(np.float64))
        parts["duration_s"].append(ns["duration"].astype(np.float64))
    if not parts["track"]:
        raise RejectedPiece(f"no notes in the kept tracks ({len(score.tracks)} tracks in file)",
                            stage="filter")
    notes = {name: np.concatenate(arrays) for name, arrays in parts.items()}
    key_sig = None
    if len(beats.key_signatures):
        ks = beats.key_signatures[0]
        key_sig = (int(ks.key), int(ks.tonality))
    beats_per_bar = 4.0
    if len(beats.time_signatures):
        ts0 = beats.time_signatures[0]
        if ts0.numerator > 0 and ts0.denominator > 0:
            beats_per_bar = ts0.numerator * 4.0 / ts0.denominator
    return ParsedPiece(notes=notes, key_signature=key_sig, beats_per_bar=beats_per_bar)
