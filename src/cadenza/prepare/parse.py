"""Parse one MIDI file with symusic into note arrays in beats and seconds.

symusic is used because it parses about 100x faster than pretty_midi (see
`../shared/reference/toolchain.md`). Notes stay plain numpy arrays (no per-file DataFrame):
at MAESTRO scale, pandas' per-object overhead would cost more than the parse itself.
A file that symusic refuses, or that has no notes in the kept tracks, raises `RejectedPiece`
with a reason that goes into the rejects table.

Hostile input (issue #8): files scraped from the web (Lakh) are often broken, and one bad file
must never stop the stage. So before symusic (C++) sees a byte, `check_midi_bytes` walks the
chunk headers and refuses a file whose chunks claim more bytes than it has (a parser that
trusts a length can allocate gigabytes), that is over `MAX_FILE_BYTES`, or that is not MIDI at
all. After the parse, `_check_times` refuses what symusic accepts but no later stage can use:
times that wrapped past 2^31 ticks (negative onsets), a tempo of 0 (every time in seconds
collapses to 0), non-finite times, and pieces longer than `MAX_BEATS` (a huge delta time would
otherwise become a piano roll of millions of steps downstream). `tests/test_fuzz.py` holds the
fuzz harness and the regression cases.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import symusic

MAX_FILE_BYTES = 32 << 20  # the largest Lakh / MAESTRO files are ~2 MB; nothing real is near
MAX_BEATS = 100_000.0  # ~8 h at 200 bpm; MAESTRO's longest performance is ~4,000 beats
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


def read_midi_bytes(path: Path | str) -> bytes:
    """The file's bytes, refusing an oversized file before reading it."""
    try:
        size = Path(path).stat().st_size
        if size > MAX_FILE_BYTES:
            raise RejectedPiece(f"file too large for a MIDI file: {size:,} bytes "
                                f"(limit {MAX_FILE_BYTES:,})")
        with open(path, "rb") as fh:
            return fh.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise RejectedPiece(f"unreadable file: {type(err).__name__}: {err}") from err


def check_midi_bytes(data: bytes) -> None:
    """Refuse bytes that are not a well-framed Standard MIDI File, naming what is wrong.

    Why: symusic is C++; checking the framing here means no claimed length ever reaches an
    allocation, whatever the symusic version. Checked: the `MThd` magic, a 6-byte header, a
    format of 0, 1 or 2, ticks per quarter > 0 (SMPTE time is refused: nothing here uses it),
    and every chunk length against the bytes left in the file. Unknown chunk types are
    allowed (the standard says to skip them).
    """
    if len(data) > MAX_FILE_BYTES:
        raise RejectedPiece(f"file too large for a MIDI file: over {MAX_FILE_BYTES:,} bytes")
    if data[:4] != b"MThd":
        raise RejectedPiece(f"not a MIDI file: starts with {data[:8]!r}, not b'MThd'")
    if len(data) < 14:
        raise RejectedPiece(f"truncated MIDI header: {len(data)} bytes")
    header_len = int.from_bytes(data[4:8], "big")
    if header_len != 6:
        raise RejectedPiece(f"bad MIDI header: MThd length {header_len}, expected 6")
    fmt, division = int.from_bytes(data[8:10], "big"), int.from_bytes(data[12:14], "big")
    if fmt > 2:
        raise RejectedPiece(f"bad MIDI header: format {fmt} (only 0, 1 and 2 exist)")
    if division & 0x8000:
        raise RejectedPiece("SMPTE time division is not supported")
    if division == 0:
        raise RejectedPiece("invalid ticks per quarter: 0")
    pos, index, tracks = 14, 0, 0
    while len(data) - pos >= 8:  # a few trailing padding bytes are common and harmless
        kind, length = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "big")
        left = len(data) - pos - 8
        if length > left:
            raise RejectedPiece(f"chunk {index} ({kind!r}) claims {length:,} bytes, but only "
                                f"{left:,} are left in the file")
        tracks += kind == b"MTrk"
        pos, index = pos + 8 + length, index + 1
    if tracks == 0:
        raise RejectedPiece("no MTrk chunk in the file")


def parse_midi(path: Path | str, track_filter: str) -> ParsedPiece:
    data = read_midi_bytes(path)
    try:
        check_midi_bytes(data)
    except RejectedPiece as err:
        raise RejectedPiece(f"unreadable MIDI: {err}") from None
    try:
        score = symusic.Score.from_midi(data)
    except Exception as err:  # noqa: BLE001 - symusic raises RuntimeError/ValueError freely
        raise RejectedPiece(f"unreadable MIDI: {err}") from err
    for tempo in score.tempos:
        if tempo.mspq <= 0:
            raise RejectedPiece(f"invalid tempo: {tempo.mspq} microseconds per quarter at "
                                f"tick {tempo.time}")
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
    _check_times(notes)
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


def _check_times(notes: dict[str, np.ndarray]) -> None:
    """Refuse times that no later stage can use (see the module docstring for why)."""
    for name in ("onset_beats", "duration_beats", "onset_s", "duration_s"):
        if not np.all(np.isfinite(notes[name])):
            raise RejectedPiece(f"non-finite note times ({name})")
    if notes["onset_beats"].min() < 0 or notes["onset_s"].min() < 0:
        raise RejectedPiece("negative note onset: times overflowed 2^31 ticks "
                            "(huge delta times)")
    if notes["duration_beats"].min() < 0 or notes["duration_s"].min() < 0:
        raise RejectedPiece("negative note duration")
    end = float((notes["onset_beats"] + notes["duration_beats"]).max())
    if end > MAX_BEATS:
        raise RejectedPiece(f"piece lasts {end:,.0f} beats (limit {MAX_BEATS:,.0f}): "
                            "a huge delta time?")
