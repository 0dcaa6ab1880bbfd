"""Readers for the formats a manifest can name: MIDI, LPD `.npz` rolls, B-L pickles.

Each returns a `ParsedPiece` (note arrays in beats and seconds), so everything after reading
is the same for every corpus.
"""

from __future__ import annotations

import functools
import pickle
import zipfile
from pathlib import Path

import numpy as np

from cadenza.prepare.parse import MAX_BEATS, NOTE_ARRAYS, ParsedPiece, RejectedPiece, parse_midi
from cadenza.representations.rolls import roll_to_notes

BL_SECONDS_PER_BEAT = 0.5  # the B-L rolls carry no tempo; we assume 120 bpm
MAX_NPZ_BYTES = 256 << 20  # uncompressed; LPD files are ~1 MB unpacked
MAX_ROLL_STEPS = int(MAX_BEATS) * 24  # parse's beat limit at LPD's 24 steps per beat


def read_piece(folder: Path, row, source: dict) -> ParsedPiece:
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
        raise RejectedPiece(f"unreadable {row.format or 'midi'} file: "
                            f"{type(err).__name__}: {err}") from err


def _read(folder: Path, row, source: dict) -> ParsedPiece:
    path = folder / row.path
    if row.format in ("midi", ""):
        return parse_midi(path, source["track_filter"])
    if row.format == "npz":
        return read_lpd(path, source["options"].get("piano", "program"))
    if row.format == "bl_pickle":
        return read_bl(path, row.split, int(row.member), source["step_beats"])
    raise RejectedPiece(f"unknown format {row.format!r}")


def read_lpd(path: Path, piano: str) -> ParsedPiece:
    """LPD: the piano tracks of a pypianoroll `.npz` (24 steps per beat) as notes.

    Piano means GM programs 0-7 and not drums, or, in LPD-5, the track named "Piano".
    """
    import pypianoroll

    check_npz(path)
    try:
        multitrack = pypianoroll.load(path)
    except Exception as err:  # noqa: BLE001 - corrupt zip / missing arrays
        raise RejectedPiece(f"unreadable npz: {type(err).__name__}: {err}") from err
    tracks = [t for t in multitrack.tracks
              if (t.name == "Piano" if piano == "name" else 0 <= t.program <= 7)
              and not t.is_drum and t.pianoroll.any()]
    if not tracks:
        raise RejectedPiece("no piano track", stage="filter")
    spb = multitrack.resolution
    tempo = np.asarray(multitrack.tempo, dtype=np.float64)
    step_s = 60.0 / (np.where(tempo > 0, tempo, 120.0) * spb)
    clock = np.concatenate([[0.0], np.cumsum(step_s)])  # seconds at the start of each step
    parts = []
    for index, track in enumerate(tracks):
        roll = track.pianoroll
        onset, duration, pitch = roll_to_notes(roll > 0, spb)
        start = np.rint(onset * spb).astype(np.int64)
        end = np.minimum(start + np.rint(duration * spb).astype(np.int64), len(clock) - 1)
        parts.append({"track": np.full(len(pitch), index, np.int16),
                      "pitch": pitch.astype(np.int16),
                      "velocity": roll[start, pitch].astype(np.int16),
                      "onset_beats": onset, "duration_beats": duration,
                      "onset_s": clock[start], "duration_s": clock[end] - clock[start]})
    notes = {k: np.concatenate([p[k] for p in parts]) for k in NOTE_ARRAYS}
    return ParsedPiece(notes=notes, key_signature=None, beats_per_bar=4.0)


def check_npz(path: Path) -> None:
    """Refuse an `.npz` whose members or roll shapes claim more than a real piece needs.

    Why: pypianoroll rebuilds each dense roll from the shape stored in the file, so a file
    of a few KB that claims a (10^9, 128) roll would allocate 128 GB; and a zip member's
    declared size is what `np.load` inflates. Both are checked before anything is inflated.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(info.file_size for info in zf.infolist())
            if total > MAX_NPZ_BYTES:
                raise RejectedPiece(f"npz unpacks to {total:,} bytes (limit {MAX_NPZ_BYTES:,})")
        with np.load(path, allow_pickle=False) as npz:
            for key in npz.files:
                if key.endswith("_csc_shape"):
                    shape = np.asarray(npz[key]).ravel()
                    if shape.size != 2 or not 0 <= shape[0] <= MAX_ROLL_STEPS \
                            or not 0 <= shape[1] <= 128:
                        raise RejectedPiece(f"npz roll {key} claims shape {shape.tolist()} "
                                            f"(at most {MAX_ROLL_STEPS:,} x 128)")
    except RejectedPiece:
        raise
    except Exception as err:  # noqa: BLE001 - not a zip, bad .npy header, ...
        raise RejectedPiece(f"unreadable npz: {type(err).__name__}: {err}") from err


@functools.lru_cache(maxsize=2)
def _bl_data(path: Path) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh, encoding="latin1")  # noqa: S301 - the published format


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
    notes = {"track": np.zeros(len(pitch), np.int16), "pitch": pitch.astype(np.int16),
             "velocity": np.full(len(pitch), 64, np.int16), "onset_beats": onset,
             "duration_beats": duration, "onset_s": onset * BL_SECONDS_PER_BEAT,
             "duration_s": duration * BL_SECONDS_PER_BEAT}
    return ParsedPiece(notes=notes, key_signature=None, beats_per_bar=4.0)
