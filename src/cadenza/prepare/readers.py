"""Readers for the formats a manifest can name: MIDI, LPD `.npz` rolls, B-L pickles.

`READERS` has one reader per `cadenza.sources.registry.Format`, the type the layouts declare
their rows' formats in (tests/test_source_registry.py checks that each declared one has one).
Each returns a `ParsedPiece` (note arrays in beats and seconds), so everything after reading
is the same for every corpus.
"""

from __future__ import annotations

import functools
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import numpy as np

from cadenza.prepare.parse import MAX_BEATS, NOTE_ARRAYS, ParsedPiece, RejectedPiece, parse_midi
from cadenza.representations.rolls import roll_to_notes
from cadenza.sources import bl_pickle
from cadenza.sources.registry import Format

BL_SECONDS_PER_BEAT = 0.5  # the B-L rolls carry no tempo; we assume 120 bpm
MAX_NPZ_BYTES = 256 << 20  # uncompressed; LPD files are ~1 MB unpacked
MAX_ROLL_STEPS = int(MAX_BEATS) * 24  # parse's beat limit at LPD's 24 steps per beat


def read_piece(folder: Path, row: SimpleNamespace, source: dict) -> ParsedPiece:
    """Read the piece a manifest row names, with the source's track filter.

    Any error a reader raises on a broken file becomes a `RejectedPiece` naming the error
    (issue #8: one bad file of tens of thousands must never stop the stage). Memory errors
    and interrupts are not caught.
    """
    try:
        return _read(folder, row, source)
    except (RejectedPiece, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - a reader's bug must not cost the whole run
        raise RejectedPiece(f"unreadable {row.format} file: {type(err).__name__}: {err}") from err


def _read(folder: Path, row: SimpleNamespace, source: dict) -> ParsedPiece:
    reader = READERS.get(row.format)
    if reader is None:
        raise RejectedPiece(f"unknown format {row.format!r}")
    return reader(folder / row.path, row, source)


# (the file, its manifest row, the source's registry entry as fetched: source.json) -> notes
Reader = Callable[[Path, SimpleNamespace, dict], ParsedPiece]


def _midi(path: Path, row: SimpleNamespace, source: dict) -> ParsedPiece:
    return parse_midi(path, source["track_filter"])


def _npz(path: Path, row: SimpleNamespace, source: dict) -> ParsedPiece:
    return read_lpd(path, source["options"].get("piano", "program"))


def _bl_pickle(path: Path, row: SimpleNamespace, source: dict) -> ParsedPiece:
    return read_bl(path, row.split, int(row.member), source["step_beats"])


def read_lpd(path: Path, piano: str) -> ParsedPiece:
    """LPD: the piano tracks of a pypianoroll 1.x `.npz` (24 steps per beat) as notes.

    Piano means GM programs 0-7 and not drums, or, in LPD-5, the track named "Piano".
    Why not `pypianoroll.load`: it inflates every track of the file into a dense (T, 128)
    roll, piano or not, and the notes then come from scanning those rolls. Here only the
    piano tracks' sparse arrays are read, and their runs become notes straight from the
    CSC entries: the same notes, ~15x faster (bench/prepare.py --lpd).
    A sounding stretch of one pitch is one note: a velocity change inside it does not split
    it, only a silent step does; its velocity is the one at its first step.
    """
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 - not a zip, bad .npy header, ...
        raise RejectedPiece(f"unreadable npz: {type(err).__name__}: {err}") from err
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise RejectedPiece("unreadable npz: a single .npy array, not an archive")
    with npz:
        try:
            _check_npz_members(npz)
            return _lpd_piece(npz, piano)
        except (RejectedPiece, MemoryError):
            raise
        except Exception as err:  # noqa: BLE001 - corrupt zip / missing arrays
            raise RejectedPiece(f"unreadable npz: {type(err).__name__}: {err}") from err


def _lpd_piece(npz: np.lib.npyio.NpzFile, piano: str) -> ParsedPiece:
    """The kept tracks of an opened LPD archive as one `ParsedPiece`."""
    if "info.json" not in npz:
        raise RejectedPiece("unreadable npz: no info.json")
    # a member that is not a .npy array comes back as its bytes (numpy types every one as array)
    info = json.loads(cast(bytes, npz["info.json"]).decode("utf-8"))
    spb = info.get("resolution")
    spb = info.get("beat_resolution") if spb is None else spb  # pypianoroll < 1.0
    if not isinstance(spb, int) or spb <= 0:
        raise RejectedPiece(f"unreadable npz: info.json gives resolution {spb!r}")
    tracks = [t for t in _lpd_tracks(info) if _is_piano(t, piano)]
    notes = [
        n for n in (_csc_notes(npz, f"pianoroll_{t['index']}") for t in tracks) if n is not None
    ]
    if not notes:
        raise RejectedPiece("no piano track", stage="filter")
    if "tempo" not in npz:
        raise RejectedPiece("unreadable npz: no tempo array")
    tempo = np.asarray(_member(npz, "tempo"), dtype=np.float64)
    step_s = 60.0 / (np.where(tempo > 0, tempo, 120.0) * spb)
    clock = np.concatenate([[0.0], np.cumsum(step_s)])  # seconds at the start of each step
    parts = [_note_columns(index, *track, clock, spb) for index, track in enumerate(notes)]
    columns = {k: np.concatenate([p[k] for p in parts]) for k in NOTE_ARRAYS}
    return ParsedPiece(notes=columns, key_signature=None)


def _lpd_tracks(info: dict) -> list[dict]:
    """Per-track name, program and is_drum, with pypianoroll's defaults (program 0, no drum)."""
    tracks, index = [], 0
    while str(index) in info:
        meta = info[str(index)]
        tracks.append(
            {
                "index": index,
                "name": meta.get("name"),
                "program": 0 if meta.get("program") is None else meta["program"],
                "is_drum": bool(meta.get("is_drum")),
            }
        )
        index += 1
    return tracks


def _is_piano(track: dict, piano: str) -> bool:
    if track["is_drum"]:
        return False
    return track["name"] == "Piano" if piano == "name" else 0 <= track["program"] <= 7


def _csc_notes(
    npz: np.lib.npyio.NpzFile, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """One track's notes (start step, steps, pitch, velocity), sorted by (start, pitch).

    None for a track whose roll is all zero (not kept, as if absent). The CSC columns are
    pitches and the row indices steps; each run of consecutive positive steps of a pitch is
    a note. Works on the stored entries only, never on the dense roll.
    """
    steps, pitch, value = _csc_entries(npz, name)
    if not np.any(value != 0):
        return None
    on = value > 0
    steps, pitch, value = steps[on], pitch[on], value[on]
    new = np.ones(len(pitch), dtype=bool)
    new[1:] = (pitch[1:] != pitch[:-1]) | (steps[1:] != steps[:-1] + 1)
    first = np.flatnonzero(new)
    length = np.diff(np.append(first, len(pitch)))
    order = np.lexsort((pitch[first], steps[first]))
    first = first[order]
    return steps[first], length[order], pitch[first], value[first]


def _csc_entries(npz: np.lib.npyio.NpzFile, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stored CSC roll's entries as (step, pitch, value), sorted by (pitch, step).

    Checks what scipy would (array sizes, pointer order) and the index bounds it does not;
    duplicate entries add up, as they would in the dense roll.
    """
    data, indices = _member(npz, f"{name}_csc_data"), _member(npz, f"{name}_csc_indices")
    indptr = _member(npz, f"{name}_csc_indptr").astype(np.int64)
    n_steps, n_pitches = (int(x) for x in np.asarray(_member(npz, f"{name}_csc_shape")).ravel())
    if (
        data.ndim != 1
        or indices.shape != data.shape
        or indptr.shape != (n_pitches + 1,)
        or (len(indptr) and (indptr[0] != 0 or indptr[-1] > len(data)))
        or np.any(np.diff(indptr) < 0)
    ):
        raise RejectedPiece(f"unreadable npz: {name} is not a valid CSC matrix")
    count = int(indptr[-1]) if len(indptr) else 0
    steps = indices[:count].astype(np.int64)
    if count and (steps.min() < 0 or steps.max() >= n_steps):
        raise RejectedPiece(f"unreadable npz: {name} has a step outside its shape")
    pitch = np.repeat(np.arange(n_pitches, dtype=np.int64), np.diff(indptr))
    value = data[:count]
    cell = pitch * n_steps + steps
    if np.any(np.diff(cell) <= 0):  # not canonical: sort, and add up duplicate cells
        order = np.argsort(cell, kind="stable")
        cell, value = cell[order], value[order]
        first = np.flatnonzero(np.diff(cell, prepend=-1) != 0)
        value = np.add.reduceat(value, first, dtype=value.dtype) if len(first) else value
        pitch, steps = np.divmod(cell[first], max(n_steps, 1))
    return steps, pitch, value


def _note_columns(
    index: int,
    start: np.ndarray,
    length: np.ndarray,
    pitch: np.ndarray,
    velocity: np.ndarray,
    clock: np.ndarray,
    spb: int,
) -> dict[str, np.ndarray]:
    """Note arrays of one track: beats from steps, seconds from the tempo clock."""
    if len(start) and start.max() >= len(clock):
        raise RejectedPiece(
            f"unreadable npz: a note starts at step {int(start.max())}, "
            f"beyond the {len(clock) - 1}-step tempo array"
        )
    end = np.minimum(start + length, len(clock) - 1)
    return {
        "track": np.full(len(pitch), index, np.int16),
        "pitch": pitch.astype(np.int16),
        "velocity": velocity.astype(np.int16),
        "onset_beats": start / spb,
        "duration_beats": length / spb,
        "onset_s": clock[start],
        "duration_s": clock[end] - clock[start],
    }


def read_lpd_dense(path: Path, piano: str = "program") -> ParsedPiece:
    """The plain way to read LPD: `pypianoroll.load` (every track as a dense roll), then
    `roll_to_notes` on each piano track; 17x slower than `read_lpd`. The reference that
    `read_lpd` must equal (tests/test_lpd_reader.py) and the baseline of bench/prepare.py."""
    import pypianoroll

    check_npz(path)
    multitrack = pypianoroll.load(path)
    tracks = [
        t
        for t in multitrack.tracks
        if (t.name == "Piano" if piano == "name" else 0 <= t.program <= 7)
        and not t.is_drum
        and t.pianoroll.any()
    ]
    if not tracks:
        raise RejectedPiece("no piano track", stage="filter")
    spb = multitrack.resolution
    tempo = np.asarray(multitrack.tempo, dtype=np.float64)
    step_s = 60.0 / (np.where(tempo > 0, tempo, 120.0) * spb)
    clock = np.concatenate([[0.0], np.cumsum(step_s)])
    parts = []
    for index, track in enumerate(tracks):
        roll = track.pianoroll
        onset, duration, pitch = roll_to_notes(roll > 0, spb)
        start = np.rint(onset * spb).astype(np.int64)
        end = np.minimum(start + np.rint(duration * spb).astype(np.int64), len(clock) - 1)
        parts.append(
            {
                "track": np.full(len(pitch), index, np.int16),
                "pitch": pitch.astype(np.int16),
                "velocity": roll[start, pitch].astype(np.int16),
                "onset_beats": onset,
                "duration_beats": duration,
                "onset_s": clock[start],
                "duration_s": clock[end] - clock[start],
            }
        )
    notes = {k: np.concatenate([p[k] for p in parts]) for k in NOTE_ARRAYS}
    return ParsedPiece(notes=notes, key_signature=None)


def check_npz(path: Path) -> None:
    """Refuse an `.npz` whose members or roll shapes claim more than a real piece needs.

    Why: a dense roll built from the shape stored in the file (as pypianoroll does) from a
    file of a few KB that claims a (10^9, 128) roll would allocate 128 GB; and a zip member's
    declared size is what `np.load` inflates. Both are checked before anything is inflated.
    """
    try:
        with zipfile.ZipFile(path):
            pass
        with np.load(path, allow_pickle=False) as npz:
            _check_npz_members(npz)
    except RejectedPiece:
        raise
    except Exception as err:  # noqa: BLE001 - not a zip, bad .npy header, ...
        raise RejectedPiece(f"unreadable npz: {type(err).__name__}: {err}") from err


def _check_npz_members(npz: np.lib.npyio.NpzFile) -> None:
    """`check_npz` on an opened archive: the unpacked size, then every roll's shape."""
    total = sum(info.file_size for info in _zip(npz).infolist())
    if total > MAX_NPZ_BYTES:
        raise RejectedPiece(f"npz unpacks to {total:,} bytes (limit {MAX_NPZ_BYTES:,})")
    for key in npz.files:
        if key.endswith("_csc_shape"):
            shape = np.asarray(_member(npz, key)).ravel()
            if shape.size != 2 or not 0 <= shape[0] <= MAX_ROLL_STEPS or not 0 <= shape[1] <= 128:
                raise RejectedPiece(
                    f"npz roll {key} claims shape {shape.tolist()} "
                    f"(at most {MAX_ROLL_STEPS:,} x 128)"
                )


def _zip(npz: np.lib.npyio.NpzFile) -> zipfile.ZipFile:
    """The zip archive under an open `npz` (numpy types it optional: None once closed)."""
    if npz.zip is None:
        raise ValueError("the npz archive is closed")
    return npz.zip


NPY_1D_HEADER = re.compile(
    rb"\{'descr': '([<>|=]?[biuf]\d{1,2})', 'fortran_order': False, "
    rb"'shape': \((\d{1,12}),\), \} *\n"
)


def _member(npz: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    """`npz[key]`, with a fast path for the plain 1-D number arrays that LPD files hold.

    Why: numpy parses every .npy header with `ast.literal_eval` (~0.1 ms), and an LPD file
    has a dozen or more members to read: that parsing was a third of the reader's time.
    Anything but a version-1 header of a 1-D array of a plain number type goes to numpy.
    """
    try:
        raw = _zip(npz).read(f"{key}.npy")
    except KeyError:  # stored under its bare name, or missing: numpy's way and message
        return npz[key]
    header = int.from_bytes(raw[8:10], "little") + 10
    match = NPY_1D_HEADER.fullmatch(raw[10:header]) if raw[:8] == b"\x93NUMPY\x01\x00" else None
    if match is not None:
        dtype, count = np.dtype(match[1].decode()), int(match[2])
        if len(raw) == header + count * dtype.itemsize:
            return np.frombuffer(raw, dtype, count, offset=header)
    return npz[key]


@functools.lru_cache(maxsize=2)
def _bl_data(path: Path) -> dict:
    """The whole file, checked once per worker: no code from the pickle ever runs here."""
    return bl_pickle.load(path)


def read_bl(path: Path, split: str, index: int, step_beats: float) -> ParsedPiece:
    """A Boulanger-Lewandowski piece: a list of steps, each a list of sounding pitches.

    The rolls hold no onsets, so a pitch held over consecutive steps is one note.
    """
    steps = _bl_data(path)[split][index]
    roll = np.zeros((len(steps), 128), dtype=bool)
    for t, pitches in enumerate(steps):
        roll[t, [int(p) for p in pitches]] = True
    spb = max(int(round(1 / step_beats)), 1)
    onset, duration, pitch = roll_to_notes(roll, spb)
    if len(pitch) == 0:
        raise RejectedPiece("empty piece")
    notes = {
        "track": np.zeros(len(pitch), np.int16),
        "pitch": pitch.astype(np.int16),
        "velocity": np.full(len(pitch), 64, np.int16),
        "onset_beats": onset,
        "duration_beats": duration,
        "onset_s": onset * BL_SECONDS_PER_BEAT,
        "duration_s": duration * BL_SECONDS_PER_BEAT,
    }
    return ParsedPiece(notes=notes, key_signature=None)


# the one reader per manifest format (last: the readers above must exist first)
READERS: dict[Format, Reader] = {"midi": _midi, "npz": _npz, "bl_pickle": _bl_pickle}
