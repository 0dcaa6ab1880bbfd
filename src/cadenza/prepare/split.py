"""Deterministic train / valid / test split by piece id.

Why hash the id rather than shuffle: a piece's split must not change when other pieces are
added, removed or reordered, and it must be decided before any augmentation so that no
transposed copy of a test piece can land in train. Sources with an official split (MAESTRO,
the Boulanger-Lewandowski pickles) keep theirs.
"""

from __future__ import annotations

import hashlib


def split_of(piece_id: str, valid_fraction: float, test_fraction: float) -> str:
    digest = hashlib.sha256(piece_id.encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"
