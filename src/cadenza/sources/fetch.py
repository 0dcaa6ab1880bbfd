"""`fetch@<source>`: materialise one registered source under `data/raw/<source>/`.

The output folder is swapped in atomically, so a killed fetch never leaves a half-filled
`data/raw/<source>/`. Every folder holds `manifest.csv` (one row per piece, with its status
and, for rejects, the reason) and `source.json` (the registry entry it came from).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from cadenza.config import SourceParams
from cadenza.io import atomic_dir, write_json
from cadenza.sources.music21_corpus import fetch_chorales
from cadenza.sources.registry import SOURCES

log = logging.getLogger(__name__)

FETCHERS = {"music21_corpus": fetch_chorales}


def fetch_source(name: str, out: Path, params: SourceParams) -> Path:
    """Fetch source `name` into `out`; return the manifest path."""
    source = SOURCES[name]
    with atomic_dir(out) as tmp:
        manifest = FETCHERS[source.kind](tmp, params)
        manifest.to_csv(tmp / "manifest.csv", index=False)
        write_json(tmp / "source.json", dataclasses.asdict(source))
    log.info("fetched %s: %d pieces -> %s", name, len(manifest), out)
    return out / "manifest.csv"
