"""`fetch@<source>`: materialise one registered source under `data/raw/<source>/`.

The output folder is swapped in atomically, so a killed fetch never leaves a half-filled
`data/raw/<source>/`. Downloads go to a cache outside DVC's outputs, so changing a param
that re-runs the stage downloads nothing again. Every folder holds `manifest.csv` (one row per
piece, with its status and, for rejects, the reason), `source.json` (the registry entry) and
`downloads.json` (each registry file fetched: URL, sha256, size, and whether the hash was
pinned or recorded at first fetch), so that dvc.lock, which hashes the folder, pins the bytes
a run was built from even where the publisher gives no checksum.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pandas as pd

from cadenza.config import SourceParams
from cadenza.io import atomic_dir, write_json
from cadenza.sources.download import recording
from cadenza.sources.layouts import Layout, layout_of
from cadenza.sources.registry import SOURCES, Source

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = [
    "piece_id",
    "title",
    "composer",
    "year",
    "split",
    "format",
    "path",
    "member",
    "source_path",
    "sha256",
    "status",
    "reason",
]


def fetch_source(name: str, out: Path, cache: Path, params: SourceParams) -> Path:
    """Fetch source `name` into `out`; return the manifest path."""
    source = SOURCES[name]
    layout = layout_of(source)
    with atomic_dir(out) as tmp, recording() as fetched:
        rows = layout.rows(source, params, cache, tmp)
        check_formats(rows, layout, source)
        manifest = write_manifest(tmp, rows, source)
        if fetched:  # a folder read in place or music21's corpus: no file was fetched
            write_json(tmp / "downloads.json", sorted(fetched, key=lambda e: e["name"]))
    n_ok = int((manifest.status == "ok").sum())
    log.info("fetched %s: %d pieces, %d rejected -> %s", name, n_ok, len(manifest) - n_ok, out)
    return out / "manifest.csv"


def check_formats(rows: list[dict], layout: Layout, source: Source) -> None:
    """Refuse usable rows in a format their layout does not declare: prepare would have no
    reader for it, and would reject every such piece one by one (see `Layout`)."""
    undeclared = sorted({r["format"] for r in rows if r["status"] == "ok"} - set(layout.formats))
    if undeclared:
        raise RuntimeError(
            f"fetch {source.name}: layout {source.layout!r} wrote rows in format(s) "
            f"{undeclared}, but declares only {list(layout.formats)}"
        )


def write_manifest(folder: Path, rows: list[dict], source: Source) -> pd.DataFrame:
    """Write `manifest.csv` (standard columns first, missing ones empty) and `source.json`."""
    manifest = pd.DataFrame(rows)
    for column in MANIFEST_COLUMNS:
        if column not in manifest:
            manifest[column] = ""
    extra = [c for c in manifest.columns if c not in MANIFEST_COLUMNS]
    manifest = manifest[MANIFEST_COLUMNS + extra]
    manifest.to_csv(folder / "manifest.csv", index=False)
    write_json(folder / "source.json", dataclasses.asdict(source))
    return manifest
