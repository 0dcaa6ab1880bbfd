"""From the prepared shards to what models eat, in the unit of each model family.

Three kinds of input, named by a family's `kind` (`cadenza.models.specs`):
* `tokens`: a token scheme's strings per piece, then one id stream (pieces joined by `<eos>`,
  or by `tokens.song_gap` `/` tokens);
* `frames`: a binary piano roll per piece on the family's grid, joined by a silent frame;
* `notes`: (pitch, step, duration) per note, step and duration in seconds (the TensorFlow
  tutorial's features, paper 004), joined in onset order.
Each becomes one tensor; the trainer cuts it into windows. What a model must remember from
the training data (the vocabulary) is `info`, plain data that goes into the checkpoint.
"""

from __future__ import annotations

import zlib
from collections import Counter
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from cadenza.config import ModelParams, TokenParams
from cadenza.models import SPECS, InfoMaker, load_family
from cadenza.prepare.parse import NOTE_ARRAYS
from cadenza.prepare.shards import read_pieces, read_table
from cadenza.representations.rolls import notes_to_roll
from cadenza.representations.tokens import (
    GAP,
    SPECIALS,
    Notes,
    Piece,
    build_vocab,
    drop_unacceptable,
    encode,
    to_ids,
)

Units = dict[str, Any]
"""Piece id -> its units: a token list, a (T, pitches) uint8 frame array or a (notes, 3)
float array, by its family's kind."""


def chosen_sources(prepared: Path, prefer_sources: list[str] | None) -> tuple[list[str], bool]:
    """The sources a model reads, and whether its preferred ones were all missing.

    A model that prefers sources (paper 001: the Essen folk songs) reads only those when the
    prepared data holds any of them; otherwise it reads everything, which the train stage
    logs and the report shows, because a folk model trained on MAESTRO is another model.
    """
    present = sorted(read_pieces(prepared).source.unique())
    if not prefer_sources:
        return present, False
    preferred = [s for s in present if s in prefer_sources]
    return (preferred, False) if preferred else (present, True)


def source_of(piece_id: str) -> str:
    """Prepared piece ids are `<source>/<id within the source>`."""
    return piece_id.split("/", 1)[0]


def split_pieces(
    prepared: Path, split: str, prefer_sources: list[str] | None = None
) -> dict[str, Piece]:
    """Every note column of every piece of one split, keyed by piece id, in id order; only
    the pieces of `prefer_sources` when the prepared data holds any of them."""
    columns = ["piece_id", "source", *NOTE_ARRAYS]
    frame = read_table(prepared, "notes", split, columns=columns)
    if prefer_sources:
        sources, _ = chosen_sources(prepared, prefer_sources)
        frame = frame[frame.source.isin(sources)]
    return {
        str(pid): {c: group[c].to_numpy() for c in columns[2:]}
        for pid, group in frame.groupby("piece_id", sort=True, observed=True)
    }


def piece_notes(prepared: Path, split: str) -> dict[str, Notes]:
    """(onset_beats, duration_beats, pitch) of every piece of one split."""
    return {
        pid: (p["onset_beats"], p["duration_beats"], p["pitch"].astype(np.int64))
        for pid, p in split_pieces(prepared, split).items()
    }


def token_sequences(
    pieces: dict[str, Piece], params: TokenParams, seed: int
) -> dict[str, list[str]]:
    """Tokens of every piece; the per-piece RNG seed depends only on the id. Pieces that
    the scheme's duration filter refuses (paper 001, `tokens.durations`) are left out."""
    return {
        pid: encode(piece, params, seed=seed + zlib.crc32(pid.encode()))
        for pid, piece in drop_unacceptable(pieces, params).items()
    }


def piece_frames(pieces: dict[str, Piece], steps_per_beat: int) -> dict[str, np.ndarray]:
    """A (T, 128) uint8 binary roll per piece: a byte per cell, 4x less than float32 (the
    trainer's batches become float)."""
    return {
        pid: notes_to_roll(
            p["onset_beats"], p["duration_beats"], p["pitch"], steps_per_beat
        ).astype(np.uint8)
        for pid, p in pieces.items()
    }


def piece_note_features(pieces: dict[str, Piece]) -> dict[str, np.ndarray]:
    """(N, 3) float32 per piece: pitch, seconds since the previous onset, duration."""
    out = {}
    for pid, p in pieces.items():
        order = np.lexsort((p["pitch"], p["onset_s"]))
        onset = p["onset_s"][order]
        out[pid] = np.stack(
            [p["pitch"][order], np.diff(onset, prepend=onset[:1]), p["duration_s"][order]], axis=1
        ).astype(np.float32)
    return out


