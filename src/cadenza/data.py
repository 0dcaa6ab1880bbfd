"""From the prepared shards to what models eat: per-piece notes and token streams."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from cadenza.config import TokenParams
from cadenza.prepare.shards import read_table
from cadenza.representations.tokens import Notes, encode

NOTE_FIELDS = ["piece_id", "onset_beats", "duration_beats", "pitch"]


def piece_notes(prepared: Path, split: str) -> dict[str, Notes]:
    """Notes of every piece of one split, keyed by piece id, in id order."""
    frame = read_table(prepared, "notes", split, columns=NOTE_FIELDS)
    out = {}
    for piece_id, group in frame.groupby("piece_id", sort=True):
        out[str(piece_id)] = (group.onset_beats.to_numpy(), group.duration_beats.to_numpy(),
                              group.pitch.to_numpy().astype(np.int64))
    return out


def token_sequences(prepared: Path, split: str, params: TokenParams, seed: int
                    ) -> dict[str, list[str]]:
    """Tokens of every piece of one split; the per-piece RNG seed depends only on the id."""
    return {
        piece_id: encode(notes, params, seed=seed + zlib.crc32(piece_id.encode()))
        for piece_id, notes in piece_notes(prepared, split).items()
    }
