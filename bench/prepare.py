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

    python bench/prepare.py --lpd DIR --skip-midi  # LPD .npz rolls only (default DIR: the
                                                    # shared LPD-cleansed sample, if present)

For LPD it times, in the same run on the same files: `pypianoroll.load` + the old dense-roll
conversion (the baseline), the new `read_lpd`, and the whole prepare stage (serial and on the
process pool), with files/s, the ratio new/baseline and an estimate for all 21,425 files.
"""

from __future__ import annotations

import argparse
import dataclasses
import filecmp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pretty_midi
import symusic

from cadenza.config import PrepareParams, RunnerParams
from cadenza.prepare.parse import NOTE_ARRAYS, RejectedPiece
from cadenza.prepare.readers import read_lpd, read_lpd_dense
from cadenza.prepare.stage import prepare
from cadenza.sources.fetch import write_manifest
from cadenza.sources.registry import SOURCES, Source
from cadenza.testing.checkout import DATASETS, ROOT

DEFAULT_DIRS = [
    ROOT / "data" / "raw" / "bach_chorales" / "midi",
    DATASETS / "maestro-v2.0.0",
]
DEFAULT_LPD = DATASETS / "lpd_cleansed_sample"
LPD_CLEANSED_FILES = 21_425


def midi_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi"))


def bench_floor(files: list[Path]) -> tuple[float, int]:
    start = time.perf_counter()
    notes = sum(symusic.core.ScoreTick(p).note_num() for p in files)  # = symusic.Score(p)
    return time.perf_counter() - start, notes


def bench_prepare(
    files: list[Path],
    runner: RunnerParams = RunnerParams(kind="serial"),
    keep: Path | None = None,
    source: Source | None = None,
) -> tuple[float, dict]:
    """Time the whole stage; with `keep`, the shards are left there for comparison.

    `source` (default: a plain MIDI one) says how the files are read: LPD's for `.npz`."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw" / "bench"
        raw.mkdir(parents=True)
        fmt = "npz" if source is not None and source.layout == "lpd" else "midi"
        rows = [
            {
                "piece_id": f"{i:06d}-{p.stem}" if fmt == "npz" else p.stem,  # files repeat
                "format": fmt,
                "path": str(p.resolve()),
                "status": "ok",
            }
            for i, p in enumerate(files)
        ]
        write_manifest(
            raw,
            rows,
            source
            or Source(name="bench", layout="maestro", description="", license="", citation=""),
        )
        start = time.perf_counter()
        counts = prepare(
            raw.parent, ["bench"], keep or Path(tmp) / "prepared", PrepareParams(), runner
        )
        return time.perf_counter() - start, counts


def bench_runners(files: list[Path], serial_s: float, base: Path) -> None:
    """Each parallel runner against the serial run of the same session (its shards in
    `base`); shards compared."""
    with tempfile.TemporaryDirectory() as tmp:
        names = sorted(p.relative_to(base) for p in base.rglob("*") if p.is_file())
        for label, runner in [
            ("process pool", RunnerParams(kind="process")),
            ("dask threads", RunnerParams(kind="dask", dask_processes=False)),
        ]:
            out = Path(tmp) / label.replace(" ", "_")
            seconds, _ = bench_prepare(files, runner, keep=out)
            same = all(filecmp.cmp(base / n, out / n, shallow=False) for n in names)
            print(
                f"runner  {label:14s}: {seconds:7.2f} s  {serial_s / seconds:5.2f}x the serial"
                f" run, shards {'byte-identical' if same else 'DIFFER'}"
            )


def pretty_midi_notes(path: Path) -> pd.DataFrame:
    """The reference path: what a typical pretty_midi script does to one file."""
    pm = pretty_midi.PrettyMIDI(str(path))
    rows = [
        (
            n.pitch,
            n.velocity,
            pm.time_to_tick(n.start) / pm.resolution,
            pm.time_to_tick(n.end) / pm.resolution,
        )
        for inst in pm.instruments
        if inst.program < 8 and not inst.is_drum
        for n in inst.notes
    ]
    return pd.DataFrame(rows, columns=["pitch", "velocity", "start_beat", "end_beat"])


def bench_pretty_midi(files: list[Path]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for i, path in enumerate(files):
            pretty_midi_notes(path).to_parquet(Path(tmp) / f"{i}.parquet")
        return time.perf_counter() - start


def time_reader(read, files: list[Path]) -> tuple[float, list]:
    """Seconds to read every file, and each file's notes (or its rejection's stage)."""
    out: list = []
    start = time.perf_counter()
    for path in files:
        try:
            out.append(read(path, "program").notes)
        except RejectedPiece as err:
            out.append(err.stage)
    return time.perf_counter() - start, out


def same_outcome(a: dict | str, b: dict | str) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    return all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in NOTE_ARRAYS)


