"""The `prepare` stage: every fetched source -> one prepared dataset under `data/prepared/`.

Per piece: parse (symusic), keep the source's tracks, estimate the key, transpose to C major /
A minor, assign the split by piece id, then encode notes and rolls. Anything that goes wrong
with one file becomes a row in the rejects table; the stage goes on. The whole output folder
is built beside the target and swapped in at the end, so a kill leaves no half-written shard.
"""

from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from cadenza.config import PrepareParams
from cadenza.io import atomic_dir, read_json, write_json, write_parquet
from cadenza.prepare.key import estimate_key, shift_to_c
from cadenza.prepare.parse import ParsedPiece, RejectedPiece, parse_midi
from cadenza.prepare.shards import REJECT_COLUMNS, SCHEMA_VERSION, SPLITS, write_partitioned
from cadenza.prepare.split import split_of
from cadenza.representations.rolls import notes_to_roll, roll_to_cells

log = logging.getLogger(__name__)

NOTE_COLUMNS = ["piece_id", "split", "source", "track", "pitch", "velocity", "onset_beats",
                "duration_beats", "onset_s", "duration_s", "step_beats", "step_s"]


def prepare(raw_root: Path, sources: list[str], out: Path, params: PrepareParams) -> dict:
    """Prepare `sources` (folders under `raw_root`) into `out`; return the counts."""
    notes, rolls, pieces, rejects = [], [], [], []
    for name in sources:
        folder = raw_root / name
        source = read_json(folder / "source.json")
        manifest = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
        for row in manifest[manifest.status != "ok"].itertuples():
            rejects.append((name, row.piece_id, row.source_path, "fetch", row.reason))
        ok = manifest[manifest.status == "ok"]
        for row in tqdm(ok.itertuples(), total=len(ok), desc=f"prepare {name}", unit="file"):
            piece_id = f"{name}/{row.piece_id}"
            try:
                parsed = parse_midi(folder / row.midi_path, source["track_filter"])
                split = getattr(row, "split", "") or split_of(
                    piece_id, params.valid_fraction, params.test_fraction)
                piece, piece_notes, piece_rolls = encode_piece(parsed, piece_id, split, params)
            except RejectedPiece as err:
                rejects.append((name, piece_id, row.midi_path, "prepare", str(err)))
                continue
            piece.update(source=name, title=row.title, sha256=row.sha256)
            pieces.append(piece)
            notes.append(piece_notes.assign(source=name))
            rolls.append(piece_rolls)
    if not pieces:
        raise RuntimeError(f"prepare: no usable piece in {sources}; see the rejects above")
    notes_df = pd.concat(notes, ignore_index=True)[NOTE_COLUMNS]
    rolls_df = pd.concat(rolls, ignore_index=True)
    pieces_df = pd.DataFrame(pieces)
    rejects_df = pd.DataFrame(rejects, columns=REJECT_COLUMNS)
    for r in rejects_df.itertuples():
        log.warning("rejected %s (%s): %s", r.piece_id, r.stage, r.reason)
    counts = {
        split: {"pieces": int((pieces_df.split == split).sum()),
                "notes": int((notes_df.split == split).sum())}
        for split in SPLITS
    }
    counts["rejected"] = len(rejects_df)
    with atomic_dir(out) as tmp:
        write_partitioned(notes_df, tmp / "notes")
        write_partitioned(rolls_df, tmp / "rolls")
        write_parquet(tmp / "pieces.parquet", pieces_df)
        write_parquet(tmp / "rejects.parquet", rejects_df)
        write_json(tmp / "_meta.json", {
            "schema_version": SCHEMA_VERSION,
            "sources": sources,
            "encoder": asdict(params),
            "libraries": _library_versions(),
            "counts": counts,
        })
    log.info("prepared %d pieces (%d notes), rejected %d -> %s",
             len(pieces_df), len(notes_df), len(rejects_df), out)
    return counts


def encode_piece(parsed: ParsedPiece, piece_id: str, split: str, params: PrepareParams
                 ) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Key-normalise one parsed piece; return its pieces row, notes rows and roll cells."""
    notes = parsed.notes
    if len(notes) < params.min_notes:
        raise RejectedPiece(f"too few notes: {len(notes)} < min_notes={params.min_notes}")
    key = estimate_key(notes.pitch.to_numpy(), notes.duration_beats.to_numpy(),
                       parsed.key_signature)
    shift = shift_to_c(key) if params.transpose else 0
    notes = notes.assign(pitch=notes.pitch + shift)
    notes = notes[(notes.pitch >= 0) & (notes.pitch <= 127)]
    notes = notes.sort_values(["onset_beats", "pitch", "track"], kind="stable")
    notes = notes.assign(
        piece_id=piece_id,
        split=split,
        step_beats=np.diff(notes.onset_beats.to_numpy(), prepend=0.0),
        step_s=np.diff(notes.onset_s.to_numpy(), prepend=0.0),
    ).reset_index(drop=True)
    roll = notes_to_roll(notes.onset_beats.to_numpy(), notes.duration_beats.to_numpy(),
                         notes.pitch.to_numpy(), params.steps_per_beat)
    steps, pitches = roll_to_cells(roll)
    rolls = pd.DataFrame({"piece_id": piece_id, "split": split, "step": steps,
                          "pitch": pitches})
    piece = {
        "piece_id": piece_id,
        "split": split,
        "n_notes": len(notes),
        "n_steps": len(roll),
        "n_tracks": int(notes.track.nunique()),
        "beats_per_bar": parsed.beats_per_bar,
        "duration_beats": float((notes.onset_beats + notes.duration_beats).max()),
        "key_original": key.name,
        "key_method": key.method,
        "key_shift": shift,
    }
    return piece, notes, rolls


def _library_versions() -> dict[str, str]:
    names = ["symusic", "pyarrow", "pandas", "numpy"]
    return {name: importlib.metadata.version(name) for name in names}
