"""Fetcher for corpora shipped inside music21: the Bach chorales, converted to MIDI offline.

Why music21: its corpus is a real, redistributable, offline corpus, so `make run` needs no
network. Conversion is slow (about 0.3 s a piece), so it runs in a process pool. A piece that
music21 cannot convert (bwv277's repeats cannot be expanded) is recorded in the manifest with
its reason instead of stopping the stage.
"""

from __future__ import annotations

import logging
import multiprocessing
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from cadenza.config import SourceParams
from cadenza.io import atomic_path, sha256_file

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ["piece_id", "title", "bwv", "source_path", "midi_path", "sha256", "status",
                    "reason"]


def list_chorales() -> list[str]:
    """Corpus paths of the unique Bach chorales (music21 lists some of them twice)."""
    from music21 import corpus

    names = set(corpus.chorales.Iterator(returnType="filename"))
    return sorted(names, key=_natural_key)


def fetch_chorales(out: Path, params: SourceParams) -> pd.DataFrame:
    """Convert the chorales to `out/midi/<piece_id>.mid`; return the manifest rows."""
    names = list_chorales()
    if params.limit:
        names = names[: params.limit]
    (out / "midi").mkdir(parents=True, exist_ok=True)
    jobs = [(name, out) for name in names]
    log.info("converting %d chorales with music21 on %d workers", len(jobs), params.workers)
    if params.workers == 1:
        rows = [_convert_one(job) for job in tqdm(jobs, desc="fetch bach_chorales", unit="piece")]
    else:
        ctx = multiprocessing.get_context("spawn")  # fork + torch/music21 threads can hang
        with ctx.Pool(params.workers) as pool:
            it = pool.imap(_convert_one, jobs, chunksize=4)
            rows = list(tqdm(it, total=len(jobs), desc="fetch bach_chorales", unit="piece"))
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    n_bad = int((manifest.status != "ok").sum())
    if n_bad:
        for row in manifest[manifest.status != "ok"].itertuples():
            log.warning("rejected %s: %s", row.piece_id, row.reason)
    log.info("converted %d chorales, rejected %d", len(manifest) - n_bad, n_bad)
    return manifest


def _convert_one(job: tuple[str, Path]) -> dict[str, str]:
    from music21 import corpus, midi

    name, out = job
    piece_id = Path(name).name
    row = {"piece_id": piece_id, "title": piece_id, "bwv": piece_id.removeprefix("bwv"),
           "source_path": f"music21:{name}", "midi_path": "", "sha256": "", "status": "ok",
           "reason": ""}
    try:
        score = corpus.parse(name)
        row["title"] = _title(score, piece_id)
        midi_file = midi.translate.music21ObjectToMidiFile(score)
        target = out / "midi" / f"{piece_id}.mid"
        with atomic_path(target) as tmp:
            midi_file.open(str(tmp), "wb")
            midi_file.write()
            midi_file.close()
        row["midi_path"] = f"midi/{piece_id}.mid"
        row["sha256"] = sha256_file(target)
    except Exception as err:  # noqa: BLE001 - any music21 failure is a rejected piece
        row["status"] = "rejected"
        row["reason"] = f"{type(err).__name__}: {err}"
    return row


def _title(score, fallback: str) -> str:
    meta = score.metadata
    title = (meta.title or meta.movementName or "") if meta is not None else ""
    title = title.removesuffix(".mxl").removesuffix(".xml")
    return title or fallback


def _natural_key(name: str) -> list:
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