def bench_lpd(folder: Path, repeat: int) -> None:
    """Baseline reader, new reader, and the whole stage (serial, process pool) on LPD; the
    stage also on the files `repeat` times over, where the pool's start-up weighs less."""
    files = sorted(folder.rglob("*.npz"))
    if not files:
        print(f"skip {folder}: no .npz files (see ../shared/datasets)")
        return
    n = len(files)

    def rate(seconds: float, count: int = n) -> float:
        return count / seconds

    base_s, base = time_reader(read_lpd_dense, files)
    new_s, new = time_reader(read_lpd, files)
    same = sum(same_outcome(a, b) for a, b in zip(base, new, strict=True))
    kept = sum(not isinstance(x, str) for x in new)
    source = dataclasses.replace(SOURCES["lpd_cleansed"], name="bench")
    serial_s, counts = bench_prepare(files, source=source)
    pool_s, _ = bench_prepare(files, RunnerParams(kind="process"), source=source)
    print(f"\n== LPD {folder} ({n} files, {kept} with piano; {os.cpu_count()} cores)")
    print(f"baseline pypianoroll.load + dense : {base_s:7.2f} s  {rate(base_s):7.1f} files/s")
    print(
        f"new read_lpd (sparse, vectorised) : {new_s:7.2f} s  {rate(new_s):7.1f} files/s"
        f"  {base_s / new_s:5.1f}x the baseline; identical on {same}/{n} files"
    )
    runs = [("serial", n, serial_s), ("process pool", n, pool_s)]
    if repeat > 1:
        many = files * repeat
        runs += [
            (f"serial x{repeat}", len(many), bench_prepare(many, source=source)[0]),
            (
                f"pool x{repeat}",
                len(many),
                bench_prepare(many, RunnerParams(kind="process"), source=source)[0],
            ),
        ]
    for label, count, seconds in runs:
        print(
            f"prepare whole stage, {label:12s} : {seconds:7.2f} s  {rate(seconds, count):7.1f}"
            f" files/s  -> all {LPD_CLEANSED_FILES:,} LPD-cleansed files in about"
            f" {LPD_CLEANSED_FILES / rate(seconds, count) / 60:.1f} min"
        )
    print(f"  ({counts['filtered_out']} filtered out (no piano), {counts['rejected']} rejected)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--midi-dir", type=Path, action="append")
    parser.add_argument(
        "--reference-files",
        type=int,
        default=60,
        help="how many files the slow pretty_midi path is timed on",
    )
    parser.add_argument(
        "--lpd",
        type=Path,
        default=DEFAULT_LPD if DEFAULT_LPD.exists() else None,
        help="a folder of LPD .npz files (default: the shared sample)",
    )
    parser.add_argument(
        "--lpd-repeat",
        type=int,
        default=8,
        help="also time the stage on the LPD files this many times over",
    )
    parser.add_argument("--skip-midi", action="store_true", help="only the LPD section")
    args = parser.parse_args()
    if args.lpd is not None:
        bench_lpd(args.lpd, args.lpd_repeat)
    for folder in [] if args.skip_midi else args.midi_dir or DEFAULT_DIRS:
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
        print(
            f"floor   symusic parse : {floor_s:7.2f} s  {len(files) / floor_s:9.0f} files/s"
            f"  {n_notes / floor_s:12,.0f} notes/s"
        )
        print(
            f"prepare full stage    : {prep_s:7.2f} s  {len(files) / prep_s:9.0f} files/s"
            f"  {kept / prep_s:12,.0f} notes/s  peak RSS {peak_mb:,.0f} MB"
        )
        bench_runners(files, prep_s, serial_dir)
        shutil.rmtree(serial_dir.parent)
        ref = files[:: max(1, len(files) // args.reference_files)][: args.reference_files]
        ref_s = bench_pretty_midi(ref)
        print(
            f"pretty_midi reference : {ref_s:7.2f} s  {len(ref) / ref_s:9.1f} files/s"
            f"  (every {len(files) // len(ref)}th file, {len(ref)} in all)"
        )
        print(
            f"ratio   prepare/floor : {prep_s / floor_s:7.1f}x the bare parse time"
            f" (rejected {counts['rejected']})"
        )
        speedup = (ref_s / len(ref)) / (prep_s / len(files))
        print(f"ratio   pretty_midi/prepare : {speedup:7.1f}x faster per file than pretty_midi")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
