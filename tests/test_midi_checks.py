"""Structural MIDI checks (issue #17): a damaged file is refused or repaired, with a reason.

Each case is a hand-built Standard MIDI File, so the damage is exactly the one named; the
real-data case cuts a piano-midi.de file exactly at a track boundary.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from cadenza.config import PrepareParams
from cadenza.prepare.parse import RejectedPiece, parse_midi
from cadenza.prepare.stage import encode_piece
from cadenza.testing.checkout import SHARED

NOTES = [
    b"\x00\x90\x3c\x40",
    b"\x83\x60\x80\x3c\x40",
    b"\x00\x90\x40\x40",
    b"\x83\x60\x80\x40\x40",
] * 3  # 6 quarter notes C, E, C, ... at 480 tpq


def track(*events: bytes) -> bytes:
    body = b"".join(events) + b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(body)) + body


def midi(*tracks: bytes, declared: int | None = None) -> bytes:
    n = len(tracks) if declared is None else declared
    return b"MThd" + struct.pack(">IHHH", 6, 1, n, 480) + b"".join(tracks)


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "x.mid"
    path.write_bytes(data)
    return path


def test_fewer_tracks_than_the_header_declares_is_refused(tmp_path):
    data = midi(track(*NOTES), declared=2)
    with pytest.raises(RejectedPiece, match="declares 2 tracks, only 1 are present"):
        parse_midi(write(tmp_path, data), "all")
    assert len(parse_midi(write(tmp_path, midi(track(*NOTES))), "all").notes["pitch"]) == 6


@pytest.mark.parametrize("declared", [0, 1])
def test_more_tracks_than_the_header_declares_are_all_read(tmp_path, declared):
    # right hand and left hand in two chunks under a header that declares fewer: symusic
    # would read only the declared ones (and none for 0), so a hand would vanish
    left = [bytes([e[0], *e[1:-2], e[-2] - 24, e[-1]]) for e in NOTES]  # an octave lower
    parsed = parse_midi(
        write(tmp_path, midi(track(*NOTES), track(*left), declared=declared)), "all"
    )
    assert sorted(set(parsed.notes["pitch"].tolist())) == [36, 40, 60, 64]
    assert len(parsed.notes["pitch"]) == 12
    assert parsed.repairs == (f"the header declares {declared} tracks, 2 are present: all read",)


def test_running_status_across_a_sysex_is_refused(tmp_path):
    # a GM reset SysEx, then note events with no status byte: the SysEx cancelled the 0x90
    # running status, and symusic drops what follows
    sysex = b"\x00\xf0\x05\x7e\x7f\x09\x01\xf7"
    bare = [b"\x00\x3c\x40", b"\x83\x60\x3c\x00"] * 5  # note on / off by running status
    data = midi(track(b"\x00\x90\x3c\x40", b"\x83\x60\x3c\x00", sysex, *bare))
    with pytest.raises(RejectedPiece, match="a SysEx cancels running status"):
        parse_midi(write(tmp_path, data), "all")
    # the same with a status byte after the SysEx is fine, as is running status elsewhere
    restated = [b"\x00\x90\x3c\x40", *bare[1:]]  # the first event after it names 0x90
    fixed = midi(track(b"\x00\x90\x3c\x40", b"\x83\x60\x3c\x00", sysex, *restated))
    assert len(parse_midi(write(tmp_path, fixed), "all").notes["pitch"]) == 6


def chunk_ends(data: bytes) -> list[int]:
    """The offset just past each chunk of a MIDI file."""
    ends, pos = [], 14
    while pos + 8 <= len(data):
        pos += 8 + struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        ends.append(pos)
    return ends


def test_a_real_file_cut_at_a_track_boundary_is_refused(tmp_path):
    folder = SHARED / "datasets" / "piano-midi.de" / "midis"
    if not folder.exists():
        pytest.skip(f"{folder} is absent (../shared/datasets not beside the checkout)")
    data = next(
        d
        for d in (p.read_bytes() for p in sorted(folder.glob("*/*.mid")))
        if len(chunk_ends(d)) >= 3
    )
    n = len(chunk_ends(data))
    assert parse_midi(write(tmp_path, data), "all")  # whole: fine
    with pytest.raises(RejectedPiece, match=f"declares {n} tracks, only {n - 1} are present"):
        parse_midi(write(tmp_path, data[: chunk_ends(data)[-2]]), "all")


def test_invalid_key_signature_is_ignored_and_recorded(tmp_path):
    data = midi(track(b"\x00\xff\x59\x02\x7f\x05", *NOTES))  # 127 sharps, mode 5
    parsed = parse_midi(write(tmp_path, data), "all")
    assert parsed.key_signature is None
    assert parsed.repairs == (
        "invalid key signature (127 sharps, mode 5) ignored: key estimated from the notes",
    )
    piece, _, _ = encode_piece(parsed, "x", "train", PrepareParams(min_notes=1))
    assert piece["key_method"] == "krumhansl"
    assert piece["repairs"].startswith("invalid key signature")
    good = parse_midi(write(tmp_path, midi(track(b"\x00\xff\x59\x02\x01\x00", *NOTES))), "all")
    assert good.key_signature == (1, 0) and good.repairs == ()


def test_zero_length_tempo_is_refused(tmp_path):
    # symusic would read the next event's bytes (00 90 3c) as 36,924 us per quarter
    data = midi(track(b"\x00\xff\x51\x00", *NOTES))
    with pytest.raises(RejectedPiece, match="bad tempo event in track 0: 0 data bytes"):
        parse_midi(write(tmp_path, data), "all")


def test_absurd_tempo_is_refused(tmp_path):
    data = midi(track(b"\x00\xff\x51\x03\x00\x00\x64", *NOTES))  # 100 us per quarter
    with pytest.raises(RejectedPiece, match="absurd tempo: 600,000 bpm"):
        parse_midi(write(tmp_path, data), "all")


def test_tempo_bytes_inside_text_are_not_a_tempo_event(tmp_path):
    # a text event whose payload holds FF 51 00: the fast byte search sees a candidate, the
    # event walk shows it is text, and the file is kept
    data = midi(track(b"\x00\xff\x01\x03\xff\x51\x00", b"\x00\xff\x51\x03\x07\xa1\x20", *NOTES))
    assert len(parse_midi(write(tmp_path, data), "all").notes["pitch"]) == 6


def test_invalid_time_signature_is_ignored_and_recorded(tmp_path):
    data = midi(
        track(
            b"\x00\xff\x58\x04\x00\x02\x18\x08",  # numerator 0
            b"\x00\xff\x58\x04\x03\x03\x18\x08",
            *NOTES,
        )
    )  # 3/8
    parsed = parse_midi(write(tmp_path, data), "all")
    assert parsed.time_signatures == ((0.0, 3, 8),)
    assert parsed.repairs == ("1 invalid time signature(s) ignored",)
