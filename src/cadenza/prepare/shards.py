"""The prepared dataset on disk: Parquet shards partitioned by split, plus small tables.

Layout of `data/prepared/`:
    notes/split=<s>/part-0.parquet   one row per note (seed 004's representation)
    rolls/split=<s>/part-0.parquet   the piano roll of each piece as runs (pitch, start, end)
    pieces.parquet                   one row per kept piece: split, key, shift, counts
    rejects.parquet                  one row per rejected file: source, file, stage, reason
    _meta.json                       schema version, encoder params, library versions, counts

The folders are hive-partitioned, so `pd.read_parquet("data/prepared/notes")` and any Arrow
or DuckDB reader get the `split` column back from the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
SPLITS = ("train", "valid", "test")
REJECT_COLUMNS = ["source", "piece_id", "file", "stage", "reason"]


def write_partitioned(table: pa.Table, split_of_row: np.ndarray, folder: Path) -> None:
    """Write `table` as zstd Parquet, one `split=<s>/part-0.parquet` per non-empty split."""
    for split in SPLITS:
        mask = split_of_row == split
        if mask.any():
            (folder / f"split={split}").mkdir(parents=True)
            pq.write_table(table.filter(pa.array(mask)),
                           folder / f"split={split}" / "part-0.parquet", compression="zstd")


def read_table(prepared: Path | str, name: str, split: str | None = None,
               columns: list[str] | None = None) -> pd.DataFrame:
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
