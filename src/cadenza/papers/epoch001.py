"""Paper 001's Keras epoch, rebuilt from the **kern files the way its code built it.

Why: the paper prints `5660/5660 ... accuracy: 0.9142` for its last epoch and nothing about
the data behind it. Its preprocessing functions (`preprocess`, `create_single_file_dataset`,
`generate_training_sequences`) are those of a widely copied melody tutorial: each song whose
every note and rest lasts one of the accepted quarter lengths is written as one symbol per
16th (the pitch, `_` while held, `r` for rest), the songs are joined into one string with 64
`/` symbols after each, and every window of 64 symbols (stride 1) is one example whose single
target is the next symbol. Counting those windows here, from the kern files with music21,
tells which of these readings the paper's 5,660 batches of 64 fit, and how many of its targets
are the `/` delimiter, which a network predicts for free once it is inside the 64 of them
(docs/papers.md). `p001_folk_keras` trains that way (`tokens.song_gap`, `train.targets`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

STEP = 0.25  # quarter lengths per symbol: a 16th
ACCEPTED = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)  # the paper's duration filter
DELIMITER = 64  # `/` symbols after each song: the sequence length


@dataclass(frozen=True)
class KerasEpoch:
    """The training set paper 001's code builds: `songs` kept of `read`, `symbols` of music,
    `windows` (= targets = examples), and how many targets are `/`, and `/` after a `/`."""

    read: int
    songs: int
    symbols: int
    windows: int
    slash_targets: int
    free_targets: int

    def batches(self, batch_size: int = 64) -> int:
        return -(-self.windows // batch_size)


def song_symbols(durations: Iterable[float], accepted: tuple[float, ...] = ACCEPTED) -> int | None:
    """A song's length in 16th symbols, or None when the duration filter drops it (no filter
    with `accepted` empty)."""
    durations = list(durations)
    if accepted and any(d not in accepted for d in durations):
        return None
    return sum(int(d / STEP) for d in durations)


def keras_epoch(
    lengths: list[int | None], seq_len: int = DELIMITER, delimiter: int = DELIMITER
) -> KerasEpoch:
    """The windows of the joined string of the kept songs, each followed by `delimiter` `/`
    symbols: the targets are the symbols from position `seq_len` to the end, so a `/` is a
    target unless it lies in the first window; a free one follows another `/`."""
    kept = [n for n in lengths if n is not None]
    slash = free = 0
    position = 0
    for n in kept:
        first = position + n  # the song's first `/`
        slash += len(range(max(first, seq_len), first + delimiter))
        free += len(range(max(first + 1, seq_len), first + delimiter))
        position = first + delimiter
    return KerasEpoch(
        read=len(lengths),
        songs=len(kept),
        symbols=sum(kept),
        windows=max(0, position - seq_len),
        slash_targets=slash,
        free_targets=free,
    )


def kern_durations(path: Path) -> list[float]:
    """Every note's and rest's quarter length, in order, as the paper's code reads them
    (music21's `flatten().notesAndRests`: tied notes one by one)."""
    import music21  # slow to import; only this check needs it

    score = music21.converter.parse(path)
    return [float(e.duration.quarterLength) for e in score.flatten().notesAndRests]
