"""The prepared dataset on disk: Parquet shards partitioned by split, plus small tables.

Layout of `data/prepared/`:
    notes/split=<s>/part-0.parquet   one row per note (seed 004's representation)
    rolls/split=<s>/part-0.parquet   active (step, pitch) cells of each piece's piano roll
    pieces.parquet                   one row per kept piece: split, key, shift, counts
    rejects.parquet                  one row per rejected file: source, file, stage, reason
    _meta.json                       schema version, encoder params, library versions, counts
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
SPLITS = ("train", "valid", "test")
REJECT_COLUMNS = ["source", "piece_id", "file", "stage", "reason"]


def write_partitioned(frame: pd.DataFrame, folder: Path) -> None:
    """Write `frame` as zstd Parquet, one folder per split (hive style: `split=train/`)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    ds.write_dataset(
        table,
        base_dir=str(folder),
        format="parquet",
        partitioning=ds.partitioning(pa.schema([("split", pa.string())]), flavor="hive"),
        file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
        basename_template="part-{i}.parquet",
        existing_data_behavior="error",
    )


def read_table(prepared: Path | str, name: str, split: str | None = None,
               columns: list[str] | None = None) -> pd.DataFrame:
    """Read `notes` or `rolls`, optionally one split only (pushdown: other files untouched)."""
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
