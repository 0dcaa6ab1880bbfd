"""Benchmark the prepare stage on real MIDI folders; prints throughput and ratios.

    python bench/prepare.py                      # chorales from data/raw + MAESTRO v2 if present
    python bench/prepare.py --midi-dir DIR ...   # any folder(s) of .mid / .midi files

For each corpus it times, in the same process and on the same files:
  * `floor`: symusic's bare `Score(path)` parse, the least any symusic-based prepare can take;
  * `prepare`: Cadenza's whole prepare stage (parse, filter, key, transpose, split, rolls,
    Parquet shards), with its peak resident memory.
The ratio floor/prepare says how much of the floor's speed the full stage keeps.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import symusic

from cadenza.config import PrepareParams
from cadenza.prepare.run import prepare

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIRS = [ROOT / "data" / "raw" / "bach_chorales" / "midi",
                ROOT.parent / "shared" / "datasets" / "maestro-v2.0.0"]


def midi_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))


def bench_floor(files: list[Path]) -> tuple[float, int]:
    start = time.perf_counter()
    notes = sum(symusic.Score(str(p)).note_num() for p in files)
    return time.perf_counter() - start, notes


def bench_prepare(files: list[Path]) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw" / "bench"
        raw.mkdir(parents=True)
        pd.DataFrame({"piece_id": [p.stem for p in files], "title": [p.stem for p in files],
                      "source_path": [str(p) for p in files],
                      "midi_path": [str(p.resolve()) for p in files], "sha256": "",
                      "status": "ok", "reason": ""}).to_csv(raw / "manifest.csv", index=False)
        (raw / "source.json").write_text(json.dumps({"track_filter": "all"}))
        start = time.perf_counter()
        counts = prepare(raw.parent, ["bench"], Path(tmp) / "prepared", PrepareParams())
        return time.perf_counter() - start, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--midi-dir", type=Path, action="append")
    args = parser.parse_args()
    for folder in args.midi_dir or DEFAULT_DIRS:
        files = midi_files(folder)
        if not files:
            print(f"skip {folder}: no MIDI files (run `make run` / see ../shared/datasets)")
            continue
        floor_s, n_notes = bench_floor(files)
        prep_s, counts = bench_prepare(files)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        kept = sum(counts[s]["notes"] for s in ("train", "valid", "test"))
        print(f"\n== {folder} ({len(files)} files, {n_notes:,} notes)")
        print(f"floor   symusic parse : {floor_s:7.2f} s  {len(files) / floor_s:9.0f} files/s"
              f"  {n_notes / floor_s:12,.0f} notes/s")
        print(f"prepare full stage    : {prep_s:7.2f} s  {len(files) / prep_s:9.0f} files/s"
              f"  {kept / prep_s:12,.0f} notes/s  peak RSS {peak_mb:,.0f} MB")
        print(f"ratio   prepare/floor : {prep_s / floor_s:7.1f}x the bare parse time"
              f" (rejected {counts['rejected']})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
