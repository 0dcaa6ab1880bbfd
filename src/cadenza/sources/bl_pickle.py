"""The Boulanger-Lewandowski pickles, read without running anything a download names.

The four B-L benchmark files are Python pickles, published over plain http with no checksum
for two of them. `pickle.load` runs whatever callable a tampered file names (`os.system`,
`builtins.exec`, ...) before any check could look at the data (issue 18, item 1). The
published format needs no code at all: a dict of "train" / "valid" / "test" -> list of pieces
-> list of time steps -> list of sounding MIDI pitches. So the unpickler here refuses every
global and every persistent id (nothing can be named, so nothing can be called), and the
result must have exactly that shape before a caller sees it.

Memory is bounded too: the file's size is checked before a byte is unpickled (each object a
pickle builds costs at least one byte of opcodes), and the steps a caller would turn into a
roll are counted before it does.
"""

from __future__ import annotations

import io
import pickle
import reprlib
from pathlib import Path

SPLITS = ("train", "valid", "test")
MAX_BYTES = 256 << 20  # the largest published file (Nottingham) is 4.2 MB
MAX_PIECE_STEPS = 200_000  # prepare's 100,000-beat limit at the B-L's half-beat steps
MAX_TOTAL_STEPS = 10_000_000  # Nottingham, the largest, has 266,537; a dense roll each
MIDI_PITCHES = range(128)


class BLPickleError(ValueError):
    """The file is not a B-L pickle in the published format; nothing in it was run."""


class _NoCodeUnpickler(pickle.Unpickler):
    """Builds only what pickle opcodes build by themselves: containers, numbers, strings.

    Every way a pickle reaches code (GLOBAL, STACK_GLOBAL, INST, the copyreg extension
    opcodes, and so OBJ / REDUCE / NEWOBJ, which need a callable from one of them) goes
    through `find_class`, and persistent ids through `persistent_load`: both refuse.
    """

    def __init__(self, fh: io.BytesIO, path: Path):
        super().__init__(fh, encoding="latin1")
        self.path = path

    def find_class(self, module: str, name: str):
        raise BLPickleError(
            f"{self.path}: refused: the pickle names the global "
            f"{module}.{name}; a B-L pickle holds only lists and ints, and "
            f"nothing a download names is ever loaded or called"
        )

    def persistent_load(self, pid):
        raise BLPickleError(
            f"{self.path}: refused: the pickle holds a persistent id "
            f"({type(pid).__name__}); a B-L pickle holds only lists and ints"
        )


def load(path: Path, pitches: range = MIDI_PITCHES) -> dict[str, list]:
    """The pickle's {"train", "valid", "test"} -> pieces -> steps -> pitches, as plain lists
    and ints, or `BLPickleError` naming the file and what is wrong; `pitches` narrows the
    range every pitch must lie in (the benchmark's 88 keys)."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise BLPickleError(
            f"{path}: refused: {size:,} bytes, over the {MAX_BYTES:,}-byte "
            f"limit for a B-L pickle (the largest published one is ~4 MB)"
        )
    with open(path, "rb") as fh:  # bounded again as read: a pipe or device has no size
        raw = fh.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise BLPickleError(
            f"{path}: refused: over the {MAX_BYTES:,}-byte limit for a B-L "
            f"pickle (the largest published one is ~4 MB)"
        )
    stream = io.BytesIO(raw)
    try:
        data = _NoCodeUnpickler(stream, path).load()
    except (BLPickleError, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - any malformed stream is one kind of refusal
        raise BLPickleError(f"{path}: not a readable pickle: {type(err).__name__}: {err}") from err
    if stream.tell() != len(raw):
        raise BLPickleError(
            f"{path}: refused: {len(raw) - stream.tell():,} bytes follow the pickle's STOP opcode"
        )
    check(data, path, pitches)
    return data


def check(data: object, path: Path, pitches: range = MIDI_PITCHES) -> None:
    """Raise `BLPickleError` unless `data` has the published shape, naming the split, the
    piece and the step that is wrong, so a bad mirror is told apart from a bug here."""
    if type(data) is not dict:
        raise BLPickleError(
            f"{path}: expected a dict of splits {list(SPLITS)}, got {type(data).__name__}"
        )
    if set(data) != set(SPLITS):
        raise BLPickleError(
            f"{path}: expected exactly the splits {list(SPLITS)}, got the keys {_shown(list(data))}"
        )
    total = 0
    for split in SPLITS:
        pieces = data[split]
        if type(pieces) not in (list, tuple):
            raise BLPickleError(
                f"{path}: split {split!r} is {_shown(pieces)}, not a list of pieces"
            )
        for index, piece in enumerate(pieces):
            _check_piece(piece, f"{path}: split {split!r}, piece {index}", pitches)
            total += len(piece)
            if total > MAX_TOTAL_STEPS:
                raise BLPickleError(
                    f"{path}: refused: over {MAX_TOTAL_STEPS:,} time steps in "
                    f"all (at split {split!r}, piece {index})"
                )


def _check_piece(piece: object, where: str, pitches: range) -> None:
    # isinstance, not an exact type: the no-code unpickler cannot build a subclass
    if not isinstance(piece, (list, tuple)):
        raise BLPickleError(f"{where} is {_shown(piece)}, not a list of time steps")
    if len(piece) > MAX_PIECE_STEPS:
        raise BLPickleError(
            f"{where}: {len(piece):,} time steps, over the limit of {MAX_PIECE_STEPS:,}"
        )
    low, high = pitches.start, pitches.stop - 1
    for t, step in enumerate(piece):
        if not isinstance(step, (list, tuple)):
            raise BLPickleError(f"{where}, step {t} is {_shown(step)}, not a list of pitches")
        for pitch in step:
            if type(pitch) is not int or not low <= pitch <= high:
                raise BLPickleError(
                    f"{where}, step {t}: {_shown(pitch)} is not a pitch (an int in {low}..{high})"
                )


def _shown(value: object) -> str:
    """A short, safe rendering: a hostile file's ints may have millions of digits, which
    `repr` refuses to print (ValueError), inside a container or not."""
    if type(value) is int and value.bit_length() > 64:
        return f"(an int of {value.bit_length():,} bits)"
    try:
        return f"{reprlib.repr(value)} ({type(value).__name__})"
    except ValueError:
        return f"(a {type(value).__name__} too large to show)"
