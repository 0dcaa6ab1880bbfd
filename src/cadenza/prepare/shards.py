"""The prepared dataset on disk: Parquet shards partitioned by split, plus small tables.

Layout of `data/prepared/`:
    notes/split=<s>/part-0.parquet   one row per note (paper 004's representation)
    rolls/split=<s>/part-0.parquet   the piano roll of each piece as runs (pitch, start, end)
    pieces.parquet                   one row per kept piece: split, key, shift, counts
    rejects.parquet                  one row per rejected file: source, file, stage, reason
    _meta.json                       schema version, encoder params, library versions, counts

The folders are hive-partitioned, so `pd.read_parquet("data/prepared/notes")` and any Arrow
or DuckDB reader get the `split` column back from the path.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

SCHEMA_VERSION = 2  # 2: pieces.time_signatures (every change) and pieces.repairs
SPLITS = ("train", "valid", "test")
REJECT_COLUMNS = ["source", "piece_id", "file", "stage", "reason"]


def write_partitioned(tables: dict[str, tuple[pa.Table, dict[str, int]]], folder: Path) -> None:
    """Write each `name: (table, rows_per_split)` as `<name>/split=<s>/part-0.parquet` (zstd).

    A table's rows come grouped by split in SPLITS order, `rows_per_split[s]` of them for
    split s: slicing is free, where filtering a 7 M-row table is not. Parquet encoding holds
    no GIL, so the files are written by a thread pool, one thread per core.
    """
    jobs = []
    for name, (table, rows_per_split) in tables.items():
        if sum(rows_per_split.values()) != len(table):
            raise ValueError(f"{name}: rows_per_split does not cover its {len(table)} rows")
        offset = 0
        for split in SPLITS:
            n_rows = rows_per_split.get(split, 0)
            if n_rows:
                path = folder / name / f"split={split}" / "part-0.parquet"
                path.parent.mkdir(parents=True)
                jobs.append((table.slice(offset, n_rows), path))
            offset += n_rows
    # biggest first, so the longest write starts at once
    jobs.sort(key=lambda job: -job[0].nbytes)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(lambda job: pq.write_table(*job, compression="zstd"), jobs))


def read_table(
    prepared: Path | str, name: str, split: str | None = None, columns: list[str] | None = None
) -> pd.DataFrame:
    """Read `notes` or `rolls`, optionally one split only (the other files stay unread)."""
    folder = Path(prepared) / name
    if split is not None:
        folder = folder / f"split={split}"
        if not folder.exists():
            return pd.DataFrame(columns=columns or [])
        return pq.read_table(folder, columns=columns).to_pandas()
    dataset = ds.dataset(str(folder), format="parquet", partitioning="hive")
    return dataset.to_table(columns=columns).to_pandas()


def read_pieces(prepared: Path | str) -> pd.DataFrame:
    return pd.read_parquet(Path(prepared) / "pieces.parquet")