def load_units(prepared: Path, split: str, mp: ModelParams, seed: int) -> Units:
    """One split in the family's unit: token lists, frame arrays or note-feature arrays."""
    kind = SPECS[mp.family].kind
    pieces = split_pieces(prepared, split, mp.prefer_sources)
    if split == "train" and mp.train.max_pieces:
        pieces = dict(list(pieces.items())[: mp.train.max_pieces])
    if kind == "tokens":
        return token_sequences(pieces, mp.token_params, seed)
    if kind == "frames":
        return piece_frames(pieces, mp.net.steps_per_beat)
    return piece_note_features(pieces)


def cap_units(units: Units, budget: int, floor: int = 2) -> Units:
    """At most `budget` units (and at least `floor`), spread over the pieces; 0 = everything.

    Why spread: the first `budget` units of the joined stream would score only the first
    pieces in id order, often one source. A split that fits the budget is kept whole. Else
    each kept piece gives its first `share` units, the largest share the budget pays for
    (`_even_share`: a piece shorter than it is kept whole and leaves its rest to the longer
    ones, so the budget is spent). Where an equal share would fall below `floor` (one
    window), only `budget / floor` pieces are kept, taken in turn from each source in a fixed
    pseudo-random order, so that every source is heard and the cap holds however many pieces
    a corpus has.
    """
    if not budget or sum(map(len, units.values())) <= budget:
        return units
    n_keep = min(len(units), max(1, budget // floor))
    kept = _spread_over_sources(list(units), n_keep)
    share = max(_even_share([len(units[pid]) for pid in kept], budget), floor)
    return {pid: units[pid][:share] for pid in kept}


def _even_share(lengths: list[int], budget: int) -> int:
    """The largest `s` with sum(min(n, s) for n in lengths) <= budget (water-filling: the
    short pieces are paid in full, the rest split evenly over the long ones)."""
    remaining = budget
    for rank, n in enumerate(sorted(lengths)):
        longer = len(lengths) - rank
        if n * longer > remaining:
            return remaining // longer
        remaining -= n
    return max(lengths)


def _spread_over_sources(piece_ids: list[str], n: int) -> list[str]:
    """`n` ids, round-robin over the sources, each source's ids in crc32 order; result in id
    order (the order streams are joined in)."""
    by_source: dict[str, list[str]] = {}
    for pid in piece_ids:
        by_source.setdefault(source_of(pid), []).append(pid)
    queues = [
        sorted(ids, key=lambda pid: (zlib.crc32(pid.encode()), pid))
        for _, ids in sorted(by_source.items())
    ]
    picked: list[str] = []
    for rank in range(max(map(len, queues))):
        picked += [queue[rank] for queue in queues if rank < len(queue)]
    return sorted(picked[:n])


def make_info(train_units: Units, mp: ModelParams) -> dict:
    """What the model keeps from the training data: the vocabulary and token counts, or
    what its family computes (`make_info`: note_gan's z-score statistics)."""
    if SPECS[mp.family].makes_info:
        return cast(InfoMaker, load_family(mp.family)).make_info(train_units, mp)
    if mp.tokens is None:
        return {}
    vocab = build_vocab(train_units.values(), mp.tokens.min_count, mp.tokens.max_vocab)
    counts = Counter(t for seq in train_units.values() for t in seq)
    gap = mp.tokens.song_gap
    if gap:  # the delimiter right after the specials; other vocabularies are unchanged
        vocab.insert(len(SPECIALS), GAP)
        vocab = vocab[: mp.tokens.max_vocab] if mp.tokens.max_vocab else vocab
        counts[GAP] = gap * len(train_units)
    info = {"vocab": vocab, "counts": [counts.get(t, 0) for t in vocab]}
    return info | {"gap": gap} if gap else info


def to_stream(units: Units, info: dict) -> torch.Tensor:
    """Join the pieces of a split into the one tensor the trainer cuts into windows."""
    if "vocab" in info:
        return torch.from_numpy(to_ids(units.values(), info["vocab"], info.get("gap", 0)))
    parts = list(units.values())
    if not parts:
        return torch.zeros(0)
    if parts[0].dtype == np.uint8:  # frames (of any width): a silent frame between pieces
        gap = np.zeros((1, parts[0].shape[1]), dtype=np.uint8)
        parts = [x for part in parts for x in (part, gap)]
    return torch.from_numpy(np.concatenate(parts))
