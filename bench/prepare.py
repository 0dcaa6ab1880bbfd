"""Benchmark the prepare stage on real MIDI folders; prints throughput and ratios.

    python bench/prepare.py                      # chorales from data/raw + MAESTRO v2 if present
    python bench/prepare.py --midi-dir DIR ...   # any folder(s) of .mid / .midi files

For each corpus it times, in the same process and on the same files:
  * `floor`: symusic's bare `Score(path)` parse, the least any symusic-based prepare can take;
  * `prepare`: Cadenza's whole prepare stage (parse, filter, key, transpose, split, rolls,
    Parquet shards), with its peak resident memory;
  * `runners`: the same stage on a local process pool and on a local Dask cluster (threads),
    against the serial run, with a check that their shards are byte-identical to it;
  * `pretty_midi`: the path most research scripts take (pretty_midi parse, piano filter,
    seconds -> beats, a notes table to Parquet). It runs about 3 files/s on MAESTRO, so it is
    timed on `--reference-files` files spread evenly through the corpus, compared per file.
The ratios say how far the full stage is from the floor, and how far ahead of pretty_midi.
"""

from __future__ import annotations

import argparse
import filecmp
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pretty_midi
import symusic

from cadenza.config import PrepareParams, RunnerParams
from cadenza.prepare.run import prepare
from cadenza.sources.fetch import write_manifest
from cadenza.sources.registry import Source

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DIRS = [ROOT / "data" / "raw" / "bach_chorales" / "midi",
                ROOT.parent / "shared" / "datasets" / "maestro-v2.0.0"]


def midi_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))


def bench_floor(files: list[Path]) -> tuple[float, int]:
    start = time.perf_counter()
    notes = sum(symusic.Score(str(p)).note_num() for p in files)
    return time.perf_counter() - start, notes


def bench_prepare(files: list[Path], runner: RunnerParams = RunnerParams(kind="serial"),
                  keep: Path | None = None) -> tuple[float, dict]:
    """Time the whole stage; with `keep`, the shards are left there for comparison."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw" / "bench"
        raw.mkdir(parents=True)
        rows = [{"piece_id": p.stem, "format": "midi", "path": str(p.resolve()),
                 "status": "ok"} for p in files]
        write_manifest(raw, rows, Source(name="bench", layout="maestro", description="",
                                         license="", citation=""))
        start = time.perf_counter()
        counts = prepare(raw.parent, ["bench"], keep or Path(tmp) / "prepared",
                         PrepareParams(), runner)
        return time.perf_counter() - start, counts


def bench_runners(files: list[Path], serial_s: float, base: Path) -> None:
    """Each parallel runner against the serial run of the same session (its shards in
    `base`); shards compared."""
    with tempfile.TemporaryDirectory() as tmp:
        names = sorted(p.relative_to(base) for p in base.rglob("*") if p.is_file())
        for label, runner in [("process pool", RunnerParams(kind="process")),
                              ("dask threads", RunnerParams(kind="dask", dask_processes=False))]:
            out = Path(tmp) / label.replace(" ", "_")
            seconds, _ = bench_prepare(files, runner, keep=out)
            same = all(filecmp.cmp(base / n, out / n, shallow=False) for n in names)
            print(f"runner  {label:14s}: {seconds:7.2f} s  {serial_s / seconds:5.2f}x the serial"
                  f" run, shards {'byte-identical' if same else 'DIFFER'}")


def pretty_midi_notes(path: Path) -> pd.DataFrame:
    """The reference path: what a typical pretty_midi script does to one file."""
    pm = pretty_midi.PrettyMIDI(str(path))
    rows = [(n.pitch, n.velocity, pm.time_to_tick(n.start) / pm.resolution,
             pm.time_to_tick(n.end) / pm.resolution)
            for inst in pm.instruments if inst.program < 8 and not inst.is_drum
            for n in inst.notes]
    return pd.DataFrame(rows, columns=["pitch", "velocity", "start_beat", "end_beat"])


def bench_pretty_midi(files: list[Path]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for i, path in enumerate(files):
            pretty_midi_notes(path).to_parquet(Path(tmp) / f"{i}.parquet")
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--midi-dir", type=Path, action="append")
    parser.add_argument("--reference-files", type=int, default=60,
                        help="how many files the slow pretty_midi path is timed on")
    args = parser.parse_args()
    for folder in args.midi_dir or DEFAULT_DIRS:
        files = midi_files(folder)
        if not files:
            print(f"skip {folder}: no MIDI files (run `make run` / see ../shared/datasets)")
            continue
        floor_s, n_notes = bench_floor(files)
        serial_dir = Path(tempfile.mkdtemp(prefix="cadenza-bench-")) / "serial"
        prep_s, counts = bench_prepare(files, keep=serial_dir)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        kept = sum(counts[s]["notes"] for s in ("train", "valid", "test"))
        print(f"\n== {folder} ({len(files)} files, {n_notes:,} notes)")
        print(f"floor   symusic parse : {floor_s:7.2f} s  {len(files) / floor_s:9.0f} files/s"
              f"  {n_notes / floor_s:12,.0f} notes/s")
        print(f"prepare full stage    : {prep_s:7.2f} s  {len(files) / prep_s:9.0f} files/s"
              f"  {kept / prep_s:12,.0f} notes/s  peak RSS {peak_mb:,.0f} MB")
        bench_runners(files, prep_s, serial_dir)
        shutil.rmtree(serial_dir.parent)
        ref = files[:: max(1, len(files) // args.reference_files)][: args.reference_files]
        ref_s = bench_pretty_midi(ref)
        print(f"pretty_midi reference : {ref_s:7.2f} s  {len(ref) / ref_s:9.1f} files/s"
              f"  (every {len(files) // len(ref)}th file, {len(ref)} in all)")
        print(f"ratio   prepare/floor : {prep_s / floor_s:7.1f}x the bare parse time"
              f" (rejected {counts['rejected']})")
        speedup = (ref_s / len(ref)) / (prep_s / len(files))
        print(f"ratio   pretty_midi/prepare : {speedup:7.1f}x faster per file than pretty_midi")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
