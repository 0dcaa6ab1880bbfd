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

Structural checks (issue #17), because a number computed from a silently damaged file is
worse than a rejected file: a file with fewer track chunks than its header declares is cut
short (a hand would be lost), so it is refused, and one with more has every chunk read (the
repair is recorded); a channel event that leans on running status across a SysEx is refused
(symusic drops it); a format-2 file (independent sequences) is refused; a tempo meta event
whose length is not 3 (the parser would read the next event's bytes as the tempo) or a tempo
over `MAX_BPM` is refused;
a key signature outside the standard (|sharps| > 7, mode not 0/1) is ignored and the key is
estimated from the notes, and an invalid time signature is ignored; both are recorded in
`ParsedPiece.repairs`, which the pieces table keeps.

Meter: every time-signature change is kept (`time_signatures`), so that bar lines follow the
music (`cadenza.metrics.bars`); a piece without one is 4/4, the MIDI default.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import symusic

from cadenza.meter import COMMON_TIME, Meter

MAX_FILE_BYTES = 32 << 20  # the largest Lakh / MAESTRO files are ~2 MB; nothing real is near
MAX_BEATS = 100_000.0  # ~8 h at 200 bpm; MAESTRO's longest performance is ~4,000 beats
MAX_BPM = 1_000.0  # faster than any notated music: a corrupt tempo, which would crush seconds
NOTE_ARRAYS = (
    "track",
    "pitch",
    "velocity",
    "onset_beats",
    "duration_beats",
    "onset_s",
    "duration_s",
)


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
    key_signature: tuple[int, int] | None  # (sharps, tonality 0=major 1=minor), if valid
    time_signatures: Meter = COMMON_TIME  # every change, in time order
    repairs: tuple[str, ...] = ()  # what was ignored in the file, for the pieces table


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
            raise RejectedPiece(
                f"file too large for a MIDI file: {size:,} bytes (limit {MAX_FILE_BYTES:,})"
            )
        with open(path, "rb") as fh:
            return fh.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise RejectedPiece(f"unreadable file: {type(err).__name__}: {err}") from err


def check_midi_bytes(data: bytes) -> int:
    """Refuse bytes that are not a well-framed Standard MIDI File, naming what is wrong;
    return the number of track chunks present.

    Why: symusic is C++; checking the framing here means no claimed length ever reaches an
    allocation, whatever the symusic version. Checked: the `MThd` magic, a 6-byte header, a
    format of 0 or 1 (format 2 holds independent sequences, not the parts of one piece),
    ticks per quarter > 0 (SMPTE time is refused: nothing here uses it), and every chunk
    length against the bytes left in the file. Unknown chunk types are allowed (the standard
    says to skip them).
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
    if fmt == 2:  # read as one piece, its sequences would sound at once
        raise RejectedPiece("MIDI format 2 (independent sequences) is not supported")
    if division & 0x8000:
        raise RejectedPiece("SMPTE time division is not supported")
    if division == 0:
        raise RejectedPiece("invalid ticks per quarter: 0")
    declared = int.from_bytes(data[10:12], "big")
    pos, index, tracks = 14, 0, []
    while len(data) - pos >= 8:  # a few trailing padding bytes are common and harmless
        kind, length = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "big")
        left = len(data) - pos - 8
        if length > left:
            raise RejectedPiece(
                f"chunk {index} ({kind!r}) claims {length:,} bytes, but only "
                f"{left:,} are left in the file"
            )
        if kind == b"MTrk":
            tracks.append(data[pos + 8 : pos + 8 + length])
        pos, index = pos + 8 + length, index + 1
    if not tracks:
        raise RejectedPiece("no MTrk chunk in the file")
    if len(tracks) < declared:
        raise RejectedPiece(
            f"truncated file: the header declares {declared} tracks, only {len(tracks)} are present"
        )
    _check_tempo_events(tracks)
    _check_running_status(tracks)
    return len(tracks)


def _check_tempo_events(tracks: list[bytes]) -> None:
    """Refuse a tempo meta event (FF 51) whose length is not 3.

    Why: symusic reads 3 bytes whatever the length says, so a 0-length tempo takes the next
    event's bytes as the tempo. The fast path is a byte search: only when some `FF 51` is
    not followed by 3 are the tracks walked event by event, to tell a real tempo event from
    the same two bytes inside other data (a delta time's 0xFF continuation byte, say). Only the
    tracks holding such a pair are walked.
    """
    for index, track in enumerate(tracks):
        if not _suspect_tempo(track):
            continue
        for kind, length in _meta_events(track):
            if kind == 0x51 and length != 3:
                raise RejectedPiece(
                    f"bad tempo event in track {index}: {length} data bytes "
                    "where the standard says 3"
                )


_SUSPECT_TEMPO = re.compile(rb"\xff\x51(?!\x03)")  # FF 51 not followed by a length of 3


def _check_running_status(tracks: list[bytes]) -> None:
    """Refuse a channel event that follows a SysEx without a status byte of its own.

    Why: the standard says a SysEx cancels running status, and symusic then drops the
    events that lean on it, so a hand's notes would vanish without a word. Only tracks
    holding an F0 or F7 byte can hold a SysEx, so only those are walked."""
    for index, track in enumerate(tracks):
        if b"\xf0" not in track and b"\xf7" not in track:
            continue
        kinds = [kind for kind, _, _ in _events(track)]
        if "no status" in kinds and "sysex" in kinds[: kinds.index("no status")]:
            raise RejectedPiece(
                f"malformed track {index}: a channel event after a SysEx has no status "
                "byte (a SysEx cancels running status)"
            )


def _suspect_tempo(track: bytes) -> bool:
    """Whether some `FF 51` in `track` is not followed by a length byte of 3 (a regex: the
    piano-midi.de files hold thousands of tempo events, too many for a Python loop)."""
    return _SUSPECT_TEMPO.search(track) is not None


def _meta_events(track: bytes) -> list[tuple[int, int]]:
    """(type, length) of every meta event of one track chunk."""
    return [(kind, length) for event, kind, length in _events(track) if event == "meta"]


def _events(track: bytes) -> Iterator[tuple[str, int, int]]:
    """Walk one track chunk's events: ("meta", type, length), ("sysex", F0 or F7, length),
    ("channel", status, 0), and last ("no status", 0, 0) for a data byte that no status
    governs. Running status survives meta events (files rely on it; readers allow it) but
    not a SysEx. A malformed tail ends the walk: symusic judges the rest."""
    pos, status = 0, 0
    try:
        while pos < len(track):
            _, pos = _varlen(track, pos)  # delta time
            byte = track[pos]
            if byte == 0xFF:
                kind = track[pos + 1]
                length, pos = _varlen(track, pos + 2)
                pos += length
                yield "meta", kind, length
            elif byte in (0xF0, 0xF7):
                length, pos = _varlen(track, pos + 1)
                pos += length
                status = 0
                yield "sysex", byte, length
            else:
                if byte & 0x80:
                    status, pos = byte, pos + 1
                elif not status:
                    yield "no status", 0, 0
                    return
                pos += 1 if status & 0xF0 in (0xC0, 0xD0) else 2
                yield "channel", status, 0
    except IndexError:
        return


def _varlen(data: bytes, pos: int) -> tuple[int, int]:
    """A MIDI variable-length quantity at `pos`: (value, position after it)."""
    value = 0
    for _ in range(4):
        byte = data[pos]
        value, pos = (value << 7) | (byte & 0x7F), pos + 1
        if not byte & 0x80:
            break
    return value, pos


def parse_midi(path: Path | str, track_filter: str) -> ParsedPiece:
    data = read_midi_bytes(path)
    try:
        present = check_midi_bytes(data)
    except RejectedPiece as err:
        raise RejectedPiece(f"unreadable MIDI: {err}") from None
    repairs: list[str] = []
    declared = int.from_bytes(data[10:12], "big")
    if present > declared:  # symusic reads only the declared tracks: a hand would be lost
        data = data[:10] + present.to_bytes(2, "big") + data[12:]
        repairs.append(f"the header declares {declared} tracks, {present} are present: all read")
    try:
        score = symusic.core.ScoreTick.from_midi(data)  # what `symusic.Score` builds, typed
    except Exception as err:  # noqa: BLE001 - symusic raises RuntimeError/ValueError freely
        raise RejectedPiece(f"unreadable MIDI: {err}") from err
    for tempo in score.tempos:
        if tempo.mspq <= 0:
            raise RejectedPiece(
                f"invalid tempo: {tempo.mspq} microseconds per quarter at tick {tempo.time}"
            )
        if 60e6 / tempo.mspq > MAX_BPM:
            raise RejectedPiece(
                f"absurd tempo: {60e6 / tempo.mspq:,.0f} bpm at tick "
                f"{tempo.time} (limit {MAX_BPM:,.0f})"
            )
    # symusic types `to` as returning object: the classes it returns for these units
    beats = cast(symusic.core.ScoreQuarter, score.to("quarter"))
    seconds = cast(symusic.core.ScoreSecond, score.to("second"))
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
        raise RejectedPiece(
            f"no notes in the kept tracks ({len(score.tracks)} tracks in file)", stage="filter"
        )
    notes = {name: np.concatenate(arrays) for name, arrays in parts.items()}
    _check_times(notes)
    key_sig = None
    if len(beats.key_signatures):
        ks = beats.key_signatures[0]
        if abs(ks.key) <= 7 and ks.tonality in (0, 1):
            key_sig = (int(ks.key), int(ks.tonality))
        else:
            repairs.append(
                f"invalid key signature ({ks.key} sharps, mode {ks.tonality}) "
                "ignored: key estimated from the notes"
            )
    meter, bad = time_signatures(beats.time_signatures)
    if bad:
        repairs.append(f"{bad} invalid time signature(s) ignored")
    return ParsedPiece(
        notes=notes, key_signature=key_sig, time_signatures=meter, repairs=tuple(repairs)
    )


def time_signatures(events) -> tuple[Meter, int]:
    """Every valid time-signature change (numerator 1..64, denominator a power of two up to
    64), the last one at a given time winning, and the number ignored. 4/4 until the first
    one, as the MIDI standard says."""
    meter: dict[float, tuple[int, int]] = {0.0: (4, 4)}
    bad = 0
    for ts in events:
        num, den = int(ts.numerator), int(ts.denominator)
        if not (0 < num <= 64 and 0 < den <= 64 and den & (den - 1) == 0):
            bad += 1
            continue
        meter[max(float(ts.time), 0.0)] = (num, den)
    return tuple((at, num, den) for at, (num, den) in sorted(meter.items())), bad


def _check_times(notes: dict[str, np.ndarray]) -> None:
    """Refuse times that no later stage can use (see the module docstring for why)."""
    for name in ("onset_beats", "duration_beats", "onset_s", "duration_s"):
        if not np.all(np.isfinite(notes[name])):
            raise RejectedPiece(f"non-finite note times ({name})")
    if notes["onset_beats"].min() < 0 or notes["onset_s"].min() < 0:
        raise RejectedPiece("negative note onset: times overflowed 2^31 ticks (huge delta times)")
    if notes["duration_beats"].min() < 0 or notes["duration_s"].min() < 0:
        raise RejectedPiece("negative note duration")
    end = float((notes["onset_beats"] + notes["duration_beats"]).max())
    if end > MAX_BEATS:
        raise RejectedPiece(
            f"piece lasts {end:,.0f} beats (limit {MAX_BEATS:,.0f}): a huge delta time?"
        )
