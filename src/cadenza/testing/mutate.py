"""Structured mutations of real MIDI bytes, for the fuzz tests and `bench/robustness.py`.

Why structured: random bit flips mostly break the `MThd` magic and are rejected at byte 0, so
they never reach the deep corners of a parser. These mutators keep the chunk structure and
lie in exactly one place (a chunk length, a delta time, a running status, a header field),
which is where MIDI parsers crash, hang or allocate what a file merely claims.

Every mutator is a plain function `bytes -> bytes` (or a generator of whole files); all
randomness comes from an explicit `random.Random`, so any failing input can be rebuilt from
its seed and stored as a regression case.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable
from pathlib import Path

Chunk = tuple[bytes, bytes]  # (4-byte type, body)

END_OF_TRACK = b"\xff\x2f\x00"


# --------------------------------------------------------------------------- chunk level


def split_chunks(data: bytes) -> tuple[bytes, list[Chunk]]:
    """(MThd body, [(type, body), ...]) of a well-formed file; trailing junk is ignored."""
    if data[:4] != b"MThd":
        raise ValueError("not a MIDI file")
    (hlen,) = struct.unpack(">I", data[4:8])
    header = data[8 : 8 + hlen]
    chunks, pos = [], 8 + hlen
    while pos + 8 <= len(data):
        kind, (length,) = data[pos : pos + 4], struct.unpack(">I", data[pos + 4 : pos + 8])
        chunks.append((kind, data[pos + 8 : pos + 8 + length]))
        pos += 8 + length
    return header, chunks


def join_chunks(
    header: bytes,
    chunks: list[Chunk],
    lengths: dict[int, int] | None = None,
    header_length: int | None = None,
) -> bytes:
    """Inverse of `split_chunks`; `lengths` overrides the declared length of chunk i."""
    lengths = lengths or {}
    out = [
        b"MThd",
        struct.pack(">I", len(header) if header_length is None else header_length),
        header,
    ]
    for i, (kind, body) in enumerate(chunks):
        out += [kind, struct.pack(">I", lengths.get(i, len(body))), body]
    return b"".join(out)


def vlq(value: int) -> bytes:
    """MIDI variable-length quantity (up to 4 bytes for 0..0x0FFFFFFF)."""
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def _tracks(chunks: list[Chunk]) -> list[int]:
    return [i for i, (kind, _) in enumerate(chunks) if kind == b"MTrk"]


def _set_header(
    data: bytes, fmt: int | None = None, ntrks: int | None = None, division: int | None = None
) -> bytes:
    header, chunks = split_chunks(data)
    f, n, d = struct.unpack(">HHH", header[:6])
    header = (
        struct.pack(
            ">HHH",
            f if fmt is None else fmt,
            n if ntrks is None else ntrks,
            d if division is None else division,
        )
        + header[6:]
    )
    return join_chunks(header, chunks)


def _prepend_to_track(data: bytes, events: bytes, track: int = -1) -> bytes:
    """Insert complete events (delta + event bytes) at the start of one track."""
    header, chunks = split_chunks(data)
    index = _tracks(chunks)[track]
    kind, body = chunks[index]
    chunks[index] = (kind, events + body)
    return join_chunks(header, chunks)


def _map_tracks(data: bytes, fn: Callable[[bytes], bytes]) -> bytes:
    header, chunks = split_chunks(data)
    chunks = [(k, fn(b) if k == b"MTrk" else b) for k, b in chunks]
    return join_chunks(header, chunks)


# --------------------------------------------------------------------------- mutators


def bit_flips(data: bytes, rng: random.Random, n: int = 8) -> bytes:
    buf = bytearray(data)
    for _ in range(n):
        i = rng.randrange(len(buf))
        buf[i] ^= 1 << rng.randrange(8)
    return bytes(buf)


def truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(len(data))]


def chunk_length_huge(data: bytes) -> bytes:
    """The last track claims 2 GiB: a parser that trusts it allocates gigabytes."""
    header, chunks = split_chunks(data)
    return join_chunks(header, chunks, {_tracks(chunks)[-1]: 0x7FFFFFFF})


def chunk_length_max(data: bytes) -> bytes:
    header, chunks = split_chunks(data)
    return join_chunks(header, chunks, {_tracks(chunks)[0]: 0xFFFFFFFF})


def chunk_length_short(data: bytes) -> bytes:
    """The first track claims half its length: the rest is read as chunk headers."""
    header, chunks = split_chunks(data)
    first = _tracks(chunks)[0]
    return join_chunks(header, chunks, {first: len(chunks[first][1]) // 2})


def chunk_length_zero(data: bytes) -> bytes:
    header, chunks = split_chunks(data)
    return join_chunks(header, chunks, {i: 0 for i in _tracks(chunks)})


def header_length_huge(data: bytes) -> bytes:
    header, chunks = split_chunks(data)
    return join_chunks(header, chunks, header_length=0x7FFFFFF0)


def header_too_many_tracks(data: bytes) -> bytes:
    return _set_header(data, ntrks=0xFFFF)


def no_end_of_track(data: bytes) -> bytes:
    """Every track ends after its last note, without the end-of-track meta (or its delta)."""

    def strip(body: bytes) -> bytes:
        if not body.endswith(END_OF_TRACK):
            return body
        body = body[:-4]  # the meta and the last byte of its delta time
        while body and body[-1] >= 0x80:  # the delta's continuation bytes
            body = body[:-1]
        return body

    return _map_tracks(data, strip)


def no_end_of_track_then_junk(data: bytes) -> bytes:
    """No end-of-track, and the file ends in the middle of an event."""
    return no_end_of_track(data) + b"\x00\x90"


def huge_delta(data: bytes) -> bytes:
    """A note at the largest delta a 4-byte VLQ can hold (2^28 - 1 ticks)."""
    return _prepend_to_track(
        data, vlq(0x0FFFFFFF) + b"\x90\x3c\x40" + vlq(0x0FFFFFFF) + b"\x80\x3c\x00"
    )


def huge_deltas_repeated(data: bytes) -> bytes:
    """Many maximal deltas: the absolute time overflows 32 bits."""
    events = b"".join(vlq(0x0FFFFFFF) + b"\xff\x01\x00" for _ in range(64))
    return _prepend_to_track(data, events + b"\x00\x90\x3c\x40\x00\x80\x3c\x00")


def overlong_vlq(data: bytes) -> bytes:
    """A delta time that never ends (every byte has the continuation bit)."""
    return _prepend_to_track(data, b"\xff" * 64 + b"\x00\x90\x3c\x40")


def running_status_at_start(data: bytes) -> bytes:
    """Data bytes with no status byte ever seen in the track."""
    return _prepend_to_track(data, b"\x00\x3c\x40\x00\x3e\x40")


def running_status_after_meta(data: bytes) -> bytes:
    """Running status across a meta event and a sysex (both cancel it in the standard)."""
    events = (
        b"\x00\x90\x3c\x40"
        + b"\x00\xff\x01\x01x"
        + b"\x00\x3e\x40"
        + b"\x00\xf0\x02\x7e\xf7"
        + b"\x00\x40\x40"
        + b"\x10\x80\x3c\x00"
    )
    return _prepend_to_track(data, events)


def running_status_everywhere(data: bytes) -> bytes:
    """Status bytes replaced by data bytes after the first event of each track."""

    def abuse(body: bytes) -> bytes:
        buf = bytearray(body)
        for i in range(4, len(buf)):
            if buf[i] & 0xF0 in (0x80, 0x90) and buf[i - 1] < 0x80:
                buf[i] &= 0x7F
        return bytes(buf)

    return _map_tracks(data, abuse)


def ticks_per_quarter_zero(data: bytes) -> bytes:
    return _set_header(data, division=0)


def smpte_division(data: bytes) -> bytes:
    """A negative division: SMPTE frames (-25 fps, 40 ticks per frame)."""
    return _set_header(data, division=0xE728)


def tempo_zero(data: bytes) -> bytes:
    """Every tempo meta set to 0 microseconds per quarter, plus one at time 0."""

    def zero(body: bytes) -> bytes:
        buf, i = bytearray(body), body.find(b"\xff\x51\x03")
        while i >= 0:
            buf[i + 3 : i + 6] = b"\x00\x00\x00"
            i = body.find(b"\xff\x51\x03", i + 3)
        return bytes(buf)

    out = _map_tracks(data, zero)
    return _prepend_to_track(out, b"\x00\xff\x51\x03\x00\x00\x00", track=0)


def tempo_bad_length(data: bytes) -> bytes:
    """A tempo meta that declares 0 bytes of data (and one that declares a huge length)."""
    return _prepend_to_track(data, b"\x00\xff\x51\x00" + b"\x00\xff\x51\x8f\xff\xff\x7f", track=0)


def meta_length_huge(data: bytes) -> bytes:
    """A text meta that claims 256 MiB of text in a file of a few KB."""
    return _prepend_to_track(data, b"\x00\xff\x01" + vlq(0x0FFFFFFF) + b"abc")


def sysex_length_huge(data: bytes) -> bytes:
    return _prepend_to_track(data, b"\x00\xf0" + vlq(0x0FFFFFFF) + b"\x7e")


def orphan_note_off(data: bytes) -> bytes:
    events = b"".join(b"\x00\x80" + bytes([p, 0x40]) for p in range(20, 100))
    return _prepend_to_track(data, events)


def overlapping_same_pitch(data: bytes) -> bytes:
    """Note-on 60 three times before any note-off, then offs in a different order."""
    events = (
        b"\x00\x90\x3c\x40"
        b"\x10\x90\x3c\x50"
        b"\x10\x90\x3c\x60"
        b"\x10\x80\x3c\x00"
        b"\x00\x90\x3c\x00"
        b"\x30\x80\x3c\x00"
    )
    return _prepend_to_track(data, events)


def velocity_zero(data: bytes) -> bytes:
    """Every note-on velocity set to 0 (which makes them note-offs): no notes remain."""

    def silence(body: bytes) -> bytes:
        buf = bytearray(body)
        for i in range(len(buf) - 2):
            if buf[i] & 0xF0 == 0x90 and buf[i + 1] < 0x80 and buf[i + 2] < 0x80:
                buf[i + 2] = 0
        return bytes(buf)

    return _map_tracks(data, silence)


def format_2(data: bytes) -> bytes:
    return _set_header(data, fmt=2)


def format_unknown(data: bytes) -> bytes:
    return _set_header(data, fmt=0x7777)


def extra_unknown_chunks(data: bytes) -> bytes:
    header, chunks = split_chunks(data)
    return join_chunks(header, [(b"XFIH", b"\x00" * 16), *chunks, (b"junk", b"\xff" * 9)])


def notes_out_of_range(data: bytes) -> bytes:
    """Channel-voice events with data bytes >= 0x80 (illegal) in the middle of a track."""
    return _prepend_to_track(data, b"\x00\x90\xff\xff\x00\x80\xff\xff")


# --------------------------------------------------------------------------- whole files


def many_notes_file(n_notes: int = 120_000, tpq: int = 480, velocity: int = 80) -> bytes:
    """A valid type-0 file with `n_notes` notes (built as bytes: fast, and exact)."""
    one = bytearray()
    for i in range(n_notes):
        pitch = 36 + (i * 7) % 60
        one += b"\x00\x90" + bytes([pitch, velocity]) + b"\x3c\x80" + bytes([pitch, 0])
    body = b"\x00\xff\x51\x03\x07\xa1\x20" + bytes(one) + b"\x00" + END_OF_TRACK
    return join_chunks(struct.pack(">HHH", 0, 1, tpq), [(b"MTrk", body)])


def random_bytes(rng: random.Random, size: int = 4096) -> bytes:
    return rng.randbytes(size)


def text_named_mid() -> bytes:
    return b"<html><body>404 Not Found</body></html>\n" * 20


STRUCTURED: dict[str, Callable[[bytes], bytes]] = {
    f.__name__: f
    for f in (
        chunk_length_huge,
        chunk_length_max,
        chunk_length_short,
        chunk_length_zero,
        header_length_huge,
        header_too_many_tracks,
        no_end_of_track,
        no_end_of_track_then_junk,
        huge_delta,
        huge_deltas_repeated,
        overlong_vlq,
        running_status_at_start,
        running_status_after_meta,
        running_status_everywhere,
        ticks_per_quarter_zero,
        smpte_division,
        tempo_zero,
        tempo_bad_length,
        meta_length_huge,
        sysex_length_huge,
        orphan_note_off,
        overlapping_same_pitch,
        velocity_zero,
        format_2,
        format_unknown,
        extra_unknown_chunks,
        notes_out_of_range,
    )
}


def mutants(seeds: list[bytes], rng: random.Random, n_random: int) -> list[tuple[str, bytes]]:
    """Every structured mutator on every seed, plus `n_random` bit-flip / truncation /
    stacked mutants and the whole-file cases; (name, bytes) pairs."""
    out = [
        ("many_notes_120k", many_notes_file()),
        ("text_named_mid", text_named_mid()),
        ("all_velocity_zero", many_notes_file(200, velocity=0)),
        ("empty", b""),
        ("magic_only", b"MThd"),
    ]
    names = list(STRUCTURED)
    for s, seed in enumerate(seeds):
        for name, fn in STRUCTURED.items():
            out.append((f"{name}/seed{s}", fn(seed)))
    for i in range(n_random):
        seed = seeds[rng.randrange(len(seeds))]
        kind = rng.randrange(4)
        if kind == 0:
            out.append((f"bit_flips/{i}", bit_flips(seed, rng, rng.choice([1, 4, 32]))))
        elif kind == 1:
            out.append((f"truncate/{i}", truncate(seed, rng)))
        elif kind == 2:  # a structured lie, then bit flips on top
            name = rng.choice(names)
            out.append((f"{name}+flips/{i}", bit_flips(STRUCTURED[name](seed), rng, 4)))
        else:
            out.append((f"random_bytes/{i}", random_bytes(rng, rng.choice([14, 200, 4096]))))
    return out


def seed_files(datasets: Path, limit: int | None = 8) -> list[Path]:
    """Small real MIDI files from ../shared/datasets (the smallest of piano-midi.de and
    MAESTRO), so that each mutant parses fast; `limit=None`: all of them."""
    files = sorted(
        (
            p
            for folder in ("piano-midi.de", "maestro-v2.0.0")
            for p in (datasets / folder).rglob("*")
            if p.suffix.lower() in (".mid", ".midi")
        ),
        key=lambda p: (p.stat().st_size, str(p)),
    )
    return files[:limit]
